//! The operator's view of real tasks: what a `Task` resource's status would
//! say, computed from a task run by a real control plane and worker.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_operator::crd::TaskPhase;
use tidewright_operator::status::task_status;
use tidewright_tests::*;

#[tokio::test]
async fn task_status_mirrors_a_running_and_a_finished_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)])
        .await
        .expect("server and worker");
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gate");
    let id = submit(
        &client,
        task(
            "mirrored",
            vec![
                shell_step("quick", &[], "true"),
                shell_step(
                    "held",
                    &["quick"],
                    &format!("echo '::progress 0.5 halfway'; {}", wait_for_gate(&gate)),
                ),
            ],
        ),
    )
    .await
    .expect("submit");

    let running = wait_task(&client, &id, Duration::from_secs(20), |task| {
        let held = task.steps.iter().find(|s| s.id == "held")?;
        (held.state == v1::StepState::Running as i32 && held.progress > 0.0).then_some(task)
    })
    .await
    .expect("held step reports progress");
    let status = task_status(&running, Some(1));
    assert_eq!(status.phase, Some(TaskPhase::Running));
    assert_eq!(status.task_id.as_deref(), Some(id.as_str()));
    assert_eq!(status.steps.as_deref(), Some("1/2"));
    assert_eq!(status.progress.as_deref(), Some("75%"));
    assert_eq!((status.steps_succeeded, status.steps_running), (1, 1));
    assert!(status.start_time.is_some() && status.completion_time.is_none());
    assert_eq!(status.conditions[0].status, "False");

    std::fs::write(&gate, "").expect("open the gate");
    let finished = wait_finished(&client, &id, Duration::from_secs(20))
        .await
        .expect("finishes");
    let status = task_status(&finished, Some(1));
    assert_eq!(status.phase, Some(TaskPhase::Succeeded));
    assert_eq!(status.steps.as_deref(), Some("2/2"));
    assert_eq!(status.progress.as_deref(), Some("100%"));
    assert_eq!(status.steps_succeeded, 2);
    assert!(status.completion_time >= status.start_time);
    assert_eq!(
        (
            status.conditions[0].status.as_str(),
            status.conditions[0].reason.as_str()
        ),
        ("True", "Succeeded")
    );
    // Reading the task again gives the same status: nothing to patch.
    let again = client
        .clone()
        .get_task(v1::GetTaskRequest { task_id: id })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(task_status(&again, Some(1)), status);
}

// ------------------------------------------------ controllers, mock Kubernetes API

use std::sync::Arc;

use serde_json::{Value, json};
use tidewright_operator::crd::{Agent, TidewrightTask};
use tidewright_operator::{Context, WorkerSettings, agents, leader, tasks};
use tidewright_tests::kube_api::{MockKube, operator_context, sh, task_resource};

const AGENT: &str = "/apis/tidewright.dev/v1alpha1/namespaces/team-a/agents/coders";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/team-a/deployments/coders-workers";
const TASKS: &str = "/apis/tidewright.dev/v1alpha1/namespaces/team-a/tasks";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

fn context(server: &Server, mock: &MockKube) -> Arc<Context> {
    operator_context(server, mock)
}

fn stored<K: serde::de::DeserializeOwned>(mock: &MockKube, path: &str) -> K {
    serde_json::from_value(mock.get(path).expect("the object exists")).expect("the object parses")
}

fn pod(name: &str, pool: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a",
            "labels": {"app.kubernetes.io/name": "tidewright-worker", "tidewright.dev/agent": pool}},
    })
}

fn cost(mock: &MockKube, pod: &str) -> Option<String> {
    let pod = mock.get(&format!("/api/v1/namespaces/team-a/pods/{pod}"))?;
    pod["metadata"]["annotations"][agents::DELETION_COST]
        .as_str()
        .map(str::to_string)
}

/// What the control plane reports: (running on the pool, queued in total).
async fn load(server: &Server) -> (u32, u32) {
    let view = server
        .agents()
        .await
        .expect("client")
        .list_agents(v1::ListAgentsRequest {})
        .await
        .expect("list agents")
        .into_inner();
    (
        view.agents.iter().map(|a| a.running).sum(),
        view.queue.iter().map(|q| q.queued).sum(),
    )
}

