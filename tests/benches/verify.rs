//! `make bench-verify`: what a verified step's round adds beyond its
//! checks' own run and its agent's own turn: committing the work, the
//! check's checkout and sandbox, the round's result and verdict, the step
//! queued and given out again, and the session placed for the next turn.
//!
//! The release `tidewright` runs one verified Claude Code step (the real
//! CLI against the mock Messages API) on a repository served by the real
//! git server. Each turn of the agent writes the next number to `n.txt`;
//! the check (`python3 check.py`, sandboxed) fails, naming a new test each
//! time so that no two rounds fail alike, until the number reaches
//! TIDEWRIGHT_BENCH_VERIFY_ROUNDS (21: twenty rounds sent back). For each
//! round sent back, from the step's events (one clock, the control
//! plane's):
//!
//!   overhead = (the next turn's start) - (the agent's answer ending this
//!              turn) - (the check's own run, as the worker timed it)
//!
//! where the next turn's start is the worker's `sent back by its checks`
//! line, written just before it starts the agent CLI again. What the CLI
//! then takes to start is its own turn's. Each run prints p50, p99 and max
//! over its rounds; the table takes each figure's runs
//! (TIDEWRIGHT_BENCH_RUNS, 5).

use std::time::Duration;

use anyhow::{Context, bail};
use tidewright_api::convert::micros;
use tidewright_api::v1;
use tidewright_tests::bench::*;
use tidewright_tests::git_server::{GitServer, account_secrets};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

/// Fails until n.txt holds the last round's number, naming a test of its
/// own each round (a letter, as numbers are made alike in a failure's
/// signature).
const CHECK: &str = "import sys\nn = int(open('n.txt').read())\nlast = int(sys.argv[1])\nif n < last:\n    print('FAIL: test_round_' + chr(97 + n % 26) + chr(97 + n // 26))\n    sys.exit(1)\nprint('OK')\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let turns = env_number("TIDEWRIGHT_BENCH_VERIFY_ROUNDS", 21).clamp(2, 21) as u32;
    let runs = runs();
    println!(
        "tidewright verify benchmark: {} cores, release build; one Claude Code step (the real CLI, the mock API) verified by `python3 check.py` on a repository served by nginx + git http-backend on loopback, {} rounds sent back per run",
        cores(),
        turns - 1
    );
    let mut table = Table::default();
    for run in 1..=runs {
        let samples = one_run(turns).await?;
        let sorted = {
            let mut s = samples.clone();
            s.sort_unstable();
            s
        };
        println!(
            "run {run} of {runs}: {} rounds sent back, overhead {}",
            sorted.len(),
            percentiles(&sorted)
        );
        table.add(
            "round overhead p50",
            "ms",
            Better::Lower,
            quantile_ms(&sorted, 0.50),
        );
        table.add(
            "round overhead p99",
            "ms",
            Better::Lower,
            quantile_ms(&sorted, 0.99),
        );
    }
    println!("\n{}", table.render(&command("bench-verify")));
    Ok(())
}

