//! One suite for every agent runtime: each row is a real agent CLI
//! (pinned, installed from npm by its script) talking to the mock of its
//! provider's API on loopback, and every case runs once per row. What an
//! agent runtime must do, whichever CLI it is: its tools run in the step's
//! sandboxed workspace and stream as live logs; its answer, session and
//! priced tokens become the step's output; the worker's key reaches the
//! provider through the worker's proxy and never the CLI or the step; a
//! provider's limit pauses the pool until the reset the provider named
//! without spending an attempt; a retry on another worker, after the first
//! is killed, resumes the session from its checkpoint; and the agent
//! shares state through tidewright's MCP server. A new runtime is one more
//! row (and one line in the macro at the bottom).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tidewright_api::v1;
use tidewright_tests::calc::{BUG as CALC_BUG, TEST as CALC_TEST};
use tidewright_tests::provider::{self, Api, Mock, Reply};
use tidewright_tests::*;

/// Starts worker `name` of `server` running the CLI against `mock`, with
/// its capabilities and slots and extra worker flags.
type StartWorker =
    fn(&Server, &Path, &str, &Mock, (&[&str], u32), &[&str]) -> anyhow::Result<Process>;

/// One agent CLI, as the suite runs it.
struct Cli {
    /// The capability its workers offer (and the runtime's name in errors).
    runtime: &'static str,
    api: Api,
    start: StartWorker,
    /// A step of it: id and prompt.
    step: fn(&str, &str) -> v1::StepSpec,
    /// The model's call of the CLI's tool that writes `content` to `file`
    /// in the workspace, and of the one that reads it back.
    write: fn(&str, &str) -> Reply,
    read: fn(&str) -> Reply,
    /// How the write shows in the step's log: the line starts so.
    written: &'static str,
    /// How the model names tidewright's MCP tools `state_*`: this, then
    /// `put` or `get`.
    state_tools: &'static str,
    /// The worker's key, as the provider's API receives it.
    key: fn() -> String,
    /// The attempt's tokens for `calls` model calls: input, cache read,
    /// output.
    tokens: fn(u64) -> (u64, u64, u64),
    /// How the limit's reset is said in the limited attempt's error.
    reset_source: &'static str,
    /// The model tidewright prices this CLI's tokens for, by the
    /// operator's `--prices` when given; `None` for a CLI that prices its
    /// own run.
    priced: Option<&'static str>,
    /// What else of a run this CLI leaves to check, in the worker's
    /// directory (`work/agent-1`): its own files (none of the step's
    /// token left in them, the API's address as the proxy's).
    left: fn(&Path, &Mock),
}

const CLAUDE_CODE: Cli = Cli {
    runtime: "claude-code",
    api: Api::Anthropic,
    start: start_named_claude_worker,
    step: |id, prompt| claude_step(id, prompt, &["Write", "Read"]),
    write: Reply::claude_write,
    read: Reply::claude_read,
    written: "tool: Write file_path=",
    state_tools: "mcp__tidewright__state_",
    key: || "sk-ant-test-key".into(),
    tokens: |calls| {
        (
            calls * provider::INPUT_TOKENS,
            calls * provider::CACHED_TOKENS,
            calls * provider::OUTPUT_TOKENS,
        )
    },
    reset_source: "reset from retry-after: 3 s",
    priced: None,
    left: |_, _| {},
};

const CODEX: Cli = Cli {
    runtime: "codex",
    api: Api::OpenAi,
    start: start_codex_worker,
    step: codex_step,
    write: |file, content| Reply::codex_command(&format!("echo {} > {file}", content.trim_end())),
    read: |file| Reply::codex_command(&format!("cat {file}")),
    written: "$ /bin/bash -lc 'echo ",
    state_tools: "mcp__tidewright/state_",
    key: || format!("Bearer {OPENAI_TEST_KEY}"),
    tokens: uncached_input,
    reset_source: "reset from retry-after: 3 s",
    priced: Some(tidewright_worker::runtime::codex::DEFAULT_MODEL),
    left: |work, mock| {
        // Each working directory's config.toml names the API as the
        // worker's proxy, never the API itself, and holds no key.
        let homes = work.join(".codex-home/codex");
        let configs = read_each(&homes, "config.toml");
        assert!(
            !configs.is_empty(),
            "no config.toml under {}",
            homes.display()
        );
        for config in configs {
            assert!(
                config.contains("base_url = \"http://127.0.0.1:") && !config.contains(&mock.url),
                "the sandboxed CLI reaches the API through the worker's proxy:\n{config}"
            );
            assert!(!config.contains(OPENAI_TEST_KEY), "{config}");
        }
    },
};

