//! One `codex exec --json` run as its stream is read: the thread it
//! started or resumed (tidewright's session), what the agent says and runs as log
//! lines and progress, the thread's token usage when the turn ends, how
//! the turn ended, and a provider limit.
//!
//! The stream is JSON lines: `thread.started`, `turn.started`,
//! `item.started` / `item.updated` / `item.completed` (an agent message,
//! reasoning, a command, a file change, an MCP tool call, a web search, a
//! to-do list, an error), then `turn.completed` with the thread's usage or
//! `turn.failed` with its error; `error` lines report the CLI's retries.

use serde_json::Value;

use tidewright_core::session_item::SessionItem;
use tidewright_core::{AttemptKey, Cost};

use crate::runtime::agent_stream::{AgentStream, paused};
use crate::runtime::attempt::{FromAttempt, Limit};
use crate::runtime::prices::{Prices, Usage};
use crate::runtime::process::LineReader;
use crate::runtime::repeats::ToolCall;
use crate::secrets::Redactor;

/// Longest command or query shown in a log or progress line.
const SUMMARY_CHARS: usize = 160;

/// One line of the stream, as tidewright reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    ThreadStarted(String),
    TurnStarted,
    /// An item began (`done` false) or ended.
    Item {
        done: bool,
        item: Item,
    },
    /// The thread's usage so far, as the turn ended.
    TurnCompleted(Usage),
    TurnFailed(String),
    /// The CLI's own error report (a retry, or the error that ends it).
    Error(String),
    Other,
}

/// What the agent did, as an item of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Message(String),
    Reasoning(String),
    Command {
        command: String,
        exit_code: Option<i64>,
        output: String,
    },
    FileChange(Vec<String>),
    /// An MCP tool (`server.tool`) and its arguments.
    ToolCall(String, Value),
    WebSearch(String),
    /// Items done, of all.
    Todo {
        done: usize,
        of: usize,
    },
    Error(String),
    Other,
}

/// Reads one line. A line that is not JSON is an error the caller logs (the
/// CLI's own warnings can land on stdout); it does not end the run.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok(match value["type"].as_str().unwrap_or_default() {
        "thread.started" => Line::ThreadStarted(text(&value["thread_id"])),
        "turn.started" => Line::TurnStarted,
        "item.started" | "item.updated" => Line::Item {
            done: false,
            item: item(&value["item"]),
        },
        "item.completed" => Line::Item {
            done: true,
            item: item(&value["item"]),
        },
        "turn.completed" => {
            let usage = &value["usage"];
            let count = |name: &str| usage[name].as_u64().unwrap_or(0);
            Line::TurnCompleted(Usage {
                input_tokens: count("input_tokens"),
                cached_input_tokens: count("cached_input_tokens"),
                output_tokens: count("output_tokens"),
            })
        }
        "turn.failed" => Line::TurnFailed(text(&value["error"]["message"])),
        "error" => Line::Error(text(&value["message"])),
        _ => Line::Other,
    })
}

