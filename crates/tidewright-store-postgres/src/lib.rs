//! tidewright's store for clusters, PostgreSQL: one writer connection that
//! commits whatever has queued up in one transaction (group commit, with
//! each kind of row sent as arrays), a small pool of reader connections,
//! numbered migrations applied on start, and connections replaced by
//! themselves when the server restarts. PostgreSQL's errors stay inside:
//! callers get `tidewright_store::Error`.

mod batch;
mod conn;
mod costs;
mod expire;
mod fault;
pub mod lease;
mod pipeline;
mod reads;
mod schema;
mod state;
mod text;
#[cfg(any(test, feature = "throwaway"))]
pub mod throwaway;
mod webhooks;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tidewright_core::{Cost, Event, Micros, TaskState, TenantBudget, TenantShare};
use tidewright_store::admission::Bound;
use tidewright_store::fleet::{self, FleetPage};
use tidewright_store::retention::{Expired, Expiring, Retention};
use tidewright_store::{
    AuditRecord, Checkpoint, Commit, Created, Error, Named, NewTask, QueuedTask, StateChange,
    StateEntry, StateKey, StateOutcome, StateQuery, StepBranch, TaskQuery, TaskRecord, Unfinished,
    Write,
};
use tidewright_store::{
    EventStore, RecoveryStore, RetentionStore, ScheduleStore, StateStore, StepStore, TaskStore,
    TenantStore, TriggerStore, WebhookStore, WriteStore,
};
use tokio::sync::watch;
use tokio_postgres::{Config, Row};

use batch::TenantRecord;
use conn::{Conn, Pool};
use fault::{Fault, Result};
use reads::{
    QUEUED_BETWEEN, QUEUED_STEPS_BETWEEN, STARTED_BETWEEN, UNFINISHED_BETWEEN, UNFINISHED_BY_ID,
    UNFINISHED_IDS, attach_steps, audit_after, checkpoint, count, count_tasks, decode_task,
    events_after, fleet_events_after, get_state, get_task, list_state, list_tasks, ranged_rows,
    rows, running_attempt, step_branch, tasks_by_id, tenant_records,
};
use text::text;
use tidewright_store::write_queue::{Job, WriteQueue};

/// Reader connections kept open between reads.
const READERS: usize = 4;

pub struct PostgresStore {
    jobs: WriteQueue,
    readers: Arc<Pool>,
    /// Why the database is away, while it is (set by the writer).
    away: watch::Receiver<Option<String>>,
}

/// Reads a `postgres://` URL (or `key=value` settings), or says what is
/// wrong with it.
pub fn parse_url(url: &str) -> std::result::Result<Config, String> {
    url.parse::<Config>().map_err(|e| e.to_string())
}

/// The settings of `url`, or the store's error saying what is wrong.
pub(crate) fn config(url: &str) -> tidewright_store::Result<Config> {
    parse_url(url).map_err(|e| Error::Unavailable(format!("the postgres URL is not valid: {e}")))
}

/// A URL as logs and messages may show it, its password hidden:
/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[start..].find('/').map_or(base.len(), |i| start + i);
    let authority = &base[start..authority_end];
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let mut redacted = format!("{}{authority}{}", &base[..start], &base[authority_end..]);
    if !query.is_empty() {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => pair.to_string(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&query.join("&"));
    }
    redacted
}

impl PostgresStore {
    /// Connects to the database at `url`, brings its schema up to date (or
    /// refuses one from a newer tidewright), and starts the writer.
    pub async fn open(url: &str) -> tidewright_store::Result<PostgresStore> {
        Self::open_bounded(url, Bound::default()).await
    }

    /// Opens with its write queue held to `bound`.
    pub async fn open_bounded(url: &str, bound: Bound) -> tidewright_store::Result<PostgresStore> {
        Self::open_with(url, bound, None).await
    }

    /// Opens for the replica that leads at `epoch` (see [`lease`]): every
    /// transaction it writes is fenced with that epoch, and fails with
    /// [`Error::Deposed`], writing nothing, once another epoch has begun.
    pub async fn open_leading(url: &str, epoch: i64) -> tidewright_store::Result<PostgresStore> {
        Self::open_with(url, Bound::default(), Some(epoch)).await
    }

