//! One `gemini -p … --output-format stream-json` run as its stream is
//! read: the session and model (`init`), the agent's words (`message`,
//! in pieces), its tool calls and their results (`tool_use`,
//! `tool_result`), and how it ended with its tokens (`result`).

use serde_json::Value;

use tidewright_core::session_item::SessionItem;
use tidewright_core::{AttemptKey, Cost};

use crate::runtime::agent_stream::{AgentStream, paused};
use crate::runtime::attempt::{FromAttempt, Limit};
use crate::runtime::prices::{Prices, Usage};
use crate::runtime::process::LineReader;
use crate::runtime::repeats::ToolCall;
use crate::secrets::Redactor;

/// Longest tool input summary in a log line.
const SUMMARY_CHARS: usize = 160;

/// One line of the stream, as tidewright reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Init {
        session_id: String,
        model: String,
    },
    /// A piece of what the agent says.
    Said(String),
    ToolUse {
        name: String,
        summary: String,
        input: Value,
    },
    ToolResult {
        status: String,
    },
    Result(RunEnd),
    /// An `error` event: the CLI's warning or error (its loop detection,
    /// its session's turn limit), which it ends its turn on while the run
    /// still reads as a success. `error`: of severity `error`.
    Warning {
        message: String,
        error: bool,
    },
    Other,
}

/// The warning the Gemini CLI stops its turn with when it detects a loop
/// (the same tool call, or the same content, again and again).
pub const LOOP_DETECTED: &str = "Loop detected, stopping execution";

/// The `result` line.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub success: bool,
    pub error: String,
    pub usage: Usage,
}

/// Reads one line. A line that is not JSON is an error the caller logs.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok(match value["type"].as_str().unwrap_or_default() {
        "init" => Line::Init {
            session_id: text(&value["session_id"]),
            model: text(&value["model"]),
        },
        "message" if value["role"] == "assistant" => Line::Said(text(&value["content"])),
        "tool_use" => Line::ToolUse {
            name: text(&value["tool_name"]),
            summary: summary(&value["parameters"]),
            input: value["parameters"].clone(),
        },
        "tool_result" => Line::ToolResult {
            status: text(&value["status"]),
        },
        "result" => {
            let stats = &value["stats"];
            let count = |name: &str| stats[name].as_u64().unwrap_or(0);
            let error = match &value["error"] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            Line::Result(RunEnd {
                success: value["status"] == "success",
                error,
                usage: Usage {
                    input_tokens: count("input_tokens"),
                    cached_input_tokens: count("cached"),
                    output_tokens: count("output_tokens"),
                },
            })
        }
        "error" => Line::Warning {
            message: text(&value["message"]),
            error: value["severity"] == "error",
        },
        _ => Line::Other,
    })
}

/// A tool's parameters as `key=value ...`, cut to a line's length.
fn summary(parameters: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(map) = parameters.as_object() {
        for (key, value) in map {
            let shown = match value {
                Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
                other => other.to_string(),
            };
            parts.push(format!("{key}={shown}"));
        }
    }
    let joined = parts.join(" ");
    match joined.char_indices().nth(SUMMARY_CHARS) {
        Some((at, _)) => format!("{}…", &joined[..at]),
        None => joined,
    }
}

/// What has been read of one CLI run so far.
#[derive(Debug, Default)]
pub struct GeminiRun {
    pub(super) model: String,
    pub(super) session_id: String,
    /// What the agent said since its last tool call: the step's result.
    pub(super) answer: String,
    pub(super) end: Option<RunEnd>,
    prices: Option<Prices>,
    tools: u32,
    /// This run's model responses by message id, as the session's
    /// transcript records them (a `gemini` message with its `tokens`, once
    /// when it is made and again as it grows).
    responses: std::collections::BTreeMap<String, Usage>,
    /// The tool calls read and not yet taken.
    calls: Vec<ToolCall>,
    /// The CLI detected a loop and stopped its turn.
    pub(super) looped: bool,
    /// The error the CLI stopped its turn short on (its session's turn
    /// limit), when one did.
    pub(super) stopped: Option<String>,
    /// The agent's words so far, not yet said as a session item.
    saying: String,
}

impl GeminiRun {
    pub fn new(model: &str, prices: Prices) -> Self {
        GeminiRun {
            model: model.to_string(),
            prices: Some(prices),
            ..GeminiRun::default()
        }
    }

    /// What `usage` costs, as tidewright's cost.
    pub fn cost_of(&self, usage: &Usage) -> Cost {
        Prices::priced_or(self.prices.as_ref(), Prices::gemini, &self.model, usage)
    }
}

