//! What a task's repository needs from outside: its ref resolved to the
//! commit every step starts from, once, when the task is made. The control
//! plane asks the remote with git; the services know only this.

use tidewright_core::RepoSpec;

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
}
