//! The Trigger controller: keeps the control plane's trigger of each
//! `Trigger` (same name, the namespace's tenant) as the resource says, and
//! mirrors what its last delivery did into the status. The control plane
//! takes the forge's deliveries and starts the tasks; the operator only
//! creates, replaces and removes the trigger. A changed resource replaces
//! it: a delivery already taken keeps its task (its idempotency key names
//! the trigger and the delivery, not the trigger's version). Deleting the
//! resource deletes the trigger; its tasks stay.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;
use tidewright_api::v1;
use tonic::Code;

use crate::context::Context;
use crate::crd::{TidewrightTrigger, TidewrightTriggerStatus};
use crate::error::Error;

/// Held on every Trigger until its trigger is deleted.
pub const FINALIZER: &str = "tidewright.dev/delete-trigger";
/// The status is read again this often: deliveries come when they come.
const REFRESH: Duration = Duration::from_secs(30);

fn namespace(trigger: &TidewrightTrigger) -> Result<String, Error> {
    trigger.namespace().ok_or_else(|| Error::Resource {
        kind: "Trigger",
        name: trigger.name_any(),
        problem: "has no namespace".into(),
    })
}

pub async fn reconcile(
    trigger: Arc<TidewrightTrigger>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let api: Api<TidewrightTrigger> = Api::namespaced(ctx.kube.clone(), &namespace(&trigger)?);
    finalizer(&api, FINALIZER, trigger, |event| async {
        match event {
            finalizer::Event::Apply(trigger) => apply(trigger, &api, &ctx).await,
            finalizer::Event::Cleanup(trigger) => cleanup(trigger, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

async fn apply(
    trigger: Arc<TidewrightTrigger>,
    api: &Api<TidewrightTrigger>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let previous = trigger.status.clone().unwrap_or_default();
    let tenant = namespace(&trigger)?;
    let kept = keep(&tenant, desired(&trigger), ctx).await?;
    let status = match &kept {
        Ok(found) => status_of(found, trigger.metadata.generation),
        Err(refusal) => TidewrightTriggerStatus {
            message: Some(format!("the control plane refused the trigger: {refusal}")),
            observed_generation: trigger.metadata.generation,
            ..TidewrightTriggerStatus::default()
        },
    };
    if previous != status {
        // A merge patch leaves out what is absent: a field that went away
        // (the refusal once fixed) is cleared.
        let mut fields = serde_json::to_value(&status).unwrap_or_default();
        if let Some(fields) = fields.as_object_mut() {
            for key in ["lastDelivery", "lastTaskId", "lastRefused", "message"] {
                fields.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        api.patch_status(
            &trigger.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": fields })),
        )
        .await?;
    }
    Ok(match kept {
        Ok(_) => Action::requeue(REFRESH),
        // Nothing to retry until the resource changes.
        Err(_) => Action::await_change(),
    })
}

/// The trigger the resource asks for, as the control plane answers one
/// (its template filled in with its event's when it names none), so an
/// unchanged resource compares equal to what is there.
fn desired(trigger: &TidewrightTrigger) -> v1::TriggerSpec {
    let spec = &trigger.spec;
    let template = match spec.template.as_str() {
        "" => spec.event.built_in_template(),
        named => named,
    };
    v1::TriggerSpec {
        name: trigger.name_any(),
        forge: spec.forge.as_str().to_string(),
        repository: spec.repository.clone(),
        event: spec.event.as_str().to_string(),
        label: spec.label.clone(),
        command: spec.command.clone(),
        branch: spec.branch.clone(),
        template: template.to_string(),
        params: spec.parameters.clone().into_iter().collect(),
        credentials_secret: spec.credentials_secret.clone(),
        api_url: spec.api_url.clone(),
    }
}

/// Makes the control plane's trigger `wanted`: creates it, or replaces it.
/// `Ok(Err(why))` when the control plane refuses it (no such template, a
/// repository that is not owner/name...).
async fn keep(
    tenant: &str,
    wanted: v1::TriggerSpec,
    ctx: &Context,
) -> Result<Result<v1::Trigger, String>, Error> {
    let mut client = ctx.control_plane.tasks();
    let named = v1::TriggerRequest {
        tenant: tenant.to_string(),
        name: wanted.name.clone(),
    };
    match client.get_trigger(named.clone()).await {
        Ok(found) if found.get_ref().spec.as_ref() == Some(&wanted) => {
            return Ok(Ok(found.into_inner()));
        }
        Ok(_) => match client.delete_trigger(named).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(s.into()),
        },
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(s.into()),
    }
    let request = v1::CreateTriggerRequest {
        tenant: tenant.to_string(),
        spec: Some(wanted),
    };
    match client.create_trigger(request).await {
        Ok(made) => Ok(Ok(made.into_inner())),
        Err(s) if matches!(s.code(), Code::InvalidArgument | Code::FailedPrecondition) => {
            Ok(Err(s.message().to_string()))
        }
        Err(s) => Err(s.into()),
    }
}

/// The resource's status from the control plane's trigger.
pub fn status_of(found: &v1::Trigger, generation: Option<i64>) -> TidewrightTriggerStatus {
    let last = found.history.last();
    let text = |t: &str| (!t.is_empty()).then(|| t.to_string());
    TidewrightTriggerStatus {
        last_delivery: last.map(|run| run.delivery.clone()),
        last_task_id: last.and_then(|run| text(&run.task_id)),
        last_refused: last.and_then(|run| text(&run.refused)),
        message: None,
        observed_generation: generation,
    }
}

async fn cleanup(trigger: Arc<TidewrightTrigger>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let request = v1::TriggerRequest {
        tenant: namespace(&trigger)?,
        name: trigger.name_any(),
    };
    match ctx.control_plane.tasks().delete_trigger(request).await {
        // Gone already (or never made: it was refused).
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound => {}
        Err(s) => return Err(s.into()),
    }
    Ok(Action::await_change())
}
