//! One group's work as a handful of statements: whatever the jobs of a
//! group write is folded per row in memory and sent as arrays (`UNNEST`),
//! and the statements are pipelined, so a group of hundreds of jobs waits
//! for one round trip (plus its BEGIN and COMMIT), not one or more per
//! row. Jobs are folded in the order they were handed over, so the last
//! write to a field wins, as it would one statement at a time.

use std::collections::HashMap;

use orca_core::Event;
use orca_store::fleet;
use orca_store::webhooks::DeliveryState;
use orca_store::{
    AttemptWrite, AuditRecord, Checkpoint, Created, NewTask, StateChange, StateEntry, StateKey,
    StateOutcome, StepWrite, Write,
};
use tokio_postgres::types::ToSql;

use crate::conn::Conn;
use crate::fault::{Fault, Result};
use crate::{json_text, text};

/// One job's work, without its reply.
pub(crate) enum Work<'a> {
    Create(&'a [NewTask]),
    Write(&'a [Write]),
    State(&'a StateChange),
}

/// What one job did, once its group committed.
pub(crate) enum Done {
    Created(Vec<Created>),
    Written,
    State(StateOutcome),
}

/// Applies `work` in the open transaction on `conn`; one answer per job,
/// or the first error (which leaves the transaction to be rolled back).
pub(crate) async fn apply(conn: &mut Conn, work: &[Work<'_>]) -> Result<Vec<Done>> {
    let mut done: Vec<Option<Done>> = work.iter().map(|_| None).collect();
    let mut rows = Rows::default();
    create(conn, work, &mut done, &mut rows).await?;
    for (index, item) in work.iter().enumerate() {
        if let Work::Write(writes) = item {
            for write in *writes {
                rows.fold(write)?;
            }
            done[index] = Some(Done::Written);
        }
    }
    rows.execute(conn).await?;
    // Shared state is read and written by these alone, so applying them
    // after the rest changes nothing anyone can see; among themselves they
    // keep their order.
    for (index, item) in work.iter().enumerate() {
        if let Work::State(change) = item {
            done[index] = Some(Done::State(change_state(conn, change).await?));
        }
    }
    Ok(done
        .into_iter()
        .map(|d| d.unwrap_or(Done::Written))
        .collect())
}

/// Decides which tasks are new (an idempotency key already stored, or
/// taken earlier in the group, finds that task instead) and queues the new
/// ones' rows.
async fn create(
    conn: &mut Conn,
    work: &[Work<'_>],
    done: &mut [Option<Done>],
    rows: &mut Rows,
) -> Result<()> {
    // Keys are per tenant: one tenant's key never finds another's task.
    let scoped = |task: &NewTask| {
        task.idempotency_key
            .as_ref()
            .map(|key| text(&format!("{}/{key}", task.tenant)))
    };
    let keys: Vec<String> = work
        .iter()
        .filter_map(|w| match w {
            Work::Create(tasks) => Some(tasks.iter().filter_map(scoped)),
            _ => None,
        })
        .flatten()
        .collect();
    if keys.is_empty() && !work.iter().any(|w| matches!(w, Work::Create(_))) {
        return Ok(());
    }
    let mut taken: HashMap<String, String> = HashMap::new();
    if !keys.is_empty() {
        let statement = conn
            .statement(
                "SELECT idempotency_key, id FROM tasks WHERE idempotency_key = ANY($1::text[])",
            )
            .await?;
        for row in conn.client.query(&statement, &[&keys]).await? {
            taken.insert(row.get(0), row.get(1));
        }
    }
    for (index, item) in work.iter().enumerate() {
        let Work::Create(tasks) = item else { continue };
        let mut created = Vec::with_capacity(tasks.len());
        for task in *tasks {
            let key = scoped(task);
            if let Some(id) = key.as_ref().and_then(|k| taken.get(k)) {
                created.push(Created::Existing(id.clone()));
                continue;
            }
            if let Some(key) = &key {
                taken.insert(key.clone(), task.id.clone());
            }
            rows.new_task(task, key)?;
            created.push(Created::New(task.id.clone()));
        }
        done[index] = Some(Done::Created(created));
    }
    Ok(())
}

/// The rows a group writes, folded: one entry per task, step and attempt
/// however many writes touched it, in the order first touched.
#[derive(Default)]
struct Rows {
    tasks: NewTasks,
    task_updates: Folded<String, TaskUpdate>,
    step_updates: Folded<(String, String), StepWrite>,
    attempts: Folded<(String, String, u32), AttemptWrite>,
    events: Events,
    audit: Vec<AuditRecord>,
    /// Raised budgets: (task, its new spec as JSON), in order.
    specs: Vec<(String, String)>,
    /// (tenant, its budget as JSON, or `None` to remove it), in order.
    budgets: Vec<(String, Option<String>)>,
    /// Agents' session checkpoints, in order; applied after the steps'
    /// updates, whose current attempt decides whether each is kept.
    checkpoints: Vec<Checkpoint>,
    /// Expiries of finished tasks' checkpoints (finished before), applied
    /// after the tasks' updates.
    expiries: Vec<i64>,
    /// Webhooks' endpoints, deliveries and cursor, in the order written:
    /// few next to the tasks' writes, a statement each.
    webhooks: Vec<WebhookWrite>,
}

enum WebhookWrite {
    /// (id, record as JSON).
    Put(String, String),
    Remove(String),
    /// (id, endpoint, tenant, pending, record as JSON).
    Delivery(String, String, String, bool, String),
    Cursor(i64),
}

/// Entries by key, kept in the order their keys first came.
struct Folded<K, V> {
    order: Vec<V>,
    index: HashMap<K, usize>,
}

impl<K, V> Default for Folded<K, V> {
    fn default() -> Self {
        Folded {
            order: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, V> Folded<K, V> {
    fn fold(&mut self, key: K, value: V, merge: impl FnOnce(&mut V, V)) {
        match self.index.get(&key) {
            Some(&i) => merge(&mut self.order[i], value),
            None => {
                self.index.insert(key, self.order.len());
                self.order.push(value);
            }
        }
    }
}

struct TaskUpdate {
    id: String,
    state: String,
    message: String,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

#[derive(Default)]
struct NewTasks {
    id: Vec<String>,
    tenant: Vec<String>,
    name: Vec<String>,
    priority: Vec<i32>,
    state: Vec<&'static str>,
    key: Vec<Option<String>>,
    spec: Vec<String>,
    labels: Vec<String>,
    message: Vec<String>,
    plan: Vec<String>,
    trace_context: Vec<String>,
    created_at: Vec<i64>,
    step_task: Vec<String>,
    step_id: Vec<String>,
    step_position: Vec<i32>,
    step_state: Vec<&'static str>,
}

#[derive(Default)]
struct Events {
    task_id: Vec<String>,
    seq: Vec<i64>,
    at: Vec<i64>,
    kind: Vec<&'static str>,
    body: Vec<String>,
    /// The ones in the fleet's order (all but log lines), as written.
    fleet: fleet::Entries,
}

impl Events {
    fn push(&mut self, event: &Event) -> Result<()> {
        self.fleet.push(event);
        self.task_id.push(text(&event.task_id));
        self.seq.push(event.seq as i64);
        self.at.push(event.at);
        self.kind.push(event.kind.name());
        self.body.push(json_text(&to_json(&event.kind, "event")?));
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Fault::Store(orca_store::Error::Corrupt(format!(
            "{what} does not encode: {e}"
        )))
    })
}

/// Later `Some`s win over earlier ones, field by field.
fn merge_step(into: &mut StepWrite, later: StepWrite) {
    macro_rules! take {
        ($($field:ident),*) => { $( if later.$field.is_some() { into.$field = later.$field; } )* };
    }
    take!(
        state,
        attempt,
        worker,
        started_at,
        finished_at,
        output_json,
        error,
        exit_code,
        progress,
        approval_deadline
    );
}

fn merge_attempt(into: &mut AttemptWrite, later: AttemptWrite) {
    macro_rules! take {
        ($($field:ident),*) => { $( if later.$field.is_some() { into.$field = later.$field; } )* };
    }
    take!(
        worker,
        started_at,
        finished_at,
        state,
        error,
        exit_code,
        session_id,
        model,
        cost
    );
}

impl Rows {
    fn new_task(&mut self, task: &NewTask, key: Option<String>) -> Result<()> {
        let t = &mut self.tasks;
        t.id.push(text(&task.id));
        t.tenant.push(text(&task.tenant));
        t.name.push(text(&task.spec.name));
        t.priority.push(task.spec.priority);
        t.state.push(task.state.as_str());
        t.key.push(key);
        t.spec.push(json_text(&to_json(&task.spec, "task spec")?));
        t.labels
            .push(json_text(&to_json(&task.spec.labels, "labels")?));
        t.message.push(text(&task.message));
        t.plan.push(task.plan_json.clone());
        t.trace_context.push(text(&task.trace_context));
        t.created_at.push(task.created_at);
        for (position, (step, state)) in task.spec.steps.iter().zip(&task.step_states).enumerate() {
            t.step_task.push(text(&task.id));
            t.step_id.push(text(&step.id));
            t.step_position.push(position as i32);
            t.step_state.push(state.as_str());
        }
        for event in &task.events {
            self.events.push(event)?;
        }
        Ok(())
    }

    fn fold(&mut self, write: &Write) -> Result<()> {
        match write {
            Write::Task {
                id,
                state,
                message,
                started_at,
                finished_at,
            } => self.task_updates.fold(
                id.clone(),
                TaskUpdate {
                    id: text(id),
                    state: state.as_str().to_string(),
                    message: text(message),
                    started_at: *started_at,
                    finished_at: *finished_at,
                },
                |into, later| {
                    into.state = later.state;
                    into.message = later.message;
                    into.started_at = later.started_at.or(into.started_at);
                    into.finished_at = later.finished_at.or(into.finished_at);
                },
            ),
            Write::Step(step) => self.step_updates.fold(
                (step.task_id.clone(), step.step_id.clone()),
                step.clone(),
                merge_step,
            ),
            Write::Progress {
                task_id,
                step_id,
                fraction,
                message,
            } => self.step_updates.fold(
                (task_id.clone(), step_id.clone()),
                StepWrite {
                    task_id: task_id.clone(),
                    step_id: step_id.clone(),
                    progress: Some((*fraction, message.clone())),
                    ..StepWrite::default()
                },
                merge_step,
            ),
            Write::Attempt(attempt) => self.attempts.fold(
                (
                    attempt.task_id.clone(),
                    attempt.step_id.clone(),
                    attempt.attempt,
                ),
                attempt.clone(),
                merge_attempt,
            ),
            Write::Event(event) => self.events.push(event)?,
            Write::Audit(record) => self.audit.push(record.clone()),
            Write::Spec { id, spec } => self
                .specs
                .push((text(id), json_text(&to_json(spec, "task spec")?))),
            Write::TenantBudget { tenant, budget } => self.budgets.push((
                text(tenant),
                if budget.is_empty() {
                    None
                } else {
                    Some(to_json(budget, "budget")?)
                },
            )),
            Write::Checkpoint(checkpoint) => self.checkpoints.push(Checkpoint {
                task_id: text(&checkpoint.task_id),
                step_id: text(&checkpoint.step_id),
                session_id: text(&checkpoint.session_id),
                workspace: text(&checkpoint.workspace),
                ..(**checkpoint).clone()
            }),
            Write::ExpireCheckpoints { finished_before } => self.expiries.push(*finished_before),
            Write::Webhook(webhook) => self.webhooks.push(WebhookWrite::Put(
                text(&webhook.id),
                text(&to_json(webhook, "webhook")?),
            )),
            Write::RemoveWebhook { id } => self.webhooks.push(WebhookWrite::Remove(text(id))),
            Write::Deliveries { cursor, deliveries } => {
                for d in deliveries {
                    self.webhooks.push(WebhookWrite::Delivery(
                        text(&d.id),
                        text(&d.webhook_id),
                        text(&d.tenant),
                        d.state == DeliveryState::Pending,
                        text(&to_json(d, "delivery")?),
                    ));
                }
                if let Some(cursor) = cursor {
                    self.webhooks.push(WebhookWrite::Cursor(*cursor as i64));
                }
            }
        }
        Ok(())
    }

    /// Sends the folded rows, each kind in one statement (new tasks before
    /// the updates that may follow them), all at once: the statements are
    /// pipelined, so the group waits for one round trip, not one each.
    async fn execute(&self, conn: &mut Conn) -> Result<()> {
        // Declared before the pipeline, which borrows them.
        let fleet_rows: Vec<(Vec<String>, Vec<i64>)> = self
            .events
            .fleet
            .rows(0)
            .into_iter()
            .map(|(_, row)| {
                row.iter()
                    .map(|(task_id, seq)| (text(task_id), *seq as i64))
                    .unzip()
            })
            .collect();
        let mut pipeline = Pipeline::default();
        let t = &self.tasks;
        if !t.id.is_empty() {
            pipeline.add(
                conn,
                "INSERT INTO tasks (id, tenant, name, priority, state, idempotency_key, spec, labels,
                                    message, plan, trace_context, created_at, finished_at)
                 SELECT id, tenant, name, priority, state, key, spec::json, labels::jsonb, message,
                        NULLIF(plan, '')::json, trace_context, orca_ts(created_at),
                        CASE WHEN state IN ('succeeded', 'failed', 'cancelled') THEN orca_ts(created_at) END
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[])
                      AS u(id, tenant, name, priority, state, key, spec, labels, message, plan,
                           trace_context, created_at)",
                params![
                    &t.id,
                    &t.tenant,
                    &t.name,
                    &t.priority,
                    &t.state,
                    &t.key,
                    &t.spec,
                    &t.labels,
                    &t.message,
                    &t.plan,
                    &t.trace_context,
                    &t.created_at,
                ],
            )
            .await?;
        }
        if !t.step_task.is_empty() {
            pipeline
                .add(
                    conn,
                    "INSERT INTO steps (task_id, step_id, position, state)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int[], $4::text[])",
                    params![&t.step_task, &t.step_id, &t.step_position, &t.step_state],
                )
                .await?;
        }
        update_tasks(conn, &mut pipeline, &self.task_updates.order).await?;
        update_steps(conn, &mut pipeline, &self.step_updates.order).await?;
        upsert_attempts(conn, &mut pipeline, &self.attempts.order).await?;
        let e = &self.events;
        if !e.task_id.is_empty() {
            pipeline
                .add(
                    conn,
                    "INSERT INTO events (task_id, seq, at, kind, body)
                 SELECT task_id, seq, orca_ts(at), kind, body::json
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[])
                      AS u(task_id, seq, at, kind, body)",
                    params![&e.task_id, &e.seq, &e.at, &e.kind, &e.body],
                )
                .await?;
        }
        // The transaction's row(s) of the fleet's order (orca_store::fleet):
        // the one writer numbers them as it commits, one above the last.
        for (task_ids, seqs) in &fleet_rows {
            pipeline
                .add(
                    conn,
                    "INSERT INTO fleet (commit_no, task_ids, seqs)
                     SELECT COALESCE(MAX(commit_no), 0) + 1, $1::text[], $2::bigint[] FROM fleet",
                    params![task_ids, seqs],
                )
                .await?;
        }
        insert_audit(conn, &mut pipeline, &self.audit).await?;
        // Budgets change rarely: a statement each.
        for (id, spec) in &self.specs {
            pipeline
                .add(
                    conn,
                    "UPDATE tasks SET spec = $2::text::json WHERE id = $1",
                    params![id, spec],
                )
                .await?;
        }
        for (tenant, budget) in &self.budgets {
            let sql = match budget {
                Some(_) => {
                    "INSERT INTO budgets (tenant, budget) VALUES ($1, $2::text::json)
                     ON CONFLICT (tenant) DO UPDATE SET budget = excluded.budget"
                }
                None => "DELETE FROM budgets WHERE tenant = $1 AND $2::text IS NULL",
            };
            pipeline.add(conn, sql, params![tenant, budget]).await?;
        }
        // Checkpoints are rare and large: a statement each. Only the step's
        // current attempt's is kept, never over a newer attempt's.
        for c in &self.checkpoints {
            pipeline
                .add(
                    conn,
                    "INSERT INTO checkpoints
                         (task_id, step_id, attempt, session_id, workspace, archive, created_at)
                     SELECT $1, $2, $3, $4, $5, $6, orca_ts($7) FROM steps
                         WHERE task_id = $1 AND step_id = $2 AND attempt = $3
                     ON CONFLICT (task_id, step_id) DO UPDATE SET
                         attempt = excluded.attempt, session_id = excluded.session_id,
                         workspace = excluded.workspace, archive = excluded.archive,
                         created_at = excluded.created_at
                     WHERE excluded.attempt >= checkpoints.attempt",
                    params![
                        &c.task_id,
                        &c.step_id,
                        i64::from(c.attempt),
                        &c.session_id,
                        &c.workspace,
                        &c.archive,
                        c.created_at,
                    ],
                )
                .await?;
        }
        for finished_before in &self.expiries {
            pipeline
                .add(
                    conn,
                    "DELETE FROM checkpoints WHERE task_id IN
                         (SELECT id FROM tasks WHERE finished_at < orca_ts($1))",
                    params![finished_before],
                )
                .await?;
        }
        for write in &self.webhooks {
            match write {
                WebhookWrite::Put(id, record) => {
                    pipeline
                        .add(
                            conn,
                            "INSERT INTO webhooks (id, record) VALUES ($1, $2)
                             ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                            params![id, record],
                        )
                        .await?
                }
                WebhookWrite::Remove(id) => {
                    pipeline
                        .add(
                            conn,
                            "WITH gone AS (DELETE FROM webhooks WHERE id = $1)
                             DELETE FROM deliveries WHERE webhook_id = $1",
                            params![id],
                        )
                        .await?
                }
                WebhookWrite::Delivery(id, webhook_id, tenant, pending, record) => {
                    pipeline
                        .add(
                            conn,
                            "INSERT INTO deliveries (id, webhook_id, tenant, pending, record)
                             VALUES ($1, $2, $3, $4, $5)
                             ON CONFLICT (id) DO UPDATE SET
                                 pending = excluded.pending, record = excluded.record",
                            params![id, webhook_id, tenant, pending, record],
                        )
                        .await?
                }
                WebhookWrite::Cursor(position) => {
                    pipeline
                        .add(
                            conn,
                            "INSERT INTO cursors (name, position) VALUES ('webhooks', $1)
                             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                            params![position],
                        )
                        .await?
                }
            }
        }
        pipeline.run(conn).await
    }
}

/// One statement's parameters, owned or borrowed from the group's rows.
type Params<'r> = Vec<Box<dyn ToSql + Sync + Send + 'r>>;

macro_rules! params {
    ($($param:expr),* $(,)?) => {
        vec![$(Box::new($param) as Box<dyn ToSql + Sync + Send>),*]
    };
}
use params;

/// Statements sent together: each is prepared (once per connection), then
/// all go out before any answer is read.
#[derive(Default)]
struct Pipeline<'r> {
    statements: Vec<(tokio_postgres::Statement, Params<'r>)>,
}

impl<'r> Pipeline<'r> {
    async fn add(&mut self, conn: &mut Conn, sql: &str, params: Params<'r>) -> Result<()> {
        let statement = conn.statement(sql).await?;
        self.statements.push((statement, params));
        Ok(())
    }

    /// Sends every statement, then reads every answer; the first error, if
    /// any (after which the server ignores the rest of the transaction).
    async fn run(self, conn: &Conn) -> Result<()> {
        let client = &conn.client;
        let sent = self.statements.iter().map(|(statement, params)| {
            let params: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            async move { client.execute(statement, &params).await }
        });
        for answer in futures::future::join_all(sent).await {
            answer?;
        }
        Ok(())
    }
}

async fn run(conn: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let statement = conn.statement(sql).await?;
    Ok(conn.client.execute(&statement, params).await?)
}

async fn update_tasks<'r>(
    conn: &mut Conn,
    pipeline: &mut Pipeline<'r>,
    updates: &'r [TaskUpdate],
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let id: Vec<&str> = updates.iter().map(|u| u.id.as_str()).collect();
    let state: Vec<&str> = updates.iter().map(|u| u.state.as_str()).collect();
    let message: Vec<&str> = updates.iter().map(|u| u.message.as_str()).collect();
    let started: Vec<Option<i64>> = updates.iter().map(|u| u.started_at).collect();
    let finished: Vec<Option<i64>> = updates.iter().map(|u| u.finished_at).collect();
    pipeline.add(
        conn,
        "UPDATE tasks t SET state = u.state, message = u.message,
            started_at = CASE WHEN u.started_at IS NULL THEN t.started_at ELSE orca_ts(u.started_at) END,
            finished_at = CASE WHEN u.finished_at IS NULL THEN t.finished_at ELSE orca_ts(u.finished_at) END
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
              AS u(id, state, message, started_at, finished_at)
         WHERE t.id = u.id",
        params![id, state, message, started, finished],
    )
    .await
}

async fn update_steps<'r>(
    conn: &mut Conn,
    pipeline: &mut Pipeline<'r>,
    updates: &'r [StepWrite],
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let task_id: Vec<String> = updates.iter().map(|u| text(&u.task_id)).collect();
    let step_id: Vec<String> = updates.iter().map(|u| text(&u.step_id)).collect();
    let state: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.state.map(|s| s.as_str()))
        .collect();
    let attempt: Vec<Option<i64>> = updates.iter().map(|u| u.attempt.map(i64::from)).collect();
    let worker: Vec<Option<String>> = updates
        .iter()
        .map(|u| u.worker.as_deref().map(text))
        .collect();
    let started: Vec<Option<i64>> = updates.iter().map(|u| u.started_at).collect();
    let finished: Vec<Option<i64>> = updates.iter().map(|u| u.finished_at).collect();
    let output: Vec<Option<&str>> = updates.iter().map(|u| u.output_json.as_deref()).collect();
    let error: Vec<Option<String>> = updates
        .iter()
        .map(|u| u.error.as_deref().map(text))
        .collect();
    let set_exit: Vec<bool> = updates.iter().map(|u| u.exit_code.is_some()).collect();
    let exit_code: Vec<Option<i32>> = updates.iter().map(|u| u.exit_code.flatten()).collect();
    let progress: Vec<Option<f32>> = updates
        .iter()
        .map(|u| u.progress.as_ref().map(|p| p.0))
        .collect();
    let progress_message: Vec<Option<String>> = updates
        .iter()
        .map(|u| u.progress.as_ref().map(|p| text(&p.1)))
        .collect();
    let approval_deadline: Vec<Option<i64>> = updates.iter().map(|u| u.approval_deadline).collect();
    pipeline.add(
        conn,
        "UPDATE steps s SET
            state = COALESCE(u.state, s.state),
            attempt = COALESCE(u.attempt, s.attempt),
            worker = COALESCE(u.worker, s.worker),
            started_at = CASE WHEN u.started_at IS NULL THEN s.started_at ELSE orca_ts(u.started_at) END,
            finished_at = CASE WHEN u.finished_at IS NULL THEN s.finished_at ELSE orca_ts(u.finished_at) END,
            output = CASE WHEN u.output IS NULL THEN s.output ELSE NULLIF(u.output, '')::json END,
            error = COALESCE(u.error, s.error),
            exit_code = CASE WHEN u.set_exit THEN u.exit_code ELSE s.exit_code END,
            progress = COALESCE(u.progress, s.progress),
            progress_message = COALESCE(u.progress_message, s.progress_message),
            approval_deadline = CASE WHEN u.approval_deadline IS NULL THEN s.approval_deadline
                                     ELSE orca_ts(u.approval_deadline) END
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                     $7::bigint[], $8::text[], $9::text[], $10::bool[], $11::int[], $12::real[],
                     $13::text[], $14::bigint[])
              AS u(task_id, step_id, state, attempt, worker, started_at, finished_at, output, error,
                   set_exit, exit_code, progress, progress_message, approval_deadline)
         WHERE s.task_id = u.task_id AND s.step_id = u.step_id",
        params![
            task_id,
            step_id,
            state,
            attempt,
            worker,
            started,
            finished,
            output,
            error,
            set_exit,
            exit_code,
            progress,
            progress_message,
            approval_deadline,
        ],
    )
    .await
}

