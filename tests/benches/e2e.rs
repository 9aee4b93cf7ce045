//! `make bench`: the real control plane and two real worker processes over
//! loopback, no-op steps, on each store in turn (SQLite, then PostgreSQL).
//! Prints the binary's cold start and a 10,000-step DAG, then, per store,
//! submit->start latency at a steady 200 tasks/s and end-to-end throughput
//! (submit to completion) with SubmitTasks batches, with unary SubmitTask
//! calls 64 in flight, and with one call at a time; and the bytes the
//! store keeps per finished task.
//!
//! Run through scripts/bench.sh, which builds the release binary first.
//! On PostgreSQL it then kills the leader of two replicas with a backlog of
//! queued steps, and times the standby's takeover; and kills a replica
//! that leads alone, starts it again under its name, and times it until a
//! submit is accepted.
//!
//! TIDEWRIGHT_BENCH_STORE=sqlite or postgres runs one store only; PostgreSQL is a
//! throwaway cluster that syncs its commits as a production server does,
//! or TIDEWRIGHT_BENCH_POSTGRES_URL. Sizes: TIDEWRIGHT_BENCH_TASKS (batched),
//! TIDEWRIGHT_BENCH_UNARY_TASKS (a quarter of it one at a time, unless
//! TIDEWRIGHT_BENCH_SEQUENTIAL_TASKS says how many: a profile of that phase
//! alone sets the others small),
//! TIDEWRIGHT_BENCH_SECONDS, TIDEWRIGHT_BENCH_BACKLOG (queued steps at the failover)
//! and TIDEWRIGHT_BENCH_FANOUT (the DAG's steps). TIDEWRIGHT_BENCH_STORE=none runs
//! the first two only. Each store's measurements run TIDEWRIGHT_BENCH_RUNS times
//! (5), each on a new server and store, and end in one table of p50 and p99
//! over the runs.

use std::time::{Duration, Instant};

use anyhow::Context;
use tidewright_api::v1;
use tidewright_store_postgres::throwaway;
use tidewright_tests::bench::*;
use tidewright_tests::*;

const UNARY_IN_FLIGHT: usize = 64;
const STEADY_RATE: u64 = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; nothing here takes arguments.
    let only = std::env::var("TIDEWRIGHT_BENCH_STORE").unwrap_or_default();
    let cores = cores();
    println!(
        "tidewright end-to-end benchmark: {cores} cores, release build, 2 worker processes x {SLOTS} slots, no-op single-step tasks"
    );
    cold_start().await?;
    fan_out().await?;
    if only.is_empty() || only == "sqlite" {
        println!("\n== store: SQLite (WAL, synchronous=NORMAL) ==");
        run_store(None).await?;
    }
    if only.is_empty() || only == "postgres" {
        let (url, label, _cluster) = match std::env::var("TIDEWRIGHT_BENCH_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => (url, "TIDEWRIGHT_BENCH_POSTGRES_URL".to_string(), None),
            _ => {
                let cluster = throwaway::Cluster::start_durable()?;
                let url = cluster.url("postgres");
                let label =
                    "a throwaway cluster on the same cores, fsync and synchronous_commit on"
                        .to_string();
                (url, label, Some(cluster))
            }
        };
        println!("\n== store: PostgreSQL ({label}) ==");
        run_store(Some(&throwaway::Server::at(url.clone()))).await?;
        failover_with_backlog(&url).await?;
        restart_under_its_name(&url).await?;
    }
    Ok(())
}

