//! The Trigger controller against a mock Kubernetes API and a real control
//! plane: a `Trigger` becomes the control plane's trigger in the
//! namespace's tenant (once, however often it is reconciled), a changed
//! one replaces it, one the control plane refuses says why on the resource,
//! and deleting the resource deletes the trigger.

use std::sync::Arc;

use serde_json::{Value, json};
use tidewright_api::v1;
use tidewright_operator::crd::TidewrightTrigger;
use tidewright_operator::triggers;
use tidewright_tests::kube_api::{MockKube, operator_context};
use tidewright_tests::*;
use tonic::Code;

const TRIGGERS: &str = "/apis/tidewright.dev/v1alpha1/namespaces/team-a/triggers";

async fn reconcile(mock: &MockKube, path: &str, ctx: &Arc<tidewright_operator::Context>) {
    let object: TidewrightTrigger =
        serde_json::from_value(mock.get(path).expect("the Trigger exists")).expect("parses");
    triggers::reconcile(Arc::new(object), ctx.clone())
        .await
        .expect("reconcile");
}

fn status_of(mock: &MockKube, path: &str) -> Value {
    mock.get(path)
        .map(|s| s["status"].clone())
        .unwrap_or(Value::Null)
}

async fn control_planes(client: &mut Tasks, name: &str) -> Result<v1::Trigger, tonic::Status> {
    client
        .get_trigger(v1::TriggerRequest {
            tenant: "team-a".into(),
            name: name.into(),
        })
        .await
        .map(|t| t.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_resource_is_kept_as_the_control_planes_trigger_and_a_refused_one_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mut client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = operator_context(&server, &mock);
    let path = format!("{TRIGGERS}/issues");
    mock.put(
        &path,
        json!({
            "apiVersion": "tidewright.dev/v1alpha1", "kind": "Trigger",
            "metadata": {"name": "issues", "namespace": "team-a", "uid": "uid-issues", "generation": 1},
            "spec": {
                "repository": "acme/app",
                "event": "issueLabeled",
                "parameters": {"repo": "https://github.com/acme/app.git"},
            },
        }),
    );
    // The finalizer first; then the trigger, once over two reconciles.
    reconcile(&mock, &path, &ctx).await;
    assert_eq!(
        mock.get(&path).expect("trigger")["metadata"]["finalizers"],
        json!([triggers::FINALIZER])
    );
    reconcile(&mock, &path, &ctx).await;
    let made = control_planes(&mut client, "issues").await.expect("made");
    let spec = made.spec.clone().expect("spec");
    assert_eq!(
        (
            spec.forge.as_str(),
            spec.event.as_str(),
            spec.template.as_str()
        ),
        ("github", "issueLabeled", "fix-issue"),
        "its event's template"
    );
    reconcile(&mock, &path, &ctx).await;
    let again = control_planes(&mut client, "issues").await.expect("kept");
    assert_eq!(again.created_at, made.created_at, "not made twice");

    // A template the control plane has not: refused, said on the resource.
    let mut object = mock.get(&path).expect("trigger");
    object["spec"]["template"] = json!("no-such");
    object["metadata"]["generation"] = json!(2);
    mock.put(&path, object);
    reconcile(&mock, &path, &ctx).await;
    let message = status_of(&mock, &path)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("template") && message.contains("no-such"),
        "{message}"
    );
    // Fixed: made again, the refusal cleared.
    let mut object = mock.get(&path).expect("trigger");
    object["spec"]["template"] = json!("fix-ci");
    object["spec"]["event"] = json!("checkFailed");
    object["metadata"]["generation"] = json!(3);
    mock.put(&path, object);
    reconcile(&mock, &path, &ctx).await;
    let replaced = control_planes(&mut client, "issues").await.expect("made");
    assert_eq!(replaced.spec.expect("spec").event, "checkFailed");
    let status = status_of(&mock, &path);
    assert!(status["message"].is_null(), "{status}");
    assert_eq!(status["observedGeneration"], 3, "{status}");

    // Deleted: the trigger goes.
    mock.delete(&path);
    reconcile(&mock, &path, &ctx).await;
    assert!(mock.get(&path).is_none(), "the finalizer let go");
    let gone = control_planes(&mut client, "issues").await;
    assert_eq!(gone.map(|_| ()).map_err(|s| s.code()), Err(Code::NotFound));
}
