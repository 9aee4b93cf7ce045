//! What the store keeps for webhooks: the endpoints tenants registered,
//! each delivery of an event to one of them (its body fixed when it is
//! made, so every try sends the same bytes), and how far the control plane
//! has turned the fleet's events into deliveries. Each backend keeps the
//! records as JSON beside the few columns it looks them up by.

use serde::{Deserialize, Serialize};
use tidewright_core::Micros;

/// A registered endpoint.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    pub tenant: String,
    pub url: String,
    /// The event types it receives (`task.succeeded`...).
    pub events: Vec<String>,
    /// Signs each delivery; never shown.
    pub secret: String,
    pub enabled: bool,
    /// Why it was disabled (its receiver answered 410).
    #[serde(default)]
    pub disabled_reason: String,
    pub created_at: Micros,
    /// Set for an A2A client's push-notification config: the endpoint
    /// gets one task's updates, as A2A has them, with the client's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<TaskPush>,
}

/// What an A2A push-notification config adds to an endpoint: its task, its
/// id among the task's configs, and what each notification carries so the
/// client knows it (its token, and an `Authorization` header's scheme and
/// credentials). The token and credentials are never shown.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPush {
    pub task_id: String,
    pub config_id: String,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub auth_scheme: String,
    #[serde(default)]
    pub auth_credentials: String,
}

impl std::fmt::Debug for TaskPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskPush")
            .field("task_id", &self.task_id)
            .field("config_id", &self.config_id)
            .field("auth_scheme", &self.auth_scheme)
            .finish_non_exhaustive()
    }
}

/// Never shows the secret: records end up in logs.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .field("disabled_reason", &self.disabled_reason)
            .field("push", &self.push)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet answered with a 2xx; tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up: retried for as long as deliveries are, or its endpoint
    /// was disabled or removed.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Sorts by creation; the receiver's idempotency id, the same on every
    /// try.
    pub id: String,
    pub webhook_id: String,
    pub tenant: String,
    pub task_id: String,
    /// The event type, `task.succeeded`...
    pub event: String,
    /// The JSON body sent, whole.
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When it is tried next, while pending.
    pub next_attempt_at: Micros,
    /// The last answer's HTTP status; 0 when none came.
    pub last_status: u16,
    pub last_latency_ms: u32,
    #[serde(default)]
    pub last_error: String,
    pub created_at: Micros,
    /// When it was delivered or given up; 0 while pending.
    pub finished_at: Micros,
}

/// Which deliveries to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only this endpoint's.
    pub webhook_id: Option<String>,
    /// Only these tenants'; all when `None`.
    pub tenants: Option<Vec<String>>,
    /// Older than this id.
    pub before_id: Option<String>,
    pub limit: usize,
}

impl DeliveryQuery {
    /// Whether `delivery` is one this query lists (ignoring the order and
    /// the limit).
    pub fn selects(&self, delivery: &Delivery) -> bool {
        self.webhook_id
            .as_ref()
            .is_none_or(|id| *id == delivery.webhook_id)
            && self
                .tenants
                .as_ref()
                .is_none_or(|t| t.contains(&delivery.tenant))
            && self
                .before_id
                .as_ref()
                .is_none_or(|before| delivery.id < *before)
    }
}

/// A record as its JSON column holds it.
pub fn to_json<T: Serialize>(record: &T) -> String {
    // Plain structs of strings and numbers: serializing cannot fail.
    serde_json::to_string(record).unwrap_or_default()
}
