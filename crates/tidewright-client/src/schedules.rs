//! Schedules: a task submitted at each tick of a cron, and their history.

use crate::client::Client;
use crate::error::Error;
use tidewright_api::v1;

impl Client {
    /// Creates a schedule in `tenant` (the token's first when empty); see
    /// the `CreateSchedule` method of the API.
    pub async fn create_schedule(
        &self,
        tenant: &str,
        spec: v1::ScheduleSpec,
    ) -> Result<v1::Schedule, Error> {
        let request = v1::CreateScheduleRequest {
            tenant: tenant.to_string(),
            spec: Some(spec),
        };
        Ok(self
            .tasks
            .clone()
            .create_schedule(request)
            .await?
            .into_inner())
    }

    /// The schedules the caller may see, with their history.
    pub async fn schedules(&self) -> Result<Vec<v1::Schedule>, Error> {
        let answer = retried!(self, tasks, list_schedules, v1::ListSchedulesRequest {})?;
        Ok(answer.schedules)
    }

    /// The schedule `name` of `tenant` (the token's first when empty).
    pub async fn schedule(&self, tenant: &str, name: &str) -> Result<v1::Schedule, Error> {
        retried!(self, tasks, get_schedule, schedule_request(tenant, name))
    }

    /// Removes a schedule; the tasks it submitted stay.
    pub async fn delete_schedule(&self, tenant: &str, name: &str) -> Result<(), Error> {
        self.tasks
            .clone()
            .delete_schedule(schedule_request(tenant, name))
            .await?;
        Ok(())
    }

    /// Suspends a schedule (`suspend`), or resumes it.
    pub async fn suspend_schedule(
        &self,
        tenant: &str,
        name: &str,
        suspend: bool,
    ) -> Result<v1::Schedule, Error> {
        let request = schedule_request(tenant, name);
        let mut tasks = self.tasks.clone();
        let answer = if suspend {
            tasks.suspend_schedule(request).await?
        } else {
            tasks.resume_schedule(request).await?
        };
        Ok(answer.into_inner())
    }

    /// Submits the schedule's task now; its id.
    pub async fn trigger_schedule(&self, tenant: &str, name: &str) -> Result<String, Error> {
        let answer = self
            .tasks
            .clone()
            .trigger_schedule(schedule_request(tenant, name))
            .await?;
        Ok(answer.into_inner().task_id)
    }
}

fn schedule_request(tenant: &str, name: &str) -> v1::ScheduleRequest {
    v1::ScheduleRequest {
        tenant: tenant.to_string(),
        name: name.to_string(),
    }
}
