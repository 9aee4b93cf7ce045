//! Tasks' repositories, as the control plane reaches them: a task's ref is
//! resolved to a commit with `git ls-remote` when the task is made, with
//! the credentials its `credentialsSecret` names read from this control
//! plane's repository secrets directory (and handed to git by tidewright-git's
//! helper, never in argv or a URL). Local repositories (`file://`, plain
//! `http://`) are refused unless allowed.

use std::path::PathBuf;

use tidewright_core::RepoSpec;
use tidewright_core::repo::transport;
use tidewright_engine::service::Repositories;
use tidewright_git::{Credentials, Part};

/// What the services are answered.
type Refusal = tidewright_engine::Error;

/// How repositories are reached.
#[derive(Debug, Clone)]
pub struct Settings {
    /// One file per secret: the credentials tasks name in
    /// `repo.credentialsSecret`.
    pub secrets_dir: Option<PathBuf>,
    /// Accept `file://` and plain `http://` repositories: on one machine,
    /// and in tests. Off by default: a task could otherwise read any
    /// repository on the control plane's disk.
    pub allow_local: bool,
    /// The git program.
    pub git: PathBuf,
    /// The secret in `secrets_dir` that forge webhooks are signed with
    /// (`/hooks/github`, `/hooks/gitlab`); none: they are not taken.
    pub forge_hooks_secret: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secrets_dir: None,
            allow_local: false,
            git: tidewright_git::program(),
            forge_hooks_secret: None,
        }
    }
}

pub struct GitRepositories {
    settings: Settings,
}

impl GitRepositories {
    pub fn new(settings: Settings) -> GitRepositories {
        GitRepositories { settings }
    }
}

fn refusal(e: tidewright_git::Error) -> Refusal {
    match e {
        tidewright_git::Error::Refused { part, message } => Refusal::invalid(part.field(), message),
        tidewright_git::Error::Unavailable(message) => Refusal::Unavailable(message),
        tidewright_git::Error::Io(e) => Refusal::FailedPrecondition(format!(
            "this control plane cannot run git to resolve the task's repository: {e}"
        )),
        // Resolving reads the remote only: nothing local to fail or rewrite.
        tidewright_git::Error::Local(message) | tidewright_git::Error::Rewritten(message) => {
            Refusal::FailedPrecondition(message)
        }
        // Not the caller's doing: another try may find room.
        full @ tidewright_git::Error::NoSpace(_) => Refusal::Unavailable(full.to_string()),
    }
}

#[async_trait::async_trait]
impl Repositories for GitRepositories {
    fn allowed(&self, repo: &RepoSpec) -> Result<(), Refusal> {
        let how = transport(&repo.url, Part::Url.field())?;
        if how.is_local() && !self.settings.allow_local {
            return Err(Refusal::invalid(
                Part::Url.field(),
                format!(
                    "{}: file:// and plain http:// repositories are refused on this control plane (it allows them with --allow-local-repos)",
                    repo.url
                ),
            ));
        }
        // The token goes to the forge's API in a header: never in the clear.
        let api = repo
            .pull_request
            .as_ref()
            .map_or("", |p| p.api_url.as_str());
        if api.starts_with("http://") && !self.settings.allow_local {
            return Err(Refusal::invalid(
                "pullRequest.apiUrl",
                format!(
                    "{api}: plain http:// would send the repository's token in the clear (this control plane allows it with --allow-local-repos)"
                ),
            ));
        }
        Ok(())
    }

    async fn resolve(&self, repo: &RepoSpec) -> Result<String, Refusal> {
        self.allowed(repo)?;
        let credentials = match repo.credentials_secret.as_str() {
            "" => None,
            name => Some(
                Credentials::read(self.settings.secrets_dir.as_deref(), name).map_err(refusal)?,
            ),
        };
        tidewright_git::resolve(
            &self.settings.git,
            &repo.url,
            repo.git_ref_or_default(),
            credentials.as_ref(),
            tidewright_git::REMOTE_TIMEOUT,
        )
        .await
        .map_err(refusal)
    }
}
