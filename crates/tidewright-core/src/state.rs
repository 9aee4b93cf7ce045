//! Task and step states, and the events that record every change of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Microseconds since the Unix epoch. The engine reads the clock; core only
/// carries the value, so its logic stays deterministic under test.
pub type Micros = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    /// Stopped for its budget (or its tenant's): nothing of it runs until
    /// the budget is raised, then it goes on where it stopped.
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Waiting,
    /// Its dependencies succeeded; it waits for an approver's decision.
    #[serde(rename = "awaiting_approval")]
    AwaitingApproval,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Skipped,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Paused,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Paused => "paused",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl StepState {
    pub const ALL: [StepState; 8] = [
        StepState::Waiting,
        StepState::AwaitingApproval,
        StepState::Queued,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Cancelled,
        StepState::Skipped,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepState::Succeeded | StepState::Failed | StepState::Cancelled | StepState::Skipped
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Waiting => "waiting",
            StepState::AwaitingApproval => "awaiting_approval",
            StepState::Queued => "queued",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Skipped => "skipped",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::UnknownState(s.to_string()))
    }
}

impl FromStr for StepState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        StepState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::UnknownState(s.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One entry of a task's event log. `seq` counts 1, 2, 3... per task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub task_id: String,
    pub seq: u64,
    pub at: Micros,
    pub kind: EventKind,
}

/// One attempt of one step: what a lease is for, what a worker reports
/// on, and what fencing compares (a result counts only for the current
/// attempt).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    pub task_id: String,
    pub step_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKind {
    TaskState {
        state: TaskState,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
    StepState {
        step: String,
        state: StepState,
        attempt: u32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        worker: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
        /// The step whose `touches` may overlap this one's, which it waits
        /// for; `<task>/<step>` for another task's.
        #[serde(default, rename = "waitsFor", skip_serializing_if = "String::is_empty")]
        waits_for: String,
        /// Its dependencies' work that would not merge, as its attempt
        /// found it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conflict: Option<crate::repo::MergeConflict>,
    },
    Progress {
        step: String,
        attempt: u32,
        fraction: f32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
    Log {
        step: String,
        attempt: u32,
        stream: LogStream,
        line: String,
    },
    /// A connection the step's process asked of its egress proxy.
    Egress {
        step: String,
        attempt: u32,
        /// `host:port`.
        destination: String,
        allowed: bool,
        /// Why it was refused; empty when allowed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// A verified step's round of checks on its committed work: passed,
    /// or what failed (see [`crate::verify`]).
    Verification {
        step: String,
        attempt: u32,
        round: u32,
        passed: bool,
        message: String,
    },
    /// What a step's setup did before its process ran: a seed put in
    /// place (from where, how, how fast), or the setup run (see
    /// [`crate::setup`]).
    Setup {
        step: String,
        attempt: u32,
        setup: crate::setup::SetupReport,
    },
    /// An agent step moved to one of its fallback runtimes: a provider's
    /// limit paused every pool that runs `from` (see [`crate::failover`]).
    FailedOver {
        step: String,
        /// The attempt that met the limit; its last attempt when it was
        /// queued.
        attempt: u32,
        from: String,
        to: String,
        reason: String,
        /// Its work so far and a summary of its session went with it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        carried: bool,
    },
    /// A person's message sent into a running agent step's session: who,
    /// what, and how it reaches the agent (see [`crate::steer`]).
    Steered {
        step: String,
        attempt: u32,
        from: String,
        message: String,
        delivery: String,
    },
    /// One item of an agent step's session as its CLI streamed it (see
    /// [`crate::session_item`]), with what the attempt had cost then.
    SessionItem {
        step: String,
        attempt: u32,
        item: crate::session_item::SessionItem,
        usd: f64,
    },
}

impl EventKind {
    /// The store keeps the event's kind in a column of its own, for filtering.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::TaskState { .. } => "taskState",
            EventKind::StepState { .. } => "stepState",
            EventKind::Progress { .. } => "progress",
            EventKind::Log { .. } => "log",
            EventKind::Egress { .. } => "egress",
            EventKind::Verification { .. } => "verification",
            EventKind::FailedOver { .. } => "failedOver",
            EventKind::Setup { .. } => "setup",
            EventKind::Steered { .. } => "steered",
            EventKind::SessionItem { .. } => "sessionItem",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>(), Ok(state));
        }
        for state in StepState::ALL {
            assert_eq!(state.as_str().parse::<StepState>(), Ok(state));
        }
        assert!("bogus".parse::<TaskState>().is_err());
    }

    #[test]
    fn terminal_states() {
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Cancelled.is_terminal());
        assert!(StepState::Skipped.is_terminal());
        assert!(!StepState::Queued.is_terminal());
    }
}
