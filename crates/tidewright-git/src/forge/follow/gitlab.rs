//! Following a GitLab merge request, as GitLab's REST documentation has
//! these calls (merge requests, pipelines, jobs, discussions):
//!
//! - its checks are the newest pipeline on its head, a failed one's failed
//!   jobs each a check with the end of its log;
//! - a reviewer's request for changes is their unresolved threads on lines
//!   (GitLab's REST API does not say a reviewer's state), each made on the
//!   head its position names;
//! - its merge honours the project's merge method and squash option, and
//!   GitLab's own answer (a pipeline that must succeed, threads that must
//!   be resolved) when it refuses for now.

use serde_json::{Value, json};
use tidewright_core::repo::MergeMethod;

use super::{Check, CheckState, Comment, Merged, Pull, PullState, Review, text};
use crate::Error;
use crate::forge::encode;

/// The most of a job's log read, from its end.
const TRACE_BYTES: usize = 4000;

fn project(pull: &Pull<'_>) -> String {
    format!("/projects/{}", encode(&pull.project))
}

fn request(pull: &Pull<'_>) -> String {
    format!("{}/merge_requests/{}", project(pull), pull.number)
}

pub(super) async fn state(pull: &Pull<'_>) -> Result<PullState, Error> {
    let mr = pull
        .api
        .call(http::Method::GET, &request(pull), None)
        .await?;
    let merged = mr["state"] == "merged";
    Ok(PullState {
        open: mr["state"] == "opened",
        merged,
        head: text(&mr["sha"]),
        merge_commit: if merged {
            merged_as(&mr)
        } else {
            String::new()
        },
    })
}

/// The newest pipeline on `sha`: pending while it runs; passed; or each of
/// its failed jobs a failed check, with the end of its log.
pub(super) async fn checks(pull: &Pull<'_>, sha: &str) -> Result<Vec<Check>, Error> {
    let pipelines = pull
        .api
        .call(
            http::Method::GET,
            &format!(
                "{}/pipelines?sha={}&per_page=20",
                project(pull),
                encode(sha)
            ),
            None,
        )
        .await?;
    let Some(newest) = pipelines
        .as_array()
        .into_iter()
        .flatten()
        .max_by_key(|p| p["id"].as_u64().unwrap_or_default())
    else {
        return Ok(Vec::new());
    };
    let id = newest["id"].as_u64().unwrap_or_default();
    let status = text(&newest["status"]);
    let url = text(&newest["web_url"]);
    let state = match status.as_str() {
        "success" | "skipped" => CheckState::Passed,
        "failed" | "canceled" => CheckState::Failed,
        _ => CheckState::Pending,
    };
    if state != CheckState::Failed {
        return Ok(vec![Check {
            name: format!("pipeline #{id}"),
            state,
            conclusion: status,
            text: String::new(),
            url,
        }]);
    }
    let jobs = pull
        .api
        .call(
            http::Method::GET,
            &format!(
                "{}/pipelines/{id}/jobs?scope[]=failed&per_page=100",
                project(pull)
            ),
            None,
        )
        .await?;
    let mut checks = Vec::new();
    for job in jobs.as_array().into_iter().flatten() {
        let job_id = job["id"].as_u64().unwrap_or_default();
        let log = pull
            .api
            .call(
                http::Method::GET,
                &format!("{}/jobs/{job_id}/trace", project(pull)),
                None,
            )
            .await
            .map(|trace| text(&trace))
            .unwrap_or_else(|e| format!("(its log could not be read: {e})"));
        checks.push(Check {
            name: text(&job["name"]),
            state: CheckState::Failed,
            conclusion: text(&job["status"]),
            text: tidewright_core::last_bytes(&log, TRACE_BYTES).to_string(),
            url: text(&job["web_url"]),
        });
    }
    if checks.is_empty() {
        // Failed, and no job says why (cancelled, or a config error).
        checks.push(Check {
            name: format!("pipeline #{id}"),
            state: CheckState::Failed,
            conclusion: status,
            text: text(&newest["detailed_status"]["text"]),
            url,
        });
    }
    Ok(checks)
}

