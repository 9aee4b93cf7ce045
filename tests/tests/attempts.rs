//! Attempts across runtimes on the real Claude Code, Codex and Gemini CLIs,
//! each against the mock of its provider's API, on a real repository served
//! by the real git server, with real checks (Python's unittest): three
//! attempts of a fix run at once, each on a branch of its own; the one whose
//! checks fail a second time fails without failing the task; of the two that
//! pass, the judge (a grader worker's call to the Anthropic mock) picks one,
//! its reasons kept; and the step after goes on from the winner's work. With
//! `stopEarly`, the first to pass stops the attempt still running.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_core::attempts::judge::OPENING;
use tidewright_tests::calc::{BUG as CALC_BUG, TEST as CALC_TEST};
use tidewright_tests::git_server::{GitServer, account_secrets};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

const GRADER_MODEL: &str = "claude-judge-test";

/// A control plane naming a grader model, the calc project on a git
/// server, the three mocks, and a worker offering the three runtimes and
/// `grader`.
struct Bench {
    dir: tempfile::TempDir,
    git: GitServer,
    server: Server,
    /// The console's and REST API's address.
    http: String,
    flags: Vec<String>,
    secrets: String,
    claude: Mock,
    codex: Mock,
    gemini: Mock,
    worker: Option<Process>,
}

impl Bench {
    async fn start(claude: Mock, codex: Mock, gemini: Mock) -> Bench {
        Bench::start_with(claude, codex, gemini, &[]).await
    }

    /// [`Bench::start`], the control plane started with `extra` flags too.
    async fn start_with(claude: Mock, codex: Mock, gemini: Mock, extra: &[&str]) -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = GitServer::start(dir.path()).expect("git server");
        git.create_repo(
            "calc",
            &[("calc.py", CALC_BUG), ("test_calc.py", CALC_TEST)],
        );
        let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
        let mut flags: Vec<String> = [
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--grader-model",
            GRADER_MODEL,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let http = free_addr();
        flags.extend(["--http-listen".to_string(), http.clone()]);
        flags.extend(extra.iter().map(|s| s.to_string()));
        let server = Bench::serve(&dir, "127.0.0.1:0", &flags);
        let mut bench = Bench {
            dir,
            git,
            server,
            http,
            flags,
            secrets,
            claude,
            codex,
            gemini,
            worker: None,
        };
        bench.worker = Some(bench.worker("agent-1"));
        bench
    }

    fn serve(dir: &tempfile::TempDir, listen: &str, flags: &[String]) -> Server {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Server::start_on(&dir.path().join("server"), listen, &flags).expect("server")
    }

    /// A worker offering the three runtimes and `grader`, 4 slots.
    fn worker(&self, name: &str) -> Process {
        start_three_runtime_worker(
            (&self.server, self.dir.path(), name),
            (&self.claude.url, &self.codex.url, &self.gemini.url),
            (&["claude-code", "codex", "gemini-cli", "grader"], 4),
            &["--secrets-dir", &self.secrets],
        )
        .expect("worker")
    }

    /// Submits `fix` with `attempts` across the three runtimes, verified by
    /// the calc tests (sent back once at most), and `after`, a shell step
    /// that passes only when the work it starts from has `fixed`.
    async fn submit(&self, prompt: &str, attempts: v1::Attempts, fixed: &str) -> (Tasks, String) {
        let client = self.server.tasks().await.expect("client");
        let mut fix = claude_step("fix", prompt, &["Write", "Read"]);
        fix.verify = Some(v1::VerifySpec {
            checks: vec![unittest_check()],
            rounds: 1,
            ..v1::VerifySpec::default()
        });
        fix.attempts = Some(attempts);
        let after = shell_step("after", &["fix"], &format!("grep -q '{fixed}' calc.py"));
        let request = task_on_repo("attempts", vec![fix, after], &self.git.url("calc"));
        let id = submit(&client, request).await.expect("submit");
        (client, id)
    }
}

fn three(select: &str, stop_early: bool) -> v1::Attempts {
    v1::Attempts {
        n: 3,
        runtimes: vec!["claude-code".into(), "codex".into(), "gemini-cli".into()],
        select: select.into(),
        stop_early,
    }
}

