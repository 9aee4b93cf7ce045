//! Applying the state machine's changes to a task: each change becomes its
//! store write, its event and its place in the queue or the timers. Then
//! the steps that waited on this task's (for the same paths) go on, and a
//! task that ended leaves memory and takes its children with it.

use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::{Change, EventKind, Micros, StepState, TaskState};
use tidewright_store::{StepWrite, TaskWrite, Write};

use crate::create::event_of;
use crate::engine::Engine;
use crate::live::Claim;
use crate::{approval, dispatch};

impl Engine {
    /// Records the state machine's changes: store writes, events, queue
    /// entries. `detail` adds fields to the write of one step.
    pub(super) fn apply(
        &mut self,
        task_id: &Arc<str>,
        changes: Vec<Change>,
        mut detail: Option<(usize, StepWrite)>,
    ) {
        let now = now_micros();
        // What steps of other tasks on its repository claim, when it keeps
        // its touches to itself against them: a step it queues may wait.
        let exclusive = self.tasks.get(task_id).and_then(|a| a.exclusive.clone());
        let landing = self.tasks.get(task_id).and_then(|a| a.landing.clone());
        let beside = self
            .tasks
            .get(task_id)
            .map(|a| self.claims_beside(task_id, a))
            .unwrap_or_default();
        for change in changes {
            let Some(recorded) = self.recorded(task_id, &change) else {
                return;
            };
            match change {
                Change::Task { state, message } => self.task_changed(task_id, state, message, now),
                Change::Retry {
                    index,
                    failed,
                    max_attempts,
                } => self.retry_later(task_id, index, (failed, max_attempts), now),
                Change::Step {
                    index,
                    state,
                    message,
                } => {
                    let write = match detail.take() {
                        Some((i, write)) if i == index => write,
                        other => {
                            detail = other;
                            StepWrite::default()
                        }
                    };
                    self.step_changed(task_id, index, (state, &message), write, &beside, now);
                }
            }
            if let Some(kind) = recorded {
                self.event(task_id, kind);
            }
        }
        // A step that waited for another touching the same paths goes on
        // once that one is neither queued nor running; so do other tasks'
        // steps that waited for this task's.
        self.release_held(task_id, now);
        if let Some(key) = &exclusive {
            self.release_beside(task_id, (key, false), now);
        }
        if let Some(key) = &landing {
            self.release_beside(task_id, (key, true), now);
        }
        // A step whose attempts have all ended chooses among them.
        self.choose_ready(task_id);
        let ended = self
            .tasks
            .get(task_id)
            .map(|a| a.run.state())
            .filter(|state| state.is_terminal());
        if let Some(state) = ended {
            self.tasks.remove(task_id);
            self.end_children(task_id, state);
        }
    }

    /// The event a change records, if any; `None` when the task is not
    /// held. A step's event names its current attempt, who runs it, and
    /// the merge conflict its last attempt met.
    fn recorded(&mut self, task_id: &Arc<str>, change: &Change) -> Option<Option<EventKind>> {
        let active = self.tasks.get_mut(task_id)?;
        let (attempt, worker_name) = match change {
            Change::Step { index, .. } => (
                active.run.step(*index).attempt,
                active.steps[*index]
                    .worker
                    .and_then(|w| self.fleet.workers.get(&w))
                    .map(|w| w.info.name.clone())
                    .unwrap_or_default(),
            ),
            _ => (0, String::new()),
        };
        let mut recorded = event_of(&active.spec, change, attempt, &worker_name);
        if let (Change::Step { index, .. }, Some(EventKind::StepState { conflict, .. })) =
            (change, &mut recorded)
        {
            *conflict = active.steps[*index].conflict.take();
        }
        Some(recorded)
    }

    /// The task's own state changed: stored, and counted once it ends.
    fn task_changed(&mut self, task_id: &Arc<str>, state: TaskState, message: String, now: Micros) {
        if state.is_terminal()
            && let Some(active) = self.tasks.get(task_id)
        {
            self.metrics.task_finished(&active.tenant, state);
        }
        self.round.writes.push(Write::Task(TaskWrite {
            id: task_id.to_string(),
            state,
            message,
            started_at: (state == TaskState::Running).then_some(now),
            // A reopened task is not finished any more.
            finished_at: Some(if state.is_terminal() { now } else { 0 }),
        }));
    }

    /// A step's attempt `failed` (of `max_attempts`) failed: it waits out
    /// its retry's delay as queued, and a timer queues it again.
    fn retry_later(
        &mut self,
        task_id: &Arc<str>,
        index: usize,
        (failed, max_attempts): (u32, u32),
        now: Micros,
    ) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let base = active.spec.steps[index]
            .retry
            .as_ref()
            .map(|r| r.delay_before(failed + 1))
            .unwrap_or_default();
        // Up to a fifth more, so failures do not retry in lockstep.
        let delay = tidewright_core::jitter::jitter(base, 1.0, 1.2);
        let due = now + delay.as_micros() as Micros;
        let step_id = active.spec.steps[index].id.clone();
        let conflict = active.steps[index].conflict.take();
        self.timers.retry(due, task_id.clone(), index, failed);
        self.round.writes.push(Write::Step(StepWrite {
            task_id: task_id.to_string(),
            step_id: step_id.clone(),
            state: Some(StepState::Queued),
            ..StepWrite::default()
        }));
        self.event(
            task_id,
            EventKind::StepState {
                step: step_id,
                state: StepState::Queued,
                attempt: failed,
                worker: String::new(),
                message: format!(
                    "attempt {} of {max_attempts} in {:.2}s",
                    failed + 1,
                    delay.as_secs_f64()
                ),
                waits_for: String::new(),
                conflict,
            },
        );
    }

    /// A step's state changed: it leaves the queue or joins it (unless its
    /// task is paused), an approval gate opens or closes, and its write
    /// (with `write`'s fields) is stored.
    fn step_changed(
        &mut self,
        task_id: &Arc<str>,
        index: usize,
        (state, message): (StepState, &str),
        mut write: StepWrite,
        beside: &[Claim],
        now: Micros,
    ) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        if let Some(key) = active.steps[index].queued.take() {
            self.queue.remove(&key);
        }
        // A paused task's steps wait outside the queue until it resumes.
        if state == StepState::Queued
            && active.run.state() != TaskState::Paused
            && let Some(held) =
                dispatch::ready_step(&mut self.queue, (task_id, active), index, now, beside)
        {
            self.round.event(task_id, active, held);
        }
        let live = &mut active.steps[index];
        write.task_id = task_id.to_string();
        write.step_id = active.spec.steps[index].id.clone();
        write.state = Some(state);
        if live.awaiting.take().is_some() {
            self.metrics.approval_left();
            write.approval_deadline = Some(0);
        }
        if state == StepState::AwaitingApproval {
            let deadline = approval::deadline(&active.spec.steps[index], now);
            approval::gate(
                live,
                &mut self.timers,
                &self.metrics,
                (task_id, index),
                deadline,
            );
            write.approval_deadline = Some(deadline);
        }
        if matches!(
            state,
            StepState::Waiting | StepState::AwaitingApproval | StepState::Queued
        ) {
            // A step waiting to run carries no error; the reason it waits
            // is in its event.
            write.error.get_or_insert_with(String::new);
        } else if !message.is_empty() && write.error.is_none() {
            write.error = Some(message.to_string());
        }
        self.round.writes.push(Write::Step(write));
    }
}
