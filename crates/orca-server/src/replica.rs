//! This replica's part in leadership on PostgreSQL: stand by until the
//! lease is free, then keep it. A leader steps down the moment it cannot
//! be sure it still holds the lease: when a renewal says another epoch has
//! begun, or when its own clock says the lease may have expired with no
//! renewal confirmed. It steps down before the database would let another
//! replica take over, since the lease's expiry there is counted from a
//! moment after the renewal was sent. Its writes are fenced anyway; this
//! only makes it stop serving promptly.

use std::time::Duration;

use orca_core::Micros;
use orca_store_postgres::lease::{Leader, Lease, Replica, ReplicaStatus, Round};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::Error;

/// How long a standby waits between looks at the lease.
pub fn poll_interval(ttl: Duration) -> Duration {
    (ttl / 8).clamp(Duration::from_millis(20), Duration::from_millis(250))
}

/// How often the leader renews: a few renewals may fail before it steps
/// down.
pub fn renew_interval(ttl: Duration) -> Duration {
    ttl / 4
}

/// A replica that may lead.
pub struct Candidate {
    lease: Lease,
    ttl: Duration,
}

/// This replica leads.
pub struct Leadership {
    pub leader: Leader,
    lease: Lease,
    ttl: Duration,
    /// Until when the lease is surely held, by this process's clock.
    valid_until: Instant,
}

impl Candidate {
    /// Joins the replicas sharing the database at `url`.
    pub async fn join(url: &str, replica: Replica, ttl: Duration) -> Result<Candidate, Error> {
        Ok(Candidate {
            lease: Lease::join(url, replica, ttl).await?,
            ttl,
        })
    }

    /// Looks at the lease until this replica takes it, telling `leader`
    /// who leads meanwhile, and `waiting` when the first look did not take
    /// it. A database that cannot be reached is looked at again; this
    /// replica cannot lead without it.
    pub async fn stand_by(
        mut self,
        leader: &watch::Sender<Option<Leader>>,
        waiting: oneshot::Sender<()>,
    ) -> Leadership {
        let mut waiting = Some(waiting);
        let mut warned = false;
        loop {
            let sent = Instant::now();
            match self.lease.try_lead().await {
                Ok(Round::Leading(taken)) => {
                    tracing::info!(epoch = taken.epoch, "this replica leads");
                    leader.send_replace(Some(taken.clone()));
                    return Leadership {
                        leader: taken,
                        lease: self.lease,
                        ttl: self.ttl,
                        valid_until: sent + self.ttl,
                    };
                }
                Ok(Round::Following(current)) => {
                    warned = false;
                    leader.send_if_modified(|known| {
                        let changed = *known != current;
                        *known = current;
                        changed
                    });
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "standing by: the lease cannot be read");
                        warned = true;
                    }
                    leader.send_replace(None);
                }
            }
            if let Some(waiting) = waiting.take() {
                let _ = waiting.send(());
            }
            tokio::time::sleep(poll_interval(self.ttl)).await;
        }
    }
}

impl Leadership {
    /// Renews the lease until it is lost, and says why; or, once `stop`
    /// fires, releases it so a standby takes over without waiting out the
    /// TTL.
    pub async fn keep(mut self, mut stop: oneshot::Receiver<()>) -> Option<String> {
        let epoch = self.leader.epoch;
        let lost = |why: String| {
            tracing::error!(epoch, reason = %why, "this replica no longer leads; it stops serving");
            Some(why)
        };
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(self.valid_until) => {
                    return lost(format!("the lease (epoch {epoch}) could not be renewed within its TTL"));
                }
                _ = tokio::time::sleep(renew_interval(self.ttl)) => {}
            }
            let sent = Instant::now();
            let renewed = tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(self.valid_until) => {
                    return lost(format!("the lease (epoch {epoch}) could not be renewed within its TTL"));
                }
                renewed = self.lease.renew(epoch) => renewed,
            };
            match renewed {
                Ok(true) => self.valid_until = sent + self.ttl,
                Ok(false) => {
                    return lost(format!(
                        "another replica took the lease after epoch {epoch}"
                    ));
                }
                Err(e) => {
                    tracing::warn!(epoch, error = %e, "renewing the lease failed; trying again")
                }
            }
        }
        if let Err(e) = self.lease.release(epoch).await {
            tracing::warn!(epoch, error = %e, "releasing the lease failed; a standby takes over once it expires");
        }
        None
    }
}

/// Who serves: the one server on SQLite, or the replicas on PostgreSQL as
/// their lease rows say.
pub enum Roster {
    Sole {
        replica: Replica,
        started_at: Micros,
    },
    Replicas(Box<orca_store_postgres::lease::Roster>),
}

impl Roster {
    pub async fn servers(&self) -> Result<Vec<ReplicaStatus>, Error> {
        match self {
            Roster::Sole {
                replica,
                started_at,
            } => Ok(vec![ReplicaStatus {
                id: replica.id.clone(),
                name: replica.name.clone(),
                address: replica.address.clone(),
                started_at: *started_at,
                seen_at: orca_api::convert::now_micros(),
                epoch: 0,
                leading: true,
                leading_since: *started_at,
            }]),
            Roster::Replicas(roster) => Ok(roster.replicas().await?),
        }
    }
}
