//! What the writer does in its transaction: create tasks, apply the
//! control plane's writes, change shared state; each as statements on the
//! one writer connection.

use crate::fault::{Fault, Result};
use rusqlite::{Connection, OptionalExtension, params};
use tidewright_core::StepState;
use tidewright_store::Named;
use tidewright_store::event_groups::EventGroups;
use tidewright_store::retention::micros_of_seconds;
use tidewright_store::webhooks::DeliveryState;
use tidewright_store::{
    AttemptWrite, AuditRecord, Created, Error, NewTask, StateChange, StateKey, StateOutcome,
    StepWrite, Write,
};

/// Puts a tenant's record (a budget, a share) as JSON in `(table, column)`,
/// or removes it (`None`).
fn set_tenant_record(
    conn: &Connection,
    (table, column): (&str, &str),
    tenant: &str,
    json: Option<String>,
) -> Result<()> {
    match json {
        None => {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE tenant = ?1"))?
                .execute(params![tenant])?;
        }
        Some(json) => {
            conn.prepare_cached(&format!(
                "INSERT INTO {table} (tenant, {column}) VALUES (?1, ?2)
                 ON CONFLICT (tenant) DO UPDATE SET {column} = excluded.{column}"
            ))?
            .execute(params![tenant, json])?;
        }
    }
    Ok(())
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Fault::Store(Error::Corrupt(format!("{what} does not encode: {e}"))))
}

/// A task's idempotency key as stored: keys are per tenant, so one
/// tenant's key never finds another's task.
fn scoped_key(task: &NewTask) -> Option<String> {
    task.idempotency_key
        .as_ref()
        .map(|key| format!("{}/{key}", task.tenant))
}

pub(crate) fn create_tasks(conn: &Connection, tasks: &[NewTask]) -> Result<Vec<Created>> {
    let mut created = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Some(key) = scoped_key(task) {
            let existing: Option<String> = conn
                .prepare_cached("SELECT id FROM tasks WHERE idempotency_key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?;
            if let Some(id) = existing {
                created.push(Created::Existing(id));
                continue;
            }
        }
        let mut events = EventGroups::default();
        insert_task(conn, task, &mut events)?;
        crate::events::insert(conn, &mut events)?;
        created.push(Created::New(task.id.clone()));
    }
    Ok(created)
}

/// A new task's rows and audit record, its first events added to
/// `events`; its id or key already stored fails it.
fn insert_task(conn: &Connection, task: &NewTask, events: &mut EventGroups) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO tasks (id, name, priority, state, idempotency_key, spec, labels, created_at, tenant, plan, message, trace_context, keep_for, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, CASE WHEN ?4 IN ('succeeded', 'failed', 'cancelled') THEN ?8 ELSE 0 END)",
    )?
    .execute(params![
        task.id,
        task.spec.name,
        task.spec.priority,
        task.state.as_str(),
        scoped_key(task),
        to_json(&task.spec, "task spec")?,
        to_json(&task.spec.labels, "labels")?,
        task.created_at,
        task.tenant,
        task.plan_json,
        task.message,
        task.trace_context,
        task.spec.retention_seconds.map(micros_of_seconds),
    ])?;
    let mut insert_step = conn.prepare_cached(
        "INSERT INTO steps (task_id, step_id, position, state) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (position, (step, state)) in task.spec.steps.iter().zip(&task.step_states).enumerate() {
        insert_step.execute(params![task.id, step.id, position as i64, state.as_str()])?;
    }
    for event in &task.events {
        events.push(event)?;
    }
    if let Some(record) = &task.audit {
        insert_audit(conn, record)?;
    }
    Ok(())
}

