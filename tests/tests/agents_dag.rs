//! Three agent runtimes in one task: a Claude Code step, then a Codex step
//! and a Gemini CLI step that read its output (data passed between them
//! through `context/inputs.json`), on one worker offering all three, each
//! CLI real and pinned against a mock of its provider's API. Each streams
//! live, each has its cost, and the task's cost is theirs summed.

use std::time::Duration;

use orca_api::v1;
use orca_tests::*;

#[tokio::test]
async fn claude_code_codex_and_gemini_run_in_one_dag_passing_data_with_each_its_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let anthropic =
        orca_tests::anthropic::MockAnthropic::start(vec![orca_tests::anthropic::Reply::Text(
            "The answer is 42.".into(),
        )])
        .await
        .expect("anthropic mock");
    let openai = orca_tests::openai::MockOpenAi::start(vec![
        orca_tests::openai::Reply::Command("cat context/inputs.json".into()),
        orca_tests::openai::Reply::Text("Codex read it.".into()),
    ])
    .await
    .expect("openai mock");
    let gemini = orca_tests::gemini::MockGemini::start(vec![orca_tests::gemini::Reply::Text(
        "Gemini read it.".into(),
    )])
    .await
    .expect("gemini mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let (claude, codex, gemini_cli) = (
        claude_bin().display().to_string(),
        codex_bin().display().to_string(),
        gemini_bin().display().to_string(),
    );
    let _worker = start_worker_env(
        &server.url,
        dir.path(),
        "agent-1",
        &["claude-code", "codex", "gemini-cli"],
        3,
        &[
            "--claude-bin",
            &claude,
            "--codex-bin",
            &codex,
            "--gemini-bin",
            &gemini_cli,
        ],
        &server.worker_token,
        &[
            ("ANTHROPIC_BASE_URL", &anthropic.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
            ("OPENAI_BASE_URL", &openai.url),
            ("OPENAI_API_KEY", OPENAI_TEST_KEY),
            ("GOOGLE_GEMINI_BASE_URL", &gemini.url),
            ("GEMINI_API_KEY", "gemini-test-key"),
        ],
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
