//! Where an agent's attempt continues an earlier attempt's session: this
//! worker's own copy when it is the newest, else the step's checkpoint
//! restored here; and, after an attempt that did not succeed, its session
//! packed and kept by the control plane for a retry on any worker. What a
//! session is on disk (its transcript) is the agent runtime's to say.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidewright_core::validate::valid_session_id;

use super::attempt::{Attempt, ResumeFrom};
use super::checkpoint::{Checkpoints, SessionCheckpoint, pack, unpack};
use super::workspace::{remove_workspace, retained_marker};
use crate::secrets::Redactor;

/// `path` as one directory's name: every character but ASCII letters and
/// digits made `-`, as agent CLIs name a working directory's state (and
/// tidewright names a CLI's home per working directory).
pub fn mangled(path: &Path) -> String {
    path.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Where an agent CLI keeps its sessions' transcripts under its home, which
/// a checkpoint holds beside the workspace's files: one row per CLI.
#[derive(Clone, Copy)]
pub struct TranscriptPlaces {
    /// The transcript of a session under `home`, under whichever working
    /// directory it ran; `None` when this machine has none.
    pub find: fn(home: &Path, session_id: &str) -> Option<PathBuf>,
    /// Where the CLI looks for a session's transcript under `home` when it
    /// runs in `workspace`.
    pub path: fn(home: &Path, workspace: &Path, session_id: &str) -> PathBuf,
}

/// The transcripts of one CLI home.
#[derive(Clone)]
pub struct Transcripts {
    home: PathBuf,
    places: TranscriptPlaces,
}

impl Transcripts {
    pub fn new(home: &Path, places: TranscriptPlaces) -> Self {
        Transcripts {
            home: home.to_path_buf(),
            places,
        }
    }

    /// The transcript of `session_id`, under whichever working directory
    /// it ran; `None` when this machine has none.
    pub fn find(&self, session_id: &str) -> Option<PathBuf> {
        (self.places.find)(&self.home, session_id)
    }

    /// Where the CLI looks for `session_id`'s transcript when it runs in
    /// `workspace`.
    pub fn path(&self, workspace: &Path, session_id: &str) -> PathBuf {
        (self.places.path)(&self.home, workspace, session_id)
    }
}

/// Where an attempt continues `resume`'s session, and the line its log
/// shows: this worker's own copy when it is the newest, else the step's
/// checkpoint restored here, else this worker's older copy; `None` starts a
/// new session.
pub(crate) async fn place_session(
    attempt: &Attempt,
    resume: &ResumeFrom,
    transcripts: &Transcripts,
) -> (Option<PathBuf>, String) {
    let (id, first) = (&resume.session_id, resume.attempt);
    let workspace = attempt.workspace_of(first);
    let marker = retained_marker(&workspace);
    let local = local_copy(attempt, resume, transcripts).await;
    let mut trouble = String::new();
    if local.is_none_or(|last| last < resume.last_attempt)
        && let Some(checkpoints) = &attempt.host.checkpoints
    {
        match restore(attempt, resume, checkpoints, local, transcripts).await {
            Ok(Some(from)) => {
                let _ = tokio::fs::remove_file(&marker).await;
                return (
                    Some(workspace),
                    format!(
                        "resuming session {id} of attempt {first} from the checkpoint attempt {from} left"
                    ),
                );
            }
            Ok(None) => {}
            Err(e) => trouble = format!(", and its checkpoint could not be restored: {e}"),
        }
    }
    if local.is_some() {
        // Resumed now: not to be swept while it runs.
        let _ = tokio::fs::remove_file(&marker).await;
        return (
            Some(workspace),
            format!("resuming session {id} of attempt {first} in its workspace"),
        );
    }
    // A workspace without its session is no use to anyone.
    if !attempt.host.keep_workspace && first != attempt.key.attempt {
        let _ = tokio::fs::remove_file(&marker).await;
        remove_workspace(workspace).await;
    }
    (
        None,
        format!(
            "starting a new session: session {id} of attempt {first} is not on this worker{trouble}"
        ),
    )
}

/// The newest attempt whose run of the session this worker holds (its
/// workspace and transcript), when it holds one: the workspace's marker
/// says which; without one, the attempt that started it.
async fn local_copy(
    attempt: &Attempt,
    resume: &ResumeFrom,
    transcripts: &Transcripts,
) -> Option<u32> {
    let workspace = attempt.workspace_of(resume.attempt);
    let id = resume.session_id.clone();
    let transcripts = transcripts.clone();
    let held = valid_session_id(&id)
        && tokio::task::spawn_blocking(move || {
            workspace.is_dir() && transcripts.find(&id).is_some()
        })
        .await
        .unwrap_or(false);
    if !held {
        return None;
    }
    let marker = retained_marker(&attempt.workspace_of(resume.attempt));
    let last = tokio::fs::read_to_string(marker)
        .await
        .ok()
        .and_then(|text| text.trim().parse().ok());
    Some(last.unwrap_or(resume.attempt))
}

/// Restores the step's checkpoint into the session's workspace here, when
/// it is of this session and newer than what this worker holds; the
/// attempt that left it.
async fn restore(
    attempt: &Attempt,
    resume: &ResumeFrom,
    checkpoints: &Checkpoints,
    local: Option<u32>,
    transcripts: &Transcripts,
) -> Result<Option<u32>, String> {
    let Some(checkpoint) = checkpoints.keeper.get(&attempt.key).await? else {
        return Ok(None);
    };
    let from = checkpoint.attempt.attempt;
    if checkpoint.session_id != resume.session_id || local.is_some_and(|last| from <= last) {
        return Ok(None);
    }
    let workspace = attempt.workspace_of(resume.attempt);
    // Where the CLI will run, and so look for its session: a sandboxed
    // CLI sees its own working directory's transcripts only.
    let transcript_at = transcripts.path(
        &super::repo::run_dir(attempt, &workspace),
        &checkpoint.session_id,
    );
    tokio::task::spawn_blocking(move || {
        unpack(
            &checkpoint.archive,
            &workspace,
            &transcript_at,
            &checkpoint.workspace,
        )
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(Some(from))
}

/// After an agent attempt that did not succeed, or while it runs
/// (`running`): packs its session and has the control plane keep it, for a
/// retry on any worker. Returns the line its log shows; `None` when the
/// worker keeps no checkpoints.
pub(crate) async fn keep_session(
    attempt: &Attempt,
    workspace: &Path,
    session_id: &str,
    redactor: &Arc<Redactor>,
    transcripts: &Transcripts,
    running: bool,
) -> Option<String> {
    let checkpoints = attempt.host.checkpoints.as_ref()?;
    if !valid_session_id(session_id) {
        return None;
    }
    let (transcripts, id) = (transcripts.clone(), session_id.to_string());
    let (at, redactor, max_bytes) = (
        workspace.to_path_buf(),
        redactor.clone(),
        checkpoints.max_bytes,
    );
    let packed = tokio::task::spawn_blocking(move || {
        let transcript = transcripts.find(&id).ok_or_else(|| {
            std::io::Error::other(
                "the session's transcript is not there, or holds nothing to resume",
            )
        })?;
        pack(&transcript, &at, &redactor, max_bytes, running)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|packed| packed.map_err(|e| e.to_string()));
    let packed = match packed {
        Ok(packed) => packed,
        Err(e) => return Some(format!("checkpoint not kept: {e}")),
    };
    let bytes = packed.archive.len();
    let checkpoint = SessionCheckpoint {
        attempt: attempt.key.clone(),
        session_id: session_id.to_string(),
        workspace: workspace.display().to_string(),
        archive: packed.archive,
    };
    Some(match checkpoints.keeper.put(checkpoint).await {
        Ok(()) => {
            let when = if running { " while running" } else { "" };
            let mut line = format!("checkpoint kept{when}: session {session_id}, {bytes} bytes");
            if !packed.left_out.is_empty() {
                let shown: Vec<&str> = packed
                    .left_out
                    .iter()
                    .take(10)
                    .map(String::as_str)
                    .collect();
                line.push_str(&format!(
                    "; left out ({} over the cap or not regular files): {}",
                    packed.left_out.len(),
                    shown.join(", ")
                ));
            }
            line
        }
        Err(e) => format!("checkpoint not kept: {e}"),
    })
}

/// While an agent's CLI runs: every `every`, when its session's transcript
/// changed since the last look, keeps the session with the control plane,
/// so that a retry after this worker's death (kill -9, a lost node), which
/// leaves no checkpoint at its end, resumes it on any worker. `session_id`
/// says the run's session once the CLI has. Logs the first checkpoint kept
/// and each one not kept. Runs until dropped (the CLI's end).
pub(crate) async fn keep_session_while_running(
    attempt: &Attempt,
    workspace: &Path,
    session_id: impl Fn() -> String,
    redactor: &Arc<Redactor>,
    transcripts: &Transcripts,
    log: impl Fn(String),
) -> std::convert::Infallible {
    let Some(every) = attempt.host.checkpoints.as_ref().and_then(|c| c.every) else {
        return std::future::pending().await;
    };
    let mut last_seen = None;
    let mut logged = false;
    loop {
        tokio::time::sleep(every).await;
        let id = session_id();
        if !valid_session_id(&id) {
            continue;
        }
        // The transcript's size and time as it stands: unchanged, there is
        // nothing new to keep.
        let seen = transcript_now(transcripts, &id)
            .await
            .map(|(_, meta)| (meta.len(), meta.modified().ok()));
        if seen.is_none() || seen == last_seen {
            continue;
        }
        let Some(line) = keep_session(attempt, workspace, &id, redactor, transcripts, true).await
        else {
            return std::future::pending().await;
        };
        let kept = line.starts_with("checkpoint kept");
        if kept {
            last_seen = seen;
        }
        if !kept || !logged {
            log(line);
            logged |= kept;
        }
    }
}

/// The transcript of `session_id` on this worker, and its metadata now.
pub(crate) async fn transcript_now(
    transcripts: &Transcripts,
    session_id: &str,
) -> Option<(PathBuf, std::fs::Metadata)> {
    let (transcripts, id) = (transcripts.clone(), session_id.to_string());
    tokio::task::spawn_blocking(move || {
        let path = transcripts.find(&id)?;
        let meta = std::fs::metadata(&path).ok()?;
        Some((path, meta))
    })
    .await
    .ok()
    .flatten()
}
