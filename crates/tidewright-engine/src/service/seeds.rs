//! Seeds as workers keep and take them, and as people list and drop them
//! (see [`crate::seeds`]). Whose a seed is comes from the task whose step
//! sent it, never from what the worker says: a step of one tenant never
//! gets a seed another tenant's step made, whatever key it asks for.

use std::sync::Arc;

use tidewright_core::AttemptKey;
use tidewright_core::calendar::now_micros;
use tidewright_store::TaskRecord;

use super::calls::{DeleteSeed, GetSeed, ListSeeds, PutSeed};
use super::{Call, Context};
use crate::access::Action;
use crate::error::Error;
use crate::seeds::{Incoming, Outgoing, SeedStore, StoredSeed, valid_key};

/// The seeds' store, for workers and people.
#[derive(Clone)]
pub struct Seeds {
    pub(super) cx: Arc<Context>,
    /// `None`: this control plane keeps no seeds, and workers run their
    /// setups each.
    pub(super) store: Option<Arc<SeedStore>>,
}

/// A seed being received from a worker.
pub struct SeedUpload {
    store: Arc<SeedStore>,
    incoming: Incoming,
    seed: StoredSeed,
}

impl SeedUpload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.incoming
            .write(chunk)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::FileTooLarge => Error::ResourceExhausted {
                    message: e.to_string(),
                    retry_after: None,
                },
                _ => Error::Internal(format!("receiving a seed: {e}")),
            })
    }

    /// Keeps what was received, which must hash to `sha256`.
    pub async fn finish(self, sha256: &str) -> Result<StoredSeed, Error> {
        let (key, bytes) = (self.seed.key.clone(), self.incoming.bytes());
        let kept = self
            .store
            .keep(self.incoming, self.seed, sha256, now_micros())
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => Error::invalid("sha256", e.to_string()),
                _ => Error::Internal(format!("keeping a seed: {e}")),
            })?;
        tracing::info!(key = %key, bytes, tenant = %kept.tenant, "kept a seed");
        Ok(kept)
    }
}

/// A stored seed being sent to a worker, its blob checked as it goes.
pub struct SeedDownload {
    store: Arc<SeedStore>,
    key: String,
    outgoing: Outgoing,
}

impl SeedDownload {
    /// The next chunk; `None` at the end. A blob that turns out corrupt
    /// is forgotten (the next worker to need it makes it again) and the
    /// download fails with DATA_LOSS.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match self.outgoing.next().await {
            Ok(chunk) => Ok(chunk),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(key = %self.key, error = %e, "forgetting a corrupt seed");
                self.store.forget(&self.key).await;
                Err(Error::Store(tidewright_store::Error::Corrupt(
                    e.to_string(),
                )))
            }
            Err(e) => Err(Error::Internal(format!("reading a seed: {e}"))),
        }
    }
}

impl Seeds {
    fn store(&self) -> Result<&Arc<SeedStore>, Error> {
        self.store
            .as_ref()
            .ok_or_else(|| Error::FailedPrecondition("this control plane keeps no seeds".into()))
    }

    /// Begins keeping a seed from a step's attempt: its tenant is the
    /// attempt's task's. The attempt may have ended: its worker sends the
    /// seed while the step goes on, or after.
    pub async fn put_seed(&self, call: Call<PutSeed>) -> Result<SeedUpload, Error> {
        let caller = call.require(Action::KeepCheckpoints)?;
        let PutSeed { attempt, seed } = call.into_message();
        let attempt = super::kept::attempt_of("attempt", attempt)?;
        checked_key("seed.key", &seed.key)?;
        if seed.paths.is_empty() {
            return Err(Error::invalid("seed.paths", "required"));
        }
        let task = self.task_of(&caller, &attempt).await?;
        let store = self.store()?.clone();
        let incoming = store
            .incoming()
            .await
            .map_err(|e| Error::Internal(format!("receiving a seed: {e}")))?;
        let seed = StoredSeed {
            tenant: task.tenant,
            task_id: task.id,
            ..seed
        };
        Ok(SeedUpload {
            store,
            incoming,
            seed,
        })
    }

