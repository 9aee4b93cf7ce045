//! Which control-plane replica leads, as the store decides it: the part of
//! the store contract that lets replicas share one store. A backend that
//! replicas share (PostgreSQL) keeps a lease with a fencing epoch; one that
//! a single process owns (SQLite, memory) has [`SoleOwner`], which always
//! leads. The server stands by, leads and steps down through this trait
//! alone, never naming a backend.
//!
//! Writes are fenced by the store a leader opens with its epoch, not here:
//! a deposed leader that goes on writing is refused by the store itself.

use async_trait::async_trait;
use tidewright_core::Micros;

use crate::Result;

/// A replica as the others see it.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Unique to this process's run; holds the lease.
    pub id: String,
    /// For people: a host or pod name.
    pub name: String,
    /// Where clients reach this replica's gRPC port.
    pub address: String,
    /// Whether `name` was given (`--replica-name`, the pod's name on
    /// Kubernetes) and so is this replica's across restarts: its first
    /// round takes back at once a lease held under that name, which only
    /// its previous run can have left (fenced by the new epoch), instead of
    /// waiting for it to run out.
    pub named: bool,
}

/// Who leads, as the store says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// The fencing epoch: each new leader's is higher, and the store
    /// refuses writes fenced with an older one.
    pub epoch: i64,
    /// The leading replica's id.
    pub holder: String,
    pub name: String,
    pub address: String,
    /// When it took the lease (µs since the epoch).
    pub since: Micros,
}

/// What a standby's round found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// This replica took the lease: it leads at this epoch.
    Leading(Leader),
    /// Another leads, or (`None`) nobody does and the lease was not free to
    /// take yet.
    Following(Option<Leader>),
}

/// A replica's standing, for `tidewright get servers`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    pub id: String,
    pub name: String,
    pub address: String,
    pub started_at: Micros,
    pub seen_at: Micros,
    /// The epoch it leads at, or the latest it saw while standing by.
    pub epoch: i64,
    /// It holds a lease that has not expired.
    pub leading: bool,
    /// Since when it leads, when it does.
    pub leading_since: Micros,
}

/// This replica's hold on (or wait for) the lead.
#[async_trait]
pub trait Leadership: Send + Sync + 'static {
    /// A standby's round: takes the lead if it is free, or says who holds it.
    async fn try_lead(&self) -> Result<Round>;
    /// Extends the lead held at `epoch` by a TTL from now; `false` when it
    /// is no longer this replica's (another epoch has begun).
    async fn renew(&self, epoch: i64) -> Result<bool>;
    /// Gives the lead up, so a standby need not wait for it to expire.
    async fn release(&self, epoch: i64) -> Result<()>;
    /// Every replica seen lately, the oldest first.
    async fn replicas(&self) -> Result<Vec<ReplicaStatus>>;
}

/// The one process a store belongs to: it leads from the start, at epoch
/// 0, and nobody can take the lead from it.
pub struct SoleOwner {
    replica: Replica,
    started_at: Micros,
}

impl SoleOwner {
    pub fn new(replica: Replica) -> Self {
        SoleOwner {
            replica,
            started_at: tidewright_core::calendar::now_micros(),
        }
    }

    fn leader(&self) -> Leader {
        Leader {
            epoch: 0,
            holder: self.replica.id.clone(),
            name: self.replica.name.clone(),
            address: self.replica.address.clone(),
            since: self.started_at,
        }
    }
}

#[async_trait]
impl Leadership for SoleOwner {
    async fn try_lead(&self) -> Result<Round> {
        Ok(Round::Leading(self.leader()))
    }

    async fn renew(&self, epoch: i64) -> Result<bool> {
        Ok(epoch == 0)
    }

    async fn release(&self, _epoch: i64) -> Result<()> {
        Ok(())
    }

    async fn replicas(&self) -> Result<Vec<ReplicaStatus>> {
        Ok(vec![ReplicaStatus {
            id: self.replica.id.clone(),
            name: self.replica.name.clone(),
            address: self.replica.address.clone(),
            started_at: self.started_at,
            seen_at: tidewright_core::calendar::now_micros(),
            epoch: 0,
            leading: true,
            leading_since: self.started_at,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sole_owner_leads_at_once_for_good_and_is_the_only_replica() {
        let owner = SoleOwner::new(Replica {
            id: "r1".into(),
            name: "one".into(),
            address: "127.0.0.1:1".into(),
            named: false,
        });
        let Round::Leading(leader) = owner.try_lead().await.expect("round") else {
            panic!("a sole owner leads");
        };
        assert_eq!((leader.epoch, leader.holder.as_str()), (0, "r1"));
        assert!(owner.renew(0).await.expect("renew"));
        assert!(
            !owner.renew(1).await.expect("renew"),
            "no other epoch is its"
        );
        let replicas = owner.replicas().await.expect("replicas");
        assert_eq!(replicas.len(), 1);
        assert!(replicas[0].leading);
        assert_eq!(replicas[0].leading_since, leader.since);
    }
}
