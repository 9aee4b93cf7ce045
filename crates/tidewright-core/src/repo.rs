//! A repository as a task names it: where it is, which ref the task starts
//! from, and the commit that ref was resolved to when the task was made
//! (so every step starts from the same commit, never from a moving branch).
//! The checks here need no network (the whole `repo` is checked in
//! `validate`): what the URL may point at and whether the ref exists are
//! the control plane's to find out.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The ref a task starts from when it names none: the remote's default
/// branch.
pub const DEFAULT_REF: &str = "HEAD";

/// The longest URL a task may name.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest ref a task may name.
pub const MAX_REF_BYTES: usize = 255;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepoSpec {
    /// `https://…`, `ssh://…` or `user@host:path`; `file://…` and plain
    /// `http://` only where the control plane allows local repositories.
    /// Never with a user name or password in it: those come from
    /// `credentialsSecret`.
    pub url: String,
    /// A branch, a tag, or any ref the remote advertises; the remote's
    /// default branch when empty.
    #[serde(default, rename = "ref", skip_serializing_if = "String::is_empty")]
    pub git_ref: String,
    /// The commit `ref` was resolved to when the task was made. Set by the
    /// control plane; a submit may set it to pin one (then `ref` only names
    /// the branch it came from).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
    /// The secret (by name) holding the credentials git uses for this
    /// repository: `user:password`, or a token alone. Read by whoever
    /// talks to the remote, from its own secrets directory; never stored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials_secret: String,
    /// Push the task's branch, `tidewright/<task>`, to the remote once its steps
    /// are done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push: bool,
    /// Push each step's branch, `tidewright/<task>-<step>`, to the remote as
    /// the step succeeds, for the work to be seen (or built) step by step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push_steps: bool,
    /// Open a pull request (GitHub) or merge request (GitLab) from the
    /// task's branch once its steps are done; the branch is pushed first,
    /// whatever `push` says. With `land`, the landing merges it: the
    /// checked merge goes to its branch, then the base moves to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestSpec>,
    /// `touches`: a step of this task waits for any step of another task
    /// that also says so, on the same repository and ref, whose `touches`
    /// may overlap its own (as steps of one task always do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<Exclusive>,
    /// Land the task's work on its base branch through the queue of that
    /// base: in turn with the other tasks landing there, its work merged
    /// onto the base's tip and checked, and the base moved forward only
    /// when the checks pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub land: Option<LandSpec>,
    /// What each step needs installed (`npm ci`), made once per key on a
    /// worker and handed to each step as a seed (see [`crate::setup`]);
    /// without it, the repository's own `.tidewright/setup.yaml` when it
    /// has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<crate::setup::SetupSpec>,
}

/// How a task's work lands on its base branch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LandSpec {
    /// `queue`: in turn with the other tasks landing on the same base.
    #[serde(default)]
    pub method: LandMethod,
    /// The branch it lands on: the task's `ref` when empty (which must then
    /// be a branch).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base: String,
    /// What runs on the task's work merged onto the base's tip; the task's
    /// verified steps' checks when empty (one or the other is needed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::verify::CheckSpec>,
    /// At most this many tasks land together, in one checked merge, when
    /// their `touches` cannot overlap; a red batch is split to find the
    /// task that broke it. 0: the default, 8; 1: each task alone.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub batch: u32,
    /// Rounds in which a landing that failed (a conflict with the base's
    /// tip, or its checks failing there) is sent back to the agent whose
    /// work it is, in its own session, to fix on the tip and land again;
    /// 3 when left out, 0 fails the task at once. The same failure twice
    /// ends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fixes: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Tasks landing together at most, unless `repo.land.batch` says.
pub const DEFAULT_LAND_BATCH: u32 = 8;

/// The most `repo.land.batch` may say.
pub const MAX_LAND_BATCH: u32 = 64;

/// A failed landing's rounds of fixes, unless `repo.land.maxFixes` says.
pub const DEFAULT_LAND_FIXES: u32 = 3;

/// The most `repo.land.maxFixes` may say.
pub const MAX_LAND_FIXES: u32 = 10;

