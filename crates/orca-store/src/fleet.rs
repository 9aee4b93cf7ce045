//! The fleet's order: where each event (but log lines) stands among all
//! the events of the store, for followers of the whole fleet.
//!
//! Each transaction that stores such events also stores one row naming
//! them, in order: its *commit* number, one above the last, and the
//! (task, sequence number) of each event. An event's fleet position is
//! `commit × 2²⁴ + its place in the row` (from 1), so positions rise in
//! commit order, which the ordering promise makes the order in which
//! they were handed over. One small row per transaction, not an index
//! entry per event: the write path pays almost nothing.

use orca_core::{Event, EventKind};

/// Places in one commit's row; a transaction with more fleet events stores
/// more rows.
pub const PER_COMMIT: u64 = 1 << 24;

/// The position of the `place`-th (from 1) event of commit `commit`.
pub fn position(commit: u64, place: usize) -> u64 {
    commit * PER_COMMIT + place as u64
}

/// The commit a position falls in, and its place in it (0: before its
/// first event).
pub fn split(position: u64) -> (u64, usize) {
    (position / PER_COMMIT, (position % PER_COMMIT) as usize)
}

/// Whether an event takes a place in the fleet's order.
pub fn in_fleet(event: &Event) -> bool {
    !matches!(event.kind, EventKind::Log { .. })
}

/// A transaction's events in the fleet, gathered as it writes them:
/// `rows()` splits them into commit rows numbered after `last_commit`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Entries(pub Vec<(String, u64)>);

impl Entries {
    pub fn push(&mut self, event: &Event) {
        if in_fleet(event) {
            self.0.push((event.task_id.clone(), event.seq));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rows to store, numbered after `last_commit`.
    pub fn rows(&self, last_commit: u64) -> Vec<(u64, &[(String, u64)])> {
        self.0
            .chunks(PER_COMMIT as usize - 1)
            .enumerate()
            .map(|(i, chunk)| (last_commit + 1 + i as u64, chunk))
            .collect()
    }
}

/// Up to `limit` (task, sequence number) entries after `after`, from
/// commit rows read in order from `after`'s commit on, each with its
/// position.
pub fn entries_after<'r>(
    rows: impl IntoIterator<Item = (u64, &'r [(String, u64)])>,
    after: u64,
    limit: usize,
) -> Vec<(u64, &'r str, u64)> {
    let mut found = Vec::new();
    for (commit, entries) in rows {
        for (i, (task_id, seq)) in entries.iter().enumerate() {
            let at = position(commit, i + 1);
            if at > after {
                if found.len() == limit {
                    return found;
                }
                found.push((at, task_id.as_str(), *seq));
            }
        }
    }
    found
}

/// A page of the fleet's events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetPage {
    /// The events of the tenants asked for, with their positions.
    pub events: Vec<(u64, Event)>,
    /// The position of the last event looked at (of any tenant); the next
    /// page starts after it. `after` itself when nothing was new.
    pub through: u64,
    /// Whether the page stopped at its limit, so more may follow at once.
    pub full: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_rise_by_commit_then_by_place() {
        assert!(position(1, 2) < position(2, 1));
        assert_eq!(split(position(7, 3)), (7, 3));
        assert_eq!(split(position(7, 0)), (7, 0));
    }

    #[test]
    fn entries_resume_after_any_position_within_or_between_commits() {
        let a = [("t1".to_string(), 1), ("t2".to_string(), 1)];
        let b = [("t1".to_string(), 2)];
        let rows = || [(1, &a[..]), (2, &b[..])];
        let all = entries_after(rows(), 0, 10);
        assert_eq!(
            all,
            [
                (position(1, 1), "t1", 1),
                (position(1, 2), "t2", 1),
                (position(2, 1), "t1", 2)
            ]
        );
        assert_eq!(entries_after(rows(), position(1, 1), 10), all[1..]);
        assert_eq!(entries_after(rows(), position(1, 2), 10), all[2..]);
        assert_eq!(entries_after(rows(), 0, 2), all[..2]);
        assert!(entries_after(rows(), position(2, 1), 10).is_empty());
    }
}
