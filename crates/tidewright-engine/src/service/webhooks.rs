//! CreateWebhook, ListWebhooks, DeleteWebhook and ListWebhookDeliveries:
//! admins' calls, checked and audited here; the registry (the control
//! plane's webhooks, which also deliver) keeps the endpoints.

use tidewright_store::schedules::{Schedule, ScheduleRun};
use tidewright_store::webhooks::{Delivery, DeliveryQuery, TaskPush, Webhook};

use super::audit::audit_entry;
use super::calls::{CreateWebhook, DeliveryPage, ListDeliveries, WebhookRef};
use super::{Call, Webhooks};
use crate::access::Action;
use crate::error::Error;

/// The delivery log's page when none is asked for.
const DEFAULT_PAGE: usize = 50;

/// Where webhook endpoints are kept: registering checks each field (the
/// URL's host among them) and names the one it refuses.
#[async_trait::async_trait]
pub trait WebhookRegistry: Send + Sync {
    /// Registers an endpoint for its tenant (already checked as the
    /// caller's).
    async fn create(&self, endpoint: CreateWebhook) -> Result<Webhook, Error>;

    /// Registers a task's push-notification endpoint for `tenant` (the
    /// task's), its URL held to the same rules.
    async fn create_push(
        &self,
        tenant: String,
        url: String,
        push: TaskPush,
    ) -> Result<Webhook, Error>;

    /// Whether `url` is one an endpoint may have, naming `url` if not.
    async fn check_url(&self, url: &str) -> Result<(), Error>;

    /// The endpoints of these tenants (all when `None`).
    async fn list(&self, tenants: Option<&[String]>) -> Result<Vec<Webhook>, Error>;

    /// Removes an endpoint of these tenants, with its deliveries.
    async fn remove(&self, id: &str, tenants: Option<&[String]>) -> Result<Webhook, Error>;

    /// The delivery log, newest first.
    async fn deliveries(&self, query: DeliveryQuery) -> Result<Vec<Delivery>, Error>;

    /// The deliveries of what a schedule's ticks did (`schedule.fired`,
    /// `schedule.skipped`) to the endpoints of its tenant that asked for
    /// them: made here, committed by the caller with the runs themselves,
    /// so a tick's event is delivered once however often it is looked at.
    async fn schedule_deliveries(
        &self,
        schedule: &Schedule,
        runs: &[ScheduleRun],
    ) -> Result<Vec<Delivery>, Error>;

    /// Deliveries the caller committed, to send.
    fn committed(&self, deliveries: Vec<Delivery>);
}

impl Webhooks {
    pub async fn create_webhook(&self, call: Call<CreateWebhook>) -> Result<Webhook, Error> {
        const ACTION: &str = "webhook.create";
        let caller = self.cx.permit(&call, Action::ManageWebhooks, ACTION)?;
        let asked = call.into_message();
        let created = async {
            let tenant = caller.tenant_for(&asked.tenant, "tenant", "register webhooks for")?;
            self.cx
                .webhooks
                .create(CreateWebhook { tenant, ..asked })
                .await
        }
        .await;
        let target = created.as_ref().map(|w| w.id.clone()).unwrap_or_default();
        let webhook = self.cx.refusal_audited(&caller, ACTION, &target, created)?;
        // The URL is what the log needs to say where events go; never the
        // secret.
        let detail = format!("{} for {}", webhook.url, webhook.events.join(","));
        let entry = audit_entry(&caller, ACTION, &webhook.tenant, &webhook.id, "ok", detail);
        self.cx.record(vec![entry]);
        Ok(webhook)
    }

    pub async fn list_webhooks(&self, call: Call<()>) -> Result<Vec<Webhook>, Error> {
        let caller = self
            .cx
            .permit(&call, Action::ManageWebhooks, "webhook.list")?;
        let visible = caller.visible_tenants();
        self.cx.webhooks.list(visible.as_deref()).await
    }

    pub async fn delete_webhook(&self, call: Call<WebhookRef>) -> Result<(), Error> {
        const ACTION: &str = "webhook.delete";
        let caller = self.cx.permit(&call, Action::ManageWebhooks, ACTION)?;
        let id = call.into_message().id;
        let visible = caller.visible_tenants();
        let removed = self
            .cx
            .webhooks
            .remove(&id, visible.as_deref())
            .await
            .map(|w| w.tenant);
        self.cx.audited(&caller, ACTION, &id, removed)
    }

    pub async fn list_webhook_deliveries(
        &self,
        call: Call<ListDeliveries>,
    ) -> Result<DeliveryPage, Error> {
        let caller = self
            .cx
            .permit(&call, Action::ManageWebhooks, "webhook.deliveries")?;
        let ListDeliveries {
            webhook_id,
            page_size,
            page_token,
        } = call.into_message();
        let limit = super::page_size(page_size, DEFAULT_PAGE)?;
        // One more than the page, to know whether another follows.
        let mut deliveries = self
            .cx
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
        Ok(DeliveryPage {
            deliveries,
            next_page_token,
        })
    }
}