impl LandSpec {
    /// How many tasks may land together with this one's.
    pub fn batch_size(&self) -> usize {
        match self.batch {
            0 => DEFAULT_LAND_BATCH as usize,
            n => n as usize,
        }
    }

    /// The rounds of fixes a failed landing gets.
    pub fn fixes(&self) -> u32 {
        self.max_fixes.unwrap_or(DEFAULT_LAND_FIXES)
    }
}

/// Another task's work landing in the same checked merge as the task whose
/// deliver step lands it (a batch): its deliver step's attempt, which the
/// landing one runs for it, and the one head its work ends at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LandRider {
    pub task_id: String,
    pub task_name: String,
    /// Its deliver step's running attempt: the landing fetches its work
    /// from the control plane as that attempt.
    pub attempt: u32,
    /// The step whose work it lands, and that work's head.
    pub step: String,
    pub head: String,
    /// Its branch is pushed too (`repo.push`).
    pub push: bool,
}

/// How a task lands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LandMethod {
    /// Through the queue of its base: a fast-forward push of its checked
    /// merge with the tip.
    #[default]
    Queue,
    /// A value that came over the wire and is not one; validation refuses
    /// it by name. Never read from YAML (serde refuses it there).
    #[serde(skip)]
    Unknown(String),
}

impl LandMethod {
    pub fn as_str(&self) -> &str {
        match self {
            LandMethod::Queue => "queue",
            LandMethod::Unknown(other) => other,
        }
    }

    pub fn parse(name: &str) -> LandMethod {
        match name {
            "" | "queue" => LandMethod::Queue,
            other => LandMethod::Unknown(other.to_string()),
        }
    }
}

/// What a task keeps to itself on its repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Exclusive {
    /// The paths its steps' `touches` name, against other tasks that say so.
    Touches,
    /// A value that came over the wire and is not one; validation refuses
    /// it by name. Never read from YAML (serde refuses it there).
    #[serde(skip)]
    Unknown(String),
}

impl Exclusive {
    pub fn as_str(&self) -> &str {
        match self {
            Exclusive::Touches => "touches",
            Exclusive::Unknown(other) => other,
        }
    }

    pub fn parse(name: &str) -> Exclusive {
        match name {
            "touches" => Exclusive::Touches,
            other => Exclusive::Unknown(other.to_string()),
        }
    }
}

impl RepoSpec {
    /// The branch the task lands on: `land.base`, else its `ref` as a
    /// branch; `None` when it does not land (or names neither).
    pub fn land_base(&self) -> Option<String> {
        let land = self.land.as_ref()?;
        let base = match land.base.as_str() {
            "" => self
                .git_ref
                .strip_prefix("refs/heads/")
                .unwrap_or(&self.git_ref),
            base => base.strip_prefix("refs/heads/").unwrap_or(base),
        };
        (!base.is_empty()).then(|| base.to_string())
    }

    /// Where tasks landing on the same base meet: its repository and
    /// branch, in the queue of which they land in turn.
    pub fn land_key(&self) -> Option<(String, String)> {
        Some((unadorned(&self.url).to_string(), self.land_base()?))
    }

    /// Where tasks that keep their `touches` to themselves meet: the same
    /// repository and ref. `None` unless this one does.
    pub fn exclusive_key(&self) -> Option<(String, String)> {
        (self.exclusive == Some(Exclusive::Touches)).then(|| {
            (
                unadorned(&self.url).to_string(),
                self.git_ref_or_default().to_string(),
            )
        })
    }
}

/// The pull request a task opens when its steps are done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullRequestSpec {
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 256)))]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// The branch it asks to merge into: the task's `ref` when empty (which
    /// must then be a branch).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base: String,
    /// Whose API to call; read from the URL's host (github.com,
    /// gitlab.com) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<Forge>,
    /// The forge's API root, for GitHub Enterprise or a GitLab of one's
    /// own: `https://api.github.com` and `https://gitlab.com/api/v4` when
    /// empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_url: String,
    /// Follow it once it is open, until it merges or closes: a check that
    /// fails on it, or changes a reviewer requests, go back to the agent
    /// whose work it is, in its own session, and its fix is pushed to the
    /// same branch. The task stays in its deliver step meanwhile. Implied
    /// by `merge`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub follow: bool,
    /// Merge it through the forge once its checks pass and no change is
    /// requested, as the forge allows it (its branch protection decides
    /// when): `auto` (the first method the repository allows of a merge
    /// commit, squash and rebase), `squash` or `rebase`. Unset: a person
    /// merges it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeMethod>,
    /// Rounds of fixes the followed pull request's failures get; 3 when
    /// left out, 0 fails the task at the first. The same failure twice
    /// ends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fixes: Option<u32>,
    /// The step whose agent fixes what fails on it; when empty, the agent
    /// step among the deliver step's dependencies whose work the failure
    /// points to (a review comment's path), else the first.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// How often the forge is asked about it, in seconds; 0: 30.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub poll_seconds: u32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Seconds between two looks at a followed pull request, unless
