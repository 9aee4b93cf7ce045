//! Steps' branches: a worker puts a step's branch (a git bundle of its
//! commits since the task's commit) when the step changed its repository,
//! and the worker that runs a dependent step, or the task's deliver step,
//! wherever it is, gets it and starts from it. Kept in the store beside
//! the checkpoints, on the same terms: the step's current attempt's only,
//! fenced like every write, gone a retention time after the task finishes.
//! Nothing reaches the remote until the deliver step pushes.

use std::sync::Arc;

use tidewright_api::convert::now_micros;
use tidewright_api::v1;
use tidewright_core::StepState;
use tidewright_store::{StepBranch, Store, Write};

use crate::auth::Identity;
use crate::error::Error;
use crate::grpc::agents::checkpoints::{attempt_of, not_current, step_of};

pub struct Branches {
    store: Arc<dyn Store>,
    max_bytes: usize,
}

impl Branches {
    pub fn new(store: Arc<dyn Store>, max_bytes: usize) -> Self {
        Branches { store, max_bytes }
    }

    /// Keeps `branch` as its step's, once committed. Its attempt must be the
    /// step's current one.
    pub async fn put(&self, caller: &Identity, branch: v1::StepBranch) -> Result<(), Error> {
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
        if branch.bundle.len() > self.max_bytes {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "bundle: the step's branch is {} bytes; the limit (max-branch-bytes) is {}",
                    branch.bundle.len(),
                    self.max_bytes
                ),
                retry_after: None,
            });
        }
        let step = step_of(&*self.store, caller, &attempt).await?;
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
        self.store
            .write(vec![Write::Branch(Box::new(kept))])
            .await
            .map_err(|_| Error::Store(tidewright_store::Error::Closed))??;
        Ok(())
    }

    /// The branch of `step_id`, for the running attempt of another step of
    /// the same task.
    pub async fn get(
        &self,
        caller: &Identity,
        request: v1::GetBranchRequest,
    ) -> Result<v1::StepBranch, Error> {
        let attempt = attempt_of("attempt", request.attempt)?;
        if request.step_id.is_empty() {
            return Err(Error::invalid("step_id", "required"));
        }
        let step = step_of(&*self.store, caller, &attempt).await?;
        if step.state != StepState::Running || step.attempt != attempt.attempt {
            return Err(not_current(&attempt, &step));
        }
        let kept = self
            .store
            .step_branch(&attempt.task_id, &request.step_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "the branch of step {:?} of task {} (none was kept, or it expired)",
                    request.step_id, attempt.task_id
                ))
            })?;
        Ok(v1::StepBranch {
            attempt: Some(v1::AttemptRef {
                task_id: kept.task_id,
                step_id: kept.step_id,
                attempt: kept.attempt,
            }),
            head_commit: kept.head_commit,
            bundle: kept.bundle,
            diff: kept.diff,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tidewright_store::StepWrite;
    use tidewright_store::conformance::new_task;
    use tidewright_store::memory::MemoryStore;

    fn worker() -> Identity {
        Identity {
            name: "w1".into(),
            role: tidewright_engine::access::Role::Worker,
            tenants: tidewright_engine::access::Tenants::All,
            step: None,
        }
    }

    #[tokio::test]
    async fn only_the_current_attempt_keeps_a_branch_and_only_a_running_one_reads_it() {
        let store = Arc::new(MemoryStore::new());
        store
            .create_tasks(vec![new_task("t1", "default", None)])
            .await
            .expect("created");
        let running = |step: &str| {
            Write::Step(StepWrite {
                task_id: "t1".into(),
                step_id: step.into(),
                state: Some(StepState::Running),
                attempt: Some(1),
                ..StepWrite::default()
            })
        };
        store
            .write(vec![running("a")])
            .await
            .expect("sent")
            .expect("written");
        let branches = Branches::new(store.clone(), 1024);
        let of = |step: &str, attempt: u32, bundle: Vec<u8>| v1::StepBranch {
            attempt: Some(v1::AttemptRef {
                task_id: "t1".into(),
                step_id: step.into(),
                attempt,
            }),
            head_commit: "c".repeat(40),
            bundle,
            diff: String::new(),
        };
        let refused = |e: Error| e.to_string();
        assert!(
            refused(
                branches
                    .put(&worker(), of("a", 1, Vec::new()))
                    .await
                    .expect_err("empty")
            )
            .contains("bundle")
        );
        assert!(
            refused(
                branches
                    .put(&worker(), of("a", 1, vec![0; 2048]))
                    .await
                    .expect_err("too large")
            )
            .contains("max-branch-bytes")
        );
        assert!(
            refused(
                branches
                    .put(&worker(), of("a", 2, vec![1]))
                    .await
                    .expect_err("not current")
            )
            .contains("not the step's current attempt")
        );
        let mut bad_head = of("a", 1, vec![1]);
        bad_head.head_commit = "HEAD".into();
        assert!(
            refused(
                branches
                    .put(&worker(), bad_head)
                    .await
                    .expect_err("bad head")
            )
            .contains("head_commit")
        );
        branches
            .put(&worker(), of("a", 1, vec![1, 2, 3]))
            .await
            .expect("kept");

        // Step b reads it once it runs.
        let ask = |step: &str| v1::GetBranchRequest {
            attempt: Some(v1::AttemptRef {
                task_id: "t1".into(),
                step_id: "b".into(),
                attempt: 1,
            }),
            step_id: step.into(),
        };
        assert!(branches.get(&worker(), ask("a")).await.is_err());
        store
            .write(vec![running("b")])
            .await
            .expect("sent")
            .expect("written");
        let got = branches.get(&worker(), ask("a")).await.expect("read");
        assert_eq!(got.bundle, [1, 2, 3]);
        assert_eq!(got.head_commit, "c".repeat(40));
        assert!(matches!(
            branches.get(&worker(), ask("b")).await,
            Err(Error::NotFound(_))
        ));
    }
}
