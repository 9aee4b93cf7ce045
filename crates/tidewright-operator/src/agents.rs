//! The Agent controller: keeps each pool's worker Deployment at the size its
//! queue needs, marks busy pods so scale-in removes idle ones, and reports
//! the pool in the Agent's status.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tidewright_api::v1;
use tidewright_core::queue::capabilities;

use crate::context::{Context, FIELD_MANAGER};
use crate::crd::{Agent, AgentStatus, Autoscaling, Isolation};
use crate::error::Error;
use crate::network;
use crate::scaling::{self, Bounds, Decision, Load};
use crate::workers::{self, pool_name};
use crate::{sandbox_claims, step_pods};

/// The annotation the ReplicaSet controller reads to choose which pods to
/// remove first on scale-in.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// What the control plane says about one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolView {
    pub load: Load,
    /// Running steps per worker (pod) name.
    pub running_by_pod: HashMap<String, u32>,
}

/// The pool's share of the control plane's view: the steps queued that its
/// workers could take (their needs are within the pool's capabilities), and
/// the steps running on its own workers.
pub fn pool_view(agent: &Agent, view: &v1::ListAgentsResponse) -> PoolView {
    let pool = pool_name(agent);
    let offered = capabilities(&workers::capabilities(agent));
    let queued = view
        .queue
        .iter()
        .filter(|depth| depth.capabilities.iter().all(|c| offered.contains(c)))
        .map(|depth| u64::from(depth.queued))
        .sum::<u64>();
    let mut running_by_pod: HashMap<String, u32> = HashMap::new();
    for worker in view.agents.iter().filter(|w| w.pool == pool) {
        *running_by_pod.entry(worker.name.clone()).or_default() += worker.running;
    }
    let running = running_by_pod.values().map(|&n| u64::from(n)).sum::<u64>();
    let busy_pods = running_by_pod.values().filter(|&&n| n > 0).count();
    PoolView {
        load: Load {
            queued: u32::try_from(queued).unwrap_or(u32::MAX),
            running: u32::try_from(running).unwrap_or(u32::MAX),
            busy_pods: u32::try_from(busy_pods).unwrap_or(u32::MAX),
        },
        running_by_pod,
    }
}

impl PoolView {
    /// The steps running on the worker (pod) `name`.
    pub fn running_on(&self, name: &str) -> u32 {
        self.running_by_pod.get(name).copied().unwrap_or(0)
    }
}

fn bounds(agent: &Agent) -> Bounds {
    let spec = &agent.spec;
    Bounds {
        min: u32::try_from(spec.min_replicas).unwrap_or(0),
        max: u32::try_from(spec.max_replicas).unwrap_or(0),
        // A pod of its own per step: one step per pod.
        slots_per_pod: match spec.isolation {
            Isolation::Worker => spec.slots_per_pod,
            Isolation::Pod | Isolation::Sandbox => 1,
        },
        idle_seconds: u64::from(spec.scale_to_zero_after_seconds),
    }
}

/// The replicas to run: from the queue with built-in autoscaling, from
/// `spec.replicas` (written by an HPA or KEDA through `/scale`) otherwise.
pub fn desired_replicas(agent: &Agent, load: Load, now: i64) -> Decision {
    let status = agent.status.clone().unwrap_or_default();
    match agent.spec.autoscaling {
        Autoscaling::BuiltIn => scaling::decide(
            load,
            bounds(agent),
            u32::try_from(status.replicas).unwrap_or(0),
            status.idle_since.map(|t| t.0.as_second()),
            now,
        ),
        Autoscaling::External => Decision {
            replicas: u32::try_from(agent.spec.replicas.unwrap_or(agent.spec.min_replicas))
                .unwrap_or(0),
            idle_since: None,
        },
    }
}

/// A condition whose transition time moves only when its status does, so
/// an unchanged pool patches nothing.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(now, |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

/// The pool's pods as last seen: from its Deployment, or counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    pub replicas: i32,
    pub ready: i32,
}

impl Observed {
    fn of(deployment: &Deployment) -> Observed {
        let status = deployment.status.clone().unwrap_or_default();
        Observed {
            replicas: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
        }
    }
}