/// One task of `turns` turns; the overhead of each round sent back, in
/// microseconds.
async fn one_run(turns: u32) -> anyhow::Result<Vec<i64>> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("bench", &[("check.py", CHECK), ("n.txt", "0\n")]);
    let mut script = Vec::new();
    for n in 1..=turns {
        script.push(Reply::claude_read("n.txt"));
        script.push(Reply::claude_write("n.txt", &format!("{n}\n")));
        script.push(Reply::Text(format!("Turn {n} done.")));
    }
    let mock = Mock::start(Api::Anthropic, script).await?;
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds")?;
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )?;
    let _worker = start_named_claude_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["claude-code"], 1),
        &["--secrets-dir", &secrets],
    )?;
    let client = server.tasks().await?;
    let mut count = claude_step(
        "count",
        "Write the next number to n.txt.",
        &["Read", "Write"],
    );
    count.verify = Some(v1::VerifySpec {
        checks: vec![v1::CheckSpec {
            name: "count".into(),
            run: vec!["python3".into(), "check.py".into(), turns.to_string()],
            timeout: "1m".into(),
        }],
        rounds: turns - 1,
        protect: Vec::new(),
        rubric: String::new(),
    });
    let mut request = task("bench-verify", vec![count]);
    if let Some(spec) = request.spec.as_mut() {
        spec.repo = Some(v1::RepoSpec {
            url: git.url("bench"),
            r#ref: "main".into(),
            credentials_secret: "git-creds".into(),
            ..v1::RepoSpec::default()
        });
    }
    let id = submit(&client, request).await?;
    let events = events_until_done(&client, &id).await;
    let task = wait_succeeded(&client, &id, Duration::from_secs(600))
        .await
        .context("the verified step")?;
    let checks: Vec<i64> = step(&task, "count")
        .attempts
        .iter()
        .filter_map(|a| a.verification.as_ref())
        .map(|v| v.checks.first().map_or(0, |c| c.millis as i64 * 1000))
        .collect();
    overheads(&events, &checks, turns)
}

/// Each round's overhead from the step's events: its answer's line, its
/// check's own run, and the next turn's start; and, to say where it goes,
/// the median of each stretch between them.
fn overheads(events: &[v1::Event], checks: &[i64], turns: u32) -> anyhow::Result<Vec<i64>> {
    let at = |e: &v1::Event| e.time.as_ref().map(micros).unwrap_or(0);
    // The marks of a round sent back, in the order they come.
    const MARKS: [&str; 6] = [
        "answered",
        "check started",
        "check ended",
        "verdict",
        "given out again",
        "session placed",
    ];
    let mut marks: Vec<Vec<i64>> = vec![Vec::new(); MARKS.len()];
    let mut started = Vec::new();
    for event in events {
        let mark = match &event.kind {
            Some(v1::event::Kind::Log(line)) => {
                let text = line.line.as_str();
                if text.starts_with("Turn ") && text.ends_with(" done.") {
                    Some(0)
                } else if text.starts_with("check count: running") {
                    Some(1)
                } else if text.starts_with("check count: failed")
                    || text.starts_with("check count: passed")
                {
                    Some(2)
                } else if text.starts_with("resuming session") {
                    Some(5)
                } else if text.starts_with("sent back by its checks") {
                    started.push(at(event));
                    None
                } else {
                    None
                }
            }
            Some(v1::event::Kind::Verification(_)) => Some(3),
            Some(v1::event::Kind::StepState(s))
                if s.state == v1::StepState::Running as i32 && s.attempt > 1 =>
            {
                Some(4)
            }
            _ => None,
        };
        if let Some(mark) = mark {
            marks[mark].push(at(event));
        }
    }
    let sent_back = turns as usize - 1;
    if marks[0].len() != turns as usize || started.len() != sent_back || checks.len() < sent_back {
        bail!(
            "expected {turns} turns: {} answers, {} turns sent back, {} checks",
            marks[0].len(),
            started.len(),
            checks.len()
        );
    }
    let mut said = Vec::new();
    for (i, pair) in MARKS.windows(2).enumerate() {
        let mut stretch: Vec<i64> = (0..sent_back)
            .filter_map(|k| Some(marks[i + 1].get(k)? - marks[i].get(k)?))
            .collect();
        stretch.sort_unstable();
        if !stretch.is_empty() {
            said.push(format!(
                "{} → {}: {:.1} ms",
                pair[0],
                pair[1],
                quantile_ms(&stretch, 0.5)
            ));
        }
    }
    let mut last: Vec<i64> = (0..sent_back)
        .filter_map(|k| Some(started[k] - marks[5].get(k)?))
        .collect();
    last.sort_unstable();
    if !last.is_empty() {
        said.push(format!(
            "session placed → agent started: {:.1} ms",
            quantile_ms(&last, 0.5)
        ));
    }
    println!("  medians: {}", said.join("; "));
    Ok((0..sent_back)
        .map(|k| started[k] - marks[0][k] - checks[k])
        .collect())
}
