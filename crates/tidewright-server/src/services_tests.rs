//! The application services as the server composes them (a real SQLite
//! store, engine and webhook registry), without a transport.

use std::sync::Arc;
use std::time::Duration;
use tidewright_store::{StepStore, WriteStore};

use tidewright_core::calendar::now_micros;
use tidewright_core::{AttemptKey, StepSpec, StepState, TaskSpec, TaskState};
use tidewright_engine::Error;
use tidewright_engine::access::{Identity, Role, Tenants};
use tidewright_engine::hub::Hub;
use tidewright_engine::metrics::Metrics;
use tidewright_engine::seeds::{SeedStore, StoredSeed};
use tidewright_engine::service::{
    Call, DeleteSeed, GetBranch, GetSeed, KeptSettings, ListSeeds, Parts, PutBranch, PutSeed,
    Services, Submit, Templates, WatchTask,
};
use tidewright_store::conformance::new_task;
use tidewright_store::leadership::{Replica, SoleOwner};
use tidewright_store::memory::MemoryStore;
use tidewright_store::{Checkpoint, StepWrite, Store, TaskWrite, Write};

use crate::outbound::webhooks::Webhooks;

fn as_admin<T>(message: T) -> Call<T> {
    as_role(Role::Admin, message)
}

fn as_role<T>(role: Role, message: T) -> Call<T> {
    Call::new(
        Identity {
            name: "test".into(),
            role,
            tenants: Tenants::All,
            step: None,
        },
        message,
    )
}

/// The services over `store`, composed as the leader composes them, and
/// the hub they publish on.
fn composed(store: Arc<dyn Store>, kept: KeptSettings) -> (Services, Arc<Hub>) {
    composed_with(store, kept, None)
}

fn composed_with(
    store: Arc<dyn Store>,
    kept: KeptSettings,
    seeds: Option<Arc<SeedStore>>,
) -> (Services, Arc<Hub>) {
    let hub = Arc::new(Hub::default());
    let liveness = tidewright_engine::Liveness {
        ttl: Duration::from_secs(30),
        heartbeat_interval: Duration::from_secs(5),
    };
    let (engine, _fatal) = tidewright_engine::start(
        store.clone(),
        hub.clone(),
        Vec::new(),
        tidewright_engine::Settings {
            liveness,
            hot_tasks: tidewright_engine::DEFAULT_HOT_TASKS,
            limit_backoff: tidewright_engine::DEFAULT_LIMIT_BACKOFF,
            retention: tidewright_store::retention::Retention::forever(),
            fallback: Default::default(),
        },
        Arc::new(Metrics::new()),
        tidewright_engine::StoredTenants::default(),
    );
    let services = Services::new(Parts {
        store: store.clone(),
        engine,
        hub: hub.clone(),
        metrics: Arc::new(Metrics::new()),
        limits: tidewright_core::Limits::default(),
        fallback: Default::default(),
        planner: None,
        webhooks: Arc::new(Webhooks::new(
            store,
            crate::outbound::webhooks::Settings::default(),
        )),
        repositories: Arc::new(crate::outbound::repos::GitRepositories::new(
            crate::outbound::repos::Settings::default(),
        )),
        templates: Arc::new(Templates::default()),
        trace_context: tidewright_telemetry::task_trace_context,
        audit_log: false,
        leadership: Arc::new(SoleOwner::new(Replica {
            id: "r".into(),
            name: "r".into(),
            address: "127.0.0.1:0".into(),
            named: false,
        })),
        build: tidewright_core::build::Build::default(),
        kept,
        seeds,
    });
    (services, hub)
}