impl LineReader for GeminiRun {
    fn take_tool_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    /// The agent's words come in pieces (`delta`): they are said as one
    /// text when the next thing the stream says is not more of them.
    fn said(&mut self, raw: &str) -> Vec<SessionItem> {
        let Ok(value) = serde_json::from_str::<Value>(raw) else {
            return Vec::new();
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let kind = value["type"].as_str().unwrap_or_default();
        if kind == "message" && value["role"] == "assistant" {
            self.saying
                .push_str(value["content"].as_str().unwrap_or_default());
            return Vec::new();
        }
        let mut items = Vec::new();
        let words = std::mem::take(&mut self.saying);
        if !words.trim().is_empty() {
            items.push(SessionItem::Text {
                text: words.trim().to_string(),
            });
        }
        match kind {
            "message" if value["role"] == "user" => items.push(SessionItem::Prompt {
                text: text(&value["content"]),
            }),
            "tool_use" => items.push(SessionItem::Call {
                id: text(&value["tool_id"]),
                tool: text(&value["tool_name"]),
                input: value["parameters"].to_string(),
            }),
            // The stream gives a tool's output for some tools only; the
            // status stands in for the rest.
            "tool_result" => items.push(SessionItem::Output {
                id: text(&value["tool_id"]),
                output: match (&value["output"], &value["error"]["message"]) {
                    (Value::String(output), _) => output.clone(),
                    (_, Value::String(error)) => error.clone(),
                    _ => text(&value["status"]),
                },
                error: value["status"] != "success",
            }),
            _ => {}
        }
        items
    }

    fn usd(&self) -> f64 {
        AgentStream::spent(self).usd
    }

    fn read(&mut self, raw: &str, attempt: &AttemptKey, redactor: &Redactor) -> Vec<FromAttempt> {
        let log = |line: String| FromAttempt::agent_log(attempt, redactor, line);
        let line = match parse_line(raw) {
            Ok(line) => line,
            Err(_) => return vec![log(raw.trim_end().to_string())],
        };
        match line {
            Line::Init { session_id, model } => {
                self.session_id.clone_from(&session_id);
                if !model.is_empty() {
                    self.model.clone_from(&model);
                }
                vec![
                    log(format!(
                        "gemini session {session_id} (model {})",
                        self.model
                    )),
                    FromAttempt::Session {
                        attempt: attempt.clone(),
                        session_id,
                        model: self.model.clone(),
                    },
                ]
            }
            Line::Said(piece) => {
                self.answer.push_str(&piece);
                piece
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| log(l.to_string()))
                    .collect()
            }
            Line::ToolUse {
                name,
                summary,
                input,
            } => {
                self.tools += 1;
                self.calls.push(ToolCall {
                    tool: name.clone(),
                    input,
                });
                self.answer.clear();
                let mut message = format!("tool {}: {name}", self.tools);
                tidewright_core::truncate_at_char_boundary(&mut message, 200);
                vec![
                    log(format!("tool: {name} {summary}")),
                    FromAttempt::Progress {
                        attempt: attempt.clone(),
                        fraction: 0.0,
                        message: redactor.redact(message),
                    },
                ]
            }
            Line::ToolResult { status } => vec![log(format!("  ({status})"))],
            Line::Result(end) => {
                let cost = self.cost_of(&end.usage);
                self.end = Some(end);
                vec![FromAttempt::Spend {
                    attempt: attempt.clone(),
                    cost,
                }]
            }
            Line::Warning { message, error } => {
                let line = log(format!("gemini: {message}"));
                if message == LOOP_DETECTED {
                    self.looped = true;
                } else if error {
                    self.stopped.get_or_insert(message);
                }
                vec![line]
            }
            Line::Other => Vec::new(),
        }
    }
}

impl AgentStream for GeminiRun {
    const SPEND_IN_TRANSCRIPT: bool = true;

    fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The `result` line's tokens; before it, this run's responses as the
    /// transcript recorded them.
    fn spent(&self) -> Cost {
        if let Some(end) = &self.end {
            return self.cost_of(&end.usage);
        }
        let mut usage = Usage::default();
        for response in self.responses.values() {
            usage.add(response);
        }
        self.cost_of(&usage)
    }

