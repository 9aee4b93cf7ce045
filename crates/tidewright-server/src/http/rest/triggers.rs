//! The trigger routes: a forge's event on a repository starts a template's
//! task; create, list, read and remove one.

use tidewright_api::view::{TriggerView, trigger_view};
use tidewright_engine::service::{CreateTrigger, TriggerRef};

use super::*;

#[derive(Serialize, ToSchema)]
pub(super) struct TriggerList {
    triggers: Vec<TriggerView>,
}

#[derive(Deserialize)]
pub(super) struct TenantQuery {
    #[serde(default)]
    tenant: String,
}

fn view(trigger: tidewright_store::triggers::Trigger) -> Json<TriggerView> {
    Json(trigger_view(&wire::trigger(trigger)))
}

#[utoipa::path(get, path = "/triggers", tag = "triggers",
    summary = "The triggers of the tenants the caller may see, with their history (ListTriggers)",
    responses((status = 200, body = TriggerList), Refused))]
pub(super) async fn list_triggers(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Answer<TriggerList> {
    let list = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.triggers.list_triggers(r).await
    })
    .await?;
    Ok(Json(TriggerList {
        triggers: wire::triggers(list)
            .triggers
            .iter()
            .map(trigger_view)
            .collect(),
    }))
}

/// The body is a trigger file, YAML or JSON: `name`, `forge`,
/// `repository`, `event` (issueLabeled, comment, checkFailed), `label`,
/// `command` or `branch`, `template`, `params`, `credentialsSecret`,
/// `apiUrl`.
#[utoipa::path(post, path = "/triggers", tag = "triggers",
    summary = "Create a trigger (CreateTrigger)",
    request_body(content = String, content_type = "application/yaml",
        description = "a trigger, YAML or JSON: {\"name\": \"issues\", \"forge\": \"github\", \"repository\": \"acme/app\", \"event\": \"issueLabeled\", \"template\": \"fix-issue\"}"),
    params(("tenant" = Option<String>, Query, description = "the tenant; the caller's first when absent")),
    responses((status = 201, description = "created", body = TriggerView),
        (status = 409, description = "the tenant has a trigger of that name", body = ErrorBody), Refused))]
pub(super) async fn create_trigger(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<TenantQuery>,
    body: Result<String, StringRejection>,
) -> Result<(StatusCode, Json<TriggerView>), ApiError> {
    let spec: tidewright_core::trigger::TriggerSpec = yaml_body(&headers, body, "a trigger")?;
    let request = CreateTrigger {
        tenant: query.tenant,
        spec,
    };
    let made = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.triggers.create_trigger(r).await
    })
    .await?;
    Ok((StatusCode::CREATED, view(made)))
}

#[utoipa::path(get, path = "/triggers/{name}", tag = "triggers",
    summary = "A trigger with its history and the replies it owes (GetTrigger)",
    params(("name" = String, Path, description = "the trigger's name"),
        ("tenant" = Option<String>, Query, description = "its tenant; the caller's first when absent")),
    responses((status = 200, body = TriggerView), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn get_trigger(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Answer<TriggerView> {
    let request = TriggerRef {
        tenant: query.tenant,
        name,
    };
    let found = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.triggers.get_trigger(r).await
    })
    .await?;
    Ok(view(found))
}

#[utoipa::path(delete, path = "/triggers/{name}", tag = "triggers",
    summary = "Remove a trigger; the tasks it started stay (DeleteTrigger)",
    params(("name" = String, Path, description = "the trigger's name"),
        ("tenant" = Option<String>, Query, description = "its tenant; the caller's first when absent")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn delete_trigger(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Result<StatusCode, ApiError> {
    let request = TriggerRef {
        tenant: query.tenant,
        name,
    };
    call(&app, &headers, Access::Change, request, |s, r| async move {
        s.triggers.delete_trigger(r).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
