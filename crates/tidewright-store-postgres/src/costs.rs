//! What was spent, as the store reads it: each tenant's attempts' costs
//! since a time (for budgets), and the cost sums by day and dimension
//! (for the cost report).

use tidewright_core::Cost;

use crate::conn::Conn;
use crate::fault::Result;
use crate::reads::cost_at;

pub(crate) async fn spend_since(conn: &mut Conn, since: i64) -> Result<Vec<(String, Cost)>> {
    let statement = conn
        .statement(
            "SELECT t.tenant, SUM(a.cost_usd)::float8, SUM(a.input_tokens)::bigint,
                    SUM(a.output_tokens)::bigint, SUM(a.cache_read_tokens)::bigint,
                    SUM(a.cache_creation_tokens)::bigint
             FROM attempts a JOIN tasks t ON t.id = a.task_id
             WHERE a.finished_at IS NOT NULL AND tidewright_micros(a.finished_at) >= $1
               AND (a.cost_usd > 0 OR a.input_tokens > 0 OR a.output_tokens > 0)
             GROUP BY t.tenant ORDER BY t.tenant",
        )
        .await?;
    let rows = conn.client.query(&statement, &[&since]).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, cost_at(row, 1)?)))
        .collect()
}

/// The cost sums of day `from` on, of `tenants` (all with `None`).
pub(crate) async fn cost_sums(
    conn: &mut Conn,
    from: String,
    tenants: Option<Vec<String>>,
) -> Result<Vec<tidewright_core::cost_sums::CostSum>> {
    let statement = conn
        .statement(
            "SELECT day, tenant, repo, runtime, model, template, usd, input_tokens,
                    output_tokens, cache_read_tokens, cache_creation_tokens, attempts
             FROM cost_sums
             WHERE day >= $1 AND ($2::text[] IS NULL OR tenant = ANY($2))
             ORDER BY day, tenant, repo, runtime, model, template",
        )
        .await?;
    let rows = conn.client.query(&statement, &[&from, &tenants]).await?;
    rows.iter()
        .map(|row| {
            Ok(tidewright_core::cost_sums::CostSum {
                key: tidewright_core::cost_sums::CostKey {
                    day: row.try_get(0)?,
                    tenant: row.try_get(1)?,
                    repo: row.try_get(2)?,
                    runtime: row.try_get(3)?,
                    model: row.try_get(4)?,
                    template: row.try_get(5)?,
                },
                cost: cost_at(row, 6)?,
                attempts: row.try_get::<_, i64>(11)? as u64,
            })
        })
        .collect()
}