fn prompt(what: &str) -> String {
    format!("{what} {}", std::process::id())
}

/// The step's progress messages, in order.
fn progress_of(events: &[v1::Event], step: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Progress(p)) if p.step_id == step => Some(p.message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_attempts_across_runtimes_the_failing_one_does_not_fail_the_task_and_the_judge_picks()
{
    let ask = prompt("Fix add in calc.py so that the tests pass.");
    let wrong = "add = lambda a, b: a * b\n";
    let right = "add = lambda a, b: a + b\n";
    let gemini_right = "def add(a, b):\n    return a + b\n";
    let reason = "B defines add plainly, and it reads better.";
    let claude = Mock::start_routed(
        Api::Anthropic,
        vec![
            // The judge's one match: fix.2 (codex) is A, fix.3 (gemini) B.
            (
                OPENING,
                vec![Reply::tool(
                    "choose",
                    serde_json::json!({"better": "B", "reasons": [reason]}),
                )],
            ),
            // Claude's attempt multiplies, and, sent back, changes nothing:
            // the same failure twice ends it.
            (
                "Your work was checked",
                vec![Reply::Text("It is right.".into())],
            ),
            (
                ask.as_str(),
                vec![
                    Reply::claude_read("calc.py"),
                    Reply::claude_write("calc.py", wrong),
                    Reply::Text("Fixed add.".into()),
                ],
            ),
        ],
    )
    .await
    .expect("claude mock");
    let codex = fixing(Api::OpenAi, &ask, vec![], codex_writes(right)).await;
    let gemini = fixing(
        Api::Google,
        &ask,
        vec![],
        Reply::gemini_write("calc.py", gemini_right),
    )
    .await;
    let bench = Bench::start(claude, codex, gemini).await;
    let (client, id) = bench.submit(&ask, three("", false), "return a + b").await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(240))
        .await
        .expect("the task succeeds");

    // Each attempt ran on its runtime, on a branch of its own.
    use v1::StepState::{Failed, Succeeded};
    let states: Vec<(&str, i32)> = task
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.state))
        .collect();
    let expected: Vec<(&str, i32)> = [
        ("fix.1", Failed),
        ("fix.2", Succeeded),
        ("fix.3", Succeeded),
        ("fix", Succeeded),
        ("after", Succeeded),
        ("deliver", Succeeded),
    ]
    .iter()
    .map(|(a, b)| (*a, *b as i32))
    .collect();
    assert_eq!(states, expected);
    let branch = |s: &str| step(&task, s).work.as_ref().map(|w| w.branch.clone());
    assert_eq!(branch("fix.2"), Some(format!("tidewright/{id}-fix.2")));
    assert_eq!(branch("fix.3"), Some(format!("tidewright/{id}-fix.3")));
    assert!(
        step(&task, "fix.1")
            .error
            .contains("the same failure twice"),
        "{}",
        step(&task, "fix.1").error
    );

    // The judge read both diffs and picked Gemini's; the step holds its work.
    let asked = bench
        .claude
        .request_containing(OPENING)
        .expect("the judge was asked");
    assert!(
        asked.contains("a + b") && asked.contains("return a + b"),
        "{asked}"
    );
    assert!(!asked.contains("a * b"), "the failed attempt is not judged");
    let chosen = step(&task, "fix")
        .work
        .as_ref()
        .expect("work")
        .head_commit
        .clone();
    let gemini_head = step(&task, "fix.3")
        .work
        .as_ref()
        .expect("work")
        .head_commit
        .clone();
    assert_eq!(chosen, gemini_head);
    let events = task_events(&mut client.clone(), &id, 0, false)
        .await
        .expect("events");
    let said = progress_of(&events, "fix");
    assert!(
        said.iter().any(|m| m
            .starts_with("chose fix.3 (gemini-cli): the judge (claude-judge-test)")
            && m.contains(reason)),
        "{said:?}"
    );
    // What depends on the step went on from the winner's work: `after`
    // found Gemini's fix (it succeeded above).
    assert!(bench.codex.requests().len() >= 2 && bench.gemini.requests().len() >= 2);

    // The console shows the three side by side, the chosen one marked,
    // each with its diff.
    let browser = tidewright_tests::browser::Browser::signed_in(
        bench.dir.path(),
        &format!("http://{}/#/tasks/{id}", bench.http),
        &bench.server.admin_token,
    )
    .await;
    browser.click("g[data-step=fix]").await.expect("the step");
    browser
        .count_until("[data-test=rival]", 3, Duration::from_secs(30))
        .await
        .expect("three attempts side by side");
    let chosen = browser
        .text("[data-test=rival][data-step='fix.3'] [data-test=chosen]")
        .await
        .expect("fix.3 is marked chosen");
    assert_eq!(chosen, "chosen");
    assert_eq!(browser.count("[data-test=chosen]").await.expect("count"), 1);
    let said = browser
        .text("[data-test=choice]")
        .await
        .expect("the choice");
    assert!(said.starts_with("chose fix.3 (gemini-cli)"), "{said}");
    browser
        .count_until(
            "[data-test=rival] [data-test=diff]",
            3,
            Duration::from_secs(30),
        )
        .await
        .expect("each attempt's diff");
    let failed = browser
        .text("[data-test=rival][data-step='fix.1']")
        .await
        .expect("fix.1");
    assert!(
        failed.contains("the same failure twice") && failed.contains("claude-code"),
        "{failed}"
    );
    browser.close_without_errors().await;

    // Each runtime's score on this repository: Claude's attempt failed,
    // Codex's passed and lost, Gemini's passed and won.
    let shown = succeed(bench.server.cli().args([
        "get",
        "scores",
        "--repo",
        &bench.git.url("calc"),
        "-o",
        "json",
    ]));
    let standings: serde_json::Value =
        serde_json::from_slice(&shown.stdout).expect("the scores as JSON");
    let tally: Vec<(String, u64, u64, u64)> = standings
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["runtime"].as_str().unwrap_or_default().to_string(),
                s["attempts"].as_u64().unwrap_or_default(),
                s["passed"].as_u64().unwrap_or_default(),
                s["won"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        tally,
        [
            ("claude-code".to_string(), 1, 0, 0),
            ("codex".to_string(), 1, 1, 0),
            ("gemini-cli".to_string(), 1, 1, 1),
        ]
    );
    let table =
        String::from_utf8_lossy(&succeed(bench.server.cli().args(["get", "scores"])).stdout)
            .to_string();
    assert!(
        table.contains("PASS RATE") && table.contains("gemini-cli"),
        "{table}"
    );
    let elsewhere = succeed(bench.server.cli().args([
        "get",
        "scores",
        "--repo",
        "https://example.com/other.git",
        "-o",
        "json",
    ]));
    assert_eq!(String::from_utf8_lossy(&elsewhere.stdout).trim(), "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_to_pass_stops_the_others_when_they_stop_early() {
    let ask = prompt("Fix add in calc.py, quickly.");
    let right = "add = lambda a, b: a + b\n";
    // Claude and Gemini think for ever; Codex fixes it.
    let claude = Mock::start_routed(Api::Anthropic, vec![(ask.as_str(), vec![Reply::Hang])])
        .await
        .expect("claude mock");
    let codex = fixing(Api::OpenAi, &ask, vec![], codex_writes(right)).await;
    let gemini = Mock::start_routed(Api::Google, vec![(ask.as_str(), vec![Reply::Hang])])
        .await
        .expect("gemini mock");
    let bench = Bench::start(claude, codex, gemini).await;
    let (client, id) = bench
        .submit(&ask, three("first-passing", true), "a + b")
        .await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(180))
        .await
        .expect("the task succeeds");
    for stopped in ["fix.1", "fix.3"] {
        let s = step(&task, stopped);
        assert_eq!(
            s.state,
            v1::StepState::Cancelled as i32,
            "{stopped}: {}",
            s.error
        );
        assert!(
            s.error.contains("attempt fix.2 passed first"),
            "{}",
            s.error
        );
    }
    let events = task_events(&mut client.clone(), &id, 0, false)
        .await
        .expect("events");
    let said = progress_of(&events, "fix");
    assert!(
        said.iter()
            .any(|m| m == "chose fix.2 (codex): the only attempt that passed"),
        "{said:?}"
    );
    assert!(
        bench.claude.request_containing(OPENING).is_none(),
        "one passed: no judge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_attempts_is_refused_at_submit_naming_its_field_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No grader model: a judge is refused, checks alone are not.
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--allow-local-repos"]).expect("server");
    let mut client = server.tasks().await.expect("client");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("calc", &[("calc.py", CALC_BUG)]);
    let good = || v1::Attempts {
        select: "checks".into(),
        ..three("", false)
    };
    let bad: Vec<(v1::Attempts, &str)> = vec![
        (v1::Attempts { n: 0, ..good() }, "spec.steps[0].attempts.n"),
        (v1::Attempts { n: 11, ..good() }, "spec.steps[0].attempts.n"),
        (
            v1::Attempts {
                runtimes: vec!["claude-code".into(), "cobol".into()],
                ..good()
            },
            "spec.steps[0].attempts.runtimes[1]",
        ),
        (
            v1::Attempts {
                select: "vote".into(),
                ..good()
            },
            "spec.steps[0].attempts.select",
        ),
        (
            v1::Attempts {
                select: "checks-then-judge".into(),
                ..good()
            },
            "spec.steps[0].attempts.select",
        ),
    ];
    let on_calc = |step: v1::StepSpec| task_on_repo("bad", vec![step], &git.url("calc"));
    let verified = |attempts: v1::Attempts| {
        let mut fix = claude_step("fix", "fix it", &[]);
        fix.verify = Some(v1::VerifySpec {
            checks: vec![unittest_check()],
            ..v1::VerifySpec::default()
        });
        fix.attempts = Some(attempts);
        fix
    };
    for (attempts, field) in bad {
        refused_naming(client.submit_task(on_calc(verified(attempts))).await, field);
    }
    // Chosen by checks, and the step has none.
    let mut unverified = verified(good());
    unverified.verify = None;
    refused_naming(
        client.submit_task(on_calc(unverified)).await,
        "spec.steps[0].attempts.select",
    );
    // A shell step has no agent to run again.
    let mut shell = shell_step("build", &[], "make");
    shell.attempts = Some(good());
    refused_naming(
        client.submit_task(on_calc(shell)).await,
        "spec.steps[0].attempts",
    );
    // The step that chooses is tidewright's own.
    let mut chooser = verified(good());
    chooser.attempts = None;
    chooser.select = Some(v1::SelectSpec::default());
    refused_naming(
        client.submit_task(on_calc(chooser)).await,
        "spec.steps[0].select",
    );
    // From a task file, the CLI says it in one line.
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        format!(
            "name: bad\nrepo: {{url: {}}}\nsteps:\n  - id: fix\n    claudeCode: {{prompt: fix it}}\n    verify: {{checks: [{{name: tests, run: [make]}}]}}\n    attempts: {{n: 12, select: checks}}\n",
            git.url("calc")
        ),
    )
    .expect("write");
    let said = fails_in_one_line(server.cli().args(["submit", "-f"]).arg(&file));
    assert!(said.contains("steps[0].attempts.n"), "{said}");
    let stored = all_task_ids(&client).await.expect("list");
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
}

