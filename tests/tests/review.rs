//! A review by another model, as a gate, on the real Claude Code and Codex
//! CLIs against the mocks of their providers' APIs, on a real repository
//! served by the real git server: Claude fixes `add`; Codex, reviewing the
//! diff in a checkout of its own, requests a change on a line; the request
//! goes back into Claude's session, Claude makes the change, and Codex,
//! shown the whole change again, approves. What follows the step starts
//! from the approved work; `get task` and the console (in Chromium) show
//! the review. A review by a runtime no worker offers waits, saying so.
//! Bad input is refused naming the field.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::calc::{self, BUG, RIGHT};
use tidewright_tests::git_server::GitServer;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

/// The change the reviewer asks for.
const DEF: &str = "def add(a, b):\n    \"\"\"The sum of a and b.\"\"\"\n    return a + b\n";

/// What the author's session is told first when it is sent back.
const SENT_BACK: &str = "A reviewer (codex) read your change and requested changes";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_review_requests_a_change_that_the_claude_author_makes() {
    let fix = format!(
        "Fix add in calc.py so that the tests pass ({}).",
        std::process::id()
    );
    let asked = "Make add a def with a docstring.";
    let claude = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                SENT_BACK,
                vec![
                    Reply::claude_write("calc.py", DEF),
                    Reply::Text("add is a def with a docstring now.".into()),
                ],
            ),
            (
                fix.as_str(),
                vec![
                    Reply::claude_write("calc.py", RIGHT),
                    Reply::Text("Fixed add.".into()),
                ],
            ),
        ],
    )
    .await
    .expect("claude mock");
    let changes = serde_json::json!({
        "verdict": "request_changes",
        "summary": "The fix is right, but a lambda bound to a name hides it.",
        "comments": [{"path": "calc.py", "line": 1, "body": asked}],
    });
    let approve = serde_json::json!({"verdict": "approve", "summary": "Clear and right."});
    let codex = Mock::start_routed(
        Api::OpenAi,
        vec![
            // Round 2's diff holds the docstring; round 1's does not.
            (
                "The sum of a and b",
                vec![Reply::Text(format!("The tests pass. {approve}"))],
            ),
            (
                "Review the change above",
                vec![
                    Reply::codex_command("python3 -m unittest -q"),
                    Reply::Text(changes.to_string()),
                ],
            ),
        ],
    )
    .await
    .expect("codex mock");
    let gemini = Mock::start(Api::Google, Vec::new())
        .await
        .expect("gemini mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let calc::Served {
        git,
        secrets,
        server,
        http,
    } = calc::served(dir.path(), &[]).expect("the calc project served");
    let _worker = start_three_runtime_worker(
        (&server, dir.path(), "agent-1"),
        (&claude.url, &codex.url, &gemini.url),
        (&["claude-code", "codex"], 2),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    let client = server.tasks().await.expect("client");
    let mut author = claude_step("fix", &fix, &["Write", "Read"]);
    author.review = Some(v1::ReviewSpec {
        runtime: "codex".into(),
        must_pass: true,
        ..v1::ReviewSpec::default()
    });
    let after = shell_step("after", &["fix"], "grep -q 'The sum of a and b' calc.py");
    let id = submit(
        &client,
        task_on_repo("reviewed", vec![author, after], &git.url("calc")),
    )
    .await
    .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(180))
        .await
        .expect("the task succeeds once the reviewer approves");

    // The author ran twice, in one session; the reviewer twice: changes
    // requested, then approved; what follows found the change (above).
    let ids: Vec<&str> = task.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["fix", "fix.review", "after", "deliver"]);
    let fixed = step(&task, "fix");
    assert_eq!(fixed.attempts.len(), 2, "{:?}", fixed.attempts);
    assert_eq!(fixed.attempts[0].session_id, fixed.attempts[1].session_id);
    let review = step(&task, "fix.review");
    assert_eq!(review.attempts.len(), 2, "{:?}", review.attempts);
    assert!(
        review.attempts[0]
            .error
            .starts_with("changes requested (1 comment): The fix is right"),
        "{}",
        review.attempts[0].error
    );
    let verdict = output(review);
    assert_eq!(verdict["verdict"], "approve");

    // Claude was told the comment on its line, in its session.
    let told = claude.request_containing(SENT_BACK).expect("sent back");
    assert!(
        told.contains(&format!("- calc.py:1: {asked}")) && told.contains("Fixed add."),
        "the comment, in the session that made the fix: {told}"
    );
    // Codex read the whole change each time, from the task's start.
    let first = codex
        .request_containing("Review the change above")
        .expect("the first review");
    assert!(
        first.contains("lambda a, b: a + b") && first.contains(&fix),
        "{first}"
    );
    let second = codex
        .request_containing("The sum of a and b")
        .expect("the second review");
    assert!(
        second.contains("-add = lambda a, b: a - b"),
        "round 2 shows the change from where it began: {second}"
    );

    let shown = stdout_of(server.cli().args(["get", "task", &id]));
    assert!(
        shown.contains(
            "Review:    step fix by codex (1 round(s) of changes requested): approved: Clear and right."
        ),
        "{shown}"
    );

    // The console shows the verdict beside the reviewed diff.
    let browser = tidewright_tests::browser::Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/tasks/{id}"),
        &server.admin_token,
    )
    .await;
    browser
        .click("g[data-step='fix.review']")
        .await
        .expect("the review step");
    let said = browser
        .text_until("[data-test=verdict]", Duration::from_secs(30), |t| {
            t == "approved"
        })
        .await
        .expect("the verdict");
    assert_eq!(said, "approved");
    browser
        .count_until(
            "[data-test=review] [data-test=diff]",
            1,
            Duration::from_secs(30),
        )
        .await
        .expect("the reviewed diff");
    let rounds = browser.text("[data-test=rounds]").await.expect("rounds");
    assert!(
        rounds.contains("1 round(s) of changes requested"),
        "{rounds}"
    );
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_by_a_runtime_no_worker_offers_waits_and_says_so() {
    let claude = Mock::start(Api::Anthropic, vec![Reply::Text("Nothing to fix.".into())])
        .await
        .expect("claude mock");
    let codex = Mock::start(Api::OpenAi, Vec::new())
        .await
        .expect("codex mock");
    let gemini = Mock::start(Api::Google, Vec::new())
        .await
        .expect("gemini mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let calc::Served {
        git,
        secrets,
        server,
        ..
    } = calc::served(dir.path(), &[]).expect("the calc project served");
    // Claude Code only: no worker runs Gemini CLI.
    let _worker = start_three_runtime_worker(
        (&server, dir.path(), "agent-1"),
        (&claude.url, &codex.url, &gemini.url),
        (&["claude-code"], 1),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    let client = server.tasks().await.expect("client");
    let mut author = claude_step("fix", "Fix add.", &[]);
    author.review = Some(v1::ReviewSpec {
        runtime: "gemini-cli".into(),
        must_pass: true,
        ..v1::ReviewSpec::default()
    });
    let id = submit(
        &client,
        task_on_repo("unreviewed", vec![author], &git.url("calc")),
    )
    .await
    .expect("submitted: a runtime no worker offers now is not bad input");
    // The author runs; its reviewer waits, saying for what.
    let waits = eventually(Duration::from_secs(60), || {
        let client = client.clone();
        let id = id.clone();
        async move {
            let task = client
                .clone()
                .get_task(v1::GetTaskRequest { task_id: id })
                .await
                .ok()?
                .into_inner();
            let reviewer = task.steps.iter().find(|s| s.id == "fix.review")?;
            (!reviewer.queued_reason.is_empty()).then(|| reviewer.queued_reason.clone())
        }
    })
    .await
    .expect("the reviewer waits, saying why");
    assert!(waits.contains("gemini-cli"), "{waits}");
    let task = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(step(&task, "fix").state, v1::StepState::Succeeded as i32);
    assert_eq!(task.state, v1::TaskState::Running as i32, "the gate holds");
    let shown = stdout_of(server.cli().args(["get", "task", &id]));
    assert!(
        shown.contains("Queued:    step fix.review waits:"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_review_is_refused_at_submit_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--allow-local-repos"]).expect("server");
    let mut client = server.tasks().await.expect("client");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo("calc", &[("calc.py", BUG)]);
    let reviewed = |review: v1::ReviewSpec| {
        let mut step = claude_step("fix", "fix it", &[]);
        step.review = Some(review);
        task_on_repo("bad", vec![step], &git.url("calc"))
    };
    let codex = || v1::ReviewSpec {
        runtime: "codex".into(),
        ..v1::ReviewSpec::default()
    };
    refused_naming(
        client
            .submit_task(reviewed(v1::ReviewSpec {
                runtime: "cobol".into(),
                ..codex()
            }))
            .await,
        "spec.steps[0].review.runtime",
    );
    refused_naming(
        client
            .submit_task(reviewed(v1::ReviewSpec {
                rounds: 11,
                ..codex()
            }))
            .await,
        "spec.steps[0].review.rounds",
    );
    let mut shell = shell_step("build", &[], "make");
    shell.review = Some(codex());
    refused_naming(
        client
            .submit_task(task_on_repo("bad", vec![shell], &git.url("calc")))
            .await,
        "spec.steps[0].review",
    );
    let mut no_repo = claude_step("fix", "fix it", &[]);
    no_repo.review = Some(codex());
    refused_naming(
        client.submit_task(task("bad", vec![no_repo])).await,
        "spec.steps[0].review",
    );
    let mut own = claude_step("fix", "fix it", &[]);
    own.review_of = Some(v1::ReviewOf::default());
    refused_naming(
        client
            .submit_task(task_on_repo("bad", vec![own], &git.url("calc")))
            .await,
        "spec.steps[0].reviewOf",
    );
    let stored = all_task_ids(&client).await.expect("list");
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
}
