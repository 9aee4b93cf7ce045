//! The Task controller: submits each `Task` once (its uid is the idempotency
//! key, so a second reconcile or an operator restart finds the same task),
//! mirrors its status from the task's event stream, records an Event on each
//! phase change, cancels the task when the resource is deleted, and deletes
//! finished resources after `ttlSecondsAfterFinished`. The annotations
//! `tidewright.dev/approve` and `tidewright.dev/reject` decide on steps awaiting
//! approval (see [`decide_from_annotations`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tidewright_api::v1;
use tokio::time::Instant;
use tonic::Code;

use crate::context::Context;
use crate::crd::{TaskPhase, TaskTemplate, TemplateRef, TidewrightTask, TidewrightTaskStatus};
use crate::error::Error;
use crate::status::task_status;

/// Held on every Task until its task is cancelled or finished.
pub const FINALIZER: &str = "tidewright.dev/cancel-task";
/// Steps to approve, comma-separated: `tidewright.dev/approve: deploy`.
pub const APPROVE: &str = "tidewright.dev/approve";
/// Steps to reject, comma-separated.
pub const REJECT: &str = "tidewright.dev/reject";
/// Why, for the step's event and the audit log (required by nothing: a
/// rejection without it says where it came from).
pub const REASON: &str = "tidewright.dev/reason";
/// A running task's status is patched at most this often; state changes
/// (a step or the task finishing) go out at once.
const PROGRESS_PATCH_INTERVAL: Duration = Duration::from_secs(1);

fn finished(phase: Option<TaskPhase>) -> bool {
    matches!(
        phase,
        Some(TaskPhase::Succeeded | TaskPhase::Failed | TaskPhase::Cancelled)
    )
}

fn namespace(task: &TidewrightTask) -> Result<String, Error> {
    task.namespace().ok_or_else(|| Error::Resource {
        kind: "Task",
        name: task.name_any(),
        problem: "has no namespace".into(),
    })
}

