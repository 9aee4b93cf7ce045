//! Session items in the engine: those of the attempt a worker runs become
//! its step's events, in order, with the cost the worker said; a worker
//! that does not run the attempt (a zombie after a reassignment) adds
//! nothing.

use tidewright_core::EventKind;
use tidewright_core::replay::timeline;
use tidewright_core::session_item::SessionItem;

use super::*;

#[tokio::test]
async fn the_running_attempts_items_become_its_steps_events_and_a_strangers_do_not() {
    let h = Harness::new();
    h.submit("t", 0, 1, vec![StepSpec::shell("s", &["true"])])
        .await;
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    let stranger = h.ready_worker("x", &["gpu"], 1).await;
    let attempt = w.assigned().await;
    let call = SessionItem::Call {
        id: "c1".into(),
        tool: "Bash".into(),
        input: r#"{"command":"ls"}"#.into(),
    };
    let output = SessionItem::Output {
        id: "c1".into(),
        output: "a.rs".into(),
        error: false,
    };
    h.engine
        .session_items(stranger.id, attempt.clone(), vec![call.clone()], 9.0)
        .await
        .expect("sent");
    h.engine
        .session_items(w.id, attempt.clone(), vec![call], 0.01)
        .await
        .expect("sent");
    h.engine
        .session_items(w.id, attempt, vec![output], 0.02)
        .await
        .expect("sent");
    h.settled().await;
    let events = h.store.events_after("t", 0, 1000).await.expect("events");
    let items: Vec<(f64, &SessionItem)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SessionItem { item, usd, .. } => Some((*usd, item)),
            _ => None,
        })
        .collect();
    assert_eq!(items.len(), 2, "the stranger's adds nothing: {items:?}");
    assert_eq!((items[0].0, items[1].0), (0.01, 0.02));
    let entries = timeline("s", &events);
    let calls: Vec<_> = entries
        .iter()
        .filter(|e| matches!(e.what, tidewright_core::replay::What::Call { .. }))
        .collect();
    assert_eq!(calls.len(), 1, "{entries:?}");
    assert!(
        matches!(&calls[0].what, tidewright_core::replay::What::Call { output: Some(o), .. } if o == "a.rs")
    );
    // A call is priced as it was made.
    assert_eq!(calls[0].usd, 0.01);
}
