//! Upgrades keep every task: the data an earlier release left on disk
//! (tests/fixtures/upgrade/, written by the release before the rename, see
//! its README) opened by this one, on SQLite and on PostgreSQL (two
//! replicas starting on it at once, then the standby taking over), with
//! every task in its state, their logs and outputs, the running step's
//! checkpoint and branch, the schedule, the webhook, the budget, shared
//! state and the audit log; and the store goes on working. A database a
//! newer release wrote is refused with one line naming both releases.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tidewright_api::v1;
use tidewright_store_postgres::throwaway;
use tidewright_tests::*;

/// What the fixture's running step `x` kept (upgrade_fixtures.rs).
const CHECKPOINT: &[u8] = b"the session of step x, as the fixture left it";
const BUNDLE: &[u8] = b"the bundle of step x, as the fixture left it";
const HEAD: &str = "0123456789abcdef0123456789abcdef01234567";

/// Nothing of the fixture expires while it is looked at (it was written
/// long before the test runs), and its running steps wait for their
/// worker, which is gone, for the whole test.
const KEEP: [&str; 8] = [
    "--retention",
    "0",
    "--audit-retention",
    "0",
    "--checkpoint-retention",
    "36500d",
    "--worker-timeout",
    "1h",
];

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/upgrade").join(name)
}

fn unpack(archive: &Path, into: &Path) -> anyhow::Result<()> {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()?;
    if !status.success() {
        bail!("tar -xzf {} failed", archive.display());
    }
    Ok(())
}

/// The SQLite data dir of the fixture, as a user upgrading makes it
/// (CHANGELOG, 0.2.0): the database, with its WAL, renamed to the name this
/// release looks for. The test does not know the former name; the data
/// dir holds one database.
fn sqlite_data_dir(into: &Path) -> anyhow::Result<PathBuf> {
    unpack(&fixture("sqlite.tar.gz"), into)?;
    let data = into.join("data");
    let databases: Vec<String> = std::fs::read_dir(&data)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".db"))
        .collect();
    let [database] = databases.as_slice() else {
        bail!("the fixture's data dir holds {databases:?}, not one database");
    };
    for suffix in ["", "-wal", "-shm"] {
        let from = data.join(format!("{database}{suffix}"));
        if from.exists() {
            std::fs::rename(&from, data.join(format!("tidewright.db{suffix}")))?;
        }
    }
    Ok(data)
}

/// The fixture's PostgreSQL dump restored into a fresh database; its URL
/// and the data dir (tokens, keys) beside it.
async fn postgres_restored(
    postgres: &throwaway::Server,
    into: &Path,
) -> anyhow::Result<(String, PathBuf)> {
    unpack(&fixture("postgres.tar.gz"), into)?;
    let url = postgres.fresh_database().await?;
    let restore = Command::new(pg_bin()?.join("psql"))
        .args([
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "--dbname",
        ])
        .arg(&url)
        .arg("-f")
        .arg(into.join("dump.sql"))
        .stdout(Stdio::null())
        .output()?;
    if !restore.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&restore.stderr));
    }
    Ok((url, into.join("data")))
}

/// The fixture's tasks by name.
async fn by_name(client: &Tasks) -> anyhow::Result<std::collections::HashMap<String, v1::Task>> {
    let mut tasks = std::collections::HashMap::new();
    for id in all_task_ids(client).await? {
        let task = client
            .clone()
            .get_task(v1::GetTaskRequest {
                task_id: id.clone(),
            })
            .await?
            .into_inner();
        let name = task
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        tasks.insert(name, task);
    }
    Ok(tasks)
}

fn state_of(task: &v1::Task, step_id: &str) -> v1::StepState {
    v1::StepState::try_from(step(task, step_id).state).unwrap_or(v1::StepState::Unspecified)
}

