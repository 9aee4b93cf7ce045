//! A mock of Google's Gemini API for the gemini-cli tests: the real Gemini
//! CLI talks to it over loopback (`GOOGLE_GEMINI_BASE_URL`). Each streamed
//! request (`:streamGenerateContent?alt=sse`) gets the next scripted reply
//! as one server-sent event: a candidate with a function call or text, and
//! its usage; or an error status with the API's JSON error body. Every
//! request body and its `x-goog-api-key` are kept for the test to read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

/// Tokens each streamed reply reports using.
pub const INPUT_TOKENS: u64 = 100;
pub const CACHED_TOKENS: u64 = 10;
pub const OUTPUT_TOKENS: u64 = 20;

#[derive(Debug, Clone)]
pub enum Reply {
    /// A call of one of the CLI's tools with its arguments, e.g.
    /// `write_file {file_path, content}`.
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
    /// A 429 as Google's API words a broken quota: `RESOURCE_EXHAUSTED`
    /// with the quota (per minute, or per day when `daily`) and a
    /// `RetryInfo` of `retry_after` seconds.
    Limit {
        retry_after: u64,
        daily: bool,
    },
    /// Starts the stream and never finishes it.
    Hang,
}

impl Reply {
    /// The CLI's `write_file` tool, writing `content` to `file`.
    pub fn write(file: &str, content: &str) -> Reply {
        Reply::Tool {
            name: "write_file".into(),
            args: json!({"file_path": file, "content": content}),
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
    keys: Vec<String>,
    /// Requests held open by a `Hang` reply.
    hanging: usize,
}

pub struct MockGemini {
    /// The base URL, as `GOOGLE_GEMINI_BASE_URL` takes it.
    pub url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockGemini {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MockGemini {
    /// Serves `script` in order on a free loopback port; once it runs out,
    /// every request gets the text "Done.".
    pub async fn start(script: Vec<Reply>) -> anyhow::Result<MockGemini> {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let shared = state.clone();
        let app = Router::new().route(
            "/v1beta/models/{call}",
            post(
                move |Path(call): Path<String>, headers: HeaderMap, body: Bytes| {
                    let state = shared.clone();
                    async move { answer(&state, &call, &headers, &body) }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockGemini { url, state, server })
    }

    /// Serves each conversation its own script: a request whose contents
    /// hold a route's marker gets that route's next reply, the first route
    /// that matches in the order given; others get the text "Done.".
    pub async fn start_routed(routes: Vec<(&str, Vec<Reply>)>) -> anyhow::Result<MockGemini> {
        let mock = MockGemini::start(Vec::new()).await?;
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

    /// The bodies of the streamed requests so far.
    pub fn requests(&self) -> Vec<Value> {
        self.with(|s| s.requests.clone())
    }

    /// When each request came, in order (microseconds since the epoch).
    pub fn arrivals(&self) -> Vec<i64> {
        self.with(|s| s.arrivals.clone())
    }

    /// The `x-goog-api-key` each streamed request carried.
    pub fn keys(&self) -> Vec<String> {
        self.with(|s| s.keys.clone())
    }

    /// Requests held open by a `Hang` reply.
    pub fn hanging(&self) -> usize {
        self.with(|s| s.hanging)
    }
}

fn answer(state: &Mutex<State>, call: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let usage = json!({
        "promptTokenCount": INPUT_TOKENS,
        "candidatesTokenCount": OUTPUT_TOKENS,
        "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
        "cachedContentTokenCount": CACHED_TOKENS,
    });
    if !call.ends_with(":streamGenerateContent") {
        // Token counts and the like: answered, not scripted.
        let body = json!({"totalTokens": INPUT_TOKENS});
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap_or_default();
    }
    let reply = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let asked = request["contents"].to_string();
        state.requests.push(request);
        state.arrivals.push(tidewright_api::convert::now_micros());
        let key = headers
            .get("x-goog-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        state.keys.push(key);
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
        reply
    };
    let part = match reply {
        Reply::Error { status, message } => {
            let name = match status {
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            let body = json!({"error": {"code": status, "message": message, "status": name}});
            return error_response(status, &body);
        }
        Reply::Limit { retry_after, daily } => {
            let per = if daily { "PerDay" } else { "PerMinute" };
            let body = json!({"error": {
                "code": 429,
                "message": format!("You exceeded your current quota. Please retry in {retry_after}s."),
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [{
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                            "quotaId": format!("GenerateRequests{per}PerProjectPerModel"),
                        }],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{retry_after}s")},
                ],
            }});
            return error_response(429, &body);
        }
        Reply::Hang => {
            let events = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(events))
                .unwrap_or_default();
        }
        Reply::Tool { name, args } => json!({"functionCall": {"name": name, "args": args}}),
        Reply::Text(text) => json!({"text": text}),
    };
    let event = json!({
        "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage,
        "modelVersion": "gemini-mock",
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(format!("data: {event}\r\n\r\n")))
        .unwrap_or_default()
}

fn error_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}
