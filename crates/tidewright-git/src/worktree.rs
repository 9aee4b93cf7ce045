//! A step's repository: a repository of its own in its workspace, on its
//! own branch from the commit it starts at, that borrows the objects of
//! its worker's mirror (git's alternates) instead of copying them. The
//! mirror is the worker's and the step's repository the step's: the step
//! commits into its own, never into the mirror, whose config and hooks
//! the worker's git reads and runs outside any sandbox. Before the step,
//! tidewright merges its dependencies' work into it (and says what to do when
//! that conflicts); after, tidewright reads what it did only through git's
//! transport (`ls-remote` and `fetch` from it into the mirror, which git
//! makes safe against an untrusted repository), commits what it left in
//! the mirror with the worker's own index, and measures its branch there:
//! the head commit, the diff stat and the changed paths.
//!
//! The worker keeps a record of each step's repository in the mirror, out
//! of the step's reach (`checkouts/<id>/`): where it is (so eviction
//! spares a mirror in use), its index as tidewright checked it out (so what the
//! step left is found without hashing every file again), and a merge left
//! for the step to resolve.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use crate::mirror::{Mirror, RECORD_PATH, RECORDS, local, local_with, lock_file, take_turn};
use crate::{Error, command};

/// Who commits what a step left uncommitted.
pub const TIDEWRIGHT_AUTHOR: (&str, &str) = ("tidewright", "tidewright@localhost");

/// A step's repository, on its own branch from its base commit.
#[derive(Debug)]
pub struct Worktree {
    pub(crate) mirror: Mirror,
    pub(crate) path: PathBuf,
    pub(crate) branch: String,
    pub(crate) base: String,
    /// Paths tidewright put there that are never the step's work (a
    /// setup's seed: `node_modules`): left out of what it commits.
    pub(crate) excluded: Vec<String>,
}

/// What a step did to its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDone {
    pub branch: String,
    pub base: String,
    pub head: String,
    pub files_changed: u32,
    pub insertions: u64,
    pub deletions: u64,
    /// In git's order; renames as their new path.
    pub changed_paths: Vec<String>,
    /// Tidewright committed what the step left uncommitted.
    pub committed_for_the_step: bool,
}

/// The files of a record.
const RECORD_INDEX: &str = "index";
const RECORD_START: &str = "start";
const RECORD_MERGING: &str = "merging";

/// A mirror's steps' repositories: where a step's starts.
impl Mirror {
    /// The record of the step's repository at `dir`.
    fn record(&self, dir: &Path) -> PathBuf {
        let hash = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let id: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.path.join(RECORDS).join(id)
    }

    /// The mirror's objects, which its steps' repositories borrow: a step
    /// reads them, and never writes them.
    pub fn objects(&self) -> PathBuf {
        self.path.join("objects")
    }

    /// Makes an empty repository at `dir` (made if missing, its files left
    /// alone if not) that borrows this mirror's objects, with the
    /// remote's branches and tags as the mirror has them and the remote as
    /// its `origin`; its `HEAD` is `branch`, unborn. No template: no hooks.
    pub(crate) async fn init(&self, dir: &Path, branch: &str) -> Result<(), Error> {
        let dir_text = dir.display().to_string();
        local(
            &self.git,
            &self.path,
            &["init", "-q", "--template=", "-b", branch, &dir_text],
        )
        .await?;
        let git_dir = dir.join(".git");
        let mut alternates = self.objects().into_os_string();
        alternates.push("\n");
        tokio::fs::write(
            git_dir.join("objects/info/alternates"),
            alternates.as_encoded_bytes(),
        )
        .await?;
        let refs = local(
            &self.git,
            &self.path,
            &[
                "for-each-ref",
                "--format=%(objectname) %(refname)",
                "refs/remotes/origin/",
                "refs/tags/",
            ],
        )
        .await?;
        if !refs.is_empty() {
            tokio::fs::write(git_dir.join("packed-refs"), format!("{refs}\n")).await?;
        }
        let url = self.url.replace('\\', "\\\\").replace('"', "\\\"");
        let mut config = tokio::fs::OpenOptions::new()
            .append(true)
            .open(git_dir.join("config"))
            .await?;
        tokio::io::AsyncWriteExt::write_all(
            &mut config,
            format!(
                "[remote \"origin\"]\n\turl = \"{url}\"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n"
            )
            .as_bytes(),
        )
        .await?;
        Ok(())
    }

