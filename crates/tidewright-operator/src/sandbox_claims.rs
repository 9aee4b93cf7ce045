//! The objects of a pool with `isolation: sandbox`, for
//! kubernetes-sigs/agent-sandbox (`extensions.agents.x-k8s.io/v1beta1`):
//! a SandboxTemplate of the pool's one-step worker pod, a SandboxWarmPool
//! of none (every claim starts its pod cold: a warm pod would be a worker
//! already taking steps before anyone claimed it), and a SandboxClaim per
//! step the queue asks for, kept and cut as `step_pods` keeps pods. Each
//! claimed pod is a worker that takes one step and leaves; its pod
//! finishing is the Sandbox's `Finished` condition, which the claim
//! mirrors, and a finished claim is deleted (and with it its Sandbox and
//! pod). Everything is owned by the Agent.
//!
//! The template leaves network policy to tidewright (`Unmanaged`): agent-sandbox's
//! own default allows public addresses only, which would cut the workers
//! off from the control plane; the pool's `egress` NetworkPolicy selects
//! the claimed pods by their labels as it does the others.

use kube::Resource;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use crate::crd::Agent;
use crate::step_pods::PodView;
use crate::workers::{WorkerSettings, pod_template};

pub const GROUP: &str = "extensions.agents.x-k8s.io";
pub const VERSION: &str = "v1beta1";

/// How long agent-sandbox keeps a finished claim should the operator not
/// delete it first (it is away): the claim, its Sandbox and pod then go.
const TTL_AFTER_FINISHED_SECONDS: u32 = 300;

/// The API resource of `kind` (`SandboxTemplate`, `SandboxWarmPool`,
/// `SandboxClaim`).
pub fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, VERSION, kind))
}

/// The name of the pool's template and warm pool: `<agent>-step`.
pub fn template_name(agent_name: &str) -> String {
    format!("{agent_name}-step")
}

fn owned(agent: &Agent, kind: &str, name: String) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": agent.metadata.namespace,
            "labels": crate::workers::selector_labels(agent.metadata.name.as_deref().unwrap_or_default()),
            "ownerReferences": agent.controller_owner_ref(&()).map(|o| vec![o]),
        },
    })
}

/// The pool's SandboxTemplate: its one-step worker pod.
pub fn template(agent: &Agent, settings: &WorkerSettings) -> Value {
    let name = agent.metadata.name.clone().unwrap_or_default();
    let pod = pod_template(agent, settings);
    let metadata = pod.metadata.unwrap_or_default();
    let mut object = owned(agent, "SandboxTemplate", template_name(&name));
    // Only what is there: the schema takes no nulls.
    let mut pod_metadata = serde_json::Map::new();
    if let Some(labels) = metadata.labels {
        pod_metadata.insert("labels".into(), json!(labels));
    }
    if let Some(annotations) = metadata.annotations {
        pod_metadata.insert("annotations".into(), json!(annotations));
    }
    object["spec"] = json!({
        "podTemplate": {
            "metadata": pod_metadata,
            "spec": pod.spec,
        },
        "networkPolicyManagement": "Unmanaged",
        "envVarsInjectionPolicy": "Disallowed",
        "volumeClaimTemplatesPolicy": "Disallowed",
    });
    object
}

/// The pool's SandboxWarmPool, which claims name: none kept warm.
pub fn warm_pool(agent: &Agent) -> Value {
    let name = template_name(agent.metadata.name.as_deref().unwrap_or_default());
    let mut object = owned(agent, "SandboxWarmPool", name.clone());
    object["spec"] = json!({
        "replicas": 0,
        "sandboxTemplateRef": {"name": name},
    });
    object
}

/// A claim of one sandbox of the pool, named `name`.
pub fn claim(agent: &Agent, name: String) -> Value {
    let pool = template_name(agent.metadata.name.as_deref().unwrap_or_default());
    let mut object = owned(agent, "SandboxClaim", name);
    object["spec"] = json!({
        "warmPoolRef": {"name": pool},
        "lifecycle": {
            "shutdownPolicy": "Delete",
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_SECONDS,
        },
    });
    object
}

