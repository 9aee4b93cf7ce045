//! The JSON API under `/api/v1`, on the HTTP port: what the console and
//! scripts use. Each route makes the typed call of the application service
//! that gRPC's method of the same name makes, with the caller identified as
//! the gRPC interceptor identifies one (bearer token or JWT, or a console
//! session: see `session`; then its rate), so validation, roles, tenants,
//! limits and audit are the same ones, not a second copy. Answers are the
//! views
//! `tidewright get -o json` prints; a refusal is the gRPC status as HTTP (see
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
use serde::{Deserialize, Serialize};
use tidewright_api::v1;
use tidewright_api::view::{
    AgentView, AuditView, CostView, EventView, ServerView, TaskView, agent_view, audit_view,
    cost_view, event_view, rfc3339, server_view, task_view,
};
use tokio_stream::{Stream, StreamExt};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::session;
use crate::auth::{Identity, Tenants};
use crate::error::{Error, ErrorBody, http_error};
use crate::http::app::{Access, App, Services};
use crate::wire::{self, task_to_proto};
use tidewright_core::TaskState;
use tidewright_engine::service::{self, Call, DecideStep, ListTasks, StepRef, Submit, TaskRef};

mod budget;
mod costs;
mod events;
mod fleet;
mod replay;
mod rules;
mod schedules;
mod seeds;
mod shares;
mod sign_in;
mod state;
mod templates;
mod triggers;
mod webhooks;

/// The routes, to nest under `/api/v1`, and their OpenAPI document at
/// `/api/v1/openapi.json`: made together from the handlers, so no route
/// goes undocumented.
///
/// A request body (a task file) may be as large as a gRPC message:
/// `max_body` is `--max-message-bytes`.
pub fn routes(max_body: usize) -> Router<Arc<App>> {
    let (router, document) = api().split_for_parts();
    // Written once: it describes the code, which does not change.
    let document: Arc<str> = served(&document).to_string().into();
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

fn api() -> OpenApiRouter<Arc<App>> {
    let mut document = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("tidewright")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The JSON API of tidewright's control plane. Every route makes the call \
                     named in its summary, as the gRPC method of that name does, with \
                     the same rules. Send \
                     `Authorization: Bearer <token>` (a tidewright token or a JWT).",
                ))
                .build(),
        )
        .servers(Some([utoipa::openapi::Server::new("/api/v1")]))
        .build();
    document.components = Some(
        utoipa::openapi::ComponentsBuilder::new()
            .schema_from::<ErrorBody>()
            // A query parameter's type: no body names it.
            .schema_from::<replay::ReplayFormat>()
            .build(),
    );
    OpenApiRouter::with_openapi(document)
        .routes(routes!(list_tasks, submit_task))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
        .routes(routes!(retry_task))
        .routes(routes!(approve_step))
        .routes(routes!(steer_step))
        .routes(routes!(step_diff))
        .routes(routes!(replay::step_replay))
        .routes(routes!(reject_step))
        .routes(routes!(budget::raise_budget))
        .routes(routes!(budget::approve_budget))
        .routes(routes!(budget::set_tenant_budget))
        .routes(routes!(budget::list_budgets))
        .routes(routes!(shares::set_tenant_share))
        .routes(routes!(shares::list_shares))
        .routes(routes!(costs::cost_report))
        .routes(routes!(templates::list_templates))
        .routes(routes!(templates::submit_template))
        .routes(routes!(
            schedules::list_schedules,
            schedules::create_schedule
        ))
        .routes(routes!(schedules::get_schedule, schedules::delete_schedule))
        .routes(routes!(schedules::suspend_schedule))
        .routes(routes!(schedules::resume_schedule))
        .routes(routes!(schedules::trigger_schedule))
        .routes(routes!(triggers::list_triggers, triggers::create_trigger))
        .routes(routes!(triggers::get_trigger, triggers::delete_trigger))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(webhooks::delete_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(seeds::list_seeds))
        .routes(routes!(seeds::delete_seed))
        .routes(routes!(events::task_events))
        .routes(routes!(fleet::count_tasks))
        .routes(routes!(events::fleet_events))
        .routes(routes!(fleet::activity))
        .routes(routes!(fleet::list_landings))
        .routes(routes!(fleet::list_agents))
        .routes(routes!(fleet::list_servers))
        .routes(routes!(fleet::list_audit))
        .routes(routes!(state::get_state))
        .routes(routes!(state::list_state))
        .routes(routes!(
            sign_in::open_session,
            sign_in::whoami,
            sign_in::close_session
        ))
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

