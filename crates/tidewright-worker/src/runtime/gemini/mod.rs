//! The Gemini CLI runtime: `gemini -p PROMPT --output-format stream-json`
//! run headless, its stream read in `stream`, its tokens priced at the
//! operator's or Google's list prices. Each working directory gets a
//! Gemini home of its own under the worker's (`GEMINI_CLI_HOME`), holding
//! the settings tidewright writes (the API key as the way in: with
//! `GOOGLE_GEMINI_BASE_URL` set, the CLI would otherwise take a gateway's
//! auth and refuse). The key reaches it by environment only.

pub mod stream;
pub mod transcripts;

use std::collections::BTreeMap;

use tidewright_core::GeminiSpec;
use tokio::process::Command;

use super::agent::{AgentRuntime, AgentStep, CliVars, Exit, Launch};
use super::attempt::Ended;
use super::dir_home::{DirHome, McpAccess};
use super::session::TranscriptPlaces;
use crate::mcp::trusted_server;
use crate::metrics::Fault;
use crate::runtime::prices::Prices;
use crate::sandbox::Sandbox;
use stream::GeminiRun;

/// The model when neither the step nor the worker names one: named, so
/// the CLI does not first ask a router model which to use.
pub const DEFAULT_MODEL: &str = "gemini-2.5-pro";

/// The Gemini CLI CLI.
pub struct Gemini;

/// The CLI's `settings.json`: the API key as the way in; no telemetry, no
/// update checks; one attempt per model request, since tidewright's retry policy
/// owns retries (the CLI would retry a 429 or 500 ten times, minutes in all,
/// while the step looks merely slow). With `mcp` (tidewright's executable and
/// the step's token), tidewright's shared-state MCP server, trusted (its calls
/// need no approval) and given the token itself: the CLI keeps a variable
/// whose value looks like a JWT (a step token does) from every MCP server,
/// whatever its settings allow.
pub fn settings_json(mcp: McpAccess) -> String {
    let mut settings = serde_json::json!({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "telemetry": {"enabled": false},
        "privacy": {"usageStatisticsEnabled": false},
        "general": {"disableAutoUpdate": true, "disableUpdateNag": true, "maxAttempts": 1},
    });
    if let Some((tidewright_bin, token)) = mcp {
        settings["mcpServers"] = trusted_server(tidewright_bin, token);
    }
    serde_json::to_string_pretty(&settings).unwrap_or_default()
}

/// Each working directory's Gemini home (`GEMINI_CLI_HOME`).
pub const HOME: DirHome = DirHome {
    name: "gemini",
    settings: Some((".gemini/settings.json", settings_json)),
};

impl AgentRuntime for Gemini {
    type Spec = GeminiSpec;
    type Stream = GeminiRun;
    const DIR_HOME: Option<DirHome> = Some(HOME);
    const TRANSCRIPTS: TranscriptPlaces = transcripts::PLACES;
    const DEFAULT_MODEL: &'static str = DEFAULT_MODEL;

    fn model(spec: &Self::Spec) -> Option<&String> {
        spec.model.as_ref()
    }

    fn prompt(spec: &Self::Spec) -> &str {
        &spec.prompt
    }

    fn stream(step: &AgentStep<Self>) -> GeminiRun {
        GeminiRun::new(&step.model, step.prices(Prices::gemini))
    }

    /// The `result` line decides: `success`, or the error it names; a run
    /// without one is the runtime's fault. Its tokens are this process's
    /// (a resumed session's earlier runs are not in them), so they are the
    /// attempt's cost as they stand.
    fn ended(_step: &AgentStep<Self>, exit: Exit<'_, Self::Stream>) -> Ended {
        let run = exit.stream;
        // Its turn ends as a success when it stops a loop: a stall, as
        // tidewright's own repeat limit says one.
        if run.looped {
            return Ended {
                exit_code: exit.status.code(),
                cost: run.end.as_ref().map(|end| run.cost_of(&end.usage)),
                ..Ended::fault(
                    Fault::Stalled,
                    "stalled: the Gemini CLI detected a loop and stopped its turn",
                )
            };
        }
        let Some(end) = &run.end else {
            return exit.by_result("gemini", None, Default::default());
        };
        // A turn the CLI cut short on an error it still ends as a success.
        let stopped = run
            .stopped
            .as_ref()
            .map(|why| format!("the Gemini CLI stopped its turn: {why}"));
        let result = match (&stopped, end.success && exit.status.success()) {
            (Some(why), _) => Err(why.as_str()),
            (None, true) => Ok(serde_json::json!({
                "result": run.answer,
                "sessionId": run.session_id,
                "model": run.model,
            })),
            (None, false) => Err(end.error.as_str()),
        };
        exit.by_result("gemini", Some(result), run.cost_of(&end.usage))
    }