/// Each reviewer's unresolved threads on lines, as one request for
/// changes, made on the head the newest of them names.
pub(super) async fn changes_requested(pull: &Pull<'_>) -> Result<Vec<Review>, Error> {
    let discussions = pull
        .api
        .call(
            http::Method::GET,
            &format!("{}/discussions?per_page=100", request(pull)),
            None,
        )
        .await?;
    let mut reviews: Vec<Review> = Vec::new();
    for discussion in discussions.as_array().into_iter().flatten() {
        let notes = discussion["notes"].as_array().cloned().unwrap_or_default();
        let Some(first) = notes.first() else {
            continue;
        };
        let position = &first["position"];
        if !first["resolvable"].as_bool().unwrap_or(false)
            || first["resolved"].as_bool().unwrap_or(false)
            || position.is_null()
        {
            continue;
        }
        let reviewer = text(&first["author"]["username"]);
        let comment = Comment {
            thread: text(&discussion["id"]),
            path: text(&position["new_path"]),
            line: position["new_line"].as_u64(),
            body: text(&first["body"]),
            answered: notes.len() > 1,
        };
        let commit = text(&position["head_sha"]);
        match reviews.iter_mut().find(|r| r.reviewer == reviewer) {
            Some(review) => {
                review.commit = commit;
                review.comments.push(comment);
            }
            None => reviews.push(Review {
                id: first["id"].as_u64().unwrap_or_default(),
                reviewer,
                body: String::new(),
                commit,
                comments: vec![comment],
            }),
        }
    }
    Ok(reviews)
}

pub(super) async fn reply(pull: &Pull<'_>, thread: &str, body: &str) -> Result<(), Error> {
    pull.api
        .call(
            http::Method::POST,
            &format!("{}/discussions/{}/notes", request(pull), encode(thread)),
            Some(json!({ "body": body })),
        )
        .await
        .map(drop)
}

/// Merges as the project allows: `auto` by its own merge method (squashed
/// when its squash option says always), `squash` unless it never squashes,
/// `rebase` when its method keeps history linear (fast-forward, or merge
/// commits over a rebased branch).
pub(super) async fn merge(
    pull: &Pull<'_>,
    method: &MergeMethod,
    sha: &str,
    title: &str,
) -> Result<Merged, Error> {
    let settings = pull
        .api
        .call(http::Method::GET, &project(pull), None)
        .await?;
    let squash_option = text(&settings["squash_option"]);
    let merge_method = text(&settings["merge_method"]);
    let squash = match method {
        MergeMethod::Auto => squash_option == "always",
        MergeMethod::Squash if squash_option != "never" => true,
        MergeMethod::Rebase
            if matches!(merge_method.as_str(), "ff" | "rebase_merge")
                && squash_option != "always" =>
        {
            false
        }
        _ => return Err(super::not_allowed(method, &pull.project)),
    };
    let mut body = json!({ "sha": sha, "squash": squash });
    if squash {
        body["squash_commit_message"] = Value::from(title);
    }
    let (status, answer) = pull
        .api
        .answer(
            http::Method::PUT,
            &format!("{}/merge", request(pull)),
            Some(body),
        )
        .await?;
    let said = crate::forge::said(&answer);
    match status.as_u16() {
        200..=299 => Ok(Merged::Done(merged_as(&answer))),
        // Not mergeable now (its pipeline, unresolved threads, a rebase
        // needed), or its head moved: the next look asks again.
        405 | 406 | 409 | 422 => Ok(Merged::NotYet(said)),
        _ => Err(crate::refused(
            crate::Part::PullRequestMerge,
            format!("the forge refused the merge ({status}): {said}"),
        )),
    }
}

/// The commit a merged request is, as GitLab answers it: its merge commit,
/// else its squashed commit, else (a fast-forward) its head.
fn merged_as(mr: &Value) -> String {
    [
        &mr["merge_commit_sha"],
        &mr["squash_commit_sha"],
        &mr["sha"],
    ]
    .into_iter()
    .map(text)
    .find(|c| !c.is_empty())
    .unwrap_or_default()
}
