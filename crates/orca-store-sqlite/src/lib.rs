//! orca's embedded store, SQLite: one file in WAL mode, one writer thread
//! that commits whatever has queued up in a single transaction (group
//! commit), and a small pool of reader connections that never wait for the
//! writer. SQLite's errors stay inside: callers get `orca_store::Error`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orca_core::{Cost, Event, EventKind, StepState, TaskSpec, TaskState, TenantBudget};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

mod writer;
use writer::{WalLimits, WalState, run_checkpoints, run_writer};

use orca_store::admission::Bound;
use orca_store::fleet::{self, FleetPage};
use orca_store::webhooks::{Delivery, DeliveryQuery, DeliveryState, Webhook};
use orca_store::write_queue::{Job, WriteQueue};
use orca_store::{
    AttemptRecord, AttemptWrite, AuditRecord, Checkpoint, Commit, Created, Error, NewTask,
    QueuedTask, StateChange, StateEntry, StateKey, StateOutcome, StateScope, StepRecord, StepWrite,
    Store, TaskQuery, TaskRecord, Unfinished, Write,
};

/// What went wrong inside: SQLite's own error, kept whole until it leaves
/// the crate as an [`Error`] that says what the caller can do.
#[derive(Debug)]
enum Fault {
    Sqlite(rusqlite::Error),
    Store(Error),
}

type Result<T> = std::result::Result<T, Fault>;

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        Fault::Sqlite(e)
    }
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Store(e)
    }
}

/// A stored state or kind name this build does not know.
impl From<orca_core::Error> for Fault {
    fn from(e: orca_core::Error) -> Self {
        Fault::Store(Error::Corrupt(e.to_string()))
    }
}

impl From<Fault> for Error {
    fn from(fault: Fault) -> Self {
        use rusqlite::ErrorCode;
        let e = match fault {
            Fault::Store(e) => return e,
            Fault::Sqlite(e) => e,
        };
        let message = format!("sqlite: {e}");
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Error::Corrupt(message),
            Some(ErrorCode::ConstraintViolation) => Error::Conflict(message),
            // Busy, locked, I/O, a full disk, an unopenable file: the
            // database may serve again later.
            Some(_) => Error::Unavailable(message),
            // Not from SQLite itself: a value that does not read back as
            // what was written.
            None if matches!(
                e,
                rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..)
                    | rusqlite::Error::Utf8Error(..)
            ) =>
            {
                Error::Corrupt(message)
            }
            None => Error::Unavailable(message),
        }
    }
}

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Committed data survives a crash of orca (kill -9) but may lose the
    /// last commits if the machine loses power. SQLite's `synchronous=NORMAL`.
    #[default]
    Process,
    /// Every commit is fsynced: survives power loss, at a cost per commit
    /// (shared by all writes that commit together). `synchronous=FULL`.
    Machine,
}

impl Durability {
    /// Every setting, by the name flags and URLs give it.
    pub const NAMES: [&str; 2] = ["process", "machine"];

    /// Its name, as [`Self::NAMES`] lists it.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Process => "process",
            Durability::Machine => "machine",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        match name {
            "process" => Ok(Durability::Process),
            "machine" => Ok(Durability::Machine),
            other => Err(format!(
                "{other:?} is not a durability; one of: {}",
                Durability::NAMES.join(", ")
            )),
        }
    }
}

/// Most jobs committed in one transaction: bounds the latency a burst adds.
const MAX_GROUP: usize = 512;
const READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    state           TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    spec            TEXT NOT NULL,
    labels          TEXT NOT NULL,
    message         TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    started_at      INTEGER NOT NULL DEFAULT 0,
    finished_at     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, id);
