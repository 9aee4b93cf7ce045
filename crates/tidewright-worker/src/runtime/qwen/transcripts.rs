//! Where Qwen Code keeps a session's transcript: in its home (`QWEN_HOME`)
//! at `projects/<the working directory, mangled>/chats/<session>.jsonl`.
//! Tidewright gives each working directory a home of its own under the
//! worker's (`qwen/<the working directory, mangled>`), where it writes the
//! run's settings, so a run sees its own sessions and settings and no other
//! step's.

use std::path::{Path, PathBuf};

use crate::runtime::session::{TranscriptPlaces, mangled};

/// Where the CLI keeps its sessions' transcripts.
pub const PLACES: TranscriptPlaces = TranscriptPlaces { find, path };

fn find(home: &Path, session_id: &str) -> Option<PathBuf> {
    let file = format!("{session_id}.jsonl");
    let homes = std::fs::read_dir(home.join(super::HOME.name)).ok()?;
    homes.flatten().find_map(|home| {
        let projects = std::fs::read_dir(home.path().join("projects")).ok()?;
        projects
            .flatten()
            .map(|project| project.path().join("chats").join(&file))
            .find(|path| path.is_file())
    })
}

fn path(home: &Path, workspace: &Path, session_id: &str) -> PathBuf {
    home.join(super::HOME.of(workspace))
        .join("projects")
        .join(mangled(workspace))
        .join("chats")
        .join(format!("{session_id}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::session::Transcripts;

    #[test]
    fn a_transcript_is_found_where_the_cli_keeps_it_for_its_workspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let transcripts = Transcripts::new(dir.path(), PLACES);
        let at = transcripts.path(Path::new("/w/t1/s/attempt-1"), "s-1");
        assert_eq!(
            at,
            dir.path()
                .join("qwen/-w-t1-s-attempt-1/projects/-w-t1-s-attempt-1/chats/s-1.jsonl")
        );
        assert_eq!(transcripts.find("s-1"), None);
        std::fs::create_dir_all(at.parent().expect("parent")).expect("dirs");
        std::fs::write(&at, "{}\n").expect("write");
        assert_eq!(transcripts.find("s-1"), Some(at));
    }
}
