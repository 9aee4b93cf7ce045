//! Evals on the user's own history, with the real Claude Code and Codex
//! CLIs against the mocks of their providers' APIs: a generated repository
//! (on the real git server) whose history has commits that each fix a
//! seeded bug with a test, and commits that do not count (docs only, tests
//! only). `tidewright eval` picks the two fixes, starts each agent from the
//! fix's parent in a snapshot that holds nothing after it, checks it with
//! the commit's own tests, and prints a table for the two runtimes: Claude,
//! scripted to make each fix, passes both; Codex, scripted to change
//! nothing, passes none. A second run is compared with the first. An eval
//! on a repository without usable commits, and a bad runtime, are refused
//! in one line.

use tidewright_tests::git_server::GitServer;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::tidewright_api::v1;
use tidewright_tests::*;

const BUGGY: &str = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a + b\n";
const ADD_FIXED: &str = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a + b\n";
const BOTH_FIXED: &str = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n";
const TEST_ADD: &str = "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n";
const TEST_MUL: &str = "import unittest\n\nfrom calc import mul\n\n\nclass TestMul(unittest.TestCase):\n    def test_mul(self):\n        self.assertEqual(mul(2, 3), 6)\n";
const FIX_ADD: &str = "Fix add: it subtracts";
const FIX_MUL: &str = "Fix mul: it adds";

/// The generated history: seeded bugs, then a fix with its test each,
/// and commits that change only docs or only tests.
fn history(git: &GitServer) {
    git.create_repo("calc", &[("calc.py", BUGGY), ("README.md", "calc\n")]);
    git.commit(
        "calc",
        &[("calc.py", ADD_FIXED), ("test_add.py", TEST_ADD)],
        FIX_ADD,
    );
    git.commit("calc", &[("README.md", "calc: add and mul\n")], "Docs");
    git.commit(
        "calc",
        &[("calc.py", BOTH_FIXED), ("test_mul.py", TEST_MUL)],
        FIX_MUL,
    );
    git.commit("calc", &[("test_extra.py", "")], "Tests only");
}

/// `replies`, `runs` times over.
fn times(replies: &[Reply], runs: usize) -> Vec<Reply> {
    (0..runs).flat_map(|_| replies.iter().cloned()).collect()
}

