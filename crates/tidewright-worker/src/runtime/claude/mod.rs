//! The Claude Code runtime: the `claude` CLI run headless
//! (`-p ... --output-format stream-json`), its stream read in `stream` and
//! `run`, its provider limits told apart in `limits`, its sessions'
//! transcripts where `transcripts` says, resumed with `--resume`.

pub mod limits;
pub mod run;
pub mod stream;
pub mod transcripts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tidewright_core::{ClaudeCodeSpec, Cost};
use tokio::process::Command;

use super::agent::{AgentRuntime, AgentStep, Exit, Launch};
use super::agents::AgentSettings;
use super::attempt::{Attempt, Ended};
use super::process::{basic_environment, describe_exit};
use super::session::TranscriptPlaces;
use super::steer::Input;
use crate::mcp::{SERVER_NAME, agent_config};
use crate::metrics::Fault;
use crate::secrets::Redactor;
use run::ClaudeRun;
use stream::RunResult;

/// Turns a Claude Code step may take when it sets no `maxTurns`: an agent
/// that loops must end, and cost, at some point.
pub const DEFAULT_MAX_TURNS: u32 = 100;

/// The turns a step may take.
fn max_turns(spec: &ClaudeCodeSpec) -> u32 {
    spec.max_turns.unwrap_or(DEFAULT_MAX_TURNS)
}

/// The Claude Code CLI.
pub struct ClaudeCode;

impl AgentRuntime for ClaudeCode {
    type Spec = ClaudeCodeSpec;
    type Stream = ClaudeRun;
    const TRANSCRIPTS: TranscriptPlaces = transcripts::PLACES;
    const DEFAULT_MODEL: &'static str = "";

    fn model(spec: &Self::Spec) -> Option<&String> {
        spec.model.as_ref()
    }

    fn prompt(spec: &Self::Spec) -> &str {
        &spec.prompt
    }

    fn kept_in_home(cwd: &Path) -> Vec<PathBuf> {
        vec![transcripts::project_dir(cwd)]
    }

    fn stream(step: &AgentStep<Self>) -> ClaudeRun {
        ClaudeRun::new(max_turns(step.spec))
    }

    /// The outcome is the stream's `result` line, not the exit code: API
    /// errors exit like successes, and a run killed before its result is a
    /// failure.
    fn ended(step: &AgentStep<Self>, exit: Exit<'_, Self::Stream>) -> Ended {
        let Exit {
            status,
            stream,
            session_usd_before,
            redactor,
        } = exit;
        ended(
            status,
            stream,
            max_turns(step.spec),
            session_usd_before,
            redactor,
        )
    }

    /// Its prompt, and people's messages while it runs, go through its
    /// streaming input (`--input-format stream-json`), one user message a
    /// line; each is echoed back as the session takes it.
    fn input(step: &AgentStep<Self>, launch: &Launch, stream: &mut ClaudeRun) -> Option<Input> {
        Some(Input {
            prompt: launch.prompt(&step.spec.prompt),
            encode: user_message,
            progress: stream.watched(),
            steers: launch.attempt.steers.clone(),
            log: None,
        })
    }

    fn command(step: &AgentStep<Self>, launch: &Launch) -> (Command, BTreeMap<String, String>) {
        let mut command = Command::new(&step.settings.bin);
        command.args(args(
            step.spec,
            step.settings,
            max_turns(step.spec),
            launch.resume,
            launch
                .attempt
                .access
                .as_ref()
                .and_then(|a| a.tidewright_bin.as_deref()),
        ));
        let mut env = environment(launch.attempt, step.settings, launch.workspace);
        if let (Some(url), Some(key)) = (step.reach.proxy_url(), step.reach.attempt_key()) {
            env.insert("ANTHROPIC_BASE_URL".into(), url.to_string());
            for var in ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"] {
                if env.contains_key(var) {
                    env.insert(var.into(), key.clone());
                }
            }
        }
        (command, env)
    }
}

/// How a CLI run that exited ended: its result line decides.
fn ended(
    status: ExitStatus,
    run: &ClaudeRun,
    max_turns: u32,
    session_usd_before: f64,
    redactor: &Redactor,
) -> Ended {
    let Some(result) = &run.result else {
        return Ended {
            exit_code: status.code(),
            ..Ended::fault(
                Fault::NoResult,
                format!(
                    "the claude CLI ended without a result ({})",
                    describe_exit(status)
                ),
            )
        };
    };
    let cost = Cost {
        usd: (result.total_cost_usd - session_usd_before).max(0.0),
        input_tokens: result.usage.input_tokens,
        output_tokens: result.usage.output_tokens,
        cache_read_tokens: result.usage.cache_read_input_tokens,
        cache_creation_tokens: result.usage.cache_creation_input_tokens,
    };
    let mut ended = match result.failure(Some(max_turns)) {
        Some(error) => Ended::failed(redactor.redact(error), status.code()),
        None => Ended::succeeded(
            redactor.redact(output(result, run, &cost).to_string()),
            status.code(),
        ),
    };
    ended.cost = Some(cost);
    ended
}

