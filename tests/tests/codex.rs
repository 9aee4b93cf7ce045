//! What the codex runtime does beyond every runtime's suite
//! (`agent_runtimes.rs`): a limit of OpenAI's pauses only the pool's
//! codex agents, while its other runtimes run on.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

/// One worker offering both runtimes in one pool: OpenAI's 429 pauses the
/// pool's codex agents (the attempt does not count), and a Claude Code
/// step submitted during the pause starts and finishes before the codex
/// step runs again, once the reset OpenAI named has passed.
#[tokio::test]
async fn a_429_from_openai_pauses_only_the_codex_agents_and_claude_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let openai = Mock::start(
        Api::OpenAi,
        vec![
            Reply::limit(10).saying("Rate limit reached on tokens per min (TPM)"),
            Reply::Text("Done after the pause.".into()),
        ],
    )
    .await
    .expect("openai mock");
    let anthropic = Mock::start(Api::Anthropic, vec![Reply::Text("Claude is done.".into())])
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
