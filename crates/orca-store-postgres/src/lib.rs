//! orca's store for clusters, PostgreSQL: one writer connection that
//! commits whatever has queued up in one transaction (group commit, with
//! each kind of row sent as arrays), a small pool of reader connections,
//! numbered migrations applied on start, and connections replaced by
//! themselves when the server restarts. PostgreSQL's errors stay inside:
//! callers get `orca_store::Error`.

mod batch;
mod conn;
mod fault;
pub mod lease;
mod schema;
#[cfg(any(test, feature = "throwaway"))]
pub mod throwaway;
mod webhooks;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use orca_core::{Cost, Event, EventKind, Micros, StepState, TaskSpec, TaskState, TenantBudget};
use orca_store::admission::Bound;
use orca_store::fleet::{self, FleetPage};
use orca_store::{
    AttemptRecord, AuditRecord, Checkpoint, Commit, Created, Error, NewTask, QueuedTask,
    StateChange, StateEntry, StateKey, StateOutcome, StateScope, StepRecord, Store, TaskQuery,
    TaskRecord, Unfinished, Write,
};
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, Row};

use conn::{Conn, Pool};
use fault::{Fault, Result};
use orca_store::write_queue::{Job, WriteQueue};

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
pub(crate) fn config(url: &str) -> orca_store::Result<Config> {
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
    /// refuses one from a newer orca), and starts the writer.
    pub async fn open(url: &str) -> orca_store::Result<PostgresStore> {
        Self::open_bounded(url, Bound::default()).await
    }

    /// Opens with its write queue held to `bound`.
    pub async fn open_bounded(url: &str, bound: Bound) -> orca_store::Result<PostgresStore> {
        Self::open_with(url, bound, None).await
    }

    /// Opens for the replica that leads at `epoch` (see [`lease`]): every
    /// transaction it writes is fenced with that epoch, and fails with
    /// [`Error::Deposed`], writing nothing, once another epoch has begun.
    pub async fn open_leading(url: &str, epoch: i64) -> orca_store::Result<PostgresStore> {
        Self::open_with(url, Bound::default(), Some(epoch)).await
    }

    async fn open_with(
        url: &str,
        bound: Bound,
        fence: Option<i64>,
    ) -> orca_store::Result<PostgresStore> {
        let config = config(url)?;
        let migrating = Conn::open(&config, "orca-migrate").await?;
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
    ) -> orca_store::Result<T> {
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
    ) -> orca_store::Result<Vec<TaskRecord>> {
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
        job: impl FnOnce(orca_store::write_queue::Reply<T>) -> Job,
    ) -> orca_store::Result<T> {
        let mut away = self.away.clone();
        let refused = async move {
            match away.wait_for(Option::is_some).await {
                Ok(reason) => Error::Unavailable(format!(
                    "{}; nothing was written: retry later",
                    reason.clone().unwrap_or_default()
                )),
                Err(_) => Error::Closed,
            }
        };
        self.jobs.submit_unless(job, refused).await
    }
}

/// PostgreSQL's text cannot hold NUL; it is stored as U+FFFD instead.
pub(crate) fn text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// JSON for a jsonb column, which refuses the escape `\u0000` (its strings
/// are text): those NULs become U+FFFD too.
pub(crate) fn json_text(json: &str) -> String {
    if !json.contains("\\u0000") {
        return json.to_string();
    }
    fn clean(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(text(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(clean).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (text(&k), clean(v)))
                    .collect(),
            ),
            other => other,
        }
    }
    match serde_json::from_str(json) {
        Ok(value) => clean(value).to_string(),
        // Not JSON: the database says so, naming the value.
        Err(_) => json.to_string(),
    }
}

/// The task's columns, with what its attempts cost summed and its newest
/// event's number, so a listing needs no further reads.
const TASK_SELECT: &str =
    "SELECT t.id, t.tenant, t.state, t.idempotency_key, t.spec::text, t.message,
        orca_micros(t.created_at), orca_micros(t.started_at), orca_micros(t.finished_at),
        COALESCE(t.plan::text, ''), t.trace_context,
        (SELECT COALESCE(MAX(e.seq), 0) FROM events e WHERE e.task_id = t.id),
        c.usd, c.input, c.output, c.cache_read, c.cache_creation
    FROM tasks t CROSS JOIN LATERAL (
        SELECT COALESCE(SUM(a.cost_usd), 0)::float8 AS usd,
               COALESCE(SUM(a.input_tokens), 0)::bigint AS input,
               COALESCE(SUM(a.output_tokens), 0)::bigint AS output,
               COALESCE(SUM(a.cache_read_tokens), 0)::bigint AS cache_read,
               COALESCE(SUM(a.cache_creation_tokens), 0)::bigint AS cache_creation
        FROM attempts a WHERE a.task_id = t.id) c";

