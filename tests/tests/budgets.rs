//! Budgets on a real control plane, with the real Claude Code CLI against a
//! mock of the Anthropic API whose usage is known, so spend is exact: a
//! task that crosses its budget mid-session is paused and its agent
//! stopped, a raise resumes the same session; a tenant whose day is spent
//! has its submits refused, naming the budget and its reset, until an
//! admin raises it.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::provider::{self, Api, Mock, Reply};
use tidewright_tests::*;
use tidewright_worker::runtime::prices::{Prices, Usage};

/// What one mock response costs on Sonnet ($3 input, $15 output, $3.75
/// cache writes, $0.30 cache reads per million tokens): what the CLI
/// charges for it, and what tidewright counts per turn.
fn turn_usd() -> f64 {
    (provider::INPUT_TOKENS as f64 * 3.0
        + provider::OUTPUT_TOKENS as f64 * 15.0
        + provider::CACHE_CREATION_TOKENS as f64 * 3.75
        + provider::CACHED_TOKENS as f64 * 0.3)
        / 1e6
}

const MODEL: &str = "claude-sonnet-4-5";

/// A Claude Code step on [`MODEL`], whose prices the test knows.
fn agent_step(id: &str, prompt: &str) -> v1::StepSpec {
    let mut step = claude_step(id, prompt, &["Write", "Read"]);
    if let Some(v1::step_spec::Runtime::ClaudeCode(claude)) = step.runtime.as_mut() {
        claude.model = MODEL.into();
    }
    step
}

fn paused(task: v1::Task) -> Option<v1::Task> {
    (task.state == v1::TaskState::Paused as i32).then_some(task)
}

#[tokio::test]
async fn a_task_over_its_budget_is_paused_mid_session_and_a_raise_resumes_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Turn 1 writes a file; turn 2's usage crosses the budget and the API
    // holds the turn open, so the agent is mid-session when it is stopped.
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_write("notes.txt", "half done\n"),
            Reply::TextThenHang("Thinking about the rest...".into()),
            // The resumed run reads the file back.
            Reply::claude_read("notes.txt"),
            Reply::Text("Finished where I left off.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, _worker) = claude_worker_with(dir.path(), &mock, &["claude-code"], &[]).await;
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    let mut request = task("budgeted", vec![agent_step("notes", &prompt)]);
    let budget = 1.5 * turn_usd();
    if let Some(spec) = request.spec.as_mut() {
        spec.budget = Some(v1::Budget {
            usd: Some(budget),
            tokens: None,
            approvers: Vec::new(),
        });
    }
    let id = submit(&client, request).await.expect("submit");
    let task = wait_task(&client, &id, Duration::from_secs(60), paused)
        .await
        .expect("the task pauses at its budget");
    let spent = 2.0 * turn_usd();
    assert_eq!(
        task.message,
        format!("budget: the task spent ${spent:.4} of its ${budget} budget")
    );
    // The agent is stopped, its attempt charged exactly what its two turns
    // cost, and the step waits without having used an attempt.
    let step = wait_task(&client, &id, Duration::from_secs(20), |t| {
        let step = t.steps.into_iter().next()?;
        (step.state == v1::StepState::Queued as i32).then_some(step)
    })
    .await
    .expect("the step waits, queued");
    assert_eq!(step.attempts.len(), 1, "{:?}", step.attempts);
    let first = &step.attempts[0];
    let cost = first.cost.unwrap_or_default();
    assert!((cost.usd - spent).abs() < 1e-12, "{cost:?}");
    assert_eq!(cost.input_tokens, 2 * provider::INPUT_TOKENS);
    assert_eq!(cost.output_tokens, 2 * provider::OUTPUT_TOKENS);
    assert!(!first.session_id.is_empty());
    assert_eq!(mock.requests().len(), 2, "nothing more ran while paused");

    // `tidewright get task` says so and how to go on; the CLI raises it.
    let shown = succeed(server.cli().args(["get", "task", &id]));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("State:     paused"), "{shown}");
    assert!(shown.contains("tidewright budget raise"), "{shown}");
    let raised = succeed(server.cli().args(["budget", "raise", &id, "--usd", "0.01"]));
    let raised = String::from_utf8_lossy(&raised.stdout);
    assert!(raised.contains("budget is now $0.0109"), "{raised}");

    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("the task goes on and succeeds");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        attempts[0].state,
        v1::StepState::Cancelled as i32,
        "{attempts:?}"
    );
    assert_eq!(
        attempts[1].session_id,
        attempts[0].session_id,
        "the same session goes on; the step's log: {}",
        step_log(&client, &id, "notes").await
    );
    // The resumed run sent the earlier conversation, and the file the
    // first attempt wrote was there for it to read.
    mock.assert_resumed(&prompt, "notes.txt", "half done");
    let output = step_output(&task, "notes").expect("output");
    assert_eq!(output["result"], "Finished where I left off.");
    let cost = task.cost.unwrap_or_default();
    assert!(cost.usd >= spent, "{cost:?}");
}

