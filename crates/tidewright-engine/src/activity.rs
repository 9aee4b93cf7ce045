//! The last hour of the fleet's work, minute by minute and per tenant: what
//! the console's overview charts (GetActivity). Prometheus keeps the long
//! history; this is the leader's memory since it took the lead, small
//! enough to keep (60 minutes × the tenants that worked in them) and
//! summed per caller, who sees only its tenants.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tidewright_core::{Cost, Micros};

/// Minutes kept: one hour.
pub const MINUTES: usize = 60;

const MINUTE: Micros = 60_000_000;

/// Dispatch waits by power of two from 100 µs (the last bucket takes
/// everything longer), as the Prometheus histogram buckets them.
const WAIT_BUCKETS: usize = 20;
const FIRST_BOUND_SECONDS: f64 = 0.0001;

/// One tenant's work in one minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub submitted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub dispatched: u64,
    waits: [u64; WAIT_BUCKETS],
    /// By model ("unknown" when the agent named none).
    pub spend: BTreeMap<String, Cost>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.submitted += other.submitted;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.dispatched += other.dispatched;
        for (sum, n) in self.waits.iter_mut().zip(other.waits) {
            *sum += n;
        }
        for (model, cost) in &other.spend {
            *self.spend.entry(model.clone()).or_default() += *cost;
        }
    }

    /// The upper bound of the bucket holding the `quantile` of the
    /// dispatch waits, in seconds; 0 when nothing was dispatched.
    pub fn dispatch_wait(&self, quantile: f64) -> f64 {
        let total: u64 = self.waits.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let wanted = (quantile * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, n) in self.waits.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return bound(bucket);
            }
        }
        bound(WAIT_BUCKETS - 1)
    }
}

fn bound(bucket: usize) -> f64 {
    FIRST_BOUND_SECONDS * f64::powi(2.0, bucket as i32)
}

fn bucket_of(seconds: f64) -> usize {
    (0..WAIT_BUCKETS)
        .find(|&b| seconds <= bound(b))
        .unwrap_or(WAIT_BUCKETS - 1)
}

/// A task's end, as the tally counts it.
#[derive(Debug, Clone, Copy)]
pub enum Ended {
    Succeeded,
    Failed,
    Cancelled,
}

/// What happened, for [`Activity::record`].
#[derive(Debug, Clone)]
pub enum Happened<'a> {
    Submitted,
    Finished(Ended),
    Dispatched { waited_seconds: f64 },
    Spent { model: &'a str, cost: Cost },
}

/// One minute of the summary: its start (micros since the epoch) and the
/// work of the tenants asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteSummary {
    pub start: Micros,
    pub tally: Tally,
}

#[derive(Default)]
pub struct Activity {
    /// Oldest first; only minutes with work.
    minutes: VecDeque<(Micros, HashMap<String, Tally>)>,
}

impl Activity {
    pub fn record(&mut self, now: Micros, tenant: &str, what: Happened<'_>) {
        let tally = self.tally(now, tenant);
        match what {
            Happened::Submitted => tally.submitted += 1,
            Happened::Finished(Ended::Succeeded) => tally.succeeded += 1,
            Happened::Finished(Ended::Failed) => tally.failed += 1,
            Happened::Finished(Ended::Cancelled) => tally.cancelled += 1,
            Happened::Dispatched { waited_seconds } => {
                tally.dispatched += 1;
                tally.waits[bucket_of(waited_seconds.max(0.0))] += 1;
            }
            Happened::Spent { model, cost } => {
                let model = if model.is_empty() { "unknown" } else { model };
                *tally.spend.entry(model.to_string()).or_default() += cost;
            }
        }
    }

    fn tally(&mut self, now: Micros, tenant: &str) -> &mut Tally {
        let start = now - now.rem_euclid(MINUTE);
        if self.minutes.back().is_none_or(|(at, _)| *at < start) {
            self.minutes.push_back((start, HashMap::new()));
        }
        while self
            .minutes
            .front()
            .is_some_and(|(at, _)| *at <= start - MINUTE * MINUTES as Micros)
        {
            self.minutes.pop_front();
        }
        // A clock stepping back files its work under the newest minute.
        let (_, tenants) = self.minutes.back_mut().expect("just pushed");
        if !tenants.contains_key(tenant) {
            tenants.insert(tenant.to_string(), Tally::default());
        }
        tenants.get_mut(tenant).expect("just inserted")
    }

