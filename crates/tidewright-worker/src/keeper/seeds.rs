//! The control plane's store of seeds over the worker's connection: a
//! seed is sent packed in chunks as it is packed, and taken unpacked as
//! it comes, checked against its hash before it is put in place.

use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tidewright_api::convert::{micros, timestamp};
use tidewright_api::v1;
use tidewright_core::AttemptKey;
use tokio::sync::mpsc;

use super::ControlPlaneKeeper;
use crate::seeds::{Seed, Seeds, Shared, SharedSeeds};

/// Chunks in flight between the network and the packer or unpacker.
const CHUNKS_AHEAD: usize = 4;

#[async_trait::async_trait]
impl SharedSeeds for ControlPlaneKeeper {
    async fn look(&self, attempt: &AttemptKey, key: &str) -> Result<Option<Shared>, String> {
        let (entry, _) = self.get_seed(attempt, key, false).await?;
        Ok(shared(&entry))
    }

    async fn fetch(
        &self,
        attempt: &AttemptKey,
        key: &str,
        into: &Seeds,
    ) -> Result<Option<Seed>, String> {
        let (entry, mut answer) = self.get_seed(attempt, key, true).await?;
        if entry.sha256.is_empty() {
            return Ok(None);
        }
        let receiving = into.receiving(key);
        let (chunks, from_network) = mpsc::channel::<Vec<u8>>(CHUNKS_AHEAD);
        let unpacking = tokio::task::spawn_blocking(move || {
            let unpacked = receiving.unpack(ChannelReader {
                chunks: from_network,
                chunk: Vec::new(),
                at: 0,
            });
            (receiving, unpacked)
        });
        let mut hasher = Sha256::new();
        let received: Result<(), String> = async {
            use v1::seed_download::Kind;
            while let Some(message) = answer
                .message()
                .await
                .map_err(|s| s.message().to_string())?
            {
                let Some(Kind::Data(chunk)) = message.kind else {
                    return Err("the control plane sent a second header".into());
                };
                hasher.update(&chunk);
                // An unpacker that stopped says why below. The rest is
                // read all the same: the control plane checks the blob's
                // hash only at its end, and says there whether it is
                // corrupt (and forgets it).
                let _ = chunks.send(chunk).await;
            }
            Ok(())
        }
        .await;
        drop(chunks);
        let (receiving, unpacked) = unpacking.await.map_err(|e| e.to_string())?;
        received?;
        unpacked.map_err(|e| format!("unpacking it: {e}"))?;
        let found = tidewright_core::hex(&hasher.finalize());
        if found != entry.sha256 {
            return Err(format!(
                "what came hashes to {found}, not the store's {}",
                entry.sha256
            ));
        }
        let seed = Seed {
            key: entry.key,
            repo: entry.repo,
            tenant: entry.tenant,
            paths: entry.paths,
            setup: entry.setup.map(Into::into),
            files: entry.files,
            bytes: entry.bytes,
            build_millis: entry.build_millis,
            built_at: entry.built_at.as_ref().map_or(0, micros),
        };
        into.commit(receiving, &seed)
            .await
            .map_err(|e| format!("keeping it: {e}"))?;
        Ok(Some(seed))
    }

    async fn send(
        &self,
        attempt: &AttemptKey,
        seed: &Seed,
        from: &Arc<Seeds>,
    ) -> Result<u64, String> {
        use v1::seed_upload::Kind;
        let mut client = self
            .client("send a seed")
            .await
            .map_err(|status| status.message().to_string())?;
        let (messages, outgoing) = mpsc::channel(CHUNKS_AHEAD);
        let header = v1::SeedHeader {
            attempt: Some(v1::AttemptRef::from(attempt)),
            seed: Some(v1::StoredSeed {
                key: seed.key.clone(),
                repo: seed.repo.clone(),
                paths: seed.paths.clone(),
                setup: seed.setup.clone().map(Into::into),
                files: seed.files,
                bytes: seed.bytes,
                build_millis: seed.build_millis,
                built_at: Some(timestamp(seed.built_at)),
                ..v1::StoredSeed::default()
            }),
        };
        let _ = messages
            .send(v1::SeedUpload {
                kind: Some(Kind::Header(header)),
            })
            .await;
        let packing = {
            let key = seed.key.clone();
            let from = from.clone();
            tokio::task::spawn_blocking(move || {
                let sha256 = from.pack(&key, |chunk| {
                    messages
                        .blocking_send(v1::SeedUpload {
                            kind: Some(Kind::Data(chunk)),
                        })
                        .map_err(|_| std::io::Error::other("the control plane stopped taking it"))
                })?;
                // Without its hash the control plane keeps nothing.
                messages
                    .blocking_send(v1::SeedUpload {
                        kind: Some(Kind::Sha256(sha256)),
                    })
                    .map_err(|_| std::io::Error::other("the control plane stopped taking it"))
            })
        };
        let sent = client
            .put_seed(tokio_stream::wrappers::ReceiverStream::new(outgoing))
            .await;
        let packed = packing.await.map_err(|e| e.to_string())?;
        match (sent, packed) {
            (Ok(kept), _) => Ok(kept.into_inner().stored_bytes),
            (Err(_), Err(e)) => Err(format!("packing it: {e}")),
            (Err(status), Ok(())) => Err(format!(
                "the control plane refused it: {}",
                status.message()
            )),
        }
    }
}

impl ControlPlaneKeeper {
    /// Seed `key` for `attempt`: its entry, the answer's first message, and
    /// the rest of the answer (its blob's chunks, when `data` is asked).
    async fn get_seed(
        &self,
        attempt: &AttemptKey,
        key: &str,
        data: bool,
    ) -> Result<(v1::StoredSeed, tonic::Streaming<v1::SeedDownload>), String> {
        let request = v1::GetSeedRequest {
            attempt: Some(v1::AttemptRef::from(attempt)),
            key: key.to_string(),
            data,
        };
        let mut answer = self
            .call("read a seed", |mut client| {
                let request = request.clone();
                async move { client.get_seed(request).await }
            })
            .await
            .map_err(|status| status.message().to_string())?;
        match answer.message().await {
            Ok(Some(v1::SeedDownload {
                kind: Some(v1::seed_download::Kind::Seed(entry)),
            })) => Ok((entry, answer)),
            Ok(_) => Err("the control plane's answer did not begin with the seed".into()),
            Err(status) => Err(status.message().to_string()),
        }
    }
}

fn shared(entry: &v1::StoredSeed) -> Option<Shared> {
    if entry.key.is_empty() {
        return None;
    }
    Some(Shared {
        stored: !entry.sha256.is_empty(),
        dropped_at: entry.dropped_at.as_ref().map_or(0, micros),
    })
}

/// The chunks coming off the network, as the blocking unpacker reads them.
struct ChannelReader {
    chunks: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
