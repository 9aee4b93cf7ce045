//! A verified step's checks, run by its worker once its agent's turn ended
//! in success and its work was committed: each check on that commit, in a
//! checkout of its own made from the mirror (outside the agent's workspace,
//! so only what was committed is there) and a sandbox of its own, with the
//! step's egress and limits, one after another. The agent's processes are
//! gone by then and never see a check. Each check's output goes to the
//! step's log, masked, and its end to the round's result; what the step's
//! work did to protected paths and to its tests is measured on its diff.
//! When they pass and the step has a rubric, the grader grades the work.
//! The engine decides what the round means.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tidewright_core::verify::grade::Asked;
use tidewright_core::verify::{CheckSpec, Grade, Verdict, VerifySpec, tail, test_changes};
use tidewright_core::{CheckResult, StepWork, Verification};
use tidewright_git::worktree::Worktree;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use crate::secrets::Redactor;

/// Where checks' checkouts are made, under the worker's directory.
const CHECKS_DIR: &str = ".checks";
/// The most of a step's diff read for its tests.
const MAX_DIFF_BYTES: usize = 4 * 1024 * 1024;
/// The most of a round's own diff kept with it, for the console.
const MAX_ROUND_DIFF_BYTES: usize = 256 * 1024;

/// Runs `spec`'s checks on `work`'s head commit; `Err` with how the attempt
/// ended when it was cancelled meanwhile.
pub(crate) async fn run_checks(
    attempt: &Attempt,
    spec: &VerifySpec,
    (tree, work): (&Worktree, &StepWork),
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    cancel: &mut oneshot::Receiver<Stop>,
) -> Result<Verification, Ended> {
    let mut found = Verification {
        head_commit: work.head_commit.clone(),
        protected: work
            .changed_paths
            .iter()
            .filter(|path| {
                spec.protect
                    .iter()
                    .any(|glob| tidewright_core::touches::matches(glob, path))
            })
            .cloned()
            .collect(),
        ..Verification::default()
    };
    let diff = match tree
        .mirror()
        .diff(&work.base_commit, &work.head_commit, MAX_DIFF_BYTES)
        .await
    {
        Ok(diff) => {
            (found.tests_removed, found.skips_added) = test_changes(&diff);
            diff
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading a verified step's diff");
            String::new()
        }
    };
    // What this round did, when the round before's commit is here (a
    // commit id and nothing else: it goes on git's command line).
    let round_base = attempt
        .resume
        .as_ref()
        .map_or("", |r| r.round_base.as_str());
    if tidewright_core::repo::valid_commit(round_base) && tree.mirror().has_commit(round_base).await
    {
        match tree
            .mirror()
            .diff(round_base, &work.head_commit, MAX_ROUND_DIFF_BYTES)
            .await
        {
            Ok(diff) => found.round_diff = redactor.redact(diff),
            Err(e) => tracing::warn!(error = %e, "reading a verified step's round's diff"),
        }
    }
    for check in &spec.checks {
        let result = run_check(attempt, check, (tree, work), redactor, reports, cancel).await?;
        found.checks.push(result);
    }
    if found.checks_passed() && !spec.rubric.is_empty() {
        let graded = grade(attempt, spec, (&found, &diff), (redactor, reports), cancel).await?;
        found.grade = Some(graded);
    }
    Ok(found)
}