/// Polls `done` until it holds or `within` passes.
async fn wait_until(within: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_a_worker_mid_attempt_and_of_the_control_plane_mid_choice_lose_and_double_nothing()
 {
    let ask = prompt("Fix add in calc.py, surviving crashes.");
    let right = "add = lambda a, b: a + b\n";
    let gemini_right = "def add(a, b):\n    return a + b\n";
    // The judge's first call never ends (its worker and the control plane
    // die under it); the next one picks A, Codex's.
    let claude = Mock::start_routed(
        Api::Anthropic,
        vec![(
            OPENING,
            vec![
                Reply::Hang,
                Reply::tool(
                    "choose",
                    serde_json::json!({"better": "A", "reasons": ["A is the smaller change."]}),
                ),
            ],
        )],
    )
    .await
    .expect("claude mock");
    // Codex's first turn never ends: its worker is killed under it.
    let codex = fixing(Api::OpenAi, &ask, vec![Reply::Hang], codex_writes(right)).await;
    let gemini = fixing(
        Api::Google,
        &ask,
        vec![],
        Reply::gemini_write("calc.py", gemini_right),
    )
    .await;
    let mut bench = Bench::start_with(
        claude,
        codex,
        gemini,
        &["--worker-timeout", "3s", "--heartbeat-interval", "500ms"],
    )
    .await;
    let attempts = v1::Attempts {
        n: 2,
        runtimes: vec!["codex".into(), "gemini-cli".into()],
        ..v1::Attempts::default()
    };
    let (_, id) = bench.submit(&ask, attempts, "a + b").await;

    // A worker dies mid-attempt: Codex's attempt runs again on another.
    wait_until(Duration::from_secs(120), || bench.codex.hanging() == 1)
        .await
        .expect("codex's attempt is under way");
    if let Some(mut worker) = bench.worker.take() {
        worker.kill();
    }
    bench.worker = Some(bench.worker("agent-2"));

    // The control plane dies while the judge is choosing, and comes back
    // on the same store; the judge's worker dies too, its call still open.
    wait_until(Duration::from_secs(120), || bench.claude.hanging() == 1)
        .await
        .expect("the judge is choosing");
    let listen = bench.server.listen_addr();
    bench.server.process.signal("KILL");
    bench
        .server
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("the control plane exits");
    bench.server = Bench::serve(&bench.dir, &listen, &bench.flags);
    if let Some(mut worker) = bench.worker.take() {
        worker.kill();
    }
    bench.worker = Some(bench.worker("agent-3"));

    let client = bench.server.tasks().await.expect("client");
    let task = wait_succeeded(&client, &id, Duration::from_secs(180))
        .await
        .expect("the task succeeds");
    // Nothing lost: both attempts passed once, the codex one on agent-2.
    let codex_attempts = &step(&task, "fix.1").attempts;
    assert_eq!(
        codex_attempts.last().map(|a| a.worker.as_str()),
        Some("agent-2"),
        "{codex_attempts:?}"
    );
    let gemini_runs = step(&task, "fix.2")
        .attempts
        .iter()
        .filter(|a| a.state == v1::StepState::Succeeded as i32)
        .count();
    assert_eq!(gemini_runs, 1, "gemini's attempt ran to success once");
    // Nothing doubled: one choice, made by the judge on agent-3.
    let events = task_events(&mut client.clone(), &id, 0, false)
        .await
        .expect("events");
    let chosen: Vec<String> = progress_of(&events, "fix")
        .into_iter()
        .filter(|m| m.starts_with("chose "))
        .collect();
    assert_eq!(chosen.len(), 1, "{chosen:?}");
    assert!(
        chosen[0].starts_with("chose fix.1 (codex): the judge"),
        "{chosen:?}"
    );
    let judged = &step(&task, "fix").attempts;
    assert_eq!(
        judged.last().map(|a| a.worker.as_str()),
        Some("agent-3"),
        "{judged:?}"
    );
    assert_eq!(
        step(&task, "fix")
            .work
            .as_ref()
            .map(|w| w.head_commit.clone()),
        step(&task, "fix.1")
            .work
            .as_ref()
            .map(|w| w.head_commit.clone()),
    );
}

/// The mock of `api` whose agent, asked `ask`, answers `first`, then
/// makes its fix with `write`, then says it is done.
async fn fixing(api: Api, ask: &str, first: Vec<Reply>, write: Reply) -> Mock {
    let mut replies = first;
    replies.extend([write, Reply::Text("Fixed add.".into())]);
    Mock::start_routed(api, vec![(ask, replies)])
        .await
        .expect("the mock")
}

/// Codex's shell writing `content` over calc.py.
fn codex_writes(content: &str) -> Reply {
    Reply::codex_command(&format!(
        "printf '{}' > calc.py",
        content.replace('\n', "\\n")
    ))
}
