//! `make bench-fair`: the fair share between tenants under a backlog. The
//! real control plane (SQLite, the release binary) holds tenant a's flood
//! of one-step no-op tasks (TIDEWRIGHT_BENCH_FLOOD, 200,000) that only a
//! `bench-fair` worker takes; two such workers of 8 slots arrive and drain
//! it; then tenant b submits TIDEWRIGHT_BENCH_FEW (100) tasks of the same
//! priority in one call. Prints b's submit→start times (its task's
//! created_at to its step's started_at, one machine, one clock) and each
//! tenant's share of the starts while both waited: the steps started, in
//! the fleet's order of events (WatchFleet), from b's first start to its
//! last. Before b submits, it counts a's starts over
//! TIDEWRIGHT_BENCH_WINDOW seconds (10) of the drain: the dispatch
//! throughput, which `TIDEWRIGHT_BIN` set to a build from before the fair
//! share compares against (with TIDEWRIGHT_BENCH_FEW=0, as such a build
//! would start b's tasks only after the flood).
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
    // Every step start from here on, in the fleet's order.
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
    let answer = client
        .clone()
        .submit_tasks(v1::SubmitTasksRequest {
            tasks: (0..few).map(|n| of("b", n)).collect(),
        })
        .await?
        .into_inner();
    let (a_queued, _) = counted(&client, "a").await?;
    anyhow::ensure!(
        a_queued > 0,
        "a's backlog drained before b's tasks all started: raise TIDEWRIGHT_BENCH_FLOOD"
    );
    let mut waits = Vec::with_capacity(few);
    for id in answer.tasks.iter().map(|t| t.task_id.clone()) {
        let task = wait_finished(&client, &id, Duration::from_secs(120)).await?;
        let created = task.created_at.as_ref().map(micros).unwrap_or_default();
        let start = step(&task, "noop")
            .started_at
            .as_ref()
            .map(micros)
            .unwrap_or_default();
        waits.push(start - created);
    }
    waits.sort_unstable();
    watching.abort();
    let starts = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    let bs: std::collections::HashSet<&str> =
        answer.tasks.iter().map(|t| t.task_id.as_str()).collect();
    let first = starts.iter().position(|id| bs.contains(id.as_str()));
    let last = starts.iter().rposition(|id| bs.contains(id.as_str()));
    let (Some(first), Some(last)) = (first, last) else {
        anyhow::bail!("b's starts were not seen on the fleet's stream");
    };
    let window = &starts[first..=last];
    let b_starts = window.iter().filter(|id| bs.contains(id.as_str())).count();
    let a_starts = (window.len() - b_starts) as f64;
    let share_b = 100.0 * b_starts as f64 / window.len() as f64;
    println!(
        "b's submit→start (ms): {}; starts while both waited: a {a_starts}, b {b_starts}",
        percentiles(&waits)
    );
    table.add(
        "b: submit→start p50",
        "ms",
        Better::Lower,
        quantile_ms(&waits, 0.50),
    );
    table.add(
        "b: submit→start p99",
        "ms",
        Better::Lower,
        quantile_ms(&waits, 0.99),
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
    Ok(())
}
