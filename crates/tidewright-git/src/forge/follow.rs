//! A pull request followed after it opens, through GitHub's REST API: its
//! state, the checks on its head (check runs and commit statuses), the
//! changes its reviewers request with their comments, replies on those
//! comments, and its merge as the repository allows it. Each answer is
//! read for the fields GitHub's published description gives them.

use serde_json::{Value, json};
use tidewright_core::repo::{Forge, MergeMethod};

use super::{Api, encode};
use crate::{Credentials, Error};

/// The pull request as the forge has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullState {
    pub open: bool,
    pub merged: bool,
    /// Its head commit.
    pub head: String,
    /// The commit its merge made, once merged.
    pub merge_commit: String,
}

/// Where a check on the head stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Pending,
    Passed,
    Failed,
}

/// One check on the head: a check run or a commit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub state: CheckState,
    /// The forge's word for how it ended (`failure`, `timed_out`, …).
    pub conclusion: String,
    /// What it reported: a check run's output (title, summary, text), a
    /// status's description; and where to read more.
    pub text: String,
    pub url: String,
}

/// A reviewer's request for changes, with its comments on lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: u64,
    pub reviewer: String,
    pub body: String,
    /// The commit reviewed.
    pub commit: String,
    pub comments: Vec<Comment>,
}

/// A comment on a line, which starts a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub path: String,
    pub line: Option<u64>,
    pub body: String,
    /// Someone answered in its thread.
    pub answered: bool,
}

/// What the forge made of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// Merged, as this commit.
    Done(String),
    /// Not now, for the forge's reason (a required review or check, its
    /// head moved): asked again at the next look.
    NotYet(String),
}

/// One followed pull request.
pub struct Pull<'a> {
    api: Api<'a>,
    project: String,
    number: u64,
}

impl<'a> Pull<'a> {
    /// The pull request `number` of the repository at `repo_url`, on the
    /// forge whose API is at `root`.
    pub fn new(
        forge: &'a Forge,
        root: &'a str,
        (repo_url, number): (&str, u64),
        credentials: Option<&'a Credentials>,
    ) -> Result<Pull<'a>, Error> {
        if *forge != Forge::Github {
            return Err(crate::refused(
                crate::Part::PullRequestMerge,
                format!(
                    "following a pull request is built for GitHub; {} is not yet",
                    forge.as_str()
                ),
            ));
        }
        let project = super::project_path(repo_url)
            .ok_or_else(|| Error::Local(format!("{repo_url:?} names no owner and project")))?;
        let token = credentials.map(|c| c.password.as_str()).ok_or_else(|| {
            crate::refused(
                crate::Part::CredentialsSecret,
                "following a pull request needs the repository's token: name a credentialsSecret",
            )
        })?;
        Ok(Pull {
            api: Api::new(forge, root, token)?,
            project,
            number,
        })
    }

    fn pulls(&self) -> String {
        format!("/repos/{}/pulls/{}", self.project, self.number)
    }

    pub async fn state(&self) -> Result<PullState, Error> {
        let pr = self
            .api
            .call(http::Method::GET, &self.pulls(), None)
            .await?;
        Ok(PullState {
            open: pr["state"] == "open",
            merged: pr["merged"].as_bool().unwrap_or(false),
            head: text(&pr["head"]["sha"]),
            merge_commit: text(&pr["merge_commit_sha"]),
        })
    }

    /// Every check on `sha`: its check runs (the latest of each name) and
    /// its commit statuses (the latest of each context).
    pub async fn checks(&self, sha: &str) -> Result<Vec<Check>, Error> {
        let commit = format!("/repos/{}/commits/{}", self.project, encode(sha));
        let runs = self
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
        let combined = self
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
    pub async fn changes_requested(&self) -> Result<Vec<Review>, Error> {
        let reviews = self
            .api
            .call(
                http::Method::GET,
                &format!("{}/reviews?per_page=100", self.pulls()),
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
        let comments = self.comments().await?;
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
    async fn comments(&self) -> Result<Vec<(u64, Comment)>, Error> {
        let all = self
            .api
            .call(
                http::Method::GET,
                &format!("{}/comments?per_page=100", self.pulls()),
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
                        id,
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
    pub async fn reply(&self, comment: u64, body: &str) -> Result<(), Error> {
        self.api
            .call(
                http::Method::POST,
                &format!("{}/comments/{comment}/replies", self.pulls()),
                Some(json!({ "body": body })),
            )
            .await
            .map(drop)
    }

    /// Merges its head `sha` by `method`: refused, naming
    /// `pullRequest.merge`, when the repository allows no such method (or,
    /// for `auto`, none); not yet, when the forge says so for now.
    pub async fn merge(
        &self,
        method: &MergeMethod,
        sha: &str,
        title: &str,
    ) -> Result<Merged, Error> {
        let repo = self
            .api
            .call(http::Method::GET, &format!("/repos/{}", self.project), None)
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
                    self.project
                ),
            ));
        };
        let (status, answer) = self
            .api
            .answer(
                http::Method::PUT,
                &format!("{}/merge", self.pulls()),
                Some(json!({
                    "merge_method": chosen,
                    "sha": sha,
                    "commit_title": title,
                })),
            )
            .await?;
        let said = super::said(&answer);
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
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}
