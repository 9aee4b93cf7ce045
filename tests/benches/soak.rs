//! `make bench-soak`: steady load on the real control plane (SQLite) and two
//! real workers, long enough for retention to remove tasks as fast as they
//! come: no-op single-step tasks submitted one call each at a fixed rate,
//! finished tasks kept for a short window. Each minute it prints the
//! server's resident memory, the data directory's size on disk and the
//! submit latencies of that minute, so a store that grows without end, or
//! a latency step when removals start, shows in the table.
//!
//! Sizes: TIDEWRIGHT_SOAK_RATE (tasks/s, 1,000), TIDEWRIGHT_SOAK_MINUTES (30),
//! TIDEWRIGHT_SOAK_RETENTION (the tasks' window in seconds, 300) and
//! TIDEWRIGHT_SOAK_AUDIT_RETENTION (the audit log's, the tasks' by default).

use std::path::Path;
use std::time::{Duration, Instant};

use tidewright_tests::bench::*;
use tidewright_tests::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rate = env_number("TIDEWRIGHT_SOAK_RATE", 1_000).max(1);
    let minutes = env_number("TIDEWRIGHT_SOAK_MINUTES", 30).max(1);
    let retention = env_number("TIDEWRIGHT_SOAK_RETENTION", 300);
    // The audit log (a record a submit) and the records of removed tasks
    // are kept by their own window: the same as the tasks' by default, so
    // the whole store can level off.
    let audit_retention = env_number("TIDEWRIGHT_SOAK_AUDIT_RETENTION", retention);
    println!(
        "tidewright soak: {} cores, release build, SQLite, 2 worker processes x {SLOTS} slots, no-op single-step tasks at {rate}/s (one SubmitTask each) for {minutes} min, --retention {retention}s --audit-retention {audit_retention}s",
        cores()
    );
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let window = format!("{retention}s");
    let audit_window = format!("{audit_retention}s");
    let server = Server::start_on(
        &data,
        "127.0.0.1:0",
        &["--retention", &window, "--audit-retention", &audit_window],
    )?;
    let _workers = [
        server.worker("soak-1", &["shell"], SLOTS)?,
        server.worker("soak-2", &["shell"], SLOTS)?,
    ];
    server.wait_for_agents(&["soak-1", "soak-2"]).await?;
    let tasks = server.tasks().await?;
    let every = Duration::from_micros(1_000_000 / rate);
    let per_minute = (rate * 60) as usize;
    println!(
        "\n| minute | submitted | server RSS (MiB) | data dir (MiB) | submit p50 (ms) | submit p99 (ms) | submit max (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let started = Instant::now();
    for minute in 1..=minutes {
        let latencies = submit_for_a_minute(&tasks, per_minute, every).await?;
        println!(
            "| {minute} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} |",
            latencies.len(),
            rss_mib(server.process.pid()),
            dir_bytes(&data) as f64 / (1024.0 * 1024.0),
            quantile_ms(&latencies, 0.50),
            quantile_ms(&latencies, 0.99),
            quantile_ms(&latencies, 1.0),
        );
    }
    println!(
        "\n{} tasks in {:.0} s; {}",
        per_minute as u64 * minutes,
        started.elapsed().as_secs_f64(),
        command("bench-soak")
    );
    Ok(())
}

/// Submits `count` tasks one call each, one every `every`; each call's
/// latency in microseconds, sorted.
async fn submit_for_a_minute(
    tasks: &Tasks,
    count: usize,
    every: Duration,
) -> anyhow::Result<Vec<i64>> {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..count {
        ticker.tick().await;
        let mut client = tasks.clone();
        let request = noop_task(n);
        sent.spawn(async move {
            let at = Instant::now();
            client.submit_task(request).await?;
            anyhow::Ok(at.elapsed().as_micros() as i64)
        });
    }
    let mut latencies = Vec::with_capacity(count);
    while let Some(result) = sent.join_next().await {
        latencies.push(result??);
    }
    latencies.sort_unstable();
    Ok(latencies)
}

/// Bytes the files under `dir` take on disk.
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
