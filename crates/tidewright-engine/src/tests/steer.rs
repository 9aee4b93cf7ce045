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
    h.submit("t", 0, 1, vec![StepSpec::shell("s", &["true"])])
        .await;
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

fn codex(id: &str) -> StepSpec {
    StepSpec {
        codex: Some(tidewright_core::CodexSpec {
            prompt: format!("do {id}"),
            ..tidewright_core::CodexSpec::default()
        }),
        noop: None,
        ..StepSpec::noop(id)
    }
}

/// Task `t` of one Codex step, given to a worker.
async fn codex_assigned(h: &Harness) -> (FakeWorker, tidewright_core::AttemptKey) {
    let spec = TaskSpec {
        name: "t".into(),
        steps: vec![codex("a")],
        ..TaskSpec::default()
    };
    h.try_submit("t", "default", spec, 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &[tidewright_core::CODEX], 1).await;
    let a = w.assigned().await;
    (w, a)
}

/// [`codex_assigned`], its CLI in session `s-1`.
async fn codex_running(h: &Harness) -> (FakeWorker, tidewright_core::AttemptKey) {
    let (w, a) = codex_assigned(h).await;
    h.engine
        .session(w.id, a.clone(), "s-1".into(), "m".into())
        .await
        .expect("session");
    (w, a)
}

/// The step's next assignment (its worker's slot given back) resumes
/// session `s-1` with a message.
async fn resumed_with(h: &Harness, w: &mut FakeWorker) -> (u32, String) {
    h.engine.credits(w.id, 1).await.expect("credits");
    let next = w.assignment().await;
    let resume = next.resume.expect("it resumes the session");
    assert_eq!(resume.session_id, "s-1");
    (next.attempt.attempt, resume.message)
}

#[tokio::test]
async fn a_codex_turn_is_stopped_for_a_message_and_its_session_resumed_with_it_uncounted() {
    let h = Harness::new();
    let (mut w, a) = codex_running(&h).await;
    let (attempt, delivery) = h.engine.steer(steer("a", false)).await.expect("sent");
    assert_eq!(
        (attempt, delivery.as_str()),
        (1, "at the turn boundary: interrupted, then resumed with it")
    );
    match w.next().await {
        ToWorker::Cancel {
            attempt,
            reason,
            resumable,
        } => {
            assert_eq!(attempt, a);
            assert!(resumable, "its session is kept");
            assert!(reason.starts_with("steered by dana"), "{reason}");
        }
        other => panic!("expected the attempt stopped, got {other:?}"),
    }
    // A second message before the stop lands is told with the first; no
    // second stop.
    h.engine.steer(steer("a", false)).await.expect("sent");
    h.report(&w, a, AttemptEnd::Cancelled).await;
    let (attempt, told) = resumed_with(&h, &mut w).await;
    assert_eq!(attempt, 2, "no retry policy, yet it runs again");
    assert!(
        told.starts_with(tidewright_core::steer::TOLD_PREFIX),
        "{told}"
    );
    assert_eq!(told.matches("Use the v2 API.").count(), 2, "{told}");
    // Told once: a failure of this attempt is the step's own.
    h.report(&w, key("t", "a", 2), AttemptEnd::Failed).await;
    h.until_state("t", TaskState::Failed).await;
}

#[tokio::test]
async fn a_codex_turn_without_a_session_yet_is_not_stopped_but_followed_up() {
    let h = Harness::new();
    let (mut w, _) = codex_assigned(&h).await;
    let (_, delivery) = h.engine.steer(steer("a", false)).await.expect("sent");
    assert_eq!(
        delivery.as_str(),
        "after the turn: its session resumed with it"
    );
    assert!(matches!(
        w.next().await,
        ToWorker::Steer {
            follow_up: true,
            ..
        }
    ));
}

#[tokio::test]
async fn a_follow_up_for_codex_resumes_its_session_once_its_turn_succeeds() {
    let h = Harness::new();
    let (mut w, a) = codex_running(&h).await;
    let (_, delivery) = h.engine.steer(steer("a", true)).await.expect("sent");
    assert_eq!(
        delivery.as_str(),
        "after the turn: its session resumed with it"
    );
    // The worker is told, to keep the session when the turn ends.
    assert!(matches!(
        w.next().await,
        ToWorker::Steer {
            follow_up: true,
            ..
        }
    ));
    h.report(&w, a, AttemptEnd::Succeeded).await;
    let (attempt, told) = resumed_with(&h, &mut w).await;
    assert_eq!(attempt, 2);
    assert!(told.contains("Use the v2 API."), "{told}");
    h.report(&w, key("t", "a", 2), AttemptEnd::Succeeded).await;
    h.until_state("t", TaskState::Succeeded).await;
}
