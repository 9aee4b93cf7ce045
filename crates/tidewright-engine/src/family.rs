//! What ends with a parent: the tasks a running step submitted (see
//! `tidewright_core::family`) are cancelled when their parent task ends, however
//! it ends, so no agent's fan-out outlives the task that asked for it and
//! spends on. A child in memory is cancelled in the same round as its
//! parent's end (one commit); one the engine holds only in its backlog, or
//! cold, when it is read back. A child that comes into memory (admitted,
//! or read back after a restart) whose parent is neither in memory nor in
//! the backlog finds its parent ended, and is cancelled then.
//!
//! And what a child spends counts against its ancestors' budgets: each
//! keeps what its descendants in memory spent (`family_spent`); one that
//! crosses its budget pauses, and its descendants with it, until it is
//! raised. A task read back after a restart, or retried, starts from what
//! the store says its descendants spent (`kin::stored_family`,
//! [`Engine::settle_family`]), so neither forgets a dollar its finished
//! children spent.

use std::collections::HashSet;
use std::sync::Arc;

use tidewright_core::Cost;
use tidewright_core::TaskState;
use tidewright_core::family::parent_of;
use tokio::sync::oneshot;

use crate::budget::{over_own_budget, spent_by};
use crate::engine::Engine;
use crate::handle::Command;

impl Engine {
    /// Charges a task just read back (`id`) with what its descendants
    /// spent before it came into memory: one in memory already as it is now
    /// (its charges stopped short of `id` until now); one read back with it
    /// (`read`) or still to be, not here (it is charged as it is adopted,
    /// see [`Engine::adopt_child`]); one that has ended as the store had it.
    /// Called before the tasks in `read` are adopted. One over its budget
    /// pauses, with its descendants.
    pub(super) fn settle_family(
        &mut self,
        id: &Arc<str>,
        kin: Vec<(String, Cost)>,
        read: &HashSet<&str>,
    ) {
        let mut spent = Cost::default();
        for (descendant, stored) in kin {
            if read.contains(descendant.as_str()) || self.cold.backlog.holds(&descendant) {
                continue;
            }
            spent += match self.tasks.get(descendant.as_str()) {
                Some(active) => spent_by(active),
                None => stored,
            };
        }
        let Some(active) = self.tasks.get_mut(id) else {
            return;
        };
        active.family_spent += spent;
        if active.run.state() != TaskState::Paused
            && let Some(why) = over_own_budget(active)
        {
            self.pause_task(id, &format!("budget: the task {why}"), "task");
        }
    }

    /// Notes a task coming into memory as its parent's child; one whose
    /// parent has ended is cancelled.
    pub(super) fn adopt_child(&mut self, id: &Arc<str>) {
        let Some(parent) = self
            .tasks
            .get(id)
            .and_then(|active| parent_of(&active.spec.labels))
            .map(Arc::<str>::from)
        else {
            return;
        };
        let live = self.tasks.contains_key(&parent) || self.cold.backlog.holds(&parent);
        if !live {
            let reason = format!("its parent task {parent} has ended");
            self.cancel(id, &reason, oneshot::channel().0);
            return;
        }
        let children = self.children.entry(parent.clone()).or_default();
        if !children.contains(id) {
            children.push(id.clone());
        }
        // Read back after a restart, it has spent already.
        let spent = self.tasks.get(id).map(spent_by).unwrap_or_default();
        if !spent.is_zero() {
            self.charge_ancestors(id, spent);
        }
        // Its parent's budget may be spent: it waits with it.
        if let Some(reason) = self.ancestor_over_budget(id) {
            self.pause_task(id, &reason, "parent");
        }
    }

    /// Counts what `id` spent (`grew`) against each of its ancestors in
    /// memory; one it puts over its budget pauses, with its descendants.
    pub(super) fn charge_ancestors(&mut self, id: &str, grew: Cost) {
        let mut at = self
            .tasks
            .get(id)
            .and_then(|a| parent_of(&a.spec.labels).map(Arc::<str>::from));
        while let Some(ancestor) = at {
            let Some(active) = self.tasks.get_mut(&ancestor) else {
                return;
            };
            active.family_spent += grew;
            at = parent_of(&active.spec.labels).map(Arc::<str>::from);
            if active.run.state() != TaskState::Paused
                && let Some(why) = over_own_budget(active)
            {
                self.pause_task(&ancestor, &format!("budget: the task {why}"), "task");
            }
        }
    }

    /// Why a task must wait for an ancestor's budget, if one in memory has
    /// spent it.
    pub(super) fn ancestor_over_budget(&self, id: &str) -> Option<String> {
        let mut at = self.tasks.get(id).and_then(|a| parent_of(&a.spec.labels));
        while let Some(ancestor) = at {
            let active = self.tasks.get(ancestor)?;
            if let Some(why) = over_own_budget(active) {
                return Some(format!("budget: its parent task {ancestor} {why}"));
            }
            at = parent_of(&active.spec.labels);
        }
        None
    }

    /// Pauses the children (and theirs) of `parent`, paused for its budget.
    pub(super) fn pause_children(&mut self, parent: &str, reason: &str) {
        let children = self.children.get(parent).cloned().unwrap_or_default();
        for child in children {
            if self.tasks.contains_key(&child) {
                self.pause_task(&child, reason, "parent");
            }
        }
    }

    /// Cancels the children of `parent`, which has just ended in `state`.
    pub(super) fn end_children(&mut self, parent: &str, state: TaskState) {
        let Some(children) = self.children.remove(parent) else {
            return;
        };
        let reason = format!("its parent task {parent} ended ({state})");
        for child in children {
            if self.tasks.contains_key(&child) {
                self.cancel(&child, &reason, oneshot::channel().0);
            } else if self.cold.backlog.holds(&child) {
                let command = Command::Cancel {
                    task_id: child.to_string(),
                    reason: reason.clone(),
                    reply: oneshot::channel().0,
                };
                if self.cold.backlog.park(&child, command) {
                    self.cold.reads.wanted.push(child);
                }
            }
            // Otherwise it has ended already.
        }
    }
}
