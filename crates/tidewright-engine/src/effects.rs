//! What a round of the engine shows the outside (assignments, cancels,
//! watch events, answers), released in order once the round's writes have
//! committed, so nobody sees a decision the store does not hold.

use std::sync::Arc;

use tidewright_core::Event;
use tidewright_store::{Commit, Store, Unfinished};
use tokio::sync::{mpsc, oneshot, watch};

use super::handle::Command;
use crate::handle::CancelAnswer;
use crate::hub::Hub;
use crate::kin::stored_kin;
use crate::to_worker::{Outbox, ToWorker};

/// What a round reveals once it has committed.
pub(super) enum Effect {
    ToWorker(Outbox, ToWorker),
    Publish(Vec<Arc<Event>>),
    /// Answers a request (admit, reopen) once its writes are durable.
    Done(oneshot::Sender<()>),
    CancelDone(oneshot::Sender<CancelAnswer>),
    /// Reads these queued tasks back whole for the engine (see `cold`):
    /// done behind the round's commit, so it reads all the engine wrote
    /// before it let go of them.
    Load(Vec<Arc<str>>),
}

/// Applies each round's effects in order, once its commit is durable.
/// Tasks read back go to the engine through `engine`, which does not keep
/// its inbox open.
pub(super) async fn run_effects(
    mut queue: mpsc::UnboundedReceiver<(Commit, Vec<Effect>)>,
    hub: Arc<Hub>,
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
                Effect::ToWorker(outbox, message) => drop(outbox.send(message)),
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
    let read = async {
        let tasks: Vec<Unfinished> = store
            .unfinished_tasks_by_id(&named)
            .await?
            .into_iter()
            .map(|task| Unfinished::Whole(Box::new(task)))
            .collect();
        let kin = stored_kin(&*store, &tasks).await?;
        tidewright_store::Result::Ok((tasks, kin))
    };
    match read.await {
        Ok((tasks, kin)) => {
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Recovered { ids, tasks, kin }).await;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read queued tasks back; stopping the control plane");
            let _ = fatal.send(Some(format!("reading queued tasks back failed: {e}")));
        }
    }
}
