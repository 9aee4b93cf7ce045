//! The suite's part on retention: which finished tasks have expired, what
//! goes with one, and history trimmed by age.

use std::collections::BTreeMap;

use tidewright_core::calendar::now_micros;

use super::*;
use crate::retention::{Expired, Expiring, Retention, Trim};

const SECOND: Micros = 1_000_000;
/// When the tasks of these tests finished.
const FINISHED: Micros = 1_000 * SECOND;

fn finish(task: &str, at: Micros) -> Write {
    Write::Task(TaskWrite {
        id: task.into(),
        state: TaskState::Succeeded,
        message: String::new(),
        started_at: None,
        finished_at: Some(at),
    })
}

/// A task of `tenant` that asks to be kept `own` seconds.
/// New tasks of tenant `team`, finished at `FINISHED`.
async fn finished_in_team(store: &dyn Store, ids: &[&str]) {
    let tasks = ids.iter().map(|id| new_task(id, "team", None)).collect();
    create(store, tasks).await;
    commit(store, ids.iter().map(|id| finish(id, FINISHED)).collect()).await;
}

fn kept_for(id: &str, tenant: &str, own: Option<u64>) -> NewTask {
    let mut task = new_task(id, tenant, None);
    task.spec.retention_seconds = own;
    task
}

async fn expiring_ids(store: &dyn Store, rules: &Retention, now: Micros) -> Vec<String> {
    let mut ids: Vec<String> = store
        .expiring(rules, now, 100)
        .await
        .expect("expiring")
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids
}

pub async fn finished_tasks_expire_by_their_own_their_tenants_or_the_default_window(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    create(
        &*store,
        vec![
            kept_for("by-default", "team", None),
            kept_for("by-tenant", "short", None),
            kept_for("by-own", "team", Some(10)),
            kept_for("own-forever", "short", Some(0)),
            kept_for("tenant-forever", "kept", None),
            kept_for("running", "short", None),
        ],
    )
    .await;
    commit(
        &*store,
        [
            "by-default",
            "by-tenant",
            "by-own",
            "own-forever",
            "tenant-forever",
        ]
        .iter()
        .map(|id| finish(id, FINISHED))
        .collect(),
    )
    .await;
    let rules = Retention {
        default: Some(100 * SECOND),
        tenants: BTreeMap::from([
            ("short".to_string(), Some(SECOND)),
            ("kept".to_string(), None),
        ]),
    };
    let at = |seconds: i64| FINISHED + seconds * SECOND;
    assert!(
        expiring_ids(&*store, &rules, at(1)).await.is_empty(),
        "a window is kept whole"
    );
    assert_eq!(expiring_ids(&*store, &rules, at(5)).await, ["by-tenant"]);
    assert_eq!(
        expiring_ids(&*store, &rules, at(20)).await,
        ["by-own", "by-tenant"]
    );
    assert_eq!(
        expiring_ids(&*store, &rules, at(1_000_000)).await,
        ["by-default", "by-own", "by-tenant"],
        "a task kept forever, by its own or its tenant's window, and a running one never expire"
    );
    assert!(
        expiring_ids(&*store, &Retention::forever(), at(1_000_000))
            .await
            .contains(&"by-own".to_string()),
        "a task's own window holds when the control plane keeps everything"
    );
    let found = store
        .expiring(&rules, at(1_000_000), 2)
        .await
        .expect("expiring");
    assert_eq!(found.len(), 2, "at most the limit");
    assert!(found.iter().all(|e| e.finished_at == FINISHED));
    let tenant_of: BTreeMap<String, String> = found.into_iter().map(|e| (e.id, e.tenant)).collect();
    for (id, tenant) in tenant_of {
        let expected = if id == "by-tenant" { "short" } else { "team" };
        assert_eq!(tenant, expected, "{id}'s tenant");
    }
}

