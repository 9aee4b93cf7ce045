//! This replica's part in leadership, over the store's [`Leadership`]
//! (a lease on PostgreSQL; the sole owner of a SQLite file leads at once):
//! stand by until the lease is free, then keep it. A leader steps down the moment it cannot
//! be sure it still holds the lease: when a renewal says another epoch has
//! begun, or when its own clock says the lease may have expired with no
//! renewal confirmed. It steps down before the database would let another
//! replica take over, since the lease's expiry there is counted from a
//! moment after the renewal was sent. Its writes are fenced anyway; this
//! only makes it stop serving promptly.

use std::sync::Arc;
use std::time::Duration;

use tidewright_store::leadership::{Leader, Leadership, Round};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

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
    lease: Arc<dyn Leadership>,
    ttl: Duration,
}

/// This replica leads.
pub struct Leading {
    pub leader: Leader,
    lease: Arc<dyn Leadership>,
    ttl: Duration,
    /// Until when the lease is surely held, by this process's clock.
    valid_until: Instant,
}

impl Candidate {
    /// A candidate over the store's leadership, renewed every fraction of
    /// `ttl`.
    pub fn new(lease: Arc<dyn Leadership>, ttl: Duration) -> Candidate {
        Candidate { lease, ttl }
    }

    /// Looks at the lease until this replica takes it, telling `leader`
    /// who leads meanwhile, and `waiting` when the first look did not take
    /// it. A database that cannot be reached is looked at again; this
    /// replica cannot lead without it.
    pub async fn stand_by(
        self,
        leader: &watch::Sender<Option<Leader>>,
        waiting: oneshot::Sender<()>,
    ) -> Leading {
        let mut waiting = Some(waiting);
        let mut warned = false;
        loop {
            let sent = Instant::now();
            match self.lease.try_lead().await {
                Ok(Round::Leading(taken)) => {
                    tracing::info!(epoch = taken.epoch, "this replica leads");
                    leader.send_replace(Some(taken.clone()));
                    return Leading {
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

impl Leading {
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
