//! Webhook endpoints and their delivery log.

use crate::client::Client;
use crate::error::Error;
use tidewright_api::v1;

impl Client {
    /// Registers a webhook endpoint for a tenant's events (admins); see
    /// the `CreateWebhook` method of the API. The secret is sent once and
    /// never answered back.
    pub async fn create_webhook(
        &self,
        tenant: &str,
        url: &str,
        events: &[&str],
        secret: &str,
    ) -> Result<v1::Webhook, Error> {
        let request = v1::CreateWebhookRequest {
            tenant: tenant.to_string(),
            url: url.to_string(),
            events: events.iter().map(|e| e.to_string()).collect(),
            secret: secret.to_string(),
        };
        Ok(self
            .tasks
            .clone()
            .create_webhook(request)
            .await?
            .into_inner())
    }

    /// The registered webhook endpoints the caller may see.
    pub async fn webhooks(&self) -> Result<Vec<v1::Webhook>, Error> {
        let answer = retried!(self, tasks, list_webhooks, v1::ListWebhooksRequest {})?;
        Ok(answer.webhooks)
    }

    /// Removes a webhook endpoint and its deliveries.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), Error> {
        let request = v1::DeleteWebhookRequest { id: id.to_string() };
        self.tasks.clone().delete_webhook(request).await?;
        Ok(())
    }

    /// One page of the delivery log, newest first (of one endpoint when
    /// `webhook_id` is not empty); `page_token` from the previous page.
    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<v1::ListWebhookDeliveriesResponse, Error> {
        let request = v1::ListWebhookDeliveriesRequest {
            webhook_id: webhook_id.to_string(),
            page_size,
            page_token: page_token.to_string(),
        };
        retried!(self, tasks, list_webhook_deliveries, request)
    }
}
