//! A repository's conversation on its forge, as triggers need it: whether
//! a user may write to it (a comment command is taken only from one who
//! may), a pull request's head branch, and a comment on an issue or a pull
//! request (a triggered task's result, a refusal). GitHub's calls as its
//! published description has them; GitLab's as its REST documentation
//! does (members, notes).

use serde_json::json;
use tidewright_core::repo::Forge;

use super::{Api, encode};
use crate::{Credentials, Error};

/// One repository on its forge, with the token its calls carry (a token
/// alone, or the password of `user:password`).
pub struct Repository<'a> {
    api: Api<'a>,
    forge: &'a Forge,
    project: &'a str,
}

/// GitLab's Developer role: the least that may push.
const GITLAB_DEVELOPER: u64 = 30;

impl<'a> Repository<'a> {
    /// The repository `project` (`owner/name`, GitLab's full path) on the
    /// forge whose API is at `root`.
    pub fn new(
        forge: &'a Forge,
        root: &'a str,
        project: &'a str,
        credentials: &'a Credentials,
    ) -> Result<Repository<'a>, Error> {
        if let Forge::Unknown(name) = forge {
            return Err(Error::Local(format!(
                "{name:?} is not a forge tidewright knows"
            )));
        }
        Ok(Repository {
            api: Api::new(forge, root, &credentials.password)?,
            forge,
            project,
        })
    }

    /// Whether `user` (GitLab: the user `user_id`) may push to it: GitHub's
    /// `admin`, `maintain` or `write` permission; GitLab's Developer role
    /// or above. Someone the forge does not know there may not.
    pub async fn may_write(&self, user: &str, user_id: u64) -> Result<bool, Error> {
        let path = match self.forge {
            Forge::Gitlab => format!("/projects/{}/members/all/{user_id}", encode(self.project)),
            _ => format!(
                "/repos/{}/collaborators/{}/permission",
                self.project,
                encode(user)
            ),
        };
        let (status, answer) = self.api.answer(http::Method::GET, &path, None).await?;
        if status == http::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(Error::Local(format!(
                "GET {path}: the forge answered {status}: {}",
                super::said(&answer)
            )));
        }
        Ok(match self.forge {
            Forge::Gitlab => answer["access_level"].as_u64().unwrap_or(0) >= GITLAB_DEVELOPER,
            _ => matches!(
                answer["permission"].as_str(),
                Some("admin" | "maintain" | "write")
            ),
        })
    }

    /// The head branch of pull request `number`.
    pub async fn pull_branch(&self, number: u64) -> Result<String, Error> {
        let (path, field) = match self.forge {
            Forge::Gitlab => (
                format!("/projects/{}/merge_requests/{number}", encode(self.project)),
                "/source_branch",
            ),
            _ => (
                format!("/repos/{}/pulls/{number}", self.project),
                "/head/ref",
            ),
        };
        let pull = self.api.call(http::Method::GET, &path, None).await?;
        match pull.pointer(field).and_then(|b| b.as_str()) {
            Some(branch) if !branch.is_empty() => Ok(branch.to_string()),
            _ => Err(Error::Local(format!(
                "GET {path}: the forge answered no head branch"
            ))),
        }
    }

    /// Comments `body` on issue (or, `on_pull_request`, pull request)
    /// `number`.
    pub async fn comment(
        &self,
        number: u64,
        on_pull_request: bool,
        body: &str,
    ) -> Result<(), Error> {
        let path = match (self.forge, on_pull_request) {
            (Forge::Gitlab, true) => format!(
                "/projects/{}/merge_requests/{number}/notes",
                encode(self.project)
            ),
            (Forge::Gitlab, false) => {
                format!("/projects/{}/issues/{number}/notes", encode(self.project))
            }
            // GitHub's pull requests are issues too: one call for both.
            _ => format!("/repos/{}/issues/{number}/comments", self.project),
        };
        self.api
            .call(http::Method::POST, &path, Some(json!({ "body": body })))
            .await?;
        Ok(())
    }
}
