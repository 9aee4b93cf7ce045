//! The suite's part on tasks: creating and reading them back, idempotency
//! keys, the order of writes, listings, conflicts, audit records, reopening,
//! recovery's reads, and a task made with its first dispatch.

use super::*;

pub async fn created_tasks_read_back_with_their_steps_and_events(mut backend: impl Backend) {
    let store = backend.open().await;
    let mut task = new_task("t1", "default", None);
    task.plan_json = r#"{"steps":[]}"#.into();
    task.trace_context = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into();
    task.spec.labels.insert("team".into(), "infra".into());
    task.spec.priority = 7;
    let created = create(&*store, vec![task.clone()]).await;
    assert_eq!(created, [Created::New("t1".into())]);
    let read = store.get_task("t1").await.expect("get").expect("exists");
    assert_eq!(read.spec, task.spec, "the spec reads back whole");
    assert_eq!(
        (read.state, read.tenant.as_str(), read.created_at),
        (TaskState::Queued, "default", 1)
    );
    assert_eq!(read.plan_json, task.plan_json);
    assert_eq!(read.trace_context, task.trace_context);
    let steps: Vec<(&str, StepState)> = read.steps.iter().map(|s| (&*s.id, s.state)).collect();
    assert_eq!(
        steps,
        [("a", StepState::Queued), ("b", StepState::Waiting)],
        "steps in the spec's order"
    );
    assert_eq!(read.last_seq, 1);
    assert_eq!(
        store.events_after("t1", 0, 10).await.expect("events"),
        task.events
    );
    assert!(store.get_task("nope").await.expect("get").is_none());

    // A task created already failed (an unusable plan) is finished at once.
    let mut failed = new_task("t2", "default", None);
    failed.state = TaskState::Failed;
    failed.message = "the plan cannot run".into();
    failed.created_at = 9;
    create(&*store, vec![failed]).await;
    let read = store.get_task("t2").await.expect("get").expect("exists");
    assert_eq!(
        (read.state, read.message.as_str(), read.finished_at),
        (TaskState::Failed, "the plan cannot run", 9)
    );
}

pub async fn idempotency_keys_find_the_first_task_within_a_tenant(mut backend: impl Backend) {
    let store = backend.open().await;
    create(&*store, vec![new_task("t1", "default", Some("k"))]).await;
    // Twice in one batch, too: both find the first.
    let again = create(
        &*store,
        vec![
            new_task("t2", "default", Some("k")),
            new_task("t3", "default", Some("k")),
        ],
    )
    .await;
    assert_eq!(
        again,
        [
            Created::Existing("t1".into()),
            Created::Existing("t1".into())
        ]
    );
    assert!(store.get_task("t2").await.expect("get").is_none());
    let stored = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(stored.idempotency_key.as_deref(), Some("k"));
    // Another tenant's same key is another task.
    let elsewhere = create(&*store, vec![new_task("t4", "team-b", Some("k"))]).await;
    assert_eq!(elsewhere, [Created::New("t4".into())]);
    // A new key in the same batch as an old one: only the new one is made.
    let mixed = create(
        &*store,
        vec![
            new_task("t5", "default", Some("k2")),
            new_task("t6", "default", Some("k2")),
        ],
    )
    .await;
    assert_eq!(
        mixed,
        [Created::New("t5".into()), Created::Existing("t5".into())]
    );
}

pub async fn writes_commit_in_the_order_they_were_handed_over(mut backend: impl Backend) {
    let store = with_tasks(&mut backend, &["t1"]).await;
    // Handed over one after another without waiting: each commit resolves,
    // and what was handed later wins and follows.
    let states = [
        StepState::Running,
        StepState::Failed,
        StepState::Queued,
        StepState::Running,
        StepState::Succeeded,
    ];
    let mut commits = Vec::new();
    for seq in 2..=201u64 {
        let state = states[(seq as usize) % states.len()];
        commits.push(store.write(vec![
            Write::Step(StepWrite {
                state: Some(state),
                attempt: Some(seq as u32),
                ..step("t1", "a")
            }),
            Write::Event(log("t1", seq, &format!("line {seq}"))),
        ]));
    }
    for commit in commits {
        commit.await.expect("an answer").expect("committed");
    }
    let task = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(
        (task.steps[0].state, task.steps[0].attempt),
        (states[201 % states.len()], 201),
        "the last write handed over is the one that stands"
    );
    assert_eq!(task.last_seq, 201);
    let events = store.events_after("t1", 0, 1000).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=201).collect::<Vec<_>>(), "gap-free, in order");
}