const GEMINI_CLI: Cli = Cli {
    runtime: "gemini-cli",
    api: Api::Google,
    start: start_gemini_worker,
    step: gemini_step,
    write: Reply::gemini_write,
    read: |file| Reply::tool("read_file", json!({"file_path": file})),
    written: "tool: write_file",
    state_tools: "mcp_tidewright_state_",
    key: || GEMINI_TEST_KEY.into(),
    tokens: uncached_input,
    reset_source: "reset from RetryInfo retryDelay: 3 s",
    priced: Some(tidewright_worker::runtime::gemini::DEFAULT_MODEL),
    left: |work, _| {
        // The settings a run's MCP server was given the step's token in
        // keep none once the run is over.
        for settings in read_each(&work.join(".gemini-home/gemini"), ".gemini/settings.json") {
            assert!(!settings.contains("tidewright_step_"), "{settings}");
        }
    },
};

const QWEN_CODE: Cli = Cli {
    runtime: "qwen-code",
    api: Api::OpenAi,
    start: start_qwen_worker,
    step: |id, prompt| agent_step("qwen-code", id, prompt),
    // Its file tools take absolute paths only.
    write: |file, content| {
        Reply::tool(
            "write_file",
            json!({"file_path": format!("{{cwd}}/{file}"), "content": content}),
        )
    },
    read: |file| Reply::tool("read_file", json!({"file_path": format!("{{cwd}}/{file}")})),
    written: "tool: write_file",
    state_tools: "mcp__tidewright__state_",
    key: || format!("Bearer {OPENAI_TEST_KEY}"),
    tokens: uncached_input,
    reset_source: "reset from retry-after: 3 s",
    priced: Some(tidewright_worker::runtime::qwen::DEFAULT_MODEL),
    left: |work, _| {
        // The settings a run's MCP server was given the step's token in
        // keep none once the run is over.
        for settings in read_each(&work.join(".qwen-home/qwen"), "settings.json") {
            assert!(!settings.contains("tidewright_step_"), "{settings}");
        }
    },
};

/// Tokens as OpenAI's and Google's APIs count them: the cached ones are
/// part of the input, and tidewright counts them apart.
fn uncached_input(calls: u64) -> (u64, u64, u64) {
    (
        calls * (provider::INPUT_TOKENS - provider::CACHED_TOKENS),
        calls * provider::CACHED_TOKENS,
        calls * provider::OUTPUT_TOKENS,
    )
}

/// The file `name` in each directory under `dir`.
fn read_each(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join(name)).ok())
        .collect()
}

/// A control plane with `flags`, and the mock of `cli`'s API answering
/// `script`.
async fn start(cli: &Cli, dir: &Path, flags: &[&str], script: Vec<Reply>) -> (Server, Mock) {
    let mock = Mock::start(cli.api, script).await.expect("mock");
    let server = Server::start_on(dir, "127.0.0.1:0", flags).expect("server");
    (server, mock)
}

/// The lines attempt `attempt` logged.
fn log_of(events: &[v1::Event], attempt: u32) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Log(l)) if l.attempt == attempt => Some(l.line.clone()),
            _ => None,
        })
        .collect()
}

