//! What the benchmarks share: sizes from the environment, the load they
//! put on a control plane, and how they print what they measured.

use std::time::{Duration, Instant};

use anyhow::Context;
use orca_api::v1;

use crate::{Tasks, noop_step, task, wait_all_finished};

/// Slots per worker process.
pub const SLOTS: u32 = 512;
/// Tasks per SubmitTasks call.
pub const BATCH: usize = 500;
/// SubmitTasks calls in flight.
pub const IN_FLIGHT: usize = 4;

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The machine's cores, as each benchmark's first line reports them.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub fn noop_task(n: usize) -> v1::SubmitTaskRequest {
    one_step_task(&format!("bench-{n}"), &[])
}

/// A task `name` of one no-op step that only a worker with `needs` takes.
pub fn one_step_task(name: &str, needs: &[&str]) -> v1::SubmitTaskRequest {
    let mut step = noop_step("noop");
    step.needs = needs.iter().map(|n| n.to_string()).collect();
    task(name, vec![step])
}

/// Submits `total` tasks in batches and waits until all have finished.
/// The clock runs from the first submit to the last step's finish.
pub async fn run_batch_load(client: &Tasks, total: usize) -> anyhow::Result<(usize, Duration)> {
    let start = Instant::now();
    let submitted = submit_batches(client, total, noop_task).await?;
    // Done when no task is left queued or running.
    wait_all_finished(client, Duration::from_secs(3600)).await?;
    Ok((submitted, start.elapsed()))
}

/// Submits tasks `make(0..total)` in SubmitTasks batches, IN_FLIGHT at a
/// time; answers how many were made.
pub async fn submit_batches(
    client: &Tasks,
    total: usize,
    make: impl Fn(usize) -> v1::SubmitTaskRequest,
) -> anyhow::Result<usize> {
    let mut made = 0;
    let mut pending = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < total || !pending.is_empty() {
        while next < total && pending.len() < IN_FLIGHT {
            let batch: Vec<_> = (next..(next + BATCH).min(total)).map(&make).collect();
            next += batch.len();
            let mut client = client.clone();
            pending.spawn(async move {
                client
                    .submit_tasks(v1::SubmitTasksRequest { tasks: batch })
                    .await
            });
        }
        if let Some(answer) = pending.join_next().await {
            made += answer.context("submit tasks")??.into_inner().tasks.len();
        }
    }
    Ok(made)
}

/// Submits `make(0..count)` one SubmitTask each, one every `every`, each
/// call on its own; answers each task's id and when its submit was sent
/// (µs), in the order the answers came.
pub async fn submit_steadily(
    client: &Tasks,
    count: usize,
    every: Duration,
    make: impl Fn(usize) -> v1::SubmitTaskRequest,
) -> anyhow::Result<Vec<(String, i64)>> {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..count {
        ticker.tick().await;
        let mut client = client.clone();
        let request = make(n);
        sent.spawn(async move {
            let at = orca_api::convert::now_micros();
            let id = client.submit_task(request).await?.into_inner().task_id;
            anyhow::Ok((id, at))
        });
    }
    let mut submitted = Vec::with_capacity(count);
    while let Some(result) = sent.join_next().await {
        submitted.push(result.context("a submit")??);
    }
    Ok(submitted)
}

/// "p50, p99, max" of microsecond samples, sorted, in milliseconds.
pub fn percentiles(sorted: &[i64]) -> String {
    let pick =
        |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pick(0.50),
        pick(0.99),
        pick(1.0)
    )
}

/// What the console's task list does with everything stored so far: pages
/// of 50, newest first, the first and then on, and the counts per state.
pub async fn page_through(client: &Tasks) -> anyhow::Result<()> {
    const PAGE: u32 = 50;
    const PAGES: usize = 200;
    let mut client = client.clone();
    let mut token = String::new();
    let mut times = Vec::with_capacity(PAGES);
    let mut listed = 0;
    for _ in 0..PAGES {
        let start = Instant::now();
        let page = client
            .list_tasks(v1::ListTasksRequest {
                page_size: PAGE,
                page_token: token,
                ..v1::ListTasksRequest::default()
            })
            .await?
            .into_inner();
        times.push(start.elapsed().as_micros() as i64);
        listed += page.tasks.len();
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    times.sort_unstable();
    let start = Instant::now();
    let counts = client
        .count_tasks(v1::CountTasksRequest::default())
        .await?
        .into_inner();
    let stored: u64 = counts.counts.iter().map(|c| c.tasks).sum();
    println!(
        "listing {stored} stored tasks, pages of {PAGE} newest first ({listed} listed): {}; counting them per state: {:.2} ms",
        percentiles(&times),
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