/// `pollSeconds` says.
pub const DEFAULT_PULL_POLL_SECONDS: u32 = 30;

/// The most `pullRequest.pollSeconds` may say.
pub const MAX_PULL_POLL_SECONDS: u32 = 3600;

impl PullRequestSpec {
    /// The task follows its pull request after opening it.
    pub fn follows(&self) -> bool {
        self.follow || self.merge.is_some()
    }

    /// The rounds of fixes its failures get.
    pub fn fixes(&self) -> u32 {
        self.max_fixes.unwrap_or(DEFAULT_LAND_FIXES)
    }

    /// How long between two looks at it.
    pub fn poll(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(match self.poll_seconds {
            0 => DEFAULT_PULL_POLL_SECONDS,
            n => n,
        }))
    }
}

/// How a followed pull request is merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    /// The first the repository allows of a merge commit, squash, rebase.
    Auto,
    Squash,
    Rebase,
    /// A name that came over the wire and is none of them; validation
    /// refuses it by name. Never read from YAML.
    #[serde(skip)]
    Unknown(String),
}

impl MergeMethod {
    pub fn as_str(&self) -> &str {
        match self {
            MergeMethod::Auto => "auto",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
            MergeMethod::Unknown(other) => other,
        }
    }

    pub fn parse(name: &str) -> MergeMethod {
        match name {
            "auto" => MergeMethod::Auto,
            "squash" => MergeMethod::Squash,
            "rebase" => MergeMethod::Rebase,
            other => MergeMethod::Unknown(other.to_string()),
        }
    }
}

/// A forge whose pull requests tidewright can open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    #[default]
    Github,
    Gitlab,
    /// A name that came over the wire and is neither; validation refuses
    /// it by name. Never read from YAML (serde refuses it there).
    #[serde(skip)]
    Unknown(String),
}

impl Forge {
    pub fn as_str(&self) -> &str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Unknown(other) => other,
        }
    }

    pub fn parse(name: &str) -> Forge {
        match name {
            "github" => Forge::Github,
            "gitlab" => Forge::Gitlab,
            other => Forge::Unknown(other.to_string()),
        }
    }

    /// The public API root of the forge at `host`, for the two hosts
    /// known by name.
    pub fn public(host: &str) -> Option<(Forge, &'static str)> {
        match host {
            "github.com" => Some((Forge::Github, "https://api.github.com")),
            "gitlab.com" => Some((Forge::Gitlab, "https://gitlab.com/api/v4")),
            _ => None,
        }
    }
}

/// The host of a repository URL (`https://host/…`, `ssh://user@host/…`,
/// `user@host:path`); `None` for a `file://` URL.
pub fn host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .or_else(|| url.strip_prefix("ssh://"));
    let authority = match rest {
        Some(rest) => rest.split('/').next()?,
        None if url.starts_with("file://") => return None,
        None => url.split_once(':')?.0,
    };
    let host = authority.rsplit('@').next()?;
    // A port, and an IPv6 address's brackets, are not the host's name.
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

/// A repository's URL without a trailing `/` or `.git`: tasks naming it
/// either way name one repository.
pub fn unadorned(url: &str) -> &str {
    url.trim_end_matches('/').trim_end_matches(".git")
}

