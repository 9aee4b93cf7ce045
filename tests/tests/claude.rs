//! The claude-code runtime with the real Claude Code CLI (installed from npm
//! by scripts/claude.sh) talking to a mock of the Anthropic API on loopback:
//! tools really run in the step's workspace, the stream becomes live logs
//! and progress, the result and its cost become the step's output, and API
//! errors and a killed CLI fail the attempt.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tidewright_api::v1;
use tidewright_tests::provider::{self, Api, Mock, Reply, Reset};
use tidewright_tests::*;

/// A control plane and one claude-code worker pointed at `mock`, keeping
/// workspaces so the test can look inside.
async fn claude_worker(dir: &Path, mock: &Mock) -> (Server, Process) {
    claude_worker_with(dir, mock, &["claude-code"], &["--keep-workspaces"]).await
}

/// A control plane serving HTTP too (its address is the third value), and
/// one claude-code worker `agent-1` with `slots` and extra flags.
async fn claude_worker_serving_http(
    dir: &Path,
    mock: &Mock,
    slots: u32,
    flags: &[&str],
) -> (Server, Process, String) {
    let http = free_addr();
    let server = Server::start_on(dir, "127.0.0.1:0", &["--http-listen", &http]).expect("server");
    let worker =
        start_claude_worker(&server, dir, mock, &["claude-code"], slots, flags).expect("worker");
    (server, worker, http)
}

#[tokio::test]
async fn an_agent_writes_a_file_and_its_result_and_cost_become_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_write("hello.txt", "hello from the agent\n"),
            Reply::Text("Wrote hello.txt.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, _worker) = claude_worker(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task(
            "agent",
            vec![claude_step("write", "Write hello.txt", &["Write"])],
        ),
    )
    .await
    .expect("submit");
    let events = events_until_done(&client, &id).await;

    let task = wait_succeeded(&client, &id, Duration::from_secs(10))
        .await
        .expect("succeeded");
    let step = &task.steps[0];
    let workspace = dir
        .path()
        .join("work/agent-1")
        .join(&id)
        .join("write/attempt-1");
    assert_eq!(
        std::fs::read_to_string(workspace.join("hello.txt")).expect("the agent wrote the file"),
        "hello from the agent\n"
    );
    let output: Value = serde_json::from_str(&step.output_json).expect("output JSON");
    assert_eq!(output["result"], "Wrote hello.txt.");
    assert_eq!(output["numTurns"], 2);
    assert!(!output["sessionId"].as_str().unwrap_or_default().is_empty());
    // Two API calls, each reporting the mock's usage.
    let cost = &output["cost"];
    assert_eq!(cost["inputTokens"], 2 * provider::INPUT_TOKENS);
    assert_eq!(cost["outputTokens"], 2 * provider::OUTPUT_TOKENS);
    assert_eq!(cost["cacheReadTokens"], 2 * provider::CACHED_TOKENS);
    assert!(cost["usd"].as_f64().unwrap_or(0.0) > 0.0, "{cost}");
    assert_eq!(cost["sessionByModel"].as_object().map(|m| m.len()), Some(1));
    // The same figures, structured, on the attempt, the step and the task.
    let structured = v1::Cost {
        usd: cost["usd"].as_f64().unwrap_or_default(),
        input_tokens: 2 * provider::INPUT_TOKENS,
        output_tokens: 2 * provider::OUTPUT_TOKENS,
        cache_read_tokens: 2 * provider::CACHED_TOKENS,
        cache_creation_tokens: 2 * provider::CACHE_CREATION_TOKENS,
    };
    assert_eq!(step.attempts[0].cost.as_ref(), Some(&structured));
    assert_eq!(step.cost.as_ref(), Some(&structured));
    assert_eq!(task.cost.as_ref(), Some(&structured));
    assert_eq!(
        step.attempts[0].session_id,
        output["sessionId"].as_str().unwrap_or_default()
    );
    assert_eq!(
        step.attempts[0].model,
        output["model"].as_str().unwrap_or_default()
    );
    // The overview's last hour has the same spend, under the model.
    let activity = client
        .clone()
        .get_activity(v1::GetActivityRequest::default())
        .await
        .expect("activity")
        .into_inner();
    let spent: Vec<&v1::ModelSpend> = activity.minutes.iter().flat_map(|m| &m.spend).collect();
    assert_eq!(spent.len(), 1, "{spent:?}");
    assert_eq!(spent[0].model, step.attempts[0].model);
    assert_eq!(spent[0].cost.as_ref(), Some(&structured));

    // The tool call was in the event stream while the step still ran.
    let tool_seq = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(v1::event::Kind::Log(log)) if log.line.starts_with("tool: Write file_path=") => {
                Some(e.seq)
            }
            _ => None,
        })
        .expect("the tool call was logged");
    let done_seq = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(v1::event::Kind::StepState(s)) if s.state == v1::StepState::Succeeded as i32 => {
                Some(e.seq)
            }
            _ => None,
        })
        .expect("the step succeeded");
    assert!(tool_seq < done_seq);
    assert!(events.iter().any(|e| matches!(&e.kind, Some(v1::event::Kind::Progress(p)) if p.message.starts_with("turn 1 of 5"))));

    // The second request carried the tool's result back to the model.
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[1].to_string().contains("tool_result"));
}

