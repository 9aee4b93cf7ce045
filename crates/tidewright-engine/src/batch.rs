//! Landing batches: when a task's deliver step takes its turn on its
//! base, other tasks waiting there whose `touches` cannot overlap its own
//! or each other's ride along (at most `repo.land.batch`), so one checked
//! merge lands them all. Their deliver steps' attempts start with the
//! landing one's, on its worker, and end with its result: landed, or sent
//! back to the queue uncounted. A batch whose checks fail is split in two
//! halves that land in turn, the older first, until the task that broke
//! it lands alone and gets the verdict; the others land as they would
//! have. A base whose batches fail takes smaller ones: each split halves
//! the most a new batch there may hold, each batch that lands doubles it
//! again (up to `repo.land.batch`), so a run of broken work is not paid
//! for with a split of a full batch each time. The halves still to land,
//! and the sizes, are kept in memory: after a failover the queue forms its
//! batches afresh, which checks more, never less.

use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::repo::{DELIVER_STEP, LandRider};
use tidewright_core::{AttemptKey, EventKind, Micros, StepState, TaskState};

use crate::engine::Engine;
use crate::handle::{AttemptEnd, StepResult};
use crate::live::Active;

impl Engine {
    /// Starts the deliver steps that ride in the landing of task `lead`'s
    /// deliver step (index `index`, just started on worker `worker_id`),
    /// and says what the worker needs of each.
    pub(crate) fn board_riders(
        &mut self,
        worker_id: u64,
        (lead_id, index): (&Arc<str>, usize),
    ) -> Vec<LandRider> {
        let picked = self.pick_riders(lead_id, index);
        if picked.is_empty() {
            return Vec::new();
        }
        let worker_name = self
            .fleet
            .workers
            .get(&worker_id)
            .map(|w| w.info.name.clone())
            .unwrap_or_default();
        let now = now_micros();
        let mut riders = Vec::new();
        for id in &picked {
            let Some(active) = self.tasks.get_mut(id) else {
                continue;
            };
            let Some(&j) = active.index.get(DELIVER_STEP) else {
                continue;
            };
            if let Some(key) = active.steps[j].queued.take() {
                self.queue.remove(&key);
            }
            let (attempt, changes) = match active.run.start(j) {
                Ok(started) => started,
                Err(e) => {
                    tracing::error!(task = %id, error = %e, "a landing batch's task could not start");
                    continue;
                }
            };
            let Some(head) = crate::dispatch::dependency_heads(active, j).pop() else {
                continue;
            };
            let live = &mut active.steps[j];
            live.worker = Some(worker_id);
            live.worker_name.clone_from(&worker_name);
            live.attempt_started = now;
            live.held_by = None;
            live.batch_lead = Some(lead_id.clone());
            let ready_since = live.ready_since.take().unwrap_or(live.queued_at);
            self.metrics
                .landing_turn((now - ready_since).max(0) as f64 / 1e6);
            riders.push(LandRider {
                task_id: id.to_string(),
                task_name: active.spec.name.clone(),
                attempt,
                step: head.step,
                head: head.head,
                push: active.spec.repo.as_ref().is_some_and(|r| r.push),
            });
            let said = EventKind::Progress {
                step: DELIVER_STEP.into(),
                attempt,
                fraction: 0.0,
                message: format!(
                    "lands in one checked merge with task {lead_id}'s work and {} other task(s)'",
                    picked.len() - 1
                ),
            };
            self.round.event(id, active, said);
            let detail = crate::live::started(attempt, worker_name.clone(), now);
            self.apply(id, changes, Some((j, detail)));
        }
        if let Some(lead) = self.tasks.get_mut(lead_id) {
            lead.steps[index].riders = riders
                .iter()
                .map(|r| Arc::from(r.task_id.as_str()))
                .collect();
        }
        riders
    }

