//! `make demo` as a newcomer runs it: scripts/demo.sh builds (a no-op here:
//! the tests' build made the binary) and finds the binary where cargo put it
//! (`.ci/run` points CARGO_TARGET_DIR away from target/, so this is tested
//! there), runs the fan-out/fan-in DAG on the embedded tidewright, and with an
//! Anthropic endpoint ends it in a Claude Code agent step, with an OpenAI
//! endpoint in a Codex agent step: the real CLIs talking to mock APIs.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::repo_root;

/// The demo's whole run: what it printed on stdout and stderr.
struct Run {
    stdout: String,
    stderr: String,
}

/// Runs scripts/demo.sh with its data in `data` and `envs` set (and no
/// Anthropic settings from the caller's environment), within five minutes;
/// its whole process group is stopped if it overruns.
async fn demo(data: &Path, envs: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(repo_root().join("scripts/demo.sh"));
    // As from a person's shell: without what cargo tells a test about its
    // own package, which the demo's cargo would take as a change of
    // environment and rebuild for (ring tracks CARGO_MANIFEST_DIR).
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            )
        {
            command.env_remove(&*name);
        }
    }
    command
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("TIDEWRIGHT_CLAUDE_BIN")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("TIDEWRIGHT_CODEX_BIN")
        .env_remove("GEMINI_API_KEY")
        .env_remove("GOOGLE_GEMINI_BASE_URL")
        .env_remove("TIDEWRIGHT_GEMINI_BIN")
        .env("TIDEWRIGHT_DEMO_DIR", data)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.as_std_mut().process_group(0);
    let child = command.spawn().expect("demo.sh starts");
    let group = child.id().expect("a pid");
    let output: Output =
        match tokio::time::timeout(Duration::from_secs(300), child.wait_with_output()).await {
            Ok(output) => output.expect("demo.sh runs"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &format!("-{group}")])
                    .status();
                panic!("make demo did not finish within five minutes");
            }
        };
    let run = Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        output.status.success(),
        "make demo failed:\n{}\n{}\nup.log:\n{}",
        run.stdout,
        run.stderr,
        std::fs::read_to_string(data.join("up.log")).unwrap_or_default()
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_the_dag_and_says_how_to_add_an_agent_step() {
    let data = tempfile::tempdir().expect("tempdir");
    let run = demo(data.path(), &[]).await;
    let out = &run.stdout;
    assert!(
        out.contains("no ANTHROPIC_API_KEY") && out.contains("set it, or ANTHROPIC_BASE_URL"),
        "{out}"
    );
    assert!(
        out.contains("== tidewright is up at http://127.0.0.1:"),
        "{out}"
    );
    assert!(
        out.contains("the web console: http://127.0.0.1:") && out.contains("/login?code="),
        "{out}"
    );
    // The live view went to stderr (-o name keeps stdout for the id) and
    // shows each step's progress and the joined result.
    assert!(
        run.stderr.contains("count-b: 80% counting shard b"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("succeeded"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(r#"result (join): {"shards": 3, "words": 14}"#)
    );
    assert!(out.contains("State:     succeeded"), "{out}");
    assert!(out.contains("join | 3 shards, 14 words in all"), "{out}");
    assert!(
        out.contains("no OPENAI_API_KEY") && out.contains("set it, or OPENAI_BASE_URL"),
        "{out}"
    );
    assert!(
        !out.contains("summarize"),
        "no agent step without a key: {out}"
    );
    // It stopped what it started.
    assert!(
        std::fs::read_to_string(data.path().join("up.log"))
            .expect("up.log")
            .contains("tidewright stopped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_anthropic_endpoint_the_demo_ends_in_an_agent_step() {
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_read("context/inputs.json"),
            Reply::claude_write("SUMMARY.md", "3 shards held 14 words.\n"),
            Reply::Text("The three shards held 14 words in all.".into()),
        ],
    )
    .await
    .expect("mock");
    let data = tempfile::tempdir().expect("tempdir");
    let claude = tidewright_tests::claude_bin().display().to_string();
    let run = demo(
        data.path(),
        &[
            ("ANTHROPIC_BASE_URL", mock.url.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-demo-key"),
            ("TIDEWRIGHT_CLAUDE_BIN", claude.as_str()),
        ],
    )
    .await;
    let (out, live) = (&run.stdout, &run.stderr);
    assert!(!out.contains("no ANTHROPIC_API_KEY"), "{out}");
    // tidewright up's workers offer claude-code once they have a key.
    assert!(out.contains("claude-code"), "{out}");
    // Its tool calls streamed live, as they happened.
    assert!(live.contains("summarize | tool: Read"), "{live}");
    assert!(live.contains("summarize | tool: Write"), "{live}");
    assert!(live.contains("summarize: succeeded"), "{live}");
    // Its result and what it cost.
    assert!(
        live.contains("result (summarize):") && live.contains("14 words in all"),
        "{live}"
    );
    assert!(out.contains("State:     succeeded"), "{out}");
    let cost_line = out
        .lines()
        .find(|l| l.starts_with("Cost:"))
        .unwrap_or_else(|| panic!("no Cost: line in {out}"));
    assert!(cost_line.contains(" input,"), "{cost_line}");
    // The agent was asked about the counts the shell steps made: the file
    // it read holds them.
    let mut texts = Vec::new();
    for request in mock.requests() {
        strings_in(&request, &mut texts);
    }
    assert!(
        texts.iter().any(|t| t.contains("fan-out/fan-in run")),
        "the prompt reached the API"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains(r#""join""#) && t.replace(' ', "").contains(r#""words":14"#)),
        "the Read tool's answer held the join's counts: {texts:#?}"
    );
    // The key is the worker's secret: never in what the demo printed.
    assert!(!out.contains("sk-ant-demo-key") && !live.contains("sk-ant-demo-key"));
}

/// Every string in `value`, however deep.
fn strings_in(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => into.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings_in(v, into)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings_in(v, into)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_openai_endpoint_the_demo_ends_in_a_codex_step() {
    let mock = Mock::start(
        Api::OpenAi,
        vec![
            Reply::codex_command(
                "cat context/inputs.json && echo '3 shards held 14 words.' > SUMMARY-codex.md",
            ),
            Reply::Text("The three shards held 14 words in all.".into()),
        ],
    )
    .await
    .expect("mock");
    let data = tempfile::tempdir().expect("tempdir");
    let codex = tidewright_tests::codex_bin().display().to_string();
    let run = demo(
        data.path(),
        &[
            ("OPENAI_BASE_URL", mock.url.as_str()),
            ("OPENAI_API_KEY", "sk-openai-demo-key"),
            ("TIDEWRIGHT_CODEX_BIN", codex.as_str()),
        ],
    )
    .await;
    let (out, live) = (&run.stdout, &run.stderr);
    assert!(!out.contains("no OPENAI_API_KEY"), "{out}");
    // tidewright up's workers offer codex once they have a key and the CLI.
    assert!(out.contains("codex"), "{out}");
    // Its command streamed live, with what it printed.
    assert!(
        live.contains("summarize-codex | $ /bin/bash -lc \"cat context/inputs.json"),
        "{live}"
    );
    assert!(live.contains("summarize-codex: succeeded"), "{live}");
    assert!(
        live.contains("result (summarize-codex):") && live.contains("14 words in all"),
        "{live}"
    );
    assert!(out.contains("State:     succeeded"), "{out}");
    // The agent was asked about the counts the shell steps made.
    let asked = format!("{:?}", mock.requests());
    assert!(
        asked.contains("fan-out/fan-in run"),
        "the prompt reached the API"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_gemini_endpoint_the_demo_ends_in_a_gemini_cli_step() {
    let mock = Mock::start(
        Api::Google,
        vec![
            Reply::gemini_write("SUMMARY-gemini.md", "3 shards held 14 words.\n"),
            Reply::Text("The three shards held 14 words in all.".into()),
        ],
    )
    .await
    .expect("mock");
    let data = tempfile::tempdir().expect("tempdir");
    let gemini = tidewright_tests::gemini_bin().display().to_string();
    let run = demo(
        data.path(),
        &[
            ("GOOGLE_GEMINI_BASE_URL", mock.url.as_str()),
            ("GEMINI_API_KEY", "gemini-demo-key"),
            ("TIDEWRIGHT_GEMINI_BIN", gemini.as_str()),
        ],
    )
    .await;
    let (out, live) = (&run.stdout, &run.stderr);
    assert!(!out.contains("no GEMINI_API_KEY"), "{out}");
    assert!(out.contains("gemini-cli"), "{out}");
    assert!(
        live.contains("summarize-gemini | tool: write_file"),
        "{live}"
    );
    assert!(live.contains("summarize-gemini: succeeded"), "{live}");
    assert!(
        live.contains("result (summarize-gemini):") && live.contains("14 words in all"),
        "{live}"
    );
    assert!(out.contains("State:     succeeded"), "{out}");
    let asked = format!("{:?}", mock.requests());
    assert!(
        asked.contains("fan-out/fan-in run"),
        "the prompt reached the API"
    );
}
