//! This worker's seeds: what a repository's setup made (`node_modules`, a
//! virtualenv), kept once per key (see [`tidewright_core::setup`]) and put
//! into each step's checkout whose key is the same. A seed is a directory
//! `<seeds>/<key>/` holding the setup's paths under `tree/` and its
//! description in `seed.json`; it is written under another name and
//! renamed in place whole, so a seed that is there is complete.
//!
//! A step never writes the seed's files. Where its sandbox can, each of
//! the seed's directories is laid over its checkout as an overlay (see
//! `sandbox::overlay`): nothing is copied, and the step's writes land in a
//! layer of its checkout's own. Else the step gets a copy of its own: by
//! reflink where the filesystem shares blocks copy-on-write (btrfs, XFS),
//! else byte by byte. Hard links would be cheaper on any filesystem, but a
//! step that writes into a linked file writes into the seed, and into
//! every other step's workspace.
//!
//! A seed travels between workers through the control plane's store of
//! seeds ([`SharedSeeds`]): packed here as a gzipped tar, and unpacked by
//! the worker that takes it into a seed of its own (see `travel`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::sandbox::overlay::Overlay;

mod travel;
pub use travel::{CHUNK_BYTES, Receiving, Shared, SharedSeeds};

/// The description of a seed, kept beside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seed {
    pub key: String,
    /// The repository it was made for, as the task named it.
    pub repo: String,
    pub tenant: String,
    /// The setup's paths it holds, relative to the repository's root.
    pub paths: Vec<String>,
    /// The setup that made it.
    #[serde(default)]
    pub setup: Option<tidewright_core::setup::SetupSpec>,
    pub files: u64,
    pub bytes: u64,
    /// How long its setup ran.
    pub build_millis: u64,
    /// When it was made, in microseconds since the epoch.
    pub built_at: i64,
}

/// How a seed's paths are put into a step's checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The seed's directories laid over the checkout in the sandbox: read
    /// from the seed, written above it.
    Overlay,
    /// Blocks shared copy-on-write until either side writes.
    Reflink,
    /// Every byte copied.
    Copy,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Overlay => "overlay",
            Method::Reflink => "reflink",
            Method::Copy => "copy",
        }
    }
}

/// What putting a seed in place took, and the overlays the step's
/// sandbox mounts.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub method: Method,
    pub millis: u64,
    pub overlays: Vec<Overlay>,
}

/// Held while a step uses a seed: it is not evicted meanwhile (its
/// overlays read it), by this worker or another sharing the directory. A
/// shared lock on its description, which eviction asks for exclusively and
/// passes over when it cannot have.
pub struct Pinned {
    _shared: Option<nix::fcntl::Flock<std::fs::File>>,
}

/// The seeds of one worker, and a lock per key: of the steps that need a
/// seed not made yet, one runs the setup and the others wait for it.
pub struct Seeds {
    dir: PathBuf,
    max_bytes: u64,
    /// The most all seeds may take; past it, those used longest ago go
    /// (0: no bound).
    cache_bytes: u64,
    method: Method,
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The seeds being sent to the control plane now: each is sent once
    /// however many steps find the store without it meanwhile.
    sending: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Lay seeds over checkouts (the sandbox can) rather than copy them.
    overlays: bool,
}

/// Held while seed `key` is sent; its drop lets the next send start.
pub struct Sending {
    key: String,
    sending: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.sending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

const SEED_FILE: &str = "seed.json";
/// The ends of a seed's directory being written, and of one retired.
const PARTIAL: &str = ".partial";
const DROPPED: &str = ".dropped";
/// Where, in a checkout's git directory, the layers of its overlays are,
/// and the file that says a seed is laid over it.
const LAYERS_DIR: &str = "tidewright-seed";
const LAID_FILE: &str = "key";
/// A partial seed older than this was left by a keep that died: no setup
/// runs longer (see `runtime::setup`).
const PARTIAL_STALE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);
const TREE_DIR: &str = "tree";

