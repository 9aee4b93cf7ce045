//! A tenant's share of the fleet as programs read it: `tidewright tenant
//! get -o json` and the HTTP API.

use serde::Serialize;

use crate::v1;

/// A tenant's weight, cap and fairness key, and how many of its steps run
/// and wait now.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantShareView {
    pub tenant: String,
    pub weight: u32,
    /// Unset: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    pub running: u64,
    pub waiting: u64,
    /// `repo` or `label:<name>`; unset: none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fairness_key: String,
}

pub fn share_view(t: &v1::TenantShare) -> TenantShareView {
    TenantShareView {
        tenant: t.tenant.clone(),
        weight: t.weight,
        max_running: t.max_running,
        running: t.running,
        waiting: t.waiting,
        fairness_key: t.fairness_key.clone(),
    }
}
