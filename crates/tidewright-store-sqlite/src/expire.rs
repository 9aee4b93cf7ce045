//! Retention on SQLite: finding finished tasks whose window has passed,
//! removing them whole, trimming history by age, and giving the space
//! back to the file system (the database is in incremental auto-vacuum).

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};
use tidewright_core::Micros;
use tidewright_store::retention::{Expired, Expiring, Retention, TENANTS_SQL, Trim};

use crate::fault::Result;

/// Free pages given back to the file system per trim at most: about
/// 16 MiB.
const VACUUM_PAGES: i64 = 4096;

/// Up to `limit` finished tasks whose window had passed at `now`: those with
/// a window of their own (few, through their own index), then each tenant's
/// oldest (through `tasks_finished`, by tenant and finish time).
pub(crate) fn expiring(
    conn: &Connection,
    retention: &Retention,
    now: Micros,
    limit: usize,
) -> Result<Vec<Expiring>> {
    let mut found = Vec::new();
    let row = |row: &rusqlite::Row<'_>| {
        Ok(Expiring {
            id: row.get(0)?,
            tenant: row.get(1)?,
            finished_at: row.get(2)?,
        })
    };
    found.extend(
        conn.prepare_cached(
            "SELECT id, tenant, finished_at FROM tasks
             WHERE keep_for > 0 AND finished_at > 0 AND finished_at + keep_for < ?1
             ORDER BY finished_at + keep_for LIMIT ?2",
        )?
        .query_map(params![now, limit as i64], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?,
    );
    for tenant in tenants(conn)? {
        let Some(before) = retention.finished_before(&tenant, now) else {
            continue;
        };
        let room = limit.saturating_sub(found.len());
        if room == 0 {
            break;
        }
        found.extend(
            conn.prepare_cached(
                "SELECT id, tenant, finished_at FROM tasks
                 WHERE tenant = ?1 AND keep_for IS NULL AND finished_at > 0 AND finished_at < ?2
                 ORDER BY finished_at LIMIT ?3",
            )?
            .query_map(params![tenant, before, room as i64], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        );
    }
    Ok(found)
}

/// Every tenant with a task (see [`TENANTS_SQL`]).
fn tenants(conn: &Connection) -> Result<Vec<String>> {
    Ok(conn
        .prepare_cached(TENANTS_SQL)?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?)
}

pub(crate) fn expired(conn: &Connection, id: &str) -> Result<Option<Expired>> {
    Ok(conn
        .prepare_cached("SELECT id, tenant, finished_at, expired_at FROM expired WHERE id = ?1")?
        .query_row(params![id], |row| {
            Ok(Expired {
                id: row.get(0)?,
                tenant: row.get(1)?,
                finished_at: row.get(2)?,
                expired_at: row.get(3)?,
            })
        })
        .optional()?)
}

/// Removes each task still finished when it was found to be, with
/// everything of it, and keeps a record of it.
pub(crate) fn expire(conn: &Connection, tasks: &[Expiring], at: Micros) -> Result<()> {
    let mut removed_ids = HashSet::new();
    for task in tasks {
        let removed = conn
            .prepare_cached(
                "DELETE FROM tasks WHERE id = ?1 AND finished_at = ?2 AND finished_at > 0
                 RETURNING tenant",
            )?
            .query_row(params![task.id, task.finished_at], |row| {
                row.get::<_, String>(0)
            })
            .optional()?;
        let Some(tenant) = removed else {
            continue;
        };
        for table in [
            "steps",
            "attempts",
            "event_groups",
            "checkpoints",
            "branches",
        ] {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE task_id = ?1"))?
                .execute(params![task.id])?;
        }
        conn.prepare_cached("DELETE FROM state WHERE tenant = ?1 AND scope = ?2")?
            .execute(params![tenant, task.id])?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO expired (id, tenant, finished_at, expired_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![task.id, tenant, task.finished_at, at])?;
        removed_ids.insert(task.id.as_str());
    }
    if !removed_ids.is_empty() {
        remove_pushes(conn, &removed_ids)?;
    }
    Ok(())
}

/// Removes the A2A push configs (endpoints of their own) of the tasks
/// removed, and their deliveries: one walk of the endpoints a batch, which
/// are few beside the tasks.
fn remove_pushes(conn: &Connection, removed: &HashSet<&str>) -> Result<()> {
    let pushes: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT id, json_extract(record, '$.push.taskId') FROM webhooks
             WHERE json_extract(record, '$.push.taskId') IS NOT NULL",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, task_id) in pushes {
        if removed.contains(task_id.as_str()) {
            conn.prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
                .execute(params![id])?;
            conn.prepare_cached("DELETE FROM deliveries WHERE webhook_id = ?1")?
                .execute(params![id])?;
        }
    }
    Ok(())
}

/// Removes history older than its window, `trim.limit` rows of each at
/// most, oldest first, then gives free pages back past a slack.
pub(crate) fn trim(conn: &Connection, trim: &Trim) -> Result<()> {
    let limit = trim.limit as i64;
    if let Some(before) = trim.fleet_before {
        // The newest row stays: the next commit is numbered after it.
        // Among the oldest rows only: rows are made in time order, and
        // looking further would read the whole order when nothing is old.
        conn.prepare_cached(
            "DELETE FROM fleet WHERE commit_no IN (
                 SELECT commit_no FROM (SELECT commit_no, at FROM fleet ORDER BY commit_no LIMIT ?2)
                 WHERE at < ?1 AND commit_no < (SELECT MAX(commit_no) FROM fleet))",
        )?
        .execute(params![before, limit])?;
    }
    if let Some(before) = trim.audit_before {
        // Records are numbered as they are made: the oldest come first.
        conn.prepare_cached(
            "DELETE FROM audit WHERE seq IN (
                 SELECT seq FROM audit ORDER BY seq LIMIT ?2) AND at < ?1",
        )?
        .execute(params![before, limit])?;
    }
    if let Some(before) = trim.expired_before {
        conn.prepare_cached(
            "DELETE FROM expired WHERE id IN (
                 SELECT id FROM expired WHERE expired_at < ?1 ORDER BY expired_at LIMIT ?2)",
        )?
        .execute(params![before, limit])?;
    }
    if let Some(before) = &trim.deliveries_before {
        conn.prepare_cached(
            "DELETE FROM deliveries WHERE id IN (
                 SELECT id FROM deliveries WHERE id < ?1 AND pending = 0 ORDER BY id LIMIT ?2)",
        )?
        .execute(params![before, limit])?;
    }
    give_back_free_pages(conn)
}

/// Gives free pages back to the file system beyond a slack of a quarter
/// of the pages in use. Under steady load what removals free is taken
/// again by the next tasks: handing it back only to grow the file again
/// would cost the writer I/O each trim. Once load falls, what stays free
/// goes back, a trim at a time.
fn give_back_free_pages(conn: &Connection) -> Result<()> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
    let give_back = (free - (pages - free) / 4).min(VACUUM_PAGES);
    if give_back <= 0 {
        return Ok(());
    }
    // Stepped to its end: each step frees one page.
    let mut vacuum = conn.prepare(&format!("PRAGMA incremental_vacuum({give_back})"))?;
    let mut steps = vacuum.query([])?;
    while steps.next()?.is_some() {}
    Ok(())
}
