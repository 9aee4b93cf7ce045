//! Step runtimes: how one attempt of a step actually runs. Each attempt gets
//! a fresh workspace (`context/inputs.json` in, `output/result.json` out),
//! reports its log lines and progress as it goes, and ends with a result.
//!
//! `attempt` is what an attempt is given and how it ended; `workspace` its
//! directory; `process` the supervised child; `shell` the shell runtime.
//! Agent CLIs implement [`agent::AgentRuntime`] (build the command, read the
//! stream, where sessions live) and all run through [`agent::run_agent`],
//! which resumes sessions (`session`, over the control plane's
//! `checkpoint`s), reads provider limits and keeps a failed run's session.
//! One folder per agent CLI: `claude/` first; the next CLI is a new folder.

pub mod agent;
pub mod attempt;
pub mod checkpoint;
pub mod claude;
pub mod codex;
pub mod deliver;
pub mod gemini;
pub mod prices;
pub mod process;
pub mod repo;
pub mod session;
pub mod shell;
pub mod workspace;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tidewright_api::convert::{now_micros, timestamp};
use tidewright_api::v1;
use tidewright_core::Runtime;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Fault;
use agent::run_agent;
use attempt::Ended;
pub use attempt::{Attempt, FromAttempt, ResumeFrom, StepAccess, Stop};
use claude::ClaudeCode;
pub use claude::settings::ClaudeSettings;
use codex::Codex;
pub use codex::CodexSettings;
use gemini::Gemini;
pub use gemini::GeminiSettings;
use shell::run_shell;

/// How this worker runs each agent CLI it offers.
#[derive(Clone, Default)]
pub struct Agents {
    pub claude: ClaudeSettings,
    /// Where sandboxed agents reach the model API with a key of their own
    /// attempt's instead of the worker's; `None` hands the CLI the
    /// worker's credential (unsandboxed, or none to hide).
    pub model_proxy: Option<Arc<crate::sandbox::model_proxy::ModelProxy>>,
    pub codex: CodexSettings,
    /// As `model_proxy`, for OpenAI's API (Codex).
    pub openai_proxy: Option<Arc<crate::sandbox::model_proxy::ModelProxy>>,
    pub gemini: GeminiSettings,
    /// As `model_proxy`, for Google's Gemini API.
    pub gemini_proxy: Option<Arc<crate::sandbox::model_proxy::ModelProxy>>,
}

/// Runs the attempt to its end and reports the result. A message on
/// `cancel` stops it.
pub async fn run(
    attempt: Attempt,
    agents: Arc<Agents>,
    reports: mpsc::UnboundedSender<FromAttempt>,
    cancel: oneshot::Receiver<Stop>,
) {
    let started_at = now_micros();
    let runtime = runtime_name(attempt.step.runtime());
    let running = attempt.metrics.started(runtime);
    let ended = match attempt.step.runtime() {
        Some(Runtime::Shell(shell)) => run_shell(&attempt, shell, &reports, cancel).await,
        Some(Runtime::Noop) => Ended::succeeded(String::new(), None),
        Some(Runtime::Deliver) => deliver::run_deliver(&attempt).await,
        Some(Runtime::ClaudeCode(spec)) => {
            let claude = ClaudeCode::new(&agents.claude, agents.model_proxy.as_deref(), spec);
            run_agent(&claude, &attempt, &reports, cancel).await
        }
        Some(Runtime::Codex(spec)) => {
            let codex = Codex::new(&agents.codex, agents.openai_proxy.as_deref(), spec);
            run_agent(&codex, &attempt, &reports, cancel).await
        }
        Some(Runtime::Gemini(spec)) => {
            let gemini = Gemini::new(&agents.gemini, agents.gemini_proxy.as_deref(), spec);
            run_agent(&gemini, &attempt, &reports, cancel).await
        }
        None => Ended::fault(
            Fault::UnknownRuntime,
            "the step sets no runtime this worker knows",
        ),
    };
    drop(running);
    attempt
        .metrics
        .finished(runtime, outcome_name(ended.outcome), ended.fault);
    let rate_limit = rate_limit(&ended);
    let result = v1::StepResult {
        attempt: Some(v1::AttemptRef::from(&attempt.key)),
        outcome: ended.outcome as i32,
        output_json: ended.output_json,
        error: ended.error,
        exit_code: ended.exit_code,
        started_at: Some(timestamp(started_at)),
        finished_at: Some(timestamp(now_micros())),
        cost: ended.cost,
        stalled: ended.fault == Some(Fault::Stalled),
        rate_limit,
        work: ended.work,
        conflict: ended.conflict,
    };
    let _ = reports.send(FromAttempt::Done(Box::new(result)));
}

/// The provider's limit, when that is what stopped an agent's run (only
/// `run_agent` sets one, on a run that failed without a fault).
fn rate_limit(ended: &Ended) -> Option<v1::RateLimit> {
    let limit = ended.limited.as_ref()?;
    Some(v1::RateLimit {
        reset_at: limit.reset.map(timestamp),
        signal: limit.signal.clone(),
    })
}

/// The `runtime` label of the worker's metrics.
fn runtime_name(runtime: Option<Runtime<'_>>) -> &'static str {
    match runtime {
        Some(Runtime::Shell(_)) => "shell",
        Some(Runtime::ClaudeCode(_)) => "claude_code",
        Some(Runtime::Codex(_)) => "codex",
        Some(Runtime::Gemini(_)) => "gemini_cli",
        Some(Runtime::Noop) => "noop",
        Some(Runtime::Deliver) => "deliver",
        None => "unknown",
    }
}

fn outcome_name(outcome: v1::Outcome) -> &'static str {
    match outcome {
        v1::Outcome::Succeeded => "succeeded",
        v1::Outcome::Failed => "failed",
        v1::Outcome::Cancelled => "cancelled",
        v1::Outcome::Unspecified => "unspecified",
    }
}
