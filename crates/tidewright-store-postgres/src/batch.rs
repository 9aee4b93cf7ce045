//! One group's work as a handful of statements: whatever the jobs of a
//! group write is folded per row in memory and sent as arrays (`UNNEST`),
//! and the statements are pipelined, so a group of hundreds of jobs waits
//! for one round trip (plus its BEGIN and COMMIT), not one or more per
//! row. Jobs are folded in the order they were handed over, so the last
//! write to a field wins, as it would one statement at a time.

use std::collections::HashMap;

use tidewright_core::Event;
use tidewright_store::event_groups::EventGroups;
use tidewright_store::fleet;
use tidewright_store::retention::{Expiring, Trim, micros_of_seconds};
use tidewright_store::webhooks::DeliveryState;
use tidewright_store::{
    AttemptWrite, AuditRecord, Checkpoint, Created, NewTask, StateChange, StateOutcome, StepBranch,
    StepWrite, Write,
};
use tokio_postgres::types::ToSql;

use crate::conn::Conn;
use crate::fault::{Fault, Result};
use crate::pipeline::{
    Pipeline, TaskUpdate, insert_audit, params, update_steps, update_tasks, upsert_attempts,
};
use crate::state::change_state;
use crate::text::{json_text, text};

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
    let keys: Vec<String> = work
        .iter()
        .filter_map(|w| match w {
            Work::Create(tasks) => Some(tasks.iter().filter_map(scoped_key)),
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
            let key = scoped_key(task);
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

/// A task's idempotency key as stored: keys are per tenant, so one
/// tenant's key never finds another's task.
fn scoped_key(task: &NewTask) -> Option<String> {
    task.idempotency_key
        .as_ref()
        .map(|key| text(&format!("{}/{key}", task.tenant)))
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
    /// (where, tenant, its budget or share as JSON, or `None` to remove
    /// it), in order.
    tenant_records: Vec<(TenantRecord, String, Option<String>)>,
    /// Attempts' costs added to their days' sums, one per key, and the
    /// first day still kept.
    cost_sums: Vec<tidewright_core::cost_sums::CostSum>,
    cost_kept_from: Option<String>,
    /// Agents' session checkpoints, in order; applied after the steps'
    /// updates, whose current attempt decides whether each is kept.
    checkpoints: Vec<Checkpoint>,
    /// Steps' branches, in order; kept on the same terms as checkpoints.
    branches: Vec<StepBranch>,
    /// Expiries of finished tasks' checkpoints and branches (finished
    /// before), applied after the tasks' updates.
    expiries: Vec<i64>,
    /// Expired tasks to remove, with when; last, after every other write
    /// of the transaction (a retry in it keeps its task).
    expire: Vec<(Vec<Expiring>, i64)>,
    /// History to trim, last as well.
    trims: Vec<Trim>,
    /// Webhooks' endpoints, deliveries and cursor, in the order written:
    /// few next to the tasks' writes, a statement each.
    webhooks: Vec<WebhookWrite>,
    /// Schedules and triggers put, as (table, tenant, name, record as
    /// JSON), or removed (no record), in the order written.
    named: Vec<(tidewright_store::Named, String, String, Option<String>)>,
}

/// A tenant's record, each in a table of its own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TenantRecord {
    Budget,
    Share,
}

impl TenantRecord {
    /// Its (table, column).
    pub(crate) fn at(self) -> (&'static str, &'static str) {
        match self {
            TenantRecord::Budget => ("budgets", "budget"),
            TenantRecord::Share => ("shares", "share"),
        }
    }
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
    /// A task's own window in microseconds (0: forever); `None` for none.
    keep_for: Vec<Option<i64>>,
    step_task: Vec<String>,
    step_id: Vec<String>,
    step_position: Vec<i32>,
    step_state: Vec<&'static str>,
}

/// A row of the fleet's order: its runs' tasks, first and last numbers.
type FleetRow = (Vec<String>, Vec<i64>, Vec<i64>);

/// The columns of `event_groups` rows: task, first and last number, first
/// time, body.
type EventRows = (Vec<String>, Vec<i64>, Vec<i64>, Vec<i64>, Vec<String>);

#[derive(Default)]
struct Events {
    /// One row per task and run of numbers (tidewright_store::event_groups).
    groups: EventGroups,
    /// The ones in the fleet's order (all but log lines), as written.
    fleet: fleet::Entries,
}

impl Events {
    fn push(&mut self, event: &Event) -> Result<()> {
        self.fleet.push(event);
        self.groups.push(event)?;
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Fault::Store(tidewright_store::Error::Corrupt(format!(
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
        approval_deadline,
        work
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
        cost,
        verification,
        setup
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
        t.keep_for
            .push(task.spec.retention_seconds.map(micros_of_seconds));
        for (position, (step, state)) in task.spec.steps.iter().zip(&task.step_states).enumerate() {
            t.step_task.push(text(&task.id));
            t.step_id.push(text(&step.id));
            t.step_position.push(position as i32);
            t.step_state.push(state.as_str());
        }
        for event in &task.events {
            self.events.push(event)?;
        }
        if let Some(record) = &task.audit {
            self.audit.push(record.clone());
        }
        Ok(())
    }

    fn fold(&mut self, write: &Write) -> Result<()> {
        match write {
            Write::Task(task) => self.task_updates.fold(
                task.id.clone(),
                TaskUpdate {
                    id: text(&task.id),
                    state: task.state.as_str().to_string(),
                    message: text(&task.message),
                    started_at: task.started_at,
                    finished_at: task.finished_at,
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
            Write::Attempt(attempt) => self.attempts.fold(
                (
                    attempt.task_id.clone(),
                    attempt.step_id.clone(),
                    attempt.attempt,
                ),
                attempt.clone(),
                merge_attempt,
            ),
            Write::Create(task) => self.new_task(task, scoped_key(task))?,
            Write::Event(event) => self.events.push(event)?,
            Write::Audit(record) => self.audit.push(record.clone()),
            Write::Spec { id, spec } => self
                .specs
                .push((text(id), json_text(&to_json(spec, "task spec")?))),
            Write::TenantBudget { tenant, budget } => self.tenant_records.push((
                TenantRecord::Budget,
                text(tenant),
                if budget.is_empty() {
                    None
                } else {
                    Some(to_json(budget, "budget")?)
                },
            )),
            Write::TenantShare { tenant, share } => self.tenant_records.push((
                TenantRecord::Share,
                text(tenant),
                if share.is_default() {
                    None
                } else {
                    Some(to_json(share, "share")?)
                },
            )),
            Write::CostSum { sum, expire_before } => {
                // No NUL reaches the database (a model's name is a worker's
                // report).
                let key = &sum.key;
                let sum = tidewright_core::cost_sums::CostSum {
                    key: tidewright_core::cost_sums::CostKey {
                        day: text(&key.day),
                        tenant: text(&key.tenant),
                        repo: text(&key.repo),
                        runtime: text(&key.runtime),
                        model: text(&key.model),
                        template: text(&key.template),
                    },
                    ..sum.clone()
                };
                match self.cost_sums.iter_mut().find(|s| s.key == sum.key) {
                    Some(kept) => {
                        kept.cost += sum.cost;
                        kept.attempts += sum.attempts;
                    }
                    None => self.cost_sums.push(sum),
                }
                if self
                    .cost_kept_from
                    .as_ref()
                    .is_none_or(|d| d < expire_before)
                {
                    self.cost_kept_from = Some(expire_before.clone());
                }
            }
            Write::Checkpoint(checkpoint) => self.checkpoints.push(Checkpoint {
                task_id: text(&checkpoint.task_id),
                step_id: text(&checkpoint.step_id),
                session_id: text(&checkpoint.session_id),
                workspace: text(&checkpoint.workspace),
                ..(**checkpoint).clone()
            }),
            Write::Branch(branch) => self.branches.push(StepBranch {
                task_id: text(&branch.task_id),
                step_id: text(&branch.step_id),
                head_commit: text(&branch.head_commit),
                diff: text(&branch.diff),
                ..(**branch).clone()
            }),
            Write::ExpireKept { finished_before } => self.expiries.push(*finished_before),
            Write::Expire { tasks, at } => self.expire.push((tasks.clone(), *at)),
            Write::Trim(trim) => self.trims.push(trim.clone()),
            Write::Webhook(webhook) => self.webhooks.push(WebhookWrite::Put(
                text(&webhook.id),
                text(&to_json(webhook, "webhook")?),
            )),
            Write::RemoveWebhook { id } => self.webhooks.push(WebhookWrite::Remove(text(id))),
            Write::Schedule(schedule) => self.named.push((
                tidewright_store::Named::Schedules,
                text(&schedule.tenant),
                text(&schedule.spec.name),
                Some(text(&to_json(schedule, "schedule")?)),
            )),
            Write::RemoveSchedule { tenant, name } => self.named.push((
                tidewright_store::Named::Schedules,
                text(tenant),
                text(name),
                None,
            )),
            Write::Trigger(trigger) => self.named.push((
                tidewright_store::Named::Triggers,
                text(&trigger.tenant),
                text(&trigger.spec.name),
                Some(text(&to_json(trigger, "trigger")?)),
            )),
            Write::RemoveTrigger { tenant, name } => self.named.push((
                tidewright_store::Named::Triggers,
                text(tenant),
                text(name),
                None,
            )),
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
        let mut event_rows: EventRows = Default::default();
        for group in self.events.groups.iter() {
            event_rows.0.push(text(&group.task_id));
            event_rows.1.push(group.first as i64);
            event_rows.2.push(group.last as i64);
            event_rows.3.push(group.at);
            event_rows.4.push(json_text(&group.body));
        }
        let fleet_rows: Vec<FleetRow> = self
            .events
            .fleet
            .rows(0)
            .into_iter()
            .map(|(_, row)| {
                let mut columns = FleetRow::default();
                for (task_id, first, last) in fleet::runs(row) {
                    columns.0.push(text(task_id));
                    columns.1.push(first as i64);
                    columns.2.push(last as i64);
                }
                columns
            })
            .collect();
        let mut pipeline = Pipeline::default();
        let t = &self.tasks;
        if !t.id.is_empty() {
            pipeline.add(
                conn,
                "INSERT INTO tasks (id, tenant, name, priority, state, idempotency_key, spec, labels,
                                    message, plan, trace_context, created_at, keep_for, finished_at)
                 SELECT id, tenant, name, priority, state, key, spec::json, labels::jsonb, message,
                        NULLIF(plan, '')::json, trace_context, tidewright_ts(created_at), keep_for,
                        CASE WHEN state IN ('succeeded', 'failed', 'cancelled') THEN tidewright_ts(created_at) END
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[],
                             $13::bigint[])
                      AS u(id, tenant, name, priority, state, key, spec, labels, message, plan,
                           trace_context, created_at, keep_for)",
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
                    &t.keep_for,
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
        if !event_rows.0.is_empty() {
            let (task_id, first, last, at, body) = &event_rows;
            pipeline
                .add(
                    conn,
                    "INSERT INTO event_groups (task_id, seq, last, at, body)
                 SELECT task_id, seq, last, at, body::json
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[])
                      AS u(task_id, seq, last, at, body)",
                    params![task_id, first, last, at, body],
                )
                .await?;
        }
        // The transaction's row(s) of the fleet's order (tidewright_store::fleet):
        // the one writer numbers them as it commits, one above the last.
        for (task_ids, firsts, lasts) in &fleet_rows {
            pipeline
                .add(
                    conn,
                    "INSERT INTO fleet (commit_no, task_ids, seqs, lasts)
                     SELECT COALESCE(MAX(commit_no), 0) + 1, $1::text[], $2::bigint[], $3::bigint[]
                     FROM fleet",
                    params![task_ids, firsts, lasts],
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
        for (record, tenant, json) in &self.tenant_records {
            let (table, column) = record.at();
            let sql = match json {
                Some(_) => format!(
                    "INSERT INTO {table} (tenant, {column}) VALUES ($1, $2::text::json)
                     ON CONFLICT (tenant) DO UPDATE SET {column} = excluded.{column}"
                ),
                None => format!("DELETE FROM {table} WHERE tenant = $1 AND $2::text IS NULL"),
            };
            pipeline.add(conn, &sql, params![tenant, json]).await?;
        }
        // Agents' attempts only: a statement per day's key.
        for sum in &self.cost_sums {
            let (key, cost) = (&sum.key, &sum.cost);
            pipeline
                .add(
                    conn,
                    "INSERT INTO cost_sums (day, tenant, repo, runtime, model, template, usd,
                         input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,
                         attempts)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                     ON CONFLICT (day, tenant, repo, runtime, model, template) DO UPDATE SET
                         usd = cost_sums.usd + excluded.usd,
                         input_tokens = cost_sums.input_tokens + excluded.input_tokens,
                         output_tokens = cost_sums.output_tokens + excluded.output_tokens,
                         cache_read_tokens = cost_sums.cache_read_tokens + excluded.cache_read_tokens,
                         cache_creation_tokens =
                             cost_sums.cache_creation_tokens + excluded.cache_creation_tokens,
                         attempts = cost_sums.attempts + excluded.attempts",
                    params![
                        &key.day,
                        &key.tenant,
                        &key.repo,
                        &key.runtime,
                        &key.model,
                        &key.template,
                        cost.usd,
                        cost.input_tokens as i64,
                        cost.output_tokens as i64,
                        cost.cache_read_tokens as i64,
                        cost.cache_creation_tokens as i64,
                        sum.attempts as i64
                    ],
                )
                .await?;
        }
        if let Some(kept_from) = &self.cost_kept_from {
            pipeline
                .add(
                    conn,
                    "DELETE FROM cost_sums WHERE day < $1",
                    params![kept_from],
                )
                .await?;
        }
        // Checkpoints are rare and large: a statement each. Only the step's
        // current attempt's is kept, never over a newer attempt's.
        for c in &self.checkpoints {
            pipeline
                .add(
                    conn,
                    &kept_sql("checkpoints", ["session_id", "workspace", "archive"]),
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
        for b in &self.branches {
            pipeline
                .add(
                    conn,
                    &kept_sql("branches", ["head_commit", "bundle", "diff"]),
                    params![
                        &b.task_id,
                        &b.step_id,
                        i64::from(b.attempt),
                        &b.head_commit,
                        &b.bundle,
                        &b.diff,
                        b.created_at,
                    ],
                )
                .await?;
        }
        for finished_before in &self.expiries {
            for sql in [
                "DELETE FROM checkpoints WHERE task_id IN
                     (SELECT id FROM tasks WHERE finished_at < tidewright_ts($1))",
                "DELETE FROM branches WHERE task_id IN
                     (SELECT id FROM tasks WHERE finished_at < tidewright_ts($1))",
            ] {
                pipeline.add(conn, sql, params![finished_before]).await?;
            }
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
        for (named, tenant, name, record) in &self.named {
            let table = named.table();
            match record {
                Some(record) => {
                    let sql = format!(
                        "INSERT INTO {table} (tenant, name, record) VALUES ($1, $2, $3)
                         ON CONFLICT (tenant, name) DO UPDATE SET record = excluded.record"
                    );
                    pipeline
                        .add(conn, &sql, params![tenant, name, record])
                        .await?
                }
                None => {
                    let sql = format!("DELETE FROM {table} WHERE tenant = $1 AND name = $2");
                    pipeline.add(conn, &sql, params![tenant, name]).await?
                }
            }
        }
        for (tasks, at) in &self.expire {
            crate::expire::add_expire(conn, &mut pipeline, tasks, *at).await?;
        }
        for trim in &self.trims {
            crate::expire::add_trim(conn, &mut pipeline, trim).await?;
        }
        pipeline.run(conn).await
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

/// Keeps what a step keeps for its next attempt (a checkpoint, a branch) in
/// `table`, with its `own` columns (`$4` to `$6`): only the step's current
/// attempt's, and never over a newer attempt's (see `Write::Checkpoint`).
fn kept_sql(table: &str, own: [&str; 3]) -> String {
    let [a, b, c] = own;
    format!(
        "INSERT INTO {table} (task_id, step_id, attempt, {a}, {b}, {c}, created_at)
         SELECT $1, $2, $3, $4, $5, $6, tidewright_ts($7) FROM steps
             WHERE task_id = $1 AND step_id = $2 AND attempt = $3
         ON CONFLICT (task_id, step_id) DO UPDATE SET
             attempt = excluded.attempt, {a} = excluded.{a}, {b} = excluded.{b},
             {c} = excluded.{c}, created_at = excluded.created_at
         WHERE excluded.attempt >= {table}.attempt"
    )
}
