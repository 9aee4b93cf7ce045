//! The store's reads, each a query on a pooled reader connection: tasks
//! whole (with their steps and attempts), events, the fleet's log, state,
//! checkpoints and the audit log (what was spent is read in `costs`).

use tidewright_core::{Cost, Event, EventKind, Micros, StepState, TaskSpec, TaskState};
use tidewright_store::event_groups;
use tidewright_store::fleet::{self, FleetPage};
use tidewright_store::{
    AttemptRecord, AuditRecord, Checkpoint, Error, StateEntry, StateKey, StateQuery, StepBranch,
    StepRecord, TaskQuery, TaskRecord,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::batch::TenantRecord;
use crate::conn::Conn;
use crate::fault::Result;

use crate::text::text;

/// The task's columns, with what its attempts cost summed and its newest
/// event's number, so a listing needs no further reads.
pub(crate) const TASK_SELECT: &str =
    "SELECT t.id, t.tenant, t.state, t.idempotency_key, t.spec::text, t.message,
        tidewright_micros(t.created_at), tidewright_micros(t.started_at), tidewright_micros(t.finished_at),
        COALESCE(t.plan::text, ''), t.trace_context,
        (SELECT COALESCE(MAX(e.last), 0) FROM event_groups e WHERE e.task_id = t.id),
        c.usd, c.input, c.output, c.cache_read, c.cache_creation
    FROM tasks t CROSS JOIN LATERAL (
        SELECT COALESCE(SUM(a.cost_usd), 0)::float8 AS usd,
               COALESCE(SUM(a.input_tokens), 0)::bigint AS input,
               COALESCE(SUM(a.output_tokens), 0)::bigint AS output,
               COALESCE(SUM(a.cache_read_tokens), 0)::bigint AS cache_read,
               COALESCE(SUM(a.cache_creation_tokens), 0)::bigint AS cache_creation
        FROM attempts a WHERE a.task_id = t.id) c";

pub(crate) const STEPS_OF: &str = "SELECT task_id, step_id, state, attempt, worker, tidewright_micros(started_at),
        tidewright_micros(finished_at), progress, progress_message, COALESCE(output::text, ''), error, exit_code,
        tidewright_micros(approval_deadline), work
    FROM steps WHERE task_id = ANY($1::text[]) ORDER BY task_id, position";

pub(crate) const ATTEMPTS_OF: &str = "SELECT task_id, step_id, attempt, worker, tidewright_micros(started_at),
        tidewright_micros(finished_at), state, error, exit_code, session_id, model, cost_usd, input_tokens,
        output_tokens, cache_read_tokens, cache_creation_tokens, verification, setup
    FROM attempts WHERE task_id = ANY($1::text[]) ORDER BY task_id, step_id, attempt";

/// A record its column keeps as JSON; '' for none.
fn json_record<T: serde::de::DeserializeOwned>(json: String, what: &str) -> Result<Option<T>> {
    if json.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| Error::Corrupt(format!("a stored {what}: {e}")).into())
}

pub(crate) fn tokens(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A cost stored as five columns from `first` on: dollars, then input,
/// output, cache-read and cache-write tokens.
pub(crate) fn cost_at(row: &Row, first: usize) -> Result<Cost> {
    Ok(Cost {
        usd: row.try_get(first)?,
        input_tokens: tokens(row.try_get(first + 1)?),
        output_tokens: tokens(row.try_get(first + 2)?),
        cache_read_tokens: tokens(row.try_get(first + 3)?),
        cache_creation_tokens: tokens(row.try_get(first + 4)?),
    })
}

pub(crate) fn decode_task(row: &Row) -> Result<TaskRecord> {
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
        cost: cost_at(row, 12)?,
        steps: Vec::new(),
        id,
        tenant,
        expires_at: 0,
    })
}

/// Reads the steps and attempts of `tasks` (two statements, pipelined).
pub(crate) async fn load_steps(conn: &mut Conn, tasks: &mut [TaskRecord]) -> Result<()> {
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
pub(crate) fn attach_steps(
    tasks: &mut [TaskRecord],
    steps: &[Row],
    attempts: &[Row],
) -> Result<()> {
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
        let work: String = row.try_get(13)?;
        let work = if work.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&work).map_err(|e| {
                Error::Corrupt(format!("the work of a step of task {task_id}: {e}"))
            })?)
        };
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
            work,
            queued_reason: String::new(),
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
            cost: cost_at(row, 11)?,
            verification: json_record(row.try_get(16)?, "verification")?,
            setup: json_record(row.try_get(17)?, "setup report")?,
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