async fn a_tool_writes_a_file_and_the_answer_session_and_cost_become_the_output(cli: &Cli) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = vec![
        (cli.write)("hello.txt", "hello from the agent\n"),
        Reply::Text("Wrote hello.txt.".into()),
    ];
    let http = free_addr();
    let (server, mock) = start(cli, dir.path(), &["--http-listen", &http], script).await;
    // The operator's price for the model, per million tokens.
    let prices = dir.path().join("prices.yaml");
    let mut flags = vec!["--keep-workspaces".to_string()];
    if let Some(model) = cli.priced {
        std::fs::write(
            &prices,
            format!("{model}: {{input: 2, cachedInput: 0.5, output: 10}}\n"),
        )
        .expect("prices");
        flags.extend(["--prices".into(), prices.display().to_string()]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _worker = (cli.start)(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&[cli.runtime], 2),
        &flags,
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task("agent", vec![(cli.step)("write", "Write hello.txt")]),
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
        "hello from the agent\n"
    );
    let step = &task.steps[0];
    let output: Value = serde_json::from_str(&step.output_json).expect("output JSON");
    assert_eq!(output["result"], "Wrote hello.txt.");
    let session = output["sessionId"].as_str().unwrap_or_default();
    assert!(!session.is_empty(), "{output}");
    assert_eq!(step.attempts[0].session_id, session);
    assert!(!step.attempts[0].model.is_empty(), "{:?}", step.attempts[0]);
    // Two model calls, each of the mock's usage; the same cost on the
    // attempt, the step and the task.
    let cost = step.attempts[0].cost.expect("a cost");
    assert_eq!(
        (
            cost.input_tokens,
            cost.cache_read_tokens,
            cost.output_tokens
        ),
        (cli.tokens)(2)
    );
    assert!(cost.usd > 0.0, "{cost:?}");
    if let Some(model) = cli.priced {
        // Priced by tidewright at the operator's price.
        assert_eq!(step.attempts[0].model, model);
        let (input, cached, out) = (cli.tokens)(2);
        let usd = (input as f64 * 2.0 + cached as f64 * 0.5 + out as f64 * 10.0) / 1e6;
        assert!((cost.usd - usd).abs() < 1e-12, "{} against {usd}", cost.usd);
    }
    assert_eq!(step.cost.as_ref(), Some(&cost));
    assert_eq!(task.cost.as_ref(), Some(&cost));

    // The tool call was in the stream while the step ran.
    let seq_of = |wanted: &dyn Fn(&v1::event::Kind) -> bool| {
        events
            .iter()
            .find(|e| e.kind.as_ref().is_some_and(wanted))
            .map(|e| e.seq)
    };
    let tool = seq_of(&|k| matches!(k, v1::event::Kind::Log(l) if l.line.starts_with(cli.written)))
        .unwrap_or_else(|| panic!("the tool call was logged: {:?}", log_of(&events, 1)));
    let succeeded = seq_of(&|k| {
        matches!(k, v1::event::Kind::StepState(s) if s.state == v1::StepState::Succeeded as i32)
    })
    .expect("the step succeeded");
    assert!(tool < succeeded);

    // The API saw the worker's key, put there by the worker's proxy; the
    // CLI held its attempt's, and nothing the step said shows the key.
    let keys = mock.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let key = (cli.key)();
    for seen in &keys {
        assert_eq!(seen, &key);
    }
    let bare = key.trim_start_matches("Bearer ");
    let replay = the_session_replays(&http, &server, &id);
    let said = format!("{events:?}{}{replay}", step.output_json);
    assert!(!said.contains(bare), "the key leaked: {said}");
    (cli.left)(&dir.path().join("work/agent-1"), &mock);
}

/// Step `write` of task `id` replays from its events, whatever its CLI:
/// the prompt starts its one turn, the write is a call with its input and
/// output, the answer follows, each with the cost so far (the running
/// figure budgets count, which grows), and the attempt's end with its
/// final cost; it exports as one HTML page. Answers the JSON and
/// the page, for the caller to look for what must not be there.
fn the_session_replays(http: &str, server: &Server, id: &str) -> String {
    let path = format!("/api/v1/tasks/{id}/steps/write/replay");
    let (status, json) = http_get(http, &path, Some(&server.admin_token)).expect("replay");
    assert_eq!(status, 200, "{json}");
    let replay: Value = serde_json::from_str(&json).expect("replay JSON");
    let entries = replay["entries"].as_array().expect("entries");
    let said: Vec<&Value> = entries
        .iter()
        .filter(|e| ["prompt", "text", "call"].contains(&e["kind"].as_str().unwrap_or_default()))
        .collect();
    let kinds: Vec<&str> = said.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"prompt"), "{json}");
    assert!(
        said[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Write hello.txt"),
        "{json}"
    );
    let call = said
        .iter()
        .find(|e| e["kind"] == "call")
        .unwrap_or_else(|| panic!("a call: {json}"));
    assert!(
        call["input"]
            .as_str()
            .unwrap_or_default()
            .contains("hello.txt"),
        "{json}"
    );
    assert!(call["output"].is_string(), "the call's output: {json}");
    let answer = said
        .iter()
        .rposition(|e| e["kind"] == "text" && e["text"] == "Wrote hello.txt.")
        .unwrap_or_else(|| panic!("the answer: {json}"));
    assert!(answer > 0, "{json}");
    let mut before = 0.0;
    for e in &said {
        assert_eq!(e["attempt"], 1, "{json}");
        assert_eq!(e["turn"], 1, "one prompt, one turn: {json}");
        let so_far = e["usd"].as_f64().expect("usd");
        assert!(so_far >= before, "the cost so far grows: {json}");
        before = so_far;
    }
    let end = entries.last().expect("entries");
    assert_eq!(end["state"], "succeeded", "{json}");
    let cost = replay["step"]["attempts"][0]["cost"]["usd"].as_f64();
    assert!(cost.is_some_and(|c| c > 0.0), "{json}");
    assert_eq!(
        end["usd"].as_f64(),
        cost,
        "the end carries the attempt's cost: {json}"
    );
    assert_eq!(replay["step"]["id"], "write");
    let page = http_call(
        http,
        "GET",
        &format!("{path}?format=html"),
        Some(&server.admin_token),
        &[],
        "",
    )
    .expect("the page");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.headers
            .to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{}",
        page.headers
    );
    assert!(page.body.contains("Wrote hello.txt.") && !page.body.contains("<script"));
    format!("{json}{}", page.body)
}