    /// The last hour up to `now`, a minute at a time, oldest first, the
    /// current minute last; the work of `tenants` (all when `None`).
    pub fn summary(&self, now: Micros, tenants: Option<&[String]>) -> Vec<MinuteSummary> {
        let current = now - now.rem_euclid(MINUTE);
        let first = current - MINUTE * (MINUTES as Micros - 1);
        let mut summary: Vec<MinuteSummary> = (0..MINUTES as Micros)
            .map(|i| MinuteSummary {
                start: first + i * MINUTE,
                tally: Tally::default(),
            })
            .collect();
        for (start, by_tenant) in &self.minutes {
            if *start < first || *start > current {
                continue;
            }
            let minute = &mut summary[((start - first) / MINUTE) as usize].tally;
            for (tenant, tally) in by_tenant {
                if tenants.is_none_or(|t| t.iter().any(|t| t == tenant)) {
                    minute.add(tally);
                }
            }
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Micros = 1_700_000_000_000_000 - 1_700_000_000_000_000 % MINUTE;

    fn usd(usd: f64, input_tokens: u64) -> Cost {
        Cost {
            usd,
            input_tokens,
            ..Cost::default()
        }
    }

    #[test]
    fn work_is_counted_in_its_minute_and_its_tenant_and_summed_for_whoever_may_see_it() {
        let mut activity = Activity::default();
        activity.record(T0 + 1, "a", Happened::Submitted);
        activity.record(T0 + 2, "b", Happened::Submitted);
        activity.record(T0 + MINUTE + 5, "a", Happened::Finished(Ended::Succeeded));
        activity.record(T0 + MINUTE + 6, "b", Happened::Finished(Ended::Failed));
        activity.record(
            T0 + MINUTE + 7,
            "a",
            Happened::Spent {
                model: "claude-x",
                cost: usd(0.5, 100),
            },
        );
        activity.record(
            T0 + MINUTE + 8,
            "b",
            Happened::Spent {
                model: "claude-x",
                cost: usd(0.25, 10),
            },
        );
        activity.record(
            T0 + MINUTE + 9,
            "b",
            Happened::Spent {
                model: "",
                cost: usd(1.0, 1),
            },
        );
        let now = T0 + MINUTE + 30_000_000;
        let all = activity.summary(now, None);
        assert_eq!(all.len(), MINUTES);
        assert_eq!(
            all[MINUTES - 1].start,
            T0 + MINUTE,
            "the current minute last"
        );
        assert_eq!(all[MINUTES - 2].start, T0);
        assert_eq!(all[MINUTES - 2].tally.submitted, 2);
        let last = &all[MINUTES - 1].tally;
        assert_eq!((last.succeeded, last.failed), (1, 1));
        assert_eq!(last.spend["claude-x"], usd(0.75, 110));
        assert_eq!(last.spend["unknown"], usd(1.0, 1));
        assert!(
            all[..MINUTES - 2]
                .iter()
                .all(|m| m.tally == Tally::default())
        );

        let only_a = activity.summary(now, Some(&["a".to_string()]));
        assert_eq!(only_a[MINUTES - 2].tally.submitted, 1);
        assert_eq!(only_a[MINUTES - 1].tally.failed, 0);
        assert_eq!(only_a[MINUTES - 1].tally.spend.len(), 1);
        assert!(
            activity
                .summary(now, Some(&[]))
                .iter()
                .all(|m| m.tally == Tally::default()),
            "no tenant, no work"
        );
    }

    #[test]
    fn minutes_older_than_an_hour_are_dropped_and_not_summed() {
        let mut activity = Activity::default();
        activity.record(T0, "a", Happened::Submitted);
        for minute in 1..=MINUTES as Micros {
            activity.record(T0 + minute * MINUTE, "a", Happened::Submitted);
        }
        assert_eq!(activity.minutes.len(), MINUTES, "an hour kept");
        let now = T0 + MINUTES as Micros * MINUTE;
        let summary = activity.summary(now, None);
        assert_eq!(summary[0].start, T0 + MINUTE);
        assert!(summary.iter().all(|m| m.tally.submitted == 1));
        // An hour with nothing since: all zero, and nothing kept that is read.
        let later = activity.summary(now + 2 * MINUTES as Micros * MINUTE, None);
        assert!(later.iter().all(|m| m.tally == Tally::default()));
    }

    #[test]
    fn dispatch_percentiles_are_the_bounds_of_their_buckets() {
        let mut activity = Activity::default();
        for _ in 0..98 {
            activity.record(
                T0,
                "a",
                Happened::Dispatched {
                    waited_seconds: 0.00015,
                },
            );
        }
        activity.record(
            T0,
            "a",
            Happened::Dispatched {
                waited_seconds: 0.003,
            },
        );
        activity.record(
            T0,
            "a",
            Happened::Dispatched {
                waited_seconds: 500.0,
            },
        );
        let tally = &activity.summary(T0, None)[MINUTES - 1].tally;
        assert_eq!(tally.dispatched, 100);
        assert_eq!(tally.dispatch_wait(0.5), 0.0002);
        assert_eq!(tally.dispatch_wait(0.99), 0.0032);
        assert_eq!(
            tally.dispatch_wait(1.0),
            bound(WAIT_BUCKETS - 1),
            "the longest bucket takes the rest"
        );
        assert_eq!(Tally::default().dispatch_wait(0.99), 0.0);
    }
}