fn item(value: &Value) -> Item {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match value["type"].as_str().unwrap_or_default() {
        "agent_message" => Item::Message(text(&value["text"])),
        "reasoning" => Item::Reasoning(text(&value["text"])),
        "command_execution" => Item::Command {
            command: text(&value["command"]),
            exit_code: value["exit_code"].as_i64(),
            output: text(&value["aggregated_output"]),
        },
        "file_change" => Item::FileChange(
            value["changes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|change| format!("{} {}", text(&change["kind"]), text(&change["path"])))
                .collect(),
        ),
        "mcp_tool_call" => Item::ToolCall(
            format!("{}.{}", text(&value["server"]), text(&value["tool"])),
            value["arguments"].clone(),
        ),
        "web_search" => Item::WebSearch(text(&value["query"])),
        "todo_list" => {
            let items = value["items"].as_array().cloned().unwrap_or_default();
            Item::Todo {
                done: items.iter().filter(|i| i["completed"] == true).count(),
                of: items.len(),
            }
        }
        "error" => Item::Error(text(&value["message"])),
        _ => Item::Other,
    }
}

/// What has been read of one CLI run so far.
#[derive(Debug, Default)]
pub struct CodexRun {
    /// The model the run was given (the stream does not say).
    pub(super) model: String,
    /// What its tokens cost; none: the list price of `model`.
    prices: Option<Prices>,
    pub(super) session_id: String,
    /// The last thing the agent said: the step's result.
    pub(super) last_message: String,
    /// The thread's usage when its turn completed.
    pub(super) usage: Option<Usage>,
    /// Why the turn failed, when it did.
    pub(super) failure: Option<String>,
    /// The CLI's last error report.
    pub(super) last_error: String,
    commands: u32,
    /// This run's model responses, as the thread's rollout records them
    /// (`token_usage_record`) while the turn goes on.
    responses: Usage,
    /// The tool calls read and not yet taken: its commands and MCP tools.
    calls: Vec<ToolCall>,
}

impl CodexRun {
    pub fn new(model: &str, prices: Prices) -> Self {
        CodexRun {
            model: model.to_string(),
            prices: Some(prices),
            ..CodexRun::default()
        }
    }

    /// What this run's responses cost, as its rollout recorded them; `None`
    /// when none were read.
    pub fn own_cost(&self) -> Option<Cost> {
        (self.responses != Usage::default()).then(|| self.cost_of(&self.responses))
    }

    /// What the thread's usage costs, as tidewright's cost.
    pub fn cost_of(&self, usage: &Usage) -> Cost {
        Prices::priced_or(self.prices.as_ref(), Prices::openai, &self.model, usage)
    }
}

/// The session items of one line of the stream: an item's start is a
/// call (a command, an MCP tool), its completion the call's output; an
/// agent message is what it said; a file change is a call with its
/// changes, a web search one with its query. Reasoning is left out: the
/// CLI reports only its summary.
pub(crate) fn items_of_line(raw: &str) -> Vec<SessionItem> {
    let Ok(value) = serde_json::from_str::<Value>(raw) else {
        return Vec::new();
    };
    let item = &value["item"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let id = text(&item["id"]);
    let call = |tool: &str, input: Value| SessionItem::Call {
        id: id.clone(),
        tool: tool.into(),
        input: input.to_string(),
    };
    let started = value["type"] == "item.started";
    let completed = value["type"] == "item.completed";
    match (
        item["type"].as_str().unwrap_or_default(),
        started,
        completed,
    ) {
        ("command_execution", true, _) => vec![call(
            "shell",
            serde_json::json!({ "command": item["command"] }),
        )],
        ("command_execution", _, true) => {
            let code = item["exit_code"].as_i64();
            let mut output = text(&item["aggregated_output"]);
            if let Some(code) = code {
                output.push_str(&format!("\n(exit {code})"));
            }
            vec![SessionItem::Output {
                id,
                output,
                error: code.is_some_and(|c| c != 0),
            }]
        }
        ("mcp_tool_call", true, _) => {
            let tool = format!("{}.{}", text(&item["server"]), text(&item["tool"]));
            vec![call(&tool, item["arguments"].clone())]
        }
        ("mcp_tool_call", _, true) => {
            let failed = item["status"] == "failed" || !item["error"].is_null();
            let output = match &item["result"] {
                Value::Null => text(&item["error"]["message"]),
                result => result.to_string(),
            };
            vec![SessionItem::Output {
                id,
                output,
                error: failed,
            }]
        }
        ("agent_message", _, true) => vec![SessionItem::Text {
            text: text(&item["text"]),
        }],
        ("file_change", _, true) => vec![
            call("file_change", item["changes"].clone()),
            SessionItem::Output {
                id: id.clone(),
                output: text(&item["status"]),
                error: item["status"] == "failed",
            },
        ],
        ("web_search", _, true) => vec![call(
            "web_search",
            serde_json::json!({ "query": item["query"] }),
        )],
        _ => Vec::new(),
    }
}

/// A command or query cut to a line's length.
fn summary(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(SUMMARY_CHARS) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None => one_line,
    }
}

impl LineReader for CodexRun {
    fn take_tool_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    fn said(&mut self, raw: &str) -> Vec<SessionItem> {
        items_of_line(raw)
    }

    fn usd(&self) -> f64 {
        AgentStream::spent(self).usd
    }

    fn read(&mut self, raw: &str, attempt: &AttemptKey, redactor: &Redactor) -> Vec<FromAttempt> {
        let log = |line: String| FromAttempt::agent_log(attempt, redactor, line);
        let progress = |fraction: f32, message: String| {
            let mut message = redactor.redact(message);
            tidewright_core::truncate_at_char_boundary(&mut message, 200);
            FromAttempt::Progress {
                attempt: attempt.clone(),
                fraction,
                message,
            }
        };
        let line = match parse_line(raw) {
            Ok(line) => line,
            // The CLI's own warnings can land on stdout: keep them as logs.
            Err(_) => return vec![log(raw.trim_end().to_string())],
        };
        match line {
            Line::ThreadStarted(thread) => {
                self.session_id.clone_from(&thread);
                vec![
                    log(format!("codex thread {thread} (model {})", self.model)),
                    FromAttempt::Session {
                        attempt: attempt.clone(),
                        session_id: thread,
                        model: self.model.clone(),
                    },
                ]
            }
            Line::TurnStarted => Vec::new(),
            Line::Item { done, item } => match (done, item) {
                (true, Item::Message(text)) => {
                    self.last_message.clone_from(&text);
                    text.lines().map(|line| log(line.to_string())).collect()
                }
                (true, Item::Reasoning(text)) => text
                    .lines()
                    .take(3)
                    .map(|line| log(format!("thinking: {line}")))
                    .collect(),
                (false, Item::Command { command, .. }) => {
                    self.commands += 1;
                    self.calls.push(ToolCall {
                        tool: "shell".into(),
                        input: Value::from(command.as_str()),
                    });
                    let shown = summary(&command);
                    vec![
                        log(format!("$ {shown}")),
                        progress(0.0, format!("command {}: {shown}", self.commands)),
                    ]
                }
                (
                    true,
                    Item::Command {
                        exit_code, output, ..
                    },
                ) => {
                    let mut reports: Vec<FromAttempt> = output
                        .lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .map(|line| log(format!("  {line}")))
                        .collect();
                    if let Some(code) = exit_code {
                        reports.push(log(format!("  (exit {code})")));
                    }
                    reports
                }
                (true, Item::FileChange(changes)) => changes
                    .into_iter()
                    .map(|change| log(format!("changed: {change}")))
                    .collect(),
                (false, Item::ToolCall(tool, input)) => {
                    let line = log(format!("tool {tool}"));
                    self.calls.push(ToolCall { tool, input });
                    vec![line]
                }
                (true, Item::WebSearch(query)) => {
                    vec![log(format!("web search: {}", summary(&query)))]
                }
                (_, Item::Todo { done, of }) if of > 0 => vec![progress(
                    done as f32 / of as f32,
                    format!("{done} of {of} planned items done"),
                )],
                (true, Item::Error(message)) => vec![log(format!("codex: {message}"))],
                _ => Vec::new(),
            },
            Line::TurnCompleted(usage) => {
                let cost = self.cost_of(&usage);
                self.usage = Some(usage);
                vec![FromAttempt::Spend {
                    attempt: attempt.clone(),
                    cost,
                }]
            }
            Line::TurnFailed(message) => {
                self.failure = Some(message.clone());
                vec![log(format!("the turn failed: {message}"))]
            }
            Line::Error(message) => {
                self.last_error.clone_from(&message);
                vec![log(format!("codex: {message}"))]
            }
            Line::Other => Vec::new(),
        }
    }
}

impl AgentStream for CodexRun {
    /// Its prompt is in its command, and the stream does not repeat it.
    const SAYS_PROMPT: bool = false;

    const SPEND_IN_TRANSCRIPT: bool = true;

    fn session_id(&self) -> &str {
        &self.session_id
    }

    /// This run's responses as its rollout recorded them; else, the
    /// thread's usage when its turn completed.
    fn spent(&self) -> Cost {
        if self.responses != Usage::default() {
            return self.cost_of(&self.responses);
        }
        self.usage
            .as_ref()
            .map(|usage| self.cost_of(usage))
            .unwrap_or_default()
    }

    /// The rollout's `token_usage_record` of each model response: its
    /// `usage` is that response's alone.
    fn read_transcript(&mut self, line: &str) -> bool {
        if !line.contains("\"token_usage_record\"") {
            return false;
        }
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        if record["type"] != "token_usage_record" {
            return false;
        }
        let usage = &record["payload"]["usage"];
        let count = |name: &str| usage[name].as_u64().unwrap_or(0);
        self.responses.add(&Usage {
            input_tokens: count("input_tokens"),
            cached_input_tokens: count("cached_input_tokens"),
            output_tokens: count("output_tokens"),
        });
        true
    }

    /// A 429 is the provider's limit: the API key's rate or its quota. The
    /// CLI says only the status (`exceeded retry limit, last status: 429
    /// Too Many Requests`), never a reset, so the pool backs off.
    fn limit(&self, error: &str) -> Option<Limit> {
        let said = [error, self.last_error.as_str()];
        said.iter()
            .any(|text| last_status(text) == Some(429) || text.contains("Too Many Requests"))
            .then(|| Limit {
                reset: None,
                signal: "status 429".into(),
            })
    }

    fn api_error_line(&self, limit: Option<&Limit>) -> Option<String> {
        if let Some(limit) = limit {
            return Some(paused(tidewright_core::CODEX, limit));
        }
        let failure = self.failure.as_deref()?;
        Some(match last_status(failure) {
            Some(status) if status >= 500 => format!(
                "the API failed on its side (status {status}): the attempt fails, and the step's retry policy runs it again"
            ),
            Some(status) => {
                format!("the API refused the request (status {status}): the attempt fails")
            }
            None => format!("the turn failed: {failure}"),
        })
    }
}

/// The status in the CLI's `... last status: 503 Service Unavailable`.
fn last_status(message: &str) -> Option<u16> {
    let (_, after) = message.rsplit_once("status: ")?;
    after.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded run's session items: its tool call with its input and
    /// output, then its answer.
    #[test]
    fn a_recorded_run_makes_its_session_items() {
        use crate::runtime::process::items_of_fixture;
        use tidewright_core::session_item::SessionItem;
        assert_eq!(
            items_of_fixture(&mut CodexRun::default(), "codex", "command-then-answer"),
            vec![
                SessionItem::Call {
                    id: "item_0".into(),
                    tool: "shell".into(),
                    input:
                        r#"{"command":"/bin/bash -lc 'echo hello > hello.txt && cat hello.txt'"}"#
                            .into(),
                },
                SessionItem::Output {
                    id: "item_0".into(),
                    output: "hello\n\n(exit 0)".into(),
                    error: false,
                },
                SessionItem::Text {
                    text: "Wrote hello.txt.".into()
                },
            ]
        );
    }

    #[test]
    fn lines_read_as_what_the_agent_did() {
        assert_eq!(
            parse_line(r#"{"type":"thread.started","thread_id":"t-1"}"#),
            Ok(Line::ThreadStarted("t-1".into()))
        );
        assert_eq!(
            parse_line(
                r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc 'echo hi'","aggregated_output":"hi\n","exit_code":0,"status":"completed"}}"#
            ),
            Ok(Line::Item {
                done: true,
                item: Item::Command {
                    command: "/bin/bash -lc 'echo hi'".into(),
                    exit_code: Some(0),
                    output: "hi\n".into(),
                }
            })
        );
        assert_eq!(
            parse_line(
                r#"{"type":"turn.completed","usage":{"input_tokens":300,"cached_input_tokens":60,"output_tokens":50,"reasoning_output_tokens":0}}"#
            ),
            Ok(Line::TurnCompleted(Usage {
                input_tokens: 300,
                cached_input_tokens: 60,
                output_tokens: 50,
            }))
        );
        assert_eq!(
            parse_line(
                r#"{"type":"item.updated","item":{"type":"todo_list","items":[{"text":"a","completed":true},{"text":"b","completed":false}]}}"#
            ),
            Ok(Line::Item {
                done: false,
                item: Item::Todo { done: 1, of: 2 }
            })
        );
        assert!(parse_line("WARNING: not json").is_err());
        assert_eq!(parse_line(r#"{"type":"something.new"}"#), Ok(Line::Other));
    }

    /// The pinned CLI's stream of a run, recorded by
    /// `tests/tests/agent_fixtures.rs` against the mock Responses API
    /// (`TIDEWRIGHT_RECORD_FIXTURES=1`); never written by hand. Read as the
    /// worker reads it: the run, and the log lines it made.
    fn replay(name: &str) -> (CodexRun, Vec<String>) {
        let mut run = CodexRun::new("gpt-5", Prices::openai("gpt-5"));
        let logs = crate::runtime::process::replay_fixture(&mut run, "codex", name);
        (run, logs)
    }

    #[test]
    fn the_pinned_clis_run_reads_as_its_thread_commands_answer_and_usage() {
        let (mut run, logs) = replay("command-then-answer");
        assert!(!run.session_id.is_empty());
        // Its command, whole, for the stall policy.
        let calls = run.take_tool_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].tool, "shell");
        assert!(
            calls[0]
                .input
                .as_str()
                .is_some_and(|c| c.contains("hello.txt")),
            "{calls:?}"
        );
        assert!(run.take_tool_calls().is_empty(), "taken once");
        assert_eq!(run.last_message, "Wrote hello.txt.");
        assert_eq!(run.failure, None);
        let usage = run.usage.clone().expect("usage");
        // Two model calls of the mock's 100 in (10 cached) and 20 out.
        assert_eq!(
            usage,
            Usage {
                input_tokens: 200,
                cached_input_tokens: 20,
                output_tokens: 40,
            }
        );
        let cost = run.spent();
        assert_eq!(
            (
                cost.input_tokens,
                cost.cache_read_tokens,
                cost.output_tokens
            ),
            (180, 20, 40)
        );
        assert!(cost.usd > 0.0);
        for expected in [
            "$ /bin/bash -lc 'echo hello > hello.txt && cat hello.txt'",
            "  hello",
            "  (exit 0)",
            "Wrote hello.txt.",
        ] {
            assert!(
                logs.iter().any(|l| l == expected),
                "{expected:?} in {logs:#?}"
            );
        }
    }

    #[test]
    fn the_pinned_clis_429_is_a_limit_and_its_500_a_failure() {
        let (run, _) = replay("api-429");
        let failure = run.failure.clone().expect("the turn failed");
        assert_eq!(
            run.limit(&failure),
            Some(Limit {
                reset: None,
                signal: "status 429".into(),
            })
        );
        assert_eq!(run.usage, None, "no usage from a refused call");
        let (run, _) = replay("api-500");
        let failure = run.failure.clone().expect("the turn failed");
        assert_eq!(run.limit(&failure), None);
        assert!(
            run.api_error_line(None)
                .is_some_and(|line| line.contains("the turn failed")),
            "{:?}",
            run.api_error_line(None)
        );
    }

    #[test]
    fn a_429_is_the_providers_limit_and_other_statuses_are_not() {
        let run = CodexRun::default();
        let limited = "exceeded retry limit, last status: 429 Too Many Requests";
        assert_eq!(
            run.limit(limited).map(|l| l.signal),
            Some("status 429".to_string())
        );
        assert_eq!(
            run.limit("exceeded retry limit, last status: 503 Service Unavailable"),
            None
        );
        assert_eq!(last_status(limited), Some(429));
        assert_eq!(last_status("no status here"), None);
    }
}
