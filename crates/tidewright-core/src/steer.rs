//! Steering a running agent: a person's message sent into its session
//! (`tidewright steer`). Which steps take one, how it reaches the agent,
//! and what a message may be.

use crate::error::Error;
use crate::spec::{CLAUDE_CODE, Runtime, StepSpec};

/// The longest message, in characters (as a JSON schema counts them): a
/// paragraph of direction, not a new prompt.
pub const MAX_MESSAGE_CHARS: usize = 16 * 1024;

/// How a message reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Into the turn under way: Claude Code's streaming input takes it as
    /// the next user message the model sees.
    MidTurn,
    /// Once the current turn ends, as the next turn's prompt.
    AfterTurn,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::MidTurn => "mid-turn",
            Delivery::AfterTurn => "after the turn",
        }
    }
}

/// A message is text: not blank, no NUL, at most [`MAX_MESSAGE_CHARS`].
pub fn validate_message(message: &str) -> Result<(), Error> {
    let invalid = |why: String| Error::Invalid {
        field: "message".into(),
        message: why,
    };
    if message.trim().is_empty() {
        return Err(invalid("is blank".into()));
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(invalid(format!(
            "is {chars} characters; at most {MAX_MESSAGE_CHARS}"
        )));
    }
    if message.contains('\0') {
        return Err(invalid("holds a NUL byte".into()));
    }
    Ok(())
}

/// How a message reaches step `step`'s running agent, or why it cannot:
/// only an agent's session takes messages, and of the agent CLIs only
/// Claude Code reads its input while it runs.
pub fn delivery(step: &StepSpec, follow_up: bool) -> Result<Delivery, String> {
    let runtime = match step.runtime() {
        Some(Runtime::ClaudeCode(_)) => CLAUDE_CODE,
        Some(Runtime::Agent(agent)) => agent.cli.as_str(),
        Some(Runtime::Codex(_)) => crate::spec::CODEX,
        Some(Runtime::Gemini(_)) => crate::spec::GEMINI_CLI,
        _ => {
            return Err(format!(
                "step {} is not an agent's: only an agent step's session takes messages",
                step.id
            ));
        }
    };
    if runtime != CLAUDE_CODE {
        return Err(format!(
            "step {} runs {runtime}, which reads no input while it runs: only {CLAUDE_CODE} steps take messages",
            step.id
        ));
    }
    Ok(if follow_up {
        Delivery::AfterTurn
    } else {
        Delivery::MidTurn
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ClaudeCodeSpec, CodexSpec};

    #[test]
    fn only_a_claude_code_steps_session_takes_a_message() {
        let mut claude = StepSpec::noop("fix");
        claude.noop = None;
        claude.claude_code = Some(ClaudeCodeSpec {
            prompt: "fix it".into(),
            ..ClaudeCodeSpec::default()
        });
        assert_eq!(delivery(&claude, false), Ok(Delivery::MidTurn));
        assert_eq!(delivery(&claude, true), Ok(Delivery::AfterTurn));
        let shell = StepSpec::shell("build", &["make"]);
        let refused = delivery(&shell, false).expect_err("a shell step");
        assert!(
            refused.contains("step build is not an agent's"),
            "{refused}"
        );
        let mut codex = StepSpec::noop("port");
        codex.noop = None;
        codex.codex = Some(CodexSpec {
            prompt: "port it".into(),
            ..CodexSpec::default()
        });
        let refused = delivery(&codex, false).expect_err("codex");
        assert!(refused.contains("runs codex"), "{refused}");
    }

    #[test]
    fn a_message_is_text_of_at_most_16384_characters_naming_the_field() {
        assert!(validate_message("Use the v2 API instead.").is_ok());
        assert!(validate_message(&"é".repeat(MAX_MESSAGE_CHARS)).is_ok());
        for bad in ["", "  \n", "a\0b", &"x".repeat(MAX_MESSAGE_CHARS + 1)] {
            match validate_message(bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "message"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
