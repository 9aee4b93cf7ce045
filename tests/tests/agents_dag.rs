//! Three agent runtimes in one task: a Claude Code step, then a Codex step
//! and a Gemini CLI step that read its output (data passed between them
//! through `context/inputs.json`), on one worker offering all three, each
//! CLI real and pinned against a mock of its provider's API. Each streams
//! live, each has its cost, and the task's cost is theirs summed. And when
//! the worker is killed with SIGKILL mid-run, each runtime's session
//! resumes on another worker from the checkpoint kept while it ran.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

/// A worker offering the three runtimes, its CLIs against the three mocks,
/// with extra `flags`.
fn three_runtime_worker(
    server: &Server,
    dir: &std::path::Path,
    name: &str,
    urls: (&str, &str, &str),
    flags: &[&str],
) -> anyhow::Result<Process> {
    start_three_runtime_worker(
        (server, dir, name),
        urls,
        (&["claude-code", "codex", "gemini-cli"], 3),
        flags,
    )
}

#[tokio::test]
async fn claude_code_codex_and_gemini_run_in_one_dag_passing_data_with_each_its_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let anthropic = Mock::start(
        Api::Anthropic,
        vec![Reply::Text("The answer is 42.".into())],
    )
    .await
    .expect("anthropic mock");
    let openai = Mock::start(
        Api::OpenAi,
        vec![
            Reply::codex_command("cat context/inputs.json"),
            Reply::Text("Codex read it.".into()),
        ],
    )
    .await
    .expect("openai mock");
    let gemini = Mock::start(Api::Google, vec![Reply::Text("Gemini read it.".into())])
        .await
        .expect("gemini mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let _worker = three_runtime_worker(
        &server,
        dir.path(),
        "agent-1",
        (&anthropic.url, &openai.url, &gemini.url),
        &[],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let mut codex_step = codex_step("codex", "Read what Claude said");
    codex_step.depends_on = vec!["claude".into()];
    let mut gemini_step = gemini_step("gemini", "Read what Claude said");
    gemini_step.depends_on = vec!["claude".into()];
    let id = submit(
        &client,
        task(
            "mixed",
            vec![
                claude_step("claude", "Answer", &[]),
                codex_step,
                gemini_step,
            ],
        ),
    )
    .await
    .expect("submit");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("all three succeed");

    // Data passed: Codex's command printed Claude's answer from its inputs,
    // and both later prompts were told where the inputs are.
    let logged = |step: &str, wanted: &str| {
        events.iter().any(|e| match &e.kind {
            Some(v1::event::Kind::Log(l)) => l.step_id == step && l.line.contains(wanted),
            _ => false,
        })
    };
    assert!(logged("codex", "The answer is 42."), "{events:#?}");
    let asked_gemini = format!("{:?}", gemini.requests());
    assert!(
        asked_gemini.contains("context/inputs.json"),
        "{asked_gemini}"
    );
    // Each streamed live: a line of each before its own success.
    assert!(logged("claude", "The answer is 42."));
    assert!(logged("codex", "$ /bin/bash -lc"));
    assert!(logged("gemini", "Gemini read it."));
    // Each has its cost; the task's is the sum.
    let mut total = 0.0;
    for step in &task.steps {
        let cost = step
            .cost
            .unwrap_or_else(|| panic!("{} has no cost", step.id));
        assert!(cost.usd > 0.0, "{}: {cost:?}", step.id);
        total += cost.usd;
    }
    let task_cost = task.cost.expect("the task's cost");
    assert!(
        (task_cost.usd - total).abs() < 1e-9,
        "{task_cost:?} against {total}"
    );
}

/// The log lines of `step`'s attempt `attempt` among `events`.
fn log_of(events: &[v1::Event], step: &str, attempt: u32) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Log(l)) if l.step_id == step && l.attempt == attempt => {
                Some(l.line.clone())
            }
            _ => None,
        })
        .collect()
}

