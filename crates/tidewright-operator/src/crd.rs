//! The custom resources. `Agent` is a pool of workers the operator runs as
//! a Deployment; `Task` is a task the operator submits to the control plane
//! and mirrors back; `TaskTemplate` is a task with typed parameters that a
//! `Task` names in `templateRef`. Their schemas come from these types (`tidewright operator
//! crd`), so `kubectl apply` rejects what tidewright would reject where it can.

// Each `printcolumn(...)` repeats `type_ = ...`; that is kube's syntax.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, ResourceRequirements, SecretKeySelector, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool of tidewright workers: pods running `tidewright worker` with these
/// capabilities, scaled with the queue of steps that need them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tidewright.dev",
    version = "v1alpha1",
    kind = "Agent",
    namespaced,
    status = "AgentStatus",
    shortname = "agent",
    category = "tidewright",
    doc = "A pool of tidewright workers, scaled with the queue of steps they can run",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Busy", type_ = "integer", json_path = ".status.busy"),
    printcolumn(name = "Queued", type_ = "integer", json_path = ".status.queued"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"}
]))]
pub struct AgentSpec {
    /// The worker image; the chart's worker image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What runs a step: `shell` commands or the `claude-code` agent.
    #[serde(default)]
    pub runtime: AgentRuntime,
    /// Capabilities the workers offer; steps that need them run here.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub capabilities: Vec<String>,
    /// The model the pool's agent runtime asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Steps one pod runs at once.
    #[serde(default = "default_slots")]
    #[schemars(range(min = 1, max = 1024))]
    pub slots_per_pod: u32,
    /// Agent steps the whole pool runs at once, whatever its size: fan-out
    /// stops here before the provider's rate limit does. Unset: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_concurrent_agents: Option<u32>,
    /// The largest session checkpoint an agent step leaves with the
    /// control plane when it ends short of success (pods come and go: the
    /// retry resumes the session on any pod); workspace files beyond it are
    /// left out. 0 keeps sessions in their pod. Unset: 8 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub checkpoint_max_bytes: Option<u64>,
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_replicas: i32,
    /// With `minReplicas: 0`, how long the pool stays up with nothing to do
    /// before it scales to zero.
    #[serde(default = "default_idle_seconds")]
    #[schemars(range(min = 0))]
    pub scale_to_zero_after_seconds: u32,
    /// `builtIn`: the operator sets replicas from the queue. `external`: an
    /// HPA or KEDA drives `/scale` (`spec.replicas`) and the operator follows.
    #[serde(default)]
    pub autoscaling: Autoscaling,
    /// Replicas when `autoscaling: external`; written through `/scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The model provider's API key (claude-code: Anthropic's), a key of a
    /// Secret: mounted as a file the worker reads and hands only to the
    /// model proxy or the agent CLI, never an environment variable its
    /// steps inherit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<SecretKeySelector>,
    /// Extra environment; secrets by `valueFrom`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Where the pool's workers keep the mirrors of tasks' repositories,
    /// and how much of it they may take. Unset: in each pod's work
    /// directory, unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_cache: Option<Cache>,
    /// Where the pool's workers keep repositories' seeds (what their
    /// setups made, `node_modules` say), and how much of it they may
    /// take. A claim or the node's disk keeps them across pods; a new pod
    /// without one takes each from the control plane's store. Unset: in
    /// each pod's work directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_cache: Option<Cache>,
    /// A Secret mounted as the workers' secrets directory: each key is a
    /// secret steps can name in `secretEnv`, or a Task in its
    /// `repo.credentialsSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_secret_name: Option<String>,
    /// How the pool's steps are kept apart. `worker` (the default): a
    /// Deployment of workers, `slotsPerPod` steps sharing each pod (each in
    /// a bubblewrap sandbox where the pool sets `TIDEWRIGHT_SANDBOX=on`). `pod`:
    /// each step in a pod of its own, made for it and gone after it, for
    /// nodes that allow no nested sandbox. `sandbox`: the same, each pod
    /// claimed through kubernetes-sigs/agent-sandbox (a SandboxClaim per
    /// step, from a SandboxTemplate the operator makes of the pool's pod),
    /// which must be installed: without it the pool runs nothing and its
    /// status says so.
    #[serde(default)]
    pub isolation: Isolation,
    /// The hosts the pool's steps may reach: `host`, `host:port`,
    /// `*.domain[:port]`, `*` or an IP address. Given, the pool gets a
    /// NetworkPolicy: its pods reach DNS, the control plane, public
    /// addresses on port 443 (the model API, repository hosts) and what
    /// this list names (a name: public addresses on its port; a name with
    /// its port or an IP address: that address too, inside the cluster).
    /// Unset: no NetworkPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<tidewright_core::Egress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// The volume a pool's cache lives on (its mirrors, its seeds).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.claimName) && has(self.hostPath))", "message": "name claimName or hostPath, not both"}
]))]
pub struct Cache {
    /// A PersistentVolumeClaim every pod of the pool mounts (it must allow
    /// that: ReadWriteMany, or pods on one node), so the cache outlives
    /// pods; the workers take turns on each entry. Unset (and no
    /// `hostPath`): an emptyDir per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// A directory on the node's disk (made if missing), which the pool's
    /// pods on that node share and a new pod there finds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub host_path: Option<String>,
    /// The most the cache may take (`20Gi`): an emptyDir's size limit;
    /// the workers evict the least recently used entries no step is using
    /// once they pass nine tenths of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub size: Option<String>,
}

