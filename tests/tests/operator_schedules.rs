//! The Schedule controller against a mock Kubernetes API and a real control
//! plane: a `Schedule` becomes the control plane's schedule in the
//! namespace's tenant (once, however often it is reconciled), its status
//! follows the ticks, `suspended` suspends and resumes it keeping its
//! history, another change replaces it, a schedule the control plane
//! refuses says why on the resource and stores nothing, and deleting the
//! resource deletes the schedule but not its tasks.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidewright_api::v1;
use tidewright_operator::crd::TidewrightSchedule;
use tidewright_operator::schedules;
use tidewright_tests::kube_api::{MockKube, operator_context, sh};
use tidewright_tests::*;
use tonic::Code;

const SCHEDULES: &str = "/apis/tidewright.dev/v1alpha1/namespaces/team-a/schedules";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

fn schedule_resource(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "tidewright.dev/v1alpha1", "kind": "Schedule",
        "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"), "generation": 1},
        "spec": spec,
    })
}

async fn reconcile(mock: &MockKube, path: &str, ctx: &Arc<tidewright_operator::Context>) {
    let object: TidewrightSchedule =
        serde_json::from_value(mock.get(path).expect("the Schedule exists")).expect("parses");
    schedules::reconcile(Arc::new(object), ctx.clone())
        .await
        .expect("reconcile");
}

fn status_of(mock: &MockKube, path: &str) -> Value {
    mock.get(path)
        .map(|s| s["status"].clone())
        .unwrap_or(Value::Null)
}

/// Changes the resource's spec as an edit would: a new generation.
fn edit(mock: &MockKube, path: &str, change: impl FnOnce(&mut Value)) {
    let mut object = mock.get(path).expect("the Schedule exists");
    change(&mut object["spec"]);
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
    object["metadata"]["generation"] = json!(generation);
    mock.put(path, object);
}