    /// The tasks that may land with `lead`'s deliver step (index `index`):
    /// the next half of a split batch when it is the lead's; otherwise,
    /// while no split waits, those waiting their turn on the same base,
    /// oldest first, whose touches overlap nobody's in the batch.
    fn pick_riders(&mut self, lead_id: &Arc<str>, index: usize) -> Vec<Arc<str>> {
        let Some(lead) = self.tasks.get(lead_id) else {
            return Vec::new();
        };
        let (Some(key), Some(land)) = (
            lead.landing.clone(),
            lead.spec.repo.as_ref().and_then(|r| r.land.clone()),
        ) else {
            return Vec::new();
        };
        if lead.spec.steps[index].deliver.is_none() {
            return Vec::new();
        }
        // A half none of whose tasks still lands (cancelled, or landed
        // alone meanwhile) is dropped.
        let tasks = &self.tasks;
        let lands = |id: &Arc<str>| {
            tasks.get(id).is_some_and(|a| {
                a.index.get(DELIVER_STEP).is_some_and(|&j| {
                    matches!(a.run.step(j).state, StepState::Queued | StepState::Running)
                })
            })
        };
        if let Some(halves) = self.batches.splits.get_mut(&key) {
            while halves.front().is_some_and(|h| !h.iter().any(&lands)) {
                halves.pop_front();
            }
            if halves.is_empty() {
                self.batches.splits.remove(&key);
            }
        }
        let group = match self.batches.splits.get_mut(&key) {
            Some(halves) if !halves.is_empty() => {
                if !halves.front().is_some_and(|h| h.contains(lead_id)) {
                    return Vec::new();
                }
                halves.pop_front()
            }
            _ => None,
        };
        let room = self.batches.room.get(&key).copied();
        let most = group.as_ref().map_or_else(
            || room.map_or(land.batch_size(), |r| r.min(land.batch_size())),
            Vec::len,
        );
        let Some(mut touched) = task_touches(lead) else {
            return Vec::new();
        };
        let mut waiting: Vec<(Micros, &Arc<str>, &Active)> = self
            .tasks
            .iter()
            .filter(|(id, a)| {
                *id != lead_id
                    && a.landing.as_ref() == Some(&key)
                    && group.as_ref().is_none_or(|g| g.contains(*id))
                    && waits_its_turn(a)
            })
            .map(|(id, a)| (a.created_at, id, a))
            .collect();
        waiting.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut picked = Vec::new();
        for (_, id, rider) in waiting {
            if picked.len() + 1 >= most {
                break;
            }
            let fits = rider
                .spec
                .repo
                .as_ref()
                .and_then(|r| r.land.as_ref())
                .is_some_and(|l| l.checks == land.checks)
                && rider
                    .spec
                    .repo
                    .as_ref()
                    .is_some_and(|r| r.pull_request.is_none());
            let Some(touches) = task_touches(rider).filter(|_| fits) else {
                continue;
            };
            if tidewright_core::touches::first_overlap(&touched, &touches).is_some() {
                continue;
            }
            let Some(&j) = rider.index.get(DELIVER_STEP) else {
                continue;
            };
            // Its work is one step's head: more would be merged by its own
            // deliver step first, which may conflict.
            if crate::dispatch::dependency_heads(rider, j).len() != 1 {
                continue;
            }
            touched.extend(touches);
            picked.push(id.clone());
        }
        picked
    }

