//! The Codex runtime: the `codex` CLI run headless (`codex exec --json`),
//! its stream read in `stream`, its tokens priced in `prices`. Each
//! working directory gets a Codex home of its own under the worker's
//! (`CODEX_HOME`), where tidewright writes the `config.toml` that names the
//! model API: Codex reads its endpoint from `model_providers` there, not
//! from `OPENAI_BASE_URL`. The key reaches it by environment only.

pub mod stream;
pub mod transcripts;

use std::collections::BTreeMap;
use std::path::Path;

use tidewright_core::CodexSpec;
use tokio::process::Command;

use super::agent::{AgentRuntime, AgentStep, CliVars, Exit, Launch};
use super::attempt::Ended;
use super::dir_home::DirHome;
use super::process::describe_exit;
use super::session::TranscriptPlaces;
use crate::mcp::{SERVER_ENV, SERVER_NAME};
use crate::metrics::Fault;
use crate::runtime::prices::Prices;
use crate::sandbox::Sandbox;
use stream::CodexRun;

/// OpenAI's API, when the worker is given no base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The model when neither the step nor the worker names one: the pinned
/// CLI's own default (0.169.0), named so that tidewright knows what it prices.
pub const DEFAULT_MODEL: &str = "gpt-6.1-sol";

/// Each working directory's Codex home (`CODEX_HOME`); its `config.toml`
/// names the model, so the command writes it.
pub const HOME: DirHome = DirHome {
    name: "codex",
    settings: None,
};

/// The Codex CLI.
pub struct Codex;

/// The API as a run reaches it: the proxy (whose root is the API's, so
/// `/v1` follows it), or the API itself.
fn base_url(step: &AgentStep<Codex>) -> String {
    match step.reach.proxy_url() {
        Some(proxy) => format!("{proxy}/v1"),
        None => step
            .settings
            .base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
    }
}

