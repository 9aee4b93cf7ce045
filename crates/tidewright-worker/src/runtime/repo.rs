//! A step's repository, when its task names one: the step runs in a
//! repository of its own at `<workspace>/repo`, on branch
//! `tidewright/<task>-<step>`, that borrows the objects of this worker's mirror
//! of the repository (`tidewright_git::mirror`), read-only in its sandbox. It
//! starts from the task's commit, or from the merge of its dependencies'
//! heads (fetched from the control plane when they were made on another
//! worker). Afterwards what it left uncommitted is committed by tidewright, what
//! it did goes back with its result, and its branch is kept with the
//! control plane for the steps after it. The repository's credentials come
//! from this worker's secrets directory and reach git only: never the
//! step's process.

use std::path::{Path, PathBuf};

use tidewright_git::Credentials;
use tidewright_git::mirror::Mirror;
use tidewright_git::worktree::{Conflict, Worktree};

use super::attempt::{Attempt, Ended};
use super::checkpoint::BranchBundle;
use crate::metrics::Fault;

/// The worktree's directory in the workspace.
pub const REPO_DIR: &str = "repo";
/// Beside the worktree: the commit its step started from, which a resumed
/// attempt measures the step's work from.
const BASE_FILE: &str = "repo.base";

/// The branch of a step's work.
pub fn branch(attempt: &Attempt) -> String {
    tidewright_core::repo::step_branch(&attempt.key.task_id, &attempt.key.step_id)
}

/// Where the step's worktree is, in `workspace`.
pub fn worktree_dir(workspace: &Path) -> PathBuf {
    workspace.join(REPO_DIR)
}

/// Where the step's process runs: its worktree when its task names a
/// repository, else its workspace.
pub fn run_dir(attempt: &Attempt, workspace: &Path) -> PathBuf {
    match attempt.repo {
        Some(_) => worktree_dir(workspace),
        None => workspace.to_path_buf(),
    }
}

/// A step's repository, made ready.
pub(crate) struct CheckedOut {
    /// `None` when the task names no repository.
    pub tree: Option<Worktree>,
    /// Where its process runs: the worktree, or the workspace.
    pub cwd: PathBuf,
    /// With `onConflict: agent`, what its agent must resolve first: the
    /// worktree is mid-merge.
    pub briefing: Option<String>,
}

/// The step's worktree and the directory its process runs in: the
/// worktree a resumed workspace kept, or a new one from the mirror
/// (fetched first if it lacks a commit the step starts from); no worktree,
/// and the workspace itself, when the task names no repository.
pub(crate) async fn check_out(attempt: &Attempt, workspace: &Path) -> Result<CheckedOut, Ended> {
    let (tree, briefing) = worktree(attempt, workspace).await?;
    let cwd = tree
        .as_ref()
        .map_or_else(|| workspace.to_path_buf(), |t| t.path().to_path_buf());
    Ok(CheckedOut {
        tree,
        cwd,
        briefing,
    })
}

/// What the agent of a step with `onConflict: agent` is told before its
/// task: the paths in conflict and what each side was asked.
fn briefing(attempt: &Attempt, conflict: &Conflict) -> String {
    let asked = |step: &str| {
        attempt
            .dependency_heads
            .iter()
            .find(|h| h.step == step)
            .map(|h| h.asked.clone())
            .unwrap_or_default()
    };
    let mut text = format!(
        "Before your task: tidewright merged the work of the steps this one depends on, and the work of step {:?} conflicts with the rest in {}. The conflicts are in your working directory, with git's markers.\n",
        conflict.with,
        conflict.paths.join(", ")
    );
    for head in &attempt.dependency_heads {
        text.push_str(&format!(
            "\nStep {:?} was asked: {}\n",
            head.step,
            asked(&head.step)
        ));
    }
    text.push_str(
        "\nResolve every conflict so that what each side was asked for holds: remove all the markers and keep both sides' intent. Do not commit, reset or abort the merge: tidewright commits it when you are done.\n\nThen your task:\n\n",
    );
    text
}