#[tokio::test]
async fn a_tenant_over_its_daily_budget_is_refused_new_tasks_until_an_admin_raises_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, Vec::new()).await.expect("mock");
    let (server, _worker) = claude_worker_with(dir.path(), &mock, &["claude-code"], &[]).await;
    let client = server.tasks().await.expect("client");
    // Half a turn a day: the first agent's first response spends it.
    let per_day = format!("{}", turn_usd() / 2.0);
    let set = succeed(
        server
            .cli()
            .args(["budget", "set", "default", "--usd-per-day", &per_day]),
    );
    let set = String::from_utf8_lossy(&set.stdout);
    assert!(set.contains("default") && set.contains("ok"), "{set}");

    let first = submit(&client, task("first", vec![agent_step("a", "Say done.")]))
        .await
        .expect("within budget");
    // Whether its one turn ended before the pause reached it or not, the
    // day is spent once it has run.
    eventually(Duration::from_secs(60), || async {
        let line = String::from_utf8_lossy(&succeed(server.cli().args(["budget", "get"])).stdout)
            .into_owned();
        line.contains("spent: ").then_some(())
    })
    .await
    .expect("the day's budget is spent");

    let file = dir.path().join("second.yaml");
    std::fs::write(
        &file,
        format!("name: second\nsteps:\n  - id: a\n    claudeCode: {{prompt: 'Say done.', model: {MODEL}}}\n"),
    )
    .expect("task file");
    let refused = fails_in_one_line(server.cli().args(["submit", "-f"]).arg(&file));
    assert!(refused.contains("resource exhausted: "), "{refused}");
    assert!(refused.contains("per-day budget resets at"), "{refused}");
    assert!(refused.contains("tenant \"default\""), "{refused}");
    let listed = client
        .clone()
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert_eq!(listed.len(), 1, "nothing was stored for the refused submit");

    // An admin raises the day's budget: new work is let in, and the first
    // task, if the budget paused it, goes on.
    succeed(
        server
            .cli()
            .args(["budget", "set", "default", "--usd-per-day", "10"]),
    );
    let second = String::from_utf8_lossy(
        &succeed(server.cli().args(["submit", "-o", "name", "-f"]).arg(&file)).stdout,
    )
    .trim()
    .to_string();
    for id in [&first, &second] {
        wait_succeeded(&client, id, Duration::from_secs(60))
            .await
            .expect("succeeds");
    }
    let json = succeed(server.cli().args(["budget", "get", "-o", "json"]));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json[0]["tenant"], "default");
    assert_eq!(json[0]["usdPerDay"], 10.0);
    assert!(
        json[0]["usdToday"].as_f64().unwrap_or_default() >= 2.0 * turn_usd() - 1e-12,
        "{json}"
    );
}

#[tokio::test]
async fn tenant_budgets_from_a_file_hold_from_the_start_and_a_bad_file_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "default: {usdPerDay: -1}\n").expect("file");
    let refused = fails_in_one_line(
        std::process::Command::new(tidewright_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--tenant-budgets")
            .arg(&bad),
    );
    assert!(
        refused.contains("bad.yaml") && refused.contains("default.usdPerDay"),
        "{refused}"
    );

    // A zero budget: the tenant may start nothing, from the first submit.
    let file = dir.path().join("budgets.yaml");
    std::fs::write(
        &file,
        "default: {usdPerDay: 0}\nteam-b: {usdPerMonth: 100}\n",
    )
    .expect("file");
    let path = file.display().to_string();
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--tenant-budgets", &path]).expect("server");
    let client = server.tasks().await.expect("client");
    let refused = submit(&client, task("t", vec![noop_step("a")]))
        .await
        .expect_err("refused");
    let status = refused
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("tenant \"default\""),
        "{status:?}"
    );
    let listed = succeed(server.cli().args(["budget", "get", "-o", "json"]));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[1]["tenant"], "team-b");
    assert_eq!(listed[1]["usdPerMonth"], 100.0);
}