pub async fn reconcile(task: Arc<TidewrightTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api: Api<TidewrightTask> = Api::namespaced(ctx.kube.clone(), &namespace(&task)?);
    finalizer(&api, FINALIZER, task, |event| async {
        match event {
            finalizer::Event::Apply(task) => apply(task, &api, &ctx).await,
            finalizer::Event::Cleanup(task) => cleanup(task, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(
    task: Arc<TidewrightTask>,
    api: &Api<TidewrightTask>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let previous = task.status.clone().unwrap_or_default();
    let task_id = match previous.task_id.clone() {
        Some(id) => id,
        None => match submit(&task, ctx).await? {
            Ok(id) => id,
            Err(refusal) => {
                let status = TidewrightTaskStatus {
                    phase: Some(TaskPhase::Failed),
                    message: Some(format!("the control plane refused the task: {refusal}")),
                    observed_generation: task.metadata.generation,
                    ..TidewrightTaskStatus::default()
                };
                publish(api, &task, &previous, &status, ctx).await?;
                // Nothing to retry until the resource changes.
                return Ok(Action::await_change());
            }
        },
    };
    let get = v1::GetTaskRequest {
        task_id: task_id.clone(),
    };
    let mut current = ctx
        .control_plane
        .tasks()
        .get_task(get.clone())
        .await?
        .into_inner();
    if decide_from_annotations(&task, &current, ctx).await? {
        current = ctx.control_plane.tasks().get_task(get).await?.into_inner();
    }
    let status = task_status(&current, task.metadata.generation);
    publish(api, &task, &previous, &status, ctx).await?;

    if !finished(status.phase) {
        follow(ctx, &task, task_id, status);
        return Ok(Action::await_change());
    }
    ctx.stop_following(&task.uid().unwrap_or_default());
    let Some(ttl) = task.spec.ttl_seconds_after_finished else {
        return Ok(Action::await_change());
    };
    let finished_at = status
        .completion_time
        .map_or_else(k8s_openapi::jiff::Timestamp::now, |t| t.0);
    let expires = finished_at.as_second() + i64::from(ttl);
    let left = expires - k8s_openapi::jiff::Timestamp::now().as_second();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_secs(left.unsigned_abs())));
    }
    match api.delete(&task.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Submits the Task's spec into its namespace's tenant. `Ok(Err(why))` when
/// the control plane refuses the spec itself, which no retry changes.
async fn submit(task: &TidewrightTask, ctx: &Context) -> Result<Result<String, String>, Error> {
    let uid = task.uid().ok_or_else(|| Error::Resource {
        kind: "Task",
        name: task.name_any(),
        problem: "has no uid".into(),
    })?;
    let mut spec = match &task.spec.template_ref {
        None => task.spec.task.clone(),
        Some(reference) => {
            match rendered(&namespace(task)?, reference, &task.spec.parameters, ctx).await? {
                Ok(spec) => spec,
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
    };
    if spec.name.is_empty() {
        spec.name = task.name_any();
    }
    let request = v1::SubmitTaskRequest {
        spec: Some((&spec).into()),
        idempotency_key: uid,
        tenant: namespace(task)?,
    };
    match ctx.control_plane.tasks().submit_task(request).await {
        Ok(answer) => Ok(Ok(answer.into_inner().task_id)),
        Err(status)
            if matches!(
                status.code(),
                Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange
            ) =>
        {
            Ok(Err(status.message().to_string()))
        }
        Err(status) => Err(status.into()),
    }
}

/// The task a `templateRef` (of a Task or a Schedule) makes with its
/// `parameters`: the namespace's TaskTemplate of that name, else the
/// built-in one. `Ok(Err(why))` when there is no such template, or it
/// refuses the parameters (each named), which no retry changes.
pub(crate) async fn rendered(
    namespace: &str,
    reference: &TemplateRef,
    parameters: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<Result<tidewright_core::TaskSpec, String>, Error> {
    let name = reference.name.as_str();
    let api: Api<TaskTemplate> = Api::namespaced(ctx.kube.clone(), namespace);
    let template = match api.get_opt(name).await? {
        Some(resource) => resource.spec.to_template(name),
        // Built-ins only: the operator has no directory of its own.
        None => match tidewright_core::template::catalog(None)
            .unwrap_or_default()
            .into_iter()
            .find(|file| file.name == name)
        {
            Some(file) => file.load(),
            None => {
                return Ok(Err(format!(
                    "templateRef: no TaskTemplate {name:?} in namespace {namespace}, and no built-in template of that name"
                )));
            }
        },
    };
    let given: Vec<(String, String)> = parameters
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(template
        .and_then(|t| t.render(&given))
        .map_err(|e| format!("template {name}: {e}")))
}

/// Turns the Task's approval annotations into ApproveStep and RejectStep
/// calls, for the named steps that await approval now. The operator decides
/// as itself: name its identity (or its role) among a step's approvers to
/// let whoever may edit the Task in Kubernetes approve it. An annotation
/// stays as a record; it acts only while its step waits. Returns whether
/// it decided anything.
async fn decide_from_annotations(
    task: &TidewrightTask,
    current: &v1::Task,
    ctx: &Context,
) -> Result<bool, Error> {
    let annotations = task.annotations();
    let named = |key: &str| -> Vec<String> {
        annotations
            .get(key)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (approve, reject) = (named(APPROVE), named(REJECT));
    if approve.is_empty() && reject.is_empty() {
        return Ok(false);
    }
    let source = format!(
        "annotation on Task {}/{}",
        task.namespace().unwrap_or_default(),
        task.name_any()
    );
    let reason = |key: &str| match annotations.get(REASON).map(|r| r.trim()) {
        Some(reason) if !reason.is_empty() => format!("{reason} ({key} {source})"),
        _ => format!("by the {key} {source}"),
    };
    let mut decided = false;
    let awaiting = current
        .steps
        .iter()
        .filter(|s| s.state == v1::StepState::AwaitingApproval as i32);
    for step in awaiting {
        // A step named both ways is rejected: the cautious reading.
        let approving = !reject.contains(&step.id);
        if approving && !approve.contains(&step.id) {
            continue;
        }
        let request = v1::DecideStepRequest {
            task_id: current.id.clone(),
            step_id: step.id.clone(),
            reason: reason(if approving { APPROVE } else { REJECT }),
        };
        let mut tasks = ctx.control_plane.tasks();
        let answer = if approving {
            tasks.approve_step(request).await
        } else {
            tasks.reject_step(request).await
        };
        let (kind, reason, note) = match answer {
            Ok(_) => {
                decided = true;
                let verb = if approving { "Approved" } else { "Rejected" };
                (
                    EventType::Normal,
                    verb,
                    format!("step {} {}", step.id, verb.to_lowercase()),
                )
            }
            // Decided meanwhile, by someone else: nothing left to do.
            Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => continue,
            // Not an approver: no retry changes that; say so on the Task.
            Err(s) if s.code() == Code::PermissionDenied => (
                EventType::Warning,
                "ApprovalRefused",
                s.message().to_string(),
            ),
            Err(s) => return Err(s.into()),
        };
        let event = Event {
            type_: kind,
            reason: reason.into(),
            note: Some(note),
            action: "Decide".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &task.object_ref(&())).await {
            tracing::warn!(task = %task.name_any(), error = %e, "recording an event");
        }
    }
    Ok(decided)
}

async fn cleanup(task: Arc<TidewrightTask>, ctx: &Arc<Context>) -> Result<Action, Error> {
    ctx.stop_following(&task.uid().unwrap_or_default());
    let status = task.status.clone().unwrap_or_default();
    if let (Some(task_id), false) = (status.task_id, finished(status.phase)) {
        let cancel = ctx
            .control_plane
            .tasks()
            .cancel_task(v1::CancelTaskRequest { task_id })
            .await;
        match cancel {
            // Gone or already finished: nothing left to stop.
            Ok(_) => {}
            Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => {}
            Err(s) => return Err(s.into()),
        }
    }
    Ok(Action::await_change())
}

/// Patches the status when it changed, with an Event when the phase did.
async fn publish(
    api: &Api<TidewrightTask>,
    task: &TidewrightTask,
    previous: &TidewrightTaskStatus,
    status: &TidewrightTaskStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if previous == status {
        return Ok(());
    }
    api.patch_status(
        &task.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    if previous.phase != status.phase
        && let Some(phase) = status.phase
    {
        let event = Event {
            type_: if phase == TaskPhase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: format!("{phase:?}"),
            note: status.message.clone(),
            action: "Mirror".into(),
            secondary: None,
        };
        // An Event is a courtesy: failing to record one must not fail the
        // reconcile (and resubmit nothing).
        if let Err(e) = ctx.recorder.publish(&event, &task.object_ref(&())).await {
            tracing::warn!(task = %task.name_any(), error = %e, "recording an event");
        }
    }
    Ok(())
}

/// Starts following the task's events, unless already following it.
fn follow(
    ctx: &Arc<Context>,
    task: &TidewrightTask,
    task_id: String,
    status: TidewrightTaskStatus,
) {
    let Some(uid) = task.uid() else { return };
    let (ctx2, task) = (ctx.clone(), task.clone());
    ctx.follow_once(uid, move || {
        tokio::spawn(async move { mirror_from_events(ctx2, task, task_id, status).await })
    });
}

/// Mirrors the task's status into the resource on each event that changes
/// it, until the task finishes. Reconnects (from the last event seen) when
/// the control plane goes away.
async fn mirror_from_events(
    ctx: Arc<Context>,
    task: TidewrightTask,
    task_id: String,
    mut last: TidewrightTaskStatus,
) {
    let Ok(namespace) = namespace(&task) else {
        return;
    };
    let api: Api<TidewrightTask> = Api::namespaced(ctx.kube.clone(), &namespace);
    let mut after_seq = 0;
    let mut backoff = Duration::from_millis(500);
    loop {
        let request = v1::WatchTaskRequest {
            task_id: task_id.clone(),
            after_seq,
            follow: true,
        };
        let mut stream = match ctx.control_plane.tasks().watch_task(request).await {
            Ok(stream) => stream.into_inner(),
            Err(s) if s.code() == Code::NotFound => return,
            Err(s) => {
                tracing::warn!(task = %task.name_any(), error = %s.message(), "watching the task");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        // Progress is coalesced: one patch per interval at most.
        let mut pending_since: Option<Instant> = None;
        loop {
            let next = match pending_since {
                Some(since) => {
                    tokio::select! {
                        message = stream.message() => message,
                        () = tokio::time::sleep_until(since + PROGRESS_PATCH_INTERVAL) => {
                            pending_since = None;
                            mirror_now(&api, &task, &task_id, &mut last, &ctx).await;
                            continue;
                        }
                    }
                }
                None => stream.message().await,
            };
            match next {
                Ok(Some(event)) => {
                    after_seq = event.seq;
                    match event.kind {
                        Some(
                            v1::event::Kind::Progress(_)
                            | v1::event::Kind::Verification(_)
                            | v1::event::Kind::Setup(_),
                        ) => {
                            pending_since.get_or_insert_with(Instant::now);
                        }
                        Some(
                            v1::event::Kind::TaskState(_)
                            | v1::event::Kind::StepState(_)
                            | v1::event::Kind::FailedOver(_),
                        ) => {
                            pending_since = None;
                            mirror_now(&api, &task, &task_id, &mut last, &ctx).await;
                        }
                        Some(
                            v1::event::Kind::Log(_)
                            | v1::event::Kind::Egress(_)
                            | v1::event::Kind::Steered(_)
                            | v1::event::Kind::SessionItem(_),
                        )
                        | None => {}
                    }
                }
                // With `follow`, the stream ends when the task has finished.
                Ok(None) => {
                    mirror_now(&api, &task, &task_id, &mut last, &ctx).await;
                    if finished(last.phase) {
                        return;
                    }
                    break;
                }
                Err(s) => {
                    tracing::warn!(task = %task.name_any(), error = %s.message(), "task event stream broke; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Reads the task once and publishes its status if it changed. Failures are
/// logged: the next event, or the next reconcile, tries again.
async fn mirror_now(
    api: &Api<TidewrightTask>,
    task: &TidewrightTask,
    task_id: &str,
    last: &mut TidewrightTaskStatus,
    ctx: &Context,
) {
    let request = v1::GetTaskRequest {
        task_id: task_id.to_string(),
    };
    let current = match ctx.control_plane.tasks().get_task(request).await {
        Ok(task) => task.into_inner(),
        Err(s) => {
            tracing::warn!(task = %task.name_any(), error = %s.message(), "reading the task");
            return;
        }
    };
    let status = task_status(&current, task.metadata.generation);
    match publish(api, task, last, &status, ctx).await {
        Ok(()) => *last = status,
        Err(e) => {
            tracing::warn!(task = %task.name_any(), error = %e, "mirroring the task's status")
        }
    }
}
