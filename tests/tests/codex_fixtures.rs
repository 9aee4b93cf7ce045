//! The Codex CLI's stream, pinned. `scripts/codex.sh` installs the version
//! named in `scripts/codex.version`; the worker's unit tests read fixtures
//! recorded from that version against the mock Responses API
//! (`crates/tidewright-worker/tests/fixtures/codex/`). These tests fail when the
//! installed CLI is not the pinned one, and when the pinned CLI no longer
//! reports a run the way its fixtures say. To move to another version: set
//! it in `scripts/codex.version`, run `scripts/codex.sh`, then re-record
//! with `TIDEWRIGHT_RECORD_FIXTURES=1 cargo test -p tidewright-tests --test
//! codex_fixtures`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tidewright_tests::codex_bin;
use tidewright_tests::fixtures::PinnedCli;
use tidewright_tests::provider::{Api, Mock, Reply};

const CLI: PinnedCli = PinnedCli {
    name: "Codex",
    version_file: "scripts/codex.version",
    install: "scripts/codex.sh",
    version_variable: "CODEX_VERSION",
    fixtures: "crates/tidewright-worker/tests/fixtures/codex",
    test: "codex_fixtures",
    reader: "crates/tidewright-worker/src/runtime/codex/stream.rs",
};

/// `codex-cli 0.169.0` → `0.169.0`.
fn installed() -> String {
    let out = std::process::Command::new(codex_bin())
        .arg("--version")
        .output()
        .expect("codex --version");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// One run: what the mock answers.
struct Case {
    name: &'static str,
    replies: Vec<Reply>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "command-then-answer",
            replies: vec![
                Reply::codex_command("echo hello > hello.txt && cat hello.txt"),
                Reply::Text("Wrote hello.txt.".into()),
            ],
        },
        Case {
            name: "api-429",
            replies: vec![Reply::limit(20).saying("Rate limit reached on tokens per min (TPM)")],
        },
        Case {
            name: "api-500",
            replies: vec![Reply::Error {
                status: 500,
                message: "mock: internal".into(),
            }],
        },
    ]
}

/// Runs the CLI as the worker does (`codex exec --json`, the config.toml
/// tidewright writes, the key by environment) against a mock that answers
/// `case`; its stdout.
async fn record(case: &Case) -> String {
    let mock = Mock::start(Api::OpenAi, case.replies.clone())
        .await
        .expect("mock");
    // Not under /tmp: Codex refuses to lay out its helpers in a temporary
    // directory. Cargo's scratch space for tests is where it builds.
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let home = tempfile::tempdir_in(&root).expect("home");
    let work = tempfile::tempdir_in(&root).expect("work");
    let config = tidewright_worker::runtime::codex::config_toml(
        tidewright_worker::runtime::codex::DEFAULT_MODEL,
        &mock.url,
        None,
    );
    std::fs::write(home.path().join("config.toml"), config).expect("config");
    let mut command = tokio::process::Command::new(codex_bin());
    command
        .args([
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--color",
            "never",
            "--dangerously-bypass-approvals-and-sandbox",
            "--",
            "Write hello.txt",
        ])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODEX_HOME", home.path())
        .env("OPENAI_API_KEY", "sk-mock-key")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("{}: the CLI did not end within 120 s", case.name))
        .expect("the CLI ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What of a stream decides how tidewright reads the run: each line's kind, an
/// item's kind and status, whether usage came with the turn's end, and a
/// failure's words about its status. Ids, texts and times vary.
fn shape(stream: &str) -> Value {
    let mut lines = Vec::new();
    for line in stream.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let kind = value["type"].as_str().unwrap_or_default();
        lines.push(match kind {
            "item.started" | "item.updated" | "item.completed" => json!({
                "type": kind,
                "item": value["item"]["type"],
                "status": value["item"]["status"],
            }),
            "turn.completed" => json!({
                "type": kind,
                "usage": value["usage"].as_object().map(|u| u.keys().cloned().collect::<Vec<_>>()),
            }),
            "turn.failed" => json!({
                "type": kind,
                "status": status_of(value["error"]["message"].as_str().unwrap_or_default()),
            }),
            "error" => json!({
                "type": kind,
                "status": status_of(value["message"].as_str().unwrap_or_default()),
            }),
            _ => json!({"type": kind}),
        });
    }
    Value::Array(lines)
}

/// The HTTP status a message names, as `last status: 429 ...`.
fn status_of(message: &str) -> Option<u16> {
    let (_, after) = message.rsplit_once("status: ")?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_installed_cli_is_the_pinned_one_and_so_are_its_fixtures() {
    CLI.check_pinned(&installed(), &codex_bin());
}

#[tokio::test]
async fn the_pinned_cli_streams_each_run_as_its_fixture_says() {
    CLI.start_recording(&installed());
    for case in cases() {
        let stream = record(&case).await;
        CLI.record_or_compare(case.name, &stream, shape);
    }
}