impl Seeds {
    /// The seeds kept in `dir` (made if missing), none larger than
    /// `max_bytes`, all together within `cache_bytes` (0: no bound); finds
    /// which way this filesystem copies cheapest. Once, as the worker
    /// starts: it blocks.
    pub fn open(dir: PathBuf, max_bytes: u64, cache_bytes: u64) -> std::io::Result<Seeds> {
        std::fs::create_dir_all(&dir)?;
        // What an interrupted keep left. The directory may be shared by
        // the workers of a node (or of a volume): another's partial seed
        // being written now is younger than any setup runs.
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_none_or(|age| age > PARTIAL_STALE);
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(PARTIAL) && stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
            if name.ends_with(DROPPED) {
                remove_now_unless_pinned(&entry.path());
            }
        }
        let method = probe_reflink(&dir);
        Ok(Seeds {
            dir,
            max_bytes,
            cache_bytes,
            method,
            locks: std::sync::Mutex::default(),
            sending: Arc::default(),
            overlays: false,
        })
    }

    /// These seeds, laid over checkouts by the sandbox rather than copied
    /// (when `on`: the sandbox passed `sandbox::overlay::probe`).
    pub fn with_overlays(mut self, on: bool) -> Seeds {
        self.overlays = on;
        self
    }

    /// How seeds' directories reach a checkout.
    pub fn method(&self) -> Method {
        if self.overlays {
            Method::Overlay
        } else {
            self.method
        }
    }

    /// Keeps seed `key` (which this worker has) from eviction while the
    /// result is held. Blocking, for as long as an eviction of it takes.
    pub fn pin(&self, key: &str) -> Pinned {
        let shared = std::fs::File::open(self.dir.join(key).join(SEED_FILE))
            .ok()
            .and_then(|file| nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared).ok());
        Pinned { _shared: shared }
    }

    /// Forgets that a seed was laid over the checkout at `root`, with the
    /// layers: the checkout's setup ran there after all.
    pub async fn unlay(root: &Path) {
        let _ = tokio::fs::remove_dir_all(root.join(".git").join(LAYERS_DIR)).await;
    }

    /// Whether the checkout at `root` has a seed laid over it: a step
    /// resumed there mounts it again, over its own writes.
    pub async fn laid_over(root: &Path) -> bool {
        tokio::fs::metadata(root.join(".git").join(LAYERS_DIR).join(LAID_FILE))
            .await
            .is_ok()
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Held while a step looks for the seed `key` and, without one, makes
    /// it.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Leave to send seed `key` to the control plane; `None` while it is
    /// being sent.
    pub fn sending(&self, key: &str) -> Option<Sending> {
        let fresh = self
            .sending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string());
        fresh.then(|| Sending {
            key: key.to_string(),
            sending: self.sending.clone(),
        })
    }

    /// The seed `key`, when this worker has it.
    pub async fn get(&self, key: &str) -> Option<Seed> {
        let text = tokio::fs::read(self.dir.join(key).join(SEED_FILE))
            .await
            .ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Every seed this worker has.
    pub async fn list(&self) -> Vec<Seed> {
        let mut seeds = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return seeds;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(PARTIAL) || name.ends_with(DROPPED) {
                continue;
            }
            if let Some(seed) = self.get(&name).await {
                seeds.push(seed);
            }
        }
        seeds
    }

    /// Puts the seed's paths into the checkout at `root`: each directory
    /// laid over it (the overlays returned, for the sandbox to mount) when
    /// these seeds are, else a copy of its own.
    pub async fn put_into(&self, seed: &Seed, root: &Path) -> std::io::Result<Placed> {
        let started = Instant::now();
        self.touch(&seed.key);
        let tree = self.dir.join(&seed.key).join(TREE_DIR);
        // The layers live in the checkout's git directory, which git
        // leaves alone and the workspace's removal takes with it.
        let git_dir = root.join(".git");
        let layers = git_dir.join(LAYERS_DIR);
        let lay = self.overlays
            && tokio::fs::metadata(&git_dir)
                .await
                .is_ok_and(|m| m.is_dir());
        let mut overlays = Vec::new();
        for (n, path) in seed.paths.iter().enumerate() {
            let (from, to) = (tree.join(path), root.join(path));
            if lay && tokio::fs::metadata(&from).await.is_ok_and(|m| m.is_dir()) {
                let overlay = Overlay {
                    lower: from,
                    upper: layers.join(n.to_string()).join("upper"),
                    work: layers.join(n.to_string()).join("work"),
                    target: to,
                };
                overlay.prepare().await?;
                overlays.push(overlay);
                continue;
            }
            if let Some(parent) = to.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            copy(&from, &to, self.method).await?;
        }
        if !overlays.is_empty() {
            tokio::fs::write(layers.join(LAID_FILE), &seed.key).await?;
        }
        Ok(Placed {
            method: if overlays.is_empty() {
                self.method
            } else {
                Method::Overlay
            },
            millis: started.elapsed().as_millis() as u64,
            overlays,
        })
    }

    /// Keeps what the setup made at `root` (`seed.paths` there) as seed
    /// `seed.key`, its files and bytes counted; `Err` says why it is not
    /// kept (too large, a path the setup did not make, the disk).
    pub async fn keep(&self, mut seed: Seed, root: &Path) -> Result<Seed, String> {
        let mut counted = (0, 0);
        for path in &seed.paths {
            let at = root.join(path);
            if tokio::fs::symlink_metadata(&at).await.is_err() {
                return Err(format!("the setup made no {path}"));
            }
            let (files, bytes) = tokio::task::spawn_blocking(move || measure(&at))
                .await
                .map_err(|e| e.to_string())?;
            counted = (counted.0 + files, counted.1 + bytes);
        }
        (seed.files, seed.bytes) = counted;
        if seed.bytes > self.max_bytes {
            return Err(format!(
                "it is {} bytes, over the worker's --max-seed-bytes {}",
                seed.bytes, self.max_bytes
            ));
        }
        let partial = self.receiving(&seed.key);
        let written = async {
            for path in &seed.paths {
                let to = partial.tree().join(path);
                if let Some(parent) = to.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                copy(&root.join(path), &to, self.method).await?;
            }
            self.commit(partial, &seed).await
        }
        .await;
        written.map_err(|e| format!("keeping it: {e}"))?;
        Ok(seed)
    }

    /// Removes seed `key`; whether there was one.
    pub async fn remove(&self, key: &str) -> bool {
        self.retire(&self.dir.join(key)).await
    }

    /// Takes the seed at `path` out of use at once, renamed aside; it is
    /// removed as soon as no step (here, or on a worker sharing the
    /// directory) has it pinned, now or at a later eviction. Whether there
    /// was one.
    async fn retire(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = self.dir.join(format!("{name}.{}{DROPPED}", unique()));
        if tokio::fs::rename(path, &aside).await.is_err() {
            return false;
        }
        remove_unless_pinned(&aside).await;
        true
    }

    /// Removes the seeds retired while a step had them pinned, once none
    /// has.
    async fn sweep(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy().ends_with(DROPPED) {
                remove_unless_pinned(&entry.path()).await;
            }
        }
    }

    /// A seed to be written under another name, then committed whole
    /// ([`Seeds::commit`]); dropped uncommitted, it is removed.
    pub fn receiving(&self, key: &str) -> Receiving {
        // Named for this process and moment: the workers sharing the
        // directory may keep the same key at once.
        let path = self.dir.join(format!("{key}.{}{PARTIAL}", unique()));
        Receiving { path }
    }

    /// Puts what `partial` holds in place as seed `seed.key`, described
    /// by `seed`.
    pub async fn commit(&self, mut partial: Receiving, seed: &Seed) -> std::io::Result<()> {
        let path = std::mem::take(&mut partial.path);
        let committed = async {
            tokio::fs::create_dir_all(path.join(TREE_DIR)).await?;
            let text = serde_json::to_vec_pretty(seed).map_err(std::io::Error::other)?;
            tokio::fs::write(path.join(SEED_FILE), text).await?;
            let done = self.dir.join(&seed.key);
            self.retire(&done).await;
            tokio::fs::rename(&path, &done).await
        }
        .await;
        if committed.is_err() {
            let _ = tokio::fs::remove_dir_all(&path).await;
            return committed;
        }
        self.evict(&seed.key).await;
        Ok(())
    }

    /// Marks seed `key` used now: the seeds used longest ago go first.
    fn touch(&self, key: &str) {
        let marked = std::fs::File::options()
            .append(true)
            .open(self.dir.join(key).join(SEED_FILE))
            .and_then(|file| file.set_modified(std::time::SystemTime::now()));
        if let Err(e) = marked {
            tracing::debug!(seed = %key, error = %e, "a seed's use not marked");
        }
    }

    /// Removes the seeds used longest ago, `keep` and those a step is
    /// taking now aside, until all are within the bound.
    async fn evict(&self, keep: &str) {
        if self.cache_bytes == 0 {
            return;
        }
        self.sweep().await;
        let mut kept: Vec<(std::time::SystemTime, Seed)> = Vec::new();
        for seed in self.list().await {
            let used = std::fs::metadata(self.dir.join(&seed.key).join(SEED_FILE))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            kept.push((used, seed));
        }
        let mut total: u64 = kept.iter().map(|(_, seed)| seed.bytes).sum();
        kept.sort_by_key(|(used, _)| *used);
        for (_, seed) in kept.iter().filter(|(_, seed)| seed.key != keep) {
            if total <= self.cache_bytes {
                break;
            }
            let lock = self
                .locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(seed.key.clone())
                .or_default()
                .clone();
            let Ok(_taking) = lock.try_lock() else {
                continue;
            };
            // Passed over while a step (here or on a worker sharing the
            // directory) has it pinned.
            let Ok(description) = std::fs::File::open(self.dir.join(&seed.key).join(SEED_FILE))
            else {
                continue;
            };
            let Ok(_evicting) =
                nix::fcntl::Flock::lock(description, nix::fcntl::FlockArg::LockExclusiveNonblock)
            else {
                continue;
            };
            if tokio::fs::remove_dir_all(self.dir.join(&seed.key))
                .await
                .is_ok()
            {
                tracing::info!(seed = %seed.key, bytes = seed.bytes, "evicted a seed");
                total = total.saturating_sub(seed.bytes);
            }
        }
    }

    /// Packs seed `key`'s paths (see [`travel::pack`]). Blocking.
    pub fn pack(
        &self,
        key: &str,
        send: impl FnMut(Vec<u8>) -> std::io::Result<()>,
    ) -> std::io::Result<String> {
        travel::pack(&self.dir.join(key).join(TREE_DIR), send)
    }
}

