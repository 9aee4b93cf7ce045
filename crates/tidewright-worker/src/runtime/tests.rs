//! The runtime as a whole: shell and Claude Code attempts run to their end
//! with real processes (a script stands in for the CLI, printing
//! stream-json), their reports, workspaces, sessions and checkpoints.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewright_api::convert::timestamp;
use tidewright_api::v1;
use tidewright_core::{AttemptKey, ClaudeCodeSpec, Cost, LogStream, StepSpec};
use tokio::sync::{mpsc, oneshot};

use super::agent::RESUME_PROMPT;
use super::agents::{AgentCli, AgentSettings};
use super::attempt::{Attempt, FromAttempt, ResumeFrom, StepAccess, Stop};
use super::checkpoint::{self, BranchBundle, Checkpoints, SessionCheckpoint};
use super::session::Transcripts;
use super::workspace::sweep_retained;
use super::{Agents, Host, run};
use crate::metrics::WorkerMetrics;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn attempt(dir: &Path, command: &[&str]) -> Attempt {
    Attempt {
        key: AttemptKey {
            task_id: "t1".into(),
            step_id: "s".into(),
            attempt: 1,
        },
        step: StepSpec::shell("s", command),
        inputs_json: r#"{"up":{"n":2}}"#.into(),
        task_name: "test".into(),
        resume: None,
        access: None,
        traceparent: Some(TRACEPARENT.into()),
        repo: None,
        dependency_heads: Vec::new(),
        task_egress: None,
        land_riders: Vec::new(),
        land_fix: String::new(),
        tenant: "default".into(),
        grader_model: String::new(),
        look: Arc::default(),
        steers: Default::default(),
        host: Arc::new(Host {
            secrets_dir: None,
            keep_workspace: true,
            repeat_limit: crate::runtime::repeats::DEFAULT_REPEAT_LIMIT,
            unchanged_turns: crate::runtime::repeats::DEFAULT_UNCHANGED_TURNS,
            work_dir: dir.to_path_buf(),
            metrics: Arc::new(WorkerMetrics::new(1)),
            checkpoints: None,
            branches: None,
            mirrors_max_bytes: 0,
            // Unsandboxed: these tests are of the runtimes; the sandbox's are
            // in sandboxed_* below and the end-to-end tests.
            sandbox: Arc::new(crate::sandbox::Sandbox::Off),
            egress: None,
            limits: Arc::new(crate::sandbox::limits::Limits::probe(Default::default())),
            mirrors: Arc::new(tidewright_git::mirror::Mirrors::new(
                dir.join(".mirrors"),
                tidewright_git::program(),
            )),
            grader: None,
            seeds: Arc::new(
                crate::seeds::Seeds::open(dir.join(".seeds"), 1 << 30, 0).expect("the seeds"),
            ),
            shared_seeds: None,
        }),
    }
}

/// The Claude Code settings of a worker whose work directory is `dir`: its
/// "CLI" is the script `claude_attempt` writes there.
fn claude_settings(dir: &Path) -> Agents {
    Agents::default().with(
        AgentCli::ClaudeCode,
        AgentSettings {
            bin: dir.join("fake-claude"),
            model: Some("claude-test".into()),
            api_key: Some("sk-ant-secret-key".into()),
            oauth_token: Some("sk-ant-oat01-secret-token".into()),
            base_url: Some("http://127.0.0.1:9".into()),
            home: dir.join("home"),
            ..AgentSettings::default()
        },
    )
}

/// A Claude Code attempt whose "CLI" is a script printing `lines`
/// (stream-json), then exiting with `code`; its argv goes to `argv.txt`,
/// the first line of its input (the prompt) to `stdin.txt`.
fn claude_attempt(dir: &Path, lines: &[&str], code: i32) -> Attempt {
    claude_attempt_doing(dir, "", lines, code)
}

