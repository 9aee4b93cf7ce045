//! `TaskService` as typed calls (each takes a [`Call`]): validate, convert,
//! delegate to the store (reads) or the engine (every change, task creation
//! included), and convert back. `grpc.rs` and the REST routes are their
//! adapters.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use orca_api::convert::{now_micros, optional_timestamp, task_state, timestamp};
use orca_api::v1;
use orca_core::{Event, EventKind, Limits, TaskSpec, validate};
use orca_store::{AuditRecord, Created, Store, TaskQuery, TaskRecord, Write};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::{Action, Identity};
use crate::call::Call;
use crate::error::Error;
use crate::fleet;
use crate::planner::{Planned, Planner};
use crate::webhooks::Webhooks;
use orca_engine::hub::Hub;
use orca_engine::metrics::Metrics;
use orca_engine::{CancelAnswer, EngineHandle, Submission};

mod budget;
mod decide;
mod grpc;
mod templates;
mod watch;
mod webhooks;

pub use templates::Templates;
pub use watch::FLEET_POSITION;
use watch::OpenWatches;

const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
const MAX_BATCH: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;
/// Events read from the store per query while replaying a watch.
const REPLAY_PAGE: usize = 512;

/// A name filter longer than any name could be is a mistake.
const MAX_NAME_PREFIX: usize = 256;

pub struct TaskApi {
    store: Arc<dyn Store>,
    engine: EngineHandle,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    limits: Limits,
    ids: Mutex<ulid::Generator>,
    watches: Arc<OpenWatches>,
    /// Plans prompt tasks; `None` when no API key was given.
    planner: Option<Arc<Planner>>,
    webhooks: Arc<Webhooks>,
    templates: Arc<Templates>,
}

impl TaskApi {
    pub fn new(
        store: Arc<dyn Store>,
        engine: EngineHandle,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        limits: Limits,
        planner: Option<Arc<Planner>>,
        webhooks: Arc<Webhooks>,
    ) -> Self {
        TaskApi {
            store,
            engine,
            hub,
            metrics,
            limits,
            ids: Mutex::new(ulid::Generator::new()),
            watches: Arc::default(),
            planner,
            webhooks,
            templates: Arc::default(),
        }
    }

    /// Offers `templates` (see [`Templates::load`]); none until then.
    pub fn with_templates(mut self, templates: Arc<Templates>) -> Self {
        self.templates = templates;
        self
    }

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
    fn checked_spec(&self, spec: Option<v1::TaskSpec>, field: &str) -> Result<TaskSpec, Error> {
        let spec: TaskSpec = spec
            .ok_or_else(|| Error::invalid(format!("{field}spec"), "required"))?
            .into();
        validate(&spec, &self.limits).map_err(|e| match e {
            orca_core::Error::Invalid {
                field: inner,
                message,
            } => Error::invalid(format!("{field}spec.{inner}"), message),
            other => Error::from(other),
        })?;
        Ok(spec)
    }

