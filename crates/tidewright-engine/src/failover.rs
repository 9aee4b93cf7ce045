//! Failover (see [`tidewright_core::failover`]): a queued agent step that
//! names `fallback` runtimes moves to the first one some worker runs now,
//! when a provider's limit pauses every pool that runs its own; without
//! the task's `failback`, a later step goes where an earlier one of its
//! task went. A step handed back at its limit carries its work so far and
//! its agent's summary to the next agent. Each move is written into the
//! task's spec in the round that decides it, and is an event (the
//! `step.failed_over` webhook), an audit record and a metric. A tenant the
//! server's `--fallback-policy` forbids waits, and is told why.

use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::failover::{Failover, kept_to, move_to};
use tidewright_core::{Capabilities, EventKind, StepState};
use tidewright_store::{AuditRecord, Write};

use crate::dispatch::agent_of;
use crate::engine::Engine;
use crate::handle::StepResult;
use crate::live::Handover;
use crate::workers::pool_of;

/// Why a queued step moves, and where.
struct Move {
    to: String,
    reason: String,
}

impl Engine {
    /// Moves each watched queued step that should move now. Called before
    /// each dispatch: a move lands in the queue under its new needs first.
    pub(crate) fn fail_over(&mut self) {
        // With no pause, only a task that keeps to where it went has a
        // step to move.
        let watched = if self.fleet.pauses.is_empty() {
            &self.failovers.kept
        } else {
            &self.failovers.tasks
        };
        if watched.is_empty() {
            return;
        }
        let watched: Vec<Arc<str>> = watched.iter().cloned().collect();
        for task_id in watched {
            let Some(active) = self.tasks.get(&task_id) else {
                // Ended, or held cold: a cold task is watched again when
                // it is read back.
                self.failovers.tasks.remove(&task_id);
                self.failovers.kept.remove(&task_id);
                continue;
            };
            let queued: Vec<usize> = (0..active.steps.len())
                .filter(|&i| {
                    active.steps[i].queued.is_some() && !active.spec.steps[i].fallback.is_empty()
                })
                .collect();
            for index in queued {
                if let Some(go) = self.fallback_for(&task_id, index) {
                    self.move_step(&task_id, index, go);
                }
            }
        }
    }

    /// Where queued step `index` goes now, if anywhere: to its first
    /// fallback some worker runs when every pool that runs its own runtime
    /// is paused for a limit; where an earlier step of its task went,
    /// without `failback`. A step its tenant may not move is told so, once.
    fn fallback_for(&mut self, task_id: &Arc<str>, index: usize) -> Option<Move> {
        let active = self.tasks.get(task_id)?;
        let step = &active.spec.steps[index];
        let own = step.agent_capability()?;
        let needs = &active.steps[index].needs;
        if !self.runs_somewhere(needs) && self.offered_somewhere(needs) {
            let reason = self.pause_reason(own);
            if !self.failovers.policy.allows(&active.tenant) {
                let why = format!(
                    "{reason}; its fallbacks are not used: the server's fallback policy forbids failover for tenant {:?}, so it waits for {own}",
                    active.tenant
                );
                self.say_once(task_id, index, why);
                return None;
            }
            let to = step
                .fallback
                .iter()
                .find(|f| self.runs_somewhere(&needs_on(needs, own, f)));
            return match to {
                Some(to) => Some(Move {
                    to: to.clone(),
                    reason,
                }),
                None => {
                    let why = format!(
                        "{reason}; none of its fallbacks ({}) runs anywhere now, so it waits",
                        step.fallback.join(", ")
                    );
                    self.say_once(task_id, index, why);
                    None
                }
            };
        }
        let (to, moved) = kept_to(&active.spec, step)?;
        let tenant_allows = self.failovers.policy.allows(&active.tenant);
        (tenant_allows && self.runs_somewhere(&needs_on(needs, own, to))).then(|| Move {
            to: to.to_string(),
            reason: format!(
                "step {moved} of the task failed over from {own} to {to}, and the task keeps to {to} (it has no failback)"
            ),
        })
    }