/// The document as `/openapi.json` serves it: the routes' own, with every
/// rule the server holds them to written in (see `rules`).
fn served(document: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut document = serde_json::to_value(document).unwrap_or_default();
    rules::tighten(&mut document);
    document
}

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
/// bearer token, or a console session: see [`App::caller`]).
async fn call<Req, Res, E, Fut>(
    app: &App,
    headers: &HeaderMap,
    access: Access,
    message: Req,
    method: impl FnOnce(Arc<Services>, Call<Req>) -> Fut,
) -> Result<Res, ApiError>
where
    Fut: Future<Output = Result<Res, E>>,
    Error: From<E>,
{
    let services = app.services()?;
    let (identity, _) = app.caller(headers, access)?;
    Ok(method(services, Call::new(identity, message))
        .await
        .map_err(Error::from)?)
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
        ("state" = Option<Vec<String>>, Query, description = "only these states (repeat it): queued, running, paused, succeeded, failed, cancelled"),
        ("label" = Option<Vec<String>>, Query, description = "only tasks with this label, key=value (repeat it)"),
        ("pageSize" = Option<u32>, Query, maximum = 1000, description = "at most this many (default 100, at most 1000; more is refused)"),
        ("pageToken" = Option<String>, Query, description = "from the previous page's nextPageToken"),
        ("tenant" = Option<Vec<String>>, Query, description = "only this tenant's tasks (repeat it); each must be one the caller may see"),
        ("name" = Option<String>, Query, description = "only tasks whose name starts with this"),
    ),
    responses((status = 200, body = TaskPage), Refused))]
async fn list_tasks(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<TaskPage> {
    let mut request = ListTasks::default();
    for (name, value) in query {
        match name.as_str() {
            "state" => request.states.push(task_state(&value)?),
            "label" => {
                let (key, value) = value.split_once('=').ok_or_else(|| {
                    Error::invalid("label", format!("{value:?} is not key=value"))
                })?;
                // A label named twice keeps its last value, as a map does.
                request.labels.retain(|(k, _)| k != key);
                request.labels.push((key.into(), value.into()));
            }
            "pageSize" => request.page_size = number(&name, &value)?,
            "pageToken" => request.page_token = value,
            "tenant" => request.tenants.push(value),
            "name" => request.name_prefix = value,
            other => return Err(Error::invalid(other, "not a filter of tasks").into()),
        }
    }
    let page = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.list_tasks(r).await
    })
    .await?;
    Ok(Json(TaskPage {
        tasks: page
            .tasks
            .into_iter()
            .map(|t| task_view(&task_to_proto(t)))
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

/// A number in a JSON body as JSON Schema counts a whole one: `5`, or
/// `5.0` as some clients write an integer; `None` for any other, or one
/// past an i64.
fn whole(number: &serde_json::Number) -> Option<i64> {
    number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (i64::MIN as f64..i64::MAX as f64).contains(f))
            .map(|f| f as i64)
    })
}

/// A count in a JSON body, a [`whole`] number from 0 to
/// [`rules::MAX_WHOLE`].
fn whole_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    let most = rules::MAX_WHOLE;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    match whole(&number).and_then(|n| u64::try_from(n).ok()) {
        Some(n) if n <= most => Ok(Some(n)),
        _ => Err(D::Error::custom(format!(
            "{number} is not a whole number from 0 to {most}"
        ))),
    }
}

