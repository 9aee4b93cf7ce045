//! The gemini-cli runtime with the real Gemini CLI (installed from npm by
//! scripts/gemini.sh) talking to a mock of Google's Gemini API on
//! loopback: its tools really run in the step's sandboxed workspace, its
//! stream becomes live logs, its answer and its priced tokens become the
//! step's output, and the worker's key never reaches the CLI.

use std::time::Duration;

use serde_json::Value;
use tidewright_api::v1;
use tidewright_tests::gemini::{self, MockGemini, Reply};
use tidewright_tests::*;

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
    let _worker = start_gemini_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["gemini-cli"], 2),
        &["--keep-workspaces"],
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
    let _worker = start_gemini_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["gemini-cli"], 2),
        &[],
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

/// A Gemini CLI attempt that fails on worker A leaves its session with the
/// control plane; A is killed; the retry runs on worker B, in B's own
/// directories, and resumes the same session: the real CLI sends the
/// earlier conversation again (the prompt, the file it wrote), reads the
/// file attempt 1 wrote, and the step's cost is each attempt's own.
#[tokio::test]
async fn a_retry_on_another_worker_resumes_the_gemini_session_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockGemini::start(vec![
        // Attempt 1, on A: writes a file, then the API fails it.
        Reply::write("notes.txt", "half done\n"),
        Reply::Error {
            status: 500,
            message: "the mock fell over".into(),
        },
        // Attempt 2, on B: reads the file back, and finishes.
        Reply::Tool {
            name: "read_file".into(),
            args: serde_json::json!({"file_path": "notes.txt"}),
        },
        Reply::Text("Finished where I left off.".into()),
    ])
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let mut worker_a = start_gemini_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["gemini-cli"], 1),
        &[],
    )
    .expect("worker A");
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    let mut step = gemini_step("notes", &prompt);
    // The retry waits long enough for the test to stop A first.
    step.retry = Some(v1::RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: 3000,
        max_delay_ms: 3000,
        multiplier: 1.0,
    });
    let id = submit(&client, task("travels", vec![step]))
        .await
        .expect("submit");
    wait_task(&client, &id, Duration::from_secs(60), |t| {
        let step = t.steps.into_iter().next()?;
        step.attempts
            .first()
            .filter(|a| a.state == v1::StepState::Failed as i32)
            .cloned()
    })
    .await
    .expect("attempt 1 fails");
    worker_a.kill();

    let _worker_b = start_gemini_worker(
        &server,
        dir.path(),
        "agent-2",
        &mock,
        (&["gemini-cli"], 1),
        &[],
    )
    .expect("worker B");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("the task succeeds on B");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        (attempts[0].worker.as_str(), attempts[1].worker.as_str()),
        ("agent-1", "agent-2")
    );
    let session = &attempts[0].session_id;
    assert!(!session.is_empty());
    assert_eq!(&attempts[1].session_id, session, "the same session goes on");
    let log_of = |attempt: u32| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                Some(v1::event::Kind::Log(l)) if l.attempt == attempt => Some(l.line.clone()),
                _ => None,
            })
            .collect()
    };
    assert!(
        log_of(1)
            .iter()
            .any(|l| l.starts_with(&format!("checkpoint kept: session {session}, "))),
        "{:?}",
        log_of(1)
    );
    let resumed = log_of(2);
    assert!(
        resumed.contains(&format!(
            "resuming session {session} of attempt 1 from the checkpoint attempt 1 left"
        )),
        "{resumed:?}"
    );
    // The CLI on B sent the session's earlier conversation again, and the
    // file attempt 1 wrote, as its tool read it.
    let requests = mock.requests();
    let last = requests.last().cloned().expect("a request");
    let history = last["contents"].to_string();
    assert!(
        history.contains(&prompt) && history.contains("write_file"),
        "the earlier conversation: {history}"
    );
    assert!(
        history.contains("half done"),
        "the file read back: {history}"
    );
    let output: Value = serde_json::from_str(&task.steps[0].output_json).expect("output JSON");
    assert_eq!(output["result"], "Finished where I left off.");
    // Each attempt's cost is the model calls it made: one on A (the 500
    // costs nothing), two on B.
    let input = |a: &v1::Attempt| a.cost.map(|c| c.input_tokens + c.cache_read_tokens);
    assert_eq!(
        (input(&attempts[0]), input(&attempts[1])),
        (Some(gemini::INPUT_TOKENS), Some(2 * gemini::INPUT_TOKENS)),
        "{attempts:?}"
    );
    // The CLI's figures are its process's, not the session's: nothing of
    // attempt 1 is taken off attempt 2.
    let usd = |a: &v1::Attempt| a.cost.map_or(0.0, |c| c.usd);
    assert!(
        usd(&attempts[0]) > 0.0 && (usd(&attempts[1]) - 2.0 * usd(&attempts[0])).abs() < 1e-9,
        "{attempts:?}"
    );
}

/// The Gemini CLI starts tidewright's shared-state MCP server, trusted and given
/// the step's token in its settings (the CLI keeps a variable whose value
/// looks like a JWT from every MCP server): the agent stores a finding with
/// `mcp_tidewright_state_put`, the next step reads it, and the settings keep no
/// token once the run is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gemini_agent_shares_a_finding_through_tidewrights_mcp_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockGemini::start(vec![
        Reply::Tool {
            name: "mcp_tidewright_state_put".into(),
            args: serde_json::json!({"key": "finding", "value": {"bug": "off by one"}}),
        },
        Reply::Text("Shared the finding.".into()),
    ])
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let _worker = start_gemini_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["gemini-cli", "shell"], 2),
        &[],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task(
            "share",
            vec![
                gemini_step("investigate", "Find the bug and share it"),
                shell_step(
                    "fix",
                    &["investigate"],
                    r#"tidewright state get finding > "$TIDEWRIGHT_OUTPUT""#,
                ),
            ],
        ),
    )
    .await
    .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeded");
    assert_eq!(
        step_output(&task, "fix").expect("output"),
        serde_json::json!({"bug": "off by one"})
    );
    // What the agent was told: the value's new version.
    let told = mock.requests().last().cloned().expect("a request")["contents"].to_string();
    assert!(told.contains(r#"\"version\":1"#), "{told}");
    let homes = dir.path().join("work/agent-1/.gemini-home/gemini");
    let mut settings = Vec::new();
    for home in std::fs::read_dir(&homes)
        .expect("the Gemini homes")
        .flatten()
    {
        settings.push(
            std::fs::read_to_string(home.path().join(".gemini/settings.json")).expect("settings"),
        );
    }
    assert_eq!(settings.len(), 1, "{settings:?}");
    assert!(!settings[0].contains("tidewright_step_"), "{}", settings[0]);
}