CREATE TABLE IF NOT EXISTS steps (
    task_id          TEXT NOT NULL,
    step_id          TEXT NOT NULL,
    position         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    worker           TEXT NOT NULL DEFAULT '',
    started_at       INTEGER NOT NULL DEFAULT 0,
    finished_at      INTEGER NOT NULL DEFAULT 0,
    progress         REAL NOT NULL DEFAULT 0,
    progress_message TEXT NOT NULL DEFAULT '',
    output           TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT '',
    exit_code        INTEGER,
    approval_deadline INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, step_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    task_id     TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker      TEXT NOT NULL DEFAULT '',
    started_at  INTEGER NOT NULL DEFAULT 0,
    finished_at INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'running',
    error       TEXT NOT NULL DEFAULT '',
    exit_code   INTEGER,
    PRIMARY KEY (task_id, step_id, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    task_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    tenant     TEXT NOT NULL,
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, scope, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fleet (
    commit_no INTEGER PRIMARY KEY,
    events    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS budgets (
    tenant TEXT PRIMARY KEY,
    budget TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    task_id    TEXT NOT NULL,
    step_id    TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    workspace  TEXT NOT NULL,
    archive    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (task_id, step_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhooks (
    id     TEXT PRIMARY KEY,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    id         TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    pending    INTEGER NOT NULL,
    record     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(id) WHERE pending = 1;
CREATE INDEX IF NOT EXISTS deliveries_by_webhook ON deliveries(webhook_id, id);
CREATE TABLE IF NOT EXISTS cursors (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT NOT NULL,
    action  TEXT NOT NULL,
    tenant  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
);
";

pub struct SqliteStore {
    jobs: WriteQueue,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `orca.db` in `data_dir`.
    pub fn open(data_dir: &Path, durability: Durability) -> orca_store::Result<SqliteStore> {
        Self::open_bounded(data_dir, durability, Bound::default())
    }

    /// Opens `orca.db` in `data_dir` with its write queue held to `bound`.
    pub fn open_bounded(
        data_dir: &Path,
        durability: Durability,
        bound: Bound,
    ) -> orca_store::Result<SqliteStore> {
        Ok(Self::open_at(
            &data_dir.join("orca.db"),
            durability,
            bound,
            WalLimits::default(),
        )?)
    }

    /// Opens (creating if needed, with its directory) the database file
    /// `path`.
    pub fn open_file(path: &Path, durability: Durability) -> orca_store::Result<SqliteStore> {
        Ok(Self::open_at(
            path,
            durability,
            Bound::default(),
            WalLimits::default(),
        )?)
    }

    fn open_at(
        path: &Path,
        durability: Durability,
        bound: Bound,
        wal_limits: WalLimits,
    ) -> Result<SqliteStore> {
        let data_dir = path.parent().unwrap_or(Path::new("."));
        let unusable = |source: std::io::Error| {
            Error::Unavailable(format!("data directory {}: {source}", data_dir.display()))
        };
        if !data_dir.as_os_str().is_empty() {
            std::fs::create_dir_all(data_dir).map_err(unusable)?;
        }
        let path = path.to_path_buf();
        let writer = open_connection(&path, durability)?;
        writer.execute_batch(SCHEMA)?;
        migrate(&writer)?;
        // Checkpoints copy the WAL into the database file and fsync; run on
        // the writer they would stall every commit queued behind them, so a
        // thread of their own does them instead, concurrently with writes.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.pragma_update(None, "journal_size_limit", wal_limits.size_limit)?;
        let checkpointer = open_connection(&path, durability)?;
        let readers = (0..READERS)
            .map(|_| open_connection(&path, durability))
            .collect::<Result<Vec<_>>>()?;
        let (jobs, queue) = WriteQueue::new(bound);
        let wal = Arc::new(WalState::new(wal_limits));
        let shared = wal.clone();
        std::thread::Builder::new()
            .name("orca-store-writer".into())
            .spawn(move || {
                run_writer(writer, queue, &shared);
                shared.writer_done.store(true, Ordering::Relaxed);
            })
            .map_err(unusable)?;
        std::thread::Builder::new()
            .name("orca-store-checkpoint".into())
            .spawn(move || run_checkpoints(checkpointer, &wal))
            .map_err(unusable)?;
        Ok(SqliteStore {
            jobs,
            readers: Arc::new(Mutex::new(readers)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on a pooled connection off the async threads.
    async fn read<T, F>(&self, f: F) -> orca_store::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers
                .lock()
                .map_err(|_| Fault::Store(Error::Closed))?
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path, Durability::Process)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock() {
                pool.push(conn);
            }
            result.map_err(Error::from)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("a read failed to run: {e}")))?
    }
}

/// Brings a database made by an older orca up to this schema.
fn migrate(conn: &Connection) -> Result<()> {
    if !has_column(conn, "tasks", "tenant")? {
        conn.execute_batch(
            "ALTER TABLE tasks ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
             UPDATE tasks SET idempotency_key = tenant || '/' || idempotency_key
                 WHERE idempotency_key IS NOT NULL;",
        )?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS tasks_by_tenant ON tasks(tenant, id)")?;
    add_missing_column(conn, "tasks", "plan", "TEXT NOT NULL DEFAULT ''")?;
    add_missing_column(conn, "tasks", "trace_context", "TEXT NOT NULL DEFAULT ''")?;
    // Agents' sessions and costs, per attempt.
    for (column, kind) in [
        ("session_id", "TEXT NOT NULL DEFAULT ''"),
        ("model", "TEXT NOT NULL DEFAULT ''"),
        ("cost_usd", "REAL NOT NULL DEFAULT 0"),
        ("input_tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("output_tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("cache_read_tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("cache_creation_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        add_missing_column(conn, "attempts", column, kind)?;
    }
    add_missing_column(
        conn,
        "steps",
        "approval_deadline",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    Ok(conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])?)
}

/// Adds `column` to `table` unless an earlier start already did. `table`,
/// `column` and `kind` are this file's constants, never input.
fn add_missing_column(conn: &Connection, table: &str, column: &str, kind: &str) -> Result<()> {
    if !has_column(conn, table, column)? {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
    }
    Ok(())
}

fn open_connection(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Process => "NORMAL",
        Durability::Machine => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

/// A record kept as JSON, read back.
fn from_record<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    serde_json::from_str(json)
        .map_err(|e| Fault::Store(Error::Corrupt(format!("a stored {what}: {e}"))))
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Fault::Store(Error::Corrupt(format!("{what} does not encode: {e}"))))
}

fn create_tasks(conn: &Connection, tasks: &[NewTask]) -> Result<Vec<Created>> {
    let mut created = Vec::with_capacity(tasks.len());
    for task in tasks {
        // Keys are per tenant: one tenant's key never finds another's task.
        let key = task
            .idempotency_key
            .as_ref()
            .map(|key| format!("{}/{key}", task.tenant));
        if let Some(key) = &key {
            let existing: Option<String> = conn
                .prepare_cached("SELECT id FROM tasks WHERE idempotency_key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?;
            if let Some(id) = existing {
                created.push(Created::Existing(id));
                continue;
            }
        }
        conn.prepare_cached(
            "INSERT INTO tasks (id, name, priority, state, idempotency_key, spec, labels, created_at, tenant, plan, message, trace_context, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, CASE WHEN ?4 IN ('succeeded', 'failed', 'cancelled') THEN ?8 ELSE 0 END)",
        )?
        .execute(params![
            task.id,
            task.spec.name,
            task.spec.priority,
            task.state.as_str(),
            key,
            to_json(&task.spec, "task spec")?,
            to_json(&task.spec.labels, "labels")?,
            task.created_at,
            task.tenant,
            task.plan_json,
            task.message,
            task.trace_context,
        ])?;
        let mut insert_step = conn.prepare_cached(
            "INSERT INTO steps (task_id, step_id, position, state) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (position, (step, state)) in task.spec.steps.iter().zip(&task.step_states).enumerate() {
            insert_step.execute(params![task.id, step.id, position as i64, state.as_str()])?;
        }
        for event in &task.events {
            insert_event(conn, event)?;
        }
        created.push(Created::New(task.id.clone()));
    }
    Ok(created)
}

/// The row at `key`: its version and whether it holds a live value at
/// `now` (a deleted or expired value keeps its version, so versions never
/// repeat).
fn state_row(conn: &Connection, key: &StateKey, now: i64) -> Result<Option<(u64, bool)>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, value IS NOT NULL AND (expires_at = 0 OR expires_at > ?4)
             FROM state WHERE tenant = ?1 AND scope = ?2 AND key = ?3",
        )?
        .query_row(params![key.tenant, key.scope, key.key, now], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get::<_, bool>(1)?))
        })
        .optional()?)
}

fn change_state(conn: &Connection, change: &StateChange) -> Result<StateOutcome> {
    let (key, expect, now) = match change {
        StateChange::Put {
            key, expect, now, ..
        }
        | StateChange::Delete { key, expect, now } => (key, *expect, *now),
    };
    let row = state_row(conn, key, now)?;
    let live = row.filter(|(_, live)| *live).map(|(version, _)| version);
    if !expect.met_by(live) {
        return Ok(StateOutcome::Conflict { found: live });
    }
    let version = row.map_or(0, |(version, _)| version) + 1;
    match change {
        StateChange::Put {
            value_json,
            expires_at,
            ..
        } => {
            conn.prepare_cached(
                "INSERT INTO state (tenant, scope, key, value, version, updated_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tenant, scope, key) DO UPDATE SET
                    value = ?4, version = ?5, updated_at = ?6, expires_at = ?7",
            )?
            .execute(params![
                key.tenant,
                key.scope,
                key.key,
                value_json,
                version as i64,
                now,
                expires_at
            ])?;
            Ok(StateOutcome::Done(Some(StateEntry {
                value_json: value_json.clone(),
                version,
                updated_at: now,
                expires_at: *expires_at,
            })))
        }
        StateChange::Delete { .. } => {
            if live.is_some() {
                conn.prepare_cached(
                    "UPDATE state SET value = NULL, version = ?4, updated_at = ?5, expires_at = 0
                     WHERE tenant = ?1 AND scope = ?2 AND key = ?3",
                )?
                .execute(params![
                    key.tenant,
                    key.scope,
                    key.key,
                    version as i64,
                    now
                ])?;
            }
            Ok(StateOutcome::Done(None))
        }
    }
}

fn insert_event(conn: &Connection, event: &Event) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (task_id, seq, at, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        event.task_id,
        event.seq as i64,
        event.at,
        event.kind.name(),
        to_json(&event.kind, "event")?,
    ])?;
    Ok(())
}

