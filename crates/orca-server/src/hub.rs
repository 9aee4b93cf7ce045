//! Live event fan-out to watchers, per task. Events arrive here only after
//! they are committed, so a watcher that subscribes first and then replays
//! the store sees every event: the overlap is removed by sequence number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use orca_core::{Event, EventKind};
use tokio::sync::broadcast;

/// A watcher slower than this many events falls back to reading the store.
const BUFFER: usize = 1024;

#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>,
}

impl Hub {
    pub fn subscribe(&self, task_id: &str) -> broadcast::Receiver<Arc<Event>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(task_id.to_string())
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe()
    }

    /// Sends committed events to the task's watchers, if it has any. A
    /// task's channel closes after its final event, which ends its watchers
    /// once they have read it.
    pub fn publish(&self, events: &[Arc<Event>]) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if channels.is_empty() {
            return;
        }
        for event in events {
            if let Some(sender) = channels.get(&event.task_id) {
                // No receiver left is not an error: nobody watches.
                let _ = sender.send(event.clone());
                let finished = matches!(&event.kind, EventKind::TaskState { state, .. } if state.is_terminal());
                if finished || sender.receiver_count() == 0 {
                    channels.remove(&event.task_id);
                }
            }
        }
    }

    /// Tasks with a live channel.
    #[cfg(test)]
    pub fn channels(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Ends every watcher (server shutdown).
    pub fn close_all(&self) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