fn refused(message: String) -> Ended {
    Ended::fault(Fault::Repository, message)
}

/// The repository's credentials, from this worker's secrets directory;
/// why not, naming the field.
pub(crate) fn credentials(attempt: &Attempt) -> Result<Option<Credentials>, String> {
    let Some(repo) = &attempt.repo else {
        return Ok(None);
    };
    match repo.credentials_secret.as_str() {
        "" => Ok(None),
        name => Credentials::read(attempt.host.secrets_dir.as_deref(), name)
            .map(Some)
            .map_err(|e| format!("repo.{e}")),
    }
}

async fn worktree(
    attempt: &Attempt,
    workspace: &Path,
) -> Result<(Option<Worktree>, Option<String>), Ended> {
    let Some(repo) = &attempt.repo else {
        return Ok((None, None));
    };
    let credentials = credentials(attempt).map_err(refused)?;
    let mirror = attempt
        .host
        .mirrors
        .ensure(&repo.url, &repo.commit, credentials.as_ref())
        .await
        .map_err(|e| match e {
            tidewright_git::Error::Refused { .. } => refused(format!("repo.{e}")),
            other => refused(format!("repo: {other}")),
        })?;
    let dir = worktree_dir(workspace);
    let branch = branch(attempt);
    let base_file = workspace.join(BASE_FILE);
    if let Ok(base) = tokio::fs::read_to_string(&base_file).await
        && let Some(mut kept) = mirror.existing_worktree(&dir, &branch, base.trim()).await
    {
        let brief = merge_land_tip(attempt, (&mirror, credentials.as_ref()), &mut kept).await?;
        tokio::fs::write(&base_file, kept.base())
            .await
            .map_err(|e| refused(format!("repo: {e}")))?;
        return Ok((Some(kept), brief));
    }
    // A workspace restored from a checkpoint on another worker holds the
    // files of a worktree of that worker's mirror: they are set aside, a
    // worktree of this mirror is made from the same start, and the files
    // go back over it, so the session finds its work where it left it.
    let restored = workspace.join(RESTORED_DIR);
    if restored.exists() {
        tokio::fs::remove_dir_all(&restored)
            .await
            .map_err(|e| refused(format!("repo: removing {}: {e}", restored.display())))?;
    }
    let carried = dir.exists();
    if carried {
        tokio::fs::rename(&dir, &restored)
            .await
            .map_err(|e| refused(format!("repo: setting aside a restored worktree: {e}")))?;
    }
    let heads = &attempt.dependency_heads;
    for head in heads {
        fetch_head(attempt, &attempt.key, &mirror, (&head.step, &head.head)).await?;
    }
    let start = heads.first().map_or(repo.commit.as_str(), |h| &h.head);
    let mut tree = mirror
        .add_worktree(&dir, &branch, start, &repo.commit)
        .await
        .map_err(|e| refused(format!("repo: {e}")))?;
    refill(&mirror, &repo.commit);
    let mut brief = None;
    if heads.len() > 1 {
        let rest: Vec<(String, String)> = heads[1..]
            .iter()
            .map(|h| (h.step.clone(), h.head.clone()))
            .collect();
        let agent = attempt.step.on_conflict == Some(tidewright_core::OnConflict::Agent);
        match tree.merge(&rest, agent).await {
            Ok(None) => {}
            Ok(Some(conflict)) if conflict.left_to_resolve => {
                brief = Some(briefing(attempt, &conflict));
            }
            Ok(Some(conflict)) => {
                let _ = tree.remove().await;
                return Err(conflicted(attempt, conflict));
            }
            Err(e) => return Err(refused(format!("repo: merging the dependencies: {e}"))),
        }
    }
    if carried {
        let (from, to) = (restored.clone(), tree.path().to_path_buf());
        tokio::task::spawn_blocking(move || carry_over(&from, &to))
            .await
            .map_err(|e| refused(format!("repo: {e}")))?
            .map_err(|e| refused(format!("repo: restoring the checkpoint's files: {e}")))?;
        let _ = tokio::fs::remove_dir_all(&restored).await;
    }
    // Sent back a failed landing: the base's tip goes in last, over the
    // work the step's session left.
    if let Some(landing) =
        merge_land_tip(attempt, (&mirror, credentials.as_ref()), &mut tree).await?
    {
        brief = Some(brief.unwrap_or_default() + &landing);
    }
    // Taken over from another runtime's agent, its work is the step's
    // from where that agent started, not from where this one does.
    if let Some(failover) = attempt
        .step
        .failover
        .as_ref()
        .filter(|f| !f.base.is_empty())
    {
        tree.measure_from(&failover.base);
    }
    tokio::fs::write(&base_file, tree.base())
        .await
        .map_err(|e| refused(format!("repo: {e}")))?;
    Ok((Some(tree), brief))
}

