//! A mock of the Anthropic Messages API for the claude-code tests: the real
//! Claude Code CLI talks to it over loopback (`ANTHROPIC_BASE_URL`). Each
//! streamed request gets the next scripted reply as server-sent events
//! (`message_start`, `content_block_*` with text or `tool_use` input deltas,
//! `message_delta` with usage, `message_stop`), or an error status. Every
//! request body is kept for the test to read.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

/// Tokens each streamed reply reports using.
pub const INPUT_TOKENS: u64 = 100;
pub const OUTPUT_TOKENS: u64 = 20;
pub const CACHE_READ_TOKENS: u64 = 10;
pub const CACHE_CREATION_TOKENS: u64 = 5;

#[derive(Debug, Clone)]
pub enum Reply {
    /// A tool call. `{cwd}` in string values becomes the CLI's working
    /// directory (the step's workspace), as the system prompt states it,
    /// and `{result[N].field}` that field of the Nth tool result so far.
    Tool {
        name: String,
        input: Value,
    },
    Text(String),
    /// An error status with the API's JSON error body.
    Error {
        status: u16,
        message: String,
    },
    /// A limit as the API answers it: `status` (429) with the error body,
    /// `retry-after` and the `anthropic-ratelimit-*-reset` headers naming
    /// `resets_at` (unix seconds). To a subscription's token (`Authorization:
    /// Bearer sk-ant-oat...`) it adds the unified headers subscription
    /// accounts get: status `rejected`, the reset, the five-hour window.
    Limited {
        status: u16,
        message: String,
        resets_at: i64,
    },
    /// A 429 whose `retry-after` (and resets) are `seconds` from when it
    /// is answered.
    RetryAfter {
        seconds: i64,
    },
    /// Starts the stream and never finishes it.
    Hang,
    /// Streams the text and the response's final usage, then holds the
    /// stream open for ever: the client knows what the turn cost, but the
    /// turn never ends.
    TextThenHang(String),
}

impl Reply {
    /// The Write tool, writing `content` to `file` in the workspace.
    pub fn write(file: &str, content: &str) -> Reply {
        Reply::Tool {
            name: "Write".into(),
            input: json!({"file_path": format!("{{cwd}}/{file}"), "content": content}),
        }
    }

    /// The Bash tool, running `command` in the workspace.
    pub fn bash(command: &str) -> Reply {
        Reply::Tool {
            name: "Bash".into(),
            input: json!({"command": command, "description": "a step of the task"}),
        }
    }