/// The prompt a fake Claude Code read from its input.
fn prompt_fed(dir: &Path) -> String {
    let line = std::fs::read_to_string(dir.join("t1/s/stdin.txt")).expect("stdin");
    let message: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(message["type"], "user", "{line}");
    message["message"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// [`claude_attempt`] whose CLI runs the shell `script` first, in its
/// working directory.
fn claude_attempt_doing(dir: &Path, script: &str, lines: &[&str], code: i32) -> Attempt {
    let prelude = script;
    let script = dir.join("fake-claude");
    let mut body = String::from(
        "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$PWD/../argv.txt\"\nenv > \"$PWD/../env.txt\"\nhead -n 1 > \"$PWD/../stdin.txt\"\n",
    );
    body.push_str(prelude);
    body.push('\n');
    for line in lines {
        body.push_str(&format!("echo '{line}'\n"));
    }
    body.push_str(&format!("exit {code}\n"));
    std::fs::write(&script, body).expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut attempt = attempt(dir, &["unused"]);
    attempt.step.shell = None;
    attempt.step.claude_code = Some(ClaudeCodeSpec {
        prompt: "write hello.txt".into(),
        model: None,
        max_turns: Some(4),
        allowed_tools: vec!["Write".into(), "Bash(git:*)".into()],
        permission_mode: Some(tidewright_core::PermissionMode::AcceptEdits),
    });
    attempt.access = Some(StepAccess {
        server: "http://127.0.0.1:7070".into(),
        ca_file: None,
        token: "tidewright_step_for_this_attempt".into(),
        tidewright_bin: Some("/opt/tidewright/bin/tidewright".into()),
    });
    attempt
}

const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-test"}"#;
const TOOL: &str = r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","name":"Write","input":{"file_path":"hello.txt"}}]}}"#;
const TEXT: &str = r#"{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"Done, key sk-ant-secret-key"}]}}"#;
const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","session_id":"s-1","num_turns":2,"total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":3},"modelUsage":{"claude-test":{"inputTokens":10,"outputTokens":3,"costUSD":0.5}}}"#;

#[tokio::test]
async fn a_claude_run_reports_its_cost_after_each_response_and_keeps_it_when_cut_short() {
    let start = |id: &str| {
        format!(
            r#"{{"type":"stream_event","event":{{"type":"message_start","message":{{"id":"{id}","model":"claude-sonnet-4-5","usage":{{"input_tokens":1000,"output_tokens":1,"cache_read_input_tokens":100,"cache_creation_input_tokens":40}}}}}}}}"#
        )
    };
    let end = r#"{"type":"stream_event","event":{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":200}}}"#;
    let (first, second) = (start("m1"), start("m2"));
    let dir = tempfile::tempdir().expect("tempdir");
    // Two responses, then the CLI dies before its result line.
    let lines = [INIT, first.as_str(), TOOL, end, second.as_str(), TEXT, end];
    let (result, reports) = run_to_end(claude_attempt(dir.path(), &lines, 1)).await;
    let spends: Vec<&Cost> = reports
        .iter()
        .filter_map(|r| match r {
            FromAttempt::Spend { cost, .. } => Some(cost),
            _ => None,
        })
        .collect();
    // Sonnet: $3 input, $15 output, $3.75 cache write, $0.30 cache read
    // per million tokens.
    let turn = (1000.0 * 3.0 + 200.0 * 15.0 + 40.0 * 3.75 + 100.0 * 0.3) / 1e6;
    assert_eq!(spends.len(), 2, "{spends:?}");
    assert!((spends[0].usd - turn).abs() < 1e-12, "{spends:?}");
    assert!((spends[1].usd - 2.0 * turn).abs() < 1e-12, "{spends:?}");
    assert_eq!(
        (spends[1].input_tokens, spends[1].output_tokens),
        (2000, 400),
        "running totals"
    );
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert_eq!(
        result.cost.as_ref().map(Cost::from).as_ref(),
        Some(spends[1]),
        "an attempt cut short is charged what its responses cost"
    );
    let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
    assert!(argv.split('\0').any(|a| a == "--include-partial-messages"));
}

#[tokio::test]
async fn a_run_the_cli_says_its_limit_stopped_reports_the_limit_and_its_reset() {
    let event = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1767225600,"rateLimitType":"five_hour"},"uuid":"u","session_id":"s-1"}"#;
    // The result's words alone would not say it was a limit.
    let refused = r#"{"type":"result","subtype":"success","is_error":true,"result":"You are out of extra usage","session_id":"s-1"}"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, reports) =
        run_to_end(claude_attempt(dir.path(), &[INIT, event, refused], 1)).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert_eq!(
        result.rate_limit.and_then(|l| l.reset_at),
        Some(timestamp(1_767_225_600_000_000))
    );
    assert!(
        logs_of(&reports)
            .iter()
            .any(|l| l.starts_with("the provider's usage limit was reached until")),
        "{:?}",
        logs_of(&reports)
    );
    // Without the event, the same error is the step's own failure.
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, _) = run_to_end(claude_attempt(dir.path(), &[INIT, refused], 1)).await;
    assert_eq!(result.rate_limit, None);
}

