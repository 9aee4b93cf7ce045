//! `tidewright eval`: agents measured on a repository's own history (see
//! `tidewright_core::eval`). The commits that landed on a branch and
//! changed both code and tests are read from a bare clone; each one's
//! parent is put in a snapshot repository of its own (nothing after it)
//! under `--snapshots`, which the workers read as a local repository; each
//! runtime runs each commit once per attempt count; the table compares
//! the run with the last one on the same repository.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tidewright_api::convert::micros;
use tidewright_client::{Client, v1};
use tidewright_core::eval::{
    self, ATTEMPTS_LABEL, COMMIT_LABEL, Case, Outcome, REPO_LABEL, RUN_LABEL, RUNTIME_LABEL, Row,
};

use crate::args::EvalArgs;
use crate::output::{emit, print_table};

pub async fn eval(client: &Client, args: EvalArgs) -> anyhow::Result<ExitCode> {
    for runtime in &args.runtimes {
        if !tidewright_core::is_agent_capability(runtime) {
            bail!(
                "--runtimes: {runtime:?} is not an agent runtime; one of {}",
                tidewright_core::AGENT_CAPABILITIES.join(", ")
            );
        }
    }
    if let Some(bad) = args.attempts.iter().find(|k| !(1..=10).contains(*k)) {
        bail!("--attempts: {bad} is not 1 to 10");
    }
    let since = git_since(&args.since)?;
    let git = Path::new("git");
    let clone = tempfile::tempdir().context("a directory for the clone")?;
    let bare = clone.path().join("repo.git");
    tidewright_git::history::clone_bare(git, &args.repo, &bare)
        .await
        .with_context(|| format!("--repo: cloning {}", args.repo))?;
    let (landed, looked) =
        tidewright_git::history::landed(git, &bare, (&args.git_ref, &since), args.limit as usize)
            .await
            .with_context(|| format!("--ref: reading the history of {}", args.git_ref))?;
    if landed.is_empty() {
        bail!(
            "--repo: no commit that landed on {} since {} changed both code and tests ({looked} looked at): nothing to measure on {}",
            args.git_ref,
            args.since,
            args.repo
        );
    }
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let key = tidewright_core::repo::key(&args.repo);
    let snapshots = std::path::absolute(&args.snapshots)?.join(&run);
    let mut submitted = Vec::new();
    for commit in &landed {
        let snapshot = snapshots.join(format!("{}.git", commit.commit));
        tidewright_git::history::snapshot(git, &bare, &commit.parent, &snapshot)
            .await
            .with_context(|| format!("--snapshots: making {}", snapshot.display()))?;
        let url = format!("file://{}", snapshot.display());
        let check = eval::check(eval::restore_script(&commit.tests), &args.test_command);
        for runtime in &args.runtimes {
            for &attempts in &args.attempts {
                let case = Case {
                    landed: commit,
                    runtime,
                    attempts,
                };
                let spec = eval::task(&case, (&run, &key), &url, check.clone());
                let task = client.submit(&spec).await?;
                submitted.push(task.task_id);
            }
        }
    }
    if !matches!(
        args.output,
        crate::args::Format::Json | crate::args::Format::Yaml
    ) {
        eprintln!(
            "eval {run}: {} commits of {} since {} ({looked} looked at), {} tasks; waiting for them",
            landed.len(),
            args.git_ref,
            args.since,
            submitted.len()
        );
    }
    let mut outcomes = Vec::new();
    for id in &submitted {
        let task = client.wait(id).await?;
        outcomes.extend(outcome_of(&task));
    }
    let last = last_run(client, &key, &run).await?;
    let rows = eval::rows(&outcomes, &last);
    if emit(&rows, rows.iter().map(|r| &r.runtime), args.output)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!("eval {run} on {}: {} commits", args.repo, landed.len());
    let table: Vec<Vec<String>> = rows.iter().map(row).collect();
    print_table(
        &[
            "RUNTIME",
            "ATTEMPTS",
            "TASKS",
            "PASSED",
            "PASS RATE",
            "LAST RUN",
            "COST",
            "MEDIAN TIME",
            "ROUNDS",
        ],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}

fn row(r: &Row) -> Vec<String> {
    vec![
        r.runtime.clone(),
        r.attempts.to_string(),
        r.tasks.to_string(),
        r.passed.to_string(),
        format!("{:.0}%", r.pass_rate * 100.0),
        r.last_pass_rate
            .map_or("-".into(), |rate| format!("{:.0}%", rate * 100.0)),
        format!("${:.4}", r.usd),
        format!("{:.1}s", r.median_millis as f64 / 1000.0),
        format!("{:.1}", r.mean_rounds),
    ]
}

/// `90d`, `2w`, `36h` as git's `--since` reads them; anything else (a
/// date) as it is.
fn git_since(since: &str) -> anyhow::Result<String> {
    let (number, unit) = since.split_at(since.len().saturating_sub(1));
    let unit = match unit {
        "d" => "days",
        "w" => "weeks",
        "h" => "hours",
        _ => return Ok(since.to_string()),
    };
    let n: u32 = number
        .parse()
        .with_context(|| format!("--since: {since:?} is not a number of days (90d), weeks (2w) or hours (36h), nor a date"))?;
    Ok(format!("{n} {unit} ago"))
}

/// How an eval task ended, from its labels and its steps.
fn outcome_of(task: &v1::Task) -> Option<Outcome> {
    let spec = task.spec.as_ref()?;
    let label = |name: &str| spec.labels.get(name).cloned().unwrap_or_default();
    let succeeded = v1::StepState::Succeeded as i32;
    let rounds_of = |s: &v1::Step| {
        s.attempts
            .iter()
            .filter(|a| a.verification.is_some())
            .count() as u32
    };
    // The step that ran, or, with attempts, the one that passed (else the
    // most rounds any went through).
    let solving: Vec<&v1::Step> = task
        .steps
        .iter()
        .filter(|s| s.id == eval::STEP || s.id.starts_with(&format!("{}.", eval::STEP)))
        .filter(|s| !s.attempts.is_empty())
        .collect();
    let rounds = solving
        .iter()
        .filter(|s| s.state == succeeded)
        .map(|s| rounds_of(s))
        .min()
        .or_else(|| solving.iter().map(|s| rounds_of(s)).max())
        .unwrap_or(0);
    let created = task.created_at.as_ref().map(micros).unwrap_or(0);
    let finished = task.finished_at.as_ref().map(micros).unwrap_or(created);
    Some(Outcome {
        runtime: label(RUNTIME_LABEL),
        attempts: label(ATTEMPTS_LABEL).parse().unwrap_or(1),
        commit: label(COMMIT_LABEL),
        passed: task.state == v1::TaskState::Succeeded as i32,
        usd: task.cost.as_ref().map_or(0.0, |c| c.usd),
        millis: u64::try_from((finished - created) / 1000).unwrap_or(0),
        rounds,
    })
}

/// The rows of the newest earlier run on the same repository; none
/// without one.
async fn last_run(client: &Client, key: &str, run: &str) -> anyhow::Result<Vec<Row>> {
    let filter = v1::ListTasksRequest {
        labels: [(REPO_LABEL.to_string(), key.to_string())].into(),
        page_size: 1000,
        ..v1::ListTasksRequest::default()
    };
    let page = client.list_page(&filter, "").await?;
    let last = page
        .tasks
        .iter()
        .filter_map(|t| t.spec.as_ref()?.labels.get(RUN_LABEL).cloned())
        .filter(|r| r.as_str() < run)
        .max();
    let Some(last) = last else {
        return Ok(Vec::new());
    };
    let mut outcomes = Vec::new();
    for listed in &page.tasks {
        let of_last = listed
            .spec
            .as_ref()
            .is_some_and(|s| s.labels.get(RUN_LABEL) == Some(&last));
        if of_last {
            outcomes.extend(outcome_of(&client.get(&listed.id).await?));
        }
    }
    Ok(eval::rows(&outcomes, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_days_weeks_and_hours_and_leaves_a_date() {
        assert_eq!(git_since("90d").expect("days"), "90 days ago");
        assert_eq!(git_since("2w").expect("weeks"), "2 weeks ago");
        assert_eq!(git_since("2026-01-01").expect("a date"), "2026-01-01");
        assert!(git_since("xd").is_err_and(|e| e.to_string().starts_with("--since")));
    }
}
