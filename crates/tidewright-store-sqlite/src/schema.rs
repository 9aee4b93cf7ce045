//! The tables, and the migrations that bring a database made by an older
//! tidewright up to them.

use crate::fault::Result;
use rusqlite::{Connection, OptionalExtension};
use tidewright_store::Error;

/// The schema version this build writes. Counted from the first release
/// that records one (0.2.0); a database from before has no record and is
/// brought up by [`migrate`] like any older one.
pub(crate) const VERSION: i64 = 1;

/// This build's release, as the database records it.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// Refuses a database that a newer release wrote, naming both, before
/// anything here touches it.
pub(crate) fn refuse_newer(conn: &Connection) -> Result<()> {
    let recorded = conn
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'tidewright_schema'")?
        .exists([])?;
    if !recorded {
        return Ok(());
    }
    let newest: Option<(i64, String)> = conn
        .query_row(
            "SELECT version, written_by FROM tidewright_schema ORDER BY version DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    match newest {
        Some((version, written_by)) if version > VERSION => Err(Error::Corrupt(format!(
            "the database is schema version {version}, written by tidewright {written_by}; this is tidewright {RELEASE}, which knows schema versions up to {VERSION}: upgrade tidewright, or point it at another data dir"
        ))
        .into()),
        _ => Ok(()),
    }
}

pub(crate) const SCHEMA: &str = "
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
    work             TEXT NOT NULL DEFAULT '',
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
CREATE TABLE IF NOT EXISTS event_groups (
    task_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    last    INTEGER NOT NULL,
    at      INTEGER NOT NULL,
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
CREATE TABLE IF NOT EXISTS shares (
    tenant TEXT PRIMARY KEY,
    share  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cost_sums (
    day                   TEXT NOT NULL,
    tenant                TEXT NOT NULL,
    repo                  TEXT NOT NULL,
    runtime               TEXT NOT NULL,
    model                 TEXT NOT NULL,
    template              TEXT NOT NULL,
    usd                   REAL NOT NULL,
    input_tokens          INTEGER NOT NULL,
    output_tokens         INTEGER NOT NULL,
    cache_read_tokens     INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL,
    attempts              INTEGER NOT NULL,
    PRIMARY KEY (day, tenant, repo, runtime, model, template)
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
CREATE TABLE IF NOT EXISTS branches (
    task_id     TEXT NOT NULL,
    step_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    head_commit TEXT NOT NULL,
    bundle      BLOB NOT NULL,
    diff        TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (task_id, step_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhooks (
    id     TEXT PRIMARY KEY,
    record TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedules (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS triggers (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
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
CREATE TABLE IF NOT EXISTS expired (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    finished_at INTEGER NOT NULL,
    expired_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expired_by_time ON expired(expired_at);
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

/// Brings a database made by an older tidewright up to this schema.
/// Brings a database an older release made up to [`SCHEMA`] and
/// [`VERSION`], then records this release as its writer.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    migrate_columns(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS tidewright_schema (
             version    INTEGER PRIMARY KEY,
             written_by TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO tidewright_schema (version, written_by, applied_at) VALUES (?1, ?2, ?3)",
        rusqlite::params![VERSION, RELEASE, tidewright_core::calendar::now_micros()],
    )?;
    Ok(())
}

/// What each earlier release lacked, added where it is missing.
fn migrate_columns(conn: &Connection) -> Result<()> {
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
        // A verified step's round, as JSON; '' for none.
        ("verification", "TEXT NOT NULL DEFAULT ''"),
        // What the repository's setup did, as JSON; '' for none.
        ("setup", "TEXT NOT NULL DEFAULT ''"),
    ] {
        add_missing_column(conn, "attempts", column, kind)?;
    }
    add_missing_column(
        conn,
        "steps",
        "approval_deadline",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    // What a step did to its task's repository, as JSON; '' for nothing.
    add_missing_column(conn, "steps", "work", "TEXT NOT NULL DEFAULT ''")?;
    add_missing_column(conn, "branches", "diff", "TEXT NOT NULL DEFAULT ''")?;
    // Retention: a task's own window in microseconds (NULL: its tenant's
    // or the default; 0: forever), and when each row of the fleet's order
    // was made. Rows made before that are dated at the upgrade: they are
    // kept a window from it.
    add_missing_column(conn, "tasks", "keep_for", "INTEGER")?;
    if !has_column(conn, "fleet", "at")? {
        conn.execute_batch("ALTER TABLE fleet ADD COLUMN at INTEGER NOT NULL DEFAULT 0")?;
        conn.execute(
            "UPDATE fleet SET at = ?1",
            [tidewright_core::calendar::now_micros()],
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS tasks_finished ON tasks(tenant, finished_at)
             WHERE keep_for IS NULL AND finished_at > 0;
         CREATE INDEX IF NOT EXISTS tasks_kept ON tasks(finished_at + keep_for)
             WHERE keep_for > 0 AND finished_at > 0;",
    )?;
    // Events were a row each (`events`); they are a row per task and
    // write now (`crate::events`). An older database's rows become a group
    // each, in one statement, before anything reads them.
    let old_events: bool = conn
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'events'")?
        .exists([])?;
    if old_events {
        conn.execute_batch(
            "INSERT INTO event_groups (task_id, seq, last, at, body)
                 SELECT task_id, seq, seq, at, json_array(json_array(0, json(body)))
                 FROM events;
             DROP TABLE events;",
        )?;
    }
    // A database made before retention was made without incremental
    // auto-vacuum: it takes a VACUUM, once, for the setting to hold.
    let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?;
    if auto_vacuum != INCREMENTAL {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    }
    Ok(())
}

/// `PRAGMA auto_vacuum`'s value for incremental.
const INCREMENTAL: i64 = 2;

pub(crate) fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    Ok(conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])?)
}

/// Adds `column` to `table` unless an earlier start already did. `table`,
/// `column` and `kind` are this file's constants, never input.
pub(crate) fn add_missing_column(
    conn: &Connection,
    table: &str,
    column: &str,
    kind: &str,
) -> Result<()> {
    if !has_column(conn, table, column)? {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
    }
    Ok(())
}
