//! `tidewright webhook add|list|remove|deliveries`: tenants' webhook endpoints
//! and their delivery log (admins only).

use std::process::ExitCode;

use anyhow::Context;
use tidewright_api::view::{DeliveryView, WebhookView, delivery_view, webhook_view};
use tidewright_client::{Settings, v1};

use crate::args::{Format, WebhookCommand};
use crate::client::connect;
use crate::output::{emit, print_table};

pub async fn webhook(settings: &Settings, command: WebhookCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    match command {
        WebhookCommand::Add {
            url,
            events,
            secret_file,
            tenant,
        } => {
            let secret = secret_of(&secret_file)?;
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
            let views: Vec<WebhookView> = webhooks.iter().map(webhook_view).collect();
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
    let views: Vec<DeliveryView> = deliveries.iter().map(delivery_view).collect();
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

/// The secret in `path`; where there is no such file, a new one made there,
/// readable by its owner only, for the receiver to verify with.
fn secret_of(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let named = || format!("--secret-file {}", path.display());
    match std::fs::read_to_string(path) {
        Ok(secret) => Ok(secret.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret =
                tidewright_server::webhooks::send::new_secret().map_err(anyhow::Error::msg)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(named)?;
            file.write_all(format!("{secret}\n").as_bytes())
                .with_context(named)?;
            eprintln!(
                "wrote a new signing secret to {}: give it to the receiver",
                path.display()
            );
            Ok(secret)
        }
        Err(e) => Err(e).with_context(named),
    }
}