/// A task whose budget names approvers: once it has spent its budget, one
/// of them (here a viewer named `lead`) lets it go on with as much again,
/// and the agent resumes its session; anyone else is refused, and nothing
/// changes.
#[tokio::test]
async fn an_approver_lets_a_task_over_its_budget_go_on_and_the_session_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_write("notes.txt", "half done\n"),
            Reply::claude_write("plan.txt", "the rest\n"),
            // Its usage crosses the budget, and the turn never ends.
            Reply::TextThenHang("Thinking about the rest...".into()),
            Reply::claude_read("notes.txt"),
            Reply::Text("Finished where I left off.".into()),
        ],
    )
    .await
    .expect("mock");
    let mut server = start_with_tokens(
        dir.path(),
        &[
            token_line("tidewright_admin", "admin", "root"),
            token_line("tidewright_dev", "developer", "dana"),
            token_line("tidewright_lead", "viewer", "lead"),
            token_line("tidewright_worker", "worker", "pool-a"),
        ],
        &[],
    )
    .expect("server");
    server.admin_token = "tidewright_admin".into();
    server.worker_token = "tidewright_worker".into();
    let _worker =
        start_claude_worker(&server, dir.path(), &mock, &["claude-code"], 1, &[]).expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    let mut request = task("approved", vec![agent_step("notes", &prompt)]);
    // Paused on turn 3; as much again (5.5 turns) is room for the two
    // turns the resumed session takes.
    let budget = 2.75 * turn_usd();
    if let Some(spec) = request.spec.as_mut() {
        spec.budget = Some(v1::Budget {
            usd: Some(budget),
            tokens: None,
            approvers: vec!["lead".into()],
        });
    }
    let id = submit(&client, request).await.expect("submit");
    wait_task(&client, &id, Duration::from_secs(60), paused)
        .await
        .expect("the task pauses at its budget");

    let as_caller = |token: &str| {
        let mut cli = server.cli();
        cli.env("TIDEWRIGHT_TOKEN", token);
        cli
    };
    let shown = succeed(server.cli().args(["get", "task", &id]));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("or lead may tidewright approve {id} --budget")),
        "{shown}"
    );
    let refused = fails_in_one_line(as_caller("tidewright_dev").args(["approve", &id, "--budget"]));
    assert!(
        refused.contains("permission denied")
            && refused.contains("dana (developer) is not an approver of task")
            && refused.contains("its approvers are: lead"),
        "{refused}"
    );
    let approved = succeed(as_caller("tidewright_lead").args([
        "approve",
        &id,
        "--budget",
        "--reason",
        "worth finishing",
    ]));
    let approved = String::from_utf8_lossy(&approved.stdout);
    let now: f64 = approved
        .split("budget is now $")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|usd| usd.parse().ok())
        .unwrap_or_else(|| panic!("a budget in {approved}"));
    assert!(
        (now - 2.0 * budget).abs() < 1e-12,
        "as much again: {approved}"
    );
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("the task goes on and succeeds");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[1].session_id, attempts[0].session_id);
    mock.assert_resumed(&prompt, "notes.txt", "half done");

    // Approving again: the task is not paused for its budget any more.
    let again = fails_in_one_line(as_caller("tidewright_lead").args(["approve", &id, "--budget"]));
    assert!(again.contains("failed precondition"), "{again}");
    // Who decided, when and why is in the audit log (a refusal's entry is
    // written after its answer: polled for).
    let audit = eventually(Duration::from_secs(10), || async {
        let audit = server.audit_log().await.ok()?;
        let decided = audit
            .iter()
            .filter(|e| e.action == "task.approve_budget")
            .count();
        (decided == 3).then_some(audit)
    })
    .await
    .expect("three decisions audited");
    let decided: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "task.approve_budget")
        .map(|e| (e.actor.as_str(), e.outcome.as_str(), e.detail.as_str()))
        .collect();
    assert_eq!(decided.len(), 3, "{decided:?}");
    assert_eq!(decided[0].0, "dana");
    assert_ne!(decided[0].1, "ok");
    assert_eq!(decided[1].0, "lead");
    assert_eq!(decided[1].1, "ok");
    assert!(
        decided[1].2.contains("approved: worth finishing"),
        "{decided:?}"
    );
}

/// What a resumed session is told (the worker's resume prompt): it routes
/// the resumed run's requests to a script of their own.
const RESUMED: &str = "Your previous run on this task stopped before it finished";

/// What one mock model response costs at `prices`.
fn response_usd(prices: &Prices, (input, cached, output): (u64, u64, u64)) -> f64 {
    prices
        .priced(&Usage {
            input_tokens: input,
            cached_input_tokens: cached,
            output_tokens: output,
        })
        .usd
}

