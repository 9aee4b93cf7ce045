//! `orca webhook add|list|remove|deliveries`: tenants' webhook endpoints
//! and their delivery log (admins only).

use std::process::ExitCode;

use anyhow::Context;
use orca_api::convert::micros;
use orca_client::{Settings, v1};
use serde::Serialize;

use crate::args::{Format, WebhookCommand};
use crate::client::connect;
use crate::output::{emit, format_utc, print_table};

/// An endpoint as `-o json|yaml` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookView {
    id: String,
    tenant: String,
    url: String,
    events: Vec<String>,
    enabled: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    disabled_reason: String,
    created_at: Option<String>,
}

/// A delivery as `-o json|yaml` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryView {
    id: String,
    webhook_id: String,
    tenant: String,
    task_id: String,
    event: String,
    state: String,
    attempts: u32,
    last_status: u32,
    last_latency_ms: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    last_error: String,
    created_at: Option<String>,
    next_attempt_at: Option<String>,
    finished_at: Option<String>,
}

fn time(ts: &Option<prost_types::Timestamp>) -> Option<String> {
    ts.as_ref().map(|t| format_utc(micros(t)))
}

pub async fn webhook(settings: &Settings, command: WebhookCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    match command {
        WebhookCommand::Add {
            url,
            events,
            secret_file,
            tenant,
        } => {
            let secret = std::fs::read_to_string(&secret_file)
                .with_context(|| format!("--secret-file {}", secret_file.display()))?;
            let events: Vec<&str> = events.iter().map(String::as_str).collect();
            let webhook = client
                .create_webhook(
                    tenant.as_deref().unwrap_or_default(),
                    &url,
                    &events,
                    secret.trim(),
                )
                .await?;
            println!(
                "webhook {} added: {} receives {} of tenant {}",
                webhook.id,
                webhook.url,
                webhook.events.join(", "),
                webhook.tenant
            );
        }
        WebhookCommand::List { output } => {
            let webhooks = client.webhooks().await?;
            let views: Vec<WebhookView> = webhooks
                .iter()
                .map(|w| WebhookView {
                    id: w.id.clone(),
                    tenant: w.tenant.clone(),
                    url: w.url.clone(),
                    events: w.events.clone(),
                    enabled: w.enabled,
                    disabled_reason: w.disabled_reason.clone(),
                    created_at: time(&w.created_at),
                })
                .collect();
            if !emit(&views, views.iter().map(|v| &v.id), output)? {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.id.clone(),
                            v.tenant.clone(),
                            v.url.clone(),
                            v.events.join(","),
                            if v.enabled {
                                "enabled".into()
                            } else {
                                format!("disabled: {}", v.disabled_reason)
                            },
                        ]
                    })
                    .collect();
                print_table(&["ID", "TENANT", "URL", "EVENTS", "STATUS"], &rows);
            }
        }
        WebhookCommand::Remove { id } => {
            client.delete_webhook(&id).await?;
            println!("webhook {id} removed, with its deliveries");
        }
        WebhookCommand::Deliveries {
            webhook,
            limit,
            output,
        } => {
            let page = client
                .webhook_deliveries(webhook.as_deref().unwrap_or_default(), limit, "")
                .await?;
            deliveries(&page.deliveries, output)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn deliveries(deliveries: &[v1::WebhookDelivery], format: Format) -> anyhow::Result<()> {
    let views: Vec<DeliveryView> = deliveries
        .iter()
        .map(|d| DeliveryView {
            id: d.id.clone(),
            webhook_id: d.webhook_id.clone(),
            tenant: d.tenant.clone(),
            task_id: d.task_id.clone(),
            event: d.event.clone(),
            state: d.state.clone(),
            attempts: d.attempts,
            last_status: d.last_status,
            last_latency_ms: d.last_latency_ms,
            last_error: d.last_error.clone(),
            created_at: time(&d.created_at),
            next_attempt_at: time(&d.next_attempt_at),
            finished_at: time(&d.finished_at),
        })
        .collect();
    if emit(&views, views.iter().map(|v| &v.id), format)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.event.clone(),
                v.task_id.clone(),
                v.state.clone(),
                v.attempts.to_string(),
                match v.last_status {
                    0 => "-".into(),
                    status => status.to_string(),
                },
                format!("{} ms", v.last_latency_ms),
                v.created_at.clone().unwrap_or_default(),
                if v.last_error.is_empty() {
                    "-".into()
                } else {
                    v.last_error.chars().take(60).collect()
                },
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "EVENT",
            "TASK",
            "STATE",
            "TRIES",
            "STATUS",
            "LATENCY",
            "CREATED",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(())
}
