//! What a task's repository needs from outside: its ref resolved to the
//! commit every step starts from, once, when the task is made; and, for
//! triggers, its forge: who may write to it, a pull request's branch, a
//! comment. The control plane asks the remote with git and the forge over
//! its API; the services know only this.

use tidewright_core::RepoSpec;
use tidewright_core::repo::Forge;

use crate::error::Error;

#[async_trait::async_trait]
pub trait Repositories: Send + Sync {
    /// Whether this control plane lets a task use `repo` at all (where
    /// it is, where its pull request's token would go), asked of every
    /// task, a pinned commit too. A refusal names the field under the
    /// repository.
    fn allowed(&self, repo: &RepoSpec) -> Result<(), Error>;
    /// The commit `repo`'s ref names on its remote now. A refusal names
    /// the field under the repository (`url`, `ref`, `credentialsSecret`);
    /// a remote that does not answer is `Error::Unavailable`.
    async fn resolve(&self, repo: &RepoSpec) -> Result<String, Error>;
    /// Whether `user` (GitLab: the user `user_id`) may push to the
    /// project.
    async fn may_write(&self, at: &ForgeProject, user: &str, user_id: u64) -> Result<bool, Error>;
    /// The head branch of the project's pull request `number`.
    async fn pull_branch(&self, at: &ForgeProject, number: u64) -> Result<String, Error>;
    /// Comments `body` on the project's issue (or pull request) `number`.
    async fn comment(
        &self,
        at: &ForgeProject,
        number: u64,
        on_pull_request: bool,
        body: &str,
    ) -> Result<(), Error>;
}

/// A project on its forge, and the secret holding the token its calls
/// carry (read from the control plane's repository secrets directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeProject {
    pub forge: Forge,
    /// The API root, without a trailing slash.
    pub api: String,
    /// `owner/name`, or GitLab's full path.
    pub project: String,
    pub secret: String,
}
