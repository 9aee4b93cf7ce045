//! tidewright's store contract: the [`Store`] trait every backend implements, the
//! records it reads and writes, and its backend-neutral [`Error`]. SQLite
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
pub mod retention;
pub mod schedules;
pub mod state;
pub mod triggers;
pub mod webhooks;
pub mod write_queue;

pub use state::{
    Expect, NextState, StateChange, StateEntry, StateKey, StateOutcome, StateQuery, StateScope,
};

use async_trait::async_trait;
use tidewright_core::{
    Cost, Event, Micros, StepState, StepWork, TaskSpec, TaskState, TenantBudget, TenantShare,
};
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

/// A task to create, with its first events.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: String,
    /// The tenant (namespace) the task belongs to.
    pub tenant: String,
    pub spec: TaskSpec,
    pub idempotency_key: Option<String>,
    pub created_at: Micros,
    pub state: TaskState,
    /// Why it failed, for a task that is created failed.
    pub message: String,
    /// A planned task's plan as the model answered it; "" for others.
    pub plan_json: String,
    /// The W3C `traceparent` of the task's span: its steps' spans are its
    /// children, across restarts; "" when it has none.
    pub trace_context: String,
    /// One per step of the spec, in order.
    pub step_states: Vec<StepState>,
    pub events: Vec<Event>,
    /// The audit log's record of the submit, kept in the same transaction
    /// when the task is made (not when its idempotency key finds another).
    pub audit: Option<AuditRecord>,
}

/// What a create did: made the task, or found the one with the same
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(String),
    Existing(String),
}

impl Created {
    pub fn id(&self) -> &str {
        match self {
            Created::New(id) | Created::Existing(id) => id,
        }
    }
}

/// One change to stored state. `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Makes a task that must be new (an id or idempotency key already
    /// stored fails the write), as [`WriteStore::create_tasks`] would: the engine
    /// writes a task it was handed unstored in the round that takes it
    /// over, so the task and its first dispatch commit together. Its first
    /// events join the fleet's stream as [`Write::Event`]s do. Boxed: it is
    /// large next to the other writes.
    Create(Box<NewTask>),
    Task(TaskWrite),
    Step(StepWrite),
    /// Creates or updates one attempt's history row.
    Attempt(AttemptWrite),
    Event(Event),
    /// Appends to the audit log.
    Audit(AuditRecord),
    /// Replaces a task's spec (its budget was raised); boxed, as it is
    /// rare and large next to the other writes.
    Spec {
        id: String,
        spec: Box<TaskSpec>,
    },
    /// Sets a tenant's budget; an empty one removes it.
    TenantBudget {
        tenant: String,
        budget: TenantBudget,
    },
    /// Sets a tenant's share of the fleet; the default one removes it.
    TenantShare {
        tenant: String,
        share: TenantShare,
    },
    /// Keeps an agent's session checkpoint as its step's newest. It is
    /// stored only while its attempt is the step's current one and no newer
    /// attempt's checkpoint is kept: a late zombie cannot replace a newer
    /// session. Boxed: it is rare and large.
    Checkpoint(Box<Checkpoint>),
    /// Keeps a step's branch, on the same terms as a checkpoint: only its
    /// current attempt's, never over a newer attempt's. Boxed: it is rare
    /// and large.
    Branch(Box<StepBranch>),
    /// Removes the checkpoints and branches of tasks that finished before
    /// this time.
    ExpireKept {
        finished_before: Micros,
    },
    /// Removes each task, with everything of it (steps, attempts, events,
    /// checkpoints, branches, the shared state scoped to it, its A2A push
    /// configs and their deliveries), if it is
    /// still finished at the time [`retention::Expiring`] gives (a retry
    /// since reopened it otherwise), and keeps an [`retention::Expired`]
    /// record, dated `at`, of each one removed.
    Expire {
        tasks: Vec<retention::Expiring>,
        at: Micros,
    },
    /// Removes history older than its window, a batch at most of each.
    Trim(retention::Trim),
    /// Registers a webhook endpoint, or replaces it (disabled, say).
    Webhook(Box<webhooks::Webhook>),
    /// Removes an endpoint and its deliveries.
    RemoveWebhook {
        id: String,
    },
    /// Creates a schedule, or replaces it (its last tick, suspended...).
    Schedule(Box<schedules::Schedule>),
    /// Removes a schedule; its tasks stay.
    RemoveSchedule {
        tenant: String,
        name: String,
    },
    /// Creates a trigger, or replaces it (its history, its replies owed).
    Trigger(Box<triggers::Trigger>),
    /// Removes a trigger; its tasks stay.
    RemoveTrigger {
        tenant: String,
        name: String,
    },
    /// Stores deliveries (new ones, or tried ones as they are now) and,
    /// with `cursor`, how far the fleet's events have been turned into
    /// deliveries: both in one transaction, so none is made twice or lost.
    Deliveries {
        cursor: Option<u64>,
        deliveries: Vec<webhooks::Delivery>,
    },
}