#[tokio::test]
async fn a_claude_run_reports_turns_tools_and_its_result_with_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, reports) =
        run_to_end(claude_attempt(dir.path(), &[INIT, TOOL, TEXT, RESULT], 0)).await;
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    let output: serde_json::Value = serde_json::from_str(&result.output_json).expect("json");
    assert_eq!(output["result"], "Done.");
    assert_eq!(output["sessionId"], "s-1");
    assert_eq!(output["model"], "claude-test");
    assert_eq!(output["cost"]["usd"], 0.5);
    assert_eq!(
        output["cost"]["sessionByModel"]["claude-test"]["inputTokens"],
        10
    );
    assert_eq!(
        result.cost.as_ref().map(Cost::from),
        Some(Cost {
            usd: 0.5,
            input_tokens: 10,
            output_tokens: 3,
            ..Cost::default()
        })
    );
    assert!(reports.iter().any(|r| matches!(r, FromAttempt::Session { session_id, model, .. } if session_id == "s-1" && model == "claude-test")));
    let logs = logs_of(&reports);
    assert!(
        logs.contains(&"tool: Write file_path=hello.txt".to_string()),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l == "Done, key ***"),
        "the API key is masked: {logs:?}"
    );
    let progress: Vec<f32> = reports
        .iter()
        .filter_map(|r| match r {
            FromAttempt::Progress { fraction, .. } => Some(*fraction),
            _ => None,
        })
        .collect();
    assert_eq!(progress, [0.25, 0.5], "one step per turn of 4");
    // The prompt comes through its streaming input, never in argv; list
    // flags are one `--flag=a,b`.
    let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
    let argv: Vec<&str> = argv.split('\0').collect();
    assert_eq!(
        &argv[..5],
        [
            "-p",
            "--input-format",
            "stream-json",
            "--replay-user-messages",
            "--output-format"
        ]
    );
    assert!(
        !argv.iter().any(|a| a.contains("write hello.txt")),
        "{argv:?}"
    );
    assert_eq!(
        prompt_fed(dir.path()),
        "write hello.txt\n\nThe outputs of the steps this one depends on are in context/inputs.json."
    );
    for expected in [
        "--verbose",
        "--allowedTools=Write,Bash(git:*),mcp__tidewright",
        "--strict-mcp-config",
        "acceptEdits",
        "claude-test",
    ] {
        assert!(argv.contains(&expected), "{argv:?} lacks {expected}");
    }
    // tidewright's tools, through `tidewright mcp`, with the token in the
    // environment rather than on the command line.
    let mcp_config = argv
        .iter()
        .find_map(|a| a.strip_prefix("--mcp-config="))
        .expect("an MCP config");
    let mcp_config: serde_json::Value = serde_json::from_str(mcp_config).expect("json");
    assert_eq!(
        mcp_config["mcpServers"]["tidewright"]["command"],
        "/opt/tidewright/bin/tidewright"
    );
    assert!(
        !argv.iter().any(|a| a.contains("tidewright_step_")),
        "{argv:?}"
    );
    // The environment is built: the worker's own is not inherited.
    let env = std::fs::read_to_string(dir.path().join("t1/s/env.txt")).expect("env");
    assert!(
        env.contains(&format!("HOME={}", dir.path().join("home").display())),
        "{env}"
    );
    assert!(env.contains("ANTHROPIC_API_KEY=sk-ant-secret-key"));
    assert!(env.contains("CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-secret-token\n"));
    assert!(!argv.iter().any(|a| a.contains("sk-ant-")), "{argv:?}");
    assert!(env.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:9"));
    assert!(env.contains("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"));
    assert!(env.contains("TIDEWRIGHT_TOKEN=tidewright_step_for_this_attempt\n"));
    assert!(env.contains("TIDEWRIGHT_SERVER=http://127.0.0.1:7070\n"));
    assert!(
        env.lines()
            .any(|l| l.starts_with("PATH=") && l.ends_with(":/opt/tidewright/bin")),
        "tidewright's directory ends the PATH: {env}"
    );
    // cargo sets this in the test process, the "worker" here.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    assert!(
        !env.contains("CARGO_MANIFEST_DIR"),
        "the worker's environment leaked into the CLI's: {env}"
    );
}