/// This process and moment, to name a directory no other worker sharing
/// the seeds' directory names.
fn unique() -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{stamp}", std::process::id())
}

/// Removes the seed directory `path` unless a step has it pinned.
async fn remove_unless_pinned(path: &Path) {
    let path = path.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || remove_now_unless_pinned(&path)).await;
}

/// [`remove_unless_pinned`], blocking.
fn remove_now_unless_pinned(path: &Path) {
    let held = match std::fs::File::open(path.join(SEED_FILE)) {
        Ok(description) => {
            match nix::fcntl::Flock::lock(description, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                Ok(held) => Some(held),
                Err(_) => return,
            }
        }
        Err(_) => None,
    };
    let _ = std::fs::remove_dir_all(path);
    drop(held);
}

/// Files and bytes under `path` (itself, when a file), links not followed.
fn measure(path: &Path) -> (u64, u64) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (0, 0);
    };
    if !meta.is_dir() {
        return (1, meta.len());
    }
    let mut counted = (0, 0);
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let (files, bytes) = measure(&entry.path());
        counted = (counted.0 + files, counted.1 + bytes);
    }
    counted
}

/// `cp` copying `from` (a file or a directory, with its modes, times and
/// links) to `to`, which must not exist, by `method`.
fn cp(from: &Path, to: &Path, method: Method) -> std::process::Command {
    let reflink = match method {
        Method::Reflink => "--reflink=always",
        // An overlay's seed is kept, and a file put in place, by copying.
        Method::Copy | Method::Overlay => "--reflink=never",
    };
    let mut command = std::process::Command::new("cp");
    command
        .args(["-a", "--no-target-directory", reflink])
        .arg(from)
        .arg(to)
        .env_clear()
        .stdin(std::process::Stdio::null());
    command
}

