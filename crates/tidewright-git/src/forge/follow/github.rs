//! Following a GitHub pull request: its state, the check runs and commit
//! statuses on its head, its reviews and their comments, replies in a
//! comment's thread, and its merge, as GitHub's published description has
//! these calls.

use serde_json::{Value, json};
use tidewright_core::repo::MergeMethod;

use super::{Check, CheckState, Comment, Merged, Pull, PullState, Review, text};
use crate::Error;
use crate::forge::encode;

fn pulls(pull: &Pull<'_>) -> String {
    format!("/repos/{}/pulls/{}", pull.project, pull.number)
}

pub(super) async fn state(pull: &Pull<'_>) -> Result<PullState, Error> {
    let pr = pull.api.call(http::Method::GET, &pulls(pull), None).await?;
    Ok(PullState {
        open: pr["state"] == "open",
        merged: pr["merged"].as_bool().unwrap_or(false),
        head: text(&pr["head"]["sha"]),
        merge_commit: text(&pr["merge_commit_sha"]),
    })
}

/// Every check on `sha`: its check runs (the latest of each name) and
/// its commit statuses (the latest of each context).
pub(super) async fn checks(pull: &Pull<'_>, sha: &str) -> Result<Vec<Check>, Error> {
    let commit = format!("/repos/{}/commits/{}", pull.project, encode(sha));
    let runs = pull
        .api
        .call(
            http::Method::GET,
            &format!("{commit}/check-runs?per_page=100"),
            None,
        )
        .await?;
    let mut checks: Vec<Check> = runs["check_runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| {
            let conclusion = text(&run["conclusion"]);
            let state = match (run["status"].as_str(), conclusion.as_str()) {
                (Some("completed"), "success" | "neutral" | "skipped") => CheckState::Passed,
                (Some("completed"), _) => CheckState::Failed,
                _ => CheckState::Pending,
            };
            let output = &run["output"];
            let said: Vec<String> = ["title", "summary", "text"]
                .iter()
                .map(|k| text(&output[*k]))
                .filter(|t| !t.is_empty())
                .collect();
            Check {
                name: text(&run["name"]),
                state,
                conclusion,
                text: said.join("\n"),
                url: Some(text(&run["details_url"]))
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| text(&run["html_url"])),
            }
        })
        .collect();
    let combined = pull
        .api
        .call(
            http::Method::GET,
            &format!("{commit}/status?per_page=100"),
            None,
        )
        .await?;
    for status in combined["statuses"].as_array().into_iter().flatten() {
        let conclusion = text(&status["state"]);
        checks.push(Check {
            name: text(&status["context"]),
            state: match conclusion.as_str() {
                "success" => CheckState::Passed,
                "failure" | "error" => CheckState::Failed,
                _ => CheckState::Pending,
            },
            conclusion,
            text: text(&status["description"]),
            url: text(&status["target_url"]),
        });
    }
    Ok(checks)
}

/// The reviews whose reviewer's last word is a request for changes,
/// each with its comments on lines.
pub(super) async fn changes_requested(pull: &Pull<'_>) -> Result<Vec<Review>, Error> {
    let reviews = pull
        .api
        .call(
            http::Method::GET,
            &format!("{}/reviews?per_page=100", pulls(pull)),
            None,
        )
        .await?;
    // A reviewer's last approval or request stands; comments alone
    // change neither.
    let mut last: Vec<(String, &Value)> = Vec::new();
    for review in reviews.as_array().into_iter().flatten() {
        if !matches!(
            review["state"].as_str(),
            Some("APPROVED" | "CHANGES_REQUESTED" | "DISMISSED")
        ) {
            continue;
        }
        let reviewer = text(&review["user"]["login"]);
        last.retain(|(r, _)| *r != reviewer);
        last.push((reviewer, review));
    }
    let requested: Vec<(String, &Value)> = last
        .into_iter()
        .filter(|(_, r)| r["state"] == "CHANGES_REQUESTED")
        .collect();
    if requested.is_empty() {
        return Ok(Vec::new());
    }
    let comments = comments(pull).await?;
    Ok(requested
        .into_iter()
        .map(|(reviewer, review)| {
            let id = review["id"].as_u64().unwrap_or_default();
            Review {
                id,
                reviewer,
                body: text(&review["body"]),
                commit: text(&review["commit_id"]),
                comments: comments
                    .iter()
                    .filter(|(of, _)| *of == id)
                    .map(|(_, c)| c.clone())
                    .collect(),
            }
        })
        .collect())
}

