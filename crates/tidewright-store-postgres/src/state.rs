//! Changing shared state (the state service's keys) in the writer's
//! transaction, with its compare-and-set.

use tidewright_store::{StateChange, StateKey, StateOutcome};

use tokio_postgres::types::ToSql;

use crate::conn::Conn;
use crate::fault::Result;
use crate::text::text;

/// The row at `key`: its version, and whether it holds a live value at
/// `now` (a deleted or expired value keeps its version, so versions never
/// repeat).
pub(crate) async fn state_row(
    conn: &mut Conn,
    key: &StateKey,
    now: i64,
) -> Result<Option<(u64, bool)>> {
    let row = key_row(
        conn,
        "SELECT version, value IS NOT NULL AND (expires_at IS NULL OR tidewright_micros(expires_at) > $4)
         FROM state WHERE tenant = $1 AND scope = $2 AND key = $3",
        key,
        now,
    )
    .await?;
    Ok(row.map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, bool>(1))))
}

/// The row of `key` that `sql` selects, given the key as `$1` to `$3` and
/// `now` as `$4`.
pub(crate) async fn key_row(
    conn: &mut Conn,
    sql: &str,
    key: &StateKey,
    now: i64,
) -> Result<Option<tokio_postgres::Row>> {
    let statement = conn.statement(sql).await?;
    let params: [&(dyn ToSql + Sync); 4] =
        [&text(&key.tenant), &text(&key.scope), &text(&key.key), &now];
    Ok(conn.client.query_opt(&statement, &params).await?)
}

pub(crate) async fn change_state(conn: &mut Conn, change: &StateChange) -> Result<StateOutcome> {
    let key = change.key();
    let next = match change.decide(state_row(conn, key, change.now()).await?) {
        Err(refused) => return Ok(refused),
        Ok(None) => return Ok(StateOutcome::Done(None)),
        Ok(Some(next)) => next,
    };
    let entry = next.entry.as_ref();
    // A deleted value keeps its row, so that versions never repeat.
    run(
        conn,
        "INSERT INTO state (tenant, scope, key, value, version, updated_at, expires_at)
         VALUES ($1, $2, $3, $4::text::json, $5, tidewright_ts($6), tidewright_ts($7))
         ON CONFLICT (tenant, scope, key) DO UPDATE SET
            value = EXCLUDED.value, version = EXCLUDED.version,
            updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at",
        &[
            &text(&key.tenant),
            &text(&key.scope),
            &text(&key.key),
            &entry.map(|e| e.value_json.as_str()),
            &(next.version as i64),
            &next.updated_at,
            &entry.map_or(0, |e| e.expires_at),
        ],
    )
    .await?;
    Ok(StateOutcome::Done(next.entry))
}

async fn run(conn: &mut Conn, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let statement = conn.statement(sql).await?;
    Ok(conn.client.execute(&statement, params).await?)
}