#[tokio::test]
async fn api_errors_fail_the_attempt_with_the_apis_message_and_follow_the_retry_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The CLI does not retry a 500 marked `x-should-retry: false`, but it
    // does retry a 400 several times (falling back on request features), so
    // the 400 is scripted for each of those.
    let mut script = vec![Reply::Error {
        status: 500,
        message: "the mock is overloaded".into(),
    }];
    script.extend((0..8).map(|_| Reply::Error {
        status: 400,
        message: "the mock refuses this prompt".into(),
    }));
    let mock = Mock::start(Api::Anthropic, script).await.expect("mock");
    let (server, _worker) = claude_worker(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let mut step = claude_step("ask", "Say hello", &[]);
    step.retry = quick_retries(2);
    let id = submit(&client, task("errors", vec![step]))
        .await
        .expect("submit");
    let task = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "retried once: {attempts:?}");
    assert!(
        attempts[0].error.contains("500") && attempts[0].error.contains("the mock is overloaded"),
        "{}",
        attempts[0].error
    );
    assert!(
        attempts[1].error.contains("400")
            && attempts[1].error.contains("the mock refuses this prompt"),
        "{}",
        attempts[1].error
    );
    // Had the CLI retried the 500 itself, the first attempt would have
    // reported the 400.
    assert!(mock.requests().len() >= 2);
}

#[tokio::test]
async fn a_cli_killed_mid_stream_is_a_failed_attempt_not_a_success() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![Reply::Hang])
        .await
        .expect("mock");
    let (server, _worker) = claude_worker(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let marker = format!("marker-{}", std::process::id());
    let id = submit(
        &client,
        task(
            "killed",
            // The prompt goes through the CLI's input, not its argv: the
            // marker that finds its process is an allowed tool's name.
            vec![claude_step("hang", "Think forever", &[marker.as_str()])],
        ),
    )
    .await
    .expect("submit");
    eventually(Duration::from_secs(30), || async {
        (mock.hanging() == 1).then_some(())
    })
    .await
    .expect("the CLI is mid-stream");
    let pid = cli_pid(&marker).expect("the claude process");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let task = wait_finished(&client, &id, Duration::from_secs(30))
        .await
        .expect("finished");
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    assert_eq!(
        task.steps[0].error,
        "the claude CLI ended without a result (killed by signal 9)"
    );
}