/// An agent's session as one attempt left it, for a retry on any worker to
/// resume: the worker packs it (secrets masked), the store keeps the newest
/// per step until its task has been finished for the retention time.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub task_id: String,
    pub step_id: String,
    /// The attempt that left it.
    pub attempt: u32,
    pub session_id: String,
    /// Where its workspace was on the worker that ran it.
    pub workspace: String,
    /// The worker's archive (a gzipped tar), kept as given.
    pub archive: Vec<u8>,
    pub created_at: Micros,
}

/// A step's branch as one attempt left it, for a dependent step (or the
/// task's deliver step) on any worker to start from: a git bundle of the
/// step's commits since the task's commit. Kept until its task has been
/// finished for the retention time.
#[derive(Clone, PartialEq, Eq)]
pub struct StepBranch {
    pub task_id: String,
    pub step_id: String,
    /// The attempt that left it.
    pub attempt: u32,
    pub head_commit: String,
    /// The worker's bundle, kept as given.
    pub bundle: Vec<u8>,
    /// The step's own changes as a unified diff.
    pub diff: String,
    pub created_at: Micros,
}

/// Never prints the bundle: it is the repository's contents.
impl std::fmt::Debug for StepBranch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepBranch")
            .field("task_id", &self.task_id)
            .field("step_id", &self.step_id)
            .field("attempt", &self.attempt)
            .field("head_commit", &self.head_commit)
            .field("bundle_bytes", &self.bundle.len())
            .field("diff_bytes", &self.diff.len())
            .finish_non_exhaustive()
    }
}

/// Never prints the archive: a checkpoint is not to be logged.
impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("task_id", &self.task_id)
            .field("step_id", &self.step_id)
            .field("attempt", &self.attempt)
            .field("session_id", &self.session_id)
            .field("archive_bytes", &self.archive.len())
            .finish_non_exhaustive()
    }
}

/// Who did what to which task, and how it ended: one line of the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// Assigned by the store, 1, 2, 3...; ignored on write.
    pub seq: u64,
    pub at: Micros,
    /// The caller's token name or JWT subject.
    pub actor: String,
    pub role: String,
    /// e.g. `task.submit`, `task.cancel`, `task.retry`.
    pub action: String,
    pub tenant: String,
    /// The task acted on ("" when refused before one was made).
    pub target: String,
    /// `ok`, or why it was refused.
    pub outcome: String,
    /// What else helps a reader: a task's name, an idempotency hit.
    pub detail: String,
}

/// A task's new state and message; `None` leaves a time as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWrite {
    pub id: String,
    pub state: TaskState,
    pub message: String,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepWrite {
    pub task_id: String,
    pub step_id: String,
    pub state: Option<StepState>,
    pub attempt: Option<u32>,
    pub worker: Option<String>,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub output_json: Option<String>,
    pub error: Option<String>,
    /// `Some(None)` clears the exit code.
    pub exit_code: Option<Option<i32>>,
    pub progress: Option<(f32, String)>,
    /// When a wait for approval times out; `Some(0)` clears it.
    pub approval_deadline: Option<Micros>,
    /// What the step did to its task's repository; `Some(None)` clears it.
    pub work: Option<Option<StepWork>>,
}