/// A [`whole`] number that may be negative, for a field whose range the
/// service checks and names.
fn whole_signed<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    whole(&number)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number")))
}

/// A whole number a route reads, at most [`rules::MAX_WHOLE`] (the
/// document's int64), refused naming `field` otherwise.
fn number<N: std::str::FromStr>(field: &str, value: &str) -> Result<N, ApiError> {
    if value
        .parse::<u128>()
        .is_ok_and(|n| n > u128::from(rules::MAX_WHOLE))
    {
        let most = rules::MAX_WHOLE;
        return Err(Error::invalid(field, format!("{value} is past the most, {most}")).into());
    }
    value
        .parse()
        .map_err(|_| Error::invalid(field, format!("{value:?} is not a whole number")).into())
}

fn task_state(name: &str) -> Result<TaskState, ApiError> {
    let state = match name {
        "queued" => TaskState::Queued,
        "running" => TaskState::Running,
        "paused" => TaskState::Paused,
        "succeeded" => TaskState::Succeeded,
        "failed" => TaskState::Failed,
        "cancelled" => TaskState::Cancelled,
        other => {
            return Err(Error::invalid(
                "state",
                format!(
                    "{other:?} is not a task state (queued, running, paused, succeeded, failed, cancelled)"
                ),
            )
            .into());
        }
    };
    Ok(state)
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
        (status = 409, description = "the task asks for a plan (`plan: true`) and this control plane has no planner", body = ErrorBody),
        (status = 400, description = "a field breaks a rule; `field` names it", body = ErrorBody), (status = 401, description = "no valid bearer token", body = ErrorBody), (status = 403, description = "the caller's role or tenants do not allow it", body = ErrorBody), (status = 429, description = "over the caller's rate; see Retry-After", body = ErrorBody), (status = 503, description = "this replica does not lead, or is starting", body = ErrorBody)))]
async fn submit_task(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<SubmitQuery>,
    body: Result<String, StringRejection>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let spec: tidewright_core::TaskSpec = yaml_body(&headers, body, "a task file")?;
    let request = Submit {
        spec: Some(spec),
        idempotency_key: idempotency_key(&headers)?,
        tenant: query.tenant,
    };
    let answer = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.tasks.submit_task(r).await
    })
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
fn submitted(answer: service::Submitted) -> (StatusCode, Json<Submitted>) {
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
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Answer<TaskView> {
    let request = TaskRef { task_id };
    let task = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.get_task(r).await
    })
    .await?;
    Ok(Json(task_view(&task_to_proto(task))))
}

#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "tasks",
    summary = "Cancel a task (CancelTask)",
    params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), Refused))]
async fn cancel_task(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Answer<TaskView> {
    let request = TaskRef { task_id };
    let task = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.tasks.cancel_task(r).await
    })
    .await?;
    Ok(Json(task_view(&task_to_proto(task))))
}

#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "tasks",
    summary = "Re-run what did not succeed in a finished task (RetryTask)",
    params(("id" = String, Path, description = "the task id")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the task is not failed or cancelled", body = ErrorBody), Refused))]
async fn retry_task(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Answer<TaskView> {
    let request = TaskRef { task_id };
    let task = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.tasks.retry_task(r).await
    })
    .await?;
    Ok(Json(task_view(&task_to_proto(task))))
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
    json_object(&body)
}

/// A step's own changes to its task's repository.
#[derive(Serialize, ToSchema)]
struct StepDiff {
    /// A unified diff (`git diff -M` from the commit the step started from
    /// to its head), cut at 1 MiB; empty when it changed nothing.
    diff: String,
}

#[utoipa::path(get, path = "/tasks/{id}/steps/{step}/diff", tag = "tasks",
    summary = "A step's changes to its task's repository, as a unified diff",
    params(("id" = String, Path, description = "the task id"),
        ("step" = String, Path, description = "the step")),
    responses((status = 200, body = StepDiff), (status = 404, body = ErrorBody), Refused))]
