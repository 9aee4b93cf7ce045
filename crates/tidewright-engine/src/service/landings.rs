//! The landing queues as callers see them: ListLandings, and a waiting
//! task's place in its base's queue on GetTask.

use tidewright_core::StepState;
use tidewright_core::repo::DELIVER_STEP;
use tidewright_store::TaskRecord;

use super::calls::OfTenants;
use super::{Call, Context, Tasks, asked_tenants};
use crate::access::Action;
use crate::error::Error;
use crate::handle::{LandingQueue, QueuedLanding};

impl Tasks {
    /// Each base's landing queue that holds a task of the tenants asked
    /// for (all the caller may see when none). Another tenant's task keeps
    /// its place, so each place is true, but shows nothing of itself.
    pub async fn list_landings(&self, call: Call<OfTenants>) -> Result<Vec<LandingQueue>, Error> {
        let caller = call.require(Action::ReadTasks)?;
        let tenants = asked_tenants(&caller, call.into_message().tenants)?;
        let shown = |tenant: &str| {
            tenants
                .as_ref()
                .is_none_or(|asked| asked.iter().any(|t| t == tenant))
        };
        let queues = self.cx.engine.list_agents().await?.landings;
        Ok(queues
            .into_iter()
            .filter(|queue| queue.tasks.iter().any(|t| shown(&t.tenant)))
            .map(|mut queue| {
                for task in queue.tasks.iter_mut().filter(|t| !shown(&t.tenant)) {
                    *task = QueuedLanding {
                        task_id: String::new(),
                        task_name: String::new(),
                        tenant: String::new(),
                        ..task.clone()
                    };
                }
                queue
            })
            .collect())
    }
}

impl Context {
    /// `task` with its deliver step's place in its base's landing queue,
    /// when it lands through one and waits there: the step's queued reason
    /// says it, unless no worker can run the step (which says more).
    pub(super) async fn with_place(&self, mut task: TaskRecord) -> Result<TaskRecord, Error> {
        let Some(base) = task.spec.repo.as_ref().and_then(|r| r.land_base()) else {
            return Ok(task);
        };
        let Some(step) = task
            .steps
            .iter_mut()
            .find(|s| s.id == DELIVER_STEP && s.state == StepState::Queued)
        else {
            return Ok(task);
        };
        if !step.queued_reason.is_empty() {
            return Ok(task);
        }
        let queues = self.engine.list_agents().await?.landings;
        if let Some(place) = place(&queues, &task.id, &base) {
            step.queued_reason = place;
        }
        Ok(task)
    }
}

/// Where task `id` stands in its base's queue, as a person reads it: `2nd
/// of 3 to land on main, after task T (landing now)`.
fn place(queues: &[LandingQueue], id: &str, base: &str) -> Option<String> {
    let queue = queues
        .iter()
        .find(|q| q.tasks.iter().any(|t| t.task_id == id))?;
    let at = queue.tasks.iter().position(|t| t.task_id == id)?;
    if queue.tasks[at].landing {
        return Some(format!("its turn to land on {base}"));
    }
    let ahead = match queue.tasks.first().filter(|t| t.landing) {
        Some(first) if !first.task_id.is_empty() => {
            format!(", after task {} (landing now)", first.task_id)
        }
        Some(_) => ", after another tenant's task (landing now)".to_string(),
        None => String::new(),
    };
    Some(format!(
        "place {} of {} in the queue to land on {base}{ahead}",
        at + 1,
        queue.tasks.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: &str, landing: bool) -> QueuedLanding {
        QueuedLanding {
            task_id: id.into(),
            task_name: format!("task {id}"),
            tenant: "default".into(),
            landing,
            since: 0,
        }
    }

    #[test]
    fn a_waiting_task_is_told_its_place_and_whose_turn_it_is() {
        let queues = vec![LandingQueue {
            repo: "https://git.example/app.git".into(),
            base: "main".into(),
            tasks: vec![queued("t1", true), queued("t2", false), queued("t3", false)],
        }];
        assert_eq!(
            place(&queues, "t3", "main").as_deref(),
            Some("place 3 of 3 in the queue to land on main, after task t1 (landing now)")
        );
        assert_eq!(
            place(&queues, "t1", "main").as_deref(),
            Some("its turn to land on main")
        );
        assert_eq!(place(&queues, "t9", "main"), None);
        let hidden = vec![LandingQueue {
            tasks: vec![queued("", true), queued("t2", false)],
            ..queues[0].clone()
        }];
        assert_eq!(
            place(&hidden, "t2", "main").as_deref(),
            Some(
                "place 2 of 2 in the queue to land on main, after another tenant's task (landing now)"
            )
        );
    }
}
