//! Agents' session checkpoints: a worker puts one when an agent attempt
//! ends short of success, and the worker that runs the retry, wherever it
//! is, gets it and resumes the session. They live in the store, not in a
//! directory or an object store: one place to back up, fenced by the same
//! leadership epoch as every other write, and shared by every replica on
//! PostgreSQL. A step keeps only its newest; they go a retention time after
//! their task finishes.

use std::sync::Arc;
use std::time::Duration;

use tidewright_api::convert::now_micros;
use tidewright_api::v1;
use tidewright_core::{AttemptKey, StepState};
use tidewright_store::{Checkpoint, StepRecord, Store, Write};

use crate::auth::Identity;
use crate::error::Error;

/// The largest checkpoint kept by default: a session's transcript and a
/// capped workspace, compressed.
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The largest step branch kept by default (see `branches`): a step's
/// commits, compressed.
pub const DEFAULT_MAX_BRANCH_BYTES: usize = 64 * 1024 * 1024;
/// How long a finished task's checkpoints are kept by default, so a
/// `tidewright retry` the next day still resumes its agents' sessions.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often expired checkpoints are looked for, at most.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The longest session id or workspace path a worker may name.
const MAX_NAME_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A larger archive is refused (RESOURCE_EXHAUSTED).
    pub max_bytes: usize,
    /// How long after its task finishes a checkpoint (or a step's
    /// branch) is kept.
    pub retention: Duration,
    /// A larger step branch is refused (RESOURCE_EXHAUSTED).
    pub max_branch_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_bytes: DEFAULT_MAX_BYTES,
            retention: DEFAULT_RETENTION,
            max_branch_bytes: DEFAULT_MAX_BRANCH_BYTES,
        }
    }
}

pub struct Checkpoints {
    store: Arc<dyn Store>,
    settings: Settings,
}

impl Checkpoints {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Self {
        Checkpoints { store, settings }
    }

    /// Keeps `checkpoint` as its step's newest, once committed. Its attempt
    /// must be the step's current one (running, or just ended: a cancel
    /// ends the step before its worker has packed the session).
    pub async fn put(&self, caller: &Identity, checkpoint: v1::Checkpoint) -> Result<(), Error> {
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
        let step = self.step_of(caller, &attempt).await?;
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
        self.store
            .write(vec![Write::Checkpoint(Box::new(kept))])
            .await
            .map_err(|_| Error::Store(tidewright_store::Error::Closed))??;
        Ok(())
    }

    /// The step's newest checkpoint, for the attempt that runs it now.
    pub async fn get(
        &self,
        caller: &Identity,
        request: v1::GetCheckpointRequest,
    ) -> Result<v1::Checkpoint, Error> {
        let attempt = attempt_of("attempt", request.attempt)?;
        let step = self.step_of(caller, &attempt).await?;
        if step.state != StepState::Running || step.attempt != attempt.attempt {
            return Err(not_current(&attempt, &step));
        }
        let kept = self
            .store
            .checkpoint(&attempt.task_id, &attempt.step_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "a checkpoint of step {:?} of task {}",
                    attempt.step_id, attempt.task_id
                ))
            })?;
        Ok(v1::Checkpoint {
            attempt: Some(v1::AttemptRef {
                task_id: kept.task_id,
                step_id: kept.step_id,
                attempt: kept.attempt,
            }),
            session_id: kept.session_id,
            workspace: kept.workspace,
            archive: kept.archive,
        })
    }

    async fn step_of(&self, caller: &Identity, attempt: &AttemptKey) -> Result<StepRecord, Error> {
        step_of(&*self.store, caller, attempt).await
    }

    /// Removes the checkpoints (and the steps' branches) of tasks finished
    /// longer than the retention ago, every minute, until dropped. Run by the leader: its writes are
    /// fenced like every other.
    pub fn expire_periodically(&self) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
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
}

/// The stored step the attempt belongs to, in a tenant the caller sees
/// (another tenant's task is simply not found).
pub(crate) async fn step_of(
    store: &dyn Store,
    caller: &Identity,
    attempt: &AttemptKey,
) -> Result<StepRecord, Error> {
    let task = store
        .get_task(&attempt.task_id)
        .await?
        .filter(|task| caller.can_see(&task.tenant))
        .ok_or_else(|| Error::NotFound(format!("task {}", attempt.task_id)))?;
    task.steps
        .into_iter()
        .find(|step| step.id == attempt.step_id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "step {:?} of task {}",
                attempt.step_id, attempt.task_id
            ))
        })
}

pub(crate) fn attempt_of(
    field: &str,
    attempt: Option<v1::AttemptRef>,
) -> Result<AttemptKey, Error> {
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
    Ok(attempt.into())
}

pub(crate) fn not_current(attempt: &AttemptKey, step: &StepRecord) -> Error {
    Error::FailedPrecondition(format!(
        "attempt {} of step {:?} of task {} is not the step's current attempt (attempt {}, {})",
        attempt.attempt,
        attempt.step_id,
        attempt.task_id,
        step.attempt,
        step.state.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use tidewright_core::TaskState;
    use tidewright_store::StepWrite;
    use tidewright_store::conformance::new_task;
    use tidewright_store::memory::MemoryStore;

    #[tokio::test]
    async fn a_finished_tasks_checkpoints_go_after_the_retention() {
        let store = Arc::new(MemoryStore::new());
        store
            .create_tasks(vec![new_task("t1", "default", None)])
            .await
            .expect("created");
        let kept = |task_id: &str| Checkpoint {
            task_id: task_id.into(),
            step_id: "a".into(),
            attempt: 1,
            session_id: "s-1".into(),
            workspace: "/w".into(),
            archive: vec![1],
            created_at: 1,
        };
        store
            .write(vec![
                Write::Step(StepWrite {
                    task_id: "t1".into(),
                    step_id: "a".into(),
                    attempt: Some(1),
                    ..StepWrite::default()
                }),
                Write::Checkpoint(Box::new(kept("t1"))),
                Write::Task {
                    id: "t1".into(),
                    state: TaskState::Succeeded,
                    message: String::new(),
                    started_at: None,
                    finished_at: Some(now_micros()),
                },
            ])
            .await
            .expect("answered")
            .expect("committed");
        let checkpoints = Checkpoints::new(
            store.clone(),
            Settings {
                retention: Duration::ZERO,
                ..Settings::default()
            },
        );
        let _sweeping = checkpoints.expire_periodically();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.checkpoint("t1", "a").await.expect("read").is_some() {
            assert!(tokio::time::Instant::now() < deadline, "never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
