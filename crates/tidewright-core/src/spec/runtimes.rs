//! The runtimes a step runs on: a shell command, an agent CLI (Claude
//! Code, Codex, Gemini CLI, or any other a worker knows by its capability),
//! nothing (noop), and tidewright's own deliver step; and the capabilities
//! that name the agent runtimes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a step runs: a borrowed view of the one runtime a valid step sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Runtime<'a> {
    Shell(&'a ShellSpec),
    /// Succeeds at once with no output: measures tidewright's own overhead.
    Noop,
    ClaudeCode(&'a ClaudeCodeSpec),
    Codex(&'a CodexSpec),
    Gemini(&'a GeminiSpec),
    /// An agent CLI named by its capability.
    Agent(&'a AgentSpec),
    /// Merges the task's last steps into the task's branch, then pushes it
    /// and opens a pull request as the task's `repo` asks.
    Deliver,
}

/// How long a Claude Code attempt may go without a sign of life before it
/// is declared stalled, unless its step says otherwise: an agent thinks
/// between events, but ten silent minutes is a hang.
pub const DEFAULT_AGENT_STALL_SECONDS: u32 = 600;

/// The capability a worker offers when it can run Claude Code steps; such
/// steps need it whatever else they need.
pub const CLAUDE_CODE: &str = "claude-code";

/// The capability a worker offers when it can run Codex steps.
pub const CODEX: &str = "codex";

/// The capability a worker offers when it can run Gemini CLI steps.
pub const GEMINI_CLI: &str = "gemini-cli";

/// The capability a worker offers when it can run Qwen Code steps.
pub const QWEN_CODE: &str = "qwen-code";

/// The capabilities of agent runtimes: a step needing one is an agent's,
/// which pools cap (`maxConcurrentAgents`) and provider limits pause. An
/// `agent` step names one of them.
pub const AGENT_CAPABILITIES: [&str; 4] = [CLAUDE_CODE, CODEX, GEMINI_CLI, QWEN_CODE];

/// Whether `capability` is an agent runtime's.
pub fn is_agent_capability(capability: &str) -> bool {
    AGENT_CAPABILITIES.contains(&capability)
}

/// How a worker whose steps run without a sandbox says its isolation
/// begins: `none (--sandbox=off)`.
pub const UNSANDBOXED: &str = "none";

/// A Claude Code agent run: `claude -p PROMPT` with these settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaudeCodeSpec {
    /// What the agent is asked to do. The outputs of the steps this one
    /// depends on are in `context/inputs.json` in its workspace.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub prompt: String,
    /// The model; the worker's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Agent turns before the run stops unfinished (and fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1000)))]
    pub max_turns: Option<u32>,
    /// Tools the agent may use without asking, e.g. `Write`, `Bash(git:*)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<PermissionMode>,
}

/// The CLI's `--permission-mode`. `bypassPermissions` is left out on
/// purpose: grant tools with `allowedTools` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum PermissionMode {
    Default,
    AcceptEdits,
    Plan,
    /// A value that came over the wire and is none of the above; validation
    /// refuses it by name. Never read from YAML (serde refuses it there).
    #[serde(skip)]
    Unknown(String),
}

impl PermissionMode {
    /// The CLI's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
            PermissionMode::Unknown(other) => other,
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "default" => PermissionMode::Default,
            "acceptEdits" => PermissionMode::AcceptEdits,
            "plan" => PermissionMode::Plan,
            other => PermissionMode::Unknown(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShellSpec {
    /// argv: the program and its arguments, never a shell string. A line
    /// for a shell is `[sh, -c, LINE]`; a string is refused with that list.
    // A shell is a choice made in the open: the refusal spells the list
    // out rather than running a string through one.
    #[serde(deserialize_with = "argv")]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<String>"))]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Variables the worker fills from its secrets directory: variable
    /// name -> secret name. Only the names are stored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Files the worker places in the step's private home from its
    /// secrets directory: path under the home (`.npmrc`) -> secret name.
    /// Read-only, masked as `secretEnv` is, gone when the step ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_files: BTreeMap<String, String>,
}

/// A command: a list of strings. A command written as one line (as in a
/// Makefile or GitHub Actions' `run:`) is refused with the list that runs
/// that line in a shell, spelled out for it.
fn argv<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Argv;
    impl<'de> serde::de::Visitor<'de> for Argv {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list: the program and its arguments")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut argv = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(arg) = seq.next_element::<String>()? {
                argv.push(arg);
            }
            Ok(argv)
        }
        fn visit_str<E: serde::de::Error>(self, line: &str) -> Result<Self::Value, E> {
            let list = serde_json::to_string(&["sh", "-c", line]).unwrap_or_default();
            Err(E::custom(format!(
                "a list, not a string: the program and its arguments, e.g. [\"make\", \"test\"]; to run this line in a shell, write command: {list}"
            )))
        }
    }
    deserializer.deserialize_any(Argv)
}

/// A Codex agent run: `codex exec PROMPT` with these settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodexSpec {
    /// What the agent is asked to do. The outputs of the steps this one
    /// depends on are in `context/inputs.json` in its workspace.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub prompt: String,
    /// The model; the worker's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What the commands the agent runs may touch, when tidewright does not run
    /// the step in its own sandbox: `workspaceWrite` (the default: the
    /// workspace, no network) or `readOnly`. In tidewright's sandbox, that
    /// sandbox is the boundary and Codex's own is not stacked inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<CodexSandbox>,
}

