//! Repositories' seeds kept by the control plane for every worker.

use crate::client::Client;
use crate::error::Error;
use tidewright_api::v1;

impl Client {
    /// The seeds kept, of the tenants the caller sees: of one tenant or
    /// repository when named (empty for all), the most recently used
    /// first.
    pub async fn seeds(&self, tenant: &str, repo: &str) -> Result<Vec<v1::StoredSeed>, Error> {
        let request = v1::ListSeedsRequest {
            tenant: tenant.to_string(),
            repo: repo.to_string(),
        };
        let answer = retried!(self, agents, list_seeds, request)?;
        Ok(answer.seeds)
    }

    /// Drops seed `key` from the store and from every worker: the next
    /// step that needs it runs its setup again. The seed as it was.
    pub async fn delete_seed(&self, key: &str) -> Result<v1::StoredSeed, Error> {
        let request = v1::DeleteSeedRequest {
            key: key.to_string(),
        };
        Ok(self.agents.clone().delete_seed(request).await?.into_inner())
    }
}
