//! The API's messages and the application services' calls, each way
//! (TaskService's, the fleet's and what steps keep here; schedules',
//! shared state's, seeds' and triggers' in modules of their own):
//! a v1 request becomes the call it asks (refusing, naming the field, what
//! does not convert), and an answer becomes its v1 message. gRPC, the JSON
//! API and the MCP tools (whose arguments are v1 messages) answer with the
//! same conversions.

mod schedules;
mod seeds;
mod state;
mod triggers;
pub use schedules::*;
pub use seeds::*;
pub use state::*;
pub use triggers::*;

use tidewright_api::convert::{now_micros, optional_timestamp, task_state, timestamp};
use tidewright_api::v1;
use tidewright_core::template::{Template, TemplateFile};
use tidewright_core::{AttemptKey, Budget, Cost, TaskState, TenantBudget, Window};
use tidewright_engine::activity::MinuteSummary;
use tidewright_engine::service::{
    AgentListing, ApproveBudget, CreateWebhook, DecideStep, DeliveryPage, EventStream, GetBranch,
    GetCheckpoint, ListAudit, ListDeliveries, ListTasks, OfTenants, PlanTask, PlannedTask,
    PutBranch, PutCheckpoint, RaiseBudget, SetTenantBudget, SetTenantShare, SteerStep, Submit,
    SubmitTemplate, Submitted, TaskPage, TaskRef, WatchFleet, WatchTask, Watched, WebhookRef,
};
use tidewright_engine::{TenantShareNow, TenantSpending};
use tidewright_store::leadership::ReplicaStatus;
use tidewright_store::webhooks::{Delivery, DeliveryState, Webhook};
use tidewright_store::{AuditRecord, Checkpoint, StepBranch, TaskRecord};
use tokio_stream::StreamExt;

use crate::error::Error;

/// A watch's events as the wire carries them.
pub type WireEvents =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::Event, tonic::Status>> + Send>>;

/// A watch's events, each converted; a failure ends the stream as its
/// status.
pub fn events(events: EventStream) -> WireEvents {
    Box::pin(events.map(|watched| match watched {
        Ok(watched) => Ok(self::watched(&watched)),
        Err(e) => Err(tonic::Status::from(Error::from(e))),
    }))
}

// What is asked.

pub fn submit(request: v1::SubmitTaskRequest) -> Submit {
    Submit {
        spec: request.spec.map(Into::into),
        idempotency_key: request.idempotency_key,
        tenant: request.tenant,
    }
}

pub fn submit_many(request: v1::SubmitTasksRequest) -> Vec<Submit> {
    request.tasks.into_iter().map(submit).collect()
}

pub fn task_ref(task_id: String) -> TaskRef {
    TaskRef { task_id }
}

pub fn list_tasks(request: v1::ListTasksRequest) -> Result<ListTasks, Error> {
    let states = request
        .states
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            task_state("states", s).map_err(|_| {
                Error::invalid(format!("states[{i}]"), format!("unknown task state {s}"))
            })
        })
        .collect::<Result<Vec<TaskState>, _>>()?;
    Ok(ListTasks {
        states,
        labels: request.labels.into_iter().collect(),
        page_size: request.page_size,
        page_token: request.page_token,
        tenants: request.tenants,
        name_prefix: request.name_prefix,
    })
}

pub fn decide_step(request: v1::DecideStepRequest) -> DecideStep {
    DecideStep {
        task_id: request.task_id,
        step_id: request.step_id,
        reason: request.reason,
    }
}

pub fn raise_budget(request: v1::RaiseBudgetRequest) -> RaiseBudget {
    RaiseBudget {
        task_id: request.task_id,
        by: request
            .by
            .map(|b| Budget {
                usd: b.usd,
                tokens: b.tokens,
                approvers: Vec::new(),
            })
            .unwrap_or_default(),
    }
}

pub fn approve_budget(request: v1::ApproveBudgetRequest) -> ApproveBudget {
    ApproveBudget {
        task_id: request.task_id,
        reason: request.reason,
    }
}

pub fn set_tenant_budget(request: v1::SetTenantBudgetRequest) -> SetTenantBudget {
    let wire = request.budget.unwrap_or_default();
    SetTenantBudget {
        tenant: request.tenant,
        budget: TenantBudget {
            usd_per_day: wire.usd_per_day,
            usd_per_month: wire.usd_per_month,
            tokens_per_day: wire.tokens_per_day,
            tokens_per_month: wire.tokens_per_month,
        },
    }
}

pub fn plan_task(request: v1::PlanTaskRequest) -> PlanTask {
    PlanTask {
        spec: request.spec.map(Into::into),
        tenant: request.tenant,
    }
}

pub fn of_tenants(tenants: Vec<String>) -> OfTenants {
    OfTenants { tenants }
}

