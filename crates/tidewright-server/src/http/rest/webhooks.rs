//! The webhook routes (admins only): register a tenant's endpoint, list and
//! remove them, and read the delivery log.

use tidewright_api::view::{DeliveryView, WebhookView, delivery_view, webhook_view};
use tidewright_engine::service::{CreateWebhook, ListDeliveries, WebhookRef};

use super::*;

/// The events an endpoint may ask for (`EVENT_TYPES`).
#[derive(ToSchema)]
#[allow(dead_code)] // The document's: requests carry the names.
pub(super) enum WebhookEvent {
    #[schema(rename = "task.succeeded")]
    TaskSucceeded,
    #[schema(rename = "task.failed")]
    TaskFailed,
    #[schema(rename = "task.cancelled")]
    TaskCancelled,
    #[schema(rename = "task.paused")]
    TaskPaused,
    #[schema(rename = "step.failed")]
    StepFailed,
    #[schema(rename = "step.verified")]
    StepVerified,
    #[schema(rename = "step.verification_failed")]
    StepVerificationFailed,
    #[schema(rename = "step.failed_over")]
    StepFailedOver,
    #[schema(rename = "task.landed")]
    TaskLanded,
    #[schema(rename = "task.landing_failed")]
    TaskLandingFailed,
    #[schema(rename = "approval.requested")]
    ApprovalRequested,
    #[schema(rename = "schedule.fired")]
    ScheduleFired,
    #[schema(rename = "schedule.skipped")]
    ScheduleSkipped,
}

/// An endpoint to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookBody {
    /// http:// or https://, with a host and no user in it; a host that
    /// resolves, and to a private network only where the server allows it.
    #[schema(
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#]+(?:[/?#].*)?$"
    )]
    url: String,
    /// Which events to receive: task.succeeded, task.failed,
    /// task.cancelled, task.paused, step.failed, step.verified,
    /// step.verification_failed, step.failed_over, task.landed,
    /// task.landing_failed, approval.requested, schedule.fired,
    /// schedule.skipped.
    #[schema(min_items = 1, inline, value_type = Vec<WebhookEvent>)]
    events: Vec<String>,
    /// A Standard Webhooks secret, `whsec_` and the base64 of a 24 to 64
    /// byte key: the receiver verifies each delivery with it (its
    /// `webhook-signature` header) using a Standard Webhooks library.
    // Exactly what the STANDARD base64 engine decodes to 24 to 64 bytes:
    // whole groups, then at most one padded one whose last character
    // leaves no stray bits.
    #[schema(
        pattern = "^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?|(?:[A-Za-z0-9+/]{4}){21}(?:[A-Za-z0-9+/][AQgw]==)?)$"
    )]
    secret: String,
    /// The caller's first tenant when absent.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9-]{0,63}$")]
    tenant: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct WebhookList {
    webhooks: Vec<WebhookView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeliveryPage {
    deliveries: Vec<DeliveryView>,
    /// Empty on the last page.
    #[serde(skip_serializing_if = "String::is_empty")]
    next_page_token: String,
}

#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    summary = "The endpoints of the tenants the caller may see (ListWebhooks; admins)",
    responses((status = 200, body = WebhookList), Refused))]
pub(super) async fn list_webhooks(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Answer<WebhookList> {
    let list = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.webhooks.list_webhooks(r).await
    })
    .await?;
    Ok(Json(WebhookList {
        webhooks: wire::webhooks(list)
            .webhooks
            .iter()
            .map(webhook_view)
            .collect(),
    }))
}

#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    summary = "Register an endpoint for a tenant's events (CreateWebhook; admins)",
    request_body(content = WebhookBody, content_type = "application/json",
        description = "{\"url\": \"https://…\", \"events\": [\"task.failed\"], \"secret\": \"…\"}"),
    responses((status = 201, description = "registered", body = WebhookView), Refused))]
pub(super) async fn create_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    let body: WebhookBody = json_body(body)?;
    let request = CreateWebhook {
        tenant: body.tenant,
        url: body.url,
        events: body.events,
        secret: body.secret,
    };
    let webhook = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.webhooks.create_webhook(r).await
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(webhook_view(&wire::webhook(webhook))),
    ))
}

#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    summary = "Remove an endpoint and its deliveries (DeleteWebhook; admins)",
    params(("id" = String, Path, description = "the endpoint's id")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn delete_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    call(
        &app,
        &headers,
        Access::Change,
        WebhookRef { id },
        |s, r| async move { s.webhooks.delete_webhook(r).await },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?webhook=…&pageSize=50&pageToken=…`
#[utoipa::path(get, path = "/webhook-deliveries", tag = "webhooks",
    summary = "The delivery log, newest first: each delivery's state, tries, last HTTP status and latency (ListWebhookDeliveries; admins)",
    params(
        ("webhook" = Option<String>, Query, description = "only this endpoint's"),
        ("pageSize" = Option<u32>, Query, maximum = 1000, description = "at most this many (default 50, at most 1000; more is refused)"),
        ("pageToken" = Option<String>, Query, description = "from the previous page's nextPageToken"),
    ),
    responses((status = 200, body = DeliveryPage), Refused))]
pub(super) async fn list_deliveries(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<DeliveryPage> {
    let mut request = ListDeliveries::default();
    for (name, value) in query {
        match name.as_str() {
            "webhook" => request.webhook_id = value,
            "pageSize" => request.page_size = number(&name, &value)?,
            "pageToken" => request.page_token = value,
            other => return Err(Error::invalid(other, "not a filter of deliveries").into()),
        }
    }
    let page = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.webhooks.list_webhook_deliveries(r).await
    })
    .await?;
    let page = wire::delivery_page(page);
    Ok(Json(DeliveryPage {
        deliveries: page.deliveries.iter().map(delivery_view).collect(),
        next_page_token: page.next_page_token,
    }))
}
