//! The connected workers: who they are, in the order they connected (for
//! round-robin dispatch), what each runs and may still take, and when each
//! was last heard from. What the engine does when one registers, hands
//! work back or goes away is here too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use orca_core::calendar::now_micros;
use orca_core::{AttemptKey, Capabilities, Micros};

use crate::Engine;
use crate::handle::Command;
use crate::handle::{FleetNow, QueueDepth, WorkerInfo, WorkerNow};
use crate::to_worker::{Outbox, ToWorker};

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
    /// When it last sent anything; silent past the lease TTL, it is dropped.
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

/// A step that was running when the control plane restarted: its worker may
/// reconnect and claim it before `deadline`; after that it runs again.
pub(crate) struct Orphan {
    pub(crate) attempt: u32,
    pub(crate) deadline: Micros,
}

/// The workers by id, and their order of connection.
pub(crate) struct Workers {
    by_id: HashMap<u64, Worker>,
    order: Vec<u64>,
    next_id: u64,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            by_id: HashMap::new(),
            order: Vec::new(),
            next_id: 1,
        }
    }
}

impl Workers {
    /// Adds a worker that has just connected, with nothing running and no
    /// credits yet; answers its id.
    fn add(&mut self, info: WorkerInfo, outbox: Outbox) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut without_agents = info.capabilities.clone();
        without_agents.remove(orca_core::CLAUDE_CODE);
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

impl Engine {
    /// A worker connected: it is told its id and heartbeat, and claims the
    /// attempts it still runs (after a restart of the control plane).
    pub(crate) fn register(
        &mut self,
        info: WorkerInfo,
        running: Vec<AttemptKey>,
        outbox: Outbox,
    ) -> u64 {
        tracing::info!(worker = %info.name, slots = info.slots, "worker registered");
        let registered = outbox.clone();
        let id = self.workers.add(info, outbox);
        let _ = registered.send(ToWorker::Registered {
            worker_id: id,
            heartbeat_interval: self.liveness.heartbeat_interval,
        });
        // Through the commands' door: an attempt of a task not yet read
        // back waits for it there.
        for attempt in running {
            self.handle(Command::Adopt {
                worker: id,
                attempt,
            });
        }
        id
    }

    /// A worker hands attempts back unfinished: they run again, uncounted.
    pub(crate) fn release(&mut self, worker: u64, attempts: Vec<AttemptKey>, reason: &str) {
        for attempt in attempts {
            if let Some((task_id, index)) = self.current(worker, &attempt) {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.running.remove(&(task_id.clone(), index));
                }
                self.requeue(&task_id, index, reason);
            }
        }
    }

    /// A worker's stream ended: its attempts run again elsewhere.
    pub(crate) fn disconnected(&mut self, worker: u64) {
        let reason = self
            .workers
            .get(&worker)
            .map(|w| format!("worker {} disconnected", w.info.name));
        if let Some(reason) = reason {
            self.drop_worker(worker, &reason);
        }
    }

    /// The connected workers in order, and the queue.
    pub(crate) fn fleet_now(&self) -> FleetNow {
        let workers = self
            .workers
            .order()
            .iter()
            .filter_map(|id| self.workers.get(id).map(|w| (id, w)))
            .map(|(id, w)| WorkerNow {
                id: *id,
                info: w.info.clone(),
                running: w.running.len(),
                connected_at: w.connected_at,
                draining: w.draining,
                paused: self.pause_of(&w.info).map(|p| (p.until, p.reason.clone())),
            })
            .collect();
        let queue = self
            .queue
            .depth_by_needs()
            .map(|(needs, queued)| QueueDepth {
                needs: needs.clone(),
                queued,
            })
            .collect();
        FleetNow { workers, queue }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, slots: u32) -> WorkerInfo {
        WorkerInfo {
            name: name.into(),
            pool: String::new(),
            capabilities: orca_core::queue::capabilities(&[orca_core::CLAUDE_CODE, "shell"]),
            slots,
            peer: "test".into(),
            max_concurrent_agents: 0,
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
                .contains(orca_core::CLAUDE_CODE),
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