/// Attempt rows are created by their first write and completed by later
/// ones: the existing rows are updated, then the missing ones inserted
/// (one writer, so nothing comes between the two).
async fn upsert_attempts<'r>(
    conn: &mut Conn,
    pipeline: &mut Pipeline<'r>,
    attempts: &'r [AttemptWrite],
) -> Result<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let tokens = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let task_id: Vec<String> = attempts.iter().map(|a| text(&a.task_id)).collect();
    let step_id: Vec<String> = attempts.iter().map(|a| text(&a.step_id)).collect();
    let attempt: Vec<i64> = attempts.iter().map(|a| i64::from(a.attempt)).collect();
    let worker: Vec<Option<String>> = attempts
        .iter()
        .map(|a| a.worker.as_deref().map(text))
        .collect();
    let started: Vec<Option<i64>> = attempts.iter().map(|a| a.started_at).collect();
    let finished: Vec<Option<i64>> = attempts.iter().map(|a| a.finished_at).collect();
    let state: Vec<Option<&str>> = attempts
        .iter()
        .map(|a| a.state.map(|s| s.as_str()))
        .collect();
    let error: Vec<Option<String>> = attempts
        .iter()
        .map(|a| a.error.as_deref().map(text))
        .collect();
    let exit_code: Vec<Option<i32>> = attempts.iter().map(|a| a.exit_code).collect();
    let session: Vec<Option<String>> = attempts
        .iter()
        .map(|a| a.session_id.as_deref().map(text))
        .collect();
    let model: Vec<Option<String>> = attempts
        .iter()
        .map(|a| a.model.as_deref().map(text))
        .collect();
    let usd: Vec<Option<f64>> = attempts.iter().map(|a| a.cost.map(|c| c.usd)).collect();
    let input: Vec<Option<i64>> = attempts
        .iter()
        .map(|a| a.cost.map(|c| tokens(c.input_tokens)))
        .collect();
    let output: Vec<Option<i64>> = attempts
        .iter()
        .map(|a| a.cost.map(|c| tokens(c.output_tokens)))
        .collect();
    let cache_read: Vec<Option<i64>> = attempts
        .iter()
        .map(|a| a.cost.map(|c| tokens(c.cache_read_tokens)))
        .collect();
    let cache_creation: Vec<Option<i64>> = attempts
        .iter()
        .map(|a| a.cost.map(|c| tokens(c.cache_creation_tokens)))
        .collect();
    // Both statements take the same rows.
    let params = || {
        params![
            task_id.clone(),
            step_id.clone(),
            attempt.clone(),
            worker.clone(),
            started.clone(),
            finished.clone(),
            state.clone(),
            error.clone(),
            exit_code.clone(),
            session.clone(),
            model.clone(),
            usd.clone(),
            input.clone(),
            output.clone(),
            cache_read.clone(),
            cache_creation.clone(),
        ]
    };
    const ROWS: &str = "UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[],
                               $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::float8[],
                               $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[])
                        AS u(task_id, step_id, attempt, worker, started_at, finished_at, state, error,
                             exit_code, session_id, model, usd, input, output, cache_read, cache_creation)";
    pipeline.add(
        conn,
        &format!(
            "UPDATE attempts a SET
                worker = COALESCE(u.worker, a.worker),
                started_at = CASE WHEN u.started_at IS NULL THEN a.started_at ELSE orca_ts(u.started_at) END,
                finished_at = CASE WHEN u.finished_at IS NULL THEN a.finished_at ELSE orca_ts(u.finished_at) END,
                state = COALESCE(u.state, a.state),
                error = COALESCE(u.error, a.error),
                exit_code = COALESCE(u.exit_code, a.exit_code),
                session_id = COALESCE(u.session_id, a.session_id),
                model = COALESCE(u.model, a.model),
                cost_usd = COALESCE(u.usd, a.cost_usd),
                input_tokens = COALESCE(u.input, a.input_tokens),
                output_tokens = COALESCE(u.output, a.output_tokens),
                cache_read_tokens = COALESCE(u.cache_read, a.cache_read_tokens),
                cache_creation_tokens = COALESCE(u.cache_creation, a.cache_creation_tokens)
             FROM {ROWS}
             WHERE a.task_id = u.task_id AND a.step_id = u.step_id AND a.attempt = u.attempt"
        ),
        params(),
    )
    .await?;
    pipeline.add(
        conn,
        &format!(
            "INSERT INTO attempts (task_id, step_id, attempt, worker, started_at, finished_at, state,
                                   error, exit_code, session_id, model, cost_usd, input_tokens,
                                   output_tokens, cache_read_tokens, cache_creation_tokens)
             SELECT u.task_id, u.step_id, u.attempt, COALESCE(u.worker, ''),
                    orca_ts(COALESCE(u.started_at, 0)), orca_ts(COALESCE(u.finished_at, 0)),
                    COALESCE(u.state, 'running'), COALESCE(u.error, ''), u.exit_code,
                    COALESCE(u.session_id, ''), COALESCE(u.model, ''), COALESCE(u.usd, 0),
                    COALESCE(u.input, 0), COALESCE(u.output, 0), COALESCE(u.cache_read, 0),
                    COALESCE(u.cache_creation, 0)
             FROM {ROWS}
             WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.task_id = u.task_id
                               AND a.step_id = u.step_id AND a.attempt = u.attempt)"
        ),
        params(),
    )
    .await
}

