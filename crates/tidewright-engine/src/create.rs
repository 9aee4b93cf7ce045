//! Where tasks are made: a submission becomes the task's first rows and
//! events (from the state machine's first changes, mapped to events by the
//! same [`event_of`] the engine uses for every later change), is committed,
//! and, when new, handed to the scheduler. The services only validate and
//! convert.

use std::sync::Arc;

use tidewright_core::{Change, Event, EventKind, Micros, StepState, TaskRun, TaskSpec, TaskState};
use tidewright_store::{AuditRecord, Created, NewTask, Write};

use super::handle::Command;
use crate::effects::Effect;
use crate::engine::Engine;
use crate::error::Error;
use crate::handle::{Admitted, EngineHandle};
use crate::unserved::Offered;

/// A validated task to create.
#[derive(Debug, Clone)]
pub struct Submission {
    pub id: String,
    pub tenant: String,
    pub spec: TaskSpec,
    pub idempotency_key: Option<String>,
    pub created_at: Micros,
    /// A planned task's plan as the model answered it; "" for others.
    pub plan_json: String,
    /// The task span's `traceparent`; "" without one.
    pub trace_context: String,
    /// Why the task cannot run (a plan that fails validation): it is made
    /// failed, keeping its plan, and never scheduled.
    pub unrunnable: Option<String>,
    /// The audit log's record of the submit, stored with the task when it
    /// is made.
    pub audit: Option<AuditRecord>,
}

/// The event that records one change of a task's state machine, for the
/// step's current `attempt` on `worker`; `None` for a retry, whose event the
/// engine writes itself (it says when the next attempt is due).
pub(super) fn event_of(
    spec: &TaskSpec,
    change: &Change,
    attempt: u32,
    worker: &str,
) -> Option<EventKind> {
    match change {
        Change::Task { state, message } => Some(EventKind::TaskState {
            state: *state,
            message: message.clone(),
        }),
        Change::Step {
            index,
            state,
            message,
        } => Some(EventKind::StepState {
            step: spec.steps[*index].id.clone(),
            state: *state,
            attempt,
            worker: worker.to_string(),
            message: match (&spec.steps[*index].approval, state) {
                (Some(approval), StepState::AwaitingApproval) if message.is_empty() => {
                    awaiting_message(approval)
                }
                _ => message.clone(),
            },
            waits_for: String::new(),
            conflict: None,
        }),
        Change::Retry { .. } => None,
    }
}

/// What a step's event says as it starts to wait for approval: whom it
/// waits for, and what they are asked.
fn awaiting_message(approval: &tidewright_core::ApprovalSpec) -> String {
    let whom = approval.approvers.join(" or ");
    match (approval.message.as_str(), approval.timeout_seconds) {
        ("", None) => format!("awaiting approval by {whom}"),
        ("", Some(t)) => format!("awaiting approval by {whom} within {t}s"),
        (asked, None) => format!("awaiting approval by {whom}: {asked}"),
        (asked, Some(t)) => format!("awaiting approval by {whom} within {t}s: {asked}"),
    }
}

