//! CreateTrigger, ListTriggers, GetTrigger and DeleteTrigger: checked,
//! stored and audited here. Then what a forge's checked delivery does,
//! which the hooks call: each trigger whose event it is starts its
//! template's task as the trigger's tenant, under the delivery's id as the
//! idempotency key, so a redelivery (or a delivery a new leader handles
//! again) finds the task instead of making another. A comment command is
//! taken only from a user the forge says may write to the repository;
//! anyone else is answered on the pull request, and nothing starts. And
//! the replies the leader's loop posts: once a triggered task has ended,
//! its result (state, cost, duration, pull request) as a comment where the
//! event happened.

use std::fmt::Write as _;

use tidewright_core::calendar::now_micros;
use tidewright_core::trigger::{self, Event, TriggerSpec, What};
use tidewright_store::Write;
use tidewright_store::triggers::{Reply, Trigger, TriggerRun};

use super::audit::audit_entry;
use super::calls::Submit;
use super::repos::ForgeProject;
use super::{Call, Triggers};
use crate::access::{Action, Identity, Role, Tenants};
use crate::error::Error;

/// A trigger of a tenant, by name.
#[derive(Debug, Clone, Default)]
pub struct TriggerRef {
    /// Empty for the caller's first.
    pub tenant: String,
    pub name: String,
}

/// CreateTrigger.
#[derive(Debug, Clone, Default)]
pub struct CreateTrigger {
    /// Empty for the caller's first.
    pub tenant: String,
    pub spec: TriggerSpec,
}

/// A forge's delivery, checked by the hook's secret.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The forge's id of it.
    pub id: String,
    pub event: Event,
}

/// What one trigger made of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub tenant: String,
    pub trigger: String,
    /// The task it started (or found started by this delivery before).
    pub task_id: String,
    /// Why it started none.
    pub refused: String,
}

/// The label every task a trigger starts carries, naming it.
pub const TRIGGER_LABEL: &str = "trigger";