    /// The step's repository a kept workspace holds at `dir` (an earlier
    /// attempt's, a resumed session's), its files as they are, with a
    /// `.git` made anew by tidewright at its branch: the old one was the step's
    /// to change, and is not tidewright's to run git in. What it committed that
    /// the mirror lacks (its attempt ended before tidewright read it) is fetched
    /// first. `None` when the mirror has no branch of it from `base` (a
    /// workspace restored on another worker): the caller makes a new one.
    pub async fn existing_worktree(
        &self,
        dir: &Path,
        branch: &str,
        base: &str,
    ) -> Option<Worktree> {
        let branch_ref = format!("refs/heads/{branch}");
        if let Ok(Listing {
            branch: Some(head), ..
        }) = listing(&self.git, dir, &branch_ref).await
            && !self.has_commit(&head).await
        {
            let _ = self.fetch_from_step(dir, &branch_ref).await;
        }
        let head = local(
            &self.git,
            &self.path,
            &["rev-parse", "--verify", "-q", &branch_ref],
        )
        .await
        .ok()?;
        if !self.is_ancestor(base, &head).await {
            return None;
        }
        let _one_at_a_time = take_turn(self.worktrees.clone(), lock_file(&self.path, "worktrees"))
            .await
            .ok()?;
        let git_dir = dir.join(".git");
        let removed = match tokio::fs::symlink_metadata(&git_dir).await {
            Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(&git_dir).await,
            Ok(_) => tokio::fs::remove_file(&git_dir).await,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        removed.ok()?;
        self.init(dir, branch).await.ok()?;
        local(&self.git, dir, &["update-ref", &branch_ref, &head])
            .await
            .ok()?;
        local(&self.git, dir, &["read-tree", &head]).await.ok()?;
        // Stat the files once, so the step's `git status` is quick; its
        // exit code says whether any differ, which they may.
        let _ = local(&self.git, dir, &["update-index", "-q", "--refresh"]).await;
        let tree = Worktree {
            mirror: self.clone(),
            path: dir.to_path_buf(),
            branch: branch.to_string(),
            base: base.to_string(),
            excluded: Vec::new(),
        };
        // A merge left for the step to resolve is still to be resolved.
        if let Some((merging, _)) = tree.merging().await
            && !self.is_ancestor(&merging, &head).await
        {
            tokio::fs::write(git_dir.join("MERGE_HEAD"), format!("{merging}\n"))
                .await
                .ok()?;
        }
        tree.keep_index(&head).await.ok()?;
        Some(tree)
    }

    /// A repository at `dir` on branch `branch`, made (or reset) at
    /// `base`: a spare checked out at `near` (the task's commit, which
    /// `base` is or is near) when there is one, or a new checkout.
    pub async fn add_worktree(
        &self,
        dir: &Path,
        branch: &str,
        base: &str,
        near: &str,
    ) -> Result<Worktree, Error> {
        let _one_at_a_time =
            take_turn(self.worktrees.clone(), lock_file(&self.path, "worktrees")).await?;
        let dir = std::path::absolute(dir)?;
        if !self.take_spare(&dir, branch, base, near).await {
            self.init(&dir, branch).await?;
            let checked_out = local(
                &self.git,
                &dir,
                &["checkout", "-q", "-f", "-B", branch, base],
            )
            .await;
            if let Err(e) = checked_out {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e);
            }
        }
        let tree = Worktree {
            mirror: self.clone(),
            path: dir,
            branch: branch.to_string(),
            base: base.to_string(),
            excluded: Vec::new(),
        };
        // A record of an earlier repository here (a retry) is this one's.
        let record = self.record(&tree.path);
        let _ = tokio::fs::remove_dir_all(&record).await;
        tree.keep_index(base).await?;
        Ok(tree)
    }

    /// A checkout of `commit` at `dir` (made), detached, borrowing this
    /// mirror's objects: what a verified step's check runs on. Only what
    /// was committed is in it. No template: no hooks.
    pub async fn check_out_commit(&self, dir: &Path, commit: &str) -> Result<(), Error> {
        let dir = std::path::absolute(dir)?;
        tokio::fs::create_dir_all(&dir).await?;
        self.init(&dir, "tidewright-check").await?;
        local(
            &self.git,
            &dir,
            &["checkout", "-q", "-f", "--detach", commit],
        )
        .await
        .map(|_| ())
    }

