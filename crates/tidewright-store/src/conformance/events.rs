//! The suite's part on events: replay after any number, events of several
//! tasks in one write, and the fleet's stream in commit order.

use super::*;

pub async fn events_replay_after_any_sequence_number(mut backend: impl Backend) {
    let store = with_tasks(&mut backend, &["t1", "t2"]).await;
    let mut writes: Vec<Write> = (2..=10)
        .map(|seq| Write::Event(log("t1", seq, &format!("line {seq}"))))
        .collect();
    writes.push(Write::Event(event("t1", 11, TaskState::Succeeded)));
    writes.push(Write::Event(log("t2", 2, "other task")));
    commit(&*store, writes).await;
    let after = |after, limit| store.events_after("t1", after, limit);
    let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(after(0, 100).await.expect("all")),
        (1..=11).collect::<Vec<_>>()
    );
    assert_eq!(seqs(after(4, 3).await.expect("a page")), [5, 6, 7]);
    assert_eq!(seqs(after(10, 100).await.expect("the last")), [11]);
    assert!(after(11, 100).await.expect("none").is_empty());
    let replayed = after(6, 1).await.expect("one");
    assert_eq!(replayed, [log("t1", 7, "line 7")], "events read back whole");
    assert_eq!(
        after(10, 1).await.expect("final")[0].kind,
        event("t1", 11, TaskState::Succeeded).kind
    );
    assert!(
        store
            .events_after("nope", 0, 10)
            .await
            .expect("none")
            .is_empty()
    );
}

/// Events of two tasks interleaved in one write (which the databases store
/// as a row per task) read back one by one: from any number, whole, in the
/// fleet's order as written, and as each task's newest number.
pub async fn interleaved_events_of_one_write_read_back_one_by_one(mut backend: impl Backend) {
    let store = backend.open().await;
    write_interleaved(&*store).await;
    let written = |(task, seq): &(&str, u64)| event(task, *seq, TaskState::Running);
    let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    let from_3 = store.events_after("t1", 2, 100).await.expect("read");
    assert_eq!(
        from_3.first(),
        Some(&written(&("t1", 3))),
        "each event whole"
    );
    assert_eq!(seqs(from_3), [3, 4]);
    assert_eq!(
        seqs(store.events_after("t1", 0, 2).await.expect("read")),
        [1, 2]
    );
    assert!(
        store
            .events_after("t1", 4, 100)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        seqs(store.events_after("t2", 1, 100).await.expect("read")),
        [2, 3]
    );
    let task = store.get_task("t1").await.expect("get").expect("exists");
    assert_eq!(task.last_seq, 4);
    let fleet = store.fleet_events_after(0, None, 100).await.expect("fleet");
    let named: Vec<Event> = fleet
        .events
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.seq > 1)
        .collect();
    let expected: Vec<Event> = INTERLEAVED.iter().map(written).collect();
    assert_eq!(
        named, expected,
        "the fleet's order as written, each event whole"
    );
}

pub async fn the_fleet_sees_every_event_but_log_lines_and_session_items_in_commit_order_and_resumes(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    assert_eq!(store.fleet_head().await.expect("head"), 0, "nothing yet");
    create(
        &*store,
        vec![
            new_task("t1", "team-a", None),
            new_task("t2", "team-b", None),
        ],
    )
    .await;
    // Handed over without waiting, interleaved across tasks, with log lines
    // and session items among them that the fleet does not carry.
    let mut commits = Vec::new();
    let mut expected = vec![("t1", 1), ("t2", 1)];
    for seq in 2..=40u64 {
        let (task, other) = if seq % 3 == 0 {
            ("t2", "t1")
        } else {
            ("t1", "t2")
        };
        let own = match seq % 2 {
            0 => log(other, seq, "not in the fleet"),
            _ => said(other, seq, "not in the fleet"),
        };
        commits.push(store.write(vec![
            Write::Event(event(task, seq, TaskState::Running)),
            Write::Event(own),
        ]));
        expected.push((task, seq));
    }
    for commit in commits {
        commit.await.expect("an answer").expect("committed");
    }
    let page = store
        .fleet_events_after(0, None, 1000)
        .await
        .expect("fleet");
    let fleet = page.events;
    let seen: Vec<(&str, u64)> = fleet
        .iter()
        .map(|(_, e)| (e.task_id.as_str(), e.seq))
        .collect();
    assert_eq!(
        seen, expected,
        "every event but logs and session items, in commit order"
    );
    assert!(
        fleet.windows(2).all(|w| w[0].0 < w[1].0),
        "positions rise: {:?}",
        fleet.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert_eq!(
        fleet[5].1,
        event(expected[5].0, expected[5].1, TaskState::Running),
        "read back whole"
    );
    let head = store.fleet_head().await.expect("head");
    assert_eq!(head, fleet.last().expect("some").0);
    assert_eq!((page.through, page.full), (head, false));

    // Resuming after any position gives exactly what follows it, a page at
    // a time.
    let after = fleet[9].0;
    let next = store
        .fleet_events_after(after, None, 4)
        .await
        .expect("page");
    assert_eq!(next.events, fleet[10..14].to_vec());
    assert_eq!((next.through, next.full), (fleet[13].0, true));
    let none = store
        .fleet_events_after(head, None, 10)
        .await
        .expect("none");
    assert!(none.events.is_empty());
    assert_eq!((none.through, none.full), (head, false));

    // Only the tenants asked for, in the same order and positions; a page
    // of other tenants' events still moves on.
    let team_b = store
        .fleet_events_after(0, Some(vec!["team-b".into()]), 1000)
        .await
        .expect("team-b");
    let only_b: Vec<(u64, Event)> = fleet
        .iter()
        .filter(|(_, e)| e.task_id == "t2")
        .cloned()
        .collect();
    assert_eq!(team_b.events, only_b);
    let team_c = store
        .fleet_events_after(0, Some(vec!["team-c".into()]), 5)
        .await
        .expect("team-c");
    assert!(team_c.events.is_empty());
    assert_eq!(
        (team_c.through, team_c.full),
        (fleet[4].0, true),
        "looked at five"
    );

    // After a restart, positions go on above every one handed out before.
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.fleet_head().await.expect("head"), head);
    create(&*store, vec![new_task("t3", "team-a", None)]).await;
    let next = store
        .fleet_events_after(head, None, 10)
        .await
        .expect("next")
        .events;
    assert_eq!(next.len(), 1);
    assert!(next[0].0 > head && next[0].1.task_id == "t3", "{next:?}");
}
