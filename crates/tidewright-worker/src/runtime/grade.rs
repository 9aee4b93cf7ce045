//! The grader of a verified step's rubric, and the judge of a step's
//! attempts, on its worker: calls to Anthropic's Messages API, each in a
//! context of its own (for a grade, the step's prompt, the rubric, the
//! step's diff and its checks' results; for a judge's match, the prompt
//! and two attempts' diffs; never an agent's session), through the
//! worker's model proxy with the worker's API key. The model must answer
//! through one tool (`tidewright_core::verify::grade`,
//! `tidewright_core::attempts::judge`); its tokens are priced and charged
//! to the attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use tidewright_core::Cost;
use tidewright_core::attempts::judge;
use tidewright_core::verify::grade::{self, Asked, Grade};

use super::agents::{AgentCli, AgentSettings, Agents, Provider};
use super::prices::{PriceTable, Prices, Usage};
use crate::sandbox::model_proxy::{Credentials, ModelProxy};
use crate::secrets::Redactor;

/// The Messages API version the request is written for.
const API_VERSION: &str = "2023-06-01";
/// The most of an answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long one grading call may take, connect to last byte.
pub const GRADE_TIMEOUT: Duration = Duration::from_secs(180);

/// A worker's grader: the proxy its calls go through, and the prices its
/// tokens are charged at.
pub struct Grader {
    proxy: Arc<ModelProxy>,
    prices: PriceTable,
    timeout: Duration,
}

impl Grader {
    /// The grader of a worker offering `grader`: it calls through the
    /// proxy of Anthropic's API the worker's Claude Code agents use, or,
    /// when there is none (steps unsandboxed), a proxy of its own. `Err`
    /// says why it cannot: it needs an Anthropic API key (a subscription's
    /// token is for Claude Code itself).
    pub async fn start(agents: &Agents) -> Result<Grader, String> {
        let settings: &AgentSettings = agents.settings(AgentCli::ClaudeCode);
        if settings.api_key.is_none() {
            return Err(format!(
                "--capability {}: grading calls Anthropic's API with the worker's API key, and none is given (--anthropic-api-key-file, or ANTHROPIC_API_KEY)",
                grade::GRADER
            ));
        }
        let proxy = match agents.shared_proxy(Provider::Anthropic) {
            Some(proxy) => proxy,
            None => {
                let credentials = Credentials {
                    api_key: settings.api_key.clone(),
                    oauth_token: None,
                    goog_api_key: None,
                };
                let proxy = ModelProxy::start(&settings.upstream(Provider::Anthropic), credentials)
                    .await
                    .map_err(|e| format!("the grader's model proxy could not start: {e}"))?;
                Arc::new(proxy)
            }
        };
        Ok(Grader {
            proxy,
            prices: settings.prices.clone(),
            timeout: GRADE_TIMEOUT,
        })
    }

    /// Grades `asked` with `model`. `Err` says why no grade came (the API
    /// refused or failed, the answer had no grade, the call timed out):
    /// the round is then undecided, never passed.
    pub async fn grade(
        &self,
        model: &str,
        asked: &Asked<'_>,
        redactor: &Redactor,
    ) -> Result<Grade, String> {
        let started = Instant::now();
        let (answer, cost) = self.ask(model, grade::request(model, asked)).await?;
        let (verdict, reasons) = grade::read_answer(&answer)?;
        Ok(Grade {
            verdict,
            reasons: reasons.into_iter().map(|r| redactor.redact(r)).collect(),
            model: model.to_string(),
            cost,
            millis: started.elapsed().as_millis() as u64,
        })
    }

    /// One match of a judge between two attempts: whether the first won,
    /// the judge's reasons (masked), and what the call cost.
    pub async fn judge(
        &self,
        model: &str,
        (prompt, first, second): (&str, judge::Side<'_>, judge::Side<'_>),
        redactor: &Redactor,
    ) -> Result<(bool, Vec<String>, Cost), String> {
        let (answer, cost) = self
            .ask(model, judge::request(model, prompt, first, second))
            .await?;
        let (first_won, reasons) = judge::read_answer(&answer)?;
        let reasons = reasons.into_iter().map(|r| redactor.redact(r)).collect();
        Ok((first_won, reasons, cost))
    }

    /// Sends `body` to the Messages API within the timeout: the answer,
    /// and its tokens priced.
    async fn ask(
        &self,
        model: &str,
        body: serde_json::Value,
    ) -> Result<(serde_json::Value, Cost), String> {
        let answer = tokio::time::timeout(self.timeout, self.call(body.to_string()))
            .await
            .map_err(|_| {
                format!(
                    "the grader got no answer within {}s",
                    self.timeout.as_secs()
                )
            })??;
        let cost = self.priced(model, grade::usage(&answer));
        Ok((answer, cost))
    }