#[tokio::test]
async fn a_claude_run_fails_on_an_error_result_or_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api_error =
        r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 400 bad"}"#;
    let (result, _) = run_to_end(claude_attempt(dir.path(), &[INIT, api_error], 1)).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert_eq!(result.error, "API Error: 400 bad");

    // Killed (or crashed) before its result: a failure, even at exit 0.
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, _) = run_to_end(claude_attempt(dir.path(), &[INIT, TOOL], 0)).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert_eq!(
        result.error,
        "the claude CLI ended without a result (exited with code 0)"
    );
}

fn logs_of(reports: &[FromAttempt]) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| match r {
            FromAttempt::Log { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// Attempt 2 of the fake CLI's step, told that attempt 1 started
/// session `s-1`, which cost 0.2 so far.
fn second_attempt_resuming_s1(dir: &Path) -> Attempt {
    let mut attempt = claude_attempt(dir, &[INIT, RESULT], 0);
    attempt.key.attempt = 2;
    attempt.resume = Some(ResumeFrom {
        attempt: 1,
        session_id: "s-1".into(),
        session_usd: 0.2,
        last_attempt: 1,
        message: String::new(),
        round_base: String::new(),
    });
    attempt
}

#[tokio::test]
async fn a_retry_resumes_the_session_in_its_workspace_and_pays_only_its_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let attempt = second_attempt_resuming_s1(dir.path());
    let first = dir.path().join("t1/s/attempt-1");
    std::fs::create_dir_all(&first).expect("attempt 1's workspace");
    std::fs::write(first.join("made-by-attempt-1.txt"), "kept").expect("file");
    let transcripts = dir.path().join("home/.claude/projects/-t1-s-attempt-1");
    std::fs::create_dir_all(&transcripts).expect("projects");
    std::fs::write(transcripts.join("s-1.jsonl"), "{}\n").expect("transcript");

    let (result, reports) = run_to_end(attempt).await;
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    let cost = result.cost.expect("cost");
    assert!(
        (cost.usd - 0.3).abs() < 1e-9,
        "0.5 so far less 0.2 before: {}",
        cost.usd
    );
    assert!(
        logs_of(&reports).contains(&"resuming session s-1 of attempt 1 in its workspace".into())
    );
    let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
    let argv: Vec<&str> = argv.split('\0').collect();
    assert_eq!(prompt_fed(dir.path()), RESUME_PROMPT);
    let at = argv
        .iter()
        .position(|a| *a == "--resume")
        .expect("--resume");
    assert_eq!(argv[at + 1], "s-1");
    assert!(
        first.join("made-by-attempt-1.txt").exists(),
        "ran in attempt 1's workspace, which stays kept"
    );
    assert!(!dir.path().join("t1/s/attempt-2").exists());
}

#[tokio::test]
async fn a_retry_without_the_session_at_hand_starts_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let attempt = second_attempt_resuming_s1(dir.path());
    // The workspace is here, its transcript is not.
    std::fs::create_dir_all(dir.path().join("t1/s/attempt-1")).expect("workspace");
    let (result, reports) = run_to_end(attempt).await;
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    assert_eq!(result.cost.expect("cost").usd, 0.5);
    assert!(logs_of(&reports).contains(
        &"starting a new session: session s-1 of attempt 1 is not on this worker".into()
    ));
    let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
    assert!(!argv.contains("--resume"));
    assert_eq!(
        prompt_fed(dir.path()),
        "write hello.txt\n\nThe outputs of the steps this one depends on are in context/inputs.json."
    );
}