    /// A `gemini` message with its `tokens`: `input` counts the cached
    /// input too, as the `result` line's do.
    fn read_transcript(&mut self, line: &str) -> bool {
        let Ok(record) = serde_json::from_str::<Value>(line) else {
            return false;
        };
        let (Some(id), Some(tokens)) = (record["id"].as_str(), record["tokens"].as_object()) else {
            return false;
        };
        if record["type"] != "gemini" {
            return false;
        }
        let count = |name: &str| tokens.get(name).and_then(Value::as_u64).unwrap_or(0);
        let usage = Usage {
            input_tokens: count("input"),
            cached_input_tokens: count("cached"),
            output_tokens: count("output"),
        };
        self.responses.insert(id.to_string(), usage.clone()) != Some(usage)
    }

    /// Google's 429 is the provider's limit. The pinned CLI words it as the
    /// API's message followed by its own sentence for a 429 (`Please wait
    /// and try again later. To increase your limits, …`), and names the
    /// API's `RetryInfo` as `Suggested retry after 37s.`: that is the reset.
    /// A daily quota names none, and the pool backs off.
    fn limit(&self, error: &str) -> Option<Limit> {
        let said = [error, self.end.as_ref().map_or("", |e| e.error.as_str())];
        let text = said.iter().find(|t| is_limit(t))?;
        let retry = retry_after(text);
        Some(Limit {
            reset: retry.map(|seconds| {
                tidewright_core::calendar::now_micros() + (seconds * 1_000_000.0) as i64
            }),
            signal: match retry {
                Some(seconds) => format!("status 429, retry after {seconds}s"),
                None => "status 429".into(),
            },
        })
    }

    fn api_error_line(&self, limit: Option<&Limit>) -> Option<String> {
        if let Some(limit) = limit {
            return Some(paused(tidewright_core::GEMINI_CLI, limit));
        }
        let end = self.end.as_ref().filter(|e| !e.success)?;
        Some(format!("the run failed: {}", end.error))
    }
}

/// The CLI's sentence after any 429 it reports (for an API key), or the
/// API's status name for one.
fn is_limit(text: &str) -> bool {
    text.contains("Please wait and try again later. To increase your limits")
        || text.contains("RESOURCE_EXHAUSTED")
}

