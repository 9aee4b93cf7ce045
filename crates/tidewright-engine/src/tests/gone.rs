//! Workers that left are listed with when and why, until they come back
//! under their name.

use super::*;

#[tokio::test]
async fn a_worker_that_left_is_listed_as_gone_with_why_until_it_is_back() {
    let h = Harness::new();
    let w1 = h.worker("w1", &["shell"], 1).await;
    let w2 = h.worker("w2", &["shell"], 1).await;
    h.engine.disconnected(w1.id).await.expect("gone");
    let fleet = h.engine.list_agents().await.expect("fleet");
    let names: Vec<&str> = fleet.workers.iter().map(|w| w.info.name.as_str()).collect();
    assert_eq!(names, ["w2"]);
    let gone: Vec<(&str, &str)> = fleet
        .gone
        .iter()
        .map(|g| (g.info.name.as_str(), g.reason.as_str()))
        .collect();
    assert_eq!(gone, [("w1", "worker w1 disconnected")]);
    assert!(fleet.gone[0].gone_at >= fleet.gone[0].connected_at);
    // Newest first.
    h.engine.disconnected(w2.id).await.expect("gone");
    let fleet = h.engine.list_agents().await.expect("fleet");
    let names: Vec<&str> = fleet.gone.iter().map(|g| g.info.name.as_str()).collect();
    assert_eq!(names, ["w2", "w1"]);
    // Back under its name: connected, not gone.
    let _back = h.worker("w1", &["shell"], 1).await;
    let fleet = h.engine.list_agents().await.expect("fleet");
    let names: Vec<&str> = fleet.gone.iter().map(|g| g.info.name.as_str()).collect();
    assert_eq!(names, ["w2"]);
}

#[tokio::test]
async fn a_drain_is_answered_behind_the_assignments_already_made_and_nothing_follows() {
    let h = Harness::new();
    let mut w = h.ready_worker("w", &["shell"], 4).await;
    h.submit("t", 0, 1, vec![noop("a")]).await;
    h.engine.drain(w.id).await.expect("drained");
    assert_eq!(w.assigned().await, key("t", "a", 1));
    assert_eq!(w.next().await, ToWorker::DrainTaken);
    h.submit("later", 0, 2, vec![noop("b")]).await;
    h.engine.credits(w.id, 1).await.expect("credits");
    h.settled().await;
    assert!(w.idle(), "a draining worker gets no more work");
}
