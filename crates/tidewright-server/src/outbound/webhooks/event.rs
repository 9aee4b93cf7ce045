//! Which fleet events are webhook events, and the JSON body each delivery
//! carries. Pure: unit-tested here.

use serde_json::{Value, json};
use tidewright_core::repo::DELIVER_STEP;
use tidewright_core::{Event, EventKind, StepState, TaskState};
use tidewright_store::TaskRecord;
use tidewright_store::schedules::{Schedule, ScheduleRun};

/// Every event type an endpoint may ask for.
pub const EVENT_TYPES: &[&str] = &[
    "task.succeeded",
    "task.failed",
    "task.cancelled",
    "task.paused",
    "step.failed",
    "step.verified",
    "step.verification_failed",
    "step.failed_over",
    "task.landed",
    "task.landing_failed",
    "approval.requested",
    "schedule.fired",
    "schedule.skipped",
];

/// What an A2A push-notification endpoint is registered for (never asked
/// for by name): its task's updates, each an A2A `StreamResponse`.
pub const PUSH_EVENT: &str = "a2a.push";

/// Whether an event is pushed to its task's A2A endpoints: the task's and
/// its steps' state changes, and a step's move to another provider; log
/// lines, progress and connections are for those who stream.
pub fn pushed(event: &Event) -> bool {
    matches!(
        event.kind,
        EventKind::TaskState { .. } | EventKind::StepState { .. } | EventKind::FailedOver { .. }
    )
}

/// The webhook event type of a stored event; `None` for the rest.
pub fn event_type(event: &Event) -> Option<&'static str> {
    match &event.kind {
        EventKind::TaskState { state, .. } => match state {
            TaskState::Succeeded => Some("task.succeeded"),
            TaskState::Failed => Some("task.failed"),
            TaskState::Cancelled => Some("task.cancelled"),
            TaskState::Paused => Some("task.paused"),
            TaskState::Queued | TaskState::Running => None,
        },
        EventKind::StepState { state, .. } => match state {
            StepState::Failed => Some("step.failed"),
            StepState::AwaitingApproval => Some("approval.requested"),
            _ => None,
        },
        // Only a landing task's deliver step has rounds of its own: its
        // landing's, or its followed pull request's, whose merge is the
        // task's work landed on its base (validation refuses `verify`
        // there).
        EventKind::Verification { step, passed, .. } if step == DELIVER_STEP => Some(if *passed {
            "task.landed"
        } else {
            "task.landing_failed"
        }),
        EventKind::Verification { passed: true, .. } => Some("step.verified"),
        EventKind::Verification { passed: false, .. } => Some("step.verification_failed"),
        EventKind::FailedOver { .. } => Some("step.failed_over"),
        EventKind::Progress { .. }
        | EventKind::Log { .. }
        | EventKind::Egress { .. }
        | EventKind::Setup { .. }
        | EventKind::Steered { .. }
        | EventKind::SessionItem { .. } => None,
    }
}

