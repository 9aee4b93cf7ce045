//! WatchTask and WatchFleet: a replay of the store followed by live
//! events, with a bound on the watches each caller holds open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tidewright_core::{Event, EventKind};
use tidewright_store::Store;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::calls::{WatchFleet, WatchTask, Watched};
use super::{Call, EventStream, REPLAY_PAGE, Tasks, asked_tenants, fleet_events};
use crate::access::Action;
use crate::error::Error;

/// Open watch streams per caller: each holds a server task and a channel,
/// so one client may not open them without bound.
#[derive(Default)]
pub(super) struct OpenWatches {
    open: Mutex<HashMap<String, usize>>,
}

/// One open watch; its place frees when the watch ends.
pub(super) struct OpenWatch {
    watches: Arc<OpenWatches>,
    caller: String,
}

impl OpenWatches {
    fn take(self: &Arc<Self>, caller: &str, limit: usize) -> Result<OpenWatch, Error> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(caller.to_string()).or_default();
        if *count >= limit {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "{caller} has {count} watches open; the limit (max-watches-per-caller) is {limit}"
                ),
                retry_after: None,
            });
        }
        *count += 1;
        Ok(OpenWatch {
            watches: self.clone(),
            caller: caller.to_string(),
        })
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        let mut open = self.watches.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl Tasks {
    /// The fleet's events, and the position they start after.
    pub async fn watch_fleet(
        &self,
        request: Call<WatchFleet>,
    ) -> Result<(EventStream, u64), Error> {
        let caller = request.require(Action::ReadTasks)?;
        let request = request.into_message();
        let tenants = asked_tenants(&caller, request.tenants)?;
        let held = self
            .cx
            .watches
            .take(&caller.name, self.cx.limits.max_watches_per_caller)?;
        // Woken by every commit from here on; the head is read after, so
        // nothing committed between the two is skipped.
        let wakes = self.cx.hub.watch_fleet();
        let after = match request.after_position {
            Some(position) => position,
            None => self.cx.store.fleet_head().await?,
        };
        let (tx, rx) = mpsc::channel(256);
        let store = self.cx.store.clone();
        tokio::spawn(async move {
            fleet_events::follow(store, after, tenants, wakes, tx).await;
            drop(held);
        });
        Ok((Box::pin(ReceiverStream::new(rx)), after))
    }

    pub async fn watch_task(&self, request: Call<WatchTask>) -> Result<EventStream, Error> {
        let caller = request.require_tasks(Action::ReadTasks)?;
        let request = request.into_message();
        // Check first: a channel is made only for a task the caller may see.
        let finished = self
            .cx
            .load(&request.task_id, &caller)
            .await?
            .state
            .is_terminal();
        // Subscribe before the replay reads the store: every event is then in
        // one or the other, and duplicates are dropped by sequence number. A
        // task that finished before this point has every event stored; one
        // that finishes after it ends the replay or the live stream.
        let held = self
            .cx
            .watches
            .take(&caller.name, self.cx.limits.max_watches_per_caller)?;
        let live = (request.follow && !finished).then(|| self.cx.hub.subscribe(&request.task_id));
        let (tx, rx) = mpsc::channel(256);
        let store = self.cx.store.clone();
        tokio::spawn(async move {
            follow(store, request.task_id, request.after_seq, live, tx).await;
            drop(held);
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// Replays the store after `after`, then follows live events (when `live`
/// is given) until the task's final event has been sent or the watcher leaves.
pub(super) async fn follow(
    store: Arc<dyn Store>,
    task_id: String,
    mut after: u64,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    tx: mpsc::Sender<Result<Watched, Error>>,
) {
    let is_final =
        |e: &Event| matches!(&e.kind, EventKind::TaskState { state, .. } if state.is_terminal());
    // Replays from the store; returns Some(true) once the final event is sent,
    // None when the watcher is gone or the store fails.
    let replay = |after: u64| {
        let store = store.clone();
        let task_id = task_id.clone();
        let tx = tx.clone();
        async move {
            let mut last = after;
            // A retried task has an earlier final event in its log: only a
            // final event with nothing after it ends the watch.
            let mut ended = false;
            loop {
                let events = match store.events_after(&task_id, last, REPLAY_PAGE).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(Error::from(e))).await;
                        return None;
                    }
                };
                let full = events.len() == REPLAY_PAGE;
                for event in events {
                    last = event.seq;
                    ended = is_final(&event);
                    tx.send(Ok(Watched {
                        event: Arc::new(event),
                        position: 0,
                    }))
                    .await
                    .ok()?;
                }
                if !full {
                    return Some((last, ended));
                }
            }
        }
    };
    match replay(after).await {
        Some((_, true)) | None => return,
        Some((last, false)) => after = last,
    }
    let Some(mut live) = live else { return };
    loop {
        // A watcher that leaves frees its place now, not at the next event.
        let received = tokio::select! {
            received = live.recv() => received,
            _ = tx.closed() => return,
        };
        match received {
            Ok(event) => {
                if event.seq <= after {
                    continue;
                }
                if event.seq > after + 1 {
                    // Cannot happen while events are published in commit
                    // order; the store is the fallback if it ever does.
                    match replay(after).await {
                        Some((_, true)) | None => return,
                        Some((last, false)) => after = last,
                    }
                    continue;
                }
                after = event.seq;
                let last = is_final(&event);
                let sent = tx.send(Ok(Watched { event, position: 0 })).await;
                if sent.is_err() || last {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => match replay(after).await {
                Some((_, true)) | None => return,
                Some((last, false)) => after = last,
            },
            Err(broadcast::error::RecvError::Closed) => {
                // The task finished (or the server is stopping): whatever is
                // left is in the store.
                let _ = replay(after).await;
                return;
            }
        }
    }
}