/// Each comment that starts a thread, with the review it belongs to.
async fn comments(pull: &Pull<'_>) -> Result<Vec<(u64, Comment)>, Error> {
    let all = pull
        .api
        .call(
            http::Method::GET,
            &format!("{}/comments?per_page=100", pulls(pull)),
            None,
        )
        .await?;
    let all = all.as_array().cloned().unwrap_or_default();
    let answered = |id: u64| all.iter().any(|c| c["in_reply_to_id"].as_u64() == Some(id));
    Ok(all
        .iter()
        .filter(|c| c["in_reply_to_id"].is_null())
        .map(|c| {
            let id = c["id"].as_u64().unwrap_or_default();
            (
                c["pull_request_review_id"].as_u64().unwrap_or_default(),
                Comment {
                    thread: id.to_string(),
                    path: text(&c["path"]),
                    line: c["line"].as_u64().or_else(|| c["original_line"].as_u64()),
                    body: text(&c["body"]),
                    answered: answered(id),
                },
            )
        })
        .collect())
}

/// Answers in the thread `comment` starts.
pub(super) async fn reply(pull: &Pull<'_>, thread: &str, body: &str) -> Result<(), Error> {
    pull.api
        .call(
            http::Method::POST,
            &format!("{}/comments/{thread}/replies", pulls(pull)),
            Some(json!({ "body": body })),
        )
        .await
        .map(drop)
}

/// Merges its head `sha` by `method`: refused, naming
/// `pullRequest.merge`, when the repository allows no such method (or,
/// for `auto`, none); not yet, when the forge says so for now.
pub(super) async fn merge(
    pull: &Pull<'_>,
    method: &MergeMethod,
    sha: &str,
    title: &str,
) -> Result<Merged, Error> {
    let repo = pull
        .api
        .call(http::Method::GET, &format!("/repos/{}", pull.project), None)
        .await?;
    // GitHub says which methods a repository allows to those who may
    // change its settings; otherwise it says nothing, and the merge
    // call itself refuses one it does not allow.
    let allows = |key: &str| repo[key].as_bool().unwrap_or(true);
    let chosen = match method {
        MergeMethod::Auto => [
            ("allow_merge_commit", "merge"),
            ("allow_squash_merge", "squash"),
            ("allow_rebase_merge", "rebase"),
        ]
        .into_iter()
        .find(|(key, _)| allows(key))
        .map(|(_, m)| m),
        MergeMethod::Squash => allows("allow_squash_merge").then_some("squash"),
        MergeMethod::Rebase => allows("allow_rebase_merge").then_some("rebase"),
        MergeMethod::Unknown(_) => None,
    };
    let Some(chosen) = chosen else {
        return Err(crate::refused(
            crate::Part::PullRequestMerge,
            format!(
                "{}: the repository {} does not allow it",
                method.as_str(),
                pull.project
            ),
        ));
    };
    let (status, answer) = pull
        .api
        .answer(
            http::Method::PUT,
            &format!("{}/merge", pulls(pull)),
            Some(json!({
                "merge_method": chosen,
                "sha": sha,
                "commit_title": title,
            })),
        )
        .await?;
    let said = crate::forge::said(&answer);
    match status.as_u16() {
        200..=299 => Ok(Merged::Done(text(&answer["sha"]))),
        // Not mergeable now (a review or check its protection
        // requires), or its head moved: the next look asks again. A
        // method the repository does not allow is 405 too, said so.
        405 | 409 if !said.contains("not allowed") => Ok(Merged::NotYet(said)),
        _ => Err(crate::refused(
            crate::Part::PullRequestMerge,
            format!("{chosen}: the forge refused the merge ({status}): {said}"),
        )),
    }
}
