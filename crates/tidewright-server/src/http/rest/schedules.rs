//! The schedule routes: a task submitted at each tick of a cron, in a time
//! zone; create, list, read, remove, suspend, resume and fire one now.

use tidewright_api::view::{ScheduleView, schedule_view};
use tidewright_engine::service::{CreateSchedule, ScheduleRef};

use super::*;

#[derive(Serialize, ToSchema)]
pub(super) struct ScheduleList {
    schedules: Vec<ScheduleView>,
}

#[derive(Deserialize)]
pub(super) struct TenantQuery {
    #[serde(default)]
    tenant: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Triggered {
    task_id: String,
}

fn view(schedule: tidewright_store::schedules::Schedule) -> Json<ScheduleView> {
    Json(schedule_view(&wire::schedule(schedule)))
}

#[utoipa::path(get, path = "/schedules", tag = "schedules",
    summary = "The schedules of the tenants the caller may see, with their history (ListSchedules)",
    responses((status = 200, body = ScheduleList), Refused))]
pub(super) async fn list_schedules(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Answer<ScheduleList> {
    let list = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.schedules.list_schedules(r).await
    })
    .await?;
    Ok(Json(ScheduleList {
        schedules: wire::schedules(list)
            .schedules
            .iter()
            .map(schedule_view)
            .collect(),
    }))
}

/// The body is a schedule file, YAML or JSON: `name`, `cron`, `timezone`,
/// `task` (a task file's fields) or `template` (`name`, `params`),
/// `concurrencyPolicy`, `startingDeadlineSeconds`, `missed`, `suspended`.
#[utoipa::path(post, path = "/schedules", tag = "schedules",
    summary = "Create a schedule (CreateSchedule)",
    request_body(content = String, content_type = "application/yaml",
        description = "a schedule, YAML or JSON: {\"name\": \"nightly\", \"cron\": \"0 3 * * 1-5\", \"timezone\": \"Europe/Rome\", \"task\": {…}}"),
    params(("tenant" = Option<String>, Query, description = "the tenant; the caller's first when absent")),
    responses((status = 201, description = "created", body = ScheduleView),
        (status = 409, description = "the tenant has a schedule of that name", body = ErrorBody), Refused))]
pub(super) async fn create_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<TenantQuery>,
    body: Result<String, StringRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let spec: tidewright_core::schedule::ScheduleSpec = yaml_body(&headers, body, "a schedule")?;
    let request = CreateSchedule {
        tenant: query.tenant,
        spec,
    };
    let made = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.schedules.create_schedule(r).await
    })
    .await?;
    Ok((StatusCode::CREATED, view(made)))
}

#[utoipa::path(get, path = "/schedules/{name}", tag = "schedules",
    summary = "A schedule with its next tick and history (GetSchedule)",
    params(("name" = String, Path, description = "the schedule's name"),
        ("tenant" = Option<String>, Query, description = "its tenant; the caller's first when absent")),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn get_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Answer<ScheduleView> {
    let request = ScheduleRef {
        tenant: query.tenant,
        name,
    };
    let found = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.schedules.get_schedule(r).await
    })
    .await?;
    Ok(view(found))
}

#[utoipa::path(delete, path = "/schedules/{name}", tag = "schedules",
    summary = "Remove a schedule; the tasks it submitted stay (DeleteSchedule)",
    params(("name" = String, Path, description = "the schedule's name"),
        ("tenant" = Option<String>, Query, description = "its tenant; the caller's first when absent")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn delete_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    let request = ScheduleRef {
        tenant: query.tenant,
        name,
    };
    call(&app, &headers, Access::Change, request, |s, r| async move {
        s.schedules.delete_schedule(r).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/schedules/{name}/suspend", tag = "schedules",
    summary = "No tick fires while suspended (SuspendSchedule)",
    params(("name" = String, Path, description = "the schedule's name"),
        ("tenant" = Option<String>, Query, description = "its tenant; the caller's first when absent")),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn suspend_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Answer<ScheduleView> {
    suspend(app, headers, name, query.tenant, true).await
}

#[utoipa::path(post, path = "/schedules/{name}/resume", tag = "schedules",
    summary = "Ticks fire again; those passed over while suspended do not (ResumeSchedule)",
    params(("name" = String, Path, description = "the schedule's name"),
        ("tenant" = Option<String>, Query, description = "its tenant; the caller's first when absent")),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn resume_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Answer<ScheduleView> {
    suspend(app, headers, name, query.tenant, false).await
}

async fn suspend(
    app: Arc<App>,
    headers: HeaderMap,
    name: String,
    tenant: String,
    suspended: bool,
) -> Answer<ScheduleView> {
    let request = ScheduleRef { tenant, name };
    let changed = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.schedules.suspend_schedule(r, suspended).await
    })
    .await?;
    Ok(view(changed))
}

#[utoipa::path(post, path = "/schedules/{name}/trigger", tag = "schedules",
    summary = "Submit the schedule's task now, as a run of its history (TriggerSchedule)",
    params(("name" = String, Path, description = "the schedule's name"),
        ("tenant" = Option<String>, Query, description = "its tenant; the caller's first when absent")),
    responses((status = 201, description = "submitted", body = Triggered), (status = 404, body = ErrorBody),
        (status = 409, description = "the task asks for a plan (`plan: true`) and this control plane has no planner", body = ErrorBody), Refused))]
pub(super) async fn trigger_schedule(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<(StatusCode, Json<Triggered>), ApiError> {
    let request = ScheduleRef {
        tenant: query.tenant,
        name,
    };
    let task_id = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.schedules.trigger_schedule(r).await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Triggered { task_id })))
}
