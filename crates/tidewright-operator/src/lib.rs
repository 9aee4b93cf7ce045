//! tidewright's Kubernetes operator: the `Agent`, `Task`, `TaskTemplate`,
//! `Schedule`, `Trigger` and (cluster-scoped) `TenantShare` custom resources
//! (group `tidewright.dev`, version `v1alpha1`), the objects an `Agent`
//! owns, and the decision of how many worker pods a pool needs.

pub mod agents;
mod context;
pub mod control_plane;
pub mod crd;
mod error;
pub mod leader;
pub mod network;
pub mod sandbox_claims;
pub mod scaling;
pub mod schedules;
pub mod status;
pub mod step_pods;
pub mod tasks;
pub mod tenant_shares;
pub mod triggers;
pub mod workers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

pub use context::{Context, FIELD_MANAGER};
pub use control_plane::ControlPlane;
pub use crd::{
    Agent, AgentSpec, AgentStatus, TaskTemplate, TaskTemplateSpec, TidewrightSchedule,
    TidewrightScheduleSpec, TidewrightScheduleStatus, TidewrightTask, TidewrightTaskSpec,
    TidewrightTaskStatus,
};
pub use error::Error;
pub use workers::WorkerSettings;

/// How the operator runs.
pub struct OperatorConfig {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// This replica's name in the lease and in Events (the pod name).
    pub identity: String,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration: Duration,
    pub scale_interval: Duration,
    pub workers: WorkerSettings,
    pub control_plane: ControlPlane,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn error_policy<K: ResourceExt>(object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(object = %object.name_any(), %error, "reconcile failed");
    // A wrong resource waits for an edit (which triggers a reconcile anyway);
    // an unreachable API or control plane is retried soon.
    Action::requeue(if error.is_transient() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(300)
    })
}

/// A Kubernetes client from the pod's service account, or from the
/// kubeconfig outside a cluster.
pub async fn kube_client() -> Result<Client, Error> {
    // The inference error already lists each place tried; its sources would
    // only repeat them.
    Client::try_default()
        .await
        .map_err(|e| Error::NoCluster(e.to_string()))
}