/// The Agent's status from the pods (and NetworkPolicy) the operator made
/// and the pool's load.
pub fn agent_status(
    agent: &Agent,
    observed: Observed,
    network_policy: Option<String>,
    load: Load,
    decision: Decision,
    now: Time,
) -> AgentStatus {
    let previous = agent.status.clone().unwrap_or_default();
    let ready = observed.ready;
    let wanted = i32::try_from(decision.replicas).unwrap_or(i32::MAX);
    let (available, reason, message) = if wanted == 0 {
        (true, "ScaledToZero", "no work for this pool".to_string())
    } else if ready >= wanted {
        (
            true,
            "AllReplicasReady",
            format!("{ready} of {wanted} pods ready"),
        )
    } else {
        (false, "Scaling", format!("{ready} of {wanted} pods ready"))
    };
    let idle_since = decision.idle_since.and_then(|secs| {
        k8s_openapi::jiff::Timestamp::from_second(secs)
            .ok()
            .map(Time)
    });
    AgentStatus {
        replicas: observed.replicas,
        ready_replicas: ready,
        busy: load.running,
        queued: load.queued,
        selector: Some(workers::selector_string(&agent.name_any())),
        isolation: Some(agent.spec.isolation),
        network_policy,
        idle_since,
        conditions: vec![condition(
            &previous.conditions,
            "Available",
            available,
            reason,
            message,
            agent.metadata.generation,
            now,
        )],
        observed_generation: agent.metadata.generation,
    }
}

/// Deletes an object; one already gone is no error.
async fn delete_ignoring_gone<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Applies the pool's NetworkPolicy when its spec has `egress`, and deletes
/// the one it made before when no longer; returns its name, if any. A bad
/// allow-list entry fails the pass, naming the entry.
async fn apply_network_policy(
    agent: &Agent,
    ctx: &Context,
    namespace: &str,
) -> Result<Option<String>, Error> {
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.kube.clone(), namespace);
    let desired =
        network::network_policy(agent, &ctx.workers).map_err(|problem| Error::Resource {
            kind: "Agent",
            name: agent.name_any(),
            problem,
        })?;
    match desired {
        Some(policy) => {
            let name = policy.name_any();
            policies
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&policy),
                )
                .await?;
            Ok(Some(name))
        }
        None => {
            let made = agent.status.as_ref().and_then(|s| s.network_policy.clone());
            if let Some(name) = made {
                delete_ignoring_gone(&policies, &name).await?;
            }
            Ok(None)
        }
    }
}

