//! Schedules' messages and the services' calls, each way.

use tidewright_api::convert::{now_micros, timestamp};
use tidewright_api::v1;
use tidewright_engine::service::{CreateSchedule, ScheduleRef};

use crate::error::Error;

/// A schedule as asked; a policy it does not know is refused naming it.
pub fn create_schedule(request: v1::CreateScheduleRequest) -> Result<CreateSchedule, Error> {
    let spec = request
        .spec
        .ok_or_else(|| Error::invalid("spec", "required"))?;
    Ok(CreateSchedule {
        tenant: request.tenant,
        spec: schedule_spec(spec)?,
    })
}

fn schedule_spec(spec: v1::ScheduleSpec) -> Result<tidewright_core::schedule::ScheduleSpec, Error> {
    let concurrency_policy = spec
        .concurrency_policy
        .parse()
        .map_err(|why: String| Error::invalid("spec.concurrencyPolicy", why))?;
    let missed = spec
        .missed
        .parse()
        .map_err(|why: String| Error::invalid("spec.missed", why))?;
    Ok(tidewright_core::schedule::ScheduleSpec {
        name: spec.name,
        cron: spec.cron,
        timezone: spec.timezone,
        task: spec.task.map(Into::into),
        template: spec
            .template
            .map(|t| tidewright_core::schedule::TemplateRun {
                name: t.name,
                params: t.params.into_iter().collect(),
            }),
        concurrency_policy,
        starting_deadline_seconds: (spec.starting_deadline_seconds != 0)
            .then_some(spec.starting_deadline_seconds),
        missed,
        suspended: spec.suspended,
    })
}

pub fn schedule_ref(request: v1::ScheduleRequest) -> ScheduleRef {
    ScheduleRef {
        tenant: request.tenant,
        name: request.name,
    }
}

pub fn schedule(schedule: tidewright_store::schedules::Schedule) -> v1::Schedule {
    let spec = &schedule.spec;
    let next_tick = (!spec.suspended)
        .then(|| tidewright_core::schedule::Ticks::new(&spec.cron, &spec.timezone).ok())
        .flatten()
        .and_then(|ticks| ticks.next_after(schedule.handled.max(now_micros())));
    v1::Schedule {
        tenant: schedule.tenant.clone(),
        spec: Some(v1::ScheduleSpec {
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            timezone: spec.timezone.clone(),
            task: spec.task.as_ref().map(Into::into),
            template: spec.template.as_ref().map(|t| v1::ScheduleTemplate {
                name: t.name.clone(),
                params: t.params.clone().into_iter().collect(),
            }),
            concurrency_policy: spec.concurrency_policy.as_str().into(),
            starting_deadline_seconds: spec.starting_deadline_seconds.unwrap_or_default(),
            missed: spec.missed.as_str().into(),
            suspended: spec.suspended,
        }),
        created_at: Some(timestamp(schedule.created_at)),
        next_tick: next_tick.map(timestamp),
        history: schedule
            .history
            .into_iter()
            .map(|run| v1::ScheduleRun {
                tick: Some(timestamp(run.tick)),
                last_tick: Some(timestamp(run.last_tick)),
                ticks: run.ticks.unwrap_or_default(),
                task_id: run.task_id,
                skipped: run.skipped,
            })
            .collect(),
    }
}

pub fn schedules(
    schedules: Vec<tidewright_store::schedules::Schedule>,
) -> v1::ListSchedulesResponse {
    v1::ListSchedulesResponse {
        schedules: schedules.into_iter().map(schedule).collect(),
    }
}