    /// Ids sort by creation time, which gives listings their order.
    fn new_id(&self) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let id = ids.generate().unwrap_or_else(|_| ulid::Ulid::new());
        id.to_string().to_lowercase()
    }

    /// Validates and converts one submit; `field` prefixes error paths. A
    /// prompt task gets its steps here: its one agent step, or its plan. A
    /// plan that cannot run makes a task that fails at once, keeping the
    /// plan.
    async fn prepare(
        &self,
        request: v1::SubmitTaskRequest,
        field: &str,
        now: i64,
        caller: &Identity,
    ) -> Result<Submission, Error> {
        let tenant = caller.tenant_for(&request.tenant, &format!("{field}tenant"), "submit to")?;
        let mut spec = self.checked_spec(request.spec, field)?;
        let key = request.idempotency_key;
        if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(Error::invalid(
                format!("{field}idempotency_key"),
                format!(
                    "is {} bytes; the limit is {MAX_IDEMPOTENCY_KEY_BYTES}",
                    key.len()
                ),
            ));
        }
        let mut plan_json = String::new();
        let mut unrunnable = None;
        if let Some(step) = spec.prompt_as_step() {
            spec.steps = vec![step];
        } else if spec.plan {
            let planned = self.plan(&spec).await?;
            plan_json = planned.plan_json;
            match planned_spec(&spec, planned.plan, &self.limits) {
                Ok(planned) => spec = planned,
                Err(problem) => unrunnable = Some(format!("the plan cannot run: {problem}")),
            }
        }
        let id = self.new_id();
        Ok(Submission {
            trace_context: task_trace_context(&id, &spec.name),
            id,
            tenant,
            spec,
            idempotency_key: (!key.is_empty()).then_some(key),
            created_at: now,
            plan_json,
            unrunnable,
        })
    }

    /// Validates every task of the batch, then has the engine create them.
    async fn submit(
        &self,
        requests: Vec<v1::SubmitTaskRequest>,
        batch: bool,
        caller: &Identity,
    ) -> Result<Vec<v1::SubmitTaskResponse>, Error> {
        let now = now_micros();
        let mut submissions = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let field = if batch {
                format!("tasks[{i}].")
            } else {
                String::new()
            };
            submissions.push(self.prepare(request, &field, now, caller).await?);
        }
        let submitted: Vec<(String, String, String)> = submissions
            .iter()
            .map(|t| (t.id.clone(), t.tenant.clone(), t.spec.name.clone()))
            .collect();
        let created = self.engine.submit(submissions).await?;
        // The new tasks' first events are stored: the fleet's followers
        // read them.
        if created.iter().any(|c| matches!(c, Created::New(_))) {
            self.hub.fleet_changed();
        }
        let mut responses = Vec::with_capacity(created.len());
        let mut audit = Vec::with_capacity(created.len());
        for (outcome, (id, tenant, name)) in created.into_iter().zip(submitted) {
            let (target, detail) = match &outcome {
                Created::New(_) => (id.clone(), format!("created {name:?}")),
                Created::Existing(existing) => (
                    existing.clone(),
                    "idempotency key matched an existing task".to_string(),
                ),
            };
            audit.push(audit_entry(
                caller,
                "task.submit",
                &tenant,
                &target,
                "ok",
                detail,
            ));
            responses.push(v1::SubmitTaskResponse {
                task_id: target,
                created: matches!(outcome, Created::New(_)),
            });
        }
        self.record(audit);
        Ok(responses)
    }

    /// Audits a refusal of `result` (a bad field, a full store, another
    /// tenant's task); a success is the caller's to audit.
    fn refusal_audited<T>(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        result.inspect_err(|e| self.record_refusal(caller, name, target, e))
    }

    /// Checks the caller's role; a refusal is audited.
    fn permit<T>(
        &self,
        request: &Call<T>,
        action: Action,
        name: &'static str,
    ) -> Result<Identity, Error> {
        request.require(action).inspect_err(|e| {
            if let Some(caller) = request.caller() {
                self.record_refusal(caller, name, "", e);
            }
        })
    }

    /// Audits a change to one task: `Ok(tenant)`, or why it was refused.
    fn audited(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        result: Result<String, Error>,
    ) -> Result<(), Error> {
        self.audited_with(caller, name, target, result.map(|t| (t, String::new())))
    }

    /// [`Self::audited`], with what else a reader needs: `Ok((tenant,
    /// detail))`.
    fn audited_with(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        result: Result<(String, String), Error>,
    ) -> Result<(), Error> {
        let (tenant, detail) = self.refusal_audited(caller, name, target, result)?;
        let entry = audit_entry(caller, name, &tenant, target, "ok", detail);
        self.record(vec![entry]);
        Ok(())
    }

    fn record_refusal(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        why: &dyn std::fmt::Display,
    ) {
        let outcome = format!("refused: {why}");
        self.record(vec![audit_entry(
            caller,
            name,
            "",
            target,
            &outcome,
            String::new(),
        )]);
    }

    /// Appends to the audit log (in order with every other write) and to
    /// the server's log, as structured fields.
    fn record(&self, entries: Vec<AuditRecord>) {
        for e in &entries {
            tracing::info!(
                target: "orca::audit",
                actor = %e.actor,
                role = %e.role,
                action = %e.action,
                tenant = %e.tenant,
                task = %e.target,
                outcome = %e.outcome,
                detail = %e.detail,
                "audit"
            );
        }
        // Not awaited: the write queue keeps it in order behind the change,
        // and the answer need not wait for a second commit.
        drop(
            self.store
                .write(entries.into_iter().map(Write::Audit).collect()),
        );
    }

    /// A task the caller may see. Another tenant's task is "not found", so
    /// its existence does not leak either.
    async fn load(&self, task_id: &str, caller: &Identity) -> Result<TaskRecord, Error> {
        if task_id.is_empty() {
            return Err(Error::invalid("task_id", "required"));
        }
        self.store
            .get_task(task_id)
            .await?
            .filter(|task| caller.can_see(&task.tenant))
            .ok_or_else(|| Error::NotFound(format!("task {task_id:?}")))
    }
}