    async fn open_with(
        url: &str,
        bound: Bound,
        fence: Option<i64>,
    ) -> tidewright_store::Result<PostgresStore> {
        let config = config(url)?;
        let migrating = Conn::open(&config, "tidewright-migrate").await?;
        schema::migrate(&migrating.client).await?;
        drop(migrating);
        let (jobs, queue) = WriteQueue::new(bound);
        let (status, away) = watch::channel(None);
        writer::start(config.clone(), queue, status, fence).await?;
        Ok(PostgresStore {
            jobs,
            readers: Arc::new(Pool::new(config, READERS)),
            away,
        })
    }

    /// Runs a read on a pooled connection. A pooled connection the server
    /// dropped since (a restart) is found out by its first use; the read
    /// then runs once more on a new one.
    async fn read<T>(
        &self,
        read: impl for<'c> Fn(&'c mut Conn) -> BoxFuture<'c, Result<T>>,
    ) -> tidewright_store::Result<T> {
        let (mut conn, pooled) = self.readers.get(false).await?;
        let result = match read(&mut conn).await {
            Err(fault) if pooled && fault.lost_connection() => {
                let (fresh, _) = self.readers.get(true).await?;
                conn = fresh;
                read(&mut conn).await
            }
            result => result,
        };
        self.readers.put(conn);
        Ok(result?)
    }

    /// Unfinished tasks, whole: the four reads of `sqls` (see
    /// [`unfinished_reads`]), each run by `query` on a connection of its
    /// own, at once, then put together.
    async fn unfinished(
        &self,
        sqls: [&'static str; 4],
        query: impl for<'c> Fn(&'c mut Conn, &'static str) -> BoxFuture<'c, Result<Vec<Row>>>,
    ) -> tidewright_store::Result<Vec<TaskRecord>> {
        let [tasks_sql, seqs_sql, steps_sql, attempts_sql] = sqls;
        let query = &query;
        let (tasks, seqs, steps, attempts) = futures::future::try_join4(
            self.read(|conn| query(conn, tasks_sql)),
            self.read(|conn| query(conn, seqs_sql)),
            self.read(|conn| query(conn, steps_sql)),
            self.read(|conn| query(conn, attempts_sql)),
        )
        .await?;
        let mut tasks = tasks.iter().map(decode_task).collect::<Result<Vec<_>>>()?;
        let mut last_seq = std::collections::HashMap::with_capacity(seqs.len());
        for row in &seqs {
            let task_id: &str = row.try_get(0).map_err(Fault::from)?;
            let seq: i64 = row.try_get(1).map_err(Fault::from)?;
            last_seq.insert(task_id, seq);
        }
        for task in &mut tasks {
            task.last_seq = last_seq.get(task.id.as_str()).map_or(0, |&seq| seq as u64);
        }
        attach_steps(&mut tasks, &steps, &attempts)?;
        Ok(tasks)
    }

    /// Queues new work: refused at once while the database is away, even
    /// when the queue is full of the control plane's held writes (which
    /// would otherwise keep it waiting for room, then call it overload).
    async fn queue<T>(
        &self,
        job: impl FnOnce(tidewright_store::write_queue::Reply<T>) -> Job,
    ) -> tidewright_store::Result<T> {
        self.jobs
            .submit_unless(job, self.refused_while_away())
            .await
    }

    /// Resolves, with why, once the database is away.
    fn refused_while_away(&self) -> impl Future<Output = Error> + use<> {
        let mut away = self.away.clone();
        async move {
            match away.wait_for(Option::is_some).await {
                Ok(reason) => Error::Unavailable(format!(
                    "{}; nothing was written: retry later",
                    reason.clone().unwrap_or_default()
                )),
                Err(_) => Error::Closed,
            }
        }
    }
}

impl tidewright_store::Store for PostgresStore {}

#[async_trait]
impl WriteStore for PostgresStore {
    async fn create_tasks(&self, tasks: Vec<NewTask>) -> tidewright_store::Result<Vec<Created>> {
        self.queue(|reply| Job::Create(tasks, reply)).await
    }