    /// Ends the riders of `lead`'s deliver step (index `index`) with its
    /// result: each landed when the landing says so, or is sent back to
    /// the queue uncounted. A batch whose checks failed on its merge is
    /// split; the answer is then why the lead goes back too.
    pub(crate) fn settle_riders(
        &mut self,
        worker: u64,
        (lead_id, index): (&Arc<str>, usize),
        report: &StepResult,
    ) -> Option<String> {
        let lead = self.tasks.get_mut(lead_id)?;
        let riders = std::mem::take(&mut lead.steps[index].riders);
        let base = lead.landing.clone()?;
        lead.spec.steps[index].deliver.as_ref()?;
        // A landing that landed (its own, not a rider's): the base's
        // batches may grow again.
        let rode = lead.steps[index].batch_lead.is_some();
        if report.outcome == AttemptEnd::Succeeded
            && !rode
            && let Some(room) = self.batches.room.get_mut(&base)
        {
            *room = room.saturating_mul(2);
        }
        if riders.is_empty() {
            return None;
        }
        let output: serde_json::Value =
            serde_json::from_str(report.output_json.trim()).unwrap_or_default();
        let said = |id: &str| {
            output["batch"]
                .as_array()
                .and_then(|b| b.iter().find(|r| r["task"] == id).cloned())
                .unwrap_or_default()
        };
        // The members whose work the failed checks ran on: a split finds
        // which of them broke it.
        let red = report.outcome == AttemptEnd::Failed
            && report.conflict.is_none()
            && report.verification.is_some();
        let mut merged: Vec<Arc<str>> = vec![lead_id.clone()];
        for id in &riders {
            let entry = said(id);
            if entry["merged"].as_bool() == Some(true) {
                merged.push(id.clone());
            }
        }
        let split = (red && merged.len() > 1).then(|| {
            let names = merged
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "the checks failed on the merge of {} tasks' work onto {} ({names}): the batch is split, and each half lands in turn",
                merged.len(),
                base.1
            )
        });
        for id in riders {
            let Some(active) = self.tasks.get_mut(&id) else {
                continue;
            };
            let Some(&j) = active.index.get(DELIVER_STEP) else {
                continue;
            };
            let status = active.run.step(j);
            if status.state != StepState::Running {
                active.steps[j].batch_lead = None;
                continue;
            }
            let entry = said(&id);
            let attempt = AttemptKey {
                task_id: id.to_string(),
                step_id: DELIVER_STEP.into(),
                attempt: status.attempt,
            };
            let landed =
                report.outcome == AttemptEnd::Succeeded && entry["landed"].as_bool() == Some(true);
            let outcome = if landed {
                AttemptEnd::Succeeded
            } else {
                AttemptEnd::Failed
            };
            let mut result = StepResult {
                verification: report.verification.clone(),
                ..StepResult::ended(attempt, outcome)
            };
            if landed {
                let head = entry["head"].as_str().unwrap_or_default().to_string();
                let branch = tidewright_core::repo::task_branch(&id);
                let pushed = entry["pushed"].as_bool() == Some(true);
                result.output_json = serde_json::json!({
                    "branch": branch,
                    "head": head,
                    "changed": true,
                    "pushed": pushed,
                    "landed": output["landed"],
                    "base": output["base"],
                    "tip": output["tip"],
                    "batch": lead_id.as_ref(),
                })
                .to_string();
                result.work = Some(tidewright_core::StepWork {
                    branch,
                    base_commit: active
                        .spec
                        .repo
                        .as_ref()
                        .map(|r| r.commit.clone())
                        .unwrap_or_default(),
                    head_commit: head,
                    pushed,
                    ..tidewright_core::StepWork::default()
                });
                self.report_as(worker, result, None);
                self.ride_ended(&id);
            } else {
                let why = split.clone().unwrap_or_else(|| match entry["conflict"].as_array() {
                    Some(paths) => format!(
                        "its work conflicts with the rest of task {lead_id}'s landing batch in {}: it lands on its own",
                        paths
                            .iter()
                            .filter_map(|p| p.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => format!(
                        "task {lead_id}'s landing, which it rode in, did not land it: it waits its turn again"
                    ),
                });
                result.error.clone_from(&why);
                self.report_as(worker, result, Some(why));
                self.ride_ended(&id);
            }
        }
        let why = split?;
        // The older half first: the queue lands tasks in the order they
        // were made.
        let half = merged.len().div_ceil(2);
        self.batches.room.insert(base.clone(), half);
        let later = merged.split_off(half);
        let halves = self.batches.splits.entry(base).or_default();
        halves.push_front(later);
        halves.push_front(merged);
        self.metrics.landing("split", None);
        Some(why)
    }

    /// Task `id`'s deliver step rides in no landing any more.
    fn ride_ended(&mut self, id: &Arc<str>) {
        if let Some(active) = self.tasks.get_mut(id)
            && let Some(&j) = active.index.get(DELIVER_STEP)
        {
            active.steps[j].batch_lead = None;
        }
    }

    /// The riders of a deliver step whose attempt went back to the queue
    /// (its worker gone, or handed back): they wait their turn again.
    pub(crate) fn requeue_riders(&mut self, lead_id: &Arc<str>, index: usize, reason: &str) {
        let Some(lead) = self.tasks.get_mut(lead_id) else {
            return;
        };
        for id in std::mem::take(&mut lead.steps[index].riders) {
            let Some(active) = self.tasks.get_mut(&id) else {
                continue;
            };
            let Some(&j) = active.index.get(DELIVER_STEP) else {
                continue;
            };
            active.steps[j].batch_lead = None;
            if active.run.step(j).state == StepState::Running {
                self.requeue(
                    &id,
                    j,
                    &format!("{reason} (it rode in task {lead_id}'s landing)"),
                );
            }
        }
    }
}

/// Whether `active`'s deliver step is ready and waits for its turn to
/// land: queued, or held for another task's.
fn waits_its_turn(active: &Active) -> bool {
    let Some(&j) = active.index.get(DELIVER_STEP) else {
        return false;
    };
    let live = &active.steps[j];
    active.run.state() != TaskState::Paused
        && active.run.step(j).state == StepState::Queued
        && !live.stopped_for_budget
        && (live.queued.is_some() || live.held_by.is_some())
}

/// The paths a task's steps say they touch, when every step that does
/// work says so; `None` when one may touch anything.
fn task_touches(active: &Active) -> Option<Vec<String>> {
    let mut all = Vec::new();
    for step in active.spec.steps.iter().filter(|s| s.deliver.is_none()) {
        if step.touches.is_empty() {
            return None;
        }
        all.extend(step.touches.iter().cloned());
    }
    (!all.is_empty()).then_some(all)
}