impl Triggers {
    pub async fn create_trigger(&self, call: Call<CreateTrigger>) -> Result<Trigger, Error> {
        const ACTION: &str = "trigger.create";
        let caller = self.cx.permit(&call, Action::WriteTasks, ACTION)?;
        let CreateTrigger { tenant, spec } = call.into_message();
        let created = async {
            let _writing = self.cx.trigger_writes.lock().await;
            let tenant = caller.tenant_for(&tenant, "tenant", "start tasks in")?;
            trigger::validate(&spec).map_err(Error::from)?;
            self.cx
                .templates
                .find(spec.template())
                .map_err(|e| match e {
                    Error::NotFound(message) => Error::invalid("template", message),
                    other => other,
                })?;
            if self.cx.store.trigger(&tenant, &spec.name).await?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "trigger {:?} of tenant {tenant:?} exists; delete it first",
                    spec.name
                )));
            }
            let made = Trigger {
                tenant,
                spec,
                created_at: now_micros(),
                history: Vec::new(),
                replies: Vec::new(),
            };
            self.cx
                .commit(vec![Write::Trigger(Box::new(made.clone()))])
                .await?;
            Ok(made)
        }
        .await;
        let target = created
            .as_ref()
            .map(|t| t.spec.name.clone())
            .unwrap_or_default();
        let made = self.cx.refusal_audited(&caller, ACTION, &target, created)?;
        let detail = format!(
            "{} {} {} -> {}",
            made.spec.forge.as_str(),
            made.spec.repository,
            made.spec.event.as_str(),
            made.spec.template()
        );
        let entry = audit_entry(&caller, ACTION, &made.tenant, &made.spec.name, "ok", detail);
        self.cx.record(vec![entry]);
        Ok(made)
    }

    pub async fn list_triggers(&self, call: Call<()>) -> Result<Vec<Trigger>, Error> {
        let caller = call.require(Action::ReadTasks)?;
        let mut all = self.cx.store.triggers().await?;
        all.retain(|t| caller.can_see(&t.tenant));
        Ok(all)
    }

    pub async fn get_trigger(&self, call: Call<TriggerRef>) -> Result<Trigger, Error> {
        let caller = call.require(Action::ReadTasks)?;
        self.find(&caller, &call.into_message()).await
    }

    pub async fn delete_trigger(&self, call: Call<TriggerRef>) -> Result<(), Error> {
        const ACTION: &str = "trigger.delete";
        let caller = self.cx.permit(&call, Action::WriteTasks, ACTION)?;
        let wanted = call.into_message();
        let removed = async {
            let _writing = self.cx.trigger_writes.lock().await;
            let found = self.find(&caller, &wanted).await?;
            self.cx
                .commit(vec![Write::RemoveTrigger {
                    tenant: found.tenant.clone(),
                    name: found.spec.name.clone(),
                }])
                .await?;
            Ok(found)
        }
        .await;
        let found = self
            .cx
            .refusal_audited(&caller, ACTION, &wanted.name, removed)?;
        let entry = audit_entry(
            &caller,
            ACTION,
            &found.tenant,
            &found.spec.name,
            "ok",
            String::new(),
        );
        self.cx.record(vec![entry]);
        Ok(())
    }

    /// What a checked delivery does: each trigger whose event it is starts
    /// its task, or says why not. Audited per trigger, as the trigger. A
    /// forge or store that does not answer fails the whole delivery, to be
    /// delivered again.
    pub async fn deliver(&self, delivery: Delivery) -> Result<Vec<Fired>, Error> {
        let _writing = self.cx.trigger_writes.lock().await;
        let mut fired = Vec::new();
        for mut found in self.cx.store.triggers().await? {
            if !found.spec.matches(&delivery.event) {
                continue;
            }
            let outcome = self.start(&found, &delivery).await;
            let (task_id, refused) = match outcome {
                Ok(task_id) => (task_id, String::new()),
                // Not this delivery's fault (the forge or the store did not
                // answer): it fails, so the forge delivers it again; what
                // it started already is found by its key then.
                Err(e @ (Error::Unavailable(_) | Error::ShuttingDown | Error::Internal(_))) => {
                    return Err(e);
                }
                Err(e) => (String::new(), e.to_string()),
            };
            // A redelivery finds the task its first delivery started: the
            // reply is owed once.
            let again = found.history.iter().any(|r| r.delivery == delivery.id);
            found.remember(TriggerRun {
                delivery: delivery.id.clone(),
                task_id: task_id.clone(),
                refused: refused.clone(),
                at: now_micros(),
            });
            if let (false, false, Some(number)) =
                (task_id.is_empty(), again, delivery.event.number())
            {
                found.replies.push(Reply {
                    task_id: task_id.clone(),
                    number,
                    on_pull_request: delivery.event.on_pull_request(),
                });
            }
            self.cx
                .commit(vec![Write::Trigger(Box::new(found.clone()))])
                .await?;
            let actor = trigger_identity(&found);
            let outcome = if refused.is_empty() {
                "ok".to_string()
            } else {
                format!("refused: {refused}")
            };
            let entry = audit_entry(
                &actor,
                "trigger.fire",
                &found.tenant,
                &task_id,
                &outcome,
                format!("trigger {}, delivery {}", found.spec.name, delivery.id),
            );
            self.cx.record(vec![entry]);
            fired.push(Fired {
                tenant: found.tenant.clone(),
                trigger: found.spec.name.clone(),
                task_id,
                refused,
            });
        }
        Ok(fired)
    }

    /// Starts `found`'s task for `delivery`; its id. A comment from one who
    /// may not write to the repository is answered there and refused.
    async fn start(&self, found: &Trigger, delivery: &Delivery) -> Result<String, Error> {
        let spec = &found.spec;
        let event = &delivery.event;
        let at = forge_project(found);
        let mut event = event.clone();
        if let What::Comment { number, branch, .. } = &mut event.what {
            let may = self
                .cx
                .repositories
                .may_write(&at, &event.sender, event.sender_id)
                .await?;
            if !may {
                let refusal = format!(
                    "@{} may not start tidewright tasks here: a comment command is taken from users with write access to {} only.",
                    event.sender, spec.repository
                );
                self.cx
                    .repositories
                    .comment(&at, *number, true, &refusal)
                    .await?;
                return Err(Error::PermissionDenied(format!(
                    "{} has no write access to {}",
                    event.sender, spec.repository
                )));
            }
            if branch.is_empty() {
                *branch = self.cx.repositories.pull_branch(&at, *number).await?;
            }
        }
        let template = self.cx.templates.find(spec.template())?;
        let declared: Vec<&str> = template.parameters.keys().map(String::as_str).collect();
        let given: Vec<(String, String)> = spec.params_for(&event, &declared).into_iter().collect();
        let mut task = template.render(&given)?;
        task.labels
            .insert(TRIGGER_LABEL.to_string(), spec.name.clone());
        let request = Submit {
            spec: Some(task),
            idempotency_key: format!("trigger/{}/{}", spec.name, delivery.id),
            tenant: found.tenant.clone(),
        };
        let mut submitted = self
            .cx
            .submit(vec![request], false, &trigger_identity(found))
            .await?;
        submitted
            .pop()
            .map(|s| s.task_id)
            .ok_or_else(|| Error::Internal("no task was created".into()))
    }

    /// Posts the result of each triggered task that has ended where its
    /// event happened, and forgets the reply once posted; one the forge
    /// refuses stays owed and is tried again at the next call. The
    /// leader's loop calls it.
    pub async fn post_replies(&self) -> Result<usize, Error> {
        let mut posted = 0;
        for found in self.cx.store.triggers().await? {
            if found.replies.is_empty() {
                continue;
            }
            let at = forge_project(&found);
            let mut done = Vec::new();
            for reply in &found.replies {
                let task = self.cx.store.get_task(&reply.task_id).await?;
                let body = match &task {
                    Some(task) if !task.state.is_terminal() => continue,
                    Some(task) => result_comment(task),
                    // Expired before its reply: nothing left to tell.
                    None => {
                        done.push(reply.task_id.clone());
                        continue;
                    }
                };
                match self
                    .cx
                    .repositories
                    .comment(&at, reply.number, reply.on_pull_request, &body)
                    .await
                {
                    Ok(()) => {
                        done.push(reply.task_id.clone());
                        posted += 1;
                    }
                    Err(e) => {
                        tracing::warn!(trigger = %found.spec.name, task = %reply.task_id, error = %e, "posting a triggered task's result")
                    }
                }
            }
            if done.is_empty() {
                continue;
            }
            // Read again under the lock: a delivery may have added a reply
            // since.
            let _writing = self.cx.trigger_writes.lock().await;
            if let Some(mut now) = self
                .cx
                .store
                .trigger(&found.tenant, &found.spec.name)
                .await?
            {
                now.replies.retain(|r| !done.contains(&r.task_id));
                self.cx.commit(vec![Write::Trigger(Box::new(now))]).await?;
            }
        }
        Ok(posted)
    }

    async fn find(&self, caller: &Identity, wanted: &TriggerRef) -> Result<Trigger, Error> {
        let tenant = caller.tenant_for(&wanted.tenant, "tenant", "see triggers of")?;
        self.cx
            .store
            .trigger(&tenant, &wanted.name)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("no trigger {:?} in tenant {tenant:?}", wanted.name))
            })
    }
}

