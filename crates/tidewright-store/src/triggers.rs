//! What the store keeps for triggers: each trigger as it was created, what
//! its last deliveries did, and the replies it still owes (a comment on the
//! issue or pull request a task of it was started from, once the task has
//! ended). Each backend keeps the record as JSON beside the tenant and name
//! it is looked up by.

use serde::{Deserialize, Serialize};
use tidewright_core::Micros;
use tidewright_core::trigger::TriggerSpec;

/// A trigger of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub tenant: String,
    pub spec: TriggerSpec,
    pub created_at: Micros,
    /// What its last deliveries did, oldest first; at most
    /// [`tidewright_core::trigger::HISTORY`].
    #[serde(default)]
    pub history: Vec<TriggerRun>,
    /// The replies owed: each task it started whose result is not posted
    /// yet.
    #[serde(default)]
    pub replies: Vec<Reply>,
}

/// What one delivery that matched did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriggerRun {
    /// The forge's delivery id.
    pub delivery: String,
    /// The task it started; empty when refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    /// Why it started none; empty when it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refused: String,
    pub at: Micros,
}

/// A result to post once its task has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub task_id: String,
    /// The issue or pull request (merge request) it goes on.
    pub number: u64,
    #[serde(default)]
    pub on_pull_request: bool,
}

impl Trigger {
    /// Keeps `run` in its history, and no more than the history holds.
    pub fn remember(&mut self, run: TriggerRun) {
        self.history.push(run);
        let over = self
            .history
            .len()
            .saturating_sub(tidewright_core::trigger::HISTORY);
        self.history.drain(..over);
    }
}