    fn write(&self, batch: Vec<Write>) -> Commit {
        self.jobs.write(batch)
    }

    async fn wait_for_room(&self) -> tidewright_store::Result<()> {
        self.jobs.wait_for_room(self.refused_while_away()).await
    }
}

#[async_trait]
impl TaskStore for PostgresStore {
    async fn get_task(&self, id: &str) -> tidewright_store::Result<Option<TaskRecord>> {
        let id = text(id);
        self.read(|conn| Box::pin(get_task(conn, id.clone()))).await
    }

    async fn tasks_by_id(&self, ids: &[String]) -> tidewright_store::Result<Vec<TaskRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(|id| text(id)).collect();
        self.read(|conn| Box::pin(tasks_by_id(conn, ids.clone())))
            .await
    }

    async fn list_tasks(&self, query: TaskQuery) -> tidewright_store::Result<Vec<TaskRecord>> {
        self.read(|conn| {
            let query = query.clone();
            Box::pin(async move { list_tasks(conn, &query).await })
        })
        .await
    }

    async fn count_tasks(
        &self,
        tenants: Option<Vec<String>>,
    ) -> tidewright_store::Result<Vec<(TaskState, u64)>> {
        let tenants = tenants.map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>());
        self.read(|conn| Box::pin(count_tasks(conn, tenants.clone())))
            .await
    }
}

