//! `make bench-steer`: from `tidewright steer` to the message reaching the
//! provider, for a Claude Code step steered mid-turn.
//!
//! The release `tidewright` runs one Claude Code worker, the real CLI,
//! against the mock Messages API. Each round is a task whose agent's turn
//! is in a Bash call that waits at a gate. The bench runs the real
//! `tidewright steer` command, and opens the gate as soon as it returns,
//! so the turn's next model request goes out. Mid-turn, Claude Code sends a
//! message with its next request, so that request is when it reaches the
//! provider. One clock: the mock and the control plane run on this
//! machine. Each round's figures, from the command's start:
//!
//! - the command's return (the control plane has it, audited, on its way
//!   to the worker);
//! - the agent taking it (Claude Code's echo of the message, a log line the
//!   worker sends, timed by the control plane);
//! - the provider's request carrying it (the mock's arrival). This includes
//!   the Bash call ending (its gate is polled every 20 ms) and Claude Code
//!   sending the tool's result.
//!
//! Sizes: TIDEWRIGHT_BENCH_STEERS (rounds per run, 10), TIDEWRIGHT_BENCH_RUNS (5).

use std::time::Duration;

use anyhow::Context;
use tidewright_api::convert::{micros, now_micros};
use tidewright_api::v1;
use tidewright_tests::bench::*;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    let rounds = env_number("TIDEWRIGHT_BENCH_STEERS", 10) as usize;
    println!(
        "tidewright steering benchmark: {} cores, release build; one Claude Code worker (the real CLI against the mock Messages API), {rounds} steered turns per run",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        let mut times: [Vec<i64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        one_run(run, rounds, &mut times).await?;
        for values in &mut times {
            values.sort_unstable();
        }
        let [returned, taken, provider] = &times;
        for (figure, values) in [
            ("the command's return", returned),
            ("the agent took it (its echo)", taken),
            ("command to the provider", provider),
        ] {
            table.add(
                &format!("{figure}, p50"),
                "ms",
                Better::Lower,
                quantile_ms(values, 0.5),
            );
        }
        table.add(
            "command to the provider, p99",
            "ms",
            Better::Lower,
            quantile_ms(provider, 0.99),
        );
        println!(
            "run {run} of {runs}: command to the provider p50 {:.1} ms",
            quantile_ms(provider, 0.5)
        );
    }
    println!("\n{}", table.render(&command("bench-steer")));
    Ok(())
}

/// One server and worker, `rounds` steered tasks one after another; each
/// round's figures in microseconds, into `times`.
async fn one_run(run: usize, rounds: usize, times: &mut [Vec<i64>; 3]) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gates: Vec<_> = (0..rounds)
        .map(|n| dir.path().join(format!("gate-{n}")))
        .collect();
    let prompts: Vec<String> = (0..rounds)
        .map(|n| format!("Port the client (run {run}, round {n})."))
        .collect();
    let routes = prompts
        .iter()
        .zip(&gates)
        .map(|(prompt, gate)| {
            (
                prompt.as_str(),
                vec![
                    Reply::claude_bash(&wait_for_gate(gate)),
                    Reply::Text("Ported.".into()),
                ],
            )
        })
        .collect();
    let mock = Mock::start_routed(Api::Anthropic, routes).await?;
    let (server, _worker) = claude_worker_with(dir.path(), &mock, &["claude-code"], &[]).await;
    let client = server.tasks().await?;
    for (n, (prompt, gate)) in prompts.iter().zip(&gates).enumerate() {
        let message = format!(
            "Use the v2 API instead (round {n}, {}).",
            std::process::id()
        );
        let id = submit(
            &client,
            task("steered", vec![claude_step("a", prompt, &["Bash"])]),
        )
        .await?;
        wait_step(&client, &id, "a", v1::StepState::Running).await?;
        // The turn is under way: its first request is in, its Bash call
        // next.
        eventually(Duration::from_secs(60), || async {
            mock.requests()
                .iter()
                .any(|r| r.to_string().contains(prompt.as_str()))
                .then_some(())
        })
        .await
        .context("the agent's turn is under way")?;
        let started = now_micros();
        stdout_of(server.cli().args(["steer", &id, "a", &message]));
        let returned = now_micros();
        std::fs::write(gate, "")?;
        wait_succeeded(&client, &id, Duration::from_secs(60)).await?;
        let reached = mock
            .requests()
            .iter()
            .zip(mock.arrivals())
            .find(|(r, _)| r.to_string().contains(message.as_str()))
            .map(|(_, at)| at)
            .context("no request carried the message")?;
        let mut reader = client.clone();
        let taken = task_events(&mut reader, &id, 0, false)
            .await?
            .into_iter()
            .find_map(|e| match &e.kind {
                Some(v1::event::Kind::Log(l)) if l.line.contains("the agent took the message") => {
                    e.time.as_ref().map(micros)
                }
                _ => None,
            })
            .context("the agent's echo")?;
        times[0].push(returned - started);
        times[1].push(taken - started);
        times[2].push(reached - started);
    }
    Ok(())
}