pub async fn listings_filter_by_tenant_state_and_label_and_page_newest_first(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let tenant = if i == 5 { "team-b" } else { "default" };
        let mut t = new_task(&format!("t{i}"), tenant, None);
        t.spec.labels.insert(
            "team.io/name".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        );
        t.spec.labels.insert("shard".into(), (i % 3).to_string());
        tasks.push(t);
    }
    create(&*store, tasks).await;
    commit(
        &*store,
        vec![Write::Task(TaskWrite {
            id: "t1".into(),
            state: TaskState::Running,
            message: String::new(),
            started_at: Some(3),
            finished_at: None,
        })],
    )
    .await;
    let query = |f: &dyn Fn(&mut TaskQuery)| {
        let mut query = page(10);
        f(&mut query);
        store.list_tasks(query)
    };
    let first = query(&|q| q.page_size = 2).await.expect("list");
    assert_eq!(ids(&first), ["t5", "t4"]);
    let second = query(&|q| {
        q.page_size = 2;
        q.before_id = Some("t4".into());
    })
    .await
    .expect("list");
    assert_eq!(ids(&second), ["t3", "t2"]);
    let even = query(&|q| q.labels = vec![("team.io/name".into(), "even".into())])
        .await
        .expect("list");
    assert_eq!(ids(&even), ["t4", "t2", "t0"]);
    let both = query(&|q| {
        q.labels = vec![
            ("team.io/name".into(), "even".into()),
            ("shard".into(), "1".into()),
        ]
    })
    .await
    .expect("list");
    assert_eq!(ids(&both), ["t4"], "every label must match");
    let running = query(&|q| q.states = vec![TaskState::Running])
        .await
        .expect("list");
    assert_eq!(ids(&running), ["t1"]);
    assert_eq!(running[0].started_at, 3);
    let queued_or_running = query(&|q| q.states = vec![TaskState::Queued, TaskState::Running])
        .await
        .expect("list");
    assert_eq!(queued_or_running.len(), 6);
    let b = query(&|q| q.tenants = Some(vec!["team-b".into()]))
        .await
        .expect("list");
    assert_eq!(ids(&b), ["t5"]);
    assert_eq!(b[0].tenant, "team-b");
    let none = query(&|q| q.tenants = Some(vec![])).await.expect("list");
    assert!(none.is_empty(), "no tenants sees nothing");
    let default = query(&|q| {
        q.tenants = Some(vec!["default".into()]);
        q.labels = vec![("shard".into(), "2".into())];
    })
    .await
    .expect("list");
    assert_eq!(ids(&default), ["t2"]);
    // Names by prefix, taken literally: `%` and `_` match only themselves.
    let named = |prefix: &'static str| query(&move |q| q.name_prefix = prefix.into());
    assert_eq!(ids(&named("task t1").await.expect("list")), ["t1"]);
    assert_eq!(named("task t").await.expect("list").len(), 6);
    assert!(named("task%").await.expect("list").is_empty());
    assert!(named("task_t1").await.expect("list").is_empty());

    // Counted per state, and per tenant.
    let counts = |tenants: Option<Vec<String>>| store.count_tasks(tenants);
    assert_eq!(
        counts(None).await.expect("count"),
        [(TaskState::Queued, 5), (TaskState::Running, 1)]
    );
    assert_eq!(
        counts(Some(vec!["team-b".into()])).await.expect("count"),
        [(TaskState::Queued, 1)]
    );
    assert!(counts(Some(vec![])).await.expect("count").is_empty());
}

