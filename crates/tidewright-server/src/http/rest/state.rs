//! Shared state, read over HTTP (a step writes it over gRPC).

use tidewright_api::view::format_utc;
use tidewright_engine::service::{GetState, ListState, StateRef};
use tidewright_store::{StateEntry, StateKey};

use super::*;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StateView {
    tenant: String,
    scope: String,
    key: String,
    #[schema(value_type = Value)]
    value: serde_json::Value,
    version: u64,
    updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatePage {
    values: Vec<StateView>,
    /// When more may follow: pass it as `after`.
    #[serde(skip_serializing_if = "String::is_empty")]
    next_after: String,
}

fn state_view((key, entry): (StateKey, StateEntry)) -> StateView {
    StateView {
        tenant: key.tenant,
        scope: key.scope,
        key: key.key,
        value: serde_json::from_str(&entry.value_json)
            .unwrap_or(serde_json::Value::String(entry.value_json)),
        version: entry.version,
        updated_at: Some(format_utc(entry.updated_at)),
        // 0: the value never expires.
        expires_at: (entry.expires_at != 0).then(|| format_utc(entry.expires_at)),
    }
}

/// `?tenant=…&after=KEY&pageSize=N`: a scope's values in key order.
#[utoipa::path(get, path = "/state/{scope}", tag = "state",
    summary = "A scope's shared-state values, in key order (ListState)",
    params(
        ("scope" = String, Path),
        ("tenant" = Option<String>, Query, description = "the caller's first tenant when absent"),
        ("after" = Option<String>, Query, description = "keys after this one"),
        ("pageSize" = Option<u32>, Query, maximum = 1000, description = "at most this many (default 100, at most 1000; more is refused)"),
    ),
    responses((status = 200, body = StatePage), Refused))]
pub(super) async fn list_state(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(scope): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<StatePage> {
    let mut request = ListState {
        scope,
        ..ListState::default()
    };
    for (name, value) in query {
        match name.as_str() {
            "tenant" => request.tenant = value,
            "after" => request.after_key = value,
            "pageSize" => request.page_size = number(&name, &value)?,
            other => return Err(Error::invalid(other, "not an option of a state listing").into()),
        }
    }
    let page = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.state.list_state(r).await
    })
    .await?;
    Ok(Json(StatePage {
        values: page.values.into_iter().map(state_view).collect(),
        next_after: page.next_after_key,
    }))
}

/// `?tenant=…` for a tenant other than the caller's first.
#[utoipa::path(get, path = "/state/{scope}/{key}", tag = "state",
    summary = "A shared-state value (GetState)",
    params(
        ("scope" = String, Path), ("key" = String, Path),
        ("tenant" = Option<String>, Query, description = "the caller's first tenant when absent"),
    ),
    responses((status = 200, body = StateView), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn get_state(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((scope, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<StateView> {
    let request = GetState {
        reference: Some(StateRef {
            tenant: query.get("tenant").cloned().unwrap_or_default(),
            scope,
            key,
        }),
    };
    let value = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.state.get_state(r).await
    })
    .await?;
    Ok(Json(state_view(value)))
}
