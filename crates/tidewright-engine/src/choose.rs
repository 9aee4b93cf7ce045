//! Steps with attempts, as the engine sees them: when one attempt passes
//! and the rest stop early, those still running are told to stop; when
//! every attempt has ended, the step that chooses takes the winner's work
//! and output as its own, so what depends on the step continues from it.
//! Checks alone choose here, at once; when a judge is to compare more than
//! one that passed, a worker offering `grader` does (see `results`).

use std::sync::Arc;

use tidewright_core::attempts::judge::{Candidate, Candidates, Judged};
use tidewright_core::attempts::{Finished, best};
use tidewright_core::calendar::now_micros;
use tidewright_core::{EventKind, StepState, TaskState};
use tidewright_store::StepWrite;

use crate::engine::Engine;
use crate::handle::{AttemptEnd, StepResult};
use crate::live::Active;

impl Engine {
    /// Chooses for each step of the task that chooses among attempts and
    /// is ready to, unless a judge is to (it waits for a worker then).
    pub(super) fn choose_ready(&mut self, task_id: &Arc<str>) {
        let Some(active) = self.tasks.get(task_id) else {
            return;
        };
        if !active.chooses || active.run.state() == TaskState::Paused {
            return;
        }
        let ready: Vec<usize> = active
            .run
            .queued()
            .filter(|&i| active.spec.steps[i].select.is_some())
            .collect();
        for index in ready {
            self.choose(task_id, index);
        }
    }

    fn choose(&mut self, task_id: &Arc<str>, index: usize) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let Some(select) = active.spec.steps[index].select.clone() else {
            return;
        };
        let finished = finished(active, index);
        let passed = finished.iter().filter(|f| f.passed).count();
        if select.select.judged() && passed > 1 {
            return;
        }
        let (attempt, mut changes) = match active.run.start(index) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(task = %task_id, index, error = %e, "could not choose among attempts");
                return;
            }
        };
        let now = now_micros();
        let attempts = active.run.attempts_of(index).to_vec();
        let mut write = StepWrite {
            started_at: Some(now),
            finished_at: Some(now),
            ..crate::live::started(attempt, String::new(), now)
        };
        let ended = match best(&finished) {
            Some(k) => {
                let winner = attempts[k];
                let why = if passed == 1 {
                    "the only attempt that passed".to_string()
                } else {
                    format!(
                        "of the {passed} that passed, sent back the fewest times, then the cheapest"
                    )
                };
                let (said, event) = chose(active, (index, attempt), winner, &why);
                take_winner(active, (index, winner), &mut write, &said);
                self.round.event(task_id, active, event);
                active
                    .run
                    .finish(index, tidewright_core::Outcome::Succeeded)
            }
            None => {
                let why = none_passed(active, &attempts);
                active.run.fail_for_good(index, &why)
            }
        };
        match ended {
            Ok(more) => changes.extend(more),
            Err(e) => {
                tracing::error!(task = %task_id, index, error = %e, "could not end the choice");
            }
        }
        self.apply(task_id, changes, Some((index, write)));
    }
}

impl Engine {
    /// A judge's answer for a step that chooses: the step's result becomes
    /// the winner's output and work, and the choice and its reasons are
    /// said; an answer naming no attempt that passed fails the attempt.
    pub(super) fn take_judged(
        &mut self,
        (task_id, index): (&Arc<str>, usize),
        report: &mut StepResult,
    ) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        if active.spec.steps[index].select.is_none() || report.outcome != AttemptEnd::Succeeded {
            return;
        }
        let judged: Option<Judged> = serde_json::from_str(&report.output_json).ok();
        let winner = judged.as_ref().and_then(|j| {
            active.run.attempts_of(index).iter().copied().find(|&a| {
                active.spec.steps[a].id == j.chosen
                    && active.run.step(a).state == StepState::Succeeded
            })
        });
        let (Some(judged), Some(winner)) = (judged, winner) else {
            report.outcome = AttemptEnd::Failed;
            report.error = "the judge's answer names no attempt that passed".into();
            return;
        };
        let why = format!(
            "the judge ({}) found it the better in {} of {} matches: {}",
            judged.model,
            judged
                .matches
                .iter()
                .filter(|m| m.winner == judged.chosen)
                .count(),
            judged.matches.len(),
            judged.reasons().join(" ")
        );
        report.output_json = active.steps[winner].output.clone().unwrap_or_default();
        report.work.clone_from(&active.steps[winner].work);
        let attempt = active.run.step(index).attempt;
        let (said, event) = chose(active, (index, attempt), winner, &why);
        self.round
            .writes
            .push(tidewright_store::Write::Step(StepWrite {
                task_id: task_id.to_string(),
                step_id: active.spec.steps[index].id.clone(),
                progress: Some((1.0, said)),
                ..StepWrite::default()
            }));
        self.round.event(task_id, active, event);
        // Every match's reasons stay with the task, in its log.
        for m in &judged.matches {
            let line = format!(
                "judge: {} over {}: {}",
                m.winner,
                if m.winner == m.first {
                    &m.second
                } else {
                    &m.first
                },
                m.reasons.join(" ")
            );
            self.round.event(
                task_id,
                active,
                EventKind::Log {
                    step: active.spec.steps[index].id.clone(),
                    attempt,
                    stream: tidewright_core::LogStream::Stdout,
                    line,
                },
            );
        }
    }
}