/// Everything the fixture holds, as it was left; the id of task `waiting`.
async fn everything_is_there(server: &Server) -> anyhow::Result<String> {
    let client = server.tasks().await?;
    let tasks = by_name(&client).await?;
    let mut names: Vec<&str> = tasks.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        ["broken", "done", "queued", "running", "stopped", "waiting"]
    );
    let task_state = |name: &str| v1::TaskState::try_from(tasks[name].state).ok();
    assert_eq!(task_state("done"), Some(v1::TaskState::Succeeded));
    assert_eq!(task_state("broken"), Some(v1::TaskState::Failed));
    assert_eq!(task_state("stopped"), Some(v1::TaskState::Cancelled));
    assert_eq!(task_state("running"), Some(v1::TaskState::Running));
    assert_eq!(state_of(&tasks["broken"], "after"), v1::StepState::Skipped);
    assert_eq!(
        state_of(&tasks["waiting"], "deploy"),
        v1::StepState::AwaitingApproval
    );
    assert_eq!(state_of(&tasks["queued"], "train"), v1::StepState::Queued);
    assert_eq!(state_of(&tasks["running"], "x"), v1::StepState::Running);
    assert_eq!(state_of(&tasks["running"], "y"), v1::StepState::Running);

    let done = &tasks["done"];
    assert_eq!(step_output(done, "a")?, serde_json::json!({"n": 1}));
    let log = step_log(&client, &done.id, "a").await;
    assert!(log.contains("hello from a"), "{log}");
    let log = step_log(&client, &tasks["broken"].id, "fail").await;
    assert!(log.contains("about to fail"), "{log}");
    assert!(
        step(&tasks["broken"], "fail")
            .error
            .contains("exited with code 3"),
        "{:?}",
        step(&tasks["broken"], "fail")
    );

    // The running step's checkpoint, and its branch as step y asks for it.
    let running = &tasks["running"].id;
    let mut as_worker = v1::agent_service_client::AgentServiceClient::with_interceptor(
        connect(&server.url).await?,
        bearer(&server.worker_token),
    );
    let attempt = |step: &str| v1::AttemptRef {
        task_id: running.clone(),
        step_id: step.into(),
        attempt: 1,
    };
    let checkpoint = as_worker
        .get_checkpoint(v1::GetCheckpointRequest {
            attempt: Some(attempt("x")),
        })
        .await?
        .into_inner();
    assert_eq!(checkpoint.archive, CHECKPOINT);
    assert_eq!(checkpoint.session_id, "s-1");
    let branch = as_worker
        .get_branch(v1::GetBranchRequest {
            attempt: Some(attempt("y")),
            step_id: "x".into(),
        })
        .await?
        .into_inner();
    assert_eq!(branch.bundle, BUNDLE);
    assert_eq!(branch.head_commit, HEAD);
    assert_eq!(branch.diff, "+a line of x");

    let json = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let out = succeed(server.cli().args(args));
        serde_json::from_slice(&out.stdout).context("JSON")
    };
    let schedules = json(&["schedule", "list", "-o", "json"])?;
    assert_eq!(schedules[0]["name"], "nightly", "{schedules}");
    assert_eq!(schedules[0]["cron"], "0 3 1 1 *", "{schedules}");
    let webhooks = json(&["webhook", "list", "-o", "json"])?;
    assert_eq!(webhooks[0]["url"], "http://127.0.0.1:9/hook", "{webhooks}");
    let budgets = json(&["budget", "get", "-o", "json"])?;
    assert_eq!(budgets[0]["tenant"], "default", "{budgets}");
    assert_eq!(budgets[0]["usdPerDay"], 12.5, "{budgets}");
    let state = succeed(
        server
            .cli()
            .args(["state", "get", "--scope", "shared", "release"]),
    );
    let state: serde_json::Value = serde_json::from_slice(&state.stdout)?;
    assert_eq!(state, serde_json::json!({"v": 7}));

    let audit = server.audit_log().await?;
    let submitted = audit.iter().filter(|a| a.action == "task.submit").count();
    assert_eq!(submitted, 6, "{audit:?}");
    for action in [
        "task.cancel",
        "schedule.create",
        "webhook.create",
        "tenant.set_budget",
    ] {
        assert!(
            audit.iter().any(|a| a.action == action),
            "{action} in {audit:?}"
        );
    }
    Ok(tasks["waiting"].id.clone())
}

