//! A step's repository, when its task names one: the step runs in a
//! worktree at `<workspace>/repo`, on branch `orca/<task>/<step>` from the
//! task's resolved commit, made from this worker's mirror of the
//! repository (`orca_git::mirror`); afterwards what it left uncommitted is
//! committed by orca and what it did goes back with its result. The
//! repository's credentials come from this worker's secrets directory and
//! reach git only: never the step's process.

use std::path::{Path, PathBuf};

use orca_api::v1;
use orca_git::Credentials;
use orca_git::mirror::Worktree;

use super::attempt::{Attempt, Ended};
use crate::metrics::Fault;

/// The worktree's directory in the workspace.
pub const REPO_DIR: &str = "repo";

/// The branch of a step's work.
pub fn branch(attempt: &Attempt) -> String {
    format!("orca/{}/{}", attempt.key.task_id, attempt.key.step_id)
}

/// Where the step's worktree is, in `workspace`.
pub fn worktree_dir(workspace: &Path) -> PathBuf {
    workspace.join(REPO_DIR)
}

/// The step's worktree and the directory its process runs in: the
/// worktree a resumed workspace kept, or a new one from the mirror
/// (fetched first if it lacks the commit); no worktree, and the workspace
/// itself, when the task names no repository.
pub(crate) async fn check_out(
    attempt: &Attempt,
    workspace: &Path,
) -> Result<(Option<Worktree>, PathBuf), Ended> {
    let tree = worktree(attempt, workspace).await?;
    let cwd = tree
        .as_ref()
        .map_or_else(|| workspace.to_path_buf(), |t| t.path().to_path_buf());
    Ok((tree, cwd))
}

async fn worktree(attempt: &Attempt, workspace: &Path) -> Result<Option<Worktree>, Ended> {
    let Some(repo) = &attempt.repo else {
        return Ok(None);
    };
    let refused = |message: String| Ended::fault(Fault::Repository, message);
    let credentials = match repo.credentials_secret.as_str() {
        "" => None,
        name => Some(
            Credentials::read(attempt.secrets_dir.as_deref(), name)
                .map_err(|e| refused(format!("repo.{e}")))?,
        ),
    };
    let mirror = attempt
        .mirrors
        .ensure(&repo.url, &repo.commit, credentials.as_ref())
        .await
        .map_err(|e| match e {
            orca_git::Error::Refused { .. } => refused(format!("repo.{e}")),
            other => refused(format!("repo: {other}")),
        })?;
    let dir = worktree_dir(workspace);
    let branch = branch(attempt);
    if let Some(kept) = mirror.existing_worktree(&dir, &branch, &repo.commit).await {
        return Ok(Some(kept));
    }
    // A workspace restored from a checkpoint on another worker holds a
    // worktree of that worker's mirror: start again from the commit.
    if dir.exists() {
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| refused(format!("repo: removing a stale worktree: {e}")))?;
    }
    mirror
        .add_worktree(&dir, &branch, &repo.commit)
        .await
        .map(Some)
        .map_err(|e| refused(format!("repo: {e}")))
}

/// After the step: commits what it left uncommitted and puts what it did
/// in `ended`; a step that deleted, left or rewrote its branch fails, and
/// so does one whose work cannot be read. The worktree is removed unless
/// `keep` (a kept or resumable workspace).
pub(crate) async fn finish(attempt: &Attempt, tree: Worktree, ended: &mut Ended, keep: bool) {
    let message = format!(
        "orca: what step {} of task {} left uncommitted (attempt {})",
        attempt.key.step_id, attempt.key.task_id, attempt.key.attempt
    );
    match tree.finish(&message).await {
        Ok(done) => {
            ended.work = Some(v1::StepWork {
                branch: done.branch,
                base_commit: done.base,
                head_commit: done.head,
                files_changed: done.files_changed,
                insertions: done.insertions,
                deletions: done.deletions,
                changed_paths: done.changed_paths,
                committed_by_orca: done.committed_for_the_step,
            });
        }
        Err(e) if ended.outcome == v1::Outcome::Succeeded => {
            *ended = Ended::failed(
                format!("step {}: {e}", attempt.key.step_id),
                ended.exit_code,
            );
        }
        // It failed already: that is what it says.
        Err(_) => {}
    }
    if !keep {
        let _ = tree.remove().await;
    }
}
