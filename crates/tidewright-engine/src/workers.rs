//! The connected workers: who they are, in the order they connected (for
//! round-robin dispatch), what each runs and may still take, and when each
//! was last heard from. What the engine does when one registers, hands
//! work back or goes away is here too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tidewright_core::calendar::now_micros;
use tidewright_core::{Capabilities, Micros};

use crate::handle::RateLimited;
use crate::handle::{Gone, WorkerInfo};
use crate::limits::Pauses;
use crate::metrics::Metrics;
use crate::unserved::Unserved;

/// How long, and how many, workers that left are listed.
const GONE_KEPT: Micros = 3600 * 1_000_000;
const GONE_MAX: usize = 32;
use crate::to_worker::Outbox;

/// A connected worker, as the engine schedules onto it.
pub(crate) struct Worker {
    pub(crate) info: WorkerInfo,
    /// Its capabilities without `claude-code`: what it may take while its
    /// pool runs as many agents as it may.
    pub(crate) without_agents: Capabilities,
    pub(crate) outbox: Outbox,
    pub(crate) credits: u32,
    pub(crate) running: HashSet<(Arc<str>, usize)>,
    pub(crate) connected_at: Micros,
    /// When it last sent anything; silent past the worker timeout, it is dropped.
    pub(crate) last_seen: Micros,
    /// Shutting down: gets no new work.
    pub(crate) draining: bool,
}

impl Worker {
    /// Steps it may be given now: what it asked for, never beyond its slots.
    pub(crate) fn free(&self) -> u32 {
        if self.draining {
            return 0;
        }
        self.credits
            .min(self.info.slots.saturating_sub(self.running.len() as u32))
    }
}

/// The fleet as the engine schedules onto it: the connected workers, the
/// steps a restart left running until their workers claim them, the
/// pauses provider limits put on pools' agents, and what the fleet offers.
pub(crate) struct Fleet {
    pub(crate) workers: Workers,
    pub(crate) orphans: HashMap<(Arc<str>, usize), Orphan>,
    pub(crate) pauses: Pauses,
    /// What the fleet offers, and the queued steps no worker can run.
    pub(crate) unserved: Unserved,
    /// How long a worker's hold on its steps lasts without a sign of life.
    pub(crate) liveness: Liveness,
}

impl Fleet {
    /// Pauses the `agent` runtime's agents of `worker`'s pool after a
    /// limit; returns what the step's event says.
    pub(crate) fn pause_for_limit(
        &mut self,
        worker: u64,
        agent: &str,
        limit: &RateLimited,
        error: &str,
        metrics: &Metrics,
    ) -> String {
        let Some(w) = self.workers.get(&worker) else {
            return "rate limited".into();
        };
        let pool = pool_of(&w.info);
        self.pauses
            .pause((pool, &w.info.name), agent, limit, error, metrics)
    }

    /// An `agent` of `worker`'s pool succeeded (see [`Pauses::recovered`]).
    pub(crate) fn pool_recovered(&mut self, worker: u64, agent: &str) {
        if let Some(w) = self.workers.get(&worker) {
            self.pauses.recovered(pool_of(&w.info), agent);
        }
    }
}

/// The pool a worker's agents count against: its pool, or, for a worker
/// in none, itself.
pub(crate) fn pool_of(info: &WorkerInfo) -> &str {
    if info.pool.is_empty() {
        &info.name
    } else {
        &info.pool
    }
}

/// How long a worker's hold on its steps lasts without a sign of life.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub ttl: Duration,
    pub heartbeat_interval: Duration,
}

/// A step that was running when the control plane restarted: its worker may
/// reconnect and claim it before `deadline`; after that it runs again.
pub(crate) struct Orphan {
    pub(crate) attempt: u32,
    pub(crate) deadline: Micros,
}

/// The workers by id, and their order of connection; and those that
/// left lately, newest first.
pub(crate) struct Workers {
    by_id: HashMap<u64, Worker>,
    order: Vec<u64>,
    next_id: u64,
    gone: VecDeque<Gone>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            by_id: HashMap::new(),
            order: Vec::new(),
            next_id: 1,
            gone: VecDeque::new(),
        }
    }
}