/// Makes the mirror's next spare worktrees at `commit` while the step
/// works, for the steps after it.
fn refill(mirror: &Mirror, commit: &str) {
    let (mirror, commit) = (mirror.clone(), commit.to_string());
    tokio::spawn(async move {
        if let Err(e) = mirror.refill(&commit).await {
            tracing::warn!(error = %e, "making spare worktrees");
        }
    });
}

/// The most of a step's diff kept with its branch, for the console.
const MAX_DIFF_BYTES: usize = 1024 * 1024;

/// Where a restored worktree's files wait while the new worktree is made.
const RESTORED_DIR: &str = "repo.restored";

/// Copies the regular files under `from` over `to`, but for git's own
/// `.git` (the other worker's worktree link). Blocking.
fn carry_over(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut dirs = vec![PathBuf::new()];
    while let Some(relative) = dirs.pop() {
        for entry in std::fs::read_dir(from.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if path == Path::new(".git") {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                std::fs::create_dir_all(to.join(&path))?;
                dirs.push(path);
            } else if kind.is_file() {
                std::fs::copy(entry.path(), to.join(&path))?;
            }
        }
    }
    Ok(())
}

/// A step sent back a failed landing (`land_fix`): the base's tip, fetched
/// now, merged into its work, conflicts left for its agent; what the agent
/// is told of it first.
async fn merge_land_tip(
    attempt: &Attempt,
    (mirror, credentials): (&Mirror, Option<&Credentials>),
    tree: &mut Worktree,
) -> Result<Option<String>, Ended> {
    let base = attempt.land_fix.as_str();
    let Some(repo) = attempt.repo.as_ref().filter(|_| !base.is_empty()) else {
        return Ok(None);
    };
    let tip = mirror
        .fetch_tip(&repo.url, base, credentials)
        .await
        .map_err(|e| {
            refused(format!(
                "repo: fetching {base} to fix the landing on it: {e}"
            ))
        })?;
    let short = &tip[..tip.len().min(12)];
    match tree.merge(&[(base.to_string(), tip.clone())], true).await {
        Ok(None) => Ok(Some(format!(
            "Before you go on: tidewright merged the tip of {base} ({short}) into your working directory.\n\n"
        ))),
        Ok(Some(conflict)) => Ok(Some(format!(
            "Before you go on: tidewright merged the tip of {base} ({short}) into your working directory, and it conflicts with your work in {}: the conflicts are there, with git's markers. Resolve every one so that both sides' intent holds, and remove all the markers. Do not commit, reset or abort the merge: tidewright commits it when you are done.\n\n",
            conflict.paths.join(", ")
        ))),
        Err(e) => Err(refused(format!(
            "repo: merging {base} to fix the landing on it: {e}"
        ))),
    }
}

