//! Events as stored: the events one task gains in one write are one row of
//! `event_groups`, not a row each: the first one's number and time, the
//! last one's number, and the events as one JSON array of `[µs after the
//! first, kind]` (their numbers run on from the first). A one-step task's
//! six events are three rows: each row costs its key, its header and its
//! cell, more than a small event's own bytes. Readers see events one by
//! one, as before: a read takes the rows that hold the numbers it wants and
//! cuts them.

use std::collections::HashMap;

use orca_core::{Event, EventKind};
use orca_store::Error;
use rusqlite::{Connection, OptionalExtension, params};

use crate::fault::Result;

/// The events of one write, grouped by task in the order the tasks first
/// appear, waiting to be inserted as one row per task. A gap in a task's
/// numbers starts another group, so a row's numbers always run on.
#[derive(Default)]
pub(crate) struct Groups<'w> {
    groups: Vec<Vec<&'w Event>>,
    /// Where each task's open group is in `groups`.
    open: HashMap<&'w str, usize>,
}

impl<'w> Groups<'w> {
    pub(crate) fn push(&mut self, event: &'w Event) {
        let runs_on =
            |group: &Vec<&Event>| group.last().is_some_and(|last| last.seq + 1 == event.seq);
        match self.open.get(event.task_id.as_str()) {
            Some(&place) if runs_on(&self.groups[place]) => self.groups[place].push(event),
            _ => {
                self.open.insert(&event.task_id, self.groups.len());
                self.groups.push(vec![event]);
            }
        }
    }

    /// Inserts what is waiting, one row per group. A row whose first number
    /// is stored already fails the write, as a repeated event did.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<()> {
        let mut insert = conn.prepare_cached(
            "INSERT INTO event_groups (task_id, seq, last, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for events in self.groups.drain(..) {
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                continue;
            };
            let body: Vec<(i64, &EventKind)> =
                events.iter().map(|e| (e.at - first.at, &e.kind)).collect();
            insert.execute(params![
                first.task_id,
                first.seq as i64,
                last.seq as i64,
                first.at,
                serde_json::to_string(&body).map_err(|e| Error::Corrupt(format!(
                    "encoding the events of task {}: {e}",
                    first.task_id
                )))?,
            ])?;
        }
        self.open.clear();
        Ok(())
    }
}

/// One row's events, in order.
fn decode(task_id: &str, first: i64, at: i64, body: &str) -> Result<Vec<Event>> {
    let events: Vec<(i64, EventKind)> = serde_json::from_str(body)
        .map_err(|e| Error::Corrupt(format!("events of task {task_id} from {first}: {e}")))?;
    Ok(events
        .into_iter()
        .zip(first as u64..)
        .map(|((after, kind), seq)| Event {
            task_id: task_id.to_string(),
            seq,
            at: at + after,
            kind,
        })
        .collect())
}

/// Up to `limit` of a task's events after `after`, in order.
pub(crate) fn after(
    conn: &Connection,
    task_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>> {
    // Each row holds at least one wanted event, so `limit` rows are enough.
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, body FROM event_groups WHERE task_id = ?1 AND last > ?2
         ORDER BY seq LIMIT ?3",
    )?;
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
        for event in decode(task_id, first, at, &body)? {
            if event.seq > after && events.len() < limit {
                events.push(event);
            }
        }
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
    row: Option<(String, u64, u64, Vec<Event>, String)>,
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
        let held = self.row.as_ref().is_some_and(|(task, first, last, _, _)| {
            task == task_id && (*first..=*last).contains(&seq)
        });
        if !held {
            let found = conn
                .prepare_cached(
                    "SELECT e.seq, e.last, e.at, e.body, t.tenant FROM event_groups e
                     JOIN tasks t ON t.id = e.task_id
                     WHERE e.task_id = ?1 AND e.seq <= ?2 ORDER BY e.seq DESC LIMIT 1",
                )?
                .query_row(params![task_id, seq as i64], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })
                .optional()?;
            let Some((first, last, at, body, tenant)) = found else {
                return Ok(None);
            };
            let events = decode(task_id, first, at, &body)?;
            self.row = Some((
                task_id.to_string(),
                first as u64,
                last as u64,
                events,
                tenant,
            ));
        }
        Ok(self.row.as_ref().and_then(|(_, _, _, events, tenant)| {
            events
                .iter()
                .find(|e| e.seq == seq)
                .map(|e| (e.clone(), tenant.clone()))
        }))
    }
}
