//! `make bench-scale`: the control plane under a deep queue. A million
//! one-step tasks (TIDEWRIGHT_BENCH_QUEUED) are submitted in batches while no
//! worker has the capability they need; the server is killed (-9) and
//! restarted with them queued; then workers that can take them arrive.
//! Prints the submit rate, the server's memory with the queue full, before
//! and after the restart, how long the restart took to serve and to have
//! every task back in its queue, how fast the listing pages, and the
//! dispatch rate through the backlog next to the rate on an empty queue.
//!
//! The real release binary (scripts/bench.sh builds it) on SQLite, or on
//! PostgreSQL with TIDEWRIGHT_BENCH_STORE=postgres (a throwaway cluster, or
//! TIDEWRIGHT_BENCH_POSTGRES_URL), where the replica is restarted under its name
//! (`--replica-name`, as a pod is) and each run's database is dropped after
//! it. With TIDEWRIGHT_BENCH_SNAPSHOT=DIR, SQLite's data
//! directory as the kill -9 left it (the million queued) is copied to DIR,
//! to profile restarts on copies of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidewright_api::v1;
use tidewright_store_postgres::throwaway;
use tidewright_tests::bench::*;
use tidewright_tests::*;

/// The capability the queued tasks need, which no worker offers until
/// the backlog's workers arrive.
const LATER: &str = "bench-later";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let queued = env_number("TIDEWRIGHT_BENCH_QUEUED", 1_000_000) as usize;
    let cores = cores();
    println!(
        "tidewright scale benchmark: {cores} cores, release build, 2 worker processes x {SLOTS} slots, no-op single-step tasks"
    );
    let only = std::env::var("TIDEWRIGHT_BENCH_STORE").unwrap_or_default();
    let runs = runs();
    let mut table = Table::default();
    if only == "postgres" {
        let (url, _cluster) = match std::env::var("TIDEWRIGHT_BENCH_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => (url, None),
            _ => {
                let cluster = throwaway::Cluster::start_durable()?;
                (cluster.url("postgres"), Some(cluster))
            }
        };
        let database = throwaway::Server::at(url);
        println!("\n== store: PostgreSQL ==");
        for run in 1..=runs {
            let store = database.fresh_database().await?;
            // Restarted under its name, as a pod's container is: it takes
            // its own lease back at once instead of waiting it out.
            let flags = ["--store", store.as_str(), "--replica-name", "scale-0"];
            deep_queue(queued, &flags, &mut table).await?;
            database.drop_database(&store).await?;
            println!("run {run} of {runs} done");
        }
    } else {
        println!("\n== store: SQLite (WAL, synchronous=NORMAL) ==");
        for run in 1..=runs {
            deep_queue(queued, &[], &mut table).await?;
            println!("run {run} of {runs} done");
        }
    }
    println!("\n{}", table.render(&command("bench-scale")));
    Ok(())
}

fn waiting_task(n: usize) -> v1::SubmitTaskRequest {
    one_step_task(&format!("queued-{n}"), &[LATER])
}

