//! tidewright's git: the one way tidewright runs git against a remote. Credentials
//! come from a secret and reach git through a credential helper fed by the
//! environment of that one git process: never argv, a URL, a config file,
//! a log line, or the environment of an agent. Git never prompts.
//!
//! `resolve` turns a task's ref into the commit every step starts from;
//! `mirror` keeps a worker's mirrors, `worktree` its steps' worktrees (each
//! a repository of its own that borrows its mirror's objects, not a
//! `git worktree`);
//! `forge` opens the pull request a task's work ends in.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

pub mod forge;
pub mod history;
pub mod land;
pub mod mirror;
mod spare;
pub mod worktree;

/// Which part of a task's `repo` a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Url,
    Ref,
    CredentialsSecret,
    /// How a followed pull request is merged.
    PullRequestMerge,
}

impl Part {
    /// The field's name in a task file.
    pub fn field(self) -> &'static str {
        match self {
            Part::Url => "url",
            Part::Ref => "ref",
            Part::CredentialsSecret => "credentialsSecret",
            Part::PullRequestMerge => "pullRequest.merge",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The repository, its ref or its credentials will not do; retrying
    /// the same will not help.
    #[error("{}: {message}", part.field())]
    Refused { part: Part, message: String },
    /// The remote did not answer in time; it may later.
    #[error("{0}")]
    Unavailable(String),
    /// A git operation on this machine's own repositories failed (a
    /// worktree, a commit, a missing commit after a fetch).
    #[error("{0}")]
    Local(String),
    /// A step's branch is not what its work must be: deleted, left, or
    /// rewritten so its base is gone.
    #[error("{0}")]
    Rewritten(String),
    /// This machine's disk (a mirror's, a worktree's) has no room left:
    /// another worker, or this one once room is made, may do it.
    #[error("this worker's disk is full: {0}")]
    NoSpace(String),
    /// git could not be run at all, or a file could not be written.
    #[error("running git: {0}")]
    Io(#[from] std::io::Error),
}

/// The line of git's `stderr` that says the disk is full, when one does.
pub(crate) fn no_space(stderr: &str) -> Option<Error> {
    stderr
        .lines()
        .map(str::trim)
        .find(|line| {
            let lower = line.to_lowercase();
            lower.contains("no space left on device") || lower.contains("disk quota exceeded")
        })
        .map(|line| Error::NoSpace(line.trim_start_matches("fatal: ").to_string()))
}

fn refused(part: Part, message: impl Into<String>) -> Error {
    Error::Refused {
        part,
        message: message.into(),
    }
}

/// What git answers a remote's request for credentials with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

/// The user name git sends with a token alone: forges read the token and
/// ignore the name.
const TOKEN_USER: &str = "tidewright";

impl Credentials {
    /// `user:password`, or a token alone.
    pub fn parse(secret: &str) -> Credentials {
        let secret = secret.trim_end_matches(['\n', '\r']);
        match secret.split_once(':') {
            Some((username, password)) if !username.is_empty() => Credentials {
                username: username.to_string(),
                password: password.to_string(),
            },
            _ => Credentials {
                username: TOKEN_USER.to_string(),
                password: secret.to_string(),
            },
        }
    }

    /// The secret `name` in `dir` (one file per secret, as a mounted
    /// Kubernetes Secret lays them out).
    pub fn read(dir: Option<&Path>, name: &str) -> Result<Credentials, Error> {
        tidewright_core::secret::read(dir, name)
            .map(|text| Credentials::parse(&text))
            .map_err(|why| refused(Part::CredentialsSecret, format!("{name:?}: {why}")))
    }
}

/// Never printed: a credential shows as its user name only.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

/// How long a call to a remote may take before it is given up.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variables the helper reads. Named for tidewright, so a
/// step's own environment never sets them by chance.
const USER_VAR: &str = "TIDEWRIGHT_GIT_USERNAME";
const PASSWORD_VAR: &str = "TIDEWRIGHT_GIT_PASSWORD";

/// Answers git's `get` with the user and password from its environment,
/// and ignores `store` and `erase`: nothing is written anywhere.
const HELPER: &str = "!f() { test \"$1\" = get || exit 0; printf 'username=%s\\npassword=%s\\n' \"$TIDEWRIGHT_GIT_USERNAME\" \"$TIDEWRIGHT_GIT_PASSWORD\"; }; f";

/// git, set up to talk to a remote: no prompt, no credential but the one
/// given (the user's and system's helpers are cleared first), and no
/// askpass program.
pub fn command(git: &Path, credentials: Option<&Credentials>) -> Command {
    let mut command = Command::new(git);
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env_remove(USER_VAR)
        .env_remove(PASSWORD_VAR)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut config = vec![("credential.helper", "")];
    if credentials.is_some() {
        config.push(("credential.helper", HELPER));
    }
    command.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.into_iter().enumerate() {
        command
            .env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    if let Some(credentials) = credentials {
        command
            .env(USER_VAR, &credentials.username)
            .env(PASSWORD_VAR, &credentials.password);
    }
    command
}

/// The git program: `TIDEWRIGHT_GIT` when set, else `git` on the PATH.
pub fn program() -> PathBuf {
    std::env::var_os("TIDEWRIGHT_GIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("git"))
}

/// The commit `git_ref` names on the remote at `url` now: a branch, a tag
/// (peeled to its commit), or any ref it advertises, `HEAD` for its default
/// branch.
pub async fn resolve(
    git: &Path,
    url: &str,
    git_ref: &str,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> Result<String, Error> {
    let mut command = command(git, credentials);
    command
        .arg("ls-remote")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "repo.url: {url} did not answer within {}s",
                timeout.as_secs()
            ))
        })??;
    if !output.status.success() {
        return Err(remote_refusal(
            url,
            &String::from_utf8_lossy(&output.stderr),
            credentials.is_some(),
        ));
    }
    let listing = String::from_utf8_lossy(&output.stdout);
    pick(&listing, git_ref).ok_or_else(|| {
        refused(
            Part::Ref,
            format!("{url} has no branch, tag or ref named {git_ref:?}"),
        )
    })
}

/// The commit of `git_ref` in `git ls-remote`'s listing: the ref as
/// named, then a branch, then a tag; an annotated tag's peeled commit
/// rather than the tag object.
fn pick(listing: &str, git_ref: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    [
        format!("{git_ref}^{{}}"),
        git_ref.to_string(),
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}^{{}}"),
        format!("refs/tags/{git_ref}"),
    ]
    .iter()
    .find_map(|name| {
        refs.iter()
            .find(|(_, r)| r == name)
            .map(|(commit, _)| commit.to_string())
    })
}

