//! Provider limits: when an agent's run hits the API's rate limit or its
//! account's usage window, its worker says so, and the engine pauses that
//! runtime's agent steps in the worker's pool (the pool shares a key or
//! account per provider: a Codex limit is OpenAI's, so the pool's Claude
//! Code steps run on) until the limit resets, or, when the provider named
//! no reset, for a back-off that doubles while the limits keep coming. The step goes back
//! to the queue without its attempt counting; other pools, and the pool's
//! steps that are not agents', keep running.

use std::collections::HashMap;
use std::time::Duration;

use tidewright_core::Micros;
use tidewright_core::calendar::now_micros;

use crate::handle::RateLimited;
use crate::metrics::Metrics;

/// The first back-off when a limit names no reset time, unless the
/// control plane is told another.
pub const DEFAULT_LIMIT_BACKOFF: Duration = Duration::from_secs(60);

/// The longest back-off, and the latest reset believed: a usage window is
/// five hours.
pub(crate) const LONGEST_BACKOFF: Micros = 30 * 60_000_000;
pub(crate) const LATEST_RESET: Micros = 6 * 3600 * 1_000_000;

/// A pool's agents, paused by a provider limit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pause {
    /// When its agents may run again.
    pub until: Micros,
    pub reason: String,
    /// Limits in a row without an agent of the pool succeeding: each one
    /// without a reset time doubles the back-off.
    pub strikes: u32,
}

/// The agents a provider limit paused, by pool and agent runtime's
/// capability (`claude-code`, `codex`): a limit is one provider's, so it
/// pauses that runtime's agents of the pool and no other's.
pub(crate) struct Pauses {
    by_agent: HashMap<(String, String), Pause>,
    /// The first pause after a limit that names no reset.
    first_backoff: Micros,
}

