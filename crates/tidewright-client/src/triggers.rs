//! Triggers: a forge's event on a repository starts a template's task.

use crate::client::Client;
use crate::error::Error;
use tidewright_api::v1;

impl Client {
    /// Creates a trigger in `tenant` (the token's first when empty); see
    /// the `CreateTrigger` method of the API.
    pub async fn create_trigger(
        &self,
        tenant: &str,
        spec: v1::TriggerSpec,
    ) -> Result<v1::Trigger, Error> {
        let request = v1::CreateTriggerRequest {
            tenant: tenant.to_string(),
            spec: Some(spec),
        };
        Ok(self
            .tasks
            .clone()
            .create_trigger(request)
            .await?
            .into_inner())
    }

    /// The triggers the caller may see, with their history.
    pub async fn triggers(&self) -> Result<Vec<v1::Trigger>, Error> {
        let answer = retried!(self, tasks, list_triggers, v1::ListTriggersRequest {})?;
        Ok(answer.triggers)
    }

    /// Removes a trigger; the tasks it started stay.
    pub async fn delete_trigger(&self, tenant: &str, name: &str) -> Result<(), Error> {
        let request = v1::TriggerRequest {
            tenant: tenant.to_string(),
            name: name.to_string(),
        };
        self.tasks.clone().delete_trigger(request).await?;
        Ok(())
    }
}
