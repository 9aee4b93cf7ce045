//! `StateService`: shared state and messages between agents. Values live in
//! the store (versioned, compare-and-set, with TTLs); topic messages go live
//! to whoever subscribes and are not kept.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tidewright_api::convert::{now_micros, optional_timestamp, timestamp};
use tidewright_api::v1;
use tidewright_store::{
    Expect, StateChange, StateEntry, StateKey, StateOutcome, StateScope, Store,
};
use tokio::sync::broadcast;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::{Action, Identity};
use crate::error::Error;
use crate::grpc::grpc_call;
use tidewright_engine::channels::Channels;
use tidewright_engine::service::Call;

/// The largest value or message, as JSON text.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
const MAX_SCOPE_BYTES: usize = 128;
const MAX_KEY_CHARS: usize = 256;
/// Values per page of a listing, by default and at most.
const DEFAULT_STATE_PAGE: usize = 100;
const MAX_STATE_PAGE: usize = 1000;
/// The longest TTL: a month. Longer-lived facts belong in a task's output.
const MAX_TTL_SECONDS: u32 = 30 * 24 * 3600;
/// Messages a slow subscriber may fall behind before its stream ends.
const TOPIC_BUFFER: usize = 1024;

type TopicKey = (String, String, String);

/// The live topics: one broadcast channel per tenant, scope and topic,
/// made on first subscribe and dropped when nobody listens.
pub struct Topics {
    channels: Channels<TopicKey, v1::TopicMessage>,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            channels: Channels::new(TOPIC_BUFFER),
        }
    }
}

impl Topics {
    fn subscribe(&self, key: TopicKey) -> broadcast::Receiver<v1::TopicMessage> {
        self.channels.subscribe(key)
    }

    /// How many subscribers received `message`.
    fn publish(&self, key: &TopicKey, message: v1::TopicMessage) -> usize {
        self.channels.send([(key, message, false)])
    }

    /// Ends every subscription: the server is stopping.
    pub fn close_all(&self) {
        self.channels.close_all();
    }
}

pub struct StateApi {
    store: Arc<dyn Store>,
    topics: Arc<Topics>,
}

impl StateApi {
    pub fn new(store: Arc<dyn Store>, topics: Arc<Topics>) -> Self {
        StateApi { store, topics }
    }

    /// GetState, typed: the gRPC method and the REST route call this.
    pub async fn get(&self, request: Call<v1::GetStateRequest>) -> Result<v1::StateValue, Error> {
        let caller = self.caller(&request, Action::ReadState).await?;
        let key = state_key(request.into_message().r#ref, "ref", &caller)?;
        let entry = self
            .store
            .get_state(key.clone(), now_micros())
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("{}/{}", key.scope, key.key)))?;
        Ok(to_proto(key, entry))
    }

    /// ListState, typed: the gRPC method and the REST route call this.
    pub async fn list(
        &self,
        request: Call<v1::ListStateRequest>,
    ) -> Result<v1::ListStateResponse, Error> {
        let caller = self.caller(&request, Action::ReadState).await?;
        let request = request.into_message();
        let scope = state_scope(request.tenant, request.scope, "", &caller)?;
        let limit = match request.page_size {
            0 => DEFAULT_STATE_PAGE,
            n if n as usize > MAX_STATE_PAGE => {
                return Err(Error::invalid(
                    "page_size",
                    format!("{n} is more than {MAX_STATE_PAGE}"),
                ));
            }
            n => n as usize,
        };
        let found = self
            .store
            .list_state(scope, &request.after_key, limit, now_micros())
            .await
            .map_err(Error::from)?;
        let next_after_key = if found.len() == limit {
            found.last().map(|(k, _)| k.key.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListStateResponse {
            values: found
                .into_iter()
                .map(|(key, entry)| to_proto(key, entry))
                .collect(),
            next_after_key,
        })
    }

    /// The caller, if its role allows `action`; a step's token counts only
    /// while its attempt runs.
    async fn caller<T>(&self, request: &Call<T>, action: Action) -> Result<Identity, Error> {
        let caller = request.require(action)?;
        if let Some(grant) = &caller.step {
            let running = self
                .store
                .running_attempt(&grant.task_id, &grant.step_id)
                .await
                .map_err(Error::from)?;
            if running != Some(grant.attempt) {
                return Err(Error::Unauthenticated(format!(
                    "the step token of {}/{} attempt {} ended with its attempt",
                    grant.task_id, grant.step_id, grant.attempt
                )));
            }
        }
        Ok(caller)
    }
}

