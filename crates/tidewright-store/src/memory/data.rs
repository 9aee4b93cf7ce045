//! The memory store's data, and how a write applies to it: whole, under
//! the store's one lock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use tidewright_core::{Cost, Event, Micros, TenantBudget, TenantShare};

use crate::fleet;
use crate::retention::{Expired, Expiring, Retention, Trim};
use crate::webhooks::{Delivery, DeliveryState, Webhook};
use crate::{
    AttemptRecord, AttemptWrite, AuditRecord, Checkpoint, Created, Error, NewTask, Result,
    StateChange, StateKey, StateOutcome, StepBranch, StepRecord, StepWrite, TaskRecord, Write,
};

/// One store's data; [`MemoryStore::reopen`] gives another handle on it,
/// as a restart finds what was committed.
#[derive(Default)]
pub(super) struct Data {
    /// By id: ids sort by creation time. Steps carry no attempts here.
    pub(super) tasks: BTreeMap<String, TaskRecord>,
    /// `tenant/key` → task id.
    pub(super) keys: HashMap<String, String>,
    pub(super) events: HashMap<String, BTreeMap<u64, Event>>,
    /// Commit number → the (task, sequence number) of its events in the
    /// fleet's order (see `fleet`); a commit is one write or create.
    pub(super) fleet: BTreeMap<u64, Vec<(String, u64)>>,
    /// Commit number → when it committed, for trimming the fleet's order.
    pub(super) fleet_at: BTreeMap<u64, Micros>,
    /// (task, step) → attempt number → its row.
    pub(super) attempts: HashMap<(String, String), BTreeMap<u32, AttemptRecord>>,
    pub(super) state: HashMap<StateKey, StateRow>,
    /// Oldest first; the oldest may have been trimmed.
    pub(super) audit: VecDeque<AuditRecord>,
    /// The last audit sequence number given.
    pub(super) audit_seq: u64,
    /// What is kept of removed tasks, by id.
    pub(super) expired: BTreeMap<String, Expired>,
    pub(super) budgets: BTreeMap<String, TenantBudget>,
    pub(super) shares: BTreeMap<String, TenantShare>,
    pub(super) cost_sums: BTreeMap<tidewright_core::cost_sums::CostKey, (Cost, u64)>,
    /// (task, step) → its newest checkpoint.
    pub(super) checkpoints: HashMap<(String, String), Checkpoint>,
    pub(super) branches: HashMap<(String, String), StepBranch>,
    pub(super) webhooks: BTreeMap<String, Webhook>,
    /// By (tenant, name).
    pub(super) schedules: BTreeMap<(String, String), crate::schedules::Schedule>,
    pub(super) triggers: BTreeMap<(String, String), crate::triggers::Trigger>,
    /// By id: ids sort by creation time.
    pub(super) deliveries: BTreeMap<String, Delivery>,
    pub(super) webhook_cursor: u64,
}

/// A shared-state row: a deleted value keeps its version.
#[derive(Clone)]
pub(super) struct StateRow {
    pub(super) value_json: Option<String>,
    pub(super) version: u64,
    pub(super) updated_at: Micros,
    pub(super) expires_at: Micros,
}

impl StateRow {
    pub(super) fn live(&self, now: Micros) -> bool {
        self.value_json.is_some() && (self.expires_at == 0 || self.expires_at > now)
    }
}

pub(super) fn scoped_key(task: &NewTask) -> Option<String> {
    task.idempotency_key
        .as_ref()
        .map(|key| format!("{}/{key}", task.tenant))
}

