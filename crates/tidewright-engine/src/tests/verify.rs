//! Verified steps in the engine: a round whose checks failed sends the
//! step back, uncounted, its next assignment told what failed in the same
//! session; the same failure twice fails it for good, retry policy or not;
//! a passing round ends it; a restart goes on at the round it was in.

use tidewright_core::verify::{CheckSpec, VerifySpec};
use tidewright_core::{CheckResult, Verification};

use super::*;

fn verified(id: &str) -> StepSpec {
    let mut step = noop(id);
    step.verify = Some(VerifySpec {
        checks: vec![CheckSpec {
            name: "tests".into(),
            run: vec!["pytest".into()],
            timeout: String::new(),
        }],
        rounds: Some(3),
        ..VerifySpec::default()
    });
    // A retry policy does not turn a verdict of the checks into a retry.
    step.retry = Some(tidewright_core::RetryPolicy {
        initial_delay_ms: 0,
        ..tidewright_core::RetryPolicy::new(5)
    });
    step
}

fn found(passed: bool, tail: &str) -> Verification {
    Verification {
        round: 0,
        head_commit: "c0ffee".into(),
        checks: vec![CheckResult {
            name: "tests".into(),
            passed,
            exit_code: Some(if passed { 0 } else { 1 }),
            tail: tail.into(),
            ..CheckResult::default()
        }],
        ..Verification::default()
    }
}

impl Harness {
    /// `worker`'s agent ended its turn in success, in session `s-1`, and
    /// its checks found `verification`.
    async fn round(
        &self,
        worker: &FakeWorker,
        attempt: AttemptKey,
        verification: Option<Verification>,
    ) {
        self.engine
            .session(worker.id, attempt.clone(), "s-1".into(), "m".into())
            .await
            .expect("session");
        self.engine
            .report(
                worker.id,
                StepResult {
                    exit_code: Some(0),
                    verification,
                    ..StepResult::ended(attempt, AttemptEnd::Succeeded)
                },
            )
            .await
            .expect("reported");
        self.engine.credits(worker.id, 1).await.expect("credits");
    }
}

