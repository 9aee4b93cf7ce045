//! The JSON API under `/api/v1`, on the HTTP port: what the console and
//! scripts use. Each route calls the gRPC method that does the same, with
//! the caller identified as the gRPC interceptor identifies one (bearer
//! token or JWT, or a console session: see `session`; then its rate), so
//! validation, roles, tenants, limits and audit are the gRPC ones, not a
//! second copy. Answers are the views
//! `orca get -o json` prints; a refusal is the gRPC status as HTTP (see
//! `error::http_error`), with a JSON body naming the field.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::StringRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use orca_api::v1;
use orca_api::view::{
    AgentView, AuditView, CostView, EventView, ServerView, TaskView, agent_view, audit_view,
    cost_view, event_view, rfc3339, server_view, task_view,
};
use serde::{Deserialize, Serialize};
use tokio_stream::{Stream, StreamExt};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Identity, Tenants};
use crate::call::Call;
use crate::error::{Error, ErrorBody, http_error};
use crate::http_state::{Access, HttpState, Services};
use crate::session;

mod budget;
mod templates;
mod webhooks;

/// The routes, to nest under `/api/v1`, and their OpenAPI document at
/// `/api/v1/openapi.json`: made together from the handlers, so no route
/// goes undocumented.
///
/// A request body (a task file) may be as large as a gRPC message:
/// `max_body` is `--max-message-bytes`.
pub fn routes(max_body: usize) -> Router<Arc<HttpState>> {
    let (router, document) = api().split_for_parts();
    // Written once: it describes the code, which does not change.
    let document: Arc<str> = serde_json::to_string(&document).unwrap_or_default().into();
    router
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        document.to_string(),
                    )
                }
            }),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

fn api() -> OpenApiRouter<Arc<HttpState>> {
    let mut document = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("orca")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The JSON API of orca's control plane. Every route calls the gRPC \
                     method named in its summary, with the same rules. Send \
                     `Authorization: Bearer <token>` (an orca token or a JWT).",
                ))
                .build(),
        )
        .servers(Some([utoipa::openapi::Server::new("/api/v1")]))
        .build();
    document.components = Some(
        utoipa::openapi::ComponentsBuilder::new()
            .schema_from::<ErrorBody>()
            .build(),
    );
    OpenApiRouter::with_openapi(document)
        .routes(routes!(list_tasks, submit_task))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
        .routes(routes!(retry_task))
        .routes(routes!(approve_step))
        .routes(routes!(reject_step))
        .routes(routes!(budget::raise_budget))
        .routes(routes!(budget::approve_budget))
        .routes(routes!(budget::set_tenant_budget))
        .routes(routes!(budget::list_budgets))
        .routes(routes!(templates::list_templates))
        .routes(routes!(templates::submit_template))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::delete_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(task_events))
        .routes(routes!(count_tasks))
        .routes(routes!(fleet_events))
        .routes(routes!(activity))
        .routes(routes!(list_agents))
        .routes(routes!(list_servers))
        .routes(routes!(list_audit))
        .routes(routes!(get_state))
        .routes(routes!(list_state))
        .routes(routes!(open_session, whoami, close_session))
}

/// A refusal: the gRPC status, answered as HTTP (with another HTTP status
/// where HTTP says more, as 413 for a body too large).
pub struct ApiError {
    status: tonic::Status,
    http: Option<StatusCode>,
}