/// The runs on SQLite (None), or on PostgreSQL, each run on a new database
/// of that server, as each SQLite run is on a new data directory.
async fn run_store(postgres: Option<&throwaway::Server>) -> anyhow::Result<()> {
    let runs = runs();
    let mut table = Table::default();
    for run in 1..=runs {
        let last = run == runs;
        let store = match postgres {
            Some(server) => Some(server.fresh_database().await?),
            None => None,
        };
        let flags = match &store {
            Some(url) => vec!["--store", url.as_str()],
            None => vec![],
        };
        measure_once(&flags, &mut table, last).await?;
        if let (Some(server), Some(url)) = (postgres, &store) {
            server.drop_database(url).await?;
        }
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench")));
    Ok(())
}

/// The bytes the store's tables and indexes take, and the tasks it holds:
/// on SQLite the pages in use (free pages not counted), on PostgreSQL the
/// tables with their indexes and TOAST.
async fn stored(flags: &[&str], data_dir: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    if let Some(at) = flags.iter().position(|f| *f == "--store") {
        let url = flags.get(at + 1).context("--store without a URL")?;
        let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let row = db
            .query_one(
                "SELECT (SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = current_schema() AND c.relkind = 'r'),
                        (SELECT count(*) FROM tasks)",
                &[],
            )
            .await?;
        return Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64));
    }
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join("tidewright.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let pragma = |name: &str| -> anyhow::Result<u64> {
        Ok(db.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))? as u64)
    };
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    let bytes = pages * pragma("page_size")?;
    let tasks: i64 = db.query_row("SELECT count(*) FROM tasks", [], |row| row.get(0))?;
    Ok((bytes, tasks as u64))
}

/// One run on a new control plane and data directory: submit->start at a
/// steady rate, then the throughput of each way to submit; the last run
/// also pages through everything it stored.
async fn measure_once(flags: &[&str], table: &mut Table, last: bool) -> anyhow::Result<()> {
    let total = env_number("TIDEWRIGHT_BENCH_TASKS", 50_000) as usize;
    let unary = env_number("TIDEWRIGHT_BENCH_UNARY_TASKS", 20_000) as usize;
    let seconds = env_number("TIDEWRIGHT_BENCH_SECONDS", 10);

    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", flags)?;
    let workers = vec![
        server.worker("bench-1", &["shell"], SLOTS)?,
        server.worker("bench-2", &["shell"], SLOTS)?,
    ];
    server.wait_for_agents(&["bench-1", "bench-2"]).await?;
    let client = server.tasks().await?;

    // Latency first, on a quiet control plane: a burst leaves SQLite folding
    // its write-ahead log into the database for a few seconds after. A small
    // warm-up opens connections and prepares statements.
    run_batch_load(&client, 200).await?;
    let latency = steady_latency(&client, seconds).await?;
    let at = format!("at {STEADY_RATE}/s");
    for (what, samples) in [
        ("submit->start", &latency.total),
        ("of which client->server accepted", &latency.to_server),
        (
            "and server accepted->worker started",
            &latency.in_tidewright,
        ),
    ] {
        for (q, name) in [(0.50, "p50"), (0.99, "p99")] {
            let figure = format!("{what} {name} {at}");
            table.add(&figure, "ms", Better::Lower, quantile_ms(samples, q));
        }
    }

    // Warm-up: connections, prepared statements, page cache.
    run_batch_load(&client, 2_000).await?;

    let rate = |(done, elapsed): (usize, Duration)| done as f64 / elapsed.as_secs_f64();
    let batched = rate(run_batch_load(&client, total).await?);
    table.add(
        &format!(
            "throughput, batched ({total} tasks, SubmitTasks of {BATCH}, {IN_FLIGHT} in flight)"
        ),
        "tasks/s",
        Better::Higher,
        batched,
    );
    let unary_rate = rate(run_unary_load(&client, unary, UNARY_IN_FLIGHT).await?);
    table.add(
        &format!("throughput, unary ({unary} tasks, SubmitTask, {UNARY_IN_FLIGHT} in flight)"),
        "tasks/s",
        Better::Higher,
        unary_rate,
    );
    // The same callers through the client library's producer: their
    // submits coalesce into SubmitTasks batches.
    let produced = rate(run_producer_load(&server, &client, unary, UNARY_IN_FLIGHT).await?);
    table.add(
        &format!(
            "throughput, producer ({unary} tasks, tidewright_client::Producer::submit from {UNARY_IN_FLIGHT} tasks)"
        ),
        "tasks/s",
        Better::Higher,
        produced,
    );
    // One client, one call at a time: every submit's whole path, in turn.
    let sequential = env_number(
        "TIDEWRIGHT_BENCH_SEQUENTIAL_TASKS",
        (unary / 4).max(1) as u64,
    ) as usize;
    let switches = context_switches(server.process.pid())?;
    let one_at_a_time = rate(run_unary_load(&client, sequential, 1).await?);
    // A thread that ended meanwhile (an idle blocking-pool thread) takes
    // its count with it: never a negative figure.
    let switches = context_switches(server.process.pid())?.saturating_sub(switches);
    table.add(
        &format!("throughput, one call at a time ({sequential} tasks)"),
        "tasks/s",
        Better::Higher,
        one_at_a_time,
    );
    // Each hand-off between the control plane's threads is a switch: what
    // a submit's path costs in them, running the task included.
    table.add(
        "context switches of the control plane per task, one call at a time",
        "switches",
        Better::Lower,
        switches as f64 / sequential as f64,
    );
    // The floor under it: the same client's round trip with a call that
    // does nothing (the gRPC health check).
    let floor = rate(health_checks(&server, sequential).await?);
    table.add(
        &format!("one call at a time, the floor: gRPC health checks ({sequential} calls)"),
        "calls/s",
        Better::Higher,
        floor,
    );
    println!(
        "submit->start p99 {:.2} ms; batched {batched:.0}, unary {unary_rate:.0}, one at a time {one_at_a_time:.0} tasks/s",
        quantile_ms(&latency.total, 0.99)
    );
    python_rates(&server, sequential, table)?;

    // What the store keeps of a finished task, once every task has ended:
    // the bytes its tables and indexes take, over the tasks stored.
    wait_all_finished(&client, Duration::from_secs(120)).await?;
    let (bytes, tasks) = stored(flags, dir.path()).await?;
    table.add(
        &format!("bytes stored per finished one-step task ({tasks} tasks)"),
        "B",
        Better::Lower,
        bytes as f64 / tasks.max(1) as f64,
    );

    if last {
        page_through(&client).await?;
    }
    drop(workers);
    Ok(())
}

