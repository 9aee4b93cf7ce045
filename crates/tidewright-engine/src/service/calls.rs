//! What the application services are asked and what they answer, in
//! tidewright-core's and the store's terms. The adapters convert their wire's
//! messages to these and back; each field keeps the name its wire gives it,
//! so a refusal's field means the same on both.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidewright_core::{AttemptKey, Budget, Event, Micros, TaskSpec, TaskState, TenantBudget};
use tidewright_store::webhooks::Delivery;
use tidewright_store::{StateEntry, StateKey, TaskRecord};

/// SubmitTask: one task; SubmitTasks sends several.
#[derive(Debug, Clone, Default)]
pub struct Submit {
    /// Required; `None` is refused naming `spec`.
    pub spec: Option<TaskSpec>,
    /// Empty for none.
    pub idempotency_key: String,
    /// Empty for the caller's first.
    pub tenant: String,
}

/// The task a call is about: GetTask, CancelTask, RetryTask.
#[derive(Debug, Clone, Default)]
pub struct TaskRef {
    pub task_id: String,
}

/// One step of a task: its diff.
#[derive(Debug, Clone, Default)]
pub struct StepRef {
    pub task_id: String,
    pub step_id: String,
}

/// ListTasks' filters and page.
#[derive(Debug, Clone, Default)]
pub struct ListTasks {
    pub states: Vec<TaskState>,
    pub labels: Vec<(String, String)>,
    /// 0 for the default.
    pub page_size: u32,
    /// Empty for the first page.
    pub page_token: String,
    /// Empty for every tenant the caller may see.
    pub tenants: Vec<String>,
    pub name_prefix: String,
}

/// ApproveStep and RejectStep.
#[derive(Debug, Clone, Default)]
pub struct DecideStep {
    pub task_id: String,
    pub step_id: String,
    pub reason: String,
}

/// RaiseBudget: `by` adds to the task's budget.
#[derive(Debug, Clone, Default)]
pub struct RaiseBudget {
    pub task_id: String,
    pub by: Budget,
}

/// ApproveBudget.
#[derive(Debug, Clone, Default)]
pub struct ApproveBudget {
    pub task_id: String,
    pub reason: String,
}

/// SetTenantBudget.
#[derive(Debug, Clone, Default)]
pub struct SetTenantBudget {
    pub tenant: String,
    pub budget: TenantBudget,
}

/// SetTenantShare: as it came in, signed, so a negative number is refused
/// naming its field (see [`tidewright_core::TenantShare::from_signed`]).
/// What is left out is the default: weight 1, no cap, no fairness key.
#[derive(Debug, Clone, Default)]
pub struct SetTenantShare {
    pub tenant: String,
    pub weight: Option<i64>,
    pub max_running: Option<i64>,
    /// `repo`, `label:<name>`, or "" for none.
    pub fairness_key: String,
}

/// GetCostReport: the dimensions to group by and the first day, as they
/// came in.
#[derive(Debug, Clone, Default)]
pub struct GetCostReport {
    pub by: Vec<String>,
    pub since: String,
}

/// What GetCostReport answers.
#[derive(Debug, Clone, Default)]
pub struct CostReport {
    pub by: Vec<tidewright_core::cost_sums::CostBy>,
    pub since: String,
    pub until: String,
    pub rows: Vec<tidewright_core::cost_sums::CostRow>,
    pub total: tidewright_core::Cost,
    pub attempts: u64,
}

/// SteerStep: a message for a running agent step's session.
#[derive(Debug, Clone, Default)]
pub struct SteerStep {
    pub task_id: String,
    pub step_id: String,
    pub message: String,
    /// After the current turn rather than into it.
    pub follow_up: bool,
}

/// PlanTask: a prompt task to plan, not to run.
#[derive(Debug, Clone, Default)]
pub struct PlanTask {
    pub spec: Option<TaskSpec>,
    pub tenant: String,
}

/// The tenants a count, an activity or a fleet watch is of: empty for
/// every one the caller may see.
#[derive(Debug, Clone, Default)]
pub struct OfTenants {
    pub tenants: Vec<String>,
}

/// ListAudit.
#[derive(Debug, Clone, Default)]
pub struct ListAudit {
    pub after_seq: u64,
    /// 0 for the default.
    pub page_size: u32,
}

/// SubmitTemplate.
#[derive(Debug, Clone, Default)]
pub struct SubmitTemplate {
    pub name: String,
    pub parameters: BTreeMap<String, String>,
    pub idempotency_key: String,
    pub tenant: String,
    /// Labels put on the rendered task besides its own (the A2A endpoint
    /// puts a message's context on it); empty from the public calls.
    pub labels: BTreeMap<String, String>,
}

/// A push-notification config for a task (A2A's
/// CreateTaskPushNotificationConfig).
#[derive(Debug, Clone, Default)]
pub struct CreatePush {
    pub task_id: String,
    /// Empty: tidewright names it.
    pub config_id: String,
    pub url: String,
    /// Sent with each notification, for the client to know it.
    pub token: String,
    /// An `Authorization` header each notification carries: `scheme
    /// credentials`; none when the scheme is empty.
    pub auth_scheme: String,
    pub auth_credentials: String,
}

/// One push config of a task.
#[derive(Debug, Clone, Default)]
pub struct PushRef {
    pub task_id: String,
    pub config_id: String,
}

/// CreateWebhook.
#[derive(Debug, Clone, Default)]
pub struct CreateWebhook {
    /// Empty for the caller's first.
    pub tenant: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
}

/// DeleteWebhook.
#[derive(Debug, Clone, Default)]
pub struct WebhookRef {
    pub id: String,
}

