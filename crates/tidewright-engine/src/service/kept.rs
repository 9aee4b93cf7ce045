//! What a step's attempt keeps on the control plane for the attempts after
//! it, wherever they run: its agent's session checkpoint (put when an agent
//! attempt ends short of success, got by the retry to resume the session)
//! and its branch (a git bundle of its commits since the task's commit, got
//! by a dependent step or the task's deliver step, which starts from it).
//!
//! Both live in the store, not in a directory or an object store: one place
//! to back up, fenced by the same leadership epoch as every other write,
//! and shared by every replica on PostgreSQL. A step keeps only its
//! current attempt's newest of each; they go a retention time after their
//! task finishes. Nothing reaches a remote until the deliver step pushes.

use std::sync::Arc;
use std::time::Duration;

use tidewright_core::calendar::now_micros;
use tidewright_core::{AttemptKey, StepState};
use tidewright_store::{Checkpoint, StepBranch, StepRecord, TaskRecord, Write};

use super::calls::{GetBranch, GetCheckpoint, PutBranch, PutCheckpoint};
use super::{Call, Context};
use crate::access::{Action, Identity};
use crate::error::Error;

/// The largest checkpoint kept by default: a session's transcript and a
/// capped workspace, compressed.
pub const DEFAULT_MAX_CHECKPOINT_BYTES: usize = 8 * 1024 * 1024;
/// The largest step branch kept by default: a step's commits, compressed.
pub const DEFAULT_MAX_BRANCH_BYTES: usize = 64 * 1024 * 1024;
/// How long a finished task's checkpoints and branches are kept by
/// default, so a `tidewright retry` the next day still resumes its
/// agents' sessions.
pub const DEFAULT_KEPT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often expired checkpoints are looked for, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The longest session id or workspace path a worker may name.
const MAX_NAME_BYTES: usize = 4096;

/// How large what a step keeps may be, and how long it is kept.
#[derive(Debug, Clone, Copy)]
pub struct KeptSettings {
    /// A larger checkpoint archive is refused (RESOURCE_EXHAUSTED).
    pub max_bytes: usize,
    /// How long after its task finishes a checkpoint (or a step's
    /// branch) is kept.
    pub retention: Duration,
    /// A larger step branch is refused (RESOURCE_EXHAUSTED).
    pub max_branch_bytes: usize,
}

impl Default for KeptSettings {
    fn default() -> Self {
        KeptSettings {
            max_bytes: DEFAULT_MAX_CHECKPOINT_BYTES,
            retention: DEFAULT_KEPT_RETENTION,
            max_branch_bytes: DEFAULT_MAX_BRANCH_BYTES,
        }
    }
}

/// Checkpoints and branches, as workers put and get them.
#[derive(Clone)]
pub struct Kept {
    pub(super) cx: Arc<Context>,
    pub(super) settings: KeptSettings,
}

