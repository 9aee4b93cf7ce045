//! Writes the upgrade fixtures (tests/fixtures/upgrade/): what a release
//! leaves on disk, for the next release's upgrade tests to open. Run by hand
//! on the release being left behind, with the directory to write to:
//!
//! `UPGRADE_FIXTURES_OUT=$PWD/tests/fixtures/upgrade cargo test -p <the tests crate> --test end_to_end upgrade_fixtures:: -- --ignored`
//!
//! It fills a control plane, once on SQLite and once on PostgreSQL, with a
//! task in each state (succeeded, failed with a skipped dependant,
//! cancelled, awaiting approval, queued for capabilities nobody offers,
//! running with a checkpoint and a branch kept), their logs and outputs, a
//! schedule, a webhook, a tenant's budget, shared state and the audit
//! records all of that made. Then it stops the control plane with the
//! running task still running, and packs its data dir (`sqlite.tar.gz`), or
//! its data dir and a `pg_dump` of its database (`postgres.tar.gz`).
//! `tests/tests/upgrade.rs` says what must be found in them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use tidewright_api::v1;
use tidewright_tests::*;

/// What the running task's first step keeps with the control plane.
const CHECKPOINT: &[u8] = b"the session of step x, as the fixture left it";
const BUNDLE: &[u8] = b"the bundle of step x, as the fixture left it";
const HEAD: &str = "0123456789abcdef0123456789abcdef01234567";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the upgrade fixtures: set UPGRADE_FIXTURES_OUT and pass --ignored"]
async fn write_the_upgrade_fixtures() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::var("UPGRADE_FIXTURES_OUT").context("UPGRADE_FIXTURES_OUT: required")?,
    );
    std::fs::create_dir_all(&out)?;

    let sqlite = tempfile::tempdir()?;
    let data = sqlite.path().join("data");
    fill(&data, &[]).await?;
    pack(&out.join("sqlite.tar.gz"), sqlite.path(), &["data"])?;

    let postgres = tidewright_store_postgres::throwaway::Server::from_env()?;
    let url = postgres.fresh_database().await?;
    let pg = tempfile::tempdir()?;
    let data = pg.path().join("data");
    fill(&data, &["--store", &url]).await?;
    let dump = Command::new(pg_bin()?.join("pg_dump"))
        .args([
            "--no-owner",
            "--no-privileges",
            "--format=plain",
            "--dbname",
        ])
        .arg(&url)
        .output()?;
    if !dump.status.success() {
        bail!("pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
    }
    std::fs::write(pg.path().join("dump.sql"), &dump.stdout)?;
    pack(
        &out.join("postgres.tar.gz"),
        pg.path(),
        &["data", "dump.sql"],
    )?;
    Ok(())
}

