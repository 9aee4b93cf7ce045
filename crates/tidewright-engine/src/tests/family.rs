//! Parent and child tasks in the engine: a parent's end cancels its
//! children, those in memory in the same round and cold ones as they are
//! read back; a child whose parent has ended (it was admitted late, or read
//! back after a restart that came between the two) is cancelled when it
//! comes into memory. What children spend counts against their parent's
//! budget, before a restart as after it.

use tidewright_core::AttemptKey;
use tidewright_core::family::{DEPTH_LABEL, PARENT_LABEL, PARENT_STEP_LABEL};

use super::budget::{report_cost, stopped_for_budget};
use super::cold::{capped, on_gpu};
use super::*;

/// `steps` as the child of `parent`'s step `lead`.
fn child(id: &str, parent: &str, steps: Vec<StepSpec>) -> TaskSpec {
    let mut spec = TaskSpec {
        name: id.to_string(),
        steps,
        ..TaskSpec::default()
    };
    spec.labels.insert(PARENT_LABEL.into(), parent.into());
    spec.labels.insert(PARENT_STEP_LABEL.into(), "lead".into());
    spec.labels.insert(DEPTH_LABEL.into(), "1".into());
    spec
}

/// A cost of `usd` dollars.
fn dollars(usd: f64) -> tidewright_core::Cost {
    tidewright_core::Cost {
        usd,
        ..tidewright_core::Cost::default()
    }
}

/// Task p, a budget of $1, its step `lead` given to a worker with `slots`.
async fn lead_with_a_budget(h: &Harness, slots: u32) -> (FakeWorker, AttemptKey) {
    let mut parent = TaskSpec {
        name: "p".into(),
        steps: vec![noop("lead")],
        ..TaskSpec::default()
    };
    parent.budget = Some(tidewright_core::Budget {
        usd: Some(1.0),
        tokens: None,
        approvers: Vec::new(),
    });
    h.try_submit("p", "default", parent, 1)
        .await
        .expect("submitted");
    let mut w = h.worker("w", &["shell"], slots).await;
    h.engine.credits(w.id, 1).await.expect("credits");
    let lead = w.assigned().await;
    (w, lead)
}

/// p's child c, submitted by its lead, its step `a` given to `w`.
async fn running_child(h: &Harness, w: &mut FakeWorker) -> AttemptKey {
    h.try_submit("c", "default", child("c", "p", vec![noop("a")]), 2)
        .await
        .expect("submitted");
    h.engine.credits(w.id, 1).await.expect("credits");
    w.assigned().await
}

#[tokio::test]
async fn a_parents_end_cancels_its_children_in_memory_and_cold() {
    // One task in memory at most past the running parent: two of the
    // three children are held cold.
    let (h, _) = capped(MemoryStore::new(), Vec::new(), 2);
    h.submit("p", 0, 1, vec![noop("lead")]).await;
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    let lead = w.assigned().await;
    for (n, id) in ["c1", "c2", "c3"].iter().enumerate() {
        h.try_submit(
            id,
            "default",
            child(id, "p", vec![on_gpu("a")]),
            10 + n as Micros,
        )
        .await
        .expect("submitted");
    }
    // A grandchild: ended with its parent c1.
    h.try_submit("g1", "default", child("g1", "c1", vec![on_gpu("a")]), 20)
        .await
        .expect("submitted");
    // Another task's child is not this one's.
    h.submit("other", 0, 30, vec![on_gpu("a")]).await;
    h.report(&w, lead, AttemptEnd::Succeeded).await;
    h.until_state("p", TaskState::Succeeded).await;
    // c1 in memory, in the same round as p's end, knowing how it ended;
    // c2 and c3 as they are read back.
    h.until("c1", "the child in memory is cancelled", |t| {
        t.state == TaskState::Cancelled && t.message == "its parent task p ended (succeeded)"
    })
    .await;
    for id in ["c2", "c3"] {
        h.until(id, "each cold child is cancelled", |t| {
            t.state == TaskState::Cancelled && t.message.starts_with("its parent task p ")
        })
        .await;
    }
    h.until("g1", "the grandchild too", |t| {
        t.state == TaskState::Cancelled && t.message.starts_with("its parent task c1 ")
    })
    .await;
    h.settled().await;
    assert_eq!(h.task("other").await.state, TaskState::Queued);
}

#[tokio::test]
async fn a_child_whose_parent_has_ended_is_cancelled_when_it_comes_into_memory() {
    // Admitted after its parent ended (a submit racing the parent's end).
    let h = Harness::new();
    h.try_submit("late", "default", child("late", "gone", vec![noop("a")]), 1)
        .await
        .expect("submitted");
    h.until("late", "cancelled on admission", |t| {
        t.state == TaskState::Cancelled && t.message.contains("its parent task gone has ended")
    })
    .await;

    // Read back after a restart that came between the parent's end and
    // its children's: the parent is neither in memory nor to be read.
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        h.submit("p", 0, 1, vec![noop("lead")]).await;
        h.try_submit("c", "default", child("c", "p", vec![on_gpu("a")]), 2)
            .await
            .expect("submitted");
        h.settled().await;
    }
    // Held cold (a queued task nobody started), it is read back when a
    // worker could take it, and cancelled then, never run.
    let h = Harness::start(
        store.reopen(),
        vec!["c".into()],
        liveness(Duration::from_secs(30)),
    );
    let mut gpu = h.ready_worker("gpu", &["gpu"], 1).await;
    h.until("c", "the orphan is cancelled once read back", |t| {
        t.state == TaskState::Cancelled && t.message == "its parent task p has ended"
    })
    .await;
    h.settled().await;
    assert!(gpu.idle(), "the orphan never ran");
}

