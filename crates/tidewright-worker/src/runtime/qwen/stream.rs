//! Reading Qwen Code's `--output-format stream-json`, one line at a time
//! as it arrives: the session it started (`system`/`init`), what the agent
//! says and which tools it calls (`assistant` messages, each one model
//! response with its usage), what the tools answered (`user` messages),
//! and the `result` line that ends the run. The CLI reports tokens, not
//! dollars: tidewright prices each response as it comes, so a budget stops
//! a run within its turn.

use std::collections::BTreeSet;

use serde_json::Value;
use tidewright_core::{AttemptKey, Cost};

use crate::runtime::agent_stream::{AgentStream, paused};
use crate::runtime::attempt::{FromAttempt, Limit};
use crate::runtime::prices::{Prices, Usage};
use crate::runtime::process::LineReader;
use crate::runtime::repeats::ToolCall;
use crate::secrets::Redactor;

/// Longest tool input summary in a log line.
const SUMMARY_CHARS: usize = 120;

/// The `result` line: how the run ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct End {
    pub success: bool,
    pub result: String,
    /// Why it failed, as the CLI words it (`[API Error: ...]`).
    pub error: String,
    pub num_turns: u64,
}

/// What has been read of one run so far.
#[derive(Debug, Default)]
pub struct QwenRun {
    pub session_id: String,
    pub model: String,
    prices: Option<Prices>,
    /// The responses seen, by message id: each is priced once.
    responses: BTreeSet<String>,
    /// This run's tokens, response by response.
    usage: Usage,
    tools: u32,
    pub end: Option<End>,
    /// The tool calls read and not yet taken.
    calls: Vec<ToolCall>,
}

impl QwenRun {
    pub fn new(model: &str, prices: Prices) -> Self {
        QwenRun {
            model: model.to_string(),
            prices: Some(prices),
            ..QwenRun::default()
        }
    }

    fn cost_of(&self, usage: &Usage) -> Cost {
        Prices::priced_or(self.prices.as_ref(), Prices::openai, &self.model, usage)
    }

    /// One model response: its text and tool calls as log lines, a tool
    /// call as progress, and what the run has spent with it.
    fn assistant(
        &mut self,
        message: &Value,
        attempt: &AttemptKey,
        redactor: &Redactor,
    ) -> Vec<FromAttempt> {
        let log = |line: String| FromAttempt::agent_log(attempt, redactor, line);
        let mut reports = Vec::new();
        for block in message["content"].as_array().into_iter().flatten() {
            match block["type"].as_str() {
                Some("text") => reports.extend(
                    block["text"]
                        .as_str()
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| log(l.to_string())),
                ),
                Some("tool_use") => {
                    self.tools += 1;
                    let name = block["name"].as_str().unwrap_or_default();
                    self.calls.push(ToolCall {
                        tool: name.to_string(),
                        input: block["input"].clone(),
                    });
                    let mut message = format!("tool {}: {name}", self.tools);
                    tidewright_core::truncate_at_char_boundary(&mut message, 200);
                    reports.push(log(format!("tool: {name} {}", summary(&block["input"]))));
                    reports.push(FromAttempt::Progress {
                        attempt: attempt.clone(),
                        fraction: 0.0,
                        message: redactor.redact(message),
                    });
                }
                _ => {}
            }
        }
        let id = message["id"].as_str().unwrap_or_default().to_string();
        let usage = &message["usage"];
        if usage.is_object() && self.responses.insert(id) {
            let count = |name: &str| usage[name].as_u64().unwrap_or(0);
            self.usage.add(&Usage {
                input_tokens: count("input_tokens"),
                cached_input_tokens: count("cache_read_input_tokens"),
                output_tokens: count("output_tokens"),
            });
            reports.push(FromAttempt::Spend {
                attempt: attempt.clone(),
                cost: self.spent(),
            });
        }
        reports
    }

    /// What this run's responses cost: its own, not the session's (a
    /// resumed session's `result` counts its earlier runs too).
    pub fn spent(&self) -> Cost {
        self.cost_of(&self.usage)
    }
}

/// A tool call's input as `key=value` pairs, short.
fn summary(input: &Value) -> String {
    let mut out = String::new();
    for (key, value) in input.as_object().into_iter().flatten() {
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        let first = value.lines().next().unwrap_or_default();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{key}={first}"));
    }
    tidewright_core::truncate_at_char_boundary(&mut out, SUMMARY_CHARS);
    out
}

impl LineReader for QwenRun {
    fn take_tool_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    fn said(&mut self, raw: &str) -> Vec<tidewright_core::session_item::SessionItem> {
        crate::runtime::claude::stream::stream_json_items(raw)
    }

    fn usd(&self) -> f64 {
        AgentStream::spent(self).usd
    }

