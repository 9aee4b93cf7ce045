//! The state machine of one task: which steps may start, what a step's end
//! means for the rest, when the task is over. It decides; the control plane
//! persists and announces what it decided.
//!
//! A task is terminal only when every step is: after a failure or a cancel,
//! waiting and queued steps end at once, running ones are told to stop and
//! the task ends when the last of them reports.

use std::collections::HashMap;

use crate::error::Error;
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
    /// For each step, how many dependencies have not succeeded yet (for
    /// a step that chooses among attempts: how many have not ended).
    unmet: Vec<usize>,
    /// For each attempt of a step with `attempts`, the step that chooses
    /// among them (see [`crate::attempts`]).
    chooser: Vec<Option<usize>>,
    /// For each step that chooses, its attempts, and whether the rest stop
    /// once one passes.
    attempts_of: Vec<Vec<usize>>,
    stops_early: Vec<bool>,
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
        let mut chooser = vec![None; spec.steps.len()];
        let mut attempts_of = vec![Vec::new(); spec.steps.len()];
        let mut stops_early = vec![false; spec.steps.len()];
        for (i, step) in spec.steps.iter().enumerate() {
            if let Some(select) = &step.select {
                stops_early[i] = select.stops_early();
                for attempt in &select.attempts {
                    if let Some(&a) = index.get(attempt.as_str()) {
                        chooser[a] = Some(i);
                        attempts_of[i].push(a);
                    }
                }
            }
        }
        for (i, step) in spec.steps.iter().enumerate() {
            for dep in &step.depends_on {
                // Specs are validated before they get here; an unknown name
                // would have been rejected.
                if let Some(&d) = index.get(dep.as_str()) {
                    dependents[d].push(i);
                    let met = if chooser[d] == Some(i) {
                        steps[d].state.is_terminal()
                    } else {
                        steps[d].state == StepState::Succeeded
                    };
                    if !met {
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
            chooser,
            attempts_of,
            stops_early,
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
        self.end_attempt(index, outcome, true)
    }

    /// The running attempt of a step failed, and no retry could help: a
    /// verified step's checks failed the same way twice, or it spent its
    /// rounds. Otherwise as [`TaskRun::finish`].
    pub fn fail_for_good(&mut self, index: usize, message: &str) -> Result<Vec<Change>, Error> {
        self.end_attempt(index, Outcome::Failed(message.to_string()), false)
    }

    fn end_attempt(
        &mut self,
        index: usize,
        outcome: Outcome,
        may_retry: bool,
    ) -> Result<Vec<Change>, Error> {
        let retryable = may_retry
            && matches!(outcome, Outcome::Failed(_) | Outcome::Cancelled(_))
            && !self.is_winding_down()
            && !self.outrun(index)
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
        if let Some(chooser) = self.chooser[index] {
            self.attempt_ended(index, chooser, &mut changes);
            self.conclude(&mut changes);
            return Ok(changes);
        }
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

    /// An attempt of a step with attempts ended, whatever its outcome: its
    /// failure is not the task's (the step that chooses fails when none
    /// passed). One that passed first, when the rest stop early, skips
    /// those still waiting; the caller stops those running
    /// ([`TaskRun::to_stop`]). The step that chooses is ready once every
    /// attempt has ended.
    fn attempt_ended(&mut self, index: usize, chooser: usize, changes: &mut Vec<Change>) {
        let mut ended = vec![index];
        if self.steps[index].state == StepState::Succeeded && self.stops_early[chooser] {
            let passed = format!("attempt {} passed first", self.ids[index]);
            for &sibling in &self.attempts_of[chooser] {
                let step = &mut self.steps[sibling];
                if matches!(
                    step.state,
                    StepState::Waiting | StepState::AwaitingApproval | StepState::Queued
                ) {
                    step.state = StepState::Skipped;
                    changes.push(Change::Step {
                        index: sibling,
                        state: StepState::Skipped,
                        message: passed.clone(),
                    });
                    ended.push(sibling);
                }
            }
        }
        for _ in ended {
            self.unmet[chooser] = self.unmet[chooser].saturating_sub(1);
        }
        if self.unmet[chooser] == 0
            && self.steps[chooser].state == StepState::Waiting
            && !self.is_winding_down()
        {
            let ready = self.ready_state(chooser);
            self.steps[chooser].state = ready;
            changes.push(Change::Step {
                index: chooser,
                state: ready,
                message: String::new(),
            });
        }
    }

    /// Whether another attempt of the same step passed and the rest stop:
    /// this one is not retried, nor queued again.
    fn outrun(&self, index: usize) -> bool {
        self.outrun_by(index).is_some()
    }

    /// The attempt of the same step that passed first, when the rest stop
    /// early; `None` otherwise.
    pub fn outrun_by(&self, index: usize) -> Option<usize> {
        let chooser = self.chooser[index]?;
        if !self.stops_early[chooser] {
            return None;
        }
        self.attempts_of[chooser]
            .iter()
            .copied()
            .find(|&a| a != index && self.steps[a].state == StepState::Succeeded)
    }

    /// The attempts still running that the caller is to stop, because
    /// `index`, an attempt that passed, won early; empty otherwise.
    pub fn to_stop(&self, index: usize) -> Vec<usize> {
        if self.steps[index].state != StepState::Succeeded {
            return Vec::new();
        }
        match self.chooser[index] {
            Some(chooser) if self.stops_early[chooser] => self.attempts_of[chooser]
                .iter()
                .copied()
                .filter(|&a| self.steps[a].state == StepState::Running)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The step that chooses among the attempts `index` is one of; `None`
    /// for a step that is no attempt.
    pub fn chooser_of(&self, index: usize) -> Option<usize> {
        self.chooser[index]
    }

    /// The attempts of a step that chooses among them, in order; empty
    /// for any other step.
    pub fn attempts_of(&self, index: usize) -> &[usize] {
        &self.attempts_of[index]
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
        let state = self.steps[index].state;
        if state != StepState::Running {
            return Err(Error::Transition {
                from: state.as_str(),
                to: StepState::Queued.as_str(),
            });
        }
        let mut changes = Vec::new();
        if self.outrun(index) {
            self.steps[index].state = StepState::Skipped;
            changes.push(Change::Step {
                index,
                state: StepState::Skipped,
                message: reason.to_string(),
            });
            if let Some(chooser) = self.chooser[index] {
                self.attempt_ended(index, chooser, &mut changes);
            }
            self.conclude(&mut changes);
            return Ok(changes);
        }
        let step = &mut self.steps[index];
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

    /// A running step (`blocked`) found that the work of its dependency
    /// `later` conflicts with what came before it: `later` runs again (on
    /// top of that work, which the caller gives it), and `blocked` waits
    /// for it once more, as do `later`'s other dependents, none of which
    /// may have started. Neither attempt counts against a retry policy: a
    /// conflict is not a failure of either step.
    pub fn rerun(
        &mut self,
        later: usize,
        blocked: usize,
        message: &str,
    ) -> Result<Vec<Change>, Error> {
        let refused = |from: StepState, to: StepState| Error::Transition {
            from: from.as_str(),
            to: to.as_str(),
        };
        if self.is_winding_down() || self.steps[blocked].state != StepState::Running {
            return Err(refused(self.steps[blocked].state, StepState::Waiting));
        }
        if self.steps[later].state != StepState::Succeeded {
            return Err(refused(self.steps[later].state, StepState::Queued));
        }
        // An attempt's work is chosen whole or not at all: it does not run
        // again on top of another's.
        if self.chooser[later].is_some() || !self.attempts_of[later].is_empty() {
            return Err(refused(self.steps[later].state, StepState::Queued));
        }
        if let Some(&started) = self.dependents[later]
            .iter()
            .find(|&&d| d != blocked && self.steps[d].state != StepState::Waiting)
        {
            return Err(refused(self.steps[started].state, StepState::Waiting));
        }
        for &d in &self.dependents[later] {
            self.unmet[d] += 1;
        }
        self.steps[blocked].state = StepState::Waiting;
        self.attempts_before[blocked] += 1;
        self.steps[later].state = StepState::Queued;
        self.attempts_before[later] = self.steps[later].attempt;
        Ok(vec![
            Change::Step {
                index: blocked,
                state: StepState::Waiting,
                message: message.to_string(),
            },
            Change::Step {
                index: later,
                state: StepState::Queued,
                message: message.to_string(),
            },
        ])
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
            if !self.attempts_of[index].is_empty() {
                // Its attempts that did not pass, earlier in the task's
                // order, run again: it waits for them once more.
                self.unmet[index] = self.attempts_of[index]
                    .iter()
                    .filter(|&&a| !self.steps[a].state.is_terminal())
                    .count();
            }
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
#[path = "run_tests.rs"]
mod tests;