#[async_trait]
impl StepStore for PostgresStore {
    async fn running_attempt(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> tidewright_store::Result<Option<u32>> {
        let (task_id, step_id) = (text(task_id), text(step_id));
        self.read(|conn| Box::pin(running_attempt(conn, task_id.clone(), step_id.clone())))
            .await
    }

    async fn step_branch(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> tidewright_store::Result<Option<StepBranch>> {
        let (task_id, step_id) = (task_id.to_string(), step_id.to_string());
        self.read(|conn| Box::pin(step_branch(conn, task_id.clone(), step_id.clone())))
            .await
    }

    async fn checkpoint(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> tidewright_store::Result<Option<Checkpoint>> {
        let (task_id, step_id) = (text(task_id), text(step_id));
        self.read(|conn| Box::pin(checkpoint(conn, task_id.clone(), step_id.clone())))
            .await
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn events_after(
        &self,
        task_id: &str,
        after: u64,
        limit: usize,
    ) -> tidewright_store::Result<Vec<Event>> {
        let task_id = text(task_id);
        let limit = count(limit as u64);
        self.read(|conn| Box::pin(events_after(conn, task_id.clone(), count(after), limit)))
            .await
    }

    async fn fleet_events_after(
        &self,
        after: u64,
        tenants: Option<Vec<String>>,
        limit: usize,
    ) -> tidewright_store::Result<FleetPage> {
        let tenants = tenants.map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>());
        self.read(|conn| Box::pin(fleet_events_after(conn, after, tenants.clone(), limit)))
            .await
    }

    async fn fleet_head(&self) -> tidewright_store::Result<u64> {
        self.read(|conn| {
            Box::pin(async move {
                let last = rows(
                    conn,
                    "SELECT commit_no, task_ids, seqs, lasts FROM fleet
                     ORDER BY commit_no DESC LIMIT 1",
                    &[],
                )
                .await?;
                Ok(match last.first() {
                    None => 0,
                    Some(row) => {
                        let commit: i64 = row.try_get(0)?;
                        fleet::position(commit as u64, reads::fleet_entries(row)?.len())
                    }
                })
            })
        })
        .await
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
        tenants: Option<Vec<String>>,
    ) -> tidewright_store::Result<Vec<AuditRecord>> {
        let tenants = tenants.map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>());
        let limit = count(limit as u64);
        self.read(|conn| Box::pin(audit_after(conn, count(after), limit, tenants.clone())))
            .await
    }
}

#[async_trait]
impl RecoveryStore for PostgresStore {
    async fn unfinished_task_ids(&self) -> tidewright_store::Result<Vec<String>> {
        self.read(|conn| {
            Box::pin(async move {
                rows(conn, UNFINISHED_IDS, &[])
                    .await?
                    .iter()
                    .map(|row| Ok(row.try_get(0)?))
                    .collect()
            })
        })
        .await
    }

    async fn unfinished_tasks_between(
        &self,
        first: &str,
        last: &str,
    ) -> tidewright_store::Result<Vec<TaskRecord>> {
        let range = [text(first), text(last)];
        self.unfinished(UNFINISHED_BETWEEN, move |conn, sql| {
            Box::pin(ranged_rows(conn, sql, range.clone()))
        })
        .await
    }

    async fn recovery_between(
        &self,
        first: &str,
        last: &str,
    ) -> tidewright_store::Result<Vec<Unfinished>> {
        let range = [text(first), text(last)];
        let (queued, steps, started) = futures::future::try_join3(
            self.read(|conn| Box::pin(ranged_rows(conn, QUEUED_BETWEEN, range.clone()))),
            self.read(|conn| Box::pin(ranged_rows(conn, QUEUED_STEPS_BETWEEN, range.clone()))),
            self.read(|conn| Box::pin(ranged_rows(conn, STARTED_BETWEEN, range.clone()))),
        )
        .await?;
        // Per queued task: its queued steps' positions, or `None` once a
        // step was started or held at its gate (it is read whole).
        let mut queued_steps: std::collections::HashMap<&str, Option<Vec<usize>>> =
            std::collections::HashMap::with_capacity(queued.len());
        for row in &steps {
            let task_id: &str = row.try_get(0).map_err(Fault::from)?;
            let position: i32 = row.try_get(1).map_err(Fault::from)?;
            let state: &str = row.try_get(2).map_err(Fault::from)?;
            let started = row.try_get::<_, i64>(3).map_err(Fault::from)? > 0;
            let entry = queued_steps
                .entry(task_id)
                .or_insert_with(|| Some(Vec::new()));
            match (state, started) {
                ("queued", false) => {
                    if let Some(positions) = entry {
                        positions.push(position as usize);
                    }
                }
                ("waiting", false) => {}
                _ => *entry = None,
            }
        }
        let mut whole = Vec::new();
        for row in &started {
            whole.push(row.try_get::<_, String>(0).map_err(Fault::from)?);
        }
        let mut tasks = Vec::with_capacity(queued.len());
        for row in &queued {
            let id: String = row.try_get(0).map_err(Fault::from)?;
            let Some(Some(positions)) = queued_steps.remove(id.as_str()) else {
                whole.push(id);
                continue;
            };
            let created_at: i64 = row.try_get(1).map_err(Fault::from)?;
            let spec: &str = row.try_get(2).map_err(Fault::from)?;
            let tenant: String = row.try_get(3).map_err(Fault::from)?;
            tasks.push(Unfinished::Queued(QueuedTask::from_stored(
                (id, tenant),
                created_at,
                spec,
                positions,
            )?));
        }
        tasks.extend(
            self.unfinished_tasks_by_id(&whole)
                .await?
                .into_iter()
                .map(|task| Unfinished::Whole(Box::new(task))),
        );
        Ok(tasks)
    }

    async fn unfinished_tasks_by_id(
        &self,
        ids: &[String],
    ) -> tidewright_store::Result<Vec<TaskRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(|id| text(id)).collect();
        self.unfinished(UNFINISHED_BY_ID, move |conn, sql| {
            let ids = ids.clone();
            Box::pin(async move { rows(conn, sql, &[&ids]).await })
        })
        .await
    }
}

#[async_trait]
impl StateStore for PostgresStore {
    async fn change_state(&self, change: StateChange) -> tidewright_store::Result<StateOutcome> {
        self.queue(|reply| Job::State(change, reply)).await
    }

    async fn get_state(
        &self,
        key: StateKey,
        now: Micros,
    ) -> tidewright_store::Result<Option<StateEntry>> {
        self.read(|conn| Box::pin(get_state(conn, key.clone(), now)))
            .await
    }