/// Audit records are numbered 1, 2, 3... in the order handed over, with no
/// gaps: the one writer numbers them from the highest stored.
async fn insert_audit<'r>(
    conn: &mut Conn,
    pipeline: &mut Pipeline<'r>,
    records: &'r [AuditRecord],
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let at: Vec<i64> = records.iter().map(|r| r.at).collect();
    let column = |f: fn(&AuditRecord) -> &str| -> Vec<String> {
        records.iter().map(|r| text(f(r))).collect()
    };
    pipeline
        .add(
            conn,
            "INSERT INTO audit (seq, at, actor, role, action, tenant, target, outcome, detail)
         SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit) + u.n, orca_ts(u.at), u.actor, u.role,
                u.action, u.tenant, u.target, u.outcome, u.detail
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[]) WITH ORDINALITY
              AS u(at, actor, role, action, tenant, target, outcome, detail, n)
         ORDER BY u.n",
            params![
                at,
                column(|r| &r.actor),
                column(|r| &r.role),
                column(|r| &r.action),
                column(|r| &r.tenant),
                column(|r| &r.target),
                column(|r| &r.outcome),
                column(|r| &r.detail),
            ],
        )
        .await
}

/// The row at `key`: its version, and whether it holds a live value at
/// `now` (a deleted or expired value keeps its version, so versions never
/// repeat).
async fn state_row(conn: &mut Conn, key: &StateKey, now: i64) -> Result<Option<(u64, bool)>> {
    let statement = conn
        .statement(
            "SELECT version, value IS NOT NULL AND (expires_at IS NULL OR orca_micros(expires_at) > $4)
             FROM state WHERE tenant = $1 AND scope = $2 AND key = $3",
        )
        .await?;
    let row = conn
        .client
        .query_opt(
            &statement,
            &[&text(&key.tenant), &text(&key.scope), &text(&key.key), &now],
        )
        .await?;
    Ok(row.map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, bool>(1))))
}