async fn copy(from: &Path, to: &Path, method: Method) -> std::io::Result<()> {
    let output = Command::from(cp(from, to, method)).output().await?;
    if output.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "cp {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// Whether files in `dir` can be reflinked: a copy made so that shares
/// the file's blocks.
fn probe_reflink(dir: &Path) -> Method {
    let probe = dir.join(".reflink-probe");
    let copied = dir.join(".reflink-probe.copy");
    let _ = std::fs::write(&probe, b"probe");
    let reflinked = cp(&probe, &copied, Method::Reflink)
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = std::fs::remove_file(&probe);
    let _ = std::fs::remove_file(&copied);
    if reflinked {
        Method::Reflink
    } else {
        Method::Copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(key: &str) -> Seed {
        Seed {
            key: key.into(),
            repo: "https://git/a.git".into(),
            tenant: "acme".into(),
            paths: vec!["deps".into(), "build/cache".into()],
            ..Seed::default()
        }
    }

    fn made(root: &Path) {
        std::fs::create_dir_all(root.join("deps/pkg")).expect("deps");
        std::fs::write(root.join("deps/pkg/index.js"), "module.exports = 1;\n").expect("a file");
        std::fs::create_dir_all(root.join("build/cache")).expect("cache");
        std::fs::write(root.join("build/cache/c"), "cc").expect("a file");
        std::os::unix::fs::symlink("pkg/index.js", root.join("deps/main.js")).expect("a link");
    }

    #[tokio::test]
    async fn a_kept_seed_is_put_into_each_checkout_as_a_copy_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seeds = Seeds::open(dir.path().join("seeds"), 1 << 20, 0).expect("seeds");
        let built = dir.path().join("built");
        made(&built);
        let kept = seeds.keep(seed("k1"), &built).await.expect("kept");
        assert_eq!((kept.files, kept.bytes), (3, 20 + 2 + 12));
        assert_eq!(seeds.get("k1").await, Some(kept.clone()));
        assert_eq!(seeds.list().await, std::slice::from_ref(&kept));

        let (one, two) = (dir.path().join("one"), dir.path().join("two"));
        for checkout in [&one, &two] {
            std::fs::create_dir_all(checkout).expect("checkout");
            let placed = seeds.put_into(&kept, checkout).await.expect("placed");
            assert_eq!(placed.method, seeds.method());
        }
        assert_eq!(
            std::fs::read_link(one.join("deps/main.js")).expect("the link, kept"),
            Path::new("pkg/index.js")
        );
        // A step's writes reach neither the seed nor another step.
        std::fs::write(one.join("deps/pkg/index.js"), "changed").expect("write");
        std::fs::remove_dir_all(one.join("build")).expect("remove");
        let fresh = dir.path().join("fresh");
        std::fs::create_dir_all(&fresh).expect("checkout");
        seeds.put_into(&kept, &fresh).await.expect("placed");
        for checkout in [&two, &fresh] {
            assert_eq!(
                std::fs::read_to_string(checkout.join("deps/pkg/index.js")).expect("read"),
                "module.exports = 1;\n"
            );
            assert!(checkout.join("build/cache/c").exists());
        }
        assert!(seeds.remove("k1").await);
        assert_eq!(seeds.get("k1").await, None);
    }

    #[tokio::test]
    async fn a_seed_too_large_or_missing_a_path_is_not_kept_and_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seeds = Seeds::open(dir.path().join("seeds"), 10, 0).expect("seeds");
        let built = dir.path().join("built");
        made(&built);
        let refused = seeds
            .keep(seed("big"), &built)
            .await
            .expect_err("too large");
        assert_eq!(
            refused,
            "it is 34 bytes, over the worker's --max-seed-bytes 10"
        );
        assert_eq!(seeds.get("big").await, None);
        let missing = Seed {
            paths: vec!["node_modules".into()],
            ..seed("missing")
        };
        assert_eq!(
            seeds.keep(missing, &built).await.expect_err("not made"),
            "the setup made no node_modules"
        );
        assert!(seeds.list().await.is_empty());
    }

    #[tokio::test]
    async fn a_packed_seed_unpacks_on_another_worker_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let here = Seeds::open(dir.path().join("here"), 1 << 20, 0).expect("seeds");
        let there = Seeds::open(dir.path().join("there"), 1 << 20, 0).expect("seeds");
        let built = dir.path().join("built");
        made(&built);
        std::fs::write(built.join("deps/run.sh"), "#!/bin/sh\n").expect("a script");
        std::fs::set_permissions(
            built.join("deps/run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("executable");
        let kept = here.keep(seed("k1"), &built).await.expect("kept");
        let mut packed = Vec::new();
        let sha = here
            .pack("k1", |chunk| {
                packed.extend(chunk);
                Ok(())
            })
            .expect("packed");
        use sha2::Digest;
        assert_eq!(sha, tidewright_core::hex(&sha2::Sha256::digest(&packed)));
        let receiving = there.receiving("k1");
        receiving.unpack(packed.as_slice()).expect("unpacked");
        there.commit(receiving, &kept).await.expect("committed");
        let checkout = dir.path().join("checkout");
        std::fs::create_dir_all(&checkout).expect("checkout");
        there.put_into(&kept, &checkout).await.expect("placed");
        assert_eq!(
            std::fs::read_link(checkout.join("deps/main.js")).expect("the link, kept"),
            Path::new("pkg/index.js")
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(checkout.join("deps/run.sh"))
                .expect("the script")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(there.get("k1").await, Some(kept));

        // Dropped uncommitted, what was unpacked goes.
        let half = there.receiving("k2");
        half.unpack(packed.as_slice()).expect("unpacked");
        drop(half);
        assert!(!dir.path().join("there/k2.partial").exists());
        assert_eq!(there.get("k2").await, None);
    }

    #[tokio::test]
    async fn past_the_cache_bound_the_seed_used_longest_ago_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Each seed is 34 bytes: room for two.
        let seeds = Seeds::open(dir.path().join("seeds"), 1 << 20, 70).expect("seeds");
        let built = dir.path().join("built");
        made(&built);
        let used_at = |key: &str, seconds: u64| {
            std::fs::File::options()
                .append(true)
                .open(dir.path().join("seeds").join(key).join(SEED_FILE))
                .and_then(|f| {
                    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
                })
                .expect("marked");
        };
        for key in ["k1", "k2"] {
            seeds.keep(seed(key), &built).await.expect("kept");
        }
        used_at("k1", 2000);
        used_at("k2", 1000);
        // A step taking k2 now keeps it: k1 goes instead.
        let taking = seeds.lock("k2").await;
        seeds.keep(seed("k3"), &built).await.expect("kept");
        let mut left: Vec<String> = seeds.list().await.into_iter().map(|s| s.key).collect();
        left.sort();
        assert_eq!(left, ["k2", "k3"]);
        drop(taking);
        used_at("k3", 3000);
        seeds.keep(seed("k4"), &built).await.expect("kept");
        let mut left: Vec<String> = seeds.list().await.into_iter().map(|s| s.key).collect();
        left.sort();
        assert_eq!(left, ["k3", "k4"]);
        // A seed pinned by a step (of this worker or another sharing the
        // directory, which the lock is across) is passed over too.
        let other = Seeds::open(dir.path().join("seeds"), 1 << 20, 70).expect("seeds");
        let pinned = other.pin("k3");
        used_at("k4", 4000);
        seeds.keep(seed("k5"), &built).await.expect("kept");
        let mut left: Vec<String> = seeds.list().await.into_iter().map(|s| s.key).collect();
        left.sort();
        assert_eq!(left, ["k3", "k5"]);
        drop(pinned);

        // Dropped while pinned: out of use at once, its files kept until
        // the step is done with them.
        let pinned = other.pin("k5");
        assert!(seeds.remove("k5").await);
        assert_eq!(seeds.get("k5").await, None);
        let aside = |n| {
            std::fs::read_dir(dir.path().join("seeds"))
                .expect("seeds")
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(DROPPED))
                .count()
                == n
        };
        assert!(aside(1), "kept while pinned");
        drop(pinned);
        seeds.sweep().await;
        assert!(aside(0), "removed once not");
    }

    #[tokio::test]
    async fn what_an_interrupted_keep_left_is_cleared_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, fresh) = (
            dir.path().join("seeds/k.1-1.partial"),
            dir.path().join("seeds/k.2-2.partial"),
        );
        for partial in [&old, &fresh] {
            std::fs::create_dir_all(partial.join("tree")).expect("partial");
        }
        let long_ago = std::time::SystemTime::now() - 2 * PARTIAL_STALE;
        std::fs::File::open(&old)
            .and_then(|d| d.set_modified(long_ago))
            .expect("aged");
        let seeds = Seeds::open(dir.path().join("seeds"), 1 << 20, 0).expect("seeds");
        assert!(!old.exists(), "left by a keep that died");
        assert!(fresh.exists(), "another worker's, being written now");
        assert!(seeds.list().await.is_empty());
    }
}
