//! Tasks that land through their base's queue, on a real repository
//! served by the real git server, with real checks (Python's unittest):
//! they land one at a time, each on the tip the last one left, checked
//! there; one whose work conflicts with what landed before it fails naming
//! the paths; one whose work passes alone but fails merged onto the tip
//! leaves the base as it was; and every commit the base gets passed its
//! checks. The queue and each task's place are seen while they wait. Bad
//! landings are refused at submit.

use std::path::Path;
use std::time::Duration;

use tidewright_api::v1;
pub(crate) use tidewright_tests::calc::{RIGHT as CALC, TEST as CALC_TEST};
use tidewright_tests::git_server::{GitServer, PASSWORD, account_secrets, secret_holding_worker};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

fn control_plane(dir: &Path) -> Server {
    let secrets = account_secrets(dir, "repo-secrets", "git-creds").expect("secrets");
    Server::start_on(
        &dir.join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )
    .expect("server")
}

/// A worker whose steps (and checks) share the test's directory `dir`,
/// the git server's disk among it.
fn worker(server: &Server, dir: &Path) -> Process {
    secret_holding_worker(&server.url, dir, "lander", 4, &server.worker_token).expect("worker")
}

/// A task on `app` whose one step runs `script`, landing on main.
fn landing(git: &GitServer, name: &str, script: &str) -> v1::SubmitTaskRequest {
    let mut request = task_on_repo(name, vec![shell_step("work", &[], script)], &git.url("app"));
    if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.land = Some(v1::LandSpec {
            method: "queue".into(),
            base: String::new(),
            checks: vec![unittest_check()],
            ..v1::LandSpec::default()
        });
    }
    request
}

