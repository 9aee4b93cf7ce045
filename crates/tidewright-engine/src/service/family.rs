//! Tasks a running step submits become its task's children (see
//! `tidewright_core::family`): here a step's submit is adopted (its parent still
//! running, within the depth and fan-out limits), and a step's reads and
//! cancels are narrowed to its own task's children. What ends with a
//! parent is the engine's (its children are cancelled in the same round).

use tidewright_core::family::{self, PARENT_LABEL, parent_of};
use tidewright_core::{AttemptKey, StepState, TaskSpec};
use tidewright_store::{TaskQuery, TaskRecord};

use super::{Call, Context};
use crate::access::{Action, Identity};
use crate::error::Error;

impl Context {
    /// [`Self::permit`] for a call on tasks, which a running step may make
    /// on its own task's children (see [`Action::for_tasks`]).
    pub(super) fn permit_tasks<T>(
        &self,
        request: &Call<T>,
        action: Action,
        name: &'static str,
    ) -> Result<Identity, Error> {
        let action = request
            .caller()
            .map_or(action, |caller| action.for_tasks(caller.role));
        self.permit(request, action, name)
    }

    /// Makes `spec` a child of the task whose running step `step`
    /// submits it: refused when that attempt no longer runs (the parent
    /// ended, or the step moved on), or past the depth and fan-out limits.
    /// A submit whose idempotency `key` names a child already made is not
    /// counted again: it finds that child.
    pub(super) async fn adopt(
        &self,
        spec: &mut TaskSpec,
        step: &AttemptKey,
        key: &str,
    ) -> Result<(), Error> {
        self.step_alive(step).await?;
        let parent =
            self.store.get_task(&step.task_id).await?.ok_or_else(|| {
                Error::FailedPrecondition(format!("task {} is gone", step.task_id))
            })?;
        if parent.state.is_terminal() {
            return Err(Error::FailedPrecondition(format!(
                "task {} has ended ({}): it can have no more children",
                parent.id, parent.state
            )));
        }
        let running = parent.steps.iter().any(|s| {
            s.id == step.step_id && s.state == StepState::Running && s.attempt == step.attempt
        });
        if !running {
            return Err(Error::FailedPrecondition(format!(
                "step {} of task {} is not running attempt {} any more: it can have no more children",
                step.step_id, parent.id, step.attempt
            )));
        }
        let siblings = self
            .children_of(&parent, self.limits.max_children + 1)
            .await?;
        let again = !key.is_empty()
            && siblings
                .iter()
                .any(|child| child.idempotency_key.as_deref() == Some(key));
        family::adopt(
            spec,
            &parent.id,
            &parent.spec.labels,
            &step.step_id,
            if again { 0 } else { siblings.len() },
            self.limits.max_child_depth,
            self.limits.max_children,
        )
        .map_err(Error::from)
    }

    /// A step's token counts only while its attempt runs, here as for
    /// shared state: a token copied out of a finished step is refused.
    pub(super) async fn step_alive(&self, step: &AttemptKey) -> Result<(), Error> {
        let running = self
            .store
            .running_attempt(&step.task_id, &step.step_id)
            .await?;
        if running == Some(step.attempt) {
            Ok(())
        } else {
            Err(Error::Unauthenticated(format!(
                "the step token of {}/{} attempt {} ended with its attempt",
                step.task_id, step.step_id, step.attempt
            )))
        }
    }

    /// Up to `limit` of `parent`'s children, newest first.
    async fn children_of(
        &self,
        parent: &TaskRecord,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, Error> {
        Ok(self
            .store
            .list_tasks(TaskQuery {
                labels: vec![(PARENT_LABEL.to_string(), parent.id.clone())],
                page_size: limit,
                tenants: Some(vec![parent.tenant.clone()]),
                ..TaskQuery::default()
            })
            .await?)
    }
}

/// Whether `caller` may see `task`: a running step sees only its own
/// task's children; everyone else, what their tenants allow.
pub(super) fn may_see(caller: &Identity, task: &TaskRecord) -> bool {
    caller.can_see(&task.tenant)
        && caller
            .step
            .as_ref()
            .is_none_or(|step| parent_of(&task.spec.labels) == Some(step.task_id.as_str()))
}

/// The labels a listing by `caller` must match: a step lists its own
/// task's children only.
pub(super) fn narrowed(
    caller: &Identity,
    mut labels: Vec<(String, String)>,
) -> Vec<(String, String)> {
    if let Some(step) = &caller.step {
        labels.retain(|(key, _)| key != PARENT_LABEL);
        labels.push((PARENT_LABEL.to_string(), step.task_id.clone()));
    }
    labels
}
