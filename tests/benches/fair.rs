//! `make bench-fair`: the fair share between tenants under a backlog. The
//! real control plane (SQLite, the release binary) holds tenant a's flood
//! of one-step no-op tasks (TIDEWRIGHT_BENCH_FLOOD, 200,000) that only a
//! `bench-fair` worker takes; two such workers of 8 slots arrive and drain
//! it. Before b submits, it counts a's starts over TIDEWRIGHT_BENCH_WINDOW
//! seconds (10) of the drain: the dispatch throughput, which
//! `TIDEWRIGHT_BIN` set to a build from before the fair share compares
//! against (with TIDEWRIGHT_BENCH_FEW=0, as such a build would start b's
//! tasks only after the flood).
//!
//! Then tenant b, of the same priority and weight, submits
//! TIDEWRIGHT_BENCH_FEW (100) tasks twice while a's backlog waits:
//! - in one call (a burst): b's submit→start times (its task's created_at
//!   to its step's started_at, one machine, one clock) and each tenant's
//!   share of the starts while both waited: the steps started, in the
//!   fleet's order of events (WatchFleet), from b's first start to its
//!   last. At equal shares b's last task cannot start before 2 x 100 - 1
//!   starts have gone by; the bench prints that least time at the drain's
//!   rate beside the p99.
//! - one call each, the next as soon as the last is answered (as a team's
//!   tasks arrive): b's submit→start times, which the backlog of a must
//!   not lengthen, and each call's round trip as the bench saw it: the
//!   call is answered in the engine's round that takes its task in, before
//!   any slot is free, so what it takes is the busy machine's, not the
//!   ready queue's.
//!
//! TIDEWRIGHT_BENCH_RUNS (1) runs, each on a new server.

use std::time::Duration;

use tidewright_api::convert::micros;
use tidewright_api::v1;
use tidewright_tests::bench::*;
use tidewright_tests::*;

/// The capability only the bench's workers offer.
const FAIR: &str = "bench-fair";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = env_number("TIDEWRIGHT_BENCH_RUNS", 1).max(1);
    let flood = env_number("TIDEWRIGHT_BENCH_FLOOD", 200_000) as usize;
    let few = env_number("TIDEWRIGHT_BENCH_FEW", 100) as usize;
    let window = Duration::from_secs(env_number("TIDEWRIGHT_BENCH_WINDOW", 10));
    println!(
        "tidewright fair-share benchmark: {} cores, release build, SQLite, 2 workers x 8 slots, no-op one-step tasks; tenant a floods {flood}, then tenant b submits {few}, equal weights",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        measure_once(&mut table, (flood, few), window).await?;
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-fair")));
    Ok(())
}

/// A's `n`th task, or b's.
fn of(tenant: &str, n: usize) -> v1::SubmitTaskRequest {
    let mut request = one_step_task(&format!("{tenant}-{n}"), &[FAIR]);
    request.tenant = tenant.to_string();
    request
}

/// The tenant's tasks in each state.
async fn counted(client: &Tasks, tenant: &str) -> anyhow::Result<(u64, u64)> {
    let counts = client
        .clone()
        .count_tasks(v1::CountTasksRequest {
            tenants: vec![tenant.to_string()],
        })
        .await?
        .into_inner()
        .counts;
    let of = |state: v1::TaskState| {
        counts
            .iter()
            .filter(|c| c.state == state as i32)
            .map(|c| c.tasks)
            .sum::<u64>()
    };
    Ok((
        of(v1::TaskState::Queued),
        of(v1::TaskState::Running) + of(v1::TaskState::Succeeded),
    ))
}

