//! Queued steps that no connected worker can run, and why
//! ([`tidewright_core::unserved::reason`]). What the fleet offers (each distinct
//! set of capabilities a worker taking work offers) is shared with the
//! engine's handle, so a submit's first events and every read of a task
//! say it as the fleet is now. And when the last worker that could run a
//! set of queued steps has been gone a moment (a restart is not a
//! departure), each of those steps is told by an event.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tidewright_core::calendar::now_micros;
use tidewright_core::{Capabilities, Micros, ReadyQueue};

/// How long a set of needs goes without a worker before its steps are
/// told: a worker restarting is back within it.
pub(crate) const GRACE: Micros = 5_000_000;

/// The distinct sets of capabilities the connected workers that take
/// work offer: written by the engine as workers come, drain and go; read
/// by submits and reads.
#[derive(Clone, Default)]
pub struct Offered(Arc<RwLock<Arc<Vec<Capabilities>>>>);

impl Offered {
    /// Why a step needing `needs` waits, when no connected worker can run
    /// it.
    pub fn reason(&self, needs: &Capabilities) -> Option<String> {
        let offered = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        tidewright_core::unserved::reason(needs, &offered)
    }

    /// What workers offering each of `sets` offer.
    #[cfg(test)]
    pub(crate) fn of(sets: &[&[&str]]) -> Offered {
        let offered = Offered::default();
        offered.set(
            sets.iter()
                .map(|set| tidewright_core::queue::capabilities(set))
                .collect(),
        );
        offered
    }

    fn set(&self, offered: Vec<Capabilities>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(offered);
    }
}

/// The engine's side: how many workers offer each set, which sets of
/// queued needs lost their last worker and since when, and which were told.
pub(crate) struct Unserved {
    offered: Offered,
    /// Workers taking work, by the set of capabilities they offer.
    workers: HashMap<Capabilities, usize>,
    /// Sets of needs whose last worker left, and when.
    lost: HashMap<Capabilities, Micros>,
    /// Sets whose queued steps were told, until a worker can run them.
    told: HashSet<Capabilities>,
}

impl Unserved {
    /// With `offered` shared with the engine's handle.
    pub(crate) fn new(offered: Offered) -> Unserved {
        Unserved {
            offered,
            workers: HashMap::new(),
            lost: HashMap::new(),
            told: HashSet::new(),
        }
    }

    /// The cell's new contents, when a set came or went.
    fn said_anew(&self) {
        self.offered.set(self.workers.keys().cloned().collect());
    }

    /// A worker taking work offers `capabilities` (it connected).
    pub(crate) fn offers(&mut self, capabilities: &Capabilities) {
        let count = self.workers.entry(capabilities.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return;
        }
        self.said_anew();
        let offered = self.offered.clone();
        self.lost.retain(|needs, _| offered.reason(needs).is_some());
        self.told.retain(|needs| offered.reason(needs).is_some());
    }

    /// A worker that took work no longer offers `capabilities` (it drains
    /// or left): the sets of needs queued in `queue` that it was the last
    /// to serve are noted, to be told after the grace.
    pub(crate) fn withdraws<T>(&mut self, capabilities: &Capabilities, queue: &ReadyQueue<T>) {
        let Some(count) = self.workers.get_mut(capabilities) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        self.workers.remove(capabilities);
        let offered = &self.offered;
        let served_before: Vec<Capabilities> = queue
            .depth_by_needs()
            .map(|(needs, _)| needs.clone())
            .filter(|needs| needs.is_subset(capabilities) && offered.reason(needs).is_none())
            .collect();
        self.said_anew();
        let now = now_micros();
        for needs in served_before {
            if self.offered.reason(&needs).is_some() {
                self.lost.entry(needs).or_insert(now);
            }
        }
    }

    /// The needs whose last worker has been gone the grace, each with why
    /// it waits, each said once until a worker offers it again.
    pub(crate) fn due(&mut self) -> Vec<(Capabilities, String)> {
        if self.lost.is_empty() {
            return Vec::new();
        }
        let now = now_micros();
        let due: Vec<Capabilities> = self
            .lost
            .iter()
            .filter(|(_, since)| now - **since >= GRACE)
            .map(|(needs, _)| needs.clone())
            .collect();
        let mut told = Vec::new();
        for needs in due {
            self.lost.remove(&needs);
            let Some(reason) = self.offered.reason(&needs) else {
                continue;
            };
            if self.told.insert(needs.clone()) {
                told.push((needs, reason));
            }
        }
        told
    }
}
