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

use tidewright_core::{Event, EventKind};

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

/// Whether an event takes a place in the fleet's order: a step's log
/// lines and its agent's session items are its task's own, many and
/// large, of no use to a view of the whole fleet.
pub fn in_fleet(event: &Event) -> bool {
    !matches!(
        event.kind,
        EventKind::Log { .. } | EventKind::SessionItem { .. }
    )
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

/// A commit row's entries as the databases store them: runs of one task's
/// numbers that follow one another in the row, `(task, first, last)`. A
/// one-step task's two events of a commit are one run, not two entries
/// each naming the task. [`expand`] gives the entries back, in their
/// places.
pub fn runs(entries: &[(String, u64)]) -> Vec<(&str, u64, u64)> {
    let mut runs: Vec<(&str, u64, u64)> = Vec::new();
    for (task_id, seq) in entries {
        match runs.last_mut() {
            Some((task, _, last)) if *task == task_id && *last + 1 == *seq => *last = *seq,
            _ => runs.push((task_id, *seq, *seq)),
        }
    }
    runs
}

/// Runs back into the row's entries, in order.
pub fn expand(runs: impl IntoIterator<Item = (String, u64, u64)>) -> Vec<(String, u64)> {
    let mut entries = Vec::new();
    for (task_id, first, last) in runs {
        entries.extend((first..=last).map(|seq| (task_id.clone(), seq)));
    }
    entries
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

/// Gathers the commit rows a page needs: from `after`'s commit on, a few
/// rows at a time (a backend reads [`Rows::next`] and hands them to
/// [`Rows::take`]), until they hold `limit` events after `after` or the
/// store has no more.
pub struct Rows {
    after: u64,
    limit: usize,
    rows: Vec<(u64, Vec<(String, u64)>)>,
    next: Option<u64>,
}

impl Rows {
    /// Rows a backend reads at a time.
    pub const AT_A_TIME: usize = 16;

    pub fn new(after: u64, limit: usize) -> Rows {
        Rows {
            after,
            limit,
            rows: Vec::new(),
            next: Some(split(after).0),
        }
    }

    /// The commit to read the next rows from (up to [`Rows::AT_A_TIME`] of
    /// them, in order); `None` once enough are read.
    pub fn next(&self) -> Option<u64> {
        self.next
    }

    /// Takes the rows read from [`Rows::next`] on.
    pub fn take(&mut self, read: Vec<(u64, Vec<(String, u64)>)>) {
        let exhausted = read.len() < Self::AT_A_TIME;
        self.next = read.last().map(|(commit, _)| commit + 1);
        self.rows.extend(read);
        if exhausted || self.entries().len() == self.limit {
            self.next = None;
        }
    }

    /// The page's entries: up to `limit` (task, sequence number) after
    /// `after`, each with its position.
    pub fn entries(&self) -> Vec<(u64, &str, u64)> {
        entries_after(
            self.rows.iter().map(|(c, row)| (*c, row.as_slice())),
            self.after,
            self.limit,
        )
    }

    /// The page, given the events of the entries that are of the tenants
    /// asked for.
    pub fn page(&self, events: Vec<(u64, Event)>) -> FleetPage {
        let entries = self.entries();
        FleetPage {
            events,
            through: entries.last().map_or(self.after, |(at, _, _)| *at),
            full: entries.len() == self.limit,
        }
    }
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
    fn a_rows_entries_are_stored_as_runs_and_come_back_in_their_places() {
        let entries: Vec<(String, u64)> =
            [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("a", 5), ("a", 6)]
                .iter()
                .map(|(t, s)| (t.to_string(), *s))
                .collect();
        let stored = runs(&entries);
        assert_eq!(stored, [("a", 1, 2), ("b", 1, 1), ("a", 3, 3), ("a", 5, 6)]);
        let back = expand(stored.into_iter().map(|(t, f, l)| (t.to_string(), f, l)));
        assert_eq!(back, entries);
    }

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

    #[test]
    fn rows_are_read_until_they_hold_a_page_or_run_out() {
        let row = |commit: u64| (commit, vec![(format!("t{commit}"), 1)]);
        let mut rows = Rows::new(position(3, 1), 20);
        assert_eq!(rows.next(), Some(3), "from after's own commit");
        rows.take((3..3 + Rows::AT_A_TIME as u64).map(row).collect());
        assert_eq!(
            rows.next(),
            Some(3 + Rows::AT_A_TIME as u64),
            "a full read: more may follow"
        );
        rows.take(vec![row(19), row(20)]);
        assert_eq!(rows.next(), None, "a short read: no more");
        let entries = rows.entries();
        assert_eq!(
            entries.len(),
            Rows::AT_A_TIME + 1,
            "commit 3's one entry is not after"
        );
        let page = rows.page(Vec::new());
        assert_eq!((page.through, page.full), (position(20, 1), false));

        let mut enough = Rows::new(0, 2);
        enough.take((1..=Rows::AT_A_TIME as u64).map(row).collect());
        assert_eq!(enough.next(), None, "two entries were wanted");
        assert_eq!(enough.page(Vec::new()).through, position(2, 1));
    }
}