    /// The Read tool, reading `file` in the workspace.
    pub fn read(file: &str) -> Reply {
        Reply::Tool {
            name: "Read".into(),
            input: json!({"file_path": format!("{{cwd}}/{file}")}),
        }
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    /// When each request came (microseconds since the epoch).
    arrivals: Vec<i64>,
    /// Scripts by a marker of their conversation (see `start_routed`).
    routes: Vec<(String, VecDeque<Reply>)>,
    requests: Vec<Value>,
    hanging: usize,
}

pub struct MockAnthropic {
    pub url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockAnthropic {
    /// Serves `script` in order on a free loopback port; once it runs out,
    /// every request gets the text "Done.".
    pub async fn start(script: Vec<Reply>) -> anyhow::Result<MockAnthropic> {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let shared = state.clone();
        let app = Router::new().route(
            "/v1/messages",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { answer(&state, &headers, &body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockAnthropic { url, state, server })
    }

    /// Serves each conversation its own script: a request whose first
    /// message holds a route's marker gets that route's next reply (agents
    /// running in parallel interleave their requests); others, and a route
    /// that ran out, get "Done.".
    pub async fn start_routed(routes: Vec<(&str, Vec<Reply>)>) -> anyhow::Result<MockAnthropic> {
        let mock = MockAnthropic::start(Vec::new()).await?;
        mock.with(|s| {
            s.routes = routes
                .into_iter()
                .map(|(marker, replies)| (marker.to_string(), replies.into()))
                .collect();
        });
        Ok(mock)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The bodies of the requests so far.
    pub fn requests(&self) -> Vec<Value> {
        self.with(|s| s.requests.clone())
    }

    /// When each request came, in order (microseconds since the epoch).
    pub fn arrivals(&self) -> Vec<i64> {
        self.with(|s| s.arrivals.clone())
    }

    /// Asserts that the last request resumed a session: it carried the
    /// earlier conversation (its first `prompt`, and `file`, which a tool
    /// touched), and its last message is a tool's result holding `found`
    /// (what an earlier attempt wrote there).
    pub fn assert_resumed(&self, prompt: &str, file: &str, found: &str) {
        let requests = self.requests();
        let last = requests.last().expect("a request");
        let history = last["messages"].to_string();
        assert!(
            history.contains(prompt) && history.contains(file),
            "the earlier conversation: {history}"
        );
        let read_back = last["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| m["content"].to_string())
            .unwrap_or_default();
        assert!(
            read_back.contains("tool_result") && read_back.contains(found),
            "the tool found what the earlier attempt wrote: {read_back}"
        );
    }

    /// Requests held open by a `Hang` reply.
    pub fn hanging(&self) -> usize {
        self.with(|s| s.hanging)
    }
}

fn answer(state: &Mutex<State>, headers: &HeaderMap, body: &[u8]) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let streamed = request["stream"].as_bool().unwrap_or(false);
    let model = request["model"]
        .as_str()
        .unwrap_or("claude-mock")
        .to_string();
    let seen = Seen {
        cwd: working_directory(&request).unwrap_or_default(),
        results: tool_results(&request),
    };
    let first_message = request["messages"][0]["content"].to_string();
    let reply = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.requests.push(request);
        state.arrivals.push(tidewright_api::convert::now_micros());
        let routed = state
            .routes
            .iter_mut()
            .find(|(marker, _)| first_message.contains(marker.as_str()))
            .map(|(_, replies)| replies.pop_front());
        let reply = match routed {
            Some(reply) => reply,
            None => state.script.pop_front(),
        }
        .unwrap_or_else(|| Reply::Text("Done.".into()));
        if matches!(reply, Reply::Hang | Reply::TextThenHang(_)) {
            state.hanging += 1;
        }
        match reply {
            Reply::RetryAfter { seconds } => Reply::Limited {
                status: 429,
                message: "mock: rate limited".into(),
                resets_at: tidewright_api::convert::now_micros() / 1_000_000 + seconds,
            },
            reply => reply,
        }
    };
    if let Reply::Error { status, message }
    | Reply::Limited {
        status, message, ..
    } = &reply
    {
        let kind = match *status {
            429 => "rate_limit_error",
            529 => "overloaded_error",
            500.. => "api_error",
            _ => "invalid_request_error",
        };
        let body = json!({"type": "error", "error": {"type": kind, "message": message}});
        let mut answer = response(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "application/json",
            Body::from(body.to_string()),
        );
        if let Reply::Limited { resets_at, .. } = &reply {
            let subscription = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer sk-ant-oat"));
            limit_headers(answer.headers_mut(), *resets_at, subscription);
        }
        return answer;
    }
    if !streamed {
        // One JSON message: what the planner asks for.
        let (content, stop_reason) = match &reply {
            Reply::Tool { name, input } => (
                json!([{"type": "tool_use", "id": format!("toolu_{}", ulid_like()),
                        "name": name, "input": substitute(input, &seen)}]),
                "tool_use",
            ),
            Reply::Text(text) => (json!([{"type": "text", "text": text}]), "end_turn"),
            // Headers, then a body that never comes.
            Reply::Hang
            | Reply::TextThenHang(_)
            | Reply::Error { .. }
            | Reply::Limited { .. }
            | Reply::RetryAfter { .. } => {
                return response(
                    StatusCode::OK,
                    "application/json",
                    Body::from_stream(tokio_stream::pending::<Result<Bytes, Infallible>>()),
                );
            }
        };
        let body = json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content,
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        });
        return response(
            StatusCode::OK,
            "application/json",
            Body::from(body.to_string()),
        );
    }
    let events = events(&reply, &model, &seen);
    let head = tokio_stream::iter(events.into_iter().map(Ok::<Bytes, Infallible>));
    let body = if matches!(reply, Reply::Hang | Reply::TextThenHang(_)) {
        Body::from_stream(head.chain(tokio_stream::pending()))
    } else {
        Body::from_stream(head)
    };
    response(StatusCode::OK, "text/event-stream", body)
}

/// The headers the API sends with a limit that resets at `resets_at`
/// (unix seconds).
fn limit_headers(headers: &mut HeaderMap, resets_at: i64, subscription: bool) {
    let now = tidewright_api::convert::now_micros() / 1_000_000;
    let rfc3339 = tidewright_api::view::format_utc(resets_at * 1_000_000);
    let mut set = |name: &str, value: String| {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            headers.insert(name, value);
        }
    };
    set("retry-after", (resets_at - now).max(1).to_string());
    for limit in ["requests", "tokens", "input-tokens", "output-tokens"] {
        set(
            &format!("anthropic-ratelimit-{limit}-reset"),
            rfc3339.clone(),
        );
    }
    if subscription {
        set("anthropic-ratelimit-unified-status", "rejected".into());
        set("anthropic-ratelimit-unified-reset", resets_at.to_string());
        set(
            "anthropic-ratelimit-unified-representative-claim",
            "five_hour".into(),
        );
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", content_type.parse().expect("header"));
    // The CLI retries 5xx answers unless told not to.
    headers.insert("x-should-retry", "false".parse().expect("header"));
    response
}

/// The stream for one reply, as SSE frames.
fn events(reply: &Reply, model: &str, seen: &Seen) -> Vec<Bytes> {
    let frame = |event: &str, data: Value| Bytes::from(format!("event: {event}\ndata: {data}\n\n"));
    let mut frames = vec![frame(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_{}", ulid_like()), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1,
                      "cache_read_input_tokens": CACHE_READ_TOKENS,
                      "cache_creation_input_tokens": CACHE_CREATION_TOKENS},
        }}),
    )];
    let stop_reason = match reply {
        Reply::Hang | Reply::Error { .. } | Reply::Limited { .. } | Reply::RetryAfter { .. } => {
            return frames;
        }
        Reply::Text(text) | Reply::TextThenHang(text) => {
            frames.push(frame(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}),
            ));
            frames.push(frame(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": text}}),
            ));
            "end_turn"
        }
        Reply::Tool { name, input } => {
            let input = substitute(input, seen);
            frames.push(frame(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "tool_use", "id": format!("toolu_{}", ulid_like()),
                                         "name": name, "input": {}}}),
            ));
            // The input arrives in pieces, as the real API sends it.
            let text = input.to_string();
            let middle = text.len() / 2;
            let cut = (0..=middle)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            for part in [&text[..cut], &text[cut..]] {
                frames.push(frame(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
            "tool_use"
        }
    };
    frames.push(frame(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(frame(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": OUTPUT_TOKENS}}),
    ));
    if !matches!(reply, Reply::TextThenHang(_)) {
        frames.push(frame("message_stop", json!({"type": "message_stop"})));
    }
    frames
}

fn ulid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:024}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What a scripted tool call may name of the conversation so far: the
/// CLI's working directory, and what its earlier tool calls answered.
struct Seen {
    cwd: String,
    /// Each tool result of the conversation, in order: its text, as JSON
    /// when it is.
    results: Vec<Value>,
}

/// A scripted tool call's input as the conversation fills it in: `{cwd}`
/// becomes the CLI's working directory, and `{result[N].field}` the field
/// of the Nth tool result (from 0), such as a task id a tool answered.
fn substitute(value: &Value, seen: &Seen) -> Value {
    match value {
        Value::String(s) => Value::String(fill(&s.replace("{cwd}", &seen.cwd), &seen.results)),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, seen)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, seen)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn fill(text: &str, results: &[Value]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{result[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "{result[".len()..];
        let parsed = after.split_once("].").and_then(|(n, tail)| {
            let (field, tail) = tail.split_once('}')?;
            let value = &results.get(n.parse::<usize>().ok()?)?[field];
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            Some((value, tail))
        });
        match parsed {
            Some((value, tail)) => {
                out.push_str(&value);
                rest = tail;
            }
            None => {
                out.push_str("{result[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The tool results the request's conversation holds, in order.
fn tool_results(request: &Value) -> Vec<Value> {
    let mut results = Vec::new();
    for message in request["messages"].as_array().into_iter().flatten() {
        for block in message["content"].as_array().into_iter().flatten() {
            if block["type"] != "tool_result" {
                continue;
            }
            let text = match &block["content"] {
                Value::String(text) => text.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                other => other.to_string(),
            };
            results.push(serde_json::from_str(&text).unwrap_or(Value::String(text)));
        }
    }
    results
}

fn working_directory(request: &Value) -> Option<String> {
    const MARKER: &str = "Primary working directory: ";
    match request {
        Value::String(s) => s.find(MARKER).map(|at| {
            s[at + MARKER.len()..]
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        }),
        Value::Array(items) => items.iter().find_map(working_directory),
        Value::Object(map) => map.values().find_map(working_directory),
        _ => None,
    }
}
