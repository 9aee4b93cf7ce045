//! The engine's state, owned by one task: every unfinished task it holds,
//! the ready queue, the workers, the timers, the budgets, and the round
//! being decided. The fleet, the cold queue and the sweeper each own their
//! fields, so a module that decides borrows only the part it needs.
//! The modules that decide (`dispatch`, `results`,
//! `approval`, `budget`, `limits`, `failover`, `recovery`, `cold`, `create`) each add
//! their methods to [`Engine`]; they take what they share from here.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tidewright_core::calendar::now_micros;
use tidewright_core::{Event, EventKind, ReadyQueue};
use tidewright_store::{Commit, Store, Write};
use tokio::sync::{mpsc, oneshot};

use crate::backlog::ColdQueue;
use crate::effects::Effect;
use crate::live::Active;
use crate::metrics::Metrics;
use crate::retention::Sweeper;
use crate::tenants::Budgets;
use crate::timers::Timers;
use crate::workers::{Fleet, Liveness};

/// The error of a step whose output file is not JSON.
pub(crate) const INVALID_OUTPUT: &str = "the step's output is not valid JSON";

/// Commands handled per round: each round is one store transaction.
pub(crate) const MAX_ROUND: usize = 1024;

/// Unfinished tasks the engine holds whole by default (see [`crate::cold`]).
pub const DEFAULT_HOT_TASKS: usize = 50_000;

#[derive(Default)]
pub(crate) struct Round {
    pub(crate) writes: Vec<Write>,
    pub(crate) effects: Vec<Effect>,
    pub(crate) events: Vec<Arc<Event>>,
    /// Answered once the round's writes are handed to the store, before
    /// they commit: submits, whose tasks are durable already.
    pub(crate) queued: Vec<oneshot::Sender<()>>,
}

impl Round {
    /// Appends an event of `active`: stored with the round's writes,
    /// published once they commit.
    pub(crate) fn event(&mut self, task_id: &Arc<str>, active: &mut Active, kind: EventKind) {
        let event = Arc::new(Event {
            task_id: task_id.to_string(),
            seq: active.next_seq,
            at: now_micros(),
            kind,
        });
        active.next_seq += 1;
        self.writes.push(Write::Event((*event).clone()));
        self.events.push(event);
    }
}

pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tasks: HashMap<Arc<str>, Active, foldhash::fast::RandomState>,
    pub(crate) queue: ReadyQueue<(Arc<str>, usize)>,
    pub(crate) fleet: Fleet,
    /// The tasks held only in part (see [`crate::cold`]).
    pub(crate) cold: ColdQueue,
    /// Retries waiting for their backoff, and approvals that time out.
    pub(crate) timers: Timers,
    pub(crate) budgets: Budgets,
    /// Tenants' weights and caps on running steps (see `shares`).
    pub(crate) shares: crate::tenants::Shares,
    pub(crate) round: Round,
    pub(crate) effects: mpsc::UnboundedSender<(Commit, Vec<Effect>)>,
    pub(crate) metrics: Arc<Metrics>,
    /// How long finished tasks are kept (see `retention`).
    pub(crate) sweeper: Sweeper,
    /// The tasks running steps submitted, by their parent (see `family`):
    /// cancelled when it ends.
    pub(crate) children: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// The halves of red landing batches still to land, and how large a
    /// new batch may be (see `batch`).
    pub(crate) batches: Batches,
    /// The tasks whose steps may move to a fallback runtime (see
    /// `failover`).
    pub(crate) failovers: Failovers,
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub liveness: Liveness,
    /// Unfinished tasks held whole in memory; beyond them, queued tasks
    /// nobody started wait in the store with only their place in the queue
    /// in memory.
    pub hot_tasks: usize,
    /// The first pause of a pool's agents after a provider limit that
    /// names no reset; it doubles with each limit in a row.
    pub limit_backoff: Duration,
    /// How long finished tasks are kept, by tenant and by default.
    pub retention: tidewright_store::retention::Retention,
    /// Which tenants' steps may move to a fallback runtime.
    pub fallback: tidewright_core::failover::FallbackPolicy,
}

/// Per repository and base: the halves of red batches still to land, the
/// next first; and the most a new batch may hold when batches there failed
/// (none: `repo.land.batch`). Kept by `batch`.
#[derive(Default)]
pub(crate) struct Batches {
    pub(crate) splits: HashMap<(String, String), VecDeque<Vec<Arc<str>>>>,
    pub(crate) room: HashMap<(String, String), usize>,
}

/// The tasks whose steps may fail over, and who may (kept by `failover`).
pub(crate) struct Failovers {
    pub(crate) policy: tidewright_core::failover::FallbackPolicy,
    /// Tasks with a step that names fallbacks: the only ones looked at
    /// while a limit pauses some pool (a task that ended is let go when
    /// next looked at).
    pub(crate) tasks: std::collections::HashSet<Arc<str>>,
    /// Of those, the tasks a step of which failed over and that do not
    /// fail back: their later steps keep to where it went, so they are
    /// looked at with no pause too.
    pub(crate) kept: std::collections::HashSet<Arc<str>>,
}

impl Failovers {
    pub(crate) fn new(policy: tidewright_core::failover::FallbackPolicy) -> Self {
        Failovers {
            policy,
            tasks: std::collections::HashSet::new(),
            kept: std::collections::HashSet::new(),
        }
    }

    /// Looks after `task` from now on if a step of its `spec` names
    /// fallbacks.
    pub(crate) fn watch(&mut self, task: &Arc<str>, spec: &tidewright_core::TaskSpec) {
        if spec.steps.iter().any(|s| !s.fallback.is_empty()) {
            self.tasks.insert(task.clone());
            if !spec.failback && spec.steps.iter().any(|s| s.failover.is_some()) {
                self.kept.insert(task.clone());
            }
        }
    }
}
