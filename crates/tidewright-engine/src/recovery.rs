//! Liveness and recovery: a silent worker loses its steps, which run again
//! as their next attempt. After a restart (or a failover) the engine serves
//! at once while the unfinished tasks are read back a piece at a time (the
//! [`Backlog`]); what arrives about a task not yet read waits for it. A
//! running step then waits for its worker to reclaim it (adopt) before it
//! is requeued.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use tidewright_core::UNSANDBOXED;
use tidewright_core::calendar::now_micros;
use tidewright_core::{
    AttemptKey, EventKind, Micros, StepState, StepStatus, TaskRun, TaskSpec, TaskState,
};
use tidewright_store::{AttemptWrite, TaskRecord, Unfinished};
use tidewright_store::{AuditRecord, Write};
use tokio::sync::oneshot;

use crate::backlog::Held;
use crate::cold::queue_cold;
use crate::effects::Effect;
use crate::engine::Engine;
use crate::error::Error;
use crate::handle::{Command, WorkerInfo};
use crate::live::{Active, Session, new_active};
use crate::to_worker::{Outbox, ToWorker};
use crate::workers::Orphan;

impl Engine {
    /// Holds back a command about a task still to be read (see
    /// [`Backlog`]); returns what may be handled now. A release naming
    /// several attempts is split: each waits for its own task. A cold task
    /// a command waits for is read back.
    pub(super) fn defer(&mut self, command: Command) -> Option<Command> {
        if self.cold.backlog.pending.is_empty() {
            return Some(command);
        }
        let command = match command {
            Command::Release {
                worker,
                attempts,
                reason,
            } => {
                let (held, free): (Vec<_>, Vec<_>) = attempts
                    .into_iter()
                    .partition(|a| self.cold.backlog.holds(&a.task_id));
                for attempt in held {
                    if let Some(key) = self.cold.backlog.pending(&attempt.task_id) {
                        let one = Command::Release {
                            worker,
                            attempts: vec![attempt],
                            reason: reason.clone(),
                        };
                        if self.cold.backlog.park(&key, one) {
                            self.cold.reads.wanted.push(key);
                        }
                    }
                }
                return (!free.is_empty()).then_some(Command::Release {
                    worker,
                    attempts: free,
                    reason,
                });
            }
            other => other,
        };
        let key = match &command {
            Command::Progress { attempt, .. }
            | Command::Logs { attempt, .. }
            | Command::Egress { attempt, .. }
            | Command::SessionItems { attempt, .. }
            | Command::Setup { attempt, .. }
            | Command::Session { attempt, .. }
            | Command::Adopt { attempt, .. } => self.cold.backlog.pending(&attempt.task_id),
            Command::StepResult { result, .. } => {
                self.cold.backlog.pending(&result.attempt.task_id)
            }
            Command::Cancel { task_id, .. }
            | Command::Decide { task_id, .. }
            | Command::RaiseBudget { task_id, .. }
            | Command::ApproveBudget { task_id, .. } => self.cold.backlog.pending(task_id),
            _ => None,
        };
        match key {
            Some(key) => {
                if self.cold.backlog.park(&key, command) {
                    self.cold.reads.wanted.push(key);
                }
                None
            }
            None => Some(command),
        }
    }