/// The row at `key`: its version and whether it holds a live value at
/// `now` (a deleted or expired value keeps its version, so versions never
/// repeat).
pub(crate) fn state_row(
    conn: &Connection,
    key: &StateKey,
    now: i64,
) -> Result<Option<(u64, bool)>> {
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

pub(crate) fn change_state(conn: &Connection, change: &StateChange) -> Result<StateOutcome> {
    let key = change.key();
    let next = match change.decide(state_row(conn, key, change.now())?) {
        Err(refused) => return Ok(refused),
        Ok(None) => return Ok(StateOutcome::Done(None)),
        Ok(Some(next)) => next,
    };
    let entry = next.entry.as_ref();
    // A deleted value keeps its row, so that versions never repeat.
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
        entry.map(|e| &e.value_json),
        next.version as i64,
        next.updated_at,
        entry.map_or(0, |e| e.expires_at)
    ])?;
    Ok(StateOutcome::Done(next.entry))
}

/// Keeps what a step keeps for its next attempt (a checkpoint, a branch) in
/// `table`, with its `own` columns (`?4` to `?6`): only the step's current
/// attempt's, and never over a newer attempt's (see `Write::Checkpoint`).
fn kept_sql(table: &str, own: [&str; 3]) -> String {
    let [a, b, c] = own;
    format!(
        "INSERT INTO {table} (task_id, step_id, attempt, {a}, {b}, {c}, created_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 FROM steps
             WHERE task_id = ?1 AND step_id = ?2 AND attempt = ?3
         ON CONFLICT (task_id, step_id) DO UPDATE SET
             attempt = excluded.attempt, {a} = excluded.{a}, {b} = excluded.{b},
             {c} = excluded.{c}, created_at = excluded.created_at
         WHERE excluded.attempt >= {table}.attempt"
    )
}

fn insert_audit(conn: &Connection, record: &AuditRecord) -> Result<()> {
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
    Ok(())
}

