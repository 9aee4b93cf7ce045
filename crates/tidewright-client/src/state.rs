//! Shared state: values tasks and programs read and write by key.

use std::time::Duration;

use crate::client::Client;
use crate::error::Error;
use tidewright_api::v1;

impl Client {
    /// A shared-state value.
    pub async fn get_state(&self, key: &StateKey) -> Result<v1::StateValue, Error> {
        let request = v1::GetStateRequest {
            r#ref: Some(key.to_ref()),
        };
        retried!(self, state, get_state, request)
    }

    /// Stores a value, given as JSON text (the server refuses text that is
    /// not JSON, naming `value_json`). With `expect_version`, only if the key is at
    /// that version (0: holds none), else ABORTED. `ttl` of zero keeps it.
    /// Not repeated on UNAVAILABLE: a lost answer's repeat would bump the
    /// version twice, or fail its own expectation.
    pub async fn put_state(
        &self,
        key: &StateKey,
        value_json: &str,
        expect_version: Option<u64>,
        ttl: Duration,
    ) -> Result<v1::StateValue, Error> {
        let request = v1::PutStateRequest {
            r#ref: Some(key.to_ref()),
            value_json: value_json.to_string(),
            expect_version,
            ttl_seconds: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX),
        };
        Ok(self.state.clone().put_state(request).await?.into_inner())
    }

    /// Deletes a value. With `expect_version`, only if the key is at that
    /// version, else ABORTED.
    pub async fn delete_state(
        &self,
        key: &StateKey,
        expect_version: Option<u64>,
    ) -> Result<(), Error> {
        let request = v1::DeleteStateRequest {
            r#ref: Some(key.to_ref()),
            expect_version,
        };
        self.state.clone().delete_state(request).await?;
        Ok(())
    }

    /// One page of a scope's values, in key order, after `after_key`.
    pub async fn list_state(
        &self,
        tenant: &str,
        scope: &str,
        after_key: &str,
    ) -> Result<v1::ListStateResponse, Error> {
        let request = v1::ListStateRequest {
            tenant: tenant.to_string(),
            scope: scope.to_string(),
            after_key: after_key.to_string(),
            page_size: 0,
        };
        retried!(self, state, list_state, request)
    }
}

/// Where a shared-state value lives: a tenant (`""` for the token's
/// first), a scope (a task's id, or a name tasks share) and a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey {
    pub tenant: String,
    pub scope: String,
    pub key: String,
}

impl StateKey {
    pub fn new(scope: impl Into<String>, key: impl Into<String>) -> StateKey {
        StateKey {
            tenant: String::new(),
            scope: scope.into(),
            key: key.into(),
        }
    }

    pub fn tenant(mut self, tenant: impl Into<String>) -> StateKey {
        self.tenant = tenant.into();
        self
    }

    fn to_ref(&self) -> v1::StateRef {
        v1::StateRef {
            tenant: self.tenant.clone(),
            scope: self.scope.clone(),
            key: self.key.clone(),
        }
    }
}