/// Checkpoints kept in memory, counting the reads.
#[derive(Default)]
struct MemoryKeeper {
    kept: Mutex<Option<SessionCheckpoint>>,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl checkpoint::Keeper for MemoryKeeper {
    async fn put(&self, checkpoint: SessionCheckpoint) -> Result<(), String> {
        *self.kept.lock().expect("lock") = Some(checkpoint);
        Ok(())
    }

    async fn get(&self, _: &AttemptKey) -> Result<Option<SessionCheckpoint>, String> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.kept.lock().expect("lock").clone())
    }

    async fn put_branch(&self, _: BranchBundle) -> Result<(), String> {
        Err("this keeper keeps no branches".into())
    }

    async fn get_branch(&self, _: &AttemptKey, _: &str) -> Result<Option<BranchBundle>, String> {
        Ok(None)
    }
}

fn keeping(mut attempt: Attempt, keeper: &Arc<MemoryKeeper>) -> Attempt {
    Arc::make_mut(&mut attempt.host).checkpoints = Some(Checkpoints {
        keeper: keeper.clone(),
        max_bytes: checkpoint::DEFAULT_MAX_BYTES,
        every: None,
    });
    attempt
}

/// What the fake CLI does in attempt 1: writes a file, and the
/// session's transcript where the real one would.
const WRITES_NOTES_AND_TRANSCRIPT: &str = "echo 'half done sk-ant-secret-key' > notes.txt; \
    mkdir -p \"$HOME/.claude/projects/here\"; \
    echo \"{\\\"cwd\\\":\\\"$PWD\\\"}\" > \"$HOME/.claude/projects/here/s-1.jsonl\"";

#[tokio::test]
async fn a_failed_session_is_kept_and_a_retry_on_another_worker_resumes_it_from_there() {
    let keeper = Arc::new(MemoryKeeper::default());
    let api_error =
        r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500"}"#;
    // Worker A: attempt 1 fails mid-session.
    let a = tempfile::tempdir().expect("tempdir");
    let mut first =
        claude_attempt_doing(a.path(), WRITES_NOTES_AND_TRANSCRIPT, &[INIT, api_error], 1);
    first.step.retry = Some(tidewright_core::RetryPolicy::new(2));
    let (result, reports) = run_to_end(keeping(first, &keeper)).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    let kept = keeper
        .kept
        .lock()
        .expect("lock")
        .clone()
        .expect("a checkpoint");
    assert_eq!(kept.session_id, "s-1");
    assert_eq!(kept.attempt.attempt, 1);
    let workspace_a = a.path().join("t1/s/attempt-1");
    assert_eq!(kept.workspace, workspace_a.display().to_string());
    assert!(
        logs_of(&reports)
            .iter()
            .any(|l| l.starts_with("checkpoint kept: session s-1, ")),
        "{:?}",
        logs_of(&reports)
    );

    // Worker B: attempt 2 resumes it from the checkpoint, in its own
    // directories, the API key masked in what travelled.
    let b = tempfile::tempdir().expect("tempdir");
    let second = keeping(second_attempt_resuming_s1(b.path()), &keeper);
    let (result, reports) = run_to_end(second).await;
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    assert!(
        logs_of(&reports).contains(
            &"resuming session s-1 of attempt 1 from the checkpoint attempt 1 left".into()
        ),
        "{:?}",
        logs_of(&reports)
    );
    let workspace_b = b.path().join("t1/s/attempt-1");
    assert_eq!(
        std::fs::read_to_string(workspace_b.join("notes.txt")).expect("notes"),
        "half done ***\n"
    );
    let transcript = Transcripts::new(&b.path().join("home"), super::claude::transcripts::PLACES)
        .path(&workspace_b, "s-1");
    assert_eq!(
        std::fs::read_to_string(transcript).expect("transcript"),
        format!("{{\"cwd\":\"{}\"}}\n", workspace_b.display())
    );
    let argv = std::fs::read_to_string(b.path().join("t1/s/argv.txt")).expect("argv");
    assert!(argv.contains("--resume\0s-1"), "{argv:?}");

    // Attempt 3 back on A, which holds only attempt 1's run: the
    // checkpoint attempt 2 left is newer, so A takes it. On B, whose
    // copy is the newest, nothing is read.
    *keeper.kept.lock().expect("lock") = Some(SessionCheckpoint {
        attempt: AttemptKey {
            attempt: 2,
            ..kept.attempt.clone()
        },
        ..kept.clone()
    });
    let third_on = |dir: &Path| {
        let mut third = keeping(second_attempt_resuming_s1(dir), &keeper);
        third.key.attempt = 3;
        if let Some(resume) = third.resume.as_mut() {
            resume.last_attempt = 2;
        }
        third
    };
    std::fs::write(a.path().join("t1/s/attempt-1.retained"), "1").expect("A's marker");
    let (_, reports) = run_to_end(third_on(a.path())).await;
    assert!(
        logs_of(&reports).contains(
            &"resuming session s-1 of attempt 1 from the checkpoint attempt 2 left".into()
        ),
        "{:?}",
        logs_of(&reports)
    );
    let reads = keeper.reads.load(std::sync::atomic::Ordering::Relaxed);
    std::fs::write(b.path().join("t1/s/attempt-1.retained"), "2").expect("B's marker");
    let (_, reports) = run_to_end(third_on(b.path())).await;
    assert!(
        logs_of(&reports).contains(&"resuming session s-1 of attempt 1 in its workspace".into()),
        "{:?}",
        logs_of(&reports)
    );
    assert_eq!(
        keeper.reads.load(std::sync::atomic::Ordering::Relaxed),
        reads,
        "a worker with the newest copy reads no checkpoint"
    );
}

