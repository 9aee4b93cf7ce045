//! `make bench-seeds`: how long until a step's workspace can run a
//! project's tests, and what each extra workspace costs on disk, for three
//! real projects whose dependencies come from the public registries:
//!
//! - npm: jest, eslint, webpack, webpack-dev-server, typescript and
//!   Babel's preset-env (over 500 packages), set up by `npm ci`;
//! - Python: fourteen common libraries (over 50 packages), set up by
//!   `pip install --target deps`;
//! - Rust: tokio, axum, clap, serde, regex and others (over 100 crates),
//!   set up by `cargo vendor`.
//!
//! For each, the time to a ready workspace three ways:
//! - **cold**: the install with an empty cache, once;
//! - **warm**: the ecosystem's warm path (npm's and pip's caches, cargo's
//!   registry), TIDEWRIGHT_BENCH_RUNS times (5) in fresh checkouts;
//! - **from the seed**: what a worker does for each step after the first
//!   (`tidewright_worker::seeds`: the seed kept once, then put into each
//!   fresh checkout: laid over it, as a sandboxed worker does, where the
//!   machine mounts overlays, else copied), until a first process in the
//!   step's sandbox (the sandbox's helper, then bubblewrap) lists the
//!   seed's directory, as many times; and, in turn with each, copied (as
//!   a worker that cannot mount overlays does), for an A/B of the two.
//!
//! Then the disk of the install against the disk each extra workspace
//! takes from the seed (allocated blocks, `du`, of its copy or of its
//! overlay's layers), and 16 steps at once on one key taking the seed the
//! way a worker's steps do (one makes it, the others wait for its lock):
//! how many ran the install, and the wall time.
//!
//! The machine needs the registries (registry.npmjs.org, pypi.org,
//! crates.io) and npm, pip and cargo on its PATH.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use tidewright_tests::bench::*;
use tidewright_worker::sandbox::overlay::Overlay;
use tidewright_worker::seeds::{Seed, Seeds};

/// One ecosystem's project and how it installs.
struct Project {
    name: &'static str,
    files: Vec<(&'static str, &'static str)>,
    /// Makes the lockfile, once, before anything is timed.
    lock: &'static [&'static str],
    /// The install, given the cache directory.
    install: fn(&Path) -> Command,
    /// What the install makes: the seed's paths.
    path: &'static str,
    /// How many packages the install put there.
    count: fn(&Path) -> usize,
}

fn npm() -> Project {
    Project {
        name: "npm",
        files: vec![(
            "package.json",
            r#"{"name": "bench", "version": "1.0.0", "private": true,
  "devDependencies": {"jest": "29.7.0", "eslint": "8.57.0", "webpack": "5.94.0", "typescript": "5.5.4", "@babel/preset-env": "7.25.4", "webpack-dev-server": "5.0.4"}}"#,
        )],
        lock: &[
            "npm",
            "install",
            "--package-lock-only",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
        ],
        install: |cache| {
            let mut command = Command::new("npm");
            command
                .args([
                    "ci",
                    "--no-audit",
                    "--no-fund",
                    "--ignore-scripts",
                    "--prefer-offline",
                ])
                .arg("--cache")
                .arg(cache);
            command
        },
        path: "node_modules",
        count: |dir| {
            std::fs::read_to_string(dir.join("package-lock.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|l| l["packages"].as_object().map(|p| p.len().saturating_sub(1)))
                .unwrap_or(0)
        },
    }
}

fn python() -> Project {
    Project {
        name: "python",
        files: vec![(
            "requirements.txt",
            "sphinx==7.4.7\nflask==3.0.3\nrequests==2.32.3\npandas==2.2.2\npytest==8.3.2\nblack==24.8.0\nboto3==1.35.0\nsqlalchemy==2.0.32\nalembic==1.13.2\ncelery==5.4.0\npydantic==2.8.2\nhttpx==0.27.0\nrich==13.7.1\nclick==8.1.7\n",
        )],
        lock: &[],
        install: |cache| {
            let mut command = Command::new("python3");
            command
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--target",
                    "deps",
                    "-r",
                    "requirements.txt",
                ])
                .arg("--cache-dir")
                .arg(cache);
            command
        },
        path: "deps",
        count: |dir| {
            std::fs::read_dir(dir.join("deps"))
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".dist-info"))
                        .count()
                })
                .unwrap_or(0)
        },
    }
}

