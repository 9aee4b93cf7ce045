//! Reviews, as the engine sees them (see [`tidewright_core::review`]): the
//! reviewing step is handed the range of the reviewed step's work, and a
//! verdict that requests changes sends the reviewed step back into its
//! agent's session with the comments, on its own work, within the review's
//! rounds. Those spent, a `mustPass` review fails; another lets the task
//! go on, the verdict on record.

use tidewright_core::review::Verdict;
use tidewright_core::{Change, Outcome, StepState};

use crate::handle::{AttemptEnd, StepResult};
use crate::live::{Active, SentBack};

/// What a review's requested changes came to.
pub(crate) enum Sent {
    /// The reviewed step runs again, told the comments.
    Back(Vec<Change>),
    /// No more rounds: the reviewing step ends so, and says why.
    Ended(Outcome, String),
}

/// The reviewing step's inputs: the step it reviews, what that was
/// asked, and the range of its work (the reviewer's checkout is at
/// `head`).
pub(crate) fn inputs(active: &Active, index: usize) -> String {
    let Some(of) = &active.spec.steps[index].review_of else {
        return "{}".into();
    };
    let Some(&author) = active.index.get(&of.step) else {
        return "{}".into();
    };
    let work = active.steps[author].work.as_ref();
    let base = active.steps[index]
        .reviewed_from
        .as_deref()
        .or(work.map(|w| w.base_commit.as_str()))
        .unwrap_or_default();
    serde_json::json!({
        "step": of.step,
        "asked": active.spec.steps[author].prompt(),
        "base": base,
        "head": work.map(|w| w.head_commit.as_str()).unwrap_or_default(),
        "round": active.steps[index].reviews + 1,
    })
    .to_string()
}

/// The verdict of `report` when it is a reviewer's requesting changes (its
/// worker ends such an attempt failed, the verdict its output).
pub(crate) fn requested_changes(
    active: &Active,
    index: usize,
    report: &StepResult,
) -> Option<Verdict> {
    if active.spec.steps[index].review_of.is_none() || report.outcome != AttemptEnd::Failed {
        return None;
    }
    Verdict::read(&report.output_json)
        .ok()
        .filter(|v| !v.approved())
}

/// Sends the reviewed step back with `verdict`'s comments, or, the
/// review's rounds spent, ends the reviewing step: failed when it must
/// pass, else succeeded with the verdict on record.
pub(crate) fn send_back(
    active: &mut Active,
    index: usize,
    (report, verdict): (&StepResult, Option<Verdict>),
) -> Sent {
    let step = &active.spec.steps[index];
    let (Some(of), Some(verdict)) = (step.review_of.clone(), verdict) else {
        return Sent::Ended(Outcome::Failed(report.error.clone()), report.error.clone());
    };
    let reviewer = step.agent_capability().unwrap_or_default().to_string();
    let Some(&author) = active.index.get(&of.step) else {
        return Sent::Ended(Outcome::Failed(report.error.clone()), report.error.clone());
    };
    let sent = active.steps[index].reviews;
    if sent >= of.rounds {
        let said = format!(
            "the reviewer ({reviewer}) did not approve after {sent} round(s) of changes: {}",
            verdict.line()
        );
        return if of.must_pass {
            Sent::Ended(Outcome::Failed(said.clone()), said)
        } else {
            Sent::Ended(
                Outcome::Succeeded,
                format!("{said}; the review need not pass (mustPass is off), so the task goes on"),
            )
        };
    }
    let round = sent + 1;
    let message = format!(
        "changes requested: sent back to step {} (review round {round} of {})",
        of.step, of.rounds
    );
    match active.run.rerun(author, index, &message) {
        Ok(changes) => {
            let began = active.steps[author]
                .work
                .as_ref()
                .map(|w| w.base_commit.clone());
            let live = &mut active.steps[index];
            live.reviews = round;
            if live.reviewed_from.is_none() {
                live.reviewed_from = began;
            }
            let live = &mut active.steps[author];
            live.feedback = verdict.told(&reviewer, (round, of.rounds));
            let from = live.head.take().unwrap_or_default();
            live.sent_back = Some(SentBack {
                base: String::new(),
                from,
            });
            Sent::Back(changes)
        }
        Err(e) => {
            let why = format!("{}; step {:?} cannot run again: {e}", report.error, of.step);
            Sent::Ended(Outcome::Failed(why.clone()), why)
        }
    }
}

/// A reviewing step read back from the store: the times it sent its step
/// back, from its attempts' records.
pub(crate) fn restore_reviews(active: &mut Active, record: &tidewright_store::TaskRecord) {
    for (index, step) in record.steps.iter().enumerate() {
        if active.spec.steps[index].review_of.is_none() {
            continue;
        }
        active.steps[index].reviews = step
            .attempts
            .iter()
            .filter(|a| a.state == StepState::Failed && a.error.starts_with(CHANGES_REQUESTED))
            .count() as u32;
    }
}

/// How a reviewer's attempt that requested changes begins its reason (its
/// worker's words: `Verdict::line`).
const CHANGES_REQUESTED: &str = "changes requested";