/// One user message as the CLI's streaming input reads it: a JSON line.
fn user_message(text: &str) -> String {
    let mut line = serde_json::json!({
        "type": "user",
        "message": {"role": "user", "content": [{"type": "text", "text": text}]},
    })
    .to_string();
    line.push('\n');
    line
}

/// The CLI's argv. The prompt is not in it: it goes through the streaming
/// input (see [`ClaudeCode::input`]), where people's messages follow it.
/// List values are given as one `--flag=a,b` argument. With
/// `tidewright_bin`, the agent gets tidewright's shared-state tools
/// (`tidewright mcp`) and only those MCP servers, and may call them.
fn args(
    spec: &ClaudeCodeSpec,
    settings: &AgentSettings,
    max_turns: u32,
    resume: Option<&str>,
    tidewright_bin: Option<&Path>,
) -> Vec<String> {
    let mut args = vec![
        "-p".to_string(),
        "--input-format".into(),
        "stream-json".into(),
        // Each message echoed back as the session takes it: the input
        // closes once every one written is taken and its turn ended.
        "--replay-user-messages".into(),
        "--output-format".into(),
        "stream-json".into(),
        // stream-json requires it.
        "--verbose".into(),
        // Each model response's usage as it ends, so cost streams in per
        // turn (budgets stop a run mid-way, not after it).
        "--include-partial-messages".into(),
        "--max-turns".into(),
        max_turns.to_string(),
    ];
    if let Some(session) = resume {
        args.extend(["--resume".into(), session.to_string()]);
    }
    if let Some(model) = spec.model.as_ref().or(settings.model.as_ref()) {
        args.extend(["--model".into(), model.clone()]);
    }
    let mut allowed = spec.allowed_tools.clone();
    if let Some(tidewright_bin) = tidewright_bin {
        args.push(format!("--mcp-config={}", agent_config(tidewright_bin)));
        args.push("--strict-mcp-config".into());
        allowed.push(format!("mcp__{}", SERVER_NAME));
    }
    if !allowed.is_empty() {
        args.push(format!("--allowedTools={}", allowed.join(",")));
    }
    if let Some(mode) = &spec.permission_mode {
        args.extend(["--permission-mode".into(), mode.as_str().to_string()]);
    }
    args
}

/// The CLI's environment, built: the basics, its own home, the API key and
/// base URL, and no traffic beyond the API calls.
fn environment(
    attempt: &Attempt,
    settings: &AgentSettings,
    workspace: &Path,
) -> BTreeMap<String, String> {
    let mut env = basic_environment(attempt, workspace);
    env.insert("HOME".into(), settings.home.display().to_string());
    env.insert(
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
        "1".into(),
    );
    env.insert("DISABLE_AUTOUPDATER".into(), "1".into());
    if let Some(key) = &settings.api_key {
        env.insert("ANTHROPIC_API_KEY".into(), key.clone());
    }
    if let Some(token) = &settings.oauth_token {
        env.insert("CLAUDE_CODE_OAUTH_TOKEN".into(), token.clone());
    }
    if let Some(url) = &settings.base_url {
        env.insert("ANTHROPIC_BASE_URL".into(), url.clone());
    }
    env
}

/// The step's output: the run's result, its session and model (from the
/// init line), what this attempt cost, and the session's cost per model (a
/// resumed session's includes its earlier attempts, as the CLI counts it).
fn output(result: &RunResult, run: &ClaudeRun, cost: &Cost) -> serde_json::Value {
    let mut output = result.output();
    output["model"] = serde_json::json!(run.model);
    if result.session_id.is_empty() {
        output["sessionId"] = serde_json::json!(run.session_id);
    }
    let by_model: serde_json::Map<String, serde_json::Value> = result
        .model_usage
        .iter()
        .map(|(name, usage)| {
            (
                name.clone(),
                serde_json::json!({
                    "usd": usage.cost_usd,
                    "inputTokens": usage.input_tokens,
                    "outputTokens": usage.output_tokens,
                    "cacheReadTokens": usage.cache_read_input_tokens,
                    "cacheCreationTokens": usage.cache_creation_input_tokens,
                }),
            )
        })
        .collect();
    output["cost"] = serde_json::json!({
        "usd": cost.usd,
        "inputTokens": cost.input_tokens,
        "outputTokens": cost.output_tokens,
        "cacheReadTokens": cost.cache_read_tokens,
        "cacheCreationTokens": cost.cache_creation_tokens,
        "sessionByModel": by_model,
    });
    output
}
