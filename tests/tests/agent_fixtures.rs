//! Each agent CLI's stream, pinned: one suite, a row per CLI. Each CLI's
//! script installs the version its `.version` file names; the worker's
//! unit tests read fixtures recorded from that version against the mock
//! of its provider's API (`crates/tidewright-worker/tests/fixtures/<cli>/`:
//! `<case>.jsonl` is the stream, `<case>.session.jsonl` a transcript the
//! run left, for a CLI whose transcript the worker reads). These tests fail
//! when the installed CLI is not the pinned one, and when the pinned CLI
//! no longer streams a run the way its fixtures say. To move to another
//! version: set it in the CLI's `.version` file, run its script, then
//! re-record with `TIDEWRIGHT_RECORD_FIXTURES=1 cargo test -p
//! tidewright-tests --test end_to_end agent_fixtures::`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use serde_json::Value;
use tidewright_tests::fixtures::PinnedCli;
use tidewright_tests::provider::Reply;
use tidewright_tests::{claude_bin, codex_bin, gemini_bin, qwen_bin};

/// One run: what the mock answers, and whether the CLI runs on a
/// subscription's token (Claude Code then reports usage windows as
/// `rate_limit_event` lines) rather than an API key.
struct Case {
    name: &'static str,
    replies: Vec<Reply>,
    subscription: bool,
}

/// A run on an API key.
fn case(name: &'static str, replies: Vec<Reply>) -> Case {
    Case {
        name,
        replies,
        subscription: false,
    }
}

/// What a run left: its stdout, and its session's transcript when the
/// worker reads the CLI's transcripts.
struct Recorded {
    stream: String,
    transcript: Option<String>,
}

/// The pinned CLI `bin` run headless in `work`, with its `home` and no
/// other environment than `PATH` and what the caller adds.
fn headless(bin: PathBuf, work: &Path, home: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin);
    command
        .current_dir(work)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What `command` printed on stdout, once it ended within `seconds`.
async fn stdout_of(case: &Case, mut command: tokio::process::Command, seconds: u64) -> String {
    let out = tokio::time::timeout(std::time::Duration::from_secs(seconds), command.output())
        .await
        .unwrap_or_else(|_| panic!("{}: the CLI did not end within {seconds} s", case.name))
        .expect("the CLI ran");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A stream's JSON lines; other lines (a CLI's own warnings) are passed
/// over.
fn json_lines(stream: &str) -> impl Iterator<Item = Value> + '_ {
    stream
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
}

type Record = for<'a> fn(&'a Case) -> Pin<Box<dyn Future<Output = Recorded> + 'a>>;

/// One CLI: where it is pinned, which word of `--version` is its version,
/// its cases, how it is run as the worker runs it, and what of its stream
/// (and transcript) decides how tidewright reads it.
struct Row {
    cli: PinnedCli,
    bin: fn() -> PathBuf,
    version_word: usize,
    cases: fn() -> Vec<Case>,
    record: Record,
    shape: fn(&str) -> Value,
    transcript_shape: fn(&str) -> Value,
}

impl Row {
    fn installed(&self) -> String {
        let bin = (self.bin)();
        let out = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{} --version: {e}", bin.display()));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(self.version_word)
            .unwrap_or_default()
            .to_string()
    }
}

const CLAUDE_CODE: Row = Row {
    cli: PinnedCli {
        name: "Claude Code",
        version_file: "scripts/claude-code.version",
        install: "scripts/claude.sh",
        version_variable: "CLAUDE_CODE_VERSION",
        fixtures: "crates/tidewright-worker/tests/fixtures/claude",
        test: "agent_fixtures",
        reader: "crates/tidewright-worker/src/runtime/claude/limits.rs",
    },
    bin: claude_bin,
    version_word: 0,
    cases: claude::cases,
    record: |case| Box::pin(claude::record(case)),
    shape: claude::shape,
    transcript_shape: |_| Value::Null,
};

const CODEX: Row = Row {
    cli: PinnedCli {
        name: "Codex",
        version_file: "scripts/codex.version",
        install: "scripts/codex.sh",
        version_variable: "CODEX_VERSION",
        fixtures: "crates/tidewright-worker/tests/fixtures/codex",
        test: "agent_fixtures",
        reader: "crates/tidewright-worker/src/runtime/codex/stream.rs",
    },
    bin: codex_bin,
    // `codex-cli 0.169.0`
    version_word: 1,
    cases: codex::cases,
    record: |case| Box::pin(codex::record(case)),
    shape: codex::shape,
    transcript_shape: |_| Value::Null,
};

