//! `make bench-schedules`: how punctually a schedule fires. The real
//! control plane (SQLite, the release binary) and one worker; a schedule
//! ticking every second whose task is one no-op step. Each tick's delay is
//! from its scheduled time to its task's creation (the task's created_at,
//! one machine, one clock), over TIDEWRIGHT_BENCH_TICKS ticks (500); the ticks
//! and their tasks are read from the schedule's history as it goes.
//! TIDEWRIGHT_BENCH_RUNS (1) runs, each on a new server and data directory.

use std::collections::BTreeMap;
use std::time::Duration;

use tidewright_client::{Client, Settings, v1};
use tidewright_tests::bench::*;
use tidewright_tests::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = env_number("TIDEWRIGHT_BENCH_RUNS", 1).max(1);
    let ticks = env_number("TIDEWRIGHT_BENCH_TICKS", 500) as usize;
    println!(
        "tidewright schedule benchmark: {} cores, release build, SQLite, 1 worker, a schedule every second of one no-op step, {ticks} ticks a run",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        measure_once(&mut table, ticks).await?;
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-schedules")));
    Ok(())
}

async fn measure_once(table: &mut Table, wanted: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[])?;
    let _worker = server.worker("bench-1", &["shell"], 4)?;
    let client =
        Client::connect(Settings::new(&server.url, Some(server.admin_token.clone()))).await?;
    let task = noop_task(0).spec;
    client
        .create_schedule(
            "",
            v1::ScheduleSpec {
                name: "every-second".into(),
                cron: "* * * * * *".into(),
                task,
                ..Default::default()
            },
        )
        .await?;
    // Tick -> its task, read from the history (its last 20) every 2 s.
    let mut fired: BTreeMap<i64, String> = BTreeMap::new();
    let mut skipped = 0u64;
    let mut seen_skips = std::collections::HashSet::new();
    while fired.len() < wanted {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let schedule = client.schedule("", "every-second").await?;
        for run in schedule.history {
            let tick = run
                .tick
                .as_ref()
                .map(tidewright_api::convert::micros)
                .unwrap_or_default();
            if run.task_id.is_empty() {
                if seen_skips.insert(tick) {
                    skipped += run.ticks.max(1);
                }
            } else {
                fired.insert(tick, run.task_id);
            }
        }
    }
    let mut delays = Vec::with_capacity(fired.len());
    for (tick, task_id) in fired.iter().take(wanted) {
        let task = client.get(task_id).await?;
        let created = task
            .created_at
            .as_ref()
            .map(tidewright_api::convert::micros)
            .unwrap_or_default();
        delays.push(created - tick);
    }
    delays.sort_unstable();
    let first = *fired.keys().next().unwrap_or(&0);
    let last = *fired.keys().nth(wanted - 1).unwrap_or(&0);
    let missing = ((last - first) / 1_000_000 + 1) as usize - wanted.min(fired.len());
    println!(
        "{} ticks: delay from the tick to its task's creation {}; ticks without a task between the first and the last: {missing}; skipped: {skipped}",
        delays.len(),
        percentiles(&delays)
    );
    table.add(
        "tick delay p50",
        "ms",
        Better::Lower,
        quantile_ms(&delays, 0.50),
    );
    table.add(
        "tick delay p99",
        "ms",
        Better::Lower,
        quantile_ms(&delays, 0.99),
    );
    table.add(
        "tick delay max",
        "ms",
        Better::Lower,
        quantile_ms(&delays, 1.0),
    );
    table.add("ticks without a task", "", Better::Lower, missing as f64);
    Ok(())
}