/// A landing's checks hold at `gate`, then run the tests.
pub(crate) fn gated_landing(git: &GitServer, name: &str, gate: &Path) -> v1::SubmitTaskRequest {
    let mut request = landing(git, name, &format!("printf 'x = 1\\n' > {name}.py"));
    if let Some(land) = request
        .spec
        .as_mut()
        .and_then(|s| s.repo.as_mut())
        .and_then(|r| r.land.as_mut())
    {
        land.checks = vec![v1::CheckSpec {
            name: "tests".into(),
            run: vec![
                "sh".into(),
                "-c".into(),
                format!("{} && python3 -m unittest -q", wait_for_gate(gate)),
            ],
            timeout: "2m".into(),
        }];
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_land_in_turn_on_the_tip_and_one_whose_work_conflicts_fails_naming_its_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    let first = git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let server = control_plane(dir.path());
    let _worker = worker(&server, dir.path());
    let client = server.tasks().await.expect("client");
    let twice = "from calc import add\n\ntwice = lambda a: add(a, a)\n";
    let twice_test = "import unittest\n\nfrom twice import twice\n\n\nclass TestTwice(unittest.TestCase):\n    def test_twice(self):\n        self.assertEqual(twice(4), 8)\n";
    let requests = [
        landing(
            &git,
            "twice",
            &format!("printf '{twice}' > twice.py && printf '{twice_test}' > test_twice.py"),
        ),
        landing(
            &git,
            "swap",
            "printf 'add = lambda a, b: b + a\\n' > calc.py",
        ),
        landing(
            &git,
            "paren",
            "printf 'add = lambda a, b: (a + b)\\n' > calc.py",
        ),
    ];
    let mut ids = Vec::new();
    for request in requests {
        ids.push(submit(&client, request).await.expect("submit"));
    }
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(
            wait_finished(&client, id, Duration::from_secs(120))
                .await
                .expect("finished"),
        );
    }
    assert_eq!(
        tasks[0].state,
        v1::TaskState::Succeeded as i32,
        "{:?}",
        tasks[0]
    );
    // swap and paren change the same line: whichever lands second finds
    // the other's work on the tip, and fails naming the path.
    let (landed, bounced): (Vec<&v1::Task>, Vec<&v1::Task>) = tasks[1..]
        .iter()
        .partition(|t| t.state == v1::TaskState::Succeeded as i32);
    assert_eq!((landed.len(), bounced.len()), (1, 1), "{tasks:?}");
    let deliver = step(bounced[0], "deliver");
    assert!(
        deliver
            .error
            .starts_with("landing on main: the task's work conflicts with main at ")
            && deliver.error.ends_with(": calc.py"),
        "{}",
        deliver.error
    );
    assert_eq!(
        deliver.attempts.len(),
        1,
        "a conflict is a verdict, not retried: {:?}",
        deliver.attempts
    );
    // Each landing's verdict is a round of the deliver step's, in the
    // task's events.
    let verdicts = |task: &v1::Task| {
        let id = task.id.clone();
        let mut client = client.clone();
        async move {
            task_events(&mut client, &id, 0, false)
                .await
                .expect("events")
                .into_iter()
                .filter_map(|e| match e.kind {
                    Some(v1::event::Kind::Verification(v)) if v.step_id == "deliver" => {
                        Some((v.passed, v.message))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        }
    };
    let said = verdicts(landed[0]).await;
    assert!(
        said.len() == 1 && said[0].0 && said[0].1.starts_with("landed on main at "),
        "{said:?}"
    );
    let said = verdicts(bounced[0]).await;
    assert!(
        said.len() == 1 && !said[0].0 && said[0].1 == deliver.error,
        "{said:?}"
    );
    // `get task` says where each lands and how it stands.
    let shown = |id: &str| {
        String::from_utf8_lossy(&succeed(server.cli().args(["get", "task", id])).stdout).to_string()
    };
    let landed_shown = shown(&landed[0].id);
    assert!(
        landed_shown.contains("Lands:     on main through its queue, checked by tests; landed at "),
        "{landed_shown}"
    );
    let bounced_shown = shown(&bounced[0].id);
    assert!(
        bounced_shown.contains(&format!(
            "Lands:     on main through its queue, checked by tests; not landed: {}",
            deliver.error
        )),
        "{bounced_shown}"
    );
    // Two landings on main, each on the tip the one before left, and every
    // commit main has passes its checks.
    let history = git.main_history_tested("app", dir.path());
    assert_eq!(
        history.len(),
        3,
        "the first commit and two landings: {history:?}"
    );
    assert!(history.iter().all(|(_, passed)| *passed), "{history:?}");
    assert_eq!(
        history.last().map(|(c, _)| c.as_str()),
        Some(first.as_str())
    );
    for task in [&tasks[0], landed[0]] {
        let output: serde_json::Value =
            serde_json::from_str(&step(task, "deliver").output_json).expect("output");
        let landed = output["landed"].as_str().expect("landed");
        assert!(
            history.iter().any(|(c, _)| c == landed),
            "{landed} is on main: {history:?}"
        );
        assert_eq!(output["base"], "main");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_passes_alone_and_fails_on_the_tip_leaves_the_base_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    let first = git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    // main moves on: add is renamed plus.
    let renamed = git.commit(
        "app",
        &[
            ("calc.py", "plus = lambda a, b: a + b\n"),
            ("test_calc.py", &CALC_TEST.replace("add", "plus")),
        ],
        "rename add to plus",
    );
    let server = control_plane(dir.path());
    let _worker = worker(&server, dir.path());
    let client = server.tasks().await.expect("client");
    // The task starts from before the rename, and uses add: green alone.
    let mut request = landing(
        &git,
        "uses-add",
        "printf 'import unittest\\n\\nfrom calc import add\\n\\n\\nclass T(unittest.TestCase):\\n    def test_it(self):\\n        self.assertEqual(add(1, 1), 2)\\n' > test_uses.py",
    );
    if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.commit = first.clone();
    }
    let id = submit(&client, request).await.expect("submit");
    let task = wait_finished(&client, &id, Duration::from_secs(120))
        .await
        .expect("finished");
    assert_eq!(task.state, v1::TaskState::Failed as i32, "{task:?}");
    let deliver = step(&task, "deliver");
    assert!(
        deliver
            .error
            .starts_with("landing on main: the checks failed on the task's work merged onto ")
            && deliver
                .error
                .contains("(main stays as it is): tests failed (exit 1)"),
        "{}",
        deliver.error
    );
    assert_eq!(
        deliver.attempts.len(),
        1,
        "failing checks are a verdict, not retried: {:?}",
        deliver.attempts
    );
    let round = deliver.attempts[0]
        .verification
        .as_ref()
        .expect("the landing's checks are kept");
    assert!(
        !round.checks[0].passed && round.checks[0].tail.contains("ImportError"),
        "{round:?}"
    );
    assert_eq!(git.rev_parse("app", "main"), renamed, "main is as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_that_moves_while_the_landing_is_checked_is_landed_on_again_from_its_new_tip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    // A person's clone of the repository, beside the server's disk.
    let work = dir.path().join("git-server").join("work-app");
    git.commit("app", &[("NOTES.md", "notes\n")], "notes");
    // The landing's check moves main the first time it runs, as a push from
    // outside the queue would, then runs the tests.
    let mark = dir.path().join("moved-once");
    let check = dir.path().join("check.sh");
    std::fs::write(
        &check,
        format!(
            "set -e\nif [ ! -e {mark} ]; then\n  touch {mark}\n  cd {work}\n  echo moved >> NOTES.md\n  git -c user.name=p -c user.email=p@example.com commit -qam 'a push from outside'\n  git push -q origin main\n  cd -\nfi\nexec python3 -m unittest -q\n",
            mark = mark.display(),
            work = work.display()
        ),
    )
    .expect("check");
    let server = control_plane(dir.path());
    let _worker = worker(&server, dir.path());
    let client = server.tasks().await.expect("client");
    let mut request = landing(&git, "adds", "printf 'x = 1\\n' > x.py");
    if let Some(land) = request
        .spec
        .as_mut()
        .and_then(|s| s.repo.as_mut())
        .and_then(|r| r.land.as_mut())
    {
        land.checks = vec![v1::CheckSpec {
            name: "tests".into(),
            run: vec!["sh".into(), check.display().to_string()],
            timeout: "2m".into(),
        }];
    }
    let id = submit(&client, request).await.expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("landed");
    assert!(mark.exists(), "the base moved under the first landing");
    let deliver = step(&task, "deliver");
    assert_eq!(
        deliver.attempts.len(),
        1,
        "landed again within its attempt: {:?}",
        deliver.attempts
    );
    let logs =
        String::from_utf8_lossy(&succeed(server.cli().args(["logs", &id])).stdout).to_string();
    assert!(
        logs.contains("while its checks ran; landing again"),
        "{logs}"
    );
    let moved = git.rev_parse("app", "main^1");
    assert_eq!(
        git.inside("app", &["log", "-1", "--format=%s", &moved]),
        "a push from outside",
        "the landing's first parent is the tip it moved to"
    );
    let output: serde_json::Value =
        serde_json::from_str(&step(&task, "deliver").output_json).expect("output");
    assert_eq!(output["tip"].as_str(), Some(moved.as_str()));
    assert_eq!(
        output["landed"].as_str(),
        Some(git.rev_parse("app", "main").as_str())
    );
    let history = git.main_history_tested("app", dir.path());
    assert!(history.iter().all(|(_, passed)| *passed), "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_each_tasks_place_in_it_are_seen_while_a_landing_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
    let http = free_addr();
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &[
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--http-listen",
            &http,
        ],
    )
    .expect("server");
    let _worker = worker(&server, dir.path());
    let client = server.tasks().await.expect("client");
    // Each landing's check waits for the gate, so the first to land holds
    // the others in the queue until the test has looked.
    let gate = dir.path().join("gates").join("open");
    std::fs::create_dir_all(gate.parent().expect("gates")).expect("gates");
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let request = gated_landing(&git, name, &gate);
        ids.push(submit(&client, request).await.expect("submit"));
    }
    let listed = || {
        let out = succeed(server.cli().args(["get", "landings", "-o", "json"]));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let queue = eventually(Duration::from_secs(60), || async {
        let queues = listed();
        (queues[0]["tasks"].as_array().map(Vec::len) == Some(3)).then(|| queues[0].clone())
    })
    .await
    .expect("all three in main's queue");
    assert_eq!(queue["base"], "main");
    assert_eq!(queue["repoUrl"], git.url("app").trim_end_matches(".git"));
    let tasks = queue["tasks"].as_array().expect("tasks");
    let states: Vec<bool> = tasks.iter().map(|t| t["landing"] == true).collect();
    assert_eq!(states, [true, false, false], "one lands, two wait: {queue}");
    assert!(
        tasks.iter().all(|t| t["since"].is_string()),
        "each says since when it lands or waits: {queue}"
    );
    let landing_now = tasks[0]["taskId"].as_str().expect("id").to_string();
    // The two waiting are in the order their tasks were made.
    let waiting: Vec<&str> = tasks[1..]
        .iter()
        .map(|t| t["taskId"].as_str().expect("id"))
        .collect();
    let expected: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|id| *id != landing_now)
        .collect();
    assert_eq!(waiting, expected);
    // `get task` says the last one's place; the table and the HTTP API
    // list the same queue.
    let shown =
        String::from_utf8_lossy(&succeed(server.cli().args(["get", "task", waiting[1]])).stdout)
            .to_string();
    assert!(
        shown.contains(&format!(
            "Queued:    step deliver waits: place 3 of 3 in the queue to land on main, after task {landing_now} (landing now)"
        )),
        "{shown}"
    );
    let table = String::from_utf8_lossy(&succeed(server.cli().args(["get", "landings"])).stdout)
        .to_string();
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert!(
        rows.len() == 3
            && rows[0].contains(&landing_now)
            && rows[0].contains(" landing ")
            && rows[2].contains(waiting[1])
            && rows[2].contains(" waiting "),
        "{table}"
    );
    let (status, body) =
        http_get(&http, "/api/v1/landings", Some(&server.admin_token)).expect("GET");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        answer["queues"][0]["tasks"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    // A tenant that is no tenant's name is refused, naming the field.
    let refused = server
        .cli()
        .args(["get", "landings", "--tenant", "Not A Tenant"])
        .output()
        .expect("cli");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tenants[0]"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::write(&gate, "").expect("open the gate");
    for id in &ids {
        wait_succeeded(&client, id, Duration::from_secs(120))
            .await
            .expect("landed");
    }
    let table = String::from_utf8_lossy(&succeed(server.cli().args(["get", "landings"])).stdout)
        .to_string();
    assert_eq!(table.trim(), "No task is landing or waiting to land.");
    let (_, metrics) = http_get(&http, "/metrics", Some(&server.admin_token)).expect("scrape");
    assert!(
        metrics
            .lines()
            .any(|l| l == "tidewright_landing_wait_seconds_count 3"),
        "{metrics}"
    );
}

/// A gated landing whose one step says it touches `touches`: tasks whose
/// touches cannot overlap land together.
pub(crate) fn touching(
    git: &GitServer,
    name: &str,
    script: &str,
    touches: &[&str],
    gate: &Path,
) -> v1::SubmitTaskRequest {
    let mut request = gated_landing(git, name, gate);
    if let Some(spec) = request.spec.as_mut() {
        spec.steps[0] = shell_step("work", &[], script);
        spec.steps[0].touches = touches.iter().map(|t| t.to_string()).collect();
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_touch_apart_land_in_one_checked_merge_and_a_red_batch_is_split_to_its_culprit()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let server = control_plane(dir.path());
    let _worker = worker(&server, dir.path());
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gates").join("open");
    std::fs::create_dir_all(gate.parent().expect("gates")).expect("gates");
    let test_of = |name: &str, body: &str| {
        format!(
            "printf 'import unittest\\n\\n\\nclass T(unittest.TestCase):\\n    def test_it(self):\\n        {body}\\n' > test_{name}.py"
        )
    };
    // "first" lands alone, and holds the queue at the gate until the
    // others wait their turn behind it.
    let first = submit(
        &client,
        touching(
            &git,
            "first",
            "printf 'x = 1\\n' > first.py",
            &["first.py"],
            &gate,
        ),
    )
    .await
    .expect("submit");
    let listed = || {
        let out = succeed(server.cli().args(["get", "landings", "-o", "json"]));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    eventually(Duration::from_secs(60), || async {
        (listed()[0]["tasks"][0]["landing"] == true).then_some(())
    })
    .await
    .expect("first lands");
    // b and c are green wherever they land; d is green alone, and fails
    // once first's work is on main: it breaks the batch.
    let mut ids = Vec::new();
    for (name, script) in [
        ("b", test_of("b", "self.assertTrue(True)")),
        ("c", test_of("c", "self.assertTrue(True)")),
        (
            "d",
            test_of(
                "d",
                "import os; self.assertFalse(os.path.exists(\"first.py\"))",
            ),
        ),
    ] {
        let request = touching(&git, name, &script, &[&format!("test_{name}.py")], &gate);
        ids.push(submit(&client, request).await.expect("submit"));
    }
    eventually(Duration::from_secs(60), || async {
        (listed()[0]["tasks"].as_array().map(Vec::len) == Some(4)).then_some(())
    })
    .await
    .expect("b, c and d wait behind first");
    std::fs::write(&gate, "").expect("open the gate");
    let first = wait_finished(&client, &first, Duration::from_secs(120))
        .await
        .expect("first");
    assert_eq!(first.state, v1::TaskState::Succeeded as i32, "{first:?}");
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(
            wait_finished(&client, id, Duration::from_secs(120))
                .await
                .expect("finished"),
        );
    }
    let states: Vec<bool> = tasks
        .iter()
        .map(|t| t.state == v1::TaskState::Succeeded as i32)
        .collect();
    assert_eq!(
        states,
        [true, true, false],
        "b and c land, d does not: {tasks:?}"
    );
    // b and c landed in one commit, after the red batch of three was split.
    let (b, c, d) = (
        step(&tasks[0], "deliver"),
        step(&tasks[1], "deliver"),
        step(&tasks[2], "deliver"),
    );
    let output = |s: &v1::Step| -> serde_json::Value {
        serde_json::from_str(&s.output_json).expect("output")
    };
    assert_eq!(output(b)["landed"], output(c)["landed"], "{b:?} {c:?}");
    assert_eq!(output(c)["batch"], tasks[0].id.as_str());
    let shown =
        String::from_utf8_lossy(&succeed(server.cli().args(["get", "task", &tasks[1].id])).stdout)
            .to_string();
    assert!(
        shown.contains(&format!(
            ", in one checked merge with task {}'s work",
            tasks[0].id
        )),
        "{shown}"
    );
    assert!(
        b.attempts[0].error.contains("the batch is split"),
        "b's first landing was the red batch: {:?}",
        b.attempts
    );
    assert!(
        d.error.contains("the checks failed") && d.error.contains("test_d"),
        "d's verdict names its failure: {}",
        d.error
    );
    // main got first's landing and b and c's, each passing its checks:
    // never the red batch.
    let history = git.main_history_tested("app", dir.path());
    assert_eq!(
        history.len(),
        3,
        "the first commit and two landings: {history:?}"
    );
    assert!(history.iter().all(|(_, passed)| *passed), "{history:?}");
    let landed = output(b)["landed"].as_str().expect("landed").to_string();
    assert_eq!(history[0].0, landed);
    let parents = git_output(dir.path(), &git, &landed);
    assert_eq!(
        parents.split_whitespace().count(),
        4,
        "the commit, main's tip and b's and c's heads: {parents}"
    );
}

fn git_output(dir: &Path, git: &GitServer, commit: &str) -> String {
    tidewright_tests::git_server::git(
        dir,
        &[
            "--git-dir",
            &git.root().join("app.git").display().to_string(),
            "rev-list",
            "--parents",
            "-n",
            "1",
            commit,
        ],
    )
}

/// The agent's calls that read `file` and write `content` over it, then
/// say `done`.
fn rewrites(file: &str, content: &str, done: &str) -> Vec<Reply> {
    vec![
        Reply::claude_read(file),
        Reply::claude_write(file, content),
        Reply::Text(done.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landing_that_conflicts_with_anothers_work_goes_back_to_its_agent_which_fixes_it_and_lands()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let ask = format!("Write add as b plus a {}", std::process::id());
    let resolved = "add = lambda a, b: (b + a)\n";
    // Its first turn writes calc.py one way; told its landing conflicts,
    // it resolves the conflict it finds there.
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                "could not land on main",
                rewrites("calc.py", resolved, "Kept both: parenthesised, b + a."),
            ),
            (
                ask.as_str(),
                rewrites("calc.py", "add = lambda a, b: b + a\n", "Done."),
            ),
        ],
    )
    .await
    .expect("mock");
    let server = control_plane(dir.path());
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
    let _worker = start_named_claude_worker(
        &server,
        dir.path(),
        "agent",
        &mock,
        (&["claude-code", "shell"], 4),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gates").join("open");
    std::fs::create_dir_all(gate.parent().expect("gates")).expect("gates");
    // "paren" lands first, its checks held at the gate until the agent's
    // task and "notes" wait behind it.
    let paren = submit(
        &client,
        touching(
            &git,
            "paren",
            "printf 'add = lambda a, b: (a + b)\\n' > calc.py",
            &["calc.py"],
            &gate,
        ),
    )
    .await
    .expect("submit");
    let direct = server.tasks().await.expect("client");
    eventually(Duration::from_secs(60), || async {
        step_log(&direct, &paren, "deliver")
            .await
            .contains("land: checking")
            .then_some(())
    })
    .await
    .expect("paren's landing is checked");
    let mut swap = gated_landing(&git, "swap", &gate);
    if let Some(spec) = swap.spec.as_mut() {
        spec.steps[0] = claude_step("work", &ask, &["Read", "Write"]);
    }
    let notes = touching(
        &git,
        "notes",
        "printf 'notes\\n' > NOTES",
        &["NOTES"],
        &gate,
    );
    let swap = submit(&client, swap).await.expect("submit");
    let notes = submit(&client, notes).await.expect("submit");
    let listed = || {
        let out = succeed(server.cli().args(["get", "landings", "-o", "json"]));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    eventually(Duration::from_secs(120), || async {
        (listed()[0]["tasks"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await
    .expect("swap and notes wait behind paren");
    std::fs::write(&gate, "").expect("open the gate");
    for id in [&paren, &swap, &notes] {
        wait_succeeded(&client, id, Duration::from_secs(180))
            .await
            .expect("landed");
    }
    // swap's first landing conflicted with paren's work; its agent was
    // told so in its own session, resolved it, and it landed.
    let task = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: swap.clone(),
        })
        .await
        .expect("task")
        .into_inner();
    let deliver = step(&task, "deliver");
    assert_eq!(deliver.attempts.len(), 2, "{:?}", deliver.attempts);
    assert!(
        deliver.attempts[0].error.contains("conflicts with main")
            && deliver.attempts[0].error.ends_with(": calc.py"),
        "{:?}",
        deliver.attempts[0]
    );
    let work = step(&task, "work");
    assert_eq!(
        work.attempts.len(),
        2,
        "the agent's step ran again to fix it"
    );
    let shown = String::from_utf8_lossy(&succeed(server.cli().args(["get", "task", &swap])).stdout)
        .to_string();
    assert!(
        shown.contains("; sent back to its agent to fix 1 time(s)"),
        "{shown}"
    );
    assert_eq!(
        work.attempts[0].session_id, work.attempts[1].session_id,
        "in its own session"
    );
    let told = mock
        .request_containing("could not land on main")
        .expect("the agent was told");
    assert!(
        told.contains("conflicts with your work in calc.py") && told.contains("fix"),
        "{told}"
    );
    // main: the first commit and three landings, each passing; calc.py as
    // the agent resolved it.
    let history = git.main_history_tested("app", dir.path());
    assert_eq!(history.len(), 4, "{history:?}");
    assert!(history.iter().all(|(_, passed)| *passed), "{history:?}");
    let clone = dir.path().join("check-app");
    assert_eq!(
        tidewright_tests::git_server::git(&clone, &["show", "origin/main:calc.py"]).trim(),
        resolved.trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_a_pull_request_lands_it_and_the_forge_sees_it_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    let first = git.create_repo(
        "acme/app",
        &[("calc.py", CALC), ("test_calc.py", CALC_TEST)],
    );
    let forge = tidewright_tests::forge::ForgeDouble::start(dir.path(), git.root(), PASSWORD)
        .expect("forge double");
    let server = control_plane(dir.path());
    let _worker = worker(&server, dir.path());
    let client = server.tasks().await.expect("client");
    let mut request = task_on_repo(
        "with-pr",
        vec![shell_step("work", &[], "printf 'x = 1\\n' > x.py")],
        &git.url("acme/app"),
    );
    if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.land = Some(v1::LandSpec {
            method: "queue".into(),
            base: String::new(),
            checks: vec![unittest_check()],
            ..v1::LandSpec::default()
        });
        repo.pull_request = Some(v1::PullRequestSpec {
            title: "Add x".into(),
            body: "Made by tidewright.".into(),
            base: String::new(),
            forge: "github".into(),
            api_url: forge.github_api(),
            ..v1::PullRequestSpec::default()
        });
    }
    let id = submit(&client, request).await.expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("landed");
    let output: serde_json::Value =
        serde_json::from_str(&step(&task, "deliver").output_json).expect("output");
    let landed = output["landed"].as_str().expect("landed").to_string();
    assert_eq!(
        output["pullRequest"],
        "https://github.example/acme/app/pull/1"
    );
    // The pull request's branch holds the checked merge, and main is at it:
    // the one commit checked is the one that landed.
    assert_eq!(git.rev_parse("acme/app", "main"), landed);
    assert_eq!(
        git.rev_parse("acme/app", &format!("tidewright/{id}")),
        landed
    );
    let history = git.main_history_tested("acme/app", dir.path());
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(history.iter().all(|(_, passed)| *passed), "{history:?}");
    assert_eq!(history[1].0, first);
    // The forge sees the pull request merged, and every call tidewright
    // made was one GitHub's description allows.
    let listed = http_call(
        &forge.addr,
        "GET",
        "/repos/acme/app/pulls?state=all",
        Some(PASSWORD),
        &[("User-Agent", "tidewright-tests")],
        "",
    )
    .expect("the double");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let pulls = listed.json();
    assert_eq!(pulls[0]["state"], "closed", "{pulls}");
    assert!(pulls[0]["merged_at"].is_string(), "{pulls}");
    let seen = forge.requests().expect("requests");
    assert!(
        seen.iter().all(|r| r["valid"] == true),
        "every call is one GitHub describes: {seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_landing_is_refused_at_submit_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = control_plane(dir.path());
    let mut client = server.tasks().await.expect("client");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("app", &[("calc.py", CALC)]);
    let with = |change: &dyn Fn(&mut v1::RepoSpec)| {
        let mut request = landing(&git, "bad", "true");
        if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
            change(repo);
        }
        request
    };
    let cases: Vec<(v1::SubmitTaskRequest, &str)> = vec![
        (
            with(&|r| {
                if let Some(land) = r.land.as_mut() {
                    land.checks.clear();
                }
            }),
            "spec.repo.land.checks",
        ),
        (
            with(&|r| {
                if let Some(land) = r.land.as_mut() {
                    land.method = "merge".into();
                }
            }),
            "spec.repo.land.method",
        ),
        (with(&|r| r.r#ref.clear()), "spec.repo.land.base"),
        (
            with(&|r| {
                r.pull_request = Some(v1::PullRequestSpec {
                    title: "t".into(),
                    forge: "github".into(),
                    api_url: "http://127.0.0.1:9".into(),
                    base: "release".into(),
                    ..v1::PullRequestSpec::default()
                })
            }),
            "spec.repo.pullRequest.base",
        ),
    ];
    for (request, field) in cases {
        refused_naming(client.submit_task(request).await, field);
    }
    let stored = all_task_ids(&client).await.expect("list");
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
}