/// One task of TIDEWRIGHT_BENCH_FANOUT steps (10,000), 1 -> n-2 -> 1, on SQLite
/// and the two workers: how long it takes to run, and how usable it is
/// afterwards: `tidewright get task` on it, and replaying its events.
async fn fan_out() -> anyhow::Result<()> {
    let steps = env_number("TIDEWRIGHT_BENCH_FANOUT", 10_000).max(3) as usize;
    let dir = tempfile::tempdir()?;
    let limit = steps.to_string();
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &["--max-steps", &limit])?;
    let _workers = [
        server.worker("bench-1", &["shell"], SLOTS)?,
        server.worker("bench-2", &["shell"], SLOTS)?,
    ];
    server.wait_for_agents(&["bench-1", "bench-2"]).await?;
    let client = server.tasks().await?;
    let middle: Vec<String> = (1..steps - 1).map(|n| format!("m{n}")).collect();
    let mut spec = vec![noop_step("split")];
    spec.extend(middle.iter().map(|id| v1::StepSpec {
        depends_on: vec!["split".into()],
        ..noop_step(id)
    }));
    spec.push(v1::StepSpec {
        depends_on: middle,
        ..noop_step("join")
    });
    let started = Instant::now();
    let id = submit(&client, task("fan-out", spec)).await?;
    let submitted = started.elapsed();
    wait_succeeded(&client, &id, Duration::from_secs(600)).await?;
    let ran = started.elapsed();
    let shown = Instant::now();
    let out = server
        .cli()
        .args(["get", "task", &id, "-o", "json"])
        .output()?;
    anyhow::ensure!(out.status.success(), "tidewright get task failed");
    let shown = shown.elapsed();
    let replayed = Instant::now();
    let mut stream = client
        .clone()
        .watch_task(v1::WatchTaskRequest {
            task_id: id.clone(),
            after_seq: 0,
            follow: false,
        })
        .await?
        .into_inner();
    let mut events = 0;
    while stream.message().await?.is_some() {
        events += 1;
    }
    println!(
        "fan-out: one task of {steps} steps (1 -> {} -> 1) submitted in {:.2} s, ran in {:.2} s; tidewright get task -o json {:.2} s ({} KiB); its {events} events replayed in {:.2} s; server RSS {} MiB",
        steps - 2,
        submitted.as_secs_f64(),
        ran.as_secs_f64(),
        shown.as_secs_f64(),
        out.stdout.len() / 1024,
        replayed.elapsed().as_secs_f64(),
        rss_mib(server.process.pid()),
    );
    Ok(())
}

