//! Mocks of the model APIs the agent CLIs call: one scripted core, and an
//! encoder per API (`anthropic`: the Messages API of Claude Code;
//! `openai`: the Responses API of Codex; `google`: the Gemini API of the
//! Gemini CLI). The real CLI talks to a mock over loopback. Each request
//! the CLI streams gets the next scripted [`Reply`], in the API's own
//! words: its server-sent events, or its error status and body. Every
//! request body, the credential it carried and when it came are kept for
//! the test to read.

mod anthropic;
mod google;
mod openai;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use serde_json::{Value, json};

/// Tokens each streamed reply reports using (each API in its own fields).
pub const INPUT_TOKENS: u64 = 100;
pub const OUTPUT_TOKENS: u64 = 20;
/// Input tokens read from the provider's cache.
pub const CACHED_TOKENS: u64 = 10;
/// Input tokens written to the cache (Anthropic's API reports them).
pub const CACHE_CREATION_TOKENS: u64 = 5;
/// Tokens each unstreamed Messages API answer (the planner's, the
/// grader's) reports using: far more than an agent's streamed turns, so a
/// test can tell that they were charged.
pub const MESSAGE_INPUT_TOKENS: u64 = 50_000;
pub const MESSAGE_OUTPUT_TOKENS: u64 = 500;

/// A model API, as its mock answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic's Messages API (`ANTHROPIC_BASE_URL`).
    Anthropic,
    /// OpenAI's Responses API; the base URL ends in `/v1`.
    OpenAi,
    /// Google's Gemini API (`GOOGLE_GEMINI_BASE_URL`).
    Google,
}

/// What the mock answers one request with.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A call of the CLI's tool `name` with `args`. In string values,
    /// `{cwd}` becomes the CLI's working directory (where the request says
    /// it) and `{result[N].field}` that field of the Nth tool result of
    /// the conversation so far.
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
    /// A limit as the API answers one: `status` (429; Anthropic's 529 is
    /// overload), `message` (the API's own words when empty), and when it
    /// resets in the API's headers and body. `daily`: Google's per-day
    /// quota rather than its per-minute one. To a subscription's token
    /// (`Bearer sk-ant-oat...`) Anthropic's adds its unified headers.
    Limited {
        status: u16,
        message: String,
        reset: Reset,
        daily: bool,
    },
    /// Starts the stream and never finishes it.
    Hang,
    /// Streams the text and the response's final usage, then holds the
    /// stream open for ever: the client knows what the turn cost, but the
    /// turn never ends.
    TextThenHang(String),
}

/// When a limit resets.
#[derive(Debug, Clone, Copy)]
pub enum Reset {
    /// At these unix seconds.
    At(i64),
    /// This many seconds after the answer.
    In(i64),
}

impl Reset {
    fn at(self) -> i64 {
        match self {
            Reset::At(at) => at,
            Reset::In(seconds) => now_seconds() + seconds,
        }
    }
}

impl Reply {
    /// A 429 that resets `seconds` after it is answered.
    pub fn limit(seconds: i64) -> Reply {
        Reply::Limited {
            status: 429,
            message: String::new(),
            reset: Reset::In(seconds),
            daily: false,
        }
    }

    /// [`Reply::limit`], in `message`'s words.
    pub fn saying(self, words: &str) -> Reply {
        match self {
            Reply::Limited {
                status,
                reset,
                daily,
                ..
            } => Reply::Limited {
                status,
                message: words.into(),
                reset,
                daily,
            },
            other => other,
        }
    }

    /// Claude Code's `Write` tool, writing `content` to `file` in the
    /// workspace.
    pub fn claude_write(file: &str, content: &str) -> Reply {
        Reply::tool(
            "Write",
            json!({"file_path": format!("{{cwd}}/{file}"), "content": content}),
        )
    }

    /// Claude Code's `Bash` tool, running `command` in the workspace.
    pub fn claude_bash(command: &str) -> Reply {
        Reply::tool(
            "Bash",
            json!({"command": command, "description": "a step of the task"}),
        )
    }

    /// Claude Code's `Read` tool, reading `file` in the workspace.
    pub fn claude_read(file: &str) -> Reply {
        Reply::tool("Read", json!({"file_path": format!("{{cwd}}/{file}")}))
    }

    /// Codex's `exec_command` tool: `cmd` runs in a shell in the CLI's
    /// working directory.
    pub fn codex_command(cmd: &str) -> Reply {
        Reply::tool("exec_command", json!({"cmd": cmd}))
    }

    /// The Gemini CLI's `write_file` tool, writing `content` to `file`.
    pub fn gemini_write(file: &str, content: &str) -> Reply {
        Reply::tool("write_file", json!({"file_path": file, "content": content}))
    }