#[tokio::test]
async fn a_failed_attempt_with_retries_left_keeps_its_workspace_until_swept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api_error =
        r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500"}"#;
    let mut attempt = claude_attempt(dir.path(), &[INIT, api_error], 1);
    Arc::make_mut(&mut attempt.host).keep_workspace = false;
    attempt.step.retry = Some(tidewright_core::RetryPolicy::new(2));
    let (result, _) = run_to_end(attempt).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    let workspace = dir.path().join("t1/s/attempt-1");
    assert!(workspace.is_dir(), "kept for the retry to resume");
    assert!(dir.path().join("t1/s/attempt-1.retained").is_file());

    // Not yet expired: stays. Expired: gone, with its marker.
    sweep_retained(dir.path(), Duration::from_secs(3600)).await;
    assert!(workspace.is_dir());
    sweep_retained(dir.path(), Duration::ZERO).await;
    assert!(!workspace.exists());
    assert!(!dir.path().join("t1/s/attempt-1.retained").exists());

    // The last attempt's failure keeps nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut attempt = claude_attempt(dir.path(), &[INIT, api_error], 1);
    Arc::make_mut(&mut attempt.host).keep_workspace = false;
    let (result, _) = run_to_end(attempt).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert!(!dir.path().join("t1/s/attempt-1").exists());
}

/// Runs `attempt` on a worker whose agents are [`claude_settings`] of its
/// work directory; its result and the reports before it.
async fn run_to_end(attempt: Attempt) -> (v1::StepResult, Vec<FromAttempt>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_cancel, cancelled) = oneshot::channel();
    let agents = Arc::new(claude_settings(&attempt.host.work_dir));
    run(attempt, agents, tx, cancelled).await;
    let mut reports = Vec::new();
    while let Ok(report) = rx.try_recv() {
        if let FromAttempt::Done(result) = report {
            return (*result, reports);
        }
        reports.push(report);
    }
    panic!("no result reported");
}