#[tokio::test]
async fn a_retried_step_resumes_the_first_attempts_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Attempt 1 writes a file, then the API fails it; attempt 2 continues.
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_write("notes.txt", "half done\n"),
            Reply::Error {
                status: 500,
                message: "the mock fell over".into(),
            },
            Reply::Text("Finished where I left off.".into()),
        ],
    )
    .await
    .expect("mock");
    // Workspaces are not kept for debugging: the failed attempt's is kept
    // for the retry by the worker's own rule.
    let (server, _worker) = claude_worker_with(dir.path(), &mock, &["claude-code"], &[]).await;
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt {}", std::process::id());
    let mut step = claude_step("notes", &prompt, &["Write"]);
    step.retry = quick_retries(2);
    let id = submit(&client, task("resume", vec![step]))
        .await
        .expect("submit");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(10))
        .await
        .expect("succeeded");
    let step = &task.steps[0];
    let attempts = &step.attempts;
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[0].error.contains("the mock fell over"),
        "{}",
        attempts[0].error
    );
    assert!(!attempts[0].session_id.is_empty());
    assert_eq!(
        attempts[1].session_id, attempts[0].session_id,
        "the same session"
    );
    let resumed = format!(
        "resuming session {} of attempt 1 in its workspace",
        attempts[0].session_id
    );
    assert!(
        events.iter().any(|e| matches!(&e.kind, Some(v1::event::Kind::Log(l)) if l.attempt == 2 && l.line == resumed)),
        "the events say it resumed"
    );

    // The second run's request carried the first run's history: its
    // prompt, the tool call and the tool's result.
    let requests = mock.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let history = requests[2]["messages"].to_string();
    assert!(
        history.contains(&prompt),
        "the first run's prompt: {history}"
    );
    assert!(history.contains("tool_use") && history.contains("tool_result"));
    assert!(history.contains("notes.txt"));

    // Each attempt is charged its own part of the session's cost.
    let cost = |a: &v1::Attempt| a.cost.unwrap_or_default();
    assert_eq!(cost(&attempts[0]).input_tokens, provider::INPUT_TOKENS);
    assert_eq!(cost(&attempts[1]).input_tokens, provider::INPUT_TOKENS);
    let total = task.cost.unwrap_or_default();
    assert!(
        (total.usd - cost(&attempts[0]).usd - cost(&attempts[1]).usd).abs() < 1e-12,
        "{total:?}"
    );
    assert!(
        cost(&attempts[1]).usd < cost(&attempts[0]).usd * 1.5,
        "not charged twice: {attempts:?}"
    );
}

#[tokio::test]
async fn a_bare_prompt_runs_as_one_agent_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![Reply::Text("All done.".into())])
        .await
        .expect("mock");
    let (server, _worker) = claude_worker(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let id = submit(&client, prompt_task("Tidy the README", false))
        .await
        .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeded");
    assert_eq!(task.steps.len(), 1);
    assert_eq!(task.steps[0].id, "agent");
    let output: Value = serde_json::from_str(&task.steps[0].output_json).expect("output");
    assert_eq!(output["result"], "All done.");
    assert!(mock.requests()[0].to_string().contains("Tidy the README"));
}

/// The pid of the process whose argv holds `marker`.
fn cli_pid(marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(marker)
                .then_some(pid)
        })
}

