//! tidewright as an A2A agent (the Agent2Agent protocol, 1.0, JSON-RPC binding):
//! its card at `/.well-known/agent-card.json` and its methods at `/a2a` on
//! the HTTP port. A message becomes a tidewright task (a template, or a prompt
//! for an agent runtime, named as the skill); the task's events stream as
//! A2A updates over SSE; a caller gets, lists, cancels and resubscribes to
//! tasks. Every call is the caller its bearer token names, through the
//! same application services as gRPC (roles, tenants, rate, audit).

mod card;
mod convert;
mod push;
mod wire;

pub(crate) use push::push_body;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tidewright_engine::access::Identity;
use tidewright_engine::service::{Call, ListTasks, Submit, SubmitTemplate, TaskRef, WatchTask};
use tidewright_store::TaskRecord;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use self::convert::{CONTEXT_LABEL, Follow, Run, Skills};
use self::wire::{
    JSONRPC, ListTasksRequest, ListTasksResponse, RpcRequest, SendMessageRequest,
    SendMessageResponse, StreamResponse, TaskIdRequest,
};
use crate::error::{A2aCode, Error, a2a_error, a2a_error_object, http_error};
use crate::http::app::{Access, App, Services};

/// The most tasks a ListTasks page holds, as A2A's SDKs have it.
const MAX_PAGE_SIZE: i64 = 100;
const DEFAULT_PAGE_SIZE: u32 = 50;

/// The card and the JSON-RPC endpoint, for the HTTP port's router.
pub fn routes(max_body: usize) -> Router<Arc<App>> {
    Router::new()
        .route(card::CARD_PATH, get(agent_card))
        .route(card::RPC_PATH, post(rpc))
        .layer(DefaultBodyLimit::max(max_body))
}

/// The card is public, as A2A's discovery has it: it names the skills
/// (templates, runtimes and their pools), never a task.
async fn agent_card(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let services = match app.services() {
        Ok(services) => services,
        Err(refused) => return http_error(&refused.into()),
    };
    let mut runtimes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(engine) = app.engine()
        && let Ok(fleet) = engine.list_agents().await
    {
        for worker in fleet.workers {
            let pool = match worker.info.pool.as_str() {
                "" => "default".to_string(),
                pool => pool.to_string(),
            };
            for capability in &worker.info.capabilities {
                if tidewright_core::is_agent_capability(capability) {
                    let pools = runtimes.entry(capability.clone()).or_default();
                    if !pools.contains(&pool) {
                        pools.push(pool.clone());
                    }
                }
            }
        }
    }
    let base = base_url(&app, &headers);
    Json(card::card(
        &base,
        &services.tasks.offered_templates(),
        &runtimes,
    ))
    .into_response()
}

