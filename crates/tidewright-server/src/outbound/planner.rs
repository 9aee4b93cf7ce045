//! The planner: one call to the Anthropic Messages API turns a task's
//! prompt into a DAG of steps. The model must answer through a tool whose
//! input schema is the plan's, so the answer is JSON of a known shape; the
//! steps then go through the same validation as any submitted task.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tidewright_core::plan::{self, PLAN_TOOL};
use tidewright_engine::service::{Planned, Planner};

use crate::error::Error;
/// What planning answers: the services' refusals, as they are passed on.
type Refusal = tidewright_engine::Error;

/// The largest answer read from the API.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
const API_VERSION: &str = "2023-06-01";

/// Where and how plans are made.
#[derive(Debug, Clone)]
pub struct PlannerConfig {
    /// `https://api.anthropic.com`, a gateway, or a test's mock.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub max_tokens: u32,
    /// The whole call, connect to last byte.
    pub timeout: Duration,
}

impl PlannerConfig {
    pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
    pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
}

/// A planner with its HTTP client, kept for the server's life so calls
/// reuse connections.
pub struct AnthropicPlanner {
    config: PlannerConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl AnthropicPlanner {
    pub fn new(config: PlannerConfig) -> Result<AnthropicPlanner, Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| Error::Tls(format!("the planner's trusted roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(AnthropicPlanner { config, client })
    }

    async fn call(&self, body: Value) -> Result<Value, Refusal> {
        let url = format!("{}/v1/messages", self.config.base_url.trim_end_matches('/'));
        let unavailable = |what: String| Refusal::Unavailable(format!("the planner: {what}"));
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-api-key", &self.config.api_key)
            .header("anthropic-version", API_VERSION)
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| unavailable(format!("building the request to {url}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| unavailable(format!("calling {url}: {e}")))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| unavailable(format!("reading the answer of {url}: {e}")))?
            .to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = answer["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(unavailable(format!("the API answered {status}: {message}")));
        }
        Ok(answer)
    }
}

#[async_trait::async_trait]
impl Planner for AnthropicPlanner {
    /// Asks the model for a plan of `prompt`, telling it which capability
    /// sets the connected workers offer. `Err` when no answer came (the API
    /// is down, refused the key, timed out): nothing was planned.
    async fn plan(
        &self,
        prompt: &str,
        capability_sets: &[Vec<String>],
    ) -> Result<Planned, Refusal> {
        let body = json!({
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "system": plan::system_prompt(capability_sets),
            "messages": [{"role": "user", "content": prompt}],
            "tools": [{
                "name": PLAN_TOOL,
                "description": "Submit the plan: the steps that carry out the user's request.",
                "input_schema": plan::plan_schema(),
            }],
            "tool_choice": {"type": "tool", "name": PLAN_TOOL},
        });
        let answer = tokio::time::timeout(self.config.timeout, self.call(body))
            .await
            .map_err(|_| {
                Refusal::Unavailable(format!(
                    "the planner got no answer from {} within {}s",
                    self.config.base_url,
                    self.config.timeout.as_secs()
                ))
            })??;
        Ok(read_answer(&answer))
    }
}

/// The plan in a Messages API answer: the input of its plan tool call.
fn read_answer(answer: &Value) -> Planned {
    let call = answer["content"].as_array().and_then(|blocks| {
        blocks
            .iter()
            .find(|b| b["type"] == "tool_use" && b["name"] == PLAN_TOOL)
    });
    match call {
        Some(call) => Planned {
            plan_json: call["input"].to_string(),
            plan: plan::parse_plan(&call["input"]),
        },
        None => Planned {
            plan_json: answer["content"].to_string(),
            plan: Err(format!("the model answered without calling {PLAN_TOOL}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_the_tool_calls_input() {
        let planned = read_answer(&json!({"content": [
            {"type": "text", "text": "Here is the plan."},
            {"type": "tool_use", "name": PLAN_TOOL, "input": {"steps": [{"id": "a", "prompt": "p"}]}}
        ]}));
        assert_eq!(planned.plan.expect("a plan").steps[0].id, "a");
        assert_eq!(planned.plan_json, r#"{"steps":[{"id":"a","prompt":"p"}]}"#);

        let planned = read_answer(&json!({"content": [{"type": "text", "text": "No."}]}));
        assert_eq!(
            planned.plan.expect_err("no plan"),
            "the model answered without calling submit_plan"
        );
        assert!(planned.plan_json.contains("No."), "kept for inspection");
    }
}
