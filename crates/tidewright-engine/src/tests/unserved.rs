//! A queued step that no connected worker can run says why: in its first
//! event, in every read while it lasts, and in an event when the last
//! worker that could run it has been gone past the grace. A worker that
//! can run it takes it at once.

use super::*;

/// The messages of step `step`'s queued events.
async fn queued_messages(h: &Harness, task: &str, step: &str) -> Vec<String> {
    let events = h.store.events_after(task, 0, 100).await.expect("events");
    events
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::StepState {
                step: s,
                state: StepState::Queued,
                message,
                ..
            } if s == step => Some(message),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_step_no_worker_can_run_says_why_until_one_that_can_connects() {
    let h = Harness::new();
    let mut cpu = h.ready_worker("cpu", &["shell"], 2).await;
    h.submit("t", 0, 1, vec![noop("train").needing(&["gpu"])])
        .await;
    let said = "no connected worker offers gpu: a worker started with --capability gpu offers it";
    assert_eq!(queued_messages(&h, "t", "train").await, [said]);
    let needs = tidewright_core::queue::capabilities(&["gpu"]);
    assert_eq!(h.engine.unserved(&needs).as_deref(), Some(said));
    h.settled().await;
    assert!(cpu.idle());
    // One that can run it connects: the reason is gone, and it runs.
    let mut gpu = h.worker("gpu", &["gpu"], 1).await;
    assert_eq!(h.engine.unserved(&needs), None);
    h.engine.credits(gpu.id, 1).await.expect("credits");
    assert_eq!(gpu.assigned().await, key("t", "train", 1));
}

#[tokio::test]
async fn steps_whose_last_worker_left_are_told_after_the_grace_but_not_for_a_restart() {
    let h = Harness::new();
    let gpu = h.worker("gpu", &["gpu"], 1).await;
    let tpu = h.worker("tpu", &["tpu"], 1).await;
    // Queued steps neither worker has taken (they asked for none).
    h.submit("g", 0, 1, vec![noop("a").needing(&["gpu"])]).await;
    h.submit(
        "t",
        0,
        2,
        vec![noop("a").needing(&["tpu"]), noop("b").needing(&["tpu"])],
    )
    .await;
    assert_eq!(queued_messages(&h, "t", "a").await, [""]);
    // The gpu worker restarts: gone and back at once. The tpu worker is
    // gone for good, after it.
    h.engine.disconnected(gpu.id).await.expect("gone");
    let _back = h.worker("gpu", &["gpu"], 1).await;
    h.engine.disconnected(tpu.id).await.expect("gone");
    let said = "no connected worker offers tpu: a worker started with --capability tpu offers it";
    let deadline = tokio::time::Instant::now()
        + PROMPTLY
        + Duration::from_micros(crate::unserved::GRACE as u64);
    loop {
        let told = queued_messages(&h, "t", "b").await;
        if told.len() == 2 {
            assert_eq!(told, ["", said]);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not told: {told:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queued_messages(&h, "t", "a").await, ["", said]);
    // The gpu steps lost their worker first, and it came back: no word.
    assert_eq!(queued_messages(&h, "g", "a").await, [""]);
}
