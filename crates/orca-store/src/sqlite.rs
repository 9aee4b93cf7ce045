//! The SQLite store: one file in WAL mode, one writer thread that commits
//! whatever has queued up in a single transaction (group commit), and a small
//! pool of reader connections that never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orca_core::{Cost, Event, EventKind, StepState, TaskSpec, TaskState};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::{
    AttemptRecord, AttemptWrite, AuditRecord, Commit, Created, Error, Expect, NewTask, Result,
    StateChange, StateEntry, StateKey, StateOutcome, StepRecord, StepWrite, Store, TaskQuery,
    TaskRecord, Write,
};

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

enum Job {
    Create(Vec<NewTask>, oneshot::Sender<Result<Vec<Created>>>),
    Write(Vec<Write>, oneshot::Sender<Result<()>>),
    State(StateChange, oneshot::Sender<Result<StateOutcome>>),
}

pub struct SqliteStore {
    jobs: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `orca.db` in `data_dir`.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<SqliteStore> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join("orca.db");
        let writer = open_connection(&path, durability)?;
        writer.execute_batch(SCHEMA)?;
        migrate(&writer)?;
        // Checkpoints copy the WAL into the database file and fsync; run on
        // the writer they would stall every commit queued behind them, so a
        // thread of their own does them instead, concurrently with writes.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = open_connection(&path, durability)?;
        let readers = (0..READERS)
            .map(|_| open_connection(&path, durability))
            .collect::<Result<Vec<_>>>()?;
        let (jobs, queue) = mpsc::unbounded_channel();
        let spawn_error = |source| Error::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        let writer_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = writer_done.clone();
        std::thread::Builder::new()
            .name("orca-store-writer".into())
            .spawn(move || {
                run_writer(writer, queue);
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            })
            .map_err(spawn_error)?;
        std::thread::Builder::new()
            .name("orca-store-checkpoint".into())
            .spawn(move || run_checkpoints(checkpointer, &writer_done))
            .map_err(spawn_error)?;
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
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().map_err(|_| Error::Closed)?.pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path, Durability::Process)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock() {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Join(e.to_string()))?
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

/// How often the WAL is folded back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// PASSIVE checkpoints never block the writer; they stop with it.
fn run_checkpoints(conn: Connection, writer_done: &std::sync::atomic::AtomicBool) {
    while !writer_done.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// The writer loop: take every job that has queued up (up to a bound),
/// commit them in one transaction, then answer each in order.
fn run_writer(mut conn: Connection, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = queue.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &mut group);
    }
}

enum Answer {
    Created(oneshot::Sender<Result<Vec<Created>>>, Result<Vec<Created>>),
    Written(oneshot::Sender<Result<()>>, Result<()>),
    State(oneshot::Sender<Result<StateOutcome>>, Result<StateOutcome>),
}

fn commit_group(conn: &mut Connection, group: &mut Vec<Job>) {
    let mut answers = Vec::with_capacity(group.len());
    let outcome = (|| -> Result<()> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for job in group.drain(..) {
            tx.execute_batch("SAVEPOINT job")?;
            match job {
                Job::Create(tasks, reply) => {
                    let result = create_tasks(&tx, &tasks);
                    end_savepoint(&tx, result.is_ok())?;
                    answers.push(Answer::Created(reply, result));
                }
                Job::Write(writes, reply) => {
                    let result = apply_writes(&tx, &writes);
                    end_savepoint(&tx, result.is_ok())?;
                    answers.push(Answer::Written(reply, result));
                }
                Job::State(change, reply) => {
                    let result = change_state(&tx, &change);
                    end_savepoint(&tx, result.is_ok())?;
                    answers.push(Answer::State(reply, result));
                }
            }
        }
        tx.commit()?;
        Ok(())
    })();
    for answer in answers {
        // A receiver that is gone no longer cares; nothing to do then.
        match (answer, &outcome) {
            (Answer::Created(reply, result), Ok(())) => drop(reply.send(result)),
            (Answer::Written(reply, result), Ok(())) => drop(reply.send(result)),
            (Answer::State(reply, result), Ok(())) => drop(reply.send(result)),
            (Answer::Created(reply, _), Err(e)) => drop(reply.send(Err(commit_failed(e)))),
            (Answer::Written(reply, _), Err(e)) => drop(reply.send(Err(commit_failed(e)))),
            (Answer::State(reply, _), Err(e)) => drop(reply.send(Err(commit_failed(e)))),
        }
    }
    if let Err(e) = outcome {
        tracing::error!(error = %e, "store commit failed");
    }
}

