//! Retention: a finished task goes, with everything of it, once its window
//! has passed (the rules are `tidewright_store::retention`'s). The leader sweeps:
//! it finds expired tasks in the store a small batch at a time and hands
//! each batch to the engine, which removes the ones it does not hold, in
//! order with every other write. So a retry that reopened a task first
//! keeps it, and a retry after the removal was decided finds it expired.
//! The same sweep trims what is kept by age: the fleet's order and ended
//! webhook deliveries (a task window), the audit log and what is kept of
//! removed tasks (the audit window).

use std::sync::Arc;
use std::time::Duration;

use tidewright_core::Micros;
use tidewright_core::calendar::now_micros;
use tidewright_store::retention::{Expiring, Retention, Trim};
use tidewright_store::{Store, TaskRecord, Write};

use crate::error::Error;
use crate::handle::EngineHandle;

/// Expired tasks removed in one write: small, so a removal holds the
/// store's writer for a few milliseconds, not long enough to be seen in
/// a submit's latency.
pub const EXPIRE_BATCH: usize = 100;
/// Rows of each kind of history trimmed in one write.
const TRIM_BATCH: usize = 1000;
/// Trim writes a look: history comes as fast as commits and submits do
/// (the fleet's order a row a commit, the audit log a record a submit),
/// so a look trims up to 8,000 rows of each kind, in writes small enough
/// not to hold the writer; one with nothing old to remove commits
/// nothing.
const TRIMS_PER_LOOK: usize = 8;
/// How often the sweep looks.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the sweep decided removals by: the retention rules, and the
/// latest time a sweep looked.
pub(crate) struct Sweeper {
    pub(crate) retention: Arc<Retention>,
    swept_through: Micros,
}

impl Sweeper {
    pub(crate) fn new(retention: Arc<Retention>) -> Self {
        Sweeper {
            retention,
            swept_through: 0,
        }
    }

    /// The write that removes the expired tasks a sweep found at `now`,
    /// but those `held` (reopened since): none when it holds them all.
    pub(crate) fn expire(
        &mut self,
        mut tasks: Vec<Expiring>,
        now: Micros,
        held: impl Fn(&str) -> bool,
    ) -> Option<Write> {
        self.swept_through = self.swept_through.max(now);
        tasks.retain(|task| !held(&task.id));
        (!tasks.is_empty()).then_some(Write::Expire { tasks, at: now })
    }

    /// Refuses to bring back a task whose window has passed, now or by
    /// the clock of a sweep that may have removed it already.
    pub(crate) fn refuse_expired(&self, record: &TaskRecord) -> Result<(), Error> {
        match self.retention.task_expires_at(record) {
            Some(at) if at <= now_micros().max(self.swept_through) => {
                Err(Error::NotFound(expired_message(&record.id, at)))
            }
            _ => Ok(()),
        }
    }
}

/// What a caller is told of a task that expired at `at`.
pub(crate) fn expired_message(id: &str, at: Micros) -> String {
    format!(
        "task {id} expired at {}: a finished task is kept for its retention window, then removed",
        tidewright_core::calendar::rfc3339(at)
    )
}

/// Sweeps every second until dropped: removes expired tasks a batch at a
/// time until a batch comes back short, then trims history once. Runs on
/// the leader: its writes are fenced like every other.
pub fn sweep_periodically(
    engine: EngineHandle,
    store: Arc<dyn Store>,
    audit_retention: Option<Micros>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let looked = async {
                while sweep(&engine, &*store).await? {}
                trim(&engine, &*store, audit_retention).await
            }
            .await;
            match looked {
                Ok(()) => {}
                Err(Error::ShuttingDown) => return,
                Err(e) => tracing::warn!(error = %e, "removing expired tasks failed; trying again"),
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    })
}

/// Removes one batch of expired tasks; whether it was full, so more may
/// be waiting.
pub async fn sweep(engine: &EngineHandle, store: &dyn Store) -> Result<bool, Error> {
    let now = now_micros();
    let expiring = store
        .expiring(engine.retention(), now, EXPIRE_BATCH)
        .await?;
    let full = expiring.len() == EXPIRE_BATCH;
    if !expiring.is_empty() {
        engine.expire(expiring, now).await?;
    }
    Ok(full)
}

/// Trims each kind of history past its window (see [`TRIMS_PER_LOOK`]):
/// once a look, not once a batch of removals.
async fn trim(
    engine: &EngineHandle,
    store: &dyn Store,
    audit_retention: Option<Micros>,
) -> Result<(), Error> {
    let trim = trim_at(engine.retention(), audit_retention, now_micros());
    if trim == Trim::default() {
        return Ok(());
    }
    for _ in 0..TRIMS_PER_LOOK {
        let committed = store.write(vec![Write::Trim(trim.clone())]);
        committed.await.map_err(|_| Error::ShuttingDown)??;
    }
    Ok(())
}

/// What to trim at `now`: the fleet's order and ended deliveries a default
/// task window old, the audit log and the records of removed tasks an
/// audit window old.
fn trim_at(rules: &Retention, audit_retention: Option<Micros>, now: Micros) -> Trim {
    let before = |window: Option<Micros>| window.map(|w| now.saturating_sub(w));
    let task_window = before(rules.default);
    Trim {
        fleet_before: task_window,
        audit_before: before(audit_retention),
        expired_before: before(audit_retention),
        deliveries_before: task_window.map(first_id_at),
        limit: if task_window.is_some() || audit_retention.is_some() {
            TRIM_BATCH
        } else {
            0
        },
    }
}

/// The smallest delivery id made at `at`: delivery ids are ULIDs, which
/// sort by the millisecond they were made in.
fn first_id_at(at: Micros) -> String {
    let millis = u64::try_from(at.max(0) / 1000).unwrap_or(0);
    ulid::Ulid::from_parts(millis, 0).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_trimmed_by_the_default_and_the_audit_windows() {
        let rules = Retention {
            default: Some(10),
            ..Retention::default()
        };
        let trim = trim_at(&rules, Some(100), 1_000_000);
        assert_eq!(trim.fleet_before, Some(999_990));
        assert_eq!(trim.audit_before, Some(999_900));
        assert_eq!(trim.expired_before, Some(999_900));
        assert_eq!(trim.limit, TRIM_BATCH);
        assert_eq!(
            trim_at(&Retention::forever(), None, 1_000_000),
            Trim::default(),
            "kept forever: nothing to trim"
        );
    }

    #[test]
    fn a_delivery_id_made_at_a_time_sorts_after_the_first_id_of_that_time() {
        let at = 1_700_000_000_123_456;
        let made = ulid::Ulid::from_parts(1_700_000_000_123, 42).to_string();
        let earlier = ulid::Ulid::from_parts(1_700_000_000_122, u128::MAX >> 48).to_string();
        assert!(first_id_at(at) <= made);
        assert!(earlier < first_id_at(at));
    }
}
