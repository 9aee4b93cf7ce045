//! `make bench-sandbox` (and the third part of `make bench`): what the
//! sandbox adds to a step's start. The real control plane (SQLite) and two
//! real workers of one slot each, one sandboxed (the default) and one
//! with `--sandbox=off`; shell steps running `true`, one at a time,
//! taking turns between the two workers so both see the same machine.
//! Each step's time is the control plane's, from its start (assigned to
//! the worker) to its end (the worker's result in): the workspace, the
//! process and its exit, either way. The sandbox's share is the
//! difference of the two p50s.
//!
//! Sizes: TIDEWRIGHT_BENCH_SANDBOX_STEPS (steps per worker and run, 200). Each
//! run (TIDEWRIGHT_BENCH_RUNS, 5) is on a new server and data directory; the
//! runs end in one table.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::bench::*;
use tidewright_tests::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    let steps = env_number("TIDEWRIGHT_BENCH_SANDBOX_STEPS", 200) as usize;
    println!(
        "tidewright sandbox benchmark: {} cores, release build, SQLite, {steps} shell steps (`true`) per worker and run, one at a time, a sandboxed worker and a --sandbox=off one taking turns",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        measure_once(&mut table, steps).await?;
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-sandbox")));
    Ok(())
}

/// A shell step running `true` that only the worker offering `on` takes.
fn true_task(n: usize, on: &str) -> v1::SubmitTaskRequest {
    let mut step = shell_step("true", &[], "true");
    step.needs = vec![on.to_string()];
    task(&format!("{on}-{n}"), vec![step])
}

async fn measure_once(table: &mut Table, steps: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let worker = |name: &str, extra: &[&str]| {
        start_strict_worker(
            &server.url,
            &server.data_dir,
            name,
            &["shell", name],
            1,
            extra,
            &server.worker_token,
            &[("RUST_LOG", "warn")],
        )
    };
    let _workers = [
        worker("boxed", &[])?,
        worker("loose", &["--sandbox", "off"])?,
    ];
    server.wait_for_agents(&["boxed", "loose"]).await?;
    let tasks = server.tasks().await?;

    let mut times: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    // A few of each first: the first steps pay for what later ones find
    // ready (pages of the binaries, the store's first writes).
    let warm_up = 10;
    for n in 0..steps + warm_up {
        for (i, on) in ["boxed", "loose"].into_iter().enumerate() {
            let id = submit(&tasks, true_task(n, on)).await?;
            let done = wait_finished(&tasks, &id, Duration::from_secs(60)).await?;
            anyhow::ensure!(
                done.state == v1::TaskState::Succeeded as i32,
                "a step on {on} did not succeed: {}",
                done.message
            );
            let step = step(&done, "true");
            if n >= warm_up {
                times[i].push(micros(&step.finished_at) - micros(&step.started_at));
            }
        }
    }
    for values in &mut times {
        values.sort_unstable();
    }
    let ms = |values: &[i64], q: f64| quantile_ms(values, q);
    let [boxed, loose] = &times;
    table.add(
        "shell step, sandboxed, p50",
        "ms",
        Better::Lower,
        ms(boxed, 0.50),
    );
    table.add(
        "shell step, sandboxed, p99",
        "ms",
        Better::Lower,
        ms(boxed, 0.99),
    );
    table.add(
        "shell step, --sandbox=off, p50",
        "ms",
        Better::Lower,
        ms(loose, 0.50),
    );
    table.add(
        "shell step, --sandbox=off, p99",
        "ms",
        Better::Lower,
        ms(loose, 0.99),
    );
    table.add(
        "added by the sandbox, p50",
        "ms",
        Better::Lower,
        ms(boxed, 0.50) - ms(loose, 0.50),
    );
    Ok(())
}
