//! `make bench-land`: twenty tasks' work landed on one base, through the
//! queue (`repo.land`), batched and one at a time, and without it, on a
//! repository served by the real git server, checked by a generated
//! project's real test suite (Python's unittest, about
//! TIDEWRIGHT_BENCH_LAND_SUITE_SECONDS, 5, to run).
//!
//! The project has ten helpers, `util_k.f`. Ten tasks each add a feature
//! that calls one helper (`feature_k.py` and its test). Two mixes:
//! - **features + breaking renames**: ten other tasks each rename one
//!   helper (`util_k.f` to `util_k.g`, with its own test). Each task is
//!   green alone, and no two change the same file; but a feature and the
//!   rename of its helper break the suite together, as agents' branches
//!   that are each green do when they land together.
//! - **half disjoint**: ten other tasks each add a note under `notes/`,
//!   and say they touch `notes/**`, so no two of them land together; the
//!   features touch apart. At least 11 landings of 20.
//! - **half disjoint, in pairs**: the same, each note saying it touches
//!   its pair's notes only (`notes/pair_k_*`).
//!
//! `TIDEWRIGHT_BENCH_LAND_MIX` runs only the mixes whose name holds it.
//!
//! Each task's step says what it touches. The ways:
//! - **queue, batched**: the twenty land through main's queue, tasks whose
//!   touches cannot overlap in one checked merge (up to 8); a red batch is
//!   split until the task that broke it lands alone and is turned away.
//! - **queue, one at a time**: the same, each task alone (`batch: 1`).
//! - **no queue**: the twenty push their branches, and each is merged onto
//!   main as it ends (`git merge --no-ff`, as a person merges a green pull
//!   request).
//!
//! The figure is the time from the first submit until the last task ended,
//! and the tasks landed. Then every commit of main's first-parent history
//! is checked out and its suite run: the broken commits are counted (the
//! queue's target is 0). The tasks' steps are shell steps writing the
//! work, so that the figures are the queue's and the checks', not an
//! agent's.

use std::time::{Duration, Instant};

use anyhow::bail;
use tidewright_api::v1;
use tidewright_tests::bench::*;
use tidewright_tests::git_server::{GitServer, account_secrets, git, secret_holding_worker};
use tidewright_tests::*;

/// Features and renames, one of each per helper.
const HELPERS: usize = 10;

/// How the twenty tasks' work reaches main.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// Through the queue, tasks whose touches cannot overlap together.
    Batched,
    /// Through the queue, each alone (`repo.land.batch: 1`).
    OneAtATime,
    /// Pushed, and merged as each task ends.
    NoQueue,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Batched => "queue, batched",
            Way::OneAtATime => "queue, one at a time",
            Way::NoQueue => "no queue",
        }
    }
}

/// What the twenty tasks do.
#[derive(Clone, Copy, PartialEq)]
enum Mix {
    /// Ten features and the ten renames that break them.
    Breaking,
    /// Ten features, which touch apart, and ten notes, which all touch
    /// `notes/**`: half of them disjoint, none breaking another.
    HalfDisjoint,
    /// The same, each note touching only its pair's (`notes/pair_k*`).
    HalfInPairs,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::Breaking => "features + breaking renames",
            Mix::HalfDisjoint => "half disjoint",
            Mix::HalfInPairs => "half disjoint, in pairs",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let suite = env_number("TIDEWRIGHT_BENCH_LAND_SUITE_SECONDS", 5).max(1);
    let runs = runs();
    println!(
        "tidewright land benchmark: {} cores, release build; {} tasks on one repository served by nginx + git http-backend on loopback, each checked by a unittest suite of about {suite} s",
        cores(),
        2 * HELPERS
    );
    let mut table = Table::default();
    let plan = [
        (Mix::Breaking, Way::Batched),
        (Mix::Breaking, Way::OneAtATime),
        (Mix::Breaking, Way::NoQueue),
        (Mix::HalfDisjoint, Way::Batched),
        (Mix::HalfDisjoint, Way::OneAtATime),
        (Mix::HalfInPairs, Way::Batched),
        (Mix::HalfInPairs, Way::OneAtATime),
    ];
    // TIDEWRIGHT_BENCH_LAND_MIX: only the mixes whose name holds it.
    let only = std::env::var("TIDEWRIGHT_BENCH_LAND_MIX").unwrap_or_default();
    for run in 1..=runs {
        for (mix, way) in plan
            .into_iter()
            .filter(|(mix, _)| mix.name().contains(only.as_str()))
        {
            let ran = one_run(mix, way, suite).await?;
            let name = format!("{}: {}", mix.name(), way.name());
            println!(
                "run {run} of {runs}, {name}: {} landed, {} turned away, {} of main's {} commits broken, all ended in {:.1} s",
                ran.landed,
                ran.turned_away,
                ran.broken,
                ran.commits,
                ran.took.as_secs_f64()
            );
            table.add(
                &format!("{name}: until all ended"),
                "s",
                Better::Lower,
                ran.took.as_secs_f64(),
            );
            table.add(
                &format!("{name}: tasks landed"),
                "tasks",
                Better::Higher,
                ran.landed as f64,
            );
            table.add(
                &format!("{name}: broken commits on main"),
                "commits",
                Better::Lower,
                ran.broken as f64,
            );
        }
    }
    println!("\n{}", table.render(&command("bench-land")));
    Ok(())
}

struct Ran {
    took: Duration,
    landed: usize,
    turned_away: usize,
    commits: usize,
    broken: usize,
}