async fn wait_load(server: &Server, want: (u32, u32)) {
    eventually(Duration::from_secs(20), || async {
        (load(server).await == want).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("(running, queued) never became {want:?}"));
}

async fn reconcile_agent(mock: &MockKube, ctx: &Arc<Context>) {
    agents::reconcile(Arc::new(stored::<Agent>(mock, AGENT)), ctx.clone())
        .await
        .expect("reconcile");
}

#[tokio::test]
async fn agent_controller_sizes_the_pool_marks_busy_pods_and_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let _worker = server
        .worker_with("coders-a", &["shell"], 2, &["--pool", "team-a/coders"])
        .expect("worker");
    server
        .wait_for_agents(&["coders-a"])
        .await
        .expect("worker up");
    let mock = MockKube::start();
    mock.put(
        AGENT,
        json!({
            "apiVersion": "tidewright.dev/v1alpha1", "kind": "Agent",
            "metadata": {"name": "coders", "namespace": "team-a", "generation": 1},
            "spec": {"slotsPerPod": 2, "scaleToZeroAfterSeconds": 0},
        }),
    );
    mock.put(
        "/api/v1/namespaces/team-a/pods/coders-a",
        pod("coders-a", "coders"),
    );
    mock.put(
        "/api/v1/namespaces/team-a/pods/coders-b",
        pod("coders-b", "coders"),
    );
    mock.put(
        "/api/v1/namespaces/team-a/pods/other-a",
        pod("other-a", "other"),
    );
    let ctx = context(&server, &mock);

    // Five steps: two run on the one worker, three wait.
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gate");
    let steps = (0..5)
        .map(|i| shell_step(&format!("s{i}"), &[], &wait_for_gate(&gate)))
        .collect();
    submit(&client, task("load", steps)).await.expect("submit");
    wait_load(&server, (2, 3)).await;
    reconcile_agent(&mock, &ctx).await;
    // ceil((3 queued + 2 running) / 2 slots) = 3 pods.
    let deployment = mock.get(DEPLOYMENT).expect("the Deployment was applied");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/tidewright/tidewright-worker:test"
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["kind"],
        "Agent"
    );
    let apply = &mock.requests_to("PATCH", DEPLOYMENT)[0];
    assert!(apply.content_type.starts_with("application/apply-patch"));
    assert!(
        apply.query.contains("fieldManager=tidewright-operator")
            && apply.query.contains("force=true")
    );
    // The busy pod is the expensive one to remove; the other pool is untouched.
    assert_eq!(cost(&mock, "coders-a").as_deref(), Some("2000"));
    assert_eq!(cost(&mock, "coders-b").as_deref(), Some("0"));
    assert_eq!(cost(&mock, "other-a"), None);
    let status = stored::<Agent>(&mock, AGENT).status.expect("status");
    assert_eq!((status.busy, status.queued), (2, 3));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/name=tidewright-worker,tidewright.dev/agent=coders")
    );
    assert_eq!(status.observed_generation, Some(1));

    // Nothing changed: a second pass writes no pod and no status.
    let before = mock.requests().len();
    reconcile_agent(&mock, &ctx).await;
    let later: Vec<_> = mock.requests()[before..]
        .iter()
        .filter(|r| r.method == "PATCH" && !r.path.starts_with(DEPLOYMENT))
        .map(|r| r.path.clone())
        .collect();
    assert!(later.is_empty(), "an unchanged pool patched {later:?}");

    // The work finishes; with no idle period the pool goes to zero.
    std::fs::write(&gate, "").expect("open the gate");
    wait_all_finished(&client, Duration::from_secs(30))
        .await
        .expect("all finish");
    wait_load(&server, (0, 0)).await;
    reconcile_agent(&mock, &ctx).await;
    assert_eq!(
        mock.get(DEPLOYMENT).expect("deployment")["spec"]["replicas"],
        0
    );
    assert_eq!(cost(&mock, "coders-a").as_deref(), Some("0"));
    let status = stored::<Agent>(&mock, AGENT).status.expect("status");
    assert_eq!((status.busy, status.queued), (0, 0));
    assert_eq!(status.conditions[0].reason, "ScaledToZero");
}

async fn reconcile_task(mock: &MockKube, path: &str, ctx: &Arc<Context>) {
    tasks::reconcile(Arc::new(stored::<TidewrightTask>(mock, path)), ctx.clone())
        .await
        .expect("reconcile");
}

