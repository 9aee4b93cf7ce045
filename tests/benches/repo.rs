//! `make bench-repo`: how fast a step's workspace is ready when its task
//! names a repository, and what it costs on disk. A generated repository
//! (TIDEWRIGHT_BENCH_REPO_FILES files, 20,000, and TIDEWRIGHT_BENCH_REPO_COMMITS
//! commits, 2,000) is served by the real git server over smart HTTP with
//! basic auth (nginx, fcgiwrap, git http-backend); each run then measures
//! on a new worker directory:
//!
//! - the mirror's first clone (a worker's first step on the repository);
//! - a step's worktree from the warm mirror (TIDEWRIGHT_BENCH_REPO_STEPS, 20,
//!   each on its own branch), checked out for the step and taken from a
//!   spare made while the step before it worked: p50 and p99 of both, and
//!   the time a spare takes to make;
//! - a fresh `git clone` of the same repository over the same server
//!   (TIDEWRIGHT_BENCH_REPO_CLONES, 5): p50, and the worktree's p50 as a share
//!   of it;
//! - the disk of the mirror and 8 worktrees against 8 clones;
//! - collisions: 8 Claude Code agents (the real CLI against the mock
//!   Messages API, each writing one file) on a small repository, in 4
//!   pairs that write the same file, run by the release `tidewright` with a
//!   worker of 8 slots: without `touches` every pair collides where the
//!   task's branch joins them (the deliver step says `onConflict: rerun`,
//!   so each collision is counted and paid for with a rerun) and with
//!   `touches` (each pair one after the other, the second from the first's
//!   work) none does; the wall time of both, submit to the task's branch;
//!   and the same job as a prompt the planner turns into the 8 steps, with
//!   the `touches` it gives them (the mock model answers the plan).
//!   TIDEWRIGHT_BENCH_REPO_COLLISIONS=0 leaves the collisions out, for an A/B of
//!   the workspace alone, which runs in this process and needs no release
//!   `tidewright`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use tidewright_api::v1;
use tidewright_git::Credentials;
use tidewright_git::mirror::Mirrors;
use tidewright_tests::bench::*;
use tidewright_tests::git_server::{GitServer, PASSWORD, USER, git};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files = env_number("TIDEWRIGHT_BENCH_REPO_FILES", 20_000) as usize;
    let commits = env_number("TIDEWRIGHT_BENCH_REPO_COMMITS", 2_000) as usize;
    let runs = runs();
    let dir = tempfile::tempdir()?;
    let server = GitServer::start(dir.path())?;
    let started = Instant::now();
    let head = generate(&server, "big", files, commits)?;
    println!(
        "tidewright repository benchmark: {} cores, release build; a repository of {files} files and {commits} commits (made in {:.1} s), served over smart HTTP with basic auth by nginx + git http-backend on loopback",
        cores(),
        started.elapsed().as_secs_f64()
    );
    let url = server.url("big");
    let with_collisions = env_number("TIDEWRIGHT_BENCH_REPO_COLLISIONS", 1) != 0;
    let mut table = Table::default();
    for run in 1..=runs {
        measure_once(&mut table, dir.path(), &url, &head, run).await?;
        if with_collisions {
            collisions(&mut table, dir.path(), &server, run).await?;
        }
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-repo")));
    Ok(())
}

/// A repository of `files` files whose history has `commits` commits (the
/// first adds every file, each later one changes ten), made with
/// `git fast-import`; its head.
fn generate(
    server: &GitServer,
    name: &str,
    files: usize,
    commits: usize,
) -> anyhow::Result<String> {
    let bare = server.create_bare(name);
    let mut import = Command::new("git")
        .current_dir(&bare)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .context("git fast-import")?;
    let mut stream = std::io::BufWriter::new(import.stdin.take().context("stdin")?);
    let path = |i: usize| format!("src/m{:03}/f{i:05}.txt", i / 100);
    for n in 0..commits.max(1) {
        let message = format!("commit {n}");
        write!(
            stream,
            "commit refs/heads/main\ncommitter bench <bench@example.com> {} +0000\ndata {}\n{message}\n",
            1_700_000_000 + n,
            message.len()
        )?;
        let changed: Vec<usize> = if n == 0 {
            (0..files).collect()
        } else {
            (0..10).map(|k| (n * 10 + k) % files).collect()
        };
        for i in changed {
            let content = format!("file {i}, as of commit {n}\n{}\n", "x".repeat(64));
            write!(
                stream,
                "M 644 inline {}\ndata {}\n{content}\n",
                path(i),
                content.len()
            )?;
        }
    }
    drop(stream);
    if !import.wait()?.success() {
        bail!("git fast-import failed");
    }
    Ok(git(&bare, &["rev-parse", "main"]))
}