    /// Takes in tasks read back (a piece of the backlog, or cold tasks),
    /// then what waited for them. A queued task nobody started, read back
    /// as its place in the queue only, is held cold.
    pub(super) fn recovered(
        &mut self,
        ids: Vec<Arc<str>>,
        tasks: Vec<Unfinished>,
        mut kin: crate::kin::StoredKin,
    ) {
        // A task made since the backlog was listed may fall in the piece's
        // range; it is live already, and not among `ids`.
        let asked: HashMap<&str, &Arc<str>, foldhash::fast::RandomState> =
            ids.iter().map(|id| (&**id, id)).collect();
        let mut parked = Vec::new();
        let mut whole = Vec::new();
        let mut answered = 0;
        let mut needs = crate::cold::NeedsMemo::default();
        for task in tasks {
            let Some(&id) = asked.get(task.id()) else {
                continue;
            };
            let Some(held) = self.cold.backlog.pending.get_mut(id) else {
                continue;
            };
            answered += 1;
            parked.append(&mut held.parked);
            match task {
                // A listed task becomes cold where it is held.
                Unfinished::Queued(queued) if held.cold.is_none() => {
                    held.cold = Some(queue_cold(
                        (&mut self.queue, &self.shares),
                        id,
                        &queued,
                        &mut needs,
                    ));
                    self.cold.backlog.listed -= 1;
                    self.cold.backlog.cold += 1;
                }
                // A cold task is read back whole, never as its place; it
                // stays cold.
                Unfinished::Queued(_) => held.loading = false,
                Unfinished::Whole(task) => {
                    self.forget_held(id);
                    whole.push(*task);
                }
            }
        }
        // What was asked for and not found is finished or gone.
        if answered < ids.len() {
            for id in &ids {
                if self
                    .cold
                    .backlog
                    .pending
                    .get(id)
                    .is_some_and(|held| held.cold.is_none() || held.loading)
                    && let Some(held) = self.forget_held(id)
                {
                    parked.extend(held.parked);
                }
            }
        }
        self.recover(whole, &mut kin);
        for command in parked {
            self.handle(command);
        }
        if self.cold.backlog.listed == 0 && self.cold.backlog.total > 0 {
            tracing::info!(
                tasks = self.cold.backlog.total,
                cold = self.cold.backlog.cold,
                orphans = self.fleet.orphans.len(),
                loaded_ms = self.cold.backlog.started.elapsed().as_millis() as u64,
                "recovered the unfinished tasks"
            );
            self.cold.backlog.total = 0;
            self.cold.backlog.pending.shrink_to_fit();
        }
    }

    /// Takes a task out of the backlog; a cold one's steps leave the
    /// queue (they queue again once it is whole).
    fn forget_held(&mut self, id: &str) -> Option<Held> {
        let held = self.cold.backlog.take(id)?;
        for key in held.cold.iter().flat_map(|keys| keys.iter()) {
            self.queue.remove(key);
        }
        Some(held)
    }

    /// Rebuilds live state from stored tasks. Steps that were running wait
    /// for their worker to reclaim them (see [`Orphan`]). `kin`: what the
    /// store says their descendants spent (see `family`).
    pub(super) fn recover(&mut self, tasks: Vec<TaskRecord>, kin: &mut crate::kin::StoredKin) {
        let deadline = now_micros() + self.fleet.liveness.ttl.as_micros() as Micros;
        let mut piece = Vec::with_capacity(tasks.len());
        for mut record in tasks {
            let mut spec = std::mem::take(&mut record.spec);
            // Parsed from JSON, the steps have room for four or more; kept
            // for the task's life, that room would be a third of a
            // backlog's memory.
            spec.steps.shrink_to_fit();
            let spec = Arc::new(spec);
            let run = restore_run(&record, &spec);
            let id: Arc<str> = Arc::from(record.id.as_str());
            let mut active = restore_active(&record, spec, run);
            active.key = self.shares.key_of(&active.tenant, &active.spec);
            for (index, step) in record.steps.iter().enumerate() {
                if step.state == StepState::Running {
                    self.fleet.orphans.insert(
                        (id.clone(), index),
                        Orphan {
                            attempt: step.attempt,
                            deadline,
                        },
                    );
                }
            }
            self.queue_ready(&id, &mut active);
            let deadlines: Vec<Micros> = record.steps.iter().map(|s| s.approval_deadline).collect();
            self.hold_at_gates(&id, &mut active, &deadlines);
            self.failovers.watch(&id, &active.spec);
            self.tasks.insert(id.clone(), active);
            piece.push(id);
        }
        // Once the whole piece is in memory, so a child read back in it
        // finds its parent whatever their order.
        if !kin.is_empty() {
            let read: HashSet<&str> = piece.iter().map(|id| &**id).collect();
            for id in &piece {
                if let Some(kin) = kin.remove(&**id) {
                    self.settle_family(id, kin, &read);
                }
            }
        }
        for id in &piece {
            self.adopt_child(id);
            // Its attempts all ended before the restart: it chooses now.
            self.choose_ready(id);
            // A tenant may have spent its budget while the task was cold.
            self.pause_if_tenant_spent(id);
        }
    }

