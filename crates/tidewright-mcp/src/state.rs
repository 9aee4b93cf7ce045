//! The shared-state tools: a value the agents and steps of one task share
//! (get, put, delete, with versions), and messages on topics between them.

use std::time::Duration;

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};
use tidewright_api::client::Bearer;
use tidewright_api::leader::Replicas;
use tidewright_api::v1;
use tidewright_api::v1::state_service_client::StateServiceClient;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use crate::args::{number, parse, refusal, schema, text};

/// How long `wait_for_message` waits when the agent does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait an agent may ask for; a step's own timeout still rules.
const MAX_WAIT_SECONDS: u64 = 600;

type Client = StateServiceClient<InterceptedService<Replicas, Bearer>>;

/// The tools, bound to one tenant and scope.
#[derive(Clone)]
pub(super) struct StateTools {
    client: Client,
    tenant: String,
    scope: String,
}

impl StateTools {
    /// Tools over `channel` with `bearer`, in `scope` (a task's id) of
    /// `tenant` ("" for the token's own).
    pub(super) fn new(
        channel: Replicas,
        bearer: Bearer,
        tenant: String,
        scope: String,
    ) -> StateTools {
        StateTools {
            client: StateServiceClient::with_interceptor(channel, bearer),
            tenant,
            scope,
        }
    }

    fn at(&self, key: String) -> Option<v1::StateRef> {
        Some(v1::StateRef {
            tenant: self.tenant.clone(),
            scope: self.scope.clone(),
            key,
        })
    }

    pub(super) async fn get(&self, args: &JsonObject) -> Result<Value, String> {
        let key = text(args, "key")?;
        let found = self
            .client
            .clone()
            .get_state(v1::GetStateRequest {
                r#ref: self.at(key.clone()),
            })
            .await;
        match found {
            Ok(value) => {
                let value = value.into_inner();
                Ok(json!({
                    "key": key,
                    "found": true,
                    "value": parse(&value.value_json)?,
                    "version": value.version,
                }))
            }
            Err(status) if status.code() == Code::NotFound => {
                Ok(json!({"key": key, "found": false}))
            }
            Err(status) => Err(refusal(&status)),
        }
    }

    pub(super) async fn put(&self, args: &JsonObject) -> Result<Value, String> {
        let key = text(args, "key")?;
        let value = args
            .get("value")
            .ok_or_else(|| "value: required (any JSON value)".to_string())?;
        let stored = self
            .client
            .clone()
            .put_state(v1::PutStateRequest {
                r#ref: self.at(key.clone()),
                value_json: value.to_string(),
                expect_version: number(args, "expectVersion")?,
                ttl_seconds: number(args, "ttlSeconds")?
                    .map_or(Ok(0), u32::try_from)
                    .map_err(|_| "ttlSeconds: too large".to_string())?,
            })
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        Ok(json!({"key": key, "version": stored.version}))
    }

    pub(super) async fn delete(&self, args: &JsonObject) -> Result<Value, String> {
        let key = text(args, "key")?;
        self.client
            .clone()
            .delete_state(v1::DeleteStateRequest {
                r#ref: self.at(key.clone()),
                expect_version: number(args, "expectVersion")?,
            })
            .await
            .map_err(|s| refusal(&s))?;
        Ok(json!({"key": key, "deleted": true}))
    }

    pub(super) async fn publish(&self, args: &JsonObject) -> Result<Value, String> {
        let topic = text(args, "topic")?;
        let message = args
            .get("message")
            .ok_or_else(|| "message: required (any JSON value)".to_string())?;
        let sent = self
            .client
            .clone()
            .publish(v1::PublishRequest {
                topic: self.at(topic.clone()),
                message_json: message.to_string(),
            })
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        Ok(json!({"topic": topic, "delivered": sent.delivered}))
    }

    pub(super) async fn wait_for_message(&self, args: &JsonObject) -> Result<Value, String> {
        let topic = text(args, "topic")?;
        let wait = match number(args, "timeoutSeconds")? {
            None => DEFAULT_WAIT,
            Some(s) if (1..=MAX_WAIT_SECONDS).contains(&s) => Duration::from_secs(s),
            Some(_) => return Err(format!("timeoutSeconds: 1 to {MAX_WAIT_SECONDS}")),
        };
        let mut messages = self
            .client
            .clone()
            .subscribe(v1::SubscribeRequest {
                topic: self.at(topic.clone()),
            })
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        match tokio::time::timeout(wait, messages.message()).await {
            Ok(Ok(Some(message))) => Ok(json!({
                "topic": topic,
                "message": parse(&message.message_json)?,
                "sender": message.sender,
            })),
            Ok(Ok(None)) => Err("the control plane ended the subscription".into()),
            Ok(Err(status)) => Err(refusal(&status)),
            Err(_) => Ok(json!({"topic": topic, "timedOut": true})),
        }
    }
}

pub(super) fn tools() -> Vec<Tool> {
    let key = json!({"type": "string", "description": "The key, e.g. \"findings/root-cause\"."});
    let expect = json!({
        "type": "integer", "minimum": 0,
        "description": "Only if the key is at this version now (0: only if it has no value). \
                        On a conflict, read the key again and decide anew."
    });
    vec![
        Tool::new(
            "state_get",
            "Read a value the agents of this task share. Answers found=false when the key \
             has no value.",
            schema(json!({"key": key}), &["key"]),
        ),
        Tool::new(
            "state_put",
            "Store a JSON value for the other agents of this task (and the steps after this \
             one) under a key. Answers the value's new version.",
            schema(
                json!({
                    "key": key,
                    "value": {"description": "Any JSON value."},
                    "expectVersion": expect,
                    "ttlSeconds": {"type": "integer", "minimum": 1,
                                   "description": "Forget the value after this many seconds."},
                }),
                &["key", "value"],
            ),
        ),
        Tool::new(
            "state_delete",
            "Remove a shared value.",
            schema(json!({"key": key, "expectVersion": expect}), &["key"]),
        ),
        Tool::new(
            "publish",
            "Send a JSON message to the agents of this task waiting on a topic. Answers how \
             many received it; nobody waiting means nobody gets it (use state_put for facts \
             that must last).",
            schema(
                json!({
                    "topic": {"type": "string"},
                    "message": {"description": "Any JSON value."},
                }),
                &["topic", "message"],
            ),
        ),
        Tool::new(
            "wait_for_message",
            "Wait for the next message another agent of this task publishes on a topic \
             after this call starts. Answers timedOut=true if none comes in time.",
            schema(
                json!({
                    "topic": {"type": "string"},
                    "timeoutSeconds": {"type": "integer", "minimum": 1,
                                       "maximum": MAX_WAIT_SECONDS,
                                       "description": "How long to wait (default 60)."},
                }),
                &["topic"],
            ),
        ),
    ]
}
