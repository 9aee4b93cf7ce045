//! Queued steps that no connected worker can run, and why
//! ([`orca_core::unserved::reason`]). What the fleet offers is shared with
//! the engine's handle, so a submit's first events and every read of a
//! task say it as the fleet is now. And when the last worker that could
//! run a set of steps has been gone a moment (a restart is not a
//! departure), each of those steps is told by an event.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::engine::*;

/// How long a set of needs goes without a worker before its steps are
/// told: a worker restarting is back within it.
pub(crate) const GRACE: Micros = 5_000_000;

/// The capabilities of each connected worker that takes work: written by
/// the engine as workers come, drain and go; read by submits and reads.
#[derive(Clone, Default)]
pub struct Offered(Arc<RwLock<Arc<Vec<Capabilities>>>>);

impl Offered {
    /// Why a step needing `needs` waits, when no connected worker can run
    /// it.
    pub fn reason(&self, needs: &Capabilities) -> Option<String> {
        let offered = self.0.read().unwrap_or_else(|e| e.into_inner()).clone();
        orca_core::unserved::reason(needs, &offered)
    }

    /// What workers offering each of `sets` offer.
    #[cfg(test)]
    pub(crate) fn of(sets: &[&[&str]]) -> Offered {
        let offered = Offered::default();
        offered.set(
            sets.iter()
                .map(|set| orca_core::queue::capabilities(set))
                .collect(),
        );
        offered
    }

    fn set(&self, offered: Vec<Capabilities>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(offered);
    }
}

/// The engine's side: which sets of needs lost their last worker, since
/// when, and which have been told.
pub(crate) struct Unserved {
    pub(crate) offered: Offered,
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
            lost: HashMap::new(),
            told: HashSet::new(),
        }
    }
}

impl Engine {
    /// The fleet changed (a worker came, drains or went): what it offers
    /// is said anew, and the queued sets of needs it served and no longer
    /// does are noted, to be told after the grace.
    pub(crate) fn fleet_changed(&mut self) {
        let now = now_micros();
        let offered = &self.unserved.offered;
        let served_before: Vec<Capabilities> = self
            .queue
            .depth_by_needs()
            .map(|(needs, _)| needs.clone())
            .filter(|needs| offered.reason(needs).is_none())
            .collect();
        // The handle shares the cell: submits and reads see it at once.
        offered.set(
            self.workers
                .values()
                .filter(|w| !w.draining)
                .map(|w| w.info.capabilities.clone())
                .collect(),
        );
        let unserved = &mut self.unserved;
        for needs in served_before {
            if unserved.offered.reason(&needs).is_some() {
                unserved.lost.entry(needs).or_insert(now);
            }
        }
        let offered = unserved.offered.clone();
        unserved
            .lost
            .retain(|needs, _| offered.reason(needs).is_some());
        unserved
            .told
            .retain(|needs| offered.reason(needs).is_some());
    }

    /// Tells the queued steps of each set of needs that has been without a
    /// worker past the grace why they wait: one event each, once.
    pub(crate) fn tell_unserved(&mut self) {
        if self.unserved.lost.is_empty() {
            return;
        }
        let now = now_micros();
        let due: Vec<Capabilities> = self
            .unserved
            .lost
            .iter()
            .filter(|(_, since)| now - **since >= GRACE)
            .map(|(needs, _)| needs.clone())
            .collect();
        for needs in due {
            self.unserved.lost.remove(&needs);
            let Some(reason) = self.unserved.offered.reason(&needs) else {
                continue;
            };
            if !self.unserved.told.insert(needs.clone()) {
                continue;
            }
            let waiting: Vec<(Arc<str>, usize)> =
                self.queue.items_needing(&needs).cloned().collect();
            for (task_id, index) in waiting {
                // A task held only as its place in the queue is told when
                // it is read (its step's reason is said by every read).
                let Some(active) = self.tasks.get_mut(&task_id) else {
                    continue;
                };
                let kind = EventKind::StepState {
                    step: active.spec.steps[index].id.clone(),
                    state: StepState::Queued,
                    attempt: active.run.step(index).attempt,
                    worker: String::new(),
                    message: reason.clone(),
                    waits_for: String::new(),
                    conflict: None,
                };
                self.round.event(&task_id, active, kind);
            }
        }
    }
}