impl Data {
    pub(super) fn create(&mut self, tasks: Vec<NewTask>) -> Result<Vec<Created>> {
        // First what each would do, so a task that cannot be made fails the
        // whole call with nothing applied.
        let mut keys: HashMap<String, String> = HashMap::new();
        let mut ids = HashSet::new();
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let key = scoped_key(task);
            let found = key
                .as_ref()
                .and_then(|k| self.keys.get(k).or_else(|| keys.get(k)));
            if let Some(id) = found {
                outcomes.push(Created::Existing(id.clone()));
                continue;
            }
            if self.tasks.contains_key(&task.id) || !ids.insert(task.id.clone()) {
                return Err(Error::Conflict(format!("task {} exists", task.id)));
            }
            if let Some(key) = key {
                keys.insert(key, task.id.clone());
            }
            outcomes.push(Created::New(task.id.clone()));
        }
        let mut entries = fleet::Entries::default();
        for (task, outcome) in tasks.into_iter().zip(&outcomes) {
            if matches!(outcome, Created::New(_)) {
                self.insert(task, &mut entries);
            }
        }
        self.commit_fleet(entries);
        Ok(outcomes)
    }

    pub(super) fn insert(&mut self, task: NewTask, entries: &mut fleet::Entries) {
        if let Some(key) = scoped_key(&task) {
            self.keys.insert(key, task.id.clone());
        }
        let steps = task
            .spec
            .steps
            .iter()
            .zip(&task.step_states)
            .map(|(step, state)| StepRecord::new(&step.id, *state))
            .collect();
        for event in task.events {
            self.store_event(event, entries);
        }
        if let Some(record) = task.audit {
            self.keep_audit(record);
        }
        let record = TaskRecord {
            id: task.id.clone(),
            tenant: task.tenant,
            spec: task.spec,
            state: task.state,
            idempotency_key: task.idempotency_key,
            message: task.message,
            created_at: task.created_at,
            started_at: 0,
            finished_at: if task.state.is_terminal() {
                task.created_at
            } else {
                0
            },
            steps,
            last_seq: 0,
            cost: Cost::default(),
            plan_json: task.plan_json,
            trace_context: task.trace_context,
            expires_at: 0,
        };
        self.tasks.insert(task.id, record);
    }

    /// Applies a batch whole, or (a task's id or key, or an event's
    /// sequence number, taken) nothing of it.
    pub(super) fn apply(&mut self, writes: Vec<Write>) -> Result<()> {
        let mut seqs = HashSet::new();
        let (mut ids, mut keys) = (HashSet::new(), HashSet::new());
        for write in &writes {
            if let Write::Create(task) = write {
                let key = scoped_key(task);
                if self.tasks.contains_key(&task.id)
                    || !ids.insert(task.id.as_str())
                    || key.is_some_and(|k| self.keys.contains_key(&k) || !keys.insert(k))
                {
                    return Err(Error::Conflict(format!("task {} exists", task.id)));
                }
            }
            if let Write::Event(event) = write {
                let taken = self
                    .events
                    .get(&event.task_id)
                    .is_some_and(|e| e.contains_key(&event.seq));
                if taken || !seqs.insert((event.task_id.as_str(), event.seq)) {
                    return Err(Error::Conflict(format!(
                        "event {}/{} exists",
                        event.task_id, event.seq
                    )));
                }
            }
        }
        let mut entries = fleet::Entries::default();
        for write in writes {
            match write {
                Write::Task(write) => {
                    if let Some(task) = self.tasks.get_mut(&write.id) {
                        task.state = write.state;
                        task.message = write.message;
                        task.started_at = write.started_at.unwrap_or(task.started_at);
                        task.finished_at = write.finished_at.unwrap_or(task.finished_at);
                    }
                }
                Write::Step(write) => self.update_step(write),
                Write::Attempt(write) => self.upsert_attempt(write),
                Write::Create(task) => self.insert(*task, &mut entries),
                Write::Event(event) => self.store_event(event, &mut entries),
                Write::Audit(record) => self.keep_audit(record),
                Write::Spec { id, spec } => {
                    if let Some(task) = self.tasks.get_mut(&id) {
                        task.spec = *spec;
                    }
                }
                Write::TenantBudget { tenant, budget } => {
                    if budget.is_empty() {
                        self.budgets.remove(&tenant);
                    } else {
                        self.budgets.insert(tenant, budget);
                    }
                }
                Write::TenantShare { tenant, share } => {
                    if share.is_default() {
                        self.shares.remove(&tenant);
                    } else {
                        self.shares.insert(tenant, share);
                    }
                }
                Write::CostSum { sum, expire_before } => {
                    let kept = self.cost_sums.entry(sum.key).or_default();
                    kept.0 += sum.cost;
                    kept.1 += sum.attempts;
                    self.cost_sums.retain(|key, _| key.day >= expire_before);
                }
                Write::Checkpoint(checkpoint) => self.keep_checkpoint(*checkpoint),
                Write::Branch(branch) => self.keep_branch(*branch),
                Write::ExpireKept { finished_before } => {
                    let tasks = &self.tasks;
                    let unexpired = |task_id: &String| {
                        tasks
                            .get(task_id)
                            .is_some_and(|t| t.finished_at == 0 || t.finished_at >= finished_before)
                    };
                    self.checkpoints
                        .retain(|(task_id, _), _| unexpired(task_id));
                    self.branches.retain(|(task_id, _), _| unexpired(task_id));
                }
                Write::Expire { tasks, at } => {
                    for task in tasks {
                        self.expire(task, at);
                    }
                }
                Write::Trim(trim) => self.trim(trim),
                Write::Webhook(webhook) => {
                    self.webhooks.insert(webhook.id.clone(), *webhook);
                }
                Write::Schedule(schedule) => {
                    let key = (schedule.tenant.clone(), schedule.spec.name.clone());
                    self.schedules.insert(key, *schedule);
                }
                Write::RemoveSchedule { tenant, name } => {
                    self.schedules.remove(&(tenant, name));
                }
                Write::Trigger(trigger) => {
                    let key = (trigger.tenant.clone(), trigger.spec.name.clone());
                    self.triggers.insert(key, *trigger);
                }
                Write::RemoveTrigger { tenant, name } => {
                    self.triggers.remove(&(tenant, name));
                }
                Write::RemoveWebhook { id } => {
                    self.webhooks.remove(&id);
                    self.deliveries.retain(|_, d| d.webhook_id != id);
                }
                Write::Deliveries { cursor, deliveries } => {
                    for delivery in deliveries {
                        self.deliveries.insert(delivery.id.clone(), delivery);
                    }
                    if let Some(cursor) = cursor {
                        self.webhook_cursor = cursor;
                    }
                }
            }
        }
        self.commit_fleet(entries);
        Ok(())
    }

    pub(super) fn keep_audit(&mut self, record: AuditRecord) {
        self.audit_seq += 1;
        let seq = self.audit_seq;
        self.audit.push_back(AuditRecord { seq, ..record });
    }

    /// Up to `limit` finished tasks whose window had passed at `now`.
    pub(super) fn expiring(
        &self,
        retention: &Retention,
        now: Micros,
        limit: usize,
    ) -> Vec<Expiring> {
        self.tasks
            .values()
            .filter(|task| retention.task_expires_at(task).is_some_and(|at| at < now))
            .take(limit)
            .map(|task| Expiring {
                id: task.id.clone(),
                tenant: task.tenant.clone(),
                finished_at: task.finished_at,
            })
            .collect()
    }

    /// Removes a task with everything of it, if it is still finished when
    /// it was found to be.
    fn expire(&mut self, task: Expiring, at: Micros) {
        let finished = |t: &TaskRecord| t.finished_at > 0 && t.finished_at == task.finished_at;
        if !self.tasks.get(&task.id).is_some_and(finished) {
            return;
        }
        let Some(removed) = self.tasks.remove(&task.id) else {
            return;
        };
        if let Some(key) = &removed.idempotency_key {
            self.keys.remove(&format!("{}/{key}", removed.tenant));
        }
        self.events.remove(&task.id);
        self.attempts.retain(|(id, _), _| *id != task.id);
        self.checkpoints.retain(|(id, _), _| *id != task.id);
        self.branches.retain(|(id, _), _| *id != task.id);
        self.state
            .retain(|key, _| !(key.tenant == removed.tenant && key.scope == task.id));
        let pushes: Vec<String> = self
            .webhooks
            .values()
            .filter(|w| w.push.as_ref().is_some_and(|p| p.task_id == task.id))
            .map(|w| w.id.clone())
            .collect();
        for id in pushes {
            self.webhooks.remove(&id);
            self.deliveries.retain(|_, d| d.webhook_id != id);
        }
        self.expired.insert(
            task.id.clone(),
            Expired {
                id: task.id,
                tenant: removed.tenant,
                finished_at: removed.finished_at,
                expired_at: at,
            },
        );
    }

    /// Removes history older than its window, `trim.limit` rows of each at
    /// most, oldest first.
    fn trim(&mut self, trim: Trim) {
        let limit = trim.limit;
        if let Some(before) = trim.fleet_before {
            // The newest row stays: the next commit is numbered after it.
            let newest = self.fleet.last_key_value().map_or(0, |(c, _)| *c);
            let old: Vec<u64> = self
                .fleet_at
                .iter()
                .take_while(|(commit, at)| **at < before && **commit < newest)
                .take(limit)
                .map(|(commit, _)| *commit)
                .collect();
            for commit in old {
                self.fleet.remove(&commit);
                self.fleet_at.remove(&commit);
            }
        }
        if let Some(before) = trim.audit_before {
            for _ in 0..limit {
                if self.audit.front().is_none_or(|r| r.at >= before) {
                    break;
                }
                self.audit.pop_front();
            }
        }
        if let Some(before) = trim.expired_before {
            let old: Vec<String> = self
                .expired
                .values()
                .filter(|e| e.expired_at < before)
                .take(limit)
                .map(|e| e.id.clone())
                .collect();
            for id in old {
                self.expired.remove(&id);
            }
        }
        if let Some(before) = trim.deliveries_before {
            let old: Vec<String> = self
                .deliveries
                .range(..before)
                .filter(|(_, d)| d.state != DeliveryState::Pending)
                .take(limit)
                .map(|(id, _)| id.clone())
                .collect();
            for id in old {
                self.deliveries.remove(&id);
            }
        }
    }

    /// Keeps a checkpoint of the step's current attempt, unless a newer
    /// attempt's is kept.
    pub(super) fn keep_checkpoint(&mut self, checkpoint: Checkpoint) {
        let current = self
            .tasks
            .get(&checkpoint.task_id)
            .and_then(|t| t.steps.iter().find(|s| s.id == checkpoint.step_id))
            .is_some_and(|s| s.attempt == checkpoint.attempt);
        let key = (checkpoint.task_id.clone(), checkpoint.step_id.clone());
        let newer_kept = self
            .checkpoints
            .get(&key)
            .is_some_and(|kept| kept.attempt > checkpoint.attempt);
        if current && !newer_kept {
            self.checkpoints.insert(key, checkpoint);
        }
    }

    /// Keeps a branch of the step's current attempt, unless a newer
    /// attempt's is kept.
    pub(super) fn keep_branch(&mut self, branch: StepBranch) {
        let current = self
            .tasks
            .get(&branch.task_id)
            .and_then(|t| t.steps.iter().find(|s| s.id == branch.step_id))
            .is_some_and(|s| s.attempt == branch.attempt);
        let key = (branch.task_id.clone(), branch.step_id.clone());
        let newer_kept = self
            .branches
            .get(&key)
            .is_some_and(|kept| kept.attempt > branch.attempt);
        if current && !newer_kept {
            self.branches.insert(key, branch);
        }
    }

    /// Keeps an event, and its place in the fleet's order in `entries`.
    pub(super) fn store_event(&mut self, event: Event, entries: &mut fleet::Entries) {
        entries.push(&event);
        self.events
            .entry(event.task_id.clone())
            .or_default()
            .insert(event.seq, event);
    }

    /// Ends a commit: its fleet row, when it stored fleet events.
    pub(super) fn commit_fleet(&mut self, entries: fleet::Entries) {
        let last = self.fleet.last_key_value().map_or(0, |(c, _)| *c);
        let now = tidewright_core::calendar::now_micros();
        for (commit, row) in entries.rows(last) {
            self.fleet.insert(commit, row.to_vec());
            self.fleet_at.insert(commit, now);
        }
    }

    pub(super) fn step_mut(&mut self, task_id: &str, step_id: &str) -> Option<&mut StepRecord> {
        self.tasks
            .get_mut(task_id)?
            .steps
            .iter_mut()
            .find(|s| s.id == step_id)
    }

    pub(super) fn update_step(&mut self, write: StepWrite) {
        let Some(step) = self.step_mut(&write.task_id, &write.step_id) else {
            return;
        };
        step.state = write.state.unwrap_or(step.state);
        step.attempt = write.attempt.unwrap_or(step.attempt);
        if let Some(worker) = write.worker {
            step.worker = worker;
        }
        step.started_at = write.started_at.unwrap_or(step.started_at);
        step.finished_at = write.finished_at.unwrap_or(step.finished_at);
        if let Some(output) = write.output_json {
            step.output_json = output;
        }
        if let Some(error) = write.error {
            step.error = error;
        }
        if let Some(exit_code) = write.exit_code {
            step.exit_code = exit_code;
        }
        if let Some((fraction, message)) = write.progress {
            step.progress = fraction;
            step.progress_message = message;
        }
        step.approval_deadline = write.approval_deadline.unwrap_or(step.approval_deadline);
        if let Some(work) = write.work {
            step.work = work;
        }
    }

    pub(super) fn upsert_attempt(&mut self, write: AttemptWrite) {
        let row = self
            .attempts
            .entry((write.task_id, write.step_id))
            .or_default()
            .entry(write.attempt)
            .or_insert_with(|| AttemptRecord::new(write.attempt));
        if let Some(worker) = write.worker {
            row.worker = worker;
        }
        row.started_at = write.started_at.unwrap_or(row.started_at);
        row.finished_at = write.finished_at.unwrap_or(row.finished_at);
        row.state = write.state.unwrap_or(row.state);
        if let Some(error) = write.error {
            row.error = error;
        }
        row.exit_code = write.exit_code.or(row.exit_code);
        if let Some(session_id) = write.session_id {
            row.session_id = session_id;
        }
        if let Some(model) = write.model {
            row.model = model;
        }
        row.cost = write.cost.unwrap_or(row.cost);
        if let Some(verification) = write.verification {
            row.verification = Some(verification);
        }
        if let Some(setup) = write.setup {
            row.setup = Some(setup);
        }
    }

    /// What every attempt of the task cost.
    pub(super) fn cost_of(&self, task: &TaskRecord) -> Cost {
        task.steps
            .iter()
            .filter_map(|s| self.attempts.get(&(task.id.clone(), s.id.clone())))
            .flat_map(|rows| rows.values().map(|a| a.cost))
            .sum()
    }

    /// A task as listings show it: no steps, what it cost.
    pub(super) fn listed(&self, task: &TaskRecord) -> TaskRecord {
        TaskRecord {
            steps: Vec::new(),
            cost: self.cost_of(task),
            ..task.clone()
        }
    }

    /// A task whole: steps with their attempts (the running one described
    /// by its step until its own row exists), costs, its newest event.
    pub(super) fn whole(&self, task: &TaskRecord) -> TaskRecord {
        let mut task = task.clone();
        for step in &mut task.steps {
            step.attempts = self
                .attempts
                .get(&(task.id.clone(), step.id.clone()))
                .map(|rows| rows.values().cloned().collect())
                .unwrap_or_default();
        }
        task.complete_attempts();
        task.last_seq = self
            .events
            .get(&task.id)
            .and_then(|e| e.keys().next_back().copied())
            .unwrap_or(0);
        task
    }

    pub(super) fn change_state(&mut self, change: StateChange) -> StateOutcome {
        let key = change.key().clone();
        let row = self
            .state
            .get(&key)
            .map(|s| (s.version, s.live(change.now())));
        let next = match change.decide(row) {
            Err(refused) => return refused,
            Ok(None) => return StateOutcome::Done(None),
            Ok(Some(next)) => next,
        };
        let entry = next.entry.as_ref();
        let stored = StateRow {
            value_json: entry.map(|e| e.value_json.clone()),
            version: next.version,
            updated_at: next.updated_at,
            expires_at: entry.map_or(0, |e| e.expires_at),
        };
        self.state.insert(key, stored);
        StateOutcome::Done(next.entry)
    }
}
