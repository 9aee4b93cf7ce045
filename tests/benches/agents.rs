//! `make bench-agents`: what tidewright adds to agents run at once. For each
//! agent runtime (Claude Code, Codex, the Gemini CLI), TIDEWRIGHT_BENCH_AGENTS
//! (16) runs of the
//! real, pinned CLI against the mock of its provider's API: started
//! directly, all at once, as a script would; then as one task of that many
//! steps through the release control plane and one worker with a slot
//! each (in its sandbox, through its model proxy). Prints both wall times
//! and tidewright's added time per runtime, over TIDEWRIGHT_BENCH_RUNS runs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tidewright_api::v1;
use tidewright_tests::bench::*;
use tidewright_tests::provider::{Api, Mock};
use tidewright_tests::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let agents = env_number("TIDEWRIGHT_BENCH_AGENTS", 16) as usize;
    let runs = runs();
    println!(
        "tidewright agents benchmark: {} cores, release build, {agents} agents of each runtime at once, the pinned CLIs against mocks of their APIs",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        for runtime in [Runtime::Claude, Runtime::Codex, Runtime::Gemini] {
            let direct = direct(runtime, agents).await?;
            let through = through_tidewright(runtime, agents).await?;
            let name = runtime.name();
            table.add(
                &format!("{name}: {agents} CLIs started directly, all ended"),
                "s",
                Better::Lower,
                direct.as_secs_f64(),
            );
            table.add(
                &format!("{name}: {agents} steps of one task through tidewright, the task ended"),
                "s",
                Better::Lower,
                through.as_secs_f64(),
            );
            table.add(
                &format!("{name}: tidewright's added wall time for {agents}"),
                "s",
                Better::Lower,
                through.as_secs_f64() - direct.as_secs_f64(),
            );
        }
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-agents")));
    Ok(())
}

#[derive(Clone, Copy)]
enum Runtime {
    Claude,
    Codex,
    Gemini,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Claude => "claude-code",
            Runtime::Codex => "codex",
            Runtime::Gemini => "gemini-cli",
        }
    }
}

/// The mocks a run's agents talk to: one reply each, text.
struct Mocks {
    anthropic: Mock,
    openai: Mock,
    gemini: Mock,
}

async fn mocks() -> anyhow::Result<Mocks> {
    Ok(Mocks {
        anthropic: Mock::start(Api::Anthropic, Vec::new()).await?,
        openai: Mock::start(Api::OpenAi, Vec::new()).await?,
        gemini: Mock::start(Api::Google, Vec::new()).await?,
    })
}

/// `agents` CLIs started at once, each in a directory of its own (a fresh
/// home and working directory, under the same temporary directory as the
/// worker's); the wall time until the last one ended.
async fn direct(runtime: Runtime, agents: usize) -> anyhow::Result<Duration> {
    let mocks = mocks().await?;
    let dir = tempfile::tempdir()?;
    let mut commands = Vec::new();
    for n in 0..agents {
        let home = dir.path().join(format!("home-{n}"));
        let work = dir.path().join(format!("work-{n}"));
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&work)?;
        let mut command = match runtime {
            Runtime::Claude => {
                let mut command = tokio::process::Command::new(claude_bin());
                command
                    .args([
                        "-p",
                        "Say hello",
                        "--output-format",
                        "stream-json",
                        "--verbose",
                    ])
                    .env("ANTHROPIC_BASE_URL", &mocks.anthropic.url)
                    .env("ANTHROPIC_API_KEY", "sk-ant-bench-key")
                    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                    .env("DISABLE_AUTOUPDATER", "1");
                command
            }
            Runtime::Codex => {
                std::fs::write(
                    home.join("config.toml"),
                    tidewright_worker::runtime::codex::config_toml(
                        tidewright_worker::runtime::codex::DEFAULT_MODEL,
                        &mocks.openai.url,
                        None,
                    ),
                )?;
                let mut command = tokio::process::Command::new(codex_bin());
                command
                    .args([
                        "exec",
                        "--json",
                        "--skip-git-repo-check",
                        "--dangerously-bypass-approvals-and-sandbox",
                        "--",
                        "Say hello",
                    ])
                    .env("CODEX_HOME", &home)
                    .env("OPENAI_API_KEY", "sk-bench-key");
                command
            }
            Runtime::Gemini => {
                std::fs::create_dir_all(home.join(".gemini"))?;
                std::fs::write(
                    home.join(".gemini/settings.json"),
                    tidewright_worker::runtime::gemini::settings_json(None),
                )?;
                let mut command = tokio::process::Command::new(gemini_bin());
                command
                    .args([
                        "-p",
                        "Say hello",
                        "--output-format",
                        "stream-json",
                        "-m",
                        tidewright_worker::runtime::gemini::DEFAULT_MODEL,
                        "--skip-trust",
                        "--yolo",
                    ])
                    .env("GEMINI_CLI_HOME", &home)
                    .env("GEMINI_CLI_NO_RELAUNCH", "true")
                    .env("GOOGLE_GEMINI_BASE_URL", &mocks.gemini.url)
                    .env("GEMINI_API_KEY", "gemini-bench-key");
                command
            }
        };
        command
            .current_dir(&work)
            .env("HOME", &home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        commands.push(command);
    }
    let started = Instant::now();
    let children: Vec<_> = commands
        .iter_mut()
        .map(|c| c.spawn())
        .collect::<Result<_, _>>()?;
    for child in children {
        let status = child.wait_with_output().await?.status;
        anyhow::ensure!(
            status.success(),
            "a {} CLI failed: {status}",
            runtime.name()
        );
    }
    Ok(started.elapsed())
}

/// One task of `agents` steps of `runtime` through a control plane and one
/// worker with a slot each; the wall time from the submit until the task
/// ended.
async fn through_tidewright(runtime: Runtime, agents: usize) -> anyhow::Result<Duration> {
    let mocks = mocks().await?;
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[])?;
    let (claude, codex, gemini_cli) = (
        claude_bin().display().to_string(),
        codex_bin().display().to_string(),
        gemini_bin().display().to_string(),
    );
    let _worker = start_worker_env(
        &server.url,
        dir.path(),
        "agent-1",
        &[runtime.name()],
        agents as u32,
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
            ("ANTHROPIC_BASE_URL", &mocks.anthropic.url),
            ("ANTHROPIC_API_KEY", "sk-ant-bench-key"),
            ("OPENAI_BASE_URL", &mocks.openai.url),
            ("OPENAI_API_KEY", "sk-bench-key"),
            ("GOOGLE_GEMINI_BASE_URL", &mocks.gemini.url),
            ("GEMINI_API_KEY", "gemini-bench-key"),
        ],
    )?;
    server.wait_for_agents(&["agent-1"]).await?;
    let client = server.tasks().await?;
    let steps: Vec<v1::StepSpec> = (0..agents)
        .map(|n| {
            let id = format!("agent-{n}");
            match runtime {
                Runtime::Claude => claude_step(&id, "Say hello", &[]),
                Runtime::Codex => codex_step(&id, "Say hello"),
                Runtime::Gemini => gemini_step(&id, "Say hello"),
            }
        })
        .collect();
    let started = Instant::now();
    let id = submit(&client, task("fan-out", steps)).await?;
    wait_succeeded(&client, &id, Duration::from_secs(300)).await?;
    Ok(started.elapsed())
}
