//! Why a queued step waits when no connected worker can run it: which of
//! what it needs no worker offers (or that none offers all of it at once),
//! and what would offer it. Said by the step's events, `get task`, `watch`
//! and the console, so a step never waits without a reason.

use crate::queue::Capabilities;
use crate::spec::{CLAUDE_CODE, CODEX, GEMINI_CLI, QWEN_CODE};

/// What makes a worker offer an agent runtime's capability: one row per
/// runtime; any other capability is a worker's `--capability`.
const OFFERED_BY: &[(&str, &str)] = &[
    (
        CLAUDE_CODE,
        "a worker with the Claude Code CLI (npm install -g @anthropic-ai/claude-code) and ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN set offers it (`tidewright up` does by itself)",
    ),
    (
        CODEX,
        "a worker with the Codex CLI (npm install -g @openai/codex) and OPENAI_API_KEY set offers it (`tidewright up` does by itself)",
    ),
    (
        GEMINI_CLI,
        "a worker with the Gemini CLI (npm install -g @google/gemini-cli) and GEMINI_API_KEY set offers it (`tidewright up` does by itself)",
    ),
    (
        QWEN_CODE,
        "a worker with Qwen Code (npm install -g @qwen-code/qwen-code) and OPENAI_API_KEY set offers it (`tidewright up` does by itself)",
    ),
];

/// Why a step needing `needs` cannot run on any of the workers, each
/// offering one of `offered`; `None` when one can.
pub fn reason(needs: &Capabilities, offered: &[Capabilities]) -> Option<String> {
    if offered.iter().any(|o| needs.is_subset(o)) {
        return None;
    }
    let missing: Vec<&str> = needs
        .iter()
        .filter(|n| !offered.iter().any(|o| o.contains(*n)))
        .map(String::as_str)
        .collect();
    if offered.is_empty() && missing.is_empty() {
        return Some(
            "no worker is connected: start one (`tidewright worker`, or `tidewright up`)".into(),
        );
    }
    if missing.is_empty() {
        let all: Vec<&str> = needs.iter().map(String::as_str).collect();
        return Some(format!(
            "no connected worker offers all of {} at once; a worker started with --capability {} would",
            all.join(", "),
            all.join(",")
        ));
    }
    let what_would: Vec<String> = missing
        .iter()
        .map(|capability| {
            OFFERED_BY
                .iter()
                .find(|(c, _)| c == capability)
                .map_or_else(
                    || format!("a worker started with --capability {capability} offers it"),
                    |(_, how)| how.to_string(),
                )
        })
        .collect();
    let (noun, subject) = match missing.len() {
        1 => ("", missing[0].to_string()),
        _ => ("any of ", missing.join(", ")),
    };
    Some(format!(
        "no connected worker offers {noun}{subject}: {}",
        what_would.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::capabilities;

    #[test]
    fn a_step_a_worker_can_run_has_no_reason() {
        let offered = [capabilities(&["shell", "claude-code"])];
        assert_eq!(reason(&capabilities(&["claude-code"]), &offered), None);
        assert_eq!(reason(&capabilities::<&str>(&[]), &offered), None);
    }

    #[test]
    fn the_reason_names_what_no_worker_offers_and_what_would() {
        let offered = [capabilities(&["shell"])];
        assert_eq!(
            reason(&capabilities(&["claude-code"]), &offered).as_deref(),
            Some(
                "no connected worker offers claude-code: a worker with the Claude Code CLI (npm install -g @anthropic-ai/claude-code) and ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN set offers it (`tidewright up` does by itself)"
            )
        );
        assert_eq!(
            reason(&capabilities(&["gpu", "shell"]), &offered).as_deref(),
            Some(
                "no connected worker offers gpu: a worker started with --capability gpu offers it"
            )
        );
        let none = reason(&capabilities(&["gpu"]), &[]).expect("no worker at all");
        assert!(none.starts_with("no connected worker offers gpu"), "{none}");
        assert_eq!(
            reason(&capabilities::<&str>(&[]), &[]).as_deref(),
            Some("no worker is connected: start one (`tidewright worker`, or `tidewright up`)")
        );
    }

    #[test]
    fn capabilities_offered_apart_are_said_to_be_offered_apart() {
        let offered = [capabilities(&["shell"]), capabilities(&["gpu"])];
        assert_eq!(
            reason(&capabilities(&["gpu", "shell"]), &offered).as_deref(),
            Some(
                "no connected worker offers all of gpu, shell at once; a worker started with --capability gpu,shell would"
            )
        );
    }
}
