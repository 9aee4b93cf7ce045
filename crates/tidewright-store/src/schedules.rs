//! What the store keeps for schedules: each schedule as it was created (or
//! last changed), the last tick it handled, and what its last ticks did.
//! Each backend keeps the record as JSON beside the tenant and name it is
//! looked up by.

use serde::{Deserialize, Serialize};
use tidewright_core::Micros;
use tidewright_core::schedule::ScheduleSpec;

/// A schedule of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub tenant: String,
    pub spec: ScheduleSpec,
    pub created_at: Micros,
    /// The last tick it fired or skipped; when it was created (or resumed)
    /// before that, so no earlier tick fires.
    pub handled: Micros,
    /// What its last ticks did, oldest first; at most
    /// [`tidewright_core::schedule::HISTORY`].
    #[serde(default)]
    pub history: Vec<ScheduleRun>,
}

/// What one tick (or a run of skipped ones) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRun {
    /// The tick, or the first of the skipped ones.
    pub tick: Micros,
    /// The last of the skipped ones; the tick when one.
    pub last_tick: Micros,
    /// How many were skipped; `None`: more than were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticks: Option<u64>,
    /// The task it submitted; empty when skipped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    /// Why it was skipped; empty when it fired.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub skipped: String,
    /// When it was handled.
    pub at: Micros,
}

impl Schedule {
    /// Keeps `run` as its newest handled tick (or run of skipped ones): no
    /// tick up to its last fires again.
    pub fn record(&mut self, run: ScheduleRun) {
        self.handled = self.handled.max(run.last_tick);
        self.remember(run);
    }

    /// Keeps `run` in its history, and no more than the history holds,
    /// without counting it as a tick handled (a run triggered by hand).
    pub fn remember(&mut self, run: ScheduleRun) {
        self.history.push(run);
        let over = self
            .history
            .len()
            .saturating_sub(tidewright_core::schedule::HISTORY);
        self.history.drain(..over);
    }
}
