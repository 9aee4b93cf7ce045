//! Attempts in the engine: the first to pass stops the others, the step
//! that chooses takes the winner, and an attempt its worker reclaims after
//! a restart, when another passed first meanwhile, is stopped then.

use tidewright_core::AttemptKey;
use tidewright_core::attempts::{Select, SelectSpec};

use super::*;

/// Step `a` as two attempts on shell workers, the first to pass winning.
fn first_passing() -> TaskSpec {
    TaskSpec {
        name: "t".into(),
        steps: vec![
            StepSpec::shell("a.1", &["true"]),
            StepSpec::shell("a.2", &["true"]),
            StepSpec {
                depends_on: vec!["a.1".into(), "a.2".into()],
                select: Some(SelectSpec {
                    attempts: vec!["a.1".into(), "a.2".into()],
                    select: Select::FirstPassing,
                    stop_early: true,
                    prompt: String::new(),
                }),
                ..StepSpec::noop("a")
            },
        ],
        ..TaskSpec::default()
    }
}

/// Task `t` submitted as [`first_passing`], both attempts given to one
/// worker, and `a.1` passed: the worker, and `a.2`'s attempt.
async fn a1_passes(h: &Harness) -> (FakeWorker, AttemptKey) {
    h.try_submit("t", "default", first_passing(), 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 2).await;
    let first = w.assigned().await;
    let second = w.assigned().await;
    let (won, other) = if first.step_id == "a.1" {
        (first, second)
    } else {
        (second, first)
    };
    h.report(&w, won, AttemptEnd::Succeeded).await;
    (w, other)
}

/// The first attempt to pass, and the other, stopped.
fn passed_first(reason: &str) {
    assert_eq!(reason, "attempt a.1 passed first");
}

#[tokio::test]
async fn the_first_attempt_to_pass_stops_the_other_and_the_step_takes_it() {
    let h = Harness::new();
    let (mut w, other) = a1_passes(&h).await;
    let stopped = w.stopped(1).await;
    assert_eq!(stopped[0].0, other);
    passed_first(&stopped[0].1);
    h.report(&w, other, AttemptEnd::Cancelled).await;
    h.until_state("t", TaskState::Succeeded).await;
    let task = h.task("t").await;
    let states: Vec<StepState> = task.steps.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            StepState::Succeeded,
            StepState::Cancelled,
            StepState::Succeeded
        ],
        "the stopped attempt is not retried, and the step chose"
    );
    assert_eq!(
        task.steps[2].progress_message, "chose a.1 (): the only attempt that passed",
        "shell steps have no agent runtime to name"
    );
}

#[tokio::test]
async fn an_attempt_reclaimed_after_a_restart_is_stopped_when_another_passed_first() {
    let store = MemoryStore::new();
    let other = {
        let h = Harness::new_on(store.clone());
        let (mut w, other) = a1_passes(&h).await;
        // The stop is sent; the control plane stops before it is answered.
        w.stopped(1).await;
        other
    };
    let h = Harness::start(
        store.reopen(),
        vec!["t".into()],
        liveness(Duration::from_secs(30)),
    );
    let mut w = h.reconnect("w", &["shell"], 2, vec![other.clone()]).await;
    let stopped = w.stopped(1).await;
    assert_eq!(stopped[0].0, other);
    passed_first(&stopped[0].1);
    h.report(&w, other, AttemptEnd::Cancelled).await;
    h.until_state("t", TaskState::Succeeded).await;
}
