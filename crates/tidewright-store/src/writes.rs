//! What a store is asked to write: [`Write`], each one change, handed to
//! the store in order and committed in that order, and the records they
//! carry (a new task, a task's, step's or attempt's change, a checkpoint, a
//! branch, an audit record).

use tidewright_core::{
    Cost, Event, Micros, StepState, StepWork, TaskSpec, TaskState, TenantBudget, TenantShare,
};

use crate::{retention, schedules, triggers, webhooks};

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
    /// Adds an ended attempt's cost to its day's sum (see
    /// [`tidewright_core::cost_sums`]); written in the commit that records
    /// the attempt, so the sums are the attempts' costs exactly. Sums
    /// before `expire_before` (a day) are dropped.
    CostSum {
        sum: tidewright_core::cost_sums::CostSum,
        expire_before: String,
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
