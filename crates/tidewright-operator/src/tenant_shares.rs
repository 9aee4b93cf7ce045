//! The TenantShare controller: keeps the control plane's share of each
//! `TenantShare`'s tenant (the resource's name) as the resource says, and
//! mirrors the tenant's steps running and waiting into the status every
//! half minute. Deleting the resource puts the tenant back to the default
//! share (weight 1, no cap, no fairness key).
//!
//! Setting a share is an admin's call on the control plane, as a
//! cluster-scoped resource is a cluster admin's to write: the operator's
//! token has the admin role for it (see the chart's `secrets.yaml`).

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
use crate::crd::{TidewrightTenantShare, TidewrightTenantShareStatus};
use crate::error::Error;

/// Held on every TenantShare until its tenant's share is back to the
/// default.
pub const FINALIZER: &str = "tidewright.dev/reset-share";
/// The status's counts are read again this often.
const REFRESH: Duration = Duration::from_secs(30);

pub async fn reconcile(
    share: Arc<TidewrightTenantShare>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let api: Api<TidewrightTenantShare> = Api::all(ctx.kube.clone());
    finalizer(&api, FINALIZER, share, |event| async {
        match event {
            finalizer::Event::Apply(share) => apply(share, &api, &ctx).await,
            finalizer::Event::Cleanup(share) => cleanup(share, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// The control plane's call the resource asks for.
pub fn desired(share: &TidewrightTenantShare) -> v1::SetTenantShareRequest {
    v1::SetTenantShareRequest {
        tenant: share.name_any(),
        weight: share.spec.weight.map(i64::from),
        max_running: share.spec.max_running.map(i64::from),
        fairness_key: share.spec.fairness_key.clone(),
    }
}

async fn apply(
    share: Arc<TidewrightTenantShare>,
    api: &Api<TidewrightTenantShare>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let previous = share.status.clone().unwrap_or_default();
    let generation = share.metadata.generation;
    // Set on each reconcile: the call is idempotent, and a control plane
    // that lost it (a restore from before it) gets it back.
    let status = match ctx
        .control_plane
        .tasks()
        .set_tenant_share(desired(&share))
        .await
    {
        Ok(set) => {
            let set = set.into_inner();
            TidewrightTenantShareStatus {
                running: set.running,
                waiting: set.waiting,
                message: None,
                observed_generation: generation,
            }
        }
        Err(s) if s.code() == Code::InvalidArgument => TidewrightTenantShareStatus {
            message: Some(format!(
                "the control plane refused the share: {}",
                s.message()
            )),
            observed_generation: generation,
            ..TidewrightTenantShareStatus::default()
        },
        Err(s) => return Err(s.into()),
    };
    let refused = status.message.is_some();
    if previous != status {
        // A merge patch leaves out what is absent: a refusal once fixed is
        // cleared.
        let mut fields = serde_json::to_value(&status).unwrap_or_default();
        if let Some(fields) = fields.as_object_mut() {
            fields.entry("message").or_insert(serde_json::Value::Null);
        }
        api.patch_status(
            &share.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": fields })),
        )
        .await?;
    }
    Ok(if refused {
        // Nothing to retry until the resource changes.
        Action::await_change()
    } else {
        Action::requeue(REFRESH)
    })
}

async fn cleanup(share: Arc<TidewrightTenantShare>, ctx: &Arc<Context>) -> Result<Action, Error> {
    let reset = v1::SetTenantShareRequest {
        tenant: share.name_any(),
        ..v1::SetTenantShareRequest::default()
    };
    match ctx.control_plane.tasks().set_tenant_share(reset).await {
        Ok(_) => {}
        // A name that is no tenant never had a share to reset.
        Err(s) if s.code() == Code::InvalidArgument => {}
        Err(s) => return Err(s.into()),
    }
    Ok(Action::await_change())
}
