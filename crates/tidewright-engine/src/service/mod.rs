//! The application services: every call a client makes, as typed calls in
//! tidewright-core's and the store's terms, by area: `Tasks` (submit,
//! read, list, cancel, retry, plan, decide, watch, templates, the audit log
//! and activity), `Schedules`, `Triggers` (forge events that start
//! tasks), `Webhooks` (endpoints, deliveries, A2A push
//! configs), `Budgets`, `Shares` (tenants' weights and caps), `State` (shared state and topics), `Fleet` (the
//! workers and replicas) and `Kept` (what steps keep for the attempts
//! after them) and `Seeds` (repositories' setups kept for every worker). Each checks the caller's role and tenants, validates,
//! delegates to the store (reads) or the engine (every change, task
//! creation included), and audits. The areas share one `Context`. The
//! gRPC, REST, MCP and A2A adapters in `tidewright-server` convert their
//! wire to these calls and back, and nothing else.
//!
//! `calls` is what they are asked and answer; `audit` is how each call is
//! recorded; `planner`, `repos` and `webhooks::WebhookRegistry` are what
//! the services need from outside, given at construction.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tidewright_core::build::Build;
use tidewright_core::{Limits, TaskSpec, validate};
use tidewright_store::leadership::Leadership;
use tidewright_store::{Store, TaskRecord};

use crate::access::Identity;
use crate::error::Error;
use crate::handle::EngineHandle;
use crate::hub::Hub;
use crate::metrics::Metrics;

mod audit;
mod auto;
mod budget;
mod call;
mod calls;
mod decide;
mod family;
mod fleet;
mod fleet_events;
pub mod kept;
mod landings;
mod planner;
mod push;
mod replay;
mod repos;
mod schedules;
pub mod seeds;
mod shares;
mod state;
mod steer;
mod tasks;
mod templates;
mod triggers;
mod watch;
mod webhooks;

pub use call::Call;
pub use calls::*;
pub use fleet::{AgentListing, Fleet};
pub use kept::{Kept, KeptSettings};
pub use planner::{Planned, Planner};
pub use replay::StepReplay;
pub use repos::{ForgeProject, Repositories};
pub use schedules::{CreateSchedule, SCHEDULE_LABEL, ScheduleRef, tick_key};
pub use seeds::{SeedDownload, SeedUpload, Seeds};
pub use state::{MAX_VALUE_BYTES, State, TopicStream};
pub use templates::Templates;
pub use triggers::{CreateTrigger, Delivery, Fired, TRIGGER_LABEL, TriggerRef, result_comment};
pub use webhooks::WebhookRegistry;

const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
const MAX_BATCH: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
pub(crate) const MAX_PAGE_SIZE: usize = 1000;
/// Events read from the store per query while replaying a watch.
const REPLAY_PAGE: usize = 512;

/// A name filter longer than any name could be is a mistake.
const MAX_NAME_PREFIX: usize = 256;

/// A watch's events, each one or why the watch ended.
pub type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Watched, Error>> + Send>>;

/// What the services are made of.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub engine: EngineHandle,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Which tenants' steps may move to a fallback runtime.
    pub fallback: tidewright_core::failover::FallbackPolicy,
    /// Plans prompt tasks; `None` when no planner was set up.
    pub planner: Option<Arc<dyn Planner>>,
    pub webhooks: Arc<dyn WebhookRegistry>,
    /// Resolves a task's repository ref to its commit.
    pub repositories: Arc<dyn Repositories>,
    pub templates: Arc<Templates>,
    /// The trace context of a new task `(id, name)`: a child of the
    /// caller's span when traces are exported.
    pub trace_context: fn(&str, &str) -> String,
    /// Whether each audit record is written to the log too, not only
    /// stored.
    pub audit_log: bool,
    /// Who serves: the replicas, as the store's leadership says.
    pub leadership: Arc<dyn Leadership>,
    /// This control plane's build, which the fleet's listing reports.
    pub build: Build,
    /// How large a step's checkpoints and branches may be, and how long
    /// they are kept.
    pub kept: KeptSettings,
    /// The seeds' store; `None` keeps none.
    pub seeds: Option<Arc<crate::seeds::SeedStore>>,
}

