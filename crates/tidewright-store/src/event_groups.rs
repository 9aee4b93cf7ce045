//! Events as the databases store them: the events one task gains in one
//! write are one row, not a row each: the first one's number and time, the
//! last one's number, and the events as one JSON array of `[µs after the
//! first, kind]` (their numbers run on from the first). A one-step task's
//! six events are three rows: each row costs its key, its header and its
//! index entry, more than a small event's own bytes. Readers still see
//! events one by one: a read takes the rows that hold the numbers it wants
//! and cuts them ([`decode`]).

use std::collections::HashMap;

use tidewright_core::{Event, EventKind};

use crate::Error;

/// One row: a run of one task's events.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub task_id: String,
    /// The first event's number, and the row's key with `task_id`.
    pub first: u64,
    pub last: u64,
    /// The first event's time, in microseconds.
    pub at: i64,
    /// `[[µs after the first, kind], ...]`, as JSON, whole at all times.
    pub body: String,
}

/// The events of one write, grouped by task in the order the tasks first
/// appear. A gap in a task's numbers starts another group, so a group's
/// numbers always run on.
#[derive(Default)]
pub struct EventGroups {
    groups: Vec<Group>,
    /// Where each task's open group is in `groups`.
    open: HashMap<String, usize>,
}

impl EventGroups {
    pub fn push(&mut self, event: &Event) -> Result<(), Error> {
        let entry = serde_json::to_string(&(0i64, &event.kind))
            .map_err(|e| Error::Corrupt(format!("event {}/{}: {e}", event.task_id, event.seq)))?;
        match self.open.get(&event.task_id) {
            Some(&place) if self.groups[place].last + 1 == event.seq => {
                let group = &mut self.groups[place];
                // The array reopened, and the entry as encoded with its
                // time made relative to the first.
                group.body.pop();
                group.body.push_str(",[");
                group.body.push_str(&(event.at - group.at).to_string());
                group.body.push_str(&entry["[0".len()..]);
                group.body.push(']');
                group.last = event.seq;
            }
            _ => {
                self.open.insert(event.task_id.clone(), self.groups.len());
                self.groups.push(Group {
                    task_id: event.task_id.clone(),
                    first: event.seq,
                    last: event.seq,
                    at: event.at,
                    body: format!("[{entry}]"),
                });
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter()
    }

    /// The groups, in order; empty after.
    pub fn drain(&mut self) -> Vec<Group> {
        self.open.clear();
        std::mem::take(&mut self.groups)
    }
}

/// A row's events, in order: `first` and `at` are the row's first number
/// and time.
pub fn decode(task_id: &str, first: u64, at: i64, body: &str) -> Result<Vec<Event>, Error> {
    let events: Vec<(i64, EventKind)> = serde_json::from_str(body)
        .map_err(|e| Error::Corrupt(format!("events of task {task_id} from {first}: {e}")))?;
    Ok(events
        .into_iter()
        .zip(first..)
        .map(|((after, kind), seq)| Event {
            task_id: task_id.to_string(),
            seq,
            at: at + after,
            kind,
        })
        .collect())
}

/// Adds a row's events numbered after `after` to `into`, until it holds
/// `limit`: how a replay cuts the rows it read.
pub fn take_after(
    into: &mut Vec<Event>,
    row: (&str, u64, i64, &str),
    after: u64,
    limit: usize,
) -> Result<(), Error> {
    let (task_id, first, at, body) = row;
    for event in decode(task_id, first, at, body)? {
        if event.seq > after && into.len() < limit {
            into.push(event);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewright_core::TaskState;

    fn event(task_id: &str, seq: u64, at: i64) -> Event {
        Event {
            task_id: task_id.into(),
            seq,
            at,
            kind: EventKind::TaskState {
                state: TaskState::Running,
                message: format!("{task_id} {seq}"),
            },
        }
    }

    #[test]
    fn a_tasks_run_of_events_is_one_group_and_decodes_to_the_same_events() {
        let events = [
            event("a", 1, 100),
            event("b", 7, 90),
            event("a", 2, 150),
            event("a", 3, 151),
            // A gap starts another group.
            event("a", 5, 200),
        ];
        let mut groups = EventGroups::default();
        for e in &events {
            groups.push(e).expect("encodes");
        }
        let groups = groups.drain();
        let spans: Vec<(&str, u64, u64)> = groups
            .iter()
            .map(|g| (g.task_id.as_str(), g.first, g.last))
            .collect();
        assert_eq!(spans, [("a", 1, 3), ("b", 7, 7), ("a", 5, 5)]);
        let decoded: Vec<Event> = groups
            .iter()
            .flat_map(|g| decode(&g.task_id, g.first, g.at, &g.body).expect("decodes"))
            .collect();
        let expected = [0, 2, 3, 1, 4].map(|i| events[i].clone());
        assert_eq!(decoded, expected);
        assert!(groups[0].body.starts_with("[[0,{"), "{}", groups[0].body);
    }

    #[test]
    fn a_body_that_does_not_parse_is_corrupt_naming_its_task() {
        match decode("t1", 4, 0, "[[0,") {
            Err(Error::Corrupt(message)) => {
                assert!(message.contains("task t1 from 4"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