pub async fn a_failing_write_fails_alone_as_a_conflict(mut backend: impl Backend) {
    let store = with_tasks(&mut backend, &["t1"]).await;
    // The same event sequence number twice: the batch fails whole, as a
    // conflict, and the writes handed over around it commit.
    let before = store.write(vec![Write::Event(log("t1", 2, "kept"))]);
    let bad = store.write(vec![
        Write::Step(StepWrite {
            state: Some(StepState::Failed),
            ..step("t1", "b")
        }),
        Write::Event(event("t1", 1, TaskState::Running)),
    ]);
    let after = store.write(vec![Write::Step(StepWrite {
        progress: Some((0.5, "half".into())),
        ..step("t1", "a")
    })]);
    before.await.expect("answer").expect("committed");
    match bad.await.expect("answer") {
        Err(Error::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    after.await.expect("answer").expect("committed");
    let task = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(
        (
            task.steps[0].progress,
            task.steps[0].progress_message.as_str()
        ),
        (0.5, "half")
    );
    assert_eq!(
        task.steps[1].state,
        StepState::Waiting,
        "nothing of the failed batch applied"
    );
    assert_eq!(task.last_seq, 2);
    // A task whose id is taken fails its create, and nothing else of it.
    let mut again = new_task("t1", "default", None);
    again.spec.name = "impostor".into();
    let refused = store.create_tasks(vec![again]).await;
    assert!(matches!(refused, Err(Error::Conflict(_))), "{refused:?}");
    let task = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(task.spec.name, "task t1");
}

pub async fn audit_records_are_numbered_in_order_and_kept_per_tenant(mut backend: impl Backend) {
    let store = backend.open().await;
    let record = |tenant: &str, action: &str| AuditRecord {
        at: 5,
        actor: "alice".into(),
        role: "developer".into(),
        action: action.into(),
        tenant: tenant.into(),
        target: "t1".into(),
        outcome: "ok".into(),
        detail: "deploy".into(),
        seq: 999,
    };
    let mut writes = Vec::new();
    for i in 0..5 {
        let tenant = if i % 2 == 0 { "default" } else { "team-b" };
        writes.push(Write::Audit(record(tenant, &format!("task.submit.{i}"))));
    }
    commit(&*store, writes).await;
    commit(
        &*store,
        vec![Write::Audit(record("default", "task.cancel"))],
    )
    .await;
    let all = store.audit_after(0, 100, None).await.expect("audit");
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        [1, 2, 3, 4, 5, 6],
        "numbered by the store, not the writer"
    );
    assert_eq!(
        all[0],
        AuditRecord {
            seq: 1,
            ..record("default", "task.submit.0")
        }
    );
    assert_eq!(all[5].action, "task.cancel");
    let after = store.audit_after(4, 1, None).await.expect("audit");
    assert_eq!(after.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    let b = store
        .audit_after(0, 100, Some(vec!["team-b".into()]))
        .await
        .expect("audit");
    assert_eq!(b.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 4]);
    let none = store
        .audit_after(0, 100, Some(vec![]))
        .await
        .expect("audit");
    assert!(none.is_empty());
}

pub async fn everything_committed_survives_a_reopen(mut backend: impl Backend) {
    let store = backend.open().await;
    create(
        &*store,
        vec![
            new_task("done", "default", Some("key")),
            new_task("busy", "team-b", None),
        ],
    )
    .await;
    commit(
        &*store,
        vec![
            Write::Task(TaskWrite {
                id: "done".into(),
                state: TaskState::Succeeded,
                message: String::new(),
                started_at: Some(2),
                finished_at: Some(3),
            }),
            Write::Event(event("done", 2, TaskState::Succeeded)),
            Write::Step(StepWrite {
                state: Some(StepState::Running),
                attempt: Some(1),
                worker: Some("w1".into()),
                started_at: Some(4),
                ..step("busy", "a")
            }),
            Write::Attempt(AttemptWrite {
                worker: Some("w1".into()),
                session_id: Some("s-9".into()),
                verification: Some(round_found()),
                ..attempt("busy", "a", 1)
            }),
            // Said apart, later: the round stays.
            Write::Attempt(AttemptWrite {
                setup: Some(setup_report()),
                ..attempt("busy", "a", 1)
            }),
            Write::Audit(AuditRecord {
                action: "task.submit".into(),
                tenant: "default".into(),
                ..AuditRecord::default()
            }),
        ],
    )
    .await;
    store
        .change_state(StateChange::Put {
            key: StateKey {
                tenant: "default".into(),
                scope: "s".into(),
                key: "k".into(),
            },
            value_json: "true".into(),
            expect: Expect::Any,
            expires_at: 0,
            now: 5,
        })
        .await
        .expect("put");
    let done = store.get_task("done").await.expect("get");
    let busy = store.get_task("busy").await.expect("get");
    drop(store);

    let store = backend.open().await;
    assert_eq!(store.get_task("done").await.expect("get"), done);
    assert_eq!(store.get_task("busy").await.expect("get"), busy);
    // Recovery finds what is unfinished, with its steps and attempts.
    let unfinished = store.unfinished_tasks().await.expect("unfinished");
    assert_eq!(ids(&unfinished), ["busy"]);
    let running = &unfinished[0].steps[0];
    assert_eq!(
        (running.state, running.attempt, running.worker.as_str()),
        (StepState::Running, 1, "w1")
    );
    assert_eq!(running.attempts[0].session_id, "s-9");
    // A verified step's round comes back whole: the next round is
    // decided from it after a restart.
    assert_eq!(running.attempts[0].verification, Some(round_found()));
    assert_eq!(running.attempts[0].setup, Some(setup_report()));
    assert_eq!(unfinished[0].last_seq, 1);
    assert_eq!(
        store
            .events_after("done", 0, 10)
            .await
            .expect("events")
            .len(),
        2
    );
    assert_eq!(
        store
            .get_state(
                StateKey {
                    tenant: "default".into(),
                    scope: "s".into(),
                    key: "k".into(),
                },
                6
            )
            .await
            .expect("get")
            .map(|e| e.version),
        Some(1)
    );
    assert_eq!(
        store.audit_after(0, 10, None).await.expect("audit").len(),
        1
    );
    // The idempotency key still finds its task; numbering goes on.
    assert_eq!(
        create(&*store, vec![new_task("again", "default", Some("key"))]).await,
        [Created::Existing("done".into())]
    );
    commit(
        &*store,
        vec![Write::Audit(AuditRecord {
            action: "task.cancel".into(),
            ..AuditRecord::default()
        })],
    )
    .await;
    let audit = store.audit_after(1, 10, None).await.expect("audit");
    assert_eq!(audit.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
}

/// Recovery lists the unfinished tasks' ids, then reads consecutive runs
/// of that list: each run reads back exactly its tasks, whole, and a
/// finished task inside a run's range is not among them.
pub async fn unfinished_tasks_are_listed_by_id_and_read_back_a_range_at_a_time(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    let tasks = ["r5", "r1", "r3", "r2", "r4"]
        .iter()
        .map(|id| {
            let mut task = new_task(id, "default", None);
            if *id == "r1" {
                task.spec.priority = 4;
                task.spec.steps[0].needs = vec!["gpu".into()];
            }
            task
        })
        .collect();
    create(&*store, tasks).await;
    commit(
        &*store,
        vec![
            Write::Task(TaskWrite {
                id: "r3".into(),
                state: TaskState::Succeeded,
                message: String::new(),
                started_at: Some(2),
                finished_at: Some(3),
            }),
            Write::Task(TaskWrite {
                id: "r4".into(),
                state: TaskState::Running,
                message: String::new(),
                started_at: Some(2),
                finished_at: None,
            }),
            Write::Event(event("r4", 2, TaskState::Running)),
        ],
    )
    .await;
    let listed = store.unfinished_task_ids().await.expect("ids");
    assert_eq!(listed, ["r1", "r2", "r4", "r5"]);
    let between = |first: &'static str, last: &'static str| {
        let store = store.clone();
        async move {
            store
                .unfinished_tasks_between(first, last)
                .await
                .expect("a range")
        }
    };
    assert_eq!(ids(&between("r1", "r2").await), ["r1", "r2"]);
    let across = between("r2", "r4").await;
    assert_eq!(ids(&across), ["r2", "r4"], "r3 is finished");
    let r4 = &across[1];
    assert_eq!(r4.state, TaskState::Running);
    assert_eq!(r4.last_seq, 2);
    assert_eq!(
        r4.steps
            .iter()
            .map(|s| (s.id.as_str(), s.state))
            .collect::<Vec<_>>(),
        [("a", StepState::Queued), ("b", StepState::Waiting)]
    );
    assert_eq!(r4.spec.steps.len(), 2);
    assert_eq!(ids(&between("r5", "r5").await), ["r5"]);
    assert!(between("r5", "r1").await.is_empty(), "an empty range");
    let whole = store.unfinished_tasks().await.expect("all");
    assert_eq!(ids(&whole), ["r1", "r2", "r4", "r5"]);

    // Read back by id: the unfinished ones named, whole, in id order; an
    // unknown or finished id is left out.
    let named = |list: &[&str]| list.iter().map(|id| id.to_string()).collect::<Vec<_>>();
    let by_id = store
        .unfinished_tasks_by_id(&named(&["r5", "nope", "r3", "r4", "r1"]))
        .await
        .expect("by id");
    assert_eq!(ids(&by_id), ["r1", "r4", "r5"]);
    assert_eq!(by_id[1].last_seq, 2);
    assert_eq!(by_id[1].spec.steps.len(), 2);
    assert_eq!(by_id[1].steps.len(), 2);
    assert!(
        store
            .unfinished_tasks_by_id(&[])
            .await
            .expect("none")
            .is_empty()
    );
    // Any task by id, finished ones too, in id order, once each.
    let any = store
        .tasks_by_id(&named(&["r4", "r3", "nope", "r4", "r1"]))
        .await
        .expect("by id");
    assert_eq!(ids(&any), ["r1", "r3", "r4"]);
    assert!(any[1].state.is_terminal(), "r3 is finished");
    assert_eq!(any[2].last_seq, 2);
    assert_eq!(any[2].steps.len(), 2);
    assert!(store.tasks_by_id(&[]).await.expect("none").is_empty());

    // Recovery's compact read: a queued task nobody started comes back as
    // its place in the queue; one running, or held at a gate, whole.
    commit(
        &*store,
        vec![Write::Step(StepWrite {
            task_id: "r5".into(),
            step_id: "a".into(),
            state: Some(StepState::AwaitingApproval),
            ..StepWrite::default()
        })],
    )
    .await;
    let mut recovered = store.recovery_between("r1", "r5").await.expect("recovery");
    recovered.sort_by(|a, b| a.id().cmp(b.id()));
    let recovered_ids: Vec<&str> = recovered.iter().map(Unfinished::id).collect();
    assert_eq!(recovered_ids, ["r1", "r2", "r4", "r5"]);
    assert_eq!(
        recovered[0],
        Unfinished::Queued(QueuedTask {
            id: "r1".into(),
            tenant: "default".into(),
            priority: 4,
            created_at: 1,
            queued: vec![(0, vec!["gpu".to_string()])],
            labels: Default::default(),
            repo: None,
        })
    );
    assert!(
        matches!(&recovered[1], Unfinished::Queued(q) if q.queued == [(0, Vec::new())]),
        "{:?}",
        recovered[1]
    );
    assert!(
        matches!(&recovered[2], Unfinished::Whole(t) if t.state == TaskState::Running && t.steps.len() == 2),
        "{:?}",
        recovered[2]
    );
    assert!(
        matches!(&recovered[3], Unfinished::Whole(t) if t.steps[0].state == StepState::AwaitingApproval),
        "{:?}",
        recovered[3]
    );
}

pub async fn a_task_written_with_its_first_dispatch_is_made_in_that_commit(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    let record = |target: &str, detail: &str| AuditRecord {
        at: 3,
        actor: "alice".into(),
        role: "developer".into(),
        action: "task.submit".into(),
        tenant: "default".into(),
        target: target.into(),
        outcome: "ok".into(),
        detail: detail.into(),
        seq: 0,
    };
    // Made, its first step given to a worker, and its submit audited: one
    // write.
    let mut task = new_task("w1", "default", None);
    task.audit = Some(record("w1", "created"));
    commit(
        &*store,
        vec![
            Write::Create(Box::new(task.clone())),
            Write::Step(StepWrite {
                state: Some(StepState::Running),
                attempt: Some(1),
                worker: Some("w".into()),
                ..step("w1", "a")
            }),
            Write::Attempt(attempt("w1", "a", 1)),
            Write::Event(event("w1", 2, TaskState::Running)),
        ],
    )
    .await;
    let read = store.get_task("w1").await.expect("get").expect("made");
    assert_eq!(read.spec, task.spec);
    assert_eq!(
        (
            read.steps[0].state,
            read.steps[0].attempt,
            read.steps[1].state
        ),
        (StepState::Running, 1, StepState::Waiting),
        "the dispatch applies to the task the same commit made"
    );
    assert_eq!(read.steps[0].attempts.len(), 1);
    assert_eq!(
        store.events_after("w1", 0, 10).await.expect("events"),
        [task.events[0].clone(), event("w1", 2, TaskState::Running)]
    );
    let fleet = store
        .fleet_events_after(0, None, 10)
        .await
        .expect("fleet")
        .events;
    let seen: Vec<(&str, u64)> = fleet
        .iter()
        .map(|(_, e)| (e.task_id.as_str(), e.seq))
        .collect();
    assert_eq!(
        seen,
        [("w1", 1), ("w1", 2)],
        "its first events in the fleet"
    );
    let audit = store.audit_after(0, 10, None).await.expect("audit");
    assert_eq!(
        audit,
        [AuditRecord {
            seq: 1,
            ..record("w1", "created")
        }]
    );

    // An id already stored fails the write whole.
    let mut again = new_task("w1", "default", None);
    again.spec.name = "impostor".into();
    let refused = store
        .write(vec![
            Write::Create(Box::new(again)),
            Write::Event(log("w1", 3, "not kept")),
        ])
        .await
        .expect("an answer");
    assert!(refused.is_err(), "{refused:?}");
    let read = store.get_task("w1").await.expect("get").expect("w1");
    assert_eq!((read.spec.name.as_str(), read.last_seq), ("task w1", 2));

    // create_tasks keeps a new task's record, and none for a key that
    // found another task.
    let mut keyed = new_task("k1", "default", Some("key"));
    keyed.audit = Some(record("k1", "created"));
    let mut same = new_task("k2", "default", Some("key"));
    same.audit = Some(record("k2", "created"));
    let created = create(&*store, vec![keyed, same]).await;
    assert_eq!(
        created,
        [Created::New("k1".into()), Created::Existing("k1".into())]
    );
    let audit = store.audit_after(1, 10, None).await.expect("audit");
    assert_eq!(
        audit,
        [AuditRecord {
            seq: 2,
            ..record("k1", "created")
        }]
    );
}

/// A verified step's round of checks, as an attempt keeps it.
fn setup_report() -> tidewright_core::setup::SetupReport {
    tidewright_core::setup::SetupReport {
        seed: "5e".repeat(32),
        source: tidewright_core::setup::SetupSource::Store,
        method: "overlay".into(),
        millis: 41,
        run_millis: 9_300,
        files: 812,
        bytes: 148 << 20,
        ..Default::default()
    }
}

fn round_found() -> tidewright_core::Verification {
    tidewright_core::Verification {
        round: 2,
        head_commit: "c0ffee".into(),
        checks: vec![tidewright_core::CheckResult {
            name: "tests".into(),
            passed: false,
            exit_code: Some(101),
            trouble: String::new(),
            millis: 1234,
            tail: "test a ... FAILED\n\"quoted\" é".into(),
            paths: vec!["src/a.rs".into()],
        }],
        protected: vec!["tests/a.rs".into()],
        tests_removed: 1,
        skips_added: 2,
        round_diff: "--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1 +1 @@\n-a\n+b\n".into(),
        grade: Some(tidewright_core::verify::Grade {
            verdict: tidewright_core::verify::Verdict::NeedsRevision,
            reasons: vec!["The README does not say \"--json\".".into()],
            model: "claude-sonnet-4-5".into(),
            cost: tidewright_core::Cost {
                usd: 0.0125,
                input_tokens: 3000,
                output_tokens: 200,
                ..tidewright_core::Cost::default()
            },
            millis: 2100,
        }),
    }
}
