//! A task's run driven through its transitions in memory: ordering, retries, cancels and resumes.

use super::*;
use crate::spec::StepSpec;

fn diamond() -> TaskSpec {
    TaskSpec {
        name: "d".into(),
        steps: vec![
            StepSpec::noop("split"),
            StepSpec::noop("a").after(&["split"]),
            StepSpec::noop("b").after(&["split"]),
            StepSpec::noop("join").after(&["a", "b"]),
        ],
        ..TaskSpec::default()
    }
}

fn states(run: &TaskRun) -> Vec<StepState> {
    run.steps().iter().map(|s| s.state).collect()
}

fn queued_by(changes: &[Change]) -> Vec<usize> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Step {
                index,
                state: StepState::Queued,
                ..
            } => Some(*index),
            _ => None,
        })
        .collect()
}

use StepState::*;

#[test]
fn roots_are_queued_on_creation() {
    let (run, changes) = TaskRun::new(&diamond());
    assert_eq!(states(&run), [Queued, Waiting, Waiting, Waiting]);
    assert_eq!(run.state(), TaskState::Queued);
    assert_eq!(queued_by(&changes), [0]);
}

#[test]
fn dependents_start_only_when_all_dependencies_succeed() {
    let (mut run, _) = TaskRun::new(&diamond());
    let (attempt, changes) = run.start(0).expect("start");
    assert_eq!(attempt, 1);
    assert!(changes.contains(&Change::Task {
        state: TaskState::Running,
        message: String::new()
    }));
    assert_eq!(
        queued_by(&run.finish(0, Outcome::Succeeded).expect("finish")),
        [1, 2]
    );
    run.start(1).expect("start a");
    run.start(2).expect("start b");
    assert!(queued_by(&run.finish(1, Outcome::Succeeded).expect("finish a")).is_empty());
    assert_eq!(
        queued_by(&run.finish(2, Outcome::Succeeded).expect("finish b")),
        [3]
    );
    run.start(3).expect("start join");
    let changes = run.finish(3, Outcome::Succeeded).expect("finish join");
    assert_eq!(run.state(), TaskState::Succeeded);
    assert_eq!(
        changes.last(),
        Some(&Change::Task {
            state: TaskState::Succeeded,
            message: String::new()
        })
    );
}

#[test]
fn failure_skips_pending_and_waits_for_running_steps() {
    let (mut run, _) = TaskRun::new(&diamond());
    run.start(0).expect("start");
    run.finish(0, Outcome::Succeeded).expect("finish");
    run.start(1).expect("start a");
    run.start(2).expect("start b");
    run.finish(1, Outcome::Failed("exit 1".into()))
        .expect("fail a");
    assert_eq!(states(&run), [Succeeded, Failed, Running, Skipped]);
    assert_eq!(run.state(), TaskState::Running, "b still runs");
    assert_eq!(run.running().collect::<Vec<_>>(), [2]);
    let changes = run.finish(2, Outcome::Succeeded).expect("b ends");
    assert!(
        queued_by(&changes).is_empty(),
        "nothing starts after a failure"
    );
    assert_eq!(run.state(), TaskState::Failed);
    assert!(changes.contains(&Change::Task {
        state: TaskState::Failed,
        message: "step \"a\" failed: exit 1".into()
    }));
}

#[test]
fn cancel_ends_pending_steps_and_is_idempotent() {
    let (mut run, _) = TaskRun::new(&diamond());
    run.start(0).expect("start");
    let changes = run.cancel("by user");
    assert_eq!(states(&run), [Running, Cancelled, Cancelled, Cancelled]);
    assert_eq!(changes.len(), 3);
    assert!(run.cancel("again").is_empty());
    run.finish(0, Outcome::Cancelled("killed".into()))
        .expect("report");
    assert_eq!(run.state(), TaskState::Cancelled);
}

#[test]
fn cancel_with_nothing_running_ends_the_task_at_once() {
    let (mut run, _) = TaskRun::new(&diamond());
    let changes = run.cancel("by user");
    assert_eq!(run.state(), TaskState::Cancelled);
    assert!(matches!(
        changes.last(),
        Some(Change::Task {
            state: TaskState::Cancelled,
            ..
        })
    ));
    assert!(
        run.cancel("again").is_empty(),
        "cancelling a finished task changes nothing"
    );
}

