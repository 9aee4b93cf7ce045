//! tidewright's store contract: the [`Store`] trait every backend implements, the
//! records it reads and writes (`records`, `writes`), and its
//! backend-neutral [`Error`]. SQLite
//! (`tidewright-store-sqlite`) is the embedded default; a backend for clusters
//! implements the same trait, and [`conformance`] (feature `conformance`)
//! is the one suite of tests every backend passes. [`memory`] (feature
//! `memory`) is a store in memory for the engine's tests, held to the same
//! suite.
//!
//! The ordering promise, which every backend keeps: whatever is handed to
//! the store first commits first, and a write's answer arrives only after
//! its transaction committed. Event sequence numbers and audit cursors are
//! gap-free because of it, and it is what lets the control plane decide in
//! memory, then reveal each decision to clients and workers only once it is
//! durable.

pub mod admission;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod event_groups;
mod fault;
pub mod fleet;
pub mod leadership;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
mod records;
pub mod retention;
pub mod schedules;
pub mod state;
pub mod triggers;
pub mod webhooks;
pub mod write_queue;
mod writes;

pub use records::*;
pub use state::{
    Expect, NextState, StateChange, StateEntry, StateKey, StateOutcome, StateQuery, StateScope,
};
pub use writes::*;

use async_trait::async_trait;
use tidewright_core::{Cost, Event, Micros, TaskState, TenantBudget, TenantShare};
use tokio::sync::oneshot;

/// What went wrong in the store, said by what a caller can do about it; no
/// backend's own error shows through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The database cannot serve now (stopped, unreachable, busy, out of
    /// disk, the connection dropped): nothing was written; retry later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The write collides with what is stored (a key or a sequence number
    /// taken); it was not applied. Read again before retrying.
    #[error("conflict in the store: {0}")]
    Conflict(String),
    /// What is stored cannot be read back: a damaged database, or one
    /// written by another version of tidewright. Retrying will not help.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The store was shut down, or its writer stopped after a failure.
    #[error("the store is closed")]
    Closed,
    /// Too many writes wait for the database: new work waited for room and
    /// found none. Nothing was written; back off and retry.
    #[error("the store is overloaded: {0}")]
    Overloaded(String),
    /// This replica's writes carry a leadership epoch that has ended:
    /// another replica leads now. Nothing was written; the caller should
    /// go to the leader.
    #[error("this replica no longer leads: {0}")]
    Deposed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Resolves once a write has committed (or failed).
pub type Commit = oneshot::Receiver<Result<()>>;

/// A store: every area's reads and writes, as one backend provides them.
/// Each area is a trait of its own, as the conformance suite is a module
/// per area; a caller that needs one area can ask for just that one. A
/// backend says `impl Store for MyStore {}` once it has them all.
pub trait Store:
    WriteStore
    + TaskStore
    + StepStore
    + EventStore
    + RecoveryStore
    + StateStore
    + RetentionStore
    + TenantStore
    + WebhookStore
    + ScheduleStore
    + TriggerStore
    + Send
    + Sync
    + 'static
{
}

/// Writing: new tasks, and the engine's writes in order.
#[async_trait]
pub trait WriteStore: Send + Sync {
    /// Creates tasks in one transaction; answers after the commit.
    async fn create_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>>;

    /// Queues writes behind every earlier one (the ordering promise); the
    /// returned [`Commit`] resolves when they are durable. Never blocks.
    fn write(&self, batch: Vec<Write>) -> Commit;

    /// [`WriteStore::write`], for a caller with nothing else to do while it
    /// commits: a backend whose commit is cheap may commit on the caller's
    /// thread when its writer is idle (see [`write_queue`]), and the
    /// returned [`Commit`] is then resolved already; otherwise it queues.
    fn write_leading(&self, batch: Vec<Write>) -> Commit {
        self.write(batch)
    }

    /// Waits until there is room for new work in the write queue, as
    /// [`WriteStore::create_tasks`] does before it queues: new work that goes in
    /// with the control plane's writes (which are never refused) asks here
    /// first. [`Error::Overloaded`] after the bound's wait;
    /// [`Error::Unavailable`] at once while the database is away.
    async fn wait_for_room(&self) -> Result<()>;
}

