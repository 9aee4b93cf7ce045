//! Landings, as the engine sees them. A task that lands through its base's
//! queue (`repo.land`) has its deliver step take its turn on the base (the
//! holding is `dispatch`'s); each base's queue is listed here, and each
//! landing's verdict said: a `verification` event of the deliver step
//! (landed on the base, and where; or why not), and the landings metrics.
//! A landing that only failed to reach the remote (a fetch or a push) is
//! no verdict and says nothing here: the step's retry says it. A landing
//! that failed is sent back to the agent whose work it is, within the
//! task's rounds of fixes (`send_back`).
//!
//! A followed pull request (`repo.pullRequest.follow`, or `merge`) is the
//! other way a task's work lands: its deliver step's looks at it end in the
//! same verdicts (merged; a check failed or changes were requested; closed),
//! said the same way and sent back through the same rounds of fixes, with
//! nothing merged into the fix. A forge's event on its repository has the
//! running look start at once (`wake_followers`).

use std::collections::BTreeMap;
use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::{EventKind, Micros, StepState};

use tidewright_core::Change;

use crate::engine::Engine;
use crate::handle::{AttemptEnd, LandingQueue, QueuedLanding, StepResult};
use crate::live::{Active, SentBack};

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
        if active.spec.steps[index].deliver.is_none() {
            return;
        }
        let Some((_, base)) = active.landing.clone() else {
            return self.keep_pull_request(task_id, report);
        };
        if report.conflict.is_none() && report.verification.is_none() {
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

    /// Says the verdict of a followed pull request's look, when `report` is
    /// one: merged (its output says `merged`), or what failed on it; as a
    /// landing's is said, since a merged pull request is the task's work
    /// landed on its base.
    fn keep_pull_request(&mut self, task_id: &Arc<str>, report: &StepResult) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        if fix_loop(active).is_none() {
            return;
        }
        let merged = serde_json::from_str::<serde_json::Value>(&report.output_json)
            .ok()
            .and_then(|o| o["merged"].as_str().map(str::to_string))
            .filter(|_| report.outcome == AttemptEnd::Succeeded);
        let (outcome, message) = match (&merged, &report.verification) {
            (Some(commit), _) => (
                "merged",
                format!(
                    "its pull request merged at {}",
                    &commit[..commit.len().min(12)]
                ),
            ),
            (None, Some(_)) => ("pull_request_failed", report.error.clone()),
            (None, None) => return,
        };
        let waited = (now_micros() - active.created_at).max(0) as f64 / 1e6;
        self.metrics
            .landing(outcome, merged.is_some().then_some(waited));
        let kind = EventKind::Verification {
            step: report.attempt.step_id.clone(),
            attempt: report.attempt.attempt,
            round: active.land_fixes + 1,
            passed: merged.is_some(),
            message,
        };
        self.round.event(task_id, active, kind);
    }

    /// Tells each deliver step following a pull request on `project`
    /// (`owner/name`, as the forge names it) to look at it now; how many.
    pub(crate) fn wake_followers(&mut self, project: &str, why: &str) -> usize {
        let mut told = 0;
        for (id, active) in &self.tasks {
            let Some(repo) = active.spec.repo.as_ref() else {
                continue;
            };
            let follows = repo.pull_request.as_ref().is_some_and(|p| p.follows());
            let here = tidewright_core::repo::project_path(&repo.url).as_deref() == Some(project);
            let Some(&j) = active.index.get(tidewright_core::repo::DELIVER_STEP) else {
                continue;
            };
            if !follows || !here || active.run.step(j).state != StepState::Running {
                continue;
            }
            let Some(worker) = active.steps[j]
                .worker
                .and_then(|w| self.fleet.workers.get(&w))
            else {
                continue;
            };
            let attempt = tidewright_core::AttemptKey {
                task_id: id.to_string(),
                step_id: tidewright_core::repo::DELIVER_STEP.into(),
                attempt: active.run.step(j).attempt,
            };
            self.round.effects.push(crate::effects::Effect::ToWorker(
                worker.outbox.clone(),
                crate::to_worker::ToWorker::Look {
                    attempt,
                    why: why.to_string(),
                },
            ));
            told += 1;
        }
        told
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

/// The rounds of fixes a deliver step's verdicts go back through: a
/// landing's on its base, or a followed pull request's.
struct Loop {
    most: u32,
    /// A landing's base, whose tip the fix starts merged with; empty for a
    /// pull request, whose fix goes on from its own work alone.
    base: String,
    /// The step the pull request names to fix it (`pullRequest.owner`).
    owner: Option<usize>,
}

fn fix_loop(active: &Active) -> Option<Loop> {
    let repo = active.spec.repo.as_ref()?;
    if let (Some(land), Some((_, base))) = (&repo.land, &active.landing) {
        return Some(Loop {
            most: land.fixes(),
            base: base.clone(),
            owner: None,
        });
    }
    let pr = repo.pull_request.as_ref().filter(|p| p.follows())?;
    Some(Loop {
        most: pr.fixes(),
        base: String::new(),
        owner: active.index.get(&pr.owner).copied(),
    })
}

/// Whether the deliver step `index` of `active` ending in `report` is a
/// verdict for the task's rounds of fixes (a landing that conflicted or
/// failed its checks, a followed pull request that failed or closed),
/// which no retry of the step does better on.
pub(crate) fn is_verdict(active: &Active, index: usize, report: &StepResult) -> bool {
    active.spec.steps[index].deliver.is_some()
        && report.outcome != AttemptEnd::Succeeded
        && (report.conflict.is_some() || report.verification.is_some())
        && fix_loop(active).is_some()
}

/// A verdict (see `is_verdict`) goes back to the agent whose work it is:
/// that step runs again, in its own session, told what failed, on its work
/// (with a landing's base's tip merged in); the deliver step waits for it
/// and lands, or pushes and follows its pull request, again. `Err`: why
/// the task fails instead (no rounds of fixes left, the same failure as
/// the last round's, nothing an agent could fix, or no agent to send it
/// to).
pub(crate) fn send_back(
    active: &mut Active,
    index: usize,
    report: &StepResult,
) -> Result<Vec<Change>, String> {
    let error = report.error.clone();
    let Some(fix) = fix_loop(active) else {
        return Err(error);
    };
    let failure = match (&report.conflict, &report.verification) {
        (Some(conflict), _) => format!("conflict[{}]", conflict.paths.join("|")),
        (None, Some(found)) if found.checks.iter().any(|c| !c.passed) => found.signature(),
        _ => return Err(error),
    };
    let most = fix.most;
    if most == 0 {
        return Err(error);
    }
    if active.land_fixes >= most {
        return Err(format!("{error} (its {most} round(s) of fixes are spent)"));
    }
    if active.land_fixes > 0 && active.land_failure == failure {
        return Err(format!(
            "{error} (the same failure as the last round of fixes)"
        ));
    }
    let Some(owner) = fix.owner.or_else(|| owner(active, index, report)) else {
        return Err(error);
    };
    let round = active.land_fixes + 1;
    let message = told(&fix.base, report.into(), (round, most));
    let what = match fix.base.as_str() {
        "" => "its pull request failed".to_string(),
        base => format!("landing on {base} failed"),
    };
    let changes = active
        .run
        .rerun(
            owner,
            index,
            &format!(
                "{what}: sent back to step {} (fix round {round} of {most})",
                active.spec.steps[owner].id
            ),
        )
        .map_err(|e| {
            format!(
                "{error}; step {:?} cannot run again: {e}",
                active.spec.steps[owner].id
            )
        })?;
    active.land_fixes = round;
    active.land_failure = failure;
    let live = &mut active.steps[owner];
    let from = live.head.take().unwrap_or_default();
    live.feedback = message;
    live.sent_back = Some(SentBack {
        base: fix.base,
        from,
    });
    Ok(changes)
}

/// The agent step whose work a failed verdict is: of the deliver step's
/// own dependencies that are agents', the one that changed (or says it
/// touches) a path in conflict or a failed check points to, else the
/// first.
fn owner(active: &Active, index: usize, report: &StepResult) -> Option<usize> {
    let agents: Vec<usize> = active.spec.steps[index]
        .depends_on
        .iter()
        .filter_map(|dep| active.index.get(dep).copied())
        .filter(|&i| crate::dispatch::agent_of(&active.steps[i].needs).is_some())
        // A reviewer's work is its verdict, never the task's.
        .filter(|&i| active.spec.steps[i].review_of.is_none())
        .collect();
    let conflicted = report.conflict.iter().flat_map(|c| c.paths.iter());
    let pointed = report
        .verification
        .iter()
        .flat_map(|v| v.checks.iter())
        .filter(|c| !c.passed)
        .flat_map(|c| c.paths.iter());
    conflicted
        .chain(pointed)
        .find_map(|path| {
            agents.iter().copied().find(|&i| {
                active.steps[i].changed.contains(path)
                    || active.spec.steps[i]
                        .touches
                        .iter()
                        .any(|glob| tidewright_core::touches::matches(glob, path))
            })
        })
        .or_else(|| agents.first().copied())
}

/// A failed verdict as the agent is told it: why, what conflicted, and the
/// checks.
struct Said<'a> {
    error: &'a str,
    conflict: Option<&'a tidewright_core::repo::MergeConflict>,
    verification: Option<&'a tidewright_core::Verification>,
}

