//! Landing a task's work on its base branch, by the task's deliver step
//! (the engine hands it over only in its turn in the base's queue): the
//! base's tip is fetched now, the task's work merged onto it, the
//! landing's checks run on that merge (each in its own checkout and
//! sandbox, as a verified step's are), and only when they all pass is the
//! merge pushed, as a fast-forward of the tip it was checked on. When the
//! base moved meanwhile (a push from outside the queue), the remote refuses
//! it and the landing starts again on the new tip; the base never gets a
//! commit its checks did not pass. A task with a pull request has the
//! checked merge pushed to its branch first, so that the pull request
//! holds what lands, and the forge sees it merged when the base moves to
//! it: the merge is the fast-forward push, never the forge's own merge,
//! which would make a commit nobody checked on a base that may have moved.

use tidewright_core::repo::LandSpec;
use tidewright_core::{RepoSpec, StepWork, VerifySpec};
use tidewright_git::land::Merged;
use tidewright_git::worktree::Worktree;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use super::repo;
use crate::metrics::Fault;

/// The times a landing starts again on a base that moved under it.
const MOVES: u32 = 3;

/// Lands `ended`'s work (the task's branch) on the base `task_repo` names.
pub(crate) async fn land(
    attempt: &Attempt,
    (task_repo, land): (&RepoSpec, &LandSpec),
    tree: &Worktree,
    ended: &mut Ended,
    (reports, cancel): (
        &mpsc::UnboundedSender<FromAttempt>,
        &mut oneshot::Receiver<Stop>,
    ),
) {
    let Some(work) = ended.work.clone() else {
        return;
    };
    let Some(base) = task_repo.land_base() else {
        return *ended = Ended::fault(Fault::Delivery, "the task lands, and names no base branch");
    };
    let log = |line: String| attempt.log(reports, line);
    if work.head_commit == task_repo.commit {
        log(format!(
            "land: the task changed nothing; {base} stays as it is"
        ));
        return;
    }
    let credentials = match repo::credentials(attempt) {
        Ok(credentials) => credentials,
        Err(why) => return *ended = Ended::fault(Fault::Repository, why),
    };
    // git hands the repository's secret over by its credential helper,
    // never on a command line or in what it prints: the checks' output is
    // masked as any step's is.
    let redactor = attempt.redactor(std::iter::empty());
    let mirror = tree.mirror();
    let url = &task_repo.url;
    let spec = VerifySpec {
        checks: land.checks.clone(),
        ..VerifySpec::default()
    };
    let message = format!(
        "tidewright: land task {} ({}) on {base}",
        attempt.key.task_id, attempt.task_name
    );
    // The work merged onto the tip: the task's, or once its branch holds
    // a checked merge (a pull request's), that merge.
    let mut head = work.head_commit.clone();
    for turn in 1..=MOVES {
        let tip = match mirror.fetch_tip(url, &base, credentials.as_ref()).await {
            Ok(tip) => tip,
            Err(e) => {
                return *ended = Ended::fault(Fault::Delivery, format!("fetching {base}: {e}"));
            }
        };
        let landing = match mirror.merge_onto(&tip, &head, &message).await {
            Ok(Merged::Commit(commit)) => commit,
            Ok(Merged::Conflict(paths)) => {
                let mut failed = Ended::failed(
                    format!(
                        "landing on {base}: the task's work conflicts with {base} at {}: {}",
                        short(&tip),
                        paths.join(", ")
                    ),
                    None,
                );
                // A verdict, not a mishap: the engine does not retry it.
                failed.conflict = Some(tidewright_core::repo::MergeConflict {
                    with: base.clone(),
                    after: Vec::new(),
                    paths,
                });
                failed.work = Some(work);
                return *ended = failed;
            }
            Err(e) => {
                return *ended = Ended::fault(
                    Fault::Repository,
                    format!("merging the task's work onto {base}: {e}"),
                );
            }
        };
        log(format!(
            "land: checking {} (the task's work on {base} at {})",
            short(&landing),
            short(&tip)
        ));
        let on = StepWork {
            head_commit: landing.clone(),
            base_commit: tip.clone(),
            changed_paths: Vec::new(),
            ..work.clone()
        };
        let mut found = match super::verify::run_checks(
            attempt,
            &spec,
            (tree, &on),
            &redactor,
            reports,
            cancel,
        )
        .await
        {
            Ok(found) => found,
            Err(stopped) => return *ended = stopped,
        };
        // The landing's round of checks is kept with the attempt, as a
        // verified step's is: `get task` and the console show it.
        found.round = turn;
        if !found.passed() {
            let mut failed = Ended::failed(
                format!(
                    "landing on {base}: the checks failed on the task's work merged onto {} ({} stays as it is): {}",
                    short(&tip),
                    base,
                    found.findings()
                ),
                None,
            );
            // A verdict, not a mishap: the engine does not retry it.
            failed.verification = Some(found);
            failed.work = Some(work);
            return *ended = failed;
        }
        ended.verification = Some(found);
        if task_repo.pull_request.is_some() {
            // A fast-forward of the branch: the checked merge has the
            // branch's head as a parent.
            if let Err(e) = mirror
                .push_fast_forward(url, &landing, &work.branch, credentials.as_ref())
                .await
            {
                return *ended = Ended::fault(
                    Fault::Delivery,
                    format!(
                        "pushing the landing to the pull request's branch {}: {e}",
                        work.branch
                    ),
                );
            }
            head.clone_from(&landing);
        }
        match mirror
            .push_fast_forward(url, &landing, &base, credentials.as_ref())
            .await
        {
            Ok(()) => {
                log(format!("land: {base} is at {} now", short(&landing)));
                ended.output_json = serde_json::json!({
                    "branch": work.branch,
                    "head": work.head_commit,
                    "changed": true,
                    "pushed": work.pushed,
                    "landed": landing,
                    "base": base,
                    "tip": tip,
                    "pullRequest": work.pull_request_url,
                })
                .to_string();
                return;
            }
            Err(e) => {
                // Refused as no fast-forward when the base moved: land
                // again on where it is now.
                let moved = mirror
                    .fetch_tip(url, &base, credentials.as_ref())
                    .await
                    .is_ok_and(|now| now != tip);
                if moved && turn < MOVES {
                    log(format!(
                        "land: {base} moved from {} while its checks ran; landing again",
                        short(&tip)
                    ));
                    continue;
                }
                return *ended = Ended::fault(
                    Fault::Delivery,
                    format!("pushing the landing to {base}: {e}"),
                );
            }
        }
    }
    *ended = Ended::fault(
        Fault::Delivery,
        format!("landing on {base}: it moved {MOVES} times while this landing was checked"),
    );
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