async fn change_state(conn: &mut Conn, change: &StateChange) -> Result<StateOutcome> {
    let (key, expect, now) = match change {
        StateChange::Put {
            key, expect, now, ..
        }
        | StateChange::Delete { key, expect, now } => (key, *expect, *now),
    };
    let row = state_row(conn, key, now).await?;
    let live = row.filter(|(_, live)| *live).map(|(version, _)| version);
    if !expect.met_by(live) {
        return Ok(StateOutcome::Conflict { found: live });
    }
    let version = row.map_or(0, |(version, _)| version) + 1;
    let (tenant, scope, name) = (text(&key.tenant), text(&key.scope), text(&key.key));
    match change {
        StateChange::Put {
            value_json,
            expires_at,
            ..
        } => {
            run(
                conn,
                "INSERT INTO state (tenant, scope, key, value, version, updated_at, expires_at)
                 VALUES ($1, $2, $3, $4::text::json, $5, orca_ts($6), orca_ts($7))
                 ON CONFLICT (tenant, scope, key) DO UPDATE SET
                    value = EXCLUDED.value, version = EXCLUDED.version,
                    updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at",
                &[
                    &tenant,
                    &scope,
                    &name,
                    value_json,
                    &(version as i64),
                    &now,
                    expires_at,
                ],
            )
            .await?;
            Ok(StateOutcome::Done(Some(StateEntry {
                value_json: value_json.clone(),
                version,
                updated_at: now,
                expires_at: *expires_at,
            })))
        }
        StateChange::Delete { .. } => {
            if live.is_some() {
                run(
                    conn,
                    "UPDATE state SET value = NULL, version = $4, updated_at = orca_ts($5), expires_at = NULL
                     WHERE tenant = $1 AND scope = $2 AND key = $3",
                    &[&tenant, &scope, &name, &(version as i64), &now],
                )
                .await?;
            }
            Ok(StateOutcome::Done(None))
        }
    }
}

