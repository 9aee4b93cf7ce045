//! A followed pull request (`repo.pullRequest.follow`, or `merge`), by the
//! task's deliver step once it has pushed the branch and opened the pull
//! request: it looks at the pull request every `pollSeconds` until it
//! merges or closes, and ends with what the forge says.
//!
//! - A check on the head that fails, or a reviewer's request for changes on
//!   it, ends the attempt as a verdict (failed, with a `verification` whose
//!   checks say what failed and why); the engine sends it back to the
//!   agent whose work it is and runs this step again once it is fixed.
//! - Green (a check passed on the head, and none fails or runs), no change
//!   requested on it, and a `merge` asked for: the pull request is merged
//!   through the forge, which may say not yet (its branch protection wants
//!   a review), and is asked again. A head no check ran on is not green.
//! - Merged (by this step or a person): the step succeeds. Closed unmerged:
//!   the step fails, with nothing for an agent to fix.
//!
//! Each run first answers the comment threads of the changes a past round
//! fixed, with what the agent said when it ended, so each thread gets one
//! reply, from whichever run comes first.
//! The state is the forge's and the store's: a run that starts again
//! (a worker lost, a control plane's failover) looks afresh and doubles
//! nothing.

use tidewright_core::repo::PullRequestSpec;
use tidewright_core::{CheckResult, RepoSpec, Verification};
use tidewright_git::forge::follow::{CheckState, Merged, Pull};
use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use super::repo;
use crate::metrics::Fault;

/// The most of a check's report an agent is told.
const TAIL_BYTES: usize = 4000;
/// The most of the agents' words a reply on a thread carries.
const REPLY_CHARS: usize = 2000;

/// What one look at the pull request found.
enum Look {
    Merged(String),
    Closed,
    /// Something on its head failed: for its agent to fix.
    Failed(Box<Verification>, String),
    /// Nothing to do but wait: why.
    Waiting(String),
}

/// Follows the pull request `number` (at `url`) that `ended`'s work opened,
/// until it merges or closes.
pub(crate) async fn follow(
    attempt: &Attempt,
    (task_repo, pr): (&RepoSpec, &PullRequestSpec),
    (number, url): (u64, &str),
    ended: &mut Ended,
    (reports, cancel): (
        &mpsc::UnboundedSender<FromAttempt>,
        &mut oneshot::Receiver<Stop>,
    ),
) {
    let Some(work) = ended.work.clone() else {
        return;
    };
    let log = |line: String| attempt.log(reports, line);
    let credentials = match repo::credentials(attempt) {
        Ok(credentials) => credentials,
        Err(why) => return *ended = Ended::fault(Fault::Repository, why),
    };
    let Some((forge, api)) = tidewright_core::repo::forge_of(task_repo) else {
        return *ended = Ended::fault(
            Fault::Delivery,
            "repo.pullRequest.forge: tidewright cannot tell whose API to call",
        );
    };
    let pull = match Pull::new(&forge, &api, (&task_repo.url, number), credentials.as_ref()) {
        Ok(pull) => pull,
        Err(e @ tidewright_git::Error::Refused { .. }) => {
            return *ended = verdict(format!("repo.{e}"), &work.head_commit, work.clone());
        }
        Err(e) => return *ended = Ended::fault(Fault::Delivery, format!("repo.pullRequest: {e}")),
    };
    let head = work.head_commit.clone();
    log(format!(
        "pull request: following {url} at {} until it merges or closes",
        short(&head)
    ));
    answer_threads(&pull, (&head, &attempt.inputs_json), &log).await;
    let mut said = String::new();
    loop {
        let look = match look(&pull, pr, &head).await {
            Ok(look) => look,
            // A forge that does not answer now may at the next look.
            Err(tidewright_git::Error::Unavailable(why)) => Look::Waiting(why),
            // The forge refuses what the task asks (its merge method, its
            // token): no retry and no agent does better.
            Err(e @ tidewright_git::Error::Refused { .. }) => {
                return *ended = verdict(format!("repo.{e}"), &head, work);
            }
            Err(e) => {
                return *ended = Ended::fault(Fault::Delivery, format!("repo.pullRequest: {e}"));
            }
        };
        match look {
            Look::Merged(commit) => {
                log(format!("pull request: merged, at {}", short(&commit)));
                ended.output_json = serde_json::json!({
                    "branch": work.branch,
                    "head": head,
                    "changed": true,
                    "pushed": work.pushed,
                    "pullRequest": url,
                    "pullRequestNumber": number,
                    "merged": commit,
                })
                .to_string();
                return;
            }
            Look::Closed => {
                return *ended = verdict(
                    format!("pull request {url}: closed without merging"),
                    &head,
                    work,
                );
            }
            Look::Failed(found, why) => {
                log(format!("pull request: {why}"));
                let mut failed = Ended::failed(format!("pull request {url}: {why}"), None);
                failed.verification = Some(*found);
                failed.work = Some(work);
                return *ended = failed;
            }
            Look::Waiting(why) => {
                if why != said {
                    log(format!("pull request: {why}"));
                    said = why;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pr.poll()) => {}
            // Its forge said something of it (a webhook): look now.
            () = attempt.look.notified() => {}
            stop = &mut *cancel => {
                let stop = stop.unwrap_or_else(|_| Stop::new("the worker is stopping"));
                return *ended = Ended::cancelled(stop, None);
            }
        }
    }
}

/// One look: merged or closed; else what fails on `head`; else green and
/// merged when asked, or what it waits for. A head no check has passed on
/// is never green: tidewright merges only what a check passed, and a
/// forge's CI may not have started on a head it was just pushed.
async fn look(
    pull: &Pull<'_>,
    pr: &PullRequestSpec,
    head: &str,
) -> Result<Look, tidewright_git::Error> {
    let state = pull.state().await?;
    if state.merged {
        return Ok(Look::Merged(state.merge_commit));
    }
    if !state.open {
        return Ok(Look::Closed);
    }
    if state.head != head {
        return Ok(Look::Waiting(format!(
            "its head is {}, not this run's {}: waiting for the forge to see the push",
            short(&state.head),
            short(head)
        )));
    }
    let checks = pull.checks(head).await?;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.state == CheckState::Failed)
        .map(|c| c.name.as_str())
        .collect();
    let reviews: Vec<_> = pull
        .changes_requested()
        .await?
        .into_iter()
        .filter(|r| r.commit == head)
        .collect();
    if !failed.is_empty() || !reviews.is_empty() {
        let mut results: Vec<CheckResult> = checks
            .iter()
            .filter(|c| c.state != CheckState::Pending)
            .map(|c| CheckResult {
                name: c.name.clone(),
                passed: c.state == CheckState::Passed,
                trouble: c.conclusion.clone(),
                tail: tail(&if c.url.is_empty() {
                    c.text.clone()
                } else {
                    format!("{}\n({})", c.text, c.url)
                }),
                ..CheckResult::default()
            })
            .collect();
        let mut why = Vec::new();
        if !failed.is_empty() {
            why.push(format!(
                "check(s) failed on {}: {}",
                short(head),
                failed.join(", ")
            ));
        }
        for review in &reviews {
            why.push(format!("{} requested changes", review.reviewer));
            let mut said = review.body.trim().to_string();
            for comment in &review.comments {
                let line = comment.line.map(|l| format!(":{l}")).unwrap_or_default();
                said.push_str(&format!(
                    "\n{}{line}: {}",
                    comment.path,
                    comment.body.trim()
                ));
            }
            results.push(CheckResult {
                name: format!("review by {}", review.reviewer),
                passed: false,
                trouble: "changes requested".into(),
                tail: tail(said.trim()),
                paths: review.comments.iter().map(|c| c.path.clone()).collect(),
                ..CheckResult::default()
            });
        }
        let found = Verification {
            head_commit: head.to_string(),
            checks: results,
            ..Verification::default()
        };
        return Ok(Look::Failed(Box::new(found), why.join("; ")));
    }
    let pending: Vec<&str> = checks
        .iter()
        .filter(|c| c.state == CheckState::Pending)
        .map(|c| c.name.as_str())
        .collect();
    if !pending.is_empty() {
        return Ok(Look::Waiting(format!(
            "waiting for check(s) on {}: {}",
            short(head),
            pending.join(", ")
        )));
    }
    if checks.is_empty() {
        return Ok(Look::Waiting(format!(
            "no check has run on {} yet: tidewright merges only what a check passed (a repository without CI is merged by a person)",
            short(head)
        )));
    }
    let Some(method) = &pr.merge else {
        return Ok(Look::Waiting(format!(
            "{} check(s) passed on {}: waiting for a person to merge it",
            checks.len(),
            short(head)
        )));
    };
    match pull.merge(method, head, &pr.title).await? {
        Merged::Done(commit) => Ok(Look::Merged(commit)),
        Merged::NotYet(why) => Ok(Look::Waiting(format!(
            "{} check(s) passed on {}; the forge does not merge it yet: {why}",
            checks.len(),
            short(head)
        ))),
    }
}

