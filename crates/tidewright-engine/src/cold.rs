//! The compact queue: past [`Settings::hot_tasks`] unfinished tasks in
//! memory, a queued task nobody has started is held *cold*: its whole
//! state stays in the store, and the engine keeps only its steps' places in
//! the ready queue (about a tenth of the memory). A deep backlog (a million
//! steps waiting for a capability no worker has yet) then costs the
//! control plane little memory, and a restart reads little more than the
//! queue back.
//!
//! Cold tasks come back whole a batch at a time, ahead of need: as workers
//! take steps from the head of a set of needs, the tasks just behind are
//! read back, so dispatch rarely finds a cold task at the head. A command
//! about a cold task (a cancel, a decision) waits for it to be read back,
//! as commands about a task not yet recovered do (see [`crate::backlog::Backlog`]).
//!
//! A cold task is read back only after every round before has committed
//! (the read is an effect of the round that asks for it), so it reads all
//! the engine wrote of it.

use std::sync::Arc;

use tidewright_core::{Capabilities, QueueKey, ReadyQueue, StepState, TaskState};
use tidewright_store::QueuedTask;

use crate::tenants::Shares;

use crate::effects::Effect;
use crate::engine::Engine;
use crate::live::Active;

/// Tasks read back at once: enough to keep a fleet busy while the next
/// batch is read.
const READ_BATCH: usize = 1024;

/// How far along each set of needs the engine looks for cold tasks to
/// read back: twice a batch, so one batch is read while another is taken.
const LOOK_AHEAD: usize = 2 * READ_BATCH;

/// Steps dispatched between two looks ahead.
const LOOK_EVERY: usize = READ_BATCH / 2;

impl Engine {
    /// Lets go of this round's admissions that nobody took while the
    /// engine holds more tasks than it may: the newest first go cold, as
    /// they are the last in the queue of their priority.
    pub(super) fn cool_down(&mut self) {
        let fresh = std::mem::take(&mut self.cold.reads.fresh);
        if self.tasks.len() <= self.cold.hot {
            return;
        }
        for id in fresh.into_iter().rev() {
            if self.tasks.len() <= self.cold.hot {
                break;
            }
            if !self.tasks.get(&id).is_some_and(untouched) {
                continue;
            }
            let Some(active) = self.tasks.remove(&id) else {
                continue;
            };
            let keys = active
                .steps
                .iter()
                .filter_map(|s| s.queued.clone())
                .collect();
            self.cold.backlog.hold_cold(id, keys);
        }
    }

    /// Dispatch found the cold task `task_id` first in the queue: it is
    /// read back with those behind it. An entry for a task the engine no
    /// longer knows at all is dropped.
    pub(super) fn cold_at_head(&mut self, task_id: &str, key: &QueueKey) {
        if self.cold.backlog.holds(task_id) {
            self.cold.reads.head = true;
        } else {
            self.queue.remove(key);
        }
    }

    /// Asks for the cold tasks commands wait for, and, when dispatch has
    /// taken enough or met a cold task, for those near the head of each
    /// set of needs.
    pub(super) fn read_ahead(&mut self) {
        let mut ids = std::mem::take(&mut self.cold.reads.wanted);
        let look = self.cold.reads.head || self.cold.reads.dispatched >= LOOK_EVERY;
        if look && self.cold.backlog.cold > 0 {
            self.cold.reads.head = false;
            self.cold.reads.dispatched = 0;
            for (task_id, _) in self.queue.heads(LOOK_AHEAD) {
                if ids.len() >= READ_BATCH {
                    break;
                }
                if let Some(held) = self.cold.backlog.pending.get_mut(task_id)
                    && held.cold.is_some()
                    && !held.loading
                {
                    held.loading = true;
                    ids.push(task_id.clone());
                }
            }
        }
        if !ids.is_empty() {
            self.round.effects.push(Effect::Load(ids));
        }
    }
}

/// A task nobody has started or decided on, in the queue: all it holds in
/// memory beyond the store is its steps' places.
fn untouched(active: &Active) -> bool {
    active.run.state() == TaskState::Queued
        && active.steps.iter().all(|s| s.awaiting.is_none())
        && active
            .run
            .steps()
            .iter()
            .all(|s| s.attempt == 0 && matches!(s.state, StepState::Queued | StepState::Waiting))
}

/// Puts a queued task's steps in the queue, in their places, for the task
/// held cold; answers where they sit.
pub(super) fn queue_cold(
    (queue, shares): (&mut ReadyQueue<(Arc<str>, usize)>, &Shares),
    id: &Arc<str>,
    task: &QueuedTask,
    needs: &mut NeedsMemo,
) -> Box<[QueueKey]> {
    let key = shares.key_of_parts(&task.tenant, task.repo.as_deref(), &task.labels);
    task.queued
        .iter()
        .map(|(index, named)| {
            queue.push(
                needs.of(named),
                (&task.tenant, key, task.priority),
                task.created_at,
                (id.clone(), *index),
            )
        })
        .collect()
}

/// The capability sets of the needs met so far: a deep queue's tasks
/// mostly need the same few, and a set made per task would be an
/// allocation per capability per task.
#[derive(Default)]
pub(super) struct NeedsMemo(Vec<(Vec<String>, Capabilities)>);

impl NeedsMemo {
    fn of(&mut self, named: &[String]) -> &Capabilities {
        let at = match self.0.iter().position(|(n, _)| n == named) {
            Some(at) => at,
            None => {
                // Many distinct sets: start over rather than search long.
                if self.0.len() >= 32 {
                    self.0.clear();
                }
                let set = tidewright_core::queue::capabilities(named);
                self.0.push((named.to_vec(), set));
                self.0.len() - 1
            }
        };
        &self.0[at].1
    }
}
