//! Google's Gemini API (`POST /v1beta/models/{model}:streamGenerateContent`):
//! a streamed reply as one server-sent event, a candidate with a function
//! call or text and its usage; an error as the API's JSON error body, a
//! limit as `RESOURCE_EXHAUSTED` with its quota and `RetryInfo`. Other
//! calls (token counts) are answered, not scripted.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

use super::{
    Asked, CACHED_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS, Reply, Seen, events, header, json_response,
    response, result_value,
};

pub(super) fn routes(
    answer: impl Fn(Value, HeaderMap) -> Response + Clone + Send + Sync + 'static,
) -> Router {
    Router::new().route(
        "/v1beta/models/{call}",
        post(
            move |Path(call): Path<String>, headers: HeaderMap, body: Bytes| {
                let answer = answer.clone();
                async move {
                    if !call.ends_with(":streamGenerateContent") {
                        let body = json!({"totalTokens": INPUT_TOKENS});
                        return response(200, "application/json", Body::from(body.to_string()));
                    }
                    answer(
                        serde_json::from_slice(&body).unwrap_or(Value::Null),
                        headers,
                    )
                }
            },
        ),
    )
}

/// What routes the request (its contents), its credential, and what its
/// tool calls may name.
pub(super) fn read(request: &Value, headers: &HeaderMap) -> (String, String, Seen) {
    let results = request["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|content| content["parts"].as_array().into_iter().flatten())
        .filter_map(|part| part.get("functionResponse"))
        .map(|response| match &response["response"]["output"] {
            Value::String(text) => result_value(text.clone()),
            Value::Null => response["response"].clone(),
            other => other.clone(),
        })
        .collect();
    let seen = Seen {
        cwd: String::new(),
        results,
    };
    (
        request["contents"].to_string(),
        header(headers, "x-goog-api-key"),
        seen,
    )
}

pub(super) fn say(reply: &Reply, _asked: &Asked) -> Response {
    let part = match reply {
        Reply::Error { status, message } => {
            let name = match status {
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            return json_response(
                *status,
                &json!({"error": {"code": status, "message": message, "status": name}}),
            );
        }
        Reply::Limited {
            status,
            message,
            reset,
            daily,
        } => {
            let after = (reset.at() - super::now_seconds()).max(1);
            let per = if *daily { "PerDay" } else { "PerMinute" };
            let message = if message.is_empty() {
                format!("You exceeded your current quota. Please retry in {after}s.")
            } else {
                message.clone()
            };
            return json_response(
                *status,
                &json!({"error": {
                    "code": status,
                    "message": message,
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [{
                                "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                                "quotaId": format!("GenerateRequests{per}PerProjectPerModel"),
                            }],
                        },
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{after}s")},
                    ],
                }}),
            );
        }
        Reply::Hang => return events(Vec::new(), true),
        Reply::Tool { name, args } => json!({"functionCall": {"name": name, "args": args}}),
        Reply::Text(text) | Reply::TextThenHang(text) => json!({"text": text}),
    };
    let event = json!({
        "candidates": [{"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": INPUT_TOKENS,
            "candidatesTokenCount": OUTPUT_TOKENS,
            "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
            "cachedContentTokenCount": CACHED_TOKENS,
        },
        "modelVersion": "gemini-mock",
    });
    events(vec![format!("data: {event}\r\n\r\n")], reply.hangs())
}
