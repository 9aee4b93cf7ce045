//! The Schedule controller: keeps the control plane's schedule of each
//! `Schedule` (same name, the namespace's tenant) as the resource says,
//! and mirrors its next tick and last run into the status. The control
//! plane fires the ticks, each once, whichever of its replicas leads; the
//! operator only creates, changes and removes the schedule. A change to
//! `suspended` alone suspends or resumes it (its history stays); any other
//! change replaces it (ticks already fired keep their tasks: a tick's
//! idempotency key is the same for the new schedule, so none fires twice).
//! Deleting the resource deletes the schedule; its tasks stay.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tidewright_api::v1;
use tonic::Code;

use crate::context::Context;
use crate::crd::{TidewrightSchedule, TidewrightScheduleStatus};
use crate::error::Error;
use crate::status::time;

/// Held on every Schedule until its schedule is deleted.
pub const FINALIZER: &str = "tidewright.dev/delete-schedule";
/// The status is read again at least this often, and a second after each
/// tick, so it follows the runs without a watch.
const REFRESH: Duration = Duration::from_secs(60);
const AFTER_TICK: Duration = Duration::from_secs(1);
const MIN_REFRESH: Duration = Duration::from_secs(5);

fn namespace(schedule: &TidewrightSchedule) -> Result<String, Error> {
    schedule.namespace().ok_or_else(|| Error::Resource {
        kind: "Schedule",
        name: schedule.name_any(),
        problem: "has no namespace".into(),
    })
}

