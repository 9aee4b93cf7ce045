//! The control plane's store of seeds: what a repository's setup made on
//! one worker (see `tidewright_core::setup`), packed by that worker and
//! kept here so that every other worker takes it instead of running the
//! setup again. A directory: each packed seed is a blob named by its
//! sha256 under `blobs/`, and each key's entry a JSON file under `index/`
//! that names its blob. Blobs are written under `incoming/` and renamed in
//! place whole, and read back against their hash: a corrupt one is found
//! as it is read, and forgotten.
//!
//! Seeds live in a directory, not in the store of tasks: they are large
//! (hundreds of megabytes) and a cache (any worker can make a seed again
//! from the repository), where what the task store keeps cannot be made
//! again. A standby that takes over with another directory starts with
//! none; its workers run their setups once more. The store is bounded:
//! past `max_bytes`, the seeds used longest ago go.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tidewright_core::hex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How much of a blob is read at a time, and the most a worker sends in
/// one message.
pub const CHUNK_BYTES: usize = 1 << 20;

/// A seed as the store keeps it: what its worker said of it, and what the
/// store knows (its blob, its uses). An entry whose `sha256` is empty was
/// dropped (`tidewright seed delete`) at `dropped_at`, and has no blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StoredSeed {
    pub key: String,
    /// The tenant whose step made it: only its steps get it.
    pub tenant: String,
    pub repo: String,
    /// The setup's paths it holds, relative to the repository's root.
    pub paths: Vec<String>,
    /// The setup that made it, and the task whose step ran it.
    pub setup: Option<tidewright_core::setup::SetupSpec>,
    pub task_id: String,
    /// Files and bytes unpacked.
    pub files: u64,
    pub bytes: u64,
    /// How long its setup ran.
    pub build_millis: u64,
    /// When its setup ran, in microseconds since the epoch.
    pub built_at: i64,
    /// Its blob's sha256, in hex; empty when dropped.
    pub sha256: String,
    /// Its blob's size: the seed packed and compressed.
    pub stored_bytes: u64,
    pub stored_at: i64,
    /// When a step last took it, and how many have.
    pub used_at: i64,
    pub uses: u64,
    /// When it was last dropped (0: never). A worker's own copy made
    /// before then is stale.
    pub dropped_at: i64,
}

impl StoredSeed {
    /// Whether the store holds its blob.
    pub fn is_stored(&self) -> bool {
        !self.sha256.is_empty()
    }
}

/// A seed's key as the workers make it: a sha256 in lowercase hex. Any
/// other is refused before it names a file.
pub fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The seeds kept in one directory, at most `max_bytes` of blobs.
pub struct SeedStore {
    dir: PathBuf,
    max_bytes: u64,
    /// Held over each change of the index (keep, use, drop, evict), so
    /// none writes back an entry another changed since it read it.
    index: tokio::sync::Mutex<()>,
}

/// A blob being received: written under `incoming/`, hashed as it comes.
pub struct Incoming {
    file: tokio::fs::File,
    path: PathBuf,
    hasher: Sha256,
    bytes: u64,
    max_bytes: u64,
}

impl Incoming {
    /// Appends `chunk`; refused past the store's bound, which no seed can
    /// be kept beyond.
    pub async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the seed is over {} bytes, the control plane's --max-seed-store-bytes",
                    self.max_bytes
                ),
            ));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Kept blobs were renamed away; this is what a broken upload left.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A blob being read, checked against its hash at its end.
pub struct Outgoing {
    file: tokio::fs::File,
    hasher: Sha256,
    sha256: String,
}

impl Outgoing {
    /// The next chunk; `None` at the end. At the end, a blob whose bytes
    /// do not hash to its name is an `InvalidData` error.
    pub async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = vec![0; CHUNK_BYTES];
        let mut filled = 0;
        while filled < chunk.len() {
            let read = self.file.read(&mut chunk[filled..]).await?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        chunk.truncate(filled);
        if filled > 0 {
            self.hasher.update(&chunk);
            return Ok(Some(chunk));
        }
        let found = hex(&std::mem::take(&mut self.hasher).finalize());
        if found != self.sha256 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the stored seed is corrupt: its bytes hash to {found}, not {}",
                    self.sha256
                ),
            ));
        }
        Ok(None)
    }
}