    pub fn tool(name: &str, args: Value) -> Reply {
        Reply::Tool {
            name: name.into(),
            args,
        }
    }

    /// Whether it holds its request open.
    fn hangs(&self) -> bool {
        matches!(self, Reply::Hang | Reply::TextThenHang(_))
    }
}

/// Everything the mock has seen, and what it has left to answer.
#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    /// Scripts by a marker of their conversation (see `start_routed`).
    routes: Vec<(String, VecDeque<Reply>)>,
    requests: Vec<Value>,
    /// When each request came (microseconds since the epoch).
    arrivals: Vec<i64>,
    /// The credential each request carried, as its header has it.
    keys: Vec<String>,
    hanging: usize,
    /// Numbers the answers' ids.
    answered: u64,
}

/// One request, as the core hands it to its API's encoder.
struct Asked<'a> {
    request: &'a Value,
    headers: &'a HeaderMap,
    /// Numbers this answer's ids.
    n: u64,
}

/// What a scripted tool call may name of the conversation so far.
#[derive(Default)]
struct Seen {
    cwd: String,
    /// Each tool result of the conversation, in order: as JSON when its
    /// text is.
    results: Vec<Value>,
}

/// A mock model API, serving while it lives.
pub struct Mock {
    /// The base URL, as the CLI's variable takes it.
    pub url: String,
    api: Api,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Mock {
    /// Serves `api` on a free loopback port, answering with `script` in
    /// order; once it runs out, every request gets the text "Done.".
    pub async fn start(api: Api, script: Vec<Reply>) -> anyhow::Result<Mock> {
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let shared = state.clone();
        let answer =
            move |request: Value, headers: HeaderMap| answer(api, &shared, request, headers);
        let app: Router = match api {
            Api::Anthropic => anthropic::routes(answer),
            Api::OpenAi => openai::routes(answer),
            Api::Google => google::routes(answer),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let root = format!("http://{}", listener.local_addr()?);
        let url = match api {
            Api::OpenAi => format!("{root}/v1"),
            Api::Anthropic | Api::Google => root,
        };
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Mock {
            url,
            api,
            state,
            server,
        })
    }

    /// Serves each conversation its own script: a request whose user
    /// messages hold a route's marker gets that route's next reply, the
    /// first route that matches in the order given (agents running in
    /// parallel interleave their requests); others, and a route that ran
    /// out, get "Done.".
    pub async fn start_routed(api: Api, routes: Vec<(&str, Vec<Reply>)>) -> anyhow::Result<Mock> {
        let mock = Mock::start(api, Vec::new()).await?;
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

    /// The bodies of the scripted requests so far.
    pub fn requests(&self) -> Vec<Value> {
        self.with(|s| s.requests.clone())
    }

    /// The first request so far whose body holds `marker`, as its JSON text:
    /// what an agent was told.
    pub fn request_containing(&self, marker: &str) -> Option<String> {
        self.requests()
            .iter()
            .map(Value::to_string)
            .find(|r| r.contains(marker))
    }

    /// When each request came, in order (microseconds since the epoch).
    pub fn arrivals(&self) -> Vec<i64> {
        self.with(|s| s.arrivals.clone())
    }

    /// The credential each request carried, as its header has it
    /// (`x-api-key`, `Authorization`, `x-goog-api-key`).
    pub fn keys(&self) -> Vec<String> {
        self.with(|s| s.keys.clone())
    }

    /// Asserts that the last request resumed a session: it carried the
    /// earlier conversation (its first `prompt`, and `file`, which a tool
    /// touched), and its last tool result holds `found` (what an earlier
    /// attempt wrote there).
    pub fn assert_resumed(&self, prompt: &str, file: &str, found: &str) {
        let requests = self.requests();
        let last = requests.last().expect("a request");
        let history = last.to_string();
        assert!(
            history.contains(prompt) && history.contains(file),
            "the earlier conversation: {history}"
        );
        let (_, _, seen) = read(self.api, last, &HeaderMap::new());
        let read_back = seen
            .results
            .last()
            .map(Value::to_string)
            .unwrap_or_default();
        assert!(
            read_back.contains(found),
            "the tool found what the earlier attempt wrote: {read_back}"
        );
    }

    /// The tool results the last request carried back to the model, in
    /// order: each as JSON when its text is.
    pub fn tool_results(&self) -> Vec<Value> {
        let requests = self.requests();
        let Some(last) = requests.last() else {
            return Vec::new();
        };
        read(self.api, last, &HeaderMap::new()).2.results
    }

    /// Requests held open by a `Hang` reply.
    pub fn hanging(&self) -> usize {
        self.with(|s| s.hanging)
    }
}

/// Takes one request: keeps it, picks its reply, and has `api` say it.
fn answer(
    api: Api,
    state: &Mutex<State>,
    request: Value,
    headers: HeaderMap,
) -> axum::response::Response {
    let (user, key, seen) = read(api, &request, &headers);
    let (reply, n) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.requests.push(request.clone());
        state.arrivals.push(tidewright_api::convert::now_micros());
        state.keys.push(key);
        state.answered += 1;
        let routed = state
            .routes
            .iter_mut()
            .find(|(marker, _)| user.contains(marker.as_str()))
            .map(|(_, replies)| replies.pop_front());
        let reply = match routed {
            Some(reply) => reply,
            None => state.script.pop_front(),
        }
        .unwrap_or_else(|| Reply::Text("Done.".into()));
        if reply.hangs() {
            state.hanging += 1;
        }
        (reply, state.answered)
    };
    let reply = match reply {
        Reply::Tool { name, args } => Reply::Tool {
            args: substitute(&args, &seen),
            name,
        },
        other => other,
    };
    let asked = Asked {
        request: &request,
        headers: &headers,
        n,
    };
    let mut answer = match api {
        Api::Anthropic => anthropic::say(&reply, &asked),
        Api::OpenAi => openai::say(&reply, &asked),
        Api::Google => google::say(&reply, &asked),
    };
    // As tidewright's model proxy passes a limit or a failure on to a
    // sandboxed CLI: its API client is not to retry it.
    let status = answer.status();
    if status.as_u16() == 429 || status.is_server_error() {
        answer
            .headers_mut()
            .insert("x-should-retry", "false".parse().expect("header"));
    }
    answer
}

/// What routes a request, its credential, and what its tool calls may
/// name, as `api` words them.
fn read(api: Api, request: &Value, headers: &HeaderMap) -> (String, String, Seen) {
    match api {
        Api::Anthropic => anthropic::read(request, headers),
        Api::OpenAi => openai::read(request, headers),
        Api::Google => google::read(request, headers),
    }
}

fn now_seconds() -> i64 {
    tidewright_api::convert::now_micros() / 1_000_000
}

/// A scripted tool call's arguments as the conversation fills them in.
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

/// `text` with each `{result[N].field}` replaced by that field of the Nth
/// tool result (from 0), such as a task id a tool answered.
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

/// The CLI's working directory, as its prompt states it (Claude Code's
/// words, then the Gemini CLI's and Qwen Code's); empty when it does not.
fn working_directory(request: &Value) -> String {
    const MARKERS: [&str; 2] = [
        "Primary working directory: ",
        "I'm currently working in the directory: ",
    ];
    fn find(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => MARKERS.iter().find_map(|marker| {
                let at = s.find(marker)?;
                let line = s[at + marker.len()..].lines().next().unwrap_or_default();
                Some(line.trim().to_string())
            }),
            Value::Array(items) => items.iter().find_map(find),
            Value::Object(map) => map.values().find_map(find),
            _ => None,
        }
    }
    find(request).unwrap_or_default()
}

