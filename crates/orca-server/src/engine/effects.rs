//! What a round of the engine shows the outside (assignments, cancels,
//! watch events, answers), released in order once the round's writes have
//! committed, so nobody sees a decision the store does not hold.

use std::sync::Arc;
use std::time::Duration;

use orca_api::v1;
use orca_core::Event;
use orca_store::Commit;
use tokio::sync::{mpsc, oneshot, watch};

use super::{CancelAnswer, Outbox};
use crate::auth::StepGrant;
use crate::hub::Hub;
use crate::step_token::StepTokens;

/// What a round reveals once it has committed.
pub(super) enum Effect {
    ToWorker(Outbox, Box<v1::ServerMessage>),
    /// An assignment, sent once its step token is minted: signing is done
    /// here, off the engine's thread, which every task waits on.
    Assign(Outbox, Box<Assignment>),
    Publish(Vec<Arc<Event>>),
    /// Answers a request (admit, reopen) once its writes are durable.
    Done(oneshot::Sender<()>),
    CancelDone(oneshot::Sender<CancelAnswer>),
}

/// An assignment waiting for its step token.
pub(super) struct Assignment {
    pub(super) message: v1::Assignment,
    pub(super) tenant: String,
    pub(super) timeout: Option<Duration>,
}

impl Assignment {
    /// The message with its step token. Without one the step still runs;
    /// only its state calls fail.
    fn signed(mut self, step_tokens: &StepTokens) -> v1::ServerMessage {
        if let Some(attempt) = &self.message.attempt {
            let grant = StepGrant {
                task_id: attempt.task_id.clone(),
                step_id: attempt.step_id.clone(),
                attempt: attempt.attempt,
            };
            match step_tokens.mint(&grant, &self.tenant, self.timeout) {
                Ok(token) => self.message.step_token = token,
                Err(e) => {
                    tracing::error!(task = %grant.task_id, step = %grant.step_id, error = %e, "no step token");
                }
            }
        }
        v1::ServerMessage {
            kind: Some(v1::server_message::Kind::Assignment(self.message)),
        }
    }
}

/// Applies each round's effects in order, once its commit is durable.
pub(super) async fn run_effects(
    mut queue: mpsc::UnboundedReceiver<(Commit, Vec<Effect>)>,
    hub: Arc<Hub>,
    step_tokens: Arc<StepTokens>,
    fatal: watch::Sender<Option<String>>,
) {
    while let Some((commit, effects)) = queue.recv().await {
        match commit.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "commit failed; stopping the control plane");
                let _ = fatal.send(Some(e.to_string()));
                return;
            }
            Err(_) => {
                let _ = fatal.send(Some("the store stopped".into()));
                return;
            }
        }
        for effect in effects {
            match effect {
                // A closed outbox means the worker left; its disconnect
                // handling re-queues the step.
                Effect::ToWorker(outbox, message) => drop(outbox.send(Ok(*message))),
                Effect::Assign(outbox, assignment) => {
                    drop(outbox.send(Ok(assignment.signed(&step_tokens))));
                }
                Effect::Publish(events) => hub.publish(&events),
                Effect::Done(done) => drop(done.send(())),
                Effect::CancelDone(reply) => drop(reply.send(CancelAnswer::Done)),
            }
        }
    }
}