const STEPS_OF: &str = "SELECT task_id, step_id, state, attempt, worker, orca_micros(started_at),
        orca_micros(finished_at), progress, progress_message, COALESCE(output::text, ''), error, exit_code,
        orca_micros(approval_deadline)
    FROM steps WHERE task_id = ANY($1::text[]) ORDER BY task_id, position";

const ATTEMPTS_OF: &str = "SELECT task_id, step_id, attempt, worker, orca_micros(started_at),
        orca_micros(finished_at), state, error, exit_code, session_id, model, cost_usd, input_tokens,
        output_tokens, cache_read_tokens, cache_creation_tokens
    FROM attempts WHERE task_id = ANY($1::text[]) ORDER BY task_id, step_id, attempt";

fn tokens(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn decode_task(row: &Row) -> Result<TaskRecord> {
    let id: String = row.try_get(0)?;
    let tenant: String = row.try_get(1)?;
    let state: String = row.try_get(2)?;
    let spec: String = row.try_get(4)?;
    let spec: TaskSpec = serde_json::from_str(&spec)
        .map_err(|e| Error::Corrupt(format!("the spec of task {id}: {e}")))?;
    let scope = format!("{tenant}/");
    let idempotency_key = row
        .try_get::<_, Option<String>>(3)?
        .map(|key| key.strip_prefix(&scope).map(str::to_string).unwrap_or(key));
    Ok(TaskRecord {
        state: state.parse()?,
        spec,
        idempotency_key,
        message: row.try_get(5)?,
        created_at: row.try_get(6)?,
        started_at: row.try_get(7)?,
        finished_at: row.try_get(8)?,
        plan_json: row.try_get(9)?,
        trace_context: row.try_get(10)?,
        last_seq: row.try_get::<_, i64>(11)? as u64,
        cost: Cost {
            usd: row.try_get(12)?,
            input_tokens: tokens(row.try_get(13)?),
            output_tokens: tokens(row.try_get(14)?),
            cache_read_tokens: tokens(row.try_get(15)?),
            cache_creation_tokens: tokens(row.try_get(16)?),
        },
        steps: Vec::new(),
        id,
        tenant,
    })
}

/// Reads the steps and attempts of `tasks` (two statements, pipelined).
async fn load_steps(conn: &mut Conn, tasks: &mut [TaskRecord]) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let steps_of = conn.statement(STEPS_OF).await?;
    let attempts_of = conn.statement(ATTEMPTS_OF).await?;
    let (steps, attempts) = futures::future::try_join(
        conn.client.query(&steps_of, &[&ids]),
        conn.client.query(&attempts_of, &[&ids]),
    )
    .await?;
    attach_steps(tasks, &steps, &attempts)
}

/// Puts rows of [`STEPS_OF`] and [`ATTEMPTS_OF`] (or their columns, in
/// their order) into their tasks.
fn attach_steps(tasks: &mut [TaskRecord], steps: &[Row], attempts: &[Row]) -> Result<()> {
    let index: std::collections::HashMap<String, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    for row in steps {
        let task_id: String = row.try_get(0)?;
        let Some(&i) = index.get(&task_id) else {
            continue;
        };
        let state: String = row.try_get(2)?;
        tasks[i].steps.push(StepRecord {
            id: row.try_get(1)?,
            state: state.parse()?,
            attempt: u32::try_from(row.try_get::<_, i64>(3)?).unwrap_or(u32::MAX),
            worker: row.try_get(4)?,
            started_at: row.try_get(5)?,
            finished_at: row.try_get(6)?,
            progress: row.try_get(7)?,
            progress_message: row.try_get(8)?,
            output_json: row.try_get(9)?,
            error: row.try_get(10)?,
            exit_code: row.try_get(11)?,
            attempts: Vec::new(),
            cost: Cost::default(),
            approval_deadline: row.try_get(12)?,
        });
    }
    for row in attempts {
        let task_id: String = row.try_get(0)?;
        let step_id: String = row.try_get(1)?;
        let Some(&i) = index.get(&task_id) else {
            continue;
        };
        let state: String = row.try_get(6)?;
        let attempt = AttemptRecord {
            attempt: u32::try_from(row.try_get::<_, i64>(2)?).unwrap_or(u32::MAX),
            worker: row.try_get(3)?,
            started_at: row.try_get(4)?,
            finished_at: row.try_get(5)?,
            state: state.parse::<StepState>()?,
            error: row.try_get(7)?,
            exit_code: row.try_get(8)?,
            session_id: row.try_get(9)?,
            model: row.try_get(10)?,
            cost: Cost {
                usd: row.try_get(11)?,
                input_tokens: tokens(row.try_get(12)?),
                output_tokens: tokens(row.try_get(13)?),
                cache_read_tokens: tokens(row.try_get(14)?),
                cache_creation_tokens: tokens(row.try_get(15)?),
            },
        };
        if let Some(step) = tasks[i].steps.iter_mut().find(|s| s.id == step_id) {
            step.attempts.push(attempt);
        }
    }
    for task in tasks {
        task.complete_attempts();
    }
    Ok(())
}