/// A tool result's text, as JSON when it is.
fn result_value(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// A header's value, or empty.
fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A response with `status`, its content type and `body`.
fn response(status: u16, content_type: &str, body: axum::body::Body) -> axum::response::Response {
    axum::response::Response::builder()
        .status(
            axum::http::StatusCode::from_u16(status)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .header("content-type", content_type)
        .body(body)
        .unwrap_or_default()
}

/// A JSON body with `status`.
fn json_response(status: u16, body: &Value) -> axum::response::Response {
    response(
        status,
        "application/json",
        axum::body::Body::from(body.to_string()),
    )
}

/// A stream of server-sent events: `head`, then, when `hold`, nothing
/// more for ever.
fn events(head: Vec<String>, hold: bool) -> axum::response::Response {
    use futures::StreamExt as _;
    let head = futures::stream::iter(
        head.into_iter()
            .map(|frame| Ok::<_, std::io::Error>(axum::body::Bytes::from(frame))),
    );
    let body = if hold {
        axum::body::Body::from_stream(head.chain(futures::stream::pending()))
    } else {
        axum::body::Body::from_stream(head)
    };
    response(200, "text/event-stream", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_call_names_the_conversations_directory_and_its_results() {
        let seen = Seen {
            cwd: "/w/t1".into(),
            results: vec![json!({"taskId": "t-9"}), json!("plain")],
        };
        let args = json!({"path": "{cwd}/a.txt", "ids": ["{result[0].taskId}", "{result[5].x}"]});
        assert_eq!(
            substitute(&args, &seen),
            json!({"path": "/w/t1/a.txt", "ids": ["t-9", "{result[5].x}"]})
        );
    }
}
