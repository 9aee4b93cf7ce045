//! What an agent stopped by its provider's limit did, written for the
//! agent that may take its step over on another runtime (see
//! `tidewright_core::failover`): its tool calls in order, one line each,
//! and what its work changed. Read from the CLI's own stream as the run
//! goes, so writing it costs no model call (the provider is the one out
//! of its limit) and no time after the run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tidewright_core::StepWork;
use tidewright_core::failover::MAX_SUMMARY_BYTES;

use super::repeats::ToolCall;
use crate::secrets::Redactor;

/// The newest calls kept: a long session's summary is its last steps.
const MAX_CALLS: usize = 40;

/// The longest line of one call.
const MAX_CALL_BYTES: usize = 160;

/// The input fields that say most of a call, in the order looked for.
const TELLING: [&str; 9] = [
    "command",
    "cmd",
    "file_path",
    "absolute_path",
    "path",
    "pattern",
    "query",
    "url",
    "description",
];

/// A run's tool calls as its stream gives them, shared with the reader of
/// its lines.
#[derive(Clone, Default)]
pub(crate) struct Journal {
    calls: Arc<Mutex<Calls>>,
}

#[derive(Default)]
struct Calls {
    lines: VecDeque<String>,
    /// How many calls in all, the ones no longer kept among them.
    seen: usize,
}

impl Journal {
    /// Notes `calls`, masked.
    pub(crate) fn noted(&self, calls: &[ToolCall], redactor: &Redactor) {
        if calls.is_empty() {
            return;
        }
        let mut kept = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        for call in calls {
            let mut line = redactor.redact(describe(call));
            tidewright_core::truncate_at_char_boundary(&mut line, MAX_CALL_BYTES);
            kept.lines.push_back(line);
            kept.seen += 1;
            if kept.lines.len() > MAX_CALLS {
                kept.lines.pop_front();
            }
        }
    }

    /// The summary: what it did, oldest first, and what its work changed;
    /// at most [`MAX_SUMMARY_BYTES`].
    pub(crate) fn summary(&self, work: Option<&StepWork>) -> String {
        let kept = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        if kept.seen > kept.lines.len() {
            text.push_str(&format!(
                "(its first {} tool calls are left out)\n",
                kept.seen - kept.lines.len()
            ));
        }
        for line in &kept.lines {
            text.push_str("- ");
            text.push_str(line);
            text.push('\n');
        }
        if kept.seen == 0 {
            text.push_str("- no tool call before it stopped\n");
        }
        match work.filter(|w| w.head_commit != w.base_commit) {
            Some(work) => text.push_str(&format!(
                "It changed {} files (+{} -{}): {}\n",
                work.files_changed,
                work.insertions,
                work.deletions,
                work.changed_paths.join(", ")
            )),
            None => text.push_str("It changed no file.\n"),
        }
        tidewright_core::truncate_at_char_boundary(&mut text, MAX_SUMMARY_BYTES);
        text
    }
}

/// One call as a line: its tool and the input field that says most of
/// it, else its whole input.
fn describe(call: &ToolCall) -> String {
    let input = &call.input;
    let told = TELLING.iter().find_map(|key| match input.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(parts) => Some(
            parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    });
    let told = told.unwrap_or_else(|| match input {
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    });
    let told = told.split_whitespace().collect::<Vec<_>>().join(" ");
    if told.is_empty() {
        call.tool.clone()
    } else {
        format!("{}: {told}", call.tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::repeats::tests::call;
    use serde_json::json;

    #[test]
    fn the_summary_says_each_call_by_what_tells_most_and_what_changed() {
        let journal = Journal::default();
        let secret = "sk-secret-value".to_string();
        let redactor = Redactor::new([&secret]);
        journal.noted(
            &[
                call("Read", json!({"file_path": "/w/calc.py"})),
                call(
                    "Bash",
                    json!({"command": "python3 -m unittest\n  -v", "timeout": 5}),
                ),
                call(
                    "shell",
                    json!({"command": ["bash", "-lc", "echo sk-secret-value"]}),
                ),
                call("TodoWrite", json!({"todos": [1]})),
                call("exit", json!(null)),
            ],
            &redactor,
        );
        let work = StepWork {
            base_commit: "a".repeat(40),
            head_commit: "b".repeat(40),
            files_changed: 1,
            insertions: 2,
            deletions: 1,
            changed_paths: vec!["calc.py".into()],
            ..StepWork::default()
        };
        let summary = journal.summary(Some(&work));
        assert_eq!(
            summary,
            "- Read: /w/calc.py\n- Bash: python3 -m unittest -v\n- shell: bash -lc echo ***\n- TodoWrite: {\"todos\":[1]}\n- exit\nIt changed 1 files (+2 -1): calc.py\n"
        );
        assert_eq!(
            Journal::default().summary(None),
            "- no tool call before it stopped\nIt changed no file.\n"
        );
    }

    #[test]
    fn a_long_session_keeps_its_newest_calls_within_the_bound() {
        let journal = Journal::default();
        let redactor = Redactor::default();
        let calls: Vec<ToolCall> = (0..100)
            .map(|n| {
                call(
                    "Bash",
                    json!({"command": format!("step {n} {}", "x".repeat(300))}),
                )
            })
            .collect();
        journal.noted(&calls, &redactor);
        let summary = journal.summary(None);
        assert!(
            summary.starts_with("(its first 60 tool calls are left out)\n- Bash: step 60 "),
            "{summary}"
        );
        assert!(summary.len() <= MAX_SUMMARY_BYTES);
        assert!(summary.lines().all(|l| l.len() <= MAX_CALL_BYTES + 2));
    }
}