/// The store takes writes: `waiting` approved runs on a new worker.
async fn it_goes_on(server: &Server, waiting: &str) -> anyhow::Result<()> {
    let _worker = server.worker("after-upgrade", &["shell"], 2)?;
    succeed(server.cli().args(["approve", waiting, "deploy"]));
    let client = server.tasks().await?;
    wait_succeeded(&client, waiting, Duration::from_secs(60)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_data_dir_from_before_the_rename_opens_with_everything_in_it() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let data = sqlite_data_dir(dir.path())?;
    let server = Server::start_on(&data, "127.0.0.1:0", &KEEP)?;
    let waiting = everything_is_there(&server).await?;
    it_goes_on(&server, &waiting).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_from_before_the_rename_opens_under_a_standby_that_then_takes_over()
-> anyhow::Result<()> {
    let postgres = throwaway::Server::from_env()?;
    let dir = tempfile::tempdir()?;
    let (url, data) = postgres_restored(&postgres, dir.path()).await?;
    let mut flags = vec!["--store", url.as_str(), "--leader-lease", "2s"];
    flags.extend(KEEP);
    // Two replicas of this release start on the old database at once: one
    // takes it over (under the migration lock), the other stands by.
    let first = Server::start_on(&data, "127.0.0.1:0", &flags)?;
    let second = Server::start_on(&data, "127.0.0.1:0", &flags)?;
    let (mut leader, standby) = leading_of(first, second).await?;
    everything_is_there(&leader).await?;

    leader.process.signal("KILL");
    leader.process.wait_exit(Duration::from_secs(10))?;
    standby.wait_leading().await?;
    let waiting = everything_is_there(&standby).await?;
    it_goes_on(&standby, &waiting).await
}

/// The one of two replicas that leads, then the other.
async fn leading_of(a: Server, b: Server) -> anyhow::Result<(Server, Server)> {
    let (a_tasks, b_tasks) = (a.tasks().await?, b.tasks().await?);
    let leads = |client: &Tasks| {
        let mut client = client.clone();
        async move {
            client
                .list_tasks(v1::ListTasksRequest {
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .is_ok()
        }
    };
    let first = eventually(Duration::from_secs(30), || async {
        if leads(&a_tasks).await {
            Some(true)
        } else if leads(&b_tasks).await {
            Some(false)
        } else {
            None
        }
    })
    .await?;
    Ok(if first { (a, b) } else { (b, a) })
}

/// `tidewright server` on `store` and `data`, expected to refuse to start:
/// its one line of error.
fn refused_start(data: &Path, store: Option<&str>) -> anyhow::Result<String> {
    let mut command = Command::new(tidewright_bin());
    command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data);
    if let Some(store) = store {
        command.args(["--store", store]);
    }
    let out = command.stdin(Stdio::null()).output()?;
    assert!(!out.status.success(), "it started: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    let [line] = errors.as_slice() else {
        bail!("not one error line: {stderr}");
    };
    Ok(line.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_a_newer_release_wrote_is_refused_naming_both_releases() -> anyhow::Result<()> {
    let this = env!("CARGO_PKG_VERSION");
    let dir = tempfile::tempdir()?;
    let data = sqlite_data_dir(dir.path())?;
    // Opened once by this release, then marked as a future one's.
    let server = Server::start_on(&data, "127.0.0.1:0", &KEEP)?;
    server.tasks().await?;
    drop(server);
    let db = rusqlite::Connection::open(data.join("tidewright.db"))?;
    db.execute(
        "INSERT INTO tidewright_schema (version, written_by, applied_at) VALUES (99, '9.9.9', 0)",
        [],
    )?;
    drop(db);
    let line = refused_start(&data, None)?;
    assert!(
        line.contains("schema version 99, written by tidewright 9.9.9")
            && line.contains(&format!("this is tidewright {this}")),
        "{line}"
    );
    // Refused without a change: the tasks are all still there.
    std::fs::remove_file(data.join("tidewright.db-shm")).ok();
    let db = rusqlite::Connection::open(data.join("tidewright.db"))?;
    let tasks: i64 = db.query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))?;
    assert_eq!(tasks, 6);

    let postgres = throwaway::Server::from_env()?;
    let pg = tempfile::tempdir()?;
    let (url, data) = postgres_restored(&postgres, pg.path()).await?;
    let server = Server::start_on(&data, "127.0.0.1:0", &["--store", &url])?;
    server.wait_leading().await?;
    drop(server);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("INSERT INTO tidewright_schema (version, written_by) VALUES (99, '9.9.9')")
        .await?;
    let line = refused_start(&data, Some(&url))?;
    assert!(
        line.contains("schema is version 99, written by tidewright 9.9.9")
            && line.contains(&format!("this is tidewright {this}")),
        "{line}"
    );
    let tasks: i64 = client
        .query_one("SELECT count(*) FROM tasks", &[])
        .await?
        .get(0);
    assert_eq!(tasks, 6);
    Ok(())
}
