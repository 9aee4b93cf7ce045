//! The status a `Task` resource shows, computed from the control plane's
//! view of its task. Pure and deterministic: the same task gives the same
//! status, so reconciling twice patches nothing new.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use tidewright_api::convert::micros;
use tidewright_api::v1;

use crate::crd::{TaskPhase, TidewrightTaskStatus};

pub(crate) fn time(ts: &Option<prost_types::Timestamp>) -> Option<Time> {
    let micros = micros(ts.as_ref()?);
    (micros > 0)
        .then(|| k8s_openapi::jiff::Timestamp::from_microsecond(micros).ok())
        .flatten()
        .map(Time)
}

pub fn phase(state: i32) -> TaskPhase {
    match v1::TaskState::try_from(state) {
        Ok(v1::TaskState::Queued) => TaskPhase::Queued,
        Ok(v1::TaskState::Running) => TaskPhase::Running,
        Ok(v1::TaskState::Paused) => TaskPhase::Paused,
        Ok(v1::TaskState::Succeeded) => TaskPhase::Succeeded,
        Ok(v1::TaskState::Failed) => TaskPhase::Failed,
        Ok(v1::TaskState::Cancelled) => TaskPhase::Cancelled,
        Ok(v1::TaskState::Unspecified) | Err(_) => TaskPhase::Pending,
    }
}

/// What the task's agents cost so far, every attempt counted, as the control
/// plane sums it; `None` while nothing was spent (shell steps spend nothing).
fn cost_usd(task: &v1::Task) -> Option<f64> {
    task.cost
        .as_ref()
        .filter(|c| **c != v1::Cost::default())
        .map(|c| c.usd)
}

