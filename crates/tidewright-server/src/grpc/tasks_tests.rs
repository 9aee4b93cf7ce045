//! The application services as the server composes them (a real SQLite
//! store, engine and webhook registry), without a transport.

use std::sync::Arc;

use tidewright_core::{StepSpec, TaskSpec};
use tidewright_engine::Error;
use tidewright_engine::access::{Identity, Role, Tenants};
use tidewright_engine::hub::Hub;
use tidewright_engine::metrics::Metrics;
use tidewright_engine::service::{Call, Parts, Submit, TaskApi, Templates, WatchTask};
use tidewright_store::Store;

use crate::outbound::webhooks::Webhooks;

fn as_admin<T>(message: T) -> Call<T> {
    Call::new(
        Identity {
            name: "test".into(),
            role: Role::Admin,
            tenants: Tenants::All,
            step: None,
        },
        message,
    )
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
    let hub = Arc::new(Hub::default());
    let liveness = tidewright_engine::Liveness {
        ttl: std::time::Duration::from_secs(30),
        heartbeat_interval: std::time::Duration::from_secs(5),
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
        },
        Arc::new(tidewright_engine::metrics::Metrics::new()),
        tidewright_engine::TenantBudgets::default(),
    );
    let api = TaskApi::new(Parts {
        store: store.clone(),
        engine,
        hub: hub.clone(),
        metrics: Arc::new(Metrics::new()),
        limits: tidewright_core::Limits::default(),
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
    });

    for _ in 0..3 {
        let watch = WatchTask {
            task_id: "01nosuchtask0000000000000a".into(),
            after_seq: 0,
            follow: true,
        };
        let refused = api
            .watch_task(as_admin(watch))
            .await
            .err()
            .expect("unknown task");
        assert!(matches!(refused, Error::NotFound(_)), "{refused}");
    }
    assert_eq!(hub.channels(), 0, "a refused watch makes no channel");

    // A task that no worker runs stays queued: following it makes one.
    let submitted = api
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
        api.watch_task(as_admin(replay_only))
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
    let _stream = api.watch_task(as_admin(follow)).await.expect("follows");
    assert_eq!(hub.channels(), 1);
}
