//! What comes back from running work: results (fenced: only the current
//! attempt's count), retries after their backoff, and cancels reaching the
//! steps still running. What an attempt reports while it runs is in
//! `running`.

use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::{AttemptKey, Change, EventKind, Outcome, StepState, TaskState};
use tidewright_store::{AttemptWrite, StepWrite, Write};
use tokio::sync::oneshot;

use crate::effects::Effect;
use crate::engine::{Engine, INVALID_OUTPUT};
use crate::handle::{AttemptEnd, CancelAnswer, StepResult};
use crate::live::Active;
use crate::to_worker::ToWorker;
use crate::verify::Round;
use tidewright_core::verify::Decision;

impl Engine {
    /// The task and step index of an attempt, if it is current and `worker`
    /// runs it. Reports from anyone else are fenced off here.
    pub(super) fn current(&self, worker: u64, attempt: &AttemptKey) -> Option<(Arc<str>, usize)> {
        let (task_id, active) = self.tasks.get_key_value(attempt.task_id.as_str())?;
        let index = *active.index.get(&attempt.step_id)?;
        let status = active.run.step(index);
        let current = status.state == StepState::Running
            && status.attempt == attempt.attempt
            && active.steps[index].worker == Some(worker);
        current.then(|| (task_id.clone(), index))
    }

    /// The paths an attempt changed that its step's `touches` do not
    /// cover (at most ten named), and whether its step is strict about it;
    /// `None` when it stayed inside, or claimed nothing.
    fn outside_touches(
        &self,
        (task_id, index): (&Arc<str>, usize),
        report: &StepResult,
    ) -> Option<(bool, String)> {
        let work = report.work.as_ref()?;
        let step = &self.tasks.get(task_id)?.spec.steps[index];
        if step.touches.is_empty() {
            return None;
        }
        let outside: Vec<&str> = work
            .changed_paths
            .iter()
            .filter(|path| {
                !step
                    .touches
                    .iter()
                    .any(|glob| tidewright_core::touches::matches(glob, path))
            })
            .map(String::as_str)
            .collect();
        if outside.is_empty() {
            return None;
        }
        let mut named = outside
            .iter()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if outside.len() > 10 {
            named.push_str(&format!(" and {} more", outside.len() - 10));
        }
        Some((step.touches_strict, named))
    }

    /// Takes a worker's result of an attempt: judges it, pauses the pool
    /// at a provider's limit, charges its cost, moves the task on, and
    /// records the attempt.
    pub(super) fn report(&mut self, worker: u64, report: StepResult) {
        self.report_as(worker, report, None);
    }

