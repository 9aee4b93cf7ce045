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
//! One folder per agent CLI, and one row of `agents`' table. A verified
//! step's checks run in `verify`, and its rubric is graded in `grade`. The
//! deliver step lands a task through its base's queue in `land`.

pub mod agent;
pub mod agent_stream;
pub mod agents;
pub mod attempt;
pub mod checkpoint;
pub mod claude;
pub mod codex;
pub mod deliver;
pub mod dir_home;
pub mod follow;
pub mod gemini;
pub mod grade;
pub mod handover;
pub mod land;
pub mod prices;
pub mod process;
pub mod qwen;
pub mod repeats;
pub mod repo;
pub mod review;
pub mod sandboxed;
pub mod select;
pub mod session;
pub mod setup;
pub mod shell;
mod spend;
pub mod steer;
pub mod verify;
pub mod workspace;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tidewright_api::convert::{now_micros, timestamp};
use tidewright_api::v1;
use tidewright_core::{AgentSpec, ClaudeCodeSpec, CodexSpec, GeminiSpec, Outcome, Runtime};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Fault;
use agent::{AgentRuntime, AgentStep, run_agent};
pub use agents::{AgentCli, AgentSettings, Agents};
use attempt::Ended;
pub use attempt::{Attempt, FromAttempt, Host, ResumeFrom, StepAccess, Stop};
use claude::ClaudeCode;
use codex::Codex;
use gemini::Gemini;
use qwen::QwenCode;
use shell::run_shell;
pub use steer::{Steer, Steers};

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
    let running = attempt.host.metrics.started(runtime);
    let ended = match attempt.step.runtime() {
        // The step that chooses among attempts runs nothing of its own.
        _ if attempt.step.select.is_some() => select::run_select(&attempt, &reports, cancel).await,
        Some(Runtime::Shell(shell)) => run_shell(&attempt, shell, &reports, cancel).await,
        Some(Runtime::Noop) => Ended::succeeded(String::new(), None),
        Some(Runtime::Deliver) => deliver::run_deliver(&attempt, &reports, cancel).await,
        Some(Runtime::ClaudeCode(spec)) => {
            let on = On::new(AgentCli::ClaudeCode, &agents, &attempt, &reports);
            on.run::<ClaudeCode>(spec, cancel).await
        }
        Some(Runtime::Codex(spec)) => {
            let on = On::new(AgentCli::Codex, &agents, &attempt, &reports);
            on.run::<Codex>(spec, cancel).await
        }
        Some(Runtime::Gemini(spec)) => {
            let on = On::new(AgentCli::GeminiCli, &agents, &attempt, &reports);
            on.run::<Gemini>(spec, cancel).await
        }
        Some(Runtime::Agent(spec)) => match AgentCli::named(&spec.cli) {
            Some(cli) => {
                On::new(cli, &agents, &attempt, &reports)
                    .agent(spec, cancel)
                    .await
            }
            None => Ended::fault(
                Fault::UnknownRuntime,
                format!("this worker does not run the agent CLI {:?}", spec.cli),
            ),
        },
        None => Ended::fault(
            Fault::UnknownRuntime,
            "the step sets no runtime this worker knows",
        ),
    };
    drop(running);
    attempt
        .host
        .metrics
        .finished(runtime, outcome_name(&ended.outcome), ended.fault);
    let rate_limit = rate_limit(&ended);
    // The worker's edge: from here on the attempt's end is the wire's.
    let (outcome, error) = match ended.outcome {
        Outcome::Succeeded => (v1::Outcome::Succeeded, String::new()),
        Outcome::Failed(error) => (v1::Outcome::Failed, error),
        Outcome::Cancelled(error) => (v1::Outcome::Cancelled, error),
    };
    let result = v1::StepResult {
        attempt: Some(v1::AttemptRef::from(&attempt.key)),
        outcome: outcome as i32,
        output_json: ended.output_json,
        error,
        exit_code: ended.exit_code,
        started_at: Some(timestamp(started_at)),
        finished_at: Some(timestamp(now_micros())),
        cost: ended.cost.map(Into::into),
        stalled: ended.fault == Some(Fault::Stalled),
        rate_limit,
        work: ended.work.map(Into::into),
        conflict: ended.conflict.map(|c| v1::MergeConflict {
            with: c.with,
            after: c.after,
            paths: c.paths,
        }),
        verification: ended.verification.map(Into::into),
        handover: ended.handover,
    };
    let _ = reports.send(FromAttempt::Done(Box::new(result)));
}

/// An agent step's attempt on the agent CLI `cli`.
struct On<'a> {
    cli: AgentCli,
    agents: &'a Agents,
    attempt: &'a Attempt,
    reports: &'a mpsc::UnboundedSender<FromAttempt>,
}

impl<'a> On<'a> {
    fn new(
        cli: AgentCli,
        agents: &'a Agents,
        attempt: &'a Attempt,
        reports: &'a mpsc::UnboundedSender<FromAttempt>,
    ) -> Self {
        On {
            cli,
            agents,
            attempt,
            reports,
        }
    }

    /// Runs `spec` on the CLI `R`.
    async fn run<R: AgentRuntime>(&self, spec: &R::Spec, cancel: oneshot::Receiver<Stop>) -> Ended {
        let (settings, proxy) = (self.agents.settings(self.cli), self.agents.proxy(self.cli));
        let step = AgentStep::<R>::new(settings, proxy, spec);
        run_agent(&step, self.attempt, self.reports, cancel).await
    }

    /// Runs an `agent` step: one line per agent CLI. A CLI with a runtime
    /// field of its own runs with that field's defaults.
    async fn agent(&self, spec: &AgentSpec, cancel: oneshot::Receiver<Stop>) -> Ended {
        let (prompt, model) = (spec.prompt.clone(), spec.model.clone());
        match self.cli {
            AgentCli::ClaudeCode => {
                // An agent step does its task: it may read, edit and run
                // things, in its sandbox, as the other CLIs' defaults let
                // them (Claude Code's own asks first, and headless, refuses).
                let spec = ClaudeCodeSpec {
                    prompt,
                    model,
                    allowed_tools: AGENT_CLAUDE_TOOLS.iter().map(|t| t.to_string()).collect(),
                    permission_mode: Some(tidewright_core::PermissionMode::AcceptEdits),
                    ..ClaudeCodeSpec::default()
                };
                self.run::<ClaudeCode>(&spec, cancel).await
            }
            AgentCli::Codex => {
                let spec = CodexSpec {
                    prompt,
                    model,
                    ..CodexSpec::default()
                };
                self.run::<Codex>(&spec, cancel).await
            }
            AgentCli::GeminiCli => {
                let spec = GeminiSpec { prompt, model };
                self.run::<Gemini>(&spec, cancel).await
            }
            AgentCli::QwenCode => self.run::<QwenCode>(spec, cancel).await,
        }
    }
}

/// The tools an `agent: {cli: claude-code}` step's agent may use.
const AGENT_CLAUDE_TOOLS: [&str; 6] = ["Read", "Write", "Edit", "Glob", "Grep", "Bash"];

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
    if let Some(cli) = AgentCli::of(runtime) {
        return cli.label();
    }
    match runtime {
        Some(Runtime::Shell(_)) => "shell",
        Some(
            Runtime::ClaudeCode(_) | Runtime::Codex(_) | Runtime::Gemini(_) | Runtime::Agent(_),
        ) => "agent",
        Some(Runtime::Noop) => "noop",
        Some(Runtime::Deliver) => "deliver",
        None => "unknown",
    }
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed(_) => "failed",
        Outcome::Cancelled(_) => "cancelled",
    }
}