#[tokio::test]
async fn what_a_child_spends_counts_against_its_parents_budget_and_both_wait_for_a_raise() {
    let h = Harness::new();
    let (mut w, lead) = lead_with_a_budget(&h, 2).await;
    let work = running_child(&h, &mut w).await;
    assert_eq!(work, key("c", "a", 1));
    // Within the parent's budget: nothing happens.
    h.spend(&w, &work, dollars(0.6)).await;
    h.settled().await;
    assert!(w.idle());
    // The child's spend crosses the parent's budget: both stop.
    h.spend(&w, &work, dollars(1.2)).await;
    let stopped = w.stopped(2).await;
    for (_, reason) in &stopped {
        assert!(reason.starts_with("budget: "), "{reason}");
    }
    assert_eq!(
        stopped.iter().map(|s| &s.0).collect::<Vec<_>>(),
        [&work, &lead]
    );
    h.until("p", "the parent pauses", |t| {
        t.state == TaskState::Paused && t.message.starts_with("budget: the task spent $1.2000")
    })
    .await;
    h.until("c", "the child pauses with it", |t| {
        t.state == TaskState::Paused
            && t.message == "budget: its parent task p is paused for its budget"
    })
    .await;
    for (attempt, cost) in [(lead, 0.0), (work, 1.2)] {
        report_cost(&h, &w, attempt, AttemptEnd::Cancelled, dollars(cost)).await;
    }
    h.engine.credits(w.id, 2).await.expect("credits");
    h.settled().await;
    assert!(
        w.idle(),
        "nothing of either starts while the budget is spent"
    );

    // Raised: both go on.
    h.engine
        .raise_budget(
            "p".into(),
            tidewright_core::Budget {
                usd: Some(5.0),
                tokens: None,
                approvers: Vec::new(),
            },
        )
        .await
        .expect("raise");
    let mut again = vec![w.assigned().await, w.assigned().await];
    again.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    assert_eq!(again, [key("c", "a", 2), key("p", "lead", 2)]);
}

#[tokio::test]
async fn a_parent_read_back_after_a_restart_is_charged_with_what_its_children_spent_before() {
    // Before the restart: p (a $1 budget) runs its lead; its child c1
    // spent $0.70 and succeeded; c2 spent $0.10 on one step and still
    // runs its other.
    let store = MemoryStore::new();
    let running = {
        let h = Harness::new_on(store.clone());
        let (mut w, lead) = lead_with_a_budget(&h, 4).await;
        h.try_submit("c1", "default", child("c1", "p", vec![noop("a")]), 2)
            .await
            .expect("submitted");
        h.engine.credits(w.id, 1).await.expect("credits");
        let c1 = w.assigned().await;
        report_cost(&h, &w, c1, AttemptEnd::Succeeded, dollars(0.7)).await;
        h.try_submit(
            "c2",
            "default",
            child("c2", "p", vec![noop("a"), noop("b")]),
            3,
        )
        .await
        .expect("submitted");
        h.engine.credits(w.id, 2).await.expect("credits");
        let mut c2 = vec![w.assigned().await, w.assigned().await];
        c2.sort_by(|x, y| x.step_id.cmp(&y.step_id));
        let b = c2.pop().expect("b");
        let a = c2.pop().expect("a");
        report_cost(&h, &w, a, AttemptEnd::Succeeded, dollars(0.1)).await;
        h.until_state("c1", TaskState::Succeeded).await;
        h.settled().await;
        vec![lead, b]
    };

    // Read back, c2 and p in one piece (the child first), c1 ended: p is
    // charged $0.80, c2's $0.10 once.
    let h = Harness::start(
        store.reopen(),
        vec!["c2".into(), "p".into()],
        liveness(Duration::from_secs(30)),
    );
    let mut w = h.reconnect("w", &["shell"], 4, running.clone()).await;
    h.settled().await;
    let lead = running[0].clone();
    h.spend(&w, &lead, dollars(0.15)).await;
    h.settled().await;
    assert!(w.idle(), "$0.95 of $1: nothing stops");
    assert_eq!(h.task("p").await.state, TaskState::Running);
    // $1.05: the parent pauses, and the child with it.
    h.spend(&w, &lead, dollars(0.25)).await;
    h.until("p", "the parent pauses", |t| {
        t.state == TaskState::Paused && t.message.starts_with("budget: the task spent $1.0500")
    })
    .await;
    h.until_state("c2", TaskState::Paused).await;
    stopped_for_budget(&mut w, &lead).await;
}

#[tokio::test]
async fn a_retried_parent_is_charged_with_what_its_children_spent_before() {
    let h = Harness::new();
    let (mut w, lead) = lead_with_a_budget(&h, 2).await;
    let work = running_child(&h, &mut w).await;
    report_cost(&h, &w, work, AttemptEnd::Succeeded, dollars(0.8)).await;
    h.report(&w, lead, AttemptEnd::Failed).await;
    h.until_state("p", TaskState::Failed).await;
    // Retried, its child's $0.80 still counts: $0.30 more crosses $1.
    h.engine.reopen(h.task("p").await).await.expect("retried");
    h.engine.credits(w.id, 1).await.expect("credits");
    let again = w.assigned().await;
    assert_eq!(again, key("p", "lead", 2));
    h.spend(&w, &again, dollars(0.3)).await;
    stopped_for_budget(&mut w, &again).await;
    h.until("p", "the retried parent pauses", |t| {
        t.state == TaskState::Paused && t.message.starts_with("budget: the task spent $1.1000")
    })
    .await;
}