/// The `config.toml` of a run: the model, and the API at `base_url` as a
/// provider of tidewright's naming, which the CLI reaches with the key in
/// `OPENAI_API_KEY`; with `tidewright_bin`, tidewright's shared-state MCP server; no
/// update checks or analytics (traffic a sandbox refuses anyway). A
/// failed model call is not retried by the CLI (it would retry a 429 five
/// times, for minutes): the run ends at once, and tidewright decides. A 429
/// pauses the pool's codex agents without counting the attempt; another
/// failure fails the attempt, and the step's retry policy resumes its
/// thread.
pub fn config_toml(model: &str, base_url: &str, tidewright_bin: Option<&Path>) -> String {
    let mut config = format!(
        "# Written by tidewright for this run.\n\
         model = {model}\n\
         model_provider = \"tidewright\"\n\
         check_for_update_on_startup = false\n\
         \n\
         [analytics]\n\
         enabled = false\n\
         \n\
         [model_providers.tidewright]\n\
         name = \"OpenAI\"\n\
         base_url = {base_url}\n\
         env_key = \"OPENAI_API_KEY\"\n\
         wire_api = \"responses\"\n\
         request_max_retries = 0\n\
         stream_max_retries = 0\n",
        model = toml_string(model),
        base_url = toml_string(base_url),
    );
    if let Some(tidewright_bin) = tidewright_bin {
        // The CLI starts an MCP server with a few basic variables only.
        let env_vars: Vec<String> = SERVER_ENV.iter().map(|v| toml_string(v)).collect();
        config.push_str(&format!(
            "\n[mcp_servers.{SERVER_NAME}]\ncommand = {}\nargs = [\"mcp\"]\nenv_vars = [{}]\n",
            toml_string(&tidewright_bin.display().to_string()),
            env_vars.join(", ")
        ));
    }
    config
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

impl AgentRuntime for Codex {
    type Spec = CodexSpec;
    type Stream = CodexRun;
    const DIR_HOME: Option<DirHome> = Some(HOME);
    const TRANSCRIPTS: TranscriptPlaces = transcripts::PLACES;
    const DEFAULT_MODEL: &'static str = DEFAULT_MODEL;

    fn model(spec: &Self::Spec) -> Option<&String> {
        spec.model.as_ref()
    }

    fn prompt(spec: &Self::Spec) -> &str {
        &spec.prompt
    }

    fn stream(step: &AgentStep<Self>) -> CodexRun {
        CodexRun::new(&step.model, step.prices(Prices::openai))
    }

    /// A run succeeded when its turn completed and the CLI exited 0; a
    /// failed turn says why; a run that never ended its turn is the
    /// runtime's fault.
    fn ended(_step: &AgentStep<Self>, exit: Exit<'_, Self::Stream>) -> Ended {
        let Exit {
            status,
            stream: run,
            session_usd_before,
            redactor,
        } = exit;
        // This run's own responses, as its rollout recorded them; else the
        // thread's usage, which for a resumed thread counts its earlier
        // attempts' too (as the thread was restored, which need not be what
        // they were charged: so the rollout's come first).
        let mut cost = run
            .own_cost()
            .or_else(|| run.usage.as_ref().map(|usage| run.cost_of(usage)));
        if let (Some(cost), None) = (&mut cost, run.own_cost()) {
            cost.usd = (cost.usd - session_usd_before).max(0.0);
        }
        let mut ended = if let Some(failure) = &run.failure {
            Ended::failed(redactor.redact(failure.clone()), status.code())
        } else if run.usage.is_none() {
            let said = if run.last_error.is_empty() {
                String::new()
            } else {
                format!(": {}", run.last_error)
            };
            Ended {
                exit_code: status.code(),
                ..Ended::fault(
                    Fault::NoResult,
                    redactor.redact(format!(
                        "the codex CLI ended without finishing its turn ({}){said}",
                        describe_exit(status)
                    )),
                )
            }
        } else if !status.success() {
            Ended::failed(
                format!("the codex CLI {}", describe_exit(status)),
                status.code(),
            )
        } else {
            let output = serde_json::json!({
                "result": run.last_message,
                "sessionId": run.session_id,
                "model": run.model,
                "cost": cost.as_ref().map(|c| serde_json::json!({
                    "usd": c.usd,
                    "inputTokens": c.input_tokens,
                    "outputTokens": c.output_tokens,
                    "cacheReadTokens": c.cache_read_tokens,
                })),
            });
            Ended::succeeded(redactor.redact(output.to_string()), status.code())
        };
        ended.cost = cost;
        ended
    }

    fn command(step: &AgentStep<Self>, launch: &Launch) -> (Command, BTreeMap<String, String>) {
        let (host_home, seen_home) = HOME.prepare(&step.settings.home, launch.attempt, launch.cwd);
        let tidewright_bin = launch
            .attempt
            .access
            .as_ref()
            .and_then(|a| a.tidewright_bin.as_deref());
        let config = config_toml(&step.model, &base_url(step), tidewright_bin);
        let _ = std::fs::write(host_home.join("config.toml"), config);

        let prompt = launch.prompt(&step.spec.prompt);
        let mut args: Vec<String> = vec![
            "exec".into(),
            "--json".into(),
            "--skip-git-repo-check".into(),
            "--color".into(),
            "never".into(),
        ];
        match launch.attempt.host.sandbox.as_ref() {
            // Tidewright's sandbox is the boundary: Codex's own (bubblewrap too)
            // is not stacked inside it.
            Sandbox::Bubblewrap { .. } => {
                args.push("--dangerously-bypass-approvals-and-sandbox".into())
            }
            Sandbox::Off => {
                let mode = step
                    .spec
                    .sandbox
                    .as_ref()
                    .map_or("workspace-write", |s| s.cli_value());
                args.extend(["--sandbox".into(), mode.to_string()]);
            }
        }
        if let Some(thread) = launch.resume {
            args.extend(["resume".into(), thread.to_string()]);
        }
        // The prompt last, after `--`: a prompt that starts with a dash is
        // still the prompt.
        args.extend(["--".into(), prompt]);

        let mut command = Command::new(&step.settings.bin);
        command.args(args);
        (command, step.environment(launch, &seen_home, &VARS))
    }
}

/// The variables the CLI reads, as a run sets them.
const VARS: CliVars = CliVars {
    home: "CODEX_HOME",
    key: "OPENAI_API_KEY",
    base_url: None,
    fixed: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::agents::AgentSettings;

    #[test]
    fn the_config_names_the_api_as_tidewrights_provider_and_quotes_what_it_is_given() {
        let settings = AgentSettings {
            base_url: Some("http://127.0.0.1:9/v1".into()),
            ..AgentSettings::default()
        };
        let spec = CodexSpec {
            prompt: "p".into(),
            model: Some("gpt-5\"x".into()),
            sandbox: None,
        };
        let codex = AgentStep::<Codex>::new(&settings, None, &spec);
        let config = config_toml(
            &codex.model,
            &base_url(&codex),
            Some(Path::new("/opt/tidewright/bin/tidewright")),
        );
        for line in [
            "model = \"gpt-5\\\"x\"",
            "model_provider = \"tidewright\"",
            "[model_providers.tidewright]",
            "base_url = \"http://127.0.0.1:9/v1\"",
            "env_key = \"OPENAI_API_KEY\"",
            "request_max_retries = 0",
            "[mcp_servers.tidewright]",
            "command = \"/opt/tidewright/bin/tidewright\"",
            r#"env_vars = ["TIDEWRIGHT_SERVER", "TIDEWRIGHT_TOKEN", "TIDEWRIGHT_CA_FILE", "TIDEWRIGHT_TASK_ID", "TIDEWRIGHT_TENANT"]"#,
        ] {
            assert!(config.lines().any(|l| l == line), "{line:?} in:\n{config}");
        }
        assert_eq!(toml_string("a\\b\nc"), "\"a\\\\b\\u000Ac\"");
    }
}
