//! Reading the Claude Code CLI's `--output-format stream-json` output, one
//! line at a time as it arrives: the session it started, what the agent
//! says and which tools it calls (as log lines and progress), and the final
//! result with its cost. Pure, so every line shape has a test.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use tidewright_core::session_item::SessionItem;

use crate::runtime::repeats::ToolCall;

/// What one line of the stream means to tidewright.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `system/init`: the session and the model the CLI uses.
    Init { session_id: String, model: String },
    /// An assistant message block: its text, or the tool it calls. `message_id`
    /// tells turns apart (one message may span several lines).
    Assistant {
        message_id: String,
        log: String,
        calls: Vec<ToolCall>,
    },
    /// `system/api_retry`: the CLI retries an API call.
    ApiRetry(String),
    /// A model response began (`stream_event` `message_start`, with
    /// `--include-partial-messages`): its model and the usage known so far
    /// (input, cache, the first output token).
    TurnStarted { model: String, usage: Usage },
    /// A model response ended (`message_delta`): its usage, output tokens
    /// final.
    TurnUsage(Usage),
    /// `rate_limit_event`: the account's limit was hit (`rejected`), with
    /// its reset (microseconds since the epoch) when the CLI knows it, and
    /// which limit it was (`five_hour`, `seven_day`, ...). Events that only
    /// report usage (`allowed`, `allowed_warning`) are [`Line::Other`].
    RateLimited(LimitEvent),
    /// A user message written to the CLI's streaming input, echoed back
    /// (`--replay-user-messages`) as the session takes it: the prompt, or
    /// a person's message steering the agent.
    Replayed(String),
    /// The final line of a turn: how it ended and what it cost.
    Result(Box<RunResult>),
    /// Lines tidewright has no use for (tool results, other system lines).
    Other,
}

/// A `rate_limit_event` whose status is `rejected`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LimitEvent {
    /// `resetsAt`, in microseconds since the epoch.
    pub resets_at: Option<i64>,
    /// `rateLimitType`; empty when the event names none.
    pub limit_type: String,
}

/// The CLI's `result` line, the fields tidewright keeps.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RunResult {
    pub subtype: String,
    pub is_error: bool,
    pub result: String,
    pub session_id: String,
    pub num_turns: u32,
    pub duration_ms: u64,
    pub duration_api_ms: u64,
    pub total_cost_usd: f64,
    pub usage: Usage,
    #[serde(rename = "modelUsage")]
    pub model_usage: BTreeMap<String, ModelUsage>,
    pub permission_denials: Vec<Value>,
    /// The HTTP status of the API error that ended the run (429, 529,
    /// 500, ...). CLIs since 2.1 set it; its message text changes between
    /// releases, this field does not.
    pub api_error_status: Option<u16>,
    /// The API's error type (`rate_limit_error`, `overloaded_error`, ...).
    pub api_error_type: String,
    /// The CLI's own name for the error (`usage_limit_reached`, ...).
    pub api_error: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ModelUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    #[serde(rename = "costUSD")]
    pub cost_usd: f64,
}

impl RunResult {
    /// Why the run failed, or `None` when it succeeded. API errors come
    /// with `subtype: "success"` and `is_error: true`, so both are read.
    pub fn failure(&self, max_turns: Option<u32>) -> Option<String> {
        if self.subtype == "error_max_turns" {
            return Some(match max_turns {
                Some(max) => format!("the agent used all {max} turns without finishing"),
                None => "the agent used all its turns without finishing".into(),
            });
        }
        if self.is_error || self.subtype.starts_with("error") {
            let message = self.result.trim();
            return Some(if message.is_empty() {
                format!("the claude CLI reported an error ({})", self.subtype)
            } else {
                message.to_string()
            });
        }
        None
    }

    /// The step's output: what the agent answered and what the run was.
    pub fn output(&self) -> Value {
        serde_json::json!({
            "result": self.result,
            "sessionId": self.session_id,
            "numTurns": self.num_turns,
            "durationMs": self.duration_ms,
            "durationApiMs": self.duration_api_ms,
            "permissionDenials": self.permission_denials,
        })
    }
}

impl Usage {
    /// Each count the larger of the two: a response's usage grows as it
    /// streams, and a later report repeats what an earlier one said.
    pub fn max(&self, other: &Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.max(other.input_tokens),
            output_tokens: self.output_tokens.max(other.output_tokens),
            cache_read_input_tokens: self
                .cache_read_input_tokens
                .max(other.cache_read_input_tokens),
            cache_creation_input_tokens: self
                .cache_creation_input_tokens
                .max(other.cache_creation_input_tokens),
        }
    }
}

/// Dollars per million tokens of one model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
}