/// How long `tidewright server` takes from its spawn to the first request it
/// serves (a ListTasks), five times on a new data directory (a first start:
/// tokens, keys and the database made) and five times on the same one (a
/// restart); and how large the binary is (what `make dist` ships, when
/// TIDEWRIGHT_BIN points there).
async fn cold_start() -> anyhow::Result<()> {
    const RUNS: usize = 5;
    let bin = tidewright_bin();
    let mib = std::fs::metadata(&bin)?.len() as f64 / 1048576.0;
    let dir = tempfile::tempdir()?;
    let mut first = Vec::with_capacity(RUNS);
    let mut again = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let data = dir.path().join(format!("run-{run}"));
        for times in [&mut first, &mut again] {
            let started = Instant::now();
            let server = Server::start_on(&data, "127.0.0.1:0", &[])?;
            server.wait_leading().await?;
            times.push(started.elapsed().as_micros() as i64);
            drop(server);
        }
    }
    first.sort_unstable();
    again.sort_unstable();
    println!(
        "cold start of {} ({mib:.1} MiB), spawn to the first request served, {RUNS} runs each: first start {}; restart {}",
        bin.display(),
        percentiles(&first),
        percentiles(&again)
    );
    Ok(())
}

/// Two replicas on a fresh database; the leader gets a backlog of queued
/// one-step tasks no worker can take, and is killed: how long until the
/// standby leads and takes a submit, and how large it is then.
async fn failover_with_backlog(url: &str) -> anyhow::Result<()> {
    let backlog = env_number("TIDEWRIGHT_BENCH_BACKLOG", 100_000) as usize;
    let database = throwaway::Server::at(url.to_string());
    let store = database.fresh_database().await?;
    let dir = tempfile::tempdir()?;
    let replica = |name: &str, http: &str| {
        Server::start_on(
            dir.path(),
            "127.0.0.1:0",
            &[
                "--store",
                &store,
                "--replica-name",
                name,
                "--http-listen",
                http,
            ],
        )
    };
    let (http_a, http_b) = (free_addr(), free_addr());
    let mut leader = replica("a", &http_a)?;
    leader.wait_leading().await?;
    let standby = replica("b", &http_b)?;
    let client = leader.tasks().await?;
    let started = Instant::now();
    submit_batches(&client, backlog, |n| {
        one_step_task(&format!("backlog-{n}"), &["bench-nobody"])
    })
    .await?;
    let queued_in = started.elapsed();
    let leader_rss = rss_mib(leader.process.pid());
    eventually(Duration::from_secs(30), || async {
        let (code, body) = http_get(&http_b, "/readyz", None).ok()?;
        (code == 503 && body.starts_with("standby")).then_some(())
    })
    .await?;
    leader.process.signal("KILL");
    leader.process.wait_exit(Duration::from_secs(10))?;
    let killed = Instant::now();
    eventually(Duration::from_secs(300), || async {
        let (code, _) = http_get(&http_b, "/readyz", None).ok()?;
        (code == 200).then_some(())
    })
    .await?;
    let led = killed.elapsed();
    let client = standby.tasks().await?;
    submit(&client, noop_task(backlog)).await?;
    let accepted = killed.elapsed();
    println!(
        "failover with {backlog} queued steps (queued in {:.1} s; leader RSS {leader_rss} MiB): the standby led {:.2} s after the kill -9 (lease 4 s), took a submit at {:.2} s; its RSS then {} MiB",
        queued_in.as_secs_f64(),
        led.as_secs_f64(),
        accepted.as_secs_f64(),
        rss_mib(standby.process.pid()),
    );
    // Both replicas log to one file; the standby's recovery is the last.
    let log_field = |marker: &'static str, name: &'static str| {
        let log = std::fs::read_to_string(&standby.process.log).ok()?;
        let line = log.lines().rev().find(|l| l.contains(marker))?;
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    let listed = log_field("recovering the unfinished tasks", "listed_ms=");
    let loaded = eventually(Duration::from_secs(300), || async {
        log_field("recovered the unfinished tasks", "loaded_ms=")
    })
    .await?;
    println!(
        "  it listed the unfinished tasks in {} ms and served; all of them were back in its queues {loaded} ms later, its RSS then {} MiB",
        listed.as_deref().unwrap_or("?"),
        rss_mib(standby.process.pid()),
    );
    Ok(())
}

/// A replica that leads alone, killed (its lease never released) and
/// started again under its name, three times: how long from the new
/// process's spawn until it accepts a submit.
async fn restart_under_its_name(url: &str) -> anyhow::Result<()> {
    let database = throwaway::Server::at(url.to_string());
    let store = database.fresh_database().await?;
    let dir = tempfile::tempdir()?;
    let flags = ["--store", store.as_str(), "--replica-name", "cp-0"];
    let mut server = Server::start_on(dir.path(), "127.0.0.1:0", &flags)?;
    server.wait_leading().await?;
    let listen = server.listen_addr();
    let mut accepted = Vec::new();
    for n in 0..3 {
        server.process.signal("KILL");
        server.process.wait_exit(Duration::from_secs(10))?;
        let spawned = Instant::now();
        server = Server::start_on(dir.path(), &listen, &flags)?;
        eventually(Duration::from_secs(60), || async {
            let client = server.tasks().await.ok()?;
            submit(&client, noop_task(n)).await.ok()
        })
        .await?;
        accepted.push(format!("{:.2}", spawned.elapsed().as_secs_f64()));
    }
    println!(
        "a replica killed and started again under its name (lease 4 s): a submit accepted {} s after its start",
        accepted.join(", ")
    );
    Ok(())
}

/// Submits `total` tasks one SubmitTask at a time from UNARY_IN_FLIGHT
/// concurrent callers and waits until all have finished.
async fn run_unary_load(
    client: &Tasks,
    total: usize,
    in_flight: usize,
) -> anyhow::Result<(usize, Duration)> {
    let start = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let mut client = client.clone();
        let next = next.clone();
        callers.spawn(async move {
            let mut done = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(done);
                }
                client.submit_task(noop_task(n)).await?;
                done += 1;
            }
        });
    }
    let mut done = 0;
    while let Some(result) = callers.join_next().await {
        done += result.context("a caller")??;
    }
    wait_all_finished(client, Duration::from_secs(600)).await?;
    Ok((done, start.elapsed()))
}