const GEMINI_CLI: Row = Row {
    cli: PinnedCli {
        name: "Gemini",
        version_file: "scripts/gemini.version",
        install: "scripts/gemini.sh",
        version_variable: "GEMINI_VERSION",
        fixtures: "crates/tidewright-worker/tests/fixtures/gemini",
        test: "agent_fixtures",
        reader: "crates/tidewright-worker/src/runtime/gemini/stream.rs",
    },
    bin: gemini_bin,
    version_word: 0,
    cases: gemini::cases,
    record: |case| Box::pin(gemini::record(case)),
    shape: gemini::shape,
    transcript_shape: gemini::session_shape,
};

const QWEN_CODE: Row = Row {
    cli: PinnedCli {
        name: "Qwen Code",
        version_file: "scripts/qwen-code.version",
        install: "scripts/qwen.sh",
        version_variable: "QWEN_CODE_VERSION",
        fixtures: "crates/tidewright-worker/tests/fixtures/qwen",
        test: "agent_fixtures",
        reader: "crates/tidewright-worker/src/runtime/qwen/stream.rs",
    },
    bin: qwen_bin,
    version_word: 0,
    cases: qwen::cases,
    record: |case| Box::pin(qwen::record(case)),
    shape: qwen::shape,
    transcript_shape: |_| Value::Null,
};

fn the_installed_cli_is_the_pinned_one_and_so_are_its_fixtures(row: &Row) {
    row.cli.check_pinned(&row.installed(), &(row.bin)());
}

async fn the_pinned_cli_streams_each_run_as_its_fixture_says(row: &Row) {
    row.cli.start_recording(&row.installed());
    for case in (row.cases)() {
        let recorded = (row.record)(&case).await;
        row.cli
            .record_or_compare(case.name, &recorded.stream, row.shape);
        if let Some(transcript) = &recorded.transcript {
            row.cli.record_or_compare(
                &format!("{}.session", case.name),
                transcript,
                row.transcript_shape,
            );
        }
    }
}

/// The suite, once per CLI.
macro_rules! suite {
    ($($module:ident => $row:expr),* $(,)?) => {
        mod pinned {
            use super::*;
            $(
                mod $module {
                    use super::*;

                    #[test]
                    fn the_installed_cli_is_the_pinned_one_and_so_are_its_fixtures() {
                        super::the_installed_cli_is_the_pinned_one_and_so_are_its_fixtures(&$row);
                    }

                    #[tokio::test]
                    async fn the_pinned_cli_streams_each_run_as_its_fixture_says() {
                        super::the_pinned_cli_streams_each_run_as_its_fixture_says(&$row).await;
                    }
                }
            )*
        }
    };
}

suite! {
    claude_code => CLAUDE_CODE,
    codex => CODEX,
    gemini_cli => GEMINI_CLI,
    qwen_code => QWEN_CODE,
}

/// Claude Code: API errors and limits as its stream reports them.
mod claude {

    use serde_json::{Value, json};
    use tidewright_tests::claude_bin;
    use tidewright_tests::provider::{Api, Mock, Reply, Reset};

    use super::{Case, Recorded, headless, json_lines, stdout_of};