/// Reading tasks, one, many or by query.
#[async_trait]
pub trait TaskStore: Send + Sync {
    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>>;

    /// These tasks, whole, in the order of their ids; an id not stored is
    /// left out. One read for many, where a reader that needs each of a
    /// page of events' tasks would otherwise wait on one read per task.
    async fn tasks_by_id(&self, ids: &[String]) -> Result<Vec<TaskRecord>>;

    async fn list_tasks(&self, query: TaskQuery) -> Result<Vec<TaskRecord>>;

    /// How many tasks are in each state (only states that have some), of
    /// these tenants; of all when `None`.
    async fn count_tasks(&self, tenants: Option<Vec<String>>) -> Result<Vec<(TaskState, u64)>>;
}

/// What is kept of a step while it runs: its attempt, its agent's checkpoint, its branch.
#[async_trait]
pub trait StepStore: Send + Sync {
    /// The attempt of a step that is running now; `None` when the step is
    /// not running (or there is no such step).
    async fn running_attempt(&self, task_id: &str, step_id: &str) -> Result<Option<u32>>;

    /// The newest checkpoint kept for a step.
    async fn checkpoint(&self, task_id: &str, step_id: &str) -> Result<Option<Checkpoint>>;

    /// The branch kept for a step.
    async fn step_branch(&self, task_id: &str, step_id: &str) -> Result<Option<StepBranch>>;
}

/// The logs read in order: a task's events, the fleet's, the audit log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Up to `limit` events of a task with `seq > after`, in order.
    async fn events_after(&self, task_id: &str, after: u64, limit: usize) -> Result<Vec<Event>>;

    /// The fleet's events after position `after`: up to `limit` are looked
    /// at, in order, and those of these tenants' tasks (all when `None`)
    /// are returned, each with its position. Every event but a log line has
    /// a fleet position, rising in commit order across the whole store (see
    /// [`fleet`]); positions skip numbers, never go back. Whoever has read
    /// up to a position has seen every event at or below it: a follower
    /// goes on after the page's `through`.
    async fn fleet_events_after(
        &self,
        after: u64,
        tenants: Option<Vec<String>>,
        limit: usize,
    ) -> Result<fleet::FleetPage>;

    /// The highest fleet position stored; 0 when none.
    async fn fleet_head(&self) -> Result<u64>;

    /// Up to `limit` audit records with `seq > after`, oldest first; only
    /// these tenants' when `tenants` is given.
    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
        tenants: Option<Vec<String>>,
    ) -> Result<Vec<AuditRecord>>;
}

/// What a new leader reads back: the unfinished tasks.
#[async_trait]
pub trait RecoveryStore: Send + Sync {
    /// The ids of every task not yet finished (queued or running), in the
    /// store's order of ids: what a new leader has to recover. Cheap next
    /// to the tasks themselves, so a leader lists them before it serves.
    async fn unfinished_task_ids(&self) -> Result<Vec<String>>;

    /// The unfinished tasks whose ids lie from `first` to `last`, both
    /// included, in the order of [`RecoveryStore::unfinished_task_ids`], with steps
    /// and attempts. For consecutive runs of that list these are exactly
    /// its tasks (and any made since), so recovery reads a backlog a piece
    /// at a time, while the control plane already serves.
    async fn unfinished_tasks_between(&self, first: &str, last: &str) -> Result<Vec<TaskRecord>>;

    /// As [`RecoveryStore::unfinished_tasks_between`], but what the ready queue
    /// alone needs of each queued task nobody has started (see
    /// [`QueuedTask::of`]): how a restart reads a deep queue back quickly
    /// and keeps it small. Tasks in any order.
    async fn recovery_between(&self, first: &str, last: &str) -> Result<Vec<Unfinished>> {
        Ok(self
            .unfinished_tasks_between(first, last)
            .await?
            .into_iter()
            .map(|task| match QueuedTask::of(&task) {
                Some(queued) => Unfinished::Queued(queued),
                None => Unfinished::Whole(Box::new(task)),
            })
            .collect())
    }

