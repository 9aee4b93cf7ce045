//! The state machine of one task: which steps may start, what a step's end
//! means for the rest, when the task is over. It decides; the control plane
//! persists and announces what it decided.
//!
//! A task is terminal only when every step is: after a failure or a cancel,
//! waiting and queued steps end at once, running ones are told to stop and
//! the task ends when the last of them reports.

use std::collections::HashMap;

use crate::Error;
use crate::spec::{StepSpec, TaskSpec};
use crate::state::{StepState, TaskState};

/// A change the state machine made; the caller records each as an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Task {
        state: TaskState,
        message: String,
    },
    Step {
        index: usize,
        state: StepState,
        message: String,
    },
    /// Attempt `failed` of the step failed and it has attempts left: it is
    /// queued again, and the caller decides when the next attempt is due.
    Retry {
        index: usize,
        failed: u32,
        max_attempts: u32,
    },
}

/// How a step attempt ended, as its worker reported it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    Cancelled(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepStatus {
    pub state: StepState,
    /// The current (or last) attempt; 0 before the first.
    pub attempt: u32,
}

#[derive(Debug, Clone)]
pub struct TaskRun {
    state: TaskState,
    ids: Vec<String>,
    max_attempts: Vec<u32>,
    /// For each step, whether it waits for an approval before it runs.
    gated: Vec<bool>,
    /// Attempts made before the last manual retry: each manual retry gives a
    /// step its policy's attempts afresh.
    attempts_before: Vec<u32>,
    steps: Vec<StepStatus>,
    /// For each step, the steps that depend on it.
    dependents: Vec<Vec<usize>>,
    /// For each step, how many dependencies have not succeeded yet.
    unmet: Vec<usize>,
    failure: Option<String>,
    cancelled: Option<String>,
}

