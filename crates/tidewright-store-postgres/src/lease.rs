//! Leadership among control-plane replicas that share one database: a
//! lease row with a fencing epoch (schema version 2 says why a row and not
//! an advisory lock). Times are the database's, the one clock every
//! replica shares. A standby calls [`Lease::try_lead`] every fraction of a
//! TTL; the leader calls [`Lease::renew`] and, when it stops, releases the
//! lease so a standby takes over at once. Writes are fenced by the store
//! ([`crate::PostgresStore::open_leading`]), not here.

use std::time::Duration;

use async_trait::async_trait;
pub use tidewright_store::leadership::{Leader, Replica, ReplicaStatus, Round};

use crate::conn::{Conn, Reopening};
use crate::fault::{Fault, Result};

/// How long a takeover waits for transactions still fenced with the old
/// epoch (a paused leader's, left open) before it ends them.
const TAKEOVER_LOCK_WAIT: &str = "500ms";
/// Rows of replicas silent this long are forgotten.
const FORGET_AFTER: &str = "10 minutes";

/// This replica's hold on (or wait for) the lease, over a connection of
/// its own, opened again when lost.
pub struct Lease {
    session: Reopening,
    replica: Replica,
    ttl_micros: i64,
    /// This run has not had its first round yet: a named replica takes
    /// back a lease held under its name then (see [`Replica::named`]). Only
    /// then: two runs given one name by mistake take it from each other
    /// once, not on every round.
    first_round: bool,
}

