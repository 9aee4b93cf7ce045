//! Shared state and messages between agents through the real control
//! plane: versioned values with compare-and-set and TTLs, live topics, and
//! the CLI that shell steps use; bad input is refused by field.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_api::v1::state_service_client::StateServiceClient;
use tidewright_tests::*;
use tonic::Code;

type State = StateServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        tidewright_api::client::Bearer,
    >,
>;

async fn state_client(server: &Server, token: &str) -> State {
    StateServiceClient::with_interceptor(
        connect(&server.url).await.expect("connect"),
        bearer(token),
    )
}

fn at(scope: &str, key: &str) -> Option<v1::StateRef> {
    Some(v1::StateRef {
        tenant: String::new(),
        scope: scope.into(),
        key: key.into(),
    })
}

fn put(scope: &str, key: &str, value: &str, expect: Option<u64>, ttl: u32) -> v1::PutStateRequest {
    v1::PutStateRequest {
        r#ref: at(scope, key),
        value_json: value.into(),
        expect_version: expect,
        ttl_seconds: ttl,
    }
}

#[tokio::test]
async fn values_compare_and_set_by_version_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mut state = state_client(&server, &server.admin_token).await;

    let first = state
        .put_state(put(
            "task-1",
            "finding",
            r#"{"bug": "off by one"}"#,
            Some(0),
            0,
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(first.version, 1);
    assert!(first.expires_at.is_none());
    let read = state
        .get_state(v1::GetStateRequest {
            r#ref: at("task-1", "finding"),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (read.value_json.as_str(), read.version),
        (r#"{"bug": "off by one"}"#, 1)
    );

    let second = state
        .put_state(put("task-1", "finding", r#"{"bug": "fixed"}"#, Some(1), 0))
        .await
        .expect("compare-and-set")
        .into_inner();
    assert_eq!(second.version, 2);
    // A writer still holding version 1 is told, and changes nothing.
    let stale = state
        .put_state(put("task-1", "finding", r#""lost update""#, Some(1), 0))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(
        stale.message(),
        "task-1/finding is at version 2, not version 1"
    );
    let created_twice = state
        .put_state(put("task-1", "finding", "1", Some(0), 0))
        .await
        .expect_err("exists");
    assert_eq!(
        created_twice.message(),
        "task-1/finding is at version 2, not no value"
    );
    let read = state
        .get_state(v1::GetStateRequest {
            r#ref: at("task-1", "finding"),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(read.value_json, r#"{"bug": "fixed"}"#);

    // Another scope is another key space.
    let missing = state
        .get_state(v1::GetStateRequest {
            r#ref: at("task-2", "finding"),
        })
        .await
        .expect_err("elsewhere");
    assert_eq!(missing.code(), Code::NotFound);

    // A value with a TTL is there, then gone.
    let lease = state
        .put_state(put("task-1", "lease", r#""agent-a""#, None, 1))
        .await
        .expect("put with ttl")
        .into_inner();
    assert!(lease.expires_at.is_some());
    eventually(Duration::from_secs(10), || {
        let mut state = state.clone();
        async move {
            let gone = state
                .get_state(v1::GetStateRequest {
                    r#ref: at("task-1", "lease"),
                })
                .await
                .is_err_and(|e| e.code() == Code::NotFound);
            gone.then_some(())
        }
    })
    .await
    .expect("the value expires");
    // Expired counts as absent: it can be created again.
    state
        .put_state(put("task-1", "lease", r#""agent-b""#, Some(0), 0))
        .await
        .expect("re-created");

    state
        .delete_state(v1::DeleteStateRequest {
            r#ref: at("task-1", "finding"),
            expect_version: Some(2),
        })
        .await
        .expect("delete");
    assert_eq!(
        state
            .get_state(v1::GetStateRequest {
                r#ref: at("task-1", "finding")
            })
            .await
            .expect_err("deleted")
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_subscriber_gets_what_is_published_after_it_subscribed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mut state = state_client(&server, &server.admin_token).await;
    let nobody = state
        .publish(v1::PublishRequest {
            topic: at("task-1", "review"),
            message_json: r#""too early""#.into(),
        })
        .await
        .expect("publish")
        .into_inner();
    assert_eq!(nobody.delivered, 0);

    let mut messages = state
        .subscribe(v1::SubscribeRequest {
            topic: at("task-1", "review"),
        })
        .await
        .expect("subscribe")
        .into_inner();
    let sent = state
        .publish(v1::PublishRequest {
            topic: at("task-1", "review"),
            message_json: r#"{"lgtm": true}"#.into(),
        })
        .await
        .expect("publish")
        .into_inner();
    assert_eq!(sent.delivered, 1);
    let message = tokio::time::timeout(Duration::from_secs(10), messages.message())
        .await
        .expect("in time")
        .expect("stream")
        .expect("a message");
    assert_eq!(message.message_json, r#"{"lgtm": true}"#);
    assert_eq!(message.topic, "review");
    assert_eq!(message.sender, "admin");
}

#[tokio::test]
async fn bad_state_requests_are_refused_by_field_and_by_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let developer = "tidewright_dev_team_a";
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("tidewright_root", "admin", "root"),
            format!(
                "{} tenants=team-a",
                token_line(developer, "developer", "dana")
            ),
            token_line("tidewright_workers", "worker", "workers"),
        ],
        &[],
    )
    .expect("server");
    let mut admin = state_client(&server, "tidewright_root").await;
    let refused = |result: Result<tonic::Response<v1::StateValue>, tonic::Status>| {
        let status = result.expect_err("refused");
        (status.code(), status.message().to_string())
    };
    let (code, message) = refused(admin.put_state(put("bad scope!", "k", "1", None, 0)).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("ref.scope: "), "{message}");
    let (_, message) = refused(admin.put_state(put("s", "", "1", None, 0)).await);
    assert!(message.starts_with("ref.key: "), "{message}");
    let (_, message) = refused(admin.put_state(put("s", "k", "not json", None, 0)).await);
    assert!(message.starts_with("value_json: is not JSON"), "{message}");
    let (_, message) = refused(
        admin
            .put_state(put("s", "k", "1", None, 31 * 24 * 3600))
            .await,
    );
    assert!(message.starts_with("ttl_seconds: "), "{message}");
    let (code, _) = refused(
        admin
            .put_state(v1::PutStateRequest {
                r#ref: None,
                value_json: "1".into(),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);

    // A developer works in its own tenant only; a worker token not at all.
    let mut dana = state_client(&server, developer).await;
    dana.put_state(put("s", "k", "1", None, 0))
        .await
        .expect("own tenant");
    let mut elsewhere = put("s", "k", "2", None, 0);
    if let Some(r) = &mut elsewhere.r#ref {
        r.tenant = "team-b".into();
    }
    assert_eq!(
        refused(dana.put_state(elsewhere).await).0,
        Code::PermissionDenied
    );
    let mut worker = state_client(&server, "tidewright_workers").await;
    assert_eq!(
        refused(worker.put_state(put("s", "k", "3", None, 0)).await).0,
        Code::PermissionDenied
    );
    // Nothing refused was stored.
    let kept = dana
        .get_state(v1::GetStateRequest {
            r#ref: at("s", "k"),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!((kept.value_json.as_str(), kept.version), ("1", 1));
}

// Multi-threaded: the test waits on CLI processes while the server runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_puts_gets_and_compares_in_a_tasks_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let cli = || {
        let mut command = server.cli();
        // As inside a step: the scope comes from the environment.
        command.env("TIDEWRIGHT_TASK_ID", "task-42");
        command
    };
    let out = succeed(cli().args([
        "state",
        "put",
        "plan",
        r#"{"steps": 3}"#,
        "--expect-version",
        "0",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let out = succeed(cli().args(["state", "get", "plan"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"steps": 3}"#
    );

    let stale = cli()
        .args(["state", "put", "plan", "4", "--expect-version", "7"])
        .output()
        .expect("run");
    assert!(!stale.status.success());
    assert_eq!(
        String::from_utf8_lossy(&stale.stderr).trim(),
        "error: conflict: task-42/plan is at version 1, not version 7"
    );
    let outside = server
        .cli()
        .env_remove("TIDEWRIGHT_TASK_ID")
        .args(["state", "get", "plan"])
        .output()
        .expect("run");
    assert!(!outside.status.success());
    assert_eq!(
        String::from_utf8_lossy(&outside.stderr).trim(),
        "error: --scope: required outside a step (TIDEWRIGHT_TASK_ID is not set)"
    );
    let out = succeed(
        server
            .cli()
            .args(["state", "get", "plan", "--scope", "task-42", "--full"]),
    );
    let full: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(full["version"], 1);
    let out = succeed(cli().args(["publish", "done", "true"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "delivered to 0 subscribers"
    );
}

// A step calls back with a token of its own: it shares a value with its
// dependent in its task's scope, may do nothing else, and the token is worth
// nothing once its attempt has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_share_state_through_their_own_short_lived_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w1", &["shell"], 2)])
        .await
        .expect("server and worker");
    let kept = dir.path().join("kept-token");
    let denied = dir.path().join("denied.txt");
    let store = format!(
        r#"set -e
tidewright state put finding '{{"bug": "off by one"}}' --expect-version 0
printf %s "$TIDEWRIGHT_TOKEN" > '{kept}'
if tidewright state get finding --scope another-task 2>> '{denied}'; then exit 3; fi
if tidewright schedule list 2>> '{denied}'; then exit 4; fi"#,
        kept = kept.display(),
        denied = denied.display()
    );
    let read_back = r#"tidewright state get finding > "$TIDEWRIGHT_OUTPUT""#;
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task(
            "share",
            vec![
                shell_step("store", &[], &store),
                shell_step("read", &["store"], read_back),
            ],
        ),
    )
    .await
    .expect("submit");
    let finished = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeded");
    assert_eq!(
        step_output(&finished, "read").expect("output"),
        serde_json::json!({"bug": "off by one"})
    );

    let refusals = std::fs::read_to_string(&denied).expect("refusals");
    assert!(
        refusals.contains(&format!(
            "a step may use only its own task's scope \"{id}\", not \"another-task\""
        )),
        "{refusals}"
    );
    assert!(refusals.contains("may not read tasks"), "{refusals}");

    let token = std::fs::read_to_string(&kept).expect("the step's token");
    assert!(token.starts_with("tidewright_step_"), "{token}");
    assert_ne!(token, server.worker_token);
    let mut late = state_client(&server, &token).await;
    let status = late
        .get_state(v1::GetStateRequest {
            r#ref: at(&id, "finding"),
        })
        .await
        .expect_err("the attempt has ended");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("ended with its attempt"),
        "{status:?}"
    );
}

/// A scope lists its live values in key order, a page at a time, over
/// gRPC and in the CLI; a bad page size or scope is refused by field.
#[tokio::test]
async fn a_scope_lists_its_values_in_key_order_a_page_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mut state = state_client(&server, &server.admin_token).await;
    for i in (0..150).rev() {
        state
            .put_state(put(
                "shared",
                &format!("key-{i:03}"),
                &i.to_string(),
                None,
                0,
            ))
            .await
            .expect("put");
    }
    state
        .put_state(put("elsewhere", "key-000", "0", None, 0))
        .await
        .expect("put");
    let list = |after: &str, page_size: u32| v1::ListStateRequest {
        tenant: String::new(),
        scope: "shared".into(),
        after_key: after.into(),
        page_size,
    };
    let first = state
        .list_state(list("", 0))
        .await
        .expect("list")
        .into_inner();
    let keys = |page: &v1::ListStateResponse| -> Vec<String> {
        page.values
            .iter()
            .map(|v| v.r#ref.clone().unwrap_or_default().key)
            .collect()
    };
    assert_eq!(
        keys(&first),
        (0..100).map(|i| format!("key-{i:03}")).collect::<Vec<_>>(),
        "the first hundred, in key order"
    );
    assert_eq!(first.values[7].value_json, "7");
    assert_eq!(first.next_after_key, "key-099");
    let rest = state
        .list_state(list(&first.next_after_key, 0))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(keys(&rest).len(), 50);
    assert_eq!(rest.next_after_key, "", "the last page");

    let too_many = state
        .list_state(list("", 1001))
        .await
        .expect_err("too large a page");
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(
        too_many.message().starts_with("page_size"),
        "{}",
        too_many.message()
    );
    let bad_scope = state
        .list_state(v1::ListStateRequest {
            scope: "no/slash".into(),
            ..list("", 0)
        })
        .await
        .expect_err("a bad scope");
    assert_eq!(bad_scope.code(), Code::InvalidArgument);
    assert!(
        bad_scope.message().starts_with("scope"),
        "{}",
        bad_scope.message()
    );

    let out = succeed(server.cli().args(["state", "list", "--scope", "shared"]));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 150, "every page");
    assert_eq!(lines[0], "key-000 0");
    assert_eq!(lines[149], "key-149 149");
}
