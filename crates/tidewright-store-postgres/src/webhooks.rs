//! Reads of webhooks' endpoints, deliveries and cursor (the writes are
//! the batch's). Records are JSON text, read back whole.

use tidewright_store::Error;
use tidewright_store::webhooks::{Delivery, DeliveryQuery, Webhook};

use crate::conn::Conn;
use crate::fault::Result;

fn records<T: serde::de::DeserializeOwned>(
    rows: Vec<tokio_postgres::Row>,
    what: &str,
) -> Result<Vec<T>> {
    rows.iter()
        .map(|row| {
            let json: String = row.try_get(0)?;
            serde_json::from_str(&json)
                .map_err(|e| Error::Corrupt(format!("a stored {what}: {e}")).into())
        })
        .collect()
}

pub(crate) async fn webhooks(conn: &mut Conn) -> Result<Vec<Webhook>> {
    let statement = conn
        .statement("SELECT record FROM webhooks ORDER BY id")
        .await?;
    records(conn.client.query(&statement, &[]).await?, "webhook")
}

/// Every record of `named` (schedules, triggers), by tenant and name.
pub(crate) async fn named_records<T: serde::de::DeserializeOwned>(
    conn: &mut Conn,
    named: tidewright_store::Named,
) -> Result<Vec<T>> {
    let sql = format!("SELECT record FROM {} ORDER BY tenant, name", named.table());
    let statement = conn.statement(&sql).await?;
    records(conn.client.query(&statement, &[]).await?, named.one())
}

/// The record of `named` by tenant and name, if there is one.
pub(crate) async fn named_record<T: serde::de::DeserializeOwned>(
    conn: &mut Conn,
    named: tidewright_store::Named,
    tenant: String,
    name: String,
) -> Result<Option<T>> {
    let sql = format!(
        "SELECT record FROM {} WHERE tenant = $1 AND name = $2",
        named.table()
    );
    let statement = conn.statement(&sql).await?;
    let rows = conn.client.query(&statement, &[&tenant, &name]).await?;
    Ok(records(rows, named.one())?.pop())
}

pub(crate) async fn cursor(conn: &mut Conn) -> Result<u64> {
    let statement = conn
        .statement("SELECT position FROM cursors WHERE name = 'webhooks'")
        .await?;
    let row = conn.client.query_opt(&statement, &[]).await?;
    Ok(match row {
        Some(row) => row.try_get::<_, i64>(0)? as u64,
        None => 0,
    })
}

pub(crate) async fn pending(conn: &mut Conn, limit: i64) -> Result<Vec<Delivery>> {
    let statement = conn
        .statement("SELECT record FROM deliveries WHERE pending ORDER BY id LIMIT $1")
        .await?;
    records(conn.client.query(&statement, &[&limit]).await?, "delivery")
}

pub(crate) async fn log(conn: &mut Conn, query: DeliveryQuery) -> Result<Vec<Delivery>> {
    let statement = conn
        .statement(
            "SELECT record FROM deliveries
             WHERE ($1::text IS NULL OR webhook_id = $1)
               AND ($2::text[] IS NULL OR tenant = ANY($2::text[]))
               AND ($3::text IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4",
        )
        .await?;
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let rows = conn
        .client
        .query(
            &statement,
            &[&query.webhook_id, &query.tenants, &query.before_id, &limit],
        )
        .await?;
    records(rows, "delivery")
}
