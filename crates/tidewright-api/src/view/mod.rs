//! The JSON shapes of tidewright's objects for programs: what `tidewright get -o json`
//! prints and what the HTTP API answers, from one definition so the two
//! never drift. Times are RFC 3339 in UTC; states are lower-case names;
//! empty fields are left out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::convert::micros;
use crate::v1;

mod events;
mod landings;
mod triggers;
pub use events::{ConflictView, EventKindView, EventView, event_view};
pub use landings::{LandingQueueView, QueuedLandingView, landing_queue_view};
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

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub state: &'static str,
    pub priority: i32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When the finished task will be removed (its retention window ends);
    /// absent while it runs, or when it is kept forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostView>,
    /// What the task may spend; crossing it pauses the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetView>,
    /// The repository it works on, its ref resolved to a commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoView>,
    /// The OpenTelemetry trace of the task, to look up in a tracing backend.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
    /// The task's prompt, when it was one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// A planned task's plan as the model answered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub plan: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepView>,
}

/// A task's repository: where, which ref, and the commit it was resolved
/// to when the task was made (never its credentials, only their name).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoView {
    pub url: String,
    #[serde(rename = "ref", skip_serializing_if = "String::is_empty")]
    pub git_ref: String,
    pub commit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credentials_secret: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub push: bool,
    /// The pull request asked for, as its title.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pull_request_title: String,
    /// The pull request is followed until it merges or closes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pull_request_followed: bool,
    /// How tidewright merges it once green (auto, squash, rebase); empty: a
    /// person does.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pull_request_merge: String,
    /// How the task lands on its base, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub land: Option<LandView>,
}

/// A task's landing through its base's queue: the base, and the checks
/// its work must pass there (by name).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LandView {
    pub method: String,
    /// Empty: the task's ref.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub base: String,
    pub checks: Vec<String>,
}

/// What a step did to its task's repository.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkView {
    pub branch: String,
    pub base_commit: String,
    pub head_commit: String,
    pub files_changed: u32,
    pub insertions: u64,
    pub deletions: u64,
    pub changed_paths: Vec<String>,
    /// Tidewright committed what the step left uncommitted.
    pub committed_by_tidewright: bool,
    /// The deliver step's: the task's branch is on the remote.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pushed: bool,
    /// The deliver step's: its pull request.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pull_request_url: String,
}

/// A spending limit: each part set is enforced.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Who may approve the task going on once it has spent its budget.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
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
pub struct StepView {
    pub id: String,
    /// What runs it: `shell`, an agent CLI (`claude-code`, `codex`,
    /// `gemini-cli`, `qwen-code`), `deliver`, `noop`, or `choose` (the step
    /// that chooses among a step's attempts).
    pub runtime: String,
    /// The steps it waits for: the task's graph.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    pub state: &'static str,
    pub attempt: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub worker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub progress: f32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub progress_message: String,
    /// While it is queued: why no connected worker can run it, and what
    /// would.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub queued_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub output: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptView>,
    /// The gate before it runs, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalView>,
    /// What it did to the task's repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work: Option<WorkView>,
    /// Its move to a fallback runtime (`runtime` is where it went), when
    /// a provider's limit made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverView>,
    /// The step it reviews, when it is a reviewer's (its output is the
    /// last verdict: `verdict`, `summary`, `comments` on lines).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub review_of: String,
}

/// An agent step's move to one of its fallback runtimes.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverView {
    /// The runtime it left.
    pub from: String,
    /// Its runtime as submitted.
    pub preferred: String,
    /// Its attempts up to this one ran before the move.
    pub after_attempt: u32,
    /// The limit that paused `from`.
    pub reason: String,
    /// The commit of the work it carried; absent when it carried none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub head: String,
    /// What the agent before did, as the next agent was told.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

