//! The suite's part on schedules.

use super::*;
use crate::schedules::{Schedule, ScheduleRun};

/// Schedules are created, replaced (their last tick and history) and
/// removed, by tenant and name, kept whole with their task, and survive a
/// reopen.
pub async fn schedules_are_kept_replaced_and_removed(mut backend: impl Backend) {
    let store = backend.open().await;
    let schedule = |tenant: &str, name: &str| Schedule {
        tenant: tenant.into(),
        spec: tidewright_core::schedule::ScheduleSpec {
            name: name.into(),
            cron: "0 3 * * 1-5".into(),
            timezone: "Europe/Rome".into(),
            task: Some(tidewright_core::TaskSpec {
                name: "nightly \"quoted\" ünïcode".into(),
                ..tidewright_core::TaskSpec::default()
            }),
            ..tidewright_core::schedule::ScheduleSpec::default()
        },
        created_at: 5,
        handled: 5,
        history: Vec::new(),
    };
    assert!(store.schedules().await.expect("none").is_empty());
    commit(
        &*store,
        vec![
            Write::Schedule(Box::new(schedule("team", "nightly"))),
            Write::Schedule(Box::new(schedule("other", "nightly"))),
            Write::Schedule(Box::new(schedule("team", "hourly"))),
        ],
    )
    .await;
    let mut ticked = schedule("team", "nightly");
    ticked.record(ScheduleRun {
        tick: 100,
        last_tick: 100,
        ticks: None,
        task_id: "t1".into(),
        skipped: String::new(),
        at: 101,
    });
    commit(
        &*store,
        vec![
            Write::Schedule(Box::new(ticked.clone())),
            Write::RemoveSchedule {
                tenant: "team".into(),
                name: "hourly".into(),
            },
        ],
    )
    .await;
    drop(store);
    let store = backend.open().await;
    let kept = store.schedules().await.expect("schedules");
    let keys: Vec<(&str, &str)> = kept
        .iter()
        .map(|s| (s.tenant.as_str(), s.spec.name.as_str()))
        .collect();
    assert_eq!(keys, [("other", "nightly"), ("team", "nightly")]);
    assert_eq!(kept[1], ticked, "kept whole");
    assert_eq!(kept[1].handled, 100);
    // One read by its tenant and name.
    let one = store.schedule("team", "nightly").await.expect("read");
    assert_eq!(one.as_ref(), Some(&ticked));
    for (tenant, name) in [
        ("team", "hourly"),
        ("nobody", "nightly"),
        ("team", "Nightly"),
    ] {
        let none = store.schedule(tenant, name).await.expect("read");
        assert!(none.is_none(), "{tenant}/{name}");
    }
}
