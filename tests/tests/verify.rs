//! Verified steps on the real Claude Code CLI, against the mock of its
//! API, on a real repository served by the real git server, with real
//! checks (Python's unittest) run apart from the agent: a protected test
//! edited is sent back to be undone, a skip added is flagged, a check that
//! passes only on what the agent left uncommitted does not pass, the same
//! failure twice ends the step, a kill -9 of the worker mid-round resumes
//! at that round on another worker, a rubric graded `needs_revision` sends
//! the grader's reasons back into the session and `pass` ends the step,
//! and each bad `verify` is refused at submit. (Every runtime's own round
//! trip is in the runtime suite.)

use std::time::Duration;

use serde_json::Value;
use tidewright_api::v1;
use tidewright_core::verify::grade::OPENING;
use tidewright_tests::calc::{BUG as CALC_BUG, RIGHT as CALC_RIGHT, TEST as CALC_TEST};
use tidewright_tests::git_server::{GitServer, account_secrets};
use tidewright_tests::provider::{self, Api, Mock, Reply};
use tidewright_tests::*;

/// A control plane, a git server with the `calc` project (and `extra`
/// files), and the routed mock of Claude's API.
struct Bench {
    dir: tempfile::TempDir,
    git: GitServer,
    server: Server,
    mock: Mock,
    secrets: String,
}

/// The model the graded tests' control plane names for grading.
const GRADER_MODEL: &str = "claude-grader-test";

impl Bench {
    async fn start(extra: &[(&str, &str)], routes: Vec<(&str, Vec<Reply>)>) -> Bench {
        Bench::start_with(extra, routes, &[]).await
    }

    /// [`Bench::start`], its control plane started with `flags` too.
    async fn start_with(
        extra: &[(&str, &str)],
        routes: Vec<(&str, Vec<Reply>)>,
        flags: &[&str],
    ) -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = GitServer::start(dir.path()).expect("git server");
        let mut files = vec![("calc.py", CALC_BUG), ("test_calc.py", CALC_TEST)];
        files.extend_from_slice(extra);
        git.create_repo("calc", &files);
        let mock = Mock::start_routed(Api::Anthropic, routes)
            .await
            .expect("mock");
        let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
        let mut server_flags = vec!["--allow-local-repos", "--repo-secrets-dir", &secrets];
        server_flags.extend_from_slice(flags);
        let server = Server::start_on(&dir.path().join("server"), "127.0.0.1:0", &server_flags)
            .expect("server");
        Bench {
            dir,
            git,
            server,
            mock,
            secrets,
        }
    }

    fn worker(&self, name: &str) -> Process {
        self.worker_offering(name, &["claude-code"])
    }

    fn worker_offering(&self, name: &str, capabilities: &[&str]) -> Process {
        start_named_claude_worker(
            &self.server,
            self.dir.path(),
            name,
            &self.mock,
            (capabilities, 1),
            &["--secrets-dir", &self.secrets],
        )
        .expect("worker")
    }

    /// Submits the `fix` step with `verify` on the calc project.
    async fn submit(&self, prompt: &str, verify: v1::VerifySpec) -> (Tasks, String) {
        let client = self.server.tasks().await.expect("client");
        let mut fix = claude_step("fix", prompt, &["Write", "Read"]);
        fix.verify = Some(verify);
        let id = submit(&client, on_calc(&self.git, vec![fix]))
            .await
            .expect("submit");
        (client, id)
    }

    /// The request that carried `text` to the provider, as JSON text.
    fn told(&self, text: &str) -> String {
        self.told_but(text, None)
    }

    /// The first request that carried `text` and not `but`.
    fn told_but(&self, text: &str, but: Option<&str>) -> String {
        self.mock
            .requests()
            .iter()
            .map(Value::to_string)
            .find(|r| r.contains(text) && but.is_none_or(|b| !r.contains(b)))
            .unwrap_or_else(|| panic!("no request carried {text:?}"))
    }
}

fn on_calc(git: &GitServer, steps: Vec<v1::StepSpec>) -> v1::SubmitTaskRequest {
    task_on_repo("verified", steps, &git.url("calc"))
}

fn unittest(rounds: u32, protect: &[&str]) -> v1::VerifySpec {
    v1::VerifySpec {
        checks: vec![unittest_check()],
        rounds,
        protect: protect.iter().map(|s| s.to_string()).collect(),
        rubric: String::new(),
    }
}

/// The model's calls that read `file` and then write `content` over it
/// (an agent CLI overwrites only what it read).
fn rewrite(file: &str, content: &str) -> [Reply; 2] {
    [Reply::claude_read(file), Reply::claude_write(file, content)]
}