/// What git's complaint about a remote means for the task that named it.
/// The message keeps git's own last line, which names the cause; git
/// never prints a credential.
pub(crate) fn remote_refusal(url: &str, stderr: &str, had_credentials: bool) -> Error {
    // Not the remote's doing, whatever git's last line blames.
    if let Some(full) = no_space(stderr) {
        return full;
    }
    let said = stderr
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("git failed")
        .trim_start_matches("fatal: ")
        .to_string();
    let lower = stderr.to_lowercase();
    if lower.contains("authentication failed")
        || lower.contains("could not read username")
        || lower.contains("could not read password")
        || lower.contains("permission denied")
        // git's words for an HTTP 403; a bare "403" could be the port.
        || lower.contains("returned error: 403")
    {
        return if had_credentials {
            refused(
                Part::CredentialsSecret,
                format!("{url} refused these credentials: {said}"),
            )
        } else {
            refused(
                Part::Url,
                format!("{url} asks for credentials: name a credentialsSecret ({said})"),
            )
        };
    }
    if [
        "timed out",
        "connection refused",
        "failed to connect",
        "couldn't connect",
    ]
    .iter()
    .any(|says| lower.contains(says))
    {
        return Error::Unavailable(format!("repo.url: {url} is unreachable: {said}"));
    }
    // A push refused because the branch moved since it was fetched: git's
    // last line is a hint about fast-forwards, not what happened (with
    // --porcelain, the `[rejected]` line is on stdout; stderr has hints).
    if lower.contains("updates were rejected") || lower.contains("note about fast-forwards") {
        return Error::Local(format!(
            "{url} refused the push: it is no fast-forward of the branch, which moved since it was fetched"
        ));
    }
    refused(Part::Url, format!("{url} cannot be read: {said}"))
}

#[cfg(test)]
mod tests;