pub async fn an_expired_task_goes_with_everything_of_it_and_leaves_a_record(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    create(
        &*store,
        vec![
            new_task("t1", "team", Some("k")),
            new_task("t2", "team", None),
        ],
    )
    .await;
    let scoped = |scope: &str| StateKey {
        tenant: "team".into(),
        scope: scope.into(),
        key: "k".into(),
    };
    for scope in ["t1", "t2"] {
        store
            .change_state(StateChange::Put {
                key: scoped(scope),
                value_json: "1".into(),
                expect: Expect::Any,
                expires_at: 0,
                now: 1,
            })
            .await
            .expect("put");
    }
    let mut writes = Vec::new();
    for task in ["t1", "t2"] {
        writes.extend([
            Write::Step(StepWrite {
                state: Some(StepState::Failed),
                attempt: Some(1),
                ..step(task, "a")
            }),
            Write::Attempt(AttemptWrite {
                state: Some(StepState::Failed),
                ..attempt(task, "a", 1)
            }),
            Write::Event(event(task, 2, TaskState::Running)),
            Write::Event(log(task, 3, "a line")),
            Write::Checkpoint(Box::new(Checkpoint {
                task_id: task.into(),
                step_id: "a".into(),
                attempt: 1,
                session_id: "s".into(),
                workspace: "/w".into(),
                archive: b"archive".to_vec(),
                created_at: 5,
            })),
            Write::Branch(Box::new(StepBranch {
                task_id: task.into(),
                step_id: "a".into(),
                attempt: 1,
                head_commit: "c0ffee".into(),
                bundle: b"bundle".to_vec(),
                diff: String::new(),
                created_at: 5,
            })),
            finish(task, FINISHED),
        ]);
    }
    // An A2A push config of each task, with a delivery, and an endpoint
    // of the tenant's.
    let endpoint = |id: &str, task: Option<&str>| Webhook {
        id: id.into(),
        tenant: "team".into(),
        url: format!("https://hooks.example/{id}"),
        events: vec!["task.succeeded".into()],
        secret: "s".into(),
        enabled: true,
        disabled_reason: String::new(),
        created_at: 5,
        push: task.map(|task| TaskPush {
            task_id: task.into(),
            config_id: "c".into(),
            token: String::new(),
            auth_scheme: String::new(),
            auth_credentials: String::new(),
        }),
    };
    let delivery =
        |id: &str, webhook: &str, task: &str| pending_delivery(id, webhook, "team", task);
    for (id, task) in [
        ("push-t1", Some("t1")),
        ("push-t2", Some("t2")),
        ("team", None),
    ] {
        writes.push(Write::Webhook(Box::new(endpoint(id, task))));
    }
    writes.push(Write::Deliveries {
        cursor: None,
        deliveries: vec![
            delivery("d1", "push-t1", "t1"),
            delivery("d2", "push-t2", "t2"),
            delivery("d3", "team", "t1"),
        ],
    });
    commit(&*store, writes).await;
    assert_eq!(store.expired("t1").await.expect("read"), None, "stored");

    commit(
        &*store,
        vec![Write::Expire {
            tasks: vec![Expiring {
                id: "t1".into(),
                tenant: "team".into(),
                finished_at: FINISHED,
            }],
            at: FINISHED + 7,
        }],
    )
    .await;
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.get_task("t1").await.expect("read"), None);
    assert!(
        store
            .events_after("t1", 0, 100)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(store.checkpoint("t1", "a").await.expect("read"), None);
    assert_eq!(store.step_branch("t1", "a").await.expect("read"), None);
    assert_eq!(store.running_attempt("t1", "a").await.expect("read"), None);
    assert_eq!(
        store.get_state(scoped("t1"), 2).await.expect("read"),
        None,
        "the task's own shared state goes with it"
    );
    assert_eq!(
        store.expired("t1").await.expect("read"),
        Some(Expired {
            id: "t1".into(),
            tenant: "team".into(),
            finished_at: FINISHED,
            expired_at: FINISHED + 7,
        })
    );
    assert_eq!(store.expired("nope").await.expect("read"), None);
    // Its push config goes with it, and that config's deliveries; the
    // tenant's endpoint and its delivery about the task stay.
    let sorted = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let endpoints = store.webhooks().await.expect("read");
    assert_eq!(
        sorted(endpoints.into_iter().map(|w| w.id).collect()),
        ["push-t2", "team"]
    );
    let pending = store.pending_deliveries(10).await.expect("read");
    assert_eq!(
        sorted(pending.into_iter().map(|d| d.id).collect()),
        ["d2", "d3"]
    );
    assert!(
        store.unfinished_task_ids().await.expect("read").is_empty(),
        "both finished"
    );

    // The other task is whole.
    let other = store.get_task("t2").await.expect("read").expect("t2");
    assert_eq!(other.steps[0].attempts.len(), 1);
    assert_eq!(other.last_seq, 3);
    assert_eq!(
        store.events_after("t2", 0, 100).await.expect("read").len(),
        3
    );
    assert!(store.checkpoint("t2", "a").await.expect("read").is_some());
    assert!(
        store
            .get_state(scoped("t2"), 2)
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        ids(&store.list_tasks(page(10)).await.expect("list")),
        ["t2"]
    );

    // The fleet's order skips what went; its key is free again.
    let fleet = store.fleet_events_after(0, None, 100).await.expect("fleet");
    assert!(fleet.events.iter().all(|(_, e)| e.task_id == "t2"));
    assert_eq!(fleet.events.len(), 2, "t2's events, but its log line");
    let again = create(&*store, vec![new_task("t3", "team", Some("k"))]).await;
    assert_eq!(again, [Created::New("t3".into())]);
}