#[test]
fn lost_worker_requeues_for_the_next_attempt() {
    let (mut run, _) = TaskRun::new(&diamond());
    run.start(0).expect("start");
    assert_eq!(
        queued_by(&run.requeue(0, "worker gone").expect("requeue")),
        [0]
    );
    let (attempt, _) = run.start(0).expect("restart");
    assert_eq!(attempt, 2);
}

#[test]
fn failed_attempts_retry_until_the_policy_runs_out() {
    let mut spec = diamond();
    spec.steps[0] = StepSpec::noop("split").retrying(crate::spec::RetryPolicy::new(2));
    let (mut run, _) = TaskRun::new(&spec);
    run.start(0).expect("start");
    let changes = run
        .finish(0, Outcome::Failed("boom".into()))
        .expect("fail 1");
    assert_eq!(
        changes,
        [
            Change::Step {
                index: 0,
                state: Failed,
                message: "boom".into()
            },
            Change::Retry {
                index: 0,
                failed: 1,
                max_attempts: 2
            }
        ]
    );
    assert_eq!(run.step(0).state, Queued);
    assert_eq!(run.state(), TaskState::Running, "the task goes on");
    let (attempt, _) = run.start(0).expect("retry");
    assert_eq!(attempt, 2);
    run.finish(0, Outcome::Failed("boom again".into()))
        .expect("fail 2");
    assert_eq!(run.step(0).state, Failed, "no attempts left");
    assert_eq!(run.state(), TaskState::Failed);
}

#[test]
fn no_retry_once_the_task_is_cancelled() {
    let mut spec = diamond();
    spec.steps[0] = StepSpec::noop("split").retrying(crate::spec::RetryPolicy::new(5));
    let (mut run, _) = TaskRun::new(&spec);
    run.start(0).expect("start");
    run.cancel("stop");
    run.finish(0, Outcome::Cancelled("killed".into()))
        .expect("report");
    assert_eq!(run.state(), TaskState::Cancelled);
}

#[test]
fn reopen_reruns_what_did_not_succeed_with_a_fresh_budget() {
    let mut spec = diamond();
    spec.steps[1] = StepSpec::noop("a")
        .after(&["split"])
        .retrying(crate::spec::RetryPolicy::new(2));
    let (mut run, _) = TaskRun::new(&spec);
    assert!(
        run.reopen("x").is_none(),
        "a running task cannot be reopened"
    );
    run.start(0).expect("start");
    run.finish(0, Outcome::Succeeded).expect("split ok");
    run.start(1).expect("a");
    run.start(2).expect("b");
    run.finish(2, Outcome::Succeeded).expect("b ok");
    run.finish(1, Outcome::Failed("1".into()))
        .expect("a fails once");
    run.start(1).expect("a again");
    run.finish(1, Outcome::Failed("2".into()))
        .expect("a fails for good");
    assert_eq!(run.state(), TaskState::Failed);
    assert_eq!(states(&run), [Succeeded, Failed, Succeeded, Skipped]);

    let changes = run.reopen("retried").expect("reopens");
    assert_eq!(run.state(), TaskState::Running);
    assert_eq!(states(&run), [Succeeded, Queued, Succeeded, Waiting]);
    assert_eq!(queued_by(&changes), [1]);
    let (attempt, _) = run.start(1).expect("a, third attempt");
    assert_eq!(attempt, 3);
    let changes = run.finish(1, Outcome::Failed("3".into())).expect("fails");
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Retry { failed: 3, .. })),
        "the budget starts over"
    );
    run.start(1).expect("a, fourth");
    assert_eq!(
        queued_by(&run.finish(1, Outcome::Succeeded).expect("ok")),
        [3]
    );
    run.start(3).expect("join");
    run.finish(3, Outcome::Succeeded).expect("join ok");
    assert_eq!(run.state(), TaskState::Succeeded);
}

fn gated() -> TaskSpec {
    TaskSpec {
        name: "g".into(),
        steps: vec![
            StepSpec::noop("build"),
            StepSpec::noop("deploy")
                .after(&["build"])
                .approved_by(&["alice"]),
            StepSpec::noop("smoke").after(&["deploy"]),
        ],
        ..TaskSpec::default()
    }
}

