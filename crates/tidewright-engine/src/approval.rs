//! Human gates: a step whose dependencies succeeded waits, awaiting
//! approval, until one of its approvers decides or its wait times out. The
//! wait's deadline is stored with the step, so it outlives a restart.

use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::{Micros, StepState};
use tidewright_store::AuditRecord;
use tidewright_store::{StepWrite, Write};
use tokio::sync::oneshot;

use crate::effects::Effect;
use crate::engine::Engine;
use crate::error::Error;
use crate::handle::Decision;
use crate::live::{Active, LiveStep};
use crate::metrics::Metrics;
use crate::timers::Timers;

/// When a step entering its wait for approval at `now` times out; 0 for
/// never.
pub(super) fn deadline(step: &tidewright_core::StepSpec, now: Micros) -> Micros {
    step.approval
        .as_ref()
        .and_then(|a| a.timeout_seconds)
        .map_or(0, |seconds| now + i64::from(seconds) * 1_000_000)
}

/// Holds a step at its gate until `deadline` (0: for ever).
pub(super) fn gate(
    live: &mut LiveStep,
    timers: &mut Timers,
    metrics: &Metrics,
    (task_id, index): (&Arc<str>, usize),
    deadline: Micros,
) {
    if live.awaiting.is_none() {
        metrics.approval_waiting();
    }
    live.awaiting = Some(deadline);
    if deadline > 0 {
        timers.approval(deadline, task_id.clone(), index);
    }
}

impl Engine {
    /// Holds the gated steps of a task the engine takes over (new, or read
    /// back after a restart) at their gates. A stored deadline stands; a
    /// step made awaiting without one (its task was committed, and the
    /// control plane stopped before it recorded the deadline) starts its
    /// wait now.
    pub(super) fn hold_at_gates(&mut self, id: &Arc<str>, active: &mut Active, stored: &[Micros]) {
        let now = now_micros();
        let awaiting: Vec<usize> = active.run.awaiting_approval().collect();
        for index in awaiting {
            let step = &active.spec.steps[index];
            let mut deadline = stored.get(index).copied().unwrap_or(0);
            if deadline == 0 {
                deadline = self::deadline(step, now);
                if deadline > 0 {
                    self.round.writes.push(Write::Step(StepWrite {
                        task_id: id.to_string(),
                        step_id: step.id.clone(),
                        approval_deadline: Some(deadline),
                        ..StepWrite::default()
                    }));
                }
            }
            gate(
                &mut active.steps[index],
                &mut self.timers,
                &self.metrics,
                (id, index),
                deadline,
            );
        }
    }

    /// When the engine next has something due: a retry's backoff ends or
    /// an approval times out.
    pub(super) fn next_due(&self) -> Option<Micros> {
        [self.timers.next(), self.fleet.pauses.next_resume()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fails the steps whose wait for approval is over. A deadline that no
    /// longer holds (decided, cancelled, or a new wait since) is dropped.
    pub(super) fn expire_approvals(&mut self) {
        let now = now_micros();
        while let Some((deadline, task_id, index)) = self.timers.due_approval(now) {
            let Some(active) = self.tasks.get(&task_id) else {
                continue;
            };
            if active.steps[index].awaiting != Some(deadline) {
                continue;
            }
            let step = &active.spec.steps[index];
            let seconds = step
                .approval
                .as_ref()
                .and_then(|a| a.timeout_seconds)
                .unwrap_or(0);
            let message = format!("no approver decided within {seconds}s: the approval timed out");
            self.metrics.approval_decided(&active.tenant, "timed_out");
            self.round.writes.push(Write::Audit(AuditRecord {
                seq: 0,
                at: now,
                actor: "tidewright".into(),
                role: "system".into(),
                action: "step.approval_timeout".into(),
                tenant: active.tenant.clone(),
                target: task_id.to_string(),
                outcome: "ok".into(),
                detail: format!("step {}: {message}", step.id),
            }));
            tracing::info!(task = %task_id, step = %step.id, seconds, "an approval timed out");
            self.fail_at_gate(&task_id, index, &message);
        }
    }

    /// Applies an approver's decision; answers with the round's commit.
    pub(super) fn decide(
        &mut self,
        task_id: &str,
        step_id: &str,
        decision: Decision,
    ) -> Result<oneshot::Receiver<()>, Error> {
        let not_waiting = |why: String| {
            Error::FailedPrecondition(format!(
                "step {step_id:?} of task {task_id} is not awaiting approval: {why}"
            ))
        };
        let Some((id, active)) = self.tasks.get_key_value(task_id) else {
            return Err(not_waiting("the task has finished".into()));
        };
        let id = id.clone();
        let index = *active
            .index
            .get(step_id)
            .ok_or_else(|| Error::NotFound(format!("step {step_id:?} of task {task_id}")))?;
        let state = active.run.step(index).state;
        if state != StepState::AwaitingApproval {
            return Err(not_waiting(format!("it is {state}")));
        }
        let tenant = active.tenant.clone();
        match decision {
            Decision::Approve { message } => {
                let changes = self
                    .tasks
                    .get_mut(&id)
                    .map(|a| a.run.approve(index, &message))
                    .transpose()
                    .map_err(|e| not_waiting(e.to_string()))?
                    .unwrap_or_default();
                self.metrics.approval_decided(&tenant, "approved");
                self.apply(&id, changes, None);
            }
            Decision::Reject { message } => {
                self.metrics.approval_decided(&tenant, "rejected");
                self.fail_at_gate(&id, index, &message);
            }
        }
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        Ok(committed)
    }

    /// A step at its gate fails (rejected, or its wait timed out): the task
    /// takes its failure path, and its running steps are told to stop.
    fn fail_at_gate(&mut self, task_id: &Arc<str>, index: usize, message: &str) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let changes = match active.run.reject(index, message) {
            Ok(changes) => changes,
            Err(e) => {
                tracing::error!(task = %task_id, index, error = %e, "could not fail a step at its gate");
                return;
            }
        };
        let to_cancel = crate::results::stop_running_if_winding_down(active, &changes);
        self.apply(task_id, changes, None);
        self.send_cancels(task_id, to_cancel, "another step of the task failed");
    }
}
