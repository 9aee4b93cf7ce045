//! A task's push-notification configs (A2A's): each is a webhook endpoint
//! of the task's tenant that gets that task's updates, kept and retried by
//! the webhook deliveries as every endpoint is. Whoever may change a task
//! may ask for its updates to be pushed; the URL is held to the webhooks'
//! rules (no private address unless the control plane allows them).

use tidewright_store::webhooks::{TaskPush, Webhook};

use super::audit::audit_entry;
use super::calls::{CreatePush, PushRef, TaskRef};
use super::{Call, Webhooks};
use crate::access::Action;
use crate::error::Error;

/// A task's configs at most: each is a POST per update.
pub const MAX_PUSHES_PER_TASK: usize = 10;

const MAX_CONFIG_ID: usize = 64;

impl Webhooks {
    /// Registers (or, for a config id the task has, replaces) a config.
    pub async fn create_task_push(&self, call: Call<CreatePush>) -> Result<Webhook, Error> {
        const ACTION: &str = "task.push.create";
        let caller = self.cx.permit_tasks(&call, Action::WriteTasks, ACTION)?;
        let request = call.into_message();
        let task_id = request.task_id.clone();
        let created = async {
            let task = self.cx.load(&request.task_id, &caller).await?;
            let config_id = match request.config_id.as_str() {
                "" => ulid::Ulid::new().to_string().to_lowercase(),
                id if id.len() <= MAX_CONFIG_ID
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    id.to_string()
                }
                id => {
                    return Err(Error::invalid(
                        "id",
                        format!(
                            "{id:?}: a config id is 1 to {MAX_CONFIG_ID} letters, digits, '-', \
                             '_' and '.'"
                        ),
                    ));
                }
            };
            let existing = self.pushes_of(&task.tenant, &task.id).await?;
            let replaced = existing
                .iter()
                .find(|w| w.push.as_ref().is_some_and(|p| p.config_id == config_id));
            if replaced.is_none() && existing.len() >= MAX_PUSHES_PER_TASK {
                return Err(Error::invalid(
                    "taskId",
                    format!(
                        "task {} has {} push configs; the limit is {MAX_PUSHES_PER_TASK}",
                        task.id,
                        existing.len()
                    ),
                ));
            }
            if !request.auth_credentials.is_empty() && request.auth_scheme.is_empty() {
                return Err(Error::invalid(
                    "authentication.scheme",
                    "credentials need their scheme (Bearer, Basic…)",
                ));
            }
            let push = TaskPush {
                task_id: task.id.clone(),
                config_id,
                token: request.token,
                auth_scheme: request.auth_scheme,
                auth_credentials: request.auth_credentials,
            };
            // Checked and stored first: a refused URL leaves the old one.
            let webhook = self
                .cx
                .webhooks
                .create_push(task.tenant.clone(), request.url, push)
                .await?;
            if let Some(old) = replaced {
                self.cx
                    .webhooks
                    .remove(&old.id, Some(&[task.tenant]))
                    .await?;
            }
            Ok(webhook)
        }
        .await;
        let webhook = self
            .cx
            .refusal_audited(&caller, ACTION, &task_id, created)?;
        // Where updates go, never the token or credentials.
        let entry = audit_entry(
            &caller,
            ACTION,
            &webhook.tenant,
            &task_id,
            "ok",
            webhook.url.clone(),
        );
        self.cx.record(vec![entry]);
        Ok(webhook)
    }

    /// The task's configs.
    pub async fn task_pushes(&self, call: Call<TaskRef>) -> Result<Vec<Webhook>, Error> {
        let caller = call.require_tasks(Action::ReadTasks)?;
        let task = self.cx.load(&call.into_message().task_id, &caller).await?;
        self.pushes_of(&task.tenant, &task.id).await
    }

    /// Removes one of the task's configs (its undelivered updates with it).
    pub async fn delete_task_push(&self, call: Call<PushRef>) -> Result<(), Error> {
        const ACTION: &str = "task.push.delete";
        let caller = self.cx.permit_tasks(&call, Action::WriteTasks, ACTION)?;
        let PushRef { task_id, config_id } = call.into_message();
        let removed = async {
            let task = self.cx.load(&task_id, &caller).await?;
            let found = self
                .pushes_of(&task.tenant, &task.id)
                .await?
                .into_iter()
                .find(|w| w.push.as_ref().is_some_and(|p| p.config_id == config_id))
                .ok_or_else(|| {
                    Error::NotFound(format!("push config {config_id:?} of task {task_id}"))
                })?;
            self.cx
                .webhooks
                .remove(&found.id, Some(std::slice::from_ref(&task.tenant)))
                .await?;
            Ok(task.tenant)
        }
        .await;
        self.cx.audited(&caller, ACTION, &task_id, removed)
    }

    /// Whether a push config's URL would be taken, before anything is
    /// made with it (a message asking for pushes is refused whole).
    pub async fn check_push_url(&self, call: Call<String>) -> Result<(), Error> {
        call.require_tasks(Action::WriteTasks)?;
        self.cx.webhooks.check_url(&call.into_message()).await
    }

    async fn pushes_of(&self, tenant: &str, task_id: &str) -> Result<Vec<Webhook>, Error> {
        Ok(self
            .cx
            .webhooks
            .list(Some(&[tenant.to_string()]))
            .await?
            .into_iter()
            .filter(|w| w.push.as_ref().is_some_and(|p| p.task_id == task_id))
            .collect())
    }
}
