//! `tidewright trigger add|list|remove`: a forge's event on a repository
//! starts a template's task, and what its last deliveries did.

use std::process::ExitCode;

use tidewright_api::view::{TriggerView, trigger_view};
use tidewright_client::{Settings, v1};

use crate::args::{TriggerAddArgs, TriggerCommand};
use crate::client::connect;
use crate::output::{emit, print_table};

pub async fn trigger(settings: &Settings, command: TriggerCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    match command {
        TriggerCommand::Add(args) => {
            let tenant = args.tenant.clone().unwrap_or_default();
            let spec = spec_of(args)?;
            let made = client.create_trigger(&tenant, spec).await?;
            let spec = made.spec.unwrap_or_default();
            println!(
                "trigger {} added in tenant {}: {} on {} {} starts {}",
                spec.name, made.tenant, spec.event, spec.forge, spec.repository, spec.template
            );
        }
        TriggerCommand::List { output } => {
            let triggers = client.triggers().await?;
            let views: Vec<TriggerView> = triggers.iter().map(trigger_view).collect();
            let names = views.iter().map(|v| v.name.clone());
            if !emit(&views, names, output)? {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.tenant.clone(),
                            format!("{} {}", t.forge, t.repository),
                            t.event.clone(),
                            t.template.clone(),
                            t.history.last().map_or("-".into(), |run| {
                                if run.refused.is_empty() {
                                    run.task_id.clone()
                                } else {
                                    format!("refused: {}", run.refused)
                                }
                            }),
                        ]
                    })
                    .collect();
                print_table(
                    &["NAME", "TENANT", "REPOSITORY", "EVENT", "TEMPLATE", "LAST"],
                    &rows,
                );
            }
        }
        TriggerCommand::Remove { name, tenant } => {
            client
                .delete_trigger(&tenant.unwrap_or_default(), &name)
                .await?;
            println!("trigger {name} removed; its tasks stay");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The trigger `add` asks for, its parameters split.
fn spec_of(args: Box<TriggerAddArgs>) -> anyhow::Result<v1::TriggerSpec> {
    let params = crate::template::parameters(&args.params)?
        .into_iter()
        .collect();
    Ok(v1::TriggerSpec {
        name: args.name,
        forge: args.forge,
        repository: args.repository,
        event: args.event,
        label: args.label,
        command: args.command,
        branch: args.branch,
        template: args.template,
        params,
        credentials_secret: args.credentials_secret,
        api_url: args.api_url,
    })
}
