//! The Gemini CLI's stream and session transcripts, pinned.
//! `scripts/gemini.sh` installs the version named in
//! `scripts/gemini.version`; the worker's unit tests read fixtures recorded
//! from that version against the mock Gemini API
//! (`crates/tidewright-worker/tests/fixtures/gemini/`: `<case>.jsonl` is the
//! stream, `<case>.session.jsonl` the transcript it left). These tests fail when the
//! installed CLI is not the pinned one, and when the pinned CLI no longer
//! streams a run the way its fixtures say. To move to another version: set
//! it in `scripts/gemini.version`, run `scripts/gemini.sh`, then re-record
//! with `TIDEWRIGHT_RECORD_FIXTURES=1 cargo test -p tidewright-tests --test
//! gemini_fixtures`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tidewright_tests::fixtures::PinnedCli;
use tidewright_tests::gemini_bin;
use tidewright_tests::provider::{Api, Mock, Reply, Reset};

const CLI: PinnedCli = PinnedCli {
    name: "Gemini",
    version_file: "scripts/gemini.version",
    install: "scripts/gemini.sh",
    version_variable: "GEMINI_VERSION",
    fixtures: "crates/tidewright-worker/tests/fixtures/gemini",
    test: "gemini_fixtures",
    reader: "crates/tidewright-worker/src/runtime/gemini/stream.rs",
};

fn installed() -> String {
    let out = std::process::Command::new(gemini_bin())
        .arg("--version")
        .output()
        .expect("gemini --version");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One run: what the mock answers.
struct Case {
    name: &'static str,
    replies: Vec<Reply>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "tool-then-answer",
            replies: vec![
                Reply::gemini_write("hello.txt", "hello from gemini\n"),
                Reply::Text("Wrote hello.txt.".into()),
            ],
        },
        Case {
            name: "api-429",
            replies: vec![Reply::limit(37)],
        },
        Case {
            name: "api-429-daily",
            replies: vec![Reply::Limited {
                status: 429,
                message: String::new(),
                reset: Reset::In(3600),
                daily: true,
            }],
        },
        Case {
            name: "api-429-bare",
            replies: vec![Reply::Error {
                status: 429,
                message: "Resource has been exhausted (e.g. check quota).".into(),
            }],
        },
        Case {
            name: "api-500",
            replies: vec![Reply::Error {
                status: 500,
                message: "An internal error has occurred.".into(),
            }],
        },
    ]
}

/// Runs the CLI as the worker does (headless, stream-json, its home and
/// settings, the key by environment) against a mock that answers `case`;
/// its stdout, and the session's transcript as the CLI left it.
async fn record(case: &Case) -> (String, String) {
    let mock = Mock::start(Api::Google, case.replies.clone())
        .await
        .expect("mock");
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    std::fs::create_dir_all(home.path().join(".gemini")).expect("dir");
    std::fs::write(
        home.path().join(".gemini/settings.json"),
        tidewright_worker::runtime::gemini::settings_json(None),
    )
    .expect("settings");
    let mut command = tokio::process::Command::new(gemini_bin());
    command
        .args([
            "-p",
            "Write hello.txt",
            "--output-format",
            "stream-json",
            "-m",
            tidewright_worker::runtime::gemini::DEFAULT_MODEL,
            "--skip-trust",
            "--yolo",
        ])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("GEMINI_CLI_HOME", home.path())
        .env("GEMINI_CLI_NO_RELAUNCH", "true")
        .env("GOOGLE_GEMINI_BASE_URL", &mock.url)
        .env("GEMINI_API_KEY", "gemini-mock-key")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .unwrap_or_else(|_| panic!("{}: the CLI did not end within 180 s", case.name))
        .expect("the CLI ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (stdout, transcript(&home.path().join(".gemini/tmp")))
}

/// The one session transcript under a Gemini home's `tmp`
/// (`<project>/chats/session-*.jsonl`).
fn transcript(tmp: &std::path::Path) -> String {
    let mut found = Vec::new();
    for project in std::fs::read_dir(tmp)
        .expect("the CLI made its tmp")
        .flatten()
    {
        let Ok(chats) = std::fs::read_dir(project.path().join("chats")) else {
            continue;
        };
        for file in chats.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with("session-") && name.ends_with(".jsonl") {
                found.push(file.path());
            }
        }
    }
    assert_eq!(found.len(), 1, "one session: {found:?}");
    std::fs::read_to_string(&found[0]).expect("transcript")
}

/// What of a transcript decides whether the CLI resumes it: each record's
/// kind (the session's first line, a message and its type, a rewrite of
/// the messages with theirs, another field's update).
fn session_shape(transcript: &str) -> Value {
    let kinds = transcript
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|record| {
            if record.get("sessionId").is_some() {
                json!("session")
            } else if let Some(kind) = record.get("type") {
                json!({"message": kind})
            } else if let Some(messages) = record["$set"]["messages"].as_array() {
                json!({"messages": messages.iter().map(|m| m["type"].clone()).collect::<Vec<_>>()})
            } else if record.get("$rewindTo").is_some() {
                json!("rewind")
            } else {
                json!("set")
            }
        })
        .collect();
    Value::Array(kinds)
}

/// What of a stream decides how tidewright reads the run: each line's kind and
/// role, a tool call's name, a result's status and which token counts it
/// has. Ids, texts and times vary.
fn shape(stream: &str) -> Value {
    let mut lines = Vec::new();
    for line in stream.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let kind = value["type"].as_str().unwrap_or_default();
        lines.push(match kind {
            "message" => json!({"type": kind, "role": value["role"]}),
            "tool_use" => json!({"type": kind, "tool": value["tool_name"]}),
            "tool_result" => json!({"type": kind, "status": value["status"]}),
            "result" => json!({
                "type": kind,
                "status": value["status"],
                "stats": value["stats"].as_object().map(|s| {
                    let mut keys: Vec<String> = s.keys().cloned().collect();
                    keys.sort();
                    keys
                }),
            }),
            _ => json!({"type": kind}),
        });
    }
    Value::Array(lines)
}

#[test]
fn the_installed_cli_is_the_pinned_one_and_so_are_its_fixtures() {
    CLI.check_pinned(&installed(), &gemini_bin());
}

#[tokio::test]
async fn the_pinned_cli_streams_each_run_as_its_fixture_says() {
    CLI.start_recording(&installed());
    for case in cases() {
        let (stream, transcript) = record(&case).await;
        CLI.record_or_compare(case.name, &stream, shape);
        CLI.record_or_compare(
            &format!("{}.session", case.name),
            &transcript,
            session_shape,
        );
    }
}