/// A control plane on `data` (and `store`), filled, then stopped with a
/// step running.
async fn fill(data: &Path, store: &[&str]) -> anyhow::Result<()> {
    std::fs::create_dir_all(data)?;
    // Files and secrets of the harness: beside the data dir, not in it. (The
    // gate is in it: the data dir is what the worker's steps may see.)
    let scratch = data.parent().context("the data dir's parent")?;
    let mut flags = vec!["--webhook-allow-private-networks"];
    flags.extend_from_slice(store);
    let mut server = Server::start_on(data, "127.0.0.1:0", &flags)?;
    let mut worker = server.worker("fixture-worker", &["shell"], 8)?;
    server.wait_for_agents(&["fixture-worker"]).await?;
    let client = server.tasks().await?;

    let done = submit(
        &client,
        task(
            "done",
            vec![
                shell_step(
                    "a",
                    &[],
                    "echo 'hello from a'; echo '{\"n\": 1}' > \"$TIDEWRIGHT_OUTPUT\"",
                ),
                shell_step("b", &["a"], "echo 'b read its inputs'"),
            ],
        ),
    )
    .await?;
    wait_succeeded(&client, &done, Duration::from_secs(60)).await?;

    let broken = submit(
        &client,
        task(
            "broken",
            vec![
                shell_step("fail", &[], "echo 'about to fail'; exit 3"),
                shell_step("after", &["fail"], "echo never"),
            ],
        ),
    )
    .await?;
    wait_finished(&client, &broken, Duration::from_secs(60)).await?;

    let gate = data.join("never-opened");
    let stopped = submit(
        &client,
        task(
            "stopped",
            vec![shell_step("wait", &[], &wait_for_gate(&gate))],
        ),
    )
    .await?;
    wait_step(&client, &stopped, "wait", v1::StepState::Running).await?;
    let mut cancel = client.clone();
    cancel
        .cancel_task(v1::CancelTaskRequest {
            task_id: stopped.clone(),
        })
        .await?;
    wait_finished(&client, &stopped, Duration::from_secs(60)).await?;

    let mut gated = noop_step("deploy");
    gated.approval = Some(v1::Approval {
        message: "Ship it?".into(),
        approvers: vec!["admin".into()],
        timeout_seconds: 0,
    });
    let waiting = submit(&client, task("waiting", vec![gated])).await?;
    wait_step(&client, &waiting, "deploy", v1::StepState::AwaitingApproval).await?;

    let mut unserved = noop_step("train");
    unserved.needs = vec!["gpu".into()];
    submit(&client, task("queued", vec![unserved])).await?;

    let running = submit(
        &client,
        task(
            "running",
            vec![
                shell_step("x", &[], &wait_for_gate(&gate)),
                shell_step("y", &[], &wait_for_gate(&gate)),
            ],
        ),
    )
    .await?;
    wait_step(&client, &running, "x", v1::StepState::Running).await?;
    wait_step(&client, &running, "y", v1::StepState::Running).await?;
    let mut as_worker = v1::agent_service_client::AgentServiceClient::with_interceptor(
        connect(&server.url).await?,
        bearer(&server.worker_token),
    );
    let x = v1::AttemptRef {
        task_id: running.clone(),
        step_id: "x".into(),
        attempt: 1,
    };
    as_worker
        .put_checkpoint(v1::Checkpoint {
            attempt: Some(x.clone()),
            session_id: "s-1".into(),
            workspace: "/work/x".into(),
            archive: CHECKPOINT.to_vec(),
        })
        .await?;
    as_worker
        .put_branch(v1::StepBranch {
            attempt: Some(x),
            head_commit: HEAD.into(),
            bundle: BUNDLE.to_vec(),
            diff: "+a line of x".into(),
        })
        .await?;

    let task_file = scratch.join("nightly.yaml");
    std::fs::write(
        &task_file,
        "name: nightly\nsteps:\n  - id: s\n    noop: {}\n",
    )?;
    succeed(
        server
            .cli()
            .args(["schedule", "create", "nightly", "--cron", "0 3 1 1 *", "-f"])
            .arg(&task_file),
    );
    let secret = scratch.join("webhook.secret");
    succeed(
        server
            .cli()
            .args([
                "webhook",
                "add",
                "http://127.0.0.1:9/hook",
                "--events",
                "task.failed",
                "--secret-file",
            ])
            .arg(&secret),
    );
    succeed(
        server
            .cli()
            .args(["budget", "set", "default", "--usd-per-day", "12.5"]),
    );
    succeed(
        server
            .cli()
            .args(["state", "put", "--scope", "shared", "release", "{\"v\": 7}"]),
    );

    // The control plane stops as a service manager stops it, with the
    // steps running (so they stay running in the store), then the worker.
    server.process.signal("TERM");
    server.process.wait_exit(Duration::from_secs(30))?;
    worker.signal("KILL");
    worker.wait_exit(Duration::from_secs(10))?;
    // What the harness left there is not the control plane's.
    std::fs::remove_file(data.join("server.log"))?;
    std::fs::remove_file(data.join("fixture-worker.log"))?;
    std::fs::remove_file(data.join(".gate-held"))?;
    std::fs::remove_dir_all(data.join("work"))?;
    Ok(())
}

/// `tar -czf archive -C dir names…`.
fn pack(archive: &Path, dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("tar")
        .arg("-czf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .args(names)
        .status()?;
    if !status.success() {
        bail!("tar -czf {} failed", archive.display());
    }
    Ok(())
}