/// One attempt's row; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttemptWrite {
    pub task_id: String,
    pub step_id: String,
    pub attempt: u32,
    pub worker: Option<String>,
    pub started_at: Option<Micros>,
    pub finished_at: Option<Micros>,
    pub state: Option<StepState>,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub cost: Option<Cost>,
    /// A verified step's round: what its checks found on this attempt.
    pub verification: Option<tidewright_core::Verification>,
    /// What its repository's setup did before its process ran.
    pub setup: Option<tidewright_core::setup::SetupReport>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub worker: String,
    pub started_at: Micros,
    pub finished_at: Micros,
    pub state: StepState,
    pub error: String,
    pub exit_code: Option<i32>,
    /// The agent's session ("" for runtimes without one) and model.
    pub session_id: String,
    pub model: String,
    pub cost: Cost,
    /// A verified step's round: what its checks found on this attempt.
    pub verification: Option<tidewright_core::Verification>,
    /// What its repository's setup did before its process ran.
    pub setup: Option<tidewright_core::setup::SetupReport>,
}

impl AttemptRecord {
    /// An attempt's row as first written: running, nothing else known.
    pub fn new(attempt: u32) -> Self {
        AttemptRecord {
            attempt,
            worker: String::new(),
            started_at: 0,
            finished_at: 0,
            state: StepState::Running,
            error: String::new(),
            exit_code: None,
            session_id: String::new(),
            model: String::new(),
            cost: Cost::default(),
            verification: None,
            setup: None,
        }
    }
}

/// A stored task. `steps` is empty in listings.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub tenant: String,
    pub spec: TaskSpec,
    pub state: TaskState,
    pub idempotency_key: Option<String>,
    pub message: String,
    pub created_at: Micros,
    pub started_at: Micros,
    pub finished_at: Micros,
    pub steps: Vec<StepRecord>,
    /// The sequence number of the task's newest event.
    pub last_seq: u64,
    /// What every attempt of every step cost, summed (listings too).
    pub cost: Cost,
    /// A planned task's plan as the model answered it; "" for others.
    pub plan_json: String,
    /// The W3C `traceparent` of the task's span; "" when it has none.
    pub trace_context: String,
    /// When it will be removed (see [`retention`]); 0 while it runs or
    /// when it is kept forever. Stores read it as 0: the retention rules
    /// are the control plane's, whose services fill it in.
    pub expires_at: Micros,
}

// Here rather than in `retention`, which knows only tenants, windows and
// times: a task record is this file's.
impl retention::Retention {
    /// When `task` goes, by its tenant, its own window and when it
    /// finished; `None` while it runs or when it is kept forever.
    pub fn task_expires_at(&self, task: &TaskRecord) -> Option<Micros> {
        self.expires_at(&task.tenant, task.spec.retention_seconds, task.finished_at)
    }
}

impl TaskRecord {
    /// Finishes a task read with its steps' attempt rows, as every backend
    /// does: the attempt running now, whose row exists only once it ends
    /// (or its agent's session starts), is described by its step; costs are
    /// summed per step and for the task.
    pub fn complete_attempts(&mut self) {
        for step in &mut self.steps {
            if step.state == StepState::Running
                && step
                    .attempts
                    .last()
                    .is_none_or(|a| a.attempt < step.attempt)
            {
                step.attempts.push(AttemptRecord {
                    worker: step.worker.clone(),
                    started_at: step.started_at,
                    ..AttemptRecord::new(step.attempt)
                });
            }
            step.cost = step.attempts.iter().map(|a| a.cost).sum();
        }
        self.cost = self.steps.iter().map(|s| s.cost).sum();
    }
}

/// A queued task nobody has started, as the ready queue holds it: what a
/// restart reads back of a deep queue, and all the engine keeps in memory
/// of a task it holds cold.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTask {
    pub id: String,
    /// Its share of the queue is its tenant's.
    pub tenant: String,
    pub priority: i32,
    pub created_at: Micros,
    /// Its queued steps, by position, with what each needs.
    pub queued: Vec<(usize, Vec<String>)>,
    /// What its tenant's fairness key may key it by: its labels and its
    /// repository's URL.
    pub labels: std::collections::BTreeMap<String, String>,
    pub repo: Option<String>,
}