/// What every area of the services shares: the store, the engine, what
/// they call out to, and the state a call keeps between calls.
pub(crate) struct Context {
    store: Arc<dyn Store>,
    engine: EngineHandle,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    limits: Limits,
    fallback: tidewright_core::failover::FallbackPolicy,
    ids: Mutex<ulid::Generator>,
    watches: Arc<watch::OpenWatches>,
    planner: Option<Arc<dyn Planner>>,
    webhooks: Arc<dyn WebhookRegistry>,
    repositories: Arc<dyn Repositories>,
    templates: Arc<Templates>,
    trace_context: fn(&str, &str) -> String,
    audit_log: bool,
    /// Held over each read, change and write of a schedule (create,
    /// suspend, resume, trigger, delete, and each firing), so none writes
    /// back a record another changed since it read it: a firing that read
    /// before a suspend must not store the schedule unsuspended.
    schedule_writes: tokio::sync::Mutex<()>,
    /// Told when a schedule is made or resumed, so the leader's loop looks
    /// at once: its first tick may come before the loop's next look.
    schedules_changed: tokio::sync::Notify,
    /// Held over each read, change and write of a trigger (create, delete,
    /// a delivery's firing, replies posted), as `schedule_writes` is.
    trigger_writes: tokio::sync::Mutex<()>,
}

/// The services by area, over one shared `Context`; every transport's
/// adapters call these and nothing else.
#[derive(Clone)]
pub struct Services {
    pub tasks: Tasks,
    pub schedules: Schedules,
    pub triggers: Triggers,
    pub webhooks: Webhooks,
    pub budgets: Budgets,
    pub shares: Shares,
    pub state: State,
    pub fleet: Fleet,
    pub kept: Kept,
    pub seeds: Seeds,
}

/// Tasks: submit (a spec, a batch, a template), read, list, cancel,
/// retry, plan, decide steps, watch, and the audit log and activity.
#[derive(Clone)]
pub struct Tasks {
    cx: Arc<Context>,
}

/// Schedules: made, listed, suspended, triggered, removed, and fired by
/// the leader's loop.
#[derive(Clone)]
pub struct Schedules {
    cx: Arc<Context>,
}

/// Triggers: made, listed, removed; fired by forge deliveries, and their
/// results replied by the leader's loop.
#[derive(Clone)]
pub struct Triggers {
    cx: Arc<Context>,
}

/// Webhook endpoints and their deliveries, and A2A push configs.
#[derive(Clone)]
pub struct Webhooks {
    cx: Arc<Context>,
}

/// Tasks' budgets raised and approved, and tenants' budgets.
#[derive(Clone)]
pub struct Budgets {
    cx: Arc<Context>,
}

/// Tenants' shares of the fleet: weights and caps on running steps.
#[derive(Clone)]
pub struct Shares {
    cx: Arc<Context>,
}

impl Services {
    pub fn new(parts: Parts) -> Self {
        let cx = Arc::new(Context {
            store: parts.store,
            engine: parts.engine,
            hub: parts.hub,
            metrics: parts.metrics,
            limits: parts.limits,
            fallback: parts.fallback,
            ids: Mutex::new(ulid::Generator::new()),
            watches: Arc::default(),
            planner: parts.planner,
            webhooks: parts.webhooks,
            repositories: parts.repositories,
            templates: parts.templates,
            trace_context: parts.trace_context,
            audit_log: parts.audit_log,
            schedule_writes: tokio::sync::Mutex::new(()),
            schedules_changed: tokio::sync::Notify::new(),
            trigger_writes: tokio::sync::Mutex::new(()),
        });
        Services {
            tasks: Tasks { cx: cx.clone() },
            schedules: Schedules { cx: cx.clone() },
            triggers: Triggers { cx: cx.clone() },
            webhooks: Webhooks { cx: cx.clone() },
            budgets: Budgets { cx: cx.clone() },
            shares: Shares { cx: cx.clone() },
            state: State {
                cx: cx.clone(),
                topics: Arc::default(),
            },
            fleet: Fleet {
                cx: cx.clone(),
                leadership: parts.leadership,
                build: parts.build,
            },
            kept: Kept {
                cx: cx.clone(),
                settings: parts.kept,
            },
            seeds: Seeds {
                cx,
                store: parts.seeds,
            },
        }
    }
}