/// This port's URL as the caller reached it (its `Host`), so the card
/// points where the caller can reach.
fn base_url(app: &App, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if app.secure_cookies() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// Why a call is refused: an A2A code of its own, or what the services
/// said (mapped in `error`).
struct Refusal {
    code: Option<A2aCode>,
    status: Status,
}

impl Refusal {
    fn new(code: A2aCode, grpc: Code, message: impl Into<String>) -> Refusal {
        Refusal {
            code: Some(code),
            status: Status::new(grpc, message.into()),
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal {
            code: None,
            status: e.into(),
        }
    }
}

impl From<tidewright_engine::Error> for Refusal {
    fn from(e: tidewright_engine::Error) -> Self {
        Error::from(e).into()
    }
}

/// A JSON-RPC error answer (HTTP 200, as JSON-RPC over HTTP has it), or
/// the HTTP refusal for who calls and how much.
fn refused(id: &Value, refusal: Refusal) -> Response {
    let object = match refusal.code {
        Some(code) => a2a_error_object(code, &refusal.status),
        None => match a2a_error(&refusal.status) {
            Some((_, object)) => object,
            None => return http_error(&refusal.status),
        },
    };
    Json(json!({ "jsonrpc": JSONRPC, "id": id, "error": object })).into_response()
}

fn answered(id: &Value, result: impl serde::Serialize) -> Response {
    Json(json!({ "jsonrpc": JSONRPC, "id": id, "result": result })).into_response()
}

/// `POST /a2a`: one JSON-RPC request.
async fn rpc(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    // Who calls, before anything of the body is read or answered.
    let caller = app
        .caller(&headers, Access::Change)
        .and_then(|(identity, _)| Ok((identity, app.services()?)));
    let (identity, services) = match caller {
        Ok(caller) => caller,
        Err(refusal) => return http_error(&refusal.into()),
    };
    let request: RpcRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let refusal = Refusal::new(
                A2aCode::Parse,
                Code::InvalidArgument,
                format!("the body is not a JSON-RPC request: {e}"),
            );
            return refused(&Value::Null, refusal);
        }
    };
    let id = match &request.id {
        Value::String(_) | Value::Number(_) | Value::Null => request.id.clone(),
        _ => Value::Null,
    };
    if let Err(refusal) = check_envelope(&request, &headers) {
        return refused(&id, refusal);
    }
    let method = request.method.as_str().unwrap_or_default().to_string();
    let call = Caller {
        services,
        identity,
        rpc_id: id.clone(),
    };
    dispatch(&call, &method, request.params, &headers)
        .await
        .unwrap_or_else(|refusal| refused(&id, refusal))
}

/// The method's call, with its params read as it takes them.
async fn dispatch(
    call: &Caller,
    method: &str,
    asked: Value,
    headers: &HeaderMap,
) -> Result<Response, Refusal> {
    match method {
        "SendMessage" => call.send(params(asked)?).await,
        "SendStreamingMessage" => call.send_streaming(params(asked)?, headers).await,
        "GetTask" => call.get(params(asked)?).await,
        "CancelTask" => call.cancel(params(asked)?).await,
        "ListTasks" => call.list(params(asked)?).await,
        "SubscribeToTask" => call.subscribe(params(asked)?, headers).await,
        "CreateTaskPushNotificationConfig" => call.create_push(params(asked)?).await,
        "GetTaskPushNotificationConfig" => call.get_push(params(asked)?).await,
        "ListTaskPushNotificationConfigs" => call.list_pushes(params(asked)?).await,
        "DeleteTaskPushNotificationConfig" => call.delete_push(params(asked)?).await,
        "GetExtendedAgentCard" => Err(Refusal::new(
            A2aCode::ExtendedAgentCardNotConfigured,
            Code::Unimplemented,
            "tidewright has one card, the public one",
        )),
        other => Err(Refusal::new(
            A2aCode::MethodNotFound,
            Code::Unimplemented,
            format!("method {other:?} is not an A2A method tidewright serves"),
        )),
    }
}

/// JSON-RPC 2.0's envelope, and the protocol version the caller speaks.
fn check_envelope(request: &RpcRequest, headers: &HeaderMap) -> Result<(), Refusal> {
    let invalid =
        |message: &str| Refusal::new(A2aCode::InvalidRequest, Code::InvalidArgument, message);
    if request.jsonrpc != JSONRPC {
        return Err(invalid("jsonrpc: must be \"2.0\""));
    }
    if !matches!(
        request.id,
        Value::String(_) | Value::Number(_) | Value::Null
    ) {
        return Err(invalid("id: a string, a number or null"));
    }
    if !request.method.is_string() {
        return Err(invalid("method: a string is required"));
    }
    if let Some(version) = headers.get("a2a-version") {
        let version = version.to_str().unwrap_or_default().trim();
        let major_minor: Vec<&str> = version.split('.').take(2).collect();
        if !version.is_empty() && major_minor != ["1", "0"] && major_minor != ["1"] {
            return Err(Refusal::new(
                A2aCode::VersionNotSupported,
                Code::InvalidArgument,
                format!(
                    "A2A-Version {version:?} is not spoken here; tidewright speaks {}",
                    card::PROTOCOL_VERSION
                ),
            ));
        }
    }
    Ok(())
}

