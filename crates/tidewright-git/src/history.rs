//! A repository's history as `tidewright eval` reads it (see
//! `tidewright_core::eval`): the commits that landed on a branch and
//! changed both code and tests, and a snapshot of a commit's past that
//! holds nothing after it, for an agent to start from without finding the
//! answer in the history.

use std::path::Path;

use tidewright_core::eval::{Landed, is_code_path, is_test_path};

use crate::Error;
use crate::mirror::local;

/// The most bytes of a commit's tests carried into its check.
pub const MAX_TEST_BYTES: usize = 256 * 1024;

/// A bare clone of `url` at `dir`, for reading its history (no
/// credentials: a public or local repository).
pub async fn clone_bare(git: &Path, url: &str, dir: &Path) -> Result<(), Error> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let target = dir.display().to_string();
    local(git, parent, &["clone", "--bare", "--quiet", url, &target]).await?;
    Ok(())
}

/// The commits on `branch` of the repository at `repo` (first parents:
/// what landed there) since `since` (git's `--since`: `90 days ago`,
/// a date), newest first, that changed both code and tests; at most
/// `limit`, and how many were looked at.
pub async fn landed(
    git: &Path,
    repo: &Path,
    (branch, since): (&str, &str),
    limit: usize,
) -> Result<(Vec<Landed>, usize), Error> {
    let since = format!("--since={since}");
    let log = local(
        git,
        repo,
        &[
            "log",
            "--first-parent",
            &since,
            "--format=%H %P",
            branch,
            "--",
        ],
    )
    .await?;
    let mut found = Vec::new();
    let mut looked = 0;
    for line in log.lines() {
        let mut ids = line.split_whitespace();
        let (Some(commit), Some(parent)) = (ids.next(), ids.next()) else {
            continue; // a root commit: no parent to start from
        };
        looked += 1;
        let names = local(
            git,
            repo,
            &["diff", "--name-only", "--no-renames", parent, commit],
        )
        .await?;
        let paths: Vec<&str> = names.lines().filter(|p| !p.is_empty()).collect();
        let tests: Vec<&str> = paths.iter().copied().filter(|p| is_test_path(p)).collect();
        if tests.is_empty() || !paths.iter().any(|p| is_code_path(p)) {
            continue;
        }
        let mut files = Vec::new();
        let mut bytes = 0;
        for path in tests {
            // A test the commit removed is none to run.
            let Ok(content) = show(git, repo, commit, path).await else {
                continue;
            };
            bytes += content.len();
            files.push((path.to_string(), content));
        }
        if files.is_empty() || bytes > MAX_TEST_BYTES {
            continue;
        }
        let message = local(git, repo, &["log", "-1", "--format=%B", commit]).await?;
        found.push(Landed {
            commit: commit.to_string(),
            parent: parent.to_string(),
            message: message.trim().to_string(),
            tests: files,
        });
        if found.len() >= limit {
            break;
        }
    }
    Ok((found, looked))
}

/// The content of `path` at `commit`.
async fn show(git: &Path, repo: &Path, commit: &str, path: &str) -> Result<Vec<u8>, Error> {
    let spec = format!("{commit}:{path}");
    let output = tokio::process::Command::new(git)
        .current_dir(repo)
        .args(["show", &spec])
        .output()
        .await?;
    if !output.status.success() {
        return Err(Error::Local(format!(
            "git show {spec}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(output.stdout)
}

/// A bare repository at `dest` whose `main` is `commit` and which holds
/// only what `commit` reaches: nothing after it.
pub async fn snapshot(git: &Path, repo: &Path, commit: &str, dest: &Path) -> Result<(), Error> {
    tokio::fs::create_dir_all(dest).await?;
    local(git, dest, &["init", "--bare", "--quiet", "-b", "main"]).await?;
    let target = dest.display().to_string();
    let refspec = format!("{commit}:refs/heads/main");
    local(git, repo, &["push", "--quiet", &target, &refspec]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn git(dir: &Path, args: &[&str]) -> String {
        local(Path::new("git"), dir, args).await.expect("git")
    }

    #[tokio::test]
    async fn commits_that_changed_code_and_tests_are_found_and_a_snapshot_holds_nothing_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("dir");
        git(&work, &["init", "--quiet", "-b", "main"]).await;
        git(&work, &["config", "user.email", "t@example.com"]).await;
        git(&work, &["config", "user.name", "t"]).await;
        let commit = |files: &'static [(&'static str, &'static str)], message: &'static str| {
            let work = work.clone();
            async move {
                for (path, content) in files {
                    let file = work.join(path);
                    std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
                    std::fs::write(file, content).expect("write");
                }
                git(&work, &["add", "-A"]).await;
                git(&work, &["commit", "--quiet", "-m", message]).await;
                git(&work, &["rev-parse", "HEAD"]).await
            }
        };
        let root = commit(&[("calc.py", "add = lambda a, b: a - b\n")], "Start").await;
        let fix = commit(
            &[
                ("calc.py", "add = lambda a, b: a + b\n"),
                (
                    "tests/test_calc.py",
                    "from calc import add\nassert add(2, 3) == 5\n",
                ),
            ],
            "Fix add: it subtracted",
        )
        .await;
        let _docs = commit(&[("README.md", "calc\n")], "Docs only").await;
        let _tests = commit(&[("tests/test_more.py", "pass\n")], "Tests only").await;
        let bare = dir.path().join("clone.git");
        clone_bare(Path::new("git"), &work.display().to_string(), &bare)
            .await
            .expect("clone");
        let (found, looked) = landed(Path::new("git"), &bare, ("main", "90 days ago"), 10)
            .await
            .expect("history");
        assert_eq!(looked, 3, "the root has no parent to start from");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].commit, fix);
        assert_eq!(found[0].parent, root);
        assert_eq!(found[0].message, "Fix add: it subtracted");
        assert_eq!(
            found[0].tests,
            [(
                "tests/test_calc.py".to_string(),
                b"from calc import add\nassert add(2, 3) == 5\n".to_vec()
            )]
        );
        let snap = dir.path().join("snap.git");
        snapshot(Path::new("git"), &bare, &root, &snap)
            .await
            .expect("snapshot");
        assert_eq!(git(&snap, &["rev-parse", "main"]).await, root);
        let has_fix = local(Path::new("git"), &snap, &["cat-file", "-e", &fix]).await;
        assert!(
            has_fix.is_err(),
            "the snapshot holds nothing after its commit"
        );
    }
}
