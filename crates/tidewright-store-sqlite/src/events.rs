//! Events as SQLite stores them: a row of `event_groups` per task and
//! write (`tidewright_store::event_groups`).

use rusqlite::{Connection, OptionalExtension, params};
use tidewright_core::Event;
use tidewright_store::event_groups::{EventGroups, decode, take_after};

use crate::fault::Result;

/// Inserts the groups waiting in `events`, one row each. A row whose first
/// number is stored already fails the write, as a repeated event did.
pub(crate) fn insert(conn: &Connection, events: &mut EventGroups) -> Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO event_groups (task_id, seq, last, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for group in events.drain() {
        insert.execute(params![
            group.task_id,
            group.first as i64,
            group.last as i64,
            group.at,
            group.body
        ])?;
    }
    Ok(())
}

/// A task's rows holding numbers after `?2`, `?3` of them at most: from
/// the row holding the first wanted number, found by the key both ways (a
/// filter on `last` alone would walk every earlier row). Each row holds at
/// least one wanted event, so `limit` rows are enough.
pub(crate) const AFTER: &str = "SELECT seq, at, body FROM event_groups
     WHERE task_id = ?1 AND last > ?2 AND seq >= (
         SELECT COALESCE(MAX(seq), 0) FROM event_groups WHERE task_id = ?1 AND seq <= ?2 + 1)
     ORDER BY seq LIMIT ?3";

/// Up to `limit` of a task's events after `after`, in order.
pub(crate) fn after(
    conn: &Connection,
    task_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(AFTER)?;
    let rows = stmt.query_map(params![task_id, after as i64, limit as i64], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (first, at, body) = row?;
        take_after(
            &mut events,
            (task_id, first as u64, at, &body),
            after,
            limit,
        )?;
    }
    Ok(events)
}

/// A task's newest sequence number; 0 when it has no events.
pub(crate) fn last_seq(conn: &Connection, task_id: &str) -> Result<u64> {
    let last: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(last), 0) FROM event_groups WHERE task_id = ?1")?
        .query_row([task_id], |row| row.get(0))?;
    Ok(last as u64)
}

/// Single events looked up by task and number, as the fleet's order names
/// them, with their task's tenant. The row last read is kept: the events
/// one commit named of a task are mostly in one row.
#[derive(Default)]
pub(crate) struct Lookup {
    /// The row last read, whole, and its task's tenant.
    row: Option<(Vec<Event>, String)>,
}

impl Lookup {
    /// The event `seq` of `task_id` and its task's tenant; `None` when it
    /// is gone (its task expired).
    pub(crate) fn get(
        &mut self,
        conn: &Connection,
        task_id: &str,
        seq: u64,
    ) -> Result<Option<(Event, String)>> {
        let holds = |events: &[Event]| match (events.first(), events.last()) {
            (Some(first), Some(last)) => {
                first.task_id == task_id && (first.seq..=last.seq).contains(&seq)
            }
            _ => false,
        };
        if !self.row.as_ref().is_some_and(|(events, _)| holds(events)) {
            let found = conn
                .prepare_cached(
                    "SELECT e.seq, e.at, e.body, t.tenant FROM event_groups e
                     JOIN tasks t ON t.id = e.task_id
                     WHERE e.task_id = ?1 AND e.seq <= ?2 ORDER BY e.seq DESC LIMIT 1",
                )?
                .query_row(params![task_id, seq as i64], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })
                .optional()?;
            let Some((first, at, body, tenant)) = found else {
                return Ok(None);
            };
            self.row = Some((decode(task_id, first as u64, at, &body)?, tenant));
        }
        Ok(self.row.as_ref().and_then(|(events, tenant)| {
            events
                .iter()
                .find(|e| e.seq == seq)
                .map(|e| (e.clone(), tenant.clone()))
        }))
    }
}
