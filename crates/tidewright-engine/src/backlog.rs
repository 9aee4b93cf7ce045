//! What the engine has yet to read back from the store: the unfinished
//! tasks a new leader listed (read a piece at a time while it serves), and
//! the cold tasks of a deep queue it keeps only the places of.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tidewright_core::QueueKey;
use tidewright_store::Store;
use tokio::sync::{mpsc, watch};

use crate::handle::Command;
use crate::kin::stored_kin;

/// Tasks read back per store call: small enough that rebuilding a piece,
/// between other commands, never holds them up for long.
const BACKLOG_PIECE: usize = 1000;

/// What the engine holds of tasks only in part: the backlog a new leader
/// reads back and the cold tasks of a deep queue, what this round is about
/// to read back, and how many tasks it holds whole before going cold.
pub(crate) struct ColdQueue {
    pub(crate) backlog: Backlog,
    pub(crate) reads: Reads,
    /// Past this many unfinished tasks in memory, a queued task nobody
    /// started keeps only its place in the queue.
    pub(crate) hot: usize,
}

/// The unfinished tasks a new leader has not read back yet. A leader that
/// read its whole backlog before serving would leave the fleet without a
/// control plane for seconds per hundred thousand queued steps; instead it
/// serves new work at once, and a command about a task still to be read
/// (a worker's report, a cancel) waits here, in arrival order, until it is.
///
/// A cold task (see [`super::cold`]) is held here too, for as long as the
/// engine keeps only its place in the queue; a command about it has it
/// read back.
pub(crate) struct Backlog {
    pub(crate) pending: HashMap<Arc<str>, Held, foldhash::fast::RandomState>,
    /// Tasks listed at the start still to be read back.
    pub(crate) listed: usize,
    /// Of `pending`, the cold ones.
    pub(crate) cold: usize,
    pub(crate) total: usize,
    pub(crate) started: Instant,
}

/// A task the engine does not hold whole.
#[derive(Default)]
pub(crate) struct Held {
    /// What arrived about it, in order, to handle once it is read.
    pub(crate) parked: Vec<Command>,
    /// Cold: where its queued steps sit in the queue. `None` for a task
    /// the start's listing reads back.
    pub(crate) cold: Option<Box<[QueueKey]>>,
    /// A cold task asked for, on its way back.
    pub(crate) loading: bool,
}

impl Backlog {
    pub(crate) fn new(ids: &[Arc<str>]) -> Self {
        Backlog {
            pending: ids.iter().map(|id| (id.clone(), Held::default())).collect(),
            listed: ids.len(),
            cold: 0,
            total: ids.len(),
            started: Instant::now(),
        }
    }

    /// The key of a task still to be read.
    pub(crate) fn pending(&self, task_id: &str) -> Option<Arc<str>> {
        self.pending
            .get_key_value(task_id)
            .map(|(id, _)| id.clone())
    }

    pub(crate) fn holds(&self, task_id: &str) -> bool {
        self.pending.contains_key(task_id)
    }

    /// Parks a command; answers whether its task is cold and now has to
    /// be read back.
    pub(crate) fn park(&mut self, task_id: &Arc<str>, command: Command) -> bool {
        let Some(held) = self.pending.get_mut(task_id) else {
            return false;
        };
        held.parked.push(command);
        let read = held.cold.is_some() && !held.loading;
        held.loading |= read;
        read
    }

    /// Holds a task as its queued steps' places only.
    pub(crate) fn hold_cold(&mut self, id: Arc<str>, keys: Box<[QueueKey]>) {
        self.cold += 1;
        self.pending.insert(
            id,
            Held {
                cold: Some(keys),
                ..Held::default()
            },
        );
    }

    /// Takes a task out.
    pub(crate) fn take(&mut self, id: &str) -> Option<Held> {
        let held = self.pending.remove(id)?;
        if held.cold.is_some() {
            self.cold -= 1;
        } else {
            self.listed -= 1;
        }
        Some(held)
    }
}

/// Reads the backlog back a piece at a time and hands each piece to the
/// engine. The next piece is read while the engine rebuilds the last. A
/// store failure here is fatal, as a failed commit is: the tasks it could
/// not read would otherwise never run.
pub(crate) async fn load_backlog(
    store: Arc<dyn Store>,
    commands: mpsc::Sender<Command>,
    ids: Vec<Arc<str>>,
    fatal: watch::Sender<Option<String>>,
) {
    for piece in ids.chunks(BACKLOG_PIECE) {
        let (first, last) = (&piece[0], &piece[piece.len() - 1]);
        let read = async {
            let tasks = store.recovery_between(first, last).await?;
            let kin = stored_kin(&*store, &tasks).await?;
            tidewright_store::Result::Ok((tasks, kin))
        };
        match read.await {
            Ok((tasks, kin)) => {
                let ids = piece.to_vec();
                if commands
                    .send(Command::Recovered { ids, tasks, kin })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read the unfinished tasks back; stopping the control plane");
                let _ = fatal.send(Some(format!(
                    "reading the unfinished tasks back failed: {e}"
                )));
                return;
            }
        }
    }
}

/// What the compact queue is about to do in this round.
#[derive(Default)]
pub(crate) struct Reads {
    /// Tasks admitted this round: over the cap, those nobody took go cold.
    pub(crate) fresh: Vec<Arc<str>>,
    /// Cold tasks a command waits for.
    pub(crate) wanted: Vec<Arc<str>>,
    /// Steps dispatched since the last look ahead.
    pub(crate) dispatched: usize,
    /// Dispatch found a cold task at the head of the queue.
    pub(crate) head: bool,
}