fn status_of(mock: &MockKube, path: &str) -> Value {
    mock.get(path)
        .map(|t| t["status"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn task_controller_submits_once_mirrors_events_and_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)])
        .await
        .expect("server and worker");
    let client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    let gate = dir.path().join("gate");
    let path = format!("{TASKS}/build");
    mock.put(
        &path,
        task_resource(
            "build",
            "uid-build",
            json!([
                sh("quick", &[], "true"),
                sh(
                    "held",
                    &["quick"],
                    &format!("echo '::progress 0.5 half'; {}", wait_for_gate(&gate))
                ),
            ]),
            Some(0),
        ),
    );

    // First the finalizer, and nothing submitted yet.
    reconcile_task(&mock, &path, &ctx).await;
    assert_eq!(
        mock.get(&path).expect("task")["metadata"]["finalizers"],
        json!([tasks::FINALIZER])
    );
    assert!(all_task_ids(&client).await.expect("list").is_empty());

    // Reconciled twice from the same (stale) object: one task, by the uid.
    let object = Arc::new(stored::<TidewrightTask>(&mock, &path));
    for _ in 0..2 {
        tasks::reconcile(object.clone(), ctx.clone())
            .await
            .expect("reconcile");
    }
    let ids = all_task_ids(&client).await.expect("list");
    assert_eq!(ids.len(), 1, "submitted once");
    let submitted = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: ids[0].clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(submitted.tenant, "team-a");
    assert_eq!(
        submitted.spec.as_ref().map(|s| s.name.as_str()),
        Some("build")
    );
    assert_eq!(status_of(&mock, &path)["taskId"], json!(ids[0]));

    // From here only the event stream drives the status: no reconcile.
    let running = eventually(Duration::from_secs(20), || async {
        let status = status_of(&mock, &path);
        (status["phase"] == "Running" && status["progress"] == "75%").then_some(status)
    })
    .await
    .expect("the running step's progress is mirrored");
    assert_eq!(running["steps"], "1/2");
    assert_eq!(ctx.followed_tasks(), 1);
    std::fs::write(&gate, "").expect("open the gate");
    let done = eventually(Duration::from_secs(20), || async {
        let status = status_of(&mock, &path);
        (status["phase"] == "Succeeded").then_some(status)
    })
    .await
    .expect("success is mirrored");
    assert_eq!(
        (done["steps"].as_str(), done["progress"].as_str()),
        (Some("2/2"), Some("100%"))
    );
    assert!(done["completionTime"].is_string());
    let reasons: Vec<String> = mock
        .requests_to("POST", EVENTS)
        .iter()
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        reasons.contains(&"Running".to_string()) && reasons.contains(&"Succeeded".to_string()),
        "events: {reasons:?}"
    );
    eventually(Duration::from_secs(5), || async {
        (ctx.followed_tasks() == 0).then_some(())
    })
    .await
    .expect("the follower ends with the task");

    // ttlSecondsAfterFinished: 0 deletes it on the next pass; the finalizer
    // then lets go without cancelling anything.
    reconcile_task(&mock, &path, &ctx).await;
    assert_eq!(mock.requests_to("DELETE", &path).len(), 1);
    reconcile_task(&mock, &path, &ctx).await;
    assert!(mock.get(&path).is_none(), "the finished Task is gone");
    let task = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: ids[0].clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "kept in the control plane"
    );
}

#[tokio::test]
async fn deleting_a_running_task_cancels_it_and_releases_the_finalizer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 1)])
        .await
        .expect("server and worker");
    let client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    let path = format!("{TASKS}/forever");
    let gate = dir.path().join("never");
    mock.put(
        &path,
        task_resource(
            "forever",
            "uid-forever",
            json!([sh("wait", &[], &wait_for_gate(&gate))]),
            None,
        ),
    );
    reconcile_task(&mock, &path, &ctx).await;
    reconcile_task(&mock, &path, &ctx).await;
    eventually(Duration::from_secs(20), || async {
        (status_of(&mock, &path)["phase"] == "Running").then_some(())
    })
    .await
    .expect("running");
    let id = status_of(&mock, &path)["taskId"]
        .as_str()
        .expect("task id")
        .to_string();

    mock.delete(&path);
    assert!(mock.get(&path).is_some(), "held by the finalizer");
    reconcile_task(&mock, &path, &ctx).await;
    let task = wait_finished(&client, &id, Duration::from_secs(20))
        .await
        .expect("finishes");
    assert_eq!(task.state, v1::TaskState::Cancelled as i32);
    assert!(
        mock.get(&path).is_none(),
        "the finalizer was removed, so the Task is gone"
    );
    assert_eq!(ctx.followed_tasks(), 0);
}

#[tokio::test]
async fn a_task_the_control_plane_refuses_fails_with_the_reason_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    let path = format!("{TASKS}/loop");
    // A cycle: the CRD schema cannot see it; the control plane names it.
    mock.put(
        &path,
        task_resource(
            "loop",
            "uid-loop",
            json!([sh("a", &["b"], "true"), sh("b", &["a"], "true")]),
            None,
        ),
    );
    reconcile_task(&mock, &path, &ctx).await;
    reconcile_task(&mock, &path, &ctx).await;
    let status = status_of(&mock, &path);
    assert_eq!(status["phase"], "Failed");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cycle") && message.contains("dependsOn"),
        "{message}"
    );
    assert!(status["taskId"].is_null());
    let warning = mock.requests_to("POST", EVENTS);
    assert_eq!(warning.len(), 1);
    assert_eq!(
        (
            warning[0].body["type"].as_str(),
            warning[0].body["reason"].as_str()
        ),
        (Some("Warning"), Some("Failed"))
    );
    assert!(all_task_ids(&client).await.expect("list").is_empty());
    // Deleting it cancels nothing and lets go.
    mock.delete(&path);
    reconcile_task(&mock, &path, &ctx).await;
    assert!(mock.get(&path).is_none());
}