/// The provider's 429 names its reset, which the worker's model proxy
/// reads from the answer (the CLIs do not pass it on): the CLI makes one
/// request and ends, the pool's agents of this runtime pause until the
/// reset rather than for the control plane's back-off (60 s, longer than
/// this test waits), the limited attempt does not count, and the step runs
/// again and succeeds.
async fn a_limit_pauses_the_pool_until_the_providers_reset_and_spends_no_attempt(cli: &Cli) {
    const RESET_SECONDS: i64 = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = vec![
        Reply::limit(RESET_SECONDS),
        Reply::Text("Done after the pause.".into()),
    ];
    let http = free_addr();
    let (server, mock) = start(
        cli,
        dir.path(),
        &["--provider-limit-backoff", "60s", "--http-listen", &http],
        script,
    )
    .await;
    let _worker = (cli.start)(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&[cli.runtime], 1),
        &[],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let mut step = (cli.step)("ask", "Say hello");
    step.retry = quick_retries(1);
    let id = submit(&client, task("limited", vec![step]))
        .await
        .expect("submit");
    let done = wait_succeeded(&client, &id, Duration::from_secs(45))
        .await
        .unwrap_or_else(|e| panic!("{}: the step succeeds after the reset: {e}", cli.runtime));
    let step = &done.steps[0];
    assert_eq!(step.attempts.len(), 2, "{:?}", step.attempts);
    let limited = &step.attempts[0].error;
    assert!(
        limited.starts_with(&format!("{} rate limited (", cli.runtime))
            && limited.contains(cli.reset_source)
            && limited.contains("(until the reset)")
            && limited.contains("this attempt does not count"),
        "{limited}"
    );
    let output: Value = serde_json::from_str(&step.output_json).expect("output JSON");
    assert_eq!(output["result"], "Done after the pause.");
    // One request per attempt: the CLI did not retry on its own.
    let arrivals = mock.arrivals();
    assert_eq!(arrivals.len(), 2, "one request an attempt");
    let paused = arrivals[1] - arrivals[0];
    assert!(
        paused >= RESET_SECONDS * 1_000_000,
        "the next request came {paused} µs after the limit, before its reset"
    );
    // The replay shows the limit where it hit: attempt 1's end says it.
    let path = format!("/api/v1/tasks/{id}/steps/ask/replay");
    let (status, json) = http_get(&http, &path, Some(&server.admin_token)).expect("replay");
    assert_eq!(status, 200, "{json}");
    let replay: Value = serde_json::from_str(&json).expect("replay JSON");
    let entries = replay["entries"].as_array().expect("entries");
    assert!(
        entries.iter().any(|e| e["kind"] == "state"
            && e["attempt"] == 1
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("rate limited") && m.contains("does not count"))),
        "{json}"
    );
}

/// An attempt that fails on worker A leaves its session with the control
/// plane; A is killed (SIGKILL); the retry runs on worker B, in B's own
/// directories, and resumes the same session: the real CLI sends the
/// earlier conversation again and reads the file attempt 1 wrote.
async fn a_retry_on_another_worker_resumes_the_session_from_its_checkpoint(cli: &Cli) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = vec![
        // Attempt 1, on A: writes a file, then the API fails it.
        (cli.write)("notes.txt", "half done\n"),
        Reply::Error {
            status: 500,
            message: "the mock fell over".into(),
        },
        // Attempt 2, on B: reads the file back, and finishes.
        (cli.read)("notes.txt"),
        Reply::Text("Finished where I left off.".into()),
    ];
    let (server, mock) = start(cli, dir.path(), &[], script).await;
    let mut worker_a = (cli.start)(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&[cli.runtime], 1),
        &[],
    )
    .expect("worker A");
    let client = server.tasks().await.expect("client");
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    let mut step = (cli.step)("notes", &prompt);
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

    let _worker_b = (cli.start)(
        &server,
        dir.path(),
        "agent-2",
        &mock,
        (&[cli.runtime], 1),
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
    assert!(
        log_of(&events, 1)
            .iter()
            .any(|l| l.starts_with(&format!("checkpoint kept: session {session}, "))),
        "{:?}",
        log_of(&events, 1)
    );
    let resumed = log_of(&events, 2);
    assert!(
        resumed.contains(&format!(
            "resuming session {session} of attempt 1 from the checkpoint attempt 1 left"
        )),
        "{resumed:?}"
    );
    mock.assert_resumed(&prompt, "notes.txt", "half done");
    let output: Value = serde_json::from_str(&task.steps[0].output_json).expect("output JSON");
    assert_eq!(output["result"], "Finished where I left off.");
    // Each attempt is charged its own model calls: one on A (the 500 costs
    // nothing), two on B, whatever the session spent before.
    let input = |a: &v1::Attempt| a.cost.map(|c| (c.input_tokens, c.cache_read_tokens));
    let (one, two) = ((cli.tokens)(1), (cli.tokens)(2));
    assert_eq!(
        (input(&attempts[0]), input(&attempts[1])),
        (Some((one.0, one.1)), Some((two.0, two.1))),
        "{attempts:?}"
    );
}