const INDEX: &str = "index";
const BLOBS: &str = "blobs";
const INCOMING: &str = "incoming";

impl SeedStore {
    /// The store in `dir`, made if missing; what an interrupted upload
    /// left is cleared. Blocking: once, as the control plane starts.
    pub fn open(dir: PathBuf, max_bytes: u64) -> std::io::Result<SeedStore> {
        for sub in [INDEX, BLOBS] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let _ = std::fs::remove_dir_all(dir.join(INCOMING));
        std::fs::create_dir_all(dir.join(INCOMING))?;
        Ok(SeedStore {
            dir,
            max_bytes,
            index: tokio::sync::Mutex::new(()),
        })
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(INDEX).join(format!("{key}.json"))
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(BLOBS).join(sha256)
    }

    /// The entry of `key` (a dropped one too); `None` when never kept, or
    /// evicted.
    pub async fn look(&self, key: &str) -> Option<StoredSeed> {
        if !valid_key(key) {
            return None;
        }
        read_entry(&self.entry_path(key)).await
    }

    /// Every entry, dropped ones too.
    pub async fn list(&self) -> Vec<StoredSeed> {
        let mut entries = Vec::new();
        let Ok(mut dir) = tokio::fs::read_dir(self.dir.join(INDEX)).await else {
            return entries;
        };
        while let Ok(Some(file)) = dir.next_entry().await {
            if let Some(entry) = read_entry(&file.path()).await {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }

    /// A blob to receive.
    pub async fn incoming(&self) -> std::io::Result<Incoming> {
        let path = self.dir.join(INCOMING).join(ulid::Ulid::new().to_string());
        let file = tokio::fs::File::create(&path).await?;
        Ok(Incoming {
            file,
            path,
            hasher: Sha256::new(),
            bytes: 0,
            max_bytes: self.max_bytes,
        })
    }

    /// Keeps what `incoming` received as the blob of `seed.key`, in place
    /// of any before it; `sha256` is what its sender says it hashes to,
    /// and must. The entry as kept; then the seeds used longest ago go
    /// until the store is within its bound.
    pub async fn keep(
        &self,
        mut incoming: Incoming,
        mut seed: StoredSeed,
        sha256: &str,
        now: i64,
    ) -> std::io::Result<StoredSeed> {
        incoming.file.flush().await?;
        incoming.file.sync_all().await?;
        let found = hex(&std::mem::take(&mut incoming.hasher).finalize());
        if found != sha256 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the seed's bytes hash to {found}, not the {sha256} its worker said"),
            ));
        }
        let _index = self.index.lock().await;
        let before = read_entry(&self.entry_path(&seed.key)).await;
        tokio::fs::rename(&incoming.path, self.blob_path(&found)).await?;
        seed.sha256 = found;
        seed.stored_bytes = incoming.bytes;
        seed.stored_at = now;
        seed.used_at = now;
        seed.uses = before.as_ref().map_or(0, |b| b.uses);
        seed.dropped_at = before.as_ref().map_or(0, |b| b.dropped_at);
        write_entry(&self.entry_path(&seed.key), &seed).await?;
        if let Some(before) = before {
            self.remove_blob_unless_named(&before.sha256).await;
        }
        self.evict(&seed.key).await;
        Ok(seed)
    }

    /// Counts a step's use of `key`'s seed.
    pub async fn used(&self, key: &str, now: i64) {
        let _index = self.index.lock().await;
        let path = self.entry_path(key);
        if let Some(mut entry) = read_entry(&path).await {
            entry.uses += 1;
            entry.used_at = now;
            let _ = write_entry(&path, &entry).await;
        }
    }

    /// `entry`'s blob, to read.
    pub async fn read(&self, entry: &StoredSeed) -> std::io::Result<Outgoing> {
        Ok(Outgoing {
            file: tokio::fs::File::open(self.blob_path(&entry.sha256)).await?,
            hasher: Sha256::new(),
            sha256: entry.sha256.clone(),
        })
    }

    /// Drops `key`'s seed: its blob goes, and its entry says when, so a
    /// worker's own copy made before then is not used again. The entry as
    /// it was; `None` when there is none.
    pub async fn drop_seed(&self, key: &str, now: i64) -> Option<StoredSeed> {
        let _index = self.index.lock().await;
        let path = self.entry_path(key);
        let was = read_entry(&path).await?;
        let dropped = StoredSeed {
            sha256: String::new(),
            stored_bytes: 0,
            dropped_at: now,
            ..was.clone()
        };
        write_entry(&path, &dropped).await.ok()?;
        self.remove_blob_unless_named(&was.sha256).await;
        Some(was)
    }

    /// Forgets `key` whole: a corrupt blob, which the next worker to need
    /// it makes again.
    pub async fn forget(&self, key: &str) {
        let _index = self.index.lock().await;
        let path = self.entry_path(key);
        if let Some(entry) = read_entry(&path).await {
            let _ = tokio::fs::remove_file(&path).await;
            self.remove_blob_unless_named(&entry.sha256).await;
        }
    }

    /// Removes blob `sha256` unless an entry names it: two keys whose
    /// seeds are the same bytes share one.
    async fn remove_blob_unless_named(&self, sha256: &str) {
        if sha256.is_empty() || self.list().await.iter().any(|e| e.sha256 == sha256) {
            return;
        }
        let _ = tokio::fs::remove_file(self.blob_path(sha256)).await;
    }

    /// Evicts the seeds used longest ago, `keep` aside, until the blobs
    /// are within the bound. With the index held.
    async fn evict(&self, keep: &str) {
        let mut stored: Vec<StoredSeed> = self
            .list()
            .await
            .into_iter()
            .filter(StoredSeed::is_stored)
            .collect();
        // How many entries name each blob, and its size: a blob goes
        // with the last entry that names it.
        let mut blobs: std::collections::HashMap<String, (usize, u64)> = Default::default();
        for entry in &stored {
            blobs
                .entry(entry.sha256.clone())
                .or_insert((0, entry.stored_bytes))
                .0 += 1;
        }
        let mut total: u64 = blobs.values().map(|(_, bytes)| bytes).sum();
        stored.sort_by_key(|e| e.used_at);
        for entry in stored.iter().filter(|e| e.key != keep) {
            if total <= self.max_bytes {
                break;
            }
            tracing::info!(key = %entry.key, bytes = entry.stored_bytes, "evicting a seed");
            let _ = tokio::fs::remove_file(self.entry_path(&entry.key)).await;
            let Some((named, bytes)) = blobs.get_mut(&entry.sha256) else {
                continue;
            };
            *named -= 1;
            if *named == 0 {
                let _ = tokio::fs::remove_file(self.blob_path(&entry.sha256)).await;
                total = total.saturating_sub(*bytes);
            }
        }
    }
}