#[tokio::test]
async fn one_replica_leads_until_its_lease_expires() {
    use k8s_openapi::api::coordination::v1::Lease;
    let mock = MockKube::start();
    let lease =
        "/apis/coordination.k8s.io/v1/namespaces/tidewright-system/leases/tidewright-operator";
    let lock = |who: &str| {
        leader::LeaseLock::new(
            kube::Api::<Lease>::namespaced(mock.client.clone(), "tidewright-system"),
            "tidewright-operator",
            who,
            Duration::from_secs(15),
        )
    };
    let (a, b) = (lock("a"), lock("b"));
    assert!(
        a.try_acquire_or_renew().await.expect("a"),
        "a creates the lease"
    );
    assert!(
        !b.try_acquire_or_renew().await.expect("b"),
        "b follows a live lease"
    );
    assert!(a.try_acquire_or_renew().await.expect("a renews"));
    assert_eq!(
        mock.get(lease).expect("lease")["spec"]["holderIdentity"],
        "a"
    );

    // a stops renewing: its lease runs out and b takes it over.
    let mut expired = mock.get(lease).expect("lease");
    expired["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
    mock.put(lease, expired);
    assert!(
        b.try_acquire_or_renew().await.expect("b"),
        "b takes the expired lease"
    );
    let held = mock.get(lease).expect("lease");
    assert_eq!(held["spec"]["holderIdentity"], "b");
    assert_eq!(held["spec"]["leaseTransitions"], 1);
    assert!(
        !a.try_acquire_or_renew().await.expect("a"),
        "a is now a follower"
    );
}

#[test]
fn the_operator_outside_a_cluster_says_so_in_one_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let stderr = fails_in_one_line(
        std::process::Command::new(tidewright_bin())
            .args([
                "operator",
                "run",
                "--worker-image",
                "tidewright-worker:test",
            ])
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST"),
    );
    assert!(
        stderr.starts_with("error: no Kubernetes API to talk to"),
        "{stderr}"
    );
}

/// The worker container as the operator's Deployment describes it (its args
/// and environment, the Secret and the pod name filled in as the kubelet
/// would) becomes a worker of the pool with the pool's capabilities.
#[tokio::test]
async fn the_pods_the_operator_describes_join_their_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let agent: Agent = serde_yaml::from_str(
        "apiVersion: tidewright.dev/v1alpha1\nkind: Agent\nmetadata: {name: coders, namespace: team-a, uid: u1}\nspec: {capabilities: [git], slotsPerPod: 3}\n",
    )
    .expect("agent");
    let settings = WorkerSettings {
        server: server.url.clone(),
        image: "unused".into(),
        token_secret: "tidewright-worker-token".into(),
        token_key: "token".into(),
        metrics_token_secret: Some("tidewright-metrics-token".into()),
    };
    let deployment = tidewright_operator::workers::deployment(&agent, &settings, 1);
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let container = &pod.containers[0];
    let http = free_addr();
    let mut command = std::process::Command::new(tidewright_bin());
    command
        .args(container.args.iter().flatten())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .current_dir(dir.path());
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) if from.field_ref.is_some() => "coders-7d9f-x2k4q".to_string(),
            (None, Some(from)) if from.secret_key_ref.is_some() => server.worker_token.clone(),
            _ => panic!("{} has no value the kubelet could fill", var.name),
        };
        // What the kubelet would mount or route, made here instead.
        let value = match var.name.as_str() {
            "TIDEWRIGHT_WORK_DIR" => dir.path().join("work").display().to_string(),
            "HOME" => dir.path().display().to_string(),
            "TIDEWRIGHT_TOKEN_FILE" => {
                assert!(value.starts_with(tidewright_operator::workers::TOKEN_DIR));
                let file = dir.path().join("worker-token");
                std::fs::write(&file, &server.worker_token).expect("token file");
                file.display().to_string()
            }
            "TIDEWRIGHT_METRICS_TOKEN_FILE" => {
                assert!(value.starts_with(tidewright_operator::workers::METRICS_TOKEN_DIR));
                let file = dir.path().join("metrics-token");
                std::fs::write(&file, "scraper\n").expect("token file");
                file.display().to_string()
            }
            "TIDEWRIGHT_WORKER_HTTP_LISTEN" => {
                assert_eq!(value, "0.0.0.0:9090", "the pod's port, on the pod's IP");
                http.clone()
            }
            _ => value,
        };
        command.env(&var.name, value);
    }
    let mut worker = Process::spawn(&mut command, dir.path(), "pod").expect("the pod's worker");
    server
        .wait_for_agents(&["coders-7d9f-x2k4q"])
        .await
        .expect("the pod registers under its pod name");
    let agents = server
        .agents()
        .await
        .expect("client")
        .list_agents(v1::ListAgentsRequest {})
        .await
        .expect("list")
        .into_inner()
        .agents;
    let registered = &agents[0];
    assert_eq!(registered.pool, "team-a/coders");
    assert_eq!(registered.capabilities, ["git", "shell"]);
    assert_eq!(registered.slots, 3);
    // The kubelet's probes and Prometheus reach the pod on its port.
    let probe = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .expect("an HTTP probe");
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into())
        );
        http_get(&http, get.path.as_deref().unwrap_or("/"), None).expect("probe")
    };
    let ports = container.ports.clone().unwrap_or_default();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("http"), 9090)
    );
    assert_eq!(
        probe(&container.readiness_probe).0,
        200,
        "ready: registered"
    );
    assert_eq!(probe(&container.liveness_probe).0, 200);
    assert_eq!(http_get(&http, "/metrics", None).expect("scrape").0, 401);
    let (status, body) = http_get(&http, "/metrics", Some("scraper")).expect("scrape");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tidewright_worker_slots 3"), "{body}");
    let mounted = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref()?.secret_name.clone());
    assert_eq!(mounted.as_deref(), Some("tidewright-metrics-token"));
    // Scale-in sends SIGTERM: an idle worker drains and exits cleanly.
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(
        status.success(),
        "exit status {status:?}; see {}",
        worker.log.display()
    );
}

