//! Session checkpoints on real processes: an agent attempt that fails on
//! worker A leaves its session with the control plane; A stops; the retry
//! runs on worker B, in B's own directories, and resumes the same session
//! (the real Claude Code CLI against the mock API sees the earlier
//! conversation, and the file attempt 1 wrote is there). A worker draining
//! mid-session hands its agent back with the session kept. Bad checkpoint
//! calls get a status naming the field, and lose nothing stored.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

fn agent_step(id: &str, prompt: &str, retry: Option<v1::RetryPolicy>) -> v1::StepSpec {
    v1::StepSpec {
        retry,
        ..claude_step(id, prompt, &["Write", "Read"])
    }
}

/// The log lines of `attempt` among `events`.
fn log_of(events: &[v1::Event], attempt: u32) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Log(l)) if l.attempt == attempt => Some(l.line.clone()),
            _ => None,
        })
        .collect()
}

/// Starts worker B (`agent-2`, its own directories) and waits for the task
/// to succeed there; every event of the task, and the task.
async fn finish_on_worker_b(
    server: &Server,
    dir: &std::path::Path,
    mock: &Mock,
    id: &str,
) -> (Process, Vec<v1::Event>, v1::Task) {
    let worker_b =
        start_named_claude_worker(server, dir, "agent-2", mock, (&["claude-code"], 1), &[])
            .expect("worker B");
    let client = server.tasks().await.expect("client");
    let events = events_until_done(&client, id).await;
    let task = wait_succeeded(&client, id, Duration::from_secs(10))
        .await
        .expect("the task succeeds on B");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[1].worker, "agent-2");
    assert!(!attempts[0].session_id.is_empty());
    assert_eq!(
        attempts[1].session_id, attempts[0].session_id,
        "the same session goes on"
    );
    (worker_b, events, task)
}

#[tokio::test]
async fn a_retry_on_another_worker_resumes_the_session_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            // Attempt 1, on A: writes a file, then the API fails it.
            Reply::claude_write("notes.txt", "half done\n"),
            Reply::Error {
                status: 500,
                message: "the mock fell over".into(),
            },
            // Attempt 2, on B: reads the file back, and finishes.
            Reply::claude_read("notes.txt"),
            Reply::Text("Finished where I left off.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, mut worker_a) = claude_worker_with(dir.path(), &mock, &["claude-code"], &[]).await;
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    // The retry waits long enough for the test to stop A first.
    let retry = Some(v1::RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: 3000,
        max_delay_ms: 3000,
        multiplier: 1.0,
    });
    let id = submit(
        &client,
        task("travels", vec![agent_step("notes", &prompt, retry)]),
    )
    .await
    .expect("submit");
    // Attempt 1 failed (its checkpoint is committed before its result).
    wait_task(&client, &id, Duration::from_secs(60), |t| {
        let step = t.steps.into_iter().next()?;
        step.attempts
            .first()
            .filter(|a| a.state == v1::StepState::Failed as i32)
            .cloned()
    })
    .await
    .expect("attempt 1 fails");
    worker_a.kill();

    let (_worker_b, events, task) = finish_on_worker_b(&server, dir.path(), &mock, &id).await;
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts[0].worker, "agent-1");
    let session = &attempts[0].session_id;

    let kept = log_of(&events, 1);
    assert!(
        kept.iter()
            .any(|l| l.starts_with(&format!("checkpoint kept: session {session}, "))),
        "{kept:?}"
    );
    let resumed = log_of(&events, 2);
    assert!(
        resumed.contains(&format!(
            "resuming session {session} of attempt 1 from the checkpoint attempt 1 left"
        )),
        "{resumed:?}"
    );
    mock.assert_resumed(&prompt, "notes.txt", "half done");
    assert_eq!(
        step_output(&task, "notes").expect("output")["result"],
        "Finished where I left off."
    );
}

#[tokio::test]
async fn a_draining_worker_hands_its_agent_back_and_the_session_resumes_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_write("notes.txt", "half done\n"),
            // A is stopped while this turn hangs.
            Reply::Hang,
            Reply::claude_read("notes.txt"),
            Reply::Text("Finished where I left off.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, mut worker_a) = claude_worker_with(
        dir.path(),
        &mock,
        &["claude-code"],
        &["--drain-grace", "500ms"],
    )
    .await;
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    // One attempt only: the hand-back must not spend it.
    let id = submit(
        &client,
        task("drained", vec![agent_step("notes", &prompt, None)]),
    )
    .await
    .expect("submit");
    eventually(Duration::from_secs(60), || async {
        (mock.hanging() == 1).then_some(())
    })
    .await
    .expect("the agent is mid-session");
    worker_a.signal("TERM");
    worker_a
        .wait_exit(Duration::from_secs(30))
        .expect("A drains and stops");

    // One attempt allowed, two run: the hand-back did not count.
    let (_worker_b, events, task) = finish_on_worker_b(&server, dir.path(), &mock, &id).await;
    let session = &task.steps[0].attempts[0].session_id;
    assert!(
        log_of(&events, 2).contains(&format!(
            "resuming session {session} of attempt 1 from the checkpoint attempt 1 left"
        )),
        "{:?}",
        log_of(&events, 2)
    );
    mock.assert_resumed(&prompt, "notes.txt", "half done");
}

