//! The landing queues as callers see them: ListLandings, and a waiting
//! task's place in its base's queue on GetTask.

use tidewright_core::StepState;
use tidewright_core::repo::DELIVER_STEP;
use tidewright_store::TaskRecord;

use super::calls::OfTenants;
use super::{Call, Context, Tasks, asked_tenants};
use crate::access::{Action, Identity};
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
        Ok(seen_by(queues, shown))
    }
}

/// `queues` as seen by a caller shown the tasks of the tenants `shown`
/// takes: the queues holding one of those, every other task kept in its
/// place but showing nothing of itself.
fn seen_by(queues: Vec<LandingQueue>, shown: impl Fn(&str) -> bool) -> Vec<LandingQueue> {
    queues
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
        .collect()
}

impl Context {
    /// `task` with its deliver step's place in its base's landing queue,
    /// when it lands through one and waits there: the step's queued reason
    /// says it, unless no worker can run the step (which says more). The
    /// task ahead is named only to a `caller` who may see its tenant.
    pub(super) async fn with_place(
        &self,
        mut task: TaskRecord,
        caller: &Identity,
    ) -> Result<TaskRecord, Error> {
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
        let queues = seen_by(self.engine.list_agents().await?.landings, |tenant| {
            caller.can_see(tenant)
        });
        if let Some(place) = place(&queues, &task.id, &base) {
            step.queued_reason = place;
        }
        Ok(task)
    }
}

/// Where task `id` stands in its base's queue, as a person reads it:
/// `place 2 of 3 in the queue to land on main, after task T (landing
/// now)`.
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
    fn another_tenants_task_keeps_its_place_and_shows_nothing_else() {
        let theirs = QueuedLanding {
            tenant: "acme".into(),
            since: 7,
            ..queued("t1", true)
        };
        let queue = |tasks: Vec<QueuedLanding>| LandingQueue {
            repo: "https://git.example/app".into(),
            base: "main".into(),
            tasks,
        };
        let queues = vec![
            queue(vec![theirs.clone(), queued("t2", false)]),
            queue(vec![theirs.clone()]),
        ];
        let seen = seen_by(queues, |tenant| tenant == "default");
        assert_eq!(seen.len(), 1, "a queue of theirs alone is not shown");
        let ahead = &seen[0].tasks[0];
        assert_eq!(
            (
                ahead.task_id.as_str(),
                ahead.task_name.as_str(),
                ahead.tenant.as_str()
            ),
            ("", "", "")
        );
        assert_eq!((ahead.landing, ahead.since), (true, 7));
        assert_eq!(seen[0].tasks[1].task_id, "t2");
        assert_eq!(
            place(&seen, "t2", "main").as_deref(),
            Some(
                "place 2 of 2 in the queue to land on main, after another tenant's task (landing now)"
            )
        );
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