/// Makes sure the mirror holds a dependency's head: made here, or fetched
/// from the branch the control plane keeps for it, asked as attempt `key`
/// (this one's, or a landing batch's other task's).
pub(crate) async fn fetch_head(
    attempt: &Attempt,
    key: &tidewright_core::AttemptKey,
    mirror: &Mirror,
    (step, head): (&str, &str),
) -> Result<(), Ended> {
    if mirror.has_commit(head).await {
        return Ok(());
    }
    let missing = |why: &str| {
        refused(format!(
            "repo: the work of step {step:?} (commit {head}) is not on this worker, and {why}"
        ))
    };
    let Some(keeper) = &attempt.host.branches else {
        return Err(missing("no control plane keeps steps' branches"));
    };
    let kept = keeper
        .get_branch(key, step)
        .await
        .map_err(|e| missing(&e))?
        .ok_or_else(|| missing("the control plane keeps no branch of it (it may have expired)"))?;
    if kept.head_commit != head {
        return Err(missing(&format!(
            "the branch kept of it ends at {} instead",
            kept.head_commit
        )));
    }
    mirror
        .unbundle(&kept.bundle, head)
        .await
        .map_err(|e| missing(&e.to_string()))
}

/// The step fails on its dependencies' conflict: its error names the
/// steps and the paths; its output holds them and the hunks.
fn conflicted(attempt: &Attempt, conflict: Conflict) -> Ended {
    let before: Vec<&str> = attempt
        .dependency_heads
        .iter()
        .map(|h| h.step.as_str())
        .take_while(|step| *step != conflict.with)
        .collect();
    let error = format!(
        "the work of step {:?} conflicts with that of {} in {}",
        conflict.with,
        before
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        conflict.paths.join(", ")
    );
    let output = serde_json::json!({
        "conflict": {
            "with": conflict.with,
            "after": before,
            "paths": conflict.paths,
            "hunks": conflict.hunks,
        }
    });
    Ended {
        output_json: output.to_string(),
        conflict: Some(tidewright_core::repo::MergeConflict {
            with: conflict.with.clone(),
            after: before.iter().map(|s| s.to_string()).collect(),
            paths: conflict.paths.clone(),
        }),
        ..Ended::fault(Fault::Conflict, error)
    }
}

/// After the step: commits what it left uncommitted and puts what it did
/// in `ended`, and keeps its branch with the control plane; a step that
/// deleted, left or rewrote its branch fails, and so does one whose work
/// cannot be read or kept. The worktree is removed unless `keep` (a kept
/// or resumable workspace). With `repo.pushSteps`, a step that succeeded
/// with work of its own pushes its branch.
pub(crate) async fn finish(attempt: &Attempt, tree: Worktree, ended: &mut Ended, keep: bool) {
    record(attempt, &tree, ended).await;
    close(attempt, tree, ended, keep).await;
}

/// What `finish` does after `record`: pushes the step's branch when asked,
/// removes the worktree unless `keep`, and evicts mirrors.
pub(crate) async fn close(attempt: &Attempt, tree: Worktree, ended: &mut Ended, keep: bool) {
    push_step(attempt, &tree, ended).await;
    if !keep {
        let _ = tree.remove().await;
    }
    evict(attempt).await;
}