async fn get_task(conn: &mut Conn, id: String) -> Result<Option<TaskRecord>> {
    let statement = conn
        .statement(&format!("{TASK_SELECT} WHERE t.id = $1"))
        .await?;
    let Some(row) = conn.client.query_opt(&statement, &[&id]).await? else {
        return Ok(None);
    };
    let mut tasks = [decode_task(&row)?];
    load_steps(conn, &mut tasks).await?;
    let [task] = tasks;
    Ok(Some(task))
}

async fn tasks_by_id(conn: &mut Conn, ids: Vec<String>) -> Result<Vec<TaskRecord>> {
    let statement = conn
        .statement(&format!("{TASK_SELECT} WHERE t.id = ANY($1) ORDER BY t.id"))
        .await?;
    let mut tasks = conn
        .client
        .query(&statement, &[&ids])
        .await?
        .iter()
        .map(decode_task)
        .collect::<Result<Vec<_>>>()?;
    load_steps(conn, &mut tasks).await?;
    Ok(tasks)
}

/// Only the filters a query sets are in its SQL, so each shape gets a plan
/// that uses its index.
async fn list_tasks(conn: &mut Conn, query: &TaskQuery) -> Result<Vec<TaskRecord>> {
    let mut sql = format!("{TASK_SELECT} WHERE true");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if !query.states.is_empty() {
        let states: Vec<&'static str> = query.states.iter().map(|s| s.as_str()).collect();
        arg(&mut sql, " AND t.state = ANY(?::text[])", Box::new(states));
    }
    for (key, value) in &query.labels {
        let pair = serde_json::json!({ text(key): text(value) }).to_string();
        arg(&mut sql, " AND t.labels @> ?::text::jsonb", Box::new(pair));
    }
    if let Some(tenants) = &query.tenants {
        let tenants: Vec<String> = tenants.iter().map(|t| text(t)).collect();
        arg(
            &mut sql,
            " AND t.tenant = ANY(?::text[])",
            Box::new(tenants),
        );
    }
    if !query.name_prefix.is_empty() {
        // Not LIKE: a prefix's % and _ are its own characters.
        arg(
            &mut sql,
            " AND starts_with(t.name, ?)",
            Box::new(text(&query.name_prefix)),
        );
    }
    if let Some(before) = &query.before_id {
        arg(&mut sql, " AND t.id < ?", Box::new(text(before)));
    }
    let limit = i64::try_from(query.page_size).unwrap_or(i64::MAX);
    arg(&mut sql, " ORDER BY t.id DESC LIMIT ?", Box::new(limit));
    let statement = conn.statement(&sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as _).collect();
    let rows = conn.client.query(&statement, &params).await?;
    rows.iter().map(decode_task).collect()
}

/// Per state over the `(state, id)` index; per tenant, over the tenant's.
async fn count_tasks(
    conn: &mut Conn,
    tenants: Option<Vec<String>>,
) -> Result<Vec<(TaskState, u64)>> {
    let rows = match &tenants {
        None => {
            rows(
                conn,
                "SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state",
                &[],
            )
            .await?
        }
        Some(tenants) => {
            rows(
                conn,
                "SELECT state, COUNT(*) FROM tasks WHERE tenant = ANY($1::text[])
                 GROUP BY state ORDER BY state",
                &[tenants],
            )
            .await?
        }
    };
    rows.iter()
        .map(|row| {
            let state: String = row.try_get(0)?;
            let tasks: i64 = row.try_get(1)?;
            Ok((state.parse()?, tasks as u64))
        })
        .collect()
}

