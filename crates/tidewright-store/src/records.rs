//! What a store reads back: a task with its steps and attempts, a queued
//! task as the ready queue holds it, an unfinished task as recovery reads
//! it, and a query of tasks.

use tidewright_core::{Cost, Micros, StepState, StepWork, TaskSpec, TaskState};

use crate::retention;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub worker: String,
    pub started_at: Micros,
    pub finished_at: Micros,
    pub state: StepState,
    pub error: String,
    pub exit_code: Option<i32>,
    /// The agent's session ("" for runtimes without one) and model.
    pub session_id: String,
    pub model: String,
    pub cost: Cost,
    /// A verified step's round: what its checks found on this attempt.
    pub verification: Option<tidewright_core::Verification>,
    /// What its repository's setup did before its process ran.
    pub setup: Option<tidewright_core::setup::SetupReport>,
}

impl AttemptRecord {
    /// An attempt's row as first written: running, nothing else known.
    pub fn new(attempt: u32) -> Self {
        AttemptRecord {
            attempt,
            worker: String::new(),
            started_at: 0,
            finished_at: 0,
            state: StepState::Running,
            error: String::new(),
            exit_code: None,
            session_id: String::new(),
            model: String::new(),
            cost: Cost::default(),
            verification: None,
            setup: None,
        }
    }
}

/// A stored task. `steps` is empty in listings.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub tenant: String,
    pub spec: TaskSpec,
    pub state: TaskState,
    pub idempotency_key: Option<String>,
    pub message: String,
    pub created_at: Micros,
    pub started_at: Micros,
    pub finished_at: Micros,
    pub steps: Vec<StepRecord>,
    /// The sequence number of the task's newest event.
    pub last_seq: u64,
    /// What every attempt of every step cost, summed (listings too).
    pub cost: Cost,
    /// A planned task's plan as the model answered it; "" for others.
    pub plan_json: String,
    /// The W3C `traceparent` of the task's span; "" when it has none.
    pub trace_context: String,
    /// When it will be removed (see [`retention`]); 0 while it runs or
    /// when it is kept forever. Stores read it as 0: the retention rules
    /// are the control plane's, whose services fill it in.
    pub expires_at: Micros,
}

// Here rather than in `retention`, which knows only tenants, windows and
// times: a task record is this file's.
impl retention::Retention {
    /// When `task` goes, by its tenant, its own window and when it
    /// finished; `None` while it runs or when it is kept forever.
    pub fn task_expires_at(&self, task: &TaskRecord) -> Option<Micros> {
        self.expires_at(&task.tenant, task.spec.retention_seconds, task.finished_at)
    }
}

impl TaskRecord {
    /// Finishes a task read with its steps' attempt rows, as every backend
    /// does: the attempt running now, whose row exists only once it ends
    /// (or its agent's session starts), is described by its step; costs are
    /// summed per step and for the task.
    pub fn complete_attempts(&mut self) {
        for step in &mut self.steps {
            if step.state == StepState::Running
                && step
                    .attempts
                    .last()
                    .is_none_or(|a| a.attempt < step.attempt)
            {
                step.attempts.push(AttemptRecord {
                    worker: step.worker.clone(),
                    started_at: step.started_at,
                    ..AttemptRecord::new(step.attempt)
                });
            }
            step.cost = step.attempts.iter().map(|a| a.cost).sum();
        }
        self.cost = self.steps.iter().map(|s| s.cost).sum();
    }
}

/// A queued task nobody has started, as the ready queue holds it: what a
/// restart reads back of a deep queue, and all the engine keeps in memory
/// of a task it holds cold.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTask {
    pub id: String,
    /// Its share of the queue is its tenant's.
    pub tenant: String,
    pub priority: i32,
    pub created_at: Micros,
    /// Its queued steps, by position, with what each needs.
    pub queued: Vec<(usize, Vec<String>)>,
    /// What its tenant's fairness key may key it by: its labels and its
    /// repository's URL.
    pub labels: std::collections::BTreeMap<String, String>,
    pub repo: Option<String>,
}

