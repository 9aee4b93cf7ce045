//! The pods of a pool with `isolation: pod`: each a worker that takes one
//! step and leaves (`tidewright worker --steps 1`), so every step runs in a pod
//! of its own, made for it and deleted after it. The operator keeps as
//! many waiting as the queue asks for, removes finished ones, and on scale
//! in removes only pods that run nothing (pending first). They are owned by
//! the Agent, so no ReplicaSet adopts them and they go with it.

use k8s_openapi::api::core::v1::Pod;
use kube::{Resource, ResourceExt};

use crate::crd::Agent;
use crate::workers::{WorkerSettings, pod_template};

/// One of the pool's pods, as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    /// Its phase: Pending, Running, Succeeded, Failed (or unknown).
    pub phase: Option<String>,
    /// Already being deleted.
    pub deleting: bool,
    /// Steps its worker runs, as the control plane says.
    pub running: u32,
}

impl PodView {
    pub fn of(pod: &Pod, running: u32) -> PodView {
        PodView {
            name: pod.name_any(),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            running,
        }
    }

    fn finished(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    fn live(&self) -> bool {
        !self.finished() && !self.deleting
    }
}

/// What to do to reach the wanted number of pods.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub create: u32,
    pub delete: Vec<String>,
}

/// Finished pods go; live ones are made up to `wanted`, or cut down to it
/// from those running nothing, pending before running. A pod running a
/// step is never cut.
pub fn plan(pods: &[PodView], wanted: u32) -> Plan {
    let mut delete: Vec<String> = pods
        .iter()
        .filter(|p| p.finished() && !p.deleting)
        .map(|p| p.name.clone())
        .collect();
    let live: Vec<&PodView> = pods.iter().filter(|p| p.live()).collect();
    let count = u32::try_from(live.len()).unwrap_or(u32::MAX);
    let mut create = 0;
    if count < wanted {
        create = wanted - count;
    } else if count > wanted {
        let mut idle: Vec<&&PodView> = live.iter().filter(|p| p.running == 0).collect();
        idle.sort_by_key(|p| (p.phase.as_deref() != Some("Pending"), p.name.clone()));
        let excess = usize::try_from(count - wanted).unwrap_or(usize::MAX);
        delete.extend(idle.into_iter().take(excess).map(|p| p.name.clone()));
    }
    Plan { create, delete }
}

/// The pool once `plan` is carried out: its live pods (those it makes
/// included), and of those already there, the live ones running.
pub fn after(pods: &[PodView], plan: &Plan) -> (u32, u32) {
    let kept: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.live() && !plan.delete.contains(&p.name))
        .collect();
    let ready = kept
        .iter()
        .filter(|p| p.phase.as_deref() == Some("Running"))
        .count();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (count(kept.len()).saturating_add(plan.create), count(ready))
}

/// A name for a new step pod: `<agent>-step-<5 random characters>`.
pub fn pod_name(agent_name: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    // Should the kernel give no randomness, the name repeats, the API
    // refuses the clash, and the next pass tries again.
    let _ = getrandom::fill(&mut bytes);
    let suffix: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("{agent_name}-step-{suffix}")
}

/// A new step pod of the pool, owned by its Agent.
pub fn step_pod(agent: &Agent, settings: &WorkerSettings, name: String) -> Pod {
    let template = pod_template(agent, settings);
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = Some(name);
    metadata.namespace = agent.metadata.namespace.clone();
    metadata.owner_references = agent.controller_owner_ref(&()).map(|o| vec![o]);
    Pod {
        metadata,
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::test_agent as agent;
    use crate::workers::{ISOLATION_LABEL, test_settings};

    fn pod(name: &str, phase: &str, running: u32) -> PodView {
        PodView {
            name: name.into(),
            phase: Some(phase.into()),
            deleting: false,
            running,
        }
    }

    #[test]
    fn finished_pods_go_and_new_ones_make_up_the_number() {
        let pods = [
            pod("a", "Succeeded", 0),
            pod("b", "Failed", 0),
            pod("c", "Running", 1),
        ];
        assert_eq!(
            plan(&pods, 3),
            Plan {
                create: 2,
                delete: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn scale_in_cuts_idle_pods_pending_first_and_never_a_busy_one() {
        let pods = [
            pod("a", "Running", 1),
            pod("b", "Running", 0),
            pod("c", "Pending", 0),
            pod("d", "Running", 1),
        ];
        assert_eq!(plan(&pods, 2).delete, vec!["c", "b"]);
        assert_eq!(plan(&pods, 3).delete, vec!["c"]);
        // Wanting none still leaves the two at work.
        assert_eq!(plan(&pods, 0).delete, vec!["c", "b"]);
        assert_eq!(plan(&pods, 0).create, 0);
    }

    #[test]
    fn pods_being_deleted_count_for_nothing() {
        let mut leaving = pod("a", "Running", 0);
        leaving.deleting = true;
        let pods = [leaving];
        let plan = plan(&pods, 1);
        assert_eq!((plan.create, plan.delete.len()), (1, 0));
        assert_eq!(after(&pods, &plan), (1, 0), "the leaving pod is not ready");
    }

    #[test]
    fn after_the_plan_the_pool_counts_what_stays_and_what_is_made() {
        let pods = [
            pod("a", "Succeeded", 0),
            pod("b", "Running", 1),
            pod("c", "Pending", 0),
            pod("d", "Running", 0),
        ];
        let cut = plan(&pods, 1);
        // a is finished, c and d idle and cut: b stays, running.
        assert_eq!(after(&pods, &cut), (1, 1));
        let grown = plan(&pods, 5);
        assert_eq!(grown.create, 2);
        assert_eq!(after(&pods, &grown), (5, 2));
    }

    #[test]
    fn a_step_pod_is_a_one_step_worker_owned_by_its_agent() {
        let agent = agent("isolation: pod\nslotsPerPod: 4\n");
        let name = pod_name("coders");
        assert!(name.starts_with("coders-step-") && name.len() == "coders-step-".len() + 5);
        assert_ne!(pod_name("coders"), pod_name("coders"));
        let pod = step_pod(&agent, &test_settings(), name.clone());
        assert_eq!(pod.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("team-a"));
        let owner = &pod.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Agent", Some(true))
        );
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(ISOLATION_LABEL).map(String::as_str), Some("pod"));
        assert_eq!(
            labels.get("tidewright.dev/agent").map(String::as_str),
            Some("coders")
        );
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value("TIDEWRIGHT_STEPS").as_deref(), Some("1"));
        assert_eq!(
            value("TIDEWRIGHT_SLOTS").as_deref(),
            Some("1"),
            "one step per pod"
        );
    }
}