    /// Whether `ancestor` is in the history of `commit`.
    async fn is_ancestor(&self, ancestor: &str, commit: &str) -> bool {
        local(
            &self.git,
            &self.path,
            &["merge-base", "--is-ancestor", ancestor, commit],
        )
        .await
        .is_ok()
    }

    /// Fetches the step's branch from its repository at `dir` into the
    /// mirror. git's transport reads an untrusted repository safely: its
    /// config and hooks are not run, and what comes is checked.
    async fn fetch_from_step(&self, dir: &Path, branch_ref: &str) -> Result<(), Error> {
        let dir_text = dir.display().to_string();
        local(
            &self.git,
            &self.path,
            &[
                "-c",
                "fetch.fsckObjects=true",
                "fetch",
                "-q",
                "--no-tags",
                "--no-write-fetch-head",
                &dir_text,
                &format!("+{branch_ref}:{branch_ref}"),
            ],
        )
        .await
        .map(|_| ())
    }
}

/// What a step's repository says of itself, through git's transport.
#[derive(Debug, Default)]
struct Listing {
    /// The branch `HEAD` is on; `None` when detached.
    on: Option<String>,
    /// The commit at the step's branch; `None` when it is gone.
    branch: Option<String>,
}

/// Lists `HEAD` and `branch_ref` of the repository at `dir`.
async fn listing(git: &Path, dir: &Path, branch_ref: &str) -> Result<Listing, Error> {
    let dir_text = dir.display().to_string();
    let parent = dir.parent().unwrap_or(dir);
    let said = local(
        git,
        parent,
        &["ls-remote", "--symref", &dir_text, "HEAD", branch_ref],
    )
    .await?;
    let mut listing = Listing::default();
    for line in said.lines() {
        if let Some(symref) = line.strip_prefix("ref: ") {
            if let Some((target, "HEAD")) = symref.split_once('\t') {
                listing.on = Some(target.to_string());
            }
        } else if let Some((commit, name)) = line.split_once('\t')
            && name == branch_ref
        {
            listing.branch = Some(commit.to_string());
        }
    }
    Ok(listing)
}

/// Two steps' work that cannot be merged as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The dependency whose head would not merge into what came before.
    pub with: String,
    /// The paths both sides changed, in git's order.
    pub paths: Vec<String>,
    /// The conflicting hunks, with git's markers, cut short when long.
    pub hunks: String,
    /// The worktree is left mid-merge with this conflict, for the step to
    /// resolve before tidewright commits the merge.
    pub left_to_resolve: bool,
}

/// The most of a conflict's hunks kept for its message.
const MAX_HUNKS_BYTES: usize = 8 * 1024;

/// git's environment for a commit tidewright makes.
pub(crate) fn as_tidewright() -> [(&'static str, &'static str); 4] {
    let (name, email) = TIDEWRIGHT_AUTHOR;
    [
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
    ]
}