#[cfg(test)]
mod tests {
    use orca_core::{StepState, TaskState};

    use super::*;

    #[test]
    fn writes_to_one_row_fold_into_one_and_the_last_value_of_each_field_wins() {
        let mut rows = Rows::default();
        let step = |step_id: &str| StepWrite {
            task_id: "t1".into(),
            step_id: step_id.into(),
            ..StepWrite::default()
        };
        let writes = [
            Write::Step(StepWrite {
                state: Some(StepState::Running),
                worker: Some("w1".into()),
                exit_code: Some(Some(3)),
                ..step("a")
            }),
            Write::Progress {
                task_id: "t1".into(),
                step_id: "a".into(),
                fraction: 0.5,
                message: "half".into(),
            },
            Write::Step(step("b")),
            Write::Step(StepWrite {
                state: Some(StepState::Succeeded),
                exit_code: Some(None),
                ..step("a")
            }),
            Write::Task {
                id: "t1".into(),
                state: TaskState::Running,
                message: String::new(),
                started_at: Some(5),
                finished_at: None,
            },
            Write::Task {
                id: "t1".into(),
                state: TaskState::Succeeded,
                message: "done".into(),
                started_at: None,
                finished_at: Some(9),
            },
        ];
        for write in &writes {
            rows.fold(write).expect("folds");
        }
        let steps = &rows.step_updates.order;
        assert_eq!(
            steps.len(),
            2,
            "one row per step, in the order first touched"
        );
        assert_eq!(
            (steps[0].step_id.as_str(), steps[1].step_id.as_str()),
            ("a", "b")
        );
        let a = &steps[0];
        assert_eq!(a.state, Some(StepState::Succeeded));
        assert_eq!(a.worker.as_deref(), Some("w1"), "kept from the first write");
        assert_eq!(a.progress, Some((0.5, "half".to_string())));
        assert_eq!(a.exit_code, Some(None), "cleared by the last write");
        let task = &rows.task_updates.order;
        assert_eq!(task.len(), 1);
        assert_eq!(
            (task[0].state.as_str(), task[0].message.as_str()),
            ("succeeded", "done")
        );
        assert_eq!(
            (task[0].started_at, task[0].finished_at),
            (Some(5), Some(9))
        );
    }

    #[test]
    fn nul_is_replaced_in_text_and_in_json_strings_and_keys() {
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        assert_eq!(
            json_text(r#"{"k":"v"}"#),
            r#"{"k":"v"}"#,
            "untouched without NUL"
        );
        let cleaned: serde_json::Value =
            serde_json::from_str(&json_text(r#"{"a\u0000":["x\u0000y",1]}"#)).expect("json");
        assert_eq!(cleaned, serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}y", 1]}));
    }
}
