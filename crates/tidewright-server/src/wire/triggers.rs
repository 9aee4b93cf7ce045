//! Triggers' messages and the services' calls, each way.

use tidewright_api::convert::timestamp;
use tidewright_api::v1;
use tidewright_core::repo::Forge;
use tidewright_core::trigger::{TriggerEvent, TriggerSpec};
use tidewright_engine::service::{CreateTrigger, TriggerRef};
use tidewright_store::triggers::Trigger;

use crate::error::Error;

/// A trigger as asked; an event it does not know is refused naming it.
pub fn create_trigger(request: v1::CreateTriggerRequest) -> Result<CreateTrigger, Error> {
    let spec = request
        .spec
        .ok_or_else(|| Error::invalid("spec", "required"))?;
    let event = TriggerEvent::parse(&spec.event).ok_or_else(|| {
        Error::invalid(
            "event",
            format!(
                "{:?} is not an event triggers start on: issueLabeled, comment or checkFailed",
                spec.event
            ),
        )
    })?;
    Ok(CreateTrigger {
        tenant: request.tenant,
        spec: TriggerSpec {
            name: spec.name,
            forge: Forge::parse(&spec.forge),
            repository: spec.repository,
            event,
            label: spec.label,
            command: spec.command,
            branch: spec.branch,
            template: spec.template,
            params: spec.params.into_iter().collect(),
            credentials_secret: spec.credentials_secret,
            api_url: spec.api_url,
        },
    })
}

pub fn trigger_ref(request: v1::TriggerRequest) -> TriggerRef {
    TriggerRef {
        tenant: request.tenant,
        name: request.name,
    }
}

pub fn trigger(trigger: Trigger) -> v1::Trigger {
    let spec = trigger.spec;
    // The template it starts, its event's own when it names none.
    let template = spec.template().to_string();
    v1::Trigger {
        tenant: trigger.tenant,
        spec: Some(v1::TriggerSpec {
            name: spec.name,
            forge: spec.forge.as_str().to_string(),
            repository: spec.repository,
            event: spec.event.as_str().to_string(),
            label: spec.label,
            command: spec.command,
            branch: spec.branch,
            template,
            params: spec.params.into_iter().collect(),
            credentials_secret: spec.credentials_secret,
            api_url: spec.api_url,
        }),
        created_at: Some(timestamp(trigger.created_at)),
        history: trigger
            .history
            .into_iter()
            .map(|run| v1::TriggerRun {
                delivery: run.delivery,
                task_id: run.task_id,
                refused: run.refused,
                at: Some(timestamp(run.at)),
            })
            .collect(),
        replies_owed: trigger.replies.into_iter().map(|r| r.task_id).collect(),
    }
}

pub fn triggers(triggers: Vec<Trigger>) -> v1::ListTriggersResponse {
    v1::ListTriggersResponse {
        triggers: triggers.into_iter().map(trigger).collect(),
    }
}
