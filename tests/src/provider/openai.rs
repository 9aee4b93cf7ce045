//! OpenAI's Responses API (`POST /v1/responses`): a streamed reply as
//! `response.created`, `response.output_item.added`,
//! `response.output_text.delta` for text, `response.output_item.done` and
//! `response.completed` with usage; an error as the API's JSON error body,
//! a limit with `retry-after` and the `x-ratelimit-*` headers.

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::{
    Asked, CACHED_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS, Reply, Seen, events, header, json_response,
    result_value, working_directory,
};

pub(super) fn routes(
    answer: impl Fn(Value, HeaderMap) -> Response + Clone + Send + Sync + 'static,
) -> Router {
    Router::new().route(
        "/v1/responses",
        post(move |headers: HeaderMap, body: Bytes| {
            let answer = answer.clone();
            async move {
                answer(
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                    headers,
                )
            }
        }),
    )
}

/// What routes the request (the user's words), its credential, and what
/// its tool calls may name.
pub(super) fn read(request: &Value, headers: &HeaderMap) -> (String, String, Seen) {
    let items = request["input"].as_array().into_iter().flatten();
    let user = items
        .clone()
        .filter(|item| item["role"] == "user")
        .map(|item| item["content"].to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let results = items
        .filter(|item| item["type"] == "function_call_output")
        .map(|item| match &item["output"] {
            Value::String(text) => result_value(text.clone()),
            other => other.clone(),
        })
        .collect();
    let seen = Seen {
        cwd: working_directory(request),
        results,
    };
    (user, header(headers, "authorization"), seen)
}

pub(super) fn say(reply: &Reply, asked: &Asked) -> Response {
    let model = asked.request["model"].as_str().unwrap_or("gpt-mock");
    let n = asked.n;
    match reply {
        Reply::Error { status, message } => error(*status, "server_error", message),
        Reply::Limited {
            status,
            message,
            reset,
            ..
        } => {
            let after = (reset.at() - super::now_seconds()).max(1);
            let message = if message.is_empty() {
                "Rate limit reached on tokens per min (TPM)"
            } else {
                message
            };
            let mut answer = error(*status, "rate_limit_exceeded", message);
            for (name, value) in [
                ("retry-after", after.to_string()),
                ("x-ratelimit-limit-tokens", "30000".into()),
                ("x-ratelimit-remaining-tokens", "0".into()),
                ("x-ratelimit-reset-tokens", format!("{after}s")),
            ] {
                answer
                    .headers_mut()
                    .insert(name, value.parse().expect("header"));
            }
            answer
        }
        Reply::Hang => events(
            vec![sse(&json!({
                "type": "response.created",
                "response": {"id": format!("resp_{n}"), "model": model, "status": "in_progress"},
            }))],
            true,
        ),
        Reply::Tool { name, args } => events(
            completed(n, model, function_call(n, name, args), None),
            false,
        ),
        Reply::Text(text) | Reply::TextThenHang(text) => {
            let item = json!({
                "type": "message",
                "id": format!("msg_{n}"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            });
            events(completed(n, model, item, Some(text)), reply.hangs())
        }
    }
}

/// A `function_call` output item: the model calls `name` with `args`; a
/// tool of a namespace (`mcp__tidewright/state_put`) is called by its own
/// name with its namespace beside it.
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
fn completed(n: u64, model: &str, item: Value, text: Option<&str>) -> Vec<String> {
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

fn error(status: u16, kind: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": kind}}),
    )
}