/// A Codex or Gemini CLI task over its budget mid-turn, on `server` with a
/// worker of its runtime: the CLI's stream reports tokens only when its
/// turn ends, so the worker reads them from the session's transcript as
/// the CLI writes it. Two responses cross the budget while the third
/// hangs; the task pauses, the agent is stopped and charged exactly the
/// two, and a raise resumes the same session to success.
async fn paused_mid_turn_then_resumed(
    server: &Server,
    step: v1::StepSpec,
    one_response: f64,
) -> v1::Task {
    let client = server.tasks().await.expect("client");
    let mut request = task("budgeted", vec![step]);
    let budget = 1.5 * one_response;
    if let Some(spec) = request.spec.as_mut() {
        spec.budget = Some(v1::Budget {
            usd: Some(budget),
            tokens: None,
            approvers: Vec::new(),
        });
    }
    let id = submit(&client, request).await.expect("submit");
    wait_task(&client, &id, Duration::from_secs(60), paused)
        .await
        .expect("the task pauses at its budget, mid-turn");
    let step = wait_task(&client, &id, Duration::from_secs(20), |t| {
        let step = t.steps.into_iter().next()?;
        (step.state == v1::StepState::Queued as i32).then_some(step)
    })
    .await
    .expect("the step waits, queued");
    assert_eq!(step.attempts.len(), 1, "{:?}", step.attempts);
    let first = &step.attempts[0];
    let cost = first.cost.unwrap_or_default();
    assert!(
        (cost.usd - 2.0 * one_response).abs() < 1e-12,
        "charged {cost:?}, not two responses of ${one_response}"
    );
    assert!(!first.session_id.is_empty());
    succeed(server.cli().args(["budget", "raise", &id, "--usd", "1"]));
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("the task goes on and succeeds");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        attempts[1].session_id,
        attempts[0].session_id,
        "the same session goes on; the step's log: {}",
        step_log(&client, &id, "notes").await
    );
    task
}

#[tokio::test]
async fn a_codex_task_over_its_budget_is_paused_within_the_turn_and_resumes() {
    use tidewright_tests::provider::{self, Api, Mock, Reply};
    let dir = tempfile::tempdir().expect("tempdir");
    // The resumed run has a script of its own: the first run may be
    // stopped before it asks for its hanging third response.
    let mock = Mock::start_routed(
        Api::OpenAi,
        vec![
            (
                RESUMED,
                vec![Reply::Text("Finished where I left off.".into())],
            ),
            (
                "Do two things",
                vec![
                    Reply::codex_command("echo one > a.txt"),
                    Reply::codex_command("echo two > b.txt"),
                    Reply::Hang,
                ],
            ),
        ],
    )
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let _worker = start_codex_worker(&server, dir.path(), "agent-1", &mock, (&["codex"], 1), &[])
        .expect("worker");
    let one = response_usd(
        &Prices::openai(tidewright_worker::runtime::codex::DEFAULT_MODEL),
        (
            provider::INPUT_TOKENS,
            provider::CACHED_TOKENS,
            provider::OUTPUT_TOKENS,
        ),
    );
    let task =
        paused_mid_turn_then_resumed(&server, codex_step("work", "Do two things"), one).await;
    // The resumed run's cost is its own response, not the thread's.
    let second = task.steps[0].attempts[1].cost.unwrap_or_default();
    assert!((second.usd - one).abs() < 1e-12, "{second:?}");
}

#[tokio::test]
async fn a_gemini_task_over_its_budget_is_paused_within_the_turn_and_resumes() {
    use tidewright_tests::provider::{self, Api, Mock, Reply};
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start_routed(
        Api::Google,
        vec![
            (
                RESUMED,
                vec![Reply::Text("Finished where I left off.".into())],
            ),
            (
                "Do two things",
                vec![
                    Reply::gemini_write("a.txt", "one\n"),
                    Reply::gemini_write("b.txt", "two\n"),
                    Reply::Hang,
                ],
            ),
        ],
    )
    .await
    .expect("mock");
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[]).expect("server");
    let _worker = start_gemini_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["gemini-cli"], 1),
        &[],
    )
    .expect("worker");
    let one = response_usd(
        &Prices::gemini(tidewright_worker::runtime::gemini::DEFAULT_MODEL),
        (
            provider::INPUT_TOKENS,
            provider::CACHED_TOKENS,
            provider::OUTPUT_TOKENS,
        ),
    );
    let task =
        paused_mid_turn_then_resumed(&server, gemini_step("work", "Do two things"), one).await;
    let second = task.steps[0].attempts[1].cost.unwrap_or_default();
    assert!((second.usd - one).abs() < 1e-12, "{second:?}");
}