fn default_slots() -> u32 {
    4
}

fn default_max_replicas() -> i32 {
    10
}

fn default_idle_seconds() -> u32 {
    300
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentRuntime {
    #[default]
    Shell,
    ClaudeCode,
    /// The Codex CLI (OpenAI): the pool's `apiKeySecret` is an OpenAI key,
    /// and `model` its Codex model.
    Codex,
    /// The Gemini CLI (Google): the pool's `apiKeySecret` is a Gemini API
    /// key, and `model` its Gemini model.
    GeminiCli,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Isolation {
    #[default]
    Worker,
    Pod,
    Sandbox,
}

impl Isolation {
    /// Whether each step runs in a pod of its own.
    pub fn per_step(self) -> bool {
        matches!(self, Isolation::Pod | Isolation::Sandbox)
    }

    /// Its name in a spec, and on the pods it makes.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Worker => "worker",
            Isolation::Pod => "pod",
            Isolation::Sandbox => "sandbox",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Autoscaling {
    #[default]
    BuiltIn,
    External,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Pods the Deployment has, and of those ready.
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Steps running on the pool, and steps queued for its capabilities.
    #[serde(default)]
    pub busy: u32,
    #[serde(default)]
    pub queued: u32,
    /// The pods' label selector, for `/scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The isolation the pool's pods were last made with, so a change
    /// removes what the other one made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// The NetworkPolicy made from `spec.egress`, while there is one.
    /// Always written (null too), so a merge patch clears it.
    #[serde(default)]
    pub network_policy: Option<String>,
    /// Since when the pool has had nothing queued or running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A task for tidewright: the same spec as a task file (`tidewright submit -f`), run by
/// the control plane; its status mirrors the task's progress.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tidewright.dev",
    version = "v1alpha1",
    kind = "Task",
    root = "TidewrightTask",
    namespaced,
    status = "TidewrightTaskStatus",
    shortname = "otask",
    category = "tidewright",
    doc = "A task for tidewright: a DAG of steps, run by the control plane",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress"),
    printcolumn(name = "Steps", type_ = "string", json_path = ".status.steps"),
    printcolumn(name = "Cost", type_ = "number", json_path = ".status.costUsd"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self == oldSelf", "message": "a Task's spec cannot change once it is created; create a new Task"},
    {"rule": "!has(self.templateRef) || ((!has(self.steps) || size(self.steps) == 0) && (!has(self.prompt) || self.prompt == ''))", "message": "a Task with templateRef takes its steps from the template: give parameters, not steps or a prompt"}
]))]
pub struct TidewrightTaskSpec {
    /// Name, labels, priority and steps, exactly as in a task file.
    #[serde(flatten)]
    pub task: tidewright_core::TaskSpec,
    /// Run this TaskTemplate of the Task's namespace (or, when it has none
    /// of that name, the built-in template: feature, refactor, deploy, parallel-feature, fix-issue, fix-ci)
    /// instead of steps given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    /// The template's parameters, as text (`times: "3"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// A finished Task is deleted this long after it finished; kept when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TemplateRef {
    pub name: String,
}

/// A task with typed parameters, substituted into its name, labels,
/// prompts, models, commands, env and approvals as `${{ name }}`: what
/// `tidewright template` runs from a file, as a resource. A value never lands
/// inside a script; such a template is refused by name when a Task uses it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tidewright.dev",
    version = "v1alpha1",
    kind = "TaskTemplate",
    namespaced,
    shortname = "otemplate",
    category = "tidewright",
    doc = "A task with typed parameters, which Tasks name in templateRef",
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TaskTemplateSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, TemplateParameter>,
    /// The task, placeholders and all.
    #[serde(flatten)]
    pub task: tidewright_core::TaskSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateParameter {
    /// string (the default), integer, number or boolean.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(string|integer|number|boolean)$"))]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Used when a Task does not give it, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    /// The only values accepted, when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

impl TaskTemplateSpec {
    /// The template file this resource holds, as tidewright-core reads one.
    pub fn to_template(
        &self,
        name: &str,
    ) -> Result<tidewright_core::template::Template, tidewright_core::Error> {
        let mut file = serde_json::to_value(&self.task).unwrap_or_default();
        let parameters = serde_json::to_value(&self.parameters).unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut file {
            map.insert("description".into(), self.description.clone().into());
            map.insert("parameters".into(), parameters);
        }
        tidewright_core::template::Template::from_value(name, file)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TaskPhase {
    /// Not yet accepted by the control plane.
    Pending,
    Queued,
    Running,
    /// Its budget or its tenant's is spent; raising it resumes the task.
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TidewrightTaskStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TaskPhase>,
    /// The control plane's id of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Finished steps over all steps, e.g. `3/5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<String>,
    /// Overall progress as a percentage, e.g. `60%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default)]
    pub steps_succeeded: u32,
    #[serde(default)]
    pub steps_failed: u32,
    #[serde(default)]
    pub steps_running: u32,
    /// Steps waiting for an approver: approve one with the annotation
    /// `tidewright.dev/approve: <step>` (or `tidewright approve`). Always written,
    /// empty too, so a merge patch clears it once none waits.
    #[serde(default)]
    pub awaiting_approval: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// What the task's agents cost, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The task's budget in US dollars, as raised so far (`tidewright budget
    /// raise`); crossing it pauses the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A task submitted at each tick of a cron, in a time zone: the control
/// plane's schedule of the resource's name, in its namespace's tenant,
/// which fires each tick once whichever replica leads. Its status mirrors
/// the schedule's next tick and its last run.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tidewright.dev",
    version = "v1alpha1",
    kind = "Schedule",
    root = "TidewrightSchedule",
    namespaced,
    status = "TidewrightScheduleStatus",
    shortname = "oschedule",
    category = "tidewright",
    doc = "A task tidewright submits at each tick of a cron, in a time zone",
    printcolumn(name = "Cron", type_ = "string", json_path = ".spec.cron"),
    printcolumn(name = "Timezone", type_ = "string", json_path = ".spec.timezone"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspended"),
    printcolumn(name = "Next", type_ = "date", json_path = ".status.nextTick"),
    printcolumn(name = "Last task", type_ = "string", json_path = ".status.lastTaskId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.task) != has(self.templateRef)", "message": "give the task each tick submits, or a templateRef: one of them"}
]))]
pub struct TidewrightScheduleSpec {
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first; or a name such as `@daily`.
    pub cron: String,
    /// An IANA time zone (`Europe/Rome`); UTC when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timezone: String,
    /// The task each tick submits, as in a task file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<tidewright_core::TaskSpec>,
    /// Or this TaskTemplate of the namespace (or the built-in template of
    /// that name), rendered with `parameters` when the Schedule is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    /// The template's parameters, as text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Allow (the default): runs may overlap; Forbid: a tick is skipped
    /// while the last run runs; Replace: that run is cancelled.
    #[serde(default)]
    pub concurrency_policy: tidewright_core::schedule::ConcurrencyPolicy,
    /// How late a tick may fire (60 when unset); later, it is missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub starting_deadline_seconds: Option<u32>,
    /// What becomes of missed ticks: skip (the default), or runOnce.
    #[serde(default)]
    pub missed: tidewright_core::schedule::MissedTicks,
    /// No tick fires while suspended; resuming does not fire those passed
    /// over.
    #[serde(default)]
    pub suspended: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TidewrightScheduleStatus {
    /// Unset while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_tick: Option<Time>,
    /// The last tick that fired or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick: Option<Time>,
    /// The task of the last tick that fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task_id: Option<String>,
    /// Why the last tick was skipped, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skipped: Option<String>,
    /// Why the control plane refused the schedule, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A forge's event on a repository that starts a template's task: the
/// control plane's trigger of the resource's name, in its namespace's
/// tenant, which takes the event's deliveries on its `/hooks/github` or
/// `/hooks/gitlab`. Its status mirrors what the last delivery did.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tidewright.dev",
    version = "v1alpha1",
    kind = "Trigger",
    root = "TidewrightTrigger",
    namespaced,
    status = "TidewrightTriggerStatus",
    shortname = "otrigger",
    category = "tidewright",
    doc = "A forge event (an issue labelled, a comment command, a failed check) that starts a template's task",
    printcolumn(name = "Repository", type_ = "string", json_path = ".spec.repository"),
    printcolumn(name = "Event", type_ = "string", json_path = ".spec.event"),
    printcolumn(name = "Template", type_ = "string", json_path = ".spec.template"),
    printcolumn(name = "Last task", type_ = "string", json_path = ".status.lastTaskId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TidewrightTriggerSpec {
    /// github (the default) or gitlab.
    #[serde(default)]
    pub forge: tidewright_core::repo::Forge,
    /// owner/name (GitLab: group/subgroup/name).
    pub repository: String,
    /// issueLabeled, comment or checkFailed.
    pub event: tidewright_core::trigger::TriggerEvent,
    /// issueLabeled: the label (`agent` when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// comment: the command a comment starts with (`/tidewright` when
    /// empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// checkFailed: the branch (the repository's default branch when
    /// empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// The control plane's template whose task it starts (its event's
    /// built-in one when empty: fix-issue, pr-command, fix-ci).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    /// Parameters it always fills in, as text; they win over the event's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// The secret in the control plane's repository secrets directory
    /// holding the forge token it comments with (`git-token` when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials_secret: String,
    /// The forge's API root; the public one when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_url: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TidewrightTriggerStatus {
    /// The last delivery that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<String>,
    /// The task it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task_id: Option<String>,
    /// Why it started none, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refused: Option<String>,
    /// Why the control plane refused the trigger, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An `Agent` `coders` in `team-a` with this spec, for tests.
#[cfg(test)]
pub(crate) fn test_agent(spec_yaml: &str) -> Agent {
    let spec: AgentSpec = serde_yaml::from_str(spec_yaml).expect("agent spec");
    let mut agent = Agent::new("coders", spec);
    agent.metadata.namespace = Some("team-a".into());
    agent.metadata.uid = Some("uid-1".into());
    agent
}

/// A tenant's share of the fleet, cluster-wide: the resource's name is the
/// tenant (a namespace's tenant is its name). The operator keeps the
/// control plane's share of the tenant as the resource says, and mirrors
/// the tenant's steps running and waiting into the status. Cluster-scoped,
/// so only who may write cluster resources sets shares, as only admins may
/// in tidewright: a namespace's own members cannot raise their share.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tidewright.dev",
    version = "v1alpha1",
    kind = "TenantShare",
    root = "TidewrightTenantShare",
    status = "TidewrightTenantShareStatus",
    shortname = "oshare",
    category = "tidewright",
    doc = "A tenant's weight in the fair share, its cap on running steps, and the key that shares its part",
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.weight"),
    printcolumn(
        name = "Max running",
        type_ = "integer",
        json_path = ".spec.maxRunning"
    ),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.running"),
    printcolumn(name = "Waiting", type_ = "integer", json_path = ".status.waiting"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantShareSpec {
    /// Its turns against a tenant of weight 1's one (1 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: Option<u32>,
    /// At most this many of its steps run at once (0 runs none); no cap
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_running: Option<u32>,
    /// `repo` or `label:<name>`: shares its part equally among its tasks'
    /// repositories, or that label's values.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^(repo|label:[A-Za-z0-9_./-]+)$"))]
    pub fairness_key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TidewrightTenantShareStatus {
    /// The tenant's steps running when last read.
    #[serde(default)]
    pub running: u64,
    /// The tenant's steps waiting in the ready queue when last read.
    #[serde(default)]
    pub waiting: u64,
    /// Why the control plane refused the share, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
