//! `make bench-scale` (second part): one control plane and a large fleet.
//! A load generator in this process opens TIDEWRIGHT_BENCH_FLEET (10,000) worker
//! streams through the real protocol (AgentService.Connect, 100 streams
//! per HTTP/2 connection), each one worker of 1 slot that finishes what it
//! is given at once; then the same total of slots as 10 workers. For each:
//! how long the fleet took to register, submit->assignment latency at a
//! steady 200 tasks/s, throughput of batched no-op tasks, the server's CPU
//! per dispatched step and its memory.
//!
//! The real release binary (scripts/bench.sh builds it) on SQLite.
//! TIDEWRIGHT_BENCH_FLEET_TASKS sets the batched tasks (50,000).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use tidewright_api::convert::now_micros;
use tidewright_api::v1;
use tidewright_api::v1::agent_service_client::AgentServiceClient;
use tidewright_tests::bench::*;
use tidewright_tests::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// What the fleet's steps need; only the generator's workers offer it.
const FLEET: &str = "bench-fleet";
/// Worker streams per HTTP/2 connection.
const STREAMS_PER_CONNECTION: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let large = env_number("TIDEWRIGHT_BENCH_FLEET", 10_000) as usize;
    let tasks = env_number("TIDEWRIGHT_BENCH_FLEET_TASKS", 50_000) as usize;
    let cores = cores();
    println!(
        "tidewright fleet benchmark: {cores} cores, release build, SQLite, simulated workers in one load-generator process, no-op single-step tasks"
    );
    let runs = runs();
    let mut table = Table::default();
    for run in 1..=runs {
        let small = fleet(10, (large / 10).max(1) as u32, tasks, &mut table).await?;
        let big = fleet(large, 1, tasks, &mut table).await?;
        let vs = format!("{large} workers against 10");
        table.add(
            &format!("{vs}: submit->assignment p99"),
            "x",
            Better::Lower,
            big.p99_ms / small.p99_ms,
        );
        table.add(
            &format!("{vs}: server CPU per step"),
            "x",
            Better::Lower,
            big.cpu_us_per_step / small.cpu_us_per_step,
        );
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-scale")));
    Ok(())
}

struct Figures {
    p99_ms: f64,
    cpu_us_per_step: f64,
}

async fn fleet(
    workers: usize,
    slots: u32,
    tasks: usize,
    table: &mut Table,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[])?;
    let pid = server.process.pid();
    let arrivals: Arrivals = Arc::default();
    let started = Instant::now();
    let mut channels = Vec::new();
    for _ in 0..workers.div_ceil(STREAMS_PER_CONNECTION) {
        channels.push(connect_with(&server.url, &server.client_tls).await?);
    }
    let mut running = tokio::task::JoinSet::new();
    for n in 0..workers {
        let client = AgentServiceClient::with_interceptor(
            channels[n / STREAMS_PER_CONNECTION].clone(),
            bearer(&server.worker_token),
        );
        running.spawn(simulated_worker(
            client,
            format!("fleet-{n}"),
            slots,
            arrivals.clone(),
        ));
    }
    let agents = server.agents().await?;
    eventually(Duration::from_secs(300), || {
        let mut agents = agents.clone();
        async move {
            let listed = agents
                .list_agents(v1::ListAgentsRequest::default())
                .await
                .ok()?
                .into_inner();
            (listed.agents.len() >= workers).then_some(())
        }
    })
    .await?;
    let registered = started.elapsed();
    let rss_registered = rss_mib(pid);
    let client = server.tasks().await?;

    // Latency: one task at a time, at a steady rate, from the submit to
    // its assignment arriving at a worker stream.
    submit_batches(&client, 200, fleet_task).await?;
    wait_all_finished(&client, Duration::from_secs(60)).await?;
    let count = 1_000;
    let submitted = submit_steadily(&client, count, Duration::from_millis(5), fleet_task).await?;
    wait_all_finished(&client, Duration::from_secs(60)).await?;
    let mut latency: Vec<i64> = {
        let arrived = arrivals.lock().expect("not poisoned");
        submitted
            .iter()
            .filter_map(|(id, at)| arrived.get(id).map(|came| came - at))
            .collect()
    };
    anyhow::ensure!(latency.len() == count, "every task reached a worker");
    latency.sort_unstable();

    // Throughput and CPU per step.
    let cpu = cpu_micros(pid)?;
    let started = Instant::now();
    let done = submit_batches(&client, tasks, fleet_task).await?;
    wait_all_finished(&client, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    let cpu_us_per_step = (cpu_micros(pid)? - cpu) as f64 / done as f64;
    let p99_ms = quantile_ms(&latency, 0.99);
    let rate = done as f64 / elapsed.as_secs_f64();
    let rss = rss_mib(pid);
    println!(
        "{workers} workers x {slots} slots: registered in {:.2} s (server RSS {rss_registered} MiB); submit->assignment at 200/s {}; {done} tasks batched at {rate:.0} tasks/s, server CPU {cpu_us_per_step:.0} us per step; server RSS {rss} MiB",
        registered.as_secs_f64(),
        percentiles(&latency),
    );
    let fleet = format!("{workers} workers x {slots} slots");
    let registered = registered.as_secs_f64();
    for (figure, unit, better, value) in [
        ("registered", "s", Better::Lower, registered),
        (
            "server RSS registered",
            "MiB",
            Better::Lower,
            rss_registered as f64,
        ),
        (
            "submit->assignment p50 at 200/s",
            "ms",
            Better::Lower,
            quantile_ms(&latency, 0.5),
        ),
        (
            "submit->assignment p99 at 200/s",
            "ms",
            Better::Lower,
            p99_ms,
        ),
        ("batched throughput", "tasks/s", Better::Higher, rate),
        ("server CPU per step", "us", Better::Lower, cpu_us_per_step),
        ("server RSS after", "MiB", Better::Lower, rss as f64),
    ] {
        table.add(&format!("{fleet}: {figure}"), unit, better, value);
    }
    running.abort_all();
    Ok(Figures {
        p99_ms,
        cpu_us_per_step,
    })
}