pub async fn a_task_reopened_since_it_was_found_is_not_removed(mut backend: impl Backend) {
    let store = backend.open().await;
    finished_in_team(&*store, &["t1", "t2"]).await;
    let found = |id: &str| Expiring {
        id: id.into(),
        tenant: "team".into(),
        finished_at: FINISHED,
    };
    // t1 is retried, and finishes again, before the removal commits; t2 is
    // retried and still runs.
    let reopen = |id: &str, finished_at: Micros| {
        Write::Task(TaskWrite {
            id: id.into(),
            state: TaskState::Running,
            message: String::new(),
            started_at: None,
            finished_at: Some(finished_at),
        })
    };
    commit(
        &*store,
        vec![
            reopen("t1", 0),
            finish("t1", FINISHED + 1),
            reopen("t2", 0),
            Write::Expire {
                tasks: vec![found("t1"), found("t2")],
                at: FINISHED + 2,
            },
        ],
    )
    .await;
    for id in ["t1", "t2"] {
        assert!(
            store.get_task(id).await.expect("read").is_some(),
            "{id} stays"
        );
        assert_eq!(store.expired(id).await.expect("read"), None);
    }
    assert_eq!(
        store.events_after("t1", 0, 10).await.expect("read").len(),
        1
    );
}

pub async fn history_is_trimmed_by_age_a_batch_at_a_time(mut backend: impl Backend) {
    let store = backend.open().await;
    let audit = |at: Micros| {
        Write::Audit(AuditRecord {
            at,
            actor: "ann".into(),
            action: "task.submit".into(),
            tenant: "team".into(),
            outcome: "ok".into(),
            ..AuditRecord::default()
        })
    };
    commit(&*store, vec![audit(10), audit(20), audit(30)]).await;
    let trim = |audit_before: Option<Micros>, limit: usize| {
        Write::Trim(Trim {
            audit_before,
            limit,
            ..Trim::default()
        })
    };
    let audited = |store: Arc<dyn Store>| async move {
        store
            .audit_after(0, 10, None)
            .await
            .expect("audit")
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    commit(&*store, vec![trim(Some(30), 1)]).await;
    assert_eq!(audited(store.clone()).await, [2, 3], "one at a time");
    commit(&*store, vec![trim(Some(30), 10), trim(None, 10)]).await;
    assert_eq!(audited(store.clone()).await, [3], "only what is older");
    commit(&*store, vec![audit(40)]).await;
    assert_eq!(
        audited(store.clone()).await,
        [3, 4],
        "numbering goes on after a trim"
    );

    // What is kept of expired tasks, by when they went.
    finished_in_team(&*store, &["t1", "t2"]).await;
    let expire = |id: &str, at: Micros| Write::Expire {
        tasks: vec![Expiring {
            id: id.into(),
            tenant: "team".into(),
            finished_at: FINISHED,
        }],
        at,
    };
    commit(&*store, vec![expire("t1", 100), expire("t2", 200)]).await;
    commit(
        &*store,
        vec![Write::Trim(Trim {
            expired_before: Some(150),
            limit: 10,
            ..Trim::default()
        })],
    )
    .await;
    assert_eq!(store.expired("t1").await.expect("read"), None);
    assert!(store.expired("t2").await.expect("read").is_some());

    // The fleet's order, by when each commit was made; the newest row stays,
    // so positions keep rising.
    create(&*store, vec![new_task("t3", "team", None)]).await;
    create(&*store, vec![new_task("t4", "team", None)]).await;
    let head = store.fleet_head().await.expect("head");
    commit(
        &*store,
        vec![Write::Trim(Trim {
            fleet_before: Some(now_micros() + SECOND),
            limit: 1000,
            ..Trim::default()
        })],
    )
    .await;
    assert_eq!(store.fleet_head().await.expect("head"), head);
    let kept = store.fleet_events_after(0, None, 100).await.expect("fleet");
    let tasks: Vec<&str> = kept
        .events
        .iter()
        .map(|(_, e)| e.task_id.as_str())
        .collect();
    assert_eq!(tasks, ["t4"], "only the newest commit's events");
    create(&*store, vec![new_task("t5", "team", None)]).await;
    assert!(store.fleet_head().await.expect("head") > head);

    // Ended deliveries made before a given one; pending ones stay.
    let delivery = |id: &str, state: DeliveryState| Delivery {
        state,
        attempts: 1,
        ..pending_delivery(id, "w1", "team", "t2")
    };
    commit(
        &*store,
        vec![
            Write::Webhook(Box::new(Webhook {
                id: "w1".into(),
                tenant: "team".into(),
                url: "https://example.com/hook".into(),
                events: vec!["task.succeeded".into()],
                secret: "whsec_x".into(),
                enabled: true,
                disabled_reason: String::new(),
                created_at: 1,
                push: None,
            })),
            Write::Deliveries {
                cursor: None,
                deliveries: vec![
                    delivery("d1", DeliveryState::Delivered),
                    delivery("d2", DeliveryState::Pending),
                    delivery("d3", DeliveryState::Failed),
                    delivery("d4", DeliveryState::Delivered),
                ],
            },
            Write::Trim(Trim {
                deliveries_before: Some("d4".into()),
                limit: 10,
                ..Trim::default()
            }),
        ],
    )
    .await;
    let left: Vec<String> = store
        .deliveries(DeliveryQuery {
            limit: 10,
            ..DeliveryQuery::default()
        })
        .await
        .expect("deliveries")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, ["d4", "d2"], "newest first");
}