#[tokio::test]
async fn shell_step_reads_inputs_writes_output_and_streams_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = r#"echo "hello $TIDEWRIGHT_STEP_ID"; echo oops >&2; echo "::progress 0.5 half"; echo "trace $TRACEPARENT"; cat "$TIDEWRIGHT_INPUTS" > "$TIDEWRIGHT_OUTPUT""#;
    let (result, reports) = run_to_end(attempt(dir.path(), &["sh", "-c", script])).await;
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    assert_eq!(result.output_json, r#"{"up":{"n":2}}"#);
    assert_eq!(result.exit_code, Some(0));
    let logs: Vec<_> = reports
        .iter()
        .filter_map(|r| match r {
            FromAttempt::Log { stream, line, .. } => Some((*stream, line.as_str())),
            _ => None,
        })
        .collect();
    assert!(logs.contains(&(LogStream::Stdout, "hello s")), "{logs:?}");
    assert!(logs.contains(&(LogStream::Stderr, "oops")), "{logs:?}");
    let traced = format!("trace {TRACEPARENT}");
    assert!(
        logs.contains(&(LogStream::Stdout, traced.as_str())),
        "{logs:?}"
    );
    assert!(reports.iter().any(|r| matches!(r, FromAttempt::Progress { fraction, message, .. } if *fraction == 0.5 && message == "half")));
}

#[tokio::test]
async fn exit_status_decides_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, _) = run_to_end(attempt(dir.path(), &["sh", "-c", "exit 3"])).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert_eq!(result.exit_code, Some(3));
    assert_eq!(result.error, "exited with code 3");
}

#[tokio::test]
async fn invalid_output_json_fails_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, _) = run_to_end(attempt(
        dir.path(),
        &["sh", "-c", "echo '{nope' > \"$TIDEWRIGHT_OUTPUT\""],
    ))
    .await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert!(result.error.contains("not valid JSON"), "{}", result.error);
}

#[tokio::test]
async fn output_symlink_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, _) = run_to_end(attempt(
        dir.path(),
        &["sh", "-c", "ln -s /etc/hostname \"$TIDEWRIGHT_OUTPUT\""],
    ))
    .await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert!(
        result.error.contains("not a regular file"),
        "{}",
        result.error
    );
}

