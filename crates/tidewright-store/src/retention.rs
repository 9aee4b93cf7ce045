//! How long finished tasks are kept, and what is left of one once it is
//! removed. A finished task is kept for its *window*: its spec's own
//! (`retentionSeconds`), else its tenant's, else the control plane's;
//! `None` keeps it forever. Once the window has passed, the task goes with
//! everything of it (steps, attempts, events and logs, checkpoints, branches,
//! task-scoped shared state), leaving an [`Expired`] record so that asking
//! for it says it expired rather than that it never was.
//!
//! Every backend finds expired tasks ([`crate::RetentionStore::expiring`]) by the
//! same rules, from the task's own window kept beside it when it is
//! created, its tenant and when it finished; the engine removes them
//! ([`crate::Write::Expire`]) in small batches.

use std::collections::BTreeMap;
use std::time::Duration;

use tidewright_core::Micros;

/// A microsecond count from a whole number of seconds, saturating.
pub fn micros_of_seconds(seconds: u64) -> Micros {
    i64::try_from(seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// A window as flags and settings give it, in microseconds (saturating);
/// `None` for zero, which keeps forever.
pub fn window_of(duration: Duration) -> Option<Micros> {
    (!duration.is_zero()).then(|| i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}

/// Every tenant with a task, one index probe each on `tasks(tenant, …)`: a
/// scan that skips from one tenant to the next instead of reading every
/// task. The same text serves SQLite and PostgreSQL.
pub const TENANTS_SQL: &str = "WITH RECURSIVE t(name) AS (
         SELECT MIN(tenant) FROM tasks
         UNION ALL
         SELECT (SELECT MIN(tenant) FROM tasks WHERE tenant > t.name)
         FROM t WHERE t.name IS NOT NULL)
     SELECT name FROM t WHERE name IS NOT NULL";

/// The windows finished tasks are kept for, by who they belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// How long after it finishes a task is kept unless its tenant or its
    /// spec says otherwise; `None` keeps it forever.
    pub default: Option<Micros>,
    /// Tenants with a window of their own (`None`: forever).
    pub tenants: BTreeMap<String, Option<Micros>>,
}

impl Retention {
    /// Keeps every task forever.
    pub fn forever() -> Retention {
        Retention::default()
    }

    /// The window of a task of `tenant` whose spec asks for `own` seconds
    /// (0: forever); `None` keeps it forever.
    pub fn window(&self, tenant: &str, own: Option<u64>) -> Option<Micros> {
        match own {
            Some(0) => None,
            Some(seconds) => Some(micros_of_seconds(seconds)),
            None => self.tenants.get(tenant).copied().unwrap_or(self.default),
        }
    }

    /// When a task that finished at `finished_at` (0: it has not) goes;
    /// `None` while it runs or when it is kept forever.
    pub fn expires_at(
        &self,
        tenant: &str,
        own: Option<u64>,
        finished_at: Micros,
    ) -> Option<Micros> {
        if finished_at <= 0 {
            return None;
        }
        self.window(tenant, own)
            .map(|window| finished_at.saturating_add(window))
    }

    /// The finish time before which a task of `tenant` with no window of
    /// its own has expired at `now`; `None` when the tenant's are kept
    /// forever.
    pub fn finished_before(&self, tenant: &str, now: Micros) -> Option<Micros> {
        self.window(tenant, None)
            .map(|window| now.saturating_sub(window))
    }
}

/// A finished task whose window has passed, as the store found it: the
/// engine removes it only if it is still finished at that very time (a
/// retry in between reopened it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    pub id: String,
    pub tenant: String,
    pub finished_at: Micros,
}

/// What is kept of a removed task: enough to say it expired, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub id: String,
    pub tenant: String,
    pub finished_at: Micros,
    pub expired_at: Micros,
}

/// History the store keeps by age, not by task, and the time before which
/// each goes; `None` keeps it. At most `limit` rows of each go in one
/// write, so a trim never holds the writer long.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trim {
    /// The fleet's order: a follower (a webhook's dispatcher, `tidewright watch
    /// --fleet`) resuming from before it goes on from the oldest kept.
    pub fleet_before: Option<Micros>,
    /// The audit log.
    pub audit_before: Option<Micros>,
    /// What is kept of removed tasks ([`Expired`]), by when they went.
    pub expired_before: Option<Micros>,
    /// Webhook deliveries that ended (delivered or given up), made before
    /// the delivery with this id (delivery ids sort by creation time).
    pub deliveries_before: Option<String>,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Micros = 86_400_000_000;

    fn rules() -> Retention {
        Retention {
            default: Some(30 * DAY),
            tenants: BTreeMap::from([("short".to_string(), Some(DAY)), ("kept".to_string(), None)]),
        }
    }

    #[test]
    fn a_tasks_own_window_comes_before_its_tenants_which_comes_before_the_default() {
        let rules = rules();
        assert_eq!(rules.window("other", None), Some(30 * DAY));
        assert_eq!(rules.window("short", None), Some(DAY));
        assert_eq!(rules.window("kept", None), None, "a tenant kept forever");
        assert_eq!(rules.window("kept", Some(60)), Some(60_000_000));
        assert_eq!(rules.window("short", Some(0)), None, "0 is forever");
        assert_eq!(Retention::forever().window("any", None), None);
    }

    #[test]
    fn a_task_expires_a_window_after_it_finished_and_never_while_it_runs() {
        let rules = rules();
        assert_eq!(rules.expires_at("short", None, 5), Some(5 + DAY));
        assert_eq!(rules.expires_at("short", None, 0), None, "unfinished");
        assert_eq!(rules.expires_at("kept", None, 5), None);
        assert_eq!(rules.finished_before("short", 10 * DAY), Some(9 * DAY));
        assert_eq!(rules.finished_before("kept", 10 * DAY), None);
        assert_eq!(
            rules.expires_at("x", Some(u64::MAX), 1),
            Some(i64::MAX),
            "saturates"
        );
    }
}
