//! Agents' session checkpoints, what the control plane keeps: when an
//! agent's attempt ends short of success, its session's transcript and its
//! workspace's files (secrets masked, under a size cap) are packed into a
//! gzipped tar; the attempt that resumes the session, on whichever worker,
//! unpacks it into its own workspace (see `session`).

use std::io::{Read, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tidewright_core::AttemptKey;

use crate::secrets::Redactor;

/// The largest archive packed by default; files that do not fit are left
/// out (and the attempt's log says which).
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// The transcript's name in the archive; the workspace's files are under
/// [`FILES`].
const TRANSCRIPT: &str = "session.jsonl";
const FILES: &str = "workspace";
/// What a tar entry costs beyond its data: its header block.
const TAR_BLOCK: usize = 512;

/// An agent's session as one attempt left it, for a retry on any worker
/// to resume.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCheckpoint {
    /// The attempt that left it.
    pub attempt: AttemptKey,
    pub session_id: String,
    /// Where the session's workspace was on the worker that ran it: a
    /// worker restoring it elsewhere points the transcript's paths at its
    /// own.
    pub workspace: String,
    /// A gzipped tar: the transcript as `session.jsonl`, the workspace's
    /// files under `workspace/`.
    pub archive: Vec<u8>,
}

/// A step's branch as one attempt left it, for its dependents on any
/// worker: a git bundle of its commits, and its own changes as a diff.
#[derive(Clone, PartialEq)]
pub struct BranchBundle {
    /// The attempt that made it.
    pub attempt: AttemptKey,
    pub head_commit: String,
    pub bundle: Vec<u8>,
    pub diff: String,
}

/// Where checkpoints are kept: the control plane, behind a trait so the
/// runtime is tested without one.
#[async_trait::async_trait]
pub trait Keeper: Send + Sync {
    /// Keeps `checkpoint` as its step's newest.
    async fn put(&self, checkpoint: SessionCheckpoint) -> Result<(), String>;
    /// The step's newest checkpoint, for the attempt that runs it now;
    /// `None` when it has none.
    async fn get(&self, attempt: &AttemptKey) -> Result<Option<SessionCheckpoint>, String>;
    /// Keeps a step's branch (a git bundle), for its dependents on any
    /// worker.
    async fn put_branch(&self, branch: BranchBundle) -> Result<(), String>;
    /// The branch of `step_id`, a step of `attempt`'s task; `None` when
    /// none is kept.
    async fn get_branch(
        &self,
        attempt: &AttemptKey,
        step_id: &str,
    ) -> Result<Option<BranchBundle>, String>;
}

/// How often a running agent's session is checkpointed when it changed,
/// unless the worker says otherwise.
pub const DEFAULT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// A worker's checkpoint settings: where they go, how large they may be,
/// and how often a running agent's session is kept (`None`: only when an
/// attempt ends short of success).
#[derive(Clone)]
pub struct Checkpoints {
    pub keeper: Arc<dyn Keeper>,
    pub max_bytes: usize,
    pub every: Option<std::time::Duration>,
}

/// A packed checkpoint.
pub struct Packed {
    pub archive: Vec<u8>,
    /// Workspace paths left out: over the cap, or not regular files.
    pub left_out: Vec<String>,
}

fn too_large(what: &str, bytes: usize, max: usize) -> std::io::Error {
    std::io::Error::other(format!(
        "{what} is {bytes} bytes, over the checkpoint cap of {max} (--checkpoint-max-bytes)"
    ))
}

/// Packs the transcript and the workspace's regular files, masking
/// `redactor`'s secrets in both. Files go in path order while the tar
/// stays within `max_bytes`; the rest are left out, so a large build
/// directory costs the session nothing but its own files. A transcript
/// read while its CLI runs (`running`) is taken up to its last whole line:
/// the CLI may be writing the next. Blocking.
pub fn pack(
    transcript: &Path,
    workspace: &Path,
    redactor: &Redactor,
    max_bytes: usize,
    running: bool,
) -> std::io::Result<Packed> {
    let mut session = std::fs::read(transcript)?;
    if running {
        let whole = session
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        session.truncate(whole);
    }
    let session = redactor.redact_bytes(session);
    // The tar's size bounds the archive's: gzip adds a few bytes per block
    // it cannot shrink. A sixty-fourth is left for that.
    let budget = max_bytes - max_bytes / 64;
    let mut used = entry_cost(session.len());
    if used > budget {
        return Err(too_large(
            "the session's transcript",
            session.len(),
            max_bytes,
        ));
    }
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    append(
        &mut tar,
        Path::new(TRANSCRIPT),
        &session,
        (0o600, now_secs()),
    )?;
    let mut left_out = Vec::new();
    for (relative, file) in workspace_files(workspace, &mut left_out)? {
        let metadata = std::fs::metadata(&file)?;
        let cost = entry_cost(metadata.len() as usize);
        if used + cost > budget {
            left_out.push(relative.display().to_string());
            continue;
        }
        let contents = redactor.redact_bytes(std::fs::read(&file)?);
        used += entry_cost(contents.len());
        let modified = metadata
            .modified()
            .ok()
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(now_secs, |d| d.as_secs());
        append(
            &mut tar,
            &Path::new(FILES).join(&relative),
            &contents,
            (mode(&metadata), modified),
        )?;
    }
    let archive = tar.into_inner()?.finish()?;
    if archive.len() > max_bytes {
        return Err(too_large("the packed checkpoint", archive.len(), max_bytes));
    }
    Ok(Packed { archive, left_out })
}

