//! The gemini-cli runtime with the real Gemini CLI (installed from npm by
//! scripts/gemini.sh) talking to a mock of Google's Gemini API on
//! loopback: its tools really run in the step's sandboxed workspace, its
//! stream becomes live logs, its answer and its priced tokens become the
//! step's output, and the worker's key never reaches the CLI.

use std::time::Duration;

use orca_api::v1;
use orca_tests::gemini::{self, MockGemini, Reply};
use orca_tests::*;
use serde_json::Value;

const GEMINI_TEST_KEY: &str = "gemini-test-key";

#[tokio::test]
async fn a_gemini_agent_writes_a_file_and_its_answer_and_cost_become_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockGemini::start(vec![
        Reply::write("hello.txt", "hello from gemini\n"),
        Reply::Text("Wrote hello.txt.".into()),
    ])
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let bin = gemini_bin().display().to_string();
    let _worker = start_worker_env(
        &server.url,
        dir.path(),
        "agent-1",
        &["gemini-cli"],
        2,
        &["--gemini-bin", &bin, "--keep-workspaces"],
        &server.worker_token,
        &[
            ("GOOGLE_GEMINI_BASE_URL", &mock.url),
            ("GEMINI_API_KEY", GEMINI_TEST_KEY),
        ],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task("agent", vec![gemini_step("write", "Write hello.txt")]),
    )
    .await
    .expect("submit");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeded");

    let workspace = dir
        .path()
        .join("work/agent-1")
        .join(&id)
        .join("write/attempt-1");
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.txt")).expect("the tool wrote the file"),
        "hello from gemini\n"
    );
    let step = &task.steps[0];
    let output: Value = serde_json::from_str(&step.output_json).expect("output JSON");
    assert_eq!(output["result"], "Wrote hello.txt.");
    let session = output["sessionId"].as_str().unwrap_or_default();
    assert!(!session.is_empty(), "{output}");
    assert_eq!(step.attempts[0].session_id, session);
    let cost = step.attempts[0].cost.expect("a cost");
    assert_eq!(
        (
            cost.input_tokens,
            cost.cache_read_tokens,
            cost.output_tokens
        ),
        (
            2 * (gemini::INPUT_TOKENS - gemini::CACHED_TOKENS),
            2 * gemini::CACHED_TOKENS,
            2 * gemini::OUTPUT_TOKENS
        )
    );
    assert!(cost.usd > 0.0, "{cost:?}");
    // The tool call was in the stream while the step ran.
    let seq_of = |wanted: &dyn Fn(&v1::event::Kind) -> bool| {
        events
            .iter()
            .find(|e| e.kind.as_ref().is_some_and(wanted))
            .map(|e| e.seq)
    };
    let tool = seq_of(&|k| {
        matches!(k, v1::event::Kind::Log(l)
            if l.line.starts_with("tool: write_file") && l.line.contains("file_path=hello.txt"))
    })
    .expect("the tool call was logged");
    let succeeded = seq_of(&|k| {
        matches!(k, v1::event::Kind::StepState(s) if s.state == v1::StepState::Succeeded as i32)
    })
    .expect("the step succeeded");
    assert!(tool < succeeded);
    // The API saw the worker's key, put there by the worker's proxy; the
    // CLI held its attempt's, and nothing the step said shows the key.
    let keys = mock.keys();
    assert!(!keys.is_empty());
    for key in &keys {
        assert_eq!(key, GEMINI_TEST_KEY);
    }
    let said = format!("{events:?}{}", step.output_json);
    assert!(!said.contains(GEMINI_TEST_KEY), "the key leaked: {said}");
}

/// Google's 429 names when to retry (`RetryInfo`, which the CLI repeats):
/// the CLI makes one attempt and ends, the pool's gemini-cli agents pause
/// until then rather than for the control plane's back-off (60 s here,
/// longer than this test waits), the limited attempt does not count, and the
/// step runs again and succeeds.
#[tokio::test]
async fn a_429_from_gemini_pauses_its_agents_until_the_retry_google_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockGemini::start(vec![
        Reply::Limit {
            retry_after: 2,
            daily: false,
        },
        Reply::Text("Done after the pause.".into()),
    ])
    .await
    .expect("mock");
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--provider-limit-backoff", "60s"],
    )
    .expect("server");
    let bin = gemini_bin().display().to_string();
    let _worker = start_worker_env(
        &server.url,
        dir.path(),
        "agent-1",
        &["gemini-cli"],
        2,
        &["--gemini-bin", &bin],
        &server.worker_token,
        &[
            ("GOOGLE_GEMINI_BASE_URL", &mock.url),
            ("GEMINI_API_KEY", GEMINI_TEST_KEY),
        ],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task("agent", vec![gemini_step("ask", "Say hello")]),
    )
    .await
    .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(40))
        .await
        .expect("the step succeeds after the pause Google named");
    let step = &task.steps[0];
    assert_eq!(step.attempts.len(), 2, "{:?}", step.attempts);
    let limited = &step.attempts[0];
    assert!(
        limited.error.contains("status 429, retry after 2s")
            && limited.error.contains("this attempt does not count"),
        "{}",
        limited.error
    );
    let output: Value = serde_json::from_str(&step.output_json).expect("output JSON");
    assert_eq!(output["result"], "Done after the pause.");
    // One request per attempt: the CLI did not retry on its own.
    assert_eq!(mock.requests().len(), 2, "{:?}", mock.requests());
    let micros = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
            .unwrap_or_default()
    };
    let paused = micros(&step.attempts[1].started_at) - micros(&limited.finished_at);
    assert!(
        paused >= 1_500_000,
        "the next attempt started {paused} µs after the 429, before the retry Google named"
    );
}