/// The status for `task`, as the resource at `generation` should show it.
pub fn task_status(task: &v1::Task, generation: Option<i64>) -> TidewrightTaskStatus {
    let state =
        |s: &v1::Step| v1::StepState::try_from(s.state).unwrap_or(v1::StepState::Unspecified);
    let count =
        |wanted: v1::StepState| task.steps.iter().filter(|s| state(s) == wanted).count() as u32;
    let total = task.steps.len();
    let finished = task
        .steps
        .iter()
        .filter(|s| {
            matches!(
                state(s),
                v1::StepState::Succeeded
                    | v1::StepState::Failed
                    | v1::StepState::Cancelled
                    | v1::StepState::Skipped
            )
        })
        .count();
    // A running step counts with the progress its runtime reports.
    let done: f64 = task
        .steps
        .iter()
        .map(|s| match state(s) {
            v1::StepState::Running => f64::from(s.progress.clamp(0.0, 1.0)),
            v1::StepState::Waiting
            | v1::StepState::AwaitingApproval
            | v1::StepState::Queued
            | v1::StepState::Unspecified => 0.0,
            _ => 1.0,
        })
        .sum();
    let percent = if total == 0 {
        0.0
    } else {
        100.0 * done / total as f64
    };
    let phase = phase(task.state);
    let finished_phase = matches!(
        phase,
        TaskPhase::Succeeded | TaskPhase::Failed | TaskPhase::Cancelled
    );
    // The condition's time is the task's own, so it does not move between
    // reconciles.
    let changed_at = time(&task.finished_at)
        .or_else(|| time(&task.started_at))
        .or_else(|| time(&task.created_at));
    let awaiting_approval: Vec<String> = task
        .steps
        .iter()
        .filter(|s| state(s) == v1::StepState::AwaitingApproval)
        .map(|s| s.id.clone())
        .collect();
    let mut conditions: Vec<Condition> = changed_at
        .clone()
        .map(|at| {
            vec![Condition {
                type_: "Finished".into(),
                status: if finished_phase { "True" } else { "False" }.into(),
                reason: format!("{phase:?}"),
                message: task.message.clone(),
                last_transition_time: at,
                observed_generation: generation,
            }]
        })
        .unwrap_or_default();
    // Only while a step waits: its time is the task's own, as above.
    if let (false, Some(at)) = (awaiting_approval.is_empty(), changed_at.clone()) {
        conditions.push(Condition {
            type_: "AwaitingApproval".into(),
            status: "True".into(),
            reason: "StepsAwaitingApproval".into(),
            message: format!(
                "waiting for approval: {}; annotate the Task with tidewright.dev/approve: <step>",
                awaiting_approval.join(", ")
            ),
            last_transition_time: at,
            observed_generation: generation,
        });
    }
    // Only while paused: why, and how to go on.
    if let (TaskPhase::Paused, Some(at)) = (&phase, changed_at) {
        conditions.push(Condition {
            type_: "Paused".into(),
            status: "True".into(),
            reason: "BudgetSpent".into(),
            message: format!(
                "{}; raise it with `tidewright budget raise {} --usd N`",
                task.message, task.id
            ),
            last_transition_time: at,
            observed_generation: generation,
        });
    }
    TidewrightTaskStatus {
        phase: Some(phase),
        task_id: Some(task.id.clone()).filter(|id| !id.is_empty()),
        steps: Some(format!("{finished}/{total}")),
        progress: Some(format!("{percent:.0}%")),
        steps_succeeded: count(v1::StepState::Succeeded),
        steps_failed: count(v1::StepState::Failed),
        steps_running: count(v1::StepState::Running),
        awaiting_approval,
        start_time: time(&task.started_at),
        completion_time: time(&task.finished_at),
        cost_usd: cost_usd(task),
        budget_usd: task
            .spec
            .as_ref()
            .and_then(|s| s.budget.as_ref())
            .and_then(|b| b.usd),
        trace_id: Some(task.trace_id.clone()).filter(|t| !t.is_empty()),
        message: Some(task.message.clone()).filter(|m| !m.is_empty()),
        conditions,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewright_api::convert::timestamp;

    fn step(id: &str, state: v1::StepState, progress: f32) -> v1::Step {
        v1::Step {
            id: id.into(),
            state: state as i32,
            progress,
            ..Default::default()
        }
    }

    #[test]
    fn counts_progress_and_phase_come_from_the_steps() {
        let task = v1::Task {
            id: "t1".into(),
            state: v1::TaskState::Running as i32,
            created_at: Some(timestamp(1_000_000)),
            started_at: Some(timestamp(2_000_000)),
            steps: vec![
                step("a", v1::StepState::Succeeded, 1.0),
                step("b", v1::StepState::Running, 0.5),
                step("c", v1::StepState::Waiting, 0.0),
                step("d", v1::StepState::Queued, 0.0),
            ],
            ..Default::default()
        };
        let status = task_status(&task, Some(3));
        assert_eq!(status.phase, Some(TaskPhase::Running));
        assert_eq!(status.steps.as_deref(), Some("1/4"));
        assert_eq!(status.progress.as_deref(), Some("38%"));
        assert_eq!((status.steps_succeeded, status.steps_running), (1, 1));
        assert!(status.completion_time.is_none());
        assert_eq!(status.conditions[0].status, "False");
        assert_eq!(status.conditions[0].observed_generation, Some(3));
        // Deterministic: the same task, the same status.
        assert_eq!(task_status(&task, Some(3)), status);
    }

    #[test]
    fn cost_is_what_the_control_plane_summed() {
        let task = v1::Task {
            steps: vec![step("agent", v1::StepState::Succeeded, 1.0)],
            cost: Some(v1::Cost {
                usd: 0.75,
                input_tokens: 300,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(task_status(&task, None).cost_usd, Some(0.75));
    }

    #[test]
    fn a_paused_task_says_why_and_how_to_go_on() {
        let task = v1::Task {
            id: "t1".into(),
            state: v1::TaskState::Paused as i32,
            message: "budget: the task spent $2.0100 of its $2 budget".into(),
            created_at: Some(timestamp(1_000_000)),
            spec: Some(v1::TaskSpec {
                budget: Some(v1::Budget {
                    usd: Some(2.0),
                    tokens: None,
                    approvers: Vec::new(),
                }),
                ..Default::default()
            }),
            steps: vec![step("a", v1::StepState::Queued, 0.0)],
            ..Default::default()
        };
        let status = task_status(&task, None);
        assert_eq!(status.phase, Some(TaskPhase::Paused));
        assert_eq!(status.budget_usd, Some(2.0));
        let paused = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Paused")
            .expect("a Paused condition");
        assert_eq!(paused.reason, "BudgetSpent");
        assert!(
            paused.message.contains("tidewright budget raise t1"),
            "{}",
            paused.message
        );
        assert_eq!(status.conditions[0].status, "False", "not finished");
    }

    #[test]
    fn a_failed_task_is_finished_with_its_message() {
        let task = v1::Task {
            state: v1::TaskState::Failed as i32,
            message: "step b: exited with code 1".into(),
            finished_at: Some(timestamp(5_000_000)),
            steps: vec![
                step("a", v1::StepState::Failed, 0.0),
                step("b", v1::StepState::Skipped, 0.0),
            ],
            ..Default::default()
        };
        let status = task_status(&task, None);
        assert_eq!(status.cost_usd, None, "no step reported a cost");
        assert_eq!(status.phase, Some(TaskPhase::Failed));
        assert_eq!(status.steps.as_deref(), Some("2/2"));
        assert_eq!(status.progress.as_deref(), Some("100%"));
        assert_eq!(
            status.message.as_deref(),
            Some("step b: exited with code 1")
        );
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.conditions[0].reason, "Failed");
        assert!(status.completion_time.is_some());
    }
}