fn apply_writes(conn: &Connection, writes: &[Write]) -> Result<()> {
    for write in writes {
        match write {
            Write::Task {
                id,
                state,
                message,
                started_at,
                finished_at,
            } => {
                conn.prepare_cached(
                    "UPDATE tasks SET state = ?2, message = ?3,
                        started_at = COALESCE(?4, started_at),
                        finished_at = COALESCE(?5, finished_at)
                     WHERE id = ?1",
                )?
                .execute(params![
                    id,
                    state.as_str(),
                    message,
                    started_at,
                    finished_at
                ])?;
            }
            Write::Step(step) => update_step(conn, step)?,
            Write::Spec { id, spec } => {
                conn.prepare_cached("UPDATE tasks SET spec = ?2 WHERE id = ?1")?
                    .execute(params![id, to_json(spec, "task spec")?])?;
            }
            Write::TenantBudget { tenant, budget } => {
                if budget.is_empty() {
                    conn.prepare_cached("DELETE FROM budgets WHERE tenant = ?1")?
                        .execute(params![tenant])?;
                } else {
                    conn.prepare_cached(
                        "INSERT INTO budgets (tenant, budget) VALUES (?1, ?2)
                         ON CONFLICT (tenant) DO UPDATE SET budget = excluded.budget",
                    )?
                    .execute(params![tenant, to_json(budget, "budget")?])?;
                }
            }
            Write::Attempt(attempt) => upsert_attempt(conn, attempt)?,
            Write::Checkpoint(checkpoint) => {
                // Only the step's current attempt, and never over a newer
                // attempt's (see `Write::Checkpoint`).
                conn.prepare_cached(
                    "INSERT INTO checkpoints
                         (task_id, step_id, attempt, session_id, workspace, archive, created_at)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 FROM steps
                         WHERE task_id = ?1 AND step_id = ?2 AND attempt = ?3
                     ON CONFLICT (task_id, step_id) DO UPDATE SET
                         attempt = excluded.attempt, session_id = excluded.session_id,
                         workspace = excluded.workspace, archive = excluded.archive,
                         created_at = excluded.created_at
                     WHERE excluded.attempt >= checkpoints.attempt",
                )?
                .execute(params![
                    checkpoint.task_id,
                    checkpoint.step_id,
                    checkpoint.attempt,
                    checkpoint.session_id,
                    checkpoint.workspace,
                    checkpoint.archive,
                    checkpoint.created_at
                ])?;
            }
            Write::ExpireCheckpoints { finished_before } => {
                conn.prepare_cached(
                    "DELETE FROM checkpoints WHERE task_id IN
                         (SELECT id FROM tasks WHERE finished_at > 0 AND finished_at < ?1)",
                )?
                .execute(params![finished_before])?;
            }
            Write::Webhook(webhook) => {
                conn.prepare_cached(
                    "INSERT INTO webhooks (id, record) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                )?
                .execute(params![webhook.id, to_json(webhook, "webhook")?])?;
            }
            Write::RemoveWebhook { id } => {
                conn.prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
                    .execute(params![id])?;
                conn.prepare_cached("DELETE FROM deliveries WHERE webhook_id = ?1")?
                    .execute(params![id])?;
            }
            Write::Deliveries { cursor, deliveries } => {
                let mut upsert = conn.prepare_cached(
                    "INSERT INTO deliveries (id, webhook_id, tenant, pending, record)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET
                         pending = excluded.pending, record = excluded.record",
                )?;
                for delivery in deliveries {
                    upsert.execute(params![
                        delivery.id,
                        delivery.webhook_id,
                        delivery.tenant,
                        delivery.state == DeliveryState::Pending,
                        to_json(delivery, "delivery")?
                    ])?;
                }
                if let Some(cursor) = cursor {
                    conn.prepare_cached(
                        "INSERT INTO cursors (name, position) VALUES ('webhooks', ?1)
                         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    )?
                    .execute(params![*cursor as i64])?;
                }
            }
            Write::Progress {
                task_id,
                step_id,
                fraction,
                message,
            } => {
                conn.prepare_cached(
                    "UPDATE steps SET progress = ?3, progress_message = ?4
                     WHERE task_id = ?1 AND step_id = ?2",
                )?
                .execute(params![
                    task_id,
                    step_id,
                    f64::from(*fraction),
                    message
                ])?;
            }
            Write::Event(event) => insert_event(conn, event)?,
            Write::Audit(record) => {
                conn.prepare_cached(
                    "INSERT INTO audit (at, actor, role, action, tenant, target, outcome, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    record.at,
                    record.actor,
                    record.role,
                    record.action,
                    record.tenant,
                    record.target,
                    record.outcome,
                    record.detail
                ])?;
            }
        }
    }
    Ok(())
}

