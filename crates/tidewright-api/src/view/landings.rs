//! The JSON shape of the landing queues (ListLandings): what `tidewright
//! get landings -o json` prints and what `GET /api/v1/landings` answers.

use serde::Serialize;

use super::rfc3339;
use crate::v1;

/// The tasks landing on one base, in their order: the one landing now,
/// then those waiting their turn.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LandingQueueView {
    pub repo_url: String,
    pub base: String,
    pub tasks: Vec<QueuedLandingView>,
}

/// A task in its base's landing queue; another tenant's shows only its
/// place, state and time (its id, name and tenant are left out).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedLandingView {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// Its turn: it lands now. Otherwise it waits.
    pub landing: bool,
    /// When its turn began, or when it began to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

pub fn landing_queue_view(queue: &v1::LandingQueue) -> LandingQueueView {
    LandingQueueView {
        repo_url: queue.repo_url.clone(),
        base: queue.base.clone(),
        tasks: queue
            .tasks
            .iter()
            .map(|t| QueuedLandingView {
                task_id: t.task_id.clone(),
                task_name: t.task_name.clone(),
                tenant: t.tenant.clone(),
                landing: t.landing,
                since: rfc3339(&t.since),
            })
            .collect(),
    }
}