#[tokio::test]
async fn missing_program_is_a_clear_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let attempt = attempt(dir.path(), &["/no/such/program"]);
    let metrics = attempt.host.metrics.clone();
    let (result, _) = run_to_end(attempt).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert!(result.error.contains("could not start"), "{}", result.error);
    // The runtime failed, not the step: the worker's metrics say which.
    let text = metrics.render();
    assert!(
        text.contains(
            "tidewright_worker_runtime_failures_total{runtime=\"shell\",reason=\"start\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_step_failing_on_its_own_is_no_runtime_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let attempt = attempt(dir.path(), &["sh", "-c", "exit 3"]);
    let metrics = attempt.host.metrics.clone();
    let (result, _) = run_to_end(attempt).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    let text = metrics.render();
    assert!(
        text.contains(
            "tidewright_worker_step_attempts_finished_total{runtime=\"shell\",outcome=\"failed\"} 1"
        ),
        "{text}"
    );
    assert!(
        !text.contains("tidewright_worker_runtime_failures_total{"),
        "{text}"
    );
    assert!(
        text.contains("tidewright_worker_steps_running{runtime=\"shell\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("grandchild.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (cancel, cancelled) = oneshot::channel();
    let running = tokio::spawn(run(
        attempt(dir.path(), &["sh", "-c", &script]),
        Arc::default(),
        tx,
        cancelled,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<i32>()
        {
            break pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cancel.send(Stop::new("by test")).expect("runner alive");
    running.await.expect("runner");
    let result = loop {
        match rx.recv().await {
            Some(FromAttempt::Done(result)) => break result,
            Some(_) => continue,
            None => panic!("no result"),
        }
    };
    assert_eq!(result.outcome, v1::Outcome::Cancelled as i32);
    assert_eq!(result.error, "by test");
    // SIGKILL lands asynchronously: the grandchild must be gone (or a
    // zombie awaiting its reaper) within a deadline.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while alive() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "grandchild {pid} survived the cancel"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn timeout_kills_the_step_and_fails_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut slow = attempt(dir.path(), &["sh", "-c", "sleep 300"]);
    slow.step.timeout_seconds = Some(1);
    let (result, _) = run_to_end(slow).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert_eq!(result.error, "timed out after 1s");
}

#[tokio::test]
async fn a_silent_step_is_stalled_and_a_talking_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut silent = attempt(dir.path(), &["sh", "-c", "echo started; sleep 300"]);
    silent.step.stall_timeout_seconds = Some(1);
    let began = std::time::Instant::now();
    let (result, _) = run_to_end(silent).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert!(result.stalled);
    assert_eq!(
        result.error,
        "stalled: no output, progress, log or tool event for 1s"
    );
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "killed, not waited out"
    );

    // Quiet for less than the limit at a time, for longer than it in
    // all: alive.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut talking = attempt(
        dir.path(),
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo \"::progress 0.$i\"; sleep 0.4; done",
        ],
    );
    talking.step.stall_timeout_seconds = Some(1);
    let (result, _) = run_to_end(talking).await;
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    assert!(!result.stalled);
}

/// An agent that calls one tool with one input time after time is stopped
/// as stalled, saying so, however busy its stream is; calls that differ
/// are work, and the run goes on to its end.
#[tokio::test]
async fn an_agent_calling_one_tool_with_one_input_over_and_over_is_stalled() {
    let call = |n: u32, command: &str| {
        format!(
            r#"{{"type":"assistant","message":{{"id":"m{n}","content":[{{"type":"tool_use","id":"t{n}","name":"Bash","input":{{"command":"{command}"}}}}]}}}}"#
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let circling: Vec<String> = (1..=5).map(|n| call(n, "ls")).collect();
    let mut lines: Vec<&str> = vec![INIT];
    lines.extend(circling.iter().map(String::as_str));
    let attempt = claude_attempt(dir.path(), &lines, 0);
    // It goes on after its fifth call, as a looping agent would.
    let script = dir.path().join("fake-claude");
    let body = std::fs::read_to_string(&script).expect("script");
    std::fs::write(&script, body.replace("exit 0\n", "sleep 300\n")).expect("script");
    let began = std::time::Instant::now();
    let (result, _) = run_to_end(attempt).await;
    assert_eq!(result.outcome, v1::Outcome::Failed as i32);
    assert!(result.stalled);
    assert_eq!(
        result.error,
        "stalled: called Bash with the same input 5 times in a row"
    );
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "stopped, not waited out"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let working: Vec<String> = (1..=5).map(|n| call(n, &format!("ls {n}"))).collect();
    let mut lines: Vec<&str> = vec![INIT];
    lines.extend(working.iter().map(String::as_str));
    lines.push(RESULT);
    let (result, _) = run_to_end(claude_attempt(dir.path(), &lines, 0)).await;
    assert_eq!(
        result.outcome,
        v1::Outcome::Succeeded as i32,
        "{}",
        result.error
    );
    assert!(!result.stalled);
}

/// Every CLI whose settings tidewright writes in its homes offers
/// tidewright's MCP server, with the step's token, only when the step may
/// call it: a run's settings are left without the token after it.
#[test]
fn every_homes_settings_offer_tidewrights_mcp_server_with_the_token_only_when_asked() {
    let homes = [super::codex::HOME, super::gemini::HOME, super::qwen::HOME];
    let written: Vec<_> = homes.iter().filter_map(|home| home.settings).collect();
    assert_eq!(written.len(), 2, "the Gemini CLI's and Qwen Code's");
    for (file, settings) in written {
        let bare: serde_json::Value =
            serde_json::from_str(&settings(None)).expect("settings are JSON");
        assert!(bare.get("mcpServers").is_none(), "{file}: {bare}");
        let token = "tidewright_step_eyJ0.e30.sig";
        let bin = Path::new("/opt/tidewright/bin/tidewright");
        let with: serde_json::Value =
            serde_json::from_str(&settings(Some((bin, token)))).expect("settings are JSON");
        let server = &with["mcpServers"][crate::mcp::SERVER_NAME];
        assert_eq!(
            server["command"], "/opt/tidewright/bin/tidewright",
            "{file}"
        );
        assert_eq!(server["args"], serde_json::json!(["mcp"]), "{file}");
        assert_eq!(server["env"]["TIDEWRIGHT_TOKEN"], token, "{file}");
        assert_eq!(server["trust"], true, "{file}");
    }
}