pub(crate) async fn get_task(conn: &mut Conn, id: String) -> Result<Option<TaskRecord>> {
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

pub(crate) async fn tasks_by_id(conn: &mut Conn, ids: Vec<String>) -> Result<Vec<TaskRecord>> {
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
pub(crate) async fn list_tasks(conn: &mut Conn, query: &TaskQuery) -> Result<Vec<TaskRecord>> {
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
pub(crate) async fn count_tasks(
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

pub(crate) async fn events_after(
    conn: &mut Conn,
    task_id: String,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>> {
    // From the row holding the first wanted number, by the key both ways
    // (a filter on `last` alone would walk every earlier row). Each row
    // holds at least one wanted event, so `limit` rows are enough.
    let statement = conn
        .statement(
            "SELECT seq, at, body::text FROM event_groups
             WHERE task_id = $1 AND last > $2 AND seq >= (
                 SELECT COALESCE(MAX(seq), 0) FROM event_groups WHERE task_id = $1 AND seq <= $2 + 1)
             ORDER BY seq LIMIT $3",
        )
        .await?;
    let rows = conn
        .client
        .query(&statement, &[&task_id, &after, &limit])
        .await?;
    let mut events = Vec::new();
    for row in rows {
        let first: i64 = row.try_get(0)?;
        let body: String = row.try_get(2)?;
        let cut = (
            task_id.as_str(),
            first as u64,
            row.try_get(1)?,
            body.as_str(),
        );
        event_groups::take_after(&mut events, cut, after as u64, limit as usize)?;
    }
    Ok(events)
}

/// The fleet's events after a position: commit rows a few at a time from
/// its commit on, until they hold `limit` events after it, then those
/// events (with their tasks' tenants) in one statement.
pub(crate) async fn fleet_events_after(
    conn: &mut Conn,
    after: u64,
    tenants: Option<Vec<String>>,
    limit: usize,
) -> Result<FleetPage> {
    let mut commits = fleet::Rows::new(after, limit);
    while let Some(from) = commits.next() {
        let read = rows(
            conn,
            "SELECT commit_no, task_ids, seqs, lasts FROM fleet WHERE commit_no >= $1
             ORDER BY commit_no LIMIT $2",
            &[&(from as i64), &(fleet::Rows::AT_A_TIME as i64)],
        )
        .await?;
        let mut decoded = Vec::with_capacity(read.len());
        for row in &read {
            decoded.push((row.try_get::<_, i64>(0)? as u64, fleet_entries(row)?));
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
        "SELECT u.n, e.at + (e.body -> (u.seq - e.seq)::int ->> 0)::bigint,
                (e.body -> (u.seq - e.seq)::int -> 1)::text, t.tenant
         FROM UNNEST($1::text[], $2::bigint[]) WITH ORDINALITY AS u(task_id, seq, n)
         CROSS JOIN LATERAL (
             SELECT g.seq, g.at, g.body FROM event_groups g
             WHERE g.task_id = u.task_id AND g.seq <= u.seq
             ORDER BY g.seq DESC LIMIT 1) e
         JOIN tasks t ON t.id = u.task_id
         WHERE u.seq - e.seq <= json_array_length(e.body) - 1
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

/// A row of the fleet's order (`task_ids`, `seqs`, `lasts` in columns 1
/// to 3) as its entries: runs expanded, or an entry each in rows from
/// before runs (no `lasts`).
pub(crate) fn fleet_entries(row: &Row) -> Result<Vec<(String, u64)>> {
    let task_ids: Vec<String> = row.try_get(1)?;
    let firsts: Vec<i64> = row.try_get(2)?;
    let lasts: Option<Vec<i64>> = row.try_get(3)?;
    let lasts = lasts.unwrap_or_else(|| firsts.clone());
    Ok(fleet::expand(
        task_ids
            .into_iter()
            .zip(firsts)
            .zip(lasts)
            .map(|((task_id, first), last)| (task_id, first as u64, last as u64)),
    ))
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
pub(crate) const UNFINISHED_IDS: &str =
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
                    tidewright_micros(t.created_at), tidewright_micros(t.started_at), tidewright_micros(t.finished_at),
                    COALESCE(t.plan::text, ''), t.trace_context, 0::bigint,
                    0::float8, 0::bigint, 0::bigint, 0::bigint, 0::bigint
                FROM tasks t WHERE t.state IN ('queued', 'running', 'paused') AND ",
                $t,
                " ORDER BY t.id"
            ),
            concat!("SELECT e.task_id, MAX(e.last) FROM event_groups e ", $e, " GROUP BY e.task_id"),
            concat!(
                "SELECT s.task_id, s.step_id, s.state, s.attempt, s.worker,
                    tidewright_micros(s.started_at), tidewright_micros(s.finished_at), s.progress, s.progress_message,
                    COALESCE(s.output::text, ''), s.error, s.exit_code, tidewright_micros(s.approval_deadline),
                    s.work
                FROM steps s ",
                $s,
                " ORDER BY s.task_id, s.position"
            ),
            concat!(
                "SELECT a.task_id, a.step_id, a.attempt, a.worker,
                    tidewright_micros(a.started_at), tidewright_micros(a.finished_at), a.state, a.error, a.exit_code,
                    a.session_id, a.model, a.cost_usd, a.input_tokens, a.output_tokens,
                    a.cache_read_tokens, a.cache_creation_tokens, a.verification, a.setup
                FROM attempts a ",
                $a,
                " ORDER BY a.task_id, a.step_id, a.attempt"
            ),
        ]
    };
}

/// The unfinished tasks with ids from `$1` to `$2`. A range holds finished
/// tasks too: their rows are left out by a join.
pub(crate) const UNFINISHED_BETWEEN: [&str; 4] = unfinished_reads!(
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
pub(crate) const UNFINISHED_BY_ID: [&str; 4] = {
    let [tasks, _, steps, attempts] = unfinished_reads!(
        "t.id IN (SELECT unnest($1::text[]))",
        "",
        "JOIN unnest($1::text[]) AS wanted(id) ON s.task_id = wanted.id",
        "JOIN unnest($1::text[]) AS wanted(id) ON a.task_id = wanted.id"
    );
    let newest_events = "SELECT wanted.id, newest.seq FROM unnest($1::text[]) AS wanted(id)
        CROSS JOIN LATERAL (SELECT e.last AS seq FROM event_groups e WHERE e.task_id = wanted.id
            ORDER BY e.seq DESC LIMIT 1) AS newest";
    [tasks, newest_events, steps, attempts]
};

/// The queued tasks from `$1` to `$2`: their creation and spec (read for
/// priority and needs only).
pub(crate) const QUEUED_BETWEEN: &str =
    "SELECT t.id, tidewright_micros(t.created_at), t.spec::text, t.tenant
    FROM tasks t WHERE t.state = 'queued' AND t.id BETWEEN $1 AND $2";

/// The steps of the queued tasks from `$1` to `$2`, in one walk of their
/// key: whether each task is untouched, and which steps are queued. (Two
/// lookups per task, made per row, cost more than the whole walk.)
pub(crate) const QUEUED_STEPS_BETWEEN: &str = "SELECT s.task_id, s.position, s.state, s.attempt
    FROM steps s JOIN tasks t ON t.id = s.task_id
    WHERE t.state = 'queued' AND t.id BETWEEN $1 AND $2 AND s.task_id BETWEEN $1 AND $2";

/// The running and paused tasks from `$1` to `$2`.
pub(crate) const STARTED_BETWEEN: &str =
    "SELECT id FROM tasks WHERE state IN ('running', 'paused') AND id BETWEEN $1 AND $2";

/// `[first, last]`, both included.
pub(crate) async fn ranged_rows(
    conn: &mut Conn,
    sql: &str,
    range: [String; 2],
) -> Result<Vec<Row>> {
    let [first, last] = &range;
    rows(conn, sql, &[first, last]).await
}

pub(crate) async fn rows(
    conn: &mut Conn,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let statement = conn.statement(sql).await?;
    Ok(conn.client.query(&statement, params).await?)
}

pub(crate) async fn get_state(
    conn: &mut Conn,
    key: StateKey,
    now: Micros,
) -> Result<Option<StateEntry>> {
    let row = crate::state::key_row(
        conn,
        "SELECT value::text, version, tidewright_micros(updated_at), tidewright_micros(expires_at) FROM state
         WHERE tenant = $1 AND scope = $2 AND key = $3 AND value IS NOT NULL
           AND (expires_at IS NULL OR tidewright_micros(expires_at) > $4)",
        &key,
        now,
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

pub(crate) async fn list_state(
    conn: &mut Conn,
    query: StateQuery,
) -> Result<Vec<(StateKey, StateEntry)>> {
    let scope = &query.scope;
    let found = rows(
        conn,
        "SELECT key, value::text, version, tidewright_micros(updated_at), tidewright_micros(expires_at)
         FROM state
         WHERE tenant = $1 AND scope = $2 AND key > $3 AND value IS NOT NULL
           AND (expires_at IS NULL OR tidewright_micros(expires_at) > $4)
         ORDER BY key LIMIT $5",
        &[
            &text(&scope.tenant),
            &text(&scope.scope),
            &text(&query.after_key),
            &query.now,
            &count(query.limit as u64),
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

pub(crate) async fn running_attempt(
    conn: &mut Conn,
    task_id: String,
    step_id: String,
) -> Result<Option<u32>> {
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

/// The row `sql` finds for a step, if any (`$1` its task, `$2` its id).
async fn step_row(
    conn: &mut Conn,
    sql: &str,
    task_id: &str,
    step_id: &str,
) -> Result<Option<tokio_postgres::Row>> {
    let statement = conn.statement(sql).await?;
    Ok(conn
        .client
        .query_opt(&statement, &[&task_id, &step_id])
        .await?)
}

pub(crate) async fn checkpoint(
    conn: &mut Conn,
    task_id: String,
    step_id: String,
) -> Result<Option<Checkpoint>> {
    let sql = "SELECT attempt, session_id, workspace, archive, tidewright_micros(created_at)
               FROM checkpoints WHERE task_id = $1 AND step_id = $2";
    let Some(row) = step_row(conn, sql, &task_id, &step_id).await? else {
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

pub(crate) async fn step_branch(
    conn: &mut Conn,
    task_id: String,
    step_id: String,
) -> Result<Option<StepBranch>> {
    let sql = "SELECT attempt, head_commit, bundle, diff, tidewright_micros(created_at)
               FROM branches WHERE task_id = $1 AND step_id = $2";
    let Some(row) = step_row(conn, sql, &task_id, &step_id).await? else {
        return Ok(None);
    };
    Ok(Some(StepBranch {
        task_id,
        step_id,
        attempt: u32::try_from(row.try_get::<_, i64>(0)?).unwrap_or(u32::MAX),
        head_commit: row.try_get(1)?,
        bundle: row.try_get(2)?,
        diff: row.try_get(3)?,
        created_at: row.try_get(4)?,
    }))
}

pub(crate) async fn audit_after(
    conn: &mut Conn,
    after: i64,
    limit: i64,
    tenants: Option<Vec<String>>,
) -> Result<Vec<AuditRecord>> {
    let statement = conn
        .statement(
            "SELECT seq, tidewright_micros(at), actor, role, action, tenant, target, outcome, detail FROM audit
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

/// Every tenant's budget or share, by tenant.
pub(crate) async fn tenant_records<T: serde::de::DeserializeOwned>(
    conn: &mut Conn,
    record: TenantRecord,
) -> Result<Vec<(String, T)>> {
    let (table, column) = record.at();
    let statement = conn
        .statement(&format!(
            "SELECT tenant, {column}::text FROM {table} ORDER BY tenant"
        ))
        .await?;
    let rows = conn.client.query(&statement, &[]).await?;
    rows.iter()
        .map(|row| {
            let tenant: String = row.try_get(0)?;
            let json: String = row.try_get(1)?;
            let record = serde_json::from_str(&json)
                .map_err(|e| Error::Corrupt(format!("tenant {tenant}'s {column}: {e}")))?;
            Ok((tenant, record))
        })
        .collect()
}

pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
