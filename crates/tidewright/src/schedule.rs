//! `tidewright schedule create|list|get|delete|suspend|resume|trigger`: a task
//! submitted at each tick of a cron, in a time zone, and what each tick did.

use std::process::ExitCode;

use anyhow::Context;
use tidewright_api::convert::micros;
use tidewright_api::view::{ScheduleView, format_utc, schedule_view};
use tidewright_client::{Settings, v1};

use crate::args::{ScheduleCommand, ScheduleCreateArgs};
use crate::client::connect;
use crate::output::{emit, print_table};

pub async fn schedule(settings: &Settings, command: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let tenant_of = |t: &Option<String>| t.clone().unwrap_or_default();
    match command {
        ScheduleCommand::Create(args) => {
            let tenant = tenant_of(&args.tenant);
            let spec = spec_of(args)?;
            let made = client.create_schedule(&tenant, spec).await?;
            let next = made
                .next_tick
                .as_ref()
                .map_or("-".to_string(), |t| format_utc(micros(t)));
            println!(
                "schedule {} created in tenant {}: next tick {next}",
                made.spec.as_ref().map_or("", |s| s.name.as_str()),
                made.tenant
            );
        }
        ScheduleCommand::List { output } => {
            let schedules = client.schedules().await?;
            let views: Vec<ScheduleView> = schedules.iter().map(schedule_view).collect();
            if !emit(&views, schedules.iter().map(name_of), output)? {
                let rows: Vec<Vec<String>> = schedules
                    .iter()
                    .map(|s| {
                        let spec = s.spec.clone().unwrap_or_default();
                        vec![
                            spec.name,
                            s.tenant.clone(),
                            spec.cron,
                            if spec.timezone.is_empty() {
                                "UTC".into()
                            } else {
                                spec.timezone
                            },
                            if spec.suspended {
                                "suspended".into()
                            } else {
                                s.next_tick
                                    .as_ref()
                                    .map_or("-".into(), |t| format_utc(micros(t)))
                            },
                            s.history.last().map_or("-".into(), run_line),
                        ]
                    })
                    .collect();
                print_table(
                    &["NAME", "TENANT", "CRON", "TIMEZONE", "NEXT", "LAST RUN"],
                    &rows,
                );
            }
        }
        ScheduleCommand::Get {
            name,
            tenant,
            output,
        } => {
            let found = client.schedule(&tenant_of(&tenant), &name).await?;
            if !emit(&schedule_view(&found), [name_of(&found)], output)? {
                let spec = found.spec.clone().unwrap_or_default();
                println!("Name:      {}", spec.name);
                println!("Tenant:    {}", found.tenant);
                println!("Cron:      {} ({})", spec.cron, zone(&spec.timezone));
                println!(
                    "Policy:    concurrency {}, missed ticks {}, deadline {}s",
                    spec.concurrency_policy,
                    spec.missed,
                    match spec.starting_deadline_seconds {
                        0 => tidewright_core::schedule::DEFAULT_STARTING_DEADLINE_SECONDS,
                        n => n,
                    }
                );
                println!(
                    "Next tick: {}",
                    if spec.suspended {
                        "suspended (tidewright schedule resume to go on)".into()
                    } else {
                        found
                            .next_tick
                            .as_ref()
                            .map_or("-".into(), |t| format_utc(micros(t)))
                    }
                );
                let rows: Vec<Vec<String>> = found
                    .history
                    .iter()
                    .rev()
                    .map(|run| {
                        vec![
                            run.tick
                                .as_ref()
                                .map_or("-".into(), |t| format_utc(micros(t))),
                            if run.task_id.is_empty() {
                                "skipped".into()
                            } else {
                                run.task_id.clone()
                            },
                            run.skipped.clone(),
                        ]
                    })
                    .collect();
                println!();
                print_table(&["TICK", "TASK", "WHY SKIPPED"], &rows);
            }
        }
        ScheduleCommand::Delete { name, tenant } => {
            client.delete_schedule(&tenant_of(&tenant), &name).await?;
            println!("schedule {name} deleted; its tasks stay");
        }
        ScheduleCommand::Suspend { name, tenant } => {
            client
                .suspend_schedule(&tenant_of(&tenant), &name, true)
                .await?;
            println!("schedule {name} suspended");
        }
        ScheduleCommand::Resume { name, tenant } => {
            client
                .suspend_schedule(&tenant_of(&tenant), &name, false)
                .await?;
            println!("schedule {name} resumed: the ticks it passed over do not fire");
        }
        ScheduleCommand::Trigger { name, tenant } => {
            let task_id = client.trigger_schedule(&tenant_of(&tenant), &name).await?;
            println!("{task_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The schedule `create` asks for: its task file read, or its template's
/// parameters split.
fn spec_of(args: ScheduleCreateArgs) -> anyhow::Result<v1::ScheduleSpec> {
    let task = match &args.file {
        Some(path) => Some(v1::TaskSpec::from(&crate::taskfile::load(path)?)),
        None => None,
    };
    let template = match args.template {
        Some(name) => {
            let mut params = std::collections::HashMap::new();
            for param in &args.params {
                let (key, value) = param
                    .split_once('=')
                    .with_context(|| format!("-p {param}: must be key=value"))?;
                params.insert(key.to_string(), value.to_string());
            }
            Some(v1::ScheduleTemplate { name, params })
        }
        None => None,
    };
    Ok(v1::ScheduleSpec {
        name: args.name,
        cron: args.cron,
        timezone: args.timezone,
        task,
        template,
        concurrency_policy: args.concurrency_policy,
        starting_deadline_seconds: args.starting_deadline_seconds.unwrap_or_default(),
        missed: args.missed,
        suspended: args.suspended,
    })
}

fn name_of(schedule: &v1::Schedule) -> String {
    schedule
        .spec
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

fn zone(timezone: &str) -> &str {
    if timezone.is_empty() { "UTC" } else { timezone }
}

fn run_line(run: &v1::ScheduleRun) -> String {
    let tick = run
        .tick
        .as_ref()
        .map_or("-".into(), |t| format_utc(micros(t)));
    if run.task_id.is_empty() {
        format!("{tick} skipped")
    } else {
        format!("{tick} {}", run.task_id)
    }
}