fn update_step(conn: &Connection, step: &StepWrite) -> Result<()> {
    let (progress, progress_message) = match &step.progress {
        Some((fraction, message)) => (Some(f64::from(*fraction)), Some(message.as_str())),
        None => (None, None),
    };
    let (set_exit, exit_code) = match step.exit_code {
        Some(code) => (true, code),
        None => (false, None),
    };
    conn.prepare_cached(
        "UPDATE steps SET
            state = COALESCE(?3, state),
            attempt = COALESCE(?4, attempt),
            worker = COALESCE(?5, worker),
            started_at = COALESCE(?6, started_at),
            finished_at = COALESCE(?7, finished_at),
            output = COALESCE(?8, output),
            error = COALESCE(?9, error),
            exit_code = CASE WHEN ?10 THEN ?11 ELSE exit_code END,
            progress = COALESCE(?12, progress),
            progress_message = COALESCE(?13, progress_message),
            approval_deadline = COALESCE(?14, approval_deadline)
         WHERE task_id = ?1 AND step_id = ?2",
    )?
    .execute(params![
        step.task_id,
        step.step_id,
        step.state.map(StepState::as_str),
        step.attempt,
        step.worker,
        step.started_at,
        step.finished_at,
        step.output_json,
        step.error,
        set_exit,
        exit_code,
        progress,
        progress_message,
        step.approval_deadline,
    ])?;
    Ok(())
}