impl ApiError {
    fn new(status: tonic::Status) -> Self {
        ApiError { status, http: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut answer = http_error(&self.status);
        if let Some(code) = self.http {
            *answer.status_mut() = code;
        }
        answer
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::new(e.into())
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

/// The refusals any route may give, as the document lists them.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Never built: it describes what ApiError answers.
enum Refused {
    /// A field breaks a rule; `field` names it.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// No valid bearer token or session.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The caller's role or tenants do not allow it (or a session's
    /// change came without its CSRF token).
    #[response(status = 403)]
    Denied(ErrorBody),
    /// Over the caller's rate; see Retry-After.
    #[response(status = 429)]
    TooMany(ErrorBody),
    /// This replica does not lead, or is starting.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Makes the typed call `method` as the caller that `headers` name (a
/// bearer token, or a console session: see [`HttpState::caller`]).
async fn call<Req, Res, Fut>(
    status: &HttpState,
    headers: &HeaderMap,
    access: Access,
    message: Req,
    method: impl FnOnce(Arc<Services>, Call<Req>) -> Fut,
) -> Result<Res, ApiError>
where
    Fut: Future<Output = Result<Res, Error>>,
{
    let services = status.services().map_err(ApiError::new)?;
    let (identity, _) = status.caller(headers, access)?;
    Ok(method(services, Call::new(identity, message)).await?)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TaskPage {
    tasks: Vec<TaskView>,
    /// Empty on the last page.
    #[serde(skip_serializing_if = "String::is_empty")]
    next_page_token: String,
}

/// `?state=queued&state=running&label=team=infra&pageSize=50&pageToken=…`
#[utoipa::path(get, path = "/tasks", tag = "tasks",
    summary = "Tasks, newest first (ListTasks)",
    params(
        ("state" = Option<Vec<String>>, Query, description = "only these states (repeat it): queued, running, succeeded, failed, cancelled"),
        ("label" = Option<Vec<String>>, Query, description = "only tasks with this label, key=value (repeat it)"),
        ("pageSize" = Option<u32>, Query, description = "at most this many (default 100, at most 1000)"),
        ("pageToken" = Option<String>, Query, description = "from the previous page's nextPageToken"),
        ("tenant" = Option<Vec<String>>, Query, description = "only this tenant's tasks (repeat it); each must be one the caller may see"),
        ("name" = Option<String>, Query, description = "only tasks whose name starts with this"),
    ),
    responses((status = 200, body = TaskPage), Refused))]
async fn list_tasks(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<TaskPage> {
    let mut request = v1::ListTasksRequest::default();
    for (name, value) in query {
        match name.as_str() {
            "state" => request.states.push(task_state(&value)?),
            "label" => {
                let (key, value) = value.split_once('=').ok_or_else(|| {
                    Error::invalid("label", format!("{value:?} is not key=value"))
                })?;
                request.labels.insert(key.into(), value.into());
            }
            "pageSize" => request.page_size = number(&name, &value)?,
            "pageToken" => request.page_token = value,
            "tenant" => request.tenants.push(value),
            "name" => request.name_prefix = value,
            other => return Err(Error::invalid(other, "not a filter of tasks").into()),
        }
    }
    let page = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.tasks.list_tasks(r).await },
    )
    .await?;
    Ok(Json(TaskPage {
        tasks: page.tasks.iter().map(task_view).collect(),
        next_page_token: page.next_page_token,
    }))
}

fn number<N: std::str::FromStr>(field: &str, value: &str) -> Result<N, ApiError> {
    value
        .parse()
        .map_err(|_| Error::invalid(field, format!("{value:?} is not a whole number")).into())
}

fn task_state(name: &str) -> Result<i32, ApiError> {
    let state = match name {
        "queued" => v1::TaskState::Queued,
        "running" => v1::TaskState::Running,
        "succeeded" => v1::TaskState::Succeeded,
        "failed" => v1::TaskState::Failed,
        "cancelled" => v1::TaskState::Cancelled,
        other => {
            return Err(Error::invalid(
                "state",
                format!(
                    "{other:?} is not a task state (queued, running, succeeded, failed, cancelled)"
                ),
            )
            .into());
        }
    };
    Ok(state as i32)
}

#[derive(Deserialize)]
struct SubmitQuery {
    #[serde(default)]
    tenant: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Submitted {
    task_id: String,
    /// False when the idempotency key matched an existing task.
    created: bool,
}

/// The body is a task file, YAML or JSON (JSON is YAML); an
/// `Idempotency-Key` header makes a resubmit find the first task.
#[utoipa::path(post, path = "/tasks", tag = "tasks",
    summary = "Submit a task file (SubmitTask)",
    request_body(content = String, content_type = "application/yaml", description = "a task file, YAML or JSON"),
    params(
        ("tenant" = Option<String>, Query, description = "the tenant; the caller's first when absent"),
        ("Idempotency-Key" = Option<String>, Header, description = "a resubmit with the same key finds the first task"),
    ),
    responses(
        (status = 201, description = "made", body = Submitted),
        (status = 200, description = "the key found an existing task", body = Submitted),
        (status = 400, description = "a field breaks a rule; `field` names it", body = ErrorBody), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the caller's role or tenants do not allow it", body = ErrorBody), (status = 429, description = "over the caller's rate; see Retry-After", body = ErrorBody), (status = 503, description = "this replica does not lead, or is starting", body = ErrorBody)))]
async fn submit_task(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<SubmitQuery>,
    body: Result<String, StringRejection>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let body = text_body(body)?;
    if body.trim().is_empty() {
        return Err(Error::invalid("body", "a task file (YAML or JSON) is required").into());
    }
    let spec: orca_core::TaskSpec =
        serde_yaml::from_str(&body).map_err(|e| Error::invalid("body", e.to_string()))?;
    let request = v1::SubmitTaskRequest {
        spec: Some(v1::TaskSpec::from(&spec)),
        idempotency_key: idempotency_key(&headers)?,
        tenant: query.tenant,
    };
    let answer = call(
        &status,
        &headers,
        Access::Change,
        request,
        |s, r| async move { s.tasks.submit_task(r).await },
    )
    .await?;
    Ok(submitted(answer))
}

/// The `Idempotency-Key` header; empty when absent.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key") {
        Some(key) => Ok(key
            .to_str()
            .map_err(|_| Error::invalid("Idempotency-Key", "not visible ASCII"))?
            .to_string()),
        None => Ok(String::new()),
    }
}

/// 201 for a new task, 200 when the idempotency key found one.
fn submitted(answer: v1::SubmitTaskResponse) -> (StatusCode, Json<Submitted>) {
    let code = if answer.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(Submitted {
            task_id: answer.task_id,
            created: answer.created,
        }),
    )
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks",
    summary = "A task with its steps and attempts (GetTask)",
    params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), Refused))]