#[tokio::test]
async fn a_stalled_agent_is_killed_within_its_stall_timeout_and_the_retry_resumes_its_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Attempt 1 writes a file, then the API goes silent mid-stream for
    // ever; attempt 2 finishes.
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_write("notes.txt", "half done\n"),
            Reply::Hang,
            Reply::Text("Finished after the stall.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, _worker, http) = claude_worker_serving_http(dir.path(), &mock, 1, &[]).await;
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, slowly {}", std::process::id());
    let mut step = claude_step("notes", &prompt, &["Write"]);
    step.retry = quick_retries(2);
    step.stall_timeout_seconds = 3;
    let id = submit(&client, task("stalls", vec![step]))
        .await
        .expect("submit");
    eventually(Duration::from_secs(30), || async {
        (mock.hanging() == 1).then_some(())
    })
    .await
    .expect("the API hangs mid-stream");
    let hung_at = tidewright_api::convert::now_micros();
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("the retry succeeds");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        attempts[0].error,
        "stalled: no output, progress, log or tool event for 3s"
    );
    // Declared within the stall timeout plus a heartbeat (5 s) of the hang.
    let stalled_after = micros(&attempts[0].finished_at) - hung_at;
    assert!(
        stalled_after <= 8_000_000,
        "declared stalled {stalled_after} µs after the hang"
    );
    assert_eq!(
        attempts[1].session_id, attempts[0].session_id,
        "the retry resumed the session"
    );
    let requests = mock.requests();
    let history = requests.last().expect("a request")["messages"].to_string();
    assert!(
        history.contains(&prompt) && history.contains("notes.txt"),
        "the retry's request carries the first run's conversation: {history}"
    );
    let (status, metrics) = http_get(&http, "/metrics", Some(&server.admin_token)).expect("scrape");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tidewright_step_attempts_finished_total{outcome=\"stalled\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_usage_limit_pauses_its_pools_agents_until_the_reset_without_spending_an_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reset_secs = tidewright_api::convert::now_micros() / 1_000_000 + 5;
    let mock = Mock::start(
        Api::Anthropic,
        vec![Reply::Error {
            status: 429,
            message: format!("Claude AI usage limit reached|{reset_secs}"),
        }],
    )
    .await
    .expect("mock");
    // The agents' pool has room for two at once; a shell pool beside it.
    let (server, _agents, http) =
        claude_worker_serving_http(dir.path(), &mock, 2, &["--pool", "agents"]).await;
    let _shells = server
        .worker_with("shell-1", &["shell"], 1, &["--pool", "shells"])
        .expect("shell worker");
    server
        .wait_for_agents(&["agent-1", "shell-1"])
        .await
        .expect("workers up");
    let client = server.tasks().await.expect("client");

    // One attempt allowed, and the limit does not spend it.
    let first = submit(
        &client,
        task("first", vec![claude_step("ask", "Say hello", &[])]),
    )
    .await
    .expect("submit");
    wait_task(&client, &first, Duration::from_secs(30), |t| {
        (t.steps[0].attempts.len() == 1
            && t.steps[0].attempts[0].state == v1::StepState::Failed as i32)
            .then_some(())
    })
    .await
    .expect("the first attempt hits the limit");
    // During the pause: another agent step of the pool waits, a shell
    // step on another pool runs.
    let second = submit(
        &client,
        task("second", vec![claude_step("ask", "Say hello again", &[])]),
    )
    .await
    .expect("submit");
    let plain = submit(&client, task("plain", vec![shell_step("s", &[], "true")]))
        .await
        .expect("submit");
    wait_succeeded(&client, &plain, Duration::from_secs(20))
        .await
        .expect("the other pool keeps running");
    let agents = stdout_of(server.cli().args(["get", "agents"]));
    let paused = agents
        .lines()
        .find(|l| l.starts_with("agent-1"))
        .expect("the agent worker");
    assert!(
        paused.contains("paused") && paused.contains("rate limited"),
        "{agents}"
    );
    let (_, metrics) = http_get(&http, "/metrics", Some(&server.admin_token)).expect("scrape");
    assert!(
        metrics.contains("tidewright_rate_limits_total{pool=\"agents\",runtime=\"claude-code\"} 1")
            && metrics.contains("tidewright_pools_paused 1")
            && metrics
                .contains("tidewright_agents_paused{pool=\"agents\",runtime=\"claude-code\"} 1"),
        "{metrics}"
    );

    let reset = reset_secs * 1_000_000;
    for id in [&first, &second] {
        let task = wait_succeeded(&client, id, Duration::from_secs(60))
            .await
            .expect("runs after the reset");
        let last = task.steps[0].attempts.last().expect("an attempt");
        assert!(
            micros(&last.started_at) >= reset,
            "no agent of the pool starts before the reset: {task:?}"
        );
    }
    let task = wait_succeeded(&client, &first, Duration::from_secs(1))
        .await
        .expect("first");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts[0].error.contains("429") && attempts[0].error.contains("usage limit reached"),
        "{}",
        attempts[0].error
    );
}

