//! Spare repositories: a mirror keeps a few steps' repositories checked
//! out ahead of need at the commit its tasks start from, so a step's is
//! ready in the time of a rename and a branch switch instead of a checkout
//! of every file. After a step takes one (or finds none), `refill` makes
//! the next in the background, while the step's agent works.
//!
//! Spares live beside the workers' workspaces, not in the mirrors
//! directory: a rename does not cross filesystems, and the mirrors may be
//! a volume of their own. A spare is made as `making-<commit>-<id>` and
//! renamed `<commit>-<id>` when whole; what a crash leaves half made is
//! removed by a later refill. No step has seen a spare, so tidewright may run
//! git in it. Their number is bounded per mirror; they go when their
//! mirror is evicted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Error;
use crate::mirror::{Mirror, Spares, local, lock_file, take_turn};

/// A half-made spare older than this was left by a crash.
const ABANDONED_AFTER: Duration = Duration::from_secs(10 * 60);

const MAKING: &str = "making-";

/// The spares ready at `commit` under `dir`, oldest first.
fn ready_at(dir: &Path, commit: &str) -> Vec<PathBuf> {
    let prefix = format!("{commit}-");
    all_ready(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect()
}

/// Every spare ready under `dir`, oldest first.
fn all_ready(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ready: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(MAKING))
        .map(|e| {
            let made = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (made, e.path())
        })
        .collect();
    ready.sort();
    ready.into_iter().map(|(_, path)| path).collect()
}

/// A name no other spare has, in this process or another.
fn unique_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Mirror {
    /// Turns a spare checked out at `near` into the repository at `dir`
    /// on `branch` from `start` (a commit near `near`: only what differs
    /// is checked out). Whether it did; without a spare, or when the spare
    /// will not do, the caller checks out a repository as usual. Called
    /// with the mirror's lock on its steps' repositories held.
    pub(crate) async fn take_spare(
        &self,
        dir: &Path,
        branch: &str,
        start: &str,
        near: &str,
    ) -> bool {
        let Some(spares) = &self.spares else {
            return false;
        };
        let Some(spare) = ready_at(&spares.dir, near).into_iter().next() else {
            return false;
        };
        if let Err(e) = tokio::fs::rename(&spare, dir).await {
            tracing::warn!(spare = %spare.display(), error = %e, "a spare repository would not move: removed");
            let _ = tokio::fs::remove_dir_all(&spare).await;
            return false;
        }
        // Forced: a spare is nobody's work, and whatever changed in it
        // since it was made is not the step's to inherit.
        match local(
            &self.git,
            dir,
            &["checkout", "-q", "-f", "-B", branch, start],
        )
        .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "a spare repository would not switch: removed");
                let _ = tokio::fs::remove_dir_all(dir).await;
                false
            }
        }
    }

    /// Makes spares at `commit` until as many are ready as the mirror
    /// keeps at one commit, removing the oldest at other commits beyond
    /// its bound and what a crash left half made. How many it made; none
    /// when the mirror keeps no spares.
    pub async fn refill(&self, commit: &str) -> Result<usize, Error> {
        let Some(spares) = &self.spares else {
            return Ok(0);
        };
        let _one_refill = spares.refilling.lock().await;
        tokio::fs::create_dir_all(&spares.dir).await?;
        self.tidy_spares(spares, commit).await?;
        let mut made = 0;
        while ready_at(&spares.dir, commit).len() < spares.per_commit {
            self.make_spare(spares, commit).await?;
            made += 1;
        }
        Ok(made)
    }

    /// Removes half-made spares abandoned by a crash and the oldest spares
    /// at other commits than `commit` beyond the mirror's bound.
    async fn tidy_spares(&self, spares: &Spares, commit: &str) -> Result<(), Error> {
        let _one_at_a_time =
            take_turn(self.worktrees.clone(), lock_file(&self.path, "worktrees")).await?;
        let mut entries = tokio::fs::read_dir(&spares.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let abandoned = entry.file_name().to_string_lossy().starts_with(MAKING)
                && entry
                    .metadata()
                    .await
                    .and_then(|m| m.modified())
                    .is_ok_and(|at| at.elapsed().unwrap_or_default() >= ABANDONED_AFTER);
            if abandoned {
                tokio::fs::remove_dir_all(entry.path()).await?;
            }
        }
        let ready = all_ready(&spares.dir);
        let bound = 2 * spares.per_commit;
        let prefix = format!("{commit}-");
        let others: Vec<&PathBuf> = ready
            .iter()
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        // Room for a whole set at `commit`.
        let keep = bound.saturating_sub(spares.per_commit);
        for old in others.iter().take(others.len().saturating_sub(keep)) {
            tokio::fs::remove_dir_all(old).await?;
        }
        Ok(())
    }

    /// One spare at `commit`, checked out detached, then renamed ready.
    async fn make_spare(&self, spares: &Spares, commit: &str) -> Result<(), Error> {
        let id = unique_id();
        let making = spares.dir.join(format!("{MAKING}{commit}-{id}"));
        let ready = spares.dir.join(format!("{commit}-{id}"));
        let made = async {
            self.init(&making, "tidewright-spare").await?;
            local(
                &self.git,
                &making,
                &["checkout", "-q", "-f", "--detach", commit],
            )
            .await?;
            tokio::fs::rename(&making, &ready).await?;
            Ok::<_, Error>(())
        };
        if let Err(e) = made.await {
            let _ = tokio::fs::remove_dir_all(&making).await;
            return Err(e);
        }
        Ok(())
    }
}
