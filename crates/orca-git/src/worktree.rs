//! A step's worktree of its worker's mirror, on its own branch from the
//! commit it starts at: merging its dependencies' work into it (and what
//! to do when that conflicts), and, after the step, committing what it
//! left and reading what it did from its branch: the head commit, the diff
//! stat and the changed paths.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::mirror::{Mirror, local, local_with, lock_file, take_turn};
use crate::{Error, command};

/// Who commits what a step left uncommitted.
pub const ORCA_AUTHOR: (&str, &str) = ("orca", "orca@localhost");

/// A step's worktree, on its own branch from its base commit.
#[derive(Debug)]
pub struct Worktree {
    pub(crate) mirror: Mirror,
    pub(crate) path: PathBuf,
    pub(crate) branch: String,
    pub(crate) base: String,
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
    /// Orca committed what the step left uncommitted.
    pub committed_for_the_step: bool,
}

/// A mirror's worktrees: where a step's starts.
impl Mirror {
    /// The worktree at `dir` an earlier attempt left (a resumed session's),
    /// when it is still one of this mirror's; `None` when there is none or
    /// it is broken (a workspace restored on another worker).
    pub async fn existing_worktree(
        &self,
        dir: &Path,
        branch: &str,
        base: &str,
    ) -> Option<Worktree> {
        let on = local(&self.git, dir, &["symbolic-ref", "-q", "HEAD"])
            .await
            .ok()?;
        let common = local(&self.git, dir, &["rev-parse", "--git-common-dir"])
            .await
            .ok()?;
        let common = std::fs::canonicalize(dir.join(common)).ok()?;
        let ours = std::fs::canonicalize(&self.path).ok()?;
        (common == ours && on == format!("refs/heads/{branch}")).then(|| Worktree {
            mirror: self.clone(),
            path: dir.to_path_buf(),
            branch: branch.to_string(),
            base: base.to_string(),
        })
    }

    /// A worktree at `dir` on branch `branch`, made (or reset) at `base`:
    /// a spare checked out at `near` (the task's commit, which `base` is
    /// or is near) when there is one, or a new checkout.
    pub async fn add_worktree(
        &self,
        dir: &Path,
        branch: &str,
        base: &str,
        near: &str,
    ) -> Result<Worktree, Error> {
        let _one_at_a_time =
            take_turn(self.worktrees.clone(), lock_file(&self.path, "worktrees")).await?;
        // A worktree whose directory is gone (a crash) still holds its
        // branch until pruned.
        local(&self.git, &self.path, &["worktree", "prune"]).await?;
        let dir = std::path::absolute(dir)?;
        if !self.take_spare(&dir, branch, base, near).await {
            let dir_text = dir.display().to_string();
            local(
                &self.git,
                &self.path,
                &["worktree", "add", "-q", "-B", branch, &dir_text, base],
            )
            .await?;
        }
        Ok(Worktree {
            mirror: self.clone(),
            path: dir,
            branch: branch.to_string(),
            base: base.to_string(),
        })
    }
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
    /// resolve before orca commits the merge.
    pub left_to_resolve: bool,
}

/// The most of a conflict's hunks kept for its message.
const MAX_HUNKS_BYTES: usize = 8 * 1024;

/// git's environment for a commit orca makes.
fn as_orca() -> [(&'static str, &'static str); 4] {
    let (name, email) = ORCA_AUTHOR;
    [
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
    ]
}

impl Worktree {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mirror the worktree is of.
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
    /// branch, one merge commit each, as orca; the step then starts from
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
        match set_aside.len() {
            0 => Ok(None),
            1 => {
                let (label, head, _) = set_aside.remove(0);
                let mut conflict = self.merge_leaving(label, head).await?;
                conflict.left_to_resolve = true;
                Ok(Some(conflict))
            }
            _ => Ok(Some(set_aside.remove(0).2)),
        }
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
        let message = format!("orca: merge step {label}");
        let merged = command(git, None)
            .current_dir(&self.path)
            .args(["merge", "-q", "--no-edit", "--no-ff", "-m", &message, head])
            .envs(as_orca())
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

    /// Commits what the step left uncommitted (as orca, with `message`),
    /// then reads what the step did from its branch. A step that deleted
    /// its branch, or rewrote it so the base is no longer in its history,
    /// is refused: its work cannot be merged as the DAG needs.
    pub async fn finish(&self, message: &str) -> Result<WorkDone, Error> {
        let git = &self.mirror.git;
        let branch_ref = format!("refs/heads/{}", self.branch);
        if local(
            git,
            &self.mirror.path,
            &["rev-parse", "--verify", "-q", &branch_ref],
        )
        .await
        .is_err()
        {
            return Err(Error::Rewritten(format!(
                "the step deleted its branch {}",
                self.branch
            )));
        }
        let on = local(git, &self.path, &["symbolic-ref", "-q", "HEAD"])
            .await
            .unwrap_or_else(|_| "a detached HEAD".into());
        if on != branch_ref {
            return Err(Error::Rewritten(format!(
                "the step left its branch {}: its worktree is on {on}",
                self.branch
            )));
        }
        // Mid-merge, a conflict it was to resolve: no markers may be left.
        let merging = local(
            git,
            &self.path,
            &["rev-parse", "-q", "--verify", "MERGE_HEAD"],
        )
        .await
        .is_ok();
        if merging {
            let unmerged =
                local(git, &self.path, &["diff", "--name-only", "--diff-filter=U"]).await?;
            let marked: Vec<&str> = unmerged
                .lines()
                .filter(|path| {
                    std::fs::read_to_string(self.path.join(path)).is_ok_and(|text| {
                        text.lines().any(|l| l.starts_with("<<<<<<<"))
                            && text.lines().any(|l| l.starts_with(">>>>>>>"))
                    })
                })
                .collect();
            if !marked.is_empty() {
                return Err(Error::Local(format!(
                    "the step left the conflict unresolved: markers remain in {}",
                    marked.join(", ")
                )));
            }
        }
        local(git, &self.path, &["add", "-A"]).await?;
        let staged = local(git, &self.path, &["diff", "--cached", "--quiet"]).await;
        let committed_for_the_step = staged.is_err() || merging;
        if committed_for_the_step {
            local_with(
                git,
                &self.path,
                &["commit", "-q", "--no-verify", "-m", message],
                &as_orca(),
            )
            .await?;
        }
        let head = local(git, &self.path, &["rev-parse", "HEAD"]).await?;
        if local(
            git,
            &self.path,
            &["merge-base", "--is-ancestor", &self.base, &head],
        )
        .await
        .is_err()
        {
            return Err(Error::Rewritten(format!(
                "the step rewrote the history of {}: its base {} is no longer in it",
                self.branch, self.base
            )));
        }
        let range = format!("{}..{head}", self.base);
        let numstat = local(git, &self.path, &["diff", "--numstat", "-M", &range]).await?;
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
        let names = local(git, &self.path, &["diff", "--name-only", "-M", &range]).await?;
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

    /// Removes the worktree; its branch, the step's result, stays in the
    /// mirror.
    pub async fn remove(self) -> Result<(), Error> {
        let _one_at_a_time = take_turn(
            self.mirror.worktrees.clone(),
            lock_file(&self.mirror.path, "worktrees"),
        )
        .await?;
        let dir = self.path.display().to_string();
        local(
            &self.mirror.git,
            &self.mirror.path,
            &["worktree", "remove", "--force", &dir],
        )
        .await?;
        Ok(())
    }
}
