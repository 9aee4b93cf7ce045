//! A mock of the OpenAI Responses API for the codex tests: the real Codex
//! CLI talks to it over loopback (its `model_providers` entry in the
//! config.toml tidewright writes names the base URL). Each streamed request gets
//! the next scripted reply as server-sent events (`response.created`,
//! `response.output_item.added`, `response.output_text.delta` for text,
//! `response.output_item.done`, `response.completed` with usage), or an
//! error status with the API's JSON error body. Every request body is kept
//! for the test to read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};

/// Tokens each streamed reply reports using.
pub const INPUT_TOKENS: u64 = 100;
pub const CACHED_TOKENS: u64 = 10;
pub const OUTPUT_TOKENS: u64 = 20;

#[derive(Debug, Clone)]
pub enum Reply {
    /// A call of Codex's `exec_command` tool: `cmd` runs in a shell in the
    /// CLI's working directory (the step's workspace).
    Command(String),
    /// A call of the tool `name` with `args` (an MCP server's tool is
    /// `mcp__<server>__<tool>`).
    Tool {
        name: String,
        args: Value,
    },
    Text(String),
    /// An error status with the API's JSON error body.
    Error {
        status: u16,
        message: String,
    },
    /// A limit as the API answers it: 429, `retry-after` in seconds and
    /// the `x-ratelimit-*` headers, and a `rate_limit_exceeded` body.
    Limited {
        message: String,
        retry_after: u64,
    },
    /// Starts the stream and never finishes it.
    Hang,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    /// When each request came (microseconds since the epoch).
    arrivals: Vec<i64>,
    /// Scripts by a marker of their conversation (see `start_routed`).
    routes: Vec<(String, VecDeque<Reply>)>,
    requests: Vec<Value>,
    /// The `Authorization` header of each request.
    keys: Vec<String>,
    hanging: usize,
    next_id: u64,
}

pub struct MockOpenAi {
    /// The base URL, as an OpenAI client takes it (ending in `/v1`).
    pub url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockOpenAi {
    /// Serves `script` in order on a free loopback port; once it runs out,
    /// every request gets the text "Done.".
    pub async fn start(script: Vec<Reply>) -> anyhow::Result<MockOpenAi> {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let shared = state.clone();
        let app = Router::new().route(
            "/v1/responses",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { answer(&state, &headers, &body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockOpenAi { url, state, server })
    }

    /// Serves each conversation its own script: a request whose input
    /// holds a route's marker gets that route's next reply (agents running
    /// in parallel interleave their requests); others, and a route that
    /// ran out, get "Done.".
    pub async fn start_routed(routes: Vec<(&str, Vec<Reply>)>) -> anyhow::Result<MockOpenAi> {
        let mock = MockOpenAi::start(Vec::new()).await?;
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

    /// The `Authorization` header each request carried.
    pub fn keys(&self) -> Vec<String> {
        self.with(|s| s.keys.clone())
    }

    /// Requests held open by a `Hang` reply.
    pub fn hanging(&self) -> usize {
        self.with(|s| s.hanging)
    }
}

/// The user's words in a request: what routes it.
fn user_text(request: &Value) -> String {
    request["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["role"] == "user")
        .map(|item| item["content"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn answer(state: &Mutex<State>, headers: &HeaderMap, body: &[u8]) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or("gpt-mock").to_string();
    let asked = user_text(&request);
    let (reply, n) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.requests.push(request);
        state.arrivals.push(tidewright_api::convert::now_micros());
        let key = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        state.keys.push(key);
        state.next_id += 1;
        let n = state.next_id;
        let routed = state
            .routes
            .iter_mut()
            .find(|(marker, _)| asked.contains(marker.as_str()))
            .map(|(_, replies)| replies.pop_front());
        let reply = match routed {
            Some(reply) => reply,
            None => state.script.pop_front(),
        }
        .unwrap_or_else(|| Reply::Text("Done.".into()));
        if matches!(reply, Reply::Hang) {
            state.hanging += 1;
        }
        (reply, n)
    };
    match reply {
        Reply::Error { status, message } => error(status, "server_error", &message, &[]),
        Reply::Limited {
            message,
            retry_after,
        } => {
            let after = retry_after.to_string();
            let reset = format!("{retry_after}s");
            error(
                429,
                "rate_limit_exceeded",
                &message,
                &[
                    ("retry-after", after.as_str()),
                    ("x-ratelimit-limit-tokens", "30000"),
                    ("x-ratelimit-remaining-tokens", "0"),
                    ("x-ratelimit-reset-tokens", reset.as_str()),
                ],
            )
        }
        Reply::Hang => {
            let created = sse(&json!({
                "type": "response.created",
                "response": {"id": format!("resp_{n}"), "model": model, "status": "in_progress"},
            }));
            let events = futures::stream::once(async move { Ok::<_, std::io::Error>(created) })
                .chain(futures::stream::pending());
            stream(Body::from_stream(events))
        }
        Reply::Command(cmd) => {
            let item = function_call(n, "exec_command", &json!({"cmd": cmd}));
            stream(Body::from(completed(n, &model, item, None)))
        }
        Reply::Tool { name, args } => {
            let item = function_call(n, &name, &args);
            stream(Body::from(completed(n, &model, item, None)))
        }
        Reply::Text(text) => {
            let item = json!({
                "type": "message",
                "id": format!("msg_{n}"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            });
            stream(Body::from(completed(n, &model, item, Some(&text))))
        }
    }
}

/// A `function_call` output item: the model calls `name` with `args`; a
/// tool of a namespace (`mcp__tidewright/state_put`) is called by its own name
/// with its namespace beside it.
fn function_call(n: u64, name: &str, args: &Value) -> Value {
    let mut call = json!({
        "type": "function_call",
        "id": format!("fc_{n}"),
        "call_id": format!("call_{n}"),
        "name": name,
        "arguments": args.to_string(),
        "status": "completed",
    });
    if let Some((namespace, tool)) = name.split_once('/') {
        call["namespace"] = json!(namespace);
        call["name"] = json!(tool);
    }
    call
}

/// A whole response of one output item, as server-sent events.
fn completed(n: u64, model: &str, item: Value, text: Option<&str>) -> String {
    let id = format!("resp_{n}");
    let mut added = item.clone();
    if let Some(content) = added.get_mut("content") {
        *content = json!([]);
    }
    let mut events = vec![
        json!({"type": "response.created", "sequence_number": 0,
               "response": {"id": id, "model": model, "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "sequence_number": 1,
               "output_index": 0, "item": added}),
    ];
    if let Some(text) = text {
        events.push(
            json!({"type": "response.output_text.delta", "sequence_number": 2,
                           "item_id": item["id"], "output_index": 0, "content_index": 0,
                           "delta": text}),
        );
    }
    events.push(
        json!({"type": "response.output_item.done", "sequence_number": 3,
                       "output_index": 0, "item": item}),
    );
    events.push(json!({"type": "response.completed", "sequence_number": 4,
    "response": {"id": id, "model": model, "status": "completed", "output": [item],
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "output_tokens": OUTPUT_TOKENS,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        }}}));
    events.iter().map(sse).collect()
}

fn sse(event: &Value) -> String {
    format!(
        "event: {}\ndata: {event}\n\n",
        event["type"].as_str().unwrap_or("message")
    )
}

fn stream(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap_or_default()
}

fn error(status: u16, kind: &str, message: &str, headers: &[(&str, &str)]) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": kind}});
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}
