//! The Claude Code CLI's stream, pinned. `scripts/claude.sh` installs the
//! version named in `scripts/claude-code.version`; the worker's unit tests
//! read fixtures recorded from that version against the mock API
//! (`crates/tidewright-worker/tests/fixtures/claude/`). These tests fail when the
//! installed CLI is not the pinned one, and when the pinned CLI no longer
//! reports an API error the way its fixtures say. To move to another
//! version: set it in `scripts/claude-code.version`, run
//! `scripts/claude.sh`, then re-record with
//! `TIDEWRIGHT_RECORD_FIXTURES=1 cargo test -p tidewright-tests --test claude_fixtures`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tidewright_tests::claude_bin;
use tidewright_tests::fixtures::PinnedCli;
use tidewright_tests::provider::{Api, Mock, Reply, Reset};

const CLI: PinnedCli = PinnedCli {
    name: "Claude Code",
    version_file: "scripts/claude-code.version",
    install: "scripts/claude.sh",
    version_variable: "CLAUDE_CODE_VERSION",
    fixtures: "crates/tidewright-worker/tests/fixtures/claude",
    test: "claude_fixtures",
    reader: "crates/tidewright-worker/src/runtime/claude/limits.rs",
};

fn installed() -> String {
    let out = std::process::Command::new(claude_bin())
        .arg("--version")
        .output()
        .expect("claude --version");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// One way for a run to end on an API error: what the mock answers, and
/// whether the CLI runs on a subscription's token (which makes it report
/// usage windows as `rate_limit_event` lines) or an API key.
struct Case {
    name: &'static str,
    replies: Vec<Reply>,
    subscription: bool,
}

fn cases() -> Vec<Case> {
    let resets_at = tidewright_api::convert::now_micros() / 1_000_000 + 3600;
    let limited = |message: String| Reply::Limited {
        status: 429,
        message,
        reset: Reset::At(resets_at),
        daily: false,
    };
    let error = |status: u16, message: &str| Reply::Error {
        status,
        message: message.into(),
    };
    vec![
        Case {
            name: "api-429",
            replies: vec![limited("mock: rate limited".into())],
            subscription: false,
        },
        Case {
            name: "api-529",
            replies: vec![error(529, "Overloaded")],
            subscription: false,
        },
        Case {
            name: "api-500",
            replies: vec![error(500, "mock: internal")],
            subscription: false,
        },
        Case {
            name: "api-400",
            // The CLI sends a refused request again without some of its
            // features before it gives up.
            replies: (0..8)
                .map(|_| error(400, "mock: refuses this prompt"))
                .collect(),
            subscription: false,
        },
        Case {
            name: "usage-limit-message",
            replies: vec![limited(format!(
                "Claude AI usage limit reached|{resets_at}"
            ))],
            subscription: false,
        },
        Case {
            name: "subscription-limit",
            replies: vec![limited("mock: five-hour window used".into())],
            subscription: true,
        },
    ]
}

/// Runs the CLI as the worker does (headless, stream-json, partial
/// messages) against a mock that answers `case`; its stdout.
async fn record(case: &Case) -> String {
    let mock = Mock::start(Api::Anthropic, case.replies.clone())
        .await
        .expect("mock");
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    let mut command = tokio::process::Command::new(claude_bin());
    command
        .args([
            "-p",
            "Say hello",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--max-turns",
            "3",
        ])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", &mock.url)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if case.subscription {
        command.env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-mock-subscription");
    } else {
        command.env("ANTHROPIC_API_KEY", "sk-ant-mock-key");
    }
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("{}: the CLI did not end within 120 s", case.name))
        .expect("the CLI ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What of a stream decides how tidewright classifies the run: each line's kind,
/// the `rate_limit_event`'s status and window, and the result line's
/// structured error fields. Message texts, ids, paths and times vary.
fn shape(stream: &str) -> Value {
    let mut lines = Vec::new();
    for line in stream.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let kind = value["type"].as_str().unwrap_or_default();
        match kind {
            "rate_limit_event" => lines.push(json!({
                "type": kind,
                "status": value["rate_limit_info"]["status"],
                "rateLimitType": value["rate_limit_info"]["rateLimitType"],
                "hasResetsAt": value["rate_limit_info"]["resetsAt"].is_i64(),
            })),
            "result" => lines.push(json!({
                "type": kind,
                "subtype": value["subtype"],
                "is_error": value["is_error"],
                "api_error_status": value["api_error_status"],
                "api_error_type": value["api_error_type"],
                "api_error": value["api_error"],
            })),
            "system" => {
                let subtype = value["subtype"].as_str().unwrap_or_default();
                // Status lines come and go with timing.
                if subtype != "status" {
                    lines.push(json!({"type": kind, "subtype": subtype}));
                }
            }
            _ => {}
        }
    }
    Value::Array(lines)
}

#[test]
fn the_installed_cli_is_the_pinned_one_and_so_are_its_fixtures() {
    CLI.check_pinned(&installed(), &claude_bin());
}

#[tokio::test]
async fn the_pinned_cli_reports_each_api_error_as_its_fixture_says() {
    CLI.start_recording(&installed());
    for case in cases() {
        let stream = record(&case).await;
        CLI.record_or_compare(case.name, &stream, shape);
    }
}
