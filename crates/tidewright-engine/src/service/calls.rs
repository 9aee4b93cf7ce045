//! What the application services are asked and what they answer, in
//! tidewright-core's and the store's terms. The adapters convert their wire's
//! messages to these and back; each field keeps the name its wire gives it,
//! so a refusal's field means the same on both.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidewright_core::{Budget, Event, TaskSpec, TaskState, TenantBudget};
use tidewright_store::TaskRecord;
use tidewright_store::webhooks::Delivery;

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
