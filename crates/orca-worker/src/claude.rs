//! Reading the Claude Code CLI's `--output-format stream-json` output, one
//! line at a time as it arrives: the session it started, what the agent
//! says and which tools it calls (as log lines and progress), and the final
//! result with its cost. Pure, so every line shape has a test.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// What one line of the stream means to orca.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `system/init`: the session and the model the CLI uses.
    Init { session_id: String, model: String },
    /// An assistant message block: its text, or the tool it calls. `message_id`
    /// tells turns apart (one message may span several lines).
    Assistant { message_id: String, log: String },
    /// `system/api_retry`: the CLI retries an API call.
    ApiRetry(String),
    /// The final line: how the run ended and what it cost.
    Result(Box<RunResult>),
    /// Lines orca has no use for (tool results, other system lines).
    Other,
}

/// The CLI's `result` line, the fields orca keeps.
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
            })
        }
        (Some("result"), _) => serde_json::from_value(value)
            .map(|r| Line::Result(Box::new(r)))
            .map_err(|e| format!("unreadable result line: {e}")),
        _ => Ok(Line::Other),
    }
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
                log: "tool: Write file_path=/w/hello.txt".into()
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
