//! Where the Codex CLI keeps a thread's transcript: in its home's
//! `sessions/YYYY/MM/DD/rollout-<time>-<thread>.jsonl`. Tidewright gives each
//! working directory a Codex home of its own under the worker's
//! (`codex/<the working directory, mangled>`), so a sandboxed run sees its
//! own threads and no other step's.

use std::path::{Path, PathBuf};

use crate::runtime::session::TranscriptPlaces;

/// Where the CLI keeps its sessions' transcripts.
pub const PLACES: TranscriptPlaces = TranscriptPlaces { find, path };

fn find(home: &Path, session_id: &str) -> Option<PathBuf> {
    let suffix = format!("-{session_id}.jsonl");
    let homes = std::fs::read_dir(home.join(super::HOME.name)).ok()?;
    homes
        .flatten()
        .find_map(|home| find_file(&home.path().join("sessions"), &suffix, 3))
}

/// A restored transcript goes where the CLI finds a thread by its id:
/// a file named after it in a day's directory of `sessions`.
fn path(home: &Path, workspace: &Path, session_id: &str) -> PathBuf {
    home.join(super::HOME.of(workspace))
        .join("sessions/2000/01/01")
        .join(format!("rollout-2000-01-01T00-00-00-{session_id}.jsonl"))
}

/// A file under `dir`, `depth` directories down (year, month, day), whose
/// name ends in `suffix`.
fn find_file(dir: &Path, suffix: &str, depth: usize) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if depth == 0 {
            let named = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rollout-") && n.ends_with(suffix));
            if named && path.is_file() {
                return Some(path);
            }
        } else if path.is_dir()
            && let Some(found) = find_file(&path, suffix, depth - 1)
        {
            return Some(found);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::session::Transcripts;

    #[test]
    fn a_thread_is_found_by_its_id_in_the_day_it_ran() {
        let dir = tempfile::tempdir().expect("tempdir");
        let transcripts = Transcripts::new(dir.path(), PLACES);
        let id = "01a21654-0061-73f0-83ed-673f04de45c2";
        assert_eq!(transcripts.find(id), None);
        let ran = dir
            .path()
            .join("codex/-w-t1-s-attempt-1/sessions/2026/11/26")
            .join(format!("rollout-2026-11-26T05-28-53-{id}.jsonl"));
        std::fs::create_dir_all(ran.parent().expect("parent")).expect("dirs");
        std::fs::write(&ran, "{}\n").expect("write");
        assert_eq!(transcripts.find(id), Some(ran));
        assert_eq!(transcripts.find("01a21654"), None, "a whole id only");
        assert_eq!(
            crate::runtime::codex::HOME.of(Path::new("/w/t1/s/attempt-1")),
            Path::new("codex/-w-t1-s-attempt-1")
        );
    }
}