impl Kept {
    /// Keeps a checkpoint as its step's newest, once committed. Its attempt
    /// must be the step's current one (running, or just ended: a cancel
    /// ends the step before its worker has packed the session).
    pub async fn put_checkpoint(&self, call: Call<PutCheckpoint>) -> Result<(), Error> {
        let caller = call.require(Action::KeepCheckpoints)?;
        let checkpoint = call.into_message();
        let attempt = attempt_of("attempt", checkpoint.attempt)?;
        if !tidewright_core::validate::valid_session_id(&checkpoint.session_id) {
            return Err(Error::invalid(
                "session_id",
                "must be 1 to 256 letters, digits, '-' or '_'",
            ));
        }
        if checkpoint.workspace.is_empty() || checkpoint.workspace.len() > MAX_NAME_BYTES {
            return Err(Error::invalid(
                "workspace",
                format!("must be 1 to {MAX_NAME_BYTES} bytes"),
            ));
        }
        if checkpoint.archive.is_empty() {
            return Err(Error::invalid("archive", "required"));
        }
        if checkpoint.archive.len() > self.settings.max_bytes {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "archive: the checkpoint is {} bytes; the limit (max-checkpoint-bytes) is {}",
                    checkpoint.archive.len(),
                    self.settings.max_bytes
                ),
                retry_after: None,
            });
        }
        let step = self.step_of(&caller, &attempt).await?;
        if step.attempt != attempt.attempt {
            return Err(not_current(&attempt, &step));
        }
        let kept = Checkpoint {
            task_id: attempt.task_id,
            step_id: attempt.step_id,
            attempt: attempt.attempt,
            session_id: checkpoint.session_id,
            workspace: checkpoint.workspace,
            archive: checkpoint.archive,
            created_at: now_micros(),
        };
        tracing::info!(
            task = %kept.task_id,
            step = %kept.step_id,
            attempt = kept.attempt,
            bytes = kept.archive.len(),
            "keeping an agent's session checkpoint"
        );
        self.cx
            .commit(vec![Write::Checkpoint(Box::new(kept))])
            .await
    }

    /// The step's newest checkpoint, for the attempt that runs it now.
    pub async fn get_checkpoint(&self, call: Call<GetCheckpoint>) -> Result<Checkpoint, Error> {
        let caller = call.require(Action::KeepCheckpoints)?;
        let attempt = attempt_of("attempt", call.into_message().attempt)?;
        let step = self.step_of(&caller, &attempt).await?;
        if step.state != StepState::Running || step.attempt != attempt.attempt {
            return Err(not_current(&attempt, &step));
        }
        self.cx
            .store
            .checkpoint(&attempt.task_id, &attempt.step_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "a checkpoint of step {:?} of task {}",
                    attempt.step_id, attempt.task_id
                ))
            })
    }

    /// Keeps a branch as its step's, once committed. Its attempt must be
    /// the step's current one.
    pub async fn put_branch(&self, call: Call<PutBranch>) -> Result<(), Error> {
        let caller = call.require(Action::KeepCheckpoints)?;
        let branch = call.into_message();
        let attempt = attempt_of("attempt", branch.attempt)?;
        if !tidewright_core::repo::valid_commit(&branch.head_commit) {
            return Err(Error::invalid(
                "head_commit",
                "must be a full commit id: 40 (or 64) lowercase hex digits",
            ));
        }
        if branch.bundle.is_empty() {
            return Err(Error::invalid("bundle", "required"));
        }
        if branch.bundle.len() > self.settings.max_branch_bytes {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "bundle: the step's branch is {} bytes; the limit (max-branch-bytes) is {}",
                    branch.bundle.len(),
                    self.settings.max_branch_bytes
                ),
                retry_after: None,
            });
        }
        let step = self.step_of(&caller, &attempt).await?;
        if step.attempt != attempt.attempt {
            return Err(not_current(&attempt, &step));
        }
        let kept = StepBranch {
            task_id: attempt.task_id,
            step_id: attempt.step_id,
            attempt: attempt.attempt,
            head_commit: branch.head_commit,
            bundle: branch.bundle,
            diff: branch.diff,
            created_at: now_micros(),
        };
        tracing::info!(
            task = %kept.task_id,
            step = %kept.step_id,
            attempt = kept.attempt,
            head = %kept.head_commit,
            bytes = kept.bundle.len(),
            "keeping a step's branch"
        );
        self.cx.commit(vec![Write::Branch(Box::new(kept))]).await
    }

    /// The branch of `step_id`, for the running attempt of another step of
    /// the same task.
    pub async fn get_branch(&self, call: Call<GetBranch>) -> Result<StepBranch, Error> {
        let caller = call.require(Action::KeepCheckpoints)?;
        let request = call.into_message();
        let attempt = attempt_of("attempt", request.attempt)?;
        if request.step_id.is_empty() {
            return Err(Error::invalid("step_id", "required"));
        }
        let step = self.step_of(&caller, &attempt).await?;
        if step.state != StepState::Running || step.attempt != attempt.attempt {
            return Err(not_current(&attempt, &step));
        }
        self.cx
            .store
            .step_branch(&attempt.task_id, &request.step_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "the branch of step {:?} of task {} (none was kept, or it expired)",
                    request.step_id, attempt.task_id
                ))
            })
    }

    /// Removes the checkpoints and branches of tasks finished longer than
    /// the retention ago, every minute, until dropped. Run by the leader:
    /// its writes are fenced like every other.
    pub fn expire_periodically(&self) -> tokio::task::JoinHandle<()> {
        let store = self.cx.store.clone();
        let retention = i64::try_from(self.settings.retention.as_micros()).unwrap_or(i64::MAX);
        // A short retention is looked after as often as it lasts.
        let period = SWEEP_EVERY
            .min(self.settings.retention)
            .max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let finished_before = now_micros().saturating_sub(retention);
                match store
                    .write(vec![Write::ExpireKept { finished_before }])
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "expiring checkpoints failed"),
                    Err(_) => return,
                }
            }
        })
    }

    /// The stored step the attempt belongs to, in a tenant the caller sees
    /// (another tenant's task is simply not found).
    async fn step_of(&self, caller: &Identity, attempt: &AttemptKey) -> Result<StepRecord, Error> {
        let (_, step) = attempt_in(&self.cx, caller, attempt).await?;
        Ok(step)
    }
}

/// The stored task and step the attempt belongs to, in a tenant the
/// caller sees (another tenant's task is simply not found).
pub(super) async fn attempt_in(
    cx: &Context,
    caller: &Identity,
    attempt: &AttemptKey,
) -> Result<(TaskRecord, StepRecord), Error> {
    let mut task = cx
        .store
        .get_task(&attempt.task_id)
        .await?
        .filter(|task| caller.can_see(&task.tenant))
        .ok_or_else(|| Error::NotFound(format!("task {}", attempt.task_id)))?;
    let at = task
        .steps
        .iter()
        .position(|step| step.id == attempt.step_id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "step {:?} of task {}",
                attempt.step_id, attempt.task_id
            ))
        })?;
    let step = task.steps.swap_remove(at);
    Ok((task, step))
}

/// An attempt named in full: task, step and a number from 1.
pub(super) fn attempt_of(field: &str, attempt: Option<AttemptKey>) -> Result<AttemptKey, Error> {
    let attempt = attempt.ok_or_else(|| Error::invalid(field, "required"))?;
    for (name, value) in [("task_id", &attempt.task_id), ("step_id", &attempt.step_id)] {
        if value.is_empty() {
            return Err(Error::invalid(format!("{field}.{name}"), "required"));
        }
    }
    if attempt.attempt == 0 {
        return Err(Error::invalid(
            format!("{field}.attempt"),
            "must be 1 or more",
        ));
    }
    Ok(attempt)
}

fn not_current(attempt: &AttemptKey, step: &StepRecord) -> Error {
    Error::FailedPrecondition(format!(
        "attempt {} of step {:?} of task {} is not the step's current attempt (attempt {}, {})",
        attempt.attempt,
        attempt.step_id,
        attempt.task_id,
        step.attempt,
        step.state.as_str()
    ))
}
