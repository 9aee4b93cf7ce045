//! A pull request followed after it opens: its state, the checks on its
//! head, the changes its reviewers request with their comments, replies on
//! those comments, and its merge as the repository allows it. One forge a
//! module (`github`, `gitlab`), each read for the fields its API's
//! documentation gives them; the follow-up sees only what is here.

mod github;
mod gitlab;

use tidewright_core::repo::{Forge, MergeMethod};

use super::Api;
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
    /// Its thread: GitHub's comment id, GitLab's discussion id.
    pub thread: String,
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
    forge: &'a Forge,
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
        if let Forge::Unknown(name) = forge {
            return Err(Error::Local(format!(
                "{name:?} is not a forge tidewright knows"
            )));
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
            forge,
            project,
            number,
        })
    }

    pub async fn state(&self) -> Result<PullState, Error> {
        match self.forge {
            Forge::Gitlab => gitlab::state(self).await,
            _ => github::state(self).await,
        }
    }

    /// Every check on `sha`.
    pub async fn checks(&self, sha: &str) -> Result<Vec<Check>, Error> {
        match self.forge {
            Forge::Gitlab => gitlab::checks(self, sha).await,
            _ => github::checks(self, sha).await,
        }
    }

    /// The reviews whose reviewer's last word is a request for changes,
    /// each with its comments on lines.
    pub async fn changes_requested(&self) -> Result<Vec<Review>, Error> {
        match self.forge {
            Forge::Gitlab => gitlab::changes_requested(self).await,
            _ => github::changes_requested(self).await,
        }
    }

    /// Answers in `thread`.
    pub async fn reply(&self, thread: &str, body: &str) -> Result<(), Error> {
        match self.forge {
            Forge::Gitlab => gitlab::reply(self, thread, body).await,
            _ => github::reply(self, thread, body).await,
        }
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
        match self.forge {
            Forge::Gitlab => gitlab::merge(self, method, sha, title).await,
            _ => github::merge(self, method, sha, title).await,
        }
    }
}

/// `method` as the repository does not allow it.
fn not_allowed(method: &MergeMethod, project: &str) -> Error {
    crate::refused(
        crate::Part::PullRequestMerge,
        format!(
            "{}: the repository {project} does not allow it",
            method.as_str()
        ),
    )
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}