async fn get_task(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Answer<TaskView> {
    let request = v1::GetTaskRequest { task_id };
    let task = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.tasks.get_task(r).await },
    )
    .await?;
    Ok(Json(task_view(&task)))
}

#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "tasks",
    summary = "Cancel a task (CancelTask)",
    params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), Refused))]
async fn cancel_task(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Answer<TaskView> {
    let request = v1::CancelTaskRequest { task_id };
    let task = call(
        &status,
        &headers,
        Access::Change,
        request,
        |s, r| async move { s.tasks.cancel_task(r).await },
    )
    .await?;
    Ok(Json(task_view(&task)))
}

#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "tasks",
    summary = "Re-run what did not succeed in a finished task (RetryTask)",
    params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the task is not failed or cancelled", body = ErrorBody), Refused))]
async fn retry_task(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Answer<TaskView> {
    let request = v1::RetryTaskRequest { task_id };
    let task = call(
        &status,
        &headers,
        Access::Change,
        request,
        |s, r| async move { s.tasks.retry_task(r).await },
    )
    .await?;
    Ok(Json(task_view(&task)))
}

/// The body of a decision on a step's approval.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionBody {
    /// Why; required to reject.
    #[serde(default)]
    pub(super) reason: String,
}

/// An empty body is a decision without a reason.
pub(super) fn decision_body(
    body: Result<String, StringRejection>,
) -> Result<DecisionBody, ApiError> {
    let body = text_body(body)?;
    if body.trim().is_empty() {
        return Ok(DecisionBody::default());
    }
    serde_json::from_str(&body).map_err(|e| Error::invalid("body", e.to_string()).into())
}

#[utoipa::path(post, path = "/tasks/{id}/steps/{step}/approve", tag = "tasks",
    summary = "Let a step awaiting approval run (ApproveStep)",
    params(("id" = String, Path, description = "the task id"),
        ("step" = String, Path, description = "the step awaiting approval")),
    request_body(content = DecisionBody, content_type = "application/json", description = "optional: {\"reason\": \"…\"}"),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the step is not awaiting approval (decided already, or never gated)", body = ErrorBody), Refused))]
async fn approve_step(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((task_id, step_id)): Path<(String, String)>,
    body: Result<String, StringRejection>,
) -> Answer<TaskView> {
    decide(&status, &headers, (task_id, step_id), body, true).await
}

#[utoipa::path(post, path = "/tasks/{id}/steps/{step}/reject", tag = "tasks",
    summary = "Fail a step awaiting approval, with the reason (RejectStep)",
    params(("id" = String, Path, description = "the task id"),
        ("step" = String, Path, description = "the step awaiting approval")),
    request_body(content = DecisionBody, content_type = "application/json", description = "{\"reason\": \"…\"}, required"),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the step is not awaiting approval (decided already, or never gated)", body = ErrorBody), Refused))]
async fn reject_step(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((task_id, step_id)): Path<(String, String)>,
    body: Result<String, StringRejection>,
) -> Answer<TaskView> {
    decide(&status, &headers, (task_id, step_id), body, false).await
}

/// ApproveStep (`approve`) or RejectStep with the body's reason.
async fn decide(
    status: &HttpState,
    headers: &HeaderMap,
    (task_id, step_id): (String, String),
    body: Result<String, StringRejection>,
    approve: bool,
) -> Answer<TaskView> {
    let request = v1::DecideStepRequest {
        task_id,
        step_id,
        reason: decision_body(body)?.reason,
    };
    let task = call(
        status,
        headers,
        Access::Change,
        request,
        |s, r| async move {
            if approve {
                s.tasks.approve_step(r).await
            } else {
                s.tasks.reject_step(r).await
            }
        },
    )
    .await?;
    Ok(Json(task_view(&task)))
}

/// A task's events as server-sent events, each with its sequence number
/// as its id: stored ones first, then live ones until the task finishes
/// (`?follow=false`: the stored ones only). A reconnecting `EventSource`
/// sends `Last-Event-ID` and resumes after it with nothing missed or
/// repeated, as WatchTask does (it is WatchTask, with its per-caller
/// limit on open watches).
#[utoipa::path(get, path = "/tasks/{id}/events", tag = "tasks",
    summary = "A task's events as server-sent events (WatchTask)",
    params(("id" = String, Path, description = "the task id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this event"),
        ("after" = Option<u64>, Query, description = "resume after this event"),
        ("follow" = Option<bool>, Query, description = "false: the stored events only"),
    ),
    responses((status = 200, content_type = "text/event-stream", body = EventView), (status = 404, body = ErrorBody), Refused))]
