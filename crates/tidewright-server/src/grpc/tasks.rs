//! TaskService over gRPC: each method converts its request to the
//! application service's call (`wire`), makes it, and converts the answer
//! back; the status of an error is decided in `error.rs`.

use tidewright_api::v1;
use tidewright_engine::service::Services;
use tonic::{Request, Response, Status};

use super::FLEET_POSITION;
use crate::error::Error;
use crate::grpc::{grpc_call, serve};
use crate::wire;

/// The application services, served as TaskService.
#[derive(Clone)]
pub struct TaskGrpc(pub Services);

#[tonic::async_trait]
impl v1::task_service_server::TaskService for TaskGrpc {
    async fn submit_task(
        &self,
        request: Request<v1::SubmitTaskRequest>,
    ) -> Result<Response<v1::SubmitTaskResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::submit(r)),
            |c| self.0.tasks.submit_task(c),
            wire::submitted,
        )
        .await
    }

    async fn submit_tasks(
        &self,
        request: Request<v1::SubmitTasksRequest>,
    ) -> Result<Response<v1::SubmitTasksResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::submit_many(r)),
            |c| self.0.tasks.submit_tasks(c),
            |tasks: Vec<_>| v1::SubmitTasksResponse {
                tasks: tasks.into_iter().map(wire::submitted).collect(),
            },
        )
        .await
    }

    async fn get_task(
        &self,
        request: Request<v1::GetTaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        serve(
            request,
            |r| Ok(wire::task_ref(r.task_id)),
            |c| self.0.tasks.get_task(c),
            wire::task_to_proto,
        )
        .await
    }

    async fn list_tasks(
        &self,
        request: Request<v1::ListTasksRequest>,
    ) -> Result<Response<v1::ListTasksResponse>, Status> {
        serve(
            request,
            wire::list_tasks,
            |c| self.0.tasks.list_tasks(c),
            wire::task_page,
        )
        .await
    }

    async fn cancel_task(
        &self,
        request: Request<v1::CancelTaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        serve(
            request,
            |r| Ok(wire::task_ref(r.task_id)),
            |c| self.0.tasks.cancel_task(c),
            wire::task_to_proto,
        )
        .await
    }

    async fn retry_task(
        &self,
        request: Request<v1::RetryTaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        serve(
            request,
            |r| Ok(wire::task_ref(r.task_id)),
            |c| self.0.tasks.retry_task(c),
            wire::task_to_proto,
        )
        .await
    }

    async fn approve_step(
        &self,
        request: Request<v1::DecideStepRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        serve(
            request,
            |r| Ok(wire::decide_step(r)),
            |c| self.0.tasks.approve_step(c),
            wire::task_to_proto,
        )
        .await
    }

    async fn reject_step(
        &self,
        request: Request<v1::DecideStepRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        serve(
            request,
            |r| Ok(wire::decide_step(r)),
            |c| self.0.tasks.reject_step(c),
            wire::task_to_proto,
        )
        .await
    }

    async fn raise_budget(
        &self,
        request: Request<v1::RaiseBudgetRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        serve(
            request,
            |r| Ok(wire::raise_budget(r)),
            |c| self.0.budgets.raise_budget(c),
            wire::task_to_proto,
        )
        .await
    }

    async fn approve_budget(
        &self,
        request: Request<v1::ApproveBudgetRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        serve(
            request,
            |r| Ok(wire::approve_budget(r)),
            |c| self.0.budgets.approve_budget(c),
            wire::task_to_proto,
        )
        .await
    }

    async fn set_tenant_budget(
        &self,
        request: Request<v1::SetTenantBudgetRequest>,
    ) -> Result<Response<v1::TenantSpending>, Status> {
        serve(
            request,
            |r| Ok(wire::set_tenant_budget(r)),
            |c| self.0.budgets.set_tenant_budget(c),
            wire::spending,
        )
        .await
    }

    async fn list_tenant_budgets(
        &self,
        request: Request<v1::ListTenantBudgetsRequest>,
    ) -> Result<Response<v1::ListTenantBudgetsResponse>, Status> {
        serve(
            request,
            |_| Ok(()),
            |c| self.0.budgets.list_tenant_budgets(c),
            wire::spendings,
        )
        .await
    }

    async fn list_audit(
        &self,
        request: Request<v1::ListAuditRequest>,
    ) -> Result<Response<v1::ListAuditResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::list_audit(r)),
            |c| self.0.tasks.list_audit(c),
            wire::audit,
        )
        .await
    }

    async fn count_tasks(
        &self,
        request: Request<v1::CountTasksRequest>,
    ) -> Result<Response<v1::CountTasksResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::of_tenants(r.tenants)),
            |c| self.0.tasks.count_tasks(c),
            wire::counts,
        )
        .await
    }

    async fn get_activity(
        &self,
        request: Request<v1::GetActivityRequest>,
    ) -> Result<Response<v1::Activity>, Status> {
        serve(
            request,
            |r| Ok(wire::of_tenants(r.tenants)),
            |c| self.0.tasks.get_activity(c),
            wire::activity,
        )
        .await
    }

    async fn plan_task(
        &self,
        request: Request<v1::PlanTaskRequest>,
    ) -> Result<Response<v1::PlanTaskResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::plan_task(r)),
            |c| self.0.tasks.plan_task(c),
            wire::planned,
        )
        .await
    }

    async fn create_webhook(
        &self,
        request: Request<v1::CreateWebhookRequest>,
    ) -> Result<Response<v1::Webhook>, Status> {
        serve(
            request,
            |r| Ok(wire::create_webhook(r)),
            |c| self.0.webhooks.create_webhook(c),
            wire::webhook,
        )
        .await
    }

    async fn create_schedule(
        &self,
        request: Request<v1::CreateScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        serve(
            request,
            wire::create_schedule,
            |c| self.0.schedules.create_schedule(c),
            wire::schedule,
        )
        .await
    }

    async fn list_schedules(
        &self,
        request: Request<v1::ListSchedulesRequest>,
    ) -> Result<Response<v1::ListSchedulesResponse>, Status> {
        serve(
            request,
            |_| Ok(()),
            |c| self.0.schedules.list_schedules(c),
            wire::schedules,
        )
        .await
    }

    async fn get_schedule(
        &self,
        request: Request<v1::ScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        serve(
            request,
            |r| Ok(wire::schedule_ref(r)),
            |c| self.0.schedules.get_schedule(c),
            wire::schedule,
        )
        .await
    }

    async fn delete_schedule(
        &self,
        request: Request<v1::ScheduleRequest>,
    ) -> Result<Response<v1::DeleteScheduleResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::schedule_ref(r)),
            |c| self.0.schedules.delete_schedule(c),
            |()| v1::DeleteScheduleResponse {},
        )
        .await
    }

    async fn suspend_schedule(
        &self,
        request: Request<v1::ScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        serve(
            request,
            |r| Ok(wire::schedule_ref(r)),
            |c| self.0.schedules.suspend_schedule(c, true),
            wire::schedule,
        )
        .await
    }

    async fn resume_schedule(
        &self,
        request: Request<v1::ScheduleRequest>,
    ) -> Result<Response<v1::Schedule>, Status> {
        serve(
            request,
            |r| Ok(wire::schedule_ref(r)),
            |c| self.0.schedules.suspend_schedule(c, false),
            wire::schedule,
        )
        .await
    }

    async fn trigger_schedule(
        &self,
        request: Request<v1::ScheduleRequest>,
    ) -> Result<Response<v1::TriggerScheduleResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::schedule_ref(r)),
            |c| self.0.schedules.trigger_schedule(c),
            |task_id| v1::TriggerScheduleResponse { task_id },
        )
        .await
    }

    async fn list_webhooks(
        &self,
        request: Request<v1::ListWebhooksRequest>,
    ) -> Result<Response<v1::ListWebhooksResponse>, Status> {
        serve(
            request,
            |_| Ok(()),
            |c| self.0.webhooks.list_webhooks(c),
            wire::webhooks,
        )
        .await
    }

    async fn delete_webhook(
        &self,
        request: Request<v1::DeleteWebhookRequest>,
    ) -> Result<Response<v1::DeleteWebhookResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::webhook_ref(r)),
            |c| self.0.webhooks.delete_webhook(c),
            |()| v1::DeleteWebhookResponse {},
        )
        .await
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<v1::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<v1::ListWebhookDeliveriesResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::list_deliveries(r)),
            |c| self.0.webhooks.list_webhook_deliveries(c),
            wire::delivery_page,
        )
        .await
    }

    async fn list_templates(
        &self,
        request: Request<v1::ListTemplatesRequest>,
    ) -> Result<Response<v1::ListTemplatesResponse>, Status> {
        serve(
            request,
            |_| Ok(()),
            |c| self.0.tasks.list_templates(c),
            wire::templates,
        )
        .await
    }

    async fn submit_template(
        &self,
        request: Request<v1::SubmitTemplateRequest>,
    ) -> Result<Response<v1::SubmitTaskResponse>, Status> {
        serve(
            request,
            |r| Ok(wire::submit_template(r)),
            |c| self.0.tasks.submit_template(c),
            wire::submitted,
        )
        .await
    }

    type WatchTaskStream = wire::WireEvents;
    type WatchFleetStream = wire::WireEvents;

    async fn watch_task(
        &self,
        request: Request<v1::WatchTaskRequest>,
    ) -> Result<Response<wire::WireEvents>, Status> {
        let call = grpc_call(request).try_map(|r| Ok::<_, Error>(wire::watch_task(r)))?;
        let events = self.0.tasks.watch_task(call).await.map_err(Error::from)?;
        Ok(Response::new(wire::events(events)))
    }

    async fn watch_fleet(
        &self,
        request: Request<v1::WatchFleetRequest>,
    ) -> Result<Response<wire::WireEvents>, Status> {
        let call = grpc_call(request).try_map(|r| Ok::<_, Error>(wire::watch_fleet(r)))?;
        let (events, after) = self.0.tasks.watch_fleet(call).await.map_err(Error::from)?;
        let mut response = Response::new(wire::events(events));
        response.metadata_mut().insert(FLEET_POSITION, after.into());
        Ok(response)
    }
}
