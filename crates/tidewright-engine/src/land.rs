//! Landings, as the engine sees them. A task that lands through its base's
//! queue (`repo.land`) has its deliver step take its turn on the base (the
//! holding is `dispatch`'s); each base's queue is listed here, and each
//! landing's verdict said: a `verification` event of the deliver step
//! (landed on the base, and where; or why not), and the landings metrics.
//! A landing that only failed to reach the remote (a fetch or a push) is
//! no verdict and says nothing here: the step's retry says it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::{EventKind, Micros, StepState};

use crate::engine::Engine;
use crate::handle::{AttemptEnd, LandingQueue, QueuedLanding, StepResult};

impl Engine {
    /// Says the verdict of a landing task's deliver step, when `report` is
    /// one: its work landed on the base, conflicted with its tip, or failed
    /// its checks there.
    pub(crate) fn keep_landing(
        &mut self,
        (task_id, index): (&Arc<str>, usize),
        report: &StepResult,
    ) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let Some((_, base)) = active.landing.clone() else {
            return;
        };
        if active.spec.steps[index].deliver.is_none()
            || (report.conflict.is_none() && report.verification.is_none())
        {
            return;
        }
        let landed = report.outcome == AttemptEnd::Succeeded;
        let (outcome, message) = match (landed, &report.conflict) {
            (true, _) => {
                let commit = serde_json::from_str::<serde_json::Value>(&report.output_json)
                    .ok()
                    .and_then(|o| o["landed"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let checked = report
                    .verification
                    .as_ref()
                    .map(|v| v.findings())
                    .unwrap_or_default();
                (
                    "landed",
                    format!(
                        "landed on {base} at {}: {checked}",
                        &commit[..commit.len().min(12)]
                    ),
                )
            }
            (false, Some(_)) => ("conflict", report.error.clone()),
            (false, None) => ("checks_failed", report.error.clone()),
        };
        let waited = (now_micros() - active.created_at).max(0) as f64 / 1e6;
        self.metrics.landing(outcome, landed.then_some(waited));
        let kind = EventKind::Verification {
            step: report.attempt.step_id.clone(),
            attempt: report.attempt.attempt,
            round: report.verification.as_ref().map_or(1, |v| v.round.max(1)),
            passed: landed,
            message,
        };
        self.round.event(task_id, active, kind);
    }

    /// Each base's landing queue: the tasks landing through it whose
    /// deliver step is queued or running, the one whose turn it is first,
    /// then the others oldest first.
    pub(crate) fn landing_queues(&self) -> Vec<LandingQueue> {
        let mut queues: BTreeMap<&(String, String), Vec<(Micros, QueuedLanding)>> = BTreeMap::new();
        for (id, active) in &self.tasks {
            let Some(key) = &active.landing else {
                continue;
            };
            let Some(&j) = active.index.get(tidewright_core::repo::DELIVER_STEP) else {
                continue;
            };
            if !matches!(
                active.run.step(j).state,
                StepState::Queued | StepState::Running
            ) {
                continue;
            }
            let live = &active.steps[j];
            let landing = active.busy(j);
            queues.entry(key).or_default().push((
                active.created_at,
                QueuedLanding {
                    task_id: id.to_string(),
                    task_name: active.spec.name.clone(),
                    tenant: active.tenant.clone(),
                    landing,
                    since: live.ready_since.unwrap_or(live.attempt_started),
                },
            ));
        }
        queues
            .into_iter()
            .map(|((repo, base), mut tasks)| {
                tasks.sort_by(|(a_made, a), (b_made, b)| {
                    (!a.landing, a_made, &a.task_id).cmp(&(!b.landing, b_made, &b.task_id))
                });
                LandingQueue {
                    repo: repo.clone(),
                    base: base.clone(),
                    tasks: tasks.into_iter().map(|(_, t)| t).collect(),
                }
            })
            .collect()
    }
}