async fn task_events(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut request = v1::WatchTaskRequest {
        task_id,
        after_seq: 0,
        follow: true,
    };
    for (name, value) in query {
        match name.as_str() {
            "after" => request.after_seq = number(&name, &value)?,
            "follow" => {
                request.follow = value.parse().map_err(|_| {
                    Error::invalid("follow", format!("{value:?} is not true or false"))
                })?;
            }
            other => return Err(Error::invalid(other, "not an option of events").into()),
        }
    }
    if let Some(last) = last_event_id(&headers)? {
        request.after_seq = last;
    }
    let events = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.tasks.watch_task(r).await },
    )
    .await?;
    let stream = events.map(|event| {
        Ok(match event {
            Ok(event) => sse_event(&event, event.seq),
            // The stream ends after this; the client reconnects with its
            // last id.
            Err(e) => SseEvent::default().event("error").data(e.to_string()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where a fleet stream starts: the first message of every one.
#[derive(Serialize, ToSchema)]
struct FleetStart {
    /// The position the stream replays after; also the message's id.
    position: u64,
}

/// The events of every task the caller may see, log lines excepted, in
/// commit order, each with its fleet position as its id. The first
/// message, `start`, says where the stream begins (now, unless it resumes):
/// a page that loads a snapshot after it and applies what follows misses
/// nothing. A reconnecting `EventSource` sends `Last-Event-ID` and resumes
/// after it with nothing missed or repeated (it is WatchFleet, with the
/// per-caller limit on open watches).
#[utoipa::path(get, path = "/events", tag = "fleet",
    summary = "The whole fleet's events as server-sent events (WatchFleet)",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this position"),
        ("after" = Option<u64>, Query, description = "resume after this position"),
        ("tenant" = Option<Vec<String>>, Query, description = "only this tenant's tasks (repeat it); each must be one the caller may see"),
    ),
    responses((status = 200, content_type = "text/event-stream", body = EventView,
        description = "first `start` (FleetStart), then one message per event"), Refused))]
async fn fleet_events(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut request = v1::WatchFleetRequest::default();
    for (name, value) in query {
        match name.as_str() {
            "after" => request.after_position = Some(number(&name, &value)?),
            "tenant" => request.tenants.push(value),
            other => return Err(Error::invalid(other, "not an option of events").into()),
        }
    }
    if let Some(last) = last_event_id(&headers)? {
        request.after_position = Some(last);
    }
    let (events, start) = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.tasks.watch_fleet(r).await },
    )
    .await?;
    let first = SseEvent::default()
        .id(start.to_string())
        .event("start")
        .json_data(FleetStart { position: start })
        .unwrap_or_default();
    let stream = tokio_stream::once(Ok(first)).chain(events.map(|event| {
        Ok(match event {
            Ok(event) => sse_event(&event, event.position),
            Err(e) => SseEvent::default().event("error").data(e.to_string()),
        })
    }));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where a reconnecting `EventSource` resumes: after the last id it saw.
/// It wins over the URL's `?after=`, which the browser sends again
/// unchanged on every reconnect.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get("last-event-id")
        .map(|last| number("Last-Event-ID", last.to_str().unwrap_or_default()))
        .transpose()
}

