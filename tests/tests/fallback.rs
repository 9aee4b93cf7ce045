//! Failover to another provider on the real Claude Code and Codex CLIs,
//! each against the mock of its provider's API, on a real repository served
//! by the real git server, with real checks (Python's unittest): Claude's
//! provider answers 429 mid-step, after its agent wrote the fix; the step
//! moves to Codex with that work and a summary of the session, Codex is
//! told what Claude did, and the step's checks pass on the work carried
//! over. The move is an event, a webhook (checked with the Standard
//! Webhooks libraries), an audit record and a metric, and `get task` and
//! the console (in Chromium) show it. With `failback`, the next step runs
//! on Claude once its window has reset. Bad input is refused naming the
//! field, and a tenant the server's `--fallback-policy` forbids is refused.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::calc::{self, RIGHT};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::webhook_receiver::{Received, Receiver, verify_with_libraries};
use tidewright_tests::*;

const SECRET: &str = "whsec_C2FtcGxlLWtleS1vZi10aGlydHktdHdvLWJ5dGVzIQ==";

/// The window Claude's provider names when it answers 429.
const RESET_SECONDS: i64 = 3;

/// What the next agent is told first (see `tidewright_core::failover`).
const BRIEFED: &str = "Before your task: another agent (claude-code) began this step";

