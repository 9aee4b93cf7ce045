//! A worker's repositories: one bare mirror per repository URL, cloned
//! once and fetched only when a step needs a commit it lacks (one clone or
//! fetch at a time per repository, across processes sharing the mirrors
//! too), bounded in disk by eviction of the least recently used; a step
//! gets a repository of its own that borrows the mirror's objects
//! (`worktree`) instead of a clone. Steps' branches travel between
//! workers' mirrors as bundles.
//!
//! The mirror keeps the remote's branches under `refs/remotes/origin/`,
//! so a fetch never touches the steps' own branches under `refs/heads/`.
//! It is the worker's alone: a step never writes to it (its config and
//! hooks are what the worker's own git reads and runs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::{Credentials, Error, REMOTE_TIMEOUT, command};

/// Touched each time a mirror is used: eviction goes by it.
const LAST_USED: &str = "tidewright-last-used";

/// The mirror's directory of the worker's records of its steps'
/// repositories (`worktree`): which are in use, and what tidewright kept of
/// each.
pub(crate) const RECORDS: &str = "checkouts";

/// The file of a record that names the step's repository; eviction reads
/// it to tell which records are still in use.
pub(crate) const RECORD_PATH: &str = "path";

/// The mirrors of one worker, under one directory.
pub struct Mirrors {
    root: PathBuf,
    git: PathBuf,
    /// One clone or fetch at a time per repository.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// One step's repository made or removed at a time per mirror.
    worktree_locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    /// Where spare worktrees are made, and how many at a commit; `None`
    /// for none.
    spares: Option<(PathBuf, usize)>,
    /// One refill of spares at a time per repository.
    refill_locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// One repository's mirror.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub(crate) path: PathBuf,
    /// The repository's URL, the steps' repositories' `origin`.
    pub(crate) url: String,
    pub(crate) git: PathBuf,
    /// Held while steps' repositories are made or removed, so eviction
    /// never takes a mirror one is being made of.
    pub(crate) worktrees: Arc<tokio::sync::Mutex<()>>,
    /// Worktrees checked out ahead of need (`spare`).
    pub(crate) spares: Option<Spares>,
}

/// One mirror's spares.
#[derive(Debug, Clone)]
pub(crate) struct Spares {
    /// Where this mirror's spares are.
    pub(crate) dir: PathBuf,
    /// How many a refill keeps ready at one commit; twice as many are
    /// kept in all (tasks on two commits at once).
    pub(crate) per_commit: usize,
    /// One refill at a time per mirror in this process.
    pub(crate) refilling: Arc<tokio::sync::Mutex<()>>,
}

/// A turn on a mirror, across processes too: workers that share a mirrors
/// directory (a volume the pods of a pool mount) take turns as the tasks
/// of one worker do. The file lock goes with the file when this drops.
pub(crate) struct Turn {
    _ours: tokio::sync::OwnedMutexGuard<()>,
    _file: std::fs::File,
}

/// Takes `lock` in this process, then the lock file `file` across them.
pub(crate) async fn take_turn(
    lock: Arc<tokio::sync::Mutex<()>>,
    file: PathBuf,
) -> Result<Turn, Error> {
    let ours = lock.lock_owned().await;
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&file)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(Turn {
        _ours: ours,
        _file: file,
    })
}

/// The lock file beside a mirror for `what` (`fetch`, `worktrees`).
pub(crate) fn lock_file(mirror: &Path, what: &str) -> PathBuf {
    let mut name = mirror.as_os_str().to_os_string();
    name.push(format!(".{what}.lock"));
    PathBuf::from(name)
}