/// An event as one server-sent message: its kind as the message's type,
/// `id` as its id.
fn sse_event(event: &v1::Event, id: u64) -> SseEvent {
    let view = event_view(event);
    SseEvent::default()
        .id(id.to_string())
        .event(view.kind.name())
        .json_data(&view)
        .unwrap_or_default()
}

/// How many tasks are in each state: `{"queued": 12, "running": 3, ...}`,
/// every state named, zero when none.
#[derive(Serialize, ToSchema)]
struct TaskCounts {
    queued: u64,
    running: u64,
    /// Paused for a spent budget.
    paused: u64,
    succeeded: u64,
    failed: u64,
    cancelled: u64,
}

#[utoipa::path(get, path = "/task-counts", tag = "tasks",
    summary = "How many tasks are in each state (CountTasks)",
    params(("tenant" = Option<Vec<String>>, Query, description = "only this tenant's tasks (repeat it); each must be one the caller may see")),
    responses((status = 200, body = TaskCounts), Refused))]
async fn count_tasks(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<TaskCounts> {
    let mut request = v1::CountTasksRequest::default();
    for (name, value) in query {
        match name.as_str() {
            "tenant" => request.tenants.push(value),
            other => return Err(Error::invalid(other, "not a filter of task counts").into()),
        }
    }
    let answer = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.tasks.count_tasks(r).await },
    )
    .await?;
    let mut counts = TaskCounts {
        queued: 0,
        running: 0,
        paused: 0,
        succeeded: 0,
        failed: 0,
        cancelled: 0,
    };
    for count in answer.counts {
        let slot = match v1::TaskState::try_from(count.state) {
            Ok(v1::TaskState::Queued) => &mut counts.queued,
            Ok(v1::TaskState::Running) => &mut counts.running,
            Ok(v1::TaskState::Paused) => &mut counts.paused,
            Ok(v1::TaskState::Succeeded) => &mut counts.succeeded,
            Ok(v1::TaskState::Failed) => &mut counts.failed,
            Ok(v1::TaskState::Cancelled) => &mut counts.cancelled,
            _ => continue,
        };
        *slot += count.tasks;
    }
    Ok(Json(counts))
}

