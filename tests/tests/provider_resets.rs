//! A provider's rate limit pauses the pool's agents of that runtime until
//! the reset the provider named, as the worker's model proxy read it from
//! the answer (the CLIs do not pass it on): not for the control plane's
//! back-off. One suite, one row per runtime: the real CLI (pinned) against
//! its provider's mock, which answers the first request with a 429 saying
//! to come back in 3 s, as that provider says it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::*;

/// How long the provider says to wait.
const RETRY_SECONDS: i64 = 3;

/// The control plane's back-off: what the pool would wait had the reset
/// not been read (far longer than the provider's).
const BACKOFF: &str = "60s";

/// A runtime's mock, limited once, as the test reads it.
trait Provider {
    /// When each request came (microseconds since the epoch).
    fn arrivals(&self) -> Vec<i64>;
}

impl Provider for anthropic::MockAnthropic {
    fn arrivals(&self) -> Vec<i64> {
        anthropic::MockAnthropic::arrivals(self)
    }
}

impl Provider for openai::MockOpenAi {
    fn arrivals(&self) -> Vec<i64> {
        openai::MockOpenAi::arrivals(self)
    }
}

impl Provider for gemini::MockGemini {
    fn arrivals(&self) -> Vec<i64> {
        gemini::MockGemini::arrivals(self)
    }
}

type Started = (Box<dyn Provider>, Process);

/// Starts a row's mock and a worker of the server against it, in a dir.
type Start = for<'a> fn(&'a Server, &'a Path) -> Pin<Box<dyn Future<Output = Started> + 'a>>;

/// One runtime: its name, how its provider says the limit's reset (as
/// the event names the source), a step of it, and how to start its mock
/// (limited once, then done) and a worker of `server` against it.
struct Row {
    runtime: &'static str,
    source: &'static str,
    step: fn() -> v1::StepSpec,
    start: Start,
}

const ROWS: &[Row] = &[
    Row {
        runtime: "claude-code",
        source: "reset from retry-after: 3 s",
        step: || claude_step("ask", "Say hello", &[]),
        start: |server, dir| {
            Box::pin(async move {
                let mock = anthropic::MockAnthropic::start(vec![anthropic::Reply::RetryAfter {
                    seconds: RETRY_SECONDS,
                }])
                .await
                .expect("mock");
                let worker = start_claude_worker(server, dir, &mock, &["claude-code"], 1, &[])
                    .expect("worker");
                (Box::new(mock) as Box<dyn Provider>, worker)
            })
        },
    },
    Row {
        runtime: "codex",
        source: "reset from retry-after: 3 s",
        step: || codex_step("ask", "Say hello"),
        start: |server, dir| {
            Box::pin(async move {
                let mock = openai::MockOpenAi::start(vec![openai::Reply::Limited {
                    message: "Rate limit reached on requests per min (RPM)".into(),
                    retry_after: RETRY_SECONDS as u64,
                }])
                .await
                .expect("mock");
                let worker =
                    start_codex_worker(server, dir, "agent-1", &mock, (&["codex"], 1), &[])
                        .expect("worker");
                (Box::new(mock) as Box<dyn Provider>, worker)
            })
        },
    },
    Row {
        runtime: "gemini-cli",
        source: "reset from RetryInfo retryDelay: 3 s",
        step: || gemini_step("ask", "Say hello"),
        start: |server, dir| {
            Box::pin(async move {
                let mock = gemini::MockGemini::start(vec![gemini::Reply::Limit {
                    retry_after: RETRY_SECONDS as u64,
                    daily: false,
                }])
                .await
                .expect("mock");
                let worker =
                    start_gemini_worker(server, dir, "agent-1", &mock, (&["gemini-cli"], 1), &[])
                        .expect("worker");
                (Box::new(mock) as Box<dyn Provider>, worker)
            })
        },
    },
];

/// The step, allowed one attempt, is limited once and then succeeds on
/// it: the handed-back attempt names the reset's source, the pool waited
/// the provider's 3 s (and not the 60 s back-off) before its next request.
async fn a_limit_pauses_the_pool_until_the_providers_reset(row: &Row) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--provider-limit-backoff", BACKOFF],
    )
    .expect("server");
    let (mock, _worker) = (row.start)(&server, dir.path()).await;
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    let client = server.tasks().await.expect("client");
    let mut step = (row.step)();
    step.retry = quick_retries(1);
    let id = submit(&client, task("limited", vec![step]))
        .await
        .expect("submit");
    // Well within the back-off: the step runs again after the reset.
    let done = wait_succeeded(&client, &id, Duration::from_secs(45))
        .await
        .unwrap_or_else(|e| panic!("{}: the step succeeds after the reset: {e}", row.runtime));
    let attempts = &done.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{}: {attempts:?}", row.runtime);
    let limited = &attempts[0].error;
    assert!(
        limited.starts_with(&format!("{} rate limited (", row.runtime))
            && limited.contains(row.source)
            && limited.contains("(until the reset)")
            && limited.contains("this attempt does not count"),
        "{}: {limited}",
        row.runtime
    );
    let arrivals = mock.arrivals();
    assert_eq!(arrivals.len(), 2, "{}: one request an attempt", row.runtime);
    let paused = arrivals[1] - arrivals[0];
    assert!(
        paused >= RETRY_SECONDS * 1_000_000,
        "{}: the next request came {paused} µs after the limit, before its reset",
        row.runtime
    );
}

#[tokio::test]
async fn claude_codes_limit_pauses_its_pool_until_the_reset_anthropic_named() {
    a_limit_pauses_the_pool_until_the_providers_reset(&ROWS[0]).await;
}

#[tokio::test]
async fn codexs_limit_pauses_its_pool_until_the_reset_openai_named() {
    a_limit_pauses_the_pool_until_the_providers_reset(&ROWS[1]).await;
}

#[tokio::test]
async fn gemini_clis_limit_pauses_its_pool_until_the_reset_google_named() {
    a_limit_pauses_the_pool_until_the_providers_reset(&ROWS[2]).await;
}