impl Prices {
    /// Anthropic's list prices by model family; a cache write costs 1.25
    /// times input, a cache read a tenth of it. An unknown model is priced
    /// as Sonnet. The CLI's own total, at the end of a run, replaces this
    /// estimate; it is what budgets count while the run goes on.
    pub fn of(model: &str) -> Prices {
        let model = model.to_ascii_lowercase();
        let (input, output) = if model.contains("opus-4-5") || model.contains("opus-4.5") {
            (5.0, 25.0)
        } else if model.contains("opus") {
            (15.0, 75.0)
        } else if model.contains("haiku-4") {
            (1.0, 5.0)
        } else if model.contains("3-5-haiku") {
            (0.8, 4.0)
        } else if model.contains("haiku") {
            (0.25, 1.25)
        } else {
            (3.0, 15.0)
        };
        Prices { input, output }
    }

    /// What `usage` costs at these prices.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let tokens = |n: u64| n as f64 / 1e6;
        tokens(usage.input_tokens) * self.input
            + tokens(usage.output_tokens) * self.output
            + tokens(usage.cache_creation_input_tokens) * self.input * 1.25
            + tokens(usage.cache_read_input_tokens) * self.input * 0.1
    }
}

/// Longest tool input summary in a log line.
const SUMMARY_CHARS: usize = 120;

