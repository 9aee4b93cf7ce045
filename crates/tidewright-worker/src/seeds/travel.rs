//! How a seed travels between workers: the control plane's store of
//! seeds as a worker sees it ([`SharedSeeds`]), and a seed packed as a
//! gzipped tar for it, in chunks, and unpacked by the worker that takes
//! it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tidewright_core::AttemptKey;

use super::{Seed, Seeds};

/// The most a packed seed's chunk holds, as it is sent.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The control plane's store of seeds, which every worker shares: behind
/// a trait, so the runtime is tested without one.
#[async_trait::async_trait]
pub trait SharedSeeds: Send + Sync {
    /// What the store knows of seed `key` for `attempt`'s tenant, its blob
    /// not sent; `None` when it knows nothing. Counts a use when stored.
    async fn look(&self, attempt: &AttemptKey, key: &str) -> Result<Option<Shared>, String>;
    /// Takes seed `key` from the store into `into`, whole and checked
    /// against its hash; `None` when the store has none for the tenant.
    async fn fetch(
        &self,
        attempt: &AttemptKey,
        key: &str,
        into: &Seeds,
    ) -> Result<Option<Seed>, String>;
    /// Sends this worker's seed (of `from`) to the store, made by
    /// `attempt`'s setup; the bytes it took, packed.
    async fn send(
        &self,
        attempt: &AttemptKey,
        seed: &Seed,
        from: &Arc<Seeds>,
    ) -> Result<u64, String>;
}

/// What the store knows of a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shared {
    /// It holds the seed.
    pub stored: bool,
    /// When it was last dropped (0: never): a copy made before is stale.
    pub dropped_at: i64,
}

/// Packs the seed tree `tree` as a gzipped tar (links kept as links),
/// handing it to `send` in chunks of at most [`CHUNK_BYTES`]; the sha256
/// of all it handed, in hex. Blocking.
pub fn pack(
    tree: &Path,
    send: impl FnMut(Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<String> {
    let mut chunks = Chunks {
        send,
        buffer: Vec::with_capacity(CHUNK_BYTES),
        hasher: Sha256::new(),
    };
    {
        let gzip = flate2::write::GzEncoder::new(&mut chunks, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gzip);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", tree)?;
        tar.into_inner()?.finish()?;
    }
    chunks.flush_chunk()?;
    Ok(tidewright_core::hex(&chunks.hasher.finalize()))
}

/// A seed being written in place of its key's; removed unless committed.
pub struct Receiving {
    pub(super) path: PathBuf,
}

impl Receiving {
    pub(super) fn tree(&self) -> PathBuf {
        self.path.join(super::TREE_DIR)
    }

    /// Unpacks a packed seed ([`Seeds::pack`]) read from `from`. Blocking.
    pub fn unpack(&self, from: impl Read) -> std::io::Result<()> {
        let tree = self.tree();
        std::fs::create_dir_all(&tree)?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(from));
        tar.set_preserve_permissions(true);
        tar.set_preserve_mtime(true);
        tar.set_overwrite(true);
        tar.unpack(&tree)
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What [`pack`] writes into: chunks handed on as they fill, and
/// hashed.
struct Chunks<F> {
    send: F,
    buffer: Vec<u8>,
    hasher: Sha256,
}

impl<F: FnMut(Vec<u8>) -> std::io::Result<()>> Chunks<F> {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.hasher.update(&chunk);
        (self.send)(chunk)
    }
}

impl<F: FnMut(Vec<u8>) -> std::io::Result<()>> Write for Chunks<F> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