/// ListWebhookDeliveries.
#[derive(Debug, Clone, Default)]
pub struct ListDeliveries {
    /// Empty for every endpoint's.
    pub webhook_id: String,
    pub page_size: u32,
    pub page_token: String,
}

/// WatchTask.
#[derive(Debug, Clone, Default)]
pub struct WatchTask {
    pub task_id: String,
    pub after_seq: u64,
    /// Follow live events after the replay, until the task finishes.
    pub follow: bool,
}

/// WatchFleet.
#[derive(Debug, Clone, Default)]
pub struct WatchFleet {
    pub tenants: Vec<String>,
    /// `None` to start at the fleet's head.
    pub after_position: Option<u64>,
}

/// What a submit made: the task, or the one its idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub task_id: String,
    /// False when the idempotency key matched an existing task.
    pub created: bool,
}

/// A page of tasks, newest first.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// A plan of a prompt task, valid or not.
#[derive(Debug, Clone)]
pub struct PlannedTask {
    /// The planned task; its prompt's spec as given when the plan did not
    /// make a valid one.
    pub spec: TaskSpec,
    /// The model's plan as it answered it.
    pub plan_json: String,
    /// Why the plan cannot run; empty when it can.
    pub problem: String,
}

/// A page of the delivery log, newest first.
#[derive(Debug, Clone)]
pub struct DeliveryPage {
    pub deliveries: Vec<Delivery>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// One event of a watch; `position` is its place in the fleet's stream
/// (0 on a task's watch).
#[derive(Debug, Clone)]
pub struct Watched {
    pub event: Arc<Event>,
    pub position: u64,
}

/// Where a shared-state value or a topic is: a tenant ("" for the caller's
/// first), a scope (a step's: its task's id) and a key or topic name.
#[derive(Debug, Clone, Default)]
pub struct StateRef {
    pub tenant: String,
    pub scope: String,
    pub key: String,
}

/// GetState.
#[derive(Debug, Clone, Default)]
pub struct GetState {
    /// `ref` on the wire; required.
    pub reference: Option<StateRef>,
}

/// ListState: a scope's values after `after_key`, in key order.
#[derive(Debug, Clone, Default)]
pub struct ListState {
    pub tenant: String,
    pub scope: String,
    pub after_key: String,
    /// 0 for the default.
    pub page_size: u32,
}

/// PutState: `expect_version` 0 for "none yet", `None` for any.
#[derive(Debug, Clone, Default)]
pub struct PutState {
    pub reference: Option<StateRef>,
    pub value_json: String,
    /// 0 for a value that never expires.
    pub ttl_seconds: u32,
    pub expect_version: Option<u64>,
}

/// DeleteState.
#[derive(Debug, Clone, Default)]
pub struct DeleteState {
    pub reference: Option<StateRef>,
    pub expect_version: Option<u64>,
}

/// Publish: a JSON message to a topic's subscribers.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    pub topic: Option<StateRef>,
    pub message_json: String,
}

/// Subscribe: a topic's messages from now on.
#[derive(Debug, Clone, Default)]
pub struct Subscribe {
    pub topic: Option<StateRef>,
}

/// A page of a scope's values; `next_after_key` is where the next one
/// starts ("" when this was the last).
#[derive(Debug, Clone)]
pub struct StatePage {
    pub values: Vec<(StateKey, StateEntry)>,
    pub next_after_key: String,
}

/// A message on a topic, as its subscribers get it.
#[derive(Debug, Clone)]
pub struct TopicMessage {
    pub topic: String,
    pub message_json: String,
    pub time: Micros,
    /// The caller that published it.
    pub sender: String,
}

/// PutCheckpoint: an agent's session, packed by the worker, for the
/// attempt after `attempt`.
#[derive(Debug, Clone, Default)]
pub struct PutCheckpoint {
    /// Required, in full.
    pub attempt: Option<AttemptKey>,
    pub session_id: String,
    /// Where the workspace was on the worker.
    pub workspace: String,
    /// A gzipped tar, kept as given.
    pub archive: Vec<u8>,
}

/// GetCheckpoint: the step's newest, for its running `attempt`.
#[derive(Debug, Clone, Default)]
pub struct GetCheckpoint {
    pub attempt: Option<AttemptKey>,
}

/// PutBranch: a step's commits, as a git bundle.
#[derive(Debug, Clone, Default)]
pub struct PutBranch {
    pub attempt: Option<AttemptKey>,
    pub head_commit: String,
    pub bundle: Vec<u8>,
    /// The step's own changes as a unified diff.
    pub diff: String,
}

/// GetBranch: `step_id`'s branch, for the running `attempt` of another
/// step of the same task.
#[derive(Debug, Clone, Default)]
pub struct GetBranch {
    pub attempt: Option<AttemptKey>,
    pub step_id: String,
}

/// PutSeed: a seed a step's `attempt` made, as its worker describes it;
/// the store sets what it knows (tenant, blob, uses).
#[derive(Debug, Clone, Default)]
pub struct PutSeed {
    pub attempt: Option<AttemptKey>,
    pub seed: crate::seeds::StoredSeed,
}

/// GetSeed: seed `key` for a running `attempt`, its blob too when `data`.
#[derive(Debug, Clone, Default)]
pub struct GetSeed {
    pub attempt: Option<AttemptKey>,
    pub key: String,
    pub data: bool,
}

/// ListSeeds: the stored seeds, of one tenant or repository when named.
#[derive(Debug, Clone, Default)]
pub struct ListSeeds {
    pub tenant: String,
    pub repo: String,
}

/// DeleteSeed: seed `key`, dropped from the store and every worker.
#[derive(Debug, Clone, Default)]
pub struct DeleteSeed {
    pub key: String,
}