async fn step_diff(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((task_id, step_id)): Path<(String, String)>,
) -> Answer<StepDiff> {
    let request = StepRef { task_id, step_id };
    let diff = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.step_diff(r).await
    })
    .await?;
    Ok(Json(StepDiff { diff }))
}

#[utoipa::path(post, path = "/tasks/{id}/steps/{step}/approve", tag = "tasks",
    summary = "Let a step awaiting approval run (ApproveStep)",
    params(("id" = String, Path, description = "the task id"),
        ("step" = String, Path, description = "the step awaiting approval")),
    request_body(content = DecisionBody, content_type = "application/json", description = "optional: {\"reason\": \"…\"}"),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the step is not awaiting approval (decided already, or never gated)", body = ErrorBody), Refused))]
async fn approve_step(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((task_id, step_id)): Path<(String, String)>,
    body: Result<String, StringRejection>,
) -> Answer<TaskView> {
    decide(&app, &headers, (task_id, step_id), body, true).await
}

#[utoipa::path(post, path = "/tasks/{id}/steps/{step}/reject", tag = "tasks",
    summary = "Fail a step awaiting approval, with the reason (RejectStep)",
    params(("id" = String, Path, description = "the task id"),
        ("step" = String, Path, description = "the step awaiting approval")),
    request_body(content = DecisionBody, content_type = "application/json", description = "{\"reason\": \"…\"}, required"),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the step is not awaiting approval (decided already, or never gated)", body = ErrorBody), Refused))]
async fn reject_step(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((task_id, step_id)): Path<(String, String)>,
    body: Result<String, StringRejection>,
) -> Answer<TaskView> {
    decide(&app, &headers, (task_id, step_id), body, false).await
}

/// A message for a running agent step's session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SteerBody {
    /// Not blank, no NUL, at most 16,384 characters.
    #[schema(
        min_length = 1,
        max_length = 16384,
        pattern = "^[^\\x00]*\\S[^\\x00]*$"
    )]
    message: String,
    /// After the current turn rather than into it.
    #[serde(default)]
    follow_up: bool,
}

/// Where a steering message went.
#[derive(Serialize, ToSchema)]
struct SteeredView {
    attempt: u32,
    /// "mid-turn" or "after the turn".
    delivery: String,
}

#[utoipa::path(post, path = "/tasks/{id}/steps/{step}/steer", tag = "tasks",
    summary = "Send a message into a running agent step's session (SteerStep)",
    params(("id" = String, Path, description = "the task id"),
        ("step" = String, Path, description = "the running agent step")),
    request_body(content = SteerBody, content_type = "application/json", description = "{\"message\": \"Use the v2 API instead.\", \"followUp\": false}"),
    responses((status = 200, body = SteeredView), (status = 404, body = ErrorBody),
        (status = 409, description = "the task is finished, or the step is not running or not an agent's", body = ErrorBody), Refused))]
async fn steer_step(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((task_id, step_id)): Path<(String, String)>,
    body: Result<String, StringRejection>,
) -> Answer<SteeredView> {
    let body: SteerBody = json_body(body)?;
    let request = service::SteerStep {
        task_id,
        step_id,
        message: body.message,
        follow_up: body.follow_up,
    };
    let (attempt, delivery) = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.tasks.steer_step(r).await
    })
    .await?;
    Ok(Json(SteeredView { attempt, delivery }))
}

/// ApproveStep (`approve`) or RejectStep with the body's reason.
async fn decide(
    app: &App,
    headers: &HeaderMap,
    (task_id, step_id): (String, String),
    body: Result<String, StringRejection>,
    approve: bool,
) -> Answer<TaskView> {
    let request = DecideStep {
        task_id,
        step_id,
        reason: decision_body(body)?.reason,
    };
    let task = call(app, headers, Access::Change, request, |s, r| async move {
        if approve {
            s.tasks.approve_step(r).await
        } else {
            s.tasks.reject_step(r).await
        }
    })
    .await?;
    Ok(Json(task_view(&task_to_proto(task))))
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
    json_object(&text_body(body)?)
}