fn rust() -> Project {
    Project {
        name: "rust",
        files: vec![
            (
                "Cargo.toml",
                "[package]\nname = \"bench\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\ntokio = { version = \"1\", features = [\"full\"] }\naxum = \"0.7\"\nclap = { version = \"4\", features = [\"derive\"] }\nserde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\nregex = \"1\"\nchrono = \"0.4\"\ntracing-subscriber = { version = \"0.3\", features = [\"env-filter\"] }\nreqwest = { version = \"0.12\", default-features = false, features = [\"rustls-tls\", \"json\"] }\n",
            ),
            ("src/main.rs", "fn main() {}\n"),
        ],
        lock: &["cargo", "generate-lockfile"],
        install: |cache| {
            let mut command = Command::new("cargo");
            command
                .args(["vendor", "--locked", "--quiet", "vendor"])
                .env("CARGO_HOME", cache);
            command
        },
        path: "vendor",
        count: |dir| {
            std::fs::read_dir(dir.join("vendor"))
                .map(|entries| entries.flatten().count())
                .unwrap_or(0)
        },
    }
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A fresh checkout of the project: its files and lockfile, nothing
/// installed, in a git repository of its own (where a seed's overlay
/// keeps its layers).
fn checkout(project: &Path, to: &Path) -> anyhow::Result<()> {
    run(
        Command::new("cp")
            .args(["-a", "--no-target-directory"])
            .arg(project)
            .arg(to),
        "cp",
    )?;
    run(Command::new("git").args(["init", "-q"]).arg(to), "git init")
}

/// The sandbox's helper, beside the tidewright binary: it mounts a seed's
/// overlays, then becomes bubblewrap.
fn helper() -> PathBuf {
    tidewright_tests::tidewright_bin().with_file_name("tidewright-sandbox-net")
}

/// Runs `script` in a sandbox over the checkout `at` as a step's first
/// process starts: the helper mounts `overlays` (when any), then
/// bubblewrap starts with the checkout bound.
fn in_sandbox(at: &Path, overlays: &[Overlay], script: &str) -> anyhow::Result<()> {
    let mut command = Command::new(helper());
    for overlay in overlays {
        command.args(["--overlay"]).args([
            &overlay.lower,
            &overlay.upper,
            &overlay.work,
            &overlay.target,
        ]);
    }
    command
        .args([
            "--",
            "bwrap",
            "--unshare-user",
            "--unshare-pid",
            "--die-with-parent",
        ])
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--bind",
        ])
        .args([at, at])
        .args(["--chdir"])
        .arg(at)
        .args(["sh", "-c", script]);
    run(&mut command, "the sandbox")
}

/// Allocated bytes under `path` (`du`).
fn disk(path: &Path) -> anyhow::Result<f64> {
    let out = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or("0").parse()?)
}