/// Worker A runs a Claude Code, a Codex and a Gemini CLI step at once; each
/// does a first turn of work (a file written), then its API goes silent.
/// A keeps each session with the control plane while it runs; A is killed
/// with SIGKILL, so nothing is kept at its end. The retries run on worker
/// B and each resumes its runtime's session from that checkpoint: the same
/// session id, the earlier conversation sent again, and the file attempt 1
/// wrote read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_each_runtimes_session_resumes_on_another_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let claude_mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_write("notes.txt", "claude half done\n"),
            Reply::Hang,
            Reply::claude_read("notes.txt"),
            Reply::Text("Claude finished.".into()),
        ],
    )
    .await
    .expect("anthropic mock");
    let codex_mock = Mock::start(
        Api::OpenAi,
        vec![
            Reply::codex_command("echo codex half done > notes.txt"),
            Reply::Hang,
            Reply::codex_command("cat notes.txt"),
            Reply::Text("Codex finished.".into()),
        ],
    )
    .await
    .expect("openai mock");
    let gemini_mock = Mock::start(
        Api::Google,
        vec![
            Reply::gemini_write("notes.txt", "gemini half done\n"),
            Reply::Hang,
            Reply::Tool {
                name: "read_file".into(),
                args: serde_json::json!({"file_path": "notes.txt"}),
            },
            Reply::Text("Gemini finished.".into()),
        ],
    )
    .await
    .expect("gemini mock");
    let urls = (
        claude_mock.url.as_str(),
        codex_mock.url.as_str(),
        gemini_mock.url.as_str(),
    );
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--worker-timeout", "2s", "--heartbeat-interval", "250ms"],
    )
    .expect("server");
    let mut worker_a = three_runtime_worker(
        &server,
        dir.path(),
        "agent-1",
        urls,
        &["--checkpoint-every", "500ms"],
    )
    .expect("worker A");
    let client = server.tasks().await.expect("client");
    let retry = Some(v1::RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: 100,
        max_delay_ms: 100,
        multiplier: 1.0,
    });
    let prompt = |runtime: &str| format!("Write notes.txt with {runtime}, then finish");
    let steps = vec![
        v1::StepSpec {
            retry,
            ..claude_step("claude", &prompt("claude"), &["Write", "Read"])
        },
        v1::StepSpec {
            retry,
            ..codex_step("codex", &prompt("codex"))
        },
        v1::StepSpec {
            retry,
            ..gemini_step("gemini", &prompt("gemini"))
        },
    ];
    let id = submit(&client, task("killed", steps))
        .await
        .expect("submit");
    // Each session is kept while its CLI waits on the silent API: the
    // checkpoint the control plane holds has the file the first turn wrote
    // and, in its transcript, that tool's result.
    let as_worker = v1::agent_service_client::AgentServiceClient::with_interceptor(
        connect(&server.url).await.expect("channel"),
        bearer(&server.worker_token),
    );
    let scratch = tempfile::tempdir().expect("scratch");
    for (step, tool_result) in [
        ("claude", "tool_result"),
        ("codex", "function_call_output"),
        ("gemini", "functionResponse"),
    ] {
        eventually(Duration::from_secs(60), || {
            let mut client = as_worker.clone();
            let request = v1::GetCheckpointRequest {
                attempt: Some(v1::AttemptRef {
                    task_id: id.clone(),
                    step_id: step.into(),
                    attempt: 1,
                }),
            };
            let at = scratch.path().join(step);
            async move {
                let kept = client.get_checkpoint(request).await.ok()?.into_inner();
                let transcript = at.join("session.jsonl");
                tidewright_worker::runtime::checkpoint::unpack(
                    &kept.archive,
                    &at.join("workspace"),
                    &transcript,
                    &kept.workspace,
                )
                .ok()?;
                let session = std::fs::read_to_string(&transcript).ok()?;
                (at.join("workspace/notes.txt").is_file() && session.contains(tool_result))
                    .then_some(())
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{step}: its first turn is kept while it runs: {e}"));
    }
    // Each CLI is waiting on its API's silence, not about to ask for it: a
    // kill before then would leave the silence for the resumed run.
    eventually(Duration::from_secs(30), || async {
        (claude_mock.hanging() == 1 && codex_mock.hanging() == 1 && gemini_mock.hanging() == 1)
            .then_some(())
    })
    .await
    .expect("each CLI waits on its silent API");
    worker_a.kill();

    let _worker_b =
        three_runtime_worker(&server, dir.path(), "agent-2", urls, &[]).expect("worker B");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(30))
        .await
        .expect("each step succeeds on B");
    for step in &task.steps {
        let attempts = &step.attempts;
        assert_eq!(attempts.len(), 2, "{}: {attempts:?}", step.id);
        assert_eq!(
            (attempts[0].worker.as_str(), attempts[1].worker.as_str()),
            ("agent-1", "agent-2"),
            "{}",
            step.id
        );
        let session = &attempts[0].session_id;
        assert!(!session.is_empty(), "{}", step.id);
        assert_eq!(&attempts[1].session_id, session, "{}: one session", step.id);
        let resumed = log_of(&events, &step.id, 2);
        assert!(
            resumed.contains(&format!(
                "resuming session {session} of attempt 1 from the checkpoint attempt 1 left"
            )),
            "{}: {resumed:?}",
            step.id
        );
    }
    // Each CLI on B sent its session's earlier conversation again, and read
    // back what attempt 1 wrote.
    claude_mock.assert_resumed(&prompt("claude"), "notes.txt", "claude half done");
    let codex_input =
        codex_mock.requests().last().cloned().expect("a request")["input"].to_string();
    assert!(
        codex_input.contains(&prompt("codex")) && codex_input.contains("codex half done"),
        "{codex_input}"
    );
    let gemini_contents =
        gemini_mock.requests().last().cloned().expect("a request")["contents"].to_string();
    assert!(
        gemini_contents.contains(&prompt("gemini")) && gemini_contents.contains("gemini half done"),
        "{gemini_contents}"
    );
}