    /// [`Self::report`]; `requeue`: why the attempt, whatever its
    /// outcome, goes back to the queue uncounted (a landing batch's task,
    /// or a batch split).
    pub(super) fn report_as(
        &mut self,
        worker: u64,
        mut report: StepResult,
        requeue: Option<String>,
    ) {
        let Some((task_id, index)) = self.current(worker, &report.attempt) else {
            tracing::warn!(
                task = %report.attempt.task_id,
                step = %report.attempt.step_id,
                attempt = report.attempt.attempt,
                worker,
                "rejected a result that is not for the current attempt"
            );
            return;
        };
        if let Some(w) = self.fleet.workers.get_mut(&worker) {
            w.running.remove(&(task_id.clone(), index));
        }
        self.take_judged((&task_id, index), &mut report);
        let requeue = requeue.or_else(|| self.settle_riders(worker, (&task_id, index), &report));
        let verdict = self.judge((&task_id, index), &report);
        let requeued = requeue.is_some();
        let limited = match requeue {
            Some(why) => Some(why),
            None => self.limited(worker, (&task_id, index), &report, &verdict.outcome),
        };
        // The attempt's record says which signal made it a limit, so
        // `tidewright get task` tells a limit apart from the step's own failure.
        let round_failure = verdict.round.as_ref().and_then(Round::failure);
        let attempt_error = match (&limited, verdict.output_ok, &verdict.strict_failure) {
            (Some(why), _, _) => why.clone(),
            (None, false, _) => INVALID_OUTPUT.into(),
            (None, true, None) if round_failure.is_some() => {
                round_failure.clone().unwrap_or_default()
            }
            (None, true, Some(why)) if report.outcome == AttemptEnd::Succeeded => why.clone(),
            (None, true, _) => report.error.clone(),
        };
        if let Some((_, paths)) = &verdict.outside {
            self.said_outside(&task_id, &report, paths);
        }
        if let Some(round) = &verdict.round {
            self.keep_round((&task_id, index), &report, round);
        }
        if !requeued {
            self.keep_landing((&task_id, index), &report);
        }
        self.settle_cost(&task_id, index, report.cost);
        if !requeued && report.rate_limited.is_some() && limited.is_some() {
            self.keep_handover(&task_id, index, &report);
        }
        let Some(moved) = self.move_on((&task_id, index), &report, &verdict, limited) else {
            return;
        };
        let attempt_state = match report.outcome {
            AttemptEnd::Succeeded if round_failure.is_some() => StepState::Failed,
            AttemptEnd::Succeeded if verdict.output_ok => StepState::Succeeded,
            AttemptEnd::Cancelled => StepState::Cancelled,
            _ => StepState::Failed,
        };
        let label = match attempt_state {
            _ if moved.budget_stopped => "budget",
            StepState::Failed if requeued => "requeued",
            StepState::Failed if moved.handed_back => "rate_limited",
            StepState::Failed if report.stalled => "stalled",
            StepState::Failed if round_failure.is_some() => "verify",
            state => state.as_str(),
        };
        self.record_attempt(
            (&task_id, index),
            &report,
            (attempt_state, label),
            (attempt_error, verdict.round.as_ref()),
        );
        let detail = StepWrite {
            finished_at: Some(now_micros()),
            started_at: report.started_at,
            output_json: Some(report.output_json.trim().to_string()),
            error: Some(match (verdict.strict_failure, report.outcome) {
                (Some(why), AttemptEnd::Succeeded) => why,
                (None, AttemptEnd::Succeeded) if round_failure.is_some() => {
                    round_failure.unwrap_or_default()
                }
                _ => moved.failed_for.unwrap_or(report.error),
            }),
            exit_code: Some(report.exit_code),
            // The last attempt's work; one that did none clears an
            // earlier attempt's.
            work: Some(report.work),
            ..StepWrite::default()
        };
        self.apply(&task_id, moved.changes, Some((index, detail)));
        self.send_cancels(&task_id, moved.to_cancel, "another step of the task failed");
        // An attempt that passed first stops the rest when they stop early.
        if let Some(active) = self.tasks.get(&task_id) {
            let outrun = active.run.to_stop(index);
            let why = format!("attempt {} passed first", report.attempt.step_id);
            self.send_cancels(&task_id, outrun, &why);
        }
    }

    /// What the engine makes of a result: a success whose output is not
    /// JSON, or that changed paths outside strict touches, failed.
    fn judge(&self, step: (&Arc<str>, usize), report: &StepResult) -> Verdict {
        let mut outcome = match report.outcome {
            AttemptEnd::Succeeded => Outcome::Succeeded,
            AttemptEnd::Cancelled => Outcome::Cancelled(report.error.clone()),
            AttemptEnd::Failed => Outcome::Failed(if report.error.is_empty() {
                "the step failed".into()
            } else {
                report.error.clone()
            }),
        };
        let output = report.output_json.trim();
        let output_ok =
            output.is_empty() || serde_json::from_str::<serde_json::Value>(output).is_ok();
        if outcome == Outcome::Succeeded && !output_ok {
            outcome = Outcome::Failed(INVALID_OUTPUT.into());
        }
        // What it changed against what it said it would touch.
        let outside = self.outside_touches(step, report);
        let strict_failure = outside
            .as_ref()
            .filter(|(strict, _)| *strict)
            .map(|(_, paths)| {
                format!(
                    "step {} changed paths outside its touches: {paths}",
                    report.attempt.step_id
                )
            });
        if outcome == Outcome::Succeeded
            && let Some(why) = &strict_failure
        {
            outcome = Outcome::Failed(why.clone());
        }
        // Done only once its checks pass.
        let round = (outcome == Outcome::Succeeded)
            .then(|| self.round_of(step, report))
            .flatten();
        if let Some(why) = round.as_ref().and_then(Round::failure) {
            outcome = Outcome::Failed(why);
        }
        Verdict {
            outcome,
            output_ok,
            outside,
            strict_failure,
            round,
        }
    }