    pub fn cases() -> Vec<Case> {
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
    pub async fn record(case: &Case) -> Recorded {
        let mock = Mock::start(Api::Anthropic, case.replies.clone())
            .await
            .expect("mock");
        let home = tempfile::tempdir().expect("home");
        let work = tempfile::tempdir().expect("work");
        let mut command = headless(claude_bin(), work.path(), home.path());
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
            .env("ANTHROPIC_BASE_URL", &mock.url)
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1");
        if case.subscription {
            command.env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-mock-subscription");
        } else {
            command.env("ANTHROPIC_API_KEY", "sk-ant-mock-key");
        }
        let stream = stdout_of(case, command, 120).await;
        Recorded {
            stream,
            transcript: None,
        }
    }

    /// What of a stream decides how tidewright classifies the run: each line's kind,
    /// the `rate_limit_event`'s status and window, and the result line's
    /// structured error fields. Message texts, ids, paths and times vary.
    pub fn shape(stream: &str) -> Value {
        let mut lines = Vec::new();
        for value in json_lines(stream) {
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
}

/// Codex: a command run, a limit and an error, as `codex exec --json` streams them.
mod codex {
    use std::path::PathBuf;

    use serde_json::{Value, json};
    use tidewright_tests::codex_bin;
    use tidewright_tests::provider::{Api, Mock, Reply};

    use super::{Case, Recorded, case, headless, json_lines, stdout_of};

    pub fn cases() -> Vec<Case> {
        vec![
            case(
                "command-then-answer",
                vec![
                    Reply::codex_command("echo hello > hello.txt && cat hello.txt"),
                    Reply::Text("Wrote hello.txt.".into()),
                ],
            ),
            case(
                "api-429",
                vec![Reply::limit(20).saying("Rate limit reached on tokens per min (TPM)")],
            ),
            case(
                "api-500",
                vec![Reply::Error {
                    status: 500,
                    message: "mock: internal".into(),
                }],
            ),
        ]
    }

    /// Runs the CLI as the worker does (`codex exec --json`, the config.toml
    /// tidewright writes, the key by environment) against a mock that answers
    /// `case`; its stdout.
    pub async fn record(case: &Case) -> Recorded {
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
        let mut command = headless(codex_bin(), work.path(), home.path());
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
            .env("CODEX_HOME", home.path())
            .env("OPENAI_API_KEY", "sk-mock-key");
        let stream = stdout_of(case, command, 120).await;
        Recorded {
            stream,
            transcript: None,
        }
    }

    /// What of a stream decides how tidewright reads the run: each line's kind, an
    /// item's kind and status, whether usage came with the turn's end, and a
    /// failure's words about its status. Ids, texts and times vary.
    pub fn shape(stream: &str) -> Value {
        let mut lines = Vec::new();
        for value in json_lines(stream) {
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
    pub fn status_of(message: &str) -> Option<u16> {
        let (_, after) = message.rsplit_once("status: ")?;
        after.split_whitespace().next()?.parse().ok()
    }
}

/// The Gemini CLI: a tool call, limits and errors, and the transcripts it leaves.
mod gemini {

    use serde_json::{Value, json};
    use tidewright_tests::gemini_bin;
    use tidewright_tests::provider::{Api, Mock, Reply, Reset};

    use super::{Case, Recorded, case, headless, json_lines, stdout_of};

    pub fn cases() -> Vec<Case> {
        vec![
            case(
                "tool-then-answer",
                vec![
                    Reply::gemini_write("hello.txt", "hello from gemini\n"),
                    Reply::Text("Wrote hello.txt.".into()),
                ],
            ),
            case("api-429", vec![Reply::limit(37)]),
            case(
                "api-429-daily",
                vec![Reply::Limited {
                    status: 429,
                    message: String::new(),
                    reset: Reset::In(3600),
                    daily: true,
                }],
            ),
            case(
                "api-429-bare",
                vec![Reply::Error {
                    status: 429,
                    message: "Resource has been exhausted (e.g. check quota).".into(),
                }],
            ),
            case(
                "api-500",
                vec![Reply::Error {
                    status: 500,
                    message: "An internal error has occurred.".into(),
                }],
            ),
        ]
    }

    /// Runs the CLI as the worker does (headless, stream-json, its home and
    /// settings, the key by environment) against a mock that answers `case`;
    /// its stdout, and the session's transcript as the CLI left it.
    pub async fn record(case: &Case) -> Recorded {
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
        let mut command = headless(gemini_bin(), work.path(), home.path());
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
            .env("GEMINI_CLI_HOME", home.path())
            .env("GEMINI_CLI_NO_RELAUNCH", "true")
            .env("GOOGLE_GEMINI_BASE_URL", &mock.url)
            .env("GEMINI_API_KEY", "gemini-mock-key");
        let stream = stdout_of(case, command, 180).await;
        Recorded {
            stream,
            transcript: Some(transcript(&home.path().join(".gemini/tmp"))),
        }
    }

    /// What of a stream decides how tidewright reads the run: each line's kind and
    /// role, a tool call's name, a result's status and which token counts it
    /// has. Ids, texts and times vary.
    pub fn shape(stream: &str) -> Value {
        let mut lines = Vec::new();
        for value in json_lines(stream) {
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

    /// The one session transcript under a Gemini home's `tmp`
    /// (`<project>/chats/session-*.jsonl`).
    pub fn transcript(tmp: &std::path::Path) -> String {
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
    pub fn session_shape(transcript: &str) -> Value {
        let kinds = json_lines(transcript)
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
}

/// Qwen Code: a tool call, a limit and an error, as `--output-format
/// stream-json` streams them on OpenAI's Responses API.
mod qwen {

    use serde_json::{Value, json};
    use tidewright_tests::provider::{Api, Mock, Reply};
    use tidewright_tests::qwen_bin;

    use super::{Case, Recorded, case, headless, json_lines, stdout_of};

    pub fn cases() -> Vec<Case> {
        vec![
            case(
                "tool-then-answer",
                vec![
                    Reply::tool(
                        "write_file",
                        json!({"file_path": "{cwd}/hello.txt", "content": "hello from qwen\n"}),
                    ),
                    Reply::Text("Wrote hello.txt.".into()),
                ],
            ),
            case("api-429", vec![Reply::limit(37)]),
            case(
                "api-500",
                vec![Reply::Error {
                    status: 500,
                    message: "mock: internal".into(),
                }],
            ),
        ]
    }

    /// Runs the CLI as the worker does (its home and the settings tidewright
    /// writes, headless, stream-json, the key by environment) against a
    /// mock that answers `case`; its stdout.
    pub async fn record(case: &Case) -> Recorded {
        let mock = Mock::start(Api::OpenAi, case.replies.clone())
            .await
            .expect("mock");
        let home = tempfile::tempdir().expect("home");
        let qwen_home = home.path().join("qwen");
        std::fs::create_dir_all(&qwen_home).expect("dir");
        std::fs::write(
            qwen_home.join("settings.json"),
            tidewright_worker::runtime::qwen::settings_json(None),
        )
        .expect("settings");
        let work = tempfile::tempdir().expect("work");
        let mut command = headless(qwen_bin(), work.path(), home.path());
        command
            .args([
                "--auth-type",
                "openai-responses",
                "-m",
                tidewright_worker::runtime::qwen::DEFAULT_MODEL,
                "--output-format",
                "stream-json",
                "--approval-mode",
                "yolo",
                "--prompt=Write hello.txt",
            ])
            .env("QWEN_HOME", &qwen_home)
            .env("QWEN_CODE_SUPPRESS_YOLO_WARNING", "1")
            .env("OPENAI_BASE_URL", &mock.url)
            .env("OPENAI_API_KEY", "sk-mock-key");
        let stream = stdout_of(case, command, 120).await;
        Recorded {
            stream,
            transcript: None,
        }
    }

    /// What of a stream decides how tidewright reads the run: each line's
    /// kind, an assistant message's blocks and which token counts its usage
    /// has, a tool result's error flag, and how the result ended with the
    /// status its error names. Ids, texts and times vary.
    pub fn shape(stream: &str) -> Value {
        let keys = |v: &Value| {
            let mut keys: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort();
            keys
        };
        let mut lines = Vec::new();
        for value in json_lines(stream) {
            let kind = value["type"].as_str().unwrap_or_default();
            lines.push(match kind {
                "system" => json!({"type": kind, "subtype": value["subtype"]}),
                "assistant" => json!({
                    "type": kind,
                    "blocks": value["message"]["content"].as_array().map(|blocks| {
                        blocks.iter().map(|b| b["type"].clone()).collect::<Vec<_>>()
                    }),
                    "usage": keys(&value["message"]["usage"]),
                }),
                "user" => json!({
                    "type": kind,
                    "errors": value["message"]["content"].as_array().map(|blocks| {
                        blocks.iter().map(|b| b["is_error"].clone()).collect::<Vec<_>>()
                    }),
                }),
                "result" => json!({
                    "type": kind,
                    "subtype": value["subtype"],
                    "is_error": value["is_error"],
                    "status": tidewright_worker::runtime::qwen::stream::status_of(
                        value["error"]["message"].as_str().unwrap_or_default()
                    ),
                }),
                // Other events come and go with timing.
                _ => continue,
            });
        }
        Value::Array(lines)
    }
}
