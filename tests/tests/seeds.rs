//! A repository's setup, made once per key on a worker and handed to each
//! step as a seed, against a real git server and sandboxed workers: an npm
//! project's `npm ci` (real npm, its tarballs served on the loopback) runs
//! once for four Claude Code agents at once and a step after them, each
//! running the project's tests on its own copy; four steps at once and one
//! after them share one seed that one setup made,
//! each step's writes stay its own (never the seed's, never another
//! step's, never committed), and a new lockfile makes a new seed. A setup
//! that fails fails its step with its output and is not kept; one without
//! its key files runs for every step and says so; a seed over the worker's
//! bound is not kept and says why; a bad setup is refused at submit, and a
//! bad setup file in the repository fails the step naming the field.
//! A seed one worker made goes to the control plane's store, and a second
//! worker takes it from there without running the setup; a seed corrupt
//! in the store is found by its hash and made again; `tidewright seed
//! delete` drops a seed on the workers too, and `seed rebuild` makes it
//! again at once.

use std::time::Duration;
use tidewright_api::v1;
use tidewright_tests::git_server::GitServer;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

/// What the generated project's setup does: "installs" its one dependency
/// at the version its lockfile names.
const INSTALL: &str = "set -e\nmkdir -p deps/left-pad\ncp deps.lock deps/left-pad/VERSION\necho seeded > deps/left-pad/index.txt\necho installed left-pad\n";

fn setup(run: &[&str], key: &[&str]) -> v1::SetupSpec {
    v1::SetupSpec {
        run: run.iter().map(|s| s.to_string()).collect(),
        key: key.iter().map(|s| s.to_string()).collect(),
        paths: vec!["deps".into()],
        ..Default::default()
    }
}

fn on_repo(
    url: &str,
    steps: Vec<v1::StepSpec>,
    setup: Option<v1::SetupSpec>,
) -> v1::SubmitTaskRequest {
    let mut request = task_on_repo("seeded", steps, url);
    if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.setup = setup;
    }
    request
}

/// The project on a git server, a control plane that may read it, and a
/// sandboxed worker running four steps at once with `flags` besides.
struct Project {
    git: GitServer,
    server: Server,
    /// The console's address.
    http: String,
    secrets: String,
    worker: Process,
    dir: tempfile::TempDir,
}

async fn project(flags: &[&str]) -> Project {
    let dir = tempfile::tempdir().expect("tempdir");
    let calc::Served {
        git,
        secrets,
        server,
        http,
    } = calc::served(dir.path(), &[]).expect("a git server and a control plane");
    git.create_repo(
        "app",
        &[("deps.lock", "left-pad 1.0\n"), ("install.sh", INSTALL)],
    );
    let worker = another_worker(&server, &secrets, "w1", flags).await;
    Project {
        git,
        server,
        http,
        secrets,
        worker,
        dir,
    }
}

/// A sandboxed worker `name` of `server`, running four steps at once with
/// `flags` besides, once it is connected.
async fn another_worker(server: &Server, secrets: &str, name: &str, flags: &[&str]) -> Process {
    let mut extra = vec!["--secrets-dir", secrets];
    extra.extend_from_slice(flags);
    let worker = server
        .worker_with(name, &["shell"], 4, &extra)
        .expect("worker");
    server.wait_for_agents(&[name]).await.expect("worker up");
    worker
}

/// The lines of the task's log that say `what`, by step.
fn said(events: &[v1::Event], what: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Log(l)) if l.line.contains(what) => Some(l.step_id.clone()),
            _ => None,
        })
        .collect()
}

