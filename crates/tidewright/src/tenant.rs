//! `tidewright tenant`: tenants' shares of the fleet (weight, cap on
//! running steps) with their steps running and waiting, and setting one.

use std::process::ExitCode;

use tidewright_api::view::{TenantShareView, share_view};
use tidewright_client::{Settings, v1};

use crate::args::{Format, TenantCommand};
use crate::client::connect;
use crate::output;

pub async fn tenant(settings: &Settings, command: TenantCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    match command {
        TenantCommand::Get { output: format } => {
            print_shares(&client.tenant_shares().await?, format)?;
        }
        TenantCommand::Set {
            tenant,
            weight,
            max_running,
            fairness_key,
        } => {
            let share = client
                .set_tenant_share(&tenant, (weight, max_running), &fairness_key)
                .await?;
            print_shares(&[share], Format::Table)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_shares(tenants: &[v1::TenantShare], format: Format) -> anyhow::Result<()> {
    let views: Vec<TenantShareView> = tenants.iter().map(share_view).collect();
    if output::emit(&views, views.iter().map(|v| &v.tenant), format)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.tenant.clone(),
                v.weight.to_string(),
                v.max_running.map_or("-".into(), |n| n.to_string()),
                v.running.to_string(),
                v.waiting.to_string(),
                if v.fairness_key.is_empty() {
                    "-".into()
                } else {
                    v.fairness_key.clone()
                },
            ]
        })
        .collect();
    output::print_table(
        &[
            "TENANT",
            "WEIGHT",
            "MAX RUNNING",
            "RUNNING",
            "WAITING",
            "SHARED BY",
        ],
        &rows,
    );
    Ok(())
}
