//! Where the Gemini CLI keeps a session's transcript: in its home's
//! `.gemini/tmp/<project>/chats/session-<time>-<first 8 of the id>.jsonl`,
//! whose first line names the whole session id. `<project>` is the slug the
//! CLI gives the working directory's name (`attempt-1`), claimed on first
//! use. Tidewright gives each working directory a Gemini home of its own under the
//! worker's (`gemini/<the working directory, mangled>`), so a run sees its
//! own sessions and no other step's, and a home holds one project.
//!
//! A session the CLI would not resume is not found: after an API error on
//! the first turn the CLI drops that turn, and `--resume` of a session left
//! with no conversation fails (`No previous sessions found`, exit 42). Its
//! retry starts a new session instead, as it would on a worker that never
//! ran it.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use crate::runtime::session::TranscriptPlaces;

/// Where the CLI keeps its sessions' transcripts.
pub const PLACES: TranscriptPlaces = TranscriptPlaces { find, path };

fn find(home: &Path, session_id: &str) -> Option<PathBuf> {
    let suffix = format!("-{}.jsonl", short_id(session_id));
    let homes = std::fs::read_dir(home.join(super::HOME.name)).ok()?;
    homes.flatten().find_map(|home| {
        let projects = std::fs::read_dir(home.path().join(".gemini/tmp")).ok()?;
        projects.flatten().find_map(|project| {
            let chats = std::fs::read_dir(project.path().join("chats")).ok()?;
            chats.flatten().map(|f| f.path()).find(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("session-") && n.ends_with(&suffix))
                    && path.is_file()
                    && session_of(path).as_deref() == Some(session_id)
                    && resumable(path)
            })
        })
    })
}

/// A restored transcript goes where the CLI lists the sessions of the
/// working directory: the chats of the project it will claim for it
/// (nothing has claimed one in a new home, so the name's slug).
fn path(home: &Path, workspace: &Path, session_id: &str) -> PathBuf {
    let name = workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    home.join(super::HOME.of(workspace))
        .join(".gemini/tmp")
        .join(slug(&name))
        .join("chats")
        .join(format!(
            "session-2000-01-01T00-00-{}.jsonl",
            short_id(session_id)
        ))
}

/// The part of a session id the CLI puts in its file's name.
fn short_id(session_id: &str) -> &str {
    session_id.get(..8).unwrap_or(session_id)
}

/// The session a transcript is of: its first line's `sessionId`.
fn session_of(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file).read_line(&mut first).ok()?;
    let value: serde_json::Value = serde_json::from_str(&first).ok()?;
    value["sessionId"].as_str().map(str::to_string)
}

/// Whether the CLI would resume the transcript at `path`: the messages it
/// leaves, as the pinned CLI reads them (a record with an `id` and a `type`
/// adds one, `$set.messages` replaces them all, `$rewindTo` drops that one
/// and those after it), hold a turn of conversation: a prompt that is not
/// the CLI's own context or a command, or anything the model said or did.
fn resumable(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut messages: Vec<(String, bool)> = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else {
            return false;
        };
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(to) = record["$rewindTo"].as_str() {
            let at = messages.iter().position(|(id, _)| id == to);
            messages.truncate(at.unwrap_or(0));
        } else if let Some(all) = record["$set"]["messages"].as_array() {
            messages = all.iter().filter_map(message).collect();
        } else if let Some(one) = message(&record) {
            match messages.iter_mut().find(|(id, _)| *id == one.0) {
                Some(kept) => *kept = one,
                None => messages.push(one),
            }
        }
    }
    messages.iter().any(|(_, turn)| *turn)
}

