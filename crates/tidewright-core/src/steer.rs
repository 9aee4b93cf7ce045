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
    /// Once the current turn ends, as the next turn's prompt (Claude
    /// Code's input, still open).
    AfterTurn,
    /// At the turn boundary of a CLI that reads no input while it runs
    /// (Codex, Gemini CLI): the turn is interrupted, its session kept, and
    /// resumed with the message as its next prompt.
    Interrupt,
    /// Once the turn of such a CLI ends: its session resumed with the
    /// message, rather than the step ending there.
    NextTurn,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::MidTurn => "mid-turn",
            Delivery::AfterTurn => "after the turn",
            Delivery::Interrupt => "at the turn boundary: interrupted, then resumed with it",
            Delivery::NextTurn => "after the turn: its session resumed with it",
        }
    }
}

/// How the message of a [`Delivery::Interrupt`] or
/// [`Delivery::NextTurn`] starts, as the resumed session is told it (a
/// worker's log names a resume by it).
pub const TOLD_PREFIX: &str = "A message from ";

/// What a resumed session is told for a message `from` sent.
pub fn told(from: &str, message: &str, delivery: Delivery) -> String {
    let when = match delivery {
        Delivery::Interrupt => "who stopped your turn to send it",
        _ => "sent while you worked",
    };
    format!(
        "{TOLD_PREFIX}{from}, {when}:\n\n{message}\n\nTake it into account and go on with the task from where you are."
    )
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
/// only an agent's session takes messages. Claude Code reads its input
/// while it runs; Codex and Gemini CLI take it at the turn boundary,
/// resumed with it; another agent CLI takes none.
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
    match (runtime, follow_up) {
        (CLAUDE_CODE, false) => Ok(Delivery::MidTurn),
        (CLAUDE_CODE, true) => Ok(Delivery::AfterTurn),
        (crate::spec::CODEX | crate::spec::GEMINI_CLI, false) => Ok(Delivery::Interrupt),
        (crate::spec::CODEX | crate::spec::GEMINI_CLI, true) => Ok(Delivery::NextTurn),
        _ => Err(format!(
            "step {} runs {runtime}, which neither reads input while it runs nor resumes with a message: {CLAUDE_CODE}, {} and {} steps take messages",
            step.id,
            crate::spec::CODEX,
            crate::spec::GEMINI_CLI
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ClaudeCodeSpec, CodexSpec};

    #[test]
    fn an_agents_session_takes_a_message_mid_turn_or_at_the_turn_boundary() {
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
        assert_eq!(delivery(&codex, false), Ok(Delivery::Interrupt));
        assert_eq!(delivery(&codex, true), Ok(Delivery::NextTurn));
        let mut qwen = StepSpec::noop("port");
        qwen.noop = None;
        qwen.agent = Some(crate::spec::AgentSpec {
            cli: "qwen-code".into(),
            prompt: "port it".into(),
            ..crate::spec::AgentSpec::default()
        });
        let refused = delivery(&qwen, false).expect_err("qwen");
        assert!(refused.contains("runs qwen-code"), "{refused}");
        let told = told("dana", "Use v2.", Delivery::Interrupt);
        assert!(
            told.starts_with(TOLD_PREFIX) && told.contains("Use v2."),
            "{told}"
        );
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
