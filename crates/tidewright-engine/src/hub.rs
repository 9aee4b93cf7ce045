//! Live event fan-out to watchers, per task. Events arrive here only after
//! they are committed, so a watcher that subscribes first and then replays
//! the store sees every event: the overlap is removed by sequence number.
//! Followers of the whole fleet are only woken here: they read what is new
//! from the store, in its order.

use std::sync::Arc;

use tidewright_core::{Event, EventKind};
use tokio::sync::{broadcast, watch};

use crate::channels::Channels;

/// A watcher slower than this many events falls back to reading the store.
const BUFFER: usize = 1024;

pub struct Hub {
    channels: Channels<String, Arc<Event>>,
    fleet: watch::Sender<FleetSignal>,
}

/// What wakes the fleet's followers: events of the fleet were committed
/// (a count of such commits), or the server is stopping.
#[derive(Clone, Copy, Default)]
pub struct FleetSignal {
    pub commits: u64,
    pub closed: bool,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            channels: Channels::new(BUFFER),
            fleet: watch::Sender::new(FleetSignal::default()),
        }
    }
}

impl Hub {
    /// Wakes the fleet's followers; call after a commit stored events
    /// that are not log lines.
    pub fn fleet_changed(&self) {
        self.fleet.send_modify(|signal| signal.commits += 1);
    }

    /// Follows [`Hub::fleet_changed`]; subscribe before reading the store,
    /// so a commit after the read is never missed.
    pub fn watch_fleet(&self) -> watch::Receiver<FleetSignal> {
        self.fleet.subscribe()
    }

    pub fn subscribe(&self, task_id: &str) -> broadcast::Receiver<Arc<Event>> {
        self.channels.subscribe(task_id.to_string())
    }

    /// Sends committed events to the task's watchers, if it has any. A
    /// task's channel closes after its final event, which ends its watchers
    /// once they have read it.
    pub fn publish(&self, events: &[Arc<Event>]) {
        if events.iter().any(|e| tidewright_store::fleet::in_fleet(e)) {
            self.fleet_changed();
        }
        self.channels.send(events.iter().map(|event| {
            let finished =
                matches!(&event.kind, EventKind::TaskState { state, .. } if state.is_terminal());
            (&event.task_id, event.clone(), finished)
        }));
    }

    /// Tasks with a live channel.
    /// Tasks with a live channel (see [`Channels::live`]).
    pub fn channels(&self) -> usize {
        self.channels.live()
    }

    /// Ends every watcher (server shutdown).
    pub fn close_all(&self) {
        self.fleet.send_modify(|signal| signal.closed = true);
        self.channels.close_all();
    }
}