/// The last hour of work, a minute at a time (GetActivity).
#[derive(Serialize, ToSchema)]
struct ActivityView {
    /// Sixty minutes, oldest first; the last is the minute under way.
    minutes: Vec<MinuteView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MinuteView {
    start: Option<String>,
    submitted: u64,
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    dispatched: u64,
    /// Ready to dispatched, median and 99th percentile, in milliseconds:
    /// upper bounds of histogram buckets; 0 when nothing was dispatched.
    dispatch_p50_ms: f64,
    dispatch_p99_ms: f64,
    spend: Vec<SpendView>,
}

#[derive(Serialize, ToSchema)]
struct SpendView {
    model: String,
    #[serde(flatten)]
    cost: Option<CostView>,
}

#[utoipa::path(get, path = "/activity", tag = "fleet",
    summary = "The last hour, minute by minute: tasks, dispatch latency, spend by model (GetActivity)",
    params(("tenant" = Option<Vec<String>>, Query, description = "only this tenant's work (repeat it); each must be one the caller may see")),
    responses((status = 200, body = ActivityView), Refused))]
async fn activity(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<ActivityView> {
    let mut request = v1::GetActivityRequest::default();
    for (name, value) in query {
        match name.as_str() {
            "tenant" => request.tenants.push(value),
            other => return Err(Error::invalid(other, "not a filter of activity").into()),
        }
    }
    let activity = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.tasks.get_activity(r).await },
    )
    .await?;
    let minutes = activity
        .minutes
        .into_iter()
        .map(|m| MinuteView {
            start: rfc3339(&m.start),
            submitted: m.submitted,
            succeeded: m.succeeded,
            failed: m.failed,
            cancelled: m.cancelled,
            dispatched: m.dispatched,
            dispatch_p50_ms: m.dispatch_p50_seconds * 1000.0,
            dispatch_p99_ms: m.dispatch_p99_seconds * 1000.0,
            spend: m
                .spend
                .into_iter()
                .map(|s| SpendView {
                    model: s.model,
                    cost: cost_view(&s.cost),
                })
                .collect(),
        })
        .collect();
    Ok(Json(ActivityView { minutes }))
}

#[derive(Serialize, ToSchema)]
struct Fleet {
    agents: Vec<AgentView>,
    /// Steps waiting for a worker, per set of capabilities they need.
    queue: Vec<QueueView>,
}

#[derive(Serialize, ToSchema)]
struct QueueView {
    capabilities: Vec<String>,
    queued: u32,
}

#[utoipa::path(get, path = "/agents", tag = "fleet",
    summary = "Connected workers and the queue per needed capabilities (ListAgents)",
    responses((status = 200, body = Fleet), Refused))]
