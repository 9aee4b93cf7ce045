//! Decisions people make on running tasks: approving or rejecting a step
//! that waits for approval, and raising or approving a budget.

use crate::client::Client;
use crate::error::Error;
use tidewright_api::v1;

/// What a person decides on a step awaiting approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl Client {
    /// Approves a step awaiting approval (it runs), or rejects it (it
    /// fails), saying why.
    pub async fn decide_step(
        &self,
        task_id: &str,
        step_id: &str,
        decision: Decision,
        reason: &str,
    ) -> Result<v1::Task, Error> {
        let request = v1::DecideStepRequest {
            task_id: task_id.to_string(),
            step_id: step_id.to_string(),
            reason: reason.to_string(),
        };
        let mut tasks = self.tasks.clone();
        let answer = match decision {
            Decision::Approve => tasks.approve_step(request).await?,
            Decision::Reject => tasks.reject_step(request).await?,
        };
        Ok(answer.into_inner())
    }

    /// Adds to a task's budget; a task paused at its budget goes on.
    pub async fn raise_budget(&self, task_id: &str, by: v1::Budget) -> Result<v1::Task, Error> {
        let request = v1::RaiseBudgetRequest {
            task_id: task_id.to_string(),
            by: Some(by),
        };
        Ok(self.tasks.clone().raise_budget(request).await?.into_inner())
    }

    /// As one of its budget's approvers, lets a task paused at its budget
    /// go on.
    pub async fn approve_budget(&self, task_id: &str, reason: &str) -> Result<v1::Task, Error> {
        let request = v1::ApproveBudgetRequest {
            task_id: task_id.to_string(),
            reason: reason.to_string(),
        };
        Ok(self
            .tasks
            .clone()
            .approve_budget(request)
            .await?
            .into_inner())
    }

    /// Sets a tenant's budget; answers its spending against it.
    pub async fn set_tenant_budget(
        &self,
        tenant: &str,
        budget: v1::TenantBudget,
    ) -> Result<v1::TenantSpending, Error> {
        let request = v1::SetTenantBudgetRequest {
            tenant: tenant.to_string(),
            budget: Some(budget),
        };
        retried!(self, tasks, set_tenant_budget, request)
    }

    /// Sends a message into a running agent step's session; answers the
    /// attempt it went to and how it reaches the agent.
    pub async fn steer_step(
        &self,
        (task_id, step_id): (&str, &str),
        message: &str,
        follow_up: bool,
    ) -> Result<v1::SteerStepResponse, Error> {
        let request = v1::SteerStepRequest {
            task_id: task_id.to_string(),
            step_id: step_id.to_string(),
            message: message.to_string(),
            follow_up,
        };
        retried!(self, tasks, steer_step, request)
    }

    /// Sets a tenant's share (weight, cap on running steps, fairness key;
    /// what is left out is the default); answers it with its steps running
    /// and waiting.
    pub async fn set_tenant_share(
        &self,
        tenant: &str,
        (weight, max_running): (Option<i64>, Option<i64>),
        fairness_key: &str,
    ) -> Result<v1::TenantShare, Error> {
        let request = v1::SetTenantShareRequest {
            tenant: tenant.to_string(),
            weight,
            max_running,
            fairness_key: fairness_key.to_string(),
        };
        retried!(self, tasks, set_tenant_share, request)
    }

    /// Each tenant's share, and its steps running and waiting.
    pub async fn tenant_shares(&self) -> Result<Vec<v1::TenantShare>, Error> {
        let answer = retried!(
            self,
            tasks,
            list_tenant_shares,
            v1::ListTenantSharesRequest {}
        )?;
        Ok(answer.tenants)
    }

    /// What attempts cost from `since` (`30d`; empty for this month),
    /// grouped `by` (`repo`, `runtime`).
    pub async fn cost_report(&self, by: &[String], since: &str) -> Result<v1::CostReport, Error> {
        let request = v1::GetCostReportRequest {
            by: by.to_vec(),
            since: since.to_string(),
        };
        retried!(self, tasks, get_cost_report, request)
    }

    /// Each tenant's spending and budget.
    pub async fn tenant_budgets(&self) -> Result<Vec<v1::TenantSpending>, Error> {
        let answer = retried!(
            self,
            tasks,
            list_tenant_budgets,
            v1::ListTenantBudgetsRequest {}
        )?;
        Ok(answer.tenants)
    }
}