/// A JSON object read as `T`. Only an object: serde would read a struct
/// from an array of its fields' values too, which no document says.
fn json_object<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    let invalid = |message: String| -> ApiError { Error::invalid("body", message).into() };
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(object @ serde_json::Value::Object(_)) => {
            serde_json::from_value(object).map_err(|e| invalid(e.to_string()))
        }
        Ok(_) => Err(invalid("must be a JSON object".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// A file sent as the body, YAML or JSON (JSON is YAML), or a refusal
/// naming the body: empty, or what is wrong in it (an unknown field, a
/// wrong type, with its place).
///
/// Sent as `Content-Type: application/json`, it is read as JSON, strictly,
/// as the document's schema says (a `null` is not a string); otherwise as
/// a YAML file is, where `[sleep, 1]` is a command of two strings.
fn yaml_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<String, StringRejection>,
    what: &str,
) -> Result<T, ApiError> {
    let body = text_body(body)?;
    if body.trim().is_empty() {
        return Err(Error::invalid("body", format!("{what} (YAML or JSON) is required")).into());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("application/json"));
    if json {
        return json_object(&body);
    }
    serde_yaml::from_str(&body).map_err(|e| Error::invalid("body", e.to_string()).into())
}

async fn not_found() -> ApiError {
    ApiError::new(tonic::Status::not_found("no such route under /api/v1"))
}

/// The book's page of HTTP routes (`docs/src/http-api.md`), made from the
/// same OpenAPI document `/api/v1/openapi.json` serves.
#[cfg(test)]
fn reference() -> String {
    use utoipa::openapi::path::Operation;
    let (_, document) = api().split_for_parts();
    let mut page = String::from(
        "# HTTP routes\n\n\
         The JSON API under `/api/v1`, as its OpenAPI document lists it (the\n\
         server serves the whole document at `/api/v1/openapi.json`). This page\n\
         is made from that document (`TIDEWRIGHT_WRITE_DOCS=1 cargo test -p tidewright-server`\n\
         writes it) and `make test` fails when it differs. Every route takes\n\
         `Authorization: Bearer <token>` or a console session, and answers a\n\
         refusal as `{\"code\", \"message\", \"field\"}` with its HTTP status.\n",
    );
    let mut tags: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (path, item) in &document.paths.paths {
        let operations: [(&str, &Option<Operation>); 4] = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            let tag = operation
                .tags
                .as_ref()
                .and_then(|t| t.first().cloned())
                .unwrap_or_default();
            let summary = operation.summary.clone().unwrap_or_default();
            let description = operation
                .parameters
                .iter()
                .flatten()
                .map(|p| match &p.description {
                    Some(what) => format!("`{}`: {what}", p.name),
                    None => format!("`{}`", p.name),
                })
                .collect::<Vec<_>>()
                .join("; ");
            tags.entry(tag).or_default().push(format!(
                "| `{method}` | `/api/v1{path}` | {summary} | {description} |"
            ));
        }
    }
    for (tag, rows) in tags {
        page.push_str(&format!(
            "\n## {tag}\n\n| method | path | what | parameters |\n| --- | --- | --- | --- |\n"
        ));
        for row in rows {
            page.push_str(&row);
            page.push('\n');
        }
    }
    page
}

