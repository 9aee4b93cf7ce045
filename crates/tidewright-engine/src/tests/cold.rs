//! The compact queue in the engine: past its cap on tasks in memory, queued
//! tasks nobody started are held cold and read back from the store as they
//! near the head. Order, cancels and restarts work as for any task.

use super::*;

/// An engine over `store` that holds at most `hot_tasks` tasks whole, and
/// the list of tasks it read back by id (cold ones).
pub(super) fn capped(
    store: MemoryStore,
    backlog: Vec<String>,
    hot_tasks: usize,
) -> (Harness, Arc<std::sync::Mutex<Vec<String>>>) {
    let watched = SlowBacklog::new(store.clone(), Arc::new(tokio::sync::Semaphore::new(1)));
    let read_by_id = watched.read_by_id.clone();
    let settings = Settings {
        hot_tasks,
        ..settings()
    };
    let h = Harness::start_on(
        Arc::new(watched),
        store,
        backlog,
        settings,
        StoredTenants::default(),
    );
    (h, read_by_id)
}

pub(super) fn on_gpu(id: &str) -> StepSpec {
    noop(id).needing(&["gpu"])
}

pub(super) fn sorted(read: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    let mut read = read.lock().expect("not poisoned").clone();
    read.sort();
    read.dedup();
    read
}

/// Takes `n` steps one at a time, each reported done before the next.
async fn run_one_at_a_time(h: &Harness, w: &mut FakeWorker, n: usize) -> Vec<String> {
    let mut order = Vec::new();
    for _ in 0..n {
        h.engine.credits(w.id, 1).await.expect("credits");
        let attempt = w.assigned().await;
        order.push(attempt.task_id.clone());
        h.report(w, attempt, AttemptEnd::Succeeded).await;
    }
    order
}

#[tokio::test]
async fn past_the_cap_queued_tasks_wait_in_the_store_and_run_in_queue_order() {
    let (h, read_by_id) = capped(MemoryStore::new(), Vec::new(), 2);
    for (n, id) in ["t1", "t2", "t3", "t4", "t5"].iter().enumerate() {
        h.submit(id, 0, n as Micros + 1, vec![on_gpu("a")]).await;
    }
    h.submit("urgent", 9, 6, vec![on_gpu("a")]).await;
    h.settled().await;
    assert!(
        sorted(&read_by_id).is_empty(),
        "nothing is read back before a worker wants it"
    );

    let mut gpu = h.worker("gpu", &["gpu"], 1).await;
    let order = run_one_at_a_time(&h, &mut gpu, 6).await;
    assert_eq!(order, ["urgent", "t1", "t2", "t3", "t4", "t5"]);
    assert_eq!(
        sorted(&read_by_id),
        ["t3", "t4", "t5", "urgent"],
        "past two tasks, the newest were held cold and read back"
    );
    for id in ["t1", "t3", "t5", "urgent"] {
        h.until(id, "every task runs once and succeeds", |t| {
            t.state == TaskState::Succeeded && t.steps[0].attempt == 1
        })
        .await;
    }
    h.settled().await;
    assert!(gpu.idle(), "nothing runs twice");
}

#[tokio::test]
async fn a_cancel_of_a_cold_task_reads_it_back_and_it_never_runs() {
    let (h, read_by_id) = capped(MemoryStore::new(), Vec::new(), 1);
    h.submit("kept", 0, 1, vec![on_gpu("a")]).await;
    h.submit(
        "dropped",
        0,
        2,
        vec![on_gpu("a"), on_gpu("b").after(&["a"])],
    )
    .await;
    let answer = h
        .engine
        .cancel("dropped".into(), "not needed".into())
        .await
        .expect("cancel");
    assert!(matches!(answer, CancelAnswer::Done), "committed");
    assert_eq!(sorted(&read_by_id), ["dropped"]);
    let dropped = h.task("dropped").await;
    assert_eq!(dropped.state, TaskState::Cancelled);
    assert!(dropped.steps.iter().all(|s| s.attempt == 0), "{dropped:#?}");

    let mut gpu = h.ready_worker("gpu", &["gpu"], 2).await;
    assert_eq!(gpu.assigned().await, key("kept", "a", 1));
    h.settled().await;
    assert!(gpu.idle(), "the cancelled task's steps left the queue");
}

#[tokio::test]
async fn a_restart_holds_a_deep_backlog_cold_and_runs_it_all_in_order() {
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        h.submit("running", 0, 1, vec![noop("a")]).await;
        let mut w = h.ready_worker("w", &["shell"], 1).await;
        assert_eq!(w.assigned().await, key("running", "a", 1));
        for n in 1..=5 {
            h.submit(&format!("q{n}"), 0, 10 + n, vec![on_gpu("a")])
                .await;
        }
        h.settled().await;
    }
    let backlog = store.unfinished_task_ids().await.expect("ids");
    assert_eq!(backlog.len(), 6);
    let (h, read_by_id) = capped(store.reopen(), backlog, 2);

    // The running task comes back whole: its worker reclaims it.
    let w = h
        .reconnect("w", &["shell"], 1, vec![key("running", "a", 1)])
        .await;
    h.report(&w, key("running", "a", 1), AttemptEnd::Succeeded)
        .await;
    h.until_state("running", TaskState::Succeeded).await;

    let mut gpu = h.worker("gpu", &["gpu"], 1).await;
    let order = run_one_at_a_time(&h, &mut gpu, 5).await;
    assert_eq!(order, ["q1", "q2", "q3", "q4", "q5"]);
    let read = sorted(&read_by_id);
    assert!(
        !read.is_empty() && read.iter().all(|id| id.starts_with('q')),
        "queued tasks past the cap were held cold: {read:?}"
    );
    h.until_state("q5", TaskState::Succeeded).await;
}