async fn deep_queue(queued: usize, flags: &[&str], table: &mut Table) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", flags)?;

    // The rate on an empty queue, with the same workers, for comparison.
    let empty = (queued / 10).clamp(1_000, 100_000);
    let rate_empty = {
        let _workers = workers(&server)?;
        server.wait_for_agents(&["bench-1", "bench-2"]).await?;
        let client = server.tasks().await?;
        run_batch_load(&client, 2_000).await?;
        let (done, elapsed) = run_batch_load(&client, empty).await?;
        let rate = done as f64 / elapsed.as_secs_f64();
        println!("empty queue: {done} tasks submitted and completed at {rate:.0} tasks/s");
        rate
    };

    let client = server.tasks().await?;
    let started = Instant::now();
    let made = submit_batches(&client, queued, waiting_task).await?;
    let elapsed = started.elapsed();
    let submit_rate = made as f64 / elapsed.as_secs_f64();
    let queued_rss = rss_mib(server.process.pid());
    println!(
        "queued: {made} tasks no worker can take, submitted in {:.1} s = {submit_rate:.0} tasks/s; server RSS {queued_rss} MiB",
        elapsed.as_secs_f64(),
    );
    let (page_p99, counted) = page_through(&client).await?;
    let listed = Instant::now();
    let out = server
        .cli()
        .args(["get", "tasks", "--state", "queued"])
        .output()?;
    anyhow::ensure!(out.status.success(), "tidewright get tasks failed");
    let get_tasks = listed.elapsed().as_secs_f64() * 1000.0;
    println!("tidewright get tasks --state queued: {get_tasks:.0} ms");

    // kill -9, then a restart on the same store.
    let mut server = server;
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    drop(server);
    if let Ok(snapshot) = std::env::var("TIDEWRIGHT_BENCH_SNAPSHOT") {
        let copied = std::process::Command::new("cp")
            .args(["-a"])
            .arg(dir.path())
            .arg(&snapshot)
            .status()?;
        anyhow::ensure!(copied.success(), "copying the data directory to {snapshot}");
    }
    let restarted = Instant::now();
    let server = Server::start_on(dir.path(), "127.0.0.1:0", flags)?;
    server.wait_leading().await?;
    let serving = restarted.elapsed();
    let recovered = eventually(Duration::from_secs(600), || async {
        let log = std::fs::read_to_string(&server.process.log).ok()?;
        log.lines()
            .rev()
            .any(|l| l.contains("recovered the unfinished tasks"))
            .then(|| restarted.elapsed())
    })
    .await?;
    let recovered_rss = rss_mib(server.process.pid());
    println!(
        "restart after kill -9 with {made} queued: serving after {:.2} s, every task back in its queue after {:.2} s; server RSS {recovered_rss} MiB",
        serving.as_secs_f64(),
        recovered.as_secs_f64(),
    );

    // The workers arrive; the server's memory is sampled while they drain
    // the backlog.
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), server.process.pid());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let client = server.tasks().await?;
    let started = Instant::now();
    let _workers = workers(&server)?;
    wait_all_finished(&client, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let rate = made as f64 / elapsed.as_secs_f64();
    let (peak, after) = (peak.load(Ordering::Relaxed), rss_mib(server.process.pid()));
    println!(
        "backlog: workers arrived and ran all {made} in {:.1} s = {rate:.0} tasks/s ({:.2}x the empty queue's rate); server RSS at most {peak} MiB meanwhile, {after} MiB after",
        elapsed.as_secs_f64(),
        rate / rate_empty,
    );
    let queue = format!("{made} queued");
    for (figure, unit, better, value) in [
        (
            "empty queue: throughput",
            "tasks/s",
            Better::Higher,
            rate_empty,
        ),
        (
            &format!("{queue}: submitted") as &str,
            "tasks/s",
            Better::Higher,
            submit_rate,
        ),
        (
            &format!("{queue}: server RSS"),
            "MiB",
            Better::Lower,
            queued_rss as f64,
        ),
        (
            &format!("{queue}: ListTasks page p99"),
            "ms",
            Better::Lower,
            page_p99,
        ),
        (
            &format!("{queue}: CountTasks"),
            "ms",
            Better::Lower,
            counted,
        ),
        (
            &format!("{queue}: tidewright get tasks --state queued"),
            "ms",
            Better::Lower,
            get_tasks,
        ),
        (
            &format!("{queue}: restart to serving"),
            "s",
            Better::Lower,
            serving.as_secs_f64(),
        ),
        (
            &format!("{queue}: restart to every task queued"),
            "s",
            Better::Lower,
            recovered.as_secs_f64(),
        ),
        (
            &format!("{queue}: server RSS after the restart"),
            "MiB",
            Better::Lower,
            recovered_rss as f64,
        ),
        (
            &format!("{queue}: drained"),
            "tasks/s",
            Better::Higher,
            rate,
        ),
        (
            &format!("{queue}: drained against the empty queue"),
            "x",
            Better::Higher,
            rate / rate_empty,
        ),
        (
            &format!("{queue}: server RSS at most while draining"),
            "MiB",
            Better::Lower,
            peak as f64,
        ),
    ] {
        table.add(figure, unit, better, value);
    }
    Ok(())
}

/// Two worker processes that take plain steps and the queued ones.
fn workers(server: &Server) -> anyhow::Result<[Process; 2]> {
    Ok([
        server.worker("bench-1", &["shell", LATER], SLOTS)?,
        server.worker("bench-2", &["shell", LATER], SLOTS)?,
    ])
}