/// A checked reference: tenant (visible to the caller), scope and key.
fn state_key(
    reference: Option<v1::StateRef>,
    field: &str,
    caller: &Identity,
) -> Result<StateKey, Error> {
    let reference = reference.ok_or_else(|| Error::invalid(field, "required"))?;
    let StateScope { tenant, scope } =
        state_scope(reference.tenant, reference.scope, field, caller)?;
    let key = reference.key;
    // Characters, not bytes: the rule a JSON Schema (the OpenAPI
    // document's) can say.
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            format!("{field}.key"),
            format!("must be 1 to {MAX_KEY_CHARS} characters, none a control character"),
        ));
    }
    Ok(StateKey { tenant, scope, key })
}

/// The tenant and scope a caller names, checked: a tenant it may use, a
/// step's own task only, a well-formed scope. `field` prefixes the names
/// of the fields in errors ("" for fields at the top of the request).
fn state_scope(
    tenant: String,
    scope: String,
    field: &str,
    caller: &Identity,
) -> Result<StateScope, Error> {
    let at = |name: &str| {
        if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        }
    };
    let tenant = caller.tenant_for(&tenant, &at("tenant"), "use")?;
    if let Some(grant) = &caller.step
        && scope != grant.task_id
    {
        return Err(Error::PermissionDenied(format!(
            "{}: a step may use only its own task's scope {:?}, not {scope:?}",
            caller.name, grant.task_id
        )));
    }
    if scope.is_empty()
        || scope.len() > MAX_SCOPE_BYTES
        || !scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(Error::invalid(
            at("scope"),
            format!("{scope:?} must be 1 to {MAX_SCOPE_BYTES} letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(StateScope { tenant, scope })
}

/// `text` if it is JSON within the size limit.
fn json_value(text: String, field: &str) -> Result<String, Error> {
    if text.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid(
            field,
            format!("is {} bytes; the limit is {MAX_VALUE_BYTES}", text.len()),
        ));
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| Error::invalid(field, format!("is not JSON: {e}")))?;
    Ok(text)
}

fn expectation(version: Option<u64>) -> Expect {
    match version {
        None => Expect::Any,
        Some(0) => Expect::Absent,
        Some(v) => Expect::Version(v),
    }
}

fn conflict(key: &StateKey, expect: Expect, found: Option<u64>) -> Error {
    let wanted = match expect {
        Expect::Absent => "no value".to_string(),
        Expect::Version(v) => format!("version {v}"),
        Expect::Any => "anything".to_string(),
    };
    let found = match found {
        Some(v) => format!("version {v}"),
        None => "no value".to_string(),
    };
    Error::Conflict(format!(
        "{}/{} is at {found}, not {wanted}",
        key.scope, key.key
    ))
}

