//! The fleet's event stream (WatchFleet): every task's events but log
//! lines, in the store's commit order, each with its fleet position (see
//! `tidewright_store::fleet`). A
//! follower reads the store after the last position it sent, so a resume
//! after any position misses nothing and repeats nothing; the hub only
//! wakes it when a commit stored something new.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewright_store::Store;
use tokio::sync::{mpsc, watch};

use super::calls::Watched;
use crate::error::Error;
use crate::hub::FleetSignal;

/// Events read from the store at a time.
const PAGE: usize = 512;

/// A busy fleet commits thousands of times a second: a follower reads at
/// most this often, each read taking whatever is new since the last.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// A read even when nothing woke the follower: a commit that forgot to
/// say so is late by this much, not lost.
const FALLBACK: Duration = Duration::from_secs(2);

/// Sends the events after `after` (of `tenants`' tasks; all when `None`),
/// then each new one as it is committed, until the receiver leaves, the
/// server stops, or the store fails (sent as the stream's last item).
pub(super) async fn follow(
    store: Arc<dyn Store>,
    mut after: u64,
    tenants: Option<Vec<String>>,
    mut wakes: watch::Receiver<FleetSignal>,
    tx: mpsc::Sender<Result<Watched, Error>>,
) {
    loop {
        // Marked seen before the read: a commit after it wakes the next wait.
        if wakes.borrow_and_update().closed {
            return;
        }
        let read_at = Instant::now();
        loop {
            let page = match store.fleet_events_after(after, tenants.clone(), PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(Error::from(e))).await;
                    return;
                }
            };
            for (position, event) in page.events {
                let event = Watched {
                    event: Arc::new(event),
                    position,
                };
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            // Past what was looked at, sent or another tenant's.
            after = page.through;
            if !page.full {
                break;
            }
        }
        // A leaving follower frees its watch now, not at the next event.
        tokio::select! {
            woken = wakes.changed() => if woken.is_err() { return },
            _ = tokio::time::sleep(FALLBACK) => {}
            _ = tx.closed() => return,
        }
        let due = read_at + MIN_INTERVAL;
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;
    use tidewright_core::{Event, EventKind, LogStream, StepSpec, StepState, TaskSpec, TaskState};
    use tidewright_store::fleet::position;
    use tidewright_store::memory::MemoryStore;
    use tidewright_store::{NewTask, Write, WriteStore};

    fn task(id: &str, tenant: &str) -> NewTask {
        NewTask {
            id: id.into(),
            tenant: tenant.into(),
            spec: TaskSpec {
                steps: vec![StepSpec::noop("a")],
                ..TaskSpec::default()
            },
            idempotency_key: None,
            created_at: 1,
            state: TaskState::Queued,
            message: String::new(),
            plan_json: String::new(),
            trace_context: String::new(),
            step_states: vec![StepState::Queued],
            events: vec![state_event(id, 1, TaskState::Queued)],
            audit: None,
        }
    }

    fn state_event(task_id: &str, seq: u64, state: TaskState) -> Event {
        Event {
            task_id: task_id.into(),
            seq,
            at: 1,
            kind: EventKind::TaskState {
                state,
                message: String::new(),
            },
        }
    }

    fn log_line(task_id: &str, seq: u64) -> Event {
        Event {
            task_id: task_id.into(),
            seq,
            at: 1,
            kind: EventKind::Log {
                step: "a".into(),
                attempt: 1,
                stream: LogStream::Stdout,
                line: "hello".into(),
            },
        }
    }

    async fn next(rx: &mut mpsc::Receiver<Result<Watched, Error>>) -> (String, u64, u64) {
        let watched = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .expect("not an error");
        (
            watched.event.task_id.clone(),
            watched.event.seq,
            watched.position,
        )
    }

    #[tokio::test]
    async fn a_follower_gets_what_was_stored_then_each_commit_once_and_in_order() {
        let store = Arc::new(MemoryStore::new());
        let hub = Hub::default();
        store
            .create_tasks(vec![task("t1", "a"), task("t2", "b")])
            .await
            .expect("created");
        let (tx, mut rx) = mpsc::channel(16);
        let follower = tokio::spawn(follow(store.clone(), 0, None, hub.watch_fleet(), tx));
        assert_eq!(next(&mut rx).await, ("t1".into(), 1, position(1, 1)));
        assert_eq!(next(&mut rx).await, ("t2".into(), 1, position(1, 2)));

        // A commit with a log line: the follower is woken, sends the state
        // change, and not the log line.
        store
            .write(vec![
                Write::Event(log_line("t1", 2)),
                Write::Event(state_event("t1", 3, TaskState::Running)),
            ])
            .await
            .expect("answer")
            .expect("committed");
        hub.fleet_changed();
        assert_eq!(next(&mut rx).await, ("t1".into(), 3, position(2, 1)));

        hub.close_all();
        tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("a stopping server ends its followers")
            .expect("no panic");
        assert!(rx.recv().await.is_none(), "nothing more");
    }

    #[tokio::test]
    async fn a_follower_resumes_after_a_position_and_sees_only_its_tenants() {
        let store = Arc::new(MemoryStore::new());
        let hub = Hub::default();
        store
            .create_tasks(vec![task("t1", "a"), task("t2", "b"), task("t3", "a")])
            .await
            .expect("created");
        let (tx, mut rx) = mpsc::channel(16);
        let follower = tokio::spawn(follow(
            store.clone(),
            position(1, 1),
            Some(vec!["a".into()]),
            hub.watch_fleet(),
            tx,
        ));
        assert_eq!(
            next(&mut rx).await,
            ("t3".into(), 1, position(1, 3)),
            "after the first, tenant a only"
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("a follower whose client left ends without another event")
            .expect("no panic");
    }
}
