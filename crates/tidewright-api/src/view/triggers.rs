//! A trigger as programs read it: `tidewright trigger list -o json` and the
//! HTTP API.

use std::collections::BTreeMap;

use serde::Serialize;

use super::rfc3339;
use crate::v1;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerView {
    pub name: String,
    pub tenant: String,
    /// github or gitlab.
    pub forge: String,
    pub repository: String,
    /// issueLabeled, comment or checkFailed.
    pub event: String,
    /// What the event is read for: its label, command or branch ("" for
    /// the default: `agent`, `/tidewright`, the default branch).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub command: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub branch: String,
    pub template: String,
    pub params: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credentials_secret: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_url: String,
    pub created_at: Option<String>,
    /// Its last deliveries that matched, oldest first.
    pub history: Vec<TriggerRunView>,
    /// The tasks whose result it has yet to comment.
    pub replies_owed: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerRunView {
    pub delivery: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub refused: String,
    pub at: Option<String>,
}

pub fn trigger_view(trigger: &v1::Trigger) -> TriggerView {
    let spec = trigger.spec.clone().unwrap_or_default();
    TriggerView {
        name: spec.name,
        tenant: trigger.tenant.clone(),
        forge: spec.forge,
        repository: spec.repository,
        event: spec.event,
        label: spec.label,
        command: spec.command,
        branch: spec.branch,
        template: spec.template,
        params: spec.params.into_iter().collect(),
        credentials_secret: spec.credentials_secret,
        api_url: spec.api_url,
        created_at: rfc3339(&trigger.created_at),
        history: trigger
            .history
            .iter()
            .map(|run| TriggerRunView {
                delivery: run.delivery.clone(),
                task_id: run.task_id.clone(),
                refused: run.refused.clone(),
                at: rfc3339(&run.at),
            })
            .collect(),
        replies_owed: trigger.replies_owed.clone(),
    }
}