/// A method's params, each refusal naming the field at fault.
fn params<T: DeserializeOwned>(params: Value) -> Result<T, Refusal> {
    let params = match params {
        Value::Null => Value::Object(Default::default()),
        params => params,
    };
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "params".to_string()
        } else {
            path
        };
        Error::invalid(field, e.inner().to_string()).into()
    })
}

/// One call's caller, services and JSON-RPC id.
struct Caller {
    services: Arc<Services>,
    identity: Identity,
    rpc_id: Value,
}

impl Caller {
    fn call<T>(&self, message: T) -> Call<T> {
        Call::new(self.identity.clone(), message)
    }

    /// The message as a task: submitted (once per message id), its id, and
    /// whether this call made it.
    async fn submit(&self, request: &SendMessageRequest) -> Result<(String, bool), Refusal> {
        let skills = Skills {
            templates: self.services.tasks.offered_templates(),
        };
        let asked = convert::asked(request, &skills, || {
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        })?;
        let labels = BTreeMap::from([(CONTEXT_LABEL.to_string(), asked.context_id)]);
        let submitted = match asked.run {
            Run::Task(mut spec) => {
                spec.labels.extend(labels);
                let submit = Submit {
                    spec: Some(*spec),
                    idempotency_key: asked.idempotency_key,
                    tenant: request.tenant.clone(),
                };
                self.services.tasks.submit_task(self.call(submit)).await?
            }
            Run::Template { name, parameters } => {
                let submit = SubmitTemplate {
                    name,
                    parameters,
                    idempotency_key: asked.idempotency_key,
                    tenant: request.tenant.clone(),
                    labels,
                };
                self.services
                    .tasks
                    .submit_template(self.call(submit))
                    .await?
            }
        };
        Ok((submitted.task_id, submitted.created))
    }

    /// The message's task, with the push config it asks for: the config's
    /// URL is checked before the task is made.
    async fn submit_pushed(
        &self,
        push: Option<wire::PushConfig>,
        request: &SendMessageRequest,
    ) -> Result<String, Refusal> {
        self.check_push(push.as_ref()).await?;
        let (task_id, created) = self.submit(request).await?;
        // A message sent again finds its task, and the config it made.
        if created {
            self.push_for(&task_id, push).await?;
        }
        Ok(task_id)
    }

    async fn record(&self, task_id: &str) -> Result<TaskRecord, Refusal> {
        let task = TaskRef {
            task_id: task_id.to_string(),
        };
        Ok(self.services.tasks.get_task(self.call(task)).await?)
    }

    /// `SendMessage`: the task, once it ends or waits for a person (or at
    /// once, with `returnImmediately`).
    async fn send(&self, request: SendMessageRequest) -> Result<Response, Refusal> {
        let task_id = self.submit_pushed(request_push(&request), &request).await?;
        let mut record = self.record(&task_id).await?;
        let immediately = request
            .configuration
            .as_ref()
            .is_some_and(|c| c.return_immediately);
        if !immediately {
            record = self.settled(record, Follow::interrupted).await?;
        }
        Ok(answered(
            &self.rpc_id,
            SendMessageResponse {
                task: convert::task(&record),
            },
        ))
    }