fn credentials() -> Credentials {
    Credentials::parse(&format!("{USER}:{PASSWORD}"))
}

/// Bytes under `path`, as `du` counts them (blocks, in KiB).
fn disk_kib(paths: &[&Path]) -> anyhow::Result<u64> {
    let output = Command::new("du")
        .arg("-sk")
        .arg("-c")
        .args(paths)
        .output()?;
    let text = String::from_utf8(output.stdout)?;
    let total = text
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("du's total")?;
    Ok(total)
}

/// A step's worktree at `dir` (its branch named for the directory), as a
/// step gets it: the mirror checked for the commit, then the worktree;
/// and the microseconds that took.
async fn step_worktree(
    mirrors: &Mirrors,
    (url, head): (&str, &str),
    dir: &Path,
) -> anyhow::Result<(tidewright_git::worktree::Worktree, i64)> {
    let started = Instant::now();
    let mirror = mirrors.ensure(url, head, Some(&credentials())).await?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let parent = dir.parent().and_then(Path::file_name).unwrap_or_default();
    let branch = format!("tidewright/bench/{}-{name}", parent.to_string_lossy());
    let tree = mirror.add_worktree(dir, &branch, head, head).await?;
    Ok((tree, started.elapsed().as_micros() as i64))
}

/// The rows "workspace ready: `what`", p50 and p99 of `samples`; the p50.
fn add_ready(table: &mut Table, what: &str, samples: Vec<i64>) -> f64 {
    let samples = sorted_micros(samples);
    let p50 = quantile_ms(&samples, 0.5);
    table.add(
        &format!("workspace ready: {what}, p50"),
        "ms",
        Better::Lower,
        p50,
    );
    table.add(
        &format!("workspace ready: {what}, p99"),
        "ms",
        Better::Lower,
        quantile_ms(&samples, 0.99),
    );
    p50
}

fn sorted_micros(mut samples: Vec<i64>) -> Vec<i64> {
    samples.sort_unstable();
    samples
}