pub(crate) fn apply_writes(conn: &Connection, writes: &[Write]) -> Result<()> {
    // The writes' events, one row per task, inserted at the end; and before
    // a removal of tasks, which must find their events stored.
    let mut events = EventGroups::default();
    for write in writes {
        if matches!(write, Write::Expire { .. }) {
            crate::events::insert(conn, &mut events)?;
        }
        match write {
            Write::Task(task) => {
                conn.prepare_cached(
                    "UPDATE tasks SET state = ?2, message = ?3,
                        started_at = COALESCE(?4, started_at),
                        finished_at = COALESCE(?5, finished_at)
                     WHERE id = ?1",
                )?
                .execute(params![
                    task.id,
                    task.state.as_str(),
                    task.message,
                    task.started_at,
                    task.finished_at
                ])?;
            }
            Write::Step(step) => update_step(conn, step)?,
            Write::Spec { id, spec } => {
                conn.prepare_cached("UPDATE tasks SET spec = ?2 WHERE id = ?1")?
                    .execute(params![id, to_json(spec, "task spec")?])?;
            }
            Write::TenantBudget { tenant, budget } => {
                let json = (!budget.is_empty())
                    .then(|| to_json(budget, "budget"))
                    .transpose()?;
                set_tenant_record(conn, ("budgets", "budget"), tenant, json)?;
            }
            Write::TenantShare { tenant, share } => {
                let json = (!share.is_default())
                    .then(|| to_json(share, "share"))
                    .transpose()?;
                set_tenant_record(conn, ("shares", "share"), tenant, json)?;
            }
            Write::Attempt(attempt) => upsert_attempt(conn, attempt)?,
            Write::CostSum { sum, expire_before } => crate::costs::add(conn, sum, expire_before)?,
            Write::Checkpoint(checkpoint) => {
                conn.prepare_cached(&kept_sql(
                    "checkpoints",
                    ["session_id", "workspace", "archive"],
                ))?
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
            Write::Branch(branch) => {
                conn.prepare_cached(&kept_sql("branches", ["head_commit", "bundle", "diff"]))?
                    .execute(params![
                        branch.task_id,
                        branch.step_id,
                        branch.attempt,
                        branch.head_commit,
                        branch.bundle,
                        branch.diff,
                        branch.created_at
                    ])?;
            }
            Write::ExpireKept { finished_before } => {
                for table in ["checkpoints", "branches"] {
                    conn.prepare_cached(&format!(
                        "DELETE FROM {table} WHERE task_id IN
                             (SELECT id FROM tasks WHERE finished_at > 0 AND finished_at < ?1)"
                    ))?
                    .execute(params![finished_before])?;
                }
            }
            Write::Expire { tasks, at } => crate::expire::expire(conn, tasks, *at)?,
            Write::Trim(trim) => crate::expire::trim(conn, trim)?,
            Write::Webhook(webhook) => {
                conn.prepare_cached(
                    "INSERT INTO webhooks (id, record) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                )?
                .execute(params![webhook.id, to_json(webhook, "webhook")?])?;
            }
            Write::Schedule(schedule) => put_named(
                conn,
                Named::Schedules,
                (&schedule.tenant, &schedule.spec.name),
                &to_json(schedule, "schedule")?,
            )?,
            Write::RemoveSchedule { tenant, name } => {
                remove_named(conn, Named::Schedules, (tenant, name))?
            }
            Write::Trigger(trigger) => put_named(
                conn,
                Named::Triggers,
                (&trigger.tenant, &trigger.spec.name),
                &to_json(trigger, "trigger")?,
            )?,
            Write::RemoveTrigger { tenant, name } => {
                remove_named(conn, Named::Triggers, (tenant, name))?
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
            Write::Event(event) => events.push(event)?,
            Write::Create(task) => insert_task(conn, task, &mut events)?,
            Write::Audit(record) => insert_audit(conn, record)?,
        }
    }
    crate::events::insert(conn, &mut events)
}

pub(crate) fn update_step(conn: &Connection, step: &StepWrite) -> Result<()> {
    let (progress, progress_message) = match &step.progress {
        Some((fraction, message)) => (Some(f64::from(*fraction)), Some(message.as_str())),
        None => (None, None),
    };
    let (set_exit, exit_code) = match step.exit_code {
        Some(code) => (true, code),
        None => (false, None),
    };
    let work = match &step.work {
        Some(Some(work)) => Some(to_json(work, "a step's work")?),
        Some(None) => Some(String::new()),
        None => None,
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
            approval_deadline = COALESCE(?14, approval_deadline),
            work = COALESCE(?15, work)
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
        work,
    ])?;
    Ok(())
}

pub(crate) fn upsert_attempt(conn: &Connection, a: &AttemptWrite) -> Result<()> {
    let cost = a.cost.as_ref();
    let tokens = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    conn.prepare_cached(
        "INSERT INTO attempts (task_id, step_id, attempt, worker, started_at, finished_at, state, error, exit_code,
                              session_id, model, cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, verification, setup)
         VALUES (?1, ?2, ?3, COALESCE(?4, ''), COALESCE(?5, 0), COALESCE(?6, 0), COALESCE(?7, 'running'), COALESCE(?8, ''), ?9,
                 COALESCE(?10, ''), COALESCE(?11, ''), COALESCE(?12, 0), COALESCE(?13, 0), COALESCE(?14, 0), COALESCE(?15, 0), COALESCE(?16, 0),
                 COALESCE(?17, ''), COALESCE(?18, ''))
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
            cache_creation_tokens = COALESCE(?16, cache_creation_tokens),
            verification = COALESCE(?17, verification),
            setup = COALESCE(?18, setup)",
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
        a.verification.as_ref().map(record_json),
        a.setup.as_ref().map(record_json),
    ])?;
    Ok(())
}

/// A record (a verified step's round, a setup's report) as its column
/// holds it.
fn record_json(record: &impl serde::Serialize) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// Creates or replaces the record of `named` by tenant and name.
fn put_named(
    conn: &rusqlite::Connection,
    named: Named,
    (tenant, name): (&str, &str),
    record: &str,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (tenant, name, record) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant, name) DO UPDATE SET record = excluded.record",
        named.table()
    );
    conn.prepare_cached(&sql)?
        .execute(params![tenant, name, record])?;
    Ok(())
}

/// Removes the record of `named` by tenant and name.
fn remove_named(
    conn: &rusqlite::Connection,
    named: Named,
    (tenant, name): (&str, &str),
) -> Result<()> {
    let sql = format!(
        "DELETE FROM {} WHERE tenant = ?1 AND name = ?2",
        named.table()
    );
    conn.prepare_cached(&sql)?.execute(params![tenant, name])?;
    Ok(())
}