/// `total` tasks submitted by `callers` tasks of one program, each in a
/// loop, through one `tidewright_client` producer; until all have run.
async fn run_producer_load(
    server: &Server,
    tasks: &Tasks,
    total: usize,
    callers: usize,
) -> anyhow::Result<(usize, Duration)> {
    let client = tidewright_client::Client::connect(tidewright_client::Settings::new(
        &server.url,
        Some(server.admin_token.clone()),
    ))
    .await?;
    let producer = client.producer(tidewright_client::Batching::default())?;
    let start = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let producer = producer.clone();
        let next = next.clone();
        running.spawn(async move {
            let mut done = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                producer
                    .submit(noop_task(done).spec.unwrap_or_default())
                    .await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut done = 0;
    while let Some(result) = running.join_next().await {
        done += result.context("a caller")??;
    }
    wait_all_finished(tasks, Duration::from_secs(600)).await?;
    Ok((done, start.elapsed()))
}

/// The Python client's rates on this control plane, when TIDEWRIGHT_BENCH_PYTHON
/// names a Python with tidewright_client installed (scripts/bench.sh makes one):
/// one call at a time beside its floor, blocking and asyncio, and many
/// concurrent submits through its producers against batches made by hand
/// (clients/python/bench/submit_rates.py; TIDEWRIGHT_BENCH_PYTHON_TASKS each).
fn python_rates(server: &Server, one_at_a_time: usize, table: &mut Table) -> anyhow::Result<()> {
    let Some(python) = std::env::var_os("TIDEWRIGHT_BENCH_PYTHON").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../clients/python/bench/submit_rates.py");
    let concurrent = env_number("TIDEWRIGHT_BENCH_PYTHON_TASKS", 20_000).to_string();
    // The token goes by the environment: never in argv.
    let out = std::process::Command::new(python)
        .arg(&script)
        .args([server.url.as_str(), &one_at_a_time.to_string(), &concurrent])
        .env("TIDEWRIGHT_TOKEN", &server.admin_token)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the Python client's bench")?;
    anyhow::ensure!(out.status.success(), "{} failed", script.display());
    let figures: Vec<(String, f64, String)> =
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
    for (figure, rate, unit) in figures {
        let unit: &'static str = match unit.as_str() {
            "calls/s" => "calls/s",
            _ => "tasks/s",
        };
        table.add(&figure, unit, Better::Higher, rate);
    }
    Ok(())
}

/// `calls` health checks from one client, one at a time.
async fn health_checks(server: &Server, calls: usize) -> anyhow::Result<(usize, Duration)> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut health = HealthClient::new(connect_with(&server.url, &server.client_tls).await?);
    let start = Instant::now();
    for _ in 0..calls {
        health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
    }
    Ok((calls, start.elapsed()))
}