async fn events_after(
    conn: &mut Conn,
    task_id: String,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>> {
    let statement = conn
        .statement(
            "SELECT seq, orca_micros(at), body::text FROM events
             WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .await?;
    let rows = conn
        .client
        .query(&statement, &[&task_id, &after, &limit])
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get(0)?;
        let body: String = row.try_get(2)?;
        let kind: EventKind = serde_json::from_str(&body)
            .map_err(|e| Error::Corrupt(format!("event {task_id}/{seq}: {e}")))?;
        events.push(Event {
            task_id: task_id.clone(),
            seq: seq as u64,
            at: row.try_get(1)?,
            kind,
        });
    }
    Ok(events)
}

/// The fleet's events after a position: commit rows a few at a time from
/// its commit on, until they hold `limit` events after it, then those
/// events (with their tasks' tenants) in one statement.
async fn fleet_events_after(
    conn: &mut Conn,
    after: u64,
    tenants: Option<Vec<String>>,
    limit: usize,
) -> Result<FleetPage> {
    let mut commits = fleet::Rows::new(after, limit);
    while let Some(from) = commits.next() {
        let read = rows(
            conn,
            "SELECT commit_no, task_ids, seqs FROM fleet WHERE commit_no >= $1
             ORDER BY commit_no LIMIT $2",
            &[&(from as i64), &(fleet::Rows::AT_A_TIME as i64)],
        )
        .await?;
        let mut decoded = Vec::with_capacity(read.len());
        for row in &read {
            let commit: i64 = row.try_get(0)?;
            let task_ids: Vec<String> = row.try_get(1)?;
            let seqs: Vec<i64> = row.try_get(2)?;
            decoded.push((
                commit as u64,
                task_ids
                    .into_iter()
                    .zip(seqs.into_iter().map(|s| s as u64))
                    .collect(),
            ));
        }
        commits.take(decoded);
    }
    let entries = commits.entries();
    if entries.is_empty() {
        return Ok(commits.page(Vec::new()));
    }
    let (task_ids, seqs): (Vec<String>, Vec<i64>) = entries
        .iter()
        .map(|(_, task_id, seq)| (task_id.to_string(), *seq as i64))
        .unzip();
    let found = rows(
        conn,
        "SELECT u.n, orca_micros(e.at), e.body::text, t.tenant
         FROM UNNEST($1::text[], $2::bigint[]) WITH ORDINALITY AS u(task_id, seq, n)
         JOIN events e ON e.task_id = u.task_id AND e.seq = u.seq
         JOIN tasks t ON t.id = e.task_id
         ORDER BY u.n",
        &[&task_ids, &seqs],
    )
    .await?;
    let mut events = Vec::with_capacity(found.len());
    for row in found {
        let n: i64 = row.try_get(0)?;
        let tenant: String = row.try_get(3)?;
        if tenants.as_ref().is_some_and(|t| !t.contains(&tenant)) {
            continue;
        }
        let Some((at, task_id, seq)) = entries.get(n as usize - 1) else {
            continue;
        };
        let body: String = row.try_get(2)?;
        let kind: EventKind = serde_json::from_str(&body)
            .map_err(|e| Error::Corrupt(format!("event {task_id}/{seq}: {e}")))?;
        events.push((
            *at,
            Event {
                task_id: task_id.to_string(),
                seq: *seq,
                at: row.try_get(1)?,
                kind,
            },
        ));
    }
    Ok(commits.page(events))
}

/// Recovery lists the unfinished tasks' ids, then reads them a range of
/// ids at a time (or, for tasks the engine let go of, by their ids). Each range's statements run at once on connections of
/// their own, so the server works on them side by side, and each walks its
/// table's key over the range.
/// No snapshot ties them together: the leader writes to none of these
/// tasks until it has read them (an older leader's writes are fenced off),
/// and a task made since, which one statement may see and another not, is
/// no task the caller asked for. A task's cost is summed from its attempts
/// once they are read.
const UNFINISHED_IDS: &str =
    "SELECT id FROM tasks WHERE state IN ('queued', 'running', 'paused') ORDER BY id";

/// The four reads that bring unfinished tasks back whole: their rows, each
/// one's newest event number (a scan of their events, grouped, costs a
/// third of a lookup per task), their steps and their attempts. `$t` picks
/// the tasks; `$e`, `$s` and `$a` pick the events', steps' and attempts'
/// rows (aliased `e`, `s`, `a`) so each read walks its table's key. Rows of
/// tasks the first read does not return are dropped when they are put
/// together.
macro_rules! unfinished_reads {
    ($t:literal, $e:literal, $s:literal, $a:literal) => {
        [
            concat!(
                "SELECT t.id, t.tenant, t.state, t.idempotency_key, t.spec::text, t.message,
                    orca_micros(t.created_at), orca_micros(t.started_at), orca_micros(t.finished_at),
                    COALESCE(t.plan::text, ''), t.trace_context, 0::bigint,
                    0::float8, 0::bigint, 0::bigint, 0::bigint, 0::bigint
                FROM tasks t WHERE t.state IN ('queued', 'running', 'paused') AND ",
                $t,
                " ORDER BY t.id"
            ),
            concat!("SELECT e.task_id, MAX(e.seq) FROM events e ", $e, " GROUP BY e.task_id"),
            concat!(
                "SELECT s.task_id, s.step_id, s.state, s.attempt, s.worker,
                    orca_micros(s.started_at), orca_micros(s.finished_at), s.progress, s.progress_message,
                    COALESCE(s.output::text, ''), s.error, s.exit_code, orca_micros(s.approval_deadline)
                FROM steps s ",
                $s,
                " ORDER BY s.task_id, s.position"
            ),
            concat!(
                "SELECT a.task_id, a.step_id, a.attempt, a.worker,
                    orca_micros(a.started_at), orca_micros(a.finished_at), a.state, a.error, a.exit_code,
                    a.session_id, a.model, a.cost_usd, a.input_tokens, a.output_tokens,
                    a.cache_read_tokens, a.cache_creation_tokens
                FROM attempts a ",
                $a,
                " ORDER BY a.task_id, a.step_id, a.attempt"
            ),
        ]
    };
}

/// The unfinished tasks with ids from `$1` to `$2`. A range holds finished
/// tasks too: their rows are left out by a join.
const UNFINISHED_BETWEEN: [&str; 4] = unfinished_reads!(
    "t.id BETWEEN $1 AND $2",
    "JOIN tasks t ON t.id = e.task_id WHERE t.state IN ('queued', 'running', 'paused')
        AND t.id BETWEEN $1 AND $2 AND e.task_id BETWEEN $1 AND $2",
    "JOIN tasks t ON t.id = s.task_id WHERE t.state IN ('queued', 'running', 'paused')
        AND t.id BETWEEN $1 AND $2 AND s.task_id BETWEEN $1 AND $2",
    "JOIN tasks t ON t.id = a.task_id WHERE t.state IN ('queued', 'running', 'paused')
        AND t.id BETWEEN $1 AND $2 AND a.task_id BETWEEN $1 AND $2"
);

/// The unfinished tasks whose ids are in the array `$1`: a lookup of each
/// id's rows by key, without the join a range needs (the rows of a
/// finished task named here are dropped when put together).
///
/// The ids are a join against `unnest($1)`, not `= ANY($1)`, and each
/// task's newest event is one probe of the events' key: given a thousand
/// ids, the planner took most of a freshly filled table to match and
/// scanned all of it on every read-back of a cold backlog (a `perf` of the
/// drain had PostgreSQL at 85% of the machine, in
/// `ExecEvalHashedScalarArrayOp` and heap scans).
const UNFINISHED_BY_ID: [&str; 4] = {
    let [tasks, _, steps, attempts] = unfinished_reads!(
        "t.id IN (SELECT unnest($1::text[]))",
        "",
        "JOIN unnest($1::text[]) AS wanted(id) ON s.task_id = wanted.id",
        "JOIN unnest($1::text[]) AS wanted(id) ON a.task_id = wanted.id"
    );
    let newest_events = "SELECT wanted.id, newest.seq FROM unnest($1::text[]) AS wanted(id)
        CROSS JOIN LATERAL (SELECT e.seq FROM events e WHERE e.task_id = wanted.id
            ORDER BY e.seq DESC LIMIT 1) AS newest";
    [tasks, newest_events, steps, attempts]
};

/// The queued tasks from `$1` to `$2`: their creation and spec (read for
/// priority and needs only).
const QUEUED_BETWEEN: &str = "SELECT t.id, orca_micros(t.created_at), t.spec::text
    FROM tasks t WHERE t.state = 'queued' AND t.id BETWEEN $1 AND $2";

/// The steps of the queued tasks from `$1` to `$2`, in one walk of their
/// key: whether each task is untouched, and which steps are queued. (Two
/// lookups per task, made per row, cost more than the whole walk.)
const QUEUED_STEPS_BETWEEN: &str = "SELECT s.task_id, s.position, s.state, s.attempt
    FROM steps s JOIN tasks t ON t.id = s.task_id
    WHERE t.state = 'queued' AND t.id BETWEEN $1 AND $2 AND s.task_id BETWEEN $1 AND $2";

/// The running and paused tasks from `$1` to `$2`.
const STARTED_BETWEEN: &str =
    "SELECT id FROM tasks WHERE state IN ('running', 'paused') AND id BETWEEN $1 AND $2";

/// `[first, last]`, both included.
async fn ranged_rows(conn: &mut Conn, sql: &str, range: [String; 2]) -> Result<Vec<Row>> {
    let [first, last] = &range;
    rows(conn, sql, &[first, last]).await
}

async fn rows(conn: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
    let statement = conn.statement(sql).await?;
    Ok(conn.client.query(&statement, params).await?)
}

async fn get_state(conn: &mut Conn, key: StateKey, now: Micros) -> Result<Option<StateEntry>> {
    let statement = conn
        .statement(
            "SELECT value::text, version, orca_micros(updated_at), orca_micros(expires_at) FROM state
             WHERE tenant = $1 AND scope = $2 AND key = $3 AND value IS NOT NULL
               AND (expires_at IS NULL OR orca_micros(expires_at) > $4)",
        )
        .await?;
    let row = conn
        .client
        .query_opt(
            &statement,
            &[&text(&key.tenant), &text(&key.scope), &text(&key.key), &now],
        )
        .await?;
    row.map(|row| {
        Ok(StateEntry {
            value_json: row.try_get(0)?,
            version: row.try_get::<_, i64>(1)? as u64,
            updated_at: row.try_get(2)?,
            expires_at: row.try_get(3)?,
        })
    })
    .transpose()
}

async fn list_state(
    conn: &mut Conn,
    scope: StateScope,
    after_key: String,
    limit: i64,
    now: Micros,
) -> Result<Vec<(StateKey, StateEntry)>> {
    let found = rows(
        conn,
        "SELECT key, value::text, version, orca_micros(updated_at), orca_micros(expires_at)
         FROM state
         WHERE tenant = $1 AND scope = $2 AND key > $3 AND value IS NOT NULL
           AND (expires_at IS NULL OR orca_micros(expires_at) > $4)
         ORDER BY key LIMIT $5",
        &[
            &text(&scope.tenant),
            &text(&scope.scope),
            &text(&after_key),
            &now,
            &limit,
        ],
    )
    .await?;
    found
        .iter()
        .map(|row| {
            Ok((
                StateKey {
                    tenant: scope.tenant.clone(),
                    scope: scope.scope.clone(),
                    key: row.try_get(0)?,
                },
                StateEntry {
                    value_json: row.try_get(1)?,
                    version: row.try_get::<_, i64>(2)? as u64,
                    updated_at: row.try_get(3)?,
                    expires_at: row.try_get(4)?,
                },
            ))
        })
        .collect()
}

async fn running_attempt(conn: &mut Conn, task_id: String, step_id: String) -> Result<Option<u32>> {
    let statement = conn
        .statement(
            "SELECT attempt FROM steps WHERE task_id = $1 AND step_id = $2 AND state = 'running'",
        )
        .await?;
    let row = conn
        .client
        .query_opt(&statement, &[&task_id, &step_id])
        .await?;
    Ok(row
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()?
        .map(|a| u32::try_from(a).unwrap_or(u32::MAX)))
}

async fn checkpoint(
    conn: &mut Conn,
    task_id: String,
    step_id: String,
) -> Result<Option<Checkpoint>> {
    let statement = conn
        .statement(
            "SELECT attempt, session_id, workspace, archive, orca_micros(created_at)
             FROM checkpoints WHERE task_id = $1 AND step_id = $2",
        )
        .await?;
    let row = conn
        .client
        .query_opt(&statement, &[&task_id, &step_id])
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Checkpoint {
        task_id,
        step_id,
        attempt: u32::try_from(row.try_get::<_, i64>(0)?).unwrap_or(u32::MAX),
        session_id: row.try_get(1)?,
        workspace: row.try_get(2)?,
        archive: row.try_get(3)?,
        created_at: row.try_get(4)?,
    }))
}

