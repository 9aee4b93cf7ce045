//! Steering a running agent with `tidewright steer`: the real Claude Code
//! CLI against the mock of its provider's API. A message sent while the
//! agent's turn is under way reaches the model in that same turn (the
//! mock's next request carries it); a follow-up waits for the turn to end
//! and starts the next. Each is audited with who sent it, and a
//! `steered` event says so. A finished task, a step that is not an
//! agent's, a blank message and an unknown step are refused in one line.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

const STEER: &str = "Use the v2 API instead.";

/// The step's log lines so far.
async fn logs(client: &Tasks, id: &str) -> Vec<String> {
    let mut client = client.clone();
    task_events(&mut client, id, 0, false)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e.kind {
            Some(v1::event::Kind::Log(l)) => Some(l.line),
            _ => None,
        })
        .collect()
}

/// A Claude Code step whose first turn runs a Bash call that waits at
/// `gate`, submitted; returns once that call runs (the mock answered the
/// turn's first request and the step is running).
async fn agent_at_the_gate(
    dir: &std::path::Path,
    replies: Vec<Reply>,
) -> (Server, Process, Mock, Tasks, String) {
    let mock = Mock::start(Api::Anthropic, replies).await.expect("mock");
    let (server, worker) = claude_worker_with(dir, &mock, &["claude-code"], &[]).await;
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task(
            "steered",
            vec![claude_step("a", "Port the client.", &["Bash"])],
        ),
    )
    .await
    .expect("submitted");
    wait_step(&client, &id, "a", v1::StepState::Running)
        .await
        .expect("running");
    eventually(Duration::from_secs(60), || async {
        (!mock.requests().is_empty()).then_some(())
    })
    .await
    .expect("the agent's turn is under way");
    (server, worker, mock, client, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_a_running_claude_code_session_within_its_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    let (server, _worker, mock, client, id) = agent_at_the_gate(
        dir.path(),
        vec![
            Reply::claude_bash(&wait_for_gate(&gate)),
            Reply::Text("Ported, on the v2 API.".into()),
        ],
    )
    .await;
    let said = stdout_of(server.cli().args(["steer", &id, "a", STEER]));
    assert!(said.contains("(attempt 1), mid-turn"), "{said}");
    // The worker wrote it into the session's input while the Bash call
    // still waits; then the call returns.
    eventually(Duration::from_secs(30), || async {
        logs(&client, &id)
            .await
            .iter()
            .any(|l| l.contains("written into the turn under way"))
            .then_some(())
    })
    .await
    .expect("written to the agent");
    std::fs::write(&gate, "").expect("gate");
    let done = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeds");
    // In the same turn: the model's next request carries the message, and
    // there was no turn after it.
    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "one turn: the call, then its answer");
    assert!(!requests[0].to_string().contains(STEER));
    assert!(requests[1].to_string().contains(STEER), "{}", requests[1]);
    let output: serde_json::Value =
        serde_json::from_str(&done.steps[0].output_json).expect("output");
    assert_eq!(output["result"], "Ported, on the v2 API.");
    let logs = logs(&client, &id).await;
    assert!(
        logs.iter()
            .any(|l| l == &format!("the agent took the message: {STEER}")),
        "{logs:?}"
    );
    // Said in the events, and audited with who sent it.
    let mut reader = client.clone();
    let events = task_events(&mut reader, &id, 0, false)
        .await
        .expect("events");
    let steered: Vec<&v1::StepSteered> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Steered(s)) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(steered.len(), 1, "{events:?}");
    assert_eq!(
        (
            steered[0].from.as_str(),
            steered[0].message.as_str(),
            steered[0].delivery.as_str()
        ),
        ("admin", STEER, "mid-turn")
    );
    let audit = client
        .clone()
        .list_audit(v1::ListAuditRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .events;
    let entry = audit
        .iter()
        .find(|e| e.action == "step.steer")
        .expect("audited");
    assert_eq!(
        (entry.actor.as_str(), entry.outcome.as_str()),
        ("admin", "ok")
    );
    assert_eq!(entry.task_id, format!("{id}/a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_waits_for_the_turn_to_end_and_starts_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    let (server, _worker, mock, client, id) = agent_at_the_gate(
        dir.path(),
        vec![
            Reply::claude_bash(&wait_for_gate(&gate)),
            Reply::Text("Ported.".into()),
            Reply::Text("Tests added too.".into()),
        ],
    )
    .await;
    let said = stdout_of(
        server
            .cli()
            .args(["steer", &id, "a", "Now add tests.", "--follow-up"]),
    );
    assert!(said.contains("after the turn"), "{said}");
    std::fs::write(&gate, "").expect("gate");
    let done = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeds");
    let requests = mock.requests();
    assert_eq!(requests.len(), 3, "a second turn for the follow-up");
    assert!(!requests[1].to_string().contains("Now add tests."));
    assert!(requests[2].to_string().contains("Now add tests."));
    let output: serde_json::Value =
        serde_json::from_str(&done.steps[0].output_json).expect("output");
    assert_eq!(output["result"], "Tests added too.", "the last turn's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_a_finished_task_a_shell_step_or_with_no_message_is_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)])
        .await
        .expect("server");
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gate");
    let id = submit(
        &client,
        task("gated", vec![shell_step("s", &[], &wait_for_gate(&gate))]),
    )
    .await
    .expect("submitted");
    wait_step(&client, &id, "s", v1::StepState::Running)
        .await
        .expect("running");
    let refused = fails_in_one_line(server.cli().args(["steer", &id, "s", STEER]));
    assert!(refused.contains("failed precondition"), "{refused}");
    assert!(refused.contains("step s is not an agent's"), "{refused}");
    let refused = fails_in_one_line(server.cli().args(["steer", &id, "s", "  "]));
    assert!(refused.contains("invalid argument: message"), "{refused}");
    let refused = fails_in_one_line(server.cli().args(["steer", &id, "nope", STEER]));
    assert!(refused.contains("not found"), "{refused}");
    std::fs::write(&gate, "").expect("gate");
    wait_succeeded(&client, &id, Duration::from_secs(30))
        .await
        .expect("succeeds");
    let refused = fails_in_one_line(server.cli().args(["steer", &id, "s", STEER]));
    assert!(
        refused.contains(&format!("task {id} is succeeded")),
        "{refused}"
    );
    // Nothing was said into the task's events.
    let mut reader = client.clone();
    let events = task_events(&mut reader, &id, 0, false)
        .await
        .expect("events");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, Some(v1::event::Kind::Steered(_)))),
        "{events:?}"
    );
}