async fn measure_once(
    table: &mut Table,
    dir: &Path,
    url: &str,
    head: &str,
    run: usize,
) -> anyhow::Result<()> {
    let steps = env_number("TIDEWRIGHT_BENCH_REPO_STEPS", 20) as usize;
    let clones = env_number("TIDEWRIGHT_BENCH_REPO_CLONES", 5) as usize;
    let work = dir.join(format!("run-{run}"));
    let mirrors = Mirrors::new(work.join("mirrors"), tidewright_git::program());

    let started = Instant::now();
    let mirror = mirrors.ensure(url, head, Some(&credentials())).await?;
    table.add(
        "mirror's first clone (a worker's first step on the repository)",
        "ms",
        Better::Lower,
        started.elapsed().as_secs_f64() * 1000.0,
    );

    // Checked out for each step, as a worker without spares does.
    let mut ready = Vec::with_capacity(steps);
    let mut trees = Vec::with_capacity(steps);
    for step in 0..steps {
        let (tree, micros) = step_worktree(
            &mirrors,
            (url, head),
            &work.join(format!("worktrees/s{step}")),
        )
        .await?;
        ready.push(micros);
        trees.push(tree);
    }
    let checkout_p50 = add_ready(table, "worktree checked out from a warm mirror", ready);

    // From a spare, as a worker does by default: the spare for each step
    // is made while the step before it works (a refill, timed apart).
    let spared = Mirrors::new(work.join("mirrors"), tidewright_git::program())
        .with_spares(work.join("spares"), 1);
    let (mut ready, mut refills) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    let mut spare_trees = Vec::with_capacity(steps);
    for step in 0..steps {
        let started = Instant::now();
        spared
            .ensure(url, head, Some(&credentials()))
            .await?
            .refill(head)
            .await?;
        refills.push(started.elapsed().as_micros() as i64);
        let (tree, micros) =
            step_worktree(&spared, (url, head), &work.join(format!("spared/s{step}"))).await?;
        ready.push(micros);
        spare_trees.push(tree);
    }
    let worktree_p50 = add_ready(table, "worktree from a spare of a warm mirror", ready);
    table.add(
        "a spare made ahead, while a step works, p50",
        "ms",
        Better::Lower,
        quantile_ms(&sorted_micros(refills), 0.5),
    );
    for tree in spare_trees {
        tree.remove().await?;
    }

    let mut cloned = Vec::with_capacity(clones);
    for n in 0..clones {
        let target = work.join(format!("clones/c{n}"));
        let started = Instant::now();
        let output = tidewright_git::command(&tidewright_git::program(), Some(&credentials()))
            .args(["clone", "-q", url])
            .arg(&target)
            .output()
            .await?;
        if !output.status.success() {
            bail!("git clone: {}", String::from_utf8_lossy(&output.stderr));
        }
        cloned.push(started.elapsed().as_micros() as i64);
    }
    let cloned = sorted_micros(cloned);
    let clone_p50 = quantile_ms(&cloned, 0.5);
    table.add(
        "fresh git clone over HTTP, p50",
        "ms",
        Better::Lower,
        clone_p50,
    );
    table.add(
        "worktree from a spare, p50 as a share of the clone's",
        "%",
        Better::Lower,
        100.0 * worktree_p50 / clone_p50,
    );
    table.add(
        "worktree checked out, p50 as a share of the clone's",
        "%",
        Better::Lower,
        100.0 * checkout_p50 / clone_p50,
    );

    let eight: Vec<&Path> = trees.iter().take(8).map(|t| t.path()).collect();
    let mut with_mirror = eight.clone();
    with_mirror.push(mirror.path());
    table.add(
        "disk: the mirror and 8 worktrees",
        "MiB",
        Better::Lower,
        disk_kib(&with_mirror)? as f64 / 1024.0,
    );
    let clone_dirs: Vec<std::path::PathBuf> = (0..clones.min(8))
        .map(|n| work.join(format!("clones/c{n}")))
        .collect();
    let one_clone = disk_kib(&[clone_dirs[0].as_path()])? as f64 / 1024.0;
    table.add(
        "disk: 8 clones (one clone's, times 8)",
        "MiB",
        Better::Lower,
        one_clone * 8.0,
    );
    for tree in trees {
        tree.remove().await?;
    }
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// The 8 agents: pair k's two both write `shared/pK.txt`.
const AGENTS: usize = 8;

fn agent_step(n: usize, touches: bool) -> v1::StepSpec {
    let mut step = tidewright_tests::claude_step(
        &format!("agent-{n}"),
        &format!("[collide: agent-{n}] Write your part of the feature."),
        &["Write"],
    );
    if touches {
        step.touches = vec![format!("shared/p{}.txt", n.div_ceil(2))];
    }
    step
}

/// One task of the 8 agents on `url`, with or without touches; the time
/// from submit to the task's end, and how many times the deliver step
/// found two agents' work in conflict (each a rerun).
async fn collide_once(
    client: &tidewright_tests::Tasks,
    url: &str,
    touches: bool,
) -> anyhow::Result<(f64, usize)> {
    let mut steps: Vec<v1::StepSpec> = (1..=AGENTS).map(|n| agent_step(n, touches)).collect();
    steps.push(v1::StepSpec {
        id: "deliver".into(),
        depends_on: (1..=AGENTS).map(|n| format!("agent-{n}")).collect(),
        runtime: Some(v1::step_spec::Runtime::Deliver(v1::DeliverRuntime {})),
        on_conflict: "rerun".into(),
        ..v1::StepSpec::default()
    });
    let request = tidewright_tests::task("collide", steps);
    let (id, task, wall) = run_on(client, request, url).await?;
    if task.state != v1::TaskState::Succeeded as i32 {
        bail!("the collisions task {id} did not succeed: {task:?}");
    }
    let conflicts = tidewright_tests::step(&task, "deliver").attempts.len() - 1;
    Ok((wall, conflicts))
}

async fn collisions(
    table: &mut Table,
    dir: &Path,
    server: &GitServer,
    run: usize,
) -> anyhow::Result<()> {
    use tidewright_tests::provider::{Api, Mock, Reply};
    let work = dir.join(format!("collide-{run}"));
    std::fs::create_dir_all(&work)?;
    let name = format!("collide-{run}");
    server.create_repo(&name, &[("README.md", "# app\n")]);
    // Each agent writes its pair's file, its own way; twice over, for the
    // run without touches and the one with.
    let routes: Vec<(String, Vec<Reply>)> = (1..=AGENTS)
        .map(|n| {
            let file = format!("shared/p{}.txt", n.div_ceil(2));
            let once = [
                Reply::claude_write(&file, &format!("written by agent {n}\n")),
                Reply::Text("Done.".into()),
            ];
            // A rerun asks again: enough replies for each run's reruns.
            let replies = once.iter().cycle().take(12).cloned().collect();
            (format!("[collide: agent-{n}]"), replies)
        })
        .collect();
    // The planner, asked for the same job, answers with the 8 agents and
    // the touches it gives each (its system prompt asks for them on a
    // repository).
    let planned: Vec<serde_json::Value> = (1..=AGENTS)
        .map(|n| {
            let step = agent_step(n, true);
            let claude = match &step.runtime {
                Some(v1::step_spec::Runtime::ClaudeCode(c)) => c.clone(),
                _ => unreachable!("an agent step"),
            };
            serde_json::json!({
                "id": step.id,
                "prompt": claude.prompt,
                "allowedTools": claude.allowed_tools,
                "touches": step.touches,
            })
        })
        .collect();
    let plan = Reply::Tool {
        name: "submit_plan".into(),
        args: serde_json::json!({"name": "collide", "steps": planned}),
    };
    let mut routes: Vec<(&str, Vec<Reply>)> = routes
        .iter()
        .map(|(marker, replies)| (marker.as_str(), replies.clone()))
        .collect();
    routes.push((PLAN_MARKER, vec![plan]));
    let mock = Mock::start_routed(Api::Anthropic, routes).await?;
    let secrets = work.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("git-creds"), format!("{USER}:{PASSWORD}\n"))?;
    let secrets = secrets.display().to_string();
    let key = work.join("planner.key");
    std::fs::write(&key, "sk-ant-planner-key\n")?;
    let tidewright = tidewright_tests::Server::start_on(
        &work.join("server"),
        "127.0.0.1:0",
        &[
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--planner-base-url",
            &mock.url,
            "--planner-api-key-file",
            &key.display().to_string(),
        ],
    )?;
    let _worker = tidewright_tests::start_named_claude_worker(
        &tidewright,
        &work,
        "agents",
        &mock,
        (&["claude-code"], AGENTS as u32),
        &["--secrets-dir", &secrets],
    )?;
    tidewright.wait_for_agents(&["agents"]).await?;
    let client = tidewright.tasks().await?;
    let url = server.url(&name);
    let (wall, conflicts) = collide_once(&client, &url, false).await?;
    table.add(
        "collisions: 8 agents in 4 overlapping pairs, without touches: conflicts at the join",
        "count",
        Better::Lower,
        conflicts as f64,
    );
    table.add(
        "collisions: without touches, submit to the task's branch (each conflict rerun)",
        "s",
        Better::Lower,
        wall,
    );
    let (wall, conflicts) = collide_once(&client, &url, true).await?;
    table.add(
        "collisions: with touches: conflicts at the join",
        "count",
        Better::Lower,
        conflicts as f64,
    );
    table.add(
        "collisions: with touches, submit to the task's branch",
        "s",
        Better::Lower,
        wall,
    );
    let (wall, conflicts) = collide_planned(&client, &url).await?;
    table.add(
        "collisions: the planner's touches: conflicts at the join",
        "count",
        Better::Lower,
        conflicts as f64,
    );
    table.add(
        "collisions: the planner's touches, submit (planning included) to the task's branch",
        "s",
        Better::Lower,
        wall,
    );
    Ok(())
}