/// Seconds from `Suggested retry after 37s.` (Google's `RetryInfo`, which
/// the CLI repeats), as a duration in seconds (`37s`, `1.5s`).
fn retry_after(text: &str) -> Option<f64> {
    let (_, after) = text.rsplit_once("Suggested retry after ")?;
    let seconds: f64 = after
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?
        .trim_end_matches('.')
        .parse()
        .ok()?;
    after
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
        .starts_with('s')
        .then_some(seconds)
        .filter(|s| s.is_finite() && *s >= 0.0)
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
            items_of_fixture(&mut GeminiRun::default(), "gemini", "tool-then-answer"),
            vec![
                SessionItem::Prompt {
                    text: "Write hello.txt".into()
                },
                SessionItem::Call {
                    id: "write_file__write_file_1795680604332_0".into(),
                    tool: "write_file".into(),
                    input: r#"{"content":"hello from gemini\n","file_path":"hello.txt"}"#.into(),
                },
                SessionItem::Output {
                    id: "write_file__write_file_1795680604332_0".into(),
                    output: "success".into(),
                    error: false,
                },
                SessionItem::Text {
                    text: "Wrote hello.txt.".into()
                },
            ]
        );
    }

    /// The pinned CLI's stream of a run, recorded by
    /// `tests/tests/agent_fixtures.rs` against the mock Gemini API
    /// (`TIDEWRIGHT_RECORD_FIXTURES=1`); never written by hand.
    fn replay(name: &str) -> (GeminiRun, Vec<String>) {
        let mut run = GeminiRun::new("gemini-2.5-pro", Prices::gemini("gemini-2.5-pro"));
        let logs = crate::runtime::process::replay_fixture(&mut run, "gemini", name);
        (run, logs)
    }

    /// The warning the pinned CLI streams when its loop detection stops
    /// its turn (an `error` event of severity `warning`), then a `result`
    /// of success: read as a loop, and logged; the error it streams at its
    /// session's turn limit is read as what stopped the turn.
    #[test]
    fn the_clis_loop_detection_and_turn_limit_are_read() {
        let mut run = GeminiRun::new("gemini-2.5-pro", Prices::gemini("gemini-2.5-pro"));
        let key = tidewright_core::AttemptKey {
            task_id: "t".into(),
            step_id: "s".into(),
            attempt: 1,
        };
        let redactor = Redactor::default();
        let warning = r#"{"type":"error","timestamp":"2026-11-27T16:40:00.000Z","severity":"warning","message":"Loop detected, stopping execution"}"#;
        let reports = run.read(warning, &key, &redactor);
        assert!(run.looped);
        assert!(
            matches!(&reports[..], [FromAttempt::Log { line, .. }] if line == "gemini: Loop detected, stopping execution"),
            "{reports:?}"
        );
        assert_eq!(run.stopped, None, "a warning");
        // Its session's turn limit is an error that stops the turn short.
        let limit = r#"{"type":"error","timestamp":"2026-11-27T16:40:00.000Z","severity":"error","message":"Maximum session turns exceeded"}"#;
        let mut run = GeminiRun::new("gemini-2.5-pro", Prices::gemini("gemini-2.5-pro"));
        run.read(limit, &key, &redactor);
        assert!(!run.looped);
        assert_eq!(
            run.stopped.as_deref(),
            Some("Maximum session turns exceeded")
        );
    }

    #[test]
    fn the_pinned_clis_run_reads_as_its_session_tool_call_answer_and_usage() {
        let (mut run, logs) = replay("tool-then-answer");
        assert!(!run.session_id.is_empty());
        // The tool call, with its whole input, for the stall policy.
        let calls = run.take_tool_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].tool, "write_file");
        assert_eq!(calls[0].input["file_path"], "hello.txt");
        assert!(run.take_tool_calls().is_empty(), "taken once");
        assert_eq!(run.answer, "Wrote hello.txt.");
        let end = run.end.clone().expect("a result");
        assert!(end.success);
        // Two model calls of the mock's 100 in (10 cached) and 20 out.
        assert_eq!(
            end.usage,
            Usage {
                input_tokens: 200,
                cached_input_tokens: 20,
                output_tokens: 40,
            }
        );
        assert!(
            logs.iter()
                .any(|l| l.starts_with("tool: write_file ") && l.contains("file_path=hello.txt")),
            "{logs:#?}"
        );
        assert!(run.spent().usd > 0.0);
    }

    #[test]
    fn the_pinned_clis_429s_are_limits_with_their_retry_and_its_500_a_failure() {
        let before = tidewright_core::calendar::now_micros();
        let (run, _) = replay("api-429");
        let error = run.end.clone().expect("a result").error;
        let limit = run.limit(&error).expect("a 429 is a limit");
        assert_eq!(limit.signal, "status 429, retry after 37s");
        let reset = limit.reset.expect("the retry names a reset");
        assert!(reset >= before + 37_000_000, "{reset} vs {before}");
        assert!(reset < before + 60_000_000, "{reset} vs {before}");

        for name in ["api-429-daily", "api-429-bare"] {
            let (run, _) = replay(name);
            let error = run.end.clone().expect("a result").error;
            let limit = run.limit(&error).expect("a 429 is a limit");
            assert_eq!((name, limit.signal.as_str()), (name, "status 429"));
            assert_eq!(limit.reset, None, "{name}");
        }

        let (run, _) = replay("api-500");
        let end = run.end.clone().expect("a result");
        assert!(!end.success);
        assert_eq!(run.limit(&end.error), None);
        let line = run.api_error_line(None).expect("a failure line");
        assert!(line.contains("An internal error has occurred."), "{line}");
    }

    #[test]
    fn a_retry_reads_as_seconds_and_a_port_is_not_a_status() {
        assert_eq!(retry_after("x\nSuggested retry after 37s.]"), Some(37.0));
        assert_eq!(retry_after("Suggested retry after 1.5s."), Some(1.5));
        assert_eq!(retry_after("Suggested retry after 500ms."), None);
        assert_eq!(retry_after("no retry here"), None);
        assert!(!is_limit("fetch failed: http://127.0.0.1:42900/v1beta 429"));
    }

    #[test]
    fn a_transcripts_responses_are_counted_once_each_by_their_id() {
        let mut run = GeminiRun::new("gemini-2.5-pro", Prices::gemini("gemini-2.5-pro"));
        let transcript = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/gemini/tool-then-answer.session.jsonl"),
        )
        .expect("the recorded transcript");
        let grew: Vec<bool> = transcript.lines().map(|l| run.read_transcript(l)).collect();
        // Two responses, the first written again with its tool call: each
        // counted once, and a line that adds nothing is not growth.
        assert_eq!(grew.iter().filter(|g| **g).count(), 2, "{grew:?}");
        let spent = run.spent();
        assert_eq!(
            (
                spent.input_tokens + spent.cache_read_tokens,
                spent.output_tokens
            ),
            (200, 40)
        );
        assert_eq!(
            spent,
            run.cost_of(&Usage {
                input_tokens: 200,
                cached_input_tokens: 20,
                output_tokens: 40,
            })
        );
    }
}