impl TaskRun {
    /// A new task: steps without dependencies are queued at once. The
    /// returned changes are the task's first events.
    pub fn new(spec: &TaskSpec) -> (TaskRun, Vec<Change>) {
        let statuses = spec
            .steps
            .iter()
            .map(|step| StepStatus {
                state: if !step.depends_on.is_empty() {
                    StepState::Waiting
                } else if step.approval.is_some() {
                    StepState::AwaitingApproval
                } else {
                    StepState::Queued
                },
                attempt: 0,
            })
            .collect();
        let run = TaskRun::restore(spec, TaskState::Queued, statuses);
        let mut changes = vec![Change::Task {
            state: TaskState::Queued,
            message: String::new(),
        }];
        changes.extend(
            run.steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state != StepState::Waiting)
                .map(|(index, s)| Change::Step {
                    index,
                    state: s.state,
                    message: String::new(),
                }),
        );
        (run, changes)
    }

    /// Rebuilds a task's machine from stored states, after a restart.
    pub fn restore(spec: &TaskSpec, state: TaskState, steps: Vec<StepStatus>) -> TaskRun {
        let index: HashMap<&str, usize> = spec
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut dependents = vec![Vec::new(); spec.steps.len()];
        let mut unmet = vec![0; spec.steps.len()];
        for (i, step) in spec.steps.iter().enumerate() {
            for dep in &step.depends_on {
                // Specs are validated before they get here; an unknown name
                // would have been rejected.
                if let Some(&d) = index.get(dep.as_str()) {
                    dependents[d].push(i);
                    if steps[d].state != StepState::Succeeded {
                        unmet[i] += 1;
                    }
                }
            }
        }
        TaskRun {
            state,
            ids: spec.steps.iter().map(|s| s.id.clone()).collect(),
            max_attempts: spec.steps.iter().map(StepSpec::max_attempts).collect(),
            gated: spec.steps.iter().map(|s| s.approval.is_some()).collect(),
            attempts_before: vec![0; spec.steps.len()],
            steps,
            dependents,
            unmet,
            failure: None,
            cancelled: None,
        }
    }

    pub fn state(&self) -> TaskState {
        self.state
    }

    pub fn step(&self, index: usize) -> StepStatus {
        self.steps[index]
    }

    pub fn steps(&self) -> &[StepStatus] {
        &self.steps
    }

    /// Steps whose attempt is running now.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == StepState::Running)
            .map(|(i, _)| i)
    }

    /// Steps ready to run, waiting for a worker.
    pub fn queued(&self) -> impl Iterator<Item = usize> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == StepState::Queued)
            .map(|(i, _)| i)
    }

    /// Steps waiting for an approver's decision.
    pub fn awaiting_approval(&self) -> impl Iterator<Item = usize> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == StepState::AwaitingApproval)
            .map(|(i, _)| i)
    }

    /// What a step whose dependencies have all succeeded does next: wait
    /// for its approval, or for a worker.
    fn ready_state(&self, index: usize) -> StepState {
        if self.gated[index] {
            StepState::AwaitingApproval
        } else {
            StepState::Queued
        }
    }

    /// An approver let a waiting step run: it is queued for a worker.
    /// `message` says who decided and why.
    pub fn approve(&mut self, index: usize, message: &str) -> Result<Vec<Change>, Error> {
        self.expect_awaiting(index, StepState::Queued)?;
        self.steps[index].state = StepState::Queued;
        Ok(vec![Change::Step {
            index,
            state: StepState::Queued,
            message: message.to_string(),
        }])
    }

    /// A waiting step was rejected, or its approval timed out: it fails
    /// without an attempt (and without a retry), and the task takes its
    /// failure path as after any step that failed for good.
    pub fn reject(&mut self, index: usize, message: &str) -> Result<Vec<Change>, Error> {
        self.expect_awaiting(index, StepState::Failed)?;
        self.steps[index].state = StepState::Failed;
        let mut changes = vec![Change::Step {
            index,
            state: StepState::Failed,
            message: message.to_string(),
        }];
        self.note_failure(index, StepState::Failed, message, &mut changes);
        self.conclude(&mut changes);
        Ok(changes)
    }

    fn expect_awaiting(&self, index: usize, to: StepState) -> Result<(), Error> {
        let from = self.steps[index].state;
        if from == StepState::AwaitingApproval {
            Ok(())
        } else {
            Err(Error::Transition {
                from: from.as_str(),
                to: to.as_str(),
            })
        }
    }

    /// Pauses the task for `reason` (a spent budget): nothing new starts;
    /// the caller stops the running steps (see [`TaskRun::running`]), whose
    /// attempts come back with [`TaskRun::hand_back`]. `None` when the task
    /// is over, winding down or paused already.
    pub fn pause(&mut self, reason: &str) -> Option<Vec<Change>> {
        if self.state.is_terminal() || self.state == TaskState::Paused || self.is_winding_down() {
            return None;
        }
        self.state = TaskState::Paused;
        Some(vec![Change::Task {
            state: TaskState::Paused,
            message: reason.to_string(),
        }])
    }

    /// Lets a paused task go on: its queued steps may start again. `None`
    /// when it is not paused.
    pub fn resume(&mut self, message: &str) -> Option<Vec<Change>> {
        if self.state != TaskState::Paused {
            return None;
        }
        let started = self.steps.iter().any(|s| s.attempt > 0);
        self.state = if started {
            TaskState::Running
        } else {
            TaskState::Queued
        };
        Some(vec![Change::Task {
            state: self.state,
            message: message.to_string(),
        }])
    }

    /// A worker took a queued step: its next attempt starts. Returns the
    /// attempt number.
    pub fn start(&mut self, index: usize) -> Result<(u32, Vec<Change>), Error> {
        if self.state == TaskState::Paused {
            return Err(Error::Transition {
                from: TaskState::Paused.as_str(),
                to: StepState::Running.as_str(),
            });
        }
        let step = &mut self.steps[index];
        if step.state != StepState::Queued {
            return Err(Error::Transition {
                from: step.state.as_str(),
                to: StepState::Running.as_str(),
            });
        }
        step.state = StepState::Running;
        step.attempt += 1;
        let attempt = step.attempt;
        let mut changes = vec![Change::Step {
            index,
            state: StepState::Running,
            message: String::new(),
        }];
        if self.state == TaskState::Queued {
            self.state = TaskState::Running;
            changes.push(Change::Task {
                state: TaskState::Running,
                message: String::new(),
            });
        }
        Ok((attempt, changes))
    }

    /// The running attempt of a step ended. A failed attempt with attempts
    /// left is retried (see [`Change::Retry`]) unless the task is winding
    /// down.
    pub fn finish(&mut self, index: usize, outcome: Outcome) -> Result<Vec<Change>, Error> {
        let retryable = matches!(outcome, Outcome::Failed(_) | Outcome::Cancelled(_))
            && !self.is_winding_down()
            && self.steps[index].attempt - self.attempts_before[index] < self.max_attempts[index];
        if retryable && self.steps[index].state == StepState::Running {
            let message = match outcome {
                Outcome::Failed(m) | Outcome::Cancelled(m) => m,
                Outcome::Succeeded => String::new(),
            };
            let step = &mut self.steps[index];
            step.state = StepState::Queued;
            return Ok(vec![
                Change::Step {
                    index,
                    state: StepState::Failed,
                    message,
                },
                Change::Retry {
                    index,
                    failed: step.attempt,
                    max_attempts: self.max_attempts[index],
                },
            ]);
        }
        let step = &mut self.steps[index];
        let (state, message) = match &outcome {
            Outcome::Succeeded => (StepState::Succeeded, String::new()),
            Outcome::Failed(m) => (StepState::Failed, m.clone()),
            Outcome::Cancelled(m) => (StepState::Cancelled, m.clone()),
        };
        if step.state != StepState::Running {
            return Err(Error::Transition {
                from: step.state.as_str(),
                to: state.as_str(),
            });
        }
        step.state = state;
        let mut changes = vec![Change::Step {
            index,
            state,
            message: message.clone(),
        }];
        match outcome {
            Outcome::Succeeded => {
                if self.is_winding_down() {
                    // A sibling failed or the task was cancelled meanwhile:
                    // nothing new starts.
                } else {
                    for &next in &self.dependents[index] {
                        self.unmet[next] -= 1;
                        if self.unmet[next] == 0 && self.steps[next].state == StepState::Waiting {
                            let ready = self.ready_state(next);
                            self.steps[next].state = ready;
                            changes.push(Change::Step {
                                index: next,
                                state: ready,
                                message: String::new(),
                            });
                        }
                    }
                }
            }
            Outcome::Failed(_) | Outcome::Cancelled(_) => {
                self.note_failure(index, state, &message, &mut changes);
            }
        }
        self.conclude(&mut changes);
        Ok(changes)
    }

    /// The first step to fail (or be cancelled) for good makes the task
    /// wind down: what waits to run is skipped.
    fn note_failure(
        &mut self,
        index: usize,
        state: StepState,
        message: &str,
        changes: &mut Vec<Change>,
    ) {
        if self.cancelled.is_some() || self.failure.is_some() {
            return;
        }
        let verb = if state == StepState::Failed {
            "failed"
        } else {
            "was cancelled"
        };
        let id = &self.ids[index];
        self.failure = Some(if message.is_empty() {
            format!("step {id:?} {verb}")
        } else {
            format!("step {id:?} {verb}: {message}")
        });
        self.end_pending(StepState::Skipped, "an earlier step failed", changes);
    }

    /// The worker running a step went away: the step goes back to the queue
    /// for its next attempt (or ends, if the task is winding down).
    pub fn requeue(&mut self, index: usize, reason: &str) -> Result<Vec<Change>, Error> {
        let step = &mut self.steps[index];
        if step.state != StepState::Running {
            return Err(Error::Transition {
                from: step.state.as_str(),
                to: StepState::Queued.as_str(),
            });
        }
        let mut changes = Vec::new();
        if let Some(cancel) = &self.cancelled {
            step.state = StepState::Cancelled;
            changes.push(Change::Step {
                index,
                state: StepState::Cancelled,
                message: cancel.clone(),
            });
        } else if self.failure.is_some() {
            step.state = StepState::Skipped;
            changes.push(Change::Step {
                index,
                state: StepState::Skipped,
                message: reason.to_string(),
            });
        } else {
            step.state = StepState::Queued;
            changes.push(Change::Step {
                index,
                state: StepState::Queued,
                message: reason.to_string(),
            });
        }
        self.conclude(&mut changes);
        Ok(changes)
    }

    /// The provider's limit stopped a running attempt: the step goes back
    /// to the queue as `requeue` does, and the attempt does not count
    /// against its retry policy (the limit was not the step's failure).
    pub fn hand_back(&mut self, index: usize, reason: &str) -> Result<Vec<Change>, Error> {
        let changes = self.requeue(index, reason)?;
        if self.steps[index].state == StepState::Queued {
            self.attempts_before[index] += 1;
        }
        Ok(changes)
    }

    /// Reopens a failed or cancelled task: its failed, cancelled and skipped
    /// steps run again (attempt numbers go on), succeeded steps and their
    /// outputs stay. `None` when the task is not failed or cancelled.
    pub fn reopen(&mut self, message: &str) -> Option<Vec<Change>> {
        if !matches!(self.state, TaskState::Failed | TaskState::Cancelled) {
            return None;
        }
        self.failure = None;
        self.cancelled = None;
        self.state = TaskState::Running;
        let mut changes = vec![Change::Task {
            state: TaskState::Running,
            message: message.to_string(),
        }];
        for index in 0..self.steps.len() {
            if self.steps[index].state == StepState::Succeeded {
                continue;
            }
            self.attempts_before[index] = self.steps[index].attempt;
            // An approval was for the run that failed: a rerun asks again.
            let state = if self.unmet[index] == 0 {
                self.ready_state(index)
            } else {
                StepState::Waiting
            };
            self.steps[index].state = state;
            changes.push(Change::Step {
                index,
                state,
                message: String::new(),
            });
        }
        Some(changes)
    }

    /// Cancels the task: nothing new starts; the caller stops the running
    /// steps (see [`TaskRun::running`]). Cancelling again changes nothing.
    pub fn cancel(&mut self, reason: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.state.is_terminal() || self.cancelled.is_some() {
            return changes;
        }
        self.cancelled = Some(reason.to_string());
        self.end_pending(StepState::Cancelled, reason, &mut changes);
        self.conclude(&mut changes);
        changes
    }

    /// A step failed for good or the task was cancelled: nothing new starts.
    pub fn is_winding_down(&self) -> bool {
        self.failure.is_some() || self.cancelled.is_some()
    }

    fn end_pending(&mut self, state: StepState, message: &str, changes: &mut Vec<Change>) {
        for (index, step) in self.steps.iter_mut().enumerate() {
            if matches!(
                step.state,
                StepState::Waiting | StepState::AwaitingApproval | StepState::Queued
            ) {
                step.state = state;
                changes.push(Change::Step {
                    index,
                    state,
                    message: message.to_string(),
                });
            }
        }
    }

    /// Ends the task when no step is left to run.
    fn conclude(&mut self, changes: &mut Vec<Change>) {
        if self.state.is_terminal() || !self.steps.iter().all(|s| s.state.is_terminal()) {
            return;
        }
        let (state, message) = if let Some(reason) = &self.cancelled {
            (TaskState::Cancelled, reason.clone())
        } else if let Some(failure) = &self.failure {
            (TaskState::Failed, failure.clone())
        } else {
            (TaskState::Succeeded, String::new())
        };
        self.state = state;
        changes.push(Change::Task { state, message });
    }
}

#[cfg(test)]
mod tests {
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
}