/// A directory name for `url`'s mirror: readable, and unique by its hash.
fn mirror_name(url: &str) -> String {
    let tail: String = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    let hash = Sha256::digest(url.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{tail}-{hex}.git")
}

/// Runs git in `dir` without a remote's credentials; its stdout, or why not.
pub(crate) async fn local(git: &Path, dir: &Path, args: &[&str]) -> Result<String, Error> {
    local_with(git, dir, args, &[]).await
}

pub(crate) async fn local_with(
    git: &Path,
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<String, Error> {
    let output = command(git, None)
        .current_dir(dir)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(crate::no_space(&stderr).unwrap_or_else(|| {
            Error::Local(format!("git {}: {}", args.join(" "), stderr.trim()))
        }));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

impl Mirrors {
    pub fn new(root: PathBuf, git: PathBuf) -> Mirrors {
        Mirrors {
            // git runs in the mirrors' own directories: a relative root
            // would mean another place there.
            root: std::path::absolute(&root).unwrap_or(root),
            git,
            locks: Mutex::default(),
            worktree_locks: Mutex::default(),
            spares: None,
            refill_locks: Mutex::default(),
        }
    }

    /// Keeps `per_commit` spare worktrees ready at the commit a
    /// repository's steps start from, under `dir` (on the filesystem of
    /// the steps' workspaces: a spare becomes a step's worktree by a
    /// rename); 0 keeps none.
    pub fn with_spares(mut self, dir: PathBuf, per_commit: usize) -> Mirrors {
        self.spares =
            (per_commit > 0).then(|| (std::path::absolute(&dir).unwrap_or(dir), per_commit));
        self
    }

    /// Where the spares of the mirror at `path` are.
    fn spares_dir(&self, path: &Path) -> Option<PathBuf> {
        let (dir, _) = self.spares.as_ref()?;
        Some(dir.join(path.file_name().unwrap_or_default()))
    }

    fn lock_for(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        lock_in(&self.locks, path)
    }

    fn worktree_lock_for(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        lock_in(&self.worktree_locks, path)
    }

    /// `url`'s mirror, holding `commit`: cloned the first time, fetched
    /// only when the commit is missing.
    pub async fn ensure(
        &self,
        url: &str,
        commit: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Mirror, Error> {
        let path = self.root.join(mirror_name(url));
        tokio::fs::create_dir_all(&self.root).await?;
        let _one_at_a_time = take_turn(self.lock_for(&path), lock_file(&path, "fetch")).await?;
        let mirror = Mirror {
            path: path.clone(),
            url: url.to_string(),
            git: self.git.clone(),
            worktrees: self.worktree_lock_for(&path),
            spares: self.spares.as_ref().map(|&(_, per_commit)| Spares {
                dir: self.spares_dir(&path).unwrap_or_default(),
                per_commit,
                refilling: lock_in(&self.refill_locks, &path),
            }),
        };
        let fresh = !path.join("HEAD").exists();
        if fresh {
            // A half-made mirror (a crash mid-clone) is made again.
            if path.exists() {
                tokio::fs::remove_dir_all(&path).await?;
            }
            tokio::fs::create_dir_all(&path).await?;
            local(&self.git, &path, &["init", "-q", "--bare"]).await?;
            local(&self.git, &path, &["remote", "add", "origin", url]).await?;
            local(
                &self.git,
                &path,
                &[
                    "config",
                    "remote.origin.fetch",
                    "+refs/heads/*:refs/remotes/origin/*",
                ],
            )
            .await?;
            local(
                &self.git,
                &path,
                &[
                    "config",
                    "--add",
                    "remote.origin.fetch",
                    "+refs/tags/*:refs/tags/*",
                ],
            )
            .await?;
        }
        if !mirror.has_commit(commit).await {
            if let Err(e) = mirror.fetch(url, credentials).await {
                // A first clone that failed holds nothing a step can use,
                // and on a full disk it holds the room the next one needs.
                if fresh {
                    let _ = tokio::fs::remove_dir_all(&path).await;
                }
                return Err(e);
            }
            if !mirror.has_commit(commit).await {
                return Err(Error::Local(format!(
                    "commit {commit} is not on {url} (was it pushed away?)"
                )));
            }
        }
        // Eviction goes by last use; the file's time is the use.
        tokio::fs::write(path.join(LAST_USED), b"").await?;
        Ok(mirror)
    }

    /// Removes the least recently used mirrors until those left take at
    /// most `max_bytes`, sparing those in use (a step's repository borrows
    /// their objects) whatever their size; their spares go with them, and
    /// are not counted (they are bounded in number, on the workspaces'
    /// disk). The mirrors removed.
    pub async fn evict(&self, max_bytes: u64) -> Result<Vec<PathBuf>, Error> {
        let mut mirrors = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.root).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            // The lock files beside the mirrors are not mirrors.
            if !entry.file_type().await?.is_dir() {
                continue;
            }
            let used = tokio::fs::metadata(path.join(LAST_USED))
                .await
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let size = disk_usage(&path);
            mirrors.push((used, size, path));
        }
        let mut total: u64 = mirrors.iter().map(|(_, size, _)| size).sum();
        mirrors.sort();
        let mut removed = Vec::new();
        for (_, size, path) in mirrors {
            if total <= max_bytes {
                break;
            }
            let _one_at_a_time = take_turn(self.lock_for(&path), lock_file(&path, "fetch")).await?;
            let _no_new_worktree =
                take_turn(self.worktree_lock_for(&path), lock_file(&path, "worktrees")).await?;
            let spares = self.spares_dir(&path);
            if in_use(&path) {
                continue;
            }
            tokio::fs::remove_dir_all(&path).await?;
            if let Some(spares) = spares.filter(|dir| dir.exists()) {
                tokio::fs::remove_dir_all(spares).await?;
            }
            total = total.saturating_sub(size);
            removed.push(path);
        }
        Ok(removed)
    }
}

/// The lock for `path` in `locks`, made the first time.
fn lock_in(
    locks: &Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    path: &Path,
) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = locks.lock().unwrap_or_else(|p| p.into_inner());
    locks.entry(path.to_path_buf()).or_default().clone()
}

/// Whether some step's repository borrows the objects of the mirror at
/// `path`: one of its records names a directory that is still there.
fn in_use(path: &Path) -> bool {
    std::fs::read_dir(path.join(RECORDS)).is_ok_and(|records| {
        records.flatten().any(|record| {
            std::fs::read_to_string(record.path().join(RECORD_PATH))
                .is_ok_and(|dir| Path::new(dir.trim_end_matches('\n')).is_dir())
        })
    })
}

/// The bytes of the files under `path`.
fn disk_usage(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(entry.path()),
                Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

impl Mirror {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the mirror holds `commit`.
    pub async fn has_commit(&self, commit: &str) -> bool {
        local(
            &self.git,
            &self.path,
            &["cat-file", "-e", &format!("{commit}^{{commit}}")],
        )
        .await
        .is_ok()
    }

    async fn fetch(&self, url: &str, credentials: Option<&Credentials>) -> Result<(), Error> {
        let doing = format!("fetching {url}");
        self.remote(url, credentials, &["fetch", "-q", "origin"], &doing)
            .await
    }

    /// Runs git `args` against the remote at `url`: bounded in time (what
    /// took too long says what it was `doing`), and a refusal said as the
    /// remote's.
    pub(crate) async fn remote(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
        args: &[&str],
        doing: &str,
    ) -> Result<(), Error> {
        let mut git = command(&self.git, credentials);
        git.current_dir(&self.path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let output = tokio::time::timeout(REMOTE_TIMEOUT * 10, git.output())
            .await
            .map_err(|_| Error::Unavailable(format!("{doing} took too long")))??;
        if !output.status.success() {
            return Err(crate::remote_refusal(
                url,
                &String::from_utf8_lossy(&output.stderr),
                credentials.is_some(),
            ));
        }
        Ok(())
    }

    /// `branch`'s commits since `since`, as a git bundle another worker's
    /// mirror can fetch from (it needs `since`, the task's commit, which
    /// its own mirror fetches from the remote); `None` when the branch has
    /// none.
    pub async fn bundle(&self, branch: &str, since: &str) -> Result<Option<Vec<u8>>, Error> {
        let branch_ref = format!("refs/heads/{branch}");
        let head = local(&self.git, &self.path, &["rev-parse", &branch_ref]).await?;
        if head == since {
            return Ok(None);
        }
        let file = tempfile::Builder::new()
            .prefix("tidewright-bundle-")
            .tempfile_in(&self.path)?;
        let path = file.path().display().to_string();
        local(
            &self.git,
            &self.path,
            &[
                "bundle",
                "create",
                "-q",
                &path,
                &branch_ref,
                &format!("^{since}"),
            ],
        )
        .await?;
        Ok(Some(tokio::fs::read(file.path()).await?))
    }

    /// The changes from `base` to `head` as a unified diff (renames
    /// found), cut at `max_bytes` on a line's end, saying so.
    pub async fn diff(&self, base: &str, head: &str, max_bytes: usize) -> Result<String, Error> {
        let range = format!("{base}..{head}");
        let mut diff = local(&self.git, &self.path, &["diff", "-M", "--no-color", &range]).await?;
        if diff.len() > max_bytes {
            let mut cut = max_bytes;
            while !diff.is_char_boundary(cut) {
                cut -= 1;
            }
            diff.truncate(diff[..cut].rfind('\n').unwrap_or(0));
            diff.push_str("\n[the rest of the diff is left out: over its cap]\n");
        }
        Ok(diff)
    }

    /// Fetches a bundle of another worker's step branch (see [`bundle`])
    /// into this mirror, under `refs/tidewright/steps/` (never over a branch a
    /// worktree may hold), and checks it brought `head`.
    ///
    /// [`bundle`]: Mirror::bundle
    pub async fn unbundle(&self, bundle: &[u8], head: &str) -> Result<(), Error> {
        let file = tempfile::Builder::new()
            .prefix("tidewright-bundle-")
            .tempfile_in(&self.path)?;
        tokio::fs::write(file.path(), bundle).await?;
        let path = file.path().display().to_string();
        local(
            &self.git,
            &self.path,
            &[
                "fetch",
                "-q",
                "--no-tags",
                &path,
                "+refs/heads/*:refs/tidewright/steps/*",
            ],
        )
        .await?;
        if !self.has_commit(head).await {
            return Err(Error::Local(format!(
                "the step's branch does not hold its head {head}"
            )));
        }
        Ok(())
    }

    /// Pushes `branch` to the remote as the same branch, replacing what
    /// is there (the branch is tidewright's: an earlier run of the task may have
    /// pushed it). One ref, so the remote takes all of it or nothing.
    pub async fn push(
        &self,
        url: &str,
        branch: &str,
        credentials: Option<&Credentials>,
    ) -> Result<(), Error> {
        self.push_refspec(
            url,
            &format!("+refs/heads/{branch}:refs/heads/{branch}"),
            credentials,
        )
        .await
    }

    /// Deletes `branch` from the remote: a push that served only a pull
    /// request which could not be opened is taken back.
    pub async fn delete_pushed(
        &self,
        url: &str,
        branch: &str,
        credentials: Option<&Credentials>,
    ) -> Result<(), Error> {
        self.push_refspec(url, &format!(":refs/heads/{branch}"), credentials)
            .await
    }

    async fn push_refspec(
        &self,
        url: &str,
        refspec: &str,
        credentials: Option<&Credentials>,
    ) -> Result<(), Error> {
        let args = ["push", "-q", "--porcelain", "origin", refspec];
        let doing = format!("pushing to {url}");
        self.remote(url, credentials, &args, &doing).await
    }

    /// The branch the remote's `HEAD` points at, as this mirror last
    /// fetched it: the default branch a pull request goes to.
    pub async fn default_branch(
        &self,
        url: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, Error> {
        let mut ls = command(&self.git, credentials);
        ls.current_dir(&self.path)
            .args(["ls-remote", "--symref", "origin", "HEAD"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = tokio::time::timeout(REMOTE_TIMEOUT, ls.output())
            .await
            .map_err(|_| {
                Error::Unavailable(format!("asking {url} for its HEAD took too long"))
            })??;
        if !output.status.success() {
            return Err(crate::remote_refusal(
                url,
                &String::from_utf8_lossy(&output.stderr),
                credentials.is_some(),
            ));
        }
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| {
                line.strip_prefix("ref: refs/heads/")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_string)
            })
            .ok_or_else(|| Error::Local(format!("{url} names no default branch")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_is_named_for_its_repository_and_unique_by_its_url() {
        let a = mirror_name("https://github.com/acme/app.git");
        let b = mirror_name("https://gitlab.com/acme/app.git");
        assert!(a.starts_with("app-") && a.ends_with(".git"), "{a}");
        assert_ne!(a, b);
        assert!(mirror_name("git@github.com:acme/app.git").starts_with("app-"));
        assert!(!mirror_name("https://h/../../x").contains(".."));
    }
}
