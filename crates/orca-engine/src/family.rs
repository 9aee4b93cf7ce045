//! What ends with a parent: the tasks a running step submitted (see
//! `orca_core::family`) are cancelled when their parent task ends, however
//! it ends, so no agent's fan-out outlives the task that asked for it and
//! spends on. A child in memory is cancelled in the same round as its
//! parent's end (one commit); one the engine holds only in its backlog, or
//! cold, when it is read back. A child that comes into memory (admitted,
//! or read back after a restart) whose parent is neither in memory nor in
//! the backlog finds its parent ended, and is cancelled then.

use orca_core::family::parent_of;

use crate::engine::*;

impl Engine {
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
        let live = self.tasks.contains_key(&parent) || self.backlog.holds(&parent);
        if !live {
            let reason = format!("its parent task {parent} has ended");
            self.cancel(id, &reason, oneshot::channel().0);
            return;
        }
        let children = self.children.entry(parent).or_default();
        if !children.contains(id) {
            children.push(id.clone());
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
            } else if self.backlog.holds(&child) {
                let command = Command::Cancel {
                    task_id: child.to_string(),
                    reason: reason.clone(),
                    reply: oneshot::channel().0,
                };
                if self.backlog.park(&child, command) {
                    self.cold.wanted.push(child);
                }
            }
            // Otherwise it has ended already.
        }
    }
}