fn to_proto(key: StateKey, entry: StateEntry) -> v1::StateValue {
    v1::StateValue {
        r#ref: Some(v1::StateRef {
            tenant: key.tenant,
            scope: key.scope,
            key: key.key,
        }),
        value_json: entry.value_json,
        version: entry.version,
        updated_at: Some(timestamp(entry.updated_at)),
        expires_at: optional_timestamp(entry.expires_at),
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<v1::TopicMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::state_service_server::StateService for StateApi {
    async fn get_state(
        &self,
        request: Request<v1::GetStateRequest>,
    ) -> Result<Response<v1::StateValue>, Status> {
        Ok(Response::new(self.get(grpc_call(request)).await?))
    }

    async fn list_state(
        &self,
        request: Request<v1::ListStateRequest>,
    ) -> Result<Response<v1::ListStateResponse>, Status> {
        Ok(Response::new(self.list(grpc_call(request)).await?))
    }

    async fn put_state(
        &self,
        request: Request<v1::PutStateRequest>,
    ) -> Result<Response<v1::StateValue>, Status> {
        let request = grpc_call(request);
        let caller = self.caller(&request, Action::WriteState).await?;
        let request = request.into_message();
        let key = state_key(request.r#ref, "ref", &caller)?;
        let value_json = json_value(request.value_json, "value_json")?;
        if request.ttl_seconds > MAX_TTL_SECONDS {
            return Err(Error::invalid(
                "ttl_seconds",
                format!(
                    "is {}; the limit is {MAX_TTL_SECONDS} (30 days)",
                    request.ttl_seconds
                ),
            )
            .into());
        }
        let now = now_micros();
        let expires_at = match request.ttl_seconds {
            0 => 0,
            ttl => now + Duration::from_secs(u64::from(ttl)).as_micros() as i64,
        };
        let expect = expectation(request.expect_version);
        let outcome = self
            .store
            .change_state(StateChange::Put {
                key: key.clone(),
                value_json,
                expect,
                expires_at,
                now,
            })
            .await
            .map_err(Error::from)?;
        match outcome {
            StateOutcome::Done(Some(entry)) => Ok(Response::new(to_proto(key, entry))),
            StateOutcome::Done(None) => Err(Status::internal("a put stored nothing")),
            StateOutcome::Conflict { found } => Err(conflict(&key, expect, found).into()),
        }
    }

    async fn delete_state(
        &self,
        request: Request<v1::DeleteStateRequest>,
    ) -> Result<Response<v1::DeleteStateResponse>, Status> {
        let request = grpc_call(request);
        let caller = self.caller(&request, Action::WriteState).await?;
        let request = request.into_message();
        let key = state_key(request.r#ref, "ref", &caller)?;
        let expect = expectation(request.expect_version);
        let outcome = self
            .store
            .change_state(StateChange::Delete {
                key: key.clone(),
                expect,
                now: now_micros(),
            })
            .await
            .map_err(Error::from)?;
        match outcome {
            StateOutcome::Done(_) => Ok(Response::new(v1::DeleteStateResponse {})),
            StateOutcome::Conflict { found } => Err(conflict(&key, expect, found).into()),
        }
    }

    async fn publish(
        &self,
        request: Request<v1::PublishRequest>,
    ) -> Result<Response<v1::PublishResponse>, Status> {
        let request = grpc_call(request);
        let caller = self.caller(&request, Action::WriteState).await?;
        let request = request.into_message();
        let topic = state_key(request.topic, "topic", &caller)?;
        let message_json = json_value(request.message_json, "message_json")?;
        let message = v1::TopicMessage {
            topic: topic.key.clone(),
            message_json,
            time: Some(timestamp(now_micros())),
            sender: caller.name.clone(),
        };
        let delivered = self
            .topics
            .publish(&(topic.tenant, topic.scope, topic.key), message);
        Ok(Response::new(v1::PublishResponse {
            delivered: u32::try_from(delivered).unwrap_or(u32::MAX),
        }))
    }

    type SubscribeStream = MessageStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let request = grpc_call(request);
        let caller = self.caller(&request, Action::ReadState).await?;
        let topic = state_key(request.into_message().topic, "topic", &caller)?;
        let mut messages = self
            .topics
            .subscribe((topic.tenant, topic.scope, topic.key));
        let stream = async_stream(move |tx| async move {
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        if tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "the subscriber fell {missed} messages behind; subscribe again"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task that sends into a small channel; the task ends
/// when the client goes away.
fn async_stream<F, Fut>(feed: F) -> MessageStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<v1::TopicMessage, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(feed(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
