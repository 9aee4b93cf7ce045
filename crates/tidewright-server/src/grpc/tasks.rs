//! TaskService over gRPC: each method converts its request to the
//! application service's call (`wire`), makes it, and converts the answer
//! back; the status of an error is decided in `error.rs`.

use tidewright_api::v1;
use tidewright_engine::service::Services;
use tonic::{Request, Response, Status};

use super::FLEET_POSITION;
use crate::error::Error;
use crate::grpc::{grpc_call, service};
use crate::wire;

/// The application services, served as TaskService.
#[derive(Clone)]
pub struct TaskGrpc(pub Services);

service! {
    impl v1::task_service_server::TaskService for TaskGrpc {
        unary {
            submit_task(SubmitTaskRequest) -> SubmitTaskResponse =
                |r| Ok(wire::submit(r)), [0.tasks.submit_task], wire::submitted;
            submit_tasks(SubmitTasksRequest) -> SubmitTasksResponse =
                |r| Ok(wire::submit_many(r)), [0.tasks.submit_tasks],
                |tasks: Vec<_>| v1::SubmitTasksResponse { tasks: tasks.into_iter().map(wire::submitted).collect(), };
            get_task(GetTaskRequest) -> Task =
                |r| Ok(wire::task_ref(r.task_id)), [0.tasks.get_task], wire::task_to_proto;
            list_tasks(ListTasksRequest) -> ListTasksResponse =
                wire::list_tasks, [0.tasks.list_tasks], wire::task_page;
            cancel_task(CancelTaskRequest) -> Task =
                |r| Ok(wire::task_ref(r.task_id)), [0.tasks.cancel_task], wire::task_to_proto;
            retry_task(RetryTaskRequest) -> Task =
                |r| Ok(wire::task_ref(r.task_id)), [0.tasks.retry_task], wire::task_to_proto;
            approve_step(DecideStepRequest) -> Task =
                |r| Ok(wire::decide_step(r)), [0.tasks.approve_step], wire::task_to_proto;
            reject_step(DecideStepRequest) -> Task =
                |r| Ok(wire::decide_step(r)), [0.tasks.reject_step], wire::task_to_proto;
            raise_budget(RaiseBudgetRequest) -> Task =
                |r| Ok(wire::raise_budget(r)), [0.budgets.raise_budget], wire::task_to_proto;
            approve_budget(ApproveBudgetRequest) -> Task =
                |r| Ok(wire::approve_budget(r)), [0.budgets.approve_budget], wire::task_to_proto;
            set_tenant_budget(SetTenantBudgetRequest) -> TenantSpending =
                |r| Ok(wire::set_tenant_budget(r)), [0.budgets.set_tenant_budget], wire::spending;
            list_tenant_budgets(ListTenantBudgetsRequest) -> ListTenantBudgetsResponse =
                |_| Ok(()), [0.budgets.list_tenant_budgets], wire::spendings;
            get_cost_report(GetCostReportRequest) -> CostReport =
                |r| Ok(wire::cost_request(r)), [0.budgets.cost_report], wire::cost_report;
            steer_step(SteerStepRequest) -> SteerStepResponse =
                |r| Ok(wire::steer_step(r)), [0.tasks.steer_step], wire::steered;
            set_tenant_share(SetTenantShareRequest) -> TenantShare =
                |r| Ok(wire::set_tenant_share(r)), [0.shares.set_tenant_share], wire::share;
            list_tenant_shares(ListTenantSharesRequest) -> ListTenantSharesResponse =
                |_| Ok(()), [0.shares.list_tenant_shares], wire::shares;
            list_audit(ListAuditRequest) -> ListAuditResponse =
                |r| Ok(wire::list_audit(r)), [0.tasks.list_audit], wire::audit;
            count_tasks(CountTasksRequest) -> CountTasksResponse =
                |r| Ok(wire::of_tenants(r.tenants)), [0.tasks.count_tasks], wire::counts;
            get_activity(GetActivityRequest) -> Activity =
                |r| Ok(wire::of_tenants(r.tenants)), [0.tasks.get_activity], wire::activity;
            list_landings(ListLandingsRequest) -> ListLandingsResponse =
                |r| Ok(wire::of_tenants(r.tenants)), [0.tasks.list_landings], wire::landings;
            plan_task(PlanTaskRequest) -> PlanTaskResponse =
                |r| Ok(wire::plan_task(r)), [0.tasks.plan_task], wire::planned;
            create_webhook(CreateWebhookRequest) -> Webhook =
                |r| Ok(wire::create_webhook(r)), [0.webhooks.create_webhook], wire::webhook;
            create_schedule(CreateScheduleRequest) -> Schedule =
                wire::create_schedule, [0.schedules.create_schedule], wire::schedule;
            list_schedules(ListSchedulesRequest) -> ListSchedulesResponse =
                |_| Ok(()), [0.schedules.list_schedules], wire::schedules;
            get_schedule(ScheduleRequest) -> Schedule =
                |r| Ok(wire::schedule_ref(r)), [0.schedules.get_schedule], wire::schedule;
            delete_schedule(ScheduleRequest) -> DeleteScheduleResponse =
                |r| Ok(wire::schedule_ref(r)), [0.schedules.delete_schedule],
                |()| v1::DeleteScheduleResponse {};
            suspend_schedule(ScheduleRequest) -> Schedule =
                |r| Ok(wire::schedule_ref(r)), [0.schedules.suspend_schedule](true), wire::schedule;
            resume_schedule(ScheduleRequest) -> Schedule =
                |r| Ok(wire::schedule_ref(r)),
                [0.schedules.suspend_schedule](false), wire::schedule;
            trigger_schedule(ScheduleRequest) -> TriggerScheduleResponse =
                |r| Ok(wire::schedule_ref(r)), [0.schedules.trigger_schedule],
                |task_id| v1::TriggerScheduleResponse { task_id };
            create_trigger(CreateTriggerRequest) -> Trigger =
                wire::create_trigger, [0.triggers.create_trigger], wire::trigger;
            list_triggers(ListTriggersRequest) -> ListTriggersResponse =
                |_| Ok(()), [0.triggers.list_triggers], wire::triggers;
            get_trigger(TriggerRequest) -> Trigger =
                |r| Ok(wire::trigger_ref(r)), [0.triggers.get_trigger], wire::trigger;
            delete_trigger(TriggerRequest) -> DeleteTriggerResponse =
                |r| Ok(wire::trigger_ref(r)), [0.triggers.delete_trigger],
                |()| v1::DeleteTriggerResponse {};
            list_webhooks(ListWebhooksRequest) -> ListWebhooksResponse =
                |_| Ok(()), [0.webhooks.list_webhooks], wire::webhooks;
            delete_webhook(DeleteWebhookRequest) -> DeleteWebhookResponse =
                |r| Ok(wire::webhook_ref(r)), [0.webhooks.delete_webhook],
                |()| v1::DeleteWebhookResponse {};
            list_webhook_deliveries(ListWebhookDeliveriesRequest) -> ListWebhookDeliveriesResponse =
                |r| Ok(wire::list_deliveries(r)), [0.webhooks.list_webhook_deliveries],
                wire::delivery_page;
            list_templates(ListTemplatesRequest) -> ListTemplatesResponse =
                |_| Ok(()), [0.tasks.list_templates], wire::templates;
            submit_template(SubmitTemplateRequest) -> SubmitTaskResponse =
                |r| Ok(wire::submit_template(r)), [0.tasks.submit_template], wire::submitted;
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
}