/// The rubric's grade of work whose checks passed; `Err` with the attempt
/// failed when no grade came (the retry policy decides what next), never a
/// round passed ungraded, or cancelled meanwhile.
async fn grade(
    attempt: &Attempt,
    spec: &VerifySpec,
    (found, diff): (&Verification, &str),
    (redactor, reports): (&Arc<Redactor>, &mpsc::UnboundedSender<FromAttempt>),
    cancel: &mut oneshot::Receiver<Stop>,
) -> Result<Grade, Ended> {
    let log = |line: String| attempt.log(reports, line);
    let (Some(grader), false) = (&attempt.host.grader, attempt.grader_model.is_empty()) else {
        return Err(Ended::failed(
            "verify: this worker cannot grade the rubric (it offers no grader, or the control plane named no grader model)",
            None,
        ));
    };
    log(format!(
        "grader: {} grades the work against the rubric",
        attempt.grader_model
    ));
    // The prompt and the diff may hold what the step's secrets made;
    // what goes to the model is masked as the step's log is.
    let prompt = redactor.redact(attempt.step.asked());
    let diff = redactor.redact(diff.to_string());
    let asked = Asked {
        prompt: &prompt,
        rubric: &spec.rubric,
        diff: &diff,
        checks: &found.checks,
    };
    let graded = tokio::select! {
        graded = grader.grade(&attempt.grader_model, &asked, redactor) => graded,
        stop = cancel => {
            let stop = stop.unwrap_or_else(|_| Stop::new("the worker is stopping"));
            return Err(Ended::cancelled(stop, None));
        }
    };
    match graded {
        Ok(grade) => {
            log(format!(
                "grader: {} in {} ms (${:.4}){}",
                match grade.verdict {
                    Verdict::Pass => "pass",
                    Verdict::NeedsRevision => "needs revision",
                },
                grade.millis,
                grade.cost.usd,
                match grade.reasons.first() {
                    Some(first) => format!(": {first}"),
                    None => String::new(),
                }
            ));
            Ok(grade)
        }
        Err(why) => {
            log(format!("grader: {why}"));
            Err(Ended::failed(format!("verify: {why}"), None))
        }
    }
}

/// One check, in its own checkout, removed afterwards (unless the worker
/// keeps workspaces).
async fn run_check(
    attempt: &Attempt,
    check: &CheckSpec,
    (tree, work): (&Worktree, &StepWork),
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    cancel: &mut oneshot::Receiver<Stop>,
) -> Result<CheckResult, Ended> {
    let started = Instant::now();
    let dir = checkout_dir(attempt, &check.name);
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let said = |trouble: String| CheckResult {
        name: check.name.clone(),
        trouble,
        millis: started.elapsed().as_millis() as u64,
        ..CheckResult::default()
    };
    if let Err(e) = tree
        .mirror()
        .check_out_commit(&dir, &work.head_commit)
        .await
    {
        return Ok(said(format!(
            "checking out {} for it: {e}",
            work.head_commit
        )));
    }
    // What the step's setup made, the check needs too.
    let seeded = match super::setup::provide(attempt, (&dir, tree), redactor, reports, cancel).await
    {
        Ok(seeded) => seeded,
        Err(ended) => {
            if !attempt.host.keep_workspace {
                let _ = tokio::fs::remove_dir_all(&dir).await;
            }
            if matches!(ended.outcome, tidewright_core::Outcome::Cancelled(_)) {
                return Err(ended);
            }
            return Ok(said(ended.error().to_string()));
        }
    };
    let log = |line: String| attempt.log(reports, line);
    log(format!(
        "check {}: running {} on {}",
        check.name,
        check.run.join(" "),
        work.head_commit
    ));
    // Its own time: from its process's start in the sandbox to its end.
    let running = Instant::now();
    let label = format!("check {}", check.name);
    let ran = super::sandboxed::run_in_sandbox(
        attempt,
        (&label, check, &super::sandboxed::Own::default()),
        (&dir, tree, &seeded.overlays),
        redactor,
        reports,
        cancel,
    )
    .await;
    let ran_for = running.elapsed();
    if !attempt.host.keep_workspace {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    let (end, output) = ran;
    let mut result = match end {
        Ok(exited) => CheckResult {
            passed: exited.status.success(),
            exit_code: exited.status.code(),
            trouble: match exited.status.code() {
                Some(_) => String::new(),
                None => exited.failure(),
            },
            ..said(String::new())
        },
        Err(ended) if matches!(ended.outcome, tidewright_core::Outcome::Cancelled(_)) => {
            return Err(ended);
        }
        Err(ended) => said(ended.error().to_string()),
    };
    result.millis = ran_for.as_millis() as u64;
    result.tail = redactor.redact(tail(&output));
    log(format!(
        "check {}: {} in {} ms",
        check.name,
        match (result.passed, result.exit_code) {
            (true, _) => "passed".to_string(),
            (false, Some(code)) => format!("failed (exit {code})"),
            (false, None) => format!("failed: {}", result.trouble),
        },
        result.millis
    ));
    Ok(result)
}

/// Where check `name` of the attempt is checked out: beside the
/// workspaces, never inside the agent's.
fn checkout_dir(attempt: &Attempt, name: &str) -> PathBuf {
    attempt.host.work_dir.join(CHECKS_DIR).join(format!(
        "{}-{}-{}-{name}",
        attempt.key.task_id, attempt.key.step_id, attempt.key.attempt
    ))
}