/// A control plane whose pools back off a second after a limit that names
/// no reset (doubling), serving HTTP too, and one claude-code worker in
/// pool `agents`, on an API key or a subscription's token.
async fn limited_pool(dir: &Path, mock: &Mock, subscription: bool) -> (Server, Process, String) {
    let http = free_addr();
    let server = Server::start_on(
        dir,
        "127.0.0.1:0",
        &["--http-listen", &http, "--provider-limit-backoff", "1s"],
    )
    .expect("server");
    let bin = tidewright_tests::claude_bin().display().to_string();
    let credential = if subscription {
        ("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-test-subscription")
    } else {
        ("ANTHROPIC_API_KEY", "sk-ant-test-key")
    };
    let worker = start_worker_env(
        &server.url,
        dir,
        "agent-1",
        &["claude-code"],
        1,
        &["--claude-bin", &bin, "--pool", "agents"],
        &server.worker_token,
        &[("ANTHROPIC_BASE_URL", &mock.url), credential],
    )
    .expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    (server, worker, http)
}

/// The step, allowed one attempt, meets the provider's `limit` twice and
/// then finishes: it succeeds on that one attempt, its pool paused after
/// each limit (a second, then two: the answer names no reset, so the
/// pool backs off) and ran again, and each handed-back
/// attempt says `signal` decided.
async fn a_limit_met_twice_pauses_the_pool_and_spends_no_attempt(limit: Reply, signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![limit.clone(), limit])
        .await
        .expect("mock");
    let (server, _worker, http) = limited_pool(dir.path(), &mock, false).await;
    let client = server.tasks().await.expect("client");
    let mut step = claude_step("ask", "Say hello", &[]);
    step.retry = quick_retries(1);
    let id = submit(&client, task("limited", vec![step]))
        .await
        .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(90))
        .await
        .expect("the step succeeds on its one attempt");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    let said = format!("claude-code rate limited ({signal})");
    for handed_back in &attempts[..2] {
        assert_eq!(handed_back.state, v1::StepState::Failed as i32);
        assert!(
            handed_back.error.starts_with(&said),
            "{}",
            handed_back.error
        );
        assert!(
            handed_back.error.contains("this attempt does not count"),
            "{}",
            handed_back.error
        );
    }
    assert_eq!(attempts[2].state, v1::StepState::Succeeded as i32);
    // The pool waited out each back-off before its agent ran again: one
    // second, then two.
    for (i, least) in [(1, 900_000), (2, 1_900_000)] {
        let paused = micros(&attempts[i].started_at) - micros(&attempts[i - 1].finished_at);
        assert!(paused >= least, "attempt {i} paused {paused} µs");
    }
    // The step's events say which signal decided.
    let events = events_until_done(&client, &id).await;
    let handed = events
        .iter()
        .filter(|e| {
            matches!(&e.kind, Some(v1::event::Kind::StepState(s))
                if s.state == v1::StepState::Queued as i32 && s.message.starts_with(&said))
        })
        .count();
    assert_eq!(handed, 2, "{events:?}");
    // And so does `tidewright get task`, on each handed-back attempt.
    let shown = stdout_of(server.cli().args(["get", "task", &id]));
    assert_eq!(shown.matches(&said).count(), 2, "{shown}");
    let (_, metrics) = http_get(&http, "/metrics", Some(&server.admin_token)).expect("scrape");
    assert!(
        metrics.contains("tidewright_rate_limits_total{pool=\"agents\",runtime=\"claude-code\"} 2")
            && metrics.contains("tidewright_pools_paused 0")
            && !metrics.contains("tidewright_agents_paused{"),
        "paused twice, and resumed: {metrics}"
    );
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn a_429_from_the_pinned_cli_pauses_the_pool_and_the_step_succeeds_on_its_one_attempt() {
    // Naming no reset: the pool backs off (one that names one is
    // provider_resets.rs's).
    a_limit_met_twice_pauses_the_pool_and_spends_no_attempt(
        Reply::Error {
            status: 429,
            message: "mock: rate limited".into(),
        },
        "api_error_status 429",
    )
    .await;
}