/// The body of delivery `id`: what happened, to which task, when.
pub fn payload(id: &str, kind: &str, event: &Event, task: &TaskRecord) -> String {
    let time = tidewright_api::view::rfc3339(&Some(tidewright_api::convert::timestamp(event.at)));
    let mut body = json!({
        "id": id,
        "type": kind,
        "time": time,
        "tenant": task.tenant,
        "seq": event.seq,
        "task": {
            "id": task.id,
            "name": task.spec.name,
            "labels": task.spec.labels,
        },
    });
    if let Some(repo) = &task.spec.repo {
        body["task"]["repo"] = repo_of(repo, task);
    }
    match &event.kind {
        EventKind::TaskState { state, message } => {
            body["task"]["state"] = Value::from(state.as_str());
            if !message.is_empty() {
                body["task"]["message"] = Value::from(message.as_str());
            }
        }
        EventKind::StepState {
            step,
            state,
            attempt,
            worker,
            message,
            waits_for,
            conflict,
        } => {
            body["step"] = json!({
                "id": step,
                "state": state.as_str(),
                "attempt": attempt,
            });
            if !worker.is_empty() {
                body["step"]["worker"] = Value::from(worker.as_str());
            }
            if !message.is_empty() {
                body["step"]["message"] = Value::from(message.as_str());
            }
            if !waits_for.is_empty() {
                body["step"]["waitsFor"] = Value::from(waits_for.as_str());
            }
            if let Some(conflict) = conflict {
                body["step"]["conflict"] = json!(conflict);
            }
            let work = task
                .steps
                .iter()
                .find(|s| &s.id == step)
                .and_then(|s| s.work.as_ref());
            if let Some(work) = work {
                body["step"]["branch"] = Value::from(work.branch.as_str());
                body["step"]["headCommit"] = Value::from(work.head_commit.as_str());
            }
        }
        EventKind::Verification {
            step,
            attempt,
            round,
            passed,
            message,
        } => {
            body["step"] = json!({
                "id": step,
                "attempt": attempt,
                "round": round,
                "passed": passed,
                "message": message,
            });
            // What its checks found, as the attempt's record keeps it.
            let found = task
                .steps
                .iter()
                .find(|s| &s.id == step)
                .and_then(|s| s.attempts.iter().find(|a| a.attempt == *attempt))
                .and_then(|a| a.verification.as_ref());
            if let Some(found) = found {
                body["step"]["headCommit"] = Value::from(found.head_commit.as_str());
                body["step"]["checks"] = json!(found.checks);
                if !found.protected.is_empty() {
                    body["step"]["protectedPaths"] = json!(found.protected);
                }
                if let Some(grade) = &found.grade {
                    body["step"]["grade"] = json!({
                        "verdict": grade.verdict.as_str(),
                        "reasons": grade.reasons,
                        "model": grade.model,
                    });
                }
            }
            // A landing: its base, and the commit the base is at now.
            if step == DELIVER_STEP
                && let Some(base) = task.spec.repo.as_ref().and_then(|r| r.land_base())
            {
                let output: Value = task
                    .steps
                    .iter()
                    .find(|s| &s.id == step)
                    .and_then(|s| serde_json::from_str(&s.output_json).ok())
                    .unwrap_or_default();
                body["landing"] = json!({
                    "base": base,
                    "commit": output["landed"],
                    "tip": output["tip"],
                });
            }
        }
        EventKind::FailedOver {
            step,
            attempt,
            from,
            to,
            reason,
            carried,
        } => {
            body["step"] = json!({
                "id": step,
                "attempt": attempt,
                "from": from,
                "to": to,
                "reason": reason,
                "carried": carried,
            });
        }
        EventKind::Progress { .. }
        | EventKind::Log { .. }
        | EventKind::Egress { .. }
        | EventKind::Setup { .. }
        | EventKind::Steered { .. }
        | EventKind::SessionItem { .. } => {}
    }
    body.to_string()
}

/// The webhook event of what a schedule's tick did (or a run of skipped
/// ticks).
pub fn schedule_event_type(run: &ScheduleRun) -> &'static str {
    if run.task_id.is_empty() {
        "schedule.skipped"
    } else {
        "schedule.fired"
    }
}

/// The body of delivery `id` for a schedule's run: the schedule, the tick,
/// and the task it submitted or why it was skipped.
pub fn schedule_payload(id: &str, kind: &str, schedule: &Schedule, run: &ScheduleRun) -> String {
    let time = |at| tidewright_api::view::format_utc(at);
    let spec = &schedule.spec;
    let mut body = json!({
        "id": id,
        "type": kind,
        "time": time(run.at),
        "tenant": schedule.tenant,
        "schedule": {
            "name": spec.name,
            "cron": spec.cron,
            "timezone": if spec.timezone.is_empty() { "UTC" } else { spec.timezone.as_str() },
        },
        "tick": time(run.tick),
    });
    if run.task_id.is_empty() {
        body["lastTick"] = Value::from(time(run.last_tick));
        if let Some(ticks) = run.ticks {
            body["ticks"] = Value::from(ticks);
        }
        body["reason"] = Value::from(run.skipped.as_str());
    } else {
        body["task"] = json!({"id": run.task_id});
    }
    body.to_string()
}