/// A message record's id, and whether it is a turn of conversation.
fn message(record: &serde_json::Value) -> Option<(String, bool)> {
    let id = record["id"].as_str()?.to_string();
    let text = match &record["content"] {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .map(|part| match part["text"].as_str() {
                Some(text) => text.to_string(),
                // A tool's response, or another part the model sent.
                None => "[part]".to_string(),
            })
            .collect(),
        _ => String::new(),
    };
    let text = text.trim();
    let listed = |key: &str| record[key].as_array().is_some_and(|a| !a.is_empty());
    let turn = match record["type"].as_str()? {
        "user" => {
            !(text.is_empty()
                || text.starts_with('/')
                || text.starts_with('?')
                || text.starts_with("<session_context>")
                || text.starts_with("<hook_context>"))
        }
        "gemini" => !text.is_empty() || listed("toolCalls") || listed("thoughts"),
        _ => false,
    };
    Some((id, turn))
}

/// The CLI's project name for a directory name: lower case, every run of
/// other characters than ASCII letters and digits one `-`, none at either
/// end; `project` when nothing is left.
fn slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        "project".into()
    } else {
        slug.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::session::Transcripts;

    #[test]
    fn a_session_is_found_by_its_whole_id_in_any_working_directorys_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let transcripts = Transcripts::new(dir.path(), PLACES);
        let id = "4d3e821a-7fdf-4ffd-947f-1c97142afd29";
        assert_eq!(transcripts.find(id), None);
        let chats = dir
            .path()
            .join("gemini/-w-t1-s-attempt-1/.gemini/tmp/attempt-1/chats");
        std::fs::create_dir_all(&chats).expect("dirs");
        // Another session whose id starts alike is not this one.
        let other = chats.join("session-2026-11-26T08-01-4d3e821a.jsonl");
        std::fs::write(&other, "{\"sessionId\":\"4d3e821a-0000\"}\n").expect("write");
        assert_eq!(transcripts.find(id), None);
        let ran = chats.join("session-2026-11-26T08-02-4d3e821a.jsonl");
        let meta = format!("{{\"sessionId\":\"{id}\"}}\n");
        std::fs::write(&ran, &meta).expect("write");
        assert_eq!(transcripts.find(id), None, "nothing to resume");
        let prompt = r#"{"id":"m1","type":"user","content":[{"text":"Write it"}]}"#;
        std::fs::write(&ran, format!("{meta}{prompt}\n")).expect("write");
        assert_eq!(transcripts.find(id), Some(ran));
    }

    /// A transcript the pinned CLI left, recorded by
    /// `tests/tests/agent_fixtures.rs`; never written by hand.
    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gemini")
            .join(format!("{name}.session.jsonl"))
    }

    #[test]
    fn a_session_whose_turn_the_cli_dropped_after_an_error_is_not_resumable() {
        assert!(resumable(&fixture("tool-then-answer")));
        for name in ["api-429", "api-429-daily", "api-500"] {
            assert!(!resumable(&fixture(name)), "{name}");
        }
        // Nor is one rewound to before its first turn.
        let dir = tempfile::tempdir().expect("tempdir");
        let rewound = dir.path().join("session-x.jsonl");
        let mut text = std::fs::read_to_string(fixture("tool-then-answer")).expect("fixture");
        let first_user = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["type"] == "user")
            .and_then(|r| r["id"].as_str().map(str::to_string))
            .expect("a prompt");
        text.push_str(&format!("{{\"$rewindTo\":\"{first_user}\"}}\n"));
        std::fs::write(&rewound, text).expect("write");
        assert!(!resumable(&rewound));
    }

    #[test]
    fn a_restored_session_goes_to_the_chats_of_the_project_the_cli_claims() {
        let transcripts = Transcripts::new(Path::new("/h"), PLACES);
        assert_eq!(
            transcripts.path(
                Path::new("/w/t1/s/attempt-1"),
                "4d3e821a-7fdf-4ffd-947f-1c97142afd29"
            ),
            Path::new(
                "/h/gemini/-w-t1-s-attempt-1/.gemini/tmp/attempt-1/chats/session-2000-01-01T00-00-4d3e821a.jsonl"
            )
        );
        assert_eq!(slug("My Repo__v2."), "my-repo-v2");
        assert_eq!(slug("..."), "project");
    }
}