impl<'a> From<&'a StepResult> for Said<'a> {
    fn from(report: &'a StepResult) -> Self {
        Said {
            error: &report.error,
            conflict: report.conflict.as_ref(),
            verification: report.verification.as_ref(),
        }
    }
}

/// What the agent is told of its failed verdict: why, and what to do. A
/// landing's (on `base`) or, `base` empty, its pull request's.
fn told(base: &str, report: Said<'_>, (round, most): (u32, u32)) -> String {
    let mut text = match base {
        "" => format!(
            "Your pull request is not ready to merge: {}\n\nYour working directory is as you left it. Fix what failed so that the checks pass and what the reviewers asked for holds.",
            report.error
        ),
        base => {
            let mut text = format!(
                "Your work could not land on {base}: {}\n\ntidewright merged the tip of {base} into your working directory. ",
                report.error
            );
            match report.conflict {
                Some(conflict) => text.push_str(&format!(
                    "Resolve the conflicts in {} so that what {base} has now and what you were asked for both hold.",
                    conflict.paths.join(", ")
                )),
                None => text.push_str(&format!(
                    "Make the landing's checks pass on your work merged with {base}."
                )),
            }
            text
        }
    };
    for check in report
        .verification
        .iter()
        .flat_map(|v| v.checks.iter())
        .filter(|c| !c.passed)
    {
        let how = match (check.exit_code, check.trouble.as_str()) {
            (Some(code), _) => format!(" (exit {code})"),
            (None, "") => String::new(),
            (None, trouble) => format!(" ({trouble})"),
        };
        text.push_str(&format!(
            "\n\n{} failed{how}:\n{}",
            named(&check.name),
            check.tail.trim_end()
        ));
    }
    text.push_str(&match base {
        "" => format!(
            "\n\ntidewright commits what you leave, pushes it to the pull request's branch and follows it again (round {round} of {most} of fixes)."
        ),
        base => format!(
            "\n\ntidewright commits what you leave, checks it on {base} and lands it again (round {round} of {most} of fixes)."
        ),
    });
    text
}