/// A task's repository as a delivery names it: where, from which commit,
/// and, once its deliver step has run, its branch's head commit, whether
/// it was pushed, and its pull request. Never its credentials.
fn repo_of(repo: &tidewright_core::RepoSpec, task: &TaskRecord) -> Value {
    let mut named = json!({"url": repo.url, "commit": repo.commit});
    let delivered = task
        .steps
        .iter()
        .find(|s| s.id == tidewright_core::repo::DELIVER_STEP)
        .and_then(|s| s.work.as_ref());
    if let Some(work) = delivered {
        named["branch"] = Value::from(work.branch.as_str());
        named["headCommit"] = Value::from(work.head_commit.as_str());
        named["pushed"] = Value::from(work.pushed);
        if !work.pull_request_url.is_empty() {
            named["pullRequestUrl"] = Value::from(work.pull_request_url.as_str());
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewright_core::{StepSpec, TaskSpec};

    fn event(kind: EventKind) -> Event {
        Event {
            task_id: "t1".into(),
            seq: 7,
            at: 1_700_000_000_000_000,
            kind,
        }
    }

    #[test]
    fn final_task_states_failed_steps_and_approval_gates_are_webhook_events() {
        let task = |state| EventKind::TaskState {
            state,
            message: String::new(),
        };
        let step = |state| EventKind::StepState {
            step: "s".into(),
            state,
            attempt: 1,
            worker: String::new(),
            message: String::new(),
            waits_for: String::new(),
            conflict: None,
        };
        assert_eq!(
            event_type(&event(task(TaskState::Succeeded))),
            Some("task.succeeded")
        );
        assert_eq!(
            event_type(&event(task(TaskState::Failed))),
            Some("task.failed")
        );
        assert_eq!(event_type(&event(task(TaskState::Running))), None);
        assert_eq!(
            event_type(&event(step(StepState::Failed))),
            Some("step.failed")
        );
        assert_eq!(
            event_type(&event(step(StepState::AwaitingApproval))),
            Some("approval.requested")
        );
        assert_eq!(event_type(&event(step(StepState::Succeeded))), None);
        for kind in EVENT_TYPES {
            assert!(kind.contains('.'));
        }
    }

    #[test]
    fn a_schedules_payload_names_the_schedule_the_tick_and_its_task_or_why_it_was_skipped() {
        let schedule = Schedule {
            tenant: "team".into(),
            spec: tidewright_core::schedule::ScheduleSpec {
                name: "nightly".into(),
                cron: "0 3 * * *".into(),
                ..Default::default()
            },
            created_at: 0,
            handled: 0,
            history: Vec::new(),
        };
        let tick = 1_700_000_000_000_000;
        let mut run = ScheduleRun {
            tick,
            last_tick: tick,
            ticks: None,
            task_id: "t1".into(),
            skipped: String::new(),
            at: tick + 2_000,
        };
        assert_eq!(schedule_event_type(&run), "schedule.fired");
        let body: Value =
            serde_json::from_str(&schedule_payload("d1", "schedule.fired", &schedule, &run))
                .expect("json");
        assert_eq!(
            body,
            json!({
                "id": "d1", "type": "schedule.fired", "time": "2023-11-14T22:13:20.002Z",
                "tenant": "team",
                "schedule": {"name": "nightly", "cron": "0 3 * * *", "timezone": "UTC"},
                "tick": "2023-11-14T22:13:20.000Z", "task": {"id": "t1"},
            })
        );
        run.task_id.clear();
        run.skipped = "missed: the control plane was down".into();
        run.last_tick = tick + 86_400_000_000;
        run.ticks = Some(2);
        assert_eq!(schedule_event_type(&run), "schedule.skipped");
        let body: Value =
            serde_json::from_str(&schedule_payload("d2", "schedule.skipped", &schedule, &run))
                .expect("json");
        assert_eq!(body["lastTick"], "2023-11-15T22:13:20.000Z");
        assert_eq!(body["ticks"], 2);
        assert_eq!(body["reason"], "missed: the control plane was down");
        assert!(body.get("task").is_none(), "{body}");
    }

    /// A queued step's record, at its first attempt.
    fn step_record(id: &str) -> tidewright_store::StepRecord {
        tidewright_store::StepRecord {
            attempt: 1,
            ..tidewright_store::StepRecord::new(id, StepState::Queued)
        }
    }

    #[test]
    fn a_verified_steps_rounds_are_webhook_events_with_their_checks() {
        let round = |passed| EventKind::Verification {
            step: "fix".into(),
            attempt: 1,
            round: 1,
            passed,
            message: "verify round 1: tests failed (exit 1)".into(),
        };
        assert_eq!(event_type(&event(round(true))), Some("step.verified"));
        assert_eq!(
            event_type(&event(round(false))),
            Some("step.verification_failed")
        );
        let mut task = crate::outbound::webhooks::tests::task_record();
        let mut attempt = tidewright_store::AttemptRecord::new(1);
        attempt.verification = Some(tidewright_core::Verification {
            round: 1,
            head_commit: "c0ffee".into(),
            checks: vec![tidewright_core::CheckResult {
                name: "tests".into(),
                exit_code: Some(1),
                tail: "FAIL: test_add".into(),
                ..tidewright_core::CheckResult::default()
            }],
            protected: vec!["tests/a.py".into()],
            grade: Some(tidewright_core::verify::Grade {
                reasons: vec!["The README lacks --json.".into()],
                model: "claude-sonnet-4-5".into(),
                ..tidewright_core::verify::Grade::default()
            }),
            ..tidewright_core::Verification::default()
        });
        task.steps = vec![tidewright_store::StepRecord {
            attempts: vec![attempt],
            ..step_record("fix")
        }];
        let body: Value = serde_json::from_str(&payload(
            "d1",
            "step.verification_failed",
            &event(round(false)),
            &task,
        ))
        .expect("json");
        assert_eq!(body["step"]["round"], 1);
        assert_eq!(body["step"]["passed"], false);
        assert_eq!(body["step"]["headCommit"], "c0ffee");
        assert_eq!(body["step"]["checks"][0]["exitCode"], 1);
        assert_eq!(body["step"]["checks"][0]["tail"], "FAIL: test_add");
        assert_eq!(body["step"]["protectedPaths"][0], "tests/a.py");
        assert_eq!(body["step"]["grade"]["verdict"], "needs_revision");
        assert_eq!(
            body["step"]["grade"]["reasons"][0],
            "The README lacks --json."
        );
    }

    #[test]
    fn a_failover_is_a_step_failed_over_event_naming_both_runtimes() {
        let moved = event(EventKind::FailedOver {
            step: "fix".into(),
            attempt: 1,
            from: "claude-code".into(),
            to: "codex".into(),
            reason: "claude-code rate limited (api_error_status 429): usage limit".into(),
            carried: true,
        });
        assert_eq!(event_type(&moved), Some("step.failed_over"));
        assert!(EVENT_TYPES.contains(&"step.failed_over"));
        let task = crate::outbound::webhooks::tests::task_record();
        let body: Value =
            serde_json::from_str(&payload("d1", "step.failed_over", &moved, &task)).expect("json");
        assert_eq!(body["type"], "step.failed_over");
        assert_eq!(body["step"]["id"], "fix");
        assert_eq!(body["step"]["from"], "claude-code");
        assert_eq!(body["step"]["to"], "codex");
        assert_eq!(body["step"]["carried"], true);
        assert!(
            body["step"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("claude-code rate limited"))
        );
        assert!(
            pushed(&moved),
            "an A2A client is told its task changed provider"
        );
    }

    #[test]
    fn a_landings_verdict_is_a_task_landed_or_landing_failed_event_naming_the_base() {
        let round = |passed| EventKind::Verification {
            step: DELIVER_STEP.into(),
            attempt: 1,
            round: 1,
            passed,
            message: "landed on main at c0ffee: its check passed".into(),
        };
        assert_eq!(event_type(&event(round(true))), Some("task.landed"));
        assert_eq!(
            event_type(&event(round(false))),
            Some("task.landing_failed")
        );
        let mut task = crate::outbound::webhooks::tests::task_record();
        task.spec.repo = Some(tidewright_core::RepoSpec {
            url: "https://example.com/acme/app.git".into(),
            git_ref: "main".into(),
            land: Some(tidewright_core::repo::LandSpec::default()),
            ..tidewright_core::RepoSpec::default()
        });
        task.steps = vec![tidewright_store::StepRecord {
            state: StepState::Succeeded,
            output_json: r#"{"landed": "c0ffee", "tip": "beef"}"#.into(),
            ..step_record(DELIVER_STEP)
        }];
        let body: Value =
            serde_json::from_str(&payload("d1", "task.landed", &event(round(true)), &task))
                .expect("json");
        assert_eq!(body["landing"]["base"], "main");
        assert_eq!(body["landing"]["commit"], "c0ffee");
        assert_eq!(body["landing"]["tip"], "beef");
        assert_eq!(body["step"]["passed"], true);
    }

    #[test]
    fn a_payload_names_the_event_the_task_and_the_step() {
        let mut spec = TaskSpec {
            name: "deploy".into(),
            steps: vec![StepSpec::noop("s")],
            ..TaskSpec::default()
        };
        spec.labels.insert("repo".into(), "tidewright".into());
        let task = TaskRecord {
            id: "t1".into(),
            tenant: "team".into(),
            spec,
            ..crate::outbound::webhooks::tests::task_record()
        };
        let failed = event(EventKind::StepState {
            step: "s".into(),
            state: StepState::Failed,
            attempt: 2,
            worker: "w1".into(),
            message: "exit 1".into(),
            waits_for: String::new(),
            conflict: None,
        });
        let body: Value =
            serde_json::from_str(&payload("d1", "step.failed", &failed, &task)).expect("json");
        assert_eq!(body["id"], "d1");
        assert_eq!(body["type"], "step.failed");
        assert_eq!(body["tenant"], "team");
        assert_eq!(body["seq"], 7);
        assert_eq!(body["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(
            body["task"],
            json!({"id": "t1", "name": "deploy", "labels": {"repo": "tidewright"}})
        );
        assert_eq!(
            body["step"],
            json!({"id": "s", "state": "failed", "attempt": 2, "worker": "w1", "message": "exit 1"})
        );
    }

    #[test]
    fn a_tasks_delivery_names_its_repository_head_commit_and_pull_request() {
        let mut spec = TaskSpec {
            name: "feature".into(),
            steps: vec![StepSpec::noop("a")],
            repo: Some(tidewright_core::RepoSpec {
                url: "https://github.com/acme/app.git".into(),
                commit: "a".repeat(40),
                credentials_secret: "github-token".into(),
                ..tidewright_core::RepoSpec::default()
            }),
            ..TaskSpec::default()
        };
        tidewright_core::spec::with_delivery(&mut spec);
        let work = |branch: &str, head: &str, url: &str| tidewright_core::StepWork {
            branch: branch.into(),
            head_commit: head.repeat(40),
            pushed: !url.is_empty(),
            pull_request_url: url.into(),
            ..tidewright_core::StepWork::default()
        };
        let mut task = TaskRecord {
            id: "t1".into(),
            tenant: "team".into(),
            spec,
            ..crate::outbound::webhooks::tests::task_record()
        };
        task.steps = ["a", "deliver"]
            .into_iter()
            .map(|id| tidewright_store::StepRecord {
                id: id.into(),
                state: StepState::Succeeded,
                attempt: 1,
                worker: "w1".into(),
                started_at: 0,
                finished_at: 0,
                progress: 1.0,
                progress_message: String::new(),
                output_json: String::new(),
                error: String::new(),
                exit_code: None,
                attempts: Vec::new(),
                cost: tidewright_core::Cost::default(),
                approval_deadline: 0,
                work: None,
                queued_reason: String::new(),
            })
            .collect();
        task.steps[0].work = Some(work("tidewright/t1-a", "b", ""));
        task.steps[1].work = Some(work(
            "tidewright/t1",
            "c",
            "https://github.com/acme/app/pull/7",
        ));
        let succeeded = event(EventKind::TaskState {
            state: TaskState::Succeeded,
            message: String::new(),
        });
        let body: Value = serde_json::from_str(&payload("d1", "task.succeeded", &succeeded, &task))
            .expect("json");
        assert_eq!(
            body["task"]["repo"],
            json!({
                "url": "https://github.com/acme/app.git",
                "commit": "a".repeat(40),
                "branch": "tidewright/t1",
                "headCommit": "c".repeat(40),
                "pushed": true,
                "pullRequestUrl": "https://github.com/acme/app/pull/7",
            })
        );
        assert!(!body.to_string().contains("github-token"));
        let failed = event(EventKind::StepState {
            step: "a".into(),
            state: StepState::Failed,
            attempt: 1,
            worker: String::new(),
            message: String::new(),
            waits_for: "t0/api".into(),
            conflict: Some(tidewright_core::repo::MergeConflict {
                with: "c".into(),
                after: vec!["b".into()],
                paths: vec!["src/lib.rs".into()],
            }),
        });
        let body: Value =
            serde_json::from_str(&payload("d2", "step.failed", &failed, &task)).expect("json");
        assert_eq!(body["step"]["headCommit"], "b".repeat(40));
        assert_eq!(body["step"]["branch"], "tidewright/t1-a");
        assert_eq!(body["step"]["waitsFor"], "t0/api");
        assert_eq!(
            body["step"]["conflict"],
            json!({"with": "c", "after": ["b"], "paths": ["src/lib.rs"]})
        );
    }
}