/// Each fix's task to Claude: it writes the fixed file; to Codex: it says
/// it is done and changes nothing (once, and once more when sent back).
async fn mocks(runs: usize) -> (Mock, Mock) {
    let claude = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                FIX_MUL,
                times(
                    &[
                        Reply::claude_write("calc.py", BOTH_FIXED),
                        Reply::Text("Fixed mul.".into()),
                    ],
                    runs,
                ),
            ),
            (
                FIX_ADD,
                times(
                    &[
                        Reply::claude_write("calc.py", ADD_FIXED),
                        Reply::Text("Fixed add.".into()),
                    ],
                    runs,
                ),
            ),
        ],
    )
    .await
    .expect("claude mock");
    let nothing = vec![Reply::Text("Nothing to change.".into()); 2 * runs];
    let codex = Mock::start_routed(
        Api::OpenAi,
        vec![(FIX_MUL, nothing.clone()), (FIX_ADD, nothing)],
    )
    .await
    .expect("codex mock");
    (claude, codex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_on_a_generated_history_prints_a_table_for_two_runtimes_and_compares_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    history(&git);
    // Two eval runs, then a step with `runtimes: auto` on Claude.
    let (claude, codex) = mocks(3).await;
    let gemini = Mock::start(Api::Google, Vec::new())
        .await
        .expect("gemini mock");
    let http = free_addr();
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--http-listen", &http],
    )
    .expect("server");
    let _worker = start_three_runtime_worker(
        (&server, dir.path(), "agent-1"),
        (&claude.url, &codex.url, &gemini.url),
        (&["claude-code", "codex"], 4),
        &[],
    )
    .expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    let snapshots = dir.path().join("evals");
    // As a task names it: the eval keys its outcomes by this URL.
    let repo = format!("file://{}", git.root().join("calc.git").display());
    let eval = |output: &str| {
        let mut command = server.cli();
        command.args([
            "eval",
            "--repo",
            &repo,
            "--since",
            "90d",
            "--runtimes",
            "claude-code,codex",
            "--attempts",
            "1",
            "--snapshots",
            &snapshots.display().to_string(),
            "-o",
            output,
        ]);
        command
    };
    let first: serde_json::Value =
        serde_json::from_slice(&succeed(&mut eval("json")).stdout).expect("the rows as JSON");
    let rows: Vec<(String, u64, u64, u64)> = first
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["runtime"].as_str().unwrap_or_default().to_string(),
                r["attempts"].as_u64().unwrap_or_default(),
                r["tasks"].as_u64().unwrap_or_default(),
                r["passed"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("claude-code".to_string(), 1, 2, 2),
            ("codex".to_string(), 1, 2, 0)
        ],
        "{first}"
    );
    // Each agent started from the fix's parent, which holds no later
    // commit, and was asked what the commit said.
    let asked = claude
        .request_containing(FIX_MUL)
        .expect("asked to fix mul");
    assert!(asked.contains(FIX_MUL), "{asked}");
    let snapshot = std::fs::read_dir(&snapshots)
        .expect("snapshots")
        .flatten()
        .next()
        .expect("a run's snapshots")
        .path();
    for repo in std::fs::read_dir(&snapshot).expect("snapshots").flatten() {
        let log = tidewright_tests::git_server::git(&repo.path(), &["log", "--format=%s", "main"]);
        assert!(
            !log.contains("Tests only"),
            "nothing after the last fix is there: {log}"
        );
    }

    // The second run, as a table, compared with the first.
    let table = String::from_utf8_lossy(&succeed(&mut eval("table")).stdout).into_owned();
    let line = |runtime: &str| {
        table
            .lines()
            .find(|l| l.starts_with(runtime))
            .unwrap_or_else(|| panic!("{runtime} in {table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("claude-code")[..6],
        ["claude-code", "1", "2", "2", "100%", "100%"],
        "{table}"
    );
    assert_eq!(
        line("codex")[..6],
        ["codex", "1", "2", "0", "0%", "0%"],
        "{table}"
    );
    assert!(
        table.contains("PASS RATE") && table.contains("LAST RUN"),
        "{table}"
    );

    // The console's Evals page charts each run's pass rates.
    let browser = tidewright_tests::browser::Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/evals"),
        &server.admin_token,
    )
    .await;
    browser
        .count_until(
            "[data-test=eval-run]",
            2,
            std::time::Duration::from_secs(30),
        )
        .await
        .expect("both runs");
    let chart = browser
        .text("[data-test=eval-run] [data-test=eval-chart]")
        .await
        .expect("the newest run's chart");
    assert!(
        chart.contains("claude-code ×1")
            && chart.contains("100%")
            && chart.contains("codex ×1")
            && chart.contains("0%"),
        "{chart}"
    );

    // A step with `runtimes: auto`, submitted on Codex, goes to Claude:
    // on this repository it passed every task and Codex none. The step
    // says so in its first event, `get task` and the console show why,
    // and `get scores` stands on the same outcomes.
    let client = server.tasks().await.expect("client");
    let before = claude
        .requests()
        .iter()
        .filter(|r| r.to_string().contains(FIX_ADD))
        .count();
    let mut fix = agent_step("codex", "fix", FIX_ADD);
    fix.runtimes = "auto".into();
    let mut request = task_on_repo("auto", vec![fix], &repo);
    if let Some(on) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        on.credentials_secret.clear();
    }
    let id = submit(&client, request).await.expect("submit");
    let task = wait_succeeded(&client, &id, std::time::Duration::from_secs(120))
        .await
        .expect("the step runs on Claude");
    let spec = task.spec.as_ref().expect("its spec");
    let chosen = spec.steps[0].chosen.as_ref().expect("the choice, kept");
    assert_eq!(
        (chosen.runtime.as_str(), chosen.preferred.as_str()),
        ("claude-code", "codex")
    );
    for figures in ["claude-code 4/4 passed", "codex 0/4 passed"] {
        assert!(chosen.why.contains(figures), "{}", chosen.why);
    }
    let asked_to_fix = claude
        .requests()
        .iter()
        .filter(|r| r.to_string().contains(FIX_ADD))
        .count();
    assert!(
        asked_to_fix > before,
        "the chosen step asked Claude: {asked_to_fix} requests, {before} before"
    );
    let events = events_until_done(&client, &id).await;
    let told = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(v1::event::Kind::StepState(s)) if s.step_id == "fix" => Some(s.message.clone()),
            _ => None,
        })
        .expect("the step's first event");
    assert!(
        told.starts_with("runtimes: auto chose claude-code, the most passes per dollar"),
        "{told}"
    );
    let shown = stdout_of(server.cli().args(["get", "task", &id]));
    assert!(
        shown.contains("Chosen:    step fix: runtimes: auto chose claude-code"),
        "{shown}"
    );
    let scores: serde_json::Value = serde_json::from_slice(
        &succeed(
            server
                .cli()
                .args(["get", "scores", "--repo", &repo, "-o", "json"]),
        )
        .stdout,
    )
    .expect("the standings as JSON");
    let stood: Vec<(String, u64, u64)> = scores
        .as_array()
        .expect("standings")
        .iter()
        .map(|s| {
            (
                s["runtime"].as_str().unwrap_or_default().to_string(),
                s["attempts"].as_u64().unwrap_or_default(),
                s["passed"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        stood,
        [
            ("claude-code".to_string(), 4, 4),
            ("codex".to_string(), 4, 0)
        ],
        "{scores}"
    );
    browser
        .client
        .goto(&format!("http://{http}/#/tasks/{id}"))
        .await
        .expect("the task's page");
    browser.click("g[data-step=fix]").await.expect("the step");
    let said = browser
        .text_until(
            "[data-test=runtime-chosen]",
            std::time::Duration::from_secs(30),
            |t| t.contains("claude-code"),
        )
        .await
        .expect("the choice, shown");
    assert!(said.contains("codex 0/4 passed"), "{said}");
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eval_without_usable_commits_or_with_a_bad_runtime_is_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("docs", &[("README.md", "hello\n")]);
    git.commit("docs", &[("README.md", "hello again\n")], "Docs");
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--allow-local-repos"]).expect("server");
    let repo = git.root().join("docs.git").display().to_string();
    let refused: [(&[&str], &str); 3] = [
        (
            &["--runtimes", "claude-code"],
            "--repo: no commit that landed on main since 90d changed both code and tests (1 looked at)",
        ),
        (
            &["--runtimes", "claude-code,cobol"],
            "--runtimes: \"cobol\" is not an agent runtime",
        ),
        (
            &["--runtimes", "codex", "--attempts", "11"],
            "--attempts: 11 is not 1 to 10",
        ),
    ];
    for (args, says) in refused {
        let said = fails_in_one_line(server.cli().args(["eval", "--repo", &repo]).args(args));
        assert!(said.contains(says), "{said}");
    }
    // `runtimes` says `auto` or nothing.
    let mut fix = agent_step("codex", "fix", FIX_ADD);
    fix.runtimes = "cheapest".into();
    let client = server.tasks().await.expect("client");
    let refused = client
        .clone()
        .submit_task(task_on_repo("bad", vec![fix], &format!("file://{repo}")))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .starts_with("spec.steps[0].runtimes: step \"fix\": \"cheapest\" is not a choice"),
        "{}",
        refused.message()
    );
    let stored = all_task_ids(&client).await.expect("list");
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
}