async fn list_agents(State(status): State<Arc<HttpState>>, headers: HeaderMap) -> Answer<Fleet> {
    let fleet = call(
        &status,
        &headers,
        Access::Read,
        v1::ListAgentsRequest::default(),
        |s, r| async move { s.agents.agents(r).await },
    )
    .await?;
    Ok(Json(Fleet {
        agents: fleet.agents.iter().map(agent_view).collect(),
        queue: fleet
            .queue
            .into_iter()
            .map(|q| QueueView {
                capabilities: q.capabilities,
                queued: q.queued,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/servers", tag = "fleet",
    summary = "The control plane's replicas (ListServers)",
    responses((status = 200, body = Vec<ServerView>), Refused))]
async fn list_servers(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Answer<Vec<ServerView>> {
    let servers = call(
        &status,
        &headers,
        Access::Read,
        v1::ListServersRequest::default(),
        |s, r| async move { s.agents.servers(r).await },
    )
    .await?;
    Ok(Json(servers.servers.iter().map(server_view).collect()))
}

#[derive(Serialize, ToSchema)]
struct AuditPage {
    records: Vec<AuditView>,
}

/// `?after=SEQ&pageSize=N`: the audit log from a sequence number on.
#[utoipa::path(get, path = "/audit", tag = "audit",
    summary = "The audit log, oldest first (ListAudit; admins)",
    params(
        ("after" = Option<u64>, Query, description = "records after this sequence number"),
        ("pageSize" = Option<u32>, Query, description = "at most this many (default 100, at most 1000)"),
    ),
    responses((status = 200, body = AuditPage), Refused))]
async fn list_audit(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<AuditPage> {
    let mut request = v1::ListAuditRequest::default();
    for (name, value) in query {
        match name.as_str() {
            "after" => request.after_seq = number(&name, &value)?,
            "pageSize" => request.page_size = number(&name, &value)?,
            other => return Err(Error::invalid(other, "not a filter of the audit log").into()),
        }
    }
    let page = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.tasks.list_audit(r).await },
    )
    .await?;
    Ok(Json(AuditPage {
        records: page.events.iter().map(audit_view).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct StateView {
    tenant: String,
    scope: String,
    key: String,
    #[schema(value_type = Value)]
    value: serde_json::Value,
    version: u64,
    updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct StatePage {
    values: Vec<StateView>,
    /// When more may follow: pass it as `after`.
    #[serde(skip_serializing_if = "String::is_empty")]
    next_after: String,
}

fn state_view(value: v1::StateValue) -> StateView {
    let at = value.r#ref.unwrap_or_default();
    StateView {
        tenant: at.tenant,
        scope: at.scope,
        key: at.key,
        value: serde_json::from_str(&value.value_json)
            .unwrap_or(serde_json::Value::String(value.value_json)),
        version: value.version,
        updated_at: rfc3339(&value.updated_at),
        expires_at: rfc3339(&value.expires_at),
    }
}

/// `?tenant=…&after=KEY&pageSize=N`: a scope's values in key order.
#[utoipa::path(get, path = "/state/{scope}", tag = "state",
    summary = "A scope's shared-state values, in key order (ListState)",
    params(
        ("scope" = String, Path),
        ("tenant" = Option<String>, Query, description = "the caller's first tenant when absent"),
        ("after" = Option<String>, Query, description = "keys after this one"),
        ("pageSize" = Option<u32>, Query, description = "at most this many (default 100, at most 1000)"),
    ),
    responses((status = 200, body = StatePage), Refused))]
async fn list_state(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(scope): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<StatePage> {
    let mut request = v1::ListStateRequest {
        scope,
        ..v1::ListStateRequest::default()
    };
    for (name, value) in query {
        match name.as_str() {
            "tenant" => request.tenant = value,
            "after" => request.after_key = value,
            "pageSize" => request.page_size = number(&name, &value)?,
            other => return Err(Error::invalid(other, "not an option of a state listing").into()),
        }
    }
    let page = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.state.list(r).await },
    )
    .await?;
    Ok(Json(StatePage {
        values: page.values.into_iter().map(state_view).collect(),
        next_after: page.next_after_key,
    }))
}

/// `?tenant=…` for a tenant other than the caller's first.
#[utoipa::path(get, path = "/state/{scope}/{key}", tag = "state",
    summary = "A shared-state value (GetState)",
    params(
        ("scope" = String, Path), ("key" = String, Path),
        ("tenant" = Option<String>, Query, description = "the caller's first tenant when absent"),
    ),
    responses((status = 200, body = StateView), (status = 404, body = ErrorBody), Refused))]
async fn get_state(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((scope, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<StateView> {
    let request = v1::GetStateRequest {
        r#ref: Some(v1::StateRef {
            tenant: query.get("tenant").cloned().unwrap_or_default(),
            scope,
            key,
        }),
    };
    let value = call(
        &status,
        &headers,
        Access::Read,
        request,
        |s, r| async move { s.state.get(r).await },
    )
    .await?;
    Ok(Json(state_view(value)))
}

#[derive(Deserialize, ToSchema)]
struct SignIn {
    /// An orca token or a JWT.
    token: String,
}

/// A new session: 201, its cookie, and who it is.
type SignedIn = (StatusCode, [(HeaderName, String); 1], Json<SessionView>);

/// Who a session (or a bearer token) is, and what a page must send with a
/// change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    name: String,
    role: String,
    /// The tenants it may see; `["*"]` for all.
    tenants: Vec<String>,
    /// For `X-CSRF-Token` on requests that change something; only for a
    /// session, which the cookie carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

fn session_view(identity: &Identity, csrf: Option<String>) -> SessionView {
    SessionView {
        name: identity.name.clone(),
        role: identity.role.to_string(),
        tenants: match &identity.tenants {
            Tenants::All => vec!["*".into()],
            Tenants::Only(tenants) => tenants.clone(),
        },
        csrf_token: csrf,
    }
}

#[utoipa::path(post, path = "/session", tag = "session",
    summary = "Sign in: a token opens a console session (a cookie)",
    request_body(content = SignIn, content_type = "application/json"),
    responses((status = 201, description = "signed in; Set-Cookie carries the session", body = SessionView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn open_session(
    State(status): State<Arc<HttpState>>,
    body: Result<String, StringRejection>,
) -> Result<SignedIn, ApiError> {
    let body = text_body(body)?;
    let sign_in: SignIn = serde_json::from_str(&body)
        .map_err(|e| Error::invalid("token", format!("send {{\"token\": \"...\"}}: {e}")))?;
    let identity = status
        .authenticator()
        .authenticate_token(sign_in.token.trim())?;
    if identity.step.is_some() {
        return Err(Error::PermissionDenied(
            "a step token is for its step's agent, not for the console".into(),
        )
        .into());
    }
    status.authenticator().check_rate(&identity)?;
    let (id, session) = status.sessions.open(identity)?;
    Ok((
        StatusCode::CREATED,
        [(
            header::SET_COOKIE,
            session::set_cookie(Some(&id), status.secure_cookies()),
        )],
        Json(session_view(&session.identity, Some(session.csrf))),
    ))
}

#[utoipa::path(get, path = "/session", tag = "session",
    summary = "Who the caller is (its session, or its bearer token)",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
async fn whoami(State(status): State<Arc<HttpState>>, headers: HeaderMap) -> Answer<SessionView> {
    let (identity, session) = status.caller(&headers, Access::Read)?;
    Ok(Json(session_view(&identity, session.map(|(_, s)| s.csrf))))
}

#[utoipa::path(delete, path = "/session", tag = "session",
    summary = "Sign out: the session ends and its cookie is cleared",
    responses((status = 204, description = "signed out"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn close_session(
    State(status): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Result<(StatusCode, [(HeaderName, String); 1]), ApiError> {
    let (_, session) = status.caller(&headers, Access::Change)?;
    if let Some((id, _)) = session {
        status.sessions.close(&id);
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            session::set_cookie(None, status.secure_cookies()),
        )],
    ))
}

/// A request body as text, or why not (too large: 413; not UTF-8: 400)
/// in the JSON every refusal has, naming the body.
fn text_body(body: Result<String, StringRejection>) -> Result<String, ApiError> {
    body.map_err(|rejection| ApiError {
        status: Error::invalid("body", rejection.body_text()).into(),
        http: Some(rejection.status()),
    })
}

/// A JSON request body, or a refusal naming the body and what is wrong
/// with it (an unknown field, a wrong type).
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<String, StringRejection>,
) -> Result<T, ApiError> {
    let body = text_body(body)?;
    serde_json::from_str(&body).map_err(|e| Error::invalid("body", e.to_string()).into())
}

async fn not_found() -> ApiError {
    ApiError::new(tonic::Status::not_found("no such route under /api/v1"))
}
