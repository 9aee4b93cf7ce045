//! The planner: a prompt task with `plan: true` becomes a DAG of steps by
//! one call to the Messages API (here the mock, scripted with the plan the
//! model "answers"), the plan is validated like any task, and an unusable
//! plan fails the task with a message naming the problem, keeping the plan.

use std::time::Duration;

use serde_json::{Value, json};
use tidewright_api::v1;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

/// A control plane planning with `mock`, and one shell worker.
async fn planning_server(dir: &std::path::Path, mock: &Mock) -> (Server, Process) {
    let key = dir.join("planner.key");
    std::fs::write(&key, "sk-ant-planner-key\n").expect("key file");
    let key = key.display().to_string();
    let server = Server::start_on(
        dir,
        "127.0.0.1:0",
        &[
            "--planner-base-url",
            &mock.url,
            "--planner-api-key-file",
            &key,
            "--planner-model",
            "claude-planner-test",
            "--planner-timeout",
            "3s",
        ],
    )
    .expect("server");
    let worker = server.worker("shell-1", &["shell"], 2).expect("worker");
    server
        .wait_for_agents(&["shell-1"])
        .await
        .expect("worker up");
    (server, worker)
}

fn plan(steps: Value) -> Reply {
    Reply::Tool {
        name: "submit_plan".into(),
        args: json!({"name": "planned", "steps": steps}),
    }
}

#[tokio::test]
async fn a_planned_dag_runs_and_the_model_was_asked_properly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![plan(json!([
        {"id": "fetch", "command": ["sh", "-c", "echo '{\"n\": 1}' > \"$TIDEWRIGHT_OUTPUT\""], "needs": ["shell"]},
        {"id": "count", "command": ["sh", "-c", "cat \"$TIDEWRIGHT_INPUTS\" > \"$TIDEWRIGHT_OUTPUT\""], "dependsOn": ["fetch"]},
        {"id": "also", "command": ["true"]}
    ]))])
    .await
    .expect("mock");
    let (server, _worker) = planning_server(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let id = submit(&client, prompt_task("Count the things", true))
        .await
        .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(30))
        .await
        .expect("succeeded");
    let ids: Vec<&str> = task.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["fetch", "count", "also"]);
    let count: Value = serde_json::from_str(&task.steps[1].output_json).expect("output");
    assert_eq!(count, json!({"fetch": {"n": 1}}), "the DAG's data flowed");
    let spec = task.spec.expect("spec");
    assert_eq!(spec.name, "planned");
    assert_eq!(spec.prompt, "Count the things", "the prompt is kept");
    let kept: Value = serde_json::from_str(&task.plan_json).expect("plan kept");
    assert_eq!(kept["steps"][2]["id"], "also");

    // One call: the model, the key, the prompt, the capabilities on offer,
    // and the plan tool forced with its schema.
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["model"], "claude-planner-test");
    assert_eq!(request["messages"][0]["content"], "Count the things");
    assert!(
        request["system"]
            .as_str()
            .unwrap_or_default()
            .contains("- [shell]")
    );
    assert_eq!(
        request["tool_choice"],
        json!({"type": "tool", "name": "submit_plan"})
    );
    assert_eq!(
        request["tools"][0]["input_schema"]["required"],
        json!(["steps"])
    );
}

#[tokio::test]
async fn a_cyclic_or_malformed_plan_fails_the_task_naming_the_problem_and_keeps_the_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            plan(json!([
                {"id": "a", "command": ["true"], "dependsOn": ["b"]},
                {"id": "b", "command": ["true"], "dependsOn": ["a"]}
            ])),
            plan(json!([{"id": "a"}])),
            Reply::Text("I would rather not plan.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, _worker) = planning_server(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");

    let failed = |expected: &'static str| {
        let client = client.clone();
        async move {
            let id = submit(&client, prompt_task("Do it", true))
                .await
                .expect("submit");
            let task = wait_finished(&client, &id, Duration::from_secs(10))
                .await
                .expect("finished at once");
            assert_eq!(task.state, v1::TaskState::Failed as i32);
            assert!(
                task.message.starts_with("the plan cannot run: ")
                    && task.message.contains(expected),
                "{}",
                task.message
            );
            assert!(task.steps.is_empty());
            assert!(
                !task.plan_json.is_empty(),
                "the plan is kept for inspection"
            );
            (id, task)
        }
    };
    let (cyclic, task) = failed("cycle").await;
    assert!(
        task.plan_json.contains("\"dependsOn\":[\"b\"]"),
        "{}",
        task.plan_json
    );
    failed("steps[0]: step \"a\" sets neither a prompt nor a command").await;
    let (_, task) = failed("the model answered without calling submit_plan").await;
    assert!(task.plan_json.contains("I would rather not plan."));

    // A task with nothing to run cannot be retried; it says what to do.
    let refused = client
        .clone()
        .retry_task(v1::RetryTaskRequest { task_id: cyclic })
        .await
        .expect_err("nothing to retry");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("submit the prompt again"));
}

