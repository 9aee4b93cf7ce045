//! Landing a task's work on its base branch: the base's tip fetched now,
//! the task's head merged onto it as a commit made in the mirror (no
//! worktree: `git merge-tree`), and that commit pushed as a fast-forward
//! of the tip, never forced: when the base moved meanwhile, the remote
//! refuses it and nothing changed there.

use crate::Credentials;
use crate::Error;
use crate::mirror::{Mirror, local, local_with};

/// What merging a task's head onto the base's tip made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The commit to land: a merge commit, the tip its first parent, even
    /// when the head already holds the tip. So the base's first-parent
    /// history is its landings alone, each one checked, and never a
    /// task's own commits, which no check ran on.
    Commit(String),
    /// The paths both sides changed, in git's order.
    Conflict(Vec<String>),
}

/// The ref a land fetches the base's tip into: apart from the mirror's
/// `refs/remotes/`, which other fetches move.
fn landing_ref(base: &str) -> String {
    format!("refs/tidewright/land/{base}")
}

impl Mirror {
    /// The commit `base` is at on the remote, fetched now.
    pub async fn fetch_tip(
        &self,
        url: &str,
        base: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, Error> {
        let into = landing_ref(base);
        let refspec = format!("+refs/heads/{base}:{into}");
        let doing = format!("fetching {base} of {url}");
        self.remote(
            url,
            credentials,
            &["fetch", "-q", "origin", &refspec],
            &doing,
        )
        .await?;
        local(
            &self.git,
            &self.path,
            &["rev-parse", "--verify", "-q", &into],
        )
        .await
    }

    /// `head` merged onto `tip` (see [`Merged`]); `message` is the merge
    /// commit's, made as tidewright.
    pub async fn merge_onto(&self, tip: &str, head: &str, message: &str) -> Result<Merged, Error> {
        let git = command_output(
            &self.git,
            &self.path,
            &[
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                tip,
                head,
            ],
        )
        .await?;
        let mut lines = git.stdout.lines();
        let tree = lines.next().unwrap_or_default().trim().to_string();
        match git.code {
            Some(0) => {}
            // Conflicts: the tree, then the conflicted paths.
            Some(1) => {
                let mut paths: Vec<String> = lines
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                paths.dedup();
                return Ok(Merged::Conflict(paths));
            }
            _ => {
                return Err(Error::Local(format!(
                    "git merge-tree {tip} {head}: {}",
                    git.stderr.trim()
                )));
            }
        }
        let commit = local_with(
            &self.git,
            &self.path,
            &["commit-tree", &tree, "-p", tip, "-p", head, "-m", message],
            &crate::worktree::as_tidewright(),
        )
        .await?;
        Ok(Merged::Commit(commit))
    }

    /// One commit landing several tasks' work at once: `merged`'s tree (the
    /// tip and each head merged in turn), with the tip as its first parent
    /// and each head after it, so the base's first-parent history holds
    /// only this commit, the one the checks ran on, and not the merges
    /// between, which nothing checked.
    pub async fn merge_all(
        &self,
        merged: &str,
        parents: &[&str],
        message: &str,
    ) -> Result<String, Error> {
        let tree = format!("{merged}^{{tree}}");
        let mut args = vec!["commit-tree", tree.as_str()];
        for parent in parents {
            args.extend(["-p", parent]);
        }
        args.extend(["-m", message]);
        local_with(
            &self.git,
            &self.path,
            &args,
            &crate::worktree::as_tidewright(),
        )
        .await
    }

    /// Whether `commit` is already in `tip`'s history: work that landed
    /// (by a landing whose verdict was lost) lands as it is.
    pub async fn contains(&self, tip: &str, commit: &str) -> Result<bool, Error> {
        let git = command_output(
            &self.git,
            &self.path,
            &["merge-base", "--is-ancestor", commit, tip],
        )
        .await?;
        match git.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(Error::Local(format!(
                "git merge-base --is-ancestor {commit} {tip}: {}",
                git.stderr.trim()
            ))),
        }
    }

    /// Pushes `commit` to `base` on the remote, as a fast-forward only.
    pub async fn push_fast_forward(
        &self,
        url: &str,
        commit: &str,
        base: &str,
        credentials: Option<&Credentials>,
    ) -> Result<(), Error> {
        let refspec = format!("{commit}:refs/heads/{base}");
        let doing = format!("pushing to {base} of {url}");
        self.remote(
            url,
            credentials,
            &["push", "-q", "--porcelain", "origin", &refspec],
            &doing,
        )
        .await
    }
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs git in `dir` whatever its exit: `merge-tree` says a conflict by
/// exiting 1.
async fn command_output(
    git: &std::path::Path,
    dir: &std::path::Path,
    args: &[&str],
) -> Result<Output, Error> {
    let output = crate::command(git, None)
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await?;
    Ok(Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
