//! The way in to the engine: what the services hand it (tasks, workers'
//! messages, cancels) as commands on one channel, each answered once the
//! engine has done it.

use std::sync::Arc;
use tidewright_core::{
    AttemptKey, Budget, Capabilities, Cost, LogStream, Micros, TaskRun, TaskSpec, TenantBudget,
    TenantShare,
};
use tidewright_store::retention::{Expiring, Retention};
use tidewright_store::{NewTask, Store, TaskRecord, Unfinished};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::tenants::SpentTenants;
use crate::to_worker::Outbox;

/// How a worker says an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    Succeeded,
    Failed,
    Cancelled,
}

/// A worker's report that an attempt ended.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub attempt: AttemptKey,
    pub outcome: AttemptEnd,
    pub output_json: String,
    pub error: String,
    pub exit_code: Option<i32>,
    pub started_at: Option<Micros>,
    pub cost: Option<tidewright_core::Cost>,
    /// The worker killed the attempt for its silence (it failed).
    pub stalled: bool,
    /// The provider's limit stopped the agent.
    pub rate_limited: Option<RateLimited>,
    /// What the attempt did to its task's repository, when the task names
    /// one and the attempt got that far.
    pub work: Option<tidewright_core::StepWork>,
    /// Its dependencies' work would not merge, so it did not run.
    pub conflict: Option<tidewright_core::repo::MergeConflict>,
    /// A verified step's checks on its committed work, run after the
    /// agent's turn ended in success.
    pub verification: Option<tidewright_core::Verification>,
    /// Stopped by its provider's limit: what its agent did, for the agent
    /// that may take the step over on a fallback runtime; "" otherwise.
    pub handover: String,
}

impl StepResult {
    /// Attempt `attempt` ended as `outcome`, and nothing more is known of
    /// it yet.
    pub fn ended(attempt: AttemptKey, outcome: AttemptEnd) -> StepResult {
        StepResult {
            attempt,
            outcome,
            output_json: String::new(),
            error: String::new(),
            exit_code: None,
            started_at: None,
            cost: None,
            stalled: false,
            rate_limited: None,
            work: None,
            conflict: None,
            verification: None,
            handover: String::new(),
        }
    }
}

/// A provider limit that stopped an agent, as its worker read it.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimited {
    /// When the limit resets, when the provider said; `None`: back off.
    pub reset: Option<Micros>,
    /// Which of the agent's reports decided (`api_error_status 429`,
    /// `rate_limit_event resetsAt=...`, `usage limit message`); empty from
    /// workers older than the field.
    pub signal: String,
}

/// The connected workers, in the order they connected, and the queue.
#[derive(Debug, Clone, Default)]
pub struct FleetNow {
    pub workers: Vec<WorkerNow>,
    /// Ready steps waiting, per set of capabilities they need.
    pub queue: Vec<QueueDepth>,
    /// Ready steps waiting, per tenant that has any.
    pub waiting_by_tenant: Vec<(String, usize)>,
    /// Steps running on workers, per tenant that has any.
    pub running_by_tenant: Vec<(String, usize)>,
    /// The agent runtimes a provider limit pauses now, as (pool, runtime).
    pub paused_agents: Vec<(String, String)>,
    /// Workers that left lately, newest first.
    pub gone: Vec<Gone>,
    /// Each base's landing queue that has a task in it, by repository and
    /// base.
    pub landings: Vec<LandingQueue>,
}

/// The tasks landing on one base through its queue (`repo.land`), in
/// their order: the one whose turn it is first, then those waiting, the
/// oldest task first (the order the queue releases them in).
#[derive(Debug, Clone)]
pub struct LandingQueue {
    /// The repository's URL without a trailing `/` or `.git`: tasks naming
    /// it either way share its queues.
    pub repo: String,
    pub base: String,
    pub tasks: Vec<QueuedLanding>,
}

/// A task in its base's landing queue.
#[derive(Debug, Clone)]
pub struct QueuedLanding {
    pub task_id: String,
    pub task_name: String,
    pub tenant: String,
    /// Its turn: its deliver step lands now (or is about to be handed to
    /// a worker); otherwise it waits.
    pub landing: bool,
    /// Since when: its turn began (landing), or its deliver step was
    /// ready and waits; 0 when not known (a turn taken before a restart).
    pub since: Micros,
}

