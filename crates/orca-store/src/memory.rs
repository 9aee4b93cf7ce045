//! A store in memory, for tests of what sits on the store (the engine):
//! every write applies at once under one lock, so the ordering promise
//! holds trivially and a commit is answered before `write` returns. It
//! passes the same conformance suite as the real backends; it keeps
//! nothing across a process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use orca_core::{Cost, Event, Micros, StepState, TaskState, TenantBudget};
use tokio::sync::oneshot;

use crate::fleet::{self, FleetPage};
use crate::webhooks::{Delivery, DeliveryQuery, DeliveryState, Webhook};
use crate::{
    AttemptRecord, AttemptWrite, AuditRecord, Checkpoint, Commit, Created, Error, NewTask, Result,
    StateChange, StateEntry, StateKey, StateOutcome, StateScope, StepBranch, StepRecord, StepWrite,
    Store, TaskQuery, TaskRecord, Write,
};

/// One store's data; [`MemoryStore::reopen`] gives another handle on it,
/// as a restart finds what was committed.
#[derive(Default)]
struct Data {
    /// By id: ids sort by creation time. Steps carry no attempts here.
    tasks: BTreeMap<String, TaskRecord>,
    /// `tenant/key` → task id.
    keys: HashMap<String, String>,
    events: HashMap<String, BTreeMap<u64, Event>>,
    /// Commit number → the (task, sequence number) of its events in the
    /// fleet's order (see `fleet`); a commit is one write or create.
    fleet: BTreeMap<u64, Vec<(String, u64)>>,
    /// (task, step) → attempt number → its row.
    attempts: HashMap<(String, String), BTreeMap<u32, AttemptRecord>>,
    state: HashMap<StateKey, StateRow>,
    audit: Vec<AuditRecord>,
    budgets: BTreeMap<String, TenantBudget>,
    /// (task, step) → its newest checkpoint.
    checkpoints: HashMap<(String, String), Checkpoint>,
    branches: HashMap<(String, String), StepBranch>,
    webhooks: BTreeMap<String, Webhook>,
    /// By id: ids sort by creation time.
    deliveries: BTreeMap<String, Delivery>,
    webhook_cursor: u64,
}

/// A shared-state row: a deleted value keeps its version.
#[derive(Clone)]
struct StateRow {
    value_json: Option<String>,
    version: u64,
    updated_at: Micros,
    expires_at: Micros,
}

impl StateRow {
    fn live(&self, now: Micros) -> bool {
        self.value_json.is_some() && (self.expires_at == 0 || self.expires_at > now)
    }
}

#[derive(Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Another handle on the same data, as if the store were opened again.
    pub fn reopen(&self) -> Self {
        self.clone()
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        // A test that panicked while holding the lock left whole writes:
        // each applies completely or not at all.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn scoped_key(task: &NewTask) -> Option<String> {
    task.idempotency_key
        .as_ref()
        .map(|key| format!("{}/{key}", task.tenant))
}

impl Data {
    fn create(&mut self, tasks: Vec<NewTask>) -> Result<Vec<Created>> {
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

    fn insert(&mut self, task: NewTask, entries: &mut fleet::Entries) {
        if let Some(key) = scoped_key(&task) {
            self.keys.insert(key, task.id.clone());
        }
        let steps = task
            .spec
            .steps
            .iter()
            .zip(&task.step_states)
            .map(|(step, state)| StepRecord {
                id: step.id.clone(),
                state: *state,
                attempt: 0,
                worker: String::new(),
                started_at: 0,
                finished_at: 0,
                progress: 0.0,
                progress_message: String::new(),
                output_json: String::new(),
                error: String::new(),
                exit_code: None,
                attempts: Vec::new(),
                cost: Cost::default(),
                approval_deadline: 0,
                work: None,
            })
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
        };
        self.tasks.insert(task.id, record);
    }