impl Lease {
    /// Connects, brings the schema up to date (the lease lives in it) and
    /// says this replica is here.
    pub async fn join(
        url: &str,
        replica: Replica,
        ttl: Duration,
    ) -> tidewright_store::Result<Lease> {
        let mut lease = Lease {
            session: Reopening::new(crate::config(url)?, "tidewright-lease"),
            replica,
            ttl_micros: i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX),
            first_round: true,
        };
        lease
            .session
            .run(async |conn| crate::schema::migrate(&conn.client).await)
            .await?;
        lease.seen(0).await?;
        Ok(lease)
    }

    /// Runs `round` on the lease's session, with this replica and the TTL.
    async fn on_connection<T>(
        &mut self,
        round: impl AsyncFnOnce(&mut Conn, &Replica, i64) -> Result<T>,
    ) -> tidewright_store::Result<T> {
        let (replica, ttl) = (&self.replica, self.ttl_micros);
        self.session
            .run(async |conn| round(conn, replica, ttl).await)
            .await
    }

    /// Says this replica is alive, and which epoch it leads at or last saw.
    async fn seen(&mut self, epoch: i64) -> tidewright_store::Result<()> {
        self.on_connection(async |conn, replica, _| {
            let statement = conn
                .statement(
                    "INSERT INTO tidewright_replicas (id, name, address, started_at, seen_at, epoch)
                     VALUES ($1, $2, $3, now(), now(), $4)
                     ON CONFLICT (id) DO UPDATE SET seen_at = now(), address = EXCLUDED.address,
                         epoch = EXCLUDED.epoch",
                )
                .await?;
            conn.client
                .execute(
                    &statement,
                    &[&replica.id, &replica.name, &replica.address, &epoch],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// A standby's round: takes the lease if it has expired, or on a named
    /// replica's first round if its name holds it (ending the transactions
    /// a paused leader left open under the old epoch), or says who holds it.
    pub async fn try_lead(&mut self) -> tidewright_store::Result<Round> {
        let reclaim = std::mem::take(&mut self.first_round) && self.replica.named;
        let round = self
            .on_connection(async |conn, replica, ttl| {
                take_or_read(conn, replica, ttl, reclaim).await
            })
            .await?;
        let epoch = match &round {
            Round::Leading(leader) => leader.epoch,
            Round::Following(leader) => leader.as_ref().map_or(0, |l| l.epoch),
        };
        self.seen(epoch).await?;
        Ok(round)
    }

    /// Extends the lease held at `epoch` by a TTL from now; `false` when it
    /// is no longer this replica's (another epoch has begun).
    pub async fn renew(&mut self, epoch: i64) -> tidewright_store::Result<bool> {
        let renewed = self
            .on_connection(async |conn, replica, ttl| {
                let statement = conn
                    .statement(
                        "UPDATE tidewright_leader SET expires_at = now() + $3::bigint * interval '1 microsecond'
                         WHERE id = 1 AND epoch = $1 AND holder = $2",
                    )
                    .await?;
                let renewed = conn
                    .client
                    .execute(&statement, &[&epoch, &replica.id, &ttl])
                    .await?;
                Ok(renewed == 1)
            })
            .await?;
        if renewed {
            self.seen(epoch).await?;
        }
        Ok(renewed)
    }

    /// Gives the lease up, so a standby need not wait for it to expire.
    pub async fn release(&mut self, epoch: i64) -> tidewright_store::Result<()> {
        self.on_connection(async |conn, replica, _| {
            conn.client
                .execute(
                    "UPDATE tidewright_leader SET expires_at = '-infinity'
                     WHERE id = 1 AND epoch = $1 AND holder = $2",
                    &[&epoch, &replica.id],
                )
                .await?;
            conn.client
                .execute(
                    "DELETE FROM tidewright_replicas WHERE id = $1",
                    &[&replica.id],
                )
                .await?;
            Ok(())
        })
        .await
    }
}

/// Leadership on PostgreSQL: this replica's [`Lease`], and a [`Roster`] of
/// the replicas on a connection of its own.
pub struct PostgresLeadership {
    lease: tokio::sync::Mutex<Lease>,
    roster: Roster,
}

impl PostgresLeadership {
    /// Joins the replicas sharing the database at `url`.
    pub async fn join(
        url: &str,
        replica: Replica,
        ttl: Duration,
    ) -> tidewright_store::Result<PostgresLeadership> {
        Ok(PostgresLeadership {
            lease: tokio::sync::Mutex::new(Lease::join(url, replica, ttl).await?),
            roster: Roster::new(url)?,
        })
    }
}

#[async_trait]
impl tidewright_store::leadership::Leadership for PostgresLeadership {
    async fn try_lead(&self) -> tidewright_store::Result<Round> {
        self.lease.lock().await.try_lead().await
    }

    async fn renew(&self, epoch: i64) -> tidewright_store::Result<bool> {
        self.lease.lock().await.renew(epoch).await
    }

    async fn release(&self, epoch: i64) -> tidewright_store::Result<()> {
        self.lease.lock().await.release(epoch).await
    }

    async fn replicas(&self) -> tidewright_store::Result<Vec<ReplicaStatus>> {
        self.roster.replicas().await
    }
}

/// Reads the replicas for the leader, which answers who else is there; a
/// connection of its own, opened on first use and again when lost.
pub struct Roster {
    session: tokio::sync::Mutex<Reopening>,
}

impl Roster {
    pub fn new(url: &str) -> tidewright_store::Result<Roster> {
        Ok(Roster {
            session: tokio::sync::Mutex::new(Reopening::new(
                crate::config(url)?,
                "tidewright-roster",
            )),
        })
    }

    /// Every replica seen lately, the oldest first.
    pub async fn replicas(&self) -> tidewright_store::Result<Vec<ReplicaStatus>> {
        self.session.lock().await.run(list_replicas).await
    }
}

async fn list_replicas(conn: &mut Conn) -> Result<Vec<ReplicaStatus>> {
    let forget = format!(
        "DELETE FROM tidewright_replicas WHERE seen_at < now() - interval '{FORGET_AFTER}'"
    );
    conn.client.execute(&forget, &[]).await?;
    let rows = conn
        .client
        .query(
            "SELECT r.id, r.name, r.address, tidewright_micros(r.started_at),
                    tidewright_micros(r.seen_at), r.epoch,
                    l.holder = r.id AND l.expires_at > now(), tidewright_micros(l.since)
             FROM tidewright_replicas r CROSS JOIN tidewright_leader l
             ORDER BY r.started_at, r.id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let leading: bool = row.try_get(6)?;
            Ok(ReplicaStatus {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                address: row.try_get(2)?,
                started_at: row.try_get(3)?,
                seen_at: row.try_get(4)?,
                epoch: row.try_get(5)?,
                leading,
                leading_since: if leading { row.try_get(7)? } else { 0 },
            })
        })
        .collect()
}

/// Takes the lease when it has expired (or, to `reclaim`, is held under
/// this replica's name), else reads who holds it.
async fn take_or_read(
    conn: &mut Conn,
    replica: &Replica,
    ttl: i64,
    reclaim: bool,
) -> Result<Round> {
    // A takeover waits for transactions fenced with the old epoch to end:
    // they hold the row FOR SHARE. One that does not end soon belongs to a
    // leader whose lease has expired (the UPDATE matched it), paused or cut
    // off mid-transaction: it is ended, and the takeover tried again.
    for _ in 0..3 {
        match take(conn, replica, ttl, reclaim).await {
            Ok(Some(leader)) => return Ok(Round::Leading(leader)),
            Ok(None) => break,
            Err(fault) if lock_wait_ended(&fault) => {
                let _ = conn.client.batch_execute("ROLLBACK").await;
                let ended = conn
                    .client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks
                         WHERE relation = 'tidewright_leader'::regclass AND mode = 'RowShareLock'
                           AND granted AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await?;
                tracing::warn!(
                    ended,
                    "ended transactions a deposed leader left open under its epoch"
                );
            }
            Err(fault) => {
                let _ = conn.client.batch_execute("ROLLBACK").await;
                return Err(fault);
            }
        }
    }
    let row = conn
        .client
        .query_one(
            "SELECT epoch, holder, name, address, tidewright_micros(since), expires_at > now()
             FROM tidewright_leader WHERE id = 1",
            &[],
        )
        .await?;
    let live: bool = row.try_get(5)?;
    let holder: String = row.try_get(1)?;
    if !live || holder.is_empty() {
        return Ok(Round::Following(None));
    }
    Ok(Round::Following(Some(Leader {
        epoch: row.try_get(0)?,
        holder,
        name: row.try_get(2)?,
        address: row.try_get(3)?,
        since: row.try_get(4)?,
    })))
}

/// One takeover attempt, in a transaction of its own.
async fn take(
    conn: &mut Conn,
    replica: &Replica,
    ttl: i64,
    reclaim: bool,
) -> Result<Option<Leader>> {
    conn.client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = '{TAKEOVER_LOCK_WAIT}'"
        ))
        .await?;
    let statement = conn
        .statement(
            "UPDATE tidewright_leader SET epoch = epoch + 1, holder = $1, name = $2, address = $3,
                 since = now(), expires_at = now() + $4::bigint * interval '1 microsecond'
             WHERE id = 1 AND (expires_at < now() OR ($5 AND name = $2))
             RETURNING epoch, tidewright_micros(since)",
        )
        .await?;
    let taken = conn
        .client
        .query_opt(
            &statement,
            &[&replica.id, &replica.name, &replica.address, &ttl, &reclaim],
        )
        .await?;
    conn.client.batch_execute("COMMIT").await?;
    Ok(match taken {
        Some(row) => Some(Leader {
            epoch: row.try_get(0)?,
            holder: replica.id.clone(),
            name: replica.name.clone(),
            address: replica.address.clone(),
            since: row.try_get(1)?,
        }),
        None => None,
    })
}

/// The takeover waited its while for a lock and gave up.
fn lock_wait_ended(fault: &Fault) -> bool {
    matches!(fault, Fault::Driver(e) if e.code().is_some_and(|c| c.code() == "55P03"))
}
