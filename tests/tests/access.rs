//! Who may do what, end to end: health and reflection are open, every other
//! method needs a valid token, roles decide what it may do, and tenants never
//! see each other's tasks.

use std::process::Command;
use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::*;
use tonic::Code;

/// Asks the server, through one version of the reflection protocol and with
/// no token, for its services and for the file that defines
/// `tidewright.v1.TaskService`; answers the service names and that file's
/// descriptor.
macro_rules! reflect_without_a_token {
    ($version:ident, $channel:expr) => {{
        use prost::Message as _;
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let ask = |request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(vec![
                ask(MessageRequest::ListServices(String::new())),
                ask(MessageRequest::FileContainingSymbol(
                    "tidewright.v1.TaskService".into(),
                )),
            ]))
            .await?
            .into_inner();
        let mut services = Vec::new();
        let mut files = Vec::new();
        while let Some(answer) = answers.message().await? {
            match answer.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    services.extend(list.service.into_iter().map(|s| s.name))
                }
                Some(MessageResponse::FileDescriptorResponse(found)) => {
                    for bytes in found.file_descriptor_proto {
                        files.push(prost_types::FileDescriptorProto::decode(bytes.as_slice())?);
                    }
                }
                other => panic!("unexpected reflection answer: {other:?}"),
            }
        }
        (services, files)
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_a_token() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let channel = connect(&server.url).await?;
    let health = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "tidewright.v1.TaskService".into(),
        })
        .await?
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    // grpcurl and grpcui speak v1; Python's grpcio-reflection, Postman and
    // older grpcurl only v1alpha. Neither needs a token.
    let v1 = reflect_without_a_token!(v1, channel.clone());
    let v1alpha = reflect_without_a_token!(v1alpha, channel);
    for (version, (services, files)) in [("v1", v1), ("v1alpha", v1alpha)] {
        for service in [
            "tidewright.v1.TaskService",
            "tidewright.v1.AgentService",
            "tidewright.v1.StateService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|n| n == service),
                "{version}: {service} missing from {services:?}"
            );
        }
        // The file that defines TaskService describes its methods.
        let task_service = files
            .iter()
            .filter(|f| f.package() == "tidewright.v1")
            .flat_map(|f| &f.service)
            .find(|s| s.name() == "TaskService")
            .unwrap_or_else(|| panic!("{version}: no TaskService in {files:?}"));
        let methods: Vec<&str> = task_service.method.iter().map(|m| m.name()).collect();
        for method in ["SubmitTask", "GetTask", "ListTasks", "WatchTask"] {
            assert!(
                methods.contains(&method),
                "{version}: {method} missing from {methods:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_but_health_and_reflection_needs_a_valid_token() -> anyhow::Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let admin = server.tasks().await?;
    let kept = submit(&admin, task("kept", vec![noop_step("a")])).await?;
    let before = all_task_ids(&admin).await?;

    for token in [None, Some("tidewright_not_a_real_token")] {
        let channel = connect(&server.url).await?;
        let bearer = tidewright_api::client::Bearer::new(token)?;
        let mut tasks = v1::task_service_client::TaskServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
        let mut agents =
            v1::agent_service_client::AgentServiceClient::with_interceptor(channel.clone(), bearer);
        refused(
            tasks
                .submit_task(task("sneaky", vec![noop_step("a")]))
                .await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            tasks
                .get_task(v1::GetTaskRequest {
                    task_id: kept.clone(),
                })
                .await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            tasks.list_tasks(v1::ListTasksRequest::default()).await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            tasks
                .cancel_task(v1::CancelTaskRequest {
                    task_id: kept.clone(),
                })
                .await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            agents.list_agents(v1::ListAgentsRequest {}).await,
            Code::Unauthenticated,
            "token",
        );
        let register = v1::WorkerMessage {
            kind: Some(v1::worker_message::Kind::Register(v1::Register {
                name: "intruder".into(),
                slots: 1,
                ..Default::default()
            })),
        };
        let status = agents
            .connect(tokio_stream::iter(vec![register]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
        // Probes need no token.
        let health = HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await?
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    // The CLI without a token says so in one line.
    let out = Command::new(tidewright_bin())
        .args(["--server", &server.url, "get", "tasks"])
        .env_remove("TIDEWRIGHT_TOKEN")
        .current_dir(dir.path())
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unauthenticated: a bearer token is required")
    );

    assert_eq!(
        all_task_ids(&admin).await?,
        before,
        "nothing was stored or changed"
    );
    let agents = server
        .agents()
        .await?
        .list_agents(v1::ListAgentsRequest {})
        .await?
        .into_inner()
        .agents;
    assert!(agents.is_empty(), "no intruder registered");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_a_token_may_do() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("tidewright_admin", "admin", "root"),
            token_line("tidewright_dev", "developer", "dana"),
            token_line("tidewright_viewer", "viewer", "vic"),
            token_line("tidewright_worker", "worker", "pool-a"),
        ],
        &[],
    )?;
    let developer = server.tasks_as("tidewright_dev").await?;
    let id = submit(&developer, task("by-dev", vec![noop_step("a")])).await?;

    let mut viewer = server.tasks_as("tidewright_viewer").await?;
    refused(
        viewer.submit_task(task("no", vec![noop_step("a")])).await,
        Code::PermissionDenied,
        "vic (viewer) may not submit",
    );
    refused(
        viewer
            .cancel_task(v1::CancelTaskRequest {
                task_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "viewer",
    );
    refused(
        viewer
            .retry_task(v1::RetryTaskRequest {
                task_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "viewer",
    );
    let seen = viewer
        .get_task(v1::GetTaskRequest {
            task_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(seen.id, id, "a viewer reads");

    let mut worker = server.tasks_as("tidewright_worker").await?;
    refused(
        worker
            .get_task(v1::GetTaskRequest {
                task_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "pool-a (worker)",
    );
    refused(
        worker.submit_task(task("no", vec![noop_step("a")])).await,
        Code::PermissionDenied,
        "worker",
    );

    // Only worker (and admin) tokens may connect as a worker.
    let register = || v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Register(v1::Register {
            name: "dev-box".into(),
            slots: 1,
            ..Default::default()
        })),
    };
    let mut as_dev = v1::agent_service_client::AgentServiceClient::with_interceptor(
        connect(&server.url).await?,
        bearer("tidewright_dev"),
    );
    let status = as_dev
        .connect(tokio_stream::iter(vec![register()]))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    let _w = start_worker(
        &server.url,
        dir.path(),
        "pool-a-1",
        &["shell"],
        1,
        &[],
        "tidewright_worker",
    )?;
    let admin = server.tasks_as("tidewright_admin").await?;
    let done = wait_finished(&admin, &id, FINISH).await?;
    assert_eq!(done.state, v1::TaskState::Succeeded as i32);
    assert_eq!(
        all_task_ids(&admin).await?,
        [id],
        "refused submits stored nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_bad_token_stops_with_one_clear_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let mut worker = start_worker(
        &server.url,
        dir.path(),
        "impostor",
        &["shell"],
        1,
        &[],
        "tidewright_wrong",
    )?;
    let status = worker.wait_exit(Duration::from_secs(20))?;
    assert!(!status.success());
    let log = std::fs::read_to_string(&worker.log)?;
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("the token is not valid"),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_tasks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = dir.path().join("gate");
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("tidewright_admin", "admin", "root"),
            token_line("tidewright_alice", "developer", "alice tenants=team-a"),
            token_line("tidewright_bob", "developer", "bob tenants=team-b"),
            token_line("tidewright_worker", "worker", "pool"),
        ],
        &[],
    )?;
    let _w = start_worker(
        &server.url,
        dir.path(),
        "w",
        &["shell"],
        2,
        &[],
        "tidewright_worker",
    )?;
    let bob = server.tasks_as("tidewright_bob").await?;
    let mut request = task("bobs", vec![first_attempt_waits(&gate)]);
    request.idempotency_key = "shared-key".into();
    let bobs = submit(&bob, request.clone()).await?;
    wait_step(&bob, &bobs, "work", v1::StepState::Running).await?;

    let mut alice = server.tasks_as("tidewright_alice").await?;
    refused(
        alice
            .get_task(v1::GetTaskRequest {
                task_id: bobs.clone(),
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    refused(
        alice
            .cancel_task(v1::CancelTaskRequest {
                task_id: bobs.clone(),
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    refused(
        alice
            .retry_task(v1::RetryTaskRequest {
                task_id: bobs.clone(),
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    refused(
        alice
            .watch_task(v1::WatchTaskRequest {
                task_id: bobs.clone(),
                after_seq: 0,
                follow: true,
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    let mut into_b = task("sneak", vec![noop_step("a")]);
    into_b.tenant = "team-b".into();
    refused(
        alice.submit_task(into_b).await,
        Code::PermissionDenied,
        "alice may not submit to tenant \"team-b\"",
    );
    // The same idempotency key in Alice's tenant is Alice's own task.
    let alices = submit(&alice, request).await?;
    assert_ne!(alices, bobs);
    let listed: Vec<String> = alice
        .list_tasks(v1::ListTasksRequest::default())
        .await?
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        listed,
        std::slice::from_ref(&alices),
        "a listing shows only the caller's tenants"
    );

    // Bob's task went on untouched.
    let still = bob
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: bobs.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (still.state, still.tenant.as_str()),
        (v1::TaskState::Running as i32, "team-b")
    );
    std::fs::write(&gate, "")?;
    assert_eq!(
        wait_finished(&bob, &bobs, FINISH).await?.state,
        v1::TaskState::Succeeded as i32
    );
    let admin = server.tasks_as("tidewright_admin").await?;
    assert_eq!(
        all_task_ids(&admin).await?.len(),
        2,
        "the admin sees every tenant"
    );
    assert_eq!(
        wait_finished(&alice, &alices, FINISH).await?.tenant,
        "team-a"
    );
    Ok(())
}