async fn control_planes(client: &mut Tasks, name: &str) -> Result<v1::Schedule, tonic::Status> {
    client
        .get_schedule(v1::ScheduleRequest {
            tenant: "team-a".into(),
            name: name.into(),
        })
        .await
        .map(|s| s.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_resource_is_kept_as_the_control_planes_schedule_and_its_status_follows_the_ticks()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)])
        .await
        .expect("server and worker");
    let mut client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = operator_context(&server, &mock);
    let path = format!("{SCHEDULES}/heartbeat");
    mock.put(
        &path,
        schedule_resource(
            "heartbeat",
            json!({
                "cron": "* * * * * *",
                "timezone": "Europe/Rome",
                "concurrencyPolicy": "Forbid",
                "task": {"steps": [sh("beat", &[], "true")]},
            }),
        ),
    );

    // The finalizer first; then the schedule, once over two reconciles.
    reconcile(&mock, &path, &ctx).await;
    assert_eq!(
        mock.get(&path).expect("schedule")["metadata"]["finalizers"],
        json!([schedules::FINALIZER])
    );
    reconcile(&mock, &path, &ctx).await;
    let made = control_planes(&mut client, "heartbeat")
        .await
        .expect("made");
    reconcile(&mock, &path, &ctx).await;
    let again = control_planes(&mut client, "heartbeat")
        .await
        .expect("kept");
    assert_eq!(made.created_at, again.created_at, "not made again");
    let spec = made.spec.clone().unwrap_or_default();
    assert_eq!(
        (
            spec.cron.as_str(),
            spec.timezone.as_str(),
            spec.concurrency_policy.as_str()
        ),
        ("* * * * * *", "Europe/Rome", "Forbid")
    );
    assert_eq!(
        spec.task.as_ref().map(|t| t.name.as_str()),
        Some("heartbeat"),
        "the task is named after the resource"
    );

    // The ticks fire in the control plane; a reconcile mirrors the last.
    let status = eventually(Duration::from_secs(20), || async {
        reconcile(&mock, &path, &ctx).await;
        let status = status_of(&mock, &path);
        status["lastTaskId"].as_str().is_some().then_some(status)
    })
    .await
    .expect("a tick's task is mirrored");
    assert!(status["nextTick"].is_string(), "{status}");
    assert!(status["lastTick"].is_string(), "{status}");
    assert_eq!(status["observedGeneration"], 1);

    // Suspended: the same schedule, its history kept, no next tick.
    edit(&mock, &path, |spec| spec["suspended"] = json!(true));
    reconcile(&mock, &path, &ctx).await;
    let suspended = control_planes(&mut client, "heartbeat")
        .await
        .expect("kept");
    assert!(suspended.spec.as_ref().is_some_and(|s| s.suspended));
    assert_eq!(
        suspended.created_at, made.created_at,
        "suspended, not replaced"
    );
    assert!(!suspended.history.is_empty());
    assert!(status_of(&mock, &path)["nextTick"].is_null());
    edit(&mock, &path, |spec| spec["suspended"] = json!(false));
    reconcile(&mock, &path, &ctx).await;
    let resumed = control_planes(&mut client, "heartbeat")
        .await
        .expect("kept");
    assert!(resumed.spec.as_ref().is_some_and(|s| !s.suspended));
    assert_eq!(resumed.created_at, made.created_at);

    // Another change replaces it, and says so.
    edit(&mock, &path, |spec| spec["cron"] = json!("0 3 * * 1-5"));
    reconcile(&mock, &path, &ctx).await;
    let replaced = control_planes(&mut client, "heartbeat")
        .await
        .expect("replaced");
    assert_eq!(
        replaced.spec.as_ref().map(|s| s.cron.as_str()),
        Some("0 3 * * 1-5")
    );
    let reasons: Vec<String> = mock
        .requests_to("POST", EVENTS)
        .iter()
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(reasons.contains(&"Replaced".to_string()), "{reasons:?}");

    // Deleted: the schedule goes, its tasks stay.
    let task_id = status["lastTaskId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    mock.delete(&path);
    reconcile(&mock, &path, &ctx).await;
    assert!(mock.get(&path).is_none(), "the finalizer let go");
    let gone = control_planes(&mut client, "heartbeat").await;
    assert_eq!(gone.map(|_| ()).map_err(|s| s.code()), Err(Code::NotFound));
    let task = client
        .get_task(v1::GetTaskRequest { task_id })
        .await
        .expect("the task stays");
    assert_eq!(task.into_inner().tenant, "team-a");
}

#[tokio::test]
async fn a_schedule_the_control_plane_refuses_says_why_on_the_resource_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mut client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = operator_context(&server, &mock);
    let path = format!("{SCHEDULES}/never");
    // February 30th: the CRD's schema cannot see it; the control plane can.
    mock.put(
        &path,
        schedule_resource(
            "never",
            json!({"cron": "0 0 30 2 *", "task": {"steps": [sh("a", &[], "true")]}}),
        ),
    );
    reconcile(&mock, &path, &ctx).await;
    reconcile(&mock, &path, &ctx).await;
    let message = status_of(&mock, &path)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("cron") && message.contains("never fires"),
        "{message}"
    );
    let warnings: Vec<Value> = mock
        .requests_to("POST", EVENTS)
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0]["type"].as_str(), warnings[0]["reason"].as_str()),
        (Some("Warning"), Some("Refused"))
    );
    let listed = client
        .list_schedules(v1::ListSchedulesRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(listed.schedules.is_empty(), "nothing stored");

    // Fixed: made, and the refusal is cleared from the status.
    edit(&mock, &path, |spec| spec["cron"] = json!("0 0 28 2 *"));
    reconcile(&mock, &path, &ctx).await;
    control_planes(&mut client, "never")
        .await
        .expect("made once fixed");
    let status = status_of(&mock, &path);
    assert!(status["message"].is_null(), "{status}");
    assert!(status["nextTick"].is_string(), "{status}");
}