/// Codex's `--sandbox`. `danger-full-access` is left out on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum CodexSandbox {
    ReadOnly,
    WorkspaceWrite,
    /// A value that came over the wire and is none of the above; validation
    /// refuses it by name. Never read from YAML (serde refuses it there).
    #[serde(skip)]
    Unknown(String),
}

impl CodexSandbox {
    /// The task file's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            CodexSandbox::ReadOnly => "readOnly",
            CodexSandbox::WorkspaceWrite => "workspaceWrite",
            CodexSandbox::Unknown(other) => other,
        }
    }

    /// The CLI's spelling.
    pub fn cli_value(&self) -> &str {
        match self {
            CodexSandbox::ReadOnly => "read-only",
            CodexSandbox::WorkspaceWrite | CodexSandbox::Unknown(_) => "workspace-write",
        }
    }

    /// A wire value: one of the above, or kept as unknown for validation to
    /// refuse; empty is none.
    pub fn from_wire(value: &str) -> Option<CodexSandbox> {
        match value {
            "" => None,
            "readOnly" => Some(CodexSandbox::ReadOnly),
            "workspaceWrite" => Some(CodexSandbox::WorkspaceWrite),
            other => Some(CodexSandbox::Unknown(other.to_string())),
        }
    }
}

/// A Gemini CLI agent run: `gemini -p PROMPT` with these settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeminiSpec {
    /// What the agent is asked to do. The outputs of the steps this one
    /// depends on are in `context/inputs.json` in its workspace.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub prompt: String,
    /// The model; the worker's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// An agent CLI's run, named by the capability of the workers that run it:
/// its prompt, and the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// The agent CLI: one of the agent runtimes' capabilities
    /// (`qwen-code`, `gemini-cli`, ...).
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub cli: String,
    /// What the agent is asked to do. The outputs of the steps this one
    /// depends on are in `context/inputs.json` in its workspace.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub prompt: String,
    /// The model; the worker's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NoopSpec {}

/// The step tidewright adds to deliver a task's work: what to deliver, and how,
/// is the task's `repo`'s to say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DeliverSpec {}

impl Runtime<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Runtime::Shell(_) => "shell",
            Runtime::Noop => "noop",
            Runtime::ClaudeCode(_) => CLAUDE_CODE,
            Runtime::Codex(_) => CODEX,
            Runtime::Gemini(_) => GEMINI_CLI,
            Runtime::Agent(_) => "agent",
            Runtime::Deliver => "deliver",
        }
    }
}
