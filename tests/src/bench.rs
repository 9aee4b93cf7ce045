//! What the benchmarks share: sizes from the environment, the load they
//! put on a control plane, and how they print what they measured.

use std::time::{Duration, Instant};

use anyhow::Context;
use tidewright_api::v1;

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

/// Context switches of every thread of process `pid` so far, voluntary
/// and not, as /proc counts them: a thread still alive is counted, one
/// that ended is not, so read it over a phase in which the process keeps
/// its threads.
pub fn context_switches(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for thread in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(thread?.path().join("status")) else {
            continue; // the thread ended as it was read
        };
        for line in status.lines() {
            if let Some(count) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += count.trim().parse::<u64>()?;
            }
        }
    }
    Ok(total)
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
            let at = tidewright_api::convert::now_micros();
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

/// The `q` quantile of microsecond samples, sorted, in milliseconds.
pub fn quantile_ms(sorted: &[i64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

/// "p50, p99, max" of microsecond samples, sorted, in milliseconds.
pub fn percentiles(sorted: &[i64]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile_ms(sorted, 0.50),
        quantile_ms(sorted, 0.99),
        quantile_ms(sorted, 1.0)
    )
}

/// What the console's task list does with everything stored so far: pages
/// of 50, newest first, the first and then on, and the counts per state.
/// Answers the p99 of a page and the time to count, in milliseconds.
pub async fn page_through(client: &Tasks) -> anyhow::Result<(f64, f64)> {
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
    let counted = start.elapsed().as_secs_f64() * 1000.0;
    let stored: u64 = counts.counts.iter().map(|c| c.tasks).sum();
    println!(
        "listing {stored} stored tasks, pages of {PAGE} newest first ({listed} listed): {}; counting them per state: {counted:.2} ms",
        percentiles(&times),
    );
    Ok((quantile_ms(&times, 0.99), counted))
}

/// How many times a benchmark repeats its measured part
/// (TIDEWRIGHT_BENCH_RUNS, 5 unless told).
pub fn runs() -> usize {
    env_number("TIDEWRIGHT_BENCH_RUNS", 5).max(1) as usize
}

/// Which way a figure is better: the tail of its runs is their highest
/// (a latency, memory) or their lowest (a rate).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Better {
    Lower,
    Higher,
}

/// Figures gathered over several runs of the same scenario, printed as one
/// table: each figure's p50 and p99 over the runs (nearest rank; with 5
/// runs the p99 is the worst run), and every run's value.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

struct Row {
    figure: String,
    unit: &'static str,
    better: Better,
    values: Vec<f64>,
}

impl Table {
    /// Adds one run's value of `figure`; the first call names the figure's
    /// row, in the order rows are printed.
    pub fn add(&mut self, figure: &str, unit: &'static str, better: Better, value: f64) {
        match self.rows.iter_mut().find(|row| row.figure == figure) {
            Some(row) => row.values.push(value),
            None => self.rows.push(Row {
                figure: figure.to_string(),
                unit,
                better,
                values: vec![value],
            }),
        }
    }

    /// Adds one run's p50 and p99 of the latencies `sorted` (µs) as the
    /// rows "`figure` p50" and "`figure` p99", in ms.
    pub fn add_latencies(&mut self, figure: &str, sorted: &[i64]) {
        for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
            self.add(
                &format!("{figure} {name}"),
                "ms",
                Better::Lower,
                quantile_ms(sorted, q),
            );
        }
    }

    /// The p50 and p99 of a figure's runs, the p99 taken on the side that
    /// is worse (the highest latency, the lowest rate).
    pub fn summary(&self, figure: &str) -> Option<(f64, f64)> {
        let row = self.rows.iter().find(|row| row.figure == figure)?;
        Some(row.summary())
    }

    /// The table, in Markdown, headed by the command that makes it again.
    pub fn render(&self, command: &str) -> String {
        let runs = self.rows.iter().map(|r| r.values.len()).max().unwrap_or(0);
        let mut out = format!(
            "{runs} runs on {} cores; command: {command}\n\n| figure | unit | p50 | p99 | runs |\n|---|---|---|---|---|\n",
            cores()
        );
        for row in &self.rows {
            let (p50, p99) = row.summary();
            let each: Vec<String> = row.values.iter().map(|v| figure(*v)).collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                row.figure,
                row.unit,
                figure(p50),
                figure(p99),
                each.join(" ")
            ));
        }
        out
    }
}

impl Row {
    fn summary(&self) -> (f64, f64) {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        if self.better == Better::Higher {
            sorted.reverse();
        }
        // Nearest rank: the smallest value with at least q of the runs at
        // or better than it.
        let rank = |q: f64| ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        (sorted[rank(0.50)], sorted[rank(0.99)])
    }
}

/// A figure with as many decimals as its size needs.
fn figure(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The command that repeats a benchmark as it ran: `make TARGET` behind the
/// TIDEWRIGHT_BENCH_* settings this run had.
pub fn command(target: &str) -> String {
    let mut settings: Vec<String> = std::env::vars()
        .filter(|(name, _)| {
            name.starts_with("TIDEWRIGHT_BENCH_") && name != "TIDEWRIGHT_BENCH_POSTGRES_URL"
        })
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    settings.sort();
    settings.push(format!("make {target}"));
    settings.join(" ")
}

/// A tunnel to `to` (`host:port`) through the egress proxy listening on
/// `socket`: its `CONNECT` answered `200`, the answer's head read to its
/// end, the stream ready for what goes through it.
pub async fn tunnel_through(
    socket: &std::path::Path,
    to: &str,
) -> anyhow::Result<tokio::net::UnixStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tunnel = tokio::net::UnixStream::connect(socket).await?;
    tunnel
        .write_all(format!("CONNECT {to} HTTP/1.1\r\nHost: {to}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        anyhow::ensure!(tunnel.read(&mut byte).await? == 1, "the proxy closed");
        head.push(byte[0]);
    }
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Ok(tunnel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_p99_is_the_worst_run_on_the_figures_own_side() {
        let mut table = Table::default();
        for (latency, rate) in [
            (1.0, 900.0),
            (5.0, 1000.0),
            (2.0, 100.0),
            (3.0, 800.0),
            (4.0, 700.0),
        ] {
            table.add("latency", "ms", Better::Lower, latency);
            table.add("rate", "tasks/s", Better::Higher, rate);
        }
        assert_eq!(table.summary("latency"), Some((3.0, 5.0)));
        assert_eq!(table.summary("rate"), Some((800.0, 100.0)));
        let rendered = table.render("make bench");
        assert!(rendered.starts_with("5 runs on "), "{rendered}");
        assert!(
            rendered.contains("| latency | ms | 3.00 | 5.00 | 1.00 5.00 2.00 3.00 4.00 |"),
            "{rendered}"
        );
        assert!(
            rendered.contains("| rate | tasks/s | 800 | 100 | 900 1000 100 800 700 |"),
            "{rendered}"
        );
    }
}
