//! TaskService over gRPC: each method hands its request to the typed call
//! of the same name (as a [`Call`]) and its answer or error back; the
//! status of an error is decided in `error.rs`.

use orca_api::v1;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::{EventStream, FLEET_POSITION, TaskApi};
use crate::call::Call;

/// A watch's events as the wire carries them.
type WireEvents =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::Event, Status>> + Send>>;

fn on_the_wire(events: EventStream) -> WireEvents {
    Box::pin(events.map(|event| event.map_err(Status::from)))
}

#[tonic::async_trait]
impl v1::task_service_server::TaskService for TaskApi {
    async fn submit_task(
        &self,
        request: Request<v1::SubmitTaskRequest>,
    ) -> Result<Response<v1::SubmitTaskResponse>, Status> {
        Ok(Response::new(
            TaskApi::submit_task(self, Call::from(request)).await?,
        ))
    }

    async fn submit_tasks(
        &self,
        request: Request<v1::SubmitTasksRequest>,
    ) -> Result<Response<v1::SubmitTasksResponse>, Status> {
        Ok(Response::new(
            TaskApi::submit_tasks(self, Call::from(request)).await?,
        ))
    }

    async fn get_task(
        &self,
        request: Request<v1::GetTaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(
            TaskApi::get_task(self, Call::from(request)).await?,
        ))
    }

    async fn list_tasks(
        &self,
        request: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        Ok(Response::new(
            TaskApi::list_tasks(self, Call::from(request)).await?,
        ))
    }

    async fn cancel_task(
        &self,
        request: Request<v1::CancelTaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(
            TaskApi::cancel_task(self, Call::from(request)).await?,
        ))
    }

    async fn retry_task(
        &self,
        request: Request<v1::RetryTaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(
            TaskApi::retry_task(self, Call::from(request)).await?,
        ))
    }

    async fn approve_step(
        &self,
        request: Request<v1::DecideStepRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(
            TaskApi::approve_step(self, Call::from(request)).await?,
        ))
    }

    async fn reject_step(
        &self,
        request: Request<v1::DecideStepRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(
            TaskApi::reject_step(self, Call::from(request)).await?,
        ))
    }

    async fn raise_budget(
        &self,
        request: Request<v1::RaiseBudgetRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(
            TaskApi::raise_budget(self, Call::from(request)).await?,
        ))
    }

    async fn approve_budget(
        &self,
        request: Request<v1::ApproveBudgetRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        Ok(Response::new(
            TaskApi::approve_budget(self, Call::from(request)).await?,
        ))
    }

    async fn set_tenant_budget(
        &self,
        request: Request<v1::SetTenantBudgetRequest>,
    ) -> Result<Response<v1::TenantSpending>, Status> {
        Ok(Response::new(
            TaskApi::set_tenant_budget(self, Call::from(request)).await?,
        ))
    }

    async fn list_tenant_budgets(
        &self,
        request: Request<v1::ListTenantBudgetsRequest>,
    ) -> Result<Response<v1::ListTenantBudgetsResponse>, Status> {
        Ok(Response::new(
            TaskApi::list_tenant_budgets(self, Call::from(request)).await?,
        ))
    }

    async fn list_audit(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        Ok(Response::new(
            TaskApi::list_audit(self, Call::from(request)).await?,
        ))
    }

    async fn count_tasks(
        &self,
        request: Request<v1::CountTasksRequest>,
    ) -> Result<Response<v1::CountTasksResponse>, Status> {
        Ok(Response::new(
            TaskApi::count_tasks(self, Call::from(request)).await?,
        ))
    }

    async fn get_activity(
        &self,
        request: Request<v1::GetActivityRequest>,
    ) -> Result<Response<v1::Activity>, Status> {
        Ok(Response::new(
            TaskApi::get_activity(self, Call::from(request)).await?,
        ))
    }

    async fn plan_task(
        &self,
        request: Request<v1::PlanTaskRequest>,
    ) -> Result<Response<v1::PlanTaskResponse>, Status> {
        Ok(Response::new(
            TaskApi::plan_task(self, Call::from(request)).await?,
        ))
    }

    async fn create_webhook(
        &self,
        request: Request<v1::CreateWebhookRequest>,
    ) -> Result<Response<v1::Webhook>, Status> {
        Ok(Response::new(
            TaskApi::create_webhook(self, Call::from(request)).await?,
        ))
    }

    async fn list_webhooks(
        &self,
        request: Request<v1::ListWebhooksRequest>,
    ) -> Result<Response<v1::ListWebhooksResponse>, Status> {
        Ok(Response::new(
            TaskApi::list_webhooks(self, Call::from(request)).await?,
        ))
    }

    async fn delete_webhook(
        &self,
        request: Request<v1::DeleteWebhookRequest>,
    ) -> Result<Response<v1::DeleteWebhookResponse>, Status> {
        Ok(Response::new(
            TaskApi::delete_webhook(self, Call::from(request)).await?,
        ))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<v1::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<v1::ListWebhookDeliveriesResponse>, Status> {
        Ok(Response::new(
            TaskApi::list_webhook_deliveries(self, Call::from(request)).await?,
        ))
    }

    async fn list_templates(
        &self,
        request: Request<v1::ListTemplatesRequest>,
    ) -> Result<Response<v1::ListTemplatesResponse>, Status> {
        Ok(Response::new(
            TaskApi::list_templates(self, Call::from(request)).await?,
        ))
    }

    async fn submit_template(
        &self,
        request: Request<v1::SubmitTemplateRequest>,
    ) -> Result<Response<v1::SubmitTaskResponse>, Status> {
        Ok(Response::new(
            TaskApi::submit_template(self, Call::from(request)).await?,
        ))
    }

    type WatchTaskStream = WireEvents;
    type WatchFleetStream = WireEvents;

    async fn watch_task(
        &self,
        request: Request<v1::WatchTaskRequest>,
    ) -> Result<Response<WireEvents>, Status> {
        let events = TaskApi::watch_task(self, Call::from(request)).await?;
        Ok(Response::new(on_the_wire(events)))
    }

    async fn watch_fleet(
        &self,
        request: Request<v1::WatchFleetRequest>,
    ) -> Result<Response<WireEvents>, Status> {
        let (events, after) = TaskApi::watch_fleet(self, Call::from(request)).await?;
        let mut response = Response::new(on_the_wire(events));
        response.metadata_mut().insert(FLEET_POSITION, after.into());
        Ok(response)
    }
}