/// A check's name as the agent reads it: a review is said as one.
fn named(check: &str) -> String {
    if check.starts_with("review by ") {
        format!("The {check}")
    } else {
        format!("Check {check}")
    }
}

/// After a restart: the rounds of fixes a landing task's failed landings
/// took (its deliver step's attempts that ended in a landing's verdict),
/// and the agent step still fixing the last one, which merges the base's
/// tip again and is told the failure again.
pub(crate) fn restore_fixes(active: &mut Active, record: &tidewright_store::TaskRecord) {
    let Some(fix) = fix_loop(active) else {
        return;
    };
    let Some(&j) = active.index.get(tidewright_core::repo::DELIVER_STEP) else {
        return;
    };
    let verdict = match fix.base.as_str() {
        "" => "pull request ".to_string(),
        base => format!("landing on {base}: "),
    };
    let failed: Vec<&tidewright_store::AttemptRecord> = record.steps[j]
        .attempts
        .iter()
        .filter(|a| a.state == StepState::Failed && a.error.starts_with(&verdict))
        .collect();
    let Some(last) = failed.last() else {
        return;
    };
    active.land_fixes = failed.len() as u32;
    active.land_failure = last
        .verification
        .as_ref()
        .map(|v| v.signature())
        .unwrap_or_default();
    if record.steps[j].state != StepState::Waiting {
        return;
    }
    let said = Said {
        error: &last.error,
        conflict: None,
        verification: last.verification.as_ref(),
    };
    let message = told(&fix.base, said, (active.land_fixes, fix.most));
    let deps = active.spec.steps[j].depends_on.clone();
    for dep in deps {
        let Some(&i) = active.index.get(&dep) else {
            continue;
        };
        let from = record.steps[i].work.as_ref().map(|w| w.head_commit.clone());
        if let Some(from) = from
            && record.steps[i].state != StepState::Succeeded
            && crate::dispatch::agent_of(&active.steps[i].needs).is_some()
        {
            let live = &mut active.steps[i];
            live.sent_back = Some(SentBack {
                base: fix.base.clone(),
                from,
            });
            if live.feedback.is_empty() {
                live.feedback = message.clone();
            }
        }
    }
}
