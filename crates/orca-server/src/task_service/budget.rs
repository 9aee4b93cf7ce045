//! RaiseBudget, SetTenantBudget and ListTenantBudgets: the checks and the
//! audit; the engine counts spend, pauses and resumes.

use orca_core::{Budget, Cost, TenantBudget, Window};

use super::*;
use crate::auth::valid_tenant;

impl TaskApi {
    pub async fn raise_task_budget(
        &self,
        request: Call<v1::RaiseBudgetRequest>,
    ) -> Result<v1::Task, Error> {
        const ACTION: &str = "task.raise_budget";
        let caller = self.permit(&request, Action::WriteTasks, ACTION)?;
        let v1::RaiseBudgetRequest { task_id, by } = request.into_message();
        let raised = async {
            let by = by
                .map(|b| Budget {
                    usd: b.usd,
                    tokens: b.tokens,
                    approvers: Vec::new(),
                })
                .unwrap_or_default();
            orca_core::validate::validate_budget(&by, "by")?;
            let task = self.load(&task_id, &caller).await?;
            let described = describe_budget(&by);
            self.engine.raise_budget(task_id.clone(), by).await?;
            Ok((task.tenant, described))
        }
        .await;
        self.audited_with(&caller, ACTION, &task_id, raised)?;
        Ok(task_to_proto(self.load(&task_id, &caller).await?))
    }

    /// ApproveBudget: one of the budget's approvers lets a task paused for
    /// it go on; the engine says whether it is so paused.
    pub async fn approve_task_budget(
        &self,
        request: Call<v1::ApproveBudgetRequest>,
    ) -> Result<v1::Task, Error> {
        const ACTION: &str = "task.approve_budget";
        let caller = self.permit(&request, Action::DecideApprovals, ACTION)?;
        let v1::ApproveBudgetRequest { task_id, reason } = request.into_message();
        let approved = async {
            let reason = reason.trim();
            if reason.len() > super::decide::MAX_REASON_BYTES {
                return Err(Error::invalid(
                    "reason",
                    format!("at most {} bytes", super::decide::MAX_REASON_BYTES),
                ));
            }
            let task = self.load(&task_id, &caller).await?;
            let budget = task
                .spec
                .budget
                .as_ref()
                .filter(|b| !b.approvers.is_empty())
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "task {task_id}'s budget names no approvers: only a raise (orca budget raise) lets it go on"
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
            let granted = self.engine.approve_budget(task_id.clone()).await?;
            let mut detail = format!("budget {} approved", describe_budget(&granted));
            if !reason.is_empty() {
                detail.push_str(&format!(": {reason}"));
            }
            Ok((task.tenant, detail))
        }
        .await;
        self.audited_with(&caller, ACTION, &task_id, approved)?;
        Ok(task_to_proto(self.load(&task_id, &caller).await?))
    }

    pub async fn set_tenant_budget(
        &self,
        request: Call<v1::SetTenantBudgetRequest>,
    ) -> Result<v1::TenantSpending, Error> {
        const ACTION: &str = "tenant.set_budget";
        let caller = self.permit(&request, Action::SetBudgets, ACTION)?;
        let v1::SetTenantBudgetRequest { tenant, budget } = request.into_message();
        let set = async {
            if !valid_tenant(&tenant) {
                return Err(Error::invalid(
                    "tenant",
                    format!("{tenant:?} must be lowercase letters, digits and '-', 1 to 63 bytes"),
                ));
            }
            let budget = tenant_budget(budget.unwrap_or_default())?;
            // Stored first: the engine acts on what a restart would find.
            self.store
                .write(vec![Write::TenantBudget {
                    tenant: tenant.clone(),
                    budget,
                }])
                .await
                .map_err(|_| Error::ShuttingDown)??;
            self.engine
                .set_tenant_budget(tenant.clone(), budget)
                .await?;
            Ok((tenant.clone(), describe_tenant_budget(&budget)))
        }
        .await;
        self.audited_with(&caller, ACTION, "", set)?;
        let listed = self
            .engine
            .budgets(Some(vec![tenant.clone()]))
            .await
            .map_err(Error::from)?;
        let spending = listed
            .into_iter()
            .next()
            .map(spending_to_proto)
            .unwrap_or_else(|| v1::TenantSpending {
                tenant,
                ..v1::TenantSpending::default()
            });
        Ok(spending)
    }

    pub async fn list_tenant_budgets(
        &self,
        request: Call<v1::ListTenantBudgetsRequest>,
    ) -> Result<v1::ListTenantBudgetsResponse, Error> {
        let caller = request.require(Action::ReadTasks)?;
        let tenants = self
            .engine
            .budgets(caller.visible_tenants())
            .await
            .map_err(Error::from)?
            .into_iter()
            .map(spending_to_proto)
            .collect();
        Ok(v1::ListTenantBudgetsResponse { tenants })
    }
}

/// A tenant budget from the wire, each part checked and named.
fn tenant_budget(wire: v1::TenantBudget) -> Result<TenantBudget, Error> {
    let budget = TenantBudget {
        usd_per_day: wire.usd_per_day,
        usd_per_month: wire.usd_per_month,
        tokens_per_day: wire.tokens_per_day,
        tokens_per_month: wire.tokens_per_month,
    };
    orca_core::validate::validate_tenant_budget(&budget, "budget")?;
    Ok(budget)
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

fn spending_to_proto(
    (tenant, budget, today, this_month): orca_engine::TenantSpending,
) -> v1::TenantSpending {
    let now = now_micros();
    let spend = orca_core::TenantSpend {
        day: (Window::Day.start(now), today),
        month: (Window::Month.start(now), this_month),
    };
    let exhausted = spend
        .exhausted(&budget, now)
        .map(|e| {
            format!(
                "{} this {}; resets at {}",
                e.why,
                e.window.as_str(),
                timestamp(e.resets_at)
            )
        })
        .unwrap_or_default();
    let cost = |c: Cost| Some(v1::Cost::from(c));
    v1::TenantSpending {
        tenant,
        budget: Some(v1::TenantBudget {
            usd_per_day: budget.usd_per_day,
            usd_per_month: budget.usd_per_month,
            tokens_per_day: budget.tokens_per_day,
            tokens_per_month: budget.tokens_per_month,
        }),
        today: cost(today),
        this_month: cost(this_month),
        day_resets_at: Some(timestamp(Window::Day.end(now))),
        month_resets_at: Some(timestamp(Window::Month.end(now))),
        exhausted,
    }
}
