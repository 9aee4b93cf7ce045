//! What the engine tells a connected worker, in tidewright-core's types: the
//! transport that carries the worker's stream converts these to its wire
//! messages (and mints each assignment's step token) in one place.

use std::time::Duration;

use tidewright_core::{AttemptKey, StepSpec};
use tokio::sync::mpsc;

/// Where the engine sends a worker's messages. The engine holds the only
/// strong sender: when it drops a worker, the worker's stream ends.
pub type Outbox = mpsc::UnboundedSender<ToWorker>;

#[derive(Debug, Clone, PartialEq)]
pub enum ToWorker {
    /// The worker is known as `worker_id`; it heartbeats this often.
    Registered {
        worker_id: u64,
        heartbeat_interval: Duration,
    },
    /// Run this attempt.
    Assign(Box<Assignment>),
    /// Stop this attempt; `resumable` when it will run again and its
    /// session should be kept.
    Cancel {
        attempt: AttemptKey,
        reason: String,
        resumable: bool,
    },
    /// Look at this attempt's followed pull request now: its forge said
    /// something of it (`why`).
    Look { attempt: AttemptKey, why: String },
    /// Write this message into the attempt's agent session, from `from`:
    /// into the turn under way, or once it ends (`follow_up`).
    Steer {
        attempt: AttemptKey,
        message: String,
        from: String,
        follow_up: bool,
    },
    /// The worker's drain is taken: nothing is assigned to it after this,
    /// so, once what it runs has ended, it may leave without stranding an
    /// assignment still on its way.
    DrainTaken,
}

/// An attempt handed to a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub attempt: AttemptKey,
    pub step: StepSpec,
    /// Its dependencies' outputs, as one JSON object by step id.
    pub inputs_json: String,
    pub task_name: String,
    /// The agent session earlier attempts built, to resume.
    pub resume: Option<Resume>,
    /// The task span's `traceparent`; "" without one.
    pub traceparent: String,
    /// The step's state calls are good in this tenant only.
    pub tenant: String,
    /// The step's own timeout, which bounds its step token too.
    pub timeout: Option<Duration>,
    /// The task's repository, its ref resolved to the commit the step
    /// starts from.
    pub repo: Option<tidewright_core::RepoSpec>,
    /// Its dependencies' heads in the repository, in the order the task
    /// lists its steps: it starts from their merge.
    pub dependency_heads: Vec<tidewright_core::repo::DependencyHead>,
    /// The task's egress allow-list, which the step's own narrows.
    pub task_egress: Option<tidewright_core::Egress>,
    /// A landing deliver step's batch: other tasks' work landing in the
    /// same checked merge, their deliver steps' attempts run by this one.
    pub land_riders: Vec<tidewright_core::repo::LandRider>,
    /// A step sent back a failed landing to fix: the base whose tip is
    /// merged into its work first; empty otherwise.
    pub land_fix: String,
}

/// The session a retried step resumes.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The attempt that started the session, whose workspace holds it.
    pub attempt: u32,
    pub session_id: String,
    /// What the session has cost so far.
    pub session_usd: f64,
    /// The newest attempt that ran in it.
    pub last_attempt: u32,
    /// What the session is told: a verified step's failed checks; empty
    /// to go on where it stopped.
    pub message: String,
    /// A verified step's last round's commit, which the next round's own
    /// diff is from; empty before a round.
    pub round_base: String,
}