/// Only workers keep checkpoints, only for a step's current attempt, and a
/// refused call names its field and changes nothing stored.
#[tokio::test]
async fn checkpoint_calls_are_held_to_the_current_attempt_and_bad_ones_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _worker) = start_with_roles(
        dir.path(),
        &free_addr(),
        &["--max-checkpoint-bytes", "2048"],
        1,
    )
    .await
    .expect("server");
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gate");
    let id = submit(
        &client,
        task("held", vec![shell_step("a", &[], &wait_for_gate(&gate))]),
    )
    .await
    .expect("submit");
    wait_step(&client, &id, "a", v1::StepState::Running)
        .await
        .expect("running");

    let channel = connect(&server.url).await.expect("channel");
    let as_worker = v1::agent_service_client::AgentServiceClient::with_interceptor(
        channel.clone(),
        bearer(&server.worker_token),
    );
    let attempt = |n: u32| v1::AttemptRef {
        task_id: id.clone(),
        step_id: "a".into(),
        attempt: n,
    };
    let checkpoint = |n: u32, archive: &[u8]| v1::Checkpoint {
        attempt: Some(attempt(n)),
        session_id: "s-1".into(),
        workspace: "/work/a".into(),
        archive: archive.to_vec(),
    };
    let put = |c: v1::Checkpoint| {
        let mut client = as_worker.clone();
        async move { client.put_checkpoint(c).await.map(|_| ()) }
    };
    let get = |n: u32| {
        let mut client = as_worker.clone();
        let request = v1::GetCheckpointRequest {
            attempt: Some(attempt(n)),
        };
        async move { client.get_checkpoint(request).await.map(|r| r.into_inner()) }
    };
    let nothing_yet = get(1).await.expect_err("none kept yet");
    assert_eq!(nothing_yet.code(), tonic::Code::NotFound, "{nothing_yet:?}");
    put(checkpoint(1, b"the session")).await.expect("kept");
    assert_eq!(
        get(1).await.expect("read back"),
        checkpoint(1, b"the session")
    );

    let refused = [
        (
            v1::Checkpoint {
                attempt: None,
                ..checkpoint(1, b"x")
            },
            tonic::Code::InvalidArgument,
            "attempt: required",
        ),
        (
            v1::Checkpoint {
                session_id: "../../etc/passwd".into(),
                ..checkpoint(1, b"x")
            },
            tonic::Code::InvalidArgument,
            "session_id: ",
        ),
        (
            v1::Checkpoint {
                workspace: String::new(),
                ..checkpoint(1, b"x")
            },
            tonic::Code::InvalidArgument,
            "workspace: ",
        ),
        (
            checkpoint(1, &[]),
            tonic::Code::InvalidArgument,
            "archive: required",
        ),
        (
            checkpoint(1, &[7; 4096]),
            tonic::Code::ResourceExhausted,
            "archive: the checkpoint is 4096 bytes; the limit (max-checkpoint-bytes) is 2048",
        ),
        (
            checkpoint(2, b"x"),
            tonic::Code::FailedPrecondition,
            "attempt 2 of step \"a\" of task",
        ),
        (
            v1::Checkpoint {
                attempt: Some(v1::AttemptRef {
                    task_id: "01NOSUCHTASK".into(),
                    ..attempt(1)
                }),
                ..checkpoint(1, b"x")
            },
            tonic::Code::NotFound,
            "task 01NOSUCHTASK not found",
        ),
    ];
    for (bad, code, message) in refused {
        let status = put(bad).await.expect_err(message);
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(message), "{status:?}");
    }
    let not_running = get(2).await.expect_err("not the running attempt");
    assert_eq!(not_running.code(), tonic::Code::FailedPrecondition);

    // People's tokens do not reach checkpoints.
    let mut developer = v1::agent_service_client::AgentServiceClient::with_interceptor(
        channel,
        bearer("tidewright_dev"),
    );
    let denied = developer
        .get_checkpoint(v1::GetCheckpointRequest {
            attempt: Some(attempt(1)),
        })
        .await
        .expect_err("a developer reads no checkpoint");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // Nothing refused replaced what was kept.
    assert_eq!(
        get(1).await.expect("still there"),
        checkpoint(1, b"the session")
    );
    std::fs::write(&gate, "").expect("open the gate");
    wait_succeeded(&client, &id, Duration::from_secs(20))
        .await
        .expect("the step ends");
}