fn upsert_attempt(conn: &Connection, a: &AttemptWrite) -> Result<()> {
    let cost = a.cost.as_ref();
    let tokens = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    conn.prepare_cached(
        "INSERT INTO attempts (task_id, step_id, attempt, worker, started_at, finished_at, state, error, exit_code,
                              session_id, model, cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens)
         VALUES (?1, ?2, ?3, COALESCE(?4, ''), COALESCE(?5, 0), COALESCE(?6, 0), COALESCE(?7, 'running'), COALESCE(?8, ''), ?9,
                 COALESCE(?10, ''), COALESCE(?11, ''), COALESCE(?12, 0), COALESCE(?13, 0), COALESCE(?14, 0), COALESCE(?15, 0), COALESCE(?16, 0))
         ON CONFLICT (task_id, step_id, attempt) DO UPDATE SET
            worker = COALESCE(?4, worker),
            started_at = COALESCE(?5, started_at),
            finished_at = COALESCE(?6, finished_at),
            state = COALESCE(?7, state),
            error = COALESCE(?8, error),
            exit_code = COALESCE(?9, exit_code),
            session_id = COALESCE(?10, session_id),
            model = COALESCE(?11, model),
            cost_usd = COALESCE(?12, cost_usd),
            input_tokens = COALESCE(?13, input_tokens),
            output_tokens = COALESCE(?14, output_tokens),
            cache_read_tokens = COALESCE(?15, cache_read_tokens),
            cache_creation_tokens = COALESCE(?16, cache_creation_tokens)",
    )?
    .execute(params![
        a.task_id,
        a.step_id,
        a.attempt,
        a.worker,
        a.started_at,
        a.finished_at,
        a.state.map(StepState::as_str),
        a.error,
        a.exit_code,
        a.session_id,
        a.model,
        cost.map(|c| c.usd),
        tokens(cost.map(|c| c.input_tokens)),
        tokens(cost.map(|c| c.output_tokens)),
        tokens(cost.map(|c| c.cache_read_tokens)),
        tokens(cost.map(|c| c.cache_creation_tokens)),
    ])?;
    Ok(())
}

fn load_attempts(conn: &Connection, task: &mut TaskRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, attempt, worker, started_at, finished_at, state, error, exit_code,
                session_id, model, cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens
         FROM attempts WHERE task_id = ?1 ORDER BY step_id, attempt",
    )?;
    let rows = stmt.query_map([&task.id], |row| {
        let state: String = row.get(5)?;
        let tokens = |i: usize| row.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
        Ok((
            row.get::<_, String>(0)?,
            AttemptRecord {
                attempt: row.get(1)?,
                worker: row.get(2)?,
                started_at: row.get(3)?,
                finished_at: row.get(4)?,
                state: StepState::Waiting,
                error: row.get(6)?,
                exit_code: row.get(7)?,
                session_id: row.get(8)?,
                model: row.get(9)?,
                cost: Cost {
                    usd: row.get(10)?,
                    input_tokens: tokens(11)?,
                    output_tokens: tokens(12)?,
                    cache_read_tokens: tokens(13)?,
                    cache_creation_tokens: tokens(14)?,
                },
            },
            state,
        ))
    })?;
    for row in rows {
        let (step_id, mut attempt, state) = row?;
        attempt.state = state.parse()?;
        if let Some(step) = task.steps.iter_mut().find(|s| s.id == step_id) {
            step.attempts.push(attempt);
        }
    }
    task.complete_attempts();
    Ok(())
}

/// The last sums the task's attempts' costs into one JSON array, so a
/// listing shows what each task cost without loading its attempts.
const TASK_COLUMNS: &str = "id, state, idempotency_key, spec, message, created_at, started_at, finished_at, tenant,
     (SELECT json_array(COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                        COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0))
      FROM attempts WHERE attempts.task_id = tasks.id), plan, trace_context";

fn read_task(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TaskRecord, String, String)> {
    let state: String = row.get(1)?;
    let spec: String = row.get(3)?;
    let cost: String = row.get(9)?;
    let (usd, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens) =
        serde_json::from_str(&cost).unwrap_or_default();
    Ok((
        TaskRecord {
            id: row.get(0)?,
            spec: TaskSpec::default(),
            state: TaskState::Queued,
            idempotency_key: row.get(2)?,
            message: row.get(4)?,
            created_at: row.get(5)?,
            started_at: row.get(6)?,
            finished_at: row.get(7)?,
            tenant: row.get(8)?,
            steps: Vec::new(),
            last_seq: 0,
            cost: Cost {
                usd,
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_creation_tokens,
            },
            plan_json: row.get(10)?,
            trace_context: row.get(11)?,
        },
        state,
        spec,
    ))
}

/// Finishes a row read by [`read_task`]: parses its state and spec, and
/// shows the idempotency key without its tenant scope.
fn decode_task((mut task, state, spec): (TaskRecord, String, String)) -> Result<TaskRecord> {
    task.state = state.parse()?;
    let scope = format!("{}/", task.tenant);
    if let Some(key) = &mut task.idempotency_key
        && let Some(bare) = key.strip_prefix(&scope)
    {
        *key = bare.to_string();
    }
    task.spec = serde_json::from_str(&spec)
        .map_err(|e| Error::Corrupt(format!("the spec of task {}: {e}", task.id)))?;
    Ok(task)
}

