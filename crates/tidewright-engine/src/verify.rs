//! Verified steps, as the engine sees them: each round the worker ran
//! checks on, numbered after the step's last, and decided (see
//! `tidewright_core::verify`): the step is done, its agent's session is sent
//! back what failed (the step waits again, uncounted), or it fails for
//! good. The rounds are the attempts' records, so a restart goes on at the
//! round it was in.

use std::sync::Arc;

use tidewright_core::verify::{Decision, GaveUp, decide};
use tidewright_core::{EventKind, Verification, VerifySpec};

use crate::engine::Engine;
use crate::handle::StepResult;
use crate::live::LiveStep;

/// Why a verified step whose agent succeeded fails when its worker ran no
/// checks: a safety feature never turns itself off.
pub(crate) const NO_CHECKS_RAN: &str = "verify: the worker ran no checks on the step's work (a worker older than this control plane does not run them)";

/// One round of a verified step: what its checks found, numbered, and what
/// that means.
#[derive(Debug, Clone)]
pub(crate) struct Round {
    pub(crate) found: Verification,
    pub(crate) decision: Decision,
}

impl Round {
    /// Why the attempt did not end the step in success, when it did not.
    pub(crate) fn failure(&self) -> Option<String> {
        match &self.decision {
            Decision::Verified => None,
            Decision::Again { .. } => Some(self.found.summary()),
            Decision::Failed(why, _) => Some(why.clone()),
        }
    }
}

impl Engine {
    /// The round an agent's successful attempt of a verified step ran;
    /// `None` for a step without `verify`.
    pub(crate) fn round_of(
        &self,
        (task_id, index): (&Arc<str>, usize),
        report: &StepResult,
    ) -> Option<Round> {
        let active = self.tasks.get(task_id)?;
        let spec = active.spec.steps[index].verify.as_ref()?;
        let earlier = active.steps[index].verified.as_ref();
        let number = earlier.map_or(1, |e| e.round + 1);
        let Some(found) = &report.verification else {
            return Some(Round {
                found: Verification {
                    round: number,
                    ..Verification::default()
                },
                decision: Decision::Failed(NO_CHECKS_RAN.into(), GaveUp::NoChecks),
            });
        };
        let found = Verification {
            round: number,
            ..found.clone()
        };
        let decision = decide(spec, &found, earlier);
        Some(Round { found, decision })
    }

    /// Keeps the round on the step, for the next round's number and what
    /// its session is told, and says it in the task's events.
    pub(crate) fn keep_round(
        &mut self,
        (task_id, index): (&Arc<str>, usize),
        report: &StepResult,
        round: &Round,
    ) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        remember(&mut active.steps[index], round);
        let (outcome, ended) = match &round.decision {
            Decision::Verified => ("passed", Some(round.found.round)),
            Decision::Again { .. } => ("sent_back", None),
            Decision::Failed(..) => ("failed", Some(round.found.round)),
        };
        self.metrics.verify_round(outcome, &failures(round), ended);
        let kind = EventKind::Verification {
            step: report.attempt.step_id.clone(),
            attempt: report.attempt.attempt,
            round: round.found.round,
            passed: round.decision == Decision::Verified,
            message: match &round.decision {
                Decision::Failed(why, _) => why.clone(),
                _ => round.found.summary(),
            },
        };
        self.round.event(task_id, active, kind);
    }
}

/// What failed a round, by kind, for the metrics.
fn failures(round: &Round) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    if round.found.checks.iter().any(|c| !c.passed) {
        kinds.push("check");
    }
    if !round.found.protected.is_empty() {
        kinds.push("protected");
    }
    if round.found.grade.as_ref().is_some_and(|g| !g.passed()) {
        kinds.push("rubric");
    }
    if let Decision::Failed(_, gave_up) = &round.decision {
        kinds.push(gave_up.as_str());
    }
    kinds
}

/// The step's last round and, when it was sent back, what its session is
/// told.
fn remember(live: &mut LiveStep, round: &Round) {
    live.verified = Some(round.found.clone());
    live.feedback = match &round.decision {
        Decision::Again { feedback } => feedback.clone(),
        _ => String::new(),
    };
}

/// A stored step's last round, and what its session is told when it
/// resumes, as its attempts' records have them (after a restart).
pub(crate) fn restore_round(
    live: &mut LiveStep,
    spec: Option<&VerifySpec>,
    attempts: &[tidewright_store::AttemptRecord],
) {
    let (Some(spec), Some(last)) = (
        spec,
        attempts.iter().rev().find_map(|a| a.verification.as_ref()),
    ) else {
        return;
    };
    live.verified = Some(last.clone());
    live.feedback = if last.passed() {
        String::new()
    } else {
        last.feedback(spec)
    };
}