fn commit_failed(e: &Error) -> Error {
    match e {
        Error::Sqlite(e) => Error::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            Some(format!("commit failed: {e}")),
        )),
        _ => Error::Closed,
    }
}

/// Ends the savepoint a job ran in: keeps its changes, or undoes them so
/// one bad job fails alone while the rest of the group commits.
fn end_savepoint(conn: &Connection, keep: bool) -> Result<()> {
    if keep {
        conn.execute_batch("RELEASE job")?;
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Corrupt {
        what: what.to_string(),
        source,
    })
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
    let met = match expect {
        Expect::Any => true,
        Expect::Absent => live.is_none(),
        Expect::Version(v) => live == Some(v),
    };
    if !met {
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
            Write::Attempt(attempt) => upsert_attempt(conn, attempt)?,
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
            progress_message = COALESCE(?13, progress_message)
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
    // An attempt's row is written when it ends (or its agent's session
    // starts); the one running now is described by its step.
    for step in &mut task.steps {
        if step.state == StepState::Running
            && step
                .attempts
                .last()
                .is_none_or(|a| a.attempt < step.attempt)
        {
            step.attempts.push(AttemptRecord {
                attempt: step.attempt,
                worker: step.worker.clone(),
                started_at: step.started_at,
                finished_at: 0,
                state: StepState::Running,
                error: String::new(),
                exit_code: None,
                session_id: String::new(),
                model: String::new(),
                cost: Cost::default(),
            });
        }
        step.cost = step.attempts.iter().map(|a| a.cost).sum();
    }
    task.cost = task.steps.iter().map(|s| s.cost).sum();
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
    task.spec = serde_json::from_str(&spec).map_err(|source| Error::Corrupt {
        what: format!("task {} spec", task.id),
        source,
    })?;
    Ok(task)
}

fn load_steps(conn: &Connection, task: &mut TaskRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, state, attempt, worker, started_at, finished_at, progress,
                progress_message, output, error, exit_code
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
    async fn create_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Create(tasks, reply))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn write(&self, batch: Vec<Write>) -> Commit {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(Job::Write(_, reply))) =
            self.jobs.send(Job::Write(batch, reply))
        {
            drop(reply.send(Err(Error::Closed)));
        }
        answer
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let id = id.to_string();
        self.read(move |conn| {
            let row = conn
                .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
                .query_row([&id], read_task)
                .optional()?;
            let Some(row) = row else { return Ok(None) };
            let mut task = decode_task(row)?;
            load_steps(conn, &mut task)?;
            load_attempts(conn, &mut task)?;
            Ok(Some(task))
        })
        .await
    }

    async fn list_tasks(&self, query: TaskQuery) -> Result<Vec<TaskRecord>> {
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

    async fn events_after(&self, task_id: &str, after: u64, limit: usize) -> Result<Vec<Event>> {
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
                let kind: EventKind = serde_json::from_str(&body).map_err(|source| Error::Corrupt {
                    what: format!("event {task_id}/{seq}"),
                    source,
                })?;
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

    async fn change_state(&self, change: StateChange) -> Result<StateOutcome> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::State(change, reply))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn get_state(&self, key: StateKey, now: i64) -> Result<Option<StateEntry>> {
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

    async fn running_attempt(&self, task_id: &str, step_id: &str) -> Result<Option<u32>> {
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

    async fn audit_after(
        &self,
        after: u64,
        limit: usize,
        tenants: Option<Vec<String>>,
    ) -> Result<Vec<AuditRecord>> {
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

    async fn unfinished_tasks(&self) -> Result<Vec<TaskRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ('queued', 'running') ORDER BY id"
            ))?;
            let rows = stmt.query_map([], read_task)?;
            let mut tasks = Vec::new();
            for row in rows {
                let mut task = decode_task(row?)?;
                load_steps(conn, &mut task)?;
                load_attempts(conn, &mut task)?;
                tasks.push(task);
            }
            Ok(tasks)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_core::StepSpec;

    fn new_task(id: &str, key: Option<&str>) -> NewTask {
        let spec = TaskSpec {
            name: format!("task {id}"),
            steps: vec![StepSpec::noop("a"), StepSpec::noop("b").after(&["a"])],
            ..TaskSpec::default()
        };
        NewTask {
            id: id.to_string(),
            tenant: "default".into(),
            spec,
            idempotency_key: key.map(str::to_string),
            created_at: 1,
            state: TaskState::Queued,
            plan_json: String::new(),
            trace_context: String::new(),
            message: String::new(),
            step_states: vec![StepState::Queued, StepState::Waiting],
            events: vec![Event {
                task_id: id.to_string(),
                seq: 1,
                at: 1,
                kind: EventKind::TaskState {
                    state: TaskState::Queued,
                    message: String::new(),
                },
            }],
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
        (dir, store)
    }

    #[tokio::test]
    async fn created_task_reads_back_with_steps_and_events() {
        let (_dir, store) = store();
        let created = store
            .create_tasks(vec![new_task("t1", None)])
            .await
            .expect("create");
        assert_eq!(created, [Created::New("t1".into())]);
        let task = store.get_task("t1").await.expect("get").expect("exists");
        assert_eq!(task.steps.len(), 2);
        assert_eq!(task.steps[1].state, StepState::Waiting);
        assert_eq!(task.last_seq, 1);
        assert_eq!(
            store.events_after("t1", 0, 10).await.expect("events").len(),
            1
        );
        assert!(store.get_task("nope").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn idempotency_key_returns_the_first_task() {
        let (_dir, store) = store();
        store
            .create_tasks(vec![new_task("t1", Some("k"))])
            .await
            .expect("create");
        let again = store
            .create_tasks(vec![new_task("t2", Some("k")), new_task("t3", Some("k"))])
            .await
            .expect("create");
        assert_eq!(
            again,
            [
                Created::Existing("t1".into()),
                Created::Existing("t1".into())
            ]
        );
        assert!(store.get_task("t2").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn writes_apply_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = SqliteStore::open(dir.path(), Durability::Machine).expect("open");
            store
                .create_tasks(vec![new_task("t1", None)])
                .await
                .expect("create");
            let first = store.write(vec![Write::Step(StepWrite {
                task_id: "t1".into(),
                step_id: "a".into(),
                state: Some(StepState::Running),
                attempt: Some(1),
                worker: Some("w1".into()),
                ..StepWrite::default()
            })]);
            let second = store.write(vec![
                Write::Step(StepWrite {
                    task_id: "t1".into(),
                    step_id: "a".into(),
                    state: Some(StepState::Succeeded),
                    output_json: Some("{\"n\":1}".into()),
                    exit_code: Some(Some(0)),
                    ..StepWrite::default()
                }),
                Write::Task {
                    id: "t1".into(),
                    state: TaskState::Running,
                    message: String::new(),
                    started_at: Some(5),
                    finished_at: None,
                },
            ]);
            first.await.expect("answer").expect("commit");
            second.await.expect("answer").expect("commit");
        }
        let store = SqliteStore::open(dir.path(), Durability::Process).expect("reopen");
        let task = store.get_task("t1").await.expect("get").expect("exists");
        assert_eq!(task.state, TaskState::Running);
        assert_eq!(task.started_at, 5);
        let a = &task.steps[0];
        assert_eq!(
            (a.state, a.attempt, a.worker.as_str()),
            (StepState::Succeeded, 1, "w1")
        );
        assert_eq!(a.output_json, "{\"n\":1}");
        assert_eq!(a.exit_code, Some(0));
        assert_eq!(store.unfinished_tasks().await.expect("unfinished").len(), 1);
    }

    #[tokio::test]
    async fn attempts_are_kept_per_step_in_order() {
        let (_dir, store) = store();
        store
            .create_tasks(vec![new_task("t1", None)])
            .await
            .expect("create");
        let attempt = |n: u32, state: Option<StepState>| {
            Write::Attempt(AttemptWrite {
                task_id: "t1".into(),
                step_id: "a".into(),
                attempt: n,
                worker: Some(format!("w{n}")),
                state,
                ..AttemptWrite::default()
            })
        };
        let commit = store.write(vec![
            attempt(1, None),
            Write::Attempt(AttemptWrite {
                task_id: "t1".into(),
                step_id: "a".into(),
                attempt: 1,
                state: Some(StepState::Failed),
                error: Some("exit 1".into()),
                exit_code: Some(1),
                ..AttemptWrite::default()
            }),
            attempt(2, Some(StepState::Succeeded)),
        ]);
        commit.await.expect("answer").expect("commit");
        let task = store.get_task("t1").await.expect("get").expect("exists");
        let attempts = &task.steps[0].attempts;
        assert_eq!(attempts.len(), 2);
        assert_eq!(
            (
                attempts[0].worker.as_str(),
                attempts[0].state,
                attempts[0].error.as_str(),
                attempts[0].exit_code
            ),
            ("w1", StepState::Failed, "exit 1", Some(1))
        );
        assert_eq!(attempts[1].state, StepState::Succeeded);
        assert!(task.steps[1].attempts.is_empty());
    }

    #[tokio::test]
    async fn attempt_costs_add_up_per_step_and_task_in_reads_and_listings() {
        let (_dir, store) = store();
        store
            .create_tasks(vec![new_task("t1", None), new_task("t2", None)])
            .await
            .expect("create");
        let cost = |usd: f64, tokens: u64| Cost {
            usd,
            input_tokens: tokens,
            output_tokens: tokens / 10,
            cache_read_tokens: 1,
            cache_creation_tokens: 2,
        };
        let write = |step: &str, attempt: u32, session: Option<&str>, cost: Option<Cost>| {
            Write::Attempt(AttemptWrite {
                task_id: "t1".into(),
                step_id: step.into(),
                attempt,
                session_id: session.map(str::to_string),
                model: session.map(|_| "claude-test".to_string()),
                cost,
                ..AttemptWrite::default()
            })
        };
        let commit = store.write(vec![
            // The session is recorded when it starts; the cost when it ends.
            write("a", 1, Some("s-1"), None),
            write("a", 1, None, Some(cost(0.5, 100))),
            write("a", 2, None, Some(cost(0.25, 50))),
            write("b", 1, None, Some(cost(1.0, 10))),
        ]);
        commit.await.expect("answer").expect("commit");
        let task = store.get_task("t1").await.expect("get").expect("t1");
        let a = &task.steps[0];
        assert_eq!(
            (
                a.attempts[0].session_id.as_str(),
                a.attempts[0].model.as_str()
            ),
            ("s-1", "claude-test")
        );
        assert_eq!(a.attempts[0].cost, cost(0.5, 100));
        assert_eq!(a.cost, cost(0.5, 100) + cost(0.25, 50));
        let total = cost(0.5, 100) + cost(0.25, 50) + cost(1.0, 10);
        assert_eq!(task.cost, total);
        let listed = store
            .list_tasks(TaskQuery {
                page_size: 10,
                ..TaskQuery::default()
            })
            .await
            .expect("list");
        let t1 = listed.iter().find(|t| t.id == "t1").expect("t1 listed");
        assert_eq!(t1.cost, total);
        let t2 = listed.iter().find(|t| t.id == "t2").expect("t2 listed");
        assert!(t2.cost.is_zero());
        let unfinished = store.unfinished_tasks().await.expect("unfinished");
        let t1 = unfinished.iter().find(|t| t.id == "t1").expect("t1");
        assert_eq!(
            t1.steps[0].attempts[0].session_id, "s-1",
            "recovery sees sessions"
        );
    }

    #[tokio::test]
    async fn shared_state_compares_and_sets_by_version_and_expires() {
        let (_dir, store) = store();
        let key = |k: &str| StateKey {
            tenant: "default".into(),
            scope: "t1".into(),
            key: k.into(),
        };
        let put =
            |k: &str, value: &str, expect: Expect, expires_at: i64, now: i64| StateChange::Put {
                key: key(k),
                value_json: value.into(),
                expect,
                expires_at,
                now,
            };
        let version = |outcome: StateOutcome| match outcome {
            StateOutcome::Done(Some(entry)) => entry.version,
            other => panic!("expected a value, got {other:?}"),
        };
        let first = store
            .change_state(put("k", "1", Expect::Absent, 0, 10))
            .await
            .expect("put");
        assert_eq!(version(first), 1);
        // Absent no more: a second create conflicts, naming what it found.
        assert_eq!(
            store
                .change_state(put("k", "2", Expect::Absent, 0, 11))
                .await
                .expect("put"),
            StateOutcome::Conflict { found: Some(1) }
        );
        let second = store
            .change_state(put("k", "2", Expect::Version(1), 0, 12))
            .await
            .expect("cas");
        assert_eq!(version(second), 2);
        // A stale version fails and changes nothing.
        assert_eq!(
            store
                .change_state(put("k", "3", Expect::Version(1), 0, 13))
                .await
                .expect("cas"),
            StateOutcome::Conflict { found: Some(2) }
        );
        let entry = store
            .get_state(key("k"), 14)
            .await
            .expect("get")
            .expect("k");
        assert_eq!((entry.value_json.as_str(), entry.version), ("2", 2));

        // Deleted, then put again: the version keeps counting.
        store
            .change_state(StateChange::Delete {
                key: key("k"),
                expect: Expect::Version(2),
                now: 15,
            })
            .await
            .expect("delete");
        assert!(store.get_state(key("k"), 16).await.expect("get").is_none());
        let again = store
            .change_state(put("k", "4", Expect::Absent, 0, 17))
            .await
            .expect("put");
        assert_eq!(version(again), 4);

        // A value with a TTL is gone once it expires, and counts as absent.
        store
            .change_state(put("ttl", "\"soon\"", Expect::Any, 100, 20))
            .await
            .expect("put");
        assert!(
            store
                .get_state(key("ttl"), 99)
                .await
                .expect("get")
                .is_some()
        );
        assert!(
            store
                .get_state(key("ttl"), 100)
                .await
                .expect("get")
                .is_none()
        );
        let revived = store
            .change_state(put("ttl", "1", Expect::Absent, 0, 101))
            .await
            .expect("put");
        assert_eq!(version(revived), 2);
        // Scopes and tenants do not see each other's keys.
        let elsewhere = StateKey {
            tenant: "team-b".into(),
            ..key("k")
        };
        assert!(store.get_state(elsewhere, 18).await.expect("get").is_none());
    }

    #[tokio::test]
    async fn idempotency_keys_are_per_tenant() {
        let (_dir, store) = store();
        store
            .create_tasks(vec![new_task("t1", Some("k"))])
            .await
            .expect("create");
        let stored = store.get_task("t1").await.expect("get").expect("t1");
        assert_eq!(
            stored.idempotency_key.as_deref(),
            Some("k"),
            "shown without its scope"
        );
        let mut elsewhere = new_task("t2", Some("k"));
        elsewhere.tenant = "team-b".into();
        let created = store.create_tasks(vec![elsewhere]).await.expect("create");
        assert_eq!(
            created,
            [Created::New("t2".into())],
            "another tenant's same key is another task"
        );
    }

    #[tokio::test]
    async fn tasks_are_listed_per_tenant() {
        let (_dir, store) = store();
        let mut other = new_task("t2", None);
        other.tenant = "team-b".into();
        store
            .create_tasks(vec![new_task("t1", None), other])
            .await
            .expect("create");
        let only = |tenants: Option<Vec<String>>| TaskQuery {
            tenants,
            page_size: 10,
            ..TaskQuery::default()
        };
        let b = store
            .list_tasks(only(Some(vec!["team-b".into()])))
            .await
            .expect("list");
        assert_eq!(b.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t2"]);
        assert_eq!(b[0].tenant, "team-b");
        assert_eq!(store.list_tasks(only(None)).await.expect("list").len(), 2);
        assert!(
            store
                .list_tasks(only(Some(vec![])))
                .await
                .expect("list")
                .is_empty()
        );
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
            .create_tasks(vec![new_task("t1", None)])
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
    async fn a_failing_write_fails_alone() {
        let (_dir, store) = store();
        store
            .create_tasks(vec![new_task("t1", None)])
            .await
            .expect("create");
        // The same event twice violates the primary key.
        let event = new_task("t1", None).events.remove(0);
        let bad = store.write(vec![Write::Event(event)]);
        let good = store.write(vec![Write::Progress {
            task_id: "t1".into(),
            step_id: "a".into(),
            fraction: 0.5,
            message: "half".into(),
        }]);
        assert!(bad.await.expect("answer").is_err());
        good.await.expect("answer").expect("commit");
        let task = store.get_task("t1").await.expect("get").expect("exists");
        assert_eq!(task.steps[0].progress, 0.5);
    }

    #[tokio::test]
    async fn listing_filters_and_pages_newest_first() {
        let (_dir, store) = store();
        let mut tasks = Vec::new();
        for i in 0..5 {
            let mut t = new_task(&format!("t{i}"), None);
            t.spec.labels.insert(
                "team.io/name".into(),
                if i % 2 == 0 { "even" } else { "odd" }.into(),
            );
            tasks.push(t);
        }
        store.create_tasks(tasks).await.expect("create");
        let page = |before: Option<&str>| TaskQuery {
            page_size: 2,
            before_id: before.map(str::to_string),
            ..TaskQuery::default()
        };
        let first = store.list_tasks(page(None)).await.expect("list");
        let ids: Vec<_> = first.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["t4", "t3"]);
        let second = store.list_tasks(page(Some("t3"))).await.expect("list");
        assert_eq!(second[0].id, "t2");
        let even = store
            .list_tasks(TaskQuery {
                labels: vec![("team.io/name".into(), "even".into())],
                page_size: 10,
                ..TaskQuery::default()
            })
            .await
            .expect("list");
        assert_eq!(even.len(), 3);
        let running = store
            .list_tasks(TaskQuery {
                states: vec![TaskState::Running],
                page_size: 10,
                ..TaskQuery::default()
            })
            .await
            .expect("list");
        assert!(running.is_empty());
    }
}
