//! Steering: a person's message for a running agent step goes to the
//! worker running its attempt, after the round that records it (a
//! `Steered` event) commits. A CLI that reads no input while it runs
//! takes it at the turn boundary: its attempt is stopped (or, for a
//! follow-up, let end its turn) with its session kept, and the step runs
//! again, uncounted, its session resumed with the message.

use std::sync::Arc;

use tidewright_core::steer::Delivery;
use tidewright_core::{AttemptKey, EventKind, StepState};
use tokio::sync::oneshot;

use crate::effects::Effect;
use crate::engine::Engine;
use crate::error::Error;
use crate::handle::Steer;
use crate::to_worker::ToWorker;

impl Engine {
    /// Sends `steer` to the worker running its step; answers the attempt
    /// it went to and how it reaches the agent, once the round that
    /// records it has committed.
    pub(super) fn steer(
        &mut self,
        steer: Steer,
    ) -> Result<(u32, Delivery, oneshot::Receiver<()>), Error> {
        let Steer {
            task_id,
            step_id,
            message,
            from,
            follow_up,
        } = steer;
        let not_running = |what: String| {
            Error::FailedPrecondition(format!(
                "step {step_id} of task {task_id} is {what}: a message reaches a running agent only"
            ))
        };
        let Some((id, active)) = self.tasks.get_key_value(task_id.as_str()) else {
            // Unfinished but not held whole: queued in a deep backlog.
            return Err(not_running("queued".into()));
        };
        let id: Arc<str> = id.clone();
        let Some(&index) = active.index.get(&step_id) else {
            return Err(Error::NotFound(format!(
                "task {task_id} has no step {step_id}"
            )));
        };
        let mut delivery = tidewright_core::steer::delivery(&active.spec.steps[index], follow_up)
            .map_err(Error::FailedPrecondition)?;
        // A turn stopped before its CLI named its session could not be
        // resumed: it ends first, and the answer and the event say so.
        if delivery == Delivery::Interrupt && active.steps[index].session.is_none() {
            delivery = Delivery::NextTurn;
        }
        let status = active.run.step(index);
        if status.state != StepState::Running {
            return Err(not_running(status.state.as_str().replace('_', " ")));
        }
        let outbox = active.steps[index]
            .worker
            .and_then(|w| self.fleet.workers.get(&w))
            .map(|w| w.outbox.clone())
            // Left running by a restart, its worker not back yet.
            .ok_or_else(|| not_running("running on a worker not connected now".into()))?;
        let attempt = AttemptKey {
            task_id: task_id.clone(),
            step_id: step_id.clone(),
            attempt: status.attempt,
        };
        match delivery {
            Delivery::MidTurn | Delivery::AfterTurn | Delivery::NextTurn => {
                // A follow-up for a CLI without input is the worker's cue
                // to keep the session when the turn ends.
                self.round.effects.push(Effect::ToWorker(
                    outbox,
                    ToWorker::Steer {
                        attempt,
                        message: message.clone(),
                        from: from.clone(),
                        follow_up: delivery != Delivery::MidTurn,
                    },
                ));
            }
            Delivery::Interrupt => {}
        }
        if matches!(delivery, Delivery::Interrupt | Delivery::NextTurn) {
            let told = tidewright_core::steer::told(&from, &message, delivery);
            let mut interrupt = false;
            if let Some(active) = self.tasks.get_mut(&id) {
                let live = &mut active.steps[index];
                live.steered.push(told);
                interrupt = delivery == Delivery::Interrupt && !live.stopped_for_steer;
                live.stopped_for_steer |= interrupt;
            }
            if interrupt {
                let why = format!("steered by {from}: interrupted to resume with the message");
                self.send_stops(&id, vec![index], &why, true);
            }
        }
        if let Some(active) = self.tasks.get_mut(&id) {
            let kind = EventKind::Steered {
                step: step_id,
                attempt: status.attempt,
                from,
                message,
                delivery: delivery.as_str().to_string(),
            };
            self.round.event(&id, active, kind);
        }
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        Ok((status.attempt, delivery, committed))
    }
}