/// A worker that left: who it was, when it came and left, and why.
#[derive(Debug, Clone)]
pub struct Gone {
    pub info: WorkerInfo,
    pub connected_at: Micros,
    pub gone_at: Micros,
    pub reason: String,
}

/// A connected worker as the engine sees it now.
#[derive(Debug, Clone)]
pub struct WorkerNow {
    pub id: u64,
    pub info: WorkerInfo,
    /// Attempts it runs now.
    pub running: usize,
    pub connected_at: Micros,
    /// Shutting down: it gets no new work.
    pub draining: bool,
    /// Its pool's agents wait for a provider's limit: until when, and why.
    pub paused: Option<(Micros, String)>,
}

/// Ready steps that need `needs`, waiting for a worker.
#[derive(Debug, Clone)]
pub struct QueueDepth {
    pub needs: Capabilities,
    pub queued: usize,
}

#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub name: String,
    pub pool: String,
    pub capabilities: Capabilities,
    pub slots: u32,
    pub peer: String,
    /// Its pool's cap on agent steps running at once; 0 for none.
    pub max_concurrent_agents: u32,
    /// How its steps are isolated, as it says.
    pub isolation: String,
}

/// A task committed to the store, ready to be scheduled.
pub struct Admitted {
    pub id: String,
    pub tenant: String,
    pub spec: Arc<TaskSpec>,
    pub created_at: Micros,
    pub run: TaskRun,
    /// The sequence number its next event gets.
    pub next_seq: u64,
    /// The task span's `traceparent`; "" without one.
    pub trace_context: String,
}

/// An approver's decision on a step awaiting approval; `message` says who
/// decided and why, for the step's event (and, for a rejection, its error).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Approve { message: String },
    Reject { message: String },
}

pub enum CancelAnswer {
    /// The task is not running here: finished, or unknown.
    NotActive,
    /// The cancel is committed.
    Done,
}

