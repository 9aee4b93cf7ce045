//! Provider limits: when an agent's run hits the API's rate limit or its
//! account's usage window, its worker says so, and the engine pauses that
//! runtime's agent steps in the worker's pool (the pool shares a key or
//! account per provider: a Codex limit is OpenAI's, so the pool's Claude
//! Code steps run on) until the limit resets, or, when the provider named
//! no reset, for a back-off that doubles while the limits keep coming. The step goes back
//! to the queue without its attempt counting; other pools, and the pool's
//! steps that are not agents', keep running.

use std::time::Duration;

use tidewright_core::Micros;
use tidewright_core::calendar::now_micros;

use crate::engine::Engine;
use crate::handle::{RateLimited, WorkerInfo};
use crate::workers::Pause;
use crate::workers::pause_until;

/// The first back-off when a limit names no reset time, unless the
/// control plane is told another.
pub const DEFAULT_LIMIT_BACKOFF: Duration = Duration::from_secs(60);
impl Engine {
    /// The pauses of `worker`'s pool, while they last: each paused agent
    /// runtime's capability and its pause.
    pub(super) fn pauses_of<'a>(
        &'a self,
        worker: &WorkerInfo,
    ) -> impl Iterator<Item = (&'a str, &'a Pause)> + 'a {
        let pool = crate::dispatch::pool_of(worker).to_string();
        let now = now_micros();
        self.pauses
            .iter()
            .filter(move |((p, _), pause)| *p == pool && pause.until > now)
            .map(|((_, agent), pause)| (agent.as_str(), pause))
    }

    /// The pause of `worker`'s pool that ends last, as the fleet shows it.
    pub(super) fn pause_of(&self, worker: &WorkerInfo) -> Option<&Pause> {
        self.pauses_of(worker)
            .map(|(_, pause)| pause)
            .max_by_key(|pause| pause.until)
    }

    /// Pauses the `agent` runtime's agents of `worker`'s pool after a
    /// limit; returns what the step's event says.
    pub(super) fn pause_for_limit(
        &mut self,
        worker: u64,
        agent: &str,
        limit: &RateLimited,
        error: &str,
    ) -> String {
        let Some(info) = self.workers.get(&worker).map(|w| w.info.clone()) else {
            return "rate limited".into();
        };
        let key = (
            crate::dispatch::pool_of(&info).to_string(),
            agent.to_string(),
        );
        let now = now_micros();
        let strikes = self.pauses.get(&key).map_or(0, |p| p.strikes) + 1;
        let until = pause_until(limit.reset, strikes, now, self.limit_backoff);
        let mut said = error.trim().to_string();
        tidewright_core::truncate_at_char_boundary(&mut said, 200);
        // Which report decided, so people can tell a limit the CLI named
        // from one read in its words.
        let reason = match limit.signal.as_str() {
            "" => format!("{agent} rate limited: {said}"),
            signal => format!("{agent} rate limited ({signal}): {said}"),
        };
        let pool = &key.0;
        tracing::warn!(pool = %pool, agent, worker = %info.name, until, strikes, %reason, "a provider limit pauses the pool's agents of that runtime");
        self.metrics.rate_limited(pool, agent);
        let wait = match limit.reset {
            Some(_) => "until the reset",
            None => "a back-off",
        };
        let message = format!(
            "{reason}; the pool's {agent} agents wait {:.0}s ({wait}), and this attempt does not count",
            (until - now) as f64 / 1e6
        );
        self.pauses.insert(
            key,
            Pause {
                until,
                reason,
                strikes,
            },
        );
        message
    }

    /// An `agent` of `worker`'s pool succeeded: its limits in a row are
    /// over, and so is a pause that has ended.
    pub(super) fn pool_recovered(&mut self, worker: u64, agent: &str) {
        let Some(w) = self.workers.get(&worker) else {
            return;
        };
        let key = (
            crate::dispatch::pool_of(&w.info).to_string(),
            agent.to_string(),
        );
        if self
            .pauses
            .get(&key)
            .is_some_and(|p| p.until <= now_micros())
        {
            self.pauses.remove(&key);
        }
    }

    /// When the next pause ends, for the loop to wake and dispatch.
    pub(super) fn next_resume(&self) -> Option<Micros> {
        let now = now_micros();
        self.pauses
            .values()
            .map(|p| p.until)
            .filter(|until| *until > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::{LATEST_RESET, LONGEST_BACKOFF};

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
}