fn seconds(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

async fn bench(
    project: &Project,
    dir: &Path,
    runs: usize,
    table: &mut Table,
) -> anyhow::Result<String> {
    let name = project.name;
    let home = dir.join(name);
    let source = home.join("project");
    for (path, content) in &project.files {
        let at = source.join(path);
        std::fs::create_dir_all(at.parent().context("a parent")?)?;
        std::fs::write(at, content)?;
    }
    if let Some((program, args)) = project.lock.split_first() {
        run(
            Command::new(program).args(args).current_dir(&source),
            &format!("{name}: the lockfile"),
        )?;
    }
    let cache = home.join("cache");
    let install = |at: &Path| -> anyhow::Result<()> {
        run(
            (project.install)(&cache).current_dir(at),
            &format!("{name}: the install"),
        )
    };

    // Cold: nothing cached.
    let cold = home.join("cold");
    checkout(&source, &cold)?;
    let started = Instant::now();
    install(&cold)?;
    table.add(
        &format!("{name}: cold install"),
        "s",
        Better::Lower,
        seconds(started),
    );
    let packages = (project.count)(&cold);
    let installed = disk(&cold.join(project.path))?;

    // Warm: the ecosystem's own cache, in fresh checkouts.
    for run in 0..runs {
        let warm = home.join(format!("warm-{run}"));
        checkout(&source, &warm)?;
        let started = Instant::now();
        install(&warm)?;
        table.add(
            &format!("{name}: warm install"),
            "s",
            Better::Lower,
            seconds(started),
        );
        let _ = std::fs::remove_dir_all(&warm);
    }

    // From the seed: kept once, then put into each fresh checkout, until
    // the step's sandbox sees it. Laid over (where the machine mounts
    // overlays), and copied, in turn in each run: an A/B on one machine
    // at one time.
    let overlays = helper().exists();
    let seeds = Seeds::open(home.join("seeds"), u64::MAX, 0)?.with_overlays(overlays);
    let copying = Seeds::open(home.join("seeds"), u64::MAX, 0)?;
    let seed = seeds
        .keep(
            Seed {
                key: format!("{name}-bench"),
                paths: vec![project.path.to_string()],
                ..Seed::default()
            },
            &cold,
        )
        .await
        .map_err(anyhow::Error::msg)?;
    let mut extra = 0.0;
    let mut copied = 0.0;
    for run in 0..runs {
        for (way, by) in [("", &seeds), (", copied", &copying)] {
            let fresh = home.join(format!("seeded-{run}"));
            checkout(&source, &fresh)?;
            let started = Instant::now();
            let placed = by.put_into(&seed, &fresh).await?;
            in_sandbox(
                &fresh,
                &placed.overlays,
                &format!("test -n \"$(ls {})\"", project.path),
            )?;
            table.add(
                &format!("{name}: from the seed{way}"),
                "s",
                Better::Lower,
                seconds(started),
            );
            let took =
                disk(&fresh.join(project.path))? + disk(&fresh.join(".git/tidewright-seed"))?;
            if way.is_empty() {
                extra = took;
            } else {
                copied = took;
            }
            let _ = std::fs::remove_dir_all(&fresh);
        }
    }
    // The disk is the machine's: only the project and its cache stay.
    let _ = std::fs::remove_dir_all(&cold);
    let _ = std::fs::remove_dir_all(home.join("seeds"));
    table.add(
        &format!("{name}: install disk"),
        "MB",
        Better::Lower,
        installed / 1e6,
    );
    table.add(
        &format!("{name}: disk per extra workspace"),
        "MB",
        Better::Lower,
        extra / 1e6,
    );
    table.add(
        &format!("{name}: disk per extra workspace, copied"),
        "MB",
        Better::Lower,
        copied / 1e6,
    );
    Ok(format!(
        "{name}: {packages} packages; seeds put in place by {}",
        seeds.method().as_str()
    ))
}

/// 16 steps at once on one key, as a worker's steps take a seed: each
/// takes the key's lock, then the seed if there is one, else installs and
/// keeps it. How many installed, and the wall time of all 16.
async fn sixteen(project: &Project, dir: &Path) -> anyhow::Result<(usize, f64)> {
    let home = dir.join(format!("{}-16", project.name));
    let source = dir.join(project.name).join("project");
    let cache: PathBuf = dir.join(project.name).join("cache");
    let seeds =
        Arc::new(Seeds::open(home.join("seeds"), u64::MAX, 0)?.with_overlays(helper().exists()));
    let started = Instant::now();
    let mut steps = Vec::new();
    for step in 0..16 {
        let (seeds, source, cache, home) =
            (seeds.clone(), source.clone(), cache.clone(), home.clone());
        let (install, path) = (project.install, project.path);
        steps.push(tokio::spawn(async move {
            let at = home.join(format!("step-{step}"));
            checkout(&source, &at)?;
            let _turn = seeds.lock("key").await;
            if let Some(seed) = seeds.get("key").await {
                seeds.put_into(&seed, &at).await?;
                return anyhow::Ok(false);
            }
            run(install(&cache).current_dir(&at), "the install")?;
            let seed = Seed {
                key: "key".into(),
                paths: vec![path.to_string()],
                ..Seed::default()
            };
            seeds.keep(seed, &at).await.map_err(anyhow::Error::msg)?;
            Ok(true)
        }));
    }
    let mut installed = 0;
    for step in steps {
        installed += usize::from(step.await??);
    }
    let wall = seconds(started);
    let _ = std::fs::remove_dir_all(&home);
    Ok((installed, wall))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    let dir = tempfile::tempdir()?;
    let projects = [npm(), python(), rust()];
    let mut table = Table::default();
    let mut said = Vec::new();
    for project in &projects {
        said.push(bench(project, dir.path(), runs, &mut table).await?);
    }
    let (installed, wall) = sixteen(&projects[0], dir.path()).await?;
    println!(
        "tidewright seeds benchmark: {} cores; {}\n",
        cores(),
        said.join("; ")
    );
    println!("{}", table.render(&command("bench-seeds")));
    println!(
        "16 npm steps at once on one key: {installed} ran the install, the others took its seed; all ready in {wall:.1} s"
    );
    for project in &projects {
        let name = project.name;
        let (Some((warm, _)), Some((seeded, _)), Some((installed, _)), Some((extra, _))) = (
            table.summary(&format!("{name}: warm install")),
            table.summary(&format!("{name}: from the seed")),
            table.summary(&format!("{name}: install disk")),
            table.summary(&format!("{name}: disk per extra workspace")),
        ) else {
            continue;
        };
        println!(
            "{name}: from the seed p50 {seeded:.2} s, {:.0}% of the warm path's p50 {warm:.2} s (targets: <= 2 s and <= 25%); each extra workspace {:.0}% of the install's disk (target <= 5%)",
            100.0 * seeded / warm,
            100.0 * extra / installed
        );
    }
    Ok(())
}