/// Who a trigger's tasks are started by: a developer of its tenant alone.
fn trigger_identity(found: &Trigger) -> Identity {
    Identity {
        name: format!("trigger {}", found.spec.name),
        role: Role::Developer,
        tenants: Tenants::Only(vec![found.tenant.clone()]),
        step: None,
    }
}

fn forge_project(found: &Trigger) -> ForgeProject {
    ForgeProject {
        forge: found.spec.forge.clone(),
        api: found.spec.api_root().to_string(),
        project: found.spec.repository.clone(),
        secret: found.spec.secret().to_string(),
    }
}

/// A triggered task's result, as its comment says it: how it ended, what
/// it cost, how long it took, and its pull request.
pub fn result_comment(task: &tidewright_store::TaskRecord) -> String {
    let mut body = format!(
        "tidewright task `{}` ({}) {}",
        task.spec.name,
        task.id,
        task.state.as_str()
    );
    if !task.message.is_empty() {
        let _ = write!(body, ": {}", task.message);
    }
    body.push_str("\n\n");
    let seconds = (task.finished_at - task.started_at.max(task.created_at)).max(0) / 1_000_000;
    let _ = write!(
        body,
        "- cost: ${:.2}\n- duration: {}m {:02}s\n",
        task.cost.usd,
        seconds / 60,
        seconds % 60
    );
    let pull = task
        .steps
        .iter()
        .filter_map(|s| s.work.as_ref())
        .map(|w| w.pull_request_url.as_str())
        .find(|u| !u.is_empty());
    if let Some(url) = pull {
        let _ = writeln!(body, "- pull request: {url}");
    }
    body
}
