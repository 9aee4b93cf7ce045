//! The budget routes: raise a task's budget, approve a paused one going on,
//! set a tenant's (admins), and list tenants' spend against their budgets.

use tidewright_core::{Budget, TenantBudget};
use tidewright_engine::service::{ApproveBudget, RaiseBudget, SetTenantBudget};

use super::*;

/// What to add to a task's budget; at least one part.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RaiseBody {
    /// Dollars to add.
    #[serde(default)]
    usd: Option<f64>,
    /// Tokens to add.
    #[serde(default, deserialize_with = "whole_count")]
    tokens: Option<u64>,
}

/// A tenant's limits per UTC day and month; parts left out are no limit.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TenantBudgetBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usd_per_day: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usd_per_month: Option<f64>,
    #[serde(
        default,
        deserialize_with = "whole_count",
        skip_serializing_if = "Option::is_none"
    )]
    tokens_per_day: Option<u64>,
    #[serde(
        default,
        deserialize_with = "whole_count",
        skip_serializing_if = "Option::is_none"
    )]
    tokens_per_month: Option<u64>,
}

/// A tenant's budget and what it spent this UTC day and month.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TenantSpendingView {
    tenant: String,
    budget: TenantBudgetBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    today: Option<CostView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    this_month: Option<CostView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    day_resets_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    month_resets_at: Option<String>,
    /// Set while a budget is spent: which, and until when.
    #[serde(skip_serializing_if = "String::is_empty")]
    exhausted: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TenantBudgetList {
    tenants: Vec<TenantSpendingView>,
}

fn spending_view(t: v1::TenantSpending) -> TenantSpendingView {
    let budget = t.budget.unwrap_or_default();
    TenantSpendingView {
        tenant: t.tenant,
        budget: TenantBudgetBody {
            usd_per_day: budget.usd_per_day,
            usd_per_month: budget.usd_per_month,
            tokens_per_day: budget.tokens_per_day,
            tokens_per_month: budget.tokens_per_month,
        },
        today: tidewright_api::view::cost_view(&t.today),
        this_month: tidewright_api::view::cost_view(&t.this_month),
        day_resets_at: tidewright_api::view::rfc3339(&t.day_resets_at),
        month_resets_at: tidewright_api::view::rfc3339(&t.month_resets_at),
        exhausted: t.exhausted,
    }
}

#[utoipa::path(post, path = "/tasks/{id}/budget", tag = "tasks",
    summary = "Add to an unfinished task's budget; a task paused for it goes on (RaiseBudget)",
    params(("id" = String, Path, description = "the task id")),
    request_body(content = RaiseBody, content_type = "application/json", description = "{\"usd\": 5} or {\"tokens\": 100000}"),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the task is finished", body = ErrorBody), Refused))]
pub(super) async fn raise_budget(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    body: Result<String, StringRejection>,
) -> Answer<TaskView> {
    let body: RaiseBody = json_body(body)?;
    let request = RaiseBudget {
        task_id,
        by: Budget {
            usd: body.usd,
            tokens: body.tokens,
            approvers: Vec::new(),
        },
    };
    let task = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.budgets.raise_budget(r).await
    })
    .await?;
    Ok(Json(task_view(&task_to_proto(task))))
}

#[utoipa::path(post, path = "/tasks/{id}/budget/approve", tag = "tasks",
    summary = "As one of its budget's approvers, let a task paused for its budget go on with as much again (ApproveBudget)",
    params(("id" = String, Path, description = "the task id")),
    request_body(content = DecisionBody, content_type = "application/json", description = "optional: {\"reason\": \"…\"}"),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, description = "the task is not paused for its own budget, or its budget names no approvers", body = ErrorBody), Refused))]
pub(super) async fn approve_budget(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    body: Result<String, StringRejection>,
) -> Answer<TaskView> {
    let request = ApproveBudget {
        task_id,
        reason: decision_body(body)?.reason,
    };
    let task = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.budgets.approve_budget(r).await
    })
    .await?;
    Ok(Json(task_view(&task_to_proto(task))))
}

#[utoipa::path(put, path = "/tenants/{tenant}/budget", tag = "budgets",
    summary = "Set a tenant's budget per UTC day and month (SetTenantBudget; admins)",
    params(("tenant" = String, Path, description = "the tenant")),
    request_body(content = TenantBudgetBody, content_type = "application/json", description = "{\"usdPerDay\": 50}; {} removes it"),
    responses((status = 200, body = TenantSpendingView), Refused))]
pub(super) async fn set_tenant_budget(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    body: Result<String, StringRejection>,
) -> Answer<TenantSpendingView> {
    let body: TenantBudgetBody = json_body(body)?;
    let request = SetTenantBudget {
        tenant,
        budget: TenantBudget {
            usd_per_day: body.usd_per_day,
            usd_per_month: body.usd_per_month,
            tokens_per_day: body.tokens_per_day,
            tokens_per_month: body.tokens_per_month,
        },
    };
    let spending = call(&app, &headers, Access::Change, request, |s, r| async move {
        s.budgets.set_tenant_budget(r).await
    })
    .await?;
    Ok(Json(spending_view(wire::spending(spending))))
}

#[utoipa::path(get, path = "/budgets", tag = "budgets",
    summary = "Tenants' spend this UTC day and month against their budgets (ListTenantBudgets)",
    responses((status = 200, body = TenantBudgetList), Refused))]
pub(super) async fn list_budgets(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Answer<TenantBudgetList> {
    let list = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.budgets.list_tenant_budgets(r).await
    })
    .await?;
    Ok(Json(TenantBudgetList {
        tenants: list
            .into_iter()
            .map(|t| spending_view(wire::spending(t)))
            .collect(),
    }))
}
