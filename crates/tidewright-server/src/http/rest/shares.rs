//! The share routes: set a tenant's share of the fleet (admins), and list
//! tenants' shares with their steps running and waiting.

use tidewright_api::view::{TenantShareView, share_view};
use tidewright_engine::service::SetTenantShare;

use super::*;

/// A tenant's weight (1 to 1000), cap on running steps (0 or more) and
/// fairness key (`repo` or `label:<name>`); what is left out is the
/// default: weight 1, no cap, no key.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TenantShareBody {
    #[serde(default, deserialize_with = "whole_signed")]
    #[schema(minimum = 1, maximum = 1000)]
    weight: Option<i64>,
    #[serde(default, deserialize_with = "whole_signed")]
    #[schema(minimum = 0, maximum = 4294967295_i64)]
    max_running: Option<i64>,
    /// `repo`, `label:<name>`, or empty for none.
    #[serde(default)]
    #[schema(pattern = "^(repo|label:[A-Za-z0-9_./-]+)?$")]
    fairness_key: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TenantShareList {
    tenants: Vec<TenantShareView>,
}

#[utoipa::path(put, path = "/tenants/{tenant}/share", tag = "shares",
    summary = "Set a tenant's weight in the fair share and its cap on running steps (SetTenantShare; admins)",
    params(("tenant" = String, Path, description = "the tenant")),
    request_body(content = TenantShareBody, content_type = "application/json", description = "{\"weight\": 3, \"maxRunning\": 50, \"fairnessKey\": \"repo\"}; {} is the default"),
    responses((status = 200, body = TenantShareView), Refused))]
pub(super) async fn set_tenant_share(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Result<String, StringRejection>,
) -> Answer<TenantShareView> {
    let body: TenantShareBody = json_body(body)?;
    let request = SetTenantShare {
        tenant,
        weight: body.weight,
        max_running: body.max_running,
        fairness_key: body.fairness_key,
    };
    let share = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.shares.set_tenant_share(r).await
    })
    .await?;
    Ok(Json(share_view(&wire::share(share))))
}

#[utoipa::path(get, path = "/shares", tag = "shares",
    summary = "Tenants' weights and caps, with their steps running and waiting (ListTenantShares)",
    responses((status = 200, body = TenantShareList), Refused))]
pub(super) async fn list_shares(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Answer<TenantShareList> {
    let list = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.shares.list_tenant_shares(r).await
    })
    .await?;
    Ok(Json(TenantShareList {
        tenants: list
            .into_iter()
            .map(|t| share_view(&wire::share(t)))
            .collect(),
    }))
}