/// The CLI starts tidewright's shared-state MCP server with the step's
/// token: the agent stores a finding with `state_put`, a stale
/// compare-and-set is refused and the agent told so, the agent reads the
/// value back, and the next step reads it.
async fn the_agent_shares_a_finding_through_tidewrights_mcp_server(cli: &Cli) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = vec![
        Reply::tool(
            &format!("{}put", cli.state_tools),
            json!({"key": "finding", "value": {"bug": "off by one", "line": 42}, "expectVersion": 0}),
        ),
        // A second writer's view: stale, so refused, and the agent is told.
        Reply::tool(
            &format!("{}put", cli.state_tools),
            json!({"key": "finding", "value": {"bug": "none"}, "expectVersion": 7}),
        ),
        Reply::tool(
            &format!("{}get", cli.state_tools),
            json!({"key": "finding"}),
        ),
        Reply::Text("Shared the finding.".into()),
    ];
    let (server, mock) = start(cli, dir.path(), &[], script).await;
    let _worker = (cli.start)(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&[cli.runtime, "shell"], 2),
        &[],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task(
            "share",
            vec![
                (cli.step)("investigate", "Find the bug and share it"),
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
    let task = wait_succeeded(&client, &id, Duration::from_secs(90))
        .await
        .expect("succeeded");
    assert_eq!(
        step_output(&task, "fix").expect("output"),
        json!({"bug": "off by one", "line": 42})
    );
    // What the agent saw of its tools: the stored version, the refused
    // compare-and-set, and the value read back.
    let results = mock.tool_results();
    assert_eq!(results.len(), 3, "{results:#?}");
    let said = |n: usize| results[n].to_string().replace('\\', "");
    assert!(said(0).contains(r#""version":1"#), "{}", said(0));
    let refused = format!("conflict: {id}/finding is at version 1, not version 7");
    assert!(said(1).contains(&refused), "{}", said(1));
    assert!(said(2).contains(r#""line":42"#), "{}", said(2));
    (cli.left)(&dir.path().join("work/agent-1"), &mock);
}

/// An agent that reads one file over and over (the API scripted to ask
/// for the same call each turn) is stopped as stalled at the worker's
/// repeat limit, from what the CLI's own stream said it called; the step
/// fails saying so, long before the script runs out.
async fn an_agent_calling_one_tool_with_one_input_over_and_over_is_stopped_as_stalled(cli: &Cli) {
    // Below the Gemini CLI's own loop detection (5), which ends its turn.
    let (error, asked) = going_round_in_circles(cli, "3").await;
    assert!(
        error.starts_with("stalled: called ")
            && error.ends_with(" with the same input 3 times in a row"),
        "{error}"
    );
    // Stopped at the third read: the mock was not asked for all eight.
    assert!(asked <= 6, "the agent ran on: {asked} requests");
}

/// An agent whose turns leave its work as it was (the API scripted to read
/// another file each turn, none of them there, after one write) is stopped
/// as stalled at the worker's `--unchanged-turns`, saying so.
async fn an_agent_whose_work_stops_changing_is_stopped_as_stalled(cli: &Cli) {
    let read = |n| (cli.read)(&format!("missing-{n}.txt"));
    let flags = ["--unchanged-turns", "3", "--repeat-limit", "0"];
    let (error, asked) = getting_nowhere(cli, read, &flags).await;
    assert_eq!(
        error, "stalled: its work did not change over its last 3 turns",
        "{error}"
    );
    assert!(asked <= 8, "the agent ran on: {asked} requests");
}

/// The Gemini CLI's own loop detection ends its turn as a success; the
/// step fails as stalled instead, saying who stopped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gemini_clis_own_loop_detection_stalls_the_step() {
    let (error, _) = going_round_in_circles(&GEMINI_CLI, "0").await;
    assert_eq!(
        error,
        "stalled: the Gemini CLI detected a loop and stopped its turn"
    );
}

/// What the first round's failure says, which the resumed session must
/// be told.
const FIRST_FAILURE: &str = "AssertionError: 1 != 5";

async fn a_verified_step_is_sent_back_its_failing_check_and_passes_on_its_second_round(cli: &Cli) {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = tidewright_tests::git_server::GitServer::start(dir.path()).expect("git server");
    git.create_repo(
        "calc",
        &[("calc.py", CALC_BUG), ("test_calc.py", CALC_TEST)],
    );
    let prompt = format!("Fix add in calc.py {}", std::process::id());
    // The first turn writes a wrong fix and says it is done; once the
    // check's failure is in the conversation, the right one.
    let mock = Mock::start_routed(
        cli.api,
        vec![
            (
                FIRST_FAILURE,
                vec![
                    // A resumed Qwen Code forgets what it read before.
                    (cli.read)("calc.py"),
                    (cli.write)("calc.py", "add = lambda a, b: a + b\n"),
                    Reply::Text("Fixed: add adds now.".into()),
                ],
            ),
            (
                prompt.as_str(),
                vec![
                    // Read first: Qwen Code overwrites only what it read.
                    (cli.read)("calc.py"),
                    (cli.write)("calc.py", "add = lambda a, b: b - a\n"),
                    Reply::Text("All tests pass.".into()),
                ],
            ),
        ],
    )
    .await
    .expect("mock");
    let secrets =
        tidewright_tests::git_server::account_secrets(dir.path(), "repo-secrets", "git-creds")
            .expect("secrets");
    let http = free_addr();
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &[
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--http-listen",
            &http,
        ],
    )
    .expect("server");
    let _worker = (cli.start)(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&[cli.runtime], 1),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let mut fix = (cli.step)("fix", &prompt);
    fix.verify = Some(v1::VerifySpec {
        checks: vec![unittest_check()],
        rounds: 2,
        protect: vec!["test_*.py".into()],
        rubric: String::new(),
    });
    let request = task_on_repo("verified", vec![fix], &git.url("calc"));
    let id = submit(&client, request).await.expect("submit");
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("the task succeeds on its second round");
    let attempts = &step(&task, "fix").attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    // Round 1: the wrong fix, its check's failure kept and said.
    let first = attempts[0].verification.as_ref().expect("round 1");
    assert_eq!(
        (attempts[0].state, first.round),
        (v1::StepState::Failed as i32, 1)
    );
    assert!(
        attempts[0]
            .error
            .starts_with("verify round 1: tests failed (exit 1)"),
        "{}",
        attempts[0].error
    );
    let check = &first.checks[0];
    assert!(!check.passed && check.exit_code == Some(1), "{check:?}");
    assert!(check.tail.contains(FIRST_FAILURE), "{}", check.tail);
    // Round 2, in the same session: the right fix, its check passed.
    let second = attempts[1].verification.as_ref().expect("round 2");
    assert_eq!(
        (attempts[1].state, second.round),
        (v1::StepState::Succeeded as i32, 2)
    );
    assert!(second.checks[0].passed, "{second:?}");
    // Its own diff: from the first round's commit to its own.
    assert!(first.round_diff.is_empty(), "{}", first.round_diff);
    assert!(
        second.round_diff.contains("-add = lambda a, b: b - a")
            && second.round_diff.contains("+add = lambda a, b: a + b"),
        "{}",
        second.round_diff
    );
    assert!(!attempts[0].session_id.is_empty());
    assert_eq!(
        attempts[1].session_id, attempts[0].session_id,
        "the same session goes on"
    );
    // Each round is charged: its own model calls, to the step and the task.
    let tokens = |a: &v1::Attempt| a.cost.map_or(0, |c| c.input_tokens + c.cache_read_tokens);
    assert!(
        tokens(&attempts[0]) > 0 && tokens(&attempts[1]) > 0,
        "{attempts:?}"
    );
    let charged = step(&task, "fix")
        .cost
        .map_or(0, |c| c.input_tokens + c.cache_read_tokens);
    assert_eq!(charged, tokens(&attempts[0]) + tokens(&attempts[1]));
    // The failure reached the provider in the resumed conversation, after
    // the first turn's prompt.
    let told = mock
        .requests()
        .iter()
        .map(Value::to_string)
        .find(|r| r.contains(FIRST_FAILURE))
        .expect("a request told the failure");
    assert!(
        told.contains(&prompt) && told.contains("The check \\\"tests\\\""),
        "{told}"
    );
    // Each round is an event.
    let said: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Verification(v)) => Some(v.message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        said.iter()
            .any(|m| m.starts_with("verify round 1: tests failed (exit 1)")),
        "{said:?}"
    );
    assert!(
        said.iter().any(|m| m == "verify round 2: its check passed"),
        "{said:?}"
    );
    // The checks ran on the committed work, apart from the agent: its
    // branch holds the right fix.
    let work = step(&task, "fix").work.clone().expect("work");
    assert_eq!(second.head_commit, work.head_commit);
    assert_eq!(work.changed_paths, vec!["calc.py"]);

    // The replay holds both rounds in order, the second turn's prompt as
    // the resumed session took it (the check's failure in it), what the
    // second round changed, and the step's diff.
    let path = format!("/api/v1/tasks/{id}/steps/fix/replay");
    let (status, json) = http_get(&http, &path, Some(&server.admin_token)).expect("replay");
    assert_eq!(status, 200, "{json}");
    let replay: Value = serde_json::from_str(&json).expect("replay JSON");
    let entries = replay["entries"].as_array().expect("entries");
    let rounds: Vec<(u64, bool)> = entries
        .iter()
        .filter(|e| e["kind"] == "verification")
        .map(|e| (e["round"].as_u64().unwrap_or(0), e["passed"] == true))
        .collect();
    assert_eq!(rounds, vec![(1, false), (2, true)], "{json}");
    assert!(
        entries.iter().any(|e| e["kind"] == "prompt"
            && e["attempt"] == 2
            && e["text"]
                .as_str()
                .is_some_and(|t| t.contains(FIRST_FAILURE))),
        "the second turn's prompt tells the failure: {json}"
    );
    let round_diff = replay["step"]["attempts"][1]["verification"]["roundDiff"]
        .as_str()
        .unwrap_or_default();
    assert!(round_diff.contains("+add = lambda a, b: a + b"), "{json}");
    assert!(
        replay["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+add = lambda a, b: a + b")),
        "{json}"
    );
}

/// Runs one step of `cli` whose API asks for the same read eight times, on
/// a worker with `--repeat-limit` `limit`: the error its failed attempt
/// ended with, and how many requests the API had.
async fn going_round_in_circles(cli: &Cli, limit: &str) -> (String, usize) {
    let read = |_| (cli.read)("notes.txt");
    getting_nowhere(cli, read, &["--repeat-limit", limit]).await
}

/// Runs one step of `cli` whose API asks to write notes.txt, then for the
/// eight reads `read(0..8)` gives, on a worker with `flags`: as
/// [`going_round_in_circles`].
async fn getting_nowhere(
    cli: &Cli,
    read: impl Fn(usize) -> Reply,
    flags: &[&str],
) -> (String, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut script = vec![(cli.write)("notes.txt", "the same\n")];
    script.extend((0..8).map(read));
    script.push(Reply::Text("Never reached.".into()));
    let (server, mock) = start(cli, dir.path(), &[], script).await;
    let _worker = (cli.start)(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&[cli.runtime], 1),
        flags,
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task("circling", vec![(cli.step)("read", "Read notes.txt")]),
    )
    .await
    .expect("submit");
    let task = wait_finished(&client, &id, Duration::from_secs(120))
        .await
        .expect("finished");
    assert_eq!(task.state, v1::TaskState::Failed as i32, "{task:?}");
    let attempt = &task.steps[0].attempts[0];
    (attempt.error.clone(), mock.requests().len())
}