async fn measure_once(
    table: &mut Table,
    (flood, few): (usize, usize),
    window: Duration,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[])?;
    let client = server.tasks().await?;
    submit_batches(&client, flood, |n| of("a", n)).await?;
    let _workers = [
        server.worker("fair-1", &[FAIR], 8)?,
        server.worker("fair-2", &[FAIR], 8)?,
    ];
    // A worker that cannot start (no bubblewrap) says so here, not as a
    // drain that never began.
    server.wait_for_agents(&["fair-1", "fair-2"]).await?;
    // Draining: a's backlog is what b's tasks meet.
    eventually(Duration::from_secs(120), || async {
        let (_, started) = counted(&client, "a").await.ok()?;
        (started >= 1000).then_some(())
    })
    .await?;
    // The dispatch throughput: a's starts over a fixed window of the
    // drain, the window itself what is measured.
    let (_, before) = counted(&client, "a").await?;
    let from = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let (_, after) = counted(&client, "a").await?;
    let rate = (after - before) as f64 / from.elapsed().as_secs_f64();
    println!("dispatch throughput while a drains: {rate:.0} steps started/s");
    table.add(
        "dispatch throughput while a drains",
        "steps/s",
        Better::Higher,
        rate,
    );
    if few == 0 {
        return Ok(());
    }
    let (waits, share_b) = burst(&client, few).await?;
    // Had b's tasks taken every other start at the drain's rate, its last
    // would have started after 2 x `few` - 1 starts: the least that a
    // burst's p99 can be at equal weights, whatever the scheduler.
    let bound = (2 * few - 1) as f64 / rate * 1000.0;
    println!(
        "b, {few} in one call: submit→start {}; b's share of starts while both waited {share_b:.1}%; its last start at equal shares cannot come before {bound:.2} ms at {rate:.0} starts/s",
        percentiles(&waits)
    );
    let (arrived, calls) = arrivals(&client, few).await?;
    println!(
        "b, {few} one call each: submit→start {}; the SubmitTask call's round trip {}",
        percentiles(&arrived),
        percentiles(&calls)
    );
    let (a_queued, _) = counted(&client, "a").await?;
    anyhow::ensure!(
        a_queued > 0,
        "a's backlog drained before b's tasks all started: raise TIDEWRIGHT_BENCH_FLOOD"
    );
    table.add_latencies(&format!("b, {few} in one call: submit→start"), &waits);
    table.add(
        &format!("b, {few} in one call: least p99 at equal shares"),
        "ms",
        Better::Lower,
        bound,
    );
    table.add(
        "b's share of starts while both waited",
        "%",
        Better::Higher,
        share_b,
    );
    table.add(
        "a's share of starts while both waited",
        "%",
        Better::Lower,
        100.0 - share_b,
    );
    table.add_latencies(&format!("b, {few} one call each: submit→start"), &arrived);
    table.add_latencies(
        &format!("b, {few} one call each: SubmitTask round trip"),
        &calls,
    );
    Ok(())
}

/// B's `few` tasks in one SubmitTasks call, while a's backlog waits: each
/// one's submit→start, sorted, and b's share (%) of the steps started
/// from its first start to its last, in the fleet's order of events.
async fn burst(client: &Tasks, few: usize) -> anyhow::Result<(Vec<i64>, f64)> {
    let mut watch = client
        .clone()
        .watch_fleet(v1::WatchFleetRequest::default())
        .await?
        .into_inner();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    let watching = tokio::spawn(async move {
        while let Ok(Some(event)) = watch.message().await {
            if let Some(v1::event::Kind::StepState(s)) = &event.kind
                && s.state == v1::StepState::Running as i32
            {
                into.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(event.task_id);
            }
        }
    });
    let ids: Vec<String> = client
        .clone()
        .submit_tasks(v1::SubmitTasksRequest {
            tasks: (0..few).map(|n| of("b", n)).collect(),
        })
        .await?
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    let waits = submit_to_start(client, &ids).await?;
    watching.abort();
    let starts = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let bs: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let first = starts.iter().position(|id| bs.contains(id.as_str()));
    let last = starts.iter().rposition(|id| bs.contains(id.as_str()));
    let (Some(first), Some(last)) = (first, last) else {
        anyhow::bail!("b's starts were not seen on the fleet's stream");
    };
    let window = &starts[first..=last];
    let b_starts = window.iter().filter(|id| bs.contains(id.as_str())).count();
    Ok((waits, 100.0 * b_starts as f64 / window.len() as f64))
}

/// B's `few` tasks as a team's tasks arrive: one SubmitTask call each, the
/// next sent as soon as the last is answered, while a's backlog waits.
/// Each one's submit→start, and each SubmitTask call's round trip as the
/// bench saw it, both sorted.
async fn arrivals(client: &Tasks, few: usize) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let mut ids = Vec::with_capacity(few);
    let mut calls = Vec::with_capacity(few);
    for n in 0..few {
        let sent = std::time::Instant::now();
        let answer = client
            .clone()
            .submit_task(of("b", few + n))
            .await?
            .into_inner();
        calls.push(sent.elapsed().as_micros() as i64);
        ids.push(answer.task_id);
    }
    calls.sort_unstable();
    Ok((submit_to_start(client, &ids).await?, calls))
}

/// Each task's submit→start in microseconds (its created_at to its step's
/// started_at, both stamped by the one server), sorted.
async fn submit_to_start(client: &Tasks, ids: &[String]) -> anyhow::Result<Vec<i64>> {
    let mut waits = Vec::with_capacity(ids.len());
    for id in ids {
        let task = wait_finished(client, id, Duration::from_secs(120)).await?;
        let created = task.created_at.as_ref().map(micros).unwrap_or_default();
        let start = step(&task, "noop")
            .started_at
            .as_ref()
            .map(micros)
            .unwrap_or_default();
        waits.push(start - created);
    }
    waits.sort_unstable();
    Ok(waits)
}