async fn audit_after(
    conn: &mut Conn,
    after: i64,
    limit: i64,
    tenants: Option<Vec<String>>,
) -> Result<Vec<AuditRecord>> {
    let statement = conn
        .statement(
            "SELECT seq, orca_micros(at), actor, role, action, tenant, target, outcome, detail FROM audit
             WHERE seq > $1 AND ($2::text[] IS NULL OR tenant = ANY($2::text[]))
             ORDER BY seq LIMIT $3",
        )
        .await?;
    let rows = conn
        .client
        .query(&statement, &[&after, &tenants, &limit])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditRecord {
                seq: row.try_get::<_, i64>(0)? as u64,
                at: row.try_get(1)?,
                actor: row.try_get(2)?,
                role: row.try_get(3)?,
                action: row.try_get(4)?,
                tenant: row.try_get(5)?,
                target: row.try_get(6)?,
                outcome: row.try_get(7)?,
                detail: row.try_get(8)?,
            })
        })
        .collect()
}

async fn tenant_budgets(conn: &mut Conn) -> Result<Vec<(String, TenantBudget)>> {
    let statement = conn
        .statement("SELECT tenant, budget::text FROM budgets ORDER BY tenant")
        .await?;
    let rows = conn.client.query(&statement, &[]).await?;
    rows.iter()
        .map(|row| {
            let tenant: String = row.try_get(0)?;
            let json: String = row.try_get(1)?;
            let budget = serde_json::from_str(&json)
                .map_err(|e| Error::Corrupt(format!("tenant {tenant}'s budget: {e}")))?;
            Ok((tenant, budget))
        })
        .collect()
}