impl Workers {
    /// Adds a worker that has just connected, with nothing running and no
    /// credits yet; answers its id.
    pub(crate) fn add(&mut self, info: WorkerInfo, outbox: Outbox) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        // Back under its name: it is not gone.
        self.gone.retain(|g| g.info.name != info.name);
        let mut without_agents = info.capabilities.clone();
        for agent in tidewright_core::AGENT_CAPABILITIES {
            without_agents.remove(agent);
        }
        let now = now_micros();
        self.by_id.insert(
            id,
            Worker {
                without_agents,
                info,
                outbox,
                credits: 0,
                running: HashSet::new(),
                connected_at: now,
                last_seen: now,
                draining: false,
            },
        );
        self.order.push(id);
        id
    }

    pub(crate) fn get(&self, id: &u64) -> Option<&Worker> {
        self.by_id.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut Worker> {
        self.by_id.get_mut(id)
    }

    pub(crate) fn remove(&mut self, id: &u64) -> Option<Worker> {
        self.order.retain(|w| w != id);
        self.by_id.remove(id)
    }

    /// Lists `worker`, which left for `reason`, among those gone.
    pub(crate) fn departed(&mut self, worker: &Worker, reason: &str) {
        self.gone.push_front(Gone {
            info: worker.info.clone(),
            connected_at: worker.connected_at,
            gone_at: now_micros(),
            reason: reason.to_string(),
        });
        self.gone.truncate(GONE_MAX);
    }

    /// Those that left within the last hour, newest first.
    pub(crate) fn gone(&self) -> Vec<Gone> {
        let since = now_micros() - GONE_KEPT;
        self.gone
            .iter()
            .take_while(|g| g.gone_at > since)
            .cloned()
            .collect()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Worker> {
        self.by_id.values()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u64, &Worker)> {
        self.by_id.iter()
    }

    /// Ids in the order their workers connected.
    pub(crate) fn order(&self) -> &[u64] {
        &self.order
    }

    /// Forgets every worker (the engine is stopping).
    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
    }

    /// A worker was heard from.
    pub(crate) fn seen(&mut self, id: u64) {
        if let Some(w) = self.by_id.get_mut(&id) {
            w.last_seen = now_micros();
        }
    }

    /// A worker asks for `credits` more steps, never beyond its slots.
    pub(crate) fn credit(&mut self, id: u64, credits: u32) {
        if let Some(w) = self.by_id.get_mut(&id) {
            w.credits = w.credits.saturating_add(credits).min(w.info.slots);
        }
    }

    /// A worker is shutting down: it gets no new work.
    pub(crate) fn drain(&mut self, id: u64) {
        if let Some(w) = self.by_id.get_mut(&id) {
            tracing::info!(worker = %w.info.name, running = w.running.len(), "worker draining");
            w.draining = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, slots: u32) -> WorkerInfo {
        WorkerInfo {
            name: name.into(),
            pool: String::new(),
            capabilities: tidewright_core::queue::capabilities(&[
                tidewright_core::CLAUDE_CODE,
                "shell",
            ]),
            slots,
            peer: "test".into(),
            max_concurrent_agents: 0,
            isolation: String::new(),
        }
    }

    #[test]
    fn workers_keep_their_order_credits_stop_at_slots_and_a_draining_one_takes_nothing() {
        let mut workers = Workers::default();
        let (outbox, _inbox) = tokio::sync::mpsc::unbounded_channel();
        let a = workers.add(info("a", 2), outbox.clone());
        let b = workers.add(info("b", 4), outbox.clone());
        let c = workers.add(info("c", 1), outbox);
        assert_eq!(workers.order(), [a, b, c]);
        assert!(
            !workers
                .get(&a)
                .expect("a")
                .without_agents
                .contains(tidewright_core::CLAUDE_CODE),
            "agents are held back from a pool at its cap by this set"
        );
        workers.credit(a, 5);
        assert_eq!(
            workers.get(&a).expect("a").free(),
            2,
            "never beyond its slots"
        );
        workers.credit(b, 1);
        workers.credit(b, 1);
        assert_eq!(workers.get(&b).expect("b").free(), 2);
        workers.drain(b);
        assert_eq!(
            workers.get(&b).expect("b").free(),
            0,
            "a draining worker takes nothing"
        );
        assert!(workers.remove(&b).is_some());
        assert_eq!(workers.order(), [a, c], "the rest keep their order");
        workers.clear();
        assert!(workers.order().is_empty() && workers.values().next().is_none());
    }
}
