//! Tasks' repositories, as the control plane reaches them: a task's ref is
//! resolved to a commit with `git ls-remote` when the task is made, with
//! the credentials its `credentialsSecret` names read from this control
//! plane's repository secrets directory (and handed to git by tidewright-git's
//! helper, never in argv or a URL). Local repositories (`file://`, plain
//! `http://`) are refused unless allowed.

use std::path::PathBuf;

use tidewright_core::RepoSpec;
use tidewright_core::repo::transport;
use tidewright_engine::service::{ForgeProject, Repositories};
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

    async fn may_write(
        &self,
        at: &ForgeProject,
        user: &str,
        user_id: u64,
    ) -> Result<bool, Refusal> {
        let token = self.token(at)?;
        self.repository(at, &token)?
            .may_write(user, user_id)
            .await
            .map_err(forge_refusal)
    }

    async fn pull_branch(&self, at: &ForgeProject, number: u64) -> Result<String, Refusal> {
        let token = self.token(at)?;
        self.repository(at, &token)?
            .pull_branch(number)
            .await
            .map_err(forge_refusal)
    }

    async fn comment(
        &self,
        at: &ForgeProject,
        number: u64,
        on_pull_request: bool,
        body: &str,
    ) -> Result<(), Refusal> {
        let token = self.token(at)?;
        self.repository(at, &token)?
            .comment(number, on_pull_request, body)
            .await
            .map_err(forge_refusal)
    }
}

impl GitRepositories {
    /// The credentials the trigger's secret holds.
    fn token(&self, at: &ForgeProject) -> Result<Credentials, Refusal> {
        Credentials::read(self.settings.secrets_dir.as_deref(), &at.secret).map_err(forge_refusal)
    }

    fn repository<'a>(
        &self,
        at: &'a ForgeProject,
        token: &'a Credentials,
    ) -> Result<tidewright_git::forge::issues::Repository<'a>, Refusal> {
        // The token goes to the forge's API in a header: never in the clear.
        if at.api.starts_with("http://") && !self.settings.allow_local {
            return Err(Refusal::invalid(
                "apiUrl",
                format!(
                    "{}: plain http:// would send the forge token in the clear (this control plane allows it with --allow-local-repos)",
                    at.api
                ),
            ));
        }
        tidewright_git::forge::issues::Repository::new(&at.forge, &at.api, &at.project, token)
            .map_err(forge_refusal)
    }
}

/// A forge call's failure, as the services are told it: a bad token or
/// secret names `credentialsSecret`; a forge that does not answer is
/// unavailable; anything else it refused is a failed precondition.
fn forge_refusal(e: tidewright_git::Error) -> Refusal {
    match e {
        tidewright_git::Error::Refused { part, message } => Refusal::invalid(part.field(), message),
        tidewright_git::Error::Unavailable(message) => Refusal::Unavailable(message),
        other => Refusal::FailedPrecondition(other.to_string()),
    }
}