/// The name of the pod (and worker) a claim got: its Sandbox's, which
/// agent-sandbox reports once made (a sandbox adopted from a warm pool has
/// a name of its own), else the claim's (a cold start names its Sandbox
/// after it).
pub fn pod_of(claim: &DynamicObject) -> String {
    claim.data["status"]["sandbox"]["name"]
        .as_str()
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .or_else(|| claim.metadata.name.clone())
        .unwrap_or_default()
}

/// A claim as the plan sees a pod: finished once its Sandbox says so,
/// running once ready, pending before; `running` is its worker's steps.
pub fn view(claim: &DynamicObject, running: u32) -> PodView {
    let condition = |kind: &str| {
        claim.data["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == kind && c["status"] == "True")
    };
    let phase = if condition("Finished") {
        "Succeeded"
    } else if condition("Ready") {
        "Running"
    } else {
        "Pending"
    };
    PodView {
        name: claim.metadata.name.clone().unwrap_or_default(),
        phase: Some(phase.to_string()),
        deleting: claim.metadata.deletion_timestamp.is_some(),
        running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::test_agent as agent;
    use crate::workers::{ISOLATION_LABEL, test_settings};

    fn dynamic(value: Value) -> DynamicObject {
        serde_json::from_value(value).expect("an object")
    }

    #[test]
    fn the_template_is_the_pools_one_step_pod_and_leaves_the_network_to_tidewright() {
        let agent = agent("isolation: sandbox\nslotsPerPod: 4\n");
        let template = template(&agent, &test_settings());
        assert_eq!(template["apiVersion"], "extensions.agents.x-k8s.io/v1beta1");
        assert_eq!(template["metadata"]["name"], "coders-step");
        assert_eq!(template["metadata"]["namespace"], "team-a");
        assert_eq!(template["metadata"]["ownerReferences"][0]["kind"], "Agent");
        assert_eq!(template["spec"]["networkPolicyManagement"], "Unmanaged");
        let pod = &template["spec"]["podTemplate"];
        assert_eq!(pod["metadata"]["labels"][ISOLATION_LABEL], "sandbox");
        assert_eq!(pod["metadata"]["labels"]["tidewright.dev/agent"], "coders");
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        let env = pod["spec"]["containers"][0]["env"].as_array().expect("env");
        let value = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(value("TIDEWRIGHT_STEPS"), Some(json!("1")));
        assert_eq!(value("TIDEWRIGHT_SLOTS"), Some(json!("1")));
        assert_eq!(
            pod["spec"]["securityContext"]["runAsNonRoot"], true,
            "the restricted pod, as the pool's others"
        );

        let pool = warm_pool(&agent);
        assert_eq!(pool["spec"]["replicas"], 0);
        assert_eq!(pool["spec"]["sandboxTemplateRef"]["name"], "coders-step");
        let claim = claim(&agent, "coders-step-b2c4d".into());
        assert_eq!(claim["kind"], "SandboxClaim");
        assert_eq!(claim["spec"]["warmPoolRef"]["name"], "coders-step");
        assert_eq!(claim["spec"]["lifecycle"]["shutdownPolicy"], "Delete");
    }

    #[test]
    fn a_claim_is_pending_then_running_then_finished_under_its_sandboxs_name() {
        let mut claim = json!({
            "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
            "kind": "SandboxClaim",
            "metadata": {"name": "coders-step-b2c4d"},
        });
        let phase = |c: &Value| view(&dynamic(c.clone()), 0).phase;
        assert_eq!(phase(&claim).as_deref(), Some("Pending"));
        assert_eq!(pod_of(&dynamic(claim.clone())), "coders-step-b2c4d");
        claim["status"] = json!({
            "sandbox": {"name": "coders-warm-x7"},
            "conditions": [{"type": "Ready", "status": "True"}],
        });
        assert_eq!(phase(&claim).as_deref(), Some("Running"));
        assert_eq!(
            pod_of(&dynamic(claim.clone())),
            "coders-warm-x7",
            "an adopted sandbox's pod is named for it"
        );
        claim["status"]["conditions"] = json!([
            {"type": "Ready", "status": "False"},
            {"type": "Finished", "status": "True"},
        ]);
        assert_eq!(phase(&claim).as_deref(), Some("Succeeded"));
        claim["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        assert!(view(&dynamic(claim), 0).deleting);
    }
}
