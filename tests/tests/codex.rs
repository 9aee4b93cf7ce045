//! The codex runtime with the real Codex CLI (installed from npm by
//! scripts/codex.sh) talking to a mock of the OpenAI Responses API on
//! loopback: its commands really run in the step's sandboxed workspace,
//! its stream becomes live logs, its answer and its priced tokens become
//! the step's output, and the worker's key never reaches the CLI.

use std::time::Duration;

use serde_json::Value;
use tidewright_api::v1;
use tidewright_tests::openai::{self, MockOpenAi, Reply};
use tidewright_tests::*;

#[tokio::test]
async fn a_codex_agent_runs_a_command_and_its_answer_and_cost_become_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockOpenAi::start(vec![
        Reply::Command("echo hello from codex > hello.txt".into()),
        Reply::Text("Wrote hello.txt.".into()),
    ])
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    // The operator's price for the model, per million tokens.
    let prices = dir.path().join("prices.yaml");
    std::fs::write(
        &prices,
        format!(
            "{}: {{input: 2, cachedInput: 0.5, output: 10}}\n",
            tidewright_worker::runtime::codex::DEFAULT_MODEL
        ),
    )
    .expect("prices");
    let prices = prices.display().to_string();
    let _worker = start_codex_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["codex"], 2),
        &["--keep-workspaces", "--prices", &prices],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task("agent", vec![codex_step("write", "Write hello.txt")]),
    )
    .await
    .expect("submit");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(30))
        .await
        .expect("succeeded");

    let workspace = dir
        .path()
        .join("work/agent-1")
        .join(&id)
        .join("write/attempt-1");
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.txt")).expect("the command wrote the file"),
        "hello from codex\n"
    );
    let step = &task.steps[0];
    let output: Value = serde_json::from_str(&step.output_json).expect("output JSON");
    assert_eq!(output["result"], "Wrote hello.txt.");
    let session = output["sessionId"].as_str().unwrap_or_default();
    assert!(!session.is_empty(), "{output}");
    assert_eq!(step.attempts[0].session_id, session);
    assert_eq!(
        step.attempts[0].model,
        tidewright_worker::runtime::codex::DEFAULT_MODEL
    );
    // Two model calls, each of the mock's usage, priced by tidewright at the
    // operator's price.
    let cost = step.attempts[0].cost.expect("a cost");
    let (input, cached, out) = (
        2 * (openai::INPUT_TOKENS - openai::CACHED_TOKENS),
        2 * openai::CACHED_TOKENS,
        2 * openai::OUTPUT_TOKENS,
    );
    assert_eq!(
        (
            cost.input_tokens,
            cost.cache_read_tokens,
            cost.output_tokens
        ),
        (input, cached, out)
    );
    let usd = (input as f64 * 2.0 + cached as f64 * 0.5 + out as f64 * 10.0) / 1e6;
    assert!((cost.usd - usd).abs() < 1e-12, "{} against {usd}", cost.usd);
    assert_eq!(task.cost.as_ref(), Some(&cost));

    // The command was in the stream while the step ran: its line comes
    // before the step's success.
    let seq_of = |wanted: &dyn Fn(&v1::event::Kind) -> bool| {
        events
            .iter()
            .find(|e| e.kind.as_ref().is_some_and(wanted))
            .map(|e| e.seq)
    };
    let command = seq_of(&|k| {
        matches!(k, v1::event::Kind::Log(l)
            if l.line == "$ /bin/bash -lc 'echo hello from codex > hello.txt'")
    })
    .expect("the command was logged");
    let succeeded = seq_of(&|k| {
        matches!(k, v1::event::Kind::StepState(s) if s.state == v1::StepState::Succeeded as i32)
    })
    .expect("the step succeeded");
    assert!(command < succeeded);

    // The CLI held a key of its attempt's: the API saw the worker's key,
    // put there by the worker's proxy, and nothing the step said shows it.
    let keys = mock.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert_eq!(key, &format!("Bearer {OPENAI_TEST_KEY}"));
    }
    let mangled: String = workspace
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let config = std::fs::read_to_string(
        dir.path()
            .join("work/agent-1/.codex-home/codex")
            .join(mangled)
            .join("config.toml"),
    )
    .expect("the run's config.toml");
    assert!(
        config.contains("base_url = \"http://127.0.0.1:") && !config.contains(&mock.url),
        "the sandboxed CLI reaches the API through the worker's proxy:\n{config}"
    );
    assert!(!config.contains(OPENAI_TEST_KEY));
    let said = format!("{events:?}{}", step.output_json);
    assert!(!said.contains(OPENAI_TEST_KEY), "the key leaked: {said}");
}