    async fn list_state(
        &self,
        query: StateQuery,
    ) -> tidewright_store::Result<Vec<(StateKey, StateEntry)>> {
        self.read(|conn| Box::pin(list_state(conn, query.clone())))
            .await
    }
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn expiring(
        &self,
        retention: &Retention,
        now: i64,
        limit: usize,
    ) -> tidewright_store::Result<Vec<Expiring>> {
        let retention = retention.clone();
        self.read(|conn| {
            let retention = retention.clone();
            Box::pin(async move { expire::expiring(conn, &retention, now, limit).await })
        })
        .await
    }

    async fn expired(&self, id: &str) -> tidewright_store::Result<Option<Expired>> {
        let id = id.to_string();
        self.read(|conn| {
            let id = id.clone();
            Box::pin(async move { expire::expired(conn, &id).await })
        })
        .await
    }
}

#[async_trait]
impl TenantStore for PostgresStore {
    async fn tenant_budgets(&self) -> tidewright_store::Result<Vec<(String, TenantBudget)>> {
        self.read(|conn| Box::pin(tenant_records(conn, TenantRecord::Budget)))
            .await
    }

    async fn tenant_shares(&self) -> tidewright_store::Result<Vec<(String, TenantShare)>> {
        self.read(|conn| Box::pin(tenant_records(conn, TenantRecord::Share)))
            .await
    }

    async fn spend_since(&self, since: i64) -> tidewright_store::Result<Vec<(String, Cost)>> {
        self.read(move |conn| Box::pin(costs::spend_since(conn, since)))
            .await
    }

    async fn cost_sums(
        &self,
        from: &str,
        tenants: Option<Vec<String>>,
    ) -> tidewright_store::Result<Vec<tidewright_core::cost_sums::CostSum>> {
        let from = text(from);
        let tenants = tenants.map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>());
        self.read(move |conn| Box::pin(costs::cost_sums(conn, from.clone(), tenants.clone())))
            .await
    }
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn webhooks(&self) -> tidewright_store::Result<Vec<tidewright_store::webhooks::Webhook>> {
        self.read(|conn| Box::pin(webhooks::webhooks(conn))).await
    }

    async fn webhook_cursor(&self) -> tidewright_store::Result<u64> {
        self.read(|conn| Box::pin(webhooks::cursor(conn))).await
    }

    async fn pending_deliveries(
        &self,
        limit: usize,
    ) -> tidewright_store::Result<Vec<tidewright_store::webhooks::Delivery>> {
        let limit = count(limit as u64);
        self.read(move |conn| Box::pin(webhooks::pending(conn, limit)))
            .await
    }

    async fn deliveries(
        &self,
        query: tidewright_store::webhooks::DeliveryQuery,
    ) -> tidewright_store::Result<Vec<tidewright_store::webhooks::Delivery>> {
        let query = tidewright_store::webhooks::DeliveryQuery {
            webhook_id: query.webhook_id.as_deref().map(text),
            tenants: query
                .tenants
                .map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>()),
            before_id: query.before_id.as_deref().map(text),
            limit: query.limit,
        };
        self.read(|conn| Box::pin(webhooks::log(conn, query.clone())))
            .await
    }
}

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn schedules(
        &self,
    ) -> tidewright_store::Result<Vec<tidewright_store::schedules::Schedule>> {
        self.read(|conn| Box::pin(webhooks::named_records(conn, Named::Schedules)))
            .await
    }

    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> tidewright_store::Result<Option<tidewright_store::schedules::Schedule>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |conn| {
            Box::pin(webhooks::named_record(
                conn,
                Named::Schedules,
                tenant.clone(),
                name.clone(),
            ))
        })
        .await
    }
}

#[async_trait]
impl TriggerStore for PostgresStore {
    async fn triggers(&self) -> tidewright_store::Result<Vec<tidewright_store::triggers::Trigger>> {
        self.read(|conn| Box::pin(webhooks::named_records(conn, Named::Triggers)))
            .await
    }

    async fn trigger(
        &self,
        tenant: &str,
        name: &str,
    ) -> tidewright_store::Result<Option<tidewright_store::triggers::Trigger>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |conn| {
            Box::pin(webhooks::named_record(
                conn,
                Named::Triggers,
                tenant.clone(),
                name.clone(),
            ))
        })
        .await
    }
}

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod tests;