/// A short, stable name for a repository's URL ([`unadorned`]), for a
/// label and for finding the outcomes kept on it.
pub fn key(url: &str) -> String {
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in unadorned(url).bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The forge a task's pull request goes to, and its API root: as the
/// pull request names them, else as the repository's host implies.
pub fn forge_of(repo: &RepoSpec) -> Option<(Forge, String)> {
    let pr = repo.pull_request.as_ref();
    let public = host(&repo.url).and_then(Forge::public);
    let forge = pr
        .and_then(|p| p.forge.clone())
        .or(public.as_ref().map(|(f, _)| f.clone()))?;
    let api = match pr.map(|p| p.api_url.as_str()).filter(|a| !a.is_empty()) {
        Some(api) => api.trim_end_matches('/').to_string(),
        None => match public {
            Some((f, api)) if f == forge => api.to_string(),
            _ => return None,
        },
    };
    Some((forge, api))
}

/// The longest pull request title.
pub const MAX_TITLE_BYTES: usize = 256;
/// The longest pull request body.
pub const MAX_BODY_BYTES: usize = 65_536;

/// The id of the step tidewright adds to a task that names a repository: it
/// merges the task's last steps into the task's branch and delivers it.
pub const DELIVER_STEP: &str = "deliver";

/// The branch that holds a task's work: the merge of its last steps'.
pub fn task_branch(task_id: &str) -> String {
    format!("tidewright/{task_id}")
}

/// The branch of one step's work. Beside the task's branch, not under it:
/// git cannot hold `tidewright/<task>` and `tidewright/<task>/<step>` at once, as a
/// ref cannot also be a directory of refs. The deliver step's branch is
/// the task's.
pub fn step_branch(task_id: &str, step_id: &str) -> String {
    if step_id == DELIVER_STEP {
        task_branch(task_id)
    } else {
        format!("tidewright/{task_id}-{step_id}")
    }
}

impl RepoSpec {
    /// The ref to resolve: the one named, or the remote's default branch.
    pub fn git_ref_or_default(&self) -> &str {
        if self.git_ref.is_empty() {
            DEFAULT_REF
        } else {
            &self.git_ref
        }
    }
}

/// What a step did to its task's repository: its branch, from which commit
/// to which, and what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepWork {
    /// `tidewright/<task>-<step>`; the deliver step's, `tidewright/<task>`.
    pub branch: String,
    /// The commit the step started from.
    pub base_commit: String,
    /// Its branch's head when it ended.
    pub head_commit: String,
    pub files_changed: u32,
    pub insertions: u64,
    pub deletions: u64,
    /// In git's order; a rename as its new path.
    pub changed_paths: Vec<String>,
    /// Tidewright committed what the step left uncommitted.
    pub committed_by_tidewright: bool,
    /// The deliver step's: the task's branch is on the remote.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pushed: bool,
    /// The deliver step's: the pull request it opened (or found open).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_request_url: String,
}

/// A dependency's work as the step after it starts from: its head, and
/// what it was asked to do (for an agent resolving a conflict between two).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DependencyHead {
    pub step: String,
    pub head: String,
    /// Its prompt, or its command; cut short when long.
    pub asked: String,
}

/// The most of what a step was asked that an assignment carries.
pub const MAX_ASKED_BYTES: usize = 2000;

/// A step's dependencies whose work would not merge: `with`'s head
/// conflicts with the merge of those before it (`after`), in `paths`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeConflict {
    pub with: String,
    pub after: Vec<String>,
    pub paths: Vec<String>,
}

/// How a URL reaches its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    /// Plain HTTP: credentials and contents cross the network in the clear.
    Http,
    /// `ssh://` or `user@host:path`.
    Ssh,
    /// A path on the machine that reads it.
    File,
}

impl Transport {
    /// Only on the machine that reads it, or in the clear: allowed where
    /// the control plane allows local repositories (tests, one machine).
    pub fn is_local(self) -> bool {
        matches!(self, Transport::Http | Transport::File)
    }
}

