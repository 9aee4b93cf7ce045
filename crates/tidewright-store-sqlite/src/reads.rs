//! Reading tasks back whole (the task row, its steps and attempts) on a
//! reader connection.

use crate::fault::{Fault, Result};
use rusqlite::{Connection, OptionalExtension};
use tidewright_core::{Cost, StepState, TaskSpec, TaskState};
use tidewright_store::{AttemptRecord, Error, StepRecord, TaskRecord};

/// A record kept as JSON, read back.
pub(crate) fn from_record<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    serde_json::from_str(json)
        .map_err(|e| Fault::Store(Error::Corrupt(format!("a stored {what}: {e}"))))
}

pub(crate) fn load_attempts(conn: &Connection, task: &mut TaskRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, attempt, worker, started_at, finished_at, state, error, exit_code,
                session_id, model, cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,
                verification, setup
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
                verification: None,
                setup: None,
            },
            state,
            (row.get::<_, String>(15)?, row.get::<_, String>(16)?),
        ))
    })?;
    for row in rows {
        let (step_id, mut attempt, state, (verification, setup)) = row?;
        attempt.state = state.parse()?;
        if !verification.is_empty() {
            attempt.verification = Some(from_record(&verification, "verification")?);
        }
        if !setup.is_empty() {
            attempt.setup = Some(from_record(&setup, "setup report")?);
        }
        if let Some(step) = task.steps.iter_mut().find(|s| s.id == step_id) {
            step.attempts.push(attempt);
        }
    }
    task.complete_attempts();
    Ok(())
}

/// The last sums the task's attempts' costs into one JSON array, so a
/// listing shows what each task cost without loading its attempts.
pub(crate) const TASK_COLUMNS: &str = "id, state, idempotency_key, spec, message, created_at, started_at, finished_at, tenant,
     (SELECT json_array(COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                        COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0))
      FROM attempts WHERE attempts.task_id = tasks.id), plan, trace_context";

pub(crate) fn read_task(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TaskRecord, String, String)> {
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
            expires_at: 0,
        },
        state,
        spec,
    ))
}

/// Finishes a row read by [`read_task`]: parses its state and spec, and
/// shows the idempotency key without its tenant scope.
pub(crate) fn decode_task(
    (mut task, state, spec): (TaskRecord, String, String),
) -> Result<TaskRecord> {
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
pub(crate) fn whole_task(
    conn: &Connection,
    row: (TaskRecord, String, String),
) -> Result<TaskRecord> {
    let mut task = decode_task(row)?;
    load_steps(conn, &mut task)?;
    load_attempts(conn, &mut task)?;
    Ok(task)
}

pub(crate) fn load_steps(conn: &Connection, task: &mut TaskRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT step_id, state, attempt, worker, started_at, finished_at, progress,
                progress_message, output, error, exit_code, approval_deadline, work
         FROM steps WHERE task_id = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([&task.id], |row| {
        let state: String = row.get(1)?;
        let work: String = row.get(12)?;
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
                work: None,
                queued_reason: String::new(),
            },
            state,
            work,
        ))
    })?;
    task.steps.clear();
    for row in rows {
        let (mut step, state, work) = row?;
        step.state = state.parse()?;
        if !work.is_empty() {
            step.work = Some(from_record(&work, "a step's work")?);
        }
        task.steps.push(step);
    }
    task.last_seq = crate::events::last_seq(conn, &task.id)?;
    Ok(())
}

/// The unfinished tasks of `ids` (sorted, distinct), whole.
pub(crate) fn unfinished_by_id(conn: &Connection, ids: &[String]) -> Result<Vec<TaskRecord>> {
    by_id(conn, ids, "AND state IN ('queued', 'running', 'paused')")
}

/// The tasks of `ids` (sorted, once each) that meet `condition`, whole,
/// one lookup of the key each.
pub(crate) fn by_id(conn: &Connection, ids: &[String], condition: &str) -> Result<Vec<TaskRecord>> {
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