/// The generated project: ten helpers and a suite that takes about
/// `suite` seconds, its time spread over the helpers' tests.
fn project(suite: u64) -> Vec<(String, String)> {
    let pause = suite as f64 / HELPERS as f64;
    let mut files = Vec::new();
    for k in 0..HELPERS {
        files.push((
            format!("util_{k}.py"),
            format!("def f(x):\n    return x + {k}\n"),
        ));
        files.push((
            format!("test_util_{k}.py"),
            format!(
                "import time\nimport unittest\n\nimport util_{k}\n\n\nclass TestUtil{k}(unittest.TestCase):\n    def test_f(self):\n        time.sleep({pause})\n        self.assertEqual(util_{k}.f(1), {})\n",
                1 + k
            ),
        ));
    }
    files
}

/// Task `n`'s name, shell script and touches: a feature on helper `n`
/// (n < 10); else the rename of helper `n - 10`, or a note.
fn work(n: usize, mix: Mix) -> (String, String, Vec<String>) {
    if n < HELPERS {
        let feature =
            format!("import util_{n}\n\n\ndef feature(x):\n    return util_{n}.f(x) * 2\n");
        let test = format!(
            "import unittest\n\nimport feature_{n}\n\n\nclass TestFeature{n}(unittest.TestCase):\n    def test_feature(self):\n        self.assertEqual(feature_{n}.feature(1), {})\n",
            2 * (1 + n)
        );
        return (
            format!("feature-{n}"),
            format!(
                "printf '%s' '{feature}' > feature_{n}.py && printf '%s' '{test}' > test_feature_{n}.py"
            ),
            vec![format!("feature_{n}.py"), format!("test_feature_{n}.py")],
        );
    }
    let k = n - HELPERS;
    match mix {
        Mix::Breaking => (
            format!("rename-{k}"),
            format!(
                "sed -i 's/def f(/def g(/' util_{k}.py && sed -i 's/util_{k}\\.f(/util_{k}.g(/' test_util_{k}.py"
            ),
            vec![format!("util_{k}.py"), format!("test_util_{k}.py")],
        ),
        Mix::HalfDisjoint => (
            format!("note-{k}"),
            format!("mkdir -p notes && printf 'note {k}\\n' > notes/note_{k}.txt"),
            vec!["notes/**".into()],
        ),
        Mix::HalfInPairs => (
            format!("note-{k}"),
            format!(
                "mkdir -p notes && printf 'note {k}\\n' > notes/pair_{}_{k}.txt",
                k / 2
            ),
            vec![format!("notes/pair_{}_*", k / 2)],
        ),
    }
}

async fn one_run(mix: Mix, way: Way, suite: u64) -> anyhow::Result<Ran> {
    let queued = way != Way::NoQueue;
    let dir = tempfile::tempdir()?;
    let git_server = GitServer::start(dir.path())?;
    let files = project(suite);
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    git_server.create_repo("app", &files);
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds")?;
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )?;
    let _worker =
        secret_holding_worker(&server.url, dir.path(), "lander", 8, &server.worker_token)?;
    server.wait_for_agents(&["lander"]).await?;
    let client = server.tasks().await?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..2 * HELPERS {
        let (name, script, touches) = work(n, mix);
        let mut step = shell_step("work", &[], &script);
        step.touches = touches;
        let mut request = task_on_repo(&name, vec![step], &git_server.url("app"));
        if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
            if queued {
                repo.land = Some(v1::LandSpec {
                    method: "queue".into(),
                    base: String::new(),
                    checks: vec![unittest_check()],
                    batch: if way == Way::OneAtATime { 1 } else { 0 },
                    ..v1::LandSpec::default()
                });
            } else {
                repo.push = true;
            }
        }
        ids.push(submit(&client, request).await?);
    }
    let mut ended = Vec::new();
    for id in &ids {
        let task = wait_finished(&client, id, Duration::from_secs(1800)).await?;
        ended.push(task);
    }
    let mut landed = ended
        .iter()
        .filter(|t| t.state == v1::TaskState::Succeeded as i32)
        .count();
    let mut turned_away = ended.len() - landed;
    if !queued {
        // Each branch merged onto main as its task ended, as green pull
        // requests are; one that conflicts is left, as a person would.
        let mut order: Vec<&v1::Task> = ended.iter().collect();
        order.sort_by_key(|t| t.finished_at.as_ref().map(|f| (f.seconds, f.nanos)));
        let clone = dir.path().join("merger");
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                &git_server.root().join("app.git").display().to_string(),
                &clone.display().to_string(),
            ],
        );
        landed = 0;
        turned_away = 0;
        for task in order {
            let branch = tidewright_core::repo::task_branch(&task.id);
            git(&clone, &["fetch", "-q", "origin", &branch]);
            let merged = std::process::Command::new("git")
                .current_dir(&clone)
                .args(["-c", "user.name=p", "-c", "user.email=p@example.com"])
                .args([
                    "merge",
                    "-q",
                    "--no-ff",
                    "-m",
                    &format!("merge {branch}"),
                    "FETCH_HEAD",
                ])
                .status()?
                .success();
            if merged {
                landed += 1;
            } else {
                git(&clone, &["merge", "--abort"]);
                turned_away += 1;
            }
        }
        git(&clone, &["push", "-q", "origin", "HEAD:main"]);
    }
    let took = started.elapsed();
    let history = git_server.main_history_tested("app", dir.path());
    let (commits, broken) = (
        history.len(),
        history.iter().filter(|(_, passed)| !passed).count(),
    );
    if queued && landed == 0 {
        bail!("no task landed through the queue");
    }
    Ok(Ran {
        took,
        landed,
        turned_away,
        commits,
        broken,
    })
}