/// How `url` reaches its repository, or why it is not a repository URL
/// tidewright accepts; `field` names it in the refusal.
pub fn transport(url: &str, field: &str) -> Result<Transport, Error> {
    let invalid = |message: String| Error::Invalid {
        field: field.to_string(),
        message,
    };
    if url.is_empty() {
        return Err(invalid("required".into()));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(format!(
            "is {} bytes; the limit is {MAX_URL_BYTES}",
            url.len()
        )));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not hold spaces or control characters".into()));
    }
    // An argument git would read as an option.
    if url.starts_with('-') {
        return Err(invalid("must not start with '-'".into()));
    }
    let (transport, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Transport::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Transport::Http, rest)
    } else if let Some(rest) = url.strip_prefix("ssh://") {
        (Transport::Ssh, rest)
    } else if let Some(rest) = url.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(invalid(format!(
                "{url:?}: a file:// URL needs an absolute path"
            )));
        }
        return Ok(Transport::File);
    } else if let Some((user_host, path)) = url.split_once(':')
        && !user_host.contains('/')
        && user_host.contains('@')
        && !path.is_empty()
    {
        // scp-like: git@github.com:org/repo.git
        return Ok(Transport::Ssh);
    } else {
        return Err(invalid(format!(
            "{url:?} must start with https://, ssh:// or file://, or be user@host:path"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid(format!("{url:?} names no host")));
    }
    if transport != Transport::Ssh && authority.contains('@') {
        return Err(invalid(
            "must not carry a user name or password: name a credentialsSecret".into(),
        ));
    }
    Ok(transport)
}

/// Whether `name` is a ref git could hold and a remote advertise: the
/// rules of `git check-ref-format`, less what a remote's refs never have.
pub fn valid_ref(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_REF_BYTES
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("@{")
        && !name.contains("//")
        && !name.split('/').any(|part| part.starts_with('.'))
        && !name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
}

/// Whether `commit` is a full object id: SHA-1 (40) or SHA-256 (64)
/// lowercase hex.
pub fn valid_commit(commit: &str) -> bool {
    matches!(commit.len(), 40 | 64)
        && commit
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The project path in a repository URL, as forges name the repository
/// (`owner/name`, or a GitLab group's `group/sub/name`): of
/// `https://host/org/repo.git` or `git@host:org/repo.git`.
pub fn project_path(repo_url: &str) -> Option<String> {
    let rest = repo_url
        .strip_prefix("https://")
        .or_else(|| repo_url.strip_prefix("http://"))
        .or_else(|| repo_url.strip_prefix("ssh://"));
    let path = match rest {
        Some(rest) => rest.split_once('/')?.1,
        None => repo_url.split_once(':')?.1,
    };
    let path = path.trim_matches('/').trim_end_matches(".git");
    (path.contains('/') && !path.split('/').any(str::is_empty)).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_key_is_stable_and_ignores_a_trailing_slash_or_dot_git() {
        assert_eq!(key("https://a/b.git"), key("https://a/b.git/"));
        assert_eq!(key("https://a/b"), key("https://a/b.git"));
        assert_ne!(key("https://a/b.git"), key("https://a/c.git"));
        // Labels kept by earlier runs name repositories by it: it never
        // changes.
        assert_eq!(key(""), "cbf29ce484222325");
    }

    #[test]
    fn urls_say_how_they_reach_the_repository() {
        for (url, expected) in [
            ("https://github.com/org/repo.git", Transport::Https),
            ("http://127.0.0.1:8080/repo.git", Transport::Http),
            ("ssh://git@github.com/org/repo.git", Transport::Ssh),
            ("git@github.com:org/repo.git", Transport::Ssh),
            ("file:///srv/repo.git", Transport::File),
        ] {
            assert_eq!(transport(url, "repo.url").expect(url), expected, "{url}");
        }
        assert!(Transport::File.is_local() && Transport::Http.is_local());
        assert!(!Transport::Https.is_local() && !Transport::Ssh.is_local());
    }

    #[test]
    fn good_refs_and_commits_pass() {
        for name in [
            "main",
            "HEAD",
            "refs/heads/feature/x",
            "v1.2.3",
            "release-2026",
        ] {
            assert!(valid_ref(name), "{name}");
        }
        for name in [
            "",
            "a b",
            "a~1",
            "x.lock",
            "a/.hidden",
            "a//b",
            "a@{1}",
            "end/",
        ] {
            assert!(!valid_ref(name), "{name}");
        }
        assert!(valid_commit(&"a".repeat(40)));
        assert!(valid_commit(&"0".repeat(64)));
        assert!(!valid_commit(&"A".repeat(40)));
    }
}