#[tokio::test]
async fn an_approval_annotation_on_a_task_becomes_the_decision_and_a_stranger_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)])
        .await
        .expect("server and worker");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    let gated = |approvers: Value| {
        json!([
            sh("build", &[], "true"),
            {"id": "deploy", "dependsOn": ["build"], "shell": {"command": ["true"]},
             "approval": {"approvers": approvers, "message": "ship it?"}},
        ])
    };
    // The operator decides as its own identity, an admin here.
    let path = format!("{TASKS}/release");
    mock.put(
        &path,
        task_resource("release", "uid-release", gated(json!(["admin"])), None),
    );
    reconcile_task(&mock, &path, &ctx).await;
    reconcile_task(&mock, &path, &ctx).await;
    let waiting = eventually(Duration::from_secs(20), || async {
        let status = status_of(&mock, &path);
        (status["awaitingApproval"] == json!(["deploy"])).then_some(status)
    })
    .await
    .expect("the waiting step is in the status");
    assert_eq!(waiting["phase"], "Running");
    let condition = waiting["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "AwaitingApproval").cloned())
        .expect("an AwaitingApproval condition");
    assert_eq!(condition["status"], "True");

    let mut annotated = mock.get(&path).expect("task");
    annotated["metadata"]["annotations"] =
        json!({tasks::APPROVE: "deploy", tasks::REASON: "change ticket 7"});
    mock.put(&path, annotated);
    reconcile_task(&mock, &path, &ctx).await;
    let done = eventually(Duration::from_secs(20), || async {
        let status = status_of(&mock, &path);
        (status["phase"] == "Succeeded").then_some(status)
    })
    .await
    .expect("the approved step ran");
    assert_eq!(done["awaitingApproval"], json!([]), "{done}");
    let task_id = done["taskId"].as_str().expect("task id").to_string();
    let task = server
        .tasks()
        .await
        .expect("client")
        .get_task(v1::GetTaskRequest { task_id })
        .await
        .expect("get")
        .into_inner();
    let audit = server.audit_log().await.expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "step.approve"
            && e.task_id == task.id
            && e.outcome == "ok"
            && e.detail
                == "step deploy: change ticket 7 (tidewright.dev/approve annotation on Task team-a/release)"),
        "{audit:#?}"
    );

    // An operator that is not an approver: a Warning event, and the step
    // keeps waiting for someone who is.
    let path = format!("{TASKS}/guarded");
    let mut guarded = task_resource("guarded", "uid-guarded", gated(json!(["vic"])), None);
    guarded["metadata"]["annotations"] = json!({tasks::APPROVE: "deploy"});
    mock.put(&path, guarded);
    reconcile_task(&mock, &path, &ctx).await; // the finalizer
    reconcile_task(&mock, &path, &ctx).await; // submitted
    eventually(Duration::from_secs(20), || async {
        (status_of(&mock, &path)["awaitingApproval"] == json!(["deploy"])).then_some(())
    })
    .await
    .expect("waiting");
    reconcile_task(&mock, &path, &ctx).await;
    let refused: Vec<Value> = mock
        .requests_to("POST", EVENTS)
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b["reason"] == "ApprovalRefused")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["type"], "Warning");
    assert!(
        refused[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("is not an approver of step \"deploy\"")),
        "{refused:?}"
    );
    assert_eq!(
        status_of(&mock, &path)["awaitingApproval"],
        json!(["deploy"])
    );
}

const TEMPLATES: &str = "/apis/tidewright.dev/v1alpha1/namespaces/team-a/tasktemplates";

fn templated_task(name: &str, uid: &str, template: &str, parameters: Value) -> Value {
    json!({
        "apiVersion": "tidewright.dev/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "namespace": "team-a", "uid": uid, "generation": 1},
        "spec": {"templateRef": {"name": template}, "parameters": parameters},
    })
}