    async fn call(&self, body: String) -> Result<serde_json::Value, String> {
        let request = Request::post("/v1/messages")
            .header("content-type", "application/json")
            .header("anthropic-version", API_VERSION)
            .body(Body::from(body))
            .map_err(|e| format!("building the grader's request: {e}"))?;
        let answer = self.proxy.send(request).await;
        let status = answer.status();
        let bytes = axum::body::to_bytes(answer.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| format!("reading the grader's answer: {e}"))?;
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let message = answer["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(format!("the grader's API answered {status}: {message}"));
        }
        Ok(answer)
    }

    /// `tokens` at the operator's price for `model`, else Anthropic's list
    /// price. Cache writes are priced as input (the grader asks for none).
    fn priced(&self, model: &str, tokens: Cost) -> Cost {
        let prices = Prices::for_model(model, &self.prices, Prices::claude);
        let usage = Usage {
            input_tokens: tokens.input_tokens + tokens.cache_read_tokens,
            cached_input_tokens: tokens.cache_read_tokens,
            output_tokens: tokens.output_tokens,
        };
        Cost {
            usd: prices.cost(&usage) + tokens.cache_creation_tokens as f64 / 1e6 * prices.input,
            ..tokens
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tidewright_core::CheckResult;

    /// A Messages API that answers every request with `answer` and
    /// `status`, and keeps the key each came with.
    async fn api(
        status: u16,
        answer: serde_json::Value,
    ) -> (
        String,
        Arc<std::sync::Mutex<Vec<String>>>,
        tidewright_api::abort::AbortOnDrop,
    ) {
        let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = keys.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let (answer, seen) = (answer.clone(), seen.clone());
            async move {
                let key = request
                    .headers()
                    .get("x-api-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                seen.lock().expect("keys").push(key);
                (
                    axum::http::StatusCode::from_u16(status).expect("status"),
                    answer.to_string(),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serving = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (
            format!("http://{addr}"),
            keys,
            tidewright_api::abort::AbortOnDrop(serving),
        )
    }

    fn agents(url: &str, key: Option<&str>) -> Agents {
        Agents::new(&Default::default(), std::path::Path::new("/w")).with(
            AgentCli::ClaudeCode,
            AgentSettings {
                api_key: key.map(str::to_string),
                base_url: Some(url.to_string()),
                ..AgentSettings::default()
            },
        )
    }

    fn asked(checks: &[CheckResult]) -> Asked<'_> {
        Asked {
            prompt: "Add --json.",
            rubric: "The README documents --json.",
            diff: "+x",
            checks,
        }
    }

    #[tokio::test]
    async fn a_grade_comes_through_the_proxy_with_the_workers_key_and_is_priced() {
        let answer = json!({
            "content": [{"type": "tool_use", "name": "grade", "input": {
                "verdict": "needs_revision",
                "reasons": ["The README lacks --json; the key sk-secret-1 is not it."]
            }}],
            "usage": {"input_tokens": 1_000_000, "output_tokens": 100_000}
        });
        let (url, keys, _api) = api(200, answer).await;
        let grader = Grader::start(&agents(&url, Some("sk-real")))
            .await
            .expect("a grader");
        let secret = "sk-secret-1".to_string();
        let redactor = Redactor::new([&secret]);
        let grade = grader
            .grade("claude-sonnet-4-5", &asked(&[]), &redactor)
            .await
            .expect("a grade");
        assert!(!grade.passed());
        assert_eq!(
            grade.reasons,
            ["The README lacks --json; the key *** is not it."]
        );
        assert_eq!(grade.model, "claude-sonnet-4-5");
        // Sonnet's list price: $3 a million in, $15 a million out.
        assert!((grade.cost.usd - 4.5).abs() < 1e-9, "{:?}", grade.cost);
        assert_eq!(grade.cost.input_tokens, 1_000_000);
        assert_eq!(
            *keys.lock().expect("keys"),
            ["sk-real"],
            "the worker's key went upstream, in place of the call's own"
        );
    }

    #[tokio::test]
    async fn no_key_no_grader_and_a_refusal_or_an_answer_without_a_grade_is_no_grade() {
        let (url, _, _api) = api(200, json!({})).await;
        let refused = Grader::start(&agents(&url, None))
            .await
            .err()
            .expect("refused");
        assert!(refused.contains("--anthropic-api-key-file"), "{refused}");

        let redactor = Redactor::new([]);
        let (url, _, _api) = api(
            400,
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "model: not found"}}),
        )
        .await;
        let grader = Grader::start(&agents(&url, Some("k")))
            .await
            .expect("grader");
        let why = grader
            .grade("claude-nope", &asked(&[]), &redactor)
            .await
            .expect_err("no grade");
        assert_eq!(
            why,
            "the grader's API answered 400 Bad Request: model: not found"
        );

        let (url, _, _api) =
            api(200, json!({"content": [{"type": "text", "text": "Fine."}]})).await;
        let grader = Grader::start(&agents(&url, Some("k")))
            .await
            .expect("grader");
        let why = grader
            .grade("claude-sonnet-4-5", &asked(&[]), &redactor)
            .await
            .expect_err("no grade");
        assert_eq!(why, "the grader answered without calling grade");
    }
}
