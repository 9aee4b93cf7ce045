//! A reviewing step's run (see `tidewright_core::review`): its agent is
//! told the reviewed step's ask and diff before its instructions, works in
//! a checkout of that step's work whose changes are never kept, and its
//! answer is read for a verdict. Approved, the attempt succeeds; changes
//! requested, it fails with the verdict as its output, which the control
//! plane sends back to the author.

use tidewright_core::review::Verdict;
use tidewright_git::worktree::Worktree;

use super::attempt::{Attempt, Ended};
use crate::metrics::Fault;

/// The most of the reviewed diff a reviewer is shown.
const MAX_DIFF_BYTES: usize = 256 * 1024;

/// What the reviewer is told first: the reviewed step's ask and its diff,
/// from the range its inputs name.
pub(crate) async fn briefing(attempt: &Attempt, tree: &Worktree) -> Result<String, Ended> {
    let inputs: serde_json::Value = serde_json::from_str(&attempt.inputs_json).unwrap_or_default();
    let field = |name: &str| inputs[name].as_str().unwrap_or_default().to_string();
    let (step, base, head) = (field("step"), field("base"), field("head"));
    if base.is_empty() || head.is_empty() {
        return Err(Ended::fault(
            Fault::Repository,
            format!("the review of step {step:?} names no work to review"),
        ));
    }
    let diff = tree
        .mirror()
        .diff(&base, &head, MAX_DIFF_BYTES)
        .await
        .map_err(|e| {
            Ended::fault(
                Fault::Repository,
                format!("reading the diff to review: {e}"),
            )
        })?;
    Ok(tidewright_core::review::briefing(
        &step,
        &field("asked"),
        &diff,
    ))
}

/// Reads the reviewer's verdict from its answer: its output becomes the
/// verdict, and a request for changes fails the attempt, saying it.
pub(crate) fn read_verdict(ended: &mut Ended) {
    if !ended.is_success() {
        return;
    }
    let output: serde_json::Value = serde_json::from_str(&ended.output_json).unwrap_or_default();
    let answer = output["result"].as_str().unwrap_or_default();
    match Verdict::read(answer) {
        Ok(verdict) => {
            ended.output_json = serde_json::to_string(&verdict).unwrap_or_default();
            if !verdict.approved() {
                let output_json = std::mem::take(&mut ended.output_json);
                *ended = Ended {
                    output_json,
                    cost: ended.cost.take(),
                    ..Ended::failed(verdict.line(), ended.exit_code)
                };
            }
        }
        Err(why) => {
            *ended = Ended {
                cost: ended.cost.take(),
                ..Ended::failed(why, ended.exit_code)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(result: &str) -> Ended {
        let mut ended =
            Ended::succeeded(serde_json::json!({"result": result}).to_string(), Some(0));
        read_verdict(&mut ended);
        ended
    }

    #[test]
    fn an_approval_succeeds_and_requested_changes_fail_with_the_verdict_as_output() {
        let approved = answered(r#"All good. {"verdict": "approve", "summary": "Fine."}"#);
        assert!(approved.is_success());
        let kept: Verdict = serde_json::from_str(&approved.output_json).expect("the verdict");
        assert!(kept.approved());
        let changes = answered(
            r#"{"verdict": "request_changes", "summary": "Unclear.", "comments": [{"path": "a.py", "line": 2, "body": "Name it."}]}"#,
        );
        assert_eq!(changes.error(), "changes requested (1 comment): Unclear.");
        let kept: Verdict = serde_json::from_str(&changes.output_json).expect("the verdict");
        assert_eq!(kept.comments[0].body, "Name it.");
        let none = answered("LGTM");
        assert!(
            none.error()
                .starts_with("the reviewer's answer holds no verdict"),
            "{}",
            none.error()
        );
    }
}
