//! The step that chooses among a step's attempts, when a judge is to
//! compare those that passed: their work is fetched into this worker's
//! mirror (from the control plane's kept branches when another worker
//! made it), each diffed from where it started, and the judge plays a
//! tournament over them, a match at a time. The answer names the winner
//! with every match's reasons; the control plane takes the winner's work.
//! Nothing is checked out and nothing is pushed.

use tidewright_core::Cost;
use tidewright_core::attempts::judge::{self, Candidates, Judged, Match, Side};
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use super::repo;
use crate::metrics::Fault;

pub(crate) async fn run_select(
    attempt: &Attempt,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    mut cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let prompt = attempt
        .step
        .select
        .as_ref()
        .map(|s| s.prompt.clone())
        .unwrap_or_default();
    let (Some(grader), false) = (&attempt.host.grader, attempt.grader_model.is_empty()) else {
        return Ended::failed(
            "this worker cannot judge attempts (it offers no grader, or the control plane named no grader model)",
            None,
        );
    };
    let candidates: Candidates = match serde_json::from_str(&attempt.inputs_json) {
        Ok(c) => c,
        Err(e) => return Ended::failed(format!("the attempts to judge do not read: {e}"), None),
    };
    let candidates = candidates.candidates;
    let diffs = match diffs(attempt, &candidates).await {
        Ok(diffs) => diffs,
        Err(ended) => return ended,
    };
    let redactor = attempt.redactor(std::iter::empty());
    let prompt = redactor.redact(prompt);
    let model = &attempt.grader_model;
    let mut spent = Cost::default();
    let mut matches = Vec::new();
    let mut field: Vec<usize> = (0..candidates.len()).collect();
    while field.len() > 1 {
        let (pairs, bye) = judge::pairs(&field);
        let mut next = Vec::with_capacity(field.len() / 2 + 1);
        for (a, b) in pairs {
            let side = |i: usize| Side {
                candidate: &candidates[i],
                diff: &diffs[i],
            };
            let judged = tokio::select! {
                judged = grader.judge(model, (&prompt, side(a), side(b)), &redactor) => judged,
                stop = &mut cancel => {
                    let stop = stop.unwrap_or_else(|_| Stop::new("the worker is stopping"));
                    return Ended { cost: Some(spent), ..Ended::cancelled(stop, None) };
                }
            };
            let (first_won, reasons, cost) = match judged {
                Ok(judged) => judged,
                Err(why) => {
                    return Ended {
                        cost: Some(spent),
                        ..Ended::failed(format!("no judgement came: {why}"), None)
                    };
                }
            };
            spent += cost;
            let winner = if first_won { a } else { b };
            attempt.log(
                reports,
                format!(
                    "judge: {} over {}",
                    candidates[winner].step,
                    candidates[if first_won { b } else { a }].step
                ),
            );
            matches.push(Match {
                first: candidates[a].step.clone(),
                second: candidates[b].step.clone(),
                winner: candidates[winner].step.clone(),
                reasons,
            });
            next.push(winner);
        }
        next.extend(bye);
        field = next;
    }
    let Some(&winner) = field.first() else {
        return Ended::failed("there were no attempts to judge", None);
    };
    let judged = Judged {
        chosen: candidates[winner].step.clone(),
        model: model.clone(),
        matches,
    };
    Ended {
        cost: Some(spent),
        ..Ended::succeeded(serde_json::to_string(&judged).unwrap_or_default(), None)
    }
}

/// Each candidate's diff from where it started, its secrets masked.
async fn diffs(attempt: &Attempt, candidates: &[judge::Candidate]) -> Result<Vec<String>, Ended> {
    let Some(task_repo) = &attempt.repo else {
        return Err(Ended::fault(
            Fault::Repository,
            "the attempts' task names no repository",
        ));
    };
    let credentials =
        repo::credentials(attempt).map_err(|why| Ended::fault(Fault::Repository, why))?;
    let mirror = attempt
        .host
        .mirrors
        .ensure(&task_repo.url, &task_repo.commit, credentials.as_ref())
        .await
        .map_err(|e| Ended::fault(Fault::Repository, format!("repo: {e}")))?;
    let redactor = attempt.redactor(std::iter::empty());
    let mut diffs = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        repo::fetch_head(
            attempt,
            &attempt.key,
            &mirror,
            (&candidate.step, &candidate.head),
        )
        .await?;
        let diff = mirror
            .diff(&candidate.base, &candidate.head, judge::MAX_DIFF_BYTES + 1)
            .await
            .map_err(|e| {
                Ended::fault(
                    Fault::Repository,
                    format!("repo: the diff of attempt {}: {e}", candidate.step),
                )
            })?;
        diffs.push(redactor.redact(diff));
    }
    repo::evict(attempt).await;
    Ok(diffs)
}