async fn spend_since(conn: &mut Conn, since: i64) -> Result<Vec<(String, Cost)>> {
    let statement = conn
        .statement(
            "SELECT t.tenant, SUM(a.cost_usd)::float8, SUM(a.input_tokens)::bigint,
                    SUM(a.output_tokens)::bigint, SUM(a.cache_read_tokens)::bigint,
                    SUM(a.cache_creation_tokens)::bigint
             FROM attempts a JOIN tasks t ON t.id = a.task_id
             WHERE a.finished_at IS NOT NULL AND orca_micros(a.finished_at) >= $1
               AND (a.cost_usd > 0 OR a.input_tokens > 0 OR a.output_tokens > 0)
             GROUP BY t.tenant ORDER BY t.tenant",
        )
        .await?;
    let rows = conn.client.query(&statement, &[&since]).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                Cost {
                    usd: row.try_get(1)?,
                    input_tokens: row.try_get::<_, i64>(2)? as u64,
                    output_tokens: row.try_get::<_, i64>(3)? as u64,
                    cache_read_tokens: row.try_get::<_, i64>(4)? as u64,
                    cache_creation_tokens: row.try_get::<_, i64>(5)? as u64,
                },
            ))
        })
        .collect()
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_tasks(&self, tasks: Vec<NewTask>) -> orca_store::Result<Vec<Created>> {
        self.queue(|reply| Job::Create(tasks, reply)).await
    }

    fn write(&self, batch: Vec<Write>) -> Commit {
        self.jobs.write(batch)
    }

    async fn get_task(&self, id: &str) -> orca_store::Result<Option<TaskRecord>> {
        let id = text(id);
        self.read(|conn| Box::pin(get_task(conn, id.clone()))).await
    }

    async fn tasks_by_id(&self, ids: &[String]) -> orca_store::Result<Vec<TaskRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(|id| text(id)).collect();
        self.read(|conn| Box::pin(tasks_by_id(conn, ids.clone())))
            .await
    }

    async fn list_tasks(&self, query: TaskQuery) -> orca_store::Result<Vec<TaskRecord>> {
        self.read(|conn| {
            let query = query.clone();
            Box::pin(async move { list_tasks(conn, &query).await })
        })
        .await
    }

    async fn count_tasks(
        &self,
        tenants: Option<Vec<String>>,
    ) -> orca_store::Result<Vec<(TaskState, u64)>> {
        let tenants = tenants.map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>());
        self.read(|conn| Box::pin(count_tasks(conn, tenants.clone())))
            .await
    }

    async fn events_after(
        &self,
        task_id: &str,
        after: u64,
        limit: usize,
    ) -> orca_store::Result<Vec<Event>> {
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
    ) -> orca_store::Result<FleetPage> {
        let tenants = tenants.map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>());
        self.read(|conn| Box::pin(fleet_events_after(conn, after, tenants.clone(), limit)))
            .await
    }

    async fn fleet_head(&self) -> orca_store::Result<u64> {
        self.read(|conn| {
            Box::pin(async move {
                let last = rows(
                    conn,
                    "SELECT commit_no, cardinality(seqs) FROM fleet ORDER BY commit_no DESC LIMIT 1",
                    &[],
                )
                .await?;
                Ok(match last.first() {
                    None => 0,
                    Some(row) => {
                        let commit: i64 = row.try_get(0)?;
                        let events: i32 = row.try_get(1)?;
                        fleet::position(commit as u64, events as usize)
                    }
                })
            })
        })
        .await
    }

    async fn unfinished_task_ids(&self) -> orca_store::Result<Vec<String>> {
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
    ) -> orca_store::Result<Vec<TaskRecord>> {
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
    ) -> orca_store::Result<Vec<Unfinished>> {
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
            tasks.push(Unfinished::Queued(QueuedTask::from_stored(
                id, created_at, spec, positions,
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

    async fn unfinished_tasks_by_id(&self, ids: &[String]) -> orca_store::Result<Vec<TaskRecord>> {
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

    async fn change_state(&self, change: StateChange) -> orca_store::Result<StateOutcome> {
        self.queue(|reply| Job::State(change, reply)).await
    }

    async fn get_state(
        &self,
        key: StateKey,
        now: Micros,
    ) -> orca_store::Result<Option<StateEntry>> {
        self.read(|conn| Box::pin(get_state(conn, key.clone(), now)))
            .await
    }

    async fn list_state(
        &self,
        scope: StateScope,
        after_key: &str,
        limit: usize,
        now: Micros,
    ) -> orca_store::Result<Vec<(StateKey, StateEntry)>> {
        let after_key = after_key.to_string();
        let limit = count(limit as u64);
        self.read(|conn| {
            Box::pin(list_state(
                conn,
                scope.clone(),
                after_key.clone(),
                limit,
                now,
            ))
        })
        .await
    }

    async fn running_attempt(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> orca_store::Result<Option<u32>> {
        let (task_id, step_id) = (text(task_id), text(step_id));
        self.read(|conn| Box::pin(running_attempt(conn, task_id.clone(), step_id.clone())))
            .await
    }

    async fn checkpoint(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> orca_store::Result<Option<Checkpoint>> {
        let (task_id, step_id) = (text(task_id), text(step_id));
        self.read(|conn| Box::pin(checkpoint(conn, task_id.clone(), step_id.clone())))
            .await
    }

    async fn tenant_budgets(&self) -> orca_store::Result<Vec<(String, TenantBudget)>> {
        self.read(|conn| Box::pin(tenant_budgets(conn))).await
    }

    async fn spend_since(&self, since: i64) -> orca_store::Result<Vec<(String, Cost)>> {
        self.read(move |conn| Box::pin(spend_since(conn, since)))
            .await
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
        tenants: Option<Vec<String>>,
    ) -> orca_store::Result<Vec<AuditRecord>> {
        let tenants = tenants.map(|t| t.iter().map(|t| text(t)).collect::<Vec<_>>());
        let limit = count(limit as u64);
        self.read(|conn| Box::pin(audit_after(conn, count(after), limit, tenants.clone())))
            .await
    }

    async fn webhooks(&self) -> orca_store::Result<Vec<orca_store::webhooks::Webhook>> {
        self.read(|conn| Box::pin(webhooks::webhooks(conn))).await
    }

    async fn webhook_cursor(&self) -> orca_store::Result<u64> {
        self.read(|conn| Box::pin(webhooks::cursor(conn))).await
    }

    async fn pending_deliveries(
        &self,
        limit: usize,
    ) -> orca_store::Result<Vec<orca_store::webhooks::Delivery>> {
        let limit = count(limit as u64);
        self.read(move |conn| Box::pin(webhooks::pending(conn, limit)))
            .await
    }

    async fn deliveries(
        &self,
        query: orca_store::webhooks::DeliveryQuery,
    ) -> orca_store::Result<Vec<orca_store::webhooks::Delivery>> {
        let query = orca_store::webhooks::DeliveryQuery {
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

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod tests;