/// Who must approve a step, what they are asked, and until when.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub approvers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// While the step awaits approval: when the wait times out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: u32,
    pub worker: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostView>,
    /// A verified step's round: what its checks found on this attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationView>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationView {
    pub round: u32,
    pub head_commit: String,
    pub checks: Vec<CheckView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected_paths: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub tests_removed: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub skips_added: u32,
    /// What the round changed since the round before, as a unified diff.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub round_diff: String,
    /// The rubric's grade, when the step has a rubric and its checks passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<GradeView>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GradeView {
    /// `pass` or `needs_revision`.
    pub verdict: String,
    pub reasons: Vec<String>,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostView>,
    pub millis: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckView {
    pub name: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trouble: String,
    pub millis: u64,
    pub tail: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn verification_view(v: &v1::Verification) -> VerificationView {
    VerificationView {
        round: v.round,
        head_commit: v.head_commit.clone(),
        checks: v
            .checks
            .iter()
            .map(|c| CheckView {
                name: c.name.clone(),
                passed: c.passed,
                exit_code: c.exit_code,
                trouble: c.trouble.clone(),
                millis: c.millis,
                tail: c.tail.clone(),
            })
            .collect(),
        protected_paths: v.protected_paths.clone(),
        tests_removed: v.tests_removed,
        skips_added: v.skips_added,
        round_diff: v.round_diff.clone(),
        grade: v.grade.as_ref().map(|g| GradeView {
            verdict: g.verdict.clone(),
            reasons: g.reasons.clone(),
            model: g.model.clone(),
            cost: cost_view(&g.cost),
            millis: g.millis,
        }),
    }
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

/// A task as programs read it: `tidewright get task -o json` and the HTTP API.
pub fn task_view(task: &v1::Task) -> TaskView {
    let spec = task.spec.clone().unwrap_or_default();
    let specs: BTreeMap<&str, &v1::StepSpec> =
        spec.steps.iter().map(|s| (s.id.as_str(), s)).collect();
    TaskView {
        id: task.id.clone(),
        tenant: task.tenant.clone(),
        name: spec.name,
        state: task_state_name(task.state),
        priority: spec.priority,
        labels: spec.labels.into_iter().collect(),
        message: task.message.clone(),
        created_at: rfc3339(&task.created_at).unwrap_or_default(),
        started_at: rfc3339(&task.started_at),
        finished_at: rfc3339(&task.finished_at),
        expires_at: rfc3339(&task.expires_at),
        cost: cost_view(&task.cost),
        repo: spec.repo.as_ref().map(|r| RepoView {
            url: r.url.clone(),
            git_ref: r.r#ref.clone(),
            commit: r.commit.clone(),
            credentials_secret: r.credentials_secret.clone(),
            push: r.push,
            pull_request_title: r
                .pull_request
                .as_ref()
                .map(|p| p.title.clone())
                .unwrap_or_default(),
            pull_request_followed: r
                .pull_request
                .as_ref()
                .is_some_and(|p| p.follow || !p.merge.is_empty()),
            pull_request_merge: r
                .pull_request
                .as_ref()
                .map(|p| p.merge.clone())
                .unwrap_or_default(),
            land: r.land.as_ref().map(|l| LandView {
                method: if l.method.is_empty() {
                    "queue".into()
                } else {
                    l.method.clone()
                },
                base: l.base.clone(),
                checks: l.checks.iter().map(|c| c.name.clone()).collect(),
            }),
        }),
        budget: spec.budget.as_ref().map(|b| BudgetView {
            usd: b.usd,
            tokens: b.tokens,
            approvers: b.approvers.clone(),
        }),
        trace_id: task.trace_id.clone(),
        prompt: spec.prompt.clone(),
        plan: (!task.plan_json.is_empty()).then(|| {
            serde_json::from_str(&task.plan_json)
                .unwrap_or(serde_json::Value::String(task.plan_json.clone()))
        }),
        steps: task
            .steps
            .iter()
            .map(|s| StepView {
                id: s.id.clone(),
                runtime: match specs.get(s.id.as_str()) {
                    // The step that chooses among its attempts.
                    Some(spec) if spec.select.is_some() => "choose".into(),
                    Some(spec) => match &spec.runtime {
                        Some(v1::step_spec::Runtime::Shell(_)) => "shell".into(),
                        Some(v1::step_spec::Runtime::ClaudeCode(_)) => "claude-code".into(),
                        Some(v1::step_spec::Runtime::Codex(_)) => "codex".into(),
                        Some(v1::step_spec::Runtime::GeminiCli(_)) => "gemini-cli".into(),
                        Some(v1::step_spec::Runtime::Agent(agent)) => agent.cli.clone(),
                        Some(v1::step_spec::Runtime::Deliver(_)) => "deliver".into(),
                        _ => "noop".into(),
                    },
                    None => "noop".into(),
                },
                after: specs
                    .get(s.id.as_str())
                    .map(|spec| spec.depends_on.clone())
                    .unwrap_or_default(),
                state: step_state_name(s.state),
                attempt: s.attempt,
                worker: s.worker.clone(),
                started_at: rfc3339(&s.started_at),
                finished_at: rfc3339(&s.finished_at),
                progress: s.progress,
                progress_message: s.progress_message.clone(),
                queued_reason: s.queued_reason.clone(),
                exit_code: s.exit_code,
                output: (!s.output_json.is_empty()).then(|| {
                    serde_json::from_str(&s.output_json)
                        .unwrap_or(serde_json::Value::String(s.output_json.clone()))
                }),
                error: s.error.clone(),
                cost: cost_view(&s.cost),
                attempts: s
                    .attempts
                    .iter()
                    .map(|a| AttemptView {
                        attempt: a.attempt,
                        worker: a.worker.clone(),
                        state: attempt_state_name(a.state),
                        started_at: rfc3339(&a.started_at),
                        finished_at: rfc3339(&a.finished_at),
                        exit_code: a.exit_code,
                        error: a.error.clone(),
                        session_id: a.session_id.clone(),
                        model: a.model.clone(),
                        cost: cost_view(&a.cost),
                        verification: a.verification.as_ref().map(verification_view),
                    })
                    .collect(),
                approval: specs
                    .get(s.id.as_str())
                    .and_then(|spec| spec.approval.as_ref())
                    .map(|a| ApprovalView {
                        message: a.message.clone(),
                        approvers: a.approvers.clone(),
                        timeout_seconds: (a.timeout_seconds > 0).then_some(a.timeout_seconds),
                        deadline: rfc3339(&s.approval_deadline),
                    }),
                work: s.work.as_ref().map(|w| WorkView {
                    branch: w.branch.clone(),
                    base_commit: w.base_commit.clone(),
                    head_commit: w.head_commit.clone(),
                    files_changed: w.files_changed,
                    insertions: w.insertions,
                    deletions: w.deletions,
                    changed_paths: w.changed_paths.clone(),
                    committed_by_tidewright: w.committed_by_tidewright,
                    pushed: w.pushed,
                    pull_request_url: w.pull_request_url.clone(),
                }),
                failover: specs
                    .get(s.id.as_str())
                    .and_then(|spec| spec.failover.as_ref())
                    .map(|f| FailoverView {
                        from: f.from.clone(),
                        preferred: f.preferred.clone(),
                        after_attempt: f.after_attempt,
                        reason: f.reason.clone(),
                        head: f.head.clone(),
                        summary: f.summary.clone(),
                    }),
                review_of: specs
                    .get(s.id.as_str())
                    .and_then(|spec| spec.review_of.as_ref())
                    .map(|r| r.step.clone())
                    .unwrap_or_default(),
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