    /// A failure at a provider's limit pauses the pool's agents of that
    /// runtime, and says why the step is handed back; a success ends the
    /// pool's limits in a row.
    fn limited(
        &mut self,
        worker: u64,
        (task_id, index): (&Arc<str>, usize),
        report: &StepResult,
        outcome: &Outcome,
    ) -> Option<String> {
        let agent = self
            .tasks
            .get(task_id)
            .and_then(|a| crate::dispatch::agent_of(&a.steps[index].needs))
            .unwrap_or(tidewright_core::CLAUDE_CODE);
        match &report.rate_limited {
            Some(limit) if report.outcome == AttemptEnd::Failed => Some(
                self.fleet
                    .pause_for_limit(worker, agent, limit, &report.error, &self.metrics),
            ),
            _ => {
                if *outcome == Outcome::Succeeded {
                    self.fleet.pool_recovered(worker, agent);
                }
                None
            }
        }
    }

    /// The step's progress says it changed `paths` outside its touches.
    fn said_outside(&mut self, task_id: &Arc<str>, report: &StepResult, paths: &str) {
        self.metrics.touches_exceeded();
        if let Some(active) = self.tasks.get_mut(task_id) {
            let kind = EventKind::Progress {
                step: report.attempt.step_id.clone(),
                attempt: report.attempt.attempt,
                fraction: 1.0,
                message: format!("changed paths outside its touches: {paths}"),
            };
            self.round.event(task_id, active, kind);
        }
    }