impl QueuedTask {
    /// The task, when it is queued and nobody has started or decided on
    /// any of its steps; `None` for any other.
    pub fn of(task: &TaskRecord) -> Option<QueuedTask> {
        if task.state != TaskState::Queued || task.steps.len() != task.spec.steps.len() {
            return None;
        }
        let mut queued = Vec::new();
        for (index, (step, spec)) in task.steps.iter().zip(&task.spec.steps).enumerate() {
            match step.state {
                StepState::Waiting if step.attempt == 0 => {}
                StepState::Queued if step.attempt == 0 => {
                    queued.push((index, spec.required_capabilities()));
                }
                _ => return None,
            }
        }
        Some(QueuedTask {
            id: task.id.clone(),
            tenant: task.tenant.clone(),
            priority: task.spec.priority,
            created_at: task.created_at,
            queued,
            labels: task.spec.labels.clone(),
            repo: task.spec.repo.as_ref().map(|r| r.url.clone()),
        })
    }

    /// From the stored parts: the spec's JSON, and each step's state (all
    /// queued or waiting) in position order. `None` when a queued step's
    /// position is not in the spec.
    pub fn from_stored(
        (id, tenant): (String, String),
        created_at: Micros,
        spec_json: &str,
        queued_positions: impl IntoIterator<Item = usize>,
    ) -> Result<QueuedTask> {
        let view: tidewright_core::QueueView = serde_json::from_str(spec_json)
            .map_err(|e| Error::Corrupt(format!("the spec of task {id}: {e}")))?;
        let mut queued = Vec::new();
        for index in queued_positions {
            let step = view.steps.get(index).ok_or_else(|| {
                Error::Corrupt(format!("task {id} has no step at position {index}"))
            })?;
            queued.push((index, step.required_capabilities()));
        }
        queued.sort();
        Ok(QueuedTask {
            id,
            tenant,
            priority: view.priority,
            created_at,
            queued,
            labels: view.labels,
            repo: view.repo.map(|r| r.url),
        })
    }
}

/// An unfinished task as recovery reads it back.
#[derive(Debug, Clone, PartialEq)]
pub enum Unfinished {
    Whole(Box<TaskRecord>),
    /// Queued, and nobody has started or decided on any step.
    Queued(QueuedTask),
}

impl Unfinished {
    pub fn id(&self) -> &str {
        match self {
            Unfinished::Whole(task) => &task.id,
            Unfinished::Queued(task) => &task.id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub id: String,
    pub state: StepState,
    pub attempt: u32,
    pub worker: String,
    pub started_at: Micros,
    pub finished_at: Micros,
    pub progress: f32,
    pub progress_message: String,
    pub output_json: String,
    pub error: String,
    pub exit_code: Option<i32>,
    /// Oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// What its attempts cost, summed.
    pub cost: Cost,
    /// While it awaits approval: when the wait times out; 0 for never.
    pub approval_deadline: Micros,
    /// What its last attempt did to the task's repository, when the task
    /// names one and the attempt got that far.
    pub work: Option<StepWork>,
    /// While it is queued: why no connected worker can run it, and what
    /// would; empty when one can. Stores read it as empty: it is the
    /// fleet's now, which the control plane's services fill in.
    pub queued_reason: String,
}

impl StepRecord {
    /// A step's row as a task's making writes it: `state`, before any
    /// attempt.
    pub fn new(id: &str, state: StepState) -> Self {
        StepRecord {
            id: id.to_string(),
            state,
            attempt: 0,
            worker: String::new(),
            started_at: 0,
            finished_at: 0,
            progress: 0.0,
            progress_message: String::new(),
            output_json: String::new(),
            error: String::new(),
            exit_code: None,
            attempts: Vec::new(),
            cost: Cost::default(),
            approval_deadline: 0,
            work: None,
            queued_reason: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskQuery {
    /// Any of these states; all when empty.
    pub states: Vec<TaskState>,
    /// Every one of these labels with this value.
    pub labels: Vec<(String, String)>,
    pub page_size: usize,
    /// Only these tenants; `None` for all.
    pub tenants: Option<Vec<String>>,
    /// Only tasks whose name starts with this; all when empty.
    pub name_prefix: String,
    /// Tasks older than this id (ids sort by creation time).
    pub before_id: Option<String>,
}