#[tokio::test]
async fn a_task_with_a_template_ref_runs_its_namespaces_template_with_its_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)])
        .await
        .expect("server and worker");
    let client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    mock.put(
        &format!("{TEMPLATES}/greet"),
        json!({
            "apiVersion": "tidewright.dev/v1alpha1", "kind": "TaskTemplate",
            "metadata": {"name": "greet", "namespace": "team-a", "uid": "uid-greet"},
            "spec": {
                "description": "Greets someone.",
                "parameters": {
                    "who": {"required": true},
                    "times": {"type": "integer", "default": "2"},
                },
                "name": "greet ${{ who }}",
                "steps": [{"id": "say", "shell": {
                    "command": ["sh", "-c", "echo \"hello $WHO\" \"$1\" > /dev/null", "greet", "${{ times }}"],
                    "env": {"WHO": "${{ who }}"},
                }}],
            },
        }),
    );
    let path = format!("{TASKS}/hello");
    mock.put(
        &path,
        templated_task(
            "hello",
            "uid-hello",
            "greet",
            json!({"who": "Ada; rm -rf / $(x)"}),
        ),
    );
    // The first adds the finalizer; the second submits.
    reconcile_task(&mock, &path, &ctx).await;
    reconcile_task(&mock, &path, &ctx).await;
    let id = status_of(&mock, &path)["taskId"]
        .as_str()
        .expect("submitted")
        .to_string();
    let task = wait_finished(&client, &id, Duration::from_secs(30))
        .await
        .expect("finished");
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        task.message
    );
    let spec = task.spec.expect("spec");
    assert_eq!(spec.name, "greet Ada; rm -rf / $(x)");
    let Some(v1::step_spec::Runtime::Shell(shell)) = &spec.steps[0].runtime else {
        panic!("a shell step");
    };
    assert_eq!(
        shell.env["WHO"], "Ada; rm -rf / $(x)",
        "the value, whole, in its env"
    );
    assert_eq!(shell.command[4], "2", "the default");
}

#[tokio::test]
async fn a_template_ref_to_nothing_or_with_a_missing_parameter_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    // A built-in template, without its required repo.
    let path = format!("{TASKS}/half");
    mock.put(
        &path,
        templated_task("half", "uid-half", "refactor", json!({"goal": "tidy"})),
    );
    // The first adds the finalizer; the second submits.
    reconcile_task(&mock, &path, &ctx).await;
    reconcile_task(&mock, &path, &ctx).await;
    let status = status_of(&mock, &path);
    assert_eq!(status["phase"], "Failed");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("template refactor: parameters.repo: required"),
        "{message}"
    );
    let path = format!("{TASKS}/nowhere");
    mock.put(
        &path,
        templated_task("nowhere", "uid-nowhere", "nope", json!({})),
    );
    // The first adds the finalizer; the second submits.
    reconcile_task(&mock, &path, &ctx).await;
    reconcile_task(&mock, &path, &ctx).await;
    let message = status_of(&mock, &path)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("no TaskTemplate \"nope\" in namespace team-a"),
        "{message}"
    );
    assert!(all_task_ids(&client).await.expect("list").is_empty());
}

const NETWORK_POLICY: &str =
    "/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/coders-workers-egress";

/// The Agent `coders` in team-a with this spec.
fn agent_resource(spec: Value) -> Value {
    json!({
        "apiVersion": "tidewright.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "coders", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": spec,
    })
}

fn egress_agent(allow: Value) -> Value {
    agent_resource(json!({"egress": {"allow": allow}}))
}

#[tokio::test]
async fn an_agents_egress_becomes_a_network_policy_before_its_pods_and_goes_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);

    mock.put(
        AGENT,
        egress_agent(json!(["*.github.com", "10.1.2.3:5432"])),
    );
    reconcile_agent(&mock, &ctx).await;
    let policy = mock
        .get(NETWORK_POLICY)
        .expect("the NetworkPolicy was applied");
    let deployment = mock.get(DEPLOYMENT).expect("the Deployment was applied");
    // It fences exactly the pool's pods, and is owned by the Agent.
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
    assert_eq!(policy["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(policy["metadata"]["ownerReferences"][0]["kind"], "Agent");
    let rules = policy["spec"]["egress"].as_array().expect("rules");
    assert!(
        rules
            .iter()
            .any(|r| r["to"][0]["ipBlock"]["cidr"] == "10.1.2.3/32")
    );
    // Applied before the Deployment, so no pod of the pool starts unfenced.
    let order: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && (r.path == NETWORK_POLICY || r.path == DEPLOYMENT))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(order.first().map(String::as_str), Some(NETWORK_POLICY));
    let status = stored::<Agent>(&mock, AGENT).status.expect("status");
    assert_eq!(
        status.network_policy.as_deref(),
        Some("coders-workers-egress")
    );

    // egress removed: the policy goes, and the status says so.
    let mut agent = mock.get(AGENT).expect("agent");
    agent["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("egress");
    mock.put(AGENT, agent);
    reconcile_agent(&mock, &ctx).await;
    assert!(mock.get(NETWORK_POLICY).is_none(), "the policy was deleted");
    let status = stored::<Agent>(&mock, AGENT).status.expect("status");
    assert_eq!(status.network_policy, None);
}

#[tokio::test]
async fn a_bad_egress_entry_fails_the_pool_naming_it_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    mock.put(AGENT, egress_agent(json!(["github.com", "git*hub.com"])));
    let err = agents::reconcile(Arc::new(stored::<Agent>(&mock, AGENT)), ctx.clone())
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("spec.egress.allow[1]") && message.contains("git*hub.com"),
        "{message}"
    );
    assert!(!err.is_transient());
    assert!(mock.get(NETWORK_POLICY).is_none() && mock.get(DEPLOYMENT).is_none());
}

