//! The Qwen Code runtime: `qwen --prompt=PROMPT --output-format stream-json`
//! run headless on OpenAI's Responses API (`--auth-type openai-responses`,
//! the API at `OPENAI_BASE_URL`, the key by environment only), its stream
//! read in `stream`, its tokens priced at the operator's or OpenAI's list
//! prices. Each working directory gets a Qwen home of its own under the
//! worker's (`QWEN_HOME`), holding the settings tidewright writes: no
//! telemetry, updates or background memory agents, and tidewright's MCP
//! server when the step may call it.

pub mod stream;
pub mod transcripts;

use std::collections::BTreeMap;

use tidewright_core::AgentSpec;
use tokio::process::Command;

use super::agent::{AgentRuntime, AgentStep, CliVars, Exit, Launch};
use super::attempt::Ended;
use super::dir_home::{DirHome, McpAccess};
use super::session::TranscriptPlaces;
use crate::mcp::trusted_server;
use crate::runtime::prices::Prices;
use crate::sandbox::Sandbox;
use stream::QwenRun;

/// The model when neither the step nor the worker names one.
pub const DEFAULT_MODEL: &str = "gpt-5";

/// The Qwen Code CLI.
pub struct QwenCode;

/// The CLI's `settings.json`: no telemetry, usage statistics or update
/// checks; none of the background agents that would spend the step's
/// tokens on memories and skills; no retry of a failed model request by
/// the CLI itself (tidewright's retry policy owns retries, and its model
/// proxy tells the CLI's client so). With `mcp` (tidewright's executable
/// and the step's token), tidewright's shared-state MCP server, trusted and
/// given the token itself.
pub fn settings_json(mcp: McpAccess) -> String {
    let mut settings = serde_json::json!({
        "model": {"generationConfig": {"maxRetries": 0}},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
        "general": {"enableAutoUpdate": false},
        "memory": {
            "enableManagedAutoMemory": false,
            "enableManagedAutoDream": false,
            "enableAutoSkill": false,
        },
    });
    if let Some((tidewright_bin, token)) = mcp {
        settings["mcpServers"] = trusted_server(tidewright_bin, token);
    }
    serde_json::to_string_pretty(&settings).unwrap_or_default()
}

/// Each working directory's Qwen home (`QWEN_HOME`).
pub const HOME: DirHome = DirHome {
    name: "qwen",
    settings: Some(("settings.json", settings_json)),
};

impl AgentRuntime for QwenCode {
    type Spec = AgentSpec;
    type Stream = QwenRun;
    const DIR_HOME: Option<DirHome> = Some(HOME);
    const TRANSCRIPTS: TranscriptPlaces = transcripts::PLACES;
    const DEFAULT_MODEL: &'static str = DEFAULT_MODEL;

    fn model(spec: &Self::Spec) -> Option<&String> {
        spec.model.as_ref()
    }

    fn prompt(spec: &Self::Spec) -> &str {
        &spec.prompt
    }

    fn stream(step: &AgentStep<Self>) -> QwenRun {
        QwenRun::new(&step.model, step.prices(Prices::openai))
    }

    /// The `result` line decides: `success`, or the error it names; a run
    /// without one is the runtime's fault. The cost is this run's
    /// responses as they streamed (a resumed session's `result` counts its
    /// earlier runs too).
    fn ended(_step: &AgentStep<Self>, exit: Exit<'_, Self::Stream>) -> Ended {
        let run = exit.stream;
        let result = run.end.as_ref().map(|end| match end.success {
            true => Ok(serde_json::json!({
                "result": end.result,
                "sessionId": run.session_id,
                "model": run.model,
                "numTurns": end.num_turns,
            })),
            false => Err(end.error.as_str()),
        });
        exit.by_result("qwen", result, run.spent())
    }

    fn command(step: &AgentStep<Self>, launch: &Launch) -> (Command, BTreeMap<String, String>) {
        let (_, seen_home) = HOME.prepare(&step.settings.home, launch.attempt, launch.cwd);
        let prompt = launch.prompt(&step.spec.prompt);
        let mut args: Vec<String> = vec![
            "--auth-type".into(),
            "openai-responses".into(),
            "-m".into(),
            step.model.clone(),
            "--output-format".into(),
            "stream-json".into(),
            "--approval-mode".into(),
            match launch.attempt.host.sandbox.as_ref() {
                // Tidewright's sandbox is the boundary: every tool call is approved.
                Sandbox::Bubblewrap { .. } => "yolo".into(),
                // Without it, edits only: a shell command is refused.
                Sandbox::Off => "auto-edit".into(),
            },
        ];
        if let Some(session) = launch.resume {
            args.extend(["--resume".into(), session.to_string()]);
        }
        // One argument: a prompt that starts with a dash is still the
        // prompt (after `--`, the CLI reads none).
        args.push(format!("--prompt={prompt}"));
        let mut command = Command::new(&step.settings.bin);
        command.args(args);
        (command, step.environment(launch, &seen_home, &VARS))
    }
}

/// The variables the CLI reads, as a run sets them.
const VARS: CliVars = CliVars {
    home: "QWEN_HOME",
    key: "OPENAI_API_KEY",
    base_url: Some("OPENAI_BASE_URL"),
    fixed: &[("QWEN_CODE_SUPPRESS_YOLO_WARNING", "1")],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_turn_off_what_would_spend_or_retry() {
        let bare: serde_json::Value =
            serde_json::from_str(&settings_json(None)).expect("settings are JSON");
        assert_eq!(bare["model"]["generationConfig"]["maxRetries"], 0);
        assert_eq!(bare["memory"]["enableManagedAutoMemory"], false);
    }
}
