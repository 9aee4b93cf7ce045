//! A step's session replay: its timeline (see
//! [`tidewright_core::replay`]), read from its task's stored events page by
//! page, with the step as stored and its changes to the repository.

use tidewright_core::replay::{Entry, Timeline};
use tidewright_store::{StepRecord, TaskRecord};

use super::calls::StepRef;
use super::{Call, Tasks};
use crate::access::Action;
use crate::error::Error;

/// How many events are read at once.
const PAGE: usize = 1000;

/// A step's replay: its task and the step as stored (its attempts, their
/// costs and verify rounds), its timeline, and its diff.
pub struct StepReplay {
    pub task: TaskRecord,
    pub step: StepRecord,
    pub entries: Vec<Entry>,
    /// Its own changes to the task's repository as a unified diff; empty
    /// when it changed nothing, or its branch is no longer kept.
    pub diff: String,
}

impl Tasks {
    /// Step `step_id`'s replay, of a live step as far as it has gone.
    pub async fn step_replay(&self, call: Call<StepRef>) -> Result<StepReplay, Error> {
        let caller = call.require_tasks(Action::ReadTasks)?;
        let request = call.into_message();
        let task = self.cx.load(&request.task_id, &caller).await?;
        let step = task
            .steps
            .iter()
            .find(|s| s.id == request.step_id)
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!("step {:?} of task {}", request.step_id, task.id))
            })?;
        let mut timeline = Timeline::new(&step.id);
        let mut after = 0;
        loop {
            let page = self.cx.store.events_after(&task.id, after, PAGE).await?;
            for event in &page {
                timeline.add(event);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.seq,
                _ => break,
            }
        }
        let diff = self
            .cx
            .store
            .step_branch(&task.id, &step.id)
            .await?
            .map(|kept| kept.diff)
            .unwrap_or_default();
        let ended: Vec<_> = step
            .attempts
            .iter()
            .filter(|a| a.finished_at > 0)
            .map(|a| (a.attempt, a.cost.usd))
            .collect();
        Ok(StepReplay {
            entries: timeline.finish(&ended),
            task,
            step,
            diff,
        })
    }
}
