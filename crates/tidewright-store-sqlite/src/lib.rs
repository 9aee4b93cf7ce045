//! tidewright's embedded store, SQLite: one file in WAL mode, one writer thread
//! that commits whatever has queued up in a single transaction (group
//! commit) or, when it is idle, lets a submit commit on its own thread,
//! and a small pool of reader connections that never wait for the writer.
//! SQLite's errors stay inside: callers get `tidewright_store::Error`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tidewright_core::{Cost, Event, Micros, StepState, TaskState, TenantBudget, TenantShare};

mod batch;
mod costs;
mod durability;
mod events;
mod expire;
mod fault;
mod open;
mod reads;
mod schema;
mod writer;

pub use durability::Durability;
use fault::{Fault, Result};
use reads::{
    TASK_COLUMNS, by_id, decode_task, from_record, read_task, unfinished_by_id, whole_task,
};
use writer::Writer;

use tidewright_store::fleet::{self, FleetPage};
use tidewright_store::retention::{Expired, Expiring, Retention};
use tidewright_store::webhooks::{Delivery, DeliveryQuery, Webhook};
use tidewright_store::write_queue::{Job, WriteQueue};
use tidewright_store::{
    AuditRecord, Checkpoint, Commit, Created, Error, NewTask, QueuedTask, StateChange, StateEntry,
    StateKey, StateOutcome, StateQuery, StepBranch, TaskQuery, TaskRecord, Unfinished, Write,
};
use tidewright_store::{
    EventStore, RecoveryStore, RetentionStore, ScheduleStore, StateStore, StepStore, TaskStore,
    TenantStore, TriggerStore, WebhookStore, WriteStore,
};

pub struct SqliteStore {
    jobs: WriteQueue,
    writer: Arc<Writer>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

impl tidewright_store::Store for SqliteStore {}

#[async_trait]
impl WriteStore for SqliteStore {
    async fn create_tasks(&self, tasks: Vec<NewTask>) -> tidewright_store::Result<Vec<Created>> {
        self.jobs
            .submit_led(
                |reply| Job::Create(tasks, reply),
                |job| self.writer.lead(job),
            )
            .await
    }

    fn write(&self, batch: Vec<Write>) -> Commit {
        self.jobs.write(batch)
    }

    fn write_leading(&self, batch: Vec<Write>) -> Commit {
        self.jobs.write_led(batch, |job| self.writer.lead(job))
    }

    async fn wait_for_room(&self) -> tidewright_store::Result<()> {
        self.jobs.wait_for_room(std::future::pending()).await
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn get_task(&self, id: &str) -> tidewright_store::Result<Option<TaskRecord>> {
        let id = id.to_string();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
                .query_row([&id], read_task)
                .optional()?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(whole_task(conn, row)?))
        })
        .await
    }

    async fn tasks_by_id(&self, ids: &[String]) -> tidewright_store::Result<Vec<TaskRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        self.read(move |conn| by_id(conn, &ids, "")).await
    }

    async fn list_tasks(&self, query: TaskQuery) -> tidewright_store::Result<Vec<TaskRecord>> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1");
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
            if !query.states.is_empty() {
                let marks = vec!["?"; query.states.len()].join(", ");
                sql.push_str(&format!(" AND state IN ({marks})"));
                args.extend(
                    query
                        .states
                        .iter()
                        .map(|s| Box::new(s.as_str()) as Box<dyn rusqlite::ToSql>),
                );
            }
            for (key, value) in &query.labels {
                sql.push_str(" AND json_extract(labels, ?) = ?");
                // Quoted, so keys with dots or slashes are one path element.
                let path = format!("$.\"{}\"", key.replace('"', ""));
                args.push(Box::new(path));
                args.push(Box::new(value.clone()));
            }
            if let Some(tenants) = &query.tenants {
                let marks = vec!["?"; tenants.len()].join(", ");
                sql.push_str(&format!(" AND tenant IN ({marks})"));
                args.extend(
                    tenants
                        .iter()
                        .map(|t| Box::new(t.clone()) as Box<dyn rusqlite::ToSql>),
                );
            }
            if !query.name_prefix.is_empty() {
                // Not LIKE: a prefix's % and _ are its own characters.
                sql.push_str(" AND substr(name, 1, length(?)) = ?");
                args.push(Box::new(query.name_prefix.clone()));
                args.push(Box::new(query.name_prefix.clone()));
            }
            if let Some(before) = &query.before_id {
                sql.push_str(" AND id < ?");
                args.push(Box::new(before.clone()));
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push(Box::new(query.page_size as i64));
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), read_task)?;
            let mut tasks = Vec::new();
            for row in rows {
                tasks.push(decode_task(row?)?);
            }
            Ok(tasks)
        })
        .await
    }

    async fn count_tasks(
        &self,
        tenants: Option<Vec<String>>,
    ) -> tidewright_store::Result<Vec<(TaskState, u64)>> {
        self.read(move |conn| {
            let mut sql = String::from("SELECT state, COUNT(*) FROM tasks");
            if let Some(tenants) = &tenants {
                let marks = vec!["?"; tenants.len()].join(", ");
                sql.push_str(&format!(" WHERE tenant IN ({marks})"));
            }
            sql.push_str(" GROUP BY state ORDER BY state");
            let mut stmt = conn.prepare(&sql)?;
            let args = tenants.unwrap_or_default();
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            let mut counts = Vec::new();
            for row in rows {
                let (state, tasks) = row?;
                counts.push((state.parse()?, tasks as u64));
            }
            Ok(counts)
        })
        .await
    }
}

