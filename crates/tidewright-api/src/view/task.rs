//! A task as programs read it: its spec's parts shown, its steps with
//! their attempts, checks, work and what tidewright wrote into them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CostView, attempt_state_name, cost_view, rfc3339, step_state_name, task_state_name};
use crate::v1;

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
    /// The runtime `runtimes: auto` chose for it (`runtime` is that one),
    /// and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen: Option<ChosenView>,
}

/// The runtime `runtimes: auto` chose for a step.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChosenView {
    /// Its runtime as submitted: what it runs on while nothing is known.
    pub preferred: String,
    /// Why, with each runtime's figures on the repository.
    pub why: String,
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
    /// What its repository's setup did before its process ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupView>,
}

/// What a step's setup did on one attempt (see the book's setup page).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetupView {
    /// The seed's key; absent when no key file is in the checkout.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub seed: String,
    /// `ran`, `worker`, `store` or `checkout`.
    pub source: String,
    /// `overlay`, `reflink` or `copy`; absent when the setup ran.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// From the setup's start to the checkout being ready.
    pub millis: u64,
    /// How long the setup's command ran: here, or when its seed was made.
    pub run_millis: u64,
    pub files: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// All of it in one line, as `tidewright watch` says it.
    pub summary: String,
}

pub fn setup_view(s: &v1::SetupReport) -> SetupView {
    SetupView {
        summary: tidewright_core::setup::SetupReport::from(s.clone()).summary(),
        seed: s.seed.clone(),
        source: s.source.clone(),
        method: s.method.clone(),
        millis: s.millis,
        run_millis: s.run_millis,
        files: s.files,
        bytes: s.bytes,
        failed: s.failed,
        note: s.note.clone(),
    }
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
                        setup: a.setup.as_ref().map(setup_view),
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
                chosen: specs
                    .get(s.id.as_str())
                    .and_then(|spec| spec.chosen.as_ref())
                    .map(|c| ChosenView {
                        preferred: c.preferred.clone(),
                        why: c.why.clone(),
                    }),
            })
            .collect(),
    }
}