/// Runs the operator: waits for the leader lease, then runs the Agent and
/// Task controllers until `shutdown` resolves or the lease is lost (an
/// error: the process should exit and be restarted as a follower).
pub async fn run(
    kube: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let lock = leader::LeaseLock::new(
        Api::namespaced(kube.clone(), &config.lease_namespace),
        &config.lease_name,
        &config.identity,
        config.lease_duration,
    );
    tokio::pin!(shutdown);
    tracing::info!(identity = %config.identity, lease = %config.lease_name, "waiting for the leader lease");
    tokio::select! {
        acquired = lock.acquire() => acquired?,
        () = &mut shutdown => return Ok(()),
    }
    tracing::info!(identity = %config.identity, "leading: reconciling Agents, Tasks, Schedules, Triggers and TenantShares");

    let ns = config.namespace.as_deref();
    let ctx = Arc::new(Context::new(
        kube.clone(),
        config.control_plane,
        config.workers,
        &config.identity,
        config.scale_interval,
    ));
    let pools = Controller::new(api::<Agent>(&kube, ns), watcher::Config::default())
        .owns(
            api::<Deployment>(&kube, ns),
            watcher::Config::default().labels("app.kubernetes.io/name=tidewright-worker"),
        )
        .run(agents::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let tasks = Controller::new(api::<TidewrightTask>(&kube, ns), watcher::Config::default())
        .run(tasks::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let schedules = Controller::new(
        api::<TidewrightSchedule>(&kube, ns),
        watcher::Config::default(),
    )
    .run(schedules::reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    let triggers = Controller::new(
        api::<crd::TidewrightTrigger>(&kube, ns),
        watcher::Config::default(),
    )
    .run(triggers::reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    // Cluster-scoped: applied by an operator that watches every namespace
    // (one watching a single namespace holds no cluster-wide role).
    let watches_all = ns.is_none();
    let shares_kube = kube.clone();
    let shares = async move {
        if watches_all {
            Controller::new(
                Api::<crd::TidewrightTenantShare>::all(shares_kube),
                watcher::Config::default(),
            )
            .run(tenant_shares::reconcile, error_policy, ctx)
            .for_each(|_| async {})
            .await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = futures::future::join5(pools, tasks, schedules, triggers, shares) => Ok(()),
        lost = lock.keep() => Err(lost),
        () = &mut shutdown => Ok(()),
    }
}

/// The CustomResourceDefinitions, as `kubectl apply` takes them: one YAML
/// document each, in a stable order.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [
        Agent::crd(),
        TidewrightTask::crd(),
        crd::TaskTemplate::crd(),
        TidewrightSchedule::crd(),
        crd::TidewrightTrigger::crd(),
        crd::TidewrightTenantShare::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// `crds/` is what `kubectl apply -f crds/` and the chart install; it must
    /// be what these types say.
    #[test]
    fn crds_dir_matches_the_types() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds/tidewright.dev.yaml");
        let generated = super::crds_yaml().expect("serializes");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date with the CRD types: run `make crds`",
            path.display()
        );
    }

    /// The shipped examples are resources these types read, and their tasks
    /// are specs the control plane accepts.
    #[test]
    fn deploy_examples_parse_and_validate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples");
        let mut seen = (0, 0, 0, 0);
        let mut templates = std::collections::BTreeMap::new();
        let mut templated = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("deploy/examples") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let kind: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
            match kind["kind"].as_str() {
                Some("Agent") => {
                    serde_yaml::from_str::<super::Agent>(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    seen.0 += 1;
                }
                Some("Task") => {
                    let task: super::TidewrightTask = serde_yaml::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    if task.spec.template_ref.is_some() {
                        templated.push((path, task));
                    } else {
                        tidewright_core::validate(
                            &task.spec.task,
                            &tidewright_core::Limits::default(),
                        )
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    }
                    seen.1 += 1;
                }
                Some("TaskTemplate") => {
                    let template: super::TaskTemplate = serde_yaml::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let name = kube::ResourceExt::name_any(&template);
                    let loaded = template
                        .spec
                        .to_template(&name)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    templates.insert(name, loaded);
                    seen.2 += 1;
                }
                Some("Schedule") => {
                    let schedule: super::TidewrightSchedule = serde_yaml::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let spec = &schedule.spec;
                    tidewright_core::schedule::Ticks::new(&spec.cron, &spec.timezone)
                        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                    if let Some(reference) = &spec.template_ref {
                        let task = super::TidewrightTask::new(
                            "scheduled",
                            super::TidewrightTaskSpec {
                                task: tidewright_core::TaskSpec::default(),
                                template_ref: Some(reference.clone()),
                                parameters: spec.parameters.clone(),
                                ttl_seconds_after_finished: None,
                            },
                        );
                        templated.push((path, task));
                    }
                    seen.3 += 1;
                }
                Some("TenantShare") => {
                    let share: super::crd::TidewrightTenantShare = serde_yaml::from_str(&text)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    let wanted = super::tenant_shares::desired(&share);
                    tidewright_core::TenantShare::from_signed(
                        wanted.weight,
                        wanted.max_running,
                        &wanted.fairness_key,
                        "spec",
                    )
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                other => panic!("{}: unexpected kind {other:?}", path.display()),
            }
        }
        // A Task naming a template renders with its parameters.
        for (path, task) in templated {
            let reference = task.spec.template_ref.as_ref().expect("a reference");
            let template = templates
                .get(&reference.name)
                .unwrap_or_else(|| panic!("{}: no template {}", path.display(), reference.name));
            let given: Vec<(String, String)> = task.spec.parameters.clone().into_iter().collect();
            template
                .render(&given)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        assert!(
            seen.0 >= 1 && seen.1 >= 1 && seen.2 >= 1 && seen.3 >= 1,
            "examples: {seen:?}"
        );
    }

    #[test]
    fn crds_carry_scale_printer_columns_and_validation() {
        let yaml = super::crds_yaml().expect("serializes");
        for needle in [
            "specReplicasPath: .spec.replicas",
            "jsonPath: .status.phase",
            "jsonPath: .status.readyReplicas",
            "self.minReplicas <= self.maxReplicas",
            "ttlSecondsAfterFinished",
            "dependsOn",
            "maximum: 1024",
        ] {
            assert!(yaml.contains(needle), "the CRDs lack {needle}");
        }
    }
}
