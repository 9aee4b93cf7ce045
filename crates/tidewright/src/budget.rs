//! `tidewright budget`: tenants' spend against their budgets, setting a tenant's
//! budget, raising a task's; and `tidewright approve TASK --budget`.

use std::process::ExitCode;

use anyhow::bail;
use serde::Serialize;
use tidewright_client::{Settings, v1};

use crate::args::{BudgetCommand, Format};
use crate::client::connect;
use crate::output;

pub async fn budget(settings: &Settings, command: BudgetCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    match command {
        BudgetCommand::Get { output: format } => {
            let tenants = client.tenant_budgets().await?;
            print_spending(&tenants, format)?;
        }
        BudgetCommand::Set {
            tenant,
            usd_per_day,
            usd_per_month,
            tokens_per_day,
            tokens_per_month,
        } => {
            let budget = v1::TenantBudget {
                usd_per_day,
                usd_per_month,
                tokens_per_day,
                tokens_per_month,
            };
            let spending = client.set_tenant_budget(&tenant, budget).await?;
            print_spending(&[spending], Format::Table)?;
        }
        BudgetCommand::Raise { task, usd, tokens } => {
            if usd.is_none() && tokens.is_none() {
                bail!("say what to add: --usd N, --tokens N or both");
            }
            let by = v1::Budget {
                usd,
                tokens,
                approvers: Vec::new(),
            };
            let task = client.raise_budget(&task, by).await?;
            print_task_budget(&task);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tidewright approve TASK --budget`: as one of its budget's approvers, lets a
/// task paused for its budget go on.
pub async fn approve(
    settings: &Settings,
    task_id: String,
    reason: String,
) -> anyhow::Result<ExitCode> {
    let task = connect(settings)
        .await?
        .approve_budget(&task_id, &reason)
        .await?;
    print_task_budget(&task);
    Ok(ExitCode::SUCCESS)
}

/// What a raised or approved budget now is, and where the task stands.
fn print_task_budget(task: &v1::Task) {
    let budget = task
        .spec
        .as_ref()
        .and_then(|s| s.budget.as_ref())
        .map(|b| output::limits(b.usd, b.tokens))
        .unwrap_or_default();
    let state = output::task_state_name(task.state);
    let spent = output::usd(&task.cost);
    let spent = if spent.is_empty() { "$0".into() } else { spent };
    println!(
        "task {} budget is now {budget} ({spent} spent); the task is {state}",
        task.id
    );
    if state == "paused" {
        println!("{}", task.message);
    }
}

/// The JSON and YAML shape of one tenant's line.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpendingView {
    tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    usd_per_day: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usd_per_month: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_per_day: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_per_month: Option<u64>,
    usd_today: f64,
    usd_this_month: f64,
    tokens_today: u64,
    tokens_this_month: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    exhausted: String,
}

fn tokens(cost: &Option<v1::Cost>) -> u64 {
    cost.as_ref().map_or(0, |c| {
        c.input_tokens + c.output_tokens + c.cache_read_tokens + c.cache_creation_tokens
    })
}

fn print_spending(tenants: &[v1::TenantSpending], format: Format) -> anyhow::Result<()> {
    let views: Vec<SpendingView> = tenants
        .iter()
        .map(|t| {
            let budget = t.budget.unwrap_or_default();
            SpendingView {
                tenant: t.tenant.clone(),
                usd_per_day: budget.usd_per_day,
                usd_per_month: budget.usd_per_month,
                tokens_per_day: budget.tokens_per_day,
                tokens_per_month: budget.tokens_per_month,
                usd_today: t.today.map_or(0.0, |c| c.usd),
                usd_this_month: t.this_month.map_or(0.0, |c| c.usd),
                tokens_today: tokens(&t.today),
                tokens_this_month: tokens(&t.this_month),
                exhausted: t.exhausted.clone(),
            }
        })
        .collect();
    if output::emit(&views, views.iter().map(|v| &v.tenant), format)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.tenant.clone(),
                format!("${:.4}", v.usd_today),
                output::limits(v.usd_per_day, v.tokens_per_day),
                format!("${:.4}", v.usd_this_month),
                output::limits(v.usd_per_month, v.tokens_per_month),
                if v.exhausted.is_empty() {
                    "ok".into()
                } else {
                    format!("spent: {}", v.exhausted)
                },
            ]
        })
        .collect();
    output::print_table(
        &[
            "TENANT",
            "TODAY",
            "PER DAY",
            "THIS MONTH",
            "PER MONTH",
            "STATUS",
        ],
        &rows,
    );
    Ok(())
}
