//! The JSON shapes of tidewright's objects for programs: what `tidewright get -o json`
//! prints and what the HTTP API answers, from one definition so the two
//! never drift. Times are RFC 3339 in UTC; states are lower-case names;
//! empty fields are left out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::convert::micros;
use crate::v1;

mod costs;
mod events;
mod landings;
mod replay;
mod seeds;
mod shares;
mod task;
mod triggers;
pub use costs::{CostReportView, CostRowView, cost_report_view};
pub use events::{ConflictView, EventKindView, EventView, event_view};
pub use landings::{LandingQueueView, QueuedLandingView, landing_queue_view};
pub use replay::{EntryView, ReplayView, WhatView, entry_view};
pub use seeds::{SeedView, seed_view};
pub use shares::{TenantShareView, share_view};
pub use task::{
    ApprovalView, AttemptView, BudgetView, CheckView, ChosenView, FailoverView, GradeView,
    LandView, RepoView, SetupView, StepView, TaskView, VerificationView, WorkView, task_view,
};
pub use triggers::{TriggerRunView, TriggerView, trigger_view};

pub fn task_state_name(state: i32) -> &'static str {
    match v1::TaskState::try_from(state) {
        Ok(v1::TaskState::Queued) => "queued",
        Ok(v1::TaskState::Running) => "running",
        Ok(v1::TaskState::Paused) => "paused",
        Ok(v1::TaskState::Succeeded) => "succeeded",
        Ok(v1::TaskState::Failed) => "failed",
        Ok(v1::TaskState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

pub fn step_state_name(state: i32) -> &'static str {
    match v1::StepState::try_from(state) {
        Ok(v1::StepState::Waiting) => "waiting",
        Ok(v1::StepState::AwaitingApproval) => "awaiting_approval",
        Ok(v1::StepState::Queued) => "queued",
        Ok(v1::StepState::Running) => "running",
        Ok(v1::StepState::Succeeded) => "succeeded",
        Ok(v1::StepState::Failed) => "failed",
        Ok(v1::StepState::Cancelled) => "cancelled",
        Ok(v1::StepState::Skipped) => "skipped",
        _ => "unknown",
    }
}

/// An attempt that went back to the queue lost its worker.
pub fn attempt_state_name(state: i32) -> &'static str {
    match step_state_name(state) {
        "queued" => "lost",
        other => other,
    }
}

/// What something cost; left out when nothing was spent.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostView {
    pub usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
}

pub fn cost_view(cost: &Option<v1::Cost>) -> Option<CostView> {
    cost.as_ref()
        .filter(|c| **c != v1::Cost::default())
        .map(|c| CostView {
            usd: c.usd,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cache_read_tokens: c.cache_read_tokens,
            cache_creation_tokens: c.cache_creation_tokens,
        })
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub pool: String,
    pub capabilities: Vec<String>,
    pub slots: u32,
    pub running: u32,
    pub connected_at: Option<String>,
    pub peer: String,
    /// Its pool's cap on agent steps at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_agents: Option<u32>,
    /// While a provider limit pauses its pool's agents: until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pause_reason: String,
    /// How its steps are isolated: its sandbox, or `none (--sandbox=off)`.
    pub isolation: String,
    /// A worker that left: when, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gone_reason: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    pub name: String,
    pub address: String,
    pub leading: bool,
    pub epoch: i64,
    pub started_at: Option<String>,
    pub leading_since: Option<String>,
    pub seen_at: Option<String>,
}

pub fn rfc3339(ts: &Option<prost_types::Timestamp>) -> Option<String> {
    ts.as_ref().map(|t| format_utc(micros(t)))
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub tenant: String,
    pub task_id: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A webhook endpoint; its secret is never shown.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why it stopped receiving, as a receiver's 410.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub disabled_reason: String,
    pub created_at: Option<String>,
}

pub fn webhook_view(w: &v1::Webhook) -> WebhookView {
    WebhookView {
        id: w.id.clone(),
        tenant: w.tenant.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        enabled: w.enabled,
        disabled_reason: w.disabled_reason.clone(),
        created_at: rfc3339(&w.created_at),
    }
}

/// One event's delivery to one endpoint, over all its tries.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The receiver's idempotency id (its webhook-id header).
    pub id: String,
    pub webhook_id: String,
    pub tenant: String,
    pub task_id: String,
    pub event: String,
    /// pending, delivered or failed.
    pub state: String,
    pub attempts: u32,
    /// The last try's HTTP status; 0 when none answered.
    pub last_status: u32,
    pub last_latency_ms: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    pub created_at: Option<String>,
    /// While pending: when it is tried next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

