//! A step's `fallback`: the agent runtimes it may move to when a provider's
//! limit pauses its own.

use crate::error::{Error, invalid};
use crate::spec::StepSpec;

pub(super) fn validate_fallback(i: usize, step: &StepSpec) -> Result<(), Error> {
    let id = &step.id;
    if step.failover.is_some() {
        return Err(invalid(
            format!("steps[{i}].failover"),
            format!(
                "step {id:?}: tidewright writes this when the step moves to a fallback; name `fallback` instead"
            ),
        ));
    }
    if step.fallback.is_empty() {
        return Ok(());
    }
    let field = format!("steps[{i}].fallback");
    let Some(own) = step.agent_capability() else {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: fallback is for agent steps (claudeCode, codex, geminiCli, agent)"
            ),
        ));
    };
    if step.attempts.is_some() {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: a step with attempts runs across runtimes already; name the runtimes in attempts.runtimes"
            ),
        ));
    }
    for (j, runtime) in step.fallback.iter().enumerate() {
        let field = format!("{field}[{j}]");
        super::agents::agent_runtime(field.clone(), id, runtime)?;
        if runtime == own {
            return Err(invalid(
                field,
                format!(
                    "step {id:?}: {runtime:?} is the step's own runtime; a fallback is another provider's"
                ),
            ));
        }
        if step.fallback[..j].contains(runtime) {
            return Err(invalid(
                field,
                format!("step {id:?}: {runtime:?} is named twice"),
            ));
        }
    }
    Ok(())
}