impl Context {
    /// Asks the planner for a plan of `spec`'s prompt, naming the
    /// capabilities the connected workers offer.
    async fn plan(&self, spec: &TaskSpec) -> Result<Planned, Error> {
        let planner = self.planner.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(
                "planning is not set up on this control plane: start it with an Anthropic API key \
                 (--planner-api-key-file or ANTHROPIC_API_KEY)"
                    .into(),
            )
        })?;
        let mut sets: Vec<Vec<String>> = self
            .engine
            .list_agents()
            .await?
            .workers
            .into_iter()
            .map(|w| w.info.capabilities.into_iter().collect())
            .collect();
        sets.sort();
        sets.dedup();
        planner.plan(&spec.prompt, &sets).await
    }

    /// A submitted spec, checked; `field` prefixes error paths.
    fn checked_spec(&self, spec: Option<TaskSpec>, field: &str) -> Result<TaskSpec, Error> {
        let spec = spec.ok_or_else(|| Error::invalid(format!("{field}spec"), "required"))?;
        validate(&spec, &self.limits).map_err(|e| match e {
            tidewright_core::Error::Invalid {
                field: inner,
                message,
            } => Error::invalid(format!("{field}spec.{inner}"), message),
            other => Error::from(other),
        })?;
        Ok(spec)
    }

    /// `spec` with its repository's ref resolved to a commit, unless the
    /// submit pinned one; `field` prefixes error paths, as for the spec.
    async fn resolve_repo(&self, spec: &mut TaskSpec, field: &str) -> Result<(), Error> {
        let Some(repo) = spec.repo.as_mut() else {
            return Ok(());
        };
        let named = |e: Error| match e {
            Error::InvalidArgument {
                field: inner,
                message,
            } => Error::invalid(format!("{field}spec.repo.{inner}"), message),
            other => other,
        };
        self.repositories.allowed(repo).map_err(named)?;
        if repo.commit.is_empty() {
            repo.commit = self.repositories.resolve(repo).await.map_err(named)?;
        }
        Ok(())
    }

    /// Ids sort by creation time, which gives listings their order.
    fn new_id(&self) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let id = ids.generate().unwrap_or_else(|_| ulid::Ulid::new());
        id.to_string().to_lowercase()
    }

    /// A task the caller may see. Another tenant's task is "not found", so
    /// its existence does not leak either.
    async fn load(&self, task_id: &str, caller: &Identity) -> Result<TaskRecord, Error> {
        if task_id.is_empty() {
            return Err(Error::invalid("task_id", "required"));
        }
        if let Some(step) = &caller.step {
            self.step_alive(step).await?;
        }
        let found = self
            .store
            .get_task(task_id)
            .await?
            .filter(|task| family::may_see(caller, task));
        if let Some(task) = found {
            return Ok(self.seen_now(task));
        }
        // Gone: expired (said only to whom may see its tenant), or never.
        match self.store.expired(task_id).await? {
            Some(expired) if caller.can_see(&expired.tenant) => Err(Error::NotFound(
                crate::retention::expired_message(task_id, expired.expired_at),
            )),
            _ => Err(Error::NotFound(format!("task {task_id:?}"))),
        }
    }

    /// Commits `writes` in one transaction; a store that stops before it
    /// answers means the control plane is shutting down.
    async fn commit(&self, writes: Vec<tidewright_store::Write>) -> Result<(), Error> {
        self.store
            .write(writes)
            .await
            .map_err(|_| Error::ShuttingDown)??;
        Ok(())
    }

    /// The task as the control plane sees it now: when it will be removed,
    /// by the retention rules, and why each queued step no connected
    /// worker can run waits.
    fn seen_now(&self, mut task: TaskRecord) -> TaskRecord {
        task.expires_at = self.engine.retention().task_expires_at(&task).unwrap_or(0);
        for (step, spec) in task.steps.iter_mut().zip(&task.spec.steps) {
            if step.state == tidewright_core::StepState::Queued {
                let needs = tidewright_core::queue::capabilities(&spec.required_capabilities());
                step.queued_reason = self.engine.unserved(&needs).unwrap_or_default();
            }
        }
        task
    }
}

/// The tenants a listing asked for, each one the caller may see; all the
/// caller may see when it named none.
fn asked_tenants(caller: &Identity, asked: Vec<String>) -> Result<Option<Vec<String>>, Error> {
    if asked.is_empty() {
        return Ok(caller.visible_tenants());
    }
    for (i, tenant) in asked.iter().enumerate() {
        crate::access::checked_tenant(format!("tenants[{i}]"), tenant)?;
        if !caller.can_see(tenant) {
            return Err(Error::PermissionDenied(format!(
                "tenants[{i}]: {} may not see tenant {tenant:?}",
                caller.name
            )));
        }
    }
    Ok(Some(asked))
}

/// A page size as asked: 0 for `default`; past [`MAX_PAGE_SIZE`] it is
/// refused, naming the field, rather than cut to it unsaid.
fn page_size(asked: u32, default: usize) -> Result<usize, Error> {
    match asked as usize {
        0 => Ok(default),
        n if n <= MAX_PAGE_SIZE => Ok(n),
        n => Err(Error::invalid(
            "page_size",
            format!("{n} is more than the most a page holds, {MAX_PAGE_SIZE}"),
        )),
    }
}
