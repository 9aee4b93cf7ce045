//! The fleet as its operators list it: the connected workers (and those
//! that left lately) with the queue they serve, this control plane's
//! build, and the replicas that serve it.

use std::sync::Arc;

use tidewright_core::build::Build;
use tidewright_store::leadership::{Leadership, ReplicaStatus};

use super::{Call, Context};
use crate::access::Action;
use crate::error::Error;
use crate::handle::FleetNow;

/// The fleet's listings.
#[derive(Clone)]
pub struct Fleet {
    pub(super) cx: Arc<Context>,
    /// Who serves: the replicas, as the store's leadership says.
    pub(super) leadership: Arc<dyn Leadership>,
    /// This control plane's build, which the listing reports.
    pub(super) build: Build,
}

/// ListAgents' answer: the workers now, and the build that serves them.
#[derive(Debug, Clone)]
pub struct AgentListing {
    pub fleet: FleetNow,
    pub server: Build,
}

impl Fleet {
    /// The connected workers, those that left lately, and the queue.
    pub async fn list_agents(&self, call: Call<()>) -> Result<AgentListing, Error> {
        call.require(Action::ReadAgents)?;
        Ok(AgentListing {
            fleet: self.cx.engine.list_agents().await?,
            server: self.build.clone(),
        })
    }

    /// The control plane's replicas: who leads, who stands by.
    pub async fn list_servers(&self, call: Call<()>) -> Result<Vec<ReplicaStatus>, Error> {
        call.require(Action::ReadAgents)?;
        Ok(self.leadership.replicas().await?)
    }
}
