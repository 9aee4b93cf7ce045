//! The bound on a backend's write queue. Writes queue in memory while the
//! database commits earlier ones; when the database is slow, new work must
//! wait for room (or be told to come back) instead of piling up without end.
//!
//! Every job counts while it is queued or being committed. Requests that
//! bring new work (creating tasks, changing shared state) wait for room, up
//! to a deadline, and then get [`Error::Overloaded`]. The control plane's
//! own writes (what it decided about running work) are never refused, as
//! dropping one would lose a decision already made; they still count, so
//! new work waits behind them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::Error;

/// How many jobs may wait, and how long new work waits for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub max_queued: usize,
    pub wait: Duration,
}

impl Default for Bound {
    /// Room for bursts far beyond what a healthy database lets build up;
    /// a client waits up to ten seconds before it is told to back off.
    fn default() -> Self {
        Bound {
            max_queued: 4096,
            wait: Duration::from_secs(10),
        }
    }
}

/// Counts the jobs in a write queue; cheap to clone, shared by the side
/// that queues and the side that commits.
#[derive(Debug, Clone)]
pub struct Admission {
    bound: Bound,
    queued: Arc<AtomicUsize>,
    room: Arc<Notify>,
}

/// One job's place in the queue, given back when the job is answered.
#[derive(Debug)]
pub struct Place {
    queued: Arc<AtomicUsize>,
    room: Arc<Notify>,
    max_queued: usize,
}

impl Drop for Place {
    fn drop(&mut self) {
        let before = self.queued.fetch_sub(1, Ordering::AcqRel);
        // Only a full queue has waiters; below it, giving a place back is
        // one atomic on the writer's hot path.
        if before >= self.max_queued {
            self.room.notify_waiters();
        }
    }
}

impl Admission {
    pub fn new(bound: Bound) -> Self {
        Admission {
            bound,
            queued: Arc::new(AtomicUsize::new(0)),
            room: Arc::new(Notify::new()),
        }
    }

    /// Jobs queued or being committed now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// A place for a job that cannot be refused.
    pub fn always(&self) -> Place {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.place()
    }

    /// A place for new work: at once when there is room, else once there
    /// is, or [`Error::Overloaded`] after the bound's wait.
    pub async fn admit(&self) -> Result<Place, Error> {
        let deadline = tokio::time::Instant::now() + self.bound.wait;
        loop {
            // Registered before the check, so a place given back between
            // the check and the wait still wakes this one.
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let queued = self.queued.load(Ordering::Acquire);
            if queued < self.bound.max_queued
                && self
                    .queued
                    .compare_exchange(queued, queued + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Ok(self.place());
            }
            if queued < self.bound.max_queued {
                continue; // another job took the count meanwhile: look again
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Error::Overloaded(format!(
                    "{queued} writes are waiting for the database; try again later"
                )));
            }
        }
    }

    fn place(&self) -> Place {
        Place {
            queued: self.queued.clone(),
            room: self.room.clone(),
            max_queued: self.bound.max_queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(max_queued: usize, wait_ms: u64) -> Admission {
        Admission::new(Bound {
            max_queued,
            wait: Duration::from_millis(wait_ms),
        })
    }

    #[tokio::test]
    async fn new_work_waits_for_room_and_is_refused_after_the_wait() {
        let admission = bound(2, 50);
        let first = admission.admit().await.expect("room");
        let _second = admission.always();
        assert_eq!(admission.queued(), 2);
        match admission.admit().await {
            Err(Error::Overloaded(message)) => assert!(message.contains("2 writes"), "{message}"),
            other => panic!("expected overloaded, got {other:?}"),
        }
        // A place given back lets a waiting request in.
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.map(|_| ()) }
        });
        drop(first);
        waiting.await.expect("joined").expect("admitted");
        assert_eq!(admission.queued(), 1, "its place was given back too");
    }

    #[tokio::test]
    async fn what_cannot_be_refused_is_counted_past_the_bound() {
        let admission = bound(1, 10);
        let places: Vec<Place> = (0..3).map(|_| admission.always()).collect();
        assert_eq!(admission.queued(), 3);
        assert!(admission.admit().await.is_err());
        drop(places);
        assert_eq!(admission.queued(), 0);
        admission.admit().await.expect("room again");
    }
}