#[tokio::test]
async fn watching_what_is_not_there_leaves_no_channel_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        tidewright_store_sqlite::SqliteStore::open(
            dir.path(),
            tidewright_store_sqlite::Durability::Process,
        )
        .expect("store"),
    );
    let (api, hub) = composed(store, KeptSettings::default());

    for _ in 0..3 {
        let watch = WatchTask {
            task_id: "01nosuchtask0000000000000a".into(),
            after_seq: 0,
            follow: true,
        };
        let refused = api
            .tasks
            .watch_task(as_admin(watch))
            .await
            .err()
            .expect("unknown task");
        assert!(matches!(refused, Error::NotFound(_)), "{refused}");
    }
    assert_eq!(hub.channels(), 0, "a refused watch makes no channel");

    // A task that no worker runs stays queued: following it makes one.
    let submitted = api
        .tasks
        .submit_task(as_admin(Submit {
            spec: Some(TaskSpec {
                name: "t".into(),
                steps: vec![StepSpec::noop("a")],
                ..TaskSpec::default()
            }),
            ..Submit::default()
        }))
        .await
        .expect("submitted");
    let replay_only = WatchTask {
        task_id: submitted.task_id.clone(),
        after_seq: 0,
        follow: false,
    };
    drop(
        api.tasks
            .watch_task(as_admin(replay_only))
            .await
            .expect("replays"),
    );
    assert_eq!(
        hub.channels(),
        0,
        "a replay without follow makes no channel"
    );
    let follow = WatchTask {
        task_id: submitted.task_id,
        after_seq: 0,
        follow: true,
    };
    let _stream = api
        .tasks
        .watch_task(as_admin(follow))
        .await
        .expect("follows");
    assert_eq!(hub.channels(), 1);
}

