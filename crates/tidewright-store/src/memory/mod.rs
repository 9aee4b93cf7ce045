//! A store in memory, for tests of what sits on the store (the engine):
//! every write applies at once under one lock, so the ordering promise
//! holds trivially and a commit is answered before `write` returns. It
//! passes the same conformance suite as the real backends; it keeps
//! nothing across a process.

mod data;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tidewright_core::{Cost, Event, Micros, StepState, TaskState, TenantBudget, TenantShare};
use tokio::sync::oneshot;

use crate::fleet::{self, FleetPage};
use crate::retention::{Expired, Expiring, Retention};
use crate::webhooks::{Delivery, DeliveryQuery, DeliveryState, Webhook};
use crate::{
    AuditRecord, Checkpoint, Commit, Created, NewTask, Result, StateChange, StateEntry, StateKey,
    StateOutcome, StateQuery, StepBranch, TaskQuery, TaskRecord, Write,
};
use crate::{
    EventStore, RecoveryStore, RetentionStore, ScheduleStore, StateStore, StepStore, Store,
    TaskStore, TenantStore, TriggerStore, WebhookStore, WriteStore,
};
use data::Data;

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

impl Store for MemoryStore {}

#[async_trait]
impl WriteStore for MemoryStore {
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
}

#[async_trait]
impl TaskStore for MemoryStore {
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
}

#[async_trait]
impl StepStore for MemoryStore {
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
}

#[async_trait]
impl EventStore for MemoryStore {
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
}

#[async_trait]
impl RecoveryStore for MemoryStore {
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
}

#[async_trait]
impl StateStore for MemoryStore {
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

    async fn list_state(&self, query: StateQuery) -> Result<Vec<(StateKey, StateEntry)>> {
        let data = self.data();
        let mut found: Vec<(StateKey, StateEntry)> = data
            .state
            .iter()
            .filter(|(key, row)| {
                key.tenant == query.scope.tenant
                    && key.scope == query.scope.scope
                    && key.key > query.after_key
                    && row.live(query.now)
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
        found.truncate(query.limit);
        Ok(found)
    }
}

#[async_trait]
impl RetentionStore for MemoryStore {
    async fn expiring(
        &self,
        retention: &Retention,
        now: Micros,
        limit: usize,
    ) -> Result<Vec<Expiring>> {
        Ok(self.data().expiring(retention, now, limit))
    }

    async fn expired(&self, id: &str) -> Result<Option<Expired>> {
        Ok(self.data().expired.get(id).cloned())
    }
}

#[async_trait]
impl TenantStore for MemoryStore {
    async fn cost_sums(
        &self,
        from: &str,
        tenants: Option<Vec<String>>,
    ) -> Result<Vec<tidewright_core::cost_sums::CostSum>> {
        Ok(self
            .data()
            .cost_sums
            .iter()
            .filter(|(key, _)| key.day.as_str() >= from)
            .filter(|(key, _)| tenants.as_ref().is_none_or(|t| t.contains(&key.tenant)))
            .map(
                |(key, (cost, attempts))| tidewright_core::cost_sums::CostSum {
                    key: key.clone(),
                    cost: *cost,
                    attempts: *attempts,
                },
            )
            .collect())
    }

    async fn tenant_shares(&self) -> Result<Vec<(String, TenantShare)>> {
        Ok(self
            .data()
            .shares
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect())
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
}

#[async_trait]
impl WebhookStore for MemoryStore {
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

#[async_trait]
impl ScheduleStore for MemoryStore {
    async fn schedules(&self) -> Result<Vec<crate::schedules::Schedule>> {
        Ok(self.data().schedules.values().cloned().collect())
    }

    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<crate::schedules::Schedule>> {
        let key = (tenant.to_string(), name.to_string());
        Ok(self.data().schedules.get(&key).cloned())
    }
}

#[async_trait]
impl TriggerStore for MemoryStore {
    async fn triggers(&self) -> Result<Vec<crate::triggers::Trigger>> {
        Ok(self.data().triggers.values().cloned().collect())
    }

    async fn trigger(&self, tenant: &str, name: &str) -> Result<Option<crate::triggers::Trigger>> {
        let key = (tenant.to_string(), name.to_string());
        Ok(self.data().triggers.get(&key).cloned())
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