pub(super) enum Command {
    /// Tasks just submitted (committed); answered as soon as the round that
    /// took them over has handed its writes (their dispatch) to the store.
    Submitted(Vec<Admitted>, oneshot::Sender<()>),
    /// Tasks submitted and not yet stored, each with what the scheduler
    /// needs of it (nothing for a task made failed): stored by the round
    /// that takes them over, and answered once it has committed.
    Submit(Vec<(NewTask, Option<Admitted>)>, oneshot::Sender<()>),
    Register {
        info: WorkerInfo,
        running: Vec<AttemptKey>,
        outbox: Outbox,
        reply: oneshot::Sender<u64>,
    },
    Credits {
        worker: u64,
        credits: u32,
    },
    Progress {
        worker: u64,
        attempt: AttemptKey,
        fraction: f32,
        message: String,
    },
    Logs {
        worker: u64,
        attempt: AttemptKey,
        lines: Vec<(LogStream, String)>,
    },
    Egress {
        worker: u64,
        attempt: AttemptKey,
        egress: EgressReport,
    },
    SessionItems {
        worker: u64,
        attempt: AttemptKey,
        items: Vec<tidewright_core::session_item::SessionItem>,
        usd: f64,
    },
    Setup {
        worker: u64,
        attempt: AttemptKey,
        setup: tidewright_core::setup::SetupReport,
    },
    /// A worker's result of an attempt that ended.
    StepResult {
        worker: u64,
        /// Boxed: a result (with its work on a repository) is the largest
        /// command by far.
        result: Box<StepResult>,
    },
    Session {
        worker: u64,
        attempt: AttemptKey,
        session_id: String,
        model: String,
    },
    /// A running attempt's cost so far.
    Spend {
        worker: u64,
        attempt: AttemptKey,
        cost: Cost,
    },
    RaiseBudget {
        task_id: String,
        by: Budget,
        reply: oneshot::Sender<Result<oneshot::Receiver<()>, Error>>,
    },
    /// An approver lets a task paused for its own budget go on.
    ApproveBudget {
        task_id: String,
        reply: oneshot::Sender<Result<(Budget, oneshot::Receiver<()>), Error>>,
    },
    /// A tenant's budget, already stored, takes effect.
    SetTenantBudget {
        tenant: String,
        budget: TenantBudget,
        reply: oneshot::Sender<oneshot::Receiver<()>>,
    },
    /// Tenants' budgets and spend; only these tenants' when given.
    Budgets {
        tenants: Option<Vec<String>>,
        reply: oneshot::Sender<Vec<TenantSpending>>,
    },
    /// A message for a running agent step's session.
    Steer {
        steer: Steer,
        reply: oneshot::Sender<Result<Steered, Error>>,
    },
    /// A tenant's share, already stored, takes effect.
    SetTenantShare {
        tenant: String,
        share: TenantShare,
        reply: oneshot::Sender<oneshot::Receiver<()>>,
    },
    /// Tenants' shares, and their steps running and waiting; only these
    /// tenants' when given.
    Shares {
        tenants: Option<Vec<String>>,
        reply: oneshot::Sender<Vec<TenantShareNow>>,
    },
    Heartbeat {
        worker: u64,
    },
    Drain {
        worker: u64,
    },
    Release {
        worker: u64,
        attempts: Vec<AttemptKey>,
        reason: String,
    },
    Disconnected {
        worker: u64,
    },
    Cancel {
        task_id: String,
        reason: String,
        reply: oneshot::Sender<CancelAnswer>,
    },
    /// A forge said something of repository `project` (`owner/name`):
    /// its followed pull requests are looked at now. Answers how many.
    ForgeEvent {
        project: String,
        why: String,
        reply: oneshot::Sender<usize>,
    },
    /// A reconnected worker's running attempt (from its Register), which
    /// may wait for its task to be recovered.
    Adopt {
        worker: u64,
        attempt: AttemptKey,
    },
    /// Tasks read back (a piece of the backlog, or cold tasks): the ids
    /// asked for and the tasks found (see [`super::recovery::Backlog`]).
    /// `kin`: what the store says the budgeted ones' descendants spent.
    Recovered {
        ids: Vec<Arc<str>>,
        tasks: Vec<Unfinished>,
        kin: crate::kin::StoredKin,
    },
    ListAgents(oneshot::Sender<FleetNow>),
    /// Expired tasks a sweep found at `now`, to remove.
    Expire {
        tasks: Vec<Expiring>,
        now: Micros,
        reply: oneshot::Sender<oneshot::Receiver<()>>,
    },
    /// `kin`: what the store says its descendants spent.
    Reopen {
        record: Box<TaskRecord>,
        kin: Vec<(String, tidewright_core::Cost)>,
        reply: oneshot::Sender<Result<oneshot::Receiver<()>, Error>>,
    },
    Decide {
        task_id: String,
        step_id: String,
        decision: Decision,
        reply: oneshot::Sender<Result<oneshot::Receiver<()>, Error>>,
    },
    Shutdown,
}

/// A tenant, its budget, and what it spent in the current day and month.
pub type TenantSpending = (String, TenantBudget, Cost, Cost);

/// A message for a running step's agent, and who sent it.
#[derive(Debug, Clone)]
pub struct Steer {
    pub task_id: String,
    pub step_id: String,
    pub message: String,
    pub from: String,
    pub follow_up: bool,
}

/// The attempt a steering message went to, how it reaches the agent, and
/// when the round recording it commits.
pub(crate) type Steered = (u32, tidewright_core::steer::Delivery, oneshot::Receiver<()>);

/// A tenant, its share, and how many of its steps run and wait now.
pub type TenantShareNow = (String, TenantShare, usize, usize);

/// The cheap, cloneable way in to the engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) commands: mpsc::Sender<Command>,
    /// Where submitted tasks are committed before the engine takes them.
    pub(super) store: Arc<dyn Store>,
    /// Tenants that may not submit now.
    pub(super) spent: SpentTenants,
    /// How long finished tasks are kept.
    pub(super) retention: Arc<Retention>,
    /// What the connected workers offer: why a queued step waits.
    pub(super) offered: crate::unserved::Offered,
}