/// The task's setup events, by step.
fn setups(events: &[v1::Event]) -> Vec<(String, v1::SetupReport)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Setup(s)) => {
                Some((s.step_id.clone(), s.setup.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

/// Where each setup event says its step's seed came from, sorted.
fn sources(events: &[v1::Event]) -> Vec<String> {
    let mut sources: Vec<String> = setups(events)
        .into_iter()
        .map(|(_, s)| format!("{} {}", s.source, s.method).trim_end().to_string())
        .collect();
    sources.sort();
    sources
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_share_one_seed_made_once_and_their_writes_stay_their_own() {
    let p = project(&[]).await;
    let client = p.server.tasks().await.expect("client");
    // Each of four steps at once finds the seed's file as the setup made
    // it, then writes over it; the step after them finds it fresh, and
    // finds their work merged without the seed in it.
    let mut steps: Vec<v1::StepSpec> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| {
            shell_step(
                id,
                &[],
                &format!(
                    "test \"$(cat deps/left-pad/index.txt)\" = seeded && echo mine > deps/left-pad/index.txt && echo {id} > work-{id}.txt"
                ),
            )
        })
        .collect();
    steps.push(shell_step(
        "after",
        &["a", "b", "c", "d"],
        "test \"$(cat deps/left-pad/index.txt)\" = seeded && test -f work-a.txt && test -f work-d.txt && test -z \"$(git ls-files deps)\" && test -z \"$(git status --porcelain deps)\"",
    ));
    let install = setup(&["sh", "install.sh"], &["deps.lock"]);
    let id = submit(
        &client,
        on_repo(&p.git.url("app"), steps, Some(install.clone())),
    )
    .await
    .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("every step found the seed fresh");
    let events = events_until_done(&client, &id).await;
    let ran = said(&events, "setup: no seed");
    assert_eq!(ran.len(), 1, "one setup for five steps: {ran:?}");
    let placed = said(&events, "put in place by overlay");
    assert_eq!(
        placed.len(),
        4,
        "the others took its seed, laid over their checkouts: {events:?}"
    );
    assert_eq!(
        said(&events, "installed left-pad").len(),
        1,
        "its output is the step's log"
    );
    // Each step's setup is an event of its own, and a line on its attempt
    // beside its cost.
    assert_eq!(
        sources(&events),
        [
            "ran",
            "worker overlay",
            "worker overlay",
            "worker overlay",
            "worker overlay"
        ]
    );
    let (_, made) = setups(&events)
        .into_iter()
        .find(|(_, s)| s.source == "ran")
        .expect("the setup that ran");
    assert_eq!(made.seed.len(), 64);
    assert!(made.files >= 2 && made.bytes > 0, "{made:?}");
    let ids = ["a", "b", "c", "d", "after"];
    for step in task.steps.iter().filter(|s| ids.contains(&s.id.as_str())) {
        let attempt = step.attempts.last().expect("an attempt");
        let kept = attempt.setup.as_ref().expect("its setup, kept");
        assert_eq!(kept.seed, made.seed, "{}", step.id);
        let (_, told) = setups(&events)
            .into_iter()
            .find(|(id, _)| id == &step.id)
            .expect("its event");
        assert_eq!(kept, &told, "{}", step.id);
    }
    // `get task` gives the setups' line beside the cost, and each
    // attempt's.
    let shown = stdout_of(p.server.cli().args(["get", "task", &id]));
    let line = shown
        .lines()
        .find(|l| l.starts_with("Setup:"))
        .unwrap_or_default();
    assert!(
        line.contains("over 5 attempt(s): ran 1 (") && line.contains("from seeds 4 ("),
        "{shown}"
    );
    assert!(shown.contains("worker overlay "), "{shown}");

    // A new lockfile: a new seed, made once, at the new version.
    p.git
        .commit("app", &[("deps.lock", "left-pad 2.0\n")], "Bump left-pad");
    let id = submit(
        &client,
        on_repo(
            &p.git.url("app"),
            vec![shell_step(
                "new",
                &[],
                "grep -q 'left-pad 2.0' deps/left-pad/VERSION",
            )],
            Some(install),
        ),
    )
    .await
    .expect("submit");
    wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("the new version installed");
    let events = events_until_done(&client, &id).await;
    assert_eq!(
        said(&events, "setup: no seed").len(),
        1,
        "a new key, a new seed"
    );
}

/// `tidewright seed list -o json`: the seeds the control plane keeps.
fn stored(server: &Server) -> Vec<serde_json::Value> {
    let listed = stdout_of(server.cli().args(["seed", "list", "-o", "json"]));
    serde_json::from_str(&listed).expect("seed list's JSON")
}

/// Runs a one-step task on `url` that checks the seed's file, on whichever
/// worker is connected; its log.
async fn checked(client: &Tasks, url: &str, install: &v1::SetupSpec) -> Vec<v1::Event> {
    let id = submit(
        client,
        on_repo(
            url,
            vec![shell_step(
                "s",
                &[],
                "test \"$(cat deps/left-pad/index.txt)\" = seeded",
            )],
            Some(install.clone()),
        ),
    )
    .await
    .expect("submit");
    wait_succeeded(client, &id, Duration::from_secs(60))
        .await
        .expect("the step found the seed's file");
    events_until_done(client, &id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_travels_to_other_workers_through_the_store_and_is_made_again_when_corrupt_or_dropped()
 {
    let mut p = project(&[]).await;
    let client = p.server.tasks().await.expect("client");
    let url = p.git.url("app");
    let install = setup(&["sh", "install.sh"], &["deps.lock"]);
    let events = checked(&client, &url, &install).await;
    assert_eq!(said(&events, "setup: no seed").len(), 1);
    // The worker sends it after its step: the store has it soon after.
    let seed = eventually(Duration::from_secs(60), || async {
        stored(&p.server).into_iter().next()
    })
    .await
    .expect("the seed reached the store");
    assert_eq!(seed["repo"], url.as_str());
    assert_eq!(seed["paths"], serde_json::json!(["deps"]));
    let key = seed["key"].as_str().expect("its key").to_string();

    // A second worker, with no seed of its own, takes the store's.
    p.worker.kill();
    let mut second = another_worker(&p.server, &p.secrets, "w2", &[]).await;
    let events = checked(&client, &url, &install).await;
    assert_eq!(
        said(&events, "taken from the control plane's store").len(),
        1,
        "{events:?}"
    );
    assert!(said(&events, "setup: no seed").is_empty(), "no setup ran");
    assert!(said(&events, "installed left-pad").is_empty());
    assert_eq!(sources(&events), ["store overlay"]);
    assert_eq!(stored(&p.server)[0]["uses"], 1);

    // Corrupt in the store: found by its hash, made again, and kept anew.
    second.kill();
    let blobs = p.server.data_dir.join("seeds/blobs");
    let blob = std::fs::read_dir(&blobs)
        .expect("the store's blobs")
        .next()
        .expect("one blob")
        .expect("its entry")
        .path();
    std::fs::write(&blob, b"not a seed").expect("corrupted");
    let _third = another_worker(&p.server, &p.secrets, "w3", &[]).await;
    let events = checked(&client, &url, &install).await;
    let refused = said(&events, "the stored seed is corrupt");
    assert_eq!(refused.len(), 1, "{events:?}");
    assert_eq!(said(&events, "installed left-pad").len(), 1, "made again");
    eventually(Duration::from_secs(60), || async {
        let seeds = stored(&p.server);
        seeds
            .first()
            .is_some_and(|s| s["key"] == key.as_str() && s["uses"] == 0)
            .then_some(())
    })
    .await
    .expect("kept anew");

    // Dropped: the worker's own copy goes too, and the setup runs again.
    let said_dropped = stdout_of(p.server.cli().args(["seed", "delete", &key[..12]]));
    assert!(
        said_dropped.starts_with(&format!("seed {} of {url} dropped", &key[..12])),
        "{said_dropped}"
    );
    assert!(stored(&p.server).is_empty());
    let events = checked(&client, &url, &install).await;
    assert_eq!(
        said(&events, "was dropped (tidewright seed delete)").len(),
        1,
        "{events:?}"
    );
    assert_eq!(said(&events, "installed left-pad").len(), 1);

    // Rebuilt: dropped, and made again at once by a task of its own.
    eventually(Duration::from_secs(60), || async {
        (!stored(&p.server).is_empty()).then_some(())
    })
    .await
    .expect("sent again");
    let rebuilt = stdout_of(p.server.cli().args(["seed", "rebuild", &key]));
    let task = rebuilt
        .split("; task ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("the rebuild's task")
        .to_string();
    wait_succeeded(&client, &task, Duration::from_secs(60))
        .await
        .expect("the rebuild ran");
    let events = events_until_done(&client, &task).await;
    assert_eq!(said(&events, "installed left-pad").len(), 1, "{events:?}");

    // Bad input: one line, naming the field, and nothing dropped.
    for (bad, says) in [
        ("xyz", "key: \"xyz\" is not a seed's key"),
        ("0123456789ab", "key: no seed 0123456789ab is kept"),
    ] {
        let line = fails_in_one_line(p.server.cli().args(["seed", "delete", bad]));
        assert!(line.contains(says), "{line}");
    }
    drop(p.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_seeds_and_drops_one() {
    let p = project(&[]).await;
    let client = p.server.tasks().await.expect("client");
    let url = p.git.url("app");
    let install = setup(&["sh", "install.sh"], &["deps.lock"]);
    checked(&client, &url, &install).await;
    eventually(Duration::from_secs(60), || async {
        (!stored(&p.server).is_empty()).then_some(())
    })
    .await
    .expect("the seed reached the store");
    checked(&client, &url, &install).await;

    let browser = tidewright_tests::browser::Browser::signed_in(
        p.dir.path(),
        &format!("http://{}/#/seeds", p.http),
        &p.server.admin_token,
    )
    .await;
    let row = browser
        .text_until("[data-test=seeds] tbody", Duration::from_secs(30), |t| {
            t.contains(&url)
        })
        .await
        .expect("the seed is shown");
    assert!(row.contains("deps"), "its paths: {row}");
    assert_eq!(
        browser
            .text("[data-test=seed-uses]")
            .await
            .expect("its uses"),
        "1",
        "the second step took it"
    );
    // Dropping takes a second click.
    browser.click("[data-test=drop-seed]").await.expect("drop");
    assert_eq!(stored(&p.server).len(), 1, "not at the first click");
    browser
        .click("[data-test=confirm-drop]")
        .await
        .expect("confirm");
    browser
        .text_until("[data-test=seeds] tbody", Duration::from_secs(30), |t| {
            t.contains("No seeds yet")
        })
        .await
        .expect("the seed is gone from the page");
    assert!(stored(&p.server).is_empty(), "and from the store");

    // Each task's step says its setup: on its attempt, and in its log.
    let mut told = Vec::new();
    for id in all_task_ids(&client).await.expect("listed") {
        browser
            .client
            .goto(&format!("http://{}/#/tasks/{id}", p.http))
            .await
            .expect("the task");
        browser
            .count_until("g[data-step=s]", 1, Duration::from_secs(30))
            .await
            .expect("its step drawn");
        browser.click("g[data-step=s]").await.expect("its step");
        let setup = browser
            .text_until("[data-test=attempt-setup]", Duration::from_secs(30), |t| {
                !t.is_empty()
            })
            .await
            .expect("its attempt's setup");
        browser
            .text_until("[data-test=log]", Duration::from_secs(30), |t| {
                // The event's line, not the worker's own.
                t.contains("setup: ran setup in") || t.contains("from this worker, laid over")
            })
            .await
            .expect("its setup in its log");
        told.push(setup);
    }
    told.sort();
    assert!(
        told.len() == 2 && told[0].starts_with("ran ") && told[1].starts_with("worker overlay "),
        "{told:?}"
    );
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_that_fails_or_has_no_key_or_is_too_large_is_not_kept_and_says_why() {
    let p = project(&["--max-seed-bytes", "16"]).await;
    let client = p.server.tasks().await.expect("client");
    let url = p.git.url("app");
    let run = |request: v1::SubmitTaskRequest| {
        let client = client.clone();
        async move {
            let id = submit(&client, request).await.expect("submit");
            let task = wait_finished(&client, &id, Duration::from_secs(60))
                .await
                .expect("finished");
            (task, events_until_done(&client, &id).await)
        }
    };

    // It fails: the step fails with its output, and nothing is kept.
    let failing = setup(
        &["sh", "-c", "echo cannot reach the registry >&2; exit 7"],
        &["deps.lock"],
    );
    for _ in 0..2 {
        let (task, events) = run(on_repo(
            &url,
            vec![shell_step("s", &[], "true")],
            Some(failing.clone()),
        ))
        .await;
        assert_eq!(task.state, v1::TaskState::Failed as i32);
        let error = &task.steps[0].error;
        assert!(
            error.starts_with("setup failed (") && error.contains("cannot reach the registry"),
            "{error}"
        );
        assert_eq!(
            said(&events, "setup: no seed").len(),
            1,
            "run again, not kept"
        );
        let told = setups(&events);
        assert!(told.len() == 1 && told[0].1.failed, "{told:?}");
    }

    // No key file in the checkout: it runs for every step, and says so.
    let keyless = setup(&["sh", "install.sh"], &["missing.lock"]);
    let (task, events) = run(on_repo(
        &url,
        vec![
            shell_step("one", &[], "test -f deps/left-pad/index.txt"),
            shell_step("two", &["one"], "test -f deps/left-pad/index.txt"),
        ],
        Some(keyless),
    ))
    .await;
    assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:?}");
    assert_eq!(said(&events, "it runs for every step").len(), 2);
    assert_eq!(said(&events, "installed left-pad").len(), 2);
    for (step, told) in setups(&events) {
        assert!(
            told.seed.is_empty() && told.source == "ran",
            "{step}: {told:?}"
        );
        assert!(told.note.contains("it runs for every step"), "{told:?}");
    }

    // Over the worker's --max-seed-bytes: the step has it, the seed is
    // not kept, and the next step runs the setup again.
    let (task, events) = run(on_repo(
        &url,
        vec![
            shell_step("one", &[], "test -f deps/left-pad/index.txt"),
            shell_step("two", &["one"], "test -f deps/left-pad/index.txt"),
        ],
        Some(setup(&["sh", "install.sh"], &["deps.lock"])),
    ))
    .await;
    assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:?}");
    let refused = said(&events, "over the worker's --max-seed-bytes 16");
    assert_eq!(refused.len(), 2, "{events:?}");
    for (step, told) in setups(&events) {
        assert!(told.note.contains("not kept"), "{step}: {told:?}");
    }

    // The repository's own setup file, when the task names none: a bad
    // one fails the step naming its field.
    p.git.commit(
        "app",
        &[(
            ".tidewright/setup.yaml",
            "setup:\n  run: []\n  paths: [deps]\n",
        )],
        "A setup file",
    );
    let (task, _) = run(on_repo(&url, vec![shell_step("s", &[], "true")], None)).await;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    assert!(
        task.steps[0]
            .error
            .starts_with("setup: .tidewright/setup.yaml: setup.run: is empty"),
        "{}",
        task.steps[0].error
    );
    drop(p.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_runs_with_its_own_timeout_limits_and_secrets_not_its_steps() {
    let p = project(&[]).await;
    let client = p.server.tasks().await.expect("client");
    let url = p.git.url("app");
    let finished = |setup: v1::SetupSpec, step: v1::StepSpec| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let id = submit(&client, on_repo(&url, vec![step], Some(setup)))
                .await
                .expect("submit");
            let task = wait_finished(&client, &id, Duration::from_secs(90))
                .await
                .expect("finished");
            (task, events_until_done(&client, &id).await)
        }
    };
    let allocating = |mib: u32| {
        format!("python3 -c 'b = bytearray({mib} * 1024 * 1024); print(len(b))' && sh install.sh")
    };
    // The step may have 32 MiB; its setup, its own 512 MiB, needs 128.
    let mut small = shell_step("s", &[], "test -f deps/left-pad/index.txt");
    small.limits = Some(v1::StepLimits {
        memory: "32MiB".into(),
        ..Default::default()
    });
    let roomy = v1::SetupSpec {
        limits: Some(v1::StepLimits {
            memory: "512MiB".into(),
            ..Default::default()
        }),
        ..setup(&["sh", "-c", &allocating(128)], &["deps.lock"])
    };
    let (task, _) = finished(roomy, small).await;
    assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:?}");

    // Its own 32 MiB, past which it ends as a step would, and is not kept.
    let tight = v1::SetupSpec {
        limits: Some(v1::StepLimits {
            memory: "32MiB".into(),
            ..Default::default()
        }),
        ..setup(&["sh", "-c", &allocating(256)], &["install.sh"])
    };
    let (task, events) = finished(tight, shell_step("s", &[], "true")).await;
    assert_eq!(task.state, v1::TaskState::Failed as i32, "{task:?}");
    let error = &task.steps[0].error;
    assert!(
        error.starts_with("setup failed (oom: memory limit 32 MiB)"),
        "{error}"
    );
    let told = setups(&events);
    assert!(told.len() == 1 && told[0].1.failed, "{told:?}");

    // Its own timeout, shorter than its step's.
    let mut patient = shell_step("s", &[], "true");
    patient.timeout_seconds = 600;
    let slow = v1::SetupSpec {
        timeout: "2s".into(),
        ..setup(&["sleep", "120"], &["deps.lock", "install.sh"])
    };
    let (task, events) = finished(slow, patient).await;
    assert_eq!(task.state, v1::TaskState::Failed as i32, "{task:?}");
    let error = &task.steps[0].error;
    assert!(
        error.starts_with("setup failed (timed out after 2s)"),
        "{error}"
    );
    let told = setups(&events);
    assert!(
        told.len() == 1 && told[0].1.failed && told[0].1.run_millis < 60_000,
        "{told:?}"
    );

    // Its own secret (a private registry's token): masked in its output,
    // never the step's.
    const TOKEN: &str = "registry-token-for-the-setup-only";
    std::fs::write(std::path::Path::new(&p.secrets).join("registry"), TOKEN).expect("secret");
    let private = |run: &str| v1::SetupSpec {
        secret_env: [("REGISTRY_TOKEN".to_string(), "registry".to_string())].into(),
        ..setup(&["sh", "-c", run], &["deps.lock"])
    };
    let (task, events) = finished(
        private("echo \"token: $REGISTRY_TOKEN\"; sh install.sh"),
        shell_step(
            "s",
            &[],
            "test -f deps/left-pad/index.txt && test -z \"$REGISTRY_TOKEN\"",
        ),
    )
    .await;
    assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:?}");
    assert_eq!(said(&events, "setup: token: ***").len(), 1, "{events:?}");
    assert!(!format!("{events:?}").contains(TOKEN), "masked everywhere");
    assert_eq!(sources(&events), ["ran"]);

    // Left in what the setup makes: the step fails, and nothing is kept.
    let (task, events) = finished(
        private("sh install.sh && echo \"//registry/:_authToken=$REGISTRY_TOKEN\" > deps/.npmrc"),
        shell_step("s", &[], "true"),
    )
    .await;
    assert_eq!(task.state, v1::TaskState::Failed as i32, "{task:?}");
    assert!(
        task.steps[0]
            .error
            .starts_with("setup: deps/.npmrc holds the setup's secret $REGISTRY_TOKEN"),
        "{}",
        task.steps[0].error
    );
    assert!(said(&events, "kept").is_empty(), "{events:?}");
    assert!(!format!("{events:?}{task:?}").contains(TOKEN));

    // A secret the worker does not have: the step fails naming it.
    let missing = v1::SetupSpec {
        secret_env: [("REGISTRY_TOKEN".to_string(), "nowhere".to_string())].into(),
        ..setup(&["sh", "install.sh"], &["deps.lock"])
    };
    let (task, _) = finished(missing, shell_step("s", &[], "true")).await;
    assert_eq!(task.state, v1::TaskState::Failed as i32, "{task:?}");
    assert!(
        task.steps[0]
            .error
            .starts_with("setup: secret \"nowhere\" for $REGISTRY_TOKEN"),
        "{}",
        task.steps[0].error
    );
    drop(p.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setup_is_refused_at_submit_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("app", &[("deps.lock", "x\n")]);
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--allow-local-repos"]).expect("server");
    let client = server.tasks().await.expect("client");
    let cases = [
        (setup(&[], &["deps.lock"]), "spec.repo.setup.run: is empty"),
        (
            v1::SetupSpec {
                paths: vec!["../outside".into()],
                ..setup(&["true"], &[])
            },
            "spec.repo.setup.paths[0]: \"../outside\" is outside the repository",
        ),
        (
            v1::SetupSpec {
                paths: Vec::new(),
                ..setup(&["true"], &[])
            },
            "spec.repo.setup.paths: is empty",
        ),
        (
            v1::SetupSpec {
                timeout: "soon".into(),
                ..setup(&["true"], &[])
            },
            "spec.repo.setup.timeout: \"soon\": a duration is like 90s",
        ),
        (
            v1::SetupSpec {
                limits: Some(v1::StepLimits {
                    memory: "lots".into(),
                    ..Default::default()
                }),
                ..setup(&["true"], &[])
            },
            "spec.repo.setup.limits.memory: \"lots\" is not a size",
        ),
        (
            v1::SetupSpec {
                secret_env: [("TOKEN".to_string(), "../etc/passwd".to_string())].into(),
                ..setup(&["true"], &[])
            },
            "spec.repo.setup.secretEnv[\"TOKEN\"]: secret name",
        ),
    ];
    for (bad, says) in cases {
        let refused = client
            .clone()
            .submit_task(on_repo(
                &git.url("app"),
                vec![shell_step("s", &[], "true")],
                Some(bad),
            ))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().starts_with(says), "{}", refused.message());
    }
    assert!(
        all_task_ids(&client).await.expect("listed").is_empty(),
        "nothing stored"
    );
}

/// `served` over HTTP at `addr` on the loopback (`python3 -m http.server`),
/// once it answers: a package index of files.
async fn serving(dir: &std::path::Path, served: &std::path::Path, addr: &str) -> Process {
    let port = addr.rsplit(':').next().expect("a port");
    let index = Process::spawn(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                port,
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(served),
        dir,
        "index",
    )
    .expect("the index");
    eventually(Duration::from_secs(30), || async {
        http_get(addr, "/", None).ok().filter(|(s, _)| *s == 200)
    })
    .await
    .expect("the index serves");
    index
}

/// A git server with `files` as repository `app`, a control plane, and a
/// sandboxed shell worker that may reach `index`.
async fn project_reaching(
    dir: &std::path::Path,
    index: &str,
    files: &[(&str, &str)],
) -> (GitServer, Server, Process) {
    let calc::Served {
        git,
        secrets,
        server,
        ..
    } = calc::served(dir, &[]).expect("a git server and a control plane");
    git.create_repo("app", files);
    let allow = format!("--egress-allow={index}");
    let worker = another_worker(&server, &secrets, "w1", &[&allow]).await;
    (git, server, worker)
}

/// Three steps at once and one after them run the project's tests on
/// `setup`'s seed: one setup ran, the others took its seed, every test
/// passed.
async fn tests_run_on_one_seed(git: &GitServer, server: &Server, setup: v1::SetupSpec, test: &str) {
    let client = server.tasks().await.expect("client");
    let ids = ["a", "b", "c"];
    let mut steps: Vec<v1::StepSpec> = ids.iter().map(|id| shell_step(id, &[], test)).collect();
    steps.push(shell_step("after", &ids, test));
    let id = submit(&client, on_repo(&git.url("app"), steps, Some(setup)))
        .await
        .expect("submit");
    let task = wait_finished(&client, &id, Duration::from_secs(240))
        .await
        .expect("finished");
    let events = events_until_done(&client, &id).await;
    assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{events:?}");
    assert_eq!(said(&events, "setup: no seed").len(), 1, "one setup");
    assert_eq!(
        said(&events, "put in place by").len(),
        3,
        "the others took its seed"
    );
    assert_eq!(
        said(&events, "tests pass").len(),
        4,
        "every step's tests ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_projects_packages_come_from_pip_once_and_its_tests_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The index: a wheel (PEP 427), built here, in a directory pip finds
    // its links in.
    let served = dir.path().join("wheels");
    std::fs::create_dir_all(&served).expect("wheels dir");
    succeed(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(WHEEL)
            .arg(&served),
    );
    let index = free_addr();
    let _index = serving(dir.path(), &served, &index).await;
    let (git, server, _worker) = project_reaching(
        dir.path(),
        &index,
        &[
            ("requirements.txt", "tinypad==1.0\n"),
            (
                "test_pad.py",
                "import sys\nsys.path.insert(0, 'deps')\nimport tinypad\nassert tinypad.pad(5, 3) == '005'\nprint('tests pass')\n",
            ),
        ],
    )
    .await;
    let pip = v1::SetupSpec {
        run: [
            "python3",
            "-m",
            "pip",
            "install",
            "--no-index",
            "--disable-pip-version-check",
            "--find-links",
            &format!("http://{index}/"),
            "--target",
            "deps",
            "-r",
            "requirements.txt",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        key: vec!["requirements.txt".into()],
        paths: vec!["deps".into()],
        ..Default::default()
    };
    tests_run_on_one_seed(&git, &server, pip, "python3 test_pad.py").await;
}

/// Writes the wheel `tinypad-1.0-py3-none-any.whl` into the directory
/// `sys.argv[1]`: its module, and its METADATA, WHEEL and RECORD (each
/// file's sha256, as PEP 427 says).
const WHEEL: &str = r#"
import base64, hashlib, os, sys, zipfile
files = {
    "tinypad/__init__.py": "def pad(s, n):\n    return str(s).rjust(n, '0')\n",
    "tinypad-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypad\nVersion: 1.0\n",
    "tinypad-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tidewright-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(text.encode())}")
record.append("tinypad-1.0.dist-info/RECORD,,")
files["tinypad-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(os.path.join(sys.argv[1], "tinypad-1.0-py3-none-any.whl"), "w") as wheel:
    for name, text in files.items():
        wheel.writestr(name, text)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_projects_crates_come_from_cargo_once_and_its_tests_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The registry: a sparse index and its one crate, as `cargo package`
    // makes it, served from a directory.
    let served = dir.path().join("registry");
    let index = free_addr();
    let registry_config = format!("[registries.local]\nindex = \"sparse+http://{index}/index/\"\n");
    crate_registry(dir.path(), &served, &index);
    let _index = serving(dir.path(), &served, &index).await;
    // The project, its lockfile made against the registry.
    let app = dir.path().join("app");
    let manifest = "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ntinypad = { version = \"0.1\", registry = \"local\" }\n";
    let main = "fn main() {\n    assert_eq!(tinypad::pad(5, 3), \"005\");\n    println!(\"tests pass\");\n}\n";
    std::fs::create_dir_all(app.join("src")).expect("app");
    std::fs::create_dir_all(app.join(".cargo")).expect("app");
    std::fs::write(app.join("Cargo.toml"), manifest).expect("manifest");
    std::fs::write(app.join("src/main.rs"), main).expect("main");
    std::fs::write(app.join(".cargo/config.toml"), &registry_config).expect("config");
    succeed(
        std::process::Command::new("cargo")
            .args(["generate-lockfile"])
            .env("CARGO_HOME", dir.path().join("cargo-home"))
            .current_dir(&app),
    );
    let lock = std::fs::read_to_string(app.join("Cargo.lock")).expect("the lockfile");
    let (git, server, _worker) = project_reaching(
        dir.path(),
        &index,
        &[
            ("Cargo.toml", manifest),
            ("Cargo.lock", &lock),
            ("src/main.rs", main),
            (".cargo/config.toml", &registry_config),
            (".gitignore", "/target\n"),
        ],
    )
    .await;
    // The crates go into a cargo home in the checkout, the seed's path;
    // each step builds against it, offline.
    let fetch = v1::SetupSpec {
        run: [
            "sh",
            "-c",
            "CARGO_HOME=\"$PWD/.cargo-home\" cargo fetch --locked",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        key: vec!["Cargo.lock".into()],
        paths: vec![".cargo-home".into()],
        ..Default::default()
    };
    tests_run_on_one_seed(
        &git,
        &server,
        fetch,
        "CARGO_HOME=\"$PWD/.cargo-home\" cargo run --offline --locked -q",
    )
    .await;
}

/// A sparse cargo registry in `served` at `addr`: its config, the index
/// entry of crate `tinypad` 0.1.0, and the crate as `cargo package` packs
/// it (its sha256 in the entry).
fn crate_registry(dir: &std::path::Path, served: &std::path::Path, addr: &str) {
    let source = dir.join("tinypad");
    std::fs::create_dir_all(source.join("src")).expect("crate");
    std::fs::write(
        source.join("Cargo.toml"),
        "[package]\nname = \"tinypad\"\nversion = \"0.1.0\"\nedition = \"2021\"\ndescription = \"pads\"\nlicense = \"MIT\"\n",
    )
    .expect("manifest");
    std::fs::write(
        source.join("src/lib.rs"),
        "pub fn pad(s: u32, n: usize) -> String {\n    format!(\"{s:0>n$}\")\n}\n",
    )
    .expect("lib");
    succeed(
        std::process::Command::new("cargo")
            .args(["package", "--allow-dirty", "--no-verify", "--offline", "-q"])
            .env("CARGO_HOME", dir.join("cargo-home"))
            .env("CARGO_TARGET_DIR", dir.join("tinypad-target"))
            .current_dir(&source),
    );
    let packed = std::fs::read(dir.join("tinypad-target/package/tinypad-0.1.0.crate"))
        .expect("the packed crate");
    use sha2::Digest;
    let cksum = tidewright_core::hex(&sha2::Sha256::digest(&packed));
    std::fs::create_dir_all(served.join("index/ti/ny")).expect("index");
    std::fs::create_dir_all(served.join("crates")).expect("crates");
    std::fs::write(served.join("crates/tinypad-0.1.0.crate"), packed).expect("crate");
    std::fs::write(
        served.join("index/config.json"),
        format!(r#"{{"dl": "http://{addr}/crates/{{crate}}-{{version}}.crate"}}"#),
    )
    .expect("config");
    std::fs::write(
        served.join("index/ti/ny/tinypad"),
        format!(
            r#"{{"name":"tinypad","vers":"0.1.0","deps":[],"cksum":"{cksum}","features":{{}},"yanked":false}}"#
        ) + "\n",
    )
    .expect("entry");
}

/// A package as npm packs it, served from a directory of tarballs: its
/// tarball's URL and integrity, as a lockfile records them.
fn packed(dir: &std::path::Path, served: &std::path::Path, addr: &str) -> (String, String) {
    let package = dir.join("left-pad");
    std::fs::create_dir_all(&package).expect("package dir");
    std::fs::write(
        package.join("package.json"),
        r#"{"name": "left-pad", "version": "1.0.0", "main": "index.js"}"#,
    )
    .expect("package.json");
    std::fs::write(
        package.join("index.js"),
        "module.exports = (s, n) => String(s).padStart(n, '0');\n",
    )
    .expect("index.js");
    let out = succeed(
        std::process::Command::new("npm")
            .args(["pack", "--json", "--pack-destination"])
            .arg(served)
            .current_dir(&package),
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).expect("npm pack's JSON");
    let integrity = said[0]["integrity"]
        .as_str()
        .expect("integrity")
        .to_string();
    let file = said[0]["filename"].as_str().expect("filename");
    (format!("http://{addr}/{file}"), integrity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_npm_projects_node_modules_come_from_one_seed_and_its_tests_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The registry: tarballs over HTTP on the loopback, as the lockfile
    // names them.
    let served = dir.path().join("registry");
    std::fs::create_dir_all(&served).expect("registry dir");
    let registry = free_addr();
    let (url, integrity) = packed(dir.path(), &served, &registry);
    let _registry = serving(dir.path(), &served, &registry).await;

    let calc::Served {
        git,
        secrets,
        server,
        ..
    } = calc::served(dir.path(), &[]).expect("a git server and a control plane");
    let lock = serde_json::json!({
        "name": "web", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
        "packages": {
            "": {"name": "web", "version": "1.0.0", "dependencies": {"left-pad": "1.0.0"}},
            "node_modules/left-pad": {"version": "1.0.0", "resolved": url, "integrity": integrity}
        }
    });
    git.create_repo(
        "web",
        &[
            (
                "package.json",
                r#"{"name": "web", "version": "1.0.0", "dependencies": {"left-pad": "1.0.0"}, "scripts": {"test": "node test.js"}}"#,
            ),
            ("package-lock.json", &lock.to_string()),
            (
                "test.js",
                "const pad = require('left-pad');\nif (pad(5, 3) !== '005') { console.error('pad is wrong'); process.exit(1); }\nconsole.log('tests pass');\n",
            ),
        ],
    );
    // Four Claude Code agents at once each run the project's tests, then
    // break their own copy of the dependency; a step after them runs the
    // tests again.
    let ids = ["a", "b", "c", "d"];
    let prompt = |id: &str| format!("Run the tests of part {id}.");
    let test_then_break =
        "npm test && echo 'module.exports = () => 0;' > node_modules/left-pad/index.js";
    let prompts: Vec<String> = ids.iter().map(|id| prompt(id)).collect();
    let claude = Mock::start_routed(
        Api::Anthropic,
        prompts
            .iter()
            .map(|p| {
                (
                    p.as_str(),
                    vec![
                        Reply::claude_bash(test_then_break),
                        Reply::Text("Done.".into()),
                    ],
                )
            })
            .collect(),
    )
    .await
    .expect("claude mock");
    let codex = Mock::start(Api::OpenAi, Vec::new())
        .await
        .expect("codex mock");
    let gemini = Mock::start(Api::Google, Vec::new())
        .await
        .expect("gemini mock");
    let allow = format!("--egress-allow={registry}");
    let _worker = start_three_runtime_worker(
        (&server, dir.path(), "w1"),
        (&claude.url, &codex.url, &gemini.url),
        (&["claude-code", "shell"], 4),
        &["--secrets-dir", &secrets, &allow],
    )
    .expect("worker");
    server.wait_for_agents(&["w1"]).await.expect("worker up");
    let client = server.tasks().await.expect("client");
    let mut steps: Vec<v1::StepSpec> = ids
        .iter()
        .map(|id| claude_step(id, &prompt(id), &["Bash"]))
        .collect();
    steps.push(shell_step("after", &ids, "npm test"));
    let npm_ci = v1::SetupSpec {
        run: ["npm", "ci", "--no-audit", "--no-fund"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        key: vec!["package-lock.json".into()],
        paths: vec!["node_modules".into()],
        ..Default::default()
    };
    let id = submit(&client, on_repo(&git.url("web"), steps, Some(npm_ci)))
        .await
        .expect("submit");
    wait_succeeded(&client, &id, Duration::from_secs(180))
        .await
        .expect("every step's tests ran on the seed");
    let events = events_until_done(&client, &id).await;
    assert_eq!(said(&events, "setup: no seed").len(), 1, "one npm ci");
    assert_eq!(said(&events, "put in place by").len(), 4);
    // Each agent's run of the tests passed: its tool's output went back to
    // the model.
    let passed = claude
        .requests()
        .iter()
        .filter(|r| r.to_string().contains("tests pass"))
        .count();
    assert_eq!(passed, 4, "each agent ran the tests on the seed");
    let after: Vec<String> = said(&events, "tests pass")
        .into_iter()
        .filter(|step| step == "after")
        .collect();
    assert_eq!(after.len(), 1, "and the step after them, on a fresh copy");
}
