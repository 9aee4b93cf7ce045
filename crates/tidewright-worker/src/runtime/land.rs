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
//!
//! Other tasks' work may ride in the landing (a batch, which the engine
//! forms of tasks whose touches cannot overlap): each is merged in turn
//! onto the merge so far, and one commit holding them all, the tip its
//! first parent and each task's head after it, is checked and pushed. Its
//! output says what became of each (`batch`): merged into what was
//! checked, landed, or left out for a conflict; the engine ends their
//! steps from it.

use tidewright_core::repo::{LandRider, LandSpec};
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
    let riders = fetch_riders(attempt, mirror, &log).await;
    for turn in 1..=MOVES {
        let tip = match mirror.fetch_tip(url, &base, credentials.as_ref()).await {
            Ok(tip) => tip,
            Err(e) => {
                return *ended = Ended::fault(Fault::Delivery, format!("fetching {base}: {e}"));
            }
        };
        // Landed already, by a landing whose verdict was lost (its control
        // plane died): it stays as it is.
        if riders.is_empty() && mirror.contains(&tip, &head).await.unwrap_or(false) {
            log(format!(
                "land: the task's work is on {base} already, at {}",
                short(&tip)
            ));
            ended.output_json = serde_json::json!({
                "branch": work.branch,
                "head": work.head_commit,
                "changed": true,
                "pushed": work.pushed,
                "landed": tip,
                "base": base,
                "tip": tip,
                "pullRequest": work.pull_request_url,
            })
            .to_string();
            return;
        }
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
        let (landing, mut batch) =
            match merge_riders(mirror, (&tip, &head, landing), &riders, &message).await {
                Ok(merged) => merged,
                Err(e) => {
                    return *ended = Ended::fault(
                        Fault::Repository,
                        format!("merging the batch's work onto {base}: {e}"),
                    );
                }
            };
        let merged = batch.iter().filter(|r| r["merged"] == true).count();
        if merged == 0 {
            log(format!(
                "land: checking {} (the task's work on {base} at {})",
                short(&landing),
                short(&tip)
            ));
        } else {
            log(format!(
                "land: checking {} (the work of {} tasks on {base} at {}: this one's and {})",
                short(&landing),
                merged + 1,
                short(&tip),
                batch
                    .iter()
                    .filter(|r| r["merged"] == true)
                    .filter_map(|r| r["task"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
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
            // A verdict, not a mishap: the engine does not retry it (or,
            // for a batch, splits it).
            failed.verification = Some(found);
            failed.work = Some(work);
            failed.output_json = serde_json::json!({
                "base": base,
                "tip": tip,
                "batch": batch,
            })
            .to_string();
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
                push_rider_branches(
                    mirror,
                    (url, credentials.as_ref()),
                    (&riders, &mut batch),
                    &log,
                )
                .await;
                ended.output_json = serde_json::json!({
                    "branch": work.branch,
                    "head": work.head_commit,
                    "changed": true,
                    "pushed": work.pushed,
                    "landed": landing,
                    "base": base,
                    "tip": tip,
                    "pullRequest": work.pull_request_url,
                    "batch": batch,
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

/// The riders' work, fetched into the mirror as each rider's own
/// attempt; one whose work cannot be had is left out (its step goes back
/// to the queue, and lands on its own).
async fn fetch_riders<'a>(
    attempt: &'a Attempt,
    mirror: &tidewright_git::mirror::Mirror,
    log: &impl Fn(String),
) -> Vec<&'a LandRider> {
    let mut fetched = Vec::new();
    for rider in &attempt.land_riders {
        let key = tidewright_core::AttemptKey {
            task_id: rider.task_id.clone(),
            step_id: tidewright_core::repo::DELIVER_STEP.into(),
            attempt: rider.attempt,
        };
        match super::repo::fetch_head(attempt, &key, mirror, (&rider.step, &rider.head)).await {
            Ok(()) => fetched.push(rider),
            Err(e) => log(format!(
                "land: task {}'s work is left out of this landing: {}",
                rider.task_id,
                e.error()
            )),
        }
    }
    fetched
}

/// `landing` (the task's work merged onto `tip`), with each rider's work
/// merged in turn after it: one commit holding them all when any was (see
/// [`tidewright_git::mirror::Mirror::merge_all`]), and what became of
/// each rider.
async fn merge_riders(
    mirror: &tidewright_git::mirror::Mirror,
    (tip, head, landing): (&str, &str, String),
    riders: &[&LandRider],
    message: &str,
) -> Result<(String, Vec<serde_json::Value>), tidewright_git::Error> {
    let mut batch = Vec::new();
    let mut so_far = landing.clone();
    let mut parents = vec![tip, head];
    // The tasks whose work the commit holds: a rider left out for a
    // conflict is not named in it.
    let mut names = Vec::new();
    for rider in riders {
        let mut said = serde_json::json!({"task": rider.task_id, "head": rider.head});
        match mirror.merge_onto(&so_far, &rider.head, message).await? {
            Merged::Commit(commit) => {
                so_far = commit;
                parents.push(&rider.head);
                names.push(rider.task_id.as_str());
                said["merged"] = true.into();
            }
            Merged::Conflict(paths) => said["conflict"] = paths.into(),
        }
        batch.push(said);
    }
    if names.is_empty() {
        return Ok((landing, batch));
    }
    let message = format!("{message}, with tasks {}", names.join(", "));
    let all = mirror.merge_all(&so_far, &parents, &message).await?;
    Ok((all, batch))
}

/// Each rider merged into what landed is landed; those that ask for a
/// push have their branch pushed.
async fn push_rider_branches(
    mirror: &tidewright_git::mirror::Mirror,
    (url, credentials): (&str, Option<&tidewright_git::Credentials>),
    (riders, batch): (&[&LandRider], &mut [serde_json::Value]),
    log: &impl Fn(String),
) {
    for said in batch.iter_mut().filter(|r| r["merged"] == true) {
        said["landed"] = true.into();
        let Some(rider) = riders.iter().find(|r| said["task"] == r.task_id.as_str()) else {
            continue;
        };
        if !rider.push {
            continue;
        }
        let (task, head) = (&rider.task_id, &rider.head);
        let branch = tidewright_core::repo::task_branch(task);
        match mirror
            .push_fast_forward(url, head, &branch, credentials)
            .await
        {
            Ok(()) => said["pushed"] = true.into(),
            Err(e) => log(format!(
                "land: task {task}'s branch {branch} was not pushed: {e}"
            )),
        }
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