/// The attempts a judge compares, for the worker that judges: those that
/// passed, with where their work started and ended.
pub(super) fn candidates(active: &Active, index: usize) -> String {
    let candidates = active
        .run
        .attempts_of(index)
        .iter()
        .filter(|&&a| active.run.step(a).state == StepState::Succeeded)
        .filter_map(|&a| {
            let work = active.steps[a].work.as_ref()?;
            Some(Candidate {
                step: active.spec.steps[a].id.clone(),
                runtime: active.spec.steps[a]
                    .agent_capability()
                    .unwrap_or_default()
                    .to_string(),
                base: work.base_commit.clone(),
                head: work.head_commit.clone(),
                rounds: active.steps[a].verified.as_ref().map_or(0, |v| v.round),
                usd: active.steps[a].session.as_ref().map_or(0.0, |s| s.usd),
            })
        })
        .collect();
    serde_json::to_string(&Candidates { candidates }).unwrap_or_default()
}

/// What says the choice of `winner`, and `why`: the line, and the event
/// that carries it as the step's last progress.
fn chose(
    active: &Active,
    (index, attempt): (usize, u32),
    winner: usize,
    why: &str,
) -> (String, EventKind) {
    let said = format!(
        "chose {} ({}): {why}",
        active.spec.steps[winner].id,
        active.spec.steps[winner]
            .agent_capability()
            .unwrap_or_default()
    );
    let event = EventKind::Progress {
        step: active.spec.steps[index].id.clone(),
        attempt,
        fraction: 1.0,
        message: said.clone(),
    };
    (said, event)
}

/// Each attempt as the choice sees it.
fn finished(active: &Active, index: usize) -> Vec<Finished> {
    active
        .run
        .attempts_of(index)
        .iter()
        .enumerate()
        .map(|(k, &a)| Finished {
            index: k,
            passed: active.run.step(a).state == StepState::Succeeded,
            rounds: active.steps[a].verified.as_ref().map_or(0, |v| v.round),
            usd: active.steps[a].session.as_ref().map_or(0.0, |s| s.usd),
        })
        .collect()
}

/// The step takes the winner's output and work as its own; `said` is why.
pub(super) fn take_winner(
    active: &mut Active,
    (index, winner): (usize, usize),
    write: &mut StepWrite,
    said: &str,
) {
    let output = active.steps[winner].output.clone().unwrap_or_default();
    let work = active.steps[winner].work.clone();
    let live = &mut active.steps[index];
    live.output = Some(output.clone());
    live.head = work.as_ref().map(|w| w.head_commit.clone());
    live.changed = work
        .as_ref()
        .map(|w| w.changed_paths.clone())
        .unwrap_or_default();
    live.work.clone_from(&work);
    write.output_json = Some(output);
    write.work = Some(work);
    write.progress = Some((1.0, said.to_string()));
}

/// Why the step fails when none of its attempts passed.
fn none_passed(active: &Active, attempts: &[usize]) -> String {
    let each: Vec<String> = attempts
        .iter()
        .map(|&a| {
            format!(
                "{} {}",
                active.spec.steps[a].id,
                active.run.step(a).state.as_str()
            )
        })
        .collect();
    format!(
        "none of its {} attempts passed ({})",
        attempts.len(),
        each.join(", ")
    )
}

/// The attempt a step that chose took its work from: the attempt whose
/// head is the step's. `None` for any other step, or one that chose
/// nothing.
pub(super) fn chosen(active: &Active, index: usize) -> Option<usize> {
    let head = active.steps[index].head.as_ref()?;
    active
        .run
        .attempts_of(index)
        .iter()
        .copied()
        .find(|&a| active.steps[a].head.as_ref() == Some(head))
}

/// Whether a step's work goes on in its task: any step's does but an
/// attempt's that was not chosen (or not yet), which another step that
/// waited for it must not start from.
pub(super) fn goes_on(active: &Active, index: usize) -> bool {
    match active.run.chooser_of(index) {
        Some(chooser) => chosen(active, chooser) == Some(index),
        None => true,
    }
}