/// Replies in each thread of a request for changes made on an earlier
/// head than `head`, which a round of fixes answered, unless answered:
/// with what the agents of the work said when they ended (`inputs_json`,
/// the deliver step's dependencies' outputs), and the commit.
async fn answer_threads(pull: &Pull<'_>, (head, inputs_json): (&str, &str), log: &impl Fn(String)) {
    let reviews = match pull.changes_requested().await {
        Ok(reviews) => reviews,
        Err(e) => return log(format!("pull request: reading its reviews: {e}")),
    };
    let said = agents_said(inputs_json);
    for review in reviews.iter().filter(|r| r.commit != head) {
        for comment in review.comments.iter().filter(|c| !c.answered) {
            let reply = match said.as_str() {
                "" => format!("tidewright's agent answered this in {}.", short(head)),
                said => format!("{said}\n\n(tidewright's agent, in {})", short(head)),
            };
            match pull.reply(&comment.thread, &reply).await {
                Ok(()) => log(format!(
                    "pull request: replied to {}'s comment on {}",
                    review.reviewer, comment.path
                )),
                Err(e) => log(format!(
                    "pull request: replying to {}'s comment on {}: {e}",
                    review.reviewer, comment.path
                )),
            }
        }
    }
}

/// What the agent steps said when they ended (each output's `result`),
/// bounded: a reply's words.
fn agents_said(inputs_json: &str) -> String {
    let inputs: serde_json::Value = serde_json::from_str(inputs_json).unwrap_or_default();
    let said: Vec<&str> = inputs
        .as_object()
        .into_iter()
        .flat_map(|steps| steps.values())
        .filter_map(|output| output["result"].as_str())
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    let text = said.join("\n\n");
    match text.char_indices().nth(REPLY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A verdict on the pull request with nothing failed that an agent could
/// fix: the engine ends the task on it, unretried.
fn verdict(why: String, head: &str, work: tidewright_core::StepWork) -> Ended {
    let mut failed = Ended::failed(why, None);
    failed.verification = Some(Verification {
        head_commit: head.to_string(),
        ..Verification::default()
    });
    failed.work = Some(work);
    failed
}

fn tail(text: &str) -> String {
    tidewright_core::last_bytes(text, TAIL_BYTES).to_string()
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
