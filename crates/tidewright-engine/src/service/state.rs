//! Shared state and messages between agents. Values live in the store
//! (versioned, compare-and-set, with TTLs); topic messages go live to
//! whoever subscribes and are not kept. A step's token reaches only its
//! own task's scope, and only while its attempt runs.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tidewright_core::Micros;
use tidewright_core::calendar::now_micros;
use tidewright_store::{
    Expect, StateChange, StateEntry, StateKey, StateOutcome, StateQuery, StateScope,
};
use tokio::sync::broadcast;
use tokio_stream::Stream;

use super::calls::{
    DeleteState, GetState, ListState, Publish, PutState, StatePage, StateRef, Subscribe,
    TopicMessage,
};
use super::{Call, Context, DEFAULT_PAGE_SIZE, page_size};
use crate::access::{Action, Identity};
use crate::channels::Channels;
use crate::error::Error;

/// The largest value or message, as JSON text.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
const MAX_SCOPE_BYTES: usize = 128;
const MAX_KEY_CHARS: usize = 256;
/// The longest TTL: a month. Longer-lived facts belong in a task's output.
const MAX_TTL_SECONDS: u32 = 30 * 24 * 3600;
/// Messages a slow subscriber may fall behind before its stream ends.
const TOPIC_BUFFER: usize = 1024;

type TopicKey = (String, String, String);

/// A topic's messages as a subscriber gets them, until it falls behind
/// (the last item says so) or the server stops.
pub type TopicStream = Pin<Box<dyn Stream<Item = Result<TopicMessage, Error>> + Send>>;

/// The live topics: one broadcast channel per tenant, scope and topic,
/// made on first subscribe and dropped when nobody listens.
pub(super) struct Topics {
    channels: Channels<TopicKey, TopicMessage>,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            channels: Channels::new(TOPIC_BUFFER),
        }
    }
}

/// Shared state and topics.
#[derive(Clone)]
pub struct State {
    pub(super) cx: Arc<Context>,
    pub(super) topics: Arc<Topics>,
}

impl State {
    /// A value, by its reference.
    pub async fn get_state(&self, call: Call<GetState>) -> Result<(StateKey, StateEntry), Error> {
        let caller = self.caller(&call, Action::ReadState).await?;
        let key = state_key(call.into_message().reference, "ref", &caller)?;
        let entry = self
            .cx
            .store
            .get_state(key.clone(), now_micros())
            .await?
            .ok_or_else(|| Error::NotFound(format!("{}/{}", key.scope, key.key)))?;
        Ok((key, entry))
    }

    /// A scope's values in key order, a page at a time.
    pub async fn list_state(&self, call: Call<ListState>) -> Result<StatePage, Error> {
        let caller = self.caller(&call, Action::ReadState).await?;
        let request = call.into_message();
        let scope = state_scope(request.tenant, request.scope, "", &caller)?;
        let limit = page_size(request.page_size, DEFAULT_PAGE_SIZE)?;
        let values = self
            .cx
            .store
            .list_state(StateQuery {
                scope,
                after_key: request.after_key,
                limit,
                now: now_micros(),
            })
            .await?;
        let next_after_key = if values.len() == limit {
            values
                .last()
                .map(|(k, _)| k.key.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(StatePage {
            values,
            next_after_key,
        })
    }

    /// Puts a value, if its version is as expected.
    pub async fn put_state(&self, call: Call<PutState>) -> Result<(StateKey, StateEntry), Error> {
        let caller = self.caller(&call, Action::WriteState).await?;
        let request = call.into_message();
        let key = state_key(request.reference, "ref", &caller)?;
        let value_json = json_value(request.value_json, "value_json")?;
        if request.ttl_seconds > MAX_TTL_SECONDS {
            return Err(Error::invalid(
                "ttl_seconds",
                format!(
                    "is {}; the limit is {MAX_TTL_SECONDS} (30 days)",
                    request.ttl_seconds
                ),
            ));
        }
        let now = now_micros();
        let expires_at = match request.ttl_seconds {
            0 => 0,
            ttl => now + Duration::from_secs(u64::from(ttl)).as_micros() as Micros,
        };
        let expect = expectation(request.expect_version);
        let outcome = self
            .cx
            .store
            .change_state(StateChange::Put {
                key: key.clone(),
                value_json,
                expect,
                expires_at,
                now,
            })
            .await?;
        match outcome {
            StateOutcome::Done(Some(entry)) => Ok((key, entry)),
            StateOutcome::Done(None) => Err(Error::Internal("a put stored nothing".into())),
            StateOutcome::Conflict { found } => Err(conflict(&key, expect, found)),
        }
    }

    /// Deletes a value, if its version is as expected.
    pub async fn delete_state(&self, call: Call<DeleteState>) -> Result<(), Error> {
        let caller = self.caller(&call, Action::WriteState).await?;
        let request = call.into_message();
        let key = state_key(request.reference, "ref", &caller)?;
        let expect = expectation(request.expect_version);
        let outcome = self
            .cx
            .store
            .change_state(StateChange::Delete {
                key: key.clone(),
                expect,
                now: now_micros(),
            })
            .await?;
        match outcome {
            StateOutcome::Done(_) => Ok(()),
            StateOutcome::Conflict { found } => Err(conflict(&key, expect, found)),
        }
    }

    /// Sends a message to a topic's subscribers now; how many got it.
    pub async fn publish(&self, call: Call<Publish>) -> Result<u32, Error> {
        let caller = self.caller(&call, Action::WriteState).await?;
        let request = call.into_message();
        let topic = state_key(request.topic, "topic", &caller)?;
        let message = TopicMessage {
            topic: topic.key.clone(),
            message_json: json_value(request.message_json, "message_json")?,
            time: now_micros(),
            sender: caller.name.clone(),
        };
        let key = (topic.tenant, topic.scope, topic.key);
        let delivered = self.topics.channels.send([(&key, message, false)]);
        Ok(u32::try_from(delivered).unwrap_or(u32::MAX))
    }

    /// A topic's messages from now on.
    pub async fn subscribe(&self, call: Call<Subscribe>) -> Result<TopicStream, Error> {
        let caller = self.caller(&call, Action::ReadState).await?;
        let topic = state_key(call.into_message().topic, "topic", &caller)?;
        let mut messages = self
            .topics
            .channels
            .subscribe((topic.tenant, topic.scope, topic.key));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // Ends when the subscriber goes away, falls behind, or the server
        // stops.
        tokio::spawn(async move {
            loop {
                let next = match messages.recv().await {
                    Ok(message) => Ok(message),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        Err(Error::ResourceExhausted {
                            message: format!(
                                "the subscriber fell {missed} messages behind; subscribe again"
                            ),
                            retry_after: None,
                        })
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let ended = next.is_err();
                if tx.send(next).await.is_err() || ended {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// Ends every subscription: the server is stopping.
    pub fn close_topics(&self) {
        self.topics.channels.close_all();
    }

    /// The caller, if its role allows `action`; a step's token counts only
    /// while its attempt runs.
    async fn caller<T>(&self, call: &Call<T>, action: Action) -> Result<Identity, Error> {
        let caller = call.require(action)?;
        if let Some(step) = &caller.step {
            self.cx.step_alive(step).await?;
        }
        Ok(caller)
    }
}

/// A checked reference: tenant (visible to the caller), scope and key.
fn state_key(
    reference: Option<StateRef>,
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