/// Reads one line. A line that is not JSON is an error the caller logs (the
/// CLI's own warnings can land on stdout); it does not end the run.
pub fn parse_line(line: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match (value["type"].as_str(), value["subtype"].as_str()) {
        (Some("system"), Some("init")) => Ok(Line::Init {
            session_id: text(&value["session_id"]),
            model: text(&value["model"]),
        }),
        (Some("system"), Some("api_retry")) => {
            let attempt = value["attempt"].as_u64().unwrap_or(0);
            let error = value["error"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    value["error_status"]
                        .as_u64()
                        .map(|s| format!("status {s}"))
                })
                .unwrap_or_else(|| "an API error".into());
            Ok(Line::ApiRetry(format!(
                "API call failed ({error}); retry {attempt}"
            )))
        }
        (Some("assistant"), _) => {
            let message = &value["message"];
            let logs: Vec<String> = message["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(describe_block)
                .collect();
            if logs.is_empty() {
                return Ok(Line::Other);
            }
            Ok(Line::Assistant {
                message_id: text(&message["id"]),
                log: logs.join("\n"),
                calls: tool_calls(&message["content"]),
            })
        }
        (Some("user"), _) if value["isReplay"].as_bool() == Some(true) => {
            let said: Vec<String> = value["message"]["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|block| block["text"].as_str().map(str::to_string))
                .collect();
            Ok(Line::Replayed(said.join("\n")))
        }
        (Some("rate_limit_event"), _) => {
            let info = &value["rate_limit_info"];
            if info["status"].as_str() != Some("rejected") {
                return Ok(Line::Other);
            }
            // Seconds since the epoch; anything else is no reset time.
            let resets_at = info["resetsAt"]
                .as_i64()
                .filter(|s| (1_000_000_000..10_000_000_000).contains(s))
                .map(|s| s * 1_000_000);
            Ok(Line::RateLimited(LimitEvent {
                resets_at,
                limit_type: text(&info["rateLimitType"]),
            }))
        }
        (Some("stream_event"), _) => {
            let event = &value["event"];
            let usage = |v: &Value| serde_json::from_value::<Usage>(v.clone()).unwrap_or_default();
            Ok(match event["type"].as_str() {
                Some("message_start") => Line::TurnStarted {
                    model: text(&event["message"]["model"]),
                    usage: usage(&event["message"]["usage"]),
                },
                Some("message_delta") => Line::TurnUsage(usage(&event["usage"])),
                _ => Line::Other,
            })
        }
        (Some("result"), _) => serde_json::from_value(value)
            .map(|r| Line::Result(Box::new(r)))
            .map_err(|e| format!("unreadable result line: {e}")),
        _ => Ok(Line::Other),
    }
}

/// The `tool_use` blocks of a message's `content` (Claude's and Qwen Code's
/// stream-json): each tool and its input.
pub(crate) fn tool_calls(content: &Value) -> Vec<ToolCall> {
    let blocks = content.as_array().into_iter().flatten();
    blocks
        .filter(|block| block["type"] == "tool_use")
        .map(|block| ToolCall {
            tool: block["name"].as_str().unwrap_or("?").to_string(),
            input: block["input"].clone(),
        })
        .collect()
}

/// The session items of one line of a stream-json stream (Claude Code's,
/// and Qwen Code's, which keeps its shape): a user line's messages (the
/// prompt and people's messages, replayed as the session took them) and
/// tool results, an assistant line's text and tool calls.
pub(crate) fn stream_json_items(raw: &str) -> Vec<SessionItem> {
    let Ok(value) = serde_json::from_str::<Value>(raw) else {
        return Vec::new();
    };
    let content = &value["message"]["content"];
    let user = match value["type"].as_str() {
        Some("user") => true,
        Some("assistant") => false,
        _ => return Vec::new(),
    };
    // A user message may be one string rather than blocks.
    if let Some(text) = content.as_str() {
        return match user {
            true => vec![SessionItem::Prompt { text: text.into() }],
            false => vec![SessionItem::Text { text: text.into() }],
        };
    }
    let blocks = content.as_array().into_iter().flatten();
    blocks
        .filter_map(|block| match (user, block["type"].as_str()?) {
            (true, "text") => Some(SessionItem::Prompt {
                text: block["text"].as_str()?.to_string(),
            }),
            (false, "text") => {
                let text = block["text"].as_str()?.trim();
                (!text.is_empty()).then(|| SessionItem::Text { text: text.into() })
            }
            (false, "tool_use") => Some(SessionItem::Call {
                id: block["id"].as_str().unwrap_or_default().to_string(),
                tool: block["name"].as_str().unwrap_or("?").to_string(),
                input: block["input"].to_string(),
            }),
            (true, "tool_result") => Some(SessionItem::Output {
                id: block["tool_use_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                output: result_text(&block["content"]),
                error: block["is_error"].as_bool() == Some(true),
            }),
            _ => None,
        })
        .collect()
}

/// A tool result's content: a string, or blocks whose texts are joined
/// (an image is named, not kept).
fn result_text(content: &Value) -> String {
    if let Some(text) = content.as_str() {
        return text.to_string();
    }
    let blocks = content.as_array().into_iter().flatten();
    blocks
        .map(|block| match block["type"].as_str() {
            Some("text") => block["text"].as_str().unwrap_or_default().to_string(),
            Some(other) => format!("[{other}]"),
            None => String::new(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` blocks as they are; `tool_use` as `tool: NAME key=value`, with the
/// first string argument (usually the path or the command) to say what.
fn describe_block(block: &Value) -> Option<String> {
    match block["type"].as_str()? {
        "text" => {
            let text = block["text"].as_str()?.trim();
            (!text.is_empty()).then(|| text.to_string())
        }
        "tool_use" => {
            let name = block["name"].as_str().unwrap_or("?");
            // What the tool acts on, when it has one of the usual arguments;
            // else its first string argument.
            let summary = block["input"]
                .as_object()
                .and_then(|input| {
                    [
                        "file_path",
                        "path",
                        "command",
                        "pattern",
                        "url",
                        "description",
                    ]
                    .iter()
                    .find_map(|k| input.get(*k).and_then(Value::as_str).map(|v| (*k, v)))
                    .or_else(|| {
                        input
                            .iter()
                            .find_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                    })
                    .map(|(k, v)| format!(" {k}={v}"))
                })
                .unwrap_or_default();
            let summary: String = summary
                .replace('\n', " ")
                .chars()
                .take(SUMMARY_CHARS)
                .collect();
            Some(format!("tool: {name}{summary}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_json_lines_make_session_items() {
        let prompt = r#"{"type":"user","isReplay":true,"message":{"role":"user","content":[{"type":"text","text":"fix it"}]}}"#;
        assert_eq!(
            stream_json_items(prompt),
            vec![SessionItem::Prompt {
                text: "fix it".into()
            }]
        );
        let said = r#"{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"Looking."},{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]}}"#;
        assert_eq!(
            stream_json_items(said),
            vec![
                SessionItem::Text {
                    text: "Looking.".into()
                },
                SessionItem::Call {
                    id: "t1".into(),
                    tool: "Bash".into(),
                    input: r#"{"command":"ls"}"#.into()
                }
            ]
        );
        let result = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":[{"type":"text","text":"no such file"},{"type":"image"}]}]}}"#;
        assert_eq!(
            stream_json_items(result),
            vec![SessionItem::Output {
                id: "t1".into(),
                output: "no such file\n[image]".into(),
                error: true
            }]
        );
        let other = r#"{"type":"result","subtype":"success","result":"done"}"#;
        assert!(stream_json_items(other).is_empty());
        assert!(stream_json_items("not json").is_empty());
    }

    #[test]
    fn init_assistant_and_retry_lines() {
        let init = r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-x","tools":["Write"]}"#;
        assert_eq!(
            parse_line(init),
            Ok(Line::Init {
                session_id: "s-1".into(),
                model: "claude-x".into()
            })
        );
        let tool = r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"t","name":"Write","input":{"file_path":"/w/hello.txt","content":"hi\nthere"}}]}}"#;
        assert_eq!(
            parse_line(tool),
            Ok(Line::Assistant {
                message_id: "m1".into(),
                log: "tool: Write file_path=/w/hello.txt".into(),
                calls: vec![ToolCall {
                    tool: "Write".into(),
                    input: serde_json::json!({"file_path": "/w/hello.txt", "content": "hi\nthere"}),
                }],
            })
        );
        let text = r#"{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"Done.\n"}]}}"#;
        assert!(matches!(parse_line(text), Ok(Line::Assistant { log, .. }) if log == "Done."));
        let retry = r#"{"type":"system","subtype":"api_retry","attempt":2,"error_status":529}"#;
        assert_eq!(
            parse_line(retry),
            Ok(Line::ApiRetry(
                "API call failed (status 529); retry 2".into()
            ))
        );
        let user = r#"{"type":"user","message":{"content":[{"type":"tool_result"}]}}"#;
        assert_eq!(parse_line(user), Ok(Line::Other));
        assert!(parse_line("warning: not json").is_err());
    }

    #[test]
    fn a_rejected_rate_limit_event_is_a_limit_with_its_reset() {
        let rejected = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1767225600,"rateLimitType":"five_hour"},"uuid":"u","session_id":"s"}"#;
        assert_eq!(
            parse_line(rejected),
            Ok(Line::RateLimited(LimitEvent {
                resets_at: Some(1_767_225_600_000_000),
                limit_type: "five_hour".into(),
            }))
        );
        let no_time = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected"}}"#;
        assert_eq!(
            parse_line(no_time),
            Ok(Line::RateLimited(LimitEvent::default()))
        );
        let warning = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1767225600,"utilization":0.9}}"#;
        assert_eq!(parse_line(warning), Ok(Line::Other));
    }

    #[test]
    fn partial_messages_carry_each_turns_usage() {
        let start = r#"{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_0","model":"claude-sonnet-4-5","usage":{"input_tokens":100,"output_tokens":1,"cache_read_input_tokens":10,"cache_creation_input_tokens":5}}},"session_id":"s"}"#;
        let Ok(Line::TurnStarted { model, usage }) = parse_line(start) else {
            panic!("a turn start");
        };
        assert_eq!(model, "claude-sonnet-4-5");
        assert_eq!((usage.input_tokens, usage.output_tokens), (100, 1));
        let delta = r#"{"type":"stream_event","event":{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":20}}}"#;
        let Ok(Line::TurnUsage(end)) = parse_line(delta) else {
            panic!("a turn's usage");
        };
        let turn = usage.max(&end);
        assert_eq!((turn.input_tokens, turn.output_tokens), (100, 20));
        // What the CLI itself charges for this turn on Sonnet.
        let usd = Prices::of(&model).cost(&turn);
        assert!((usd - 0.00062175).abs() < 1e-12, "{usd}");
        let other = r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0}}"#;
        assert_eq!(parse_line(other), Ok(Line::Other));
        assert_eq!(Prices::of("claude-opus-4-1-20250805").output, 75.0);
        assert_eq!(Prices::of("claude-haiku-4-5").input, 1.0);
        assert_eq!(Prices::of("some-new-model"), Prices::of("claude-sonnet-4"));
    }

    #[test]
    fn results_succeed_or_say_why_not() {
        let ok = r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","session_id":"s-1","num_turns":2,"duration_ms":595,"duration_api_ms":95,"total_cost_usd":0.0013,"usage":{"input_tokens":200,"output_tokens":25,"cache_read_input_tokens":3,"cache_creation_input_tokens":4},"modelUsage":{"claude-x":{"inputTokens":200,"outputTokens":25,"costUSD":0.0013}},"permission_denials":[]}"#;
        let Ok(Line::Result(result)) = parse_line(ok) else {
            panic!("a result line");
        };
        assert_eq!(result.failure(Some(5)), None);
        assert_eq!(result.total_cost_usd, 0.0013);
        assert_eq!(result.usage.cache_read_input_tokens, 3);
        assert_eq!(result.model_usage["claude-x"].cost_usd, 0.0013);
        assert_eq!(result.output()["result"], "Done.");
        assert_eq!(result.output()["numTurns"], 2);

        // API errors still say `success`; `is_error` is what tells.
        let api = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 400 bad request"}"#;
        let Ok(Line::Result(result)) = parse_line(api) else {
            panic!("a result line");
        };
        assert_eq!(
            result.failure(None).as_deref(),
            Some("API Error: 400 bad request")
        );

        let turns =
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":3}"#;
        let Ok(Line::Result(result)) = parse_line(turns) else {
            panic!("a result line");
        };
        assert_eq!(
            result.failure(Some(3)).as_deref(),
            Some("the agent used all 3 turns without finishing")
        );
    }
}
