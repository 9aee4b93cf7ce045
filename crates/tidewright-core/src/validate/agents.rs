//! The rules of a task's agent steps, per runtime (Claude Code, Codex, the
//! Gemini CLI): the prompt and model every one has, and each runtime's own
//! fields. Each refusal names its field.

use super::Limits;
use crate::error::{Error, invalid};

pub(super) fn validate_claude(
    i: usize,
    id: &str,
    claude: &crate::spec::ClaudeCodeSpec,
    limits: &Limits,
) -> Result<(), Error> {
    let field = |name: &str| format!("steps[{i}].claudeCode.{name}");
    validate_agent_prompt(id, &claude.prompt, claude.model.as_deref(), &field, limits)?;
    if claude.max_turns.is_some_and(|t| !(1..=1000).contains(&t)) {
        return Err(invalid(
            field("maxTurns"),
            format!("step {id:?}: must be 1 to 1000"),
        ));
    }
    if let Some(crate::spec::PermissionMode::Unknown(mode)) = &claude.permission_mode {
        return Err(invalid(
            field("permissionMode"),
            format!("step {id:?}: {mode:?} is not one of default, acceptEdits, plan"),
        ));
    }
    for (n, tool) in claude.allowed_tools.iter().enumerate() {
        // The CLI takes them as one comma-separated `--allowedTools=` value.
        if tool.trim().is_empty() || tool.len() > 256 || tool.contains([',', '\0', '\n']) {
            return Err(invalid(
                format!("steps[{i}].claudeCode.allowedTools[{n}]"),
                format!(
                    "step {id:?}: tool {tool:?} must be 1 to 256 bytes without commas or line breaks"
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn validate_codex(
    i: usize,
    id: &str,
    codex: &crate::spec::CodexSpec,
    limits: &Limits,
) -> Result<(), Error> {
    let field = |name: &str| format!("steps[{i}].codex.{name}");
    validate_agent_prompt(id, &codex.prompt, codex.model.as_deref(), &field, limits)?;
    if let Some(crate::spec::CodexSandbox::Unknown(mode)) = &codex.sandbox {
        return Err(invalid(
            field("sandbox"),
            format!("step {id:?}: {mode:?} is not one of readOnly, workspaceWrite"),
        ));
    }
    Ok(())
}

pub(super) fn validate_gemini(
    i: usize,
    id: &str,
    gemini: &crate::spec::GeminiSpec,
    limits: &Limits,
) -> Result<(), Error> {
    let field = |name: &str| format!("steps[{i}].geminiCli.{name}");
    validate_agent_prompt(id, &gemini.prompt, gemini.model.as_deref(), &field, limits)
}

pub(super) fn validate_agent(
    i: usize,
    id: &str,
    agent: &crate::spec::AgentSpec,
    limits: &Limits,
) -> Result<(), Error> {
    let field = |name: &str| format!("steps[{i}].agent.{name}");
    if !crate::spec::is_agent_capability(&agent.cli) {
        return Err(invalid(
            field("cli"),
            format!(
                "step {id:?}: {:?} is not one of {}",
                agent.cli,
                crate::spec::AGENT_CAPABILITIES.join(", ")
            ),
        ));
    }
    validate_agent_prompt(id, &agent.prompt, agent.model.as_deref(), &field, limits)
}

/// `runtime`, named at `field` by step `id`, must be an agent runtime's
/// capability (an attempt's, a fallback's, a reviewer's).
pub(super) fn agent_runtime(field: String, id: &str, runtime: &str) -> Result<(), Error> {
    if crate::spec::is_agent_capability(runtime) {
        return Ok(());
    }
    Err(invalid(
        field,
        format!(
            "step {id:?}: {runtime:?} is not an agent runtime; one of {}",
            crate::spec::AGENT_CAPABILITIES.join(", ")
        ),
    ))
}

/// What every agent step's prompt and model must be; `field` names a
/// field of the step's runtime.
fn validate_agent_prompt(
    id: &str,
    prompt: &str,
    model: Option<&str>,
    field: &dyn Fn(&str) -> String,
    limits: &Limits,
) -> Result<(), Error> {
    if prompt.trim().is_empty() {
        return Err(invalid(
            field("prompt"),
            format!("step {id:?} needs a prompt"),
        ));
    }
    if prompt.len() > limits.max_prompt_bytes {
        return Err(invalid(
            field("prompt"),
            format!(
                "step {id:?}: the prompt is {} bytes; the limit (max-prompt-bytes) is {}",
                prompt.len(),
                limits.max_prompt_bytes
            ),
        ));
    }
    // The prompt becomes one argv entry of the CLI: no NUL bytes.
    if prompt.contains('\0') {
        return Err(invalid(
            field("prompt"),
            format!("step {id:?}: the prompt holds a NUL byte"),
        ));
    }
    if let Some(model) = model
        && (model.is_empty()
            || model.len() > 128
            || !model.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@' | '[' | ']')
            }))
    {
        return Err(invalid(
            field("model"),
            format!("step {id:?}: model {model:?} must be 1 to 128 letters, digits or -_.:@[]"),
        ));
    }
    Ok(())
}

/// An agent's session id names its transcript file on a worker: a plain
/// id, 1 to 256 letters, digits, '-' or '_'.
pub fn valid_session_id(id: &str) -> bool {
    (1..=256).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