#[test]
fn a_gated_step_waits_for_approval_once_its_dependencies_succeed() {
    let (mut run, _) = TaskRun::new(&gated());
    run.start(0).expect("build");
    let changes = run.finish(0, Outcome::Succeeded).expect("build ok");
    assert_eq!(states(&run), [Succeeded, AwaitingApproval, Waiting]);
    assert!(
        queued_by(&changes).is_empty(),
        "nothing queued before a decision"
    );
    assert_eq!(run.awaiting_approval().collect::<Vec<_>>(), [1]);
    assert!(run.start(1).is_err(), "a waiting step cannot start");

    let changes = run.approve(1, "approved by alice").expect("approve");
    assert_eq!(
        changes,
        [Change::Step {
            index: 1,
            state: Queued,
            message: "approved by alice".into()
        }]
    );
    assert!(
        run.approve(1, "again").is_err(),
        "approving twice is refused"
    );
    assert!(run.reject(1, "late").is_err(), "so is a late rejection");
    run.start(1).expect("deploy runs");
    run.finish(1, Outcome::Succeeded).expect("deploy ok");
    run.start(2).expect("smoke");
    run.finish(2, Outcome::Succeeded).expect("smoke ok");
    assert_eq!(run.state(), TaskState::Succeeded);
}

#[test]
fn a_gated_root_waits_from_the_start() {
    let spec = TaskSpec {
        steps: vec![StepSpec::noop("only").approved_by(&["admin"])],
        ..TaskSpec::default()
    };
    let (run, changes) = TaskRun::new(&spec);
    assert_eq!(states(&run), [AwaitingApproval]);
    assert!(changes.contains(&Change::Step {
        index: 0,
        state: AwaitingApproval,
        message: String::new()
    }));
}

#[test]
fn a_rejection_fails_the_step_for_good_and_the_task_winds_down() {
    let mut spec = gated();
    spec.steps[1].retry = Some(crate::spec::RetryPolicy::new(5));
    let (mut run, _) = TaskRun::new(&spec);
    run.start(0).expect("build");
    run.finish(0, Outcome::Succeeded).expect("build ok");
    let changes = run
        .reject(1, "rejected by alice: not today")
        .expect("reject");
    assert!(
        !changes.iter().any(|c| matches!(c, Change::Retry { .. })),
        "a rejection is not retried"
    );
    assert_eq!(states(&run), [Succeeded, Failed, Skipped]);
    assert_eq!(run.state(), TaskState::Failed);
    assert!(changes.contains(&Change::Task {
        state: TaskState::Failed,
        message: "step \"deploy\" failed: rejected by alice: not today".into()
    }));
    assert!(run.approve(1, "too late").is_err());
}

#[test]
fn cancel_ends_a_step_awaiting_approval_and_a_rerun_asks_again() {
    let (mut run, _) = TaskRun::new(&gated());
    run.start(0).expect("build");
    run.finish(0, Outcome::Succeeded).expect("build ok");
    run.cancel("by user");
    assert_eq!(states(&run), [Succeeded, Cancelled, Cancelled]);
    assert_eq!(run.state(), TaskState::Cancelled);
    run.reopen("retried").expect("reopens");
    assert_eq!(
        states(&run),
        [Succeeded, AwaitingApproval, Waiting],
        "the approval was for the run that ended"
    );
}

#[test]
fn an_attempt_handed_back_for_a_rate_limit_does_not_count() {
    let spec = TaskSpec {
        steps: vec![StepSpec::noop("only")],
        ..TaskSpec::default()
    };
    let (mut run, _) = TaskRun::new(&spec);
    run.start(0).expect("attempt 1");
    run.hand_back(0, "rate limited").expect("handed back");
    assert_eq!(states(&run), [Queued]);
    let (attempt, _) = run.start(0).expect("attempt 2");
    assert_eq!(attempt, 2);
    let changes = run
        .finish(0, Outcome::Failed("boom".into()))
        .expect("fails");
    assert!(
        !changes.iter().any(|c| matches!(c, Change::Retry { .. })),
        "one attempt allowed, and this was it"
    );
    assert_eq!(run.state(), TaskState::Failed);

    let (mut run, _) = TaskRun::new(&spec);
    run.start(0).expect("attempt 1");
    run.hand_back(0, "rate limited").expect("handed back");
    run.start(0).expect("attempt 2");
    run.finish(0, Outcome::Succeeded).expect("ok");
    assert_eq!(run.state(), TaskState::Succeeded, "with maxAttempts 1");
}

#[test]
fn illegal_transitions_are_refused() {
    let (mut run, _) = TaskRun::new(&diamond());
    assert!(run.start(1).is_err(), "waiting step cannot start");
    assert!(
        run.finish(0, Outcome::Succeeded).is_err(),
        "queued step cannot finish"
    );
    assert!(run.requeue(0, "x").is_err());
}