fn audit_entry(
    caller: &Identity,
    action: &str,
    tenant: &str,
    target: &str,
    outcome: &str,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: now_micros(),
        actor: caller.name.clone(),
        role: caller.role.to_string(),
        action: action.to_string(),
        tenant: tenant.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        detail,
    }
}

/// The `traceparent` of a new task's span, a child of the current (RPC)
/// span: every span of the task will be its child. The span itself ends at
/// once; its context is what lasts, stored with the task.
fn task_trace_context(id: &str, name: &str) -> String {
    let span = tracing::info_span!("task", task.id = %id, task.name = %name);
    orca_telemetry::traceparent(&span).unwrap_or_default()
}

/// The trace id inside a `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id_of(traceparent: &str) -> String {
    traceparent
        .split('-')
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

pub fn task_to_proto(task: TaskRecord) -> v1::Task {
    v1::Task {
        trace_id: trace_id_of(&task.trace_context),
        id: task.id,
        tenant: task.tenant,
        spec: Some(v1::TaskSpec::from(&task.spec)),
        state: v1::TaskState::from(task.state) as i32,
        idempotency_key: task.idempotency_key.unwrap_or_default(),
        created_at: Some(timestamp(task.created_at)),
        started_at: optional_timestamp(task.started_at),
        finished_at: optional_timestamp(task.finished_at),
        message: task.message,
        cost: Some(task.cost.into()),
        plan_json: task.plan_json,
        steps: task
            .steps
            .into_iter()
            .map(|s| v1::Step {
                id: s.id,
                state: v1::StepState::from(s.state) as i32,
                attempt: s.attempt,
                worker: s.worker,
                started_at: optional_timestamp(s.started_at),
                finished_at: optional_timestamp(s.finished_at),
                progress: s.progress,
                progress_message: s.progress_message,
                output_json: s.output_json,
                error: s.error,
                exit_code: s.exit_code,
                cost: Some(s.cost.into()),
                approval_deadline: optional_timestamp(s.approval_deadline),
                attempts: s
                    .attempts
                    .into_iter()
                    .map(|a| v1::Attempt {
                        attempt: a.attempt,
                        worker: a.worker,
                        started_at: optional_timestamp(a.started_at),
                        finished_at: optional_timestamp(a.finished_at),
                        state: v1::StepState::from(a.state) as i32,
                        error: a.error,
                        exit_code: a.exit_code,
                        cost: Some(a.cost.into()),
                        session_id: a.session_id,
                        model: a.model,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// `spec` with the planned steps, when they make a valid task; else what
/// is wrong with them, naming the field. The stored spec keeps its prompt,
/// so it shows where the steps came from.
fn planned_spec(
    spec: &TaskSpec,
    plan: Result<orca_core::plan::Plan, String>,
    limits: &Limits,
) -> Result<TaskSpec, String> {
    let plan = plan?;
    let as_submitted = TaskSpec {
        name: if spec.name.is_empty() {
            plan.name
        } else {
            spec.name.clone()
        },
        steps: plan.steps,
        prompt: String::new(),
        plan: false,
        ..spec.clone()
    };
    validate(&as_submitted, limits).map_err(|e| e.to_string())?;
    Ok(TaskSpec {
        prompt: spec.prompt.clone(),
        plan: true,
        ..as_submitted
    })
}

fn valid_task_id(id: &str) -> bool {
    id.len() == 26 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A watch's events, each one or why the watch ended.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Error>> + Send>>;

/// The calls of TaskService, typed: `grpc` and the REST routes are their
/// adapters.
impl TaskApi {
    pub async fn submit_task(
        &self,
        request: Call<v1::SubmitTaskRequest>,
    ) -> Result<v1::SubmitTaskResponse, Error> {
        let caller = self.permit(&request, Action::WriteTasks, "task.submit")?;
        let submitted = self
            .submit(vec![request.into_message()], false, &caller)
            .await;
        let mut responses = self.refusal_audited(&caller, "task.submit", "", submitted)?;
        let response = responses
            .pop()
            .ok_or_else(|| Error::Internal("no task was created".into()))?;
        Ok(response)
    }

    pub async fn submit_tasks(
        &self,
        request: Call<v1::SubmitTasksRequest>,
    ) -> Result<v1::SubmitTasksResponse, Error> {
        let caller = self.permit(&request, Action::WriteTasks, "task.submit")?;
        let tasks = request.into_message().tasks;
        let submitted = if tasks.is_empty() {
            Err(Error::invalid("tasks", "at least one task is required"))
        } else if tasks.len() > MAX_BATCH {
            Err(Error::invalid(
                "tasks",
                format!("has {} tasks; the limit is {MAX_BATCH}", tasks.len()),
            ))
        } else {
            self.submit(tasks, true, &caller).await
        };
        let tasks = self.refusal_audited(&caller, "task.submit", "", submitted)?;
        Ok(v1::SubmitTasksResponse { tasks })
    }

    pub async fn get_task(&self, request: Call<v1::GetTaskRequest>) -> Result<v1::Task, Error> {
        let caller = request.require(Action::ReadTasks)?;
        let task = self.load(&request.into_message().task_id, &caller).await?;
        Ok(task_to_proto(task))
    }

    pub async fn list_tasks(
        &self,
        request: Call<v1::ListTasksRequest>,
    ) -> Result<v1::ListTasksResponse, Error> {
        let caller = request.require(Action::ReadTasks)?;
        let request = request.into_message();
        let states = request
            .states
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                task_state("states", s).map_err(|_| {
                    Error::invalid(format!("states[{i}]"), format!("unknown task state {s}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !request.page_token.is_empty() && !valid_task_id(&request.page_token) {
            return Err(Error::invalid(
                "page_token",
                "is not a token from a previous response",
            ));
        }
        let page_size = match request.page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let mut labels: Vec<(String, String)> = request.labels.into_iter().collect();
        labels.sort();
        let tenants = asked_tenants(&caller, request.tenants)?;
        if request.name_prefix.len() > MAX_NAME_PREFIX {
            return Err(Error::invalid(
                "name_prefix",
                format!("is longer than {MAX_NAME_PREFIX} bytes"),
            ));
        }
        let tasks = self
            .store
            .list_tasks(TaskQuery {
                states,
                labels,
                page_size: page_size + 1,
                before_id: (!request.page_token.is_empty()).then_some(request.page_token),
                tenants,
                name_prefix: request.name_prefix,
            })
            .await
            .map_err(Error::from)?;
        let more = tasks.len() > page_size;
        let tasks: Vec<v1::Task> = tasks
            .into_iter()
            .take(page_size)
            .map(task_to_proto)
            .collect();
        let next_page_token = if more {
            tasks.last().map(|t| t.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListTasksResponse {
            tasks,
            next_page_token,
        })
    }

    pub async fn cancel_task(
        &self,
        request: Call<v1::CancelTaskRequest>,
    ) -> Result<v1::Task, Error> {
        let caller = self.permit(&request, Action::WriteTasks, "task.cancel")?;
        let task_id = request.into_message().task_id;
        let cancelled = async {
            let task = self.load(&task_id, &caller).await?;
            if !task.state.is_terminal() {
                let reason = format!("cancelled by {}", caller.name);
                match self.engine.cancel(task_id.clone(), reason).await? {
                    CancelAnswer::Done | CancelAnswer::NotActive => {}
                }
            }
            Ok::<_, Error>(task.tenant)
        }
        .await;
        self.audited(&caller, "task.cancel", &task_id, cancelled)?;
        Ok(task_to_proto(self.load(&task_id, &caller).await?))
    }

    pub async fn retry_task(&self, request: Call<v1::RetryTaskRequest>) -> Result<v1::Task, Error> {
        let caller = self.permit(&request, Action::WriteTasks, "task.retry")?;
        let task_id = request.into_message().task_id;
        let retried = async {
            let task = self.load(&task_id, &caller).await?;
            if !task.state.is_terminal() {
                return Err(Error::FailedPrecondition(format!(
                    "task {task_id} is still {}; cancel it first",
                    task.state
                )));
            }
            if task.steps.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "task {task_id} has no steps to retry (its plan could not run); submit the prompt again"
                )));
            }
            let tenant = task.tenant.clone();
            self.engine.reopen(task).await?;
            Ok(tenant)
        }
        .await;
        self.audited(&caller, "task.retry", &task_id, retried)?;
        Ok(task_to_proto(self.load(&task_id, &caller).await?))
    }

    pub async fn approve_step(
        &self,
        request: Call<v1::DecideStepRequest>,
    ) -> Result<v1::Task, Error> {
        self.decide_step(request, decide::Verdict::Approve).await
    }

    pub async fn reject_step(
        &self,
        request: Call<v1::DecideStepRequest>,
    ) -> Result<v1::Task, Error> {
        self.decide_step(request, decide::Verdict::Reject).await
    }

    pub async fn raise_budget(
        &self,
        request: Call<v1::RaiseBudgetRequest>,
    ) -> Result<v1::Task, Error> {
        self.raise_task_budget(request).await
    }

    pub async fn approve_budget(
        &self,
        request: Call<v1::ApproveBudgetRequest>,
    ) -> Result<v1::Task, Error> {
        self.approve_task_budget(request).await
    }

    pub async fn plan_task(
        &self,
        request: Call<v1::PlanTaskRequest>,
    ) -> Result<v1::PlanTaskResponse, Error> {
        // Planning spends money: it takes the right to submit.
        let caller = self.permit(&request, Action::WriteTasks, "task.plan")?;
        let request = request.into_message();
        let planned = async {
            caller.tenant_for(&request.tenant, "tenant", "submit to")?;
            let spec = self.checked_spec(request.spec, "")?;
            if !spec.plan {
                return Err(Error::invalid(
                    "spec.plan",
                    "PlanTask plans a prompt task: set plan (and prompt)",
                ));
            }
            let planned = self.plan(&spec).await?;
            Ok(match planned_spec(&spec, planned.plan, &self.limits) {
                Ok(spec) => v1::PlanTaskResponse {
                    spec: Some(v1::TaskSpec::from(&spec)),
                    plan_json: planned.plan_json,
                    problem: String::new(),
                },
                Err(problem) => v1::PlanTaskResponse {
                    spec: Some(v1::TaskSpec::from(&spec)),
                    plan_json: planned.plan_json,
                    problem,
                },
            })
        }
        .await;
        self.refusal_audited(&caller, "task.plan", "", planned)
    }

    pub async fn count_tasks(
        &self,
        request: Call<v1::CountTasksRequest>,
    ) -> Result<v1::CountTasksResponse, Error> {
        let caller = request.require(Action::ReadTasks)?;
        let tenants = asked_tenants(&caller, request.into_message().tenants)?;
        let counts = self
            .store
            .count_tasks(tenants)
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(|(state, tasks)| v1::TaskCount {
                state: v1::TaskState::from(state) as i32,
                tasks,
            })
            .collect();
        Ok(v1::CountTasksResponse { counts })
    }

    pub async fn list_audit(
        &self,
        request: Call<v1::ListAuditRequest>,
    ) -> Result<v1::ListAuditResponse, Error> {
        let caller = request.require(Action::ReadAudit)?;
        let request = request.into_message();
        let page_size = match request.page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let records = self
            .store
            .audit_after(request.after_seq, page_size, caller.visible_tenants())
            .await
            .map_err(Error::from)?;
        let events = records
            .into_iter()
            .map(|r| v1::AuditEvent {
                seq: r.seq,
                time: Some(timestamp(r.at)),
                actor: r.actor,
                role: r.role,
                action: r.action,
                tenant: r.tenant,
                task_id: r.target,
                outcome: r.outcome,
                detail: r.detail,
            })
            .collect();
        Ok(v1::ListAuditResponse { events })
    }

    pub async fn get_activity(
        &self,
        request: Call<v1::GetActivityRequest>,
    ) -> Result<v1::Activity, Error> {
        let caller = request.require(Action::ReadTasks)?;
        let tenants = asked_tenants(&caller, request.into_message().tenants)?;
        let minutes = self
            .metrics
            .activity(tenants.as_deref())
            .into_iter()
            .map(|minute| {
                let tally = minute.tally;
                v1::ActivityMinute {
                    start: Some(timestamp(minute.start)),
                    submitted: tally.submitted,
                    succeeded: tally.succeeded,
                    failed: tally.failed,
                    cancelled: tally.cancelled,
                    dispatched: tally.dispatched,
                    dispatch_p50_seconds: tally.dispatch_wait(0.5),
                    dispatch_p99_seconds: tally.dispatch_wait(0.99),
                    spend: tally
                        .spend
                        .into_iter()
                        .map(|(model, cost)| v1::ModelSpend {
                            model,
                            cost: Some(cost.into()),
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(v1::Activity { minutes })
    }
}

/// The tenants a listing asked for, each one the caller may see; all the
/// caller may see when it named none.
fn asked_tenants(caller: &Identity, asked: Vec<String>) -> Result<Option<Vec<String>>, Error> {
    if asked.is_empty() {
        return Ok(caller.visible_tenants());
    }
    for (i, tenant) in asked.iter().enumerate() {
        if !caller.can_see(tenant) {
            return Err(Error::PermissionDenied(format!(
                "tenants[{i}]: {} may not see tenant {tenant:?}",
                caller.name
            )));
        }
    }
    Ok(Some(asked))
}

#[cfg(test)]
mod tests;
