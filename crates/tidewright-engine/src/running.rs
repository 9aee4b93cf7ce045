//! What a running attempt reports before its result, each fenced (only
//! the worker running the current attempt counts): its agent's session,
//! its progress, log lines, egress verdicts, setup and session items,
//! kept on its step and as its events.

use tidewright_core::{AttemptKey, EventKind};
use tidewright_store::{AttemptWrite, StepWrite, Write};

use crate::engine::Engine;
use crate::live::Session;

impl Engine {
    /// Records the session on the attempt, and remembers it for a retry.
    pub(super) fn session(
        &mut self,
        worker: u64,
        attempt: AttemptKey,
        session_id: String,
        model: String,
    ) {
        let Some((task_id, index)) = self.current(worker, &attempt) else {
            return;
        };
        let Some(live) = self.tasks.get_mut(&task_id).map(|a| &mut a.steps[index]) else {
            return;
        };
        // A resumed session keeps its workspace and cost so far; a new one
        // starts here, at zero.
        live.model.clone_from(&model);
        match &mut live.session {
            Some(previous) if previous.id == session_id => {
                previous.last_attempt = attempt.attempt;
            }
            _ => {
                live.session = Some(Session {
                    id: session_id.clone(),
                    attempt: attempt.attempt,
                    last_attempt: attempt.attempt,
                    usd: 0.0,
                });
            }
        }
        self.round.writes.push(Write::Attempt(AttemptWrite {
            task_id: attempt.task_id,
            step_id: attempt.step_id,
            attempt: attempt.attempt,
            worker: Some(live.worker_name.clone()),
            started_at: Some(live.attempt_started),
            session_id: Some(session_id),
            model: Some(model),
            ..AttemptWrite::default()
        }));
    }

    /// A running attempt's progress: kept on its step, and an event.
    pub(super) fn progress(
        &mut self,
        worker: u64,
        attempt: AttemptKey,
        fraction: f32,
        message: String,
    ) {
        let Some((task_id, _)) = self.current(worker, &attempt) else {
            return;
        };
        let fraction = fraction.clamp(0.0, 1.0);
        self.round.writes.push(Write::Step(StepWrite {
            task_id: attempt.task_id.clone(),
            step_id: attempt.step_id.clone(),
            progress: Some((fraction, message.clone())),
            ..StepWrite::default()
        }));
        self.event(
            &task_id,
            EventKind::Progress {
                step: attempt.step_id,
                attempt: attempt.attempt,
                fraction,
                message,
            },
        );
    }

    /// A running attempt's log lines, each an event.
    pub(super) fn logs(
        &mut self,
        worker: u64,
        attempt: AttemptKey,
        lines: Vec<(tidewright_core::LogStream, String)>,
    ) {
        let Some((task_id, _)) = self.current(worker, &attempt) else {
            return;
        };
        for (stream, line) in lines {
            self.event(
                &task_id,
                EventKind::Log {
                    step: attempt.step_id.clone(),
                    attempt: attempt.attempt,
                    stream,
                    line,
                },
            );
        }
    }

    /// A running attempt's egress verdict, an event on its step.
    pub(super) fn egress(
        &mut self,
        worker: u64,
        attempt: AttemptKey,
        egress: crate::handle::EgressReport,
    ) {
        let Some((task_id, _)) = self.current(worker, &attempt) else {
            return;
        };
        self.event(
            &task_id,
            EventKind::Egress {
                step: attempt.step_id,
                attempt: attempt.attempt,
                destination: egress.destination,
                allowed: egress.allowed,
                reason: egress.reason,
            },
        );
    }

    /// Items of a running agent's session, each an event on its step.
    pub(super) fn session_items(
        &mut self,
        worker: u64,
        attempt: AttemptKey,
        items: Vec<tidewright_core::session_item::SessionItem>,
        usd: f64,
    ) {
        let Some((task_id, _)) = self.current(worker, &attempt) else {
            return;
        };
        for item in items {
            self.event(
                &task_id,
                EventKind::SessionItem {
                    step: attempt.step_id.clone(),
                    attempt: attempt.attempt,
                    item,
                    usd,
                },
            );
        }
    }

    /// A running attempt's setup: an event on its step, and kept on the
    /// attempt beside its cost.
    pub(super) fn setup(
        &mut self,
        worker: u64,
        attempt: AttemptKey,
        setup: tidewright_core::setup::SetupReport,
    ) {
        let Some((task_id, _)) = self.current(worker, &attempt) else {
            return;
        };
        self.round.writes.push(Write::Attempt(AttemptWrite {
            task_id: attempt.task_id,
            step_id: attempt.step_id.clone(),
            attempt: attempt.attempt,
            setup: Some(setup.clone()),
            ..AttemptWrite::default()
        }));
        self.event(
            &task_id,
            EventKind::Setup {
                step: attempt.step_id,
                attempt: attempt.attempt,
                setup,
            },
        );
    }
}