#[async_trait]
impl StepStore for SqliteStore {
    async fn running_attempt(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> tidewright_store::Result<Option<u32>> {
        let (task_id, step_id) = (task_id.to_string(), step_id.to_string());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT attempt FROM steps WHERE task_id = ?1 AND step_id = ?2 AND state = ?3",
                )?
                .query_row(
                    params![task_id, step_id, StepState::Running.as_str()],
                    |row| row.get::<_, u32>(0),
                )
                .optional()?)
        })
        .await
    }

    async fn step_branch(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> tidewright_store::Result<Option<StepBranch>> {
        let (task_id, step_id) = (task_id.to_string(), step_id.to_string());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT attempt, head_commit, bundle, diff, created_at
                     FROM branches WHERE task_id = ?1 AND step_id = ?2",
                )?
                .query_row(params![task_id, step_id], |row| {
                    Ok(StepBranch {
                        task_id: task_id.clone(),
                        step_id: step_id.clone(),
                        attempt: row.get(0)?,
                        head_commit: row.get(1)?,
                        bundle: row.get(2)?,
                        diff: row.get(3)?,
                        created_at: row.get(4)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn checkpoint(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> tidewright_store::Result<Option<Checkpoint>> {
        let (task_id, step_id) = (task_id.to_string(), step_id.to_string());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT attempt, session_id, workspace, archive, created_at
                     FROM checkpoints WHERE task_id = ?1 AND step_id = ?2",
                )?
                .query_row(params![task_id, step_id], |row| {
                    Ok(Checkpoint {
                        task_id: task_id.clone(),
                        step_id: step_id.clone(),
                        attempt: row.get(0)?,
                        session_id: row.get(1)?,
                        workspace: row.get(2)?,
                        archive: row.get(3)?,
                        created_at: row.get(4)?,
                    })
                })
                .optional()?)
        })
        .await
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn events_after(
        &self,
        task_id: &str,
        after: u64,
        limit: usize,
    ) -> tidewright_store::Result<Vec<Event>> {
        let task_id = task_id.to_string();
        self.read(move |conn| events::after(conn, &task_id, after, limit))
            .await
    }

    async fn fleet_events_after(
        &self,
        after: u64,
        tenants: Option<Vec<String>>,
        limit: usize,
    ) -> tidewright_store::Result<FleetPage> {
        self.read(move |conn| {
            let mut rows = fleet::Rows::new(after, limit);
            while let Some(from) = rows.next() {
                let mut stmt = conn.prepare_cached(
                    "SELECT commit_no, events FROM fleet WHERE commit_no >= ?1
                     ORDER BY commit_no LIMIT ?2",
                )?;
                let read: Vec<(i64, String)> = stmt
                    .query_map(params![from as i64, fleet::Rows::AT_A_TIME as i64], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut decoded = Vec::with_capacity(read.len());
                for (commit, events) in read {
                    decoded.push((commit as u64, fleet_row(commit, &events)?));
                }
                rows.take(decoded);
            }
            let mut events = Vec::new();
            let mut lookup = events::Lookup::default();
            for (at, task_id, seq) in rows.entries() {
                let Some((event, tenant)) = lookup.get(conn, task_id, seq)? else {
                    continue;
                };
                if tenants.as_ref().is_some_and(|t| !t.contains(&tenant)) {
                    continue;
                }
                events.push((at, event));
            }
            Ok(rows.page(events))
        })
        .await
    }

    async fn fleet_head(&self) -> tidewright_store::Result<u64> {
        self.read(|conn| {
            let last: Option<(i64, String)> = conn
                .prepare_cached(
                    "SELECT commit_no, events FROM fleet ORDER BY commit_no DESC LIMIT 1",
                )?
                .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let Some((commit, events)) = last else {
                return Ok(0);
            };
            Ok(fleet::position(
                commit as u64,
                fleet_row(commit, &events)?.len(),
            ))
        })
        .await
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
        tenants: Option<Vec<String>>,
    ) -> tidewright_store::Result<Vec<AuditRecord>> {
        self.read(move |conn| {
            // Tenants travel as one JSON array, so the statement stays cached.
            let tenants = tenants.map(|t| serde_json::Value::from(t).to_string());
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, actor, role, action, tenant, target, outcome, detail FROM audit
                 WHERE seq > ?1 AND (?2 IS NULL OR tenant IN (SELECT value FROM json_each(?2)))
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after as i64, tenants, limit as i64], |row| {
                Ok(AuditRecord {
                    seq: row.get::<_, i64>(0)? as u64,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    role: row.get(3)?,
                    action: row.get(4)?,
                    tenant: row.get(5)?,
                    target: row.get(6)?,
                    outcome: row.get(7)?,
                    detail: row.get(8)?,
                })
            })?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[async_trait]
impl RecoveryStore for SqliteStore {
    async fn unfinished_task_ids(&self) -> tidewright_store::Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id FROM tasks WHERE state IN ('queued', 'running', 'paused') ORDER BY id",
            )?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<std::result::Result<Vec<String>, _>>()?)
        })
        .await
    }

    async fn unfinished_tasks_between(
        &self,
        first: &str,
        last: &str,
    ) -> tidewright_store::Result<Vec<TaskRecord>> {
        let (first, last) = (first.to_string(), last.to_string());
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE state IN ('queued', 'running', 'paused') AND id BETWEEN ?1 AND ?2 ORDER BY id"
            ))?;
            let rows = stmt.query_map([&first, &last], read_task)?;
            let mut tasks = Vec::new();
            for row in rows {
                tasks.push(whole_task(conn, row?)?);
            }
            Ok(tasks)
        })
        .await
    }

    async fn unfinished_tasks_by_id(
        &self,
        ids: &[String],
    ) -> tidewright_store::Result<Vec<TaskRecord>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        self.read(move |conn| unfinished_by_id(conn, &ids)).await
    }

    async fn recovery_between(
        &self,
        first: &str,
        last: &str,
    ) -> tidewright_store::Result<Vec<Unfinished>> {
        let (first, last) = (first.to_string(), last.to_string());
        self.read(move |conn| {
            let mut tasks = Vec::new();
            // Whole: what runs or is paused, and a queued task with a step
            // started or held at its gate.
            let mut whole: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM tasks
                     WHERE state IN ('running', 'paused') AND id BETWEEN ?1 AND ?2",
                )?
                .query_map([&first, &last], |row| row.get(0))?
                .collect::<std::result::Result<_, _>>()?;
            // The range's steps in one walk of their key, (task, step)
            // order, merged below with the queued tasks in id order: two
            // lookups per task, made per row, would cost twice as much.
            let mut steps = conn.prepare_cached(
                "SELECT task_id, position, state, attempt FROM steps
                 WHERE task_id BETWEEN ?1 AND ?2 ORDER BY task_id",
            )?;
            let mut steps = steps.query([&first, &last])?;
            let mut step = steps.next()?;
            let mut queued_tasks = conn.prepare_cached(
                "SELECT id, created_at, spec, tenant FROM tasks
                 WHERE state = 'queued' AND id BETWEEN ?1 AND ?2 ORDER BY id",
            )?;
            let mut rows = queued_tasks.query([&first, &last])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let mut positions = Vec::new();
                let mut untouched = true;
                while let Some(s) = step {
                    let task_id = s.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
                    if task_id > id.as_str() {
                        break;
                    }
                    if task_id == id {
                        let state = s.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
                        let started = s.get::<_, i64>(3)? > 0;
                        match state {
                            "queued" if !started => positions.push(s.get::<_, i64>(1)? as usize),
                            "waiting" if !started => {}
                            _ => untouched = false,
                        }
                    }
                    step = steps.next()?;
                }
                if !untouched {
                    whole.push(id);
                    continue;
                }
                let spec = row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
                tasks.push(Unfinished::Queued(QueuedTask::from_stored(
                    (id, row.get(3)?),
                    row.get(1)?,
                    spec,
                    positions,
                )?));
            }
            whole.sort();
            tasks.extend(
                unfinished_by_id(conn, &whole)?
                    .into_iter()
                    .map(|task| Unfinished::Whole(Box::new(task))),
            );
            Ok(tasks)
        })
        .await
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn change_state(&self, change: StateChange) -> tidewright_store::Result<StateOutcome> {
        self.jobs
            .submit_led(
                |reply| Job::State(change, reply),
                |job| self.writer.lead(job),
            )
            .await
    }

    async fn get_state(
        &self,
        key: StateKey,
        now: i64,
    ) -> tidewright_store::Result<Option<StateEntry>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT value, version, updated_at, expires_at FROM state
                     WHERE tenant = ?1 AND scope = ?2 AND key = ?3 AND value IS NOT NULL
                       AND (expires_at = 0 OR expires_at > ?4)",
                )?
                .query_row(params![key.tenant, key.scope, key.key, now], |row| {
                    Ok(StateEntry {
                        value_json: row.get(0)?,
                        version: row.get::<_, i64>(1)? as u64,
                        updated_at: row.get(2)?,
                        expires_at: row.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn list_state(
        &self,
        query: StateQuery,
    ) -> tidewright_store::Result<Vec<(StateKey, StateEntry)>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, version, updated_at, expires_at FROM state
                 WHERE tenant = ?1 AND scope = ?2 AND key > ?3 AND value IS NOT NULL
                   AND (expires_at = 0 OR expires_at > ?4)
                 ORDER BY key LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![
                    query.scope.tenant,
                    query.scope.scope,
                    query.after_key,
                    query.now,
                    query.limit as i64
                ],
                |row| {
                    Ok((
                        StateKey {
                            tenant: query.scope.tenant.clone(),
                            scope: query.scope.scope.clone(),
                            key: row.get(0)?,
                        },
                        StateEntry {
                            value_json: row.get(1)?,
                            version: row.get::<_, i64>(2)? as u64,
                            updated_at: row.get(3)?,
                            expires_at: row.get(4)?,
                        },
                    ))
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn expiring(
        &self,
        retention: &Retention,
        now: Micros,
        limit: usize,
    ) -> tidewright_store::Result<Vec<Expiring>> {
        let retention = retention.clone();
        self.read(move |conn| expire::expiring(conn, &retention, now, limit))
            .await
    }

    async fn expired(&self, id: &str) -> tidewright_store::Result<Option<Expired>> {
        let id = id.to_string();
        self.read(move |conn| expire::expired(conn, &id)).await
    }
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn tenant_budgets(&self) -> tidewright_store::Result<Vec<(String, TenantBudget)>> {
        self.read(|conn| tenant_records(conn, ("budgets", "budget")))
            .await
    }

    async fn tenant_shares(&self) -> tidewright_store::Result<Vec<(String, TenantShare)>> {
        self.read(|conn| tenant_records(conn, ("shares", "share")))
            .await
    }

    async fn cost_sums(
        &self,
        from: &str,
        tenants: Option<Vec<String>>,
    ) -> tidewright_store::Result<Vec<tidewright_core::cost_sums::CostSum>> {
        let from = from.to_string();
        self.read(move |conn| costs::read(conn, &from, tenants.as_deref()))
            .await
    }

    async fn spend_since(&self, since: i64) -> tidewright_store::Result<Vec<(String, Cost)>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT t.tenant, SUM(a.cost_usd), SUM(a.input_tokens), SUM(a.output_tokens),
                        SUM(a.cache_read_tokens), SUM(a.cache_creation_tokens)
                 FROM attempts a JOIN tasks t ON t.id = a.task_id
                 WHERE a.finished_at > 0 AND a.finished_at >= ?1
                   AND (a.cost_usd > 0 OR a.input_tokens > 0 OR a.output_tokens > 0)
                 GROUP BY t.tenant ORDER BY t.tenant",
            )?;
            let rows = stmt.query_map(params![since], |row| {
                Ok((row.get::<_, String>(0)?, costs::cost_at(row, 1)?))
            })?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
        .await
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn webhooks(&self) -> tidewright_store::Result<Vec<Webhook>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT record FROM webhooks ORDER BY id")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            rows.map(|json| from_record(&json?, "webhook"))
                .collect::<Result<Vec<_>>>()
        })
        .await
    }

    async fn webhook_cursor(&self) -> tidewright_store::Result<u64> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT position FROM cursors WHERE name = 'webhooks'")?
                .query_row([], |row| row.get::<_, i64>(0))
                .optional()?
                .unwrap_or(0) as u64)
        })
        .await
    }

    async fn pending_deliveries(&self, limit: usize) -> tidewright_store::Result<Vec<Delivery>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT record FROM deliveries WHERE pending = 1 ORDER BY id LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |row| row.get::<_, String>(0))?;
            rows.map(|json| from_record(&json?, "delivery"))
                .collect::<Result<Vec<_>>>()
        })
        .await
    }

    async fn deliveries(&self, query: DeliveryQuery) -> tidewright_store::Result<Vec<Delivery>> {
        self.read(move |conn| {
            let tenants = query
                .tenants
                .as_ref()
                .map(|t| serde_json::Value::from(t.clone()).to_string());
            let mut stmt = conn.prepare_cached(
                "SELECT record FROM deliveries
                 WHERE (?1 IS NULL OR webhook_id = ?1)
                   AND (?2 IS NULL OR tenant IN (SELECT value FROM json_each(?2)))
                   AND (?3 IS NULL OR id < ?3)
                 ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![
                    query.webhook_id,
                    tenants,
                    query.before_id,
                    query.limit as i64
                ],
                |row| row.get::<_, String>(0),
            )?;
            rows.map(|json| from_record(&json?, "delivery"))
                .collect::<Result<Vec<_>>>()
        })
        .await
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn schedules(
        &self,
    ) -> tidewright_store::Result<Vec<tidewright_store::schedules::Schedule>> {
        self.read(|conn| named_records(conn, tidewright_store::Named::Schedules))
            .await
    }

    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> tidewright_store::Result<Option<tidewright_store::schedules::Schedule>> {
        let key = (tenant.to_string(), name.to_string());
        self.read(move |conn| named_record(conn, tidewright_store::Named::Schedules, &key))
            .await
    }
}

