//! RaiseBudget, SetTenantBudget and ListTenantBudgets: the checks and the
//! audit; the engine counts spend, pauses and resumes.

use tidewright_core::{Budget, TenantBudget, Window};
use tidewright_store::{TaskRecord, Write};

use super::calls::{ApproveBudget, RaiseBudget, SetTenantBudget};
use super::decide::MAX_REASON_BYTES;
use super::{Budgets, Call};
use crate::access::{Action, checked_tenant};
use crate::error::Error;
use crate::handle::TenantSpending;

impl Budgets {
    /// What attempts cost, summed by day and grouped as asked, of the
    /// tenants the caller may see.
    pub async fn cost_report(
        &self,
        request: Call<super::calls::GetCostReport>,
    ) -> Result<super::calls::CostReport, Error> {
        use tidewright_core::cost_sums;
        let caller = request.require(Action::ReadTasks)?;
        let super::calls::GetCostReport { by, since } = request.into_message();
        let by = cost_sums::parse_by(&by)?;
        let now = tidewright_core::calendar::now_micros();
        let since = cost_sums::since_day(&since, now)?;
        let sums = self
            .cx
            .store
            .cost_sums(&since, caller.visible_tenants())
            .await?;
        let rows = cost_sums::group(&sums, &by);
        let (total, attempts) = sums
            .iter()
            .fold((tidewright_core::Cost::default(), 0), |(cost, n), s| {
                (cost + s.cost, n + s.attempts)
            });
        Ok(super::calls::CostReport {
            by,
            since,
            until: cost_sums::day_of(now),
            rows,
            total,
            attempts,
        })
    }

    pub async fn raise_budget(&self, request: Call<RaiseBudget>) -> Result<TaskRecord, Error> {
        const ACTION: &str = "task.raise_budget";
        let caller = self.cx.permit(&request, Action::WriteTasks, ACTION)?;
        let RaiseBudget { task_id, by } = request.into_message();
        let raised = async {
            tidewright_core::validate::validate_budget(&by, "by")?;
            let task = self.cx.load(&task_id, &caller).await?;
            let described = describe_budget(&by);
            self.cx.engine.raise_budget(task_id.clone(), by).await?;
            Ok((task.tenant, described))
        }
        .await;
        self.cx.audited_with(&caller, ACTION, &task_id, raised)?;
        self.cx.load(&task_id, &caller).await
    }

    /// ApproveBudget: one of the budget's approvers lets a task paused for
    /// it go on; the engine says whether it is so paused.
    pub async fn approve_budget(&self, request: Call<ApproveBudget>) -> Result<TaskRecord, Error> {
        const ACTION: &str = "task.approve_budget";
        let caller = self.cx.permit(&request, Action::DecideApprovals, ACTION)?;
        let ApproveBudget { task_id, reason } = request.into_message();
        let approved = async {
            let reason = reason.trim();
            if reason.len() > MAX_REASON_BYTES {
                return Err(Error::invalid(
                    "reason",
                    format!("at most {} bytes", MAX_REASON_BYTES),
                ));
            }
            let task = self.cx.load(&task_id, &caller).await?;
            let budget = task
                .spec
                .budget
                .as_ref()
                .filter(|b| !b.approvers.is_empty())
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "task {task_id}'s budget names no approvers: only a raise (tidewright budget raise) lets it go on"
                    ))
                })?;
            if !budget.approved_by(&caller.name, &caller.role.to_string()) {
                return Err(Error::PermissionDenied(format!(
                    "{} ({}) is not an approver of task {task_id}'s budget; its approvers are: {}",
                    caller.name,
                    caller.role,
                    budget.approvers.join(", ")
                )));
            }
            let granted = self.cx.engine.approve_budget(task_id.clone()).await?;
            let mut detail = format!("budget {} approved", describe_budget(&granted));
            if !reason.is_empty() {
                detail.push_str(&format!(": {reason}"));
            }
            Ok((task.tenant, detail))
        }
        .await;
        self.cx.audited_with(&caller, ACTION, &task_id, approved)?;
        self.cx.load(&task_id, &caller).await
    }

    /// Sets a tenant's budget; answers its spending against it.
    pub async fn set_tenant_budget(
        &self,
        request: Call<SetTenantBudget>,
    ) -> Result<TenantSpending, Error> {
        const ACTION: &str = "tenant.set_budget";
        let caller = self.cx.permit(&request, Action::SetTenants, ACTION)?;
        let SetTenantBudget { tenant, budget } = request.into_message();
        let set = async {
            checked_tenant("tenant", &tenant)?;
            tidewright_core::validate::validate_tenant_budget(&budget, "budget")?;
            // Stored first: the engine acts on what a restart would find.
            self.cx
                .commit(vec![Write::TenantBudget {
                    tenant: tenant.clone(),
                    budget,
                }])
                .await?;
            self.cx
                .engine
                .set_tenant_budget(tenant.clone(), budget)
                .await?;
            Ok((tenant.clone(), describe_tenant_budget(&budget)))
        }
        .await;
        self.cx.audited_with(&caller, ACTION, "", set)?;
        let listed = self.cx.engine.budgets(Some(vec![tenant.clone()])).await?;
        Ok(listed.into_iter().next().unwrap_or_else(|| {
            (
                tenant,
                TenantBudget::default(),
                Default::default(),
                Default::default(),
            )
        }))
    }

    /// Every tenant's budget and spending that the caller may see.
    pub async fn list_tenant_budgets(
        &self,
        request: Call<()>,
    ) -> Result<Vec<TenantSpending>, Error> {
        let caller = request.require(Action::ReadTasks)?;
        self.cx.engine.budgets(caller.visible_tenants()).await
    }
}

fn describe_budget(budget: &Budget) -> String {
    let mut parts = Vec::new();
    if let Some(usd) = budget.usd {
        parts.push(format!("+${usd}"));
    }
    if let Some(tokens) = budget.tokens {
        parts.push(format!("+{tokens} tokens"));
    }
    parts.join(", ")
}

fn describe_tenant_budget(budget: &TenantBudget) -> String {
    if budget.is_empty() {
        return "no budget".into();
    }
    let mut parts = Vec::new();
    for window in Window::ALL {
        let limit = budget.for_window(window);
        if let Some(usd) = limit.usd {
            parts.push(format!("${usd} per {}", window.as_str()));
        }
        if let Some(tokens) = limit.tokens {
            parts.push(format!("{tokens} tokens per {}", window.as_str()));
        }
    }
    parts.join(", ")
}