/// The task's rows and first events, and what the scheduler needs of it
/// should the store find it new (nothing for a task made failed). A step
/// queued that no worker `offered` can run says why in its first event.
fn prepare(submission: Submission, offered: &Offered) -> (NewTask, Option<Admitted>) {
    let Submission {
        id,
        tenant,
        spec,
        idempotency_key,
        created_at,
        plan_json,
        trace_context,
        unrunnable,
        audit,
    } = submission;
    let event = |seq: usize, kind| Event {
        task_id: id.clone(),
        seq: seq as u64 + 1,
        at: created_at,
        kind,
    };
    let (state, message, step_states, events, run) = match unrunnable {
        Some(message) => {
            let failed = EventKind::TaskState {
                state: TaskState::Failed,
                message: message.clone(),
            };
            (
                TaskState::Failed,
                message,
                Vec::new(),
                vec![event(0, failed)],
                None,
            )
        }
        None => {
            let (run, mut changes) = TaskRun::new(&spec);
            // A step whose runtime `runtimes: auto` chose says which and
            // why from the start, even one that waits for others.
            let mut told = vec![false; spec.steps.len()];
            for change in &changes {
                if let Change::Step { index, .. } = change {
                    told[*index] = true;
                }
            }
            for (index, step) in spec.steps.iter().enumerate() {
                if step.chosen.is_some() && !told[index] {
                    changes.push(Change::Step {
                        index,
                        state: StepState::Waiting,
                        message: String::new(),
                    });
                }
            }
            // Nothing has run yet: no attempt, no worker.
            let events = changes
                .iter()
                .filter_map(|change| {
                    let mut kind = event_of(&spec, change, 0, "")?;
                    if let (
                        Change::Step { index, .. },
                        EventKind::StepState {
                            state: StepState::Queued,
                            message,
                            ..
                        },
                    ) = (change, &mut kind)
                        && message.is_empty()
                        && let Some(reason) = offered.reason(&tidewright_core::queue::capabilities(
                            &spec.steps[*index].required_capabilities(),
                        ))
                    {
                        *message = reason;
                    }
                    if let (Change::Step { index, .. }, EventKind::StepState { message, .. }) =
                        (change, &mut kind)
                        && let Some(chosen) = &spec.steps[*index].chosen
                    {
                        *message = if message.is_empty() {
                            chosen.why.clone()
                        } else {
                            format!("{}; {message}", chosen.why)
                        };
                    }
                    Some(kind)
                })
                .enumerate()
                .map(|(n, kind)| event(n, kind))
                .collect();
            let step_states = run.steps().iter().map(|s| s.state).collect();
            (run.state(), String::new(), step_states, events, Some(run))
        }
    };
    let next_seq = events.len() as u64 + 1;
    let admitted = run.map(|run| Admitted {
        id: id.clone(),
        tenant: tenant.clone(),
        spec: Arc::new(spec.clone()),
        created_at,
        run,
        next_seq,
        trace_context: trace_context.clone(),
    });
    let task = NewTask {
        id,
        tenant,
        spec,
        idempotency_key,
        created_at,
        state,
        message,
        plan_json,
        trace_context,
        step_states,
        events,
        audit,
    };
    (task, admitted)
}

impl EngineHandle {
    /// Stores the tasks in one transaction and hands the new runnable ones
    /// to the scheduler; answers, per task and in order, whether it was
    /// made or found by its idempotency key.
    ///
    /// Tasks without a key have nothing to look up first: the engine
    /// stores them in the round that takes them over, with their first
    /// dispatch, so a submit waits for one commit and an assignment goes
    /// out on it. A batch with a key is committed first, and the engine
    /// takes over what the store found new; the answer then waits for the
    /// commit, and for the engine to have handed its dispatch to the store
    /// (whatever anyone asks of the engine after it, a cancel or a listing
    /// of the queue, comes after the take-over).
    ///
    /// A tenant whose budget is spent gets RESOURCE_EXHAUSTED, and
    /// nothing is stored.
    pub async fn submit(&self, submissions: Vec<Submission>) -> Result<Vec<Created>, Error> {
        let now = tidewright_core::calendar::now_micros();
        for submission in &submissions {
            self.spent.admit(&submission.tenant, now)?;
        }
        let keyed = submissions.iter().any(|s| s.idempotency_key.is_some());
        let prepared: Vec<(NewTask, Option<Admitted>)> = submissions
            .into_iter()
            .map(|s| prepare(s, &self.offered))
            .collect();
        if keyed {
            return self.create_then_take_over(prepared).await;
        }
        // The engine's writes are never refused: new work asks for room
        // before it goes in with them.
        self.store.wait_for_room().await?;
        let created = prepared
            .iter()
            .map(|(task, _)| Created::New(task.id.clone()))
            .collect();
        let (done, stored) = tokio::sync::oneshot::channel();
        self.send(Command::Submit(prepared, done)).await?;
        stored.await.map_err(|_| Error::ShuttingDown)?;
        Ok(created)
    }