/// A tar entry's size: its header and its data in whole blocks.
fn entry_cost(bytes: usize) -> usize {
    TAR_BLOCK + bytes.div_ceil(TAR_BLOCK) * TAR_BLOCK
}

#[cfg(unix)]
fn mode(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn mode(_: &std::fs::Metadata) -> u32 {
    0o644
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Appends a regular file with its (mode, modification time).
fn append(
    tar: &mut tar::Builder<impl std::io::Write>,
    path: &Path,
    contents: &[u8],
    (mode, modified): (u32, u64),
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(contents.len() as u64);
    header.set_mode(mode);
    header.set_mtime(modified);
    tar.append_data(&mut header, path, contents)
}

/// The workspace's regular files, relative to it, in path order; whatever
/// else is there (links, sockets) is named in `left_out`.
fn workspace_files(
    workspace: &Path,
    left_out: &mut Vec<String>,
) -> std::io::Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(relative) = dirs.pop() {
        let mut entries: Vec<_> =
            std::fs::read_dir(workspace.join(&relative))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries.into_iter().rev() {
            let path = relative.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                files.push((path, entry.path()));
            } else {
                left_out.push(path.display().to_string());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Restores a checkpoint: its files into `workspace` (made anew), its
/// transcript at `transcript` (where the CLI looks for the session when it
/// runs there), with the paths of the workspace it was made in (`from`)
/// pointed at this one. Blocking.
pub fn unpack(
    archive: &[u8],
    workspace: &Path,
    transcript_at: &Path,
    from: &str,
) -> std::io::Result<()> {
    if workspace.exists() {
        std::fs::remove_dir_all(workspace)?;
    }
    std::fs::create_dir_all(workspace)?;
    let mut transcript = None;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path()?.into_owned();
        if path == Path::new(TRANSCRIPT) {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            transcript = Some(text);
            continue;
        }
        // Only plain relative paths under the files' folder: nothing is
        // written outside the workspace, whatever the archive says.
        let Ok(relative) = path.strip_prefix(FILES) else {
            continue;
        };
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            continue;
        }
        let target = workspace.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        entry.unpack(&target)?;
    }
    let transcript = transcript
        .ok_or_else(|| std::io::Error::other("the checkpoint holds no session transcript"))?;
    let here = workspace.to_string_lossy();
    let transcript = match String::from_utf8(transcript) {
        Ok(text) if !from.is_empty() && from != here => text.replace(from, &here).into_bytes(),
        Ok(text) => text.into_bytes(),
        Err(not_text) => not_text.into_bytes(),
    };
    if let Some(parent) = transcript_at.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::File::create(transcript_at)?;
    file.write_all(&transcript)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, contents: &[u8]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, contents).expect("write");
    }

    #[test]
    fn a_session_travels_with_its_files_its_secrets_masked_and_its_paths_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("a/work/t1/s/attempt-1");
        let home_a = dir.path().join("a/home");
        let transcript = home_a.join("sessions/s-1.jsonl");
        let line = format!(
            "{{\"cwd\":\"{}\",\"text\":\"key sk-ant-secret\"}}\n",
            old.display()
        );
        write(&transcript, line.as_bytes());
        write(&old.join("notes.txt"), b"half done with sk-ant-secret\n");
        write(&old.join("src/deep/lib.rs"), b"fn main() {}\n");
        write(&old.join("blob.bin"), &[0xff, 0, 1, 2]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let script = old.join("run.sh");
            write(&script, b"#!/bin/sh\n");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            std::os::unix::fs::symlink("/etc/passwd", old.join("link")).expect("symlink");
        }
        let redactor = Redactor::new(&["sk-ant-secret".to_string()]);
        let packed = pack(&transcript, &old, &redactor, DEFAULT_MAX_BYTES, false).expect("packed");
        #[cfg(unix)]
        assert_eq!(packed.left_out, ["link"], "links are not followed");
        assert!(
            !packed
                .archive
                .windows(b"sk-ant-secret".len())
                .any(|w| w == b"sk-ant-secret"),
            "compressed, and masked"
        );

        // Worker B, its own directories.
        let new = dir.path().join("b/work/t1/s/attempt-1");
        let restored = dir.path().join("b/home/sessions/s-1.jsonl");
        std::fs::create_dir_all(&new).expect("stale workspace");
        std::fs::write(new.join("stale.txt"), "from an older attempt").expect("stale");
        unpack(&packed.archive, &new, &restored, &old.display().to_string()).expect("unpacked");
        let read = |p: &Path| std::fs::read(p).expect("read");
        assert_eq!(read(&new.join("notes.txt")), b"half done with ***\n");
        assert_eq!(read(&new.join("src/deep/lib.rs")), b"fn main() {}\n");
        assert_eq!(read(&new.join("blob.bin")), [0xff, 0, 1, 2]);
        assert!(!new.join("stale.txt").exists(), "made anew");
        assert!(!new.join("link").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(new.join("run.sh"))
                .expect("script")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755, "still executable");
        }
        let restored = String::from_utf8(read(&restored)).expect("text");
        assert_eq!(
            restored,
            format!("{{\"cwd\":\"{}\",\"text\":\"key ***\"}}\n", new.display())
        );
    }

    #[test]
    fn files_over_the_cap_are_left_out_and_a_transcript_over_it_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = dir.path().join("ws");
        let transcript = dir.path().join("s.jsonl");
        write(&transcript, b"{}\n");
        write(&workspace.join("a-small.txt"), b"small");
        write(&workspace.join("b-large.bin"), &vec![7u8; 64 * 1024]);
        write(&workspace.join("c-small.txt"), b"also small");
        let packed = pack(
            &transcript,
            &workspace,
            &Redactor::default(),
            16 * 1024,
            false,
        )
        .expect("packed");
        assert_eq!(packed.left_out, ["b-large.bin"]);
        assert!(packed.archive.len() <= 16 * 1024);
        let restored = dir.path().join("restored");
        unpack(&packed.archive, &restored, &dir.path().join("s.jsonl"), "").expect("unpacked");
        assert!(restored.join("a-small.txt").is_file());
        assert!(restored.join("c-small.txt").is_file());
        assert!(!restored.join("b-large.bin").exists());

        write(&transcript, &vec![b'x'; 32 * 1024]);
        let refused = pack(
            &transcript,
            &workspace,
            &Redactor::default(),
            16 * 1024,
            false,
        )
        .err()
        .expect("refused");
        assert!(
            refused
                .to_string()
                .contains("the session's transcript is 32768 bytes, over the checkpoint cap"),
            "{refused}"
        );
    }

    #[test]
    fn a_transcript_read_while_its_cli_writes_is_kept_to_its_last_whole_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(&workspace).expect("workspace");
        let transcript = dir.path().join("session.jsonl");
        write(&transcript, b"{\"a\":1}\n{\"b\":2}\n{\"c\":");
        let restored = dir.path().join("restored.jsonl");
        for (running, kept) in [
            (true, &b"{\"a\":1}\n{\"b\":2}\n"[..]),
            (false, &b"{\"a\":1}\n{\"b\":2}\n{\"c\":"[..]),
        ] {
            let packed = pack(
                &transcript,
                &workspace,
                &Redactor::default(),
                DEFAULT_MAX_BYTES,
                running,
            )
            .expect("packed");
            unpack(&packed.archive, &dir.path().join("new"), &restored, "").expect("unpacked");
            assert_eq!(
                std::fs::read(&restored).expect("read"),
                kept,
                "running: {running}"
            );
        }
    }

    #[test]
    fn an_archive_cannot_write_outside_the_workspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        append(&mut tar, Path::new(TRANSCRIPT), b"{}\n", (0o600, 1)).expect("transcript");
        // The builder refuses `..` itself; write the raw name as a hostile
        // archive would.
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(4);
        header.set_mode(0o644);
        header.as_gnu_mut().expect("gnu").name[..22].copy_from_slice(b"workspace/../escape.tx");
        header.set_cksum();
        tar.append(&header, &b"evil"[..]).expect("entry");
        append(&mut tar, Path::new("elsewhere.txt"), b"no", (0o644, 1)).expect("entry");
        let archive = tar.into_inner().expect("tar").finish().expect("gzip");
        let workspace = dir.path().join("ws");
        unpack(&archive, &workspace, &dir.path().join("home/s.jsonl"), "").expect("unpacked");
        assert!(!dir.path().join("escape.tx").exists());
        assert!(!dir.path().join("elsewhere.txt").exists());
        assert!(!workspace.join("elsewhere.txt").exists());
    }
}