/// [`start`], with one worker of `cli`, `agent-1` (one slot), connected.
async fn with_one_worker(
    cli: &Cli,
    dir: &Path,
    script: Vec<Reply>,
) -> (Server, Mock, Process, Tasks) {
    let (server, mock) = start(cli, dir, &[], script).await;
    let worker =
        (cli.start)(&server, dir, "agent-1", &mock, (&[cli.runtime], 1), &[]).expect("worker");
    let client = server.tasks().await.expect("client");
    (server, mock, worker, client)
}

/// A CLI that reads no input while it runs takes a person's message at the
/// turn boundary: `tidewright steer` while its turn waits on the model
/// stops it with its session kept, and the step runs again, uncounted,
/// its session resumed with the message (the provider's next request holds
/// the earlier conversation and the message); the event says so.
async fn a_message_at_the_turn_boundary_resumes_its_session_with_it(cli: &Cli) {
    let dir = tempfile::tempdir().expect("tempdir");
    let steer = format!("Use the v2 API instead ({}).", std::process::id());
    let script = vec![
        (cli.write)("notes.txt", "half done\n"),
        // The turn waits on the model until the message stops it.
        Reply::Hang,
        Reply::Text("Ported, on the v2 API.".into()),
    ];
    let (server, mock, _worker, client) = with_one_worker(cli, dir.path(), script).await;
    let prompt = format!(
        "Write notes.txt, then port the client {}",
        std::process::id()
    );
    let id = submit(&client, task("steered", vec![(cli.step)("port", &prompt)]))
        .await
        .expect("submit");
    eventually(Duration::from_secs(60), || async {
        (mock.requests().len() >= 2).then_some(())
    })
    .await
    .expect("the turn waits on the model");
    let said = stdout_of(server.cli().args(["steer", &id, "port", &steer]));
    assert!(
        said.contains("at the turn boundary: interrupted, then resumed with it"),
        "{said}"
    );
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("the resumed session finishes");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(!attempts[0].session_id.is_empty());
    assert_eq!(
        attempts[1].session_id, attempts[0].session_id,
        "the same session goes on"
    );
    // The provider's next request is the same conversation, with the
    // message.
    let requests = mock.requests();
    let last = requests.last().expect("a request").to_string();
    assert!(last.contains(&steer), "{last}");
    assert!(last.contains(&prompt), "the earlier conversation: {last}");
    assert!(
        !requests[..requests.len() - 1]
            .iter()
            .any(|r| r.to_string().contains(&steer))
    );
    let output: Value = serde_json::from_str(&task.steps[0].output_json).expect("output JSON");
    assert_eq!(output["result"], "Ported, on the v2 API.");
    let steered: Vec<&v1::StepSteered> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Steered(s)) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(steered.len(), 1, "{events:?}");
    assert_eq!(
        steered[0].delivery,
        "at the turn boundary: interrupted, then resumed with it"
    );
    assert!(
        log_of(&events, 2)
            .iter()
            .any(|l| l.starts_with("steered: the agent's session resumes with the message")),
        "{:?}",
        log_of(&events, 2)
    );
    // Not the step's failure: its retry policy (none) was not spent.
    assert_eq!(task.steps[0].state, v1::StepState::Succeeded as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_takes_a_message_at_the_turn_boundary_in_its_own_session() {
    a_message_at_the_turn_boundary_resumes_its_session_with_it(&CODEX).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gemini_cli_takes_a_message_at_the_turn_boundary_in_its_own_session() {
    a_message_at_the_turn_boundary_resumes_its_session_with_it(&GEMINI_CLI).await;
}

/// A follow-up for Codex lets its turn end, then resumes its session with
/// the message instead of ending the step there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_takes_a_follow_up_after_its_turn_in_its_own_session() {
    let cli = &CODEX;
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    let script = vec![
        Reply::codex_command(&wait_for_gate(&gate)),
        Reply::Text("Ported.".into()),
        Reply::Text("Tests added too.".into()),
    ];
    let (server, mock, _worker, client) = with_one_worker(cli, dir.path(), script).await;
    let prompt = format!("Port the client {}", std::process::id());
    let id = submit(&client, task("followed", vec![(cli.step)("port", &prompt)]))
        .await
        .expect("submit");
    eventually(Duration::from_secs(60), || async {
        (!mock.requests().is_empty()).then_some(())
    })
    .await
    .expect("the turn is under way");
    let said =
        stdout_of(
            server
                .cli()
                .args(["steer", &id, "port", "Now add tests.", "--follow-up"]),
        );
    assert!(
        said.contains("after the turn: its session resumed with it"),
        "{said}"
    );
    std::fs::write(&gate, "").expect("gate");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("succeeds");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].state, v1::StepState::Succeeded as i32);
    assert_eq!(attempts[1].session_id, attempts[0].session_id);
    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        3,
        "a turn after the first, for the follow-up"
    );
    assert!(!requests[1].to_string().contains("Now add tests."));
    let last = requests[2].to_string();
    assert!(
        last.contains("Now add tests.") && last.contains(&prompt),
        "{last}"
    );
    let output: Value = serde_json::from_str(&task.steps[0].output_json).expect("output JSON");
    assert_eq!(output["result"], "Tests added too.", "the last turn's");
}