fn with_fallback(mut step: v1::StepSpec, fallback: &[&str]) -> v1::StepSpec {
    step.fallback = fallback.iter().map(|f| f.to_string()).collect();
    step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_moves_a_running_step_to_codex_with_its_work_and_the_next_returns_to_claude() {
    let tag = std::process::id();
    let fix = format!("Fix add in calc.py so that the tests pass ({tag}).");
    let after = format!("Say that the fix is in ({tag}).");
    // Claude writes the fix, then its provider's window closes; after the
    // reset, Claude runs the next step.
    let claude = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                fix.as_str(),
                vec![
                    Reply::claude_write("calc.py", RIGHT),
                    Reply::limit(RESET_SECONDS),
                ],
            ),
            (after.as_str(), vec![Reply::Text("The fix is in.".into())]),
        ],
    )
    .await
    .expect("claude mock");
    // Codex, told what Claude did, runs the tests and is done.
    let codex = Mock::start_routed(
        Api::OpenAi,
        vec![(
            fix.as_str(),
            vec![
                Reply::codex_command("python3 -m unittest -q"),
                Reply::Text("Claude's fix holds: the tests pass.".into()),
            ],
        )],
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
    } = calc::served(dir.path(), &["--webhook-allow-private-networks"])
        .expect("the calc project served");
    // A pool of Claude agents and one of Codex agents, on workers with
    // mirrors of their own: the work carried over goes through the control
    // plane.
    let urls = (claude.url.as_str(), codex.url.as_str(), gemini.url.as_str());
    let _claude_pool = start_three_runtime_worker(
        (&server, dir.path(), "claude-1"),
        urls,
        (&["claude-code"], 1),
        &["--secrets-dir", &secrets, "--pool", "claude"],
    )
    .expect("claude worker");
    let _codex_pool = start_three_runtime_worker(
        (&server, dir.path(), "codex-1"),
        urls,
        (&["codex"], 1),
        &["--secrets-dir", &secrets, "--pool", "codex"],
    )
    .expect("codex worker");
    server
        .wait_for_agents(&["claude-1", "codex-1"])
        .await
        .expect("workers up");
    let receiver = Receiver::start(&[], 204).await.expect("receiver");
    let admin = tidewright_client::Client::connect(tidewright_client::Settings::new(
        &server.url,
        Some(server.admin_token.clone()),
    ))
    .await
    .expect("client");
    admin
        .create_webhook("", &receiver.url, &["step.failed_over"], SECRET)
        .await
        .expect("webhook");

    // `fix` may fall back to Codex; `after` too, and it waits for a person
    // (so it starts once the test has seen Claude's window reset).
    let client = server.tasks().await.expect("client");
    let mut first = with_fallback(claude_step("fix", &fix, &["Write", "Read"]), &["codex"]);
    first.verify = Some(v1::VerifySpec {
        checks: vec![unittest_check()],
        rounds: 1,
        ..v1::VerifySpec::default()
    });
    let mut second = with_fallback(claude_step("after", &after, &[]), &["codex"]);
    second.depends_on = vec!["fix".into()];
    second.approval = Some(v1::Approval {
        approvers: vec!["admin".into()],
        ..v1::Approval::default()
    });
    let mut request = task_on_repo("failover", vec![first, second], &git.url("calc"));
    if let Some(spec) = request.spec.as_mut() {
        spec.failback = true;
    }
    let id = submit(&client, request).await.expect("submit");
    let task = wait_task(&client, &id, Duration::from_secs(120), |t| {
        (step(&t, "after").state == v1::StepState::AwaitingApproval as i32).then_some(t)
    })
    .await
    .expect("fix succeeds and after waits for its approver");

    // Claude's attempt met the limit, uncounted; Codex's passed the checks
    // on Claude's work, which it did not touch.
    let fixed = step(&task, "fix");
    assert_eq!(fixed.state, v1::StepState::Succeeded as i32);
    assert_eq!(fixed.attempts.len(), 2, "{:?}", fixed.attempts);
    assert!(
        fixed.attempts[0]
            .error
            .starts_with("claude-code rate limited ("),
        "{}",
        fixed.attempts[0].error
    );
    let verified = fixed.attempts[1]
        .verification
        .as_ref()
        .expect("checks ran on codex's attempt");
    assert!(verified.checks.iter().all(|c| c.passed), "{verified:?}");
    // The step's work is Claude's and Codex's both, from the task's start.
    let work = fixed.work.as_ref().expect("work");
    let start = task
        .spec
        .as_ref()
        .and_then(|s| s.repo.as_ref())
        .map(|r| r.commit.clone())
        .unwrap_or_default();
    assert_eq!(work.base_commit, start, "{work:?}");
    assert!(
        work.changed_paths.iter().any(|p| p == "calc.py"),
        "{work:?}"
    );
    let told = codex.request_containing(&fix).expect("codex was asked");
    assert!(told.contains(BRIEFED), "{told}");
    assert!(
        told.contains("committed on this branch")
            && told.contains("- Write: ")
            && told.contains("calc.py"),
        "codex is told what Claude did: {told}"
    );

    // The move is an event, shown by `get task`, an audit record and a
    // metric.
    let events = task_events(&mut client.clone(), &id, 0, false)
        .await
        .expect("events");
    let moves: Vec<&v1::StepFailedOver> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::FailedOver(f)) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(
        (
            moves[0].step_id.as_str(),
            moves[0].from.as_str(),
            moves[0].to.as_str(),
            moves[0].carried
        ),
        ("fix", "claude-code", "codex", true)
    );
    let shown = stdout_of(server.cli().args(["get", "task", &id]));
    assert!(
        shown.contains(
            "Failover:  step fix failed over from claude-code to codex after attempt 1, with its work at "
        ),
        "{shown}"
    );
    let audit = stdout_of(server.cli().args(["audit", "-o", "json"]));
    assert!(
        audit.contains("step.failed_over")
            && audit.contains("from claude-code to codex, with its work"),
        "{audit}"
    );
    let (_, metrics) = http_get(&http, "/metrics", Some(&server.admin_token)).expect("scrape");
    assert!(
        metrics.contains("tidewright_failovers_total{from=\"claude-code\",to=\"codex\"} 1"),
        "{metrics}"
    );

    // The console says it on the step's panel.
    let browser = tidewright_tests::browser::Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/tasks/{id}"),
        &server.admin_token,
    )
    .await;
    browser.click("g[data-step=fix]").await.expect("the step");
    let said = browser
        .text_until("[data-test=failover]", Duration::from_secs(30), |t| {
            t.starts_with("Failed over")
        })
        .await
        .expect("the failover is shown");
    assert!(
        said.starts_with(
            "Failed over from claude-code to codex after attempt 1, with its work at "
        ),
        "{said}"
    );
    browser.close_without_errors().await;

    // The webhook came, signed as Standard Webhooks libraries verify.
    let heard: Vec<Received> = eventually(Duration::from_secs(30), || async {
        let heard = receiver.received();
        (!heard.is_empty()).then_some(heard)
    })
    .await
    .expect("the webhook");
    let body = heard[0].json();
    assert_eq!(heard[0].event, "step.failed_over");
    assert_eq!(body["step"]["from"], "claude-code");
    assert_eq!(body["step"]["to"], "codex");
    assert_eq!(body["step"]["carried"], true);
    for said in verify_with_libraries(SECRET, &[(&heard[0], heard[0].body.as_str())]) {
        assert_eq!(said, ("ok".to_string(), "ok".to_string()));
    }

    // Once Claude's window resets, the next step runs on Claude again.
    eventually(Duration::from_secs(30), || async {
        let agents = stdout_of(server.cli().args(["get", "agents"]));
        (!agents.contains("paused")).then_some(())
    })
    .await
    .expect("the window resets");
    succeed(server.cli().args(["approve", &id, "after"]));
    let done = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("the task succeeds");
    let view: serde_json::Value = serde_json::from_slice(
        &succeed(server.cli().args(["get", "task", &id, "-o", "json"])).stdout,
    )
    .expect("the task as JSON");
    let steps = view["steps"].as_array().expect("steps");
    let runtime_of = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["runtime"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(runtime_of("fix").as_deref(), Some("codex"));
    assert_eq!(runtime_of("after").as_deref(), Some("claude-code"));
    assert_eq!(step(&done, "after").attempts.len(), 1);
    assert!(claude.request_containing(&after).is_some(), "Claude ran it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_fallback_is_refused_at_submit_naming_its_field_and_a_forbidden_tenant_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--fallback-policy", "allow,acme=forbid"],
    )
    .expect("server");
    let mut client = server.tasks().await.expect("client");
    let one = |step: v1::StepSpec| task("bad", vec![step]);
    let cases = [
        (
            with_fallback(claude_step("a", "hi", &[]), &["claude-code"]),
            "spec.steps[0].fallback[0]",
        ),
        (
            with_fallback(claude_step("a", "hi", &[]), &["codex", "cobol"]),
            "spec.steps[0].fallback[1]",
        ),
        (
            with_fallback(shell_step("a", &[], "true"), &["codex"]),
            "spec.steps[0].fallback",
        ),
        (
            v1::StepSpec {
                failover: Some(v1::Failover {
                    from: "codex".into(),
                    ..v1::Failover::default()
                }),
                ..claude_step("a", "hi", &[])
            },
            "spec.steps[0].failover",
        ),
    ];
    for (step, field) in cases {
        refused_naming(client.submit_task(one(step)).await, field);
    }
    let mut forbidden = one(with_fallback(claude_step("a", "hi", &[]), &["codex"]));
    forbidden.tenant = "acme".into();
    let status = client
        .submit_task(forbidden)
        .await
        .expect_err("refused for acme");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().starts_with("spec.steps[0].fallback: the server's fallback policy (--fallback-policy) forbids failover for tenant \"acme\""),
        "{}",
        status.message()
    );
    // From a task file, the CLI says it in one line.
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "name: bad\nsteps:\n  - id: fix\n    codex: {prompt: fix it}\n    fallback: [codex]\n",
    )
    .expect("write");
    let said = fails_in_one_line(server.cli().args(["submit", "-f"]).arg(&file));
    assert!(
        said.contains("steps[0].fallback[0]") && said.contains("the step's own runtime"),
        "{said}"
    );
    let stored = all_task_ids(&client).await.expect("list");
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
    // A bad policy stops the server from starting, saying why.
    let refused = std::process::Command::new(tidewright_bin())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir.path().join("other").display().to_string(),
            "--fallback-policy",
            "acme=never",
        ])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--fallback-policy \"acme=never\": \"never\" is neither allow nor forbid"),
        "{said}"
    );
}