/// Microsecond samples, sorted.
struct Latency {
    total: Vec<i64>,
    to_server: Vec<i64>,
    in_tidewright: Vec<i64>,
}

/// One SubmitTask every 1/STEADY_RATE s; latency is the worker's start time
/// minus the moment the client sent the submit (one machine, one clock),
/// split at the moment the server accepted the task (its `created_at`).
async fn steady_latency(client: &Tasks, seconds: u64) -> anyhow::Result<Latency> {
    let count = (STEADY_RATE * seconds) as usize;
    let every = Duration::from_micros(1_000_000 / STEADY_RATE);
    let submitted = submit_steadily(client, count, every, noop_task).await?;
    let mut latency = Latency {
        total: Vec::with_capacity(count),
        to_server: Vec::with_capacity(count),
        in_tidewright: Vec::with_capacity(count),
    };
    for (id, at) in submitted {
        let task = wait_finished(client, &id, Duration::from_secs(60)).await?;
        let started = micros(&task.steps[0].started_at);
        let accepted = micros(&task.created_at);
        latency.total.push(started - at);
        latency.to_server.push(accepted - at);
        latency.in_tidewright.push(started - accepted);
    }
    for samples in [
        &mut latency.total,
        &mut latency.to_server,
        &mut latency.in_tidewright,
    ] {
        samples.sort_unstable();
    }
    Ok(latency)
}