impl EngineHandle {
    pub(super) async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::ShuttingDown)
    }

    pub async fn register(
        &self,
        info: WorkerInfo,
        running: Vec<AttemptKey>,
        outbox: Outbox,
    ) -> Result<u64, Error> {
        let (reply, id) = oneshot::channel();
        self.send(Command::Register {
            info,
            running,
            outbox,
            reply,
        })
        .await?;
        id.await.map_err(|_| Error::ShuttingDown)
    }

    pub async fn credits(&self, worker: u64, credits: u32) -> Result<(), Error> {
        self.send(Command::Credits { worker, credits }).await
    }

    pub async fn progress(
        &self,
        worker: u64,
        attempt: AttemptKey,
        fraction: f32,
        message: String,
    ) -> Result<(), Error> {
        self.send(Command::Progress {
            worker,
            attempt,
            fraction,
            message,
        })
        .await
    }

    pub async fn logs(
        &self,
        worker: u64,
        attempt: AttemptKey,
        lines: Vec<(LogStream, String)>,
    ) -> Result<(), Error> {
        self.send(Command::Logs {
            worker,
            attempt,
            lines,
        })
        .await
    }

    /// A connection a running attempt asked of its egress proxy, and the
    /// verdict: an event on its step.
    pub async fn egress(
        &self,
        worker: u64,
        attempt: AttemptKey,
        egress: EgressReport,
    ) -> Result<(), Error> {
        self.send(Command::Egress {
            worker,
            attempt,
            egress,
        })
        .await
    }

    /// Items of a running agent's session, as its CLI streamed them, and
    /// what the attempt had cost then: events on its step, for replay.
    pub async fn session_items(
        &self,
        worker: u64,
        attempt: AttemptKey,
        items: Vec<tidewright_core::session_item::SessionItem>,
        usd: f64,
    ) -> Result<(), Error> {
        self.send(Command::SessionItems {
            worker,
            attempt,
            items,
            usd,
        })
        .await
    }

    /// What a running attempt's setup did, once its checkout is ready (or
    /// its setup failed): an event on its step, and a line on the attempt.
    pub async fn setup(
        &self,
        worker: u64,
        attempt: AttemptKey,
        setup: tidewright_core::setup::SetupReport,
    ) -> Result<(), Error> {
        self.send(Command::Setup {
            worker,
            attempt,
            setup,
        })
        .await
    }

    /// The agent of a running attempt started (or resumed) its session.
    pub async fn session(
        &self,
        worker: u64,
        attempt: AttemptKey,
        session_id: String,
        model: String,
    ) -> Result<(), Error> {
        self.send(Command::Session {
            worker,
            attempt,
            session_id,
            model,
        })
        .await
    }

    pub async fn spend(&self, worker: u64, attempt: AttemptKey, cost: Cost) -> Result<(), Error> {
        self.send(Command::Spend {
            worker,
            attempt,
            cost,
        })
        .await
    }

    /// Adds `by` to an unfinished task's budget; a task paused for it goes
    /// on if that is room enough. Returns once that is committed.
    pub async fn raise_budget(&self, task_id: String, by: Budget) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::RaiseBudget { task_id, by, reply })
            .await?;
        let committed = answer.await.map_err(|_| Error::ShuttingDown)??;
        committed.await.map_err(|_| Error::ShuttingDown)
    }

    /// Lets a task paused for its own budget go on, its budget grown by as
    /// much again as it was; returns what was granted, once committed. Who
    /// may approve is the caller's to check.
    pub async fn approve_budget(&self, task_id: String) -> Result<Budget, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ApproveBudget { task_id, reply }).await?;
        let (granted, committed) = answer.await.map_err(|_| Error::ShuttingDown)??;
        committed.await.map_err(|_| Error::ShuttingDown)?;
        Ok(granted)
    }

    /// Applies a tenant budget the store now holds; returns once what it
    /// changed (paused or resumed tasks) is committed.
    pub async fn set_tenant_budget(
        &self,
        tenant: String,
        budget: TenantBudget,
    ) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetTenantBudget {
            tenant,
            budget,
            reply,
        })
        .await?;
        let committed = answer.await.map_err(|_| Error::ShuttingDown)?;
        committed.await.map_err(|_| Error::ShuttingDown)
    }

    /// Sends a message into a running agent step's session; answers the
    /// attempt it went to and how it reaches the agent once that is
    /// recorded.
    pub async fn steer(
        &self,
        steer: Steer,
    ) -> Result<(u32, tidewright_core::steer::Delivery), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Steer { steer, reply }).await?;
        let (attempt, delivery, committed) = answer.await.map_err(|_| Error::ShuttingDown)??;
        committed.await.map_err(|_| Error::ShuttingDown)?;
        Ok((attempt, delivery))
    }

    /// Applies a tenant share the store now holds; returns once the round
    /// has committed.
    pub async fn set_tenant_share(&self, tenant: String, share: TenantShare) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SetTenantShare {
            tenant,
            share,
            reply,
        })
        .await?;
        let committed = answer.await.map_err(|_| Error::ShuttingDown)?;
        committed.await.map_err(|_| Error::ShuttingDown)
    }

    /// Tenants' shares, and their steps running and waiting (only these
    /// tenants' when given).
    pub async fn shares(&self, tenants: Option<Vec<String>>) -> Result<Vec<TenantShareNow>, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Shares { tenants, reply }).await?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    /// Tenants' budgets and spend (only these tenants' when given).
    pub async fn budgets(
        &self,
        tenants: Option<Vec<String>>,
    ) -> Result<Vec<TenantSpending>, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Budgets { tenants, reply }).await?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    pub async fn report(&self, worker: u64, report: StepResult) -> Result<(), Error> {
        self.send(Command::StepResult {
            worker,
            result: Box::new(report),
        })
        .await
    }

    pub async fn drain(&self, worker: u64) -> Result<(), Error> {
        self.send(Command::Drain { worker }).await
    }

    pub async fn release(
        &self,
        worker: u64,
        attempts: Vec<AttemptKey>,
        reason: String,
    ) -> Result<(), Error> {
        self.send(Command::Release {
            worker,
            attempts,
            reason,
        })
        .await
    }

    pub async fn heartbeat(&self, worker: u64) -> Result<(), Error> {
        self.send(Command::Heartbeat { worker }).await
    }

    pub async fn disconnected(&self, worker: u64) -> Result<(), Error> {
        self.send(Command::Disconnected { worker }).await
    }

    pub async fn cancel(&self, task_id: String, reason: String) -> Result<CancelAnswer, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Cancel {
            task_id,
            reason,
            reply,
        })
        .await?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    /// A forge's event on repository `project` (`owner/name`): the deliver
    /// steps following a pull request there look at it now rather than at
    /// their next poll. How many were told.
    pub async fn forge_event(&self, project: String, why: String) -> Result<usize, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ForgeEvent {
            project,
            why,
            reply,
        })
        .await?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    /// How long finished tasks are kept.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Why a step needing `needs` waits in the queue, when no connected
    /// worker can run it.
    pub fn unserved(&self, needs: &tidewright_core::Capabilities) -> Option<String> {
        self.offered.reason(needs)
    }

    /// Removes expired tasks a sweep found at `now`, but those reopened
    /// since; returns once that is committed.
    pub async fn expire(&self, tasks: Vec<Expiring>, now: Micros) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Expire { tasks, now, reply }).await?;
        let committed = answer.await.map_err(|_| Error::ShuttingDown)?;
        committed.await.map_err(|_| Error::ShuttingDown)
    }

    /// Re-runs what did not succeed in a failed or cancelled task; returns
    /// once that is committed.
    /// What its descendants spent before counts against its budget again,
    /// as its own attempts' cost does.
    pub async fn reopen(&self, record: TaskRecord) -> Result<(), Error> {
        let kin = crate::kin::stored_family(&*self.store, &record).await?;
        let (reply, answer) = oneshot::channel();
        self.send(Command::Reopen {
            record: Box::new(record),
            kin,
            reply,
        })
        .await?;
        let committed = answer.await.map_err(|_| Error::ShuttingDown)??;
        committed.await.map_err(|_| Error::ShuttingDown)
    }

    /// Applies an approver's decision to a step awaiting approval; returns
    /// once it is committed. Who may decide is the caller's to check.
    pub async fn decide(
        &self,
        task_id: String,
        step_id: String,
        decision: Decision,
    ) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Decide {
            task_id,
            step_id,
            decision,
            reply,
        })
        .await?;
        let committed = answer.await.map_err(|_| Error::ShuttingDown)??;
        committed.await.map_err(|_| Error::ShuttingDown)
    }

    /// The connected workers and the queue depth per needed capabilities.
    pub async fn list_agents(&self) -> Result<FleetNow, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::ListAgents(reply)).await?;
        answer.await.map_err(|_| Error::ShuttingDown)
    }

    /// Drops every worker stream so the gRPC server can stop.
    pub async fn shutdown(&self) {
        let _ = self.send(Command::Shutdown).await;
    }
}

/// A connection a step asked of its worker's egress proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressReport {
    /// `host:port`.
    pub destination: String,
    pub allowed: bool,
    /// Why it was refused; empty when allowed.
    pub reason: String,
}