pub fn list_audit(request: v1::ListAuditRequest) -> ListAudit {
    ListAudit {
        after_seq: request.after_seq,
        page_size: request.page_size,
    }
}

pub fn submit_template(request: v1::SubmitTemplateRequest) -> SubmitTemplate {
    SubmitTemplate {
        name: request.name,
        parameters: request.parameters.into_iter().collect(),
        idempotency_key: request.idempotency_key,
        tenant: request.tenant,
        labels: Default::default(),
    }
}

pub fn create_webhook(request: v1::CreateWebhookRequest) -> CreateWebhook {
    CreateWebhook {
        tenant: request.tenant,
        url: request.url,
        events: request.events,
        secret: request.secret,
    }
}

pub fn webhook_ref(request: v1::DeleteWebhookRequest) -> WebhookRef {
    WebhookRef { id: request.id }
}

pub fn list_deliveries(request: v1::ListWebhookDeliveriesRequest) -> ListDeliveries {
    ListDeliveries {
        webhook_id: request.webhook_id,
        page_size: request.page_size,
        page_token: request.page_token,
    }
}

pub fn watch_task(request: v1::WatchTaskRequest) -> WatchTask {
    WatchTask {
        task_id: request.task_id,
        after_seq: request.after_seq,
        follow: request.follow,
    }
}

pub fn watch_fleet(request: v1::WatchFleetRequest) -> WatchFleet {
    WatchFleet {
        tenants: request.tenants,
        after_position: request.after_position,
    }
}

// What is answered.

pub fn submitted(answer: Submitted) -> v1::SubmitTaskResponse {
    v1::SubmitTaskResponse {
        task_id: answer.task_id,
        created: answer.created,
    }
}

pub fn task_page(page: TaskPage) -> v1::ListTasksResponse {
    v1::ListTasksResponse {
        tasks: page.tasks.into_iter().map(task_to_proto).collect(),
        next_page_token: page.next_page_token,
    }
}

pub fn planned(planned: PlannedTask) -> v1::PlanTaskResponse {
    v1::PlanTaskResponse {
        spec: Some(v1::TaskSpec::from(&planned.spec)),
        plan_json: planned.plan_json,
        problem: planned.problem,
    }
}

pub fn counts(counts: Vec<(TaskState, u64)>) -> v1::CountTasksResponse {
    v1::CountTasksResponse {
        counts: counts
            .into_iter()
            .map(|(state, tasks)| v1::TaskCount {
                state: v1::TaskState::from(state) as i32,
                tasks,
            })
            .collect(),
    }
}