    fn read(&mut self, raw: &str, attempt: &AttemptKey, redactor: &Redactor) -> Vec<FromAttempt> {
        let log = |line: String| FromAttempt::agent_log(attempt, redactor, line);
        let Ok(value) = serde_json::from_str::<Value>(raw) else {
            // The CLI's own warnings can land on stdout: keep them as logs.
            return vec![log(raw.trim_end().to_string())];
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        match (value["type"].as_str(), value["subtype"].as_str()) {
            (Some("system"), Some("init")) => {
                self.session_id = text(&value["session_id"]);
                let model = text(&value["model"]);
                if !model.is_empty() {
                    self.model = model;
                }
                vec![
                    log(format!(
                        "qwen session {} (model {})",
                        self.session_id, self.model
                    )),
                    FromAttempt::Session {
                        attempt: attempt.clone(),
                        session_id: self.session_id.clone(),
                        model: self.model.clone(),
                    },
                ]
            }
            (Some("assistant"), _) => self.assistant(&value["message"], attempt, redactor),
            (Some("user"), _) => value["message"]["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|block| block["type"] == "tool_result")
                .map(|block| {
                    let status = if block["is_error"] == true {
                        "error"
                    } else {
                        "success"
                    };
                    log(format!("  ({status})"))
                })
                .collect(),
            (Some("result"), _) => {
                self.end = Some(End {
                    success: value["is_error"] != true && value["subtype"] == "success",
                    result: text(&value["result"]),
                    error: text(&value["error"]["message"]),
                    num_turns: value["num_turns"].as_u64().unwrap_or(0),
                });
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

impl AgentStream for QwenRun {
    /// Its prompt is in its command, and the stream does not repeat it.
    const SAYS_PROMPT: bool = false;

    fn session_id(&self) -> &str {
        &self.session_id
    }

    fn spent(&self) -> Cost {
        QwenRun::spent(self)
    }

    /// A 429 is the provider's limit: the CLI words an API's error as
    /// `[API Error: Responses API error 429: ...]`. Its reset is what the worker's model proxy
    /// read from the answer.
    fn limit(&self, error: &str) -> Option<Limit> {
        let said = [error, self.end.as_ref().map_or("", |e| e.error.as_str())];
        said.iter().find(|t| status_of(t) == Some(429))?;
        Some(Limit {
            reset: None,
            signal: "status 429".into(),
        })
    }

    fn api_error_line(&self, limit: Option<&Limit>) -> Option<String> {
        if let Some(limit) = limit {
            return Some(paused(tidewright_core::QWEN_CODE, limit));
        }
        let end = self.end.as_ref().filter(|e| !e.success)?;
        Some(format!("the run failed: {}", end.error))
    }
}

/// The HTTP status an API error names: the first number in what the CLI
/// says after `API Error:` (`[API Error: Responses API error 429: {...}]`).
pub fn status_of(error: &str) -> Option<u16> {
    let (_, after) = error.split_once("API Error:")?;
    let start = after.find(|c: char| c.is_ascii_digit())?;
    let digits: String = after[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .ok()
        .filter(|status| (100..600).contains(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded run's session items: its tool call with its input and
    /// output, then its answer (the prompt is in its command: the worker
    /// says it).
    #[test]
    fn a_recorded_run_makes_its_session_items() {
        use crate::runtime::process::items_of_fixture;
        use tidewright_core::session_item::SessionItem;
        let items = items_of_fixture(&mut QwenRun::default(), "qwen", "tool-then-answer");
        assert!(
            matches!(&items[..], [
            SessionItem::Call { id, tool, input },
            SessionItem::Output { id: answered, output, error: false },
            SessionItem::Text { text },
        ] if id == "call_1" && tool == "write_file" && input.contains("hello from qwen")
            && answered == id && output.starts_with("Successfully created")
            && text == "Wrote hello.txt."),
            "{items:?}"
        );
    }

    /// The pinned CLI's stream of a run, recorded by
    /// `tests/tests/agent_fixtures.rs` against the mock Responses API
    /// (`TIDEWRIGHT_RECORD_FIXTURES=1`); never written by hand.
    fn replay(name: &str) -> (QwenRun, Vec<String>) {
        let mut run = QwenRun::new("gpt-5", Prices::openai("gpt-5"));
        let logs = crate::runtime::process::replay_fixture(&mut run, "qwen", name);
        (run, logs)
    }

    #[test]
    fn the_pinned_clis_run_reads_as_its_session_tools_answer_and_usage() {
        let (mut run, logs) = replay("tool-then-answer");
        assert!(!run.session_id.is_empty());
        // The tool call, with its whole input, for the stall policy.
        let calls = run.take_tool_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].tool, "write_file");
        assert!(
            calls[0].input["file_path"]
                .as_str()
                .is_some_and(|p| p.ends_with("hello.txt"))
        );
        assert!(run.take_tool_calls().is_empty(), "taken once");
        let end = run.end.clone().expect("a result");
        assert!(end.success, "{end:?}");
        assert_eq!(end.result, "Wrote hello.txt.");
        // Two responses of the mock's 100 in (10 cached) and 20 out.
        let spent = run.spent();
        assert_eq!(
            (
                spent.input_tokens,
                spent.cache_read_tokens,
                spent.output_tokens
            ),
            (180, 20, 40)
        );
        assert!(spent.usd > 0.0);
        assert!(
            logs.iter()
                .any(|l| l.starts_with("tool: write_file ") && l.contains("/hello.txt")),
            "{logs:#?}"
        );
    }

    #[test]
    fn the_pinned_clis_429_is_the_providers_limit_and_its_500_a_failure() {
        let (run, _) = replay("api-429");
        let end = run.end.clone().expect("a result");
        assert!(!end.success);
        assert_eq!(status_of(&end.error), Some(429), "{}", end.error);
        assert_eq!(
            run.limit(&end.error).map(|l| l.signal),
            Some("status 429".into())
        );
        let (run, _) = replay("api-500");
        let end = run.end.clone().expect("a result");
        assert!(!end.success);
        assert_eq!(run.limit(&end.error), None, "{}", end.error);
        assert_eq!(
            status_of("[API Error: Responses API error 503: busy]"),
            Some(503)
        );
        assert_eq!(status_of("no status"), None);
    }
}