/// Pushes the step's branch when its task asks for each step's, and it
/// succeeded with commits of its own; a push refused fails the step. One
/// ref per push: the remote takes all of it or nothing.
async fn push_step(attempt: &Attempt, tree: &Worktree, ended: &mut Ended) {
    // A verified step's work goes out once its checks pass.
    let succeeded = ended.is_success()
        && ended
            .verification
            .as_ref()
            .is_none_or(tidewright_core::Verification::passed);
    let (Some(repo), Some(work)) = (&attempt.repo, ended.work.as_mut()) else {
        return;
    };
    if !repo.push_steps || !succeeded || work.head_commit == work.base_commit {
        return;
    }
    let pushed = match credentials(attempt) {
        Ok(credentials) => tree
            .mirror()
            .push(&repo.url, &work.branch, credentials.as_ref())
            .await
            .map_err(|e| match e {
                tidewright_git::Error::Refused { .. } => {
                    format!("repo.{e} (pushing {} for repo.pushSteps)", work.branch)
                }
                other => format!("repo.pushSteps: pushing {}: {other}", work.branch),
            }),
        Err(why) => Err(why),
    };
    match pushed {
        Ok(()) => work.pushed = true,
        Err(why) => {
            let work = ended.work.take();
            *ended = Ended {
                work,
                ..Ended::fault(Fault::Delivery, why)
            };
        }
    }
}

/// Keeps the mirrors within their bound, sparing those in use.
pub(crate) async fn evict(attempt: &Attempt) {
    if attempt.host.mirrors_max_bytes == 0 {
        return;
    }
    match attempt
        .host
        .mirrors
        .evict(attempt.host.mirrors_max_bytes)
        .await
    {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(removed = ?removed, "evicted the least recently used mirrors")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "evicting mirrors"),
    }
}

/// What `finish` does but remove the worktree.
pub(crate) async fn record(attempt: &Attempt, tree: &Worktree, ended: &mut Ended) {
    let message = format!(
        "tidewright: what step {} of task {} left uncommitted (attempt {})",
        attempt.key.step_id, attempt.key.task_id, attempt.key.attempt
    );
    let failed = |ended: &mut Ended, e: String| {
        if ended.is_success() {
            *ended = Ended::failed(
                format!("step {}: {e}", attempt.key.step_id),
                ended.exit_code,
            );
        }
    };
    let done = match tree.finish(&message).await {
        Ok(done) => done,
        // A step that failed already says so.
        Err(e) => return failed(ended, e.to_string()),
    };
    // A run its provider's limit stopped keeps its work for the agent
    // that may take the step over on another runtime.
    let handing_over = ended.hands_over(attempt);
    if (ended.is_success() || handing_over)
        && let Err(e) = keep_branch(attempt, tree, &done.head).await
    {
        if handing_over {
            // Without its branch kept, the next agent starts afresh.
            tracing::warn!(task = %attempt.key.task_id, step = %attempt.key.step_id, error = %e, "the work of a step stopped at its limit was not kept");
            return;
        }
        return failed(ended, e);
    }
    ended.work = Some(tidewright_core::StepWork {
        branch: done.branch,
        base_commit: done.base,
        head_commit: done.head,
        files_changed: done.files_changed,
        insertions: done.insertions,
        deletions: done.deletions,
        changed_paths: done.changed_paths,
        committed_by_tidewright: done.committed_for_the_step,
        pushed: false,
        pull_request_url: String::new(),
    });
}

/// Keeps the step's branch with the control plane, for the steps after
/// it on other workers; nothing to keep when it made no commit, or when
/// no control plane keeps branches (a worker run alone).
async fn keep_branch(attempt: &Attempt, tree: &Worktree, head: &str) -> Result<(), String> {
    let (Some(repo), Some(keeper)) = (&attempt.repo, &attempt.host.branches) else {
        return Ok(());
    };
    let bundle = tree
        .mirror()
        .bundle(&branch(attempt), &repo.commit)
        .await
        .map_err(|e| format!("bundling its branch: {e}"))?;
    let Some(bundle) = bundle else {
        return Ok(());
    };
    let diff = tree
        .mirror()
        .diff(tree.base(), head, MAX_DIFF_BYTES)
        .await
        .map_err(|e| format!("reading its diff: {e}"))?;
    keeper
        .put_branch(BranchBundle {
            attempt: attempt.key.clone(),
            head_commit: head.to_string(),
            bundle,
            diff,
        })
        .await
        .map_err(|e| format!("keeping its branch with the control plane: {e}"))
}
