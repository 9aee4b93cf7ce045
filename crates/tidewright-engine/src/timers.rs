//! What the engine waits for in time: retries whose backoff has not ended,
//! and approvals that time out. Each is kept earliest first; the loop
//! sleeps until the next one, then takes whatever is due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tidewright_core::Micros;

/// A retry waiting for its backoff: (due, task, step, failed attempt).
pub(crate) type DueRetry = (Micros, Arc<str>, usize, u32);

/// A step's wait for approval that times out: (deadline, task, step).
pub(crate) type DueApproval = (Micros, Arc<str>, usize);

#[derive(Default)]
pub(crate) struct Timers {
    retries: BinaryHeap<Reverse<DueRetry>>,
    approvals: BinaryHeap<Reverse<DueApproval>>,
}

impl Timers {
    /// Step `index` of `task` runs again at `due`, after attempt `failed`.
    pub(crate) fn retry(&mut self, due: Micros, task: Arc<str>, index: usize, failed: u32) {
        self.retries.push(Reverse((due, task, index, failed)));
    }

    /// Step `index` of `task` stops waiting for approval at `deadline`.
    pub(crate) fn approval(&mut self, deadline: Micros, task: Arc<str>, index: usize) {
        self.approvals.push(Reverse((deadline, task, index)));
    }

    /// When the next retry or approval is due.
    pub(crate) fn next(&self) -> Option<Micros> {
        let retry = self.retries.peek().map(|Reverse(r)| r.0);
        let approval = self.approvals.peek().map(|Reverse(a)| a.0);
        retry.into_iter().chain(approval).min()
    }

    /// The earliest retry due by `now`, taken.
    pub(crate) fn due_retry(&mut self, now: Micros) -> Option<DueRetry> {
        if self.retries.peek().is_some_and(|Reverse(r)| r.0 <= now) {
            self.retries.pop().map(|Reverse(r)| r)
        } else {
            None
        }
    }

    /// The earliest approval deadline passed by `now`, taken.
    pub(crate) fn due_approval(&mut self, now: Micros) -> Option<DueApproval> {
        if self.approvals.peek().is_some_and(|Reverse(a)| a.0 <= now) {
            self.approvals.pop().map(|Reverse(a)| a)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_due_comes_earliest_first_and_nothing_before_its_time() {
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        let task: Arc<str> = Arc::from("t");
        timers.retry(30, task.clone(), 1, 2);
        timers.retry(10, task.clone(), 0, 1);
        timers.approval(20, task.clone(), 2);
        assert_eq!(timers.next(), Some(10));
        assert_eq!(timers.due_retry(9), None, "not before its time");
        assert_eq!(timers.due_retry(30), Some((10, task.clone(), 0, 1)));
        assert_eq!(timers.due_retry(30), Some((30, task.clone(), 1, 2)));
        assert_eq!(timers.due_retry(30), None);
        assert_eq!(timers.next(), Some(20));
        assert_eq!(timers.due_approval(19), None);
        assert_eq!(timers.due_approval(20), Some((20, task, 2)));
        assert_eq!(timers.next(), None);
    }
}