/// One pass over a pool: read its load, mark its pods' deletion cost, apply
/// its NetworkPolicy and its Deployment, patch its status. Runs again every scale interval.
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = agent.namespace().ok_or_else(|| Error::Resource {
        kind: "Agent",
        name: agent.name_any(),
        problem: "has no namespace".into(),
    })?;
    let name = agent.name_any();
    let view = ctx
        .control_plane
        .agents()
        .list_agents(v1::ListAgentsRequest {})
        .await?
        .into_inner();
    let pool = pool_view(&agent, &view);

    let pods: Api<Pod> = Api::namespaced(ctx.kube.clone(), &namespace);
    let listed = pods
        .list(&ListParams::default().labels(&workers::selector_string(&name)))
        .await?
        .items;
    let running = |pod: &Pod| pool.running_on(&pod.name_any());
    // Which per-step isolation made a pod, if one did.
    let made_by = |pod: &Pod| match pod
        .labels()
        .get(workers::ISOLATION_LABEL)
        .map(String::as_str)
    {
        Some("pod") => Some(Isolation::Pod),
        Some("sandbox") => Some(Isolation::Sandbox),
        _ => None,
    };

    // The pool's NetworkPolicy before its pods, so none starts unfenced.
    let network_policy = apply_network_policy(&agent, &ctx, &namespace).await?;

    let now = k8s_openapi::jiff::Timestamp::now();
    let decision = desired_replicas(&agent, pool.load, now.as_second());
    let replicas = i32::try_from(decision.replicas).unwrap_or(i32::MAX);
    let deployments: Api<Deployment> = Api::namespaced(ctx.kube.clone(), &namespace);
    let observed = match agent.spec.isolation {
        Isolation::Worker => {
            for pod in &listed {
                // A step pod left from `isolation: pod`: gone once idle
                // (one of `sandbox` goes with its claim, below).
                if let Some(isolation) = made_by(pod) {
                    if isolation == Isolation::Pod
                        && running(pod) == 0
                        && pod.metadata.deletion_timestamp.is_none()
                    {
                        delete_ignoring_gone(&pods, &pod.name_any()).await?;
                    }
                    continue;
                }
                // Costs first, so the scale-in below sees which pods are busy.
                let cost = scaling::deletion_cost(running(pod)).to_string();
                if pod.annotations().get(DELETION_COST) != Some(&cost) {
                    let patch = json!({"metadata": {"annotations": {DELETION_COST: cost}}});
                    pods.patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                }
            }
            let desired = workers::deployment(&agent, &ctx.workers, replicas);
            let applied = deployments
                .patch(
                    &workers::deployment_name(&name),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&desired),
                )
                .await?;
            Observed::of(&applied)
        }
        Isolation::Pod => {
            // The Deployment of `isolation: worker`, if the pool had one.
            let previous = agent.status.as_ref().and_then(|s| s.isolation);
            if previous != Some(Isolation::Pod) {
                delete_ignoring_gone(&deployments, &workers::deployment_name(&name)).await?;
            }
            let views: Vec<step_pods::PodView> = listed
                .iter()
                .filter(|pod| made_by(pod) == Some(Isolation::Pod))
                .map(|pod| step_pods::PodView::of(pod, running(pod)))
                .collect();
            let plan = step_pods::plan(&views, decision.replicas);
            for gone in &plan.delete {
                delete_ignoring_gone(&pods, gone).await?;
            }
            for _ in 0..plan.create {
                let pod = step_pods::step_pod(&agent, &ctx.workers, step_pods::pod_name(&name));
                pods.create(&PostParams::default(), &pod).await?;
            }
            let (live, ready) = step_pods::after(&views, &plan);
            Observed {
                replicas: i32::try_from(live).unwrap_or(i32::MAX),
                ready: i32::try_from(ready).unwrap_or(i32::MAX),
            }
        }
        Isolation::Sandbox => {
            let previous = agent.status.as_ref().and_then(|s| s.isolation);
            if previous != Some(Isolation::Sandbox) {
                delete_ignoring_gone(&deployments, &workers::deployment_name(&name)).await?;
            }
            for pod in listed.iter().filter(|p| made_by(p) == Some(Isolation::Pod)) {
                if running(pod) == 0 && pod.metadata.deletion_timestamp.is_none() {
                    delete_ignoring_gone(&pods, &pod.name_any()).await?;
                }
            }
            match sandbox_claims(&agent, &ctx, &namespace, &pool, decision.replicas).await {
                Ok(observed) => observed,
                Err(Error::Resource { name, problem, .. }) => {
                    // Nothing runs: said in the pool's status, not only in
                    // the operator's log.
                    let mut status = agent_status(
                        &agent,
                        Observed::default(),
                        network_policy,
                        pool.load,
                        decision,
                        Time(now),
                    );
                    status.conditions = vec![condition(
                        &agent.status.clone().unwrap_or_default().conditions,
                        "Available",
                        false,
                        "AgentSandboxMissing",
                        problem.clone(),
                        agent.metadata.generation,
                        Time(now),
                    )];
                    patch_status(&agent, &ctx, &namespace, status).await?;
                    return Err(Error::Resource {
                        kind: "Agent",
                        name,
                        problem,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    };
    if agent.spec.isolation != Isolation::Sandbox
        && agent.status.as_ref().and_then(|s| s.isolation) == Some(Isolation::Sandbox)
    {
        release_claims(&ctx, &namespace, &name, &pool).await?;
    }

    let status = agent_status(
        &agent,
        observed,
        network_policy,
        pool.load,
        decision,
        Time(now),
    );
    if agent.status.as_ref() != Some(&status) {
        patch_status(&agent, &ctx, &namespace, status).await?;
    }
    Ok(Action::requeue(ctx.scale_interval))
}

async fn patch_status(
    agent: &Agent,
    ctx: &Context,
    namespace: &str,
    status: AgentStatus,
) -> Result<(), Error> {
    let agents: Api<Agent> = Api::namespaced(ctx.kube.clone(), namespace);
    agents
        .patch_status(
            &agent.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    Ok(())
}

/// The claims of a pool's sandboxes (`isolation: sandbox`): its template
/// and warm pool applied, finished claims deleted, new ones made up to
/// `wanted`, idle ones cut beyond it. A cluster without agent-sandbox is
/// the resource's problem, named.
async fn sandbox_claims(
    agent: &Agent,
    ctx: &Context,
    namespace: &str,
    pool: &PoolView,
    wanted: u32,
) -> Result<Observed, Error> {
    let name = agent.name_any();
    let api = |kind: &str| sandbox_api(ctx, namespace, kind);
    let missing = |e: kube::Error| match e {
        kube::Error::Api(e) if e.code == 404 => Error::Resource {
            kind: "Agent",
            name: name.clone(),
            problem: format!(
                "spec.isolation: sandbox needs kubernetes-sigs/agent-sandbox, and this cluster does not serve its SandboxTemplate ({}/{}): install it, or set isolation: pod",
                sandbox_claims::GROUP,
                sandbox_claims::VERSION
            ),
        },
        other => other.into(),
    };
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let template_name = sandbox_claims::template_name(&name);
    api("SandboxTemplate")
        .patch(
            &template_name,
            &apply,
            &Patch::Apply(&sandbox_claims::template(agent, &ctx.workers)),
        )
        .await
        .map_err(missing)?;
    api("SandboxWarmPool")
        .patch(
            &template_name,
            &apply,
            &Patch::Apply(&sandbox_claims::warm_pool(agent)),
        )
        .await?;
    let claims = api("SandboxClaim");
    let listed = claims
        .list(&ListParams::default().labels(&workers::selector_string(&name)))
        .await?
        .items;
    let running = |claim: &DynamicObject| pool.running_on(&sandbox_claims::pod_of(claim));
    let views: Vec<step_pods::PodView> = listed
        .iter()
        .map(|claim| sandbox_claims::view(claim, running(claim)))
        .collect();
    let plan = step_pods::plan(&views, wanted);
    for gone in &plan.delete {
        delete_ignoring_gone(&claims, gone).await?;
    }
    for _ in 0..plan.create {
        let claim = sandbox_claims::claim(agent, step_pods::pod_name(&name));
        let claim: DynamicObject = serde_json::from_value(claim).map_err(|e| Error::Resource {
            kind: "Agent",
            name: name.clone(),
            problem: format!("a SandboxClaim: {e}"),
        })?;
        claims.create(&PostParams::default(), &claim).await?;
    }
    let (live, ready) = step_pods::after(&views, &plan);
    Ok(Observed {
        replicas: i32::try_from(live).unwrap_or(i32::MAX),
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
    })
}

/// agent-sandbox's objects of `kind` in `namespace`.
fn sandbox_api(ctx: &Context, namespace: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.kube.clone(), namespace, &sandbox_claims::resource(kind))
}

/// After `isolation: sandbox`: its claims go once their steps are done,
/// and its template and warm pool with the last of them.
async fn release_claims(
    ctx: &Context,
    namespace: &str,
    name: &str,
    pool: &PoolView,
) -> Result<(), Error> {
    let api = |kind: &str| sandbox_api(ctx, namespace, kind);
    let claims = api("SandboxClaim");
    let listed = match claims
        .list(&ListParams::default().labels(&workers::selector_string(name)))
        .await
    {
        Ok(list) => list.items,
        // Never installed: nothing was made.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut left = 0;
    for claim in &listed {
        if pool.running_on(&sandbox_claims::pod_of(claim)) > 0 {
            left += 1;
        } else {
            delete_ignoring_gone(&claims, &claim.name_any()).await?;
        }
    }
    if left == 0 {
        let template_name = sandbox_claims::template_name(name);
        delete_ignoring_gone(&api("SandboxWarmPool"), &template_name).await?;
        delete_ignoring_gone(&api("SandboxTemplate"), &template_name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::test_agent as agent;

    fn worker(name: &str, pool: &str, running: u32) -> v1::Agent {
        v1::Agent {
            name: name.into(),
            pool: pool.into(),
            running,
            ..Default::default()
        }
    }

    fn depth(caps: &[&str], queued: u32) -> v1::QueueDepth {
        v1::QueueDepth {
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            queued,
        }
    }

    #[test]
    fn a_pool_counts_the_queue_it_can_serve_and_its_own_workers() {
        let agent = agent("capabilities: [git]\n");
        let view = v1::ListAgentsResponse {
            agents: vec![
                worker("coders-1", "team-a/coders", 2),
                worker("coders-2", "team-a/coders", 0),
                // Same name, other namespace: not this pool.
                worker("coders-3", "team-b/coders", 4),
            ],
            queue: vec![
                depth(&["shell"], 3),
                depth(&["git", "shell"], 2),
                // Needs what the pool lacks.
                depth(&["gpu"], 7),
            ],
            gone: Vec::new(),
            server: None,
        };
        let pool = pool_view(&agent, &view);
        assert_eq!(
            pool.load,
            Load {
                queued: 5,
                running: 2,
                busy_pods: 1
            }
        );
        assert_eq!(pool.running_by_pod["coders-2"], 0);
        assert!(!pool.running_by_pod.contains_key("coders-3"));
    }

    #[test]
    fn external_autoscaling_follows_spec_replicas() {
        let mut agent = agent("autoscaling: external\nreplicas: 4\n");
        let load = Load {
            queued: 100,
            running: 0,
            busy_pods: 0,
        };
        assert_eq!(desired_replicas(&agent, load, 0).replicas, 4);
        agent.spec.replicas = None;
        agent.spec.min_replicas = 1;
        assert_eq!(desired_replicas(&agent, load, 0).replicas, 1);
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let then = Time(k8s_openapi::jiff::Timestamp::from_second(100).expect("time"));
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(200).expect("time"));
        let first = condition(
            &[],
            "Available",
            true,
            "R",
            String::new(),
            None,
            then.clone(),
        );
        let same = condition(
            std::slice::from_ref(&first),
            "Available",
            true,
            "R",
            String::new(),
            None,
            now.clone(),
        );
        assert_eq!(same.last_transition_time, then);
        let flipped = condition(
            &[first],
            "Available",
            false,
            "S",
            String::new(),
            None,
            now.clone(),
        );
        assert_eq!(flipped.last_transition_time, now);
    }
}