/// When each task's first assignment reached a worker stream (µs).
type Arrivals = Arc<Mutex<HashMap<String, i64>>>;

fn fleet_task(n: usize) -> v1::SubmitTaskRequest {
    one_step_task(&format!("fleet-{n}"), &[FLEET])
}

/// One worker on its own Connect stream: registers, asks for `slots`
/// steps, and answers each assignment with success at once (and asks for
/// one more), heartbeating as the server says.
async fn simulated_worker(
    mut client: Agents,
    name: String,
    slots: u32,
    arrivals: Arrivals,
) -> anyhow::Result<()> {
    use v1::server_message::Kind as In;
    use v1::worker_message::Kind as Out;
    let (out, stream) = mpsc::channel(64);
    let send = |kind: Out| {
        let out = out.clone();
        async move {
            out.send(v1::WorkerMessage { kind: Some(kind) })
                .await
                .map_err(|_| anyhow::anyhow!("stream closed"))
        }
    };
    send(Out::Register(v1::Register {
        name,
        capabilities: vec![FLEET.into()],
        slots,
        ..v1::Register::default()
    }))
    .await?;
    let mut inbox = client
        .connect(ReceiverStream::new(stream))
        .await?
        .into_inner();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            message = inbox.message() => {
                let Some(message) = message? else {
                    return Ok(());
                };
                match message.kind {
                    Some(In::Registered(registered)) => {
                        let every = Duration::from_millis(u64::from(registered.heartbeat_interval_ms.max(100)));
                        heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        send(Out::Credits(v1::Credits { credits: slots })).await?;
                    }
                    Some(In::Assignment(assignment)) => {
                        let now = now_micros();
                        let attempt = assignment.attempt.unwrap_or_default();
                        arrivals
                            .lock()
                            .expect("not poisoned")
                            .entry(attempt.task_id.clone())
                            .or_insert(now);
                        let at = tidewright_api::convert::timestamp(now);
                        send(Out::Result(v1::StepResult {
                            attempt: Some(attempt),
                            outcome: v1::Outcome::Succeeded as i32,
                            started_at: Some(at),
                            finished_at: Some(at),
                            ..v1::StepResult::default()
                        }))
                        .await?;
                        send(Out::Credits(v1::Credits { credits: 1 })).await?;
                    }
                    _ => {}
                }
            }
            _ = heartbeat.tick() => send(Out::Heartbeat(v1::Heartbeat {})).await?,
        }
    }
}

/// The process's user and system CPU time so far (µs), from /proc.
fn cpu_micros(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses; utime
    // and stime are the 14th and 15th of the whole line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("a short /proc/PID/stat")?.parse()?)
    };
    // USER_HZ is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) * 10_000)
}
