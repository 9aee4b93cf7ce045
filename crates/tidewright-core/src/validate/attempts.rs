//! A step's `attempts`: how many, on which runtimes, chosen how.

use crate::attempts::{MAX_ATTEMPTS, Select};
use crate::error::{Error, invalid};
use crate::spec::StepSpec;
use crate::validate::Limits;

/// Room an attempt's id needs past its step's: `.10`.
const ID_ROOM: usize = 3;

pub(super) fn validate_attempts(
    i: usize,
    step: &StepSpec,
    has_repo: bool,
    limits: &Limits,
) -> Result<(), Error> {
    let id = &step.id;
    if step.select.is_some() {
        return Err(invalid(
            format!("steps[{i}].select"),
            format!(
                "step {id:?}: tidewright sets this on the step that chooses among attempts; ask for `attempts` instead"
            ),
        ));
    }
    let Some(attempts) = &step.attempts else {
        return Ok(());
    };
    let field = format!("steps[{i}].attempts");
    if step.agent_capability().is_none() {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: attempts are for agent steps (claudeCode, codex, geminiCli, agent)"
            ),
        ));
    }
    if !(1..=MAX_ATTEMPTS).contains(&attempts.n) {
        return Err(invalid(
            format!("{field}.n"),
            format!("step {id:?}: must be 1 to {MAX_ATTEMPTS}"),
        ));
    }
    if attempts.runtimes.len() > attempts.n as usize {
        return Err(invalid(
            format!("{field}.runtimes"),
            format!(
                "step {id:?}: names {} runtimes for {} attempts; each runtime runs at least one",
                attempts.runtimes.len(),
                attempts.n
            ),
        ));
    }
    for (r, runtime) in attempts.runtimes.iter().enumerate() {
        super::agents::agent_runtime(format!("{field}.runtimes[{r}]"), id, runtime)?;
    }
    if let Select::Unknown(other) = &attempts.select {
        return Err(invalid(
            format!("{field}.select"),
            format!(
                "step {id:?}: {other:?} is not a way to choose; one of checks-then-judge, checks, judge, first-passing"
            ),
        ));
    }
    if attempts.select.needs_checks() && step.verify.is_none() {
        return Err(invalid(
            format!("{field}.select"),
            format!(
                "step {id:?}: {} chooses by the step's checks, and it has no verify; give it verify, or choose by judge",
                attempts.select.as_str()
            ),
        ));
    }
    if attempts.select.judged() && limits.grader.is_none() {
        // A judge nothing runs would be a choice made by nobody.
        return Err(invalid(
            format!("{field}.select"),
            format!(
                "step {id:?}: {} has a judge compare the attempts that pass, and no grader is configured on this control plane (--grader-model); choose by checks",
                attempts.select.as_str()
            ),
        ));
    }
    if !has_repo {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: each attempt works on a branch of its own, and the task names no repo"
            ),
        ));
    }
    if step.approval.is_some() {
        return Err(invalid(
            format!("steps[{i}].approval"),
            format!(
                "step {id:?}: a step with attempts is not gated (each attempt would ask); gate a step before it"
            ),
        ));
    }
    if id.len() + ID_ROOM > limits.max_step_id_bytes {
        return Err(invalid(
            format!("steps[{i}].id"),
            format!(
                "step {id:?}: a step with attempts has an id of at most {} bytes (its attempts add `.N`)",
                limits.max_step_id_bytes.saturating_sub(ID_ROOM)
            ),
        ));
    }
    Ok(())
}
