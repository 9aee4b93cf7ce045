//! `make bench-webhooks` (and the second part of `make bench`): the real control plane (SQLite) and two
//! real workers, no-op single-step tasks, and an endpoint on loopback that
//! takes `task.succeeded` and answers 204 at once. What a webhook costs
//! and how far behind it runs:
//!
//! - the batched throughput (as in the e2e bench) without an endpoint, then
//!   with one;
//! - with one, the deliveries per second from the first submit to the last
//!   delivery received, and how long after the last task ended that was;
//! - each delivery's lag, from the event's time (when the server recorded
//!   the task's end) to the receiver's clock on arrival (one machine, one
//!   clock), in that burst and at a steady 200 tasks/s.
//!
//! Sizes: TIDEWRIGHT_BENCH_WEBHOOK_TASKS (the burst, 20,000) and
//! TIDEWRIGHT_BENCH_SECONDS (the steady part, 10). Each run (TIDEWRIGHT_BENCH_RUNS, 5)
//! is on a new server and data directory; the runs end in one table.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tidewright_client::{Client, Settings};
use tidewright_tests::bench::*;
use tidewright_tests::webhook_receiver::{Received, Receiver};
use tidewright_tests::*;

const STEADY_RATE: u64 = 200;
const WARM_UP: usize = 200;
/// How long the last deliveries may take to arrive before the run fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    println!(
        "tidewright webhook benchmark: {} cores, release build, SQLite, 2 worker processes x {SLOTS} slots, no-op single-step tasks, one endpoint on task.succeeded answering 204",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        measure_once(&mut table).await?;
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-webhooks")));
    Ok(())
}

async fn measure_once(table: &mut Table) -> anyhow::Result<()> {
    let total = env_number("TIDEWRIGHT_BENCH_WEBHOOK_TASKS", 20_000) as usize;
    let seconds = env_number("TIDEWRIGHT_BENCH_SECONDS", 10);

    let dir = tempfile::tempdir()?;
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--webhook-allow-private-networks"],
    )?;
    let _workers = [
        server.worker("bench-1", &["shell"], SLOTS)?,
        server.worker("bench-2", &["shell"], SLOTS)?,
    ];
    server.wait_for_agents(&["bench-1", "bench-2"]).await?;
    let tasks = server.tasks().await?;
    let rate = |done: usize, elapsed: Duration| done as f64 / elapsed.as_secs_f64();

    run_batch_load(&tasks, 2_000).await?;
    let (done, elapsed) = run_batch_load(&tasks, total).await?;
    let without = rate(done, elapsed);
    table.add(
        &format!("throughput, batched ({total} tasks), no endpoint"),
        "tasks/s",
        Better::Higher,
        without,
    );

    let receiver = Receiver::start(&[], 204).await?;
    let client =
        Client::connect(Settings::new(&server.url, Some(server.admin_token.clone()))).await?;
    client
        .create_webhook(
            "",
            &receiver.url,
            &["task.succeeded"],
            "whsec_YmVuY2gta2V5LW9mLXRoaXJ0eS10d28tYnl0ZXMhIQ==",
        )
        .await?;
    run_batch_load(&tasks, WARM_UP).await?;
    all_delivered(&receiver, WARM_UP).await?;

    let before = receiver.accepted();
    let start = Instant::now();
    let (done, ended) = run_batch_load(&tasks, total).await?;
    let with = rate(done, ended);
    all_delivered(&receiver, before + done).await?;
    let drained = start.elapsed();
    let burst_lag = lags(&receiver.received()[before..])?;
    table.add(
        &format!("throughput, batched ({total} tasks), with the endpoint"),
        "tasks/s",
        Better::Higher,
        with,
    );
    table.add(
        "deliveries, first submit to last delivery received",
        "deliveries/s",
        Better::Higher,
        rate(done, drained),
    );
    table.add(
        "last delivery received after the last task ended",
        "s",
        Better::Lower,
        drained.saturating_sub(ended).as_secs_f64(),
    );
    for (q, name) in [(0.50, "p50"), (0.99, "p99")] {
        table.add(
            &format!("delivery lag {name}, in that burst"),
            "ms",
            Better::Lower,
            quantile_ms(&burst_lag, q),
        );
    }

    let before = receiver.accepted();
    let count = (STEADY_RATE * seconds) as usize;
    let every = Duration::from_micros(1_000_000 / STEADY_RATE);
    submit_steadily(&tasks, count, every, noop_task).await?;
    all_delivered(&receiver, before + count).await?;
    let steady_lag = lags(&receiver.received()[before..])?;
    for (q, name) in [(0.50, "p50"), (0.99, "p99")] {
        table.add(
            &format!("delivery lag {name}, at {STEADY_RATE} tasks/s"),
            "ms",
            Better::Lower,
            quantile_ms(&steady_lag, q),
        );
    }
    println!(
        "batched {without:.0} tasks/s without an endpoint, {with:.0} with; {:.0} deliveries/s; lag p99 {:.1} ms in the burst, {:.1} ms at {STEADY_RATE}/s",
        rate(done, drained),
        quantile_ms(&burst_lag, 0.99),
        quantile_ms(&steady_lag, 0.99),
    );
    Ok(())
}

/// Waits until the receiver has accepted `count` deliveries in all.
async fn all_delivered(receiver: &Receiver, count: usize) -> anyhow::Result<()> {
    eventually(DRAIN_LIMIT, || async {
        (receiver.accepted() >= count).then_some(())
    })
    .await
    .with_context(|| format!("{count} deliveries never arrived"))
}

/// Each delivery's lag in µs, sorted: its arrival less its event's time.
fn lags(received: &[Received]) -> anyhow::Result<Vec<i64>> {
    let micros = |at: SystemTime| -> anyhow::Result<i64> {
        Ok(i64::try_from(at.duration_since(UNIX_EPOCH)?.as_micros())?)
    };
    let mut lags = received
        .iter()
        .map(|r| {
            let time = r.json()["time"].as_str().unwrap_or_default().to_string();
            let at: prost_types::Timestamp = time
                .parse()
                .with_context(|| format!("a delivery's time {time:?}"))?;
            let event = at.seconds * 1_000_000 + i64::from(at.nanos) / 1_000;
            Ok(micros(r.arrived)? - event)
        })
        .collect::<anyhow::Result<Vec<i64>>>()?;
    lags.sort_unstable();
    Ok(lags)
}