    /// The task once it has ended, or once `stop` says so of it.
    async fn settled(
        &self,
        record: TaskRecord,
        stop: fn(&Follow) -> bool,
    ) -> Result<TaskRecord, Refusal> {
        let mut follow = Follow::new(&record);
        if follow.finished() || stop(&follow) {
            return Ok(record);
        }
        let mut events = self.watch(&record, record.last_seq).await?;
        while !follow.finished() && !stop(&follow) {
            match events.next().await {
                Some(Ok(watched)) => {
                    follow.update(&watched.event);
                }
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        self.record(&record.id).await
    }

    async fn send_streaming(
        &self,
        request: SendMessageRequest,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        let task_id = self.submit_pushed(request_push(&request), &request).await?;
        self.stream(&task_id, false, headers).await
    }

    async fn subscribe(
        &self,
        request: TaskIdRequest,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        self.stream(&required_id(&request.id)?, true, headers).await
    }

    async fn watch(
        &self,
        record: &TaskRecord,
        after_seq: u64,
    ) -> Result<tidewright_engine::service::EventStream, Refusal> {
        let watch = WatchTask {
            task_id: record.id.clone(),
            after_seq,
            follow: true,
        };
        Ok(self.services.tasks.watch_task(self.call(watch)).await?)
    }

    /// The task, then an update per event until it ends, as server-sent
    /// events each with the event's sequence number as its id: a
    /// resubscribe with `Last-Event-ID` replays what came after it (the
    /// task first, as A2A has every subscription start).
    async fn stream(
        &self,
        task_id: &str,
        resubscribe: bool,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        let record = self.record(task_id).await?;
        if resubscribe && record.state.is_terminal() {
            return Err(Refusal::new(
                A2aCode::UnsupportedOperation,
                Code::FailedPrecondition,
                format!(
                    "task {} has ended ({}): nothing more will come; GetTask reads it",
                    record.id, record.state
                ),
            ));
        }
        let after = match headers.get("last-event-id") {
            Some(last) if resubscribe => last
                .to_str()
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .filter(|l| *l <= record.last_seq)
                .ok_or_else(|| {
                    Refusal::from(Error::invalid(
                        "Last-Event-ID",
                        format!(
                            "is not an event of task {} (its events are 1 to {})",
                            record.id, record.last_seq
                        ),
                    ))
                })?,
            _ => record.last_seq,
        };
        let events = if record.state.is_terminal() {
            None
        } else {
            Some(self.watch(&record, after).await?)
        };
        let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
        let services = self.services.clone();
        let identity = self.identity.clone();
        let rpc_id = self.rpc_id.clone();
        tokio::spawn(async move {
            let message = |result: &StreamResponse, seq: u64| {
                let body = json!({ "jsonrpc": JSONRPC, "id": rpc_id, "result": result });
                Ok(SseEvent::default()
                    .id(seq.to_string())
                    .data(body.to_string()))
            };
            let mut follow = Follow::new(&record);
            let first = StreamResponse::Task(convert::task(&record));
            if tx.send(message(&first, record.last_seq)).await.is_err() {
                return;
            }
            let Some(mut events) = events else { return };
            while let Some(item) = events.next().await {
                let watched = match item {
                    Ok(watched) => watched,
                    Err(e) => {
                        let status = Status::from(Error::from(e));
                        let object = a2a_error(&status)
                            .map(|(_, object)| object)
                            .unwrap_or_else(|| a2a_error_object(A2aCode::Internal, &status));
                        let body = json!({ "jsonrpc": JSONRPC, "id": rpc_id, "error": object });
                        let _ = tx
                            .send(Ok(SseEvent::default()
                                .event("error")
                                .data(body.to_string())))
                            .await;
                        return;
                    }
                };
                let event = &watched.event;
                if let Some(step) = convert::succeeded_step(event) {
                    let task = TaskRef {
                        task_id: event.task_id.clone(),
                    };
                    let read = services
                        .tasks
                        .get_task(Call::new(identity.clone(), task))
                        .await;
                    let artifact = read.ok().and_then(|record| {
                        let step = record.steps.iter().find(|s| s.id == step)?;
                        follow.artifact_update(step)
                    });
                    if let Some(artifact) = artifact
                        && tx.send(message(&artifact, event.seq)).await.is_err()
                    {
                        return;
                    }
                }
                let update = StreamResponse::StatusUpdate(follow.update(event));
                if tx.send(message(&update, event.seq)).await.is_err() || follow.finished() {
                    return;
                }
            }
        });
        Ok(Sse::new(ReceiverStream::new(rx))
            .keep_alive(KeepAlive::default())
            .into_response())
    }

    async fn get(&self, request: TaskIdRequest) -> Result<Response, Refusal> {
        let record = self.record(&required_id(&request.id)?).await?;
        Ok(answered(&self.rpc_id, convert::task(&record)))
    }

    /// `CancelTask`: the task once it has stopped (its running steps
    /// killed), as `CANCELED`; an ended task is not cancelable.
    async fn cancel(&self, request: TaskIdRequest) -> Result<Response, Refusal> {
        let task_id = required_id(&request.id)?;
        let record = self.record(&task_id).await?;
        if record.state.is_terminal() {
            return Err(Refusal::new(
                A2aCode::TaskNotCancelable,
                Code::FailedPrecondition,
                format!("task {task_id} has ended ({})", record.state),
            ));
        }
        let cancelled = self
            .services
            .tasks
            .cancel_task(self.call(TaskRef { task_id }))
            .await?;
        let stopped = self.settled(cancelled, |_| false).await?;
        Ok(answered(&self.rpc_id, convert::task(&stopped)))
    }

    async fn list(&self, request: ListTasksRequest) -> Result<Response, Refusal> {
        let page_size = match request.page_size {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(size) if (1..=MAX_PAGE_SIZE).contains(&size) => size as u32,
            Some(size) => {
                return Err(Error::invalid(
                    "pageSize",
                    format!("is {size}; a page holds 1 to {MAX_PAGE_SIZE} tasks"),
                )
                .into());
            }
        };
        let states = match request.status.as_deref() {
            None | Some("") | Some("TASK_STATE_UNSPECIFIED") => Vec::new(),
            Some(name) => match convert::states_named(name) {
                // No tidewright task is in such a state: an empty page.
                Some(states) if states.is_empty() => {
                    return Ok(answered(&self.rpc_id, ListTasksResponse::default()));
                }
                Some(states) => states,
                None => {
                    return Err(Error::invalid(
                        "status",
                        format!("{name:?} is not an A2A task state"),
                    )
                    .into());
                }
            },
        };
        let labels = match request.context_id.as_str() {
            "" => Vec::new(),
            context => vec![(CONTEXT_LABEL.to_string(), context.to_string())],
        };
        let list = ListTasks {
            states,
            labels,
            page_size,
            page_token: request.page_token.clone(),
            tenants: match request.tenant.as_str() {
                "" => Vec::new(),
                tenant => vec![tenant.to_string()],
            },
            ..ListTasks::default()
        };
        let page = self.services.tasks.list_tasks(self.call(list)).await?;
        let first = list_first_page(&page.next_page_token, &request.page_token);
        let tasks: Vec<_> = page
            .tasks
            .iter()
            .map(|record| {
                let mut task = convert::task(record);
                if !request.include_artifacts {
                    task.artifacts.clear();
                }
                task
            })
            .collect();
        Ok(answered(
            &self.rpc_id,
            ListTasksResponse {
                total_size: first.then_some(tasks.len() as u32),
                page_size,
                tasks,
                next_page_token: page.next_page_token,
            },
        ))
    }
}

/// The push config a message asks for, if any.
fn request_push(request: &SendMessageRequest) -> Option<wire::PushConfig> {
    request
        .configuration
        .as_ref()
        .and_then(|c| c.task_push_notification_config.clone())
}

/// Whether a page is all there is: the first, with none after it.
fn list_first_page(next: &str, asked: &str) -> bool {
    next.is_empty() && asked.is_empty()
}

fn required_id(id: &str) -> Result<String, Refusal> {
    if id.is_empty() {
        return Err(Error::invalid("id", "the task's id is required").into());
    }
    Ok(id.to_string())
}