    /// Moves the task's run on from the result: the step finishes, or is
    /// handed back uncounted (a provider's limit, the task's budget), or a
    /// merge conflict has the later side run again on top of the earlier.
    /// `None` when the task is not held or the run refuses the change.
    fn move_on(
        &mut self,
        (task_id, index): (&Arc<str>, usize),
        report: &StepResult,
        verdict: &Verdict,
        limited: Option<String>,
    ) -> Option<MovedOn> {
        let active = self.tasks.get_mut(task_id)?;
        if verdict.outcome == Outcome::Succeeded {
            let live = &mut active.steps[index];
            live.output = Some(report.output_json.trim().to_string());
            live.head = report.work.as_ref().map(|w| w.head_commit.clone());
            live.changed = report
                .work
                .as_ref()
                .map(|w| w.changed_paths.clone())
                .unwrap_or_default();
            live.work.clone_from(&report.work);
            live.sent_back = None;
        }
        // An attempt its task's budget stopped waits for the task to resume,
        // uncounted: the budget was not the step's failure.
        let budget_stopped = verdict.outcome != Outcome::Succeeded
            && (std::mem::take(&mut active.steps[index].stopped_for_budget)
                || active.run.state() == TaskState::Paused);
        // A message for a CLI that reads no input while it runs: the
        // session resumes with it, uncounted, whether the interrupted turn
        // ended short of success or (a follow-up, or an interrupt too late)
        // in it.
        let live = &mut active.steps[index];
        let steer_stopped = std::mem::take(&mut live.stopped_for_steer);
        let steered = !live.steered.is_empty()
            && live.session.is_some()
            && (verdict.outcome == Outcome::Succeeded || steer_stopped);
        let handed_back = limited
            .or_else(|| budget_stopped.then(|| "stopped: the task's budget is spent".into()))
            .or_else(|| steered.then(|| "steered: its session resumes with the message".into()));
        // The step's next event says what conflicted.
        active.steps[index].conflict = report.conflict.clone();
        // A landing's verdict (its work conflicts with the base's tip, or
        // its checks failed there), or a followed pull request's, is no
        // failure a retry does better on.
        let landing_verdict = crate::land::is_verdict(active, index, report);
        let mut review_verdict = crate::review::requested_changes(active, index, report);
        let rerun = match (&handed_back, &report.conflict) {
            (None, Some(conflict)) if !landing_verdict => rerun_for(active, index, conflict),
            _ => None,
        };
        let mut failed_for = None;
        let applied = match (&handed_back, &rerun) {
            // Not the step's failure: it waits for the pool, uncounted.
            (Some(why), _) => active.run.hand_back(index, why),
            (None, None) if landing_verdict => {
                match crate::land::send_back(active, index, report) {
                    Ok(changes) => {
                        if active.landing.is_some() {
                            self.metrics.landing_sent_back();
                        } else {
                            self.metrics.pull_request_sent_back();
                        }
                        Ok(changes)
                    }
                    Err(why) => {
                        let failed = active.run.fail_for_good(index, &why);
                        failed_for = Some(why);
                        failed
                    }
                }
            }
            // A reviewer's requested changes go back to the step reviewed.
            (None, None) if review_verdict.is_some() => {
                match crate::review::send_back(active, index, (report, review_verdict.take())) {
                    crate::review::Sent::Back(changes) => Ok(changes),
                    crate::review::Sent::Ended(outcome, why) => {
                        failed_for = Some(why);
                        if outcome == Outcome::Succeeded {
                            active.steps[index].output =
                                Some(report.output_json.trim().to_string());
                            active.run.finish(index, outcome)
                        } else {
                            let why = failed_for.clone().unwrap_or_default();
                            active.run.fail_for_good(index, &why)
                        }
                    }
                }
            }
            // Not its failure either: it waits for the later side to run
            // again on top of the earlier.
            (None, Some(plan)) => match active.run.rerun(plan.later, index, &plan.message) {
                Ok(changes) => {
                    let later = &mut active.steps[plan.later];
                    later.on_top_of.extend(&plan.earlier);
                    later.reruns += 1;
                    later.head = None;
                    // It starts afresh from new work: an agent's session,
                    // and a verified step's rounds, were about the old.
                    later.session = None;
                    later.verified = None;
                    later.feedback.clear();
                    Ok(changes)
                }
                Err(e) => active.run.finish(
                    index,
                    Outcome::Failed(format!(
                        "{}; step {:?} cannot run again: {e}",
                        report.error, active.spec.steps[plan.later].id
                    )),
                ),
            },
            (None, None) => match verdict.round.as_ref().map(|r| &r.decision) {
                // Its agent's session is sent back what failed: the step
                // waits again, uncounted, as its own next round.
                Some(Decision::Again { .. }) => {
                    let said = verdict
                        .round
                        .as_ref()
                        .map(|r| r.found.summary())
                        .unwrap_or_default();
                    active.run.hand_back(index, &said)
                }
                // No retry does better than another round would.
                Some(Decision::Failed(why, _)) => active.run.fail_for_good(index, why),
                _ => active.run.finish(index, verdict.outcome.clone()),
            },
        };
        let changes = match applied {
            Ok(changes) => changes,
            Err(e) => {
                tracing::error!(task = %task_id, index, error = %e, "result could not be applied");
                return None;
            }
        };
        let to_cancel = stop_running_if_winding_down(active, &changes);
        Some(MovedOn {
            changes,
            to_cancel,
            budget_stopped,
            handed_back: handed_back.is_some(),
            failed_for,
        })
    }