pub fn delivery_view(d: &v1::WebhookDelivery) -> DeliveryView {
    DeliveryView {
        id: d.id.clone(),
        webhook_id: d.webhook_id.clone(),
        tenant: d.tenant.clone(),
        task_id: d.task_id.clone(),
        event: d.event.clone(),
        state: d.state.clone(),
        attempts: d.attempts,
        last_status: d.last_status,
        last_latency_ms: d.last_latency_ms,
        last_error: d.last_error.clone(),
        created_at: rfc3339(&d.created_at),
        next_attempt_at: rfc3339(&d.next_attempt_at),
        finished_at: rfc3339(&d.finished_at),
    }
}

/// A schedule as programs read it: `tidewright schedule get -o json` and the
/// HTTP API.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub name: String,
    pub tenant: String,
    pub cron: String,
    /// The IANA time zone its cron is read in.
    pub timezone: String,
    /// The task each tick submits (a task file's fields), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub task: Option<serde_json::Value>,
    /// The template each tick submits, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<ScheduleTemplateView>,
    /// Allow, Forbid or Replace.
    pub concurrency_policy: String,
    /// skip or runOnce.
    pub missed: String,
    pub starting_deadline_seconds: u32,
    pub suspended: bool,
    pub created_at: Option<String>,
    /// Unset while suspended.
    pub next_tick: Option<String>,
    /// Its last runs, oldest first.
    pub history: Vec<ScheduleRunView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleTemplateView {
    pub name: String,
    pub params: BTreeMap<String, String>,
}

/// What one tick, or a run of skipped ones, did.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRunView {
    pub tick: Option<String>,
    /// The last of the skipped ticks; the tick when one.
    pub last_tick: Option<String>,
    /// How many were skipped; 0 when more than were counted.
    pub ticks: u64,
    /// The task it submitted; empty when skipped.
    pub task_id: String,
    /// Why it was skipped; empty when it fired.
    pub skipped: String,
}

pub fn schedule_view(schedule: &v1::Schedule) -> ScheduleView {
    let spec = schedule.spec.clone().unwrap_or_default();
    ScheduleView {
        name: spec.name,
        tenant: schedule.tenant.clone(),
        cron: spec.cron,
        timezone: if spec.timezone.is_empty() {
            "UTC".into()
        } else {
            spec.timezone
        },
        task: spec.task.map(|task| {
            serde_json::to_value(tidewright_core::TaskSpec::from(task)).unwrap_or_default()
        }),
        template: spec.template.map(|t| ScheduleTemplateView {
            name: t.name,
            params: t.params.into_iter().collect(),
        }),
        concurrency_policy: spec.concurrency_policy,
        missed: spec.missed,
        starting_deadline_seconds: match spec.starting_deadline_seconds {
            0 => tidewright_core::schedule::DEFAULT_STARTING_DEADLINE_SECONDS,
            n => n,
        },
        suspended: spec.suspended,
        created_at: rfc3339(&schedule.created_at),
        next_tick: rfc3339(&schedule.next_tick),
        history: schedule
            .history
            .iter()
            .map(|run| ScheduleRunView {
                tick: rfc3339(&run.tick),
                last_tick: rfc3339(&run.last_tick),
                ticks: run.ticks,
                task_id: run.task_id.clone(),
                skipped: run.skipped.clone(),
            })
            .collect(),
    }
}

pub fn agent_view(a: &v1::Agent) -> AgentView {
    AgentView {
        id: a.id.clone(),
        name: a.name.clone(),
        pool: a.pool.clone(),
        capabilities: a.capabilities.clone(),
        slots: a.slots,
        running: a.running,
        connected_at: rfc3339(&a.connected_at),
        peer: a.peer.clone(),
        max_concurrent_agents: (a.max_concurrent_agents > 0).then_some(a.max_concurrent_agents),
        paused_until: rfc3339(&a.paused_until),
        pause_reason: a.pause_reason.clone(),
        isolation: a.isolation.clone(),
        gone_at: rfc3339(&a.gone_at),
        gone_reason: a.gone_reason.clone(),
    }
}

pub fn server_view(s: &v1::ControlPlaneServer) -> ServerView {
    ServerView {
        name: s.name.clone(),
        address: s.address.clone(),
        leading: s.leading,
        epoch: s.epoch,
        started_at: rfc3339(&s.started_at),
        leading_since: rfc3339(&s.leading_since),
        seen_at: rfc3339(&s.seen_at),
    }
}

pub fn audit_view(e: &v1::AuditEvent) -> AuditView {
    AuditView {
        seq: e.seq,
        time: rfc3339(&e.time).unwrap_or_default(),
        actor: e.actor.clone(),
        role: e.role.clone(),
        action: e.action.clone(),
        tenant: e.tenant.clone(),
        task_id: e.task_id.clone(),
        outcome: e.outcome.clone(),
        detail: e.detail.clone(),
    }
}

/// RFC 3339 in UTC, to the millisecond.
pub fn format_utc(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = tidewright_core::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}
