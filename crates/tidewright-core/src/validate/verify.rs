//! The rules of a step's `verify`: what it checks, how many rounds, which
//! paths it protects, and that the step is one whose session a failure can
//! go back into. Each refusal names its field.

use crate::error::{Error, invalid};
use crate::spec::{Runtime, StepSpec};
use crate::verify::{CheckSpec, MAX_CHECKS, MAX_ROUNDS, VerifySpec, parse_duration};

use super::Limits;

/// Step `i`'s `verify`, when it has one; `has_repo`: its task names a
/// repository, whose commits the checks run on.
pub(super) fn validate_verify(
    i: usize,
    step: &StepSpec,
    has_repo: bool,
    limits: &Limits,
) -> Result<(), Error> {
    let Some(verify) = &step.verify else {
        return Ok(());
    };
    let id = &step.id;
    let field = format!("steps[{i}].verify");
    let kind = match step.runtime() {
        Some(
            Runtime::ClaudeCode(_) | Runtime::Codex(_) | Runtime::Gemini(_) | Runtime::Agent(_),
        ) => None,
        Some(Runtime::Shell(_)) => Some("a shell step"),
        Some(Runtime::Noop) => Some("a noop step"),
        Some(Runtime::Deliver) => Some("a deliver step"),
        None => None,
    };
    if let Some(kind) = kind {
        return Err(invalid(
            field,
            format!(
                "step {id:?} is {kind}, which has no agent session to send a failure back into; verify is for agent steps (claudeCode, codex, geminiCli, agent)"
            ),
        ));
    }
    if !has_repo {
        return Err(invalid(
            field,
            format!(
                "step {id:?}: checks run on the step's committed work, and the task names no repo"
            ),
        ));
    }
    validate_spec(&field, id, verify, limits)
}

fn validate_spec(field: &str, id: &str, verify: &VerifySpec, limits: &Limits) -> Result<(), Error> {
    if verify.checks.is_empty() && verify.rubric.is_empty() {
        return Err(invalid(
            format!("{field}.checks"),
            format!("step {id:?}: verify needs checks to run, or a rubric to grade"),
        ));
    }
    if let Some(rounds) = verify.rounds
        && !(1..=MAX_ROUNDS).contains(&rounds)
    {
        return Err(invalid(
            format!("{field}.rounds"),
            format!("step {id:?}: must be 1 to {MAX_ROUNDS} (the times the agent is sent back)"),
        ));
    }
    validate_checks(field, &format!("step {id:?}"), &verify.checks, limits)?;
    if verify.protect.len() > crate::touches::MAX_GLOBS {
        return Err(invalid(
            format!("{field}.protect"),
            format!("step {id:?}: at most {} globs", crate::touches::MAX_GLOBS),
        ));
    }
    for (p, glob) in verify.protect.iter().enumerate() {
        if let Some(why) = crate::touches::glob_problem(glob) {
            return Err(invalid(
                format!("{field}.protect[{p}]"),
                format!("step {id:?}: {why}"),
            ));
        }
    }
    if !verify.rubric.is_empty() {
        // A rubric nothing grades would be a check that silently passes.
        if limits.grader.is_none() {
            return Err(invalid(
                format!("{field}.rubric"),
                format!(
                    "step {id:?}: no grader is configured on this control plane (--grader-model), so nothing would grade the rubric; use checks"
                ),
            ));
        }
        if verify.rubric.len() > limits.max_prompt_bytes {
            return Err(invalid(
                format!("{field}.rubric"),
                format!(
                    "step {id:?}: is {} bytes; the limit (max-prompt-bytes) is {}",
                    verify.rubric.len(),
                    limits.max_prompt_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// Checks run on committed work (a verified step's, a landing's): at most
/// [`MAX_CHECKS`], each named once, each a program to run within its
/// timeout. `whose` names them in a refusal (`step "fix"`).
pub(super) fn validate_checks(
    field: &str,
    whose: &str,
    checks: &[CheckSpec],
    limits: &Limits,
) -> Result<(), Error> {
    if checks.len() > MAX_CHECKS {
        return Err(invalid(
            format!("{field}.checks"),
            format!("{whose}: at most {MAX_CHECKS} checks"),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (c, check) in checks.iter().enumerate() {
        let at = format!("{field}.checks[{c}]");
        let name_ok = !check.name.is_empty()
            && check.name.len() <= 63
            && check
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                format!("{at}.name"),
                format!(
                    "{whose}: {:?} must be 1 to 63 lowercase letters, digits, '-' and '_'",
                    check.name
                ),
            ));
        }
        if !names.insert(check.name.as_str()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("{whose}: check {:?} is named twice", check.name),
            ));
        }
        super::validate_argv(
            format!("{at}.run"),
            (whose, &check.run),
            || format!("{whose}: check {:?} needs a program to run", check.name),
            limits,
        )?;
        match parse_duration(&check.timeout) {
            Err(why) => {
                return Err(invalid(format!("{at}.timeout"), format!("{whose}: {why}")));
            }
            Ok(Some(d)) if d.is_zero() || d.as_secs() > 86_400 => {
                return Err(invalid(
                    format!("{at}.timeout"),
                    format!("{whose}: must be 1s to 24h"),
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