    /// Moves queued step `index` to `go.to`: out of the queue, its spec
    /// and needs the fallback's, its session forgotten (another CLI's),
    /// and back in the queue in its place.
    fn move_step(&mut self, task_id: &Arc<str>, index: usize, go: Move) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let step = &active.spec.steps[index];
        let Some(from) = step.agent_capability().map(str::to_string) else {
            return;
        };
        let attempt = active.run.step(index).attempt;
        let live = &mut active.steps[index];
        // Its agent's work goes with it when that agent ran on the runtime
        // it leaves.
        let handover = live.handover.take().filter(|h| h.runtime == from);
        let carried = handover.as_ref().is_some_and(|h| !h.head.is_empty());
        let (head, base, summary) = handover
            .map(|h| (h.head, h.base, h.summary))
            .unwrap_or_default();
        let failover = Failover {
            preferred: step
                .failover
                .as_ref()
                .map_or_else(|| from.clone(), |f| f.preferred.clone()),
            from: from.clone(),
            after_attempt: attempt,
            reason: go.reason.clone(),
            head,
            base,
            summary,
        };
        let moved = move_to(step, &go.to, failover);
        if let Some(key) = live.queued.take() {
            self.queue.remove(&key);
        }
        live.needs = tidewright_core::queue::capabilities(&moved.required_capabilities());
        live.session = None;
        live.failover_said = false;
        let step_id = moved.id.clone();
        Arc::make_mut(&mut active.spec).steps[index] = moved;
        if !active.spec.failback {
            self.failovers.kept.insert(task_id.clone());
        }
        self.round.writes.push(Write::Spec {
            id: task_id.to_string(),
            spec: Box::new((*active.spec).clone()),
        });
        let now = now_micros();
        self.round.writes.push(Write::Audit(AuditRecord {
            seq: 0,
            at: now,
            actor: "tidewright".into(),
            role: "system".into(),
            action: "step.failed_over".into(),
            tenant: active.tenant.clone(),
            target: task_id.to_string(),
            outcome: "ok".into(),
            detail: format!(
                "step {step_id} (attempt {attempt}) failed over from {from} to {}{}: {}",
                go.to,
                if carried { ", with its work" } else { "" },
                go.reason
            ),
        }));
        tracing::info!(task = %task_id, step = %step_id, from = %from, to = %go.to, carried, reason = %go.reason, "a step failed over");
        self.metrics.failed_over(&from, &go.to);
        let kind = EventKind::FailedOver {
            step: step_id,
            attempt,
            from,
            to: go.to,
            reason: go.reason,
            carried,
        };
        self.round.event(task_id, active, kind);
        let live = &mut active.steps[index];
        live.enqueue(
            &mut self.queue,
            (
                &active.tenant,
                &active.key,
                active.spec.priority,
                active.created_at,
            ),
            (task_id.clone(), index),
            now,
        );
    }

    /// A step handed back at its provider's limit: what its agent left is
    /// kept for the agent that may take the step over.
    pub(crate) fn keep_handover(&mut self, task_id: &Arc<str>, index: usize, report: &StepResult) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let step = &active.spec.steps[index];
        if step.fallback.is_empty() {
            return;
        }
        let Some(runtime) = step.agent_capability().map(str::to_string) else {
            return;
        };
        let (head, base) = report
            .work
            .as_ref()
            .filter(|w| w.head_commit != w.base_commit)
            .map(|w| (w.head_commit.clone(), w.base_commit.clone()))
            .unwrap_or_default();
        active.steps[index].handover = Some(Handover {
            runtime,
            head,
            base,
            summary: report.handover.clone(),
        });
    }

    /// Whether some worker could run a step that needs `needs` now: it
    /// offers them all, and no limit pauses their agent runtime in its
    /// pool.
    fn runs_somewhere(&self, needs: &Capabilities) -> bool {
        let agent = agent_of(needs);
        self.fleet.workers.values().any(|w| {
            !w.draining
                && needs.is_subset(&w.info.capabilities)
                && agent.is_none_or(|agent| {
                    self.fleet
                        .pauses
                        .of(pool_of(&w.info))
                        .all(|(paused, _)| paused != agent)
                })
        })
    }

    /// Whether some worker offers `needs`, paused or not: a step no worker
    /// offers waits for one (unserved), not for a limit.
    fn offered_somewhere(&self, needs: &Capabilities) -> bool {
        self.fleet
            .workers
            .values()
            .any(|w| !w.draining && needs.is_subset(&w.info.capabilities))
    }

    /// Why `agent` runs nowhere: the reason of its pause that ends last.
    fn pause_reason(&self, agent: &str) -> String {
        self.fleet
            .workers
            .values()
            .flat_map(|w| self.fleet.pauses.of(pool_of(&w.info)))
            .filter(|(paused, _)| *paused == agent)
            .max_by_key(|(_, pause)| pause.until)
            .map_or_else(
                || format!("{agent} is paused for a limit"),
                |(_, pause)| pause.reason.clone(),
            )
    }

    /// Tells step `index`'s watchers `why` it stays, once until it moves
    /// or runs.
    fn say_once(&mut self, task_id: &Arc<str>, index: usize, why: String) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        if std::mem::replace(&mut active.steps[index].failover_said, true) {
            return;
        }
        let kind = EventKind::StepState {
            step: active.spec.steps[index].id.clone(),
            state: StepState::Queued,
            attempt: active.run.step(index).attempt,
            worker: String::new(),
            message: why,
            waits_for: String::new(),
            conflict: None,
        };
        self.round.event(task_id, active, kind);
    }
}

/// `needs` with the agent runtime `own` swapped for `to`.
fn needs_on(needs: &Capabilities, own: &str, to: &str) -> Capabilities {
    let mut on = needs.clone();
    on.remove(own);
    on.insert(to.to_string());
    on
}
