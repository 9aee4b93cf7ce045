//! The statements a group's folded rows are sent as, pipelined: each a
//! single statement over arrays (`UNNEST`), whatever the number of rows.

use tidewright_store::{AttemptWrite, AuditRecord, StepWrite};
use tokio_postgres::types::ToSql;

use crate::conn::Conn;
use crate::fault::Result;
use crate::text::text;

pub(crate) struct TaskUpdate {
    pub(crate) id: String,
    pub(crate) state: String,
    pub(crate) message: String,
    pub(crate) started_at: Option<i64>,
    pub(crate) finished_at: Option<i64>,
}

/// One statement's parameters, owned or borrowed from the group's rows.
pub(crate) type Params<'r> = Vec<Box<dyn ToSql + Sync + Send + 'r>>;

macro_rules! params {
    ($($param:expr),* $(,)?) => {
        vec![$(Box::new($param) as Box<dyn ToSql + Sync + Send>),*]
    };
}
pub(crate) use params;

/// Statements sent together: each is prepared (once per connection), then
/// all go out before any answer is read.
#[derive(Default)]
pub(crate) struct Pipeline<'r> {
    statements: Vec<(tokio_postgres::Statement, Params<'r>)>,
}

impl<'r> Pipeline<'r> {
    pub(crate) async fn add(
        &mut self,
        conn: &mut Conn,
        sql: &str,
        params: Params<'r>,
    ) -> Result<()> {
        let statement = conn.statement(sql).await?;
        self.statements.push((statement, params));
        Ok(())
    }

    /// Sends every statement, then reads every answer; the first error, if
    /// any (after which the server ignores the rest of the transaction).
    pub(crate) async fn run(self, conn: &Conn) -> Result<()> {
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

pub(crate) async fn update_tasks<'r>(
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
            started_at = CASE WHEN u.started_at IS NULL THEN t.started_at ELSE tidewright_ts(u.started_at) END,
            finished_at = CASE WHEN u.finished_at IS NULL THEN t.finished_at ELSE tidewright_ts(u.finished_at) END
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
              AS u(id, state, message, started_at, finished_at)
         WHERE t.id = u.id",
        params![id, state, message, started, finished],
    )
    .await
}

pub(crate) async fn update_steps<'r>(
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
    let work: Vec<Option<String>> = updates
        .iter()
        .map(|u| match &u.work {
            Some(Some(work)) => serde_json::to_string(work).ok().map(|w| text(&w)),
            Some(None) => Some(String::new()),
            None => None,
        })
        .collect();
    pipeline.add(
        conn,
        "UPDATE steps s SET
            state = COALESCE(u.state, s.state),
            attempt = COALESCE(u.attempt, s.attempt),
            worker = COALESCE(u.worker, s.worker),
            started_at = CASE WHEN u.started_at IS NULL THEN s.started_at ELSE tidewright_ts(u.started_at) END,
            finished_at = CASE WHEN u.finished_at IS NULL THEN s.finished_at ELSE tidewright_ts(u.finished_at) END,
            output = CASE WHEN u.output IS NULL THEN s.output ELSE NULLIF(u.output, '')::json END,
            error = COALESCE(u.error, s.error),
            exit_code = CASE WHEN u.set_exit THEN u.exit_code ELSE s.exit_code END,
            progress = COALESCE(u.progress, s.progress),
            progress_message = COALESCE(u.progress_message, s.progress_message),
            approval_deadline = CASE WHEN u.approval_deadline IS NULL THEN s.approval_deadline
                                     ELSE tidewright_ts(u.approval_deadline) END,
            work = COALESCE(u.work, s.work)
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                     $7::bigint[], $8::text[], $9::text[], $10::bool[], $11::int[], $12::real[],
                     $13::text[], $14::bigint[], $15::text[])
              AS u(task_id, step_id, state, attempt, worker, started_at, finished_at, output, error,
                   set_exit, exit_code, progress, progress_message, approval_deadline, work)
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
            work,
        ],
    )
    .await
}

/// Attempt rows are created by their first write and completed by later
/// ones: the existing rows are updated, then the missing ones inserted
/// (one writer, so nothing comes between the two).
pub(crate) async fn upsert_attempts<'r>(
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
    let verification: Vec<Option<String>> = attempts
        .iter()
        .map(|a| a.verification.as_ref().map(json))
        .collect();
    let setup: Vec<Option<String>> = attempts
        .iter()
        .map(|a| a.setup.as_ref().map(json))
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
            verification.clone(),
            setup.clone(),
        ]
    };
    const ROWS: &str = "UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[],
                               $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::float8[],
                               $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::text[], $18::text[])
                        AS u(task_id, step_id, attempt, worker, started_at, finished_at, state, error,
                             exit_code, session_id, model, usd, input, output, cache_read, cache_creation,
                             verification, setup)";
    pipeline.add(
        conn,
        &format!(
            "UPDATE attempts a SET
                worker = COALESCE(u.worker, a.worker),
                started_at = CASE WHEN u.started_at IS NULL THEN a.started_at ELSE tidewright_ts(u.started_at) END,
                finished_at = CASE WHEN u.finished_at IS NULL THEN a.finished_at ELSE tidewright_ts(u.finished_at) END,
                state = COALESCE(u.state, a.state),
                error = COALESCE(u.error, a.error),
                exit_code = COALESCE(u.exit_code, a.exit_code),
                session_id = COALESCE(u.session_id, a.session_id),
                model = COALESCE(u.model, a.model),
                cost_usd = COALESCE(u.usd, a.cost_usd),
                input_tokens = COALESCE(u.input, a.input_tokens),
                output_tokens = COALESCE(u.output, a.output_tokens),
                cache_read_tokens = COALESCE(u.cache_read, a.cache_read_tokens),
                cache_creation_tokens = COALESCE(u.cache_creation, a.cache_creation_tokens),
                verification = COALESCE(u.verification, a.verification),
                setup = COALESCE(u.setup, a.setup)
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
                                   output_tokens, cache_read_tokens, cache_creation_tokens, verification,
                                   setup)
             SELECT u.task_id, u.step_id, u.attempt, COALESCE(u.worker, ''),
                    tidewright_ts(COALESCE(u.started_at, 0)), tidewright_ts(COALESCE(u.finished_at, 0)),
                    COALESCE(u.state, 'running'), COALESCE(u.error, ''), u.exit_code,
                    COALESCE(u.session_id, ''), COALESCE(u.model, ''), COALESCE(u.usd, 0),
                    COALESCE(u.input, 0), COALESCE(u.output, 0), COALESCE(u.cache_read, 0),
                    COALESCE(u.cache_creation, 0), COALESCE(u.verification, ''),
                    COALESCE(u.setup, '')
             FROM {ROWS}
             WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.task_id = u.task_id
                               AND a.step_id = u.step_id AND a.attempt = u.attempt)"
        ),
        params(),
    )
    .await
}

/// A record (a verified step's round, a setup's report) as its column
/// holds it.
fn json(record: &impl serde::Serialize) -> String {
    text(&serde_json::to_string(record).unwrap_or_default())
}

/// Audit records are numbered 1, 2, 3... in the order handed over, with no
/// gaps: the one writer numbers them from the highest stored.
pub(crate) async fn insert_audit<'r>(
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
         SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit) + u.n, tidewright_ts(u.at), u.actor, u.role,
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