impl Worktree {
    /// Leaves `paths` (relative to the repository's root) out of what is
    /// committed of the step's work: tidewright put them there.
    pub fn exclude(&mut self, paths: &[String]) {
        self.excluded.extend(paths.iter().cloned());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mirror the repository borrows from.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The commit the step's work is measured from.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Measures the step's work from `base` instead (an ancestor of its
    /// start): the deliver step's work is the whole task's.
    pub fn measure_from(&mut self, base: &str) {
        self.base = base.to_string();
    }

    /// Merges `heads` ((label, commit), in order) into the worktree's
    /// branch, one merge commit each, as tidewright; the step then starts from
    /// the result. On a conflict the merge is undone and the conflict
    /// answered: the worktree is as it was before that head.
    ///
    /// With `leave_one`, a head that conflicts is set aside and the rest
    /// merged; when exactly one conflicted, it is merged again last and
    /// left mid-merge, markers and all, for the step to resolve (the
    /// conflict answered says so). More than one is answered as without.
    pub async fn merge(
        &mut self,
        heads: &[(String, String)],
        leave_one: bool,
    ) -> Result<Option<Conflict>, Error> {
        let mut set_aside = Vec::new();
        for (label, head) in heads {
            match self.merge_one(label, head).await? {
                None => {}
                Some(conflict) if !leave_one => return Ok(Some(conflict)),
                Some(conflict) => set_aside.push((label, head, conflict)),
            }
        }
        let git = &self.mirror.git;
        self.base = local(git, &self.path, &["rev-parse", "HEAD"]).await?;
        let answer = match set_aside.len() {
            0 => None,
            1 => {
                let (label, head, _) = set_aside.remove(0);
                let mut conflict = self.merge_leaving(label, head).await?;
                conflict.left_to_resolve = true;
                self.keep_merging(head, &conflict.paths).await?;
                Some(conflict)
            }
            _ => Some(set_aside.remove(0).2),
        };
        self.keep_index(&self.base).await?;
        Ok(answer)
    }

    /// Merges one head; its conflict, undone, when it has one.
    async fn merge_one(&self, label: &str, head: &str) -> Result<Option<Conflict>, Error> {
        let conflict = self.merge_leaving(label, head).await;
        match conflict {
            Ok(conflict) if conflict.paths.is_empty() => Ok(None),
            Ok(conflict) => {
                local(&self.mirror.git, &self.path, &["merge", "--abort"]).await?;
                Ok(Some(conflict))
            }
            Err(e) => Err(e),
        }
    }

    /// Merges one head and leaves what it could not: the conflict, with
    /// no paths when there was none.
    async fn merge_leaving(&self, label: &str, head: &str) -> Result<Conflict, Error> {
        let git = &self.mirror.git;
        let message = format!("tidewright: merge step {label}");
        let merged = command(git, None)
            .current_dir(&self.path)
            .args(["merge", "-q", "--no-edit", "--no-ff", "-m", &message, head])
            .envs(as_tidewright())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await?;
        let mut conflict = Conflict {
            with: label.to_string(),
            paths: Vec::new(),
            hunks: String::new(),
            left_to_resolve: false,
        };
        if merged.status.success() {
            return Ok(conflict);
        }
        let unmerged = local(git, &self.path, &["diff", "--name-only", "--diff-filter=U"]).await?;
        if unmerged.is_empty() {
            return Err(Error::Local(format!(
                "git merge {head}: {}",
                String::from_utf8_lossy(&merged.stderr).trim()
            )));
        }
        let mut hunks = local(git, &self.path, &["diff"]).await.unwrap_or_default();
        if hunks.len() > MAX_HUNKS_BYTES {
            let mut cut = MAX_HUNKS_BYTES;
            while !hunks.is_char_boundary(cut) {
                cut -= 1;
            }
            hunks.truncate(cut);
            hunks.push_str("\n[…]");
        }
        conflict.paths = unmerged.lines().map(str::to_string).collect();
        conflict.hunks = hunks;
        Ok(conflict)
    }

    /// Keeps, in the worker's record, the repository's index as tidewright left
    /// it and `start`, the commit it is at, and where the repository is. Called
    /// before the step's process starts: what it keeps is tidewright's.
    async fn keep_index(&self, start: &str) -> Result<(), Error> {
        let record = self.mirror.record(&self.path);
        tokio::fs::create_dir_all(&record).await?;
        // No index (nothing checked out) keeps none: the step's files are
        // then read whole.
        match copy_index(&self.path.join(".git/index"), &record.join(RECORD_INDEX)).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => {
                other?;
            }
        }
        tokio::fs::write(record.join(RECORD_START), start).await?;
        let mut path = self.path.clone().into_os_string();
        path.push("\n");
        tokio::fs::write(record.join(RECORD_PATH), path.as_encoded_bytes()).await?;
        Ok(())
    }

    /// Records a merge left for the step to resolve: the head merged and
    /// the paths in conflict.
    async fn keep_merging(&self, head: &str, paths: &[String]) -> Result<(), Error> {
        let record = self.mirror.record(&self.path);
        let mut text = format!("{head}\n");
        for path in paths {
            text.push_str(path);
            text.push('\n');
        }
        tokio::fs::write(record.join(RECORD_MERGING), text).await?;
        Ok(())
    }

    /// The merge left for the step to resolve, when there is one.
    async fn merging(&self) -> Option<(String, Vec<String>)> {
        let record = self.mirror.record(&self.path);
        let text = tokio::fs::read_to_string(record.join(RECORD_MERGING))
            .await
            .ok()?;
        let mut lines = text.lines();
        let head = lines.next()?.to_string();
        Some((head, lines.map(str::to_string).collect()))
    }

    /// Reads what the step did from its repository, through git's
    /// transport only, into the mirror; commits there what it left
    /// uncommitted (as tidewright, with `message`); and measures its branch. A
    /// step that deleted its branch, left it, or rewrote it so the base is
    /// no longer in its history, is refused: its work cannot be merged as
    /// the DAG needs.
    pub async fn finish(&self, message: &str) -> Result<WorkDone, Error> {
        let git = &self.mirror.git;
        let mirror = &self.mirror.path;
        let branch_ref = format!("refs/heads/{}", self.branch);
        // A link where the repository was would have tidewright read, and
        // commit, whatever it points at.
        if !tokio::fs::symlink_metadata(&self.path)
            .await
            .is_ok_and(|meta| meta.is_dir())
        {
            return Err(Error::Rewritten(format!(
                "the step replaced its repository's directory {}",
                self.path.display()
            )));
        }
        let said = listing(git, &self.path, &branch_ref).await?;
        let Some(mut head) = said.branch else {
            return Err(Error::Rewritten(format!(
                "the step deleted its branch {}",
                self.branch
            )));
        };
        if said.on.as_deref() != Some(branch_ref.as_str()) {
            let on = said.on.unwrap_or_else(|| "a detached HEAD".into());
            return Err(Error::Rewritten(format!(
                "the step left its branch {}: its repository is on {on}",
                self.branch
            )));
        }
        let before = local(git, mirror, &["rev-parse", "--verify", "-q", &branch_ref])
            .await
            .unwrap_or_default();
        if before != head {
            self.mirror.fetch_from_step(&self.path, &branch_ref).await?;
        }
        // Mid-merge, a conflict it was to resolve: no markers may be left.
        let merging = match self.merging().await {
            Some((merged, paths)) if !self.mirror.is_ancestor(&merged, &head).await => {
                let marked: Vec<&str> = paths
                    .iter()
                    .map(String::as_str)
                    .filter(|path| has_markers(&self.path.join(path)))
                    .collect();
                if !marked.is_empty() {
                    return Err(Error::Local(format!(
                        "the step left the conflict unresolved: markers remain in {}",
                        marked.join(", ")
                    )));
                }
                Some(merged)
            }
            _ => None,
        };
        let tree = self.tree_of_files(&head).await?;
        let head_tree = local(git, mirror, &["rev-parse", &format!("{head}^{{tree}}")]).await?;
        let committed_for_the_step = tree != head_tree || merging.is_some();
        if committed_for_the_step {
            let mut args = vec!["commit-tree", tree.as_str(), "-p", head.as_str()];
            if let Some(merged) = &merging {
                args.extend(["-p", merged.as_str()]);
            }
            args.extend(["-m", message]);
            let commit = local_with(git, mirror, &args, &as_tidewright()).await?;
            local(git, mirror, &["update-ref", &branch_ref, &commit, &head]).await?;
            head = commit;
        }
        let _ = tokio::fs::remove_file(self.mirror.record(&self.path).join(RECORD_MERGING)).await;
        if !self.mirror.is_ancestor(&self.base, &head).await {
            return Err(Error::Rewritten(format!(
                "the step rewrote the history of {}: its base {} is no longer in it",
                self.branch, self.base
            )));
        }
        let range = format!("{}..{head}", self.base);
        let numstat = local(git, mirror, &["diff", "--numstat", "-M", &range]).await?;
        let (mut insertions, mut deletions) = (0, 0);
        for line in numstat.lines() {
            let mut parts = line.splitn(3, '\t');
            insertions += parts
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            deletions += parts
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
        let names = local(git, mirror, &["diff", "--name-only", "-M", &range]).await?;
        let changed_paths: Vec<String> = names.lines().map(str::to_string).collect();
        Ok(WorkDone {
            branch: self.branch.clone(),
            base: self.base.clone(),
            head,
            files_changed: changed_paths.len() as u32,
            insertions,
            deletions,
            changed_paths,
            committed_for_the_step,
        })
    }

    /// The tree of the repository's files as the step left them, written
    /// into the mirror by the mirror's git (its config, never the step's)
    /// with an index of tidewright's: the one kept when tidewright handed the
    /// repository over, moved to `head` (so only what changed is hashed),
    /// or a new one when that will not do.
    async fn tree_of_files(&self, head: &str) -> Result<String, Error> {
        let record = self.mirror.record(&self.path);
        tokio::fs::create_dir_all(&record).await?;
        let index = record.join("index.finish");
        let kept = copy_index(&record.join(RECORD_INDEX), &index).await.is_ok();
        let start = tokio::fs::read_to_string(record.join(RECORD_START))
            .await
            .unwrap_or_default();
        // The mirror's git directory and config, the step's files, tidewright's
        // index: never the step's `.git`.
        let git_dir = self.mirror.path.display().to_string();
        let work_tree = self.path.display().to_string();
        let index_text = index.display().to_string();
        let env = [
            ("GIT_DIR", git_dir.as_str()),
            ("GIT_WORK_TREE", work_tree.as_str()),
            ("GIT_INDEX_FILE", index_text.as_str()),
        ];
        let (git, mirror) = (&self.mirror.git, &self.mirror.path);
        let moved = kept
            && (start.trim() == head
                || local_with(git, mirror, &["read-tree", "-m", start.trim(), head], &env)
                    .await
                    .is_ok());
        if !moved {
            let _ = tokio::fs::remove_file(&index).await;
            local_with(git, mirror, &["read-tree", head], &env).await?;
        }
        let mut add = vec!["add".to_string(), "-A".to_string()];
        if !self.excluded.is_empty() {
            add.extend(["--".to_string(), ".".to_string()]);
            add.extend(self.excluded.iter().map(|p| format!(":(exclude,top){p}")));
        }
        let add: Vec<&str> = add.iter().map(String::as_str).collect();
        local_with(git, mirror, &add, &env).await?;
        let tree = local_with(git, mirror, &["write-tree"], &env).await;
        let _ = tokio::fs::remove_file(&index).await;
        tree
    }

    /// Removes the repository; its branch, the step's result, stays in the
    /// mirror.
    pub async fn remove(self) -> Result<(), Error> {
        let _one_at_a_time = take_turn(
            self.mirror.worktrees.clone(),
            lock_file(&self.mirror.path, "worktrees"),
        )
        .await?;
        match tokio::fs::remove_dir_all(&self.path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let _ = tokio::fs::remove_dir_all(self.mirror.record(&self.path)).await;
        Ok(())
    }
}

/// Copies an index to `to` with its modification time. Git trusts an
/// entry's file stat only when the file is older than the index that
/// recorded it; a file changed within the same second at the same size is
/// "racily clean", and git compares its content. A copy stamped now would
/// make every such entry look settled, and a step's same-size edit made in
/// the second it was handed its repository would be missed.
async fn copy_index(from: &Path, to: &Path) -> std::io::Result<()> {
    tokio::fs::copy(from, to).await?;
    let written = tokio::fs::metadata(from).await?.modified()?;
    let to = to.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(to)?
            .set_modified(written)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Whether the regular file at `path` (never what a link points at) still
/// holds git's conflict markers.
fn has_markers(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file())
        && std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|l| l.starts_with("<<<<<<<"))
                && text.lines().any(|l| l.starts_with(">>>>>>>"))
        })
}

#[cfg(test)]
mod copies {
    use std::time::{Duration, SystemTime};

    /// A kept index keeps its time: git's racy-clean check measures each
    /// file against it.
    #[tokio::test]
    async fn an_index_is_copied_with_its_modification_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (from, to) = (dir.path().join("index"), dir.path().join("kept"));
        std::fs::write(&from, "DIRC").expect("write");
        let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&from)
            .expect("open")
            .set_modified(then)
            .expect("set");
        super::copy_index(&from, &to).await.expect("copied");
        let kept = std::fs::metadata(&to).expect("kept");
        assert_eq!(kept.modified().expect("mtime"), then);
        assert_eq!(std::fs::read(&to).expect("read"), b"DIRC");
    }
}