#[cfg(test)]
mod tests {
    /// The book's HTTP page is the OpenAPI document's; with TIDEWRIGHT_WRITE_DOCS=1
    /// the test writes it instead.
    #[test]
    fn the_books_http_page_is_the_openapi_document() {
        let page =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/src/http-api.md");
        let made = super::reference();
        if std::env::var_os("TIDEWRIGHT_WRITE_DOCS").is_some() {
            std::fs::write(&page, &made).expect("write the page");
        }
        let kept = std::fs::read_to_string(&page).unwrap_or_default();
        assert!(
            kept == made,
            "docs/src/http-api.md differs from the OpenAPI document: run TIDEWRIGHT_WRITE_DOCS=1 cargo test -p tidewright-server"
        );
    }

    /// The document as it is served, its rules written in.
    fn served() -> serde_json::Value {
        super::served(&super::api().split_for_parts().1)
    }

    #[test]
    fn each_tenant_parameter_holds_the_tenant_rule_and_the_streams_say_their_messages() {
        let document = served();
        let mut tenants = 0;
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    if parameter["name"] == "tenant" {
                        tenants += 1;
                        let schema = &parameter["schema"];
                        let rule = schema["items"]["pattern"]
                            .as_str()
                            .or(schema["pattern"].as_str());
                        assert!(
                            rule.is_some_and(|r| r.starts_with("^[a-z0-9-]")),
                            "{method} {path}: {parameter}"
                        );
                    }
                }
            }
        }
        assert!(tenants > 10, "{tenants}");
        let fleet = &document["paths"]["/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
            ["schema"]["oneOf"];
        assert!(
            fleet
                .as_array()
                .expect("messages")
                .iter()
                .any(|m| m["properties"]["event"]["const"] == "start"),
            "{fleet}"
        );
    }

    /// The events an endpoint may ask for, as the document lists them, are
    /// those the deliveries know.
    #[test]
    fn the_documents_webhook_events_are_the_deliveries() {
        let document = served();
        let listed = &document["components"]["schemas"]["WebhookBody"]["properties"]["events"]["items"]
            ["enum"];
        let known: Vec<&str> = crate::outbound::webhooks::event::EVENT_TYPES.to_vec();
        assert_eq!(listed, &serde_json::json!(known), "{listed}");
    }

    /// A body is a JSON object: an array of a struct's fields is refused.
    #[test]
    fn a_json_body_is_an_object() {
        let refused = super::json_object::<super::DecisionBody>(r#"["why"]"#);
        assert!(refused.is_err());
        let taken = super::json_object::<super::DecisionBody>(r#"{"reason": "why"}"#);
        assert_eq!(taken.ok().map(|b| b.reason), Some("why".to_string()));
    }

    #[test]
    fn whole_numbers_past_int64_are_refused_and_whole_floats_taken() {
        assert!(super::number::<u64>("after", "9223372036854775808").is_err());
        assert_eq!(
            super::number::<u64>("after", "9223372036854775807").ok(),
            Some(i64::MAX as u64)
        );
        #[derive(serde::Deserialize)]
        struct Count {
            #[serde(deserialize_with = "super::whole_count")]
            n: Option<u64>,
        }
        let read = |json: &str| serde_json::from_str::<Count>(json).map(|c| c.n).ok();
        assert_eq!(read(r#"{"n": 5.0}"#), Some(Some(5)));
        assert_eq!(read(r#"{"n": null}"#), Some(None));
        assert_eq!(read(r#"{"n": 5.5}"#), None);
        assert_eq!(read(r#"{"n": 9223372036854775808}"#), None);
    }

    /// A task file's schema is the core's, a step holds one runtime, and a
    /// made task links to the routes that take its id.
    #[test]
    fn the_task_file_is_documented_and_a_made_task_links_onward() {
        let document = served();
        let step = &document["components"]["schemas"]["StepSpec"];
        assert_eq!(step["oneOf"].as_array().map(Vec::len), Some(6), "{step}");
        let submit = &document["paths"]["/tasks"]["post"];
        assert_eq!(
            submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/TaskSpec"
        );
        assert!(document["components"]["schemas"]["TaskSpec"]["properties"]["steps"].is_object());
        assert_eq!(
            submit["responses"]["201"]["links"]["GetTask"]["operationId"],
            "get_task"
        );
    }

    /// A schedule file's schema says what `schedule::validate` reads: its
    /// example is taken, every cron form the server reads matches the
    /// cron's pattern (and the forms a generator is steered to parse), the
    /// time zones listed are the ones read, and the name's pattern is the
    /// name's rule.
    #[test]
    fn the_schedule_file_is_documented_as_the_server_reads_it() {
        use tidewright_core::schedule::{Ticks, validate, validate_name};
        let document = served();
        let create = &document["paths"]["/schedules"]["post"]["requestBody"]["content"];
        let json = &create["application/json"];
        assert_eq!(json["schema"]["$ref"], "#/components/schemas/ScheduleSpec");
        let example = serde_json::from_value(json["example"].clone()).expect("an example");
        let now = 1_780_000_000_000_000;
        validate(&example, now, &Default::default()).expect("the example is taken");
        let spec = &document["components"]["schemas"]["ScheduleSpec"];
        let pattern = |field: &str| {
            let text = spec["properties"][field]["pattern"].as_str().expect(field);
            regex::Regex::new(text).expect("a pattern")
        };
        let cron = pattern("cron");
        let read = [
            "0 3 * * 1-5",
            "*/15 * * * *",
            "@daily",
            "@Annually",
            " 0 0 3 * * mon-FRI ",
            "0 0 0 1 JAN * 2030",
            "0 12 15W * ?",
            "0 0 L * *",
            "0 0 * * 5#3",
            "0\t0 * *  *",
        ];
        for expression in read {
            Ticks::new(expression, "").expect("croner reads it");
            assert!(cron.is_match(expression), "{expression:?}");
        }
        for minute in 0..60 {
            for hour in ["*", "0", "07", "13", "23"] {
                let expression = format!("{minute} {hour} * * *");
                assert!(cron.is_match(&expression));
                Ticks::new(&expression, "").expect("a daily time parses");
            }
        }
        for nickname in ["yearly", "annually", "monthly", "weekly", "daily", "hourly"] {
            Ticks::new(&format!("@{nickname}"), "").expect("a nickname parses");
        }
        for refused in [
            "",
            "* * * *",
            "0 0 * * * * * *",
            "0 0 * * %",
            "@",
            "0 0 * * * @",
        ] {
            assert!(!cron.is_match(refused), "{refused:?}");
            assert!(Ticks::new(refused, "").is_err(), "{refused:?}");
        }
        let zones = spec["properties"]["timezone"]["enum"]
            .as_array()
            .expect("the zones");
        assert!(zones.len() > 400 && zones.contains(&"Europe/Rome".into()));
        for zone in zones {
            Ticks::new("@daily", zone.as_str().expect("a name")).expect("a zone read");
        }
        assert!(Ticks::new("@daily", "europe/rome").is_err());
        let name = pattern("name");
        for (text, good) in [
            ("nightly", true),
            ("0-bump", true),
            ("-bump", false),
            ("Bump", false),
            ("", false),
            (&"a".repeat(63), true),
            (&"a".repeat(64), false),
        ] {
            assert_eq!(name.is_match(text), good, "{text:?}");
            assert_eq!(validate_name(text).is_ok(), good, "{text:?}");
        }
    }

    /// A body sent as JSON is read as JSON, strictly: a null is not a
    /// string (YAML would read it as the text "null").
    #[test]
    fn a_json_task_file_is_read_strictly() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        let file = r#"{"prompt": null}"#;
        let json =
            super::yaml_body::<tidewright_core::TaskSpec>(&headers, Ok(file.into()), "a task file");
        assert!(json.is_err());
        let good = r#"{"steps": [{"id": "a", "noop": {}}]}"#;
        let json =
            super::yaml_body::<tidewright_core::TaskSpec>(&headers, Ok(good.into()), "a task file");
        assert_eq!(json.ok().map(|t| t.steps.len()), Some(1));
    }
}