#[tokio::test]
async fn a_529_from_the_pinned_cli_pauses_the_pool_and_the_step_succeeds_on_its_one_attempt() {
    a_limit_met_twice_pauses_the_pool_and_spends_no_attempt(
        Reply::Error {
            status: 529,
            message: "Overloaded".into(),
        },
        "api_error_status 529",
    )
    .await;
}

#[tokio::test]
async fn a_subscriptions_usage_window_pauses_its_pool_until_the_reset_the_cli_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let resets_at = tidewright_api::convert::now_micros() / 1_000_000 + 4;
    let mock = Mock::start(
        Api::Anthropic,
        vec![Reply::Limited {
            status: 429,
            message: "mock: five-hour window used".into(),
            reset: Reset::At(resets_at),
            daily: false,
        }],
    )
    .await
    .expect("mock");
    let (server, _worker, _http) = limited_pool(dir.path(), &mock, true).await;
    let client = server.tasks().await.expect("client");
    let mut step = claude_step("ask", "Say hello", &[]);
    step.retry = quick_retries(1);
    let id = submit(&client, task("window", vec![step]))
        .await
        .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("runs after the reset");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    // The CLI's report, and the reset as the proxy read the answer.
    let signal = format!(
        "claude-code rate limited (rate_limit_event resetsAt={} rateLimitType=five_hour; reset from ",
        tidewright_api::view::format_utc(resets_at * 1_000_000)
    );
    assert!(
        attempts[0].error.starts_with(&signal),
        "{}",
        attempts[0].error
    );
    assert!(
        attempts[0].error.contains("(until the reset)"),
        "{}",
        attempts[0].error
    );
    assert!(
        micros(&attempts[1].started_at) >= resets_at * 1_000_000,
        "not before the reset the CLI named: {attempts:?}"
    );
    // The token reached the CLI as a subscription's, and nowhere else.
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let shown = stdout_of(server.cli().args(["get", "task", &id, "-o", "json"]));
    assert!(!shown.contains("sk-ant-oat01-test-subscription"), "{shown}");
}

/// The CLI named through a linked directory (an npm prefix behind a link,
/// outside anything the sandbox shares) runs in the sandbox as it does by
/// its real path: the sandbox runs a program its room names by its real
/// path. Named as it was, a link in the prefix's `.bin` led to a path the
/// sandbox lacked (exit 127).
#[tokio::test]
async fn a_cli_named_through_a_linked_directory_runs_in_the_sandbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![Reply::Text("Linked.".into())])
        .await
        .expect("mock");
    let real = claude_bin();
    // <install>/node_modules/.bin/claude
    let install = real
        .ancestors()
        .nth(3)
        .and_then(|dir| std::fs::canonicalize(dir).ok())
        .expect("the CLI's install");
    let prefix = dir.path().join("prefix");
    std::os::unix::fs::symlink(&install, &prefix).expect("link");
    let linked = prefix.join("node_modules/.bin/claude");
    assert!(linked.exists(), "{}", linked.display());
    let server = Server::start(&dir.path().join("server")).expect("server");
    let bin = linked.display().to_string();
    let _worker = start_strict_worker(
        &server.url,
        &server.data_dir,
        "agent-1",
        &["claude-code"],
        1,
        &["--claude-bin", &bin],
        &server.worker_token,
        &[
            ("ANTHROPIC_BASE_URL", &mock.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
        ],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(&client, prompt_task("Tidy the README", false))
        .await
        .expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeded");
    let output: Value = serde_json::from_str(&task.steps[0].output_json).expect("output");
    assert_eq!(output["result"], "Linked.");
}
