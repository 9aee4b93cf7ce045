//! Cost sums by day, tenant, repository, runtime, model and template
//! (see [`tidewright_core::cost_sums`]): added to in the commit that
//! records an attempt, dropped past their days.

use rusqlite::{Connection, params};
use tidewright_core::Cost;
use tidewright_core::cost_sums::{CostKey, CostSum};

use crate::fault::Result;

/// Adds `sum` to its key's, and drops the days before `expire_before`.
pub(crate) fn add(conn: &Connection, sum: &CostSum, expire_before: &str) -> Result<()> {
    let CostSum {
        key,
        cost,
        attempts,
    } = sum;
    conn.prepare_cached(
        "INSERT INTO cost_sums (day, tenant, repo, runtime, model, template, usd, input_tokens,
             output_tokens, cache_read_tokens, cache_creation_tokens, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (day, tenant, repo, runtime, model, template) DO UPDATE SET
             usd = usd + excluded.usd,
             input_tokens = input_tokens + excluded.input_tokens,
             output_tokens = output_tokens + excluded.output_tokens,
             cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
             cache_creation_tokens = cache_creation_tokens + excluded.cache_creation_tokens,
             attempts = attempts + excluded.attempts",
    )?
    .execute(params![
        key.day,
        key.tenant,
        key.repo,
        key.runtime,
        key.model,
        key.template,
        cost.usd,
        cost.input_tokens as i64,
        cost.output_tokens as i64,
        cost.cache_read_tokens as i64,
        cost.cache_creation_tokens as i64,
        *attempts as i64,
    ])?;
    conn.prepare_cached("DELETE FROM cost_sums WHERE day < ?1")?
        .execute(params![expire_before])?;
    Ok(())
}

/// The sums of day `from` on, of `tenants` (all with `None`).
pub(crate) fn read(
    conn: &Connection,
    from: &str,
    tenants: Option<&[String]>,
) -> Result<Vec<CostSum>> {
    let mut stmt = conn.prepare_cached(
        "SELECT day, tenant, repo, runtime, model, template, usd, input_tokens, output_tokens,
                cache_read_tokens, cache_creation_tokens, attempts
         FROM cost_sums WHERE day >= ?1 ORDER BY day, tenant, repo, runtime, model, template",
    )?;
    let rows = stmt.query_map(params![from], |row| {
        Ok(CostSum {
            key: CostKey {
                day: row.get(0)?,
                tenant: row.get(1)?,
                repo: row.get(2)?,
                runtime: row.get(3)?,
                model: row.get(4)?,
                template: row.get(5)?,
            },
            cost: cost_at(row, 6)?,
            attempts: row.get::<_, i64>(11)? as u64,
        })
    })?;
    let mut sums = rows.collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some(tenants) = tenants {
        sums.retain(|s| tenants.contains(&s.key.tenant));
    }
    Ok(sums)
}

/// A cost stored as five columns from `first` on: dollars, then input,
/// output, cache-read and cache-write tokens.
pub(crate) fn cost_at(row: &rusqlite::Row, first: usize) -> rusqlite::Result<Cost> {
    Ok(Cost {
        usd: row.get(first)?,
        input_tokens: row.get::<_, i64>(first + 1)? as u64,
        output_tokens: row.get::<_, i64>(first + 2)? as u64,
        cache_read_tokens: row.get::<_, i64>(first + 3)? as u64,
        cache_creation_tokens: row.get::<_, i64>(first + 4)? as u64,
    })
}