pub fn landings(queues: Vec<tidewright_engine::LandingQueue>) -> v1::ListLandingsResponse {
    v1::ListLandingsResponse {
        queues: queues
            .into_iter()
            .map(|queue| v1::LandingQueue {
                repo_url: queue.repo,
                base: queue.base,
                tasks: queue
                    .tasks
                    .into_iter()
                    .map(|task| v1::QueuedLanding {
                        task_id: task.task_id,
                        task_name: task.task_name,
                        tenant: task.tenant,
                        landing: task.landing,
                        since: (task.since > 0).then(|| timestamp(task.since)),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn audit(records: Vec<AuditRecord>) -> v1::ListAuditResponse {
    v1::ListAuditResponse {
        events: records
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
            .collect(),
    }
}

pub fn activity(minutes: Vec<MinuteSummary>) -> v1::Activity {
    let minutes = minutes
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
    v1::Activity { minutes }
}

/// A parameter's value as text: a string as it is, anything else as JSON.
fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn template((file, template): (TemplateFile, Template)) -> v1::TaskTemplate {
    v1::TaskTemplate {
        name: file.name.clone(),
        description: template.description.clone(),
        parameters: template
            .parameters
            .iter()
            .map(|(name, p)| v1::TemplateParameter {
                name: name.clone(),
                r#type: p.kind.name().into(),
                description: p.description.clone(),
                required: p.required,
                default_value: p.default.as_ref().map(text),
                allowed: p.allowed.iter().map(text).collect(),
            })
            .collect(),
        origin: file.origin,
        file: file.text,
    }
}

pub fn templates(templates: Vec<(TemplateFile, Template)>) -> v1::ListTemplatesResponse {
    v1::ListTemplatesResponse {
        templates: templates.into_iter().map(template).collect(),
    }
}

pub fn webhook(webhook: Webhook) -> v1::Webhook {
    v1::Webhook {
        id: webhook.id,
        tenant: webhook.tenant,
        url: webhook.url,
        events: webhook.events,
        enabled: webhook.enabled,
        disabled_reason: webhook.disabled_reason,
        created_at: Some(timestamp(webhook.created_at)),
    }
}

pub fn webhooks(webhooks: Vec<Webhook>) -> v1::ListWebhooksResponse {
    v1::ListWebhooksResponse {
        webhooks: webhooks.into_iter().map(webhook).collect(),
    }
}

fn delivery(d: Delivery) -> v1::WebhookDelivery {
    let pending = d.state == DeliveryState::Pending;
    v1::WebhookDelivery {
        id: d.id,
        webhook_id: d.webhook_id,
        tenant: d.tenant,
        task_id: d.task_id,
        event: d.event,
        state: d.state.as_str().to_string(),
        attempts: d.attempts,
        last_status: u32::from(d.last_status),
        last_latency_ms: d.last_latency_ms,
        last_error: d.last_error,
        created_at: Some(timestamp(d.created_at)),
        next_attempt_at: pending.then(|| timestamp(d.next_attempt_at)),
        finished_at: optional_timestamp(d.finished_at),
    }
}

pub fn delivery_page(page: DeliveryPage) -> v1::ListWebhookDeliveriesResponse {
    v1::ListWebhookDeliveriesResponse {
        deliveries: page.deliveries.into_iter().map(delivery).collect(),
        next_page_token: page.next_page_token,
    }
}

pub fn steer_step(request: v1::SteerStepRequest) -> SteerStep {
    SteerStep {
        task_id: request.task_id,
        step_id: request.step_id,
        message: request.message,
        follow_up: request.follow_up,
    }
}

pub fn steered((attempt, delivery): (u32, String)) -> v1::SteerStepResponse {
    v1::SteerStepResponse { attempt, delivery }
}

pub fn cost_request(
    request: v1::GetCostReportRequest,
) -> tidewright_engine::service::GetCostReport {
    tidewright_engine::service::GetCostReport {
        by: request.by,
        since: request.since,
    }
}

pub fn cost_report(report: tidewright_engine::service::CostReport) -> v1::CostReport {
    v1::CostReport {
        by: report.by.iter().map(|b| b.as_str().to_string()).collect(),
        since: report.since,
        until: report.until,
        rows: report
            .rows
            .into_iter()
            .map(|row| v1::CostRow {
                values: row.values,
                cost: Some(row.cost.into()),
                attempts: row.attempts,
            })
            .collect(),
        total: Some(report.total.into()),
        attempts: report.attempts,
    }
}

pub fn set_tenant_share(request: v1::SetTenantShareRequest) -> SetTenantShare {
    SetTenantShare {
        tenant: request.tenant,
        weight: request.weight,
        max_running: request.max_running,
        fairness_key: request.fairness_key,
    }
}

pub fn shares(shares: Vec<TenantShareNow>) -> v1::ListTenantSharesResponse {
    v1::ListTenantSharesResponse {
        tenants: shares.into_iter().map(share).collect(),
    }
}

pub fn share((tenant, share, running, waiting): TenantShareNow) -> v1::TenantShare {
    v1::TenantShare {
        tenant,
        weight: share.weight,
        max_running: share.max_running,
        running: running as u64,
        waiting: waiting as u64,
        fairness_key: share
            .fairness_key
            .map(|k| k.to_string())
            .unwrap_or_default(),
    }
}

/// An event of a watch, with its place in the fleet's stream.
pub fn watched(watched: &Watched) -> v1::Event {
    let mut event = v1::Event::from(watched.event.as_ref());
    event.position = watched.position;
    event
}

pub fn spendings(spendings: Vec<TenantSpending>) -> v1::ListTenantBudgetsResponse {
    v1::ListTenantBudgetsResponse {
        tenants: spendings.into_iter().map(spending).collect(),
    }
}

pub fn spending((tenant, budget, today, this_month): TenantSpending) -> v1::TenantSpending {
    let now = now_micros();
    let spend = tidewright_core::TenantSpend {
        day: (Window::Day.start(now), today),
        month: (Window::Month.start(now), this_month),
    };
    let exhausted = spend
        .exhausted(&budget, now)
        .map(|e| {
            format!(
                "{} this {}; resets at {}",
                e.why,
                e.window.as_str(),
                timestamp(e.resets_at)
            )
        })
        .unwrap_or_default();
    let cost = |c: Cost| Some(v1::Cost::from(c));
    v1::TenantSpending {
        tenant,
        budget: Some(v1::TenantBudget {
            usd_per_day: budget.usd_per_day,
            usd_per_month: budget.usd_per_month,
            tokens_per_day: budget.tokens_per_day,
            tokens_per_month: budget.tokens_per_month,
        }),
        today: cost(today),
        this_month: cost(this_month),
        day_resets_at: Some(timestamp(Window::Day.end(now))),
        month_resets_at: Some(timestamp(Window::Month.end(now))),
        exhausted,
    }
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
        expires_at: optional_timestamp(task.expires_at),
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
                work: s.work.map(Into::into),
                queued_reason: s.queued_reason,
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
                        verification: a.verification.map(Into::into),
                        setup: a.setup.as_ref().map(Into::into),
                    })
                    .collect(),
            })
            .collect(),
    }
}

// The fleet.

/// The fleet's listing, as `ListAgents` answers it.
pub fn agent_listing(listing: AgentListing) -> v1::ListAgentsResponse {
    let AgentListing { fleet, server } = listing;
    let agents = fleet
        .workers
        .into_iter()
        .map(|w| v1::Agent {
            id: w.id.to_string(),
            name: w.info.name,
            pool: w.info.pool,
            capabilities: w.info.capabilities.into_iter().collect(),
            slots: w.info.slots,
            running: u32::try_from(w.running).unwrap_or(u32::MAX),
            connected_at: optional_timestamp(w.connected_at),
            peer: w.info.peer,
            draining: w.draining,
            max_concurrent_agents: w.info.max_concurrent_agents,
            isolation: w.info.isolation,
            paused_until: w.paused.as_ref().map(|(until, _)| timestamp(*until)),
            pause_reason: w.paused.map(|(_, reason)| reason).unwrap_or_default(),
            gone_at: None,
            gone_reason: String::new(),
        })
        .collect();
    let queue = fleet
        .queue
        .into_iter()
        .map(|depth| v1::QueueDepth {
            capabilities: depth.needs.into_iter().collect(),
            queued: u32::try_from(depth.queued).unwrap_or(u32::MAX),
        })
        .collect();
    let gone = fleet
        .gone
        .into_iter()
        .map(|g| v1::Agent {
            name: g.info.name,
            pool: g.info.pool,
            capabilities: g.info.capabilities.into_iter().collect(),
            slots: g.info.slots,
            connected_at: optional_timestamp(g.connected_at),
            peer: g.info.peer,
            max_concurrent_agents: g.info.max_concurrent_agents,
            isolation: g.info.isolation,
            gone_at: optional_timestamp(g.gone_at),
            gone_reason: g.reason,
            ..v1::Agent::default()
        })
        .collect();
    v1::ListAgentsResponse {
        agents,
        queue,
        gone,
        server: Some(v1::Build {
            version: server.version,
            commit: server.commit,
            built_at: optional_timestamp(server.built_at),
        }),
    }
}

/// The control plane's replicas, as `ListServers` answers them.
pub fn servers(servers: Vec<ReplicaStatus>) -> v1::ListServersResponse {
    let at = |micros: tidewright_core::Micros| (micros != 0).then(|| timestamp(micros));
    v1::ListServersResponse {
        servers: servers
            .into_iter()
            .map(|server| v1::ControlPlaneServer {
                name: server.name,
                address: server.address,
                leading: server.leading,
                epoch: server.epoch,
                started_at: at(server.started_at),
                leading_since: at(server.leading_since),
                seen_at: at(server.seen_at),
            })
            .collect(),
    }
}

// What steps keep: checkpoints and branches.

pub fn put_checkpoint(checkpoint: v1::Checkpoint) -> PutCheckpoint {
    PutCheckpoint {
        attempt: checkpoint.attempt.map(Into::into),
        session_id: checkpoint.session_id,
        workspace: checkpoint.workspace,
        archive: checkpoint.archive,
    }
}

pub fn get_checkpoint(request: v1::GetCheckpointRequest) -> GetCheckpoint {
    GetCheckpoint {
        attempt: request.attempt.map(Into::into),
    }
}

/// The attempt a checkpoint or a branch was kept for.
fn kept_attempt(task_id: String, step_id: String, attempt: u32) -> v1::AttemptRef {
    AttemptKey {
        task_id,
        step_id,
        attempt,
    }
    .into()
}

pub fn checkpoint(kept: Checkpoint) -> v1::Checkpoint {
    v1::Checkpoint {
        attempt: Some(kept_attempt(kept.task_id, kept.step_id, kept.attempt)),
        session_id: kept.session_id,
        workspace: kept.workspace,
        archive: kept.archive,
    }
}

pub fn put_branch(branch: v1::StepBranch) -> PutBranch {
    PutBranch {
        attempt: branch.attempt.map(Into::into),
        head_commit: branch.head_commit,
        bundle: branch.bundle,
        diff: branch.diff,
    }
}

pub fn get_branch(request: v1::GetBranchRequest) -> GetBranch {
    GetBranch {
        attempt: request.attempt.map(Into::into),
        step_id: request.step_id,
    }
}

pub fn branch(kept: StepBranch) -> v1::StepBranch {
    v1::StepBranch {
        attempt: Some(kept_attempt(kept.task_id, kept.step_id, kept.attempt)),
        head_commit: kept.head_commit,
        bundle: kept.bundle,
        diff: kept.diff,
    }
}
