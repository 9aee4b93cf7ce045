//! Retention in the engine: a removal decided by a sweep never takes a task
//! a retry brought back, and a task past its window cannot be brought back.

use tidewright_store::TaskRecord;
use tidewright_store::retention::{Expiring, Retention};

use super::*;

/// An engine that keeps finished tasks `window` microseconds.
fn keeping(store: MemoryStore, window: Micros) -> Harness {
    let settings = Settings {
        retention: Retention {
            default: Some(window),
            ..Retention::default()
        },
        ..settings()
    };
    Harness::start_on(
        Arc::new(store.clone()),
        store,
        Vec::new(),
        settings,
        StoredTenants::default(),
    )
}

/// A task with one step no worker takes, cancelled: finished.
async fn cancelled(h: &Harness, id: &str) -> TaskRecord {
    h.submit(id, 0, 1, vec![noop("a")]).await;
    h.engine
        .cancel(id.into(), "done with it".into())
        .await
        .expect("cancel");
    h.until_state(id, TaskState::Cancelled).await;
    h.task(id).await
}

fn found(task: &TaskRecord) -> Expiring {
    Expiring {
        id: task.id.clone(),
        tenant: task.tenant.clone(),
        finished_at: task.finished_at,
    }
}

#[tokio::test]
async fn a_removal_takes_finished_tasks_but_one_a_retry_brought_back() {
    let h = keeping(MemoryStore::new(), 3_600_000_000);
    let gone = cancelled(&h, "gone").await;
    let retried = cancelled(&h, "retried").await;
    h.engine.reopen(retried.clone()).await.expect("reopened");
    // The sweep found both before the retry; the engine holds the retried.
    h.engine
        .expire(vec![found(&gone), found(&retried)], now_micros())
        .await
        .expect("expired");
    assert_eq!(h.store.get_task("gone").await.expect("read"), None);
    assert!(h.store.expired("gone").await.expect("read").is_some());
    assert_eq!(h.task("retried").await.state, TaskState::Running);
    assert_eq!(h.store.expired("retried").await.expect("read"), None);
}

#[tokio::test]
async fn a_task_past_its_window_cannot_be_brought_back() {
    // Kept a microsecond: expired as soon as it finished.
    let h = keeping(MemoryStore::new(), 1);
    let task = cancelled(&h, "t").await;
    let refused = h.engine.reopen(task).await.expect_err("expired");
    match refused {
        Error::NotFound(message) => assert!(message.contains("expired at"), "{message}"),
        other => panic!("expected not found, got {other:?}"),
    }
    assert_eq!(h.task("t").await.state, TaskState::Cancelled, "untouched");
}

#[tokio::test]
async fn a_sweep_removes_what_expired_and_keeps_the_rest() {
    let store = MemoryStore::new();
    let h = keeping(store.clone(), 1);
    cancelled(&h, "old").await;
    h.submit("running", 0, 2, vec![noop("a")]).await;
    let full = crate::retention::sweep(&h.engine, &store)
        .await
        .expect("swept");
    assert!(!full, "one task is less than a batch");
    assert_eq!(store.get_task("old").await.expect("read"), None);
    assert!(store.get_task("running").await.expect("read").is_some());
}