// Multi-threaded: the mock answers while the test waits on the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_only_shows_the_plan_as_a_task_file_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![
        plan(json!([
            {"id": "build", "command": ["make"]},
            {"id": "review", "prompt": "Review the build", "dependsOn": ["build"], "allowedTools": ["Read"]}
        ])),
        plan(json!([{"id": "x", "command": ["true"], "dependsOn": ["x"]}])),
        Reply::Hang,
    ])
    .await
    .expect("mock");
    let (server, _worker) = planning_server(dir.path(), &mock).await;

    let output = succeed(
        server
            .cli()
            .args(["submit", "--plan-only", "-p", "Build and review"]),
    );
    let shown = String::from_utf8_lossy(&output.stdout);
    let file: tidewright_core::TaskSpec = serde_yaml::from_str(&shown).expect("a task file");
    assert_eq!(file.steps.len(), 2);
    assert_eq!(
        file.steps[1]
            .claude_code
            .as_ref()
            .map(|c| c.prompt.as_str()),
        Some("Review the build")
    );
    tidewright_core::validate(&file, &tidewright_core::Limits::default())
        .expect("submittable as it is");

    // An unusable plan: one readable line, a non-zero exit.
    let output = server
        .cli()
        .args(["submit", "--plan-only", "-p", "Loop"])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last, "error: the plan cannot run: steps[0].dependsOn[0]: step \"x\" depends on itself",
        "{stderr}"
    );

    // The model does not answer in time: UNAVAILABLE, saying so.
    let client = server.tasks().await.expect("client");
    let err = client
        .clone()
        .plan_task(v1::PlanTaskRequest {
            spec: prompt_task("Slow", true).spec,
            tenant: String::new(),
        })
        .await
        .expect_err("timed out");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("within 3s"), "{}", err.message());
    assert!(
        all_task_ids(&client).await.expect("list").is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn planning_without_a_key_or_a_prompt_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let client = server.tasks().await.expect("client");
    let err = client
        .clone()
        .submit_task(prompt_task("Plan me", true))
        .await
        .expect_err("no planner");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(
        err.message().contains("--planner-api-key-file"),
        "{}",
        err.message()
    );
    let mut no_prompt = prompt_task("", true);
    let err = client
        .clone()
        .submit_task(no_prompt.clone())
        .await
        .expect_err("no prompt");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "spec.plan: planning needs the task's prompt");
    no_prompt.spec.as_mut().expect("spec").steps = vec![noop_step("a")];
    no_prompt.spec.as_mut().expect("spec").prompt = "both".into();
    let err = client
        .clone()
        .submit_task(no_prompt)
        .await
        .expect_err("both");
    assert_eq!(
        err.message(),
        "spec.prompt: a task is a prompt or a list of steps, not both"
    );
    assert!(all_task_ids(&client).await.expect("list").is_empty());
}

/// The planner routes each agent step to a runtime the fleet offers: the
/// model sees the capability sets (a Codex worker, a Gemini CLI worker),
/// plans a Codex step and a Gemini CLI step after it, and each runs on its
/// runtime's worker with the real CLI.
#[tokio::test]
async fn a_plan_routes_agent_steps_to_the_runtimes_the_fleet_offers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![plan(json!([
        {"id": "write", "prompt": "Write the change", "runtime": "codex"},
        {"id": "review", "prompt": "Review the change", "runtime": "gemini-cli", "dependsOn": ["write"]}
    ]))])
    .await
    .expect("mock");
    let openai = Mock::start(Api::OpenAi, vec![Reply::Text("Codex wrote it.".into())])
        .await
        .expect("openai mock");
    let gemini = Mock::start(Api::Google, vec![Reply::Text("Gemini reviewed it.".into())])
        .await
        .expect("gemini mock");
    let (server, _shell) = planning_server(dir.path(), &mock).await;
    let _codex = start_codex_worker(
        &server,
        dir.path(),
        "codex-1",
        &openai,
        (&["codex"], 1),
        &[],
    )
    .expect("codex worker");
    let _gemini = start_gemini_worker(
        &server,
        dir.path(),
        "gemini-1",
        &gemini,
        (&["gemini-cli"], 1),
        &[],
    )
    .expect("gemini worker");
    server
        .wait_for_agents(&["shell-1", "codex-1", "gemini-1"])
        .await
        .expect("workers up");
    let client = server.tasks().await.expect("client");
    let id = submit(&client, prompt_task("Change it, then review it", true))
        .await
        .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeded");
    let ran: Vec<(&str, &str)> = task
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.attempts[0].worker.as_str()))
        .collect();
    assert_eq!(ran, [("write", "codex-1"), ("review", "gemini-1")]);
    assert_eq!(
        step_output(&task, "review").expect("output")["result"],
        "Gemini reviewed it."
    );
    let system = mock.requests()[0]["system"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        system.contains("- [codex]") && system.contains("- [gemini-cli]"),
        "{system}"
    );
}