#[async_trait]
impl TriggerStore for SqliteStore {
    async fn triggers(&self) -> tidewright_store::Result<Vec<tidewright_store::triggers::Trigger>> {
        self.read(|conn| named_records(conn, tidewright_store::Named::Triggers))
            .await
    }

    async fn trigger(
        &self,
        tenant: &str,
        name: &str,
    ) -> tidewright_store::Result<Option<tidewright_store::triggers::Trigger>> {
        let key = (tenant.to_string(), name.to_string());
        self.read(move |conn| named_record(conn, tidewright_store::Named::Triggers, &key))
            .await
    }
}

/// Every record of `named`, by tenant and name.
fn named_records<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    named: tidewright_store::Named,
) -> Result<Vec<T>> {
    let sql = format!("SELECT record FROM {} ORDER BY tenant, name", named.table());
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    rows.map(|json| from_record(&json?, named.one()))
        .collect::<Result<Vec<_>>>()
}

/// The record of `named` by `(tenant, name)`, if there is one.
fn named_record<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    named: tidewright_store::Named,
    (tenant, name): &(String, String),
) -> Result<Option<T>> {
    let sql = format!(
        "SELECT record FROM {} WHERE tenant = ?1 AND name = ?2",
        named.table()
    );
    let json: Option<String> = conn
        .prepare_cached(&sql)?
        .query_row([tenant, name], |row| row.get(0))
        .optional()?;
    json.map(|json| from_record(&json, named.one())).transpose()
}

/// Every tenant's record in `(table, column)` (its budget, its share),
/// by tenant.
fn tenant_records<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    (table, column): (&str, &str),
) -> Result<Vec<(String, T)>> {
    let sql = format!("SELECT tenant, {column} FROM {table} ORDER BY tenant");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (tenant, json) = row?;
        let record = serde_json::from_str(&json).map_err(|e| {
            Fault::Store(Error::Corrupt(format!("tenant {tenant}'s {column}: {e}")))
        })?;
        Ok((tenant, record))
    })
    .collect()
}

/// A row of the fleet's order as stored: runs `[task, first, last]`
/// (`fleet::runs`), or, in rows written before runs, `[task, seq]` each.
fn fleet_row(commit: i64, json: &str) -> tidewright_store::Result<Vec<(String, u64)>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Run(String, u64, u64),
        One(String, u64),
    }
    let stored: Vec<Stored> = serde_json::from_str(json)
        .map_err(|e| Error::Corrupt(format!("the fleet's commit {commit}: {e}")))?;
    Ok(fleet::expand(stored.into_iter().map(|entry| match entry {
        Stored::Run(task, first, last) => (task, first, last),
        Stored::One(task, seq) => (task, seq, seq),
    })))
}

#[cfg(test)]
mod tests;