    /// Brings a finished task back to life from its stored record, charged
    /// with what its descendants spent (`kin`; all ended with it).
    pub(super) fn reopen(
        &mut self,
        mut record: TaskRecord,
        kin: Vec<(String, tidewright_core::Cost)>,
    ) -> Result<oneshot::Receiver<()>, Error> {
        if self.tasks.contains_key(record.id.as_str()) || self.cold.backlog.holds(&record.id) {
            return Err(Error::FailedPrecondition(format!(
                "task {} is still running",
                record.id
            )));
        }
        self.sweeper.refuse_expired(&record)?;
        let spec = Arc::new(std::mem::take(&mut record.spec));
        let mut run = restore_run(&record, &spec);
        let changes = run.reopen("retried by request").ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "task {} is {}; only a failed or cancelled task can be retried",
                record.id, record.state
            ))
        })?;
        let id: Arc<str> = Arc::from(record.id.as_str());
        let mut active = restore_active(&record, spec, run);
        active.key = self.shares.key_of(&active.tenant, &active.spec);
        // As its retry policy's attempts, a verified step's rounds start
        // afresh; its session is still told what failed last.
        for live in &mut active.steps {
            live.verified = None;
        }
        self.failovers.watch(&id, &active.spec);
        self.tasks.insert(id.clone(), active);
        // A step the rerun gates again enters its wait in `apply`.
        self.apply(&id, changes, None);
        if !kin.is_empty() {
            self.settle_family(&id, kin, &HashSet::new());
        }
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        Ok(committed)
    }

    /// Forgets a worker: its stream ends and its steps run again as their
    /// next attempt.
    pub(super) fn drop_worker(&mut self, worker_id: u64, reason: &str) {
        let Some(worker) = self.fleet.workers.remove(&worker_id) else {
            return;
        };
        tracing::info!(worker = %worker.info.name, id = worker_id, running = worker.running.len(), reason, "worker dropped");
        self.fleet.workers.departed(&worker, reason);
        for (task_id, index) in &worker.running {
            self.requeue(task_id, *index, reason);
        }
        // After its steps are queued again: they are among those it was
        // the last to serve.
        if !worker.draining {
            self.fleet
                .unserved
                .withdraws(&worker.info.capabilities, &self.queue);
        }
    }

    /// A worker silent past the worker timeout (stopped, partitioned, wedged)
    /// loses its steps; whatever it reports later is fenced off.
    pub(super) fn expire_silent_workers(&mut self) {
        let ttl = self.fleet.liveness.ttl.as_micros() as Micros;
        let now = now_micros();
        let silent: Vec<(u64, String)> = self
            .fleet
            .workers
            .iter()
            .filter(|(_, w)| now - w.last_seen > ttl)
            .map(|(id, w)| {
                (
                    *id,
                    format!(
                        "worker {} was silent for {:.1}s",
                        w.info.name,
                        (now - w.last_seen) as f64 / 1e6
                    ),
                )
            })
            .collect();
        for (id, reason) in silent {
            tracing::warn!(%reason, "lease expired");
            self.drop_worker(id, &reason);
        }
    }

    pub(super) fn requeue(&mut self, task_id: &Arc<str>, index: usize, reason: &str) {
        // The tasks riding in its landing wait their turn again before it
        // does: so it, the oldest, is first in line.
        self.requeue_riders(task_id, index, reason);
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let live = &mut active.steps[index];
        live.worker = None;
        self.metrics.attempt_finished("lost", None);
        self.round.writes.push(Write::Attempt(AttemptWrite {
            task_id: task_id.to_string(),
            step_id: active.spec.steps[index].id.clone(),
            attempt: active.run.step(index).attempt,
            // After a restart the engine does not know these; the step row
            // still says who ran it.
            worker: (!live.worker_name.is_empty()).then(|| live.worker_name.clone()),
            started_at: (live.attempt_started != 0).then_some(live.attempt_started),
            finished_at: Some(now_micros()),
            state: Some(StepState::Queued),
            error: Some(reason.to_string()),
            ..AttemptWrite::default()
        }));
        match active.run.requeue(index, reason) {
            Ok(changes) => self.apply(task_id, changes, None),
            Err(e) => tracing::error!(task = %task_id, index, error = %e, "could not requeue"),
        }
    }

    /// A reconnecting worker still runs an attempt the store knows as running.
    pub(super) fn adopt(&mut self, worker_id: u64, attempt: AttemptKey) {
        let Some((task_id, active)) = self.tasks.get_key_value(attempt.task_id.as_str()) else {
            return;
        };
        let Some(&index) = active.index.get(&attempt.step_id) else {
            return;
        };
        let key = (task_id.clone(), index);
        if self
            .fleet
            .orphans
            .get(&key)
            .is_none_or(|o| o.attempt != attempt.attempt)
        {
            return;
        }
        // A worker gone while its claim waited for the task leaves the step
        // an orphan, requeued when its deadline passes.
        let Some(worker) = self.fleet.workers.get_mut(&worker_id) else {
            return;
        };
        self.fleet.orphans.remove(&key);
        worker.running.insert(key.clone());
        let name = worker.info.name.clone();
        if let Some(active) = self.tasks.get_mut(&key.0) {
            let live = &mut active.steps[index];
            live.worker = Some(worker_id);
            live.worker_name.clone_from(&name);
        }
        tracing::info!(task = %key.0, step = %attempt.step_id, worker = %name, "reclaimed a running step");
        self.event(
            &key.0,
            EventKind::StepState {
                step: attempt.step_id,
                state: StepState::Running,
                attempt: attempt.attempt,
                worker: name,
                message: "reclaimed by its worker after a control-plane restart".into(),
                waits_for: String::new(),
                conflict: None,
            },
        );
        // Its task paused for a budget (before the restart, its stop never
        // answered; or as it was read back): the attempt stops now, as it
        // would have had its worker been known then.
        if self
            .tasks
            .get(&key.0)
            .is_some_and(|active| active.run.state() == TaskState::Paused)
        {
            if let Some(active) = self.tasks.get_mut(&key.0) {
                active.steps[index].stopped_for_budget = true;
            }
            let reason = "budget: the task is paused for its budget";
            self.send_stops(&key.0, vec![index], reason, true);
        }
        // Another attempt of its step passed first (before the restart,
        // its stop never answered): it stops now.
        let winner = self.tasks.get(&key.0).and_then(|active| {
            let won = active.run.outrun_by(index)?;
            Some(active.spec.steps[won].id.clone())
        });
        if let Some(winner) = winner {
            let reason = format!("attempt {winner} passed first");
            self.send_cancels(&key.0, vec![index], &reason);
        }
    }

    pub(super) fn expire_orphans(&mut self) {
        if self.fleet.orphans.is_empty() {
            return;
        }
        let now = now_micros();
        let expired: Vec<(Arc<str>, usize)> = self
            .fleet
            .orphans
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.fleet.orphans.remove(&key);
            self.requeue(
                &key.0,
                key.1,
                "no worker reclaimed it after a control-plane restart",
            );
        }
    }
}