async fn read_entry(path: &Path) -> Option<StoredSeed> {
    let text = tokio::fs::read(path).await.ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes an entry whole: under another name, then renamed over it.
async fn write_entry(path: &Path, entry: &StoredSeed) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
    let partial = path.with_extension("json.partial");
    tokio::fs::write(&partial, text).await?;
    tokio::fs::rename(&partial, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn seed(n: u8) -> StoredSeed {
        StoredSeed {
            key: key(n),
            tenant: "acme".into(),
            repo: "https://git/a.git".into(),
            paths: vec!["node_modules".into()],
            ..StoredSeed::default()
        }
    }

    async fn put(store: &SeedStore, n: u8, bytes: &[u8], now: i64) -> StoredSeed {
        let mut incoming = store.incoming().await.expect("incoming");
        for chunk in bytes.chunks(3) {
            incoming.write(chunk).await.expect("written");
        }
        let sha = hex(&Sha256::digest(bytes));
        store
            .keep(incoming, seed(n), &sha, now)
            .await
            .expect("kept")
    }

    async fn read_all(store: &SeedStore, entry: &StoredSeed) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut reading = store.read(entry).await?;
        while let Some(chunk) = reading.next().await? {
            out.extend(chunk);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_kept_seed_reads_back_whole_and_counts_its_uses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeedStore::open(dir.path().join("seeds"), 1 << 20).expect("store");
        let kept = put(&store, 1, b"packed seed bytes", 10).await;
        assert_eq!(kept.stored_bytes, 17);
        assert_eq!(kept.sha256, hex(&Sha256::digest(b"packed seed bytes")));
        assert_eq!(
            read_all(&store, &kept).await.expect("read"),
            b"packed seed bytes"
        );
        store.used(&kept.key, 20).await;
        let looked = store.look(&kept.key).await.expect("there");
        assert_eq!((looked.uses, looked.used_at), (1, 20));
        assert_eq!(store.list().await, vec![looked]);
        assert_eq!(store.look("../../etc/passwd").await, None);
    }

    #[tokio::test]
    async fn bytes_that_do_not_hash_as_said_are_not_kept_and_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeedStore::open(dir.path().join("seeds"), 1 << 20).expect("store");
        let mut incoming = store.incoming().await.expect("incoming");
        incoming.write(b"abc").await.expect("written");
        let refused = store
            .keep(incoming, seed(1), &"0".repeat(64), 1)
            .await
            .expect_err("wrong hash");
        assert!(refused.to_string().contains("not the 0000"), "{refused}");
        assert_eq!(store.look(&key(1)).await, None);
        let left =
            |sub: &str| std::fs::read_dir(dir.path().join("seeds").join(sub)).map(|d| d.count());
        assert_eq!((left(BLOBS).ok(), left(INCOMING).ok()), (Some(0), Some(0)));
    }

    #[tokio::test]
    async fn a_blob_changed_on_disk_is_found_corrupt_as_it_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeedStore::open(dir.path().join("seeds"), 1 << 20).expect("store");
        let kept = put(&store, 1, b"packed seed bytes", 10).await;
        std::fs::write(store.blob_path(&kept.sha256), b"packed seed bytez").expect("corrupted");
        let e = read_all(&store, &kept).await.expect_err("corrupt");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        store.forget(&kept.key).await;
        assert_eq!(store.look(&kept.key).await, None);
        assert!(!store.blob_path(&kept.sha256).exists());
    }

    #[tokio::test]
    async fn the_seeds_used_longest_ago_go_past_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeedStore::open(dir.path().join("seeds"), 10).expect("store");
        put(&store, 1, b"1111", 1).await;
        put(&store, 2, b"2222", 2).await;
        store.used(&key(1), 3).await;
        // 12 bytes: seed 2, used longest ago, goes.
        put(&store, 3, b"3333", 4).await;
        let keys: Vec<String> = store.list().await.into_iter().map(|e| e.key).collect();
        assert_eq!(keys, vec![key(1), key(3)]);
        // A seed over the bound is refused as it comes.
        let mut incoming = store.incoming().await.expect("incoming");
        let e = incoming.write(&[0; 11]).await.expect_err("too large");
        assert!(e.to_string().contains("--max-seed-store-bytes"), "{e}");
    }

    #[tokio::test]
    async fn a_dropped_seed_keeps_its_entry_without_its_blob_until_kept_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SeedStore::open(dir.path().join("seeds"), 1 << 20).expect("store");
        let kept = put(&store, 1, b"abc", 1).await;
        assert_eq!(store.drop_seed(&kept.key, 5).await, Some(kept.clone()));
        let dropped = store.look(&kept.key).await.expect("its entry");
        assert!(!dropped.is_stored());
        assert_eq!(dropped.dropped_at, 5);
        assert!(!store.blob_path(&kept.sha256).exists());
        let again = put(&store, 1, b"abcd", 9).await;
        assert_eq!((again.dropped_at, again.stored_at), (5, 9));
        assert_eq!(store.drop_seed(&key(7), 5).await, None);
    }
}