fn told(message: ToWorker) -> (u32, String) {
    match message {
        ToWorker::Assign(a) => (
            a.attempt.attempt,
            a.resume.map(|r| r.message).unwrap_or_default(),
        ),
        other => panic!("expected an assignment, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_round_sends_the_session_back_and_the_same_failure_twice_fails_for_good() {
    let h = Harness::new();
    h.submit("t", 0, 1, vec![verified("fix")]).await;
    let mut w = h.ready_worker("w1", &["shell"], 1).await;
    assert_eq!(told(w.next().await), (1, String::new()));
    h.round(
        &w,
        key("t", "fix", 1),
        Some(found(false, "FAIL: test_add\nAssertionError: 1 != 5")),
    )
    .await;
    // Round 2: the same session, told what failed.
    let (attempt, message) = told(w.next().await);
    assert_eq!(attempt, 2);
    assert!(
        message.contains("The check \"tests\" (`pytest`) failed (exit 1)"),
        "{message}"
    );
    assert!(message.contains("AssertionError: 1 != 5"), "{message}");
    h.round(
        &w,
        key("t", "fix", 2),
        Some(found(false, "FAIL: test_add\nAssertionError: 2 != 5")),
    )
    .await;
    h.settled().await;
    let task = h.task("t").await;
    assert_eq!(task.state, TaskState::Failed);
    let step = &task.steps[0];
    assert_eq!(step.state, StepState::Failed);
    assert!(
        step.error
            .starts_with("the same failure twice: verify round 2"),
        "{}",
        step.error
    );
    // Both rounds are on the record, numbered; the first counted no attempt.
    let rounds: Vec<u32> = step
        .attempts
        .iter()
        .filter_map(|a| a.verification.as_ref().map(|v| v.round))
        .collect();
    assert_eq!(rounds, [1, 2]);
    assert!(w.inbox.try_recv().is_err(), "no retry");

    // Retried by a person: its rounds start afresh, its session told what
    // failed last.
    h.engine.reopen(task).await.expect("retried");
    let (attempt, message) = told(w.next().await);
    assert_eq!(attempt, 3);
    assert!(message.contains("AssertionError: 2 != 5"), "{message}");
    h.round(
        &w,
        key("t", "fix", 3),
        Some(found(false, "FAIL: test_add\nAssertionError: 3 != 5")),
    )
    .await;
    let (attempt, _) = told(w.next().await);
    assert_eq!(
        attempt, 4,
        "round 1 of the retry is sent back, not failed as the same failure"
    );
}

#[tokio::test]
async fn a_passing_round_ends_the_step_and_a_worker_that_ran_no_checks_fails_it() {
    let h = Harness::new();
    h.submit("t", 0, 1, vec![verified("fix")]).await;
    let mut w = h.ready_worker("w1", &["shell"], 1).await;
    told(w.next().await);
    h.round(&w, key("t", "fix", 1), Some(found(true, "OK")))
        .await;
    h.settled().await;
    assert_eq!(h.task("t").await.state, TaskState::Succeeded);

    h.submit("old-worker", 0, 2, vec![verified("fix")]).await;
    told(w.next().await);
    h.round(&w, key("old-worker", "fix", 1), None).await;
    h.settled().await;
    let task = h.task("old-worker").await;
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.steps[0].error, crate::verify::NO_CHECKS_RAN);
}

#[tokio::test]
async fn a_graded_step_runs_only_where_a_grader_is_and_passed_checks_left_ungraded_fail_it() {
    let h = Harness::new();
    let mut step = verified("fix");
    if let Some(verify) = step.verify.as_mut() {
        verify.rubric = "The README documents it.".into();
    }
    h.submit("t", 0, 1, vec![step]).await;
    let mut plain = h.ready_worker("w1", &["shell"], 1).await;
    h.settled().await;
    assert!(
        plain.inbox.try_recv().is_err(),
        "a worker that cannot grade is not handed a rubric"
    );
    let mut grading = h.ready_worker("w2", &["shell", "grader"], 1).await;
    told(grading.next().await);
    // Its checks passed, and its worker sent no grade.
    h.round(&grading, key("t", "fix", 1), Some(found(true, "OK")))
        .await;
    h.settled().await;
    let task = h.task("t").await;
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.steps[0].error, tidewright_core::verify::NOT_GRADED);
}

#[tokio::test]
async fn a_restart_goes_on_at_the_round_it_was_in() {
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        h.submit("t", 0, 1, vec![verified("fix")]).await;
        let mut w = h.ready_worker("w1", &["shell"], 1).await;
        told(w.next().await);
        h.round(
            &w,
            key("t", "fix", 1),
            Some(found(false, "error: expected one thing")),
        )
        .await;
        // Round 2 runs on w1 when the control plane goes.
        assert_eq!(told(w.next().await).0, 2);
        h.settled().await;
    }
    let backlog = store.unfinished_task_ids().await.expect("recovery");
    let h = Harness::start(
        store.reopen(),
        backlog,
        liveness(Duration::from_millis(300)),
    );
    let mut w2 = h.worker("w2", &["shell"], 1).await;
    let _heartbeats = h.keep_alive(&w2);
    h.engine.credits(w2.id, 1).await.expect("credits");
    let (attempt, message) = told(w2.next().await);
    assert_eq!(attempt, 3);
    assert!(message.contains("error: expected one thing"), "{message}");
    h.round(&w2, key("t", "fix", 3), Some(found(true, "OK")))
        .await;
    h.settled().await;
    let task = h.task("t").await;
    assert_eq!(task.state, TaskState::Succeeded);
    let last = task.steps[0]
        .attempts
        .last()
        .and_then(|a| a.verification.clone());
    assert_eq!(last.map(|v| v.round), Some(2), "round 2, not a new round 1");
}
