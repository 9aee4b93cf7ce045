//! Steering in the engine: a message for a running agent step goes to its
//! worker with who sent it, after a `Steered` event records it; a step not
//! running, a step that is not an agent's and an unknown step are refused
//! with nothing sent or recorded.

use tidewright_core::{ClaudeCodeSpec, EventKind};

use super::*;
use crate::handle::Steer;

fn claude(id: &str) -> StepSpec {
    StepSpec {
        claude_code: Some(ClaudeCodeSpec {
            prompt: format!("do {id}"),
            ..ClaudeCodeSpec::default()
        }),
        noop: None,
        ..StepSpec::noop(id)
    }
}

fn steer(step: &str, follow_up: bool) -> Steer {
    Steer {
        task_id: "t".into(),
        step_id: step.into(),
        message: "Use the v2 API.".into(),
        from: "dana".into(),
        follow_up,
    }
}

#[tokio::test]
async fn a_message_goes_to_the_worker_running_the_step_after_its_event() {
    let h = Harness::new();
    let spec = TaskSpec {
        name: "t".into(),
        steps: vec![claude("a"), claude("b").after(&["a"])],
        ..TaskSpec::default()
    };
    h.try_submit("t", "default", spec, 1)
        .await
        .expect("submitted");
    let mut w = h
        .ready_worker("w", &[tidewright_core::CLAUDE_CODE], 1)
        .await;
    let a = w.assigned().await;

    // b waits for a: not running, nothing sent.
    let refused = h.engine.steer(steer("b", false)).await;
    assert!(
        matches!(&refused, Err(Error::FailedPrecondition(m)) if m.contains("step b of task t is waiting")),
        "{refused:?}"
    );
    let unknown = h.engine.steer(steer("zz", false)).await;
    assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");

    let (attempt, delivery) = h.engine.steer(steer("a", true)).await.expect("sent");
    assert_eq!((attempt, delivery.as_str()), (1, "after the turn"));
    match w.next().await {
        ToWorker::Steer {
            attempt,
            message,
            from,
            follow_up,
        } => {
            assert_eq!(attempt, a);
            assert_eq!(
                (message.as_str(), from.as_str(), follow_up),
                ("Use the v2 API.", "dana", true)
            );
        }
        other => panic!("expected the message, got {other:?}"),
    }
    let events = h.events("t").await;
    let steered: Vec<&EventKind> = events
        .iter()
        .filter(|e| matches!(e, EventKind::Steered { .. }))
        .collect();
    assert_eq!(steered.len(), 1, "only the one sent: {events:?}");
    assert!(
        matches!(steered[0], EventKind::Steered { step, from, delivery, .. }
            if step == "a" && from == "dana" && delivery == "after the turn"),
        "{steered:?}"
    );
}

#[tokio::test]
async fn a_shell_step_takes_no_message() {
    let h = Harness::new();
    let spec = TaskSpec {
        name: "t".into(),
        steps: vec![StepSpec::shell("s", &["true"])],
        ..TaskSpec::default()
    };
    h.try_submit("t", "default", spec, 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    w.assigned().await;
    let refused = h.engine.steer(steer("s", false)).await;
    assert!(
        matches!(&refused, Err(Error::FailedPrecondition(m)) if m.contains("not an agent's")),
        "{refused:?}"
    );
    h.settled().await;
    assert!(w.idle(), "nothing sent");
}