    fn command(step: &AgentStep<Self>, launch: &Launch) -> (Command, BTreeMap<String, String>) {
        let (_, seen_home) = HOME.prepare(&step.settings.home, launch.attempt, launch.cwd);
        let prompt = launch.prompt(&step.spec.prompt);
        let mut args: Vec<String> = vec![
            "-p".into(),
            prompt,
            "--output-format".into(),
            "stream-json".into(),
            "-m".into(),
            step.model.clone(),
            "--skip-trust".into(),
        ];
        if let Some(session) = launch.resume {
            args.extend(["--resume".into(), session.to_string()]);
        }
        args.push(match launch.attempt.host.sandbox.as_ref() {
            // Tidewright's sandbox is the boundary: every tool call is approved.
            Sandbox::Bubblewrap { .. } => "--yolo".into(),
            // Without it, edits only: a shell command is refused.
            Sandbox::Off => "--approval-mode=auto_edit".into(),
        });
        let mut command = Command::new(&step.settings.bin);
        command.args(args);
        (command, step.environment(launch, &seen_home, &VARS))
    }
}

/// The variables the CLI reads, as a run sets them.
const VARS: CliVars = CliVars {
    home: "GEMINI_CLI_HOME",
    key: "GEMINI_API_KEY",
    base_url: Some("GOOGLE_GEMINI_BASE_URL"),
    fixed: &[("GEMINI_CLI_NO_RELAUNCH", "true")],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::agents::AgentSettings;
    use crate::secrets::Redactor;
    use std::os::unix::process::ExitStatusExt;
    use stream::{LOOP_DETECTED, RunEnd};

    /// A run the CLI ends with a `result` of success, exit 0, after it
    /// stopped its turn on a loop or on an error, ends as that: stalled, or
    /// failed saying why; a run it did not stop succeeds.
    #[test]
    fn a_turn_the_cli_stopped_is_no_success() {
        let settings = AgentSettings::default();
        let spec = GeminiSpec {
            prompt: "p".into(),
            model: None,
        };
        let step = AgentStep::<Gemini>::new(&settings, None, &spec);
        let redactor = Redactor::default();
        let ended_as = |run: &GeminiRun| {
            let exit = Exit {
                status: std::process::ExitStatus::from_raw(0),
                stream: run,
                session_usd_before: 0.0,
                redactor: &redactor,
            };
            Gemini::ended(&step, exit)
        };
        let mut run = GeminiRun::new("gemini-2.5-pro", Prices::gemini("gemini-2.5-pro"));
        run.end = Some(RunEnd {
            success: true,
            error: String::new(),
            usage: Default::default(),
        });
        let ended = ended_as(&run);
        assert!(!ended.is_failure(), "{:?}", ended.outcome);
        run.stopped = Some("Maximum session turns exceeded".into());
        let ended = ended_as(&run);
        assert_eq!(
            ended.outcome,
            tidewright_core::Outcome::Failed(
                "the Gemini CLI stopped its turn: Maximum session turns exceeded".into()
            )
        );
        run.looped = true;
        let ended = ended_as(&run);
        assert_eq!(ended.fault, Some(Fault::Stalled), "{LOOP_DETECTED}");
    }

    #[test]
    fn the_settings_allow_one_attempt_and_the_api_key() {
        let bare: serde_json::Value =
            serde_json::from_str(&settings_json(None)).expect("settings are JSON");
        assert_eq!(bare["general"]["maxAttempts"], 1);
        assert_eq!(bare["security"]["auth"]["selectedType"], "gemini-api-key");
    }
}
