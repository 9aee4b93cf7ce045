//! The TenantShare controller against a mock Kubernetes API and a real
//! control plane: a `TenantShare` becomes the control plane's share of the
//! tenant it names, its status shows the tenant's steps running and
//! waiting, one the control plane refuses says why on the resource, and
//! deleting the resource puts the tenant back to the default share.

use std::sync::Arc;

use serde_json::{Value, json};
use tidewright_api::v1;
use tidewright_operator::crd::TidewrightTenantShare;
use tidewright_operator::tenant_shares;
use tidewright_tests::kube_api::{MockKube, operator_context};
use tidewright_tests::*;

const SHARES: &str = "/apis/tidewright.dev/v1alpha1/tenantshares";

async fn reconcile(mock: &MockKube, path: &str, ctx: &Arc<tidewright_operator::Context>) {
    let object: TidewrightTenantShare =
        serde_json::from_value(mock.get(path).expect("the TenantShare exists")).expect("parses");
    tenant_shares::reconcile(Arc::new(object), ctx.clone())
        .await
        .expect("reconcile");
}

/// The control plane's share of `tenant`, if it has one set.
async fn control_planes(client: &mut Tasks, tenant: &str) -> Option<v1::TenantShare> {
    client
        .list_tenant_shares(v1::ListTenantSharesRequest {})
        .await
        .expect("shares")
        .into_inner()
        .tenants
        .into_iter()
        .find(|s| s.tenant == tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_share_resource_is_kept_as_the_control_planes_share_and_a_refused_one_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let mut client = server.tasks().await.expect("client");
    let mock = MockKube::start();
    let ctx = operator_context(&server, &mock);
    let path = format!("{SHARES}/team-a");
    mock.put(
        &path,
        json!({
            "apiVersion": "tidewright.dev/v1alpha1", "kind": "TenantShare",
            "metadata": {"name": "team-a", "uid": "uid-team-a", "generation": 1},
            "spec": {"weight": 3, "maxRunning": 50, "fairnessKey": "repo"},
        }),
    );
    // Queued work of the tenant, so the status has something to count.
    let mut request = task("waits", vec![shell_step("s", &[], "true")]);
    request.tenant = "team-a".into();
    submit(&client, request).await.expect("submitted");

    // The finalizer first; then the share.
    reconcile(&mock, &path, &ctx).await;
    assert_eq!(
        mock.get(&path).expect("share")["metadata"]["finalizers"],
        json!([tenant_shares::FINALIZER])
    );
    reconcile(&mock, &path, &ctx).await;
    let set = control_planes(&mut client, "team-a")
        .await
        .expect("the share is set");
    assert_eq!(
        (set.weight, set.max_running, set.fairness_key.as_str()),
        (3, Some(50), "repo")
    );
    let status = mock.get(&path).expect("share")["status"].clone();
    assert_eq!(
        (
            &status["waiting"],
            &status["running"],
            &status["observedGeneration"]
        ),
        (&Value::from(1), &Value::from(0), &Value::from(1)),
        "{status}"
    );

    // A share the control plane refuses: why, on the resource; the share
    // as it was.
    let mut object = mock.get(&path).expect("share");
    object["spec"]["fairnessKey"] = json!("owner");
    object["metadata"]["generation"] = json!(2);
    mock.put(&path, object);
    reconcile(&mock, &path, &ctx).await;
    let status = mock.get(&path).expect("share")["status"].clone();
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("fairnessKey"), "{status}");
    let kept = control_planes(&mut client, "team-a").await.expect("kept");
    assert_eq!(kept.fairness_key, "repo");

    // Fixed: the message goes.
    let mut object = mock.get(&path).expect("share");
    object["spec"] = json!({"weight": 5});
    object["metadata"]["generation"] = json!(3);
    mock.put(&path, object);
    reconcile(&mock, &path, &ctx).await;
    let status = mock.get(&path).expect("share")["status"].clone();
    assert!(status["message"].is_null(), "{status}");
    let changed = control_planes(&mut client, "team-a").await.expect("set");
    assert_eq!((changed.weight, changed.max_running), (5, None));

    // Deleted: the tenant's share is the default again.
    mock.delete(&path);
    reconcile(&mock, &path, &ctx).await;
    assert!(mock.get(&path).is_none(), "the finalizer let go");
    let reset = control_planes(&mut client, "team-a")
        .await
        .expect("listed: its step waits");
    assert_eq!(
        (reset.weight, reset.max_running, reset.fairness_key.as_str()),
        (1, None, "")
    );
}