/// A task read by [`read_task`], with its steps and their attempts.
fn whole_task(conn: &Connection, row: (TaskRecord, String, String)) -> Result<TaskRecord> {
    let mut task = decode_task(row)?;
    load_steps(conn, &mut task)?;
    load_attempts(conn, &mut task)?;
    Ok(task)
}

fn load_steps(conn: &Connection, task: &mut TaskRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, state, attempt, worker, started_at, finished_at, progress,
                progress_message, output, error, exit_code, approval_deadline
         FROM steps WHERE task_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([&task.id], |row| {
        let state: String = row.get(1)?;
        Ok((
            StepRecord {
                id: row.get(0)?,
                state: StepState::Waiting,
                attempt: row.get(2)?,
                worker: row.get(3)?,
                started_at: row.get(4)?,
                finished_at: row.get(5)?,
                progress: row.get::<_, f64>(6)? as f32,
                progress_message: row.get(7)?,
                output_json: row.get(8)?,
                error: row.get(9)?,
                exit_code: row.get(10)?,
                attempts: Vec::new(),
                cost: Cost::default(),
                approval_deadline: row.get(11)?,
            },
            state,
        ))
    })?;
    task.steps.clear();
    for row in rows {
        let (mut step, state) = row?;
        step.state = state.parse()?;
        task.steps.push(step);
    }
    task.last_seq = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE task_id = ?1")?
        .query_row([&task.id], |row| row.get::<_, i64>(0))? as u64;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tasks(&self, tasks: Vec<NewTask>) -> orca_store::Result<Vec<Created>> {
        self.jobs.submit(|reply| Job::Create(tasks, reply)).await
    }

    fn write(&self, batch: Vec<Write>) -> Commit {
        self.jobs.write(batch)
    }

    async fn get_task(&self, id: &str) -> orca_store::Result<Option<TaskRecord>> {
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

    async fn tasks_by_id(&self, ids: &[String]) -> orca_store::Result<Vec<TaskRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        self.read(move |conn| by_id(conn, &ids, "")).await
    }

    async fn list_tasks(&self, query: TaskQuery) -> orca_store::Result<Vec<TaskRecord>> {
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
    ) -> orca_store::Result<Vec<(TaskState, u64)>> {
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

    async fn events_after(
        &self,
        task_id: &str,
        after: u64,
        limit: usize,
    ) -> orca_store::Result<Vec<Event>> {
        let task_id = task_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at, body FROM events WHERE task_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![task_id, after as i64, limit as i64], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?))
            })?;
            let mut events = Vec::new();
            for row in rows {
                let (seq, at, body) = row?;
                let kind: EventKind = serde_json::from_str(&body)
                    .map_err(|e| Error::Corrupt(format!("event {task_id}/{seq}: {e}")))?;
                events.push(Event {
                    task_id: task_id.clone(),
                    seq: seq as u64,
                    at,
                    kind,
                });
            }
            Ok(events)
        })
        .await
    }

    async fn fleet_events_after(
        &self,
        after: u64,
        tenants: Option<Vec<String>>,
        limit: usize,
    ) -> orca_store::Result<FleetPage> {
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
                    let events: Vec<(String, u64)> = serde_json::from_str(&events)
                        .map_err(|e| Error::Corrupt(format!("the fleet's commit {commit}: {e}")))?;
                    decoded.push((commit as u64, events));
                }
                rows.take(decoded);
            }
            let mut events = Vec::new();
            let mut stmt = conn.prepare_cached(
                "SELECT e.at, e.body, t.tenant FROM events e JOIN tasks t ON t.id = e.task_id
                 WHERE e.task_id = ?1 AND e.seq = ?2",
            )?;
            for (at, task_id, seq) in rows.entries() {
                let found = stmt
                    .query_row(params![task_id, seq as i64], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                        ))
                    })
                    .optional()?;
                let Some((time, body, tenant)) = found else {
                    continue;
                };
                if tenants.as_ref().is_some_and(|t| !t.contains(&tenant)) {
                    continue;
                }
                let kind: EventKind = serde_json::from_str(&body)
                    .map_err(|e| Error::Corrupt(format!("event {task_id}/{seq}: {e}")))?;
                events.push((
                    at,
                    Event {
                        task_id: task_id.to_string(),
                        seq,
                        at: time,
                        kind,
                    },
                ));
            }
            Ok(rows.page(events))
        })
        .await
    }

    async fn fleet_head(&self) -> orca_store::Result<u64> {
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
            let events: Vec<(String, u64)> = serde_json::from_str(&events)
                .map_err(|e| Error::Corrupt(format!("the fleet's commit {commit}: {e}")))?;
            Ok(fleet::position(commit as u64, events.len()))
        })
        .await
    }

    async fn change_state(&self, change: StateChange) -> orca_store::Result<StateOutcome> {
        self.jobs.submit(|reply| Job::State(change, reply)).await
    }

    async fn get_state(&self, key: StateKey, now: i64) -> orca_store::Result<Option<StateEntry>> {
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
        scope: StateScope,
        after_key: &str,
        limit: usize,
        now: i64,
    ) -> orca_store::Result<Vec<(StateKey, StateEntry)>> {
        let after_key = after_key.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, version, updated_at, expires_at FROM state
                 WHERE tenant = ?1 AND scope = ?2 AND key > ?3 AND value IS NOT NULL
                   AND (expires_at = 0 OR expires_at > ?4)
                 ORDER BY key LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![scope.tenant, scope.scope, after_key, now, limit as i64],
                |row| {
                    Ok((
                        StateKey {
                            tenant: scope.tenant.clone(),
                            scope: scope.scope.clone(),
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

    async fn running_attempt(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> orca_store::Result<Option<u32>> {
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

    async fn checkpoint(
        &self,
        task_id: &str,
        step_id: &str,
    ) -> orca_store::Result<Option<Checkpoint>> {
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

    async fn tenant_budgets(&self) -> orca_store::Result<Vec<(String, TenantBudget)>> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT tenant, budget FROM budgets ORDER BY tenant")?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut budgets = Vec::new();
            for row in rows {
                let (tenant, json) = row?;
                let budget = serde_json::from_str(&json).map_err(|e| {
                    Fault::Store(Error::Corrupt(format!("tenant {tenant}'s budget: {e}")))
                })?;
                budgets.push((tenant, budget));
            }
            Ok(budgets)
        })
        .await
    }

    async fn spend_since(&self, since: i64) -> orca_store::Result<Vec<(String, Cost)>> {
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
                Ok((
                    row.get::<_, String>(0)?,
                    Cost {
                        usd: row.get(1)?,
                        input_tokens: row.get::<_, i64>(2)? as u64,
                        output_tokens: row.get::<_, i64>(3)? as u64,
                        cache_read_tokens: row.get::<_, i64>(4)? as u64,
                        cache_creation_tokens: row.get::<_, i64>(5)? as u64,
                    },
                ))
            })?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
        tenants: Option<Vec<String>>,
    ) -> orca_store::Result<Vec<AuditRecord>> {
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

    async fn webhooks(&self) -> orca_store::Result<Vec<Webhook>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT record FROM webhooks ORDER BY id")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            rows.map(|json| from_record(&json?, "webhook"))
                .collect::<Result<Vec<_>>>()
        })
        .await
    }

    async fn webhook_cursor(&self) -> orca_store::Result<u64> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT position FROM cursors WHERE name = 'webhooks'")?
                .query_row([], |row| row.get::<_, i64>(0))
                .optional()?
                .unwrap_or(0) as u64)
        })
        .await
    }

    async fn pending_deliveries(&self, limit: usize) -> orca_store::Result<Vec<Delivery>> {
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

    async fn deliveries(&self, query: DeliveryQuery) -> orca_store::Result<Vec<Delivery>> {
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

    async fn unfinished_task_ids(&self) -> orca_store::Result<Vec<String>> {
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
    ) -> orca_store::Result<Vec<TaskRecord>> {
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

    async fn unfinished_tasks_by_id(&self, ids: &[String]) -> orca_store::Result<Vec<TaskRecord>> {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        self.read(move |conn| unfinished_by_id(conn, &ids)).await
    }

    async fn recovery_between(
        &self,
        first: &str,
        last: &str,
    ) -> orca_store::Result<Vec<Unfinished>> {
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
                "SELECT id, created_at, spec FROM tasks
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
                    id,
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

/// The unfinished tasks of `ids` (sorted, distinct), whole.
fn unfinished_by_id(conn: &Connection, ids: &[String]) -> Result<Vec<TaskRecord>> {
    by_id(conn, ids, "AND state IN ('queued', 'running', 'paused')")
}

/// The tasks of `ids` (sorted, once each) that meet `condition`, whole,
/// one lookup of the key each.
fn by_id(conn: &Connection, ids: &[String], condition: &str) -> Result<Vec<TaskRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 {condition}"
    ))?;
    let mut tasks = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(row) = stmt.query_row([id], read_task).optional()? else {
            continue;
        };
        tasks.push(whole_task(conn, row)?);
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_is_named_as_flags_name_it() {
        for name in Durability::NAMES {
            let parsed: Durability = name.parse().expect("a durability");
            assert_eq!(parsed.name(), name);
            assert_eq!(
                parsed,
                if name == "process" {
                    Durability::Process
                } else {
                    Durability::Machine
                }
            );
        }
        let refused = "fast".parse::<Durability>().expect_err("refused");
        assert_eq!(
            refused,
            "\"fast\" is not a durability; one of: process, machine"
        );
    }
    use orca_store::Expect;
    use orca_store::conformance::new_task;

    /// The store under the conformance suite: one file in a temp dir,
    /// opened again from that file.
    struct Sqlite {
        dir: tempfile::TempDir,
        durability: Durability,
    }

    impl Sqlite {
        fn new(durability: Durability) -> Self {
            Sqlite {
                dir: tempfile::tempdir().expect("tempdir"),
                durability,
            }
        }
    }

    #[async_trait]
    impl orca_store::conformance::Backend for Sqlite {
        async fn open(&mut self) -> Arc<dyn Store> {
            Arc::new(SqliteStore::open(self.dir.path(), self.durability).expect("open"))
        }
    }

    mod conformance {
        use super::*;
        orca_store::conformance_suite!(Sqlite::new(Durability::Process));
    }

    /// fsync on every commit changes nothing a reader sees.
    mod conformance_fsynced {
        use super::*;
        orca_store::conformance_suite!(Sqlite::new(Durability::Machine));
    }

    #[tokio::test]
    async fn a_database_from_before_tenants_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = Connection::open(dir.path().join("orca.db")).expect("open");
            // The tables as orca made them before tenants: SCHEMA itself,
            // which `migrate` extends.
            conn.execute_batch(SCHEMA).expect("old schema");
        }
        let store = SqliteStore::open(dir.path(), Durability::Process).expect("migrates");
        store
            .create_tasks(vec![new_task("t1", "default", None)])
            .await
            .expect("create");
        assert_eq!(
            store
                .get_task("t1")
                .await
                .expect("get")
                .expect("exists")
                .tenant,
            "default"
        );
        // Attempts gained their agent's session and cost.
        store
            .write(vec![Write::Attempt(AttemptWrite {
                task_id: "t1".into(),
                step_id: "a".into(),
                attempt: 1,
                session_id: Some("s-1".into()),
                cost: Some(Cost {
                    usd: 0.5,
                    ..Cost::default()
                }),
                ..AttemptWrite::default()
            })])
            .await
            .expect("answer")
            .expect("commit");
        let task = store.get_task("t1").await.expect("get").expect("exists");
        assert_eq!(task.cost.usd, 0.5);
    }

    #[tokio::test]
    async fn a_stalled_database_makes_new_work_wait_then_refuses_it_and_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bound = Bound {
            max_queued: 3,
            wait: Duration::from_millis(200),
        };
        let store =
            SqliteStore::open_bounded(dir.path(), Durability::Process, bound).expect("open");
        store
            .create_tasks(vec![new_task("t1", "default", None)])
            .await
            .expect("create");
        // Another connection holds the write lock: the writer waits on it.
        let blocker = Connection::open(dir.path().join("orca.db")).expect("open");
        blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let event = |seq: u64| {
            Write::Event(Event {
                task_id: "t1".into(),
                seq,
                at: 0,
                kind: EventKind::TaskState {
                    state: TaskState::Running,
                    message: String::new(),
                },
            })
        };
        // The control plane's own writes are taken, past the bound too.
        let commits: Vec<Commit> = (2..=5).map(|seq| store.write(vec![event(seq)])).collect();
        // New work waits for room, then is told to back off.
        match store
            .create_tasks(vec![new_task("t2", "default", None)])
            .await
        {
            Err(Error::Overloaded(message)) => {
                assert!(message.contains("writes are waiting"), "{message}")
            }
            other => panic!("expected overloaded, got {other:?}"),
        }
        let put = StateChange::Put {
            key: StateKey {
                tenant: "default".into(),
                scope: "s".into(),
                key: "k".into(),
            },
            value_json: "1".into(),
            expect: Expect::Any,
            expires_at: 0,
            now: 1,
        };
        assert!(matches!(
            store.change_state(put.clone()).await,
            Err(Error::Overloaded(_))
        ));
        // Once the database moves, everything queued commits and there is
        // room again; what was refused was never stored.
        blocker.execute_batch("ROLLBACK").expect("unlock");
        for commit in commits {
            commit.await.expect("answer").expect("committed");
        }
        store
            .create_tasks(vec![new_task("t3", "default", None)])
            .await
            .expect("room again");
        store.change_state(put).await.expect("room again");
        assert!(store.get_task("t2").await.expect("get").is_none());
        assert_eq!(
            store
                .get_task("t1")
                .await
                .expect("get")
                .expect("t1")
                .last_seq,
            5
        );
    }

    #[test]
    fn a_file_that_is_no_database_is_corrupt_and_an_unusable_directory_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("orca.db"), vec![7u8; 8192]).expect("garbage");
        match SqliteStore::open(dir.path(), Durability::Process) {
            Err(Error::Corrupt(message)) => {
                assert!(message.contains("not a database"), "{message}")
            }
            Err(other) => panic!("expected corrupt, got {other:?}"),
            Ok(_) => panic!("opened garbage"),
        }
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").expect("file");
        match SqliteStore::open(&file, Durability::Process) {
            Err(Error::Unavailable(message)) => {
                assert!(message.contains("data directory"), "{message}")
            }
            Err(other) => panic!("expected unavailable, got {other:?}"),
            Ok(_) => panic!("opened a file as a directory"),
        }
    }

    #[test]
    fn sqlite_errors_become_what_a_caller_can_do() {
        let failure = |code| {
            Error::from(Fault::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            )))
        };
        assert!(matches!(
            failure(rusqlite::ffi::SQLITE_BUSY),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            failure(rusqlite::ffi::SQLITE_FULL),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            failure(rusqlite::ffi::SQLITE_IOERR),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            failure(rusqlite::ffi::SQLITE_CONSTRAINT),
            Error::Conflict(_)
        ));
        assert!(matches!(
            failure(rusqlite::ffi::SQLITE_CORRUPT),
            Error::Corrupt(_)
        ));
        let unknown_state = Error::from(Fault::from(
            "sideways".parse::<TaskState>().expect_err("not a state"),
        ));
        assert!(matches!(unknown_state, Error::Corrupt(_)));
    }
}