    /// These tasks, those of them unfinished, whole, in the order of their
    /// ids. The engine reads a queued task back this way when it kept only
    /// its place in the queue (its tasks in memory are capped).
    async fn unfinished_tasks_by_id(&self, ids: &[String]) -> Result<Vec<TaskRecord>>;

    /// Every unfinished task at once.
    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>> {
        let ids = self.unfinished_task_ids().await?;
        match (ids.first(), ids.last()) {
            (Some(first), Some(last)) => self.unfinished_tasks_between(first, last).await,
            _ => Ok(Vec::new()),
        }
    }
}

/// Shared state: versioned values by key, with expiry.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Applies one shared-state change atomically (its check and its write
    /// in one transaction); answers after the commit.
    async fn change_state(&self, change: StateChange) -> Result<StateOutcome>;

    /// The live (unexpired at `now`) value at `key`.
    async fn get_state(&self, key: StateKey, now: Micros) -> Result<Option<StateEntry>>;

    /// The page `query` asks for, in key order: the key is `StateKey`'s.
    async fn list_state(&self, query: StateQuery) -> Result<Vec<(StateKey, StateEntry)>>;
}

/// Finished tasks past their window, and what is kept once they go.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Up to `limit` finished tasks whose window under `retention` had
    /// passed at `now`, of any tenant, in no particular order.
    async fn expiring(
        &self,
        retention: &retention::Retention,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<retention::Expiring>>;

    /// What is kept of task `id` once it expired; `None` for a task that is
    /// stored, or never was (or expired longer ago than the audit log's
    /// window).
    async fn expired(&self, id: &str) -> Result<Option<retention::Expired>>;
}

/// Tenants' budgets and shares, as admins set them, and what they spent.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Every tenant budget set.
    async fn tenant_budgets(&self) -> Result<Vec<(String, TenantBudget)>>;

    /// Every tenant share set (those left at the default are not kept).
    async fn tenant_shares(&self) -> Result<Vec<(String, TenantShare)>>;

    /// What the attempts that ended at or after `since` cost, summed per
    /// tenant (tenants that spent nothing are left out).
    async fn spend_since(&self, since: Micros) -> Result<Vec<(String, Cost)>>;

    /// The cost sums of day `from` (`YYYY-MM-DD`) and after, of `tenants`
    /// (all with `None`).
    async fn cost_sums(
        &self,
        from: &str,
        tenants: Option<Vec<String>>,
    ) -> Result<Vec<tidewright_core::cost_sums::CostSum>>;
}

/// Webhook endpoints and their deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Every registered webhook endpoint, by id.
    async fn webhooks(&self) -> Result<Vec<webhooks::Webhook>>;

    /// The fleet position up to which events have been turned into
    /// deliveries; 0 at first.
    async fn webhook_cursor(&self) -> Result<u64>;

    /// Up to `limit` pending deliveries, oldest first.
    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<webhooks::Delivery>>;

    /// The delivery log: deliveries `query` selects, newest first.
    async fn deliveries(&self, query: webhooks::DeliveryQuery) -> Result<Vec<webhooks::Delivery>>;
}

/// Schedules, by tenant and name.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Every schedule, by tenant and name.
    async fn schedules(&self) -> Result<Vec<schedules::Schedule>>;

    /// The schedule `name` of `tenant`, if there is one.
    async fn schedule(&self, tenant: &str, name: &str) -> Result<Option<schedules::Schedule>>;
}

/// Triggers, by tenant and name.
#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// Every trigger, by tenant and name.
    async fn triggers(&self) -> Result<Vec<triggers::Trigger>>;

    /// The trigger `name` of `tenant`, if there is one.
    async fn trigger(&self, tenant: &str, name: &str) -> Result<Option<triggers::Trigger>>;
}

/// The tables of a tenant's named resources (schedules, triggers): each a
/// JSON record by tenant and name, in every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Schedules,
    Triggers,
}

impl Named {
    /// Its table.
    pub fn table(self) -> &'static str {
        match self {
            Named::Schedules => "schedules",
            Named::Triggers => "triggers",
        }
    }

    /// What one record is called in an error.
    pub fn one(self) -> &'static str {
        match self {
            Named::Schedules => "schedule",
            Named::Triggers => "trigger",
        }
    }
}