/// Submits `request` on the collision job's repository (`url`, `main`,
/// the server's account) and waits for it to end: its id, the task, and
/// the seconds from submit to its end.
async fn run_on(
    client: &tidewright_tests::Tasks,
    mut request: v1::SubmitTaskRequest,
    url: &str,
) -> anyhow::Result<(String, v1::Task, f64)> {
    if let Some(spec) = request.spec.as_mut() {
        spec.repo = Some(v1::RepoSpec {
            url: url.into(),
            r#ref: "main".into(),
            credentials_secret: "git-creds".into(),
            ..v1::RepoSpec::default()
        });
    }
    let started = Instant::now();
    let id = tidewright_tests::submit(client, request).await?;
    let task =
        tidewright_tests::wait_finished(client, &id, std::time::Duration::from_secs(600)).await?;
    Ok((id, task, started.elapsed().as_secs_f64()))
}

/// What the planner's conversation holds: its route in the mock.
const PLAN_MARKER: &str = "[collide: plan]";

/// The same job as a prompt the planner turns into steps; the time from
/// submit to the task's end, and the conflicts its deliver step found
/// (tidewright's deliver step fails on one: counted as one).
async fn collide_planned(
    client: &tidewright_tests::Tasks,
    url: &str,
) -> anyhow::Result<(f64, usize)> {
    let request = tidewright_tests::prompt_task(
        &format!("{PLAN_MARKER} Eight agents build the feature, in four parts of two."),
        true,
    );
    let (id, task, wall) = run_on(client, request, url).await?;
    let deliver = tidewright_tests::step(&task, "deliver");
    let planned_touches = task
        .spec
        .as_ref()
        .is_some_and(|s| s.steps.iter().filter(|s| !s.touches.is_empty()).count() == AGENTS);
    if !planned_touches {
        bail!("the planned task {id} does not carry the planner's touches: {task:?}");
    }
    let conflicts =
        deliver.attempts.len() - 1 + usize::from(deliver.state != v1::StepState::Succeeded as i32);
    Ok((wall, conflicts))
}