#[tokio::test]
async fn only_the_current_attempt_keeps_a_branch_and_only_a_running_one_reads_it() {
    let store = Arc::new(MemoryStore::new());
    store
        .create_tasks(vec![new_task("t1", "default", None)])
        .await
        .expect("created");
    let running = |step: &str| {
        Write::Step(StepWrite {
            task_id: "t1".into(),
            step_id: step.into(),
            state: Some(StepState::Running),
            attempt: Some(1),
            ..StepWrite::default()
        })
    };
    store
        .write(vec![running("a")])
        .await
        .expect("sent")
        .expect("written");
    let (services, _hub) = composed(
        store.clone(),
        KeptSettings {
            max_branch_bytes: 1024,
            ..KeptSettings::default()
        },
    );
    let kept = services.kept;
    let attempt = |step: &str, attempt: u32| AttemptKey {
        task_id: "t1".into(),
        step_id: step.into(),
        attempt,
    };
    let of = |step: &str, n: u32, bundle: Vec<u8>| PutBranch {
        attempt: Some(attempt(step, n)),
        head_commit: "c".repeat(40),
        bundle,
        diff: String::new(),
    };
    let put = |branch: PutBranch| kept.put_branch(as_role(Role::Worker, branch));
    let refused = |e: Error| e.to_string();
    assert!(refused(put(of("a", 1, Vec::new())).await.expect_err("empty")).contains("bundle"));
    assert!(
        refused(put(of("a", 1, vec![0; 2048])).await.expect_err("too large"))
            .contains("max-branch-bytes")
    );
    assert!(
        refused(put(of("a", 2, vec![1])).await.expect_err("not current"))
            .contains("not the step's current attempt")
    );
    let mut bad_head = of("a", 1, vec![1]);
    bad_head.head_commit = "HEAD".into();
    assert!(refused(put(bad_head).await.expect_err("bad head")).contains("head_commit"));
    assert!(matches!(
        kept.put_branch(as_role(Role::Viewer, of("a", 1, vec![1])))
            .await,
        Err(Error::PermissionDenied(_))
    ));
    put(of("a", 1, vec![1, 2, 3])).await.expect("kept");

    // Step b reads it once it runs.
    let ask = |step: &str| {
        as_role(
            Role::Worker,
            GetBranch {
                attempt: Some(attempt("b", 1)),
                step_id: step.into(),
            },
        )
    };
    assert!(kept.get_branch(ask("a")).await.is_err());
    store
        .write(vec![running("b")])
        .await
        .expect("sent")
        .expect("written");
    let got = kept.get_branch(ask("a")).await.expect("read");
    assert_eq!(got.bundle, [1, 2, 3]);
    assert_eq!(got.head_commit, "c".repeat(40));
    assert!(matches!(
        kept.get_branch(ask("b")).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_finished_tasks_checkpoints_go_after_the_retention() {
    let store = Arc::new(MemoryStore::new());
    store
        .create_tasks(vec![new_task("t1", "default", None)])
        .await
        .expect("created");
    let kept = |task_id: &str| Checkpoint {
        task_id: task_id.into(),
        step_id: "a".into(),
        attempt: 1,
        session_id: "s-1".into(),
        workspace: "/w".into(),
        archive: vec![1],
        created_at: 1,
    };
    store
        .write(vec![
            Write::Step(StepWrite {
                task_id: "t1".into(),
                step_id: "a".into(),
                attempt: Some(1),
                ..StepWrite::default()
            }),
            Write::Checkpoint(Box::new(kept("t1"))),
            Write::Task(TaskWrite {
                id: "t1".into(),
                state: TaskState::Succeeded,
                message: String::new(),
                started_at: None,
                finished_at: Some(now_micros()),
            }),
        ])
        .await
        .expect("answered")
        .expect("committed");
    let (services, _hub) = composed(
        store.clone(),
        KeptSettings {
            retention: Duration::ZERO,
            ..KeptSettings::default()
        },
    );
    let _sweeping = tidewright_api::abort::AbortOnDrop(services.kept.expire_periodically());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.checkpoint("t1", "a").await.expect("read").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tenant `acme`'s task a1 and tenant `zeta`'s task z1, each with step
/// `a` running its first attempt; the services over them, with a seeds'
/// store in `dir`.
async fn two_tenants_running(dir: &std::path::Path) -> (Services, Arc<SeedStore>) {
    let store = Arc::new(MemoryStore::new());
    store
        .create_tasks(vec![
            new_task("a1", "acme", None),
            new_task("z1", "zeta", None),
        ])
        .await
        .expect("created");
    for task in ["a1", "z1"] {
        store
            .write(vec![Write::Step(StepWrite {
                task_id: task.into(),
                step_id: "a".into(),
                state: Some(StepState::Running),
                attempt: Some(1),
                ..StepWrite::default()
            })])
            .await
            .expect("sent")
            .expect("written");
    }
    let seeds = Arc::new(SeedStore::open(dir.join("seeds"), 1 << 20).expect("seeds"));
    let (services, _hub) = composed_with(store, KeptSettings::default(), Some(seeds.clone()));
    (services, seeds)
}

fn attempt_of(task: &str) -> Option<AttemptKey> {
    Some(AttemptKey {
        task_id: task.into(),
        step_id: "a".into(),
        attempt: 1,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    tidewright_core::hex(&sha2::Sha256::digest(bytes))
}

async fn download(services: &Services, task: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let (entry, data) = services
        .seeds
        .get_seed(as_role(
            Role::Worker,
            GetSeed {
                attempt: attempt_of(task),
                key: key.into(),
                data: true,
            },
        ))
        .await?;
    let Some(mut data) = data else {
        assert!(entry.is_none_or(|e| !e.is_stored()));
        return Ok(None);
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = data.next().await? {
        bytes.extend(chunk);
    }
    Ok(Some(bytes))
}

#[tokio::test]
async fn a_seed_goes_only_to_its_own_tenants_steps_whole_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (services, store) = two_tenants_running(dir.path()).await;
    let key = "ab".repeat(32);
    let put = |task: &str, key: &str| PutSeed {
        attempt: attempt_of(task),
        seed: StoredSeed {
            key: key.into(),
            // What a worker says of the tenant counts for nothing.
            tenant: "zeta".into(),
            repo: "https://git.example/app.git".into(),
            paths: vec!["node_modules".into()],
            ..StoredSeed::default()
        },
    };
    let blob = b"a packed seed".repeat(1000);
    let mut upload = services
        .seeds
        .put_seed(as_role(Role::Worker, put("a1", &key)))
        .await
        .expect("begun");
    for chunk in blob.chunks(4096) {
        upload.write(chunk).await.expect("written");
    }
    let kept = upload.finish(&sha256_hex(&blob)).await.expect("kept");
    assert_eq!(kept.tenant, "acme");

    assert_eq!(
        download(&services, "a1", &key).await.expect("got"),
        Some(blob.clone())
    );
    // Another tenant's step, asking for the very key, gets nothing.
    assert_eq!(download(&services, "z1", &key).await.expect("asked"), None);
    let listed = |tenant: &str| {
        services.seeds.list_seeds(Call::new(
            Identity {
                name: "dev".into(),
                role: Role::Developer,
                tenants: Tenants::Only(vec![tenant.into()]),
                step: None,
            },
            ListSeeds::default(),
        ))
    };
    let acme = listed("acme").await.expect("listed");
    let bad_tenant = services
        .seeds
        .list_seeds(as_admin(ListSeeds {
            tenant: "0.5".into(),
            repo: String::new(),
        }))
        .await
        .expect_err("not a tenant");
    assert!(refused_field(&bad_tenant, "tenant"), "{bad_tenant}");
    assert_eq!((acme.len(), acme[0].uses), (1, 1));
    assert!(listed("zeta").await.expect("listed").is_empty());

    // Bad input names its field and keeps nothing.
    let refused = |e: Error| e.to_string();
    assert!(
        refused(
            services
                .seeds
                .put_seed(as_role(Role::Worker, put("a1", "../x")))
                .await
                .err()
                .expect("bad key")
        )
        .starts_with("seed.key:")
    );
    assert!(matches!(
        services
            .seeds
            .put_seed(as_role(Role::Viewer, put("a1", &key)))
            .await,
        Err(Error::PermissionDenied(_))
    ));
    let mut wrong = services
        .seeds
        .put_seed(as_role(Role::Worker, put("a1", &"cd".repeat(32))))
        .await
        .expect("begun");
    wrong.write(b"abc").await.expect("written");
    assert!(
        refused(
            wrong
                .finish(&sha256_hex(b"abd"))
                .await
                .expect_err("wrong hash")
        )
        .starts_with("sha256:")
    );
    assert_eq!(store.look(&"cd".repeat(32)).await, None);

    // A blob corrupt on disk is found as it is read, and forgotten.
    std::fs::write(dir.path().join("seeds/blobs").join(&kept.sha256), b"rot").expect("rot");
    assert!(matches!(
        download(&services, "a1", &key).await,
        Err(Error::Store(tidewright_store::Error::Corrupt(_)))
    ));
    assert_eq!(store.look(&key).await, None);
}

#[tokio::test]
async fn a_deleted_seed_is_dropped_for_its_tenant_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (services, store) = two_tenants_running(dir.path()).await;
    let key = "ef".repeat(32);
    let mut upload = services
        .seeds
        .put_seed(as_role(
            Role::Worker,
            PutSeed {
                attempt: attempt_of("a1"),
                seed: StoredSeed {
                    key: key.clone(),
                    paths: vec![".venv".into()],
                    ..StoredSeed::default()
                },
            },
        ))
        .await
        .expect("begun");
    upload.write(b"venv").await.expect("written");
    upload.finish(&sha256_hex(b"venv")).await.expect("kept");
    let delete = |tenant: &str| {
        services.seeds.delete_seed(Call::new(
            Identity {
                name: "dev".into(),
                role: Role::Developer,
                tenants: Tenants::Only(vec![tenant.into()]),
                step: None,
            },
            DeleteSeed { key: key.clone() },
        ))
    };
    assert!(matches!(delete("zeta").await, Err(Error::NotFound(_))));
    assert!(store.look(&key).await.is_some_and(|e| e.is_stored()));
    delete("acme").await.expect("dropped");
    let (entry, data) = services
        .seeds
        .get_seed(as_role(
            Role::Worker,
            GetSeed {
                attempt: attempt_of("a1"),
                key: key.clone(),
                data: true,
            },
        ))
        .await
        .expect("asked");
    let entry = entry.expect("its entry says when it was dropped");
    assert!(!entry.is_stored() && entry.dropped_at > 0 && data.is_none());
    assert!(matches!(delete("acme").await, Err(Error::NotFound(_))));
}

fn refused_field(e: &Error, field: &str) -> bool {
    matches!(e, Error::InvalidArgument { field: f, .. } if f == field)
}