#[test]
fn a_paused_task_starts_nothing_and_resumes_where_it_stopped() {
    let (mut run, _) = TaskRun::new(&diamond());
    run.start(0).expect("start");
    run.finish(0, Outcome::Succeeded).expect("finish");
    run.start(1).expect("start a");
    let paused = run.pause("budget: spent").expect("pauses");
    assert_eq!(
        paused,
        [Change::Task {
            state: TaskState::Paused,
            message: "budget: spent".into()
        }]
    );
    assert!(run.pause("again").is_none(), "paused already");
    assert!(run.start(2).is_err(), "nothing starts while paused");
    // The stopped attempt comes back uncounted; the other finishes.
    run.hand_back(1, "stopped for the budget")
        .expect("hand back");
    assert_eq!(states(&run), [Succeeded, Queued, Queued, Waiting]);
    assert_eq!(run.state(), TaskState::Paused);
    let resumed = run.resume("budget raised").expect("resumes");
    assert_eq!(
        resumed,
        [Change::Task {
            state: TaskState::Running,
            message: "budget raised".into()
        }]
    );
    assert!(run.resume("again").is_none());
    let (attempt, _) = run.start(1).expect("start a again");
    assert_eq!(attempt, 2);
    assert_eq!(run.step(1).attempt - run.attempts_before[1], 1);
    // Cancelling a paused task ends it as any cancel does.
    run.pause("budget").expect("pauses");
    run.cancel("stop");
    run.finish(1, Outcome::Cancelled("stop".into()))
        .expect("finish");
    assert_eq!(run.state(), TaskState::Cancelled);
    assert!(run.pause("late").is_none());
}

#[test]
fn restore_recomputes_unmet_dependencies() {
    let spec = diamond();
    let status = |state, attempt| StepStatus { state, attempt };
    let mut run = TaskRun::restore(
        &spec,
        TaskState::Running,
        vec![
            status(Succeeded, 1),
            status(Succeeded, 1),
            status(Running, 1),
            status(Waiting, 0),
        ],
    );
    assert_eq!(
        queued_by(&run.finish(2, Outcome::Succeeded).expect("finish")),
        [3]
    );
}

#[test]
fn a_conflicting_dependency_runs_again_and_its_dependent_waits_for_it() {
    let (mut run, _) = TaskRun::new(&diamond());
    for index in [0, 1, 2] {
        run.start(index).expect("start");
        run.finish(index, Outcome::Succeeded).expect("finish");
    }
    run.start(3).expect("join starts");
    // join found b's work conflicting with a's: b runs again.
    let changes = run.rerun(2, 3, "b runs again on top of a").expect("rerun");
    assert_eq!(states(&run), [Succeeded, Succeeded, Queued, Waiting]);
    assert_eq!(queued_by(&changes), [2]);
    // Neither attempt counts: b and join each have their one attempt left.
    let (attempt, _) = run.start(2).expect("b again");
    assert_eq!(attempt, 2);
    let changes = run.finish(2, Outcome::Succeeded).expect("b done");
    assert_eq!(queued_by(&changes), [3], "join goes on once b is done");
    run.start(3).expect("join again");
    run.finish(3, Outcome::Succeeded).expect("join done");
    assert_eq!(run.state(), TaskState::Succeeded);

    // A step that is not running, or a dependency not done, is refused.
    let (mut run, _) = TaskRun::new(&diamond());
    assert!(run.rerun(2, 3, "no").is_err());
    run.start(0).expect("start");
    run.finish(0, Outcome::Succeeded).expect("finish");
    run.start(1).expect("start a");
    assert!(run.rerun(2, 1, "b has not run").is_err());
}

#[test]
fn a_rerun_is_refused_when_another_dependent_has_started() {
    let spec = TaskSpec {
        name: "v".into(),
        steps: vec![
            StepSpec::noop("a"),
            StepSpec::noop("b"),
            StepSpec::noop("join").after(&["a", "b"]),
            StepSpec::noop("other").after(&["b"]),
        ],
        ..TaskSpec::default()
    };
    let (mut run, _) = TaskRun::new(&spec);
    for index in [0, 1] {
        run.start(index).expect("start");
        run.finish(index, Outcome::Succeeded).expect("finish");
    }
    run.start(2).expect("join");
    run.start(3).expect("other, built on b's work");
    assert!(run.rerun(1, 2, "b again").is_err());
    assert_eq!(states(&run), [Succeeded, Succeeded, Running, Running]);
}
