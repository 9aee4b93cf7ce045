//! Retention on PostgreSQL: finding finished tasks whose window has
//! passed, removing them whole in one statement a batch, and trimming
//! history by age. Autovacuum takes the dead rows back (see the book's
//! operations chapter for the settings of a busy store).

use tidewright_core::Micros;
use tidewright_store::retention::{Expired, Expiring, Retention, TENANTS_SQL, Trim};

use crate::conn::Conn;
use crate::fault::Result;
use crate::pipeline::{Pipeline, params};
use crate::text::text;
use tokio_postgres::types::ToSql;

/// Up to `limit` finished tasks whose window had passed at `now`: those with
/// a window of their own (through `tasks_kept`), then each tenant's oldest
/// (through `tasks_finished`, by tenant and finish time).
pub(crate) async fn expiring(
    conn: &mut Conn,
    retention: &Retention,
    now: Micros,
    limit: usize,
) -> Result<Vec<Expiring>> {
    let row = |row: &tokio_postgres::Row| -> Result<Expiring> {
        Ok(Expiring {
            id: row.try_get(0)?,
            tenant: row.try_get(1)?,
            finished_at: row.try_get(2)?,
        })
    };
    let own = conn
        .statement(
            "SELECT id, tenant, tidewright_micros(finished_at) FROM tasks
             WHERE keep_for > 0 AND finished_at IS NOT NULL AND tidewright_expiry(finished_at, keep_for) < $1
             ORDER BY tidewright_expiry(finished_at, keep_for) LIMIT $2",
        )
        .await?;
    let mut found = conn
        .client
        .query(&own, &[&now, &(limit as i64)])
        .await?
        .iter()
        .map(row)
        .collect::<Result<Vec<_>>>()?;
    let tenants = conn.statement(TENANTS_SQL).await?;
    let tenants: Vec<String> = conn
        .client
        .query(&tenants, &[])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    let oldest = conn
        .statement(
            "SELECT id, tenant, tidewright_micros(finished_at) FROM tasks
             WHERE tenant = $1 AND keep_for IS NULL AND finished_at IS NOT NULL
               AND finished_at < tidewright_ts($2)
             ORDER BY finished_at LIMIT $3",
        )
        .await?;
    for tenant in tenants {
        let Some(before) = retention.finished_before(&tenant, now) else {
            continue;
        };
        let room = limit.saturating_sub(found.len());
        if room == 0 {
            break;
        }
        let rows = conn
            .client
            .query(&oldest, &[&tenant, &before, &(room as i64)])
            .await?;
        for found_row in &rows {
            found.push(row(found_row)?);
        }
    }
    Ok(found)
}

pub(crate) async fn expired(conn: &mut Conn, id: &str) -> Result<Option<Expired>> {
    let statement = conn
        .statement(
            "SELECT id, tenant, tidewright_micros(finished_at), tidewright_micros(expired_at)
             FROM expired WHERE id = $1",
        )
        .await?;
    let row = conn.client.query_opt(&statement, &[&text(id)]).await?;
    row.map(|row| {
        Ok(Expired {
            id: row.try_get(0)?,
            tenant: row.try_get(1)?,
            finished_at: row.try_get(2)?,
            expired_at: row.try_get(3)?,
        })
    })
    .transpose()
}

/// Removes, in one statement, each task still finished when it was found
/// to be, with everything of it, and keeps a record of each.
pub(crate) async fn add_expire<'r>(
    conn: &mut Conn,
    pipeline: &mut Pipeline<'r>,
    tasks: &[Expiring],
    at: Micros,
) -> Result<()> {
    let ids: Vec<String> = tasks.iter().map(|t| text(&t.id)).collect();
    let finished: Vec<i64> = tasks.iter().map(|t| t.finished_at).collect();
    pipeline
        .add(
            conn,
            "WITH gone AS (
                 DELETE FROM tasks t USING UNNEST($1::text[], $2::bigint[]) AS u(id, finished)
                 WHERE t.id = u.id AND t.finished_at IS NOT NULL
                   AND tidewright_micros(t.finished_at) = u.finished
                 RETURNING t.id, t.tenant, u.finished),
             steps_gone AS (DELETE FROM steps WHERE task_id IN (SELECT id FROM gone)),
             attempts_gone AS (DELETE FROM attempts WHERE task_id IN (SELECT id FROM gone)),
             events_gone AS (DELETE FROM event_groups WHERE task_id IN (SELECT id FROM gone)),
             checkpoints_gone AS (DELETE FROM checkpoints WHERE task_id IN (SELECT id FROM gone)),
             branches_gone AS (DELETE FROM branches WHERE task_id IN (SELECT id FROM gone)),
             state_gone AS (
                 DELETE FROM state s USING gone WHERE s.tenant = gone.tenant AND s.scope = gone.id),
             pushes_gone AS (
                 DELETE FROM webhooks w USING gone
                 WHERE (w.record::jsonb -> 'push' ->> 'taskId') = gone.id RETURNING w.id),
             push_deliveries_gone AS (
                 DELETE FROM deliveries WHERE webhook_id IN (SELECT id FROM pushes_gone))
             INSERT INTO expired (id, tenant, finished_at, expired_at)
             SELECT id, tenant, tidewright_ts(finished), tidewright_ts($3) FROM gone
             ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant,
                 finished_at = excluded.finished_at, expired_at = excluded.expired_at",
            params![ids, finished, at],
        )
        .await
}

/// Removes history older than its window, `trim.limit` rows of each at
/// most, oldest first. The newest row of the fleet's order and of the
/// audit log stays: the next is numbered after it.
pub(crate) async fn add_trim<'r>(
    conn: &mut Conn,
    pipeline: &mut Pipeline<'r>,
    trim: &Trim,
) -> Result<()> {
    let limit = trim.limit as i64;
    if let Some(before) = trim.fleet_before {
        // Among the oldest rows only: rows are made in time order, and
        // looking further would read the whole order when nothing is old.
        pipeline
            .add(
                conn,
                "DELETE FROM fleet WHERE commit_no IN (
                     SELECT commit_no FROM
                         (SELECT commit_no, at FROM fleet ORDER BY commit_no LIMIT $2) oldest
                     WHERE at < tidewright_ts($1)
                       AND commit_no < (SELECT MAX(commit_no) FROM fleet))",
                params![before, limit],
            )
            .await?;
    }
    if let Some(before) = trim.audit_before {
        pipeline
            .add(
                conn,
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit ORDER BY seq LIMIT $2)
                     AND at < tidewright_ts($1) AND seq < (SELECT MAX(seq) FROM audit)",
                params![before, limit],
            )
            .await?;
    }
    if let Some(before) = trim.expired_before {
        pipeline
            .add(
                conn,
                "DELETE FROM expired WHERE id IN (
                     SELECT id FROM expired WHERE expired_at < tidewright_ts($1)
                     ORDER BY expired_at LIMIT $2)",
                params![before, limit],
            )
            .await?;
    }
    if let Some(before) = &trim.deliveries_before {
        pipeline
            .add(
                conn,
                "DELETE FROM deliveries WHERE id IN (
                     SELECT id FROM deliveries WHERE id < $1 AND NOT pending
                     ORDER BY id LIMIT $2)",
                params![text(before), limit],
            )
            .await?;
    }
    Ok(())
}
