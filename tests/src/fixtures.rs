//! A pinned agent CLI and the stream fixtures recorded from it: the
//! installed CLI must be the version its script pins, its fixtures must be
//! recorded from that version (`VERSION` beside them), and each run the
//! tests make must have the shape of its fixture. With
//! `TIDEWRIGHT_RECORD_FIXTURES=1` the runs are recorded instead.

use std::path::PathBuf;

use serde_json::Value;

use crate::repo_root;

/// One CLI, as its fixture tests name it.
pub struct PinnedCli {
    /// As people read it: `Claude Code`, `Codex`.
    pub name: &'static str,
    /// Where the pinned version is written, from the repository's root.
    pub version_file: &'static str,
    /// The script that installs the pinned version.
    pub install: &'static str,
    /// The variable that tries another version.
    pub version_variable: &'static str,
    /// Where its fixtures are, from the repository's root.
    pub fixtures: &'static str,
    /// The end-to-end tests' module that records them (its name, a filter).
    pub test: &'static str,
    /// The worker's reader of the stream, to check when a shape changes.
    pub reader: &'static str,
}

impl PinnedCli {
    pub fn fixtures(&self) -> PathBuf {
        repo_root().join(self.fixtures)
    }

    pub fn pinned(&self) -> String {
        let path = repo_root().join(self.version_file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Whether this run records the fixtures (`TIDEWRIGHT_RECORD_FIXTURES=1`).
    pub fn recording(&self) -> bool {
        std::env::var_os("TIDEWRIGHT_RECORD_FIXTURES").is_some_and(|v| v == "1")
    }

    /// The installed CLI (its version `installed`) is the pinned one, and
    /// the fixtures were recorded from it.
    pub fn check_pinned(&self, installed: &str, bin: &std::path::Path) {
        let pinned = self.pinned();
        assert_eq!(
            installed,
            pinned,
            "the {} CLI at {} is {installed}, but {} pins {pinned}: run {} to install the \
             pinned one ({} tries another, and this test says so)",
            self.name,
            bin.display(),
            self.version_file,
            self.install,
            self.version_variable,
        );
        if self.recording() {
            return;
        }
        let recorded = std::fs::read_to_string(self.fixtures().join("VERSION")).unwrap_or_default();
        assert_eq!(
            recorded.trim(),
            pinned,
            "the fixtures in {} were recorded from {}, not the pinned {pinned}: re-record them \
             (TIDEWRIGHT_RECORD_FIXTURES=1 cargo test -p tidewright-tests --test end_to_end {}::)",
            self.fixtures().display(),
            recorded.trim(),
            self.test,
        );
    }

    /// When recording: the fixtures' directory, with `VERSION` saying
    /// which version they come from.
    pub fn start_recording(&self, installed: &str) {
        if self.recording() {
            std::fs::create_dir_all(self.fixtures()).expect("fixtures dir");
            std::fs::write(self.fixtures().join("VERSION"), format!("{installed}\n"))
                .expect("VERSION");
        }
    }

    /// Records `stream` as fixture `name`, or checks that its `shape` is
    /// the recorded fixture's.
    pub fn record_or_compare(&self, name: &str, stream: &str, shape: fn(&str) -> Value) {
        let path = self.fixtures().join(format!("{name}.jsonl"));
        if self.recording() {
            std::fs::write(&path, stream).expect("fixture");
            return;
        }
        let fixture = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (record the fixtures)", path.display()));
        assert_eq!(
            shape(stream),
            shape(&fixture),
            "{name}: the {} CLI's stream differs from its fixture; re-record and check the \
             worker's reader ({})",
            self.name,
            self.reader,
        );
    }
}