    /// The seed `key` for a running attempt's step, if its tenant has one:
    /// its entry (a dropped one too, which says when, with no blob), and
    /// its blob when `data` is asked and stored. Each call with a stored
    /// seed counts a use. `None` when the tenant has no such seed.
    pub async fn get_seed(
        &self,
        call: Call<GetSeed>,
    ) -> Result<(Option<StoredSeed>, Option<SeedDownload>), Error> {
        let caller = call.require(Action::KeepCheckpoints)?;
        let GetSeed { attempt, key, data } = call.into_message();
        let attempt = super::kept::attempt_of("attempt", attempt)?;
        checked_key("key", &key)?;
        let task = self.task_of(&caller, &attempt).await?;
        let store = self.store()?;
        let Some(entry) = store.look(&key).await.filter(|e| e.tenant == task.tenant) else {
            return Ok((None, None));
        };
        if !entry.is_stored() {
            return Ok((Some(entry), None));
        }
        store.used(&key, now_micros()).await;
        if !data {
            return Ok((Some(entry), None));
        }
        let outgoing = store
            .read(&entry)
            .await
            .map_err(|e| Error::Internal(format!("reading a seed: {e}")))?;
        let download = SeedDownload {
            store: store.clone(),
            key,
            outgoing,
        };
        Ok((Some(entry), Some(download)))
    }

    /// The stored seeds of the tenants the caller sees, of `repo` when
    /// one is named, newest use first; dropped ones are left out.
    pub async fn list_seeds(&self, call: Call<ListSeeds>) -> Result<Vec<StoredSeed>, Error> {
        let caller = call.require(Action::ReadTasks)?;
        let ListSeeds { tenant, repo } = call.into_message();
        if !tenant.is_empty() {
            crate::access::checked_tenant("tenant", &tenant)?;
        }
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let repo = (!repo.is_empty()).then(|| tidewright_core::repo::key(&repo));
        let mut seeds: Vec<StoredSeed> = store
            .list()
            .await
            .into_iter()
            .filter(|s| s.is_stored() && caller.can_see(&s.tenant))
            .filter(|s| tenant.is_empty() || s.tenant == tenant)
            .filter(|s| {
                repo.as_ref()
                    .is_none_or(|r| tidewright_core::repo::key(&s.repo) == *r)
            })
            .collect();
        seeds.sort_by(|a, b| b.used_at.cmp(&a.used_at).then(a.key.cmp(&b.key)));
        Ok(seeds)
    }

    /// Drops a seed everywhere: the store's blob goes, and each worker's
    /// own copy goes the next time a step there would use it; that step
    /// runs the setup and makes it again. The seed as it was.
    pub async fn delete_seed(&self, call: Call<DeleteSeed>) -> Result<StoredSeed, Error> {
        let caller = call.require(Action::WriteTasks)?;
        let DeleteSeed { key } = call.into_message();
        checked_key("key", &key)?;
        let store = self.store()?;
        let not_found = || Error::NotFound(format!("seed {key}"));
        let entry = store.look(&key).await.ok_or_else(not_found)?;
        if !caller.can_see(&entry.tenant) || !entry.is_stored() {
            return Err(not_found());
        }
        let was = store
            .drop_seed(&key, now_micros())
            .await
            .ok_or_else(not_found)?;
        tracing::info!(key = %key, tenant = %was.tenant, by = %caller.name, "dropped a seed");
        Ok(was)
    }

    /// The task the attempt's step belongs to, in a tenant the caller sees;
    /// the attempt no later than its step's.
    async fn task_of(
        &self,
        caller: &crate::access::Identity,
        attempt: &AttemptKey,
    ) -> Result<TaskRecord, Error> {
        let (task, step) = super::kept::attempt_in(&self.cx, caller, attempt).await?;
        if step.attempt < attempt.attempt {
            return Err(Error::NotFound(format!(
                "attempt {} of step {:?} of task {}",
                attempt.attempt, attempt.step_id, attempt.task_id
            )));
        }
        Ok(task)
    }
}

fn checked_key(field: &str, key: &str) -> Result<(), Error> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be a seed's key: 64 lowercase hex digits",
        ))
    }
}