impl Pauses {
    pub(crate) fn new(first_backoff: Duration) -> Self {
        Pauses {
            by_agent: HashMap::new(),
            first_backoff: first_backoff.as_micros().min(i64::MAX as u128) as Micros,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_agent.is_empty()
    }

    /// The pauses of `pool`, while they last: each paused agent runtime's
    /// capability and its pause.
    pub(crate) fn of<'a>(
        &'a self,
        pool: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Pause)> + 'a {
        let now = now_micros();
        self.by_agent
            .iter()
            .filter(move |((p, _), pause)| p == pool && pause.until > now)
            .map(|((_, agent), pause)| (agent.as_str(), pause))
    }

    /// The pause of `pool` that ends last, as the fleet shows it.
    pub(crate) fn longest<'a>(&'a self, pool: &'a str) -> Option<&'a Pause> {
        self.of(pool)
            .map(|(_, pause)| pause)
            .max_by_key(|pause| pause.until)
    }

    /// The pools and agents paused now.
    pub(crate) fn paused_now(&self) -> Vec<(String, String)> {
        let now = now_micros();
        self.by_agent
            .iter()
            .filter(|(_, pause)| pause.until > now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Pauses the `agent` runtime's agents of `pool` after a limit that
    /// `worker` reported; returns what the step's event says.
    pub(crate) fn pause(
        &mut self,
        (pool, worker): (&str, &str),
        agent: &str,
        limit: &RateLimited,
        error: &str,
        metrics: &Metrics,
    ) -> String {
        let key = (pool.to_string(), agent.to_string());
        let now = now_micros();
        let strikes = self.by_agent.get(&key).map_or(0, |p| p.strikes) + 1;
        let until = pause_until(limit.reset, strikes, now, self.first_backoff);
        let mut said = error.trim().to_string();
        tidewright_core::truncate_at_char_boundary(&mut said, 200);
        // Which report decided, so people can tell a limit the CLI named
        // from one read in its words.
        let reason = match limit.signal.as_str() {
            "" => format!("{agent} rate limited: {said}"),
            signal => format!("{agent} rate limited ({signal}): {said}"),
        };
        tracing::warn!(pool = %pool, agent, worker, until, strikes, %reason, "a provider limit pauses the pool's agents of that runtime");
        metrics.rate_limited(pool, agent);
        let wait = match limit.reset {
            Some(_) => "until the reset",
            None => "a back-off",
        };
        let message = format!(
            "{reason}; the pool's {agent} agents wait {:.0}s ({wait}), and this attempt does not count",
            (until - now) as f64 / 1e6
        );
        self.by_agent.insert(
            key,
            Pause {
                until,
                reason,
                strikes,
            },
        );
        message
    }

    /// An `agent` of `pool` succeeded: its limits in a row are over, and
    /// so is a pause that has ended.
    pub(crate) fn recovered(&mut self, pool: &str, agent: &str) {
        let key = (pool.to_string(), agent.to_string());
        if self
            .by_agent
            .get(&key)
            .is_some_and(|p| p.until <= now_micros())
        {
            self.by_agent.remove(&key);
        }
    }

    /// When the next pause ends, for the loop to wake and dispatch.
    pub(crate) fn next_resume(&self) -> Option<Micros> {
        let now = now_micros();
        self.by_agent
            .values()
            .map(|p| p.until)
            .filter(|until| *until > now)
            .min()
    }
}

/// When a pause after `strikes` limits in a row ends, at `now`: at the
/// reset the provider named (within the next six hours, and never in the
/// past), or after the back-off, `first` doubled for each strike after the
/// first.
pub(crate) fn pause_until(
    reset: Option<Micros>,
    strikes: u32,
    now: Micros,
    first: Micros,
) -> Micros {
    match reset {
        Some(reset) => reset.clamp(now + 1_000_000, now + LATEST_RESET),
        None => {
            let doublings = strikes.saturating_sub(1).min(10);
            now + first
                .max(1)
                .saturating_mul(1 << doublings)
                .min(LONGEST_BACKOFF)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_ends_at_the_reset_or_after_a_doubling_backoff() {
        let now = 1_000_000_000_000;
        let first = 60_000_000;
        assert_eq!(
            pause_until(Some(now + 5_000_000), 1, now, first),
            now + 5_000_000
        );
        assert_eq!(
            pause_until(Some(now - 5_000_000), 1, now, first),
            now + 1_000_000,
            "a reset in the past still pauses a moment"
        );
        assert_eq!(
            pause_until(Some(now + 48 * 3600 * 1_000_000), 1, now, first),
            now + LATEST_RESET
        );
        assert_eq!(pause_until(None, 1, now, first), now + 60_000_000);
        assert_eq!(pause_until(None, 2, now, first), now + 120_000_000);
        assert_eq!(pause_until(None, 9, now, first), now + LONGEST_BACKOFF);
        assert_eq!(pause_until(None, 3, now, 1_000_000), now + 4_000_000);
    }

    #[test]
    fn a_limit_pauses_one_runtime_of_one_pool_and_back_offs_double_until_it_recovers() {
        let metrics = Metrics::new();
        let mut pauses = Pauses::new(Duration::from_secs(60));
        let backoff = RateLimited {
            reset: None,
            signal: String::new(),
        };
        let said = pauses.pause(("gpu", "w1"), "codex", &backoff, "429", &metrics);
        assert!(said.contains("codex rate limited: 429"), "{said}");
        assert_eq!(
            pauses.of("gpu").map(|(a, _)| a).collect::<Vec<_>>(),
            ["codex"]
        );
        assert_eq!(pauses.of("cpu").count(), 0, "another pool runs on");
        assert_eq!(
            pauses.paused_now(),
            [("gpu".to_string(), "codex".to_string())]
        );
        let first = pauses.longest("gpu").expect("gpu is paused").until;
        pauses.pause(("gpu", "w2"), "codex", &backoff, "429", &metrics);
        let second = pauses.longest("gpu").expect("gpu is paused");
        assert_eq!(second.strikes, 2);
        assert!(
            second.until - first >= 59_000_000,
            "the second limit in a row waits twice as long"
        );
        assert_eq!(pauses.next_resume(), Some(second.until));
        pauses.recovered("gpu", "codex");
        assert_eq!(
            pauses.longest("gpu").map(|p| p.strikes),
            Some(2),
            "a pause that has not ended stays"
        );
        let at = now_micros() + 5_000_000;
        let reset = RateLimited {
            reset: Some(at),
            signal: "api_error_status 429".into(),
        };
        let said = pauses.pause(("cpu", "w3"), "claude-code", &reset, "slow down", &metrics);
        assert!(said.contains("(api_error_status 429)"), "{said}");
        assert_eq!(
            pauses.longest("cpu").expect("cpu is paused").until,
            at,
            "the reset named decides"
        );
    }
}
