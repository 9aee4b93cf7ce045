//! Where the Claude Code CLI keeps a session's transcript: under its home,
//! in `.claude/projects/<the working directory, mangled>/<session>.jsonl`.

use std::path::{Path, PathBuf};

use crate::runtime::session::TranscriptPlaces;

/// Where the CLI keeps its sessions' transcripts.
pub const PLACES: TranscriptPlaces = TranscriptPlaces { find, path };

/// Where the CLI keeps a session's transcript when it runs in
/// `workspace`.
fn path(home: &Path, workspace: &Path, session_id: &str) -> PathBuf {
    home.join(project_dir(workspace))
        .join(format!("{session_id}.jsonl"))
}

/// Under its home, where the CLI keeps the transcripts of its sessions in
/// `workspace`: a directory per working directory, named after it with
/// every character but ASCII letters and digits made `-`.
pub fn project_dir(workspace: &Path) -> PathBuf {
    Path::new(".claude/projects").join(crate::runtime::session::mangled(workspace))
}

/// The session's transcript, under whichever working directory it ran.
fn find(home: &Path, session_id: &str) -> Option<PathBuf> {
    std::fs::read_dir(home.join(".claude/projects"))
        .ok()?
        .flatten()
        .map(|dir| dir.path().join(format!("{session_id}.jsonl")))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_is_found_where_the_cli_keeps_it_for_its_workspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = path(dir.path(), Path::new("/w/t1/s/attempt-1"), "s-1");
        assert_eq!(
            at,
            dir.path()
                .join(".claude/projects/-w-t1-s-attempt-1/s-1.jsonl")
        );
        assert_eq!(find(dir.path(), "s-1"), None);
        std::fs::create_dir_all(at.parent().expect("parent")).expect("dirs");
        std::fs::write(&at, "{}\n").expect("write");
        assert_eq!(find(dir.path(), "s-1"), Some(at));
    }
}