/// One worker offering both runtimes in one pool: OpenAI's 429 pauses the
/// pool's codex agents (the attempt does not count), and a Claude Code
/// step submitted during the pause starts and finishes before the codex
/// step runs again, once the reset OpenAI named has passed.
#[tokio::test]
async fn a_429_from_openai_pauses_only_the_codex_agents_and_claude_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let openai = MockOpenAi::start(vec![
        Reply::Limited {
            message: "Rate limit reached on tokens per min (TPM)".into(),
            retry_after: 10,
        },
        Reply::Text("Done after the pause.".into()),
    ])
    .await
    .expect("openai mock");
    let anthropic = tidewright_tests::anthropic::MockAnthropic::start(vec![
        tidewright_tests::anthropic::Reply::Text("Claude is done.".into()),
    ])
    .await
    .expect("anthropic mock");
    let http = free_addr();
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--provider-limit-backoff", "5s", "--http-listen", &http],
    )
    .expect("server");
    let (claude, codex) = (
        claude_bin().display().to_string(),
        codex_bin().display().to_string(),
    );
    let _worker = start_worker_env(
        &server.url,
        dir.path(),
        "agent-1",
        &["claude-code", "codex"],
        2,
        &[
            "--claude-bin",
            &claude,
            "--codex-bin",
            &codex,
            "--pool",
            "mixed",
        ],
        &server.worker_token,
        &[
            ("ANTHROPIC_BASE_URL", &anthropic.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
            ("OPENAI_BASE_URL", &openai.url),
            ("OPENAI_API_KEY", OPENAI_TEST_KEY),
        ],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let codex_task = submit(
        &client,
        task("codex", vec![codex_step("codex", "Say hello")]),
    )
    .await
    .expect("submit");
    // Its first attempt meets the limit and is handed back.
    eventually(Duration::from_secs(30), || {
        let mut client = client.clone();
        let id = codex_task.clone();
        async move {
            let task = client
                .get_task(v1::GetTaskRequest { task_id: id })
                .await
                .ok()?
                .into_inner();
            let attempts = &task.steps[0].attempts;
            (attempts.len() == 1 && attempts[0].state == v1::StepState::Failed as i32).then_some(())
        }
    })
    .await
    .expect("the codex attempt was limited");
    // The metrics name the runtime, and so the provider, that is paused.
    let (_, metrics) = http_get(&http, "/metrics", Some(&server.admin_token)).expect("scrape");
    assert!(
        metrics.contains("tidewright_rate_limits_total{pool=\"mixed\",runtime=\"codex\"} 1")
            && metrics.contains("tidewright_agents_paused{pool=\"mixed\",runtime=\"codex\"} 1")
            && !metrics.contains("runtime=\"claude-code\""),
        "{metrics}"
    );
    let claude_task = submit(
        &client,
        task("claude", vec![claude_step("claude", "Say hello", &[])]),
    )
    .await
    .expect("submit");
    let claude_run = wait_succeeded(&client, &claude_task, Duration::from_secs(60))
        .await
        .expect("the Claude Code step succeeds");
    let codex_run = wait_succeeded(&client, &codex_task, Duration::from_secs(60))
        .await
        .expect("the codex step succeeds after the pause");
    let codex = &codex_run.steps[0];
    assert_eq!(codex.attempts.len(), 2, "{:?}", codex.attempts);
    let limited = &codex.attempts[0];
    assert!(
        limited
            .error
            .starts_with("codex rate limited (status 429; reset from retry-after: 10 s)")
            && limited.error.contains("this attempt does not count"),
        "{}",
        limited.error
    );
    let micros = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
            .unwrap_or_default()
    };
    let claude_done = micros(&claude_run.steps[0].attempts[0].finished_at);
    let codex_again = micros(&codex.attempts[1].started_at);
    assert!(
        claude_done > 0 && claude_done < codex_again,
        "the Claude Code step finished ({claude_done}) while codex was paused (its next attempt started {codex_again})"
    );
}

/// A codex attempt that fails on worker A leaves its thread with the
/// control plane; A is killed; the retry runs on worker B, in B's own
/// directories, and resumes the same thread: the real CLI sends the earlier
/// conversation again, and the file attempt 1 wrote is there.
#[tokio::test]
async fn a_retry_on_another_worker_resumes_the_codex_thread_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockOpenAi::start(vec![
        // Attempt 1, on A: writes a file, then the API fails it.
        Reply::Command("echo half done > notes.txt".into()),
        Reply::Error {
            status: 500,
            message: "the mock fell over".into(),
        },
        // Attempt 2, on B: reads the file back, and finishes.
        Reply::Command("cat notes.txt".into()),
        Reply::Text("Finished where I left off.".into()),
    ])
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let mut worker_a =
        start_codex_worker(&server, dir.path(), "agent-1", &mock, (&["codex"], 1), &[])
            .expect("worker A");
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    let mut step = codex_step("notes", &prompt);
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

    let _worker_b = start_codex_worker(&server, dir.path(), "agent-2", &mock, (&["codex"], 1), &[])
        .expect("worker B");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(30))
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
    assert_eq!(&attempts[1].session_id, session, "the same thread goes on");
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
    assert!(resumed.iter().any(|l| l == "  half done"), "{resumed:?}");
    // The CLI on B sent the thread's earlier conversation again.
    let last = mock.requests().last().cloned().expect("a request");
    let history = last["input"].to_string();
    assert!(
        history.contains(&prompt) && history.contains("echo half done > notes.txt"),
        "the earlier conversation: {history}"
    );
    let output: Value = serde_json::from_str(&task.steps[0].output_json).expect("output JSON");
    assert_eq!(output["result"], "Finished where I left off.");
}

/// Codex starts tidewright's shared-state MCP server with the step's token (the
/// CLI gives an MCP server only a few basic variables unless its config
/// names more): the agent stores a finding with the server's `state_put`
/// (in the `mcp__tidewright` namespace the CLI offers it), and the next step reads
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codex_agent_shares_a_finding_through_tidewrights_mcp_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = MockOpenAi::start(vec![
        Reply::Tool {
            name: "mcp__tidewright/state_put".into(),
            args: serde_json::json!({"key": "finding", "value": {"bug": "off by one"}}),
        },
        Reply::Text("Shared the finding.".into()),
    ])
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let _worker = start_codex_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["codex", "shell"], 2),
        &[],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task(
            "share",
            vec![
                codex_step("investigate", "Find the bug and share it"),
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
    let told = mock.requests().last().cloned().expect("a request")["input"].to_string();
    assert!(told.contains(r#"\"version\":1"#), "{told}");
}