    /// Stores the attempt's record, ended in `state` (counted as `label`),
    /// and charges its session and the tenant's metrics.
    fn record_attempt(
        &mut self,
        (task_id, index): (&Arc<str>, usize),
        report: &StepResult,
        (state, label): (StepState, &str),
        (error, round): (String, Option<&Round>),
    ) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let live = &mut active.steps[index];
        if let (Some(session), Some(cost)) = (&mut live.session, &report.cost) {
            session.usd += cost.usd;
        }
        if let Some(cost) = &report.cost {
            self.metrics.agent_spent(&active.tenant, &live.model, cost);
        }
        // Summed by day in the same commit as the attempt: the sums are the
        // attempts' costs exactly.
        if let Some(cost) = report.cost.filter(|c| !c.is_zero()) {
            use tidewright_core::cost_sums;
            let now = now_micros();
            let key = cost_sums::key_of(&active.spec, index, (&active.tenant, &live.model), now);
            self.metrics.cost_summed(&key, &cost);
            self.round.writes.push(Write::CostSum {
                sum: cost_sums::CostSum {
                    key,
                    cost,
                    attempts: 1,
                },
                expire_before: cost_sums::expired_before(now),
            });
        }
        let started = report.started_at.unwrap_or(live.attempt_started);
        let ran = (started > 0).then(|| (now_micros() - started) as f64 / 1e6);
        self.metrics.attempt_finished(label, ran);
        self.round.writes.push(Write::Attempt(AttemptWrite {
            task_id: task_id.to_string(),
            step_id: report.attempt.step_id.clone(),
            attempt: report.attempt.attempt,
            worker: Some(live.worker_name.clone()),
            started_at: report.started_at.or(Some(live.attempt_started)),
            finished_at: Some(now_micros()),
            state: Some(state),
            error: Some(error),
            exit_code: report.exit_code,
            cost: report.cost,
            // A verified step's round, numbered here; or a landing's
            // checks, as its deliver step ran them on the base's tip.
            verification: round.map(|r| r.found.clone()).or_else(|| {
                active.spec.steps[index]
                    .deliver
                    .as_ref()
                    .and(report.verification.clone())
            }),
            ..AttemptWrite::default()
        }));
    }

    /// Moves retries whose backoff is over into the ready queue. A retry of
    /// a task that was cancelled or moved on meanwhile is dropped.
    pub(super) fn release_retries(&mut self) {
        let now = now_micros();
        while let Some((_, task_id, index, failed)) = self.timers.due_retry(now) {
            let beside = self
                .tasks
                .get(&task_id)
                .map(|a| self.claims_beside(&task_id, a))
                .unwrap_or_default();
            let Some(active) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let status = active.run.step(index);
            let live = &mut active.steps[index];
            if status.state != StepState::Queued
                || status.attempt != failed
                || live.queued.is_some()
                || active.run.state() == TaskState::Paused
            {
                continue;
            }
            if let Some(held) = crate::dispatch::ready_step(
                &mut self.queue,
                (&task_id, active),
                index,
                now_micros(),
                &beside,
            ) {
                self.round.event(&task_id, active, held);
            }
        }
    }

    pub(super) fn cancel(
        &mut self,
        task_id: &str,
        reason: &str,
        reply: oneshot::Sender<CancelAnswer>,
    ) {
        let Some(id) = self.tasks.get_key_value(task_id).map(|(id, _)| id.clone()) else {
            let _ = reply.send(CancelAnswer::NotActive);
            return;
        };
        let Some(active) = self.tasks.get_mut(&id) else {
            return;
        };
        let changes = active.run.cancel(reason);
        let running: Vec<usize> = active.run.running().collect();
        self.apply(&id, changes, None);
        self.send_cancels(&id, running, reason);
        self.round.effects.push(Effect::CancelDone(reply));
    }

    pub(super) fn send_cancels(&mut self, task_id: &Arc<str>, steps: Vec<usize>, reason: &str) {
        self.send_stops(task_id, steps, reason, false);
    }

    /// Tells the workers running `steps` to stop them; `resumable` when the
    /// steps will run again in the same sessions (a budget pause).
    pub(super) fn send_stops(
        &mut self,
        task_id: &Arc<str>,
        steps: Vec<usize>,
        reason: &str,
        resumable: bool,
    ) {
        let Some(active) = self.tasks.get(task_id) else {
            return;
        };
        for index in steps {
            let Some(worker) = active.steps[index]
                .worker
                .and_then(|w| self.fleet.workers.get(&w))
            else {
                continue;
            };
            let message = ToWorker::Cancel {
                attempt: AttemptKey {
                    task_id: task_id.to_string(),
                    step_id: active.spec.steps[index].id.clone(),
                    attempt: active.run.step(index).attempt,
                },
                reason: reason.to_string(),
                resumable,
            };
            self.round
                .effects
                .push(Effect::ToWorker(worker.outbox.clone(), message));
        }
    }
}

