//! What a round of the engine shows the outside (assignments, cancels,
//! watch events, answers), released in order once the round's writes have
//! committed, so nobody sees a decision the store does not hold.

use std::sync::Arc;
use std::time::Duration;

use orca_api::v1;
use orca_core::{AttemptKey, Event};
use orca_store::{Commit, Store, Unfinished};
use tokio::sync::{mpsc, oneshot, watch};

use super::handle::Command;
use super::{CancelAnswer, Outbox};
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
    /// Reads these queued tasks back whole for the engine (see `cold`):
    /// done behind the round's commit, so it reads all the engine wrote
    /// before it let go of them.
    Load(Vec<Arc<str>>),
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
            let grant = AttemptKey::from(attempt.clone());
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
/// Tasks read back go to the engine through `engine`, which does not keep
/// its inbox open.
pub(super) async fn run_effects(
    mut queue: mpsc::UnboundedReceiver<(Commit, Vec<Effect>)>,
    hub: Arc<Hub>,
    step_tokens: Arc<StepTokens>,
    engine: (Arc<dyn Store>, mpsc::WeakSender<Command>),
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
                Effect::Load(ids) => {
                    let (store, commands) = engine.clone();
                    tokio::spawn(read_back(store, commands, ids, fatal.clone()));
                }
            }
        }
    }
}

/// Reads queued tasks back and hands them to the engine. A failed read is
/// fatal, as a failed commit is: the tasks would otherwise never run.
async fn read_back(
    store: Arc<dyn Store>,
    commands: mpsc::WeakSender<Command>,
    ids: Vec<Arc<str>>,
    fatal: watch::Sender<Option<String>>,
) {
    let named: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    match store.unfinished_tasks_by_id(&named).await {
        Ok(tasks) => {
            if let Some(commands) = commands.upgrade() {
                let tasks = tasks
                    .into_iter()
                    .map(|task| Unfinished::Whole(Box::new(task)))
                    .collect();
                let _ = commands.send(Command::Recovered { ids, tasks }).await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read queued tasks back; stopping the control plane");
            let _ = fatal.send(Some(format!("reading queued tasks back failed: {e}")));
        }
    }
}
