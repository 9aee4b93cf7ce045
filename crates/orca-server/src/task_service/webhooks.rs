//! CreateWebhook, ListWebhooks, DeleteWebhook and ListWebhookDeliveries:
//! admins' calls, checked and audited here; `crate::webhooks` keeps the
//! endpoints and delivers.

use orca_store::webhooks::{Delivery, DeliveryQuery, Webhook};

use super::*;

/// The delivery log's page when none is asked for, and its most.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

fn to_proto(webhook: Webhook) -> v1::Webhook {
    v1::Webhook {
        id: webhook.id,
        tenant: webhook.tenant,
        url: webhook.url,
        events: webhook.events,
        enabled: webhook.enabled,
        disabled_reason: webhook.disabled_reason,
        created_at: Some(timestamp(webhook.created_at)),
    }
}

fn delivery_to_proto(d: Delivery) -> v1::WebhookDelivery {
    let pending = d.state == orca_store::webhooks::DeliveryState::Pending;
    v1::WebhookDelivery {
        id: d.id,
        webhook_id: d.webhook_id,
        tenant: d.tenant,
        task_id: d.task_id,
        event: d.event,
        state: d.state.as_str().to_string(),
        attempts: d.attempts,
        last_status: u32::from(d.last_status),
        last_latency_ms: d.last_latency_ms,
        last_error: d.last_error,
        created_at: Some(timestamp(d.created_at)),
        next_attempt_at: pending.then(|| timestamp(d.next_attempt_at)),
        finished_at: optional_timestamp(d.finished_at),
    }
}

impl TaskApi {
    pub async fn create_webhook(
        &self,
        request: Call<v1::CreateWebhookRequest>,
    ) -> Result<v1::Webhook, Error> {
        const ACTION: &str = "webhook.create";
        let caller = self.permit(&request, Action::ManageWebhooks, ACTION)?;
        let v1::CreateWebhookRequest {
            tenant,
            url,
            events,
            secret,
        } = request.into_message();
        let created = async {
            let tenant = caller.tenant_for(&tenant, "tenant", "register webhooks for")?;
            self.webhooks.create(tenant, url, events, secret).await
        }
        .await;
        let target = created.as_ref().map(|w| w.id.clone()).unwrap_or_default();
        let webhook = self.refusal_audited(&caller, ACTION, &target, created)?;
        // The URL is what the log needs to say where events go; never the
        // secret.
        let detail = format!("{} for {}", webhook.url, webhook.events.join(","));
        let entry = audit_entry(&caller, ACTION, &webhook.tenant, &webhook.id, "ok", detail);
        self.record(vec![entry]);
        Ok(to_proto(webhook))
    }

    pub async fn list_webhooks(
        &self,
        request: Call<v1::ListWebhooksRequest>,
    ) -> Result<v1::ListWebhooksResponse, Error> {
        let caller = self.permit(&request, Action::ManageWebhooks, "webhook.list")?;
        let visible = caller.visible_tenants();
        let webhooks = self.webhooks.list(visible.as_deref()).await?;
        Ok(v1::ListWebhooksResponse {
            webhooks: webhooks.into_iter().map(to_proto).collect(),
        })
    }

    pub async fn delete_webhook(
        &self,
        request: Call<v1::DeleteWebhookRequest>,
    ) -> Result<v1::DeleteWebhookResponse, Error> {
        const ACTION: &str = "webhook.delete";
        let caller = self.permit(&request, Action::ManageWebhooks, ACTION)?;
        let id = request.into_message().id;
        let visible = caller.visible_tenants();
        let removed = self
            .webhooks
            .remove(&id, visible.as_deref())
            .await
            .map(|w| w.tenant);
        self.audited(&caller, ACTION, &id, removed)?;
        Ok(v1::DeleteWebhookResponse {})
    }

    pub async fn list_webhook_deliveries(
        &self,
        request: Call<v1::ListWebhookDeliveriesRequest>,
    ) -> Result<v1::ListWebhookDeliveriesResponse, Error> {
        let caller = self.permit(&request, Action::ManageWebhooks, "webhook.deliveries")?;
        let v1::ListWebhookDeliveriesRequest {
            webhook_id,
            page_size,
            page_token,
        } = request.into_message();
        let limit = match page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        } as usize;
        // One more than the page, to know whether another follows.
        let mut deliveries = self
            .webhooks
            .deliveries(DeliveryQuery {
                webhook_id: Some(webhook_id).filter(|id| !id.is_empty()),
                tenants: caller.visible_tenants(),
                before_id: Some(page_token).filter(|t| !t.is_empty()),
                limit: limit + 1,
            })
            .await?;
        let next_page_token = if deliveries.len() > limit {
            deliveries.truncate(limit);
            deliveries.last().map(|d| d.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(v1::ListWebhookDeliveriesResponse {
            deliveries: deliveries.into_iter().map(delivery_to_proto).collect(),
            next_page_token,
        })
    }
}
