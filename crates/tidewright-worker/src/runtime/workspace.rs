//! An attempt's workspace on the worker's disk: made fresh (`context/`
//! in, `output/` out), kept for a resume or for debugging, removed after,
//! and swept when no retry came for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::attempt::{Attempt, Ended};

/// A larger `output/result.json` fails the step rather than bloat the store.
const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// How long a failed Claude Code attempt's workspace waits for a retry to
/// resume it before it is removed.
pub const RETAIN_FOR: Duration = Duration::from_secs(3600);

/// Beside a workspace kept for a resume: `attempt-N.retained`.
const RETAINED_SUFFIX: &str = ".retained";

pub(crate) async fn prepare_workspace(attempt: &Attempt) -> std::io::Result<PathBuf> {
    let workspace = attempt.workspace();
    // A fresh directory per attempt: a retry never sees a previous attempt's
    // half-written files.
    if tokio::fs::try_exists(&workspace).await? {
        tokio::fs::remove_dir_all(&workspace).await?;
    }
    ready_workspace(&workspace, attempt).await?;
    Ok(workspace)
}

/// Gives a workspace, fresh or resumed, its `context/` and `output/` and
/// this attempt's inputs; whatever else it holds stays.
pub(crate) async fn ready_workspace(workspace: &Path, attempt: &Attempt) -> std::io::Result<()> {
    tokio::fs::create_dir_all(workspace.join("context")).await?;
    tokio::fs::create_dir_all(workspace.join("output")).await?;
    tokio::fs::write(workspace.join("context/inputs.json"), &attempt.inputs_json).await
}

/// After a Claude Code attempt: a failure that will be retried keeps its
/// workspace (and so its session) for the retry to resume, for a while,
/// as do workspaces kept for debugging; the marker beside it names this
/// attempt as the newest that ran there. Anything else removes it.
pub(crate) async fn finish_workspace(attempt: &Attempt, workspace: &Path, ended: &Ended) {
    let retry_may_come = ended.is_failure() && attempt.has_attempts_left();
    if attempt.host.keep_workspace || ended.resumable || retry_may_come {
        let _ = tokio::fs::write(retained_marker(workspace), attempt.key.attempt.to_string()).await;
    } else {
        remove_workspace(workspace.to_path_buf()).await;
    }
}

/// Beside a workspace kept for a resume; it holds the newest attempt that
/// ran there.
pub(crate) fn retained_marker(workspace: &Path) -> PathBuf {
    let mut name = workspace.file_name().unwrap_or_default().to_os_string();
    name.push(RETAINED_SUFFIX);
    workspace.with_file_name(name)
}

/// Removes workspaces kept for a resume that no retry came for within
/// `older_than` (the retry ran elsewhere, or never).
pub(crate) async fn sweep_retained(work_dir: &Path, older_than: Duration) {
    let work_dir = work_dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        let children = |dir: &Path| {
            std::fs::read_dir(dir)
                .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        for task in children(&work_dir).iter().filter(|p| p.is_dir()) {
            for step in children(task).iter().filter(|p| p.is_dir()) {
                for marker in children(step) {
                    let expired = marker
                        .to_str()
                        .is_some_and(|name| name.ends_with(RETAINED_SUFFIX))
                        && std::fs::metadata(&marker)
                            .and_then(|m| m.modified())
                            .is_ok_and(|at| at.elapsed().unwrap_or_default() >= older_than);
                    if expired {
                        let workspace = marker.with_extension("");
                        let _ = std::fs::remove_file(&marker);
                        let _ = std::fs::remove_dir_all(&workspace);
                        let _ = std::fs::remove_dir(step);
                        let _ = std::fs::remove_dir(task);
                    }
                }
            }
        }
    })
    .await;
}

pub(crate) async fn remove_unless_kept(attempt: &Attempt) {
    if !attempt.host.keep_workspace {
        remove_workspace(attempt.workspace()).await;
    }
}

pub(crate) fn has_inputs(inputs_json: &str) -> bool {
    !matches!(inputs_json.trim(), "" | "{}" | "null")
}

/// Removes an attempt's workspace, then its step's and task's directories
/// once empty (removing one that still holds another attempt fails, as it
/// should). One blocking call, off the async threads.
pub(crate) async fn remove_workspace(workspace: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&workspace);
        for parent in workspace.ancestors().skip(1).take(2) {
            let _ = std::fs::remove_dir(parent);
        }
    })
    .await;
}

/// The step's output: `output/result.json` when present, which must be JSON.
/// It is read only if it is a regular file, never through a symlink.
pub(crate) async fn read_output(workspace: &Path) -> Result<String, String> {
    let path = workspace.join("output/result.json");
    let meta = match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("output/result.json: {e}")),
    };
    if !meta.is_file() {
        return Err("output/result.json is not a regular file".into());
    }
    if meta.len() > MAX_OUTPUT_BYTES {
        return Err(format!(
            "output/result.json is {} bytes; the limit is {MAX_OUTPUT_BYTES}",
            meta.len()
        ));
    }
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| format!("output/result.json: {e}"))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("output/result.json is not valid JSON: {e}"))?;
    Ok(text.trim().to_string())
}