/// A stored task's state machine, as the store last saw it.
pub(super) fn restore_run(record: &TaskRecord, spec: &TaskSpec) -> TaskRun {
    let statuses = record
        .steps
        .iter()
        .map(|s| StepStatus {
            state: s.state,
            attempt: s.attempt,
        })
        .collect();
    TaskRun::restore(spec, record.state, statuses)
}

/// Live state for a stored task; succeeded steps keep their outputs for
/// their dependents.
pub(super) fn restore_active(record: &TaskRecord, spec: Arc<TaskSpec>, run: TaskRun) -> Active {
    let mut active = new_active(
        spec,
        (record.tenant.clone(), record.trace_context.clone()),
        record.created_at,
        run,
        record.last_seq + 1,
    );
    let specs = active.spec.clone();
    for ((live, step), spec) in active.steps.iter_mut().zip(&record.steps).zip(&specs.steps) {
        if step.state == StepState::Succeeded {
            live.output = Some(step.output_json.clone());
            live.head = step.work.as_ref().map(|w| w.head_commit.clone());
            live.work.clone_from(&step.work);
        }
        // Attempts before a failover ran another CLI, whose sessions the
        // step's runtime now cannot resume.
        let after = spec.failover.as_ref().map_or(0, |f| f.after_attempt);
        let since = step.attempts.partition_point(|a| a.attempt <= after);
        live.session = last_session(&step.attempts[since..]);
        crate::verify::restore_round(live, spec.verify.as_ref(), &step.attempts);
    }
    crate::land::restore_fixes(&mut active, record);
    crate::review::restore_reviews(&mut active, record);
    active.spent = record.cost;
    active
}

