//! Anthropic's Messages API (`POST /v1/messages`): a streamed reply as
//! `message_start`, `content_block_*` with text or `tool_use` input deltas,
//! `message_delta` with usage and `message_stop`; one JSON message when the
//! request does not stream (the planner's). Every answer says
//! `x-should-retry: false`: the CLI would retry a 5xx otherwise.

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::{
    Asked, CACHE_CREATION_TOKENS, CACHED_TOKENS, INPUT_TOKENS, MESSAGE_INPUT_TOKENS,
    MESSAGE_OUTPUT_TOKENS, OUTPUT_TOKENS, Reply, Seen, events, header, json_response, result_value,
    working_directory,
};

pub(super) fn routes(
    answer: impl Fn(Value, HeaderMap) -> Response + Clone + Send + Sync + 'static,
) -> Router {
    Router::new().route(
        "/v1/messages",
        post(move |headers: HeaderMap, body: Bytes| {
            let answer = answer.clone();
            async move {
                let request = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut response = answer(request, headers);
                response
                    .headers_mut()
                    .insert("x-should-retry", "false".parse().expect("header"));
                response
            }
        }),
    )
}

/// What routes the request (its user messages: the prompt, and what a
/// resumed session was told), its credential, and what its tool calls may
/// name.
pub(super) fn read(request: &Value, headers: &HeaderMap) -> (String, String, Seen) {
    let user = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|message| message["role"] == "user")
        .map(|message| message["content"].to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let key = match header(headers, "x-api-key") {
        key if key.is_empty() => header(headers, "authorization"),
        key => key,
    };
    let seen = Seen {
        cwd: working_directory(request),
        results: tool_results(request),
    };
    (user, key, seen)
}

pub(super) fn say(reply: &Reply, asked: &Asked) -> Response {
    let model = asked.request["model"].as_str().unwrap_or("claude-mock");
    match reply {
        Reply::Error { status, message } => error(*status, message),
        Reply::Limited {
            status,
            message,
            reset,
            ..
        } => {
            let message = if message.is_empty() {
                "mock: rate limited"
            } else {
                message
            };
            let mut answer = error(*status, message);
            let subscription =
                header(asked.headers, "authorization").starts_with("Bearer sk-ant-oat");
            limit_headers(answer.headers_mut(), reset.at(), subscription);
            answer
        }
        _ if asked.request["stream"].as_bool() != Some(true) => message(reply, model, asked.n),
        _ => events(frames(reply, model, asked.n), reply.hangs()),
    }
}

fn error(status: u16, message: &str) -> Response {
    let kind = match status {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500.. => "api_error",
        _ => "invalid_request_error",
    };
    json_response(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// One JSON message: what the planner asks for. A reply that would hang
/// sends its headers and never its body.
fn message(reply: &Reply, model: &str, n: u64) -> Response {
    let (content, stop_reason) = match reply {
        Reply::Tool { name, args } => (
            json!([{"type": "tool_use", "id": format!("toolu_{n:024}"), "name": name, "input": args}]),
            "tool_use",
        ),
        Reply::Text(text) => (json!([{"type": "text", "text": text}]), "end_turn"),
        _ => return events(Vec::new(), true),
    };
    json_response(
        200,
        &json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content,
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": MESSAGE_INPUT_TOKENS, "output_tokens": MESSAGE_OUTPUT_TOKENS},
        }),
    )
}

/// The headers the API sends with a limit that resets at `resets_at`
/// (unix seconds).
fn limit_headers(headers: &mut HeaderMap, resets_at: i64, subscription: bool) {
    let now = super::now_seconds();
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

/// The stream for one reply, as SSE frames.
fn frames(reply: &Reply, model: &str, n: u64) -> Vec<String> {
    let frame = |event: &str, data: Value| format!("event: {event}\ndata: {data}\n\n");
    let mut frames = vec![frame(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_{n:024}"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1,
                      "cache_read_input_tokens": CACHED_TOKENS,
                      "cache_creation_input_tokens": CACHE_CREATION_TOKENS},
        }}),
    )];
    let stop_reason = match reply {
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
        Reply::Tool { name, args } => {
            frames.push(frame(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "tool_use", "id": format!("toolu_{n:024}"),
                                         "name": name, "input": {}}}),
            ));
            // The input arrives in pieces, as the real API sends it.
            let text = args.to_string();
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
        Reply::Hang | Reply::Error { .. } | Reply::Limited { .. } => return frames,
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
            results.push(result_value(text));
        }
    }
    results
}