    async fn create_then_take_over(
        &self,
        prepared: Vec<(NewTask, Option<Admitted>)>,
    ) -> Result<Vec<Created>, Error> {
        let (tasks, admissions): (Vec<NewTask>, Vec<Option<Admitted>>) =
            prepared.into_iter().unzip();
        let created = self.store.create_tasks(tasks).await?;
        let new: Vec<Admitted> = created
            .iter()
            .zip(admissions)
            .filter_map(|(outcome, admitted)| match outcome {
                Created::New(_) => admitted,
                Created::Existing(_) => None,
            })
            .collect();
        if !new.is_empty() {
            let (done, queued) = tokio::sync::oneshot::channel();
            self.send(Command::Submitted(new, done)).await?;
            queued.await.map_err(|_| Error::ShuttingDown)?;
        }
        Ok(created)
    }
}

impl Engine {
    /// Takes over tasks not yet stored: each is written in this round,
    /// ahead of its first dispatch, and `stored` is answered once the round
    /// has committed.
    pub(super) fn take_over_unstored(
        &mut self,
        tasks: Vec<(NewTask, Option<Admitted>)>,
        stored: tokio::sync::oneshot::Sender<()>,
    ) {
        for (task, admitted) in tasks {
            self.round.writes.push(Write::Create(Box::new(task)));
            if let Some(admitted) = admitted {
                self.admit(admitted);
            }
        }
        self.round.effects.push(Effect::Done(stored));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewright_core::{StepSpec, StepState};

    fn submission(unrunnable: Option<&str>) -> Submission {
        Submission {
            id: "t".into(),
            tenant: "default".into(),
            spec: TaskSpec {
                steps: vec![StepSpec::noop("a"), StepSpec::noop("b").after(&["a"])],
                ..TaskSpec::default()
            },
            idempotency_key: Some("k".into()),
            created_at: 7,
            plan_json: String::new(),
            trace_context: String::new(),
            unrunnable: unrunnable.map(str::to_string),
            audit: None,
        }
    }

    #[test]
    fn a_new_task_starts_with_its_state_machines_first_changes_as_events() {
        let (task, admitted) = prepare(submission(None), &Offered::of(&[&[]]));
        assert_eq!(task.step_states, [StepState::Queued, StepState::Waiting]);
        let kinds: Vec<&EventKind> = task.events.iter().map(|e| &e.kind).collect();
        assert!(
            matches!(
                kinds[0],
                EventKind::TaskState {
                    state: TaskState::Queued,
                    ..
                }
            ),
            "{kinds:?}"
        );
        assert!(kinds[1..].iter().all(
            |k| matches!(k, EventKind::StepState { attempt: 0, worker, .. } if worker.is_empty())
        ));
        let seqs: Vec<u64> = task.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=task.events.len() as u64).collect::<Vec<_>>());
        assert!(task.events.iter().all(|e| e.at == 7 && e.task_id == "t"));
        let admitted = admitted.expect("runnable");
        assert_eq!(
            admitted.next_seq,
            task.events.len() as u64 + 1,
            "the engine numbers on from there"
        );
    }

    #[test]
    fn a_step_whose_runtime_was_chosen_says_which_and_why_in_its_first_event() {
        let mut chosen = submission(None);
        chosen.spec.steps[1].chosen = Some(tidewright_core::auto::Chosen {
            runtime: "codex".into(),
            preferred: "claude-code".into(),
            why: "runtimes: auto chose codex".into(),
        });
        let (task, _) = prepare(chosen, &Offered::of(&[&[]]));
        let messages: Vec<&str> = task
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StepState { step, message, .. } => {
                    Some((step.as_str(), message.as_str()))
                }
                _ => None,
            })
            .map(|(step, message)| if step == "b" { message } else { "-" })
            .collect();
        assert_eq!(messages, ["-", "runtimes: auto chose codex"]);
    }

    #[test]
    fn an_unrunnable_task_is_made_failed_with_its_reason_and_no_run() {
        let (task, admitted) = prepare(
            submission(Some("the plan cannot run: a cycle")),
            &Offered::of(&[&[]]),
        );
        assert!(admitted.is_none());
        assert_eq!(task.state, TaskState::Failed);
        assert_eq!(task.message, "the plan cannot run: a cycle");
        assert!(task.step_states.is_empty());
        assert_eq!(task.events.len(), 1);
    }
}