pub async fn reconcile(
    schedule: Arc<TidewrightSchedule>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let api: Api<TidewrightSchedule> = Api::namespaced(ctx.kube.clone(), &namespace(&schedule)?);
    finalizer(&api, FINALIZER, schedule, |event| async {
        match event {
            finalizer::Event::Apply(schedule) => apply(schedule, &api, &ctx).await,
            finalizer::Event::Cleanup(schedule) => cleanup(schedule, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(
    schedule: Arc<TidewrightSchedule>,
    api: &Api<TidewrightSchedule>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let previous = schedule.status.clone().unwrap_or_default();
    let tenant = namespace(&schedule)?;
    let kept = match desired(&schedule, &tenant, ctx).await? {
        Ok(spec) => keep(&tenant, spec, &schedule, ctx).await?,
        Err(refusal) => Err(refusal),
    };
    let status = match &kept {
        Ok(found) => status_of(found, schedule.metadata.generation),
        Err(refusal) => TidewrightScheduleStatus {
            message: Some(format!("the control plane refused the schedule: {refusal}")),
            observed_generation: schedule.metadata.generation,
            ..TidewrightScheduleStatus::default()
        },
    };
    publish(api, &schedule, &previous, &status, ctx).await?;
    let Ok(found) = kept else {
        // Nothing to retry until the resource changes.
        return Ok(Action::await_change());
    };
    let until_tick = found
        .next_tick
        .as_ref()
        .map(|t| tidewright_api::convert::micros(t) - tidewright_core::calendar::now_micros())
        .map(|micros| Duration::from_micros(micros.max(0) as u64) + AFTER_TICK);
    Ok(Action::requeue(
        until_tick.unwrap_or(REFRESH).clamp(MIN_REFRESH, REFRESH),
    ))
}

/// The schedule the resource asks for, its task rendered from its
/// template when it names one. `Ok(Err(why))` when the template will not
/// do, which no retry changes.
async fn desired(
    schedule: &TidewrightSchedule,
    tenant: &str,
    ctx: &Context,
) -> Result<Result<v1::ScheduleSpec, String>, Error> {
    let spec = &schedule.spec;
    let mut task = match (&spec.task, &spec.template_ref) {
        (Some(task), _) => task.clone(),
        (None, Some(reference)) => {
            match crate::tasks::rendered(tenant, reference, &spec.parameters, ctx).await? {
                Ok(task) => task,
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        (None, None) => return Ok(Err("task: give the task to submit, or a templateRef".into())),
    };
    if task.name.is_empty() {
        task.name = schedule.name_any();
    }
    // As the control plane will answer it: through its own types and back,
    // so an unchanged resource compares equal to what is there.
    let task = v1::TaskSpec::from(&tidewright_core::TaskSpec::from(v1::TaskSpec::from(&task)));
    Ok(Ok(v1::ScheduleSpec {
        name: schedule.name_any(),
        cron: spec.cron.clone(),
        timezone: spec.timezone.clone(),
        task: Some(task),
        template: None,
        concurrency_policy: spec.concurrency_policy.as_str().into(),
        starting_deadline_seconds: spec.starting_deadline_seconds.unwrap_or_default(),
        missed: spec.missed.as_str().into(),
        suspended: spec.suspended,
    }))
}

/// Makes the control plane's schedule `wanted`: creates it, suspends or
/// resumes it, or replaces it. `Ok(Err(why))` when the control plane
/// refuses it (a cron that does not parse, an unknown time zone...).
async fn keep(
    tenant: &str,
    wanted: v1::ScheduleSpec,
    schedule: &TidewrightSchedule,
    ctx: &Context,
) -> Result<Result<v1::Schedule, String>, Error> {
    let mut client = ctx.control_plane.tasks();
    let named = v1::ScheduleRequest {
        tenant: tenant.to_string(),
        name: wanted.name.clone(),
    };
    let found = match client.get_schedule(named.clone()).await {
        Ok(found) => Some(found.into_inner()),
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => return Err(s.into()),
    };
    let Some(found) = found else {
        return create(tenant, wanted, ctx).await;
    };
    let there = found.spec.clone().unwrap_or_default();
    if there == wanted {
        return Ok(Ok(found));
    }
    let only_suspension = v1::ScheduleSpec {
        suspended: wanted.suspended,
        ..there
    } == wanted;
    if only_suspension {
        let changed = if wanted.suspended {
            client.suspend_schedule(named).await?
        } else {
            client.resume_schedule(named).await?
        };
        return Ok(Ok(changed.into_inner()));
    }
    match client.delete_schedule(named).await {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(s.into()),
    }
    let made = create(tenant, wanted, ctx).await?;
    if made.is_ok() {
        note(
            ctx,
            schedule,
            EventType::Normal,
            "Replaced",
            "the schedule changed: replaced, its history starts again".into(),
        )
        .await;
    }
    Ok(made)
}

async fn create(
    tenant: &str,
    spec: v1::ScheduleSpec,
    ctx: &Context,
) -> Result<Result<v1::Schedule, String>, Error> {
    let request = v1::CreateScheduleRequest {
        tenant: tenant.to_string(),
        spec: Some(spec),
    };
    match ctx.control_plane.tasks().create_schedule(request).await {
        Ok(made) => Ok(Ok(made.into_inner())),
        Err(s) if matches!(s.code(), Code::InvalidArgument | Code::FailedPrecondition) => {
            Ok(Err(s.message().to_string()))
        }
        Err(s) => Err(s.into()),
    }
}

/// The resource's status from the control plane's schedule.
pub fn status_of(found: &v1::Schedule, generation: Option<i64>) -> TidewrightScheduleStatus {
    let last = found.history.last();
    TidewrightScheduleStatus {
        next_tick: time(&found.next_tick),
        last_tick: last.and_then(|run| time(&run.last_tick).or_else(|| time(&run.tick))),
        last_task_id: found
            .history
            .iter()
            .rev()
            .find(|run| !run.task_id.is_empty())
            .map(|run| run.task_id.clone()),
        last_skipped: last
            .filter(|run| run.task_id.is_empty())
            .map(|run| run.skipped.clone()),
        message: None,
        observed_generation: generation,
    }
}

async fn cleanup(schedule: Arc<TidewrightSchedule>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let request = v1::ScheduleRequest {
        tenant: namespace(&schedule)?,
        name: schedule.name_any(),
    };
    match ctx.control_plane.tasks().delete_schedule(request).await {
        // Gone already (or never made: it was refused).
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(s.into()),
    }
    Ok(Action::await_change())
}

/// Patches the status when it changed, with a Warning when the schedule
/// was refused.
async fn publish(
    api: &Api<TidewrightSchedule>,
    schedule: &TidewrightSchedule,
    previous: &TidewrightScheduleStatus,
    status: &TidewrightScheduleStatus,
    ctx: &Context,
) -> Result<(), Error> {
    if previous == status {
        return Ok(());
    }
    // A merge patch leaves out what is absent: a field that went away
    // (the refusal once fixed, the skip once a tick fired) is cleared.
    let mut fields = serde_json::to_value(status).unwrap_or_default();
    if let Some(fields) = fields.as_object_mut() {
        for key in [
            "nextTick",
            "lastTick",
            "lastTaskId",
            "lastSkipped",
            "message",
        ] {
            fields.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    api.patch_status(
        &schedule.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": fields })),
    )
    .await?;
    if let Some(message) = &status.message
        && previous.message.as_ref() != Some(message)
    {
        note(
            ctx,
            schedule,
            EventType::Warning,
            "Refused",
            message.clone(),
        )
        .await;
    }
    Ok(())
}

/// Records an Event on the Schedule; a courtesy, which may fail.
async fn note(
    ctx: &Context,
    schedule: &TidewrightSchedule,
    kind: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_: kind,
        reason: reason.into(),
        note: Some(note),
        action: "Keep".into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .recorder
        .publish(&event, &schedule.object_ref(&()))
        .await
    {
        tracing::warn!(schedule = %schedule.name_any(), error = %e, "recording an event");
    }
}