/// `replies` in order, each a call or a list of calls.
fn script<const N: usize>(calls: [Vec<Reply>; N]) -> Vec<Reply> {
    calls.into_iter().flatten().collect()
}

/// The rounds the task's events said: (round, passed, message).
fn rounds(events: &[v1::Event]) -> Vec<(u32, bool, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Verification(v)) => Some((v.round, v.passed, v.message.clone())),
            _ => None,
        })
        .collect()
}

fn prompt(what: &str) -> String {
    format!("{what} {}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_test_edited_to_pass_is_sent_back_to_be_undone() {
    let ask = prompt("Make the tests pass");
    let bench = Bench::start(
        &[],
        vec![
            (
                "Undo those changes",
                script([
                    rewrite("test_calc.py", CALC_TEST).into(),
                    rewrite("calc.py", CALC_RIGHT).into(),
                    vec![Reply::Text("Put the test back and fixed add.".into())],
                ]),
            ),
            (
                ask.as_str(),
                script([
                    // The test made to expect what the bug gives.
                    rewrite("test_calc.py", &CALC_TEST.replace("5)", "-1)")).into(),
                    vec![Reply::Text("All tests pass.".into())],
                ]),
            ),
        ],
    )
    .await;
    let _worker = bench.worker("agent-1");
    let (client, id) = bench.submit(&ask, unittest(2, &["test_*.py"])).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("succeeds on round 2");
    let attempts = &step(&task, "fix").attempts;
    let first = attempts[0].verification.as_ref().expect("round 1");
    // Its check passed, on the edited test; the round failed all the same.
    assert!(first.checks[0].passed, "{first:?}");
    assert_eq!(first.protected_paths, vec!["test_calc.py"]);
    assert_eq!(
        attempts[0].error,
        "verify round 1: changed protected paths: test_calc.py"
    );
    let told = bench.told("Undo those changes");
    assert!(told.contains("test_calc.py"), "{told}");
    let second = attempts[1].verification.as_ref().expect("round 2");
    assert!(second.protected_paths.is_empty() && second.checks[0].passed);
    let work = step(&task, "fix").work.clone().expect("work");
    assert_eq!(work.changed_paths, vec!["calc.py"], "the test is as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_added_is_flagged_in_the_rounds_event() {
    let ask = prompt("Make the tests pass");
    let skipped = CALC_TEST.replace(
        "    def test_add",
        "    @unittest.skip(\"later\")\n    def test_add",
    );
    let bench = Bench::start(
        &[],
        vec![(
            ask.as_str(),
            script([
                rewrite("test_calc.py", &skipped).into(),
                vec![Reply::Text("All tests pass.".into())],
            ]),
        )],
    )
    .await;
    let _worker = bench.worker("agent-1");
    let (client, id) = bench.submit(&ask, unittest(2, &[])).await;
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("its check passes, skipping");
    let found = step(&task, "fix").attempts[0]
        .verification
        .clone()
        .expect("round 1");
    assert_eq!(found.skips_added, 1, "{found:?}");
    assert_eq!(
        rounds(&events),
        vec![(
            1,
            true,
            "verify round 1: its check passed (flagged: 1 skip marker(s) added)".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_agent_left_uncommitted_does_not_pass_and_the_same_failure_twice_ends_the_step() {
    let ask = prompt("Write the answer");
    // answer.txt is ignored by git: the agent's workspace holds it, its
    // commit does not, and the check sees only the commit.
    let bench = Bench::start(
        &[
            (".gitignore", "answer.txt\n"),
            ("test_answer.py", "import unittest\n\n\nclass TestAnswer(unittest.TestCase):\n    def test_answer(self):\n        with open(\"answer.txt\") as f:\n            self.assertEqual(f.read().strip(), \"42\")\n"),
            ("calc.py", CALC_RIGHT),
        ],
        vec![
            (
                "answer.txt",
                vec![
                    Reply::claude_write("answer.txt", "42\n"),
                    Reply::Text("answer.txt holds 42.".into()),
                    Reply::Text("answer.txt holds 42, really.".into()),
                ],
            ),
        ],
    )
    .await;
    let _worker = bench.worker("agent-1");
    let (client, id) = bench
        .submit(&format!("{ask} in answer.txt"), unittest(3, &[]))
        .await;
    let task = wait_finished(&client, &id, Duration::from_secs(120))
        .await
        .expect("finished");
    assert_eq!(task.state, v1::TaskState::Failed as i32, "{task:?}");
    let fix = step(&task, "fix");
    assert_eq!(fix.attempts.len(), 2, "{:?}", fix.attempts);
    assert!(
        fix.error
            .starts_with("the same failure twice: verify round 2: tests failed (exit 1)"),
        "{}",
        fix.error
    );
    let tail = &fix.attempts[1]
        .verification
        .as_ref()
        .expect("round 2")
        .checks[0]
        .tail;
    assert!(tail.contains("FileNotFoundError"), "{tail}");
    // `get task` shows the rounds, and the end of the last one's failure.
    let shown =
        String::from_utf8_lossy(&succeed(bench.server.cli().args(["get", "task", &id])).stdout)
            .to_string();
    assert!(
        shown.contains("ROUND") && shown.contains("tests failed (exit 1)"),
        "{shown}"
    );
    assert!(
        shown.contains("Step fix round 2, check tests: the end of its output:")
            && shown.contains("FileNotFoundError"),
        "{shown}"
    );
    let json = String::from_utf8_lossy(
        &succeed(bench.server.cli().args(["get", "task", &id, "-o", "json"])).stdout,
    )
    .to_string();
    assert!(
        json.contains("\"verification\"") && json.contains("\"round\": 2"),
        "{json}"
    );
    // Not retried: a third round would fail the same way.
    assert_eq!(fix.state, v1::StepState::Failed as i32);
}

/// The grader's answer: the grade tool called with `verdict` and `reasons`.
fn graded(verdict: &str, reasons: &[&str]) -> Reply {
    Reply::tool(
        "grade",
        serde_json::json!({"verdict": verdict, "reasons": reasons}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rubric_graded_needs_revision_sends_its_reasons_back_and_a_pass_ends_the_step() {
    let ask = prompt("Fix add in calc.py, and say what you fixed in NOTES.md");
    let reason = "NOTES.md does not say what was fixed";
    let rubric = "NOTES.md names the function that was fixed.";
    let bench = Bench::start_with(
        &[("NOTES.md", "Notes.\n")],
        vec![
            (
                OPENING,
                vec![
                    graded("needs_revision", &[reason]),
                    graded("pass", &["NOTES.md names add."]),
                ],
            ),
            (
                reason,
                script([
                    rewrite("NOTES.md", "Notes.\nFixed add: it subtracted.\n").into(),
                    vec![Reply::Text("NOTES.md says so now.".into())],
                ]),
            ),
            (
                ask.as_str(),
                script([
                    rewrite("calc.py", CALC_RIGHT).into(),
                    vec![Reply::Text("Fixed add.".into())],
                ]),
            ),
        ],
        &["--grader-model", GRADER_MODEL],
    )
    .await;
    let _worker = bench.worker_offering("agent-1", &["claude-code", "grader"]);
    let mut verify = unittest(2, &[]);
    verify.rubric = rubric.into();
    let (client, id) = bench.submit(&ask, verify).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("succeeds on round 2");
    let attempts = &step(&task, "fix").attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");

    // Round 1: its check passed, and the grader found it needs revision.
    let first = attempts[0].verification.as_ref().expect("round 1");
    assert!(first.checks[0].passed, "{first:?}");
    let grade = first.grade.as_ref().expect("graded");
    assert_eq!(
        (
            grade.verdict.as_str(),
            grade.reasons.as_slice(),
            grade.model.as_str()
        ),
        (
            "needs_revision",
            [reason.to_string()].as_slice(),
            GRADER_MODEL
        )
    );
    assert_eq!(
        attempts[0].error,
        format!("verify round 1: the grader found it needs revision: {reason}")
    );
    // The grader read, apart from the session, the prompt, the rubric, the
    // step's diff and its checks' results.
    let asked = bench.told(OPENING);
    for part in [ask.as_str(), rubric, "a + b", "tests passed"] {
        assert!(asked.contains(part), "{part:?} in {asked}");
    }
    assert!(
        !asked.contains("Fixed add."),
        "not the agent's session: {asked}"
    );
    // Its reasons went back into the agent's session (a request of the
    // agent's, not the grader's, carried them).
    let told = bench.told_but(reason, Some(OPENING));
    assert!(told.contains(&ask), "the same session: {told}");

    // Round 2 passed its check and its grade.
    let second = attempts[1].verification.as_ref().expect("round 2");
    assert!(second.checks[0].passed);
    assert_eq!(
        second.grade.as_ref().map(|g| g.verdict.as_str()),
        Some("pass")
    );

    // Grading was charged to the attempt: the mock's unstreamed answer
    // reports many more tokens than the agent's few turns.
    let cost = grade.cost.expect("its cost");
    assert_eq!(
        (cost.input_tokens, cost.output_tokens),
        (
            provider::MESSAGE_INPUT_TOKENS,
            provider::MESSAGE_OUTPUT_TOKENS
        )
    );
    let listed = (provider::MESSAGE_INPUT_TOKENS as f64 * 3.0
        + provider::MESSAGE_OUTPUT_TOKENS as f64 * 15.0)
        / 1e6;
    assert!((cost.usd - listed).abs() < 1e-9, "{cost:?}");
    let spent = attempts[0].cost.expect("the attempt's cost");
    assert!(
        spent.input_tokens >= provider::MESSAGE_INPUT_TOKENS && spent.usd >= cost.usd,
        "{spent:?}"
    );

    // `get task` shows the round's grade and its reasons.
    let shown =
        String::from_utf8_lossy(&succeed(bench.server.cli().args(["get", "task", &id])).stdout)
            .to_string();
    assert!(
        shown.contains("rubric: needs revision") && shown.contains("rubric passed"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_worker_mid_round_resumes_that_round_on_another_worker() {
    let ask = prompt("Fix add in calc.py");
    let failure = "AssertionError: 1 != 5";
    let bench = Bench::start(
        &[],
        vec![
            (
                failure,
                script([
                    // Round 2 on worker A: its turn never ends.
                    vec![Reply::Hang],
                    // Round 2 again, on worker B.
                    rewrite("calc.py", CALC_RIGHT).into(),
                    vec![Reply::Text("Fixed.".into())],
                ]),
            ),
            (
                ask.as_str(),
                script([
                    rewrite("calc.py", "add = lambda a, b: b - a\n").into(),
                    vec![Reply::Text("All tests pass.".into())],
                ]),
            ),
        ],
    )
    .await;
    let mut worker_a = bench.worker("agent-1");
    let (client, id) = bench.submit(&ask, unittest(2, &[])).await;
    // Round 2 is under way on A once its model call hangs.
    wait_until(Duration::from_secs(120), || bench.mock.hanging() == 1)
        .await
        .expect("round 2 starts on A");
    // SIGKILL: nothing of A's gets to say goodbye.
    worker_a.kill();
    let _worker_b = bench.worker("agent-2");
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("round 2 resumes on B and passes");
    let attempts = &step(&task, "fix").attempts;
    let last = attempts.last().expect("an attempt");
    assert_eq!(last.worker, "agent-2");
    let round = last.verification.as_ref().expect("round").round;
    assert_eq!(round, 2, "the round it was in, not a new one: {attempts:?}");
    assert!(
        last.verification
            .as_ref()
            .is_some_and(|v| v.checks[0].passed)
    );
    assert_eq!(last.session_id, attempts[0].session_id, "the same session");
}

/// Polls `done` until it holds or `within` passes.
async fn wait_until(within: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_verify_is_refused_at_submit_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--allow-local-repos"]).expect("server");
    let mut client = server.tasks().await.expect("client");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("calc", &[("calc.py", CALC_BUG)]);
    let good = || unittest(2, &[]);
    let bad: Vec<(v1::VerifySpec, &str)> = vec![
        (
            v1::VerifySpec {
                checks: vec![],
                ..good()
            },
            "spec.steps[0].verify.checks",
        ),
        (
            v1::VerifySpec {
                rounds: 21,
                ..good()
            },
            "spec.steps[0].verify.rounds",
        ),
        (
            v1::VerifySpec {
                checks: vec![v1::CheckSpec {
                    name: "tests".into(),
                    run: vec![],
                    timeout: String::new(),
                }],
                ..good()
            },
            "spec.steps[0].verify.checks[0].run",
        ),
        (
            v1::VerifySpec {
                protect: vec!["tests/[ab]".into()],
                ..good()
            },
            "spec.steps[0].verify.protect[0]",
        ),
        (
            v1::VerifySpec {
                rubric: "It is tested.".into(),
                ..good()
            },
            "spec.steps[0].verify.rubric",
        ),
    ];
    for (verify, field) in bad {
        let mut fix = claude_step("fix", "fix it", &[]);
        fix.verify = Some(verify);
        refused_naming(client.submit_task(on_calc(&git, vec![fix])).await, field);
    }
    // A step with no session to send a failure back into.
    let mut shell = shell_step("build", &[], "make");
    shell.verify = Some(good());
    refused_naming(
        client.submit_task(on_calc(&git, vec![shell])).await,
        "spec.steps[0].verify",
    );
    // No repository: nothing committed to check.
    let mut fix = claude_step("fix", "fix it", &[]);
    fix.verify = Some(good());
    refused_naming(
        client.submit_task(task("no-repo", vec![fix])).await,
        "spec.steps[0].verify",
    );
    let stored = all_task_ids(&client).await.expect("list");
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
}