    /// Applies a batch whole, or (a task's id or key, or an event's
    /// sequence number, taken) nothing of it.
    fn apply(&mut self, writes: Vec<Write>) -> Result<()> {
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
                Write::Task {
                    id,
                    state,
                    message,
                    started_at,
                    finished_at,
                } => {
                    if let Some(task) = self.tasks.get_mut(&id) {
                        task.state = state;
                        task.message = message;
                        task.started_at = started_at.unwrap_or(task.started_at);
                        task.finished_at = finished_at.unwrap_or(task.finished_at);
                    }
                }
                Write::Step(write) => self.update_step(write),
                Write::Attempt(write) => self.upsert_attempt(write),
                Write::Progress {
                    task_id,
                    step_id,
                    fraction,
                    message,
                } => {
                    if let Some(step) = self.step_mut(&task_id, &step_id) {
                        step.progress = fraction;
                        step.progress_message = message;
                    }
                }
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
                Write::Webhook(webhook) => {
                    self.webhooks.insert(webhook.id.clone(), *webhook);
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

    fn keep_audit(&mut self, record: AuditRecord) {
        let seq = self.audit.len() as u64 + 1;
        self.audit.push(AuditRecord { seq, ..record });
    }

    /// Keeps a checkpoint of the step's current attempt, unless a newer
    /// attempt's is kept.
    fn keep_checkpoint(&mut self, checkpoint: Checkpoint) {
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
    fn keep_branch(&mut self, branch: StepBranch) {
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
    fn store_event(&mut self, event: Event, entries: &mut fleet::Entries) {
        entries.push(&event);
        self.events
            .entry(event.task_id.clone())
            .or_default()
            .insert(event.seq, event);
    }

    /// Ends a commit: its fleet row, when it stored fleet events.
    fn commit_fleet(&mut self, entries: fleet::Entries) {
        let last = self.fleet.last_key_value().map_or(0, |(c, _)| *c);
        for (commit, row) in entries.rows(last) {
            self.fleet.insert(commit, row.to_vec());
        }
    }

    fn step_mut(&mut self, task_id: &str, step_id: &str) -> Option<&mut StepRecord> {
        self.tasks
            .get_mut(task_id)?
            .steps
            .iter_mut()
            .find(|s| s.id == step_id)
    }

    fn update_step(&mut self, write: StepWrite) {
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

    fn upsert_attempt(&mut self, write: AttemptWrite) {
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
    }

    /// What every attempt of the task cost.
    fn cost_of(&self, task: &TaskRecord) -> Cost {
        task.steps
            .iter()
            .filter_map(|s| self.attempts.get(&(task.id.clone(), s.id.clone())))
            .flat_map(|rows| rows.values().map(|a| a.cost))
            .sum()
    }

    /// A task as listings show it: no steps, what it cost.
    fn listed(&self, task: &TaskRecord) -> TaskRecord {
        TaskRecord {
            steps: Vec::new(),
            cost: self.cost_of(task),
            ..task.clone()
        }
    }

    /// A task whole: steps with their attempts (the running one described
    /// by its step until its own row exists), costs, its newest event.
    fn whole(&self, task: &TaskRecord) -> TaskRecord {
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

    fn change_state(&mut self, change: StateChange) -> StateOutcome {
        let (key, expect, now) = match &change {
            StateChange::Put {
                key, expect, now, ..
            }
            | StateChange::Delete { key, expect, now } => (key.clone(), *expect, *now),
        };
        let row = self.state.get(&key).cloned();
        let live = row.as_ref().filter(|s| s.live(now)).map(|s| s.version);
        if !expect.met_by(live) {
            return StateOutcome::Conflict { found: live };
        }
        let version = row.map_or(0, |s| s.version) + 1;
        match change {
            StateChange::Put {
                value_json,
                expires_at,
                ..
            } => {
                self.state.insert(
                    key,
                    StateRow {
                        value_json: Some(value_json.clone()),
                        version,
                        updated_at: now,
                        expires_at,
                    },
                );
                StateOutcome::Done(Some(StateEntry {
                    value_json,
                    version,
                    updated_at: now,
                    expires_at,
                }))
            }
            StateChange::Delete { .. } => {
                if live.is_some() {
                    self.state.insert(
                        key,
                        StateRow {
                            value_json: None,
                            version,
                            updated_at: now,
                            expires_at: 0,
                        },
                    );
                }
                StateOutcome::Done(None)
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>> {
        self.data().create(tasks)
    }

    fn write(&self, batch: Vec<Write>) -> Commit {
        let (reply, answer) = oneshot::channel();
        let _ = reply.send(self.data().apply(batch));
        answer
    }

    /// Nothing queues here: there is always room.
    async fn wait_for_room(&self) -> Result<()> {
        Ok(())
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let data = self.data();
        Ok(data.tasks.get(id).map(|task| data.whole(task)))
    }

    async fn tasks_by_id(&self, ids: &[String]) -> Result<Vec<TaskRecord>> {
        let data = self.data();
        let mut tasks: Vec<TaskRecord> = ids
            .iter()
            .filter_map(|id| data.tasks.get(id.as_str()))
            .map(|task| data.whole(task))
            .collect();
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        tasks.dedup_by(|a, b| a.id == b.id);
        Ok(tasks)
    }

    async fn list_tasks(&self, query: TaskQuery) -> Result<Vec<TaskRecord>> {
        let data = self.data();
        let wanted = |task: &&TaskRecord| {
            (query.states.is_empty() || query.states.contains(&task.state))
                && query
                    .labels
                    .iter()
                    .all(|(k, v)| task.spec.labels.get(k) == Some(v))
                && query
                    .tenants
                    .as_ref()
                    .is_none_or(|tenants| tenants.contains(&task.tenant))
                && task.spec.name.starts_with(&query.name_prefix)
                && query
                    .before_id
                    .as_ref()
                    .is_none_or(|before| task.id < *before)
        };
        Ok(data
            .tasks
            .values()
            .rev()
            .filter(wanted)
            .take(query.page_size)
            .map(|task| data.listed(task))
            .collect())
    }

    async fn count_tasks(&self, tenants: Option<Vec<String>>) -> Result<Vec<(TaskState, u64)>> {
        let data = self.data();
        let mut counts: BTreeMap<&'static str, (TaskState, u64)> = BTreeMap::new();
        for task in data.tasks.values() {
            if tenants.as_ref().is_none_or(|t| t.contains(&task.tenant)) {
                counts
                    .entry(task.state.as_str())
                    .or_insert((task.state, 0))
                    .1 += 1;
            }
        }
        Ok(counts.into_values().collect())
    }

    async fn events_after(&self, task_id: &str, after: u64, limit: usize) -> Result<Vec<Event>> {
        let data = self.data();
        Ok(data
            .events
            .get(task_id)
            .map(|events| {
                events
                    .range(after + 1..)
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn fleet_events_after(
        &self,
        after: u64,
        tenants: Option<Vec<String>>,
        limit: usize,
    ) -> Result<FleetPage> {
        let data = self.data();
        let mut rows = fleet::Rows::new(after, limit);
        while let Some(from) = rows.next() {
            let read = data
                .fleet
                .range(from..)
                .take(fleet::Rows::AT_A_TIME)
                .map(|(commit, row)| (*commit, row.clone()))
                .collect();
            rows.take(read);
        }
        let mut events = Vec::new();
        for (at, task_id, seq) in rows.entries() {
            let visible = tenants.as_ref().is_none_or(|tenants| {
                data.tasks
                    .get(task_id)
                    .is_some_and(|task| tenants.contains(&task.tenant))
            });
            if let Some(event) = data.events.get(task_id).and_then(|e| e.get(&seq))
                && visible
            {
                events.push((at, event.clone()));
            }
        }
        Ok(rows.page(events))
    }

    async fn fleet_head(&self) -> Result<u64> {
        let data = self.data();
        Ok(data
            .fleet
            .last_key_value()
            .map_or(0, |(commit, row)| fleet::position(*commit, row.len())))
    }

    async fn unfinished_task_ids(&self) -> Result<Vec<String>> {
        let data = self.data();
        Ok(data
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .map(|t| t.id.clone())
            .collect())
    }

    async fn unfinished_tasks_between(&self, first: &str, last: &str) -> Result<Vec<TaskRecord>> {
        let data = self.data();
        if first > last {
            return Ok(Vec::new());
        }
        Ok(data
            .tasks
            .range::<str, _>((Bound::Included(first), Bound::Included(last)))
            .map(|(_, task)| task)
            .filter(|t| !t.state.is_terminal())
            .map(|task| data.whole(task))
            .collect())
    }

    async fn unfinished_tasks_by_id(&self, ids: &[String]) -> Result<Vec<TaskRecord>> {
        let mut tasks = self.tasks_by_id(ids).await?;
        tasks.retain(|t| !t.state.is_terminal());
        Ok(tasks)
    }

    async fn change_state(&self, change: StateChange) -> Result<StateOutcome> {
        Ok(self.data().change_state(change))
    }

    async fn get_state(&self, key: StateKey, now: Micros) -> Result<Option<StateEntry>> {
        Ok(self
            .data()
            .state
            .get(&key)
            .filter(|row| row.live(now))
            .map(|row| StateEntry {
                value_json: row.value_json.clone().unwrap_or_default(),
                version: row.version,
                updated_at: row.updated_at,
                expires_at: row.expires_at,
            }))
    }

    async fn list_state(
        &self,
        scope: StateScope,
        after_key: &str,
        limit: usize,
        now: Micros,
    ) -> Result<Vec<(StateKey, StateEntry)>> {
        let data = self.data();
        let mut found: Vec<(StateKey, StateEntry)> = data
            .state
            .iter()
            .filter(|(key, row)| {
                key.tenant == scope.tenant
                    && key.scope == scope.scope
                    && key.key.as_str() > after_key
                    && row.live(now)
            })
            .map(|(key, row)| {
                (
                    key.clone(),
                    StateEntry {
                        value_json: row.value_json.clone().unwrap_or_default(),
                        version: row.version,
                        updated_at: row.updated_at,
                        expires_at: row.expires_at,
                    },
                )
            })
            .collect();
        found.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        found.truncate(limit);
        Ok(found)
    }

    async fn running_attempt(&self, task_id: &str, step_id: &str) -> Result<Option<u32>> {
        Ok(self
            .data()
            .tasks
            .get(task_id)
            .and_then(|t| t.steps.iter().find(|s| s.id == step_id))
            .filter(|s| s.state == StepState::Running)
            .map(|s| s.attempt))
    }

    async fn checkpoint(&self, task_id: &str, step_id: &str) -> Result<Option<Checkpoint>> {
        Ok(self
            .data()
            .checkpoints
            .get(&(task_id.to_string(), step_id.to_string()))
            .cloned())
    }

    async fn step_branch(&self, task_id: &str, step_id: &str) -> Result<Option<StepBranch>> {
        Ok(self
            .data()
            .branches
            .get(&(task_id.to_string(), step_id.to_string()))
            .cloned())
    }

    async fn tenant_budgets(&self) -> Result<Vec<(String, TenantBudget)>> {
        Ok(self
            .data()
            .budgets
            .iter()
            .map(|(t, b)| (t.clone(), *b))
            .collect())
    }

    async fn spend_since(&self, since: Micros) -> Result<Vec<(String, Cost)>> {
        let data = self.data();
        let mut spend: BTreeMap<String, Cost> = BTreeMap::new();
        for ((task_id, _), attempts) in &data.attempts {
            let Some(task) = data.tasks.get(task_id) else {
                continue;
            };
            for attempt in attempts.values() {
                if attempt.finished_at > 0
                    && attempt.finished_at >= since
                    && !attempt.cost.is_zero()
                {
                    *spend.entry(task.tenant.clone()).or_default() += attempt.cost;
                }
            }
        }
        Ok(spend.into_iter().collect())
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
        tenants: Option<Vec<String>>,
    ) -> Result<Vec<AuditRecord>> {
        Ok(self
            .data()
            .audit
            .iter()
            .filter(|r| r.seq > after)
            .filter(|r| tenants.as_ref().is_none_or(|t| t.contains(&r.tenant)))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        Ok(self.data().webhooks.values().cloned().collect())
    }

    async fn webhook_cursor(&self) -> Result<u64> {
        Ok(self.data().webhook_cursor)
    }

    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Delivery>> {
        Ok(self
            .data()
            .deliveries
            .values()
            .filter(|d| d.state == DeliveryState::Pending)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<Delivery>> {
        Ok(self
            .data()
            .deliveries
            .values()
            .rev()
            .filter(|d| query.selects(d))
            .take(query.limit)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::Backend;

    /// Opens handles on one store's data, as a restart would.
    #[derive(Default)]
    struct Memory {
        store: MemoryStore,
    }

    #[async_trait]
    impl Backend for Memory {
        async fn open(&mut self) -> Arc<dyn Store> {
            Arc::new(self.store.reopen())
        }
    }

    crate::conformance_suite!(Memory::default());
}