/// The suite, once per runtime: a module of tests per row.
macro_rules! suite {
    ($($module:ident => $cli:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_tool_writes_a_file_and_the_answer_session_and_cost_become_the_output() {
                super::a_tool_writes_a_file_and_the_answer_session_and_cost_become_the_output(&$cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_limit_pauses_the_pool_until_the_providers_reset_and_spends_no_attempt() {
                super::a_limit_pauses_the_pool_until_the_providers_reset_and_spends_no_attempt(&$cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_retry_on_another_worker_resumes_the_session_from_its_checkpoint() {
                super::a_retry_on_another_worker_resumes_the_session_from_its_checkpoint(&$cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_agent_calling_one_tool_with_one_input_over_and_over_is_stopped_as_stalled() {
                super::an_agent_calling_one_tool_with_one_input_over_and_over_is_stopped_as_stalled(&$cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_verified_step_is_sent_back_its_failing_check_and_passes_on_its_second_round() {
                super::a_verified_step_is_sent_back_its_failing_check_and_passes_on_its_second_round(&$cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_agent_whose_work_stops_changing_is_stopped_as_stalled() {
                super::an_agent_whose_work_stops_changing_is_stopped_as_stalled(&$cli).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_agent_shares_a_finding_through_tidewrights_mcp_server() {
                super::the_agent_shares_a_finding_through_tidewrights_mcp_server(&$cli).await;
            }
        }
    )*};
}

suite! {
    claude_code => CLAUDE_CODE,
    codex => CODEX,
    gemini_cli => GEMINI_CLI,
    qwen_code => QWEN_CODE,
}