/// After a failure for good (not one that will be retried), the steps still
/// running must be told to stop.
pub(super) fn stop_running_if_winding_down(active: &Active, changes: &[Change]) -> Vec<usize> {
    let retried = changes.iter().any(|c| matches!(c, Change::Retry { .. }));
    let failed_now = changes.iter().any(|c| {
        matches!(
            c,
            Change::Step {
                state: StepState::Failed | StepState::Cancelled,
                ..
            }
        )
    });
    if failed_now && !retried && active.run.is_winding_down() {
        active.run.running().collect()
    } else {
        Vec::new()
    }
}

/// How many times a step runs again on top of another's work before a
/// conflict it is in fails its dependent.
const MAX_RERUNS: u32 = 2;

/// A dependency run again on top of others' work, for a conflict.
/// What the engine makes of a result (see [`Engine::judge`]).
struct Verdict {
    outcome: Outcome,
    /// Its output is JSON, or empty.
    output_ok: bool,
    /// Whether its touches are strict, and the paths it changed outside
    /// them, named.
    outside: Option<(bool, String)>,
    /// Why it failed for changing paths outside strict touches.
    strict_failure: Option<String>,
    /// A verified step's round, when its agent succeeded.
    round: Option<Round>,
}

/// How a result moved its task on (see [`Engine::move_on`]).
struct MovedOn {
    changes: Vec<Change>,
    /// The task's other running steps to stop, as it winds down.
    to_cancel: Vec<usize>,
    /// The task's budget stopped the attempt.
    budget_stopped: bool,
    /// The step went back to wait, uncounted.
    handed_back: bool,
    /// Why it failed, when more than its attempt said (a landing's rounds
    /// of fixes spent).
    failed_for: Option<String>,
}

struct Rerun {
    later: usize,
    earlier: Vec<usize>,
    message: String,
}

/// What a step whose dependencies' work conflicts does, when it says
/// `onConflict: rerun` and the later side has runs again left; `None`
/// when it fails.
fn rerun_for(
    active: &crate::live::Active,
    index: usize,
    conflict: &tidewright_core::repo::MergeConflict,
) -> Option<Rerun> {
    let step = &active.spec.steps[index];
    if step.on_conflict != Some(tidewright_core::OnConflict::Rerun) {
        return None;
    }
    let later = *active.index.get(&conflict.with)?;
    let earlier: Vec<usize> = conflict
        .after
        .iter()
        .filter_map(|id| active.index.get(id).copied())
        .collect();
    if earlier.is_empty() || active.steps[later].reruns >= MAX_RERUNS {
        return None;
    }
    let names = |ids: &[String]| {
        ids.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(Rerun {
        later,
        earlier,
        message: format!(
            "the work of step {:?} conflicts with that of {} in {}: {:?} runs again on top of it",
            conflict.with,
            names(&conflict.after),
            conflict.paths.join(", "),
            conflict.with
        ),
    })
}