/// `tidewright worker --steps 1`: takes one step whatever its free slots, runs
/// it, and leaves with success; the rest wait for other workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_steps_1_runs_one_step_and_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let client = server.tasks().await.expect("client");
    queued_steps(&server, &client, "one-each", 3).await;

    let mut once = server
        .worker_with("once-a", &["shell"], 4, &["--steps", "1"])
        .expect("worker");
    let status = tokio::task::block_in_place(|| once.wait_exit(Duration::from_secs(30)))
        .expect("it leaves after its step");
    assert!(status.success(), "{status:?}");
    // Four slots free, yet it took one: two still wait.
    wait_load(&server, (0, 2)).await;

    let _steady = server
        .worker_with("steady", &["shell"], 4, &[])
        .expect("worker");
    wait_all_finished(&client, Duration::from_secs(30))
        .await
        .expect("the rest run");
}

const PODS: &str = "/api/v1/namespaces/team-a/pods";

fn step_pods(mock: &MockKube) -> Vec<Value> {
    mock.list(PODS)
}

/// Submits `count` shell steps as one task and waits until the control
/// plane counts them queued; the task's id.
async fn queued_steps(server: &Server, client: &Tasks, name: &str, count: usize) -> String {
    let steps = (0..count)
        .map(|i| shell_step(&format!("s{i}"), &[], "true"))
        .collect();
    let id = submit(client, task(name, steps)).await.expect("submit");
    wait_load(server, (0, count as u32)).await;
    id
}

/// A real worker named `name` of the pool, as its one-step pod runs it.
fn one_step_worker(server: &Server, name: &str) -> Process {
    server
        .worker_with(
            name,
            &["shell"],
            1,
            &["--steps", "1", "--pool", "team-a/coders"],
        )
        .expect("worker")
}

/// Waits for each one-step worker to leave after its step, with success.
fn each_leaves(workers: &mut [Process]) {
    for worker in workers {
        let status = tokio::task::block_in_place(|| worker.wait_exit(Duration::from_secs(30)))
            .expect("each worker leaves after its step");
        assert!(status.success());
    }
}

/// The workers task `id`'s steps ran on, sorted.
async fn ran_on(client: &Tasks, id: &str) -> Vec<String> {
    let finished = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: id.to_string(),
        })
        .await
        .expect("get")
        .into_inner();
    let mut workers: Vec<String> = finished.steps.iter().map(|s| s.worker.clone()).collect();
    workers.sort();
    workers
}

/// `isolation: pod`: the operator makes a one-step worker pod per queued
/// step (the test plays the kubelet, running each pod as a real worker),
/// removes each once its step is done, and removes the pool's Deployment
/// from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_isolation_pod_each_step_runs_in_a_pod_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    mock.put(
        AGENT,
        agent_resource(json!({"minReplicas": 1, "scaleToZeroAfterSeconds": 0})),
    );
    reconcile_agent(&mock, &ctx).await;
    assert!(
        mock.get(DEPLOYMENT).is_some(),
        "isolation: worker is a Deployment"
    );

    let mut agent = mock.get(AGENT).expect("agent");
    agent["spec"]["isolation"] = json!("pod");
    agent["spec"]["minReplicas"] = json!(0);
    mock.put(AGENT, agent);
    let client = server.tasks().await.expect("client");
    let id = queued_steps(&server, &client, "pods", 3).await;
    reconcile_agent(&mock, &ctx).await;
    assert!(
        mock.get(DEPLOYMENT).is_none(),
        "the Deployment from before is gone"
    );

    let pods = step_pods(&mock);
    assert_eq!(pods.len(), 3, "a pod per queued step");
    let mut names = Vec::new();
    let mut workers = Vec::new();
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().expect("name").to_string();
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Agent");
        let env = pod["spec"]["containers"][0]["env"].as_array().expect("env");
        assert!(
            env.iter()
                .any(|e| e["name"] == "TIDEWRIGHT_STEPS" && e["value"] == "1")
        );
        // The kubelet's part: the pod's container runs, as a real worker.
        let mut running = pod.clone();
        running["status"] = json!({"phase": "Running"});
        mock.put(&format!("{PODS}/{name}"), running);
        workers.push(one_step_worker(&server, &name));
        names.push(name);
    }
    wait_finished(&client, &id, Duration::from_secs(30))
        .await
        .expect("the task finishes");
    each_leaves(&mut workers);
    for name in &names {
        let mut done = mock.get(&format!("{PODS}/{name}")).expect("pod");
        done["status"] = json!({"phase": "Succeeded"});
        mock.put(&format!("{PODS}/{name}"), done);
    }
    names.sort();
    assert_eq!(
        ran_on(&client, &id).await,
        names,
        "each step on a pod of its own"
    );

    // Done: finished pods go, and with nothing queued none is made.
    wait_load(&server, (0, 0)).await;
    reconcile_agent(&mock, &ctx).await;
    assert!(step_pods(&mock).is_empty(), "{:?}", step_pods(&mock));
    let status = stored::<Agent>(&mock, AGENT).status.expect("status");
    assert_eq!(
        status.isolation,
        Some(tidewright_operator::crd::Isolation::Pod)
    );
    assert_eq!(status.replicas, 0);
}

