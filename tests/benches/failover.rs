//! `make bench-failover`: how long a step waits between its provider's
//! limit and running on its fallback's pool.
//!
//! The release `tidewright` runs a pool of one Claude Code worker (one
//! slot) and a pool of one Codex worker (two slots), the real CLIs, each
//! against the mock of its provider's API, on a repository served by the
//! real git server. Per run, two tasks whose step names `fallback:
//! [codex]`: the first's Claude agent writes its fix and then meets a 429
//! that resets in ten minutes; the second's step waits in the queue behind
//! it for the Claude pool's one slot. At the 429 the first step moves to
//! Codex with its work (its branch kept with the control plane) and the
//! summary of its session; the queued one moves with nothing to carry.
//!
//! Each figure is from the 429 (its arrival at the Anthropic mock) to the
//! step's attempt on the Codex pool starting (the control plane's record)
//! and to that attempt's agent's first call to the OpenAI mock (Codex
//! running, briefed). One clock: the mocks and the control plane run on
//! this machine.

use std::time::Duration;

use anyhow::Context;
use tidewright_api::convert::micros;
use tidewright_api::v1;
use tidewright_tests::bench::*;
use tidewright_tests::calc::{BUG, RIGHT, TEST};
use tidewright_tests::git_server::{GitServer, account_secrets};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    println!(
        "tidewright failover benchmark: {} cores, release build; a Claude Code pool and a Codex pool (the real CLIs against their mock APIs), a repository served by nginx + git http-backend on loopback",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        let moved = one_run(run).await?;
        println!(
            "run {run} of {runs}: running step on codex in {:.0} ms (its agent calls in {:.0} ms); queued step on codex in {:.0} ms (its agent calls in {:.0} ms)",
            moved.running.0, moved.running.1, moved.queued.0, moved.queued.1
        );
        for (figure, ms) in [
            ("running step: 429 to its attempt on codex", moved.running.0),
            ("running step: 429 to codex's first call", moved.running.1),
            ("queued step: 429 to its attempt on codex", moved.queued.0),
            ("queued step: 429 to codex's first call", moved.queued.1),
        ] {
            table.add(figure, "ms", Better::Lower, ms);
        }
    }
    println!("\n{}", table.render(&command("bench-failover")));
    Ok(())
}

/// What a run measured, in ms from the 429: (the attempt on codex
/// starting, codex's first call), for the running step and the queued.
struct Moved {
    running: (f64, f64),
    queued: (f64, f64),
}

async fn one_run(run: usize) -> anyhow::Result<Moved> {
    let tag = format!("run {run}, {}", std::process::id());
    let running = format!("Fix add in calc.py ({tag}).");
    let queued = format!("Say hello ({tag}).");
    let claude = Mock::start_routed(
        Api::Anthropic,
        vec![(
            running.as_str(),
            vec![Reply::claude_write("calc.py", RIGHT), Reply::limit(600)],
        )],
    )
    .await?;
    let codex = Mock::start_routed(
        Api::OpenAi,
        vec![
            (
                running.as_str(),
                vec![Reply::Text("Claude's fix holds.".into())],
            ),
            (queued.as_str(), vec![Reply::Text("Hello.".into())]),
        ],
    )
    .await?;
    let gemini = Mock::start(Api::Google, Vec::new()).await?;
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("calc", &[("calc.py", BUG), ("test_calc.py", TEST)]);
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds")?;
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )?;
    let urls = (claude.url.as_str(), codex.url.as_str(), gemini.url.as_str());
    let _claude_pool = start_three_runtime_worker(
        (&server, dir.path(), "claude-1"),
        urls,
        (&["claude-code"], 1),
        &["--secrets-dir", &secrets, "--pool", "claude"],
    )?;
    let _codex_pool = start_three_runtime_worker(
        (&server, dir.path(), "codex-1"),
        urls,
        (&["codex"], 2),
        &["--secrets-dir", &secrets, "--pool", "codex"],
    )?;
    server.wait_for_agents(&["claude-1", "codex-1"]).await?;
    let client = server.tasks().await?;
    let on_repo = |name: &str, prompt: &str, tools: &[&str]| {
        let mut step = claude_step("fix", prompt, tools);
        step.fallback = vec!["codex".into()];
        task_on_repo(name, vec![step], &git.url("calc"))
    };
    let first = submit(&client, on_repo("running", &running, &["Write"])).await?;
    // The second waits for the Claude pool's one slot.
    wait_task(&client, &first, Duration::from_secs(60), |t| {
        (step(&t, "fix").state == v1::StepState::Running as i32).then_some(())
    })
    .await
    .context("the first step runs on claude")?;
    let second = submit(&client, on_repo("queued", &queued, &[])).await?;
    let mut moved = Vec::new();
    for (id, prompt) in [(&first, &running), (&second, &queued)] {
        let task = wait_succeeded(&client, id, Duration::from_secs(120))
            .await
            .with_context(|| format!("the task asking {prompt:?}"))?;
        let on_codex = step(&task, "fix")
            .attempts
            .last()
            .and_then(|a| a.started_at.as_ref())
            .map(micros)
            .context("its attempt on codex")?;
        let first_call = first_arrival(&codex, prompt).context("codex's first call")?;
        moved.push((on_codex, first_call));
    }
    let limit = last_arrival(&claude, &running).context("the 429")?;
    let ms = |at: i64| (at - limit) as f64 / 1e3;
    Ok(Moved {
        running: (ms(moved[0].0), ms(moved[0].1)),
        queued: (ms(moved[1].0), ms(moved[1].1)),
    })
}

/// When `mock` got its first request holding `marker`.
fn first_arrival(mock: &Mock, marker: &str) -> Option<i64> {
    arrivals_of(mock, marker).into_iter().next()
}

/// When `mock` got its last request holding `marker`.
fn last_arrival(mock: &Mock, marker: &str) -> Option<i64> {
    arrivals_of(mock, marker).into_iter().last()
}

fn arrivals_of(mock: &Mock, marker: &str) -> Vec<i64> {
    mock.requests()
        .iter()
        .zip(mock.arrivals())
        .filter(|(request, _)| request.to_string().contains(marker))
        .map(|(_, at)| at)
        .collect()
}
