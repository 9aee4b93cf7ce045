//! A2A push notifications: a task's push configs are webhook endpoints of
//! its own (see `tidewright_engine::service` `push`), delivered, kept and
//! retried by the webhook loop as every endpoint is, each notification an
//! A2A `StreamResponse` with the client's token and `Authorization`, and
//! signed as Standard Webhooks says besides.

use axum::response::Response;
use serde_json::Value;
use tidewright_core::{Event, EventKind};
use tidewright_engine::service::{CreatePush, PushRef, TaskRef};
use tidewright_store::TaskRecord;
use tidewright_store::webhooks::Webhook;

use super::convert::{self, Follow};
use super::wire::{
    Authentication, ListPushConfigsResponse, PushConfig, PushConfigRequest, StreamResponse,
};
use super::{Caller, Refusal, answered};
use crate::error::Error;

/// The body of a push notification of `event`, of `task` as stored: an
/// update, or the task itself once it has ended (its artifacts with it).
pub(crate) fn push_body(event: &Event, task: &TaskRecord) -> String {
    let response = match &event.kind {
        EventKind::TaskState { state, .. } if state.is_terminal() => {
            StreamResponse::Task(convert::task(task))
        }
        _ => StreamResponse::StatusUpdate(Follow::at_event(task, event).update(event)),
    };
    serde_json::to_string(&response).unwrap_or_default()
}

/// A config as a client reads it back: never its token nor credentials.
fn shown(webhook: &Webhook) -> PushConfig {
    let push = webhook.push.clone().unwrap_or_default();
    PushConfig {
        tenant: webhook.tenant.clone(),
        id: push.config_id,
        task_id: push.task_id,
        url: webhook.url.clone(),
        token: String::new(),
        authentication: (!push.auth_scheme.is_empty()).then(|| Authentication {
            scheme: push.auth_scheme,
            credentials: String::new(),
        }),
    }
}

fn create(task_id: String, config: PushConfig) -> CreatePush {
    let auth = config.authentication.unwrap_or_default();
    CreatePush {
        task_id,
        config_id: config.id,
        url: config.url,
        token: config.token,
        auth_scheme: auth.scheme,
        auth_credentials: auth.credentials,
    }
}

impl Caller {
    /// A message's push config, checked before its task is made: a URL
    /// that would be refused refuses the message, and nothing is stored.
    pub(super) async fn check_push(&self, config: Option<&PushConfig>) -> Result<(), Refusal> {
        if let Some(config) = config {
            let url = config.url.clone();
            self.services
                .webhooks
                .check_push_url(self.call(url))
                .await
                .map_err(|e| match Error::from(e) {
                    Error::Service(tidewright_engine::Error::InvalidArgument {
                        message, ..
                    }) => Error::invalid("configuration.taskPushNotificationConfig.url", message),
                    other => other,
                })?;
        }
        Ok(())
    }

    /// The push config a message asked for, for its task.
    pub(super) async fn push_for(
        &self,
        task_id: &str,
        config: Option<PushConfig>,
    ) -> Result<(), Refusal> {
        if let Some(config) = config {
            let create = create(task_id.to_string(), config);
            self.services
                .webhooks
                .create_task_push(self.call(create))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn create_push(&self, config: PushConfig) -> Result<Response, Refusal> {
        let task_id = required(&config.task_id, "taskId")?;
        let created = self
            .services
            .webhooks
            .create_task_push(self.call(create(task_id, config)))
            .await?;
        Ok(answered(&self.rpc_id, shown(&created)))
    }

    async fn configs(&self, task_id: &str) -> Result<Vec<Webhook>, Refusal> {
        let task = TaskRef {
            task_id: required(task_id, "taskId")?,
        };
        Ok(self.services.webhooks.task_pushes(self.call(task)).await?)
    }

    pub(super) async fn get_push(&self, request: PushConfigRequest) -> Result<Response, Refusal> {
        let id = required(&request.id, "id")?;
        let found = self
            .configs(&request.task_id)
            .await?
            .into_iter()
            .find(|w| w.push.as_ref().is_some_and(|p| p.config_id == id))
            .ok_or_else(|| {
                Error::Service(tidewright_engine::Error::NotFound(format!(
                    "push config {id:?} of task {}",
                    request.task_id
                )))
            })?;
        Ok(answered(&self.rpc_id, shown(&found)))
    }

    pub(super) async fn list_pushes(
        &self,
        request: PushConfigRequest,
    ) -> Result<Response, Refusal> {
        let configs = self.configs(&request.task_id).await?;
        Ok(answered(
            &self.rpc_id,
            ListPushConfigsResponse {
                configs: configs.iter().map(shown).collect(),
            },
        ))
    }

    pub(super) async fn delete_push(
        &self,
        request: PushConfigRequest,
    ) -> Result<Response, Refusal> {
        let gone = PushRef {
            task_id: required(&request.task_id, "taskId")?,
            config_id: required(&request.id, "id")?,
        };
        self.services
            .webhooks
            .delete_task_push(self.call(gone))
            .await?;
        Ok(answered(&self.rpc_id, Value::Null))
    }
}

fn required(value: &str, field: &str) -> Result<String, Refusal> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required").into());
    }
    Ok(value.to_string())
}
