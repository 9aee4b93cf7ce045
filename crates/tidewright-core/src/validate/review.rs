//! A step's `review`: by which agent runtime, how many rounds.

use crate::error::{Error, invalid};
use crate::review::{MAX_ROUNDS, SUFFIX};
use crate::spec::StepSpec;
use crate::validate::Limits;

pub(super) fn validate_review(
    i: usize,
    step: &StepSpec,
    has_repo: bool,
    limits: &Limits,
) -> Result<(), Error> {
    let id = &step.id;
    if step.review_of.is_some() {
        return Err(invalid(
            format!("steps[{i}].reviewOf"),
            format!(
                "step {id:?}: tidewright sets this on the step that reviews another; ask for `review` instead"
            ),
        ));
    }
    let Some(review) = &step.review else {
        return Ok(());
    };
    let field = format!("steps[{i}].review");
    if step.agent_capability().is_none() {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: a review is of an agent step's work (claudeCode, codex, geminiCli, agent)"
            ),
        ));
    }
    if !has_repo {
        return Err(invalid(
            field,
            format!("step {id:?}: a review reads the step's diff, so the task needs a repo"),
        ));
    }
    if step.attempts.is_some() {
        return Err(invalid(
            field,
            format!("step {id:?}: review the step after the one with attempts, not its attempts"),
        ));
    }
    super::agents::agent_runtime(format!("{field}.runtime"), id, &review.runtime)?;
    if review
        .rounds
        .is_some_and(|r| !(1..=MAX_ROUNDS).contains(&r))
    {
        return Err(invalid(
            format!("{field}.rounds"),
            format!("step {id:?}: must be 1 to {MAX_ROUNDS}"),
        ));
    }
    if id.len() + SUFFIX.len() > limits.max_step_id_bytes {
        return Err(invalid(
            format!("steps[{i}].id"),
            format!(
                "step {id:?}: its reviewer's id, {id}{SUFFIX}, would pass the limit of {} characters",
                limits.max_step_id_bytes
            ),
        ));
    }
    Ok(())
}