/// The session the newest attempt with one ran: the attempt that started
/// it, the newest that ran in it, and what every attempt in it cost.
pub(super) fn last_session(attempts: &[tidewright_store::AttemptRecord]) -> Option<Session> {
    let last = attempts.iter().rev().find(|a| !a.session_id.is_empty())?;
    let mut in_session = attempts.iter().filter(|a| a.session_id == last.session_id);
    let first = in_session.next()?;
    Some(Session {
        id: last.session_id.clone(),
        attempt: first.attempt,
        last_attempt: last.attempt,
        usd: first.cost.usd + in_session.map(|a| a.cost.usd).sum::<f64>(),
    })
}

impl Engine {
    /// A worker connected: it is told its id and heartbeat, and claims the
    /// attempts it still runs (after a restart of the control plane).
    pub(crate) fn register(
        &mut self,
        info: WorkerInfo,
        running: Vec<AttemptKey>,
        outbox: Outbox,
    ) -> u64 {
        tracing::info!(worker = %info.name, slots = info.slots, isolation = %info.isolation, "worker registered");
        if info.isolation.starts_with(UNSANDBOXED) {
            // A worker whose steps see what it sees is a choice someone
            // made (`--sandbox=off`): it is on the record, each time.
            self.round.writes.push(Write::Audit(AuditRecord {
                seq: 0,
                at: tidewright_core::calendar::now_micros(),
                actor: info.name.clone(),
                role: "worker".into(),
                action: "worker.unsandboxed".into(),
                tenant: String::new(),
                target: String::new(),
                outcome: "ok".into(),
                detail: format!("steps run without a sandbox: {}", info.isolation),
            }));
        }
        let registered = outbox.clone();
        let id = self.fleet.workers.add(info, outbox);
        let _ = registered.send(ToWorker::Registered {
            worker_id: id,
            heartbeat_interval: self.fleet.liveness.heartbeat_interval,
        });
        // Through the commands' door: an attempt of a task not yet read
        // back waits for it there.
        for attempt in running {
            self.handle(Command::Adopt {
                worker: id,
                attempt,
            });
        }
        id
    }

    /// A worker hands attempts back unfinished: they run again, uncounted.
    pub(crate) fn release(&mut self, worker: u64, attempts: Vec<AttemptKey>, reason: &str) {
        for attempt in attempts {
            if let Some((task_id, index)) = self.current(worker, &attempt) {
                if let Some(w) = self.fleet.workers.get_mut(&worker) {
                    w.running.remove(&(task_id.clone(), index));
                }
                self.requeue(&task_id, index, reason);
            }
        }
    }

    /// A worker's stream ended: its attempts run again elsewhere.
    pub(crate) fn disconnected(&mut self, worker: u64) {
        let reason = self
            .fleet
            .workers
            .get(&worker)
            .map(|w| format!("worker {} disconnected", w.info.name));
        if let Some(reason) = reason {
            self.drop_worker(worker, &reason);
        }
    }
}