const SANDBOX_API: &str = "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/team-a";

fn claims(mock: &MockKube) -> Vec<Value> {
    mock.list(&format!("{SANDBOX_API}/sandboxclaims"))
}

/// `isolation: sandbox`: the operator makes a SandboxTemplate of the
/// pool's one-step worker pod and claims a sandbox of it per queued step
/// (the test plays agent-sandbox, which reports each claim's sandbox under
/// a name of its own, ready, then finished, and the kubelet, running each
/// sandbox's pod as a real worker); finished claims are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_isolation_sandbox_each_step_runs_in_a_sandbox_claimed_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mock = MockKube::start();
    let ctx = context(&server, &mock);
    mock.put(
        AGENT,
        agent_resource(
            json!({"isolation": "sandbox", "minReplicas": 0, "scaleToZeroAfterSeconds": 0}),
        ),
    );
    let client = server.tasks().await.expect("client");
    let id = queued_steps(&server, &client, "sandboxes", 2).await;
    reconcile_agent(&mock, &ctx).await;
    assert!(mock.get(DEPLOYMENT).is_none(), "no Deployment");

    let template = mock
        .get(&format!("{SANDBOX_API}/sandboxtemplates/coders-step"))
        .expect("a SandboxTemplate");
    assert_eq!(template["spec"]["networkPolicyManagement"], "Unmanaged");
    let pod = &template["spec"]["podTemplate"];
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(
        pod["metadata"]["labels"]["tidewright.dev/isolation"],
        "sandbox"
    );
    let warm = mock
        .get(&format!("{SANDBOX_API}/sandboxwarmpools/coders-step"))
        .expect("a SandboxWarmPool");
    assert_eq!(warm["spec"]["replicas"], 0, "none kept warm");

    let claimed = claims(&mock);
    assert_eq!(claimed.len(), 2, "a claim per queued step");
    let mut sandboxes = Vec::new();
    let mut workers = Vec::new();
    for claim in &claimed {
        let name = claim["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        assert_eq!(claim["spec"]["warmPoolRef"]["name"], "coders-step");
        assert_eq!(claim["metadata"]["ownerReferences"][0]["kind"], "Agent");
        // agent-sandbox's part: a sandbox for the claim, ready.
        let sandbox = format!("{name}-x7");
        let mut ready = claim.clone();
        ready["status"] = json!({
            "sandbox": {"name": sandbox},
            "conditions": [{"type": "Ready", "status": "True"}],
        });
        mock.put(&format!("{SANDBOX_API}/sandboxclaims/{name}"), ready);
        workers.push(one_step_worker(&server, &sandbox));
        sandboxes.push((name, sandbox));
    }
    wait_finished(&client, &id, Duration::from_secs(30))
        .await
        .expect("the task finishes");
    each_leaves(&mut workers);
    for (claim, _) in &sandboxes {
        let path = format!("{SANDBOX_API}/sandboxclaims/{claim}");
        let mut done = mock.get(&path).expect("claim");
        done["status"]["conditions"] = json!([
            {"type": "Ready", "status": "False"},
            {"type": "Finished", "status": "True"},
        ]);
        mock.put(&path, done);
    }
    let mut names: Vec<String> = sandboxes.iter().map(|(_, s)| s.clone()).collect();
    names.sort();
    assert_eq!(
        ran_on(&client, &id).await,
        names,
        "each step in a sandbox of its own"
    );

    wait_load(&server, (0, 0)).await;
    reconcile_agent(&mock, &ctx).await;
    assert!(claims(&mock).is_empty(), "{:?}", claims(&mock));
    let status = stored::<Agent>(&mock, AGENT).status.expect("status");
    assert_eq!(
        status.isolation,
        Some(tidewright_operator::crd::Isolation::Sandbox)
    );
    assert_eq!(status.replicas, 0);
}

/// `isolation: sandbox` on a cluster without agent-sandbox: nothing runs
/// (no Deployment, no pod: never a quiet fallback), the pass fails naming
/// what is missing, and the Agent's status says it.
#[tokio::test]
async fn isolation_sandbox_without_agent_sandbox_runs_nothing_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mock = MockKube::start();
    mock.unserve("/apis/extensions.agents.x-k8s.io/");
    let ctx = context(&server, &mock);
    mock.put(
        AGENT,
        agent_resource(json!({"isolation": "sandbox", "minReplicas": 1})),
    );
    let err = agents::reconcile(Arc::new(stored::<Agent>(&mock, AGENT)), ctx.clone())
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("kubernetes-sigs/agent-sandbox") && message.contains("isolation: pod"),
        "{message}"
    );
    assert!(!err.is_transient());
    assert!(mock.get(DEPLOYMENT).is_none());
    assert!(mock.list(PODS).is_empty());
    let status = stored::<Agent>(&mock, AGENT).status.expect("status");
    let available = &status.conditions[0];
    assert_eq!(
        (available.status.as_str(), available.reason.as_str()),
        ("False", "AgentSandboxMissing")
    );
    assert!(available.message.contains("agent-sandbox"));
}
