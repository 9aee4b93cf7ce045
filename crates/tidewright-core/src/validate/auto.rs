//! A step's `runtimes: auto`: an agent step on a repository, whose
//! attempts (if any) do not name their own runtimes.

use crate::auto::Runtimes;
use crate::error::{Error, invalid};
use crate::spec::StepSpec;

pub(super) fn validate_runtimes(i: usize, step: &StepSpec, has_repo: bool) -> Result<(), Error> {
    let id = &step.id;
    if step.chosen.is_some() {
        return Err(invalid(
            format!("steps[{i}].chosen"),
            format!(
                "step {id:?}: tidewright writes this when `runtimes: auto` chooses; ask for `runtimes: auto` instead"
            ),
        ));
    }
    let Some(runtimes) = &step.runtimes else {
        return Ok(());
    };
    let field = format!("steps[{i}].runtimes");
    if let Runtimes::Unknown(other) = runtimes {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: {other:?} is not a choice of runtimes; the one there is is `auto`"
            ),
        ));
    }
    if step.agent_capability().is_none() {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: `runtimes: auto` chooses an agent step's runtime (claudeCode, codex, geminiCli, agent); the one it names runs while nothing is known"
            ),
        ));
    }
    if !has_repo {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: outcomes are kept per repository, so `runtimes: auto` needs the task's repo"
            ),
        ));
    }
    if step
        .attempts
        .as_ref()
        .is_some_and(|a| !a.runtimes.is_empty())
    {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: attempts.runtimes names the attempts' runtimes; with `runtimes: auto` every attempt runs on the one chosen, so leave attempts.runtimes out"
            ),
        ));
    }
    Ok(())
}