impl QueuedTask {
    /// The task, when it is queued and nobody has started or decided on
    /// any of its steps; `None` for any other.
    pub fn of(task: &TaskRecord) -> Option<QueuedTask> {
        if task.state != TaskState::Queued || task.steps.len() != task.spec.steps.len() {
            return None;
        }
        let mut queued = Vec::new();
        for (index, (step, spec)) in task.steps.iter().zip(&task.spec.steps).enumerate() {
            match step.state {
                StepState::Waiting if step.attempt == 0 => {}
                StepState::Queued if step.attempt == 0 => {
                    queued.push((index, spec.required_capabilities()));
                }
                _ => return None,
            }
        }
        Some(QueuedTask {
            id: task.id.clone(),
            tenant: task.tenant.clone(),
            priority: task.spec.priority,
            created_at: task.created_at,
            queued,
            labels: task.spec.labels.clone(),
            repo: task.spec.repo.as_ref().map(|r| r.url.clone()),
        })
    }

    /// From the stored parts: the spec's JSON, and each step's state (all
    /// queued or waiting) in position order. `None` when a queued step's
    /// position is not in the spec.
    pub fn from_stored(
        (id, tenant): (String, String),
        created_at: Micros,
        spec_json: &str,
        queued_positions: impl IntoIterator<Item = usize>,
    ) -> Result<QueuedTask> {
        let view: tidewright_core::QueueView = serde_json::from_str(spec_json)
            .map_err(|e| Error::Corrupt(format!("the spec of task {id}: {e}")))?;
        let mut queued = Vec::new();
        for index in queued_positions {
            let step = view.steps.get(index).ok_or_else(|| {
                Error::Corrupt(format!("task {id} has no step at position {index}"))
            })?;
            queued.push((index, step.required_capabilities()));
        }
        queued.sort();
        Ok(QueuedTask {
            id,
            tenant,
            priority: view.priority,
            created_at,
            queued,
            labels: view.labels,
            repo: view.repo.map(|r| r.url),
        })
    }
}

/// An unfinished task as recovery reads it back.
#[derive(Debug, Clone, PartialEq)]
pub enum Unfinished {
    Whole(Box<TaskRecord>),
    /// Queued, and nobody has started or decided on any step.
    Queued(QueuedTask),
}

impl Unfinished {
    pub fn id(&self) -> &str {
        match self {
            Unfinished::Whole(task) => &task.id,
            Unfinished::Queued(task) => &task.id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub id: String,
    pub state: StepState,
    pub attempt: u32,
    pub worker: String,
    pub started_at: Micros,
    pub finished_at: Micros,
    pub progress: f32,
    pub progress_message: String,
    pub output_json: String,
    pub error: String,
    pub exit_code: Option<i32>,
    /// Oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// What its attempts cost, summed.
    pub cost: Cost,
    /// While it awaits approval: when the wait times out; 0 for never.
    pub approval_deadline: Micros,
    /// What its last attempt did to the task's repository, when the task
    /// names one and the attempt got that far.
    pub work: Option<StepWork>,
    /// While it is queued: why no connected worker can run it, and what
    /// would; empty when one can. Stores read it as empty: it is the
    /// fleet's now, which the control plane's services fill in.
    pub queued_reason: String,
}

impl StepRecord {
    /// A step's row as a task's making writes it: `state`, before any
    /// attempt.
    pub fn new(id: &str, state: StepState) -> Self {
        StepRecord {
            id: id.to_string(),
            state,
            attempt: 0,
            worker: String::new(),
            started_at: 0,
            finished_at: 0,
            progress: 0.0,
            progress_message: String::new(),
            output_json: String::new(),
            error: String::new(),
            exit_code: None,
            attempts: Vec::new(),
            cost: Cost::default(),
            approval_deadline: 0,
            work: None,
            queued_reason: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskQuery {
    /// Any of these states; all when empty.
    pub states: Vec<TaskState>,
    /// Every one of these labels with this value.
    pub labels: Vec<(String, String)>,
    pub page_size: usize,
    /// Only these tenants; `None` for all.
    pub tenants: Option<Vec<String>>,
    /// Only tasks whose name starts with this; all when empty.
    pub name_prefix: String,
    /// Tasks older than this id (ids sort by creation time).
    pub before_id: Option<String>,
}

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
