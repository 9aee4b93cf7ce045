//! `tidewright state get|put|delete`, `tidewright publish` and `tidewright subscribe`: shared
//! state and messages, for people and for shell steps (which find their
//! task's scope in $TIDEWRIGHT_TASK_ID); `tidewright mcp` serves the same to agents as
//! MCP tools.

use std::process::ExitCode;

use anyhow::bail;
use tidewright_client::{Settings, StateKey, v1};

use crate::args::{McpArgs, PublishArgs, ScopeArgs, StateCommand, SubscribeArgs};
use crate::client::connect;

/// The tenant ("" for the token's own) and the scope.
fn tenant_and_scope(scope: ScopeArgs) -> anyhow::Result<(String, String)> {
    let Some(scope_name) = scope.scope.filter(|s| !s.is_empty()) else {
        bail!("--scope: required outside a step (TIDEWRIGHT_TASK_ID is not set)");
    };
    Ok((scope.tenant.unwrap_or_default(), scope_name))
}

fn reference(key: String, scope: ScopeArgs) -> anyhow::Result<StateKey> {
    let (tenant, scope) = tenant_and_scope(scope)?;
    Ok(StateKey::new(scope, key).tenant(tenant))
}

fn topic(key: String, scope: ScopeArgs) -> anyhow::Result<v1::StateRef> {
    let (tenant, scope) = tenant_and_scope(scope)?;
    Ok(v1::StateRef { tenant, scope, key })
}

/// Serves the MCP tools until the agent hangs up. The connection is made on
/// the first call: an agent starts at once, and a control plane that cannot
/// be reached is a tool's answer, not a missing server.
pub async fn mcp(settings: &Settings, args: McpArgs) -> anyhow::Result<ExitCode> {
    let (tenant, scope) = tenant_and_scope(args.scope)?;
    let channel = tidewright_api::leader::Replicas::new(&settings.server, &settings.tls)?;
    let bearer = tidewright_api::client::Bearer::new(settings.token.as_deref())?;
    let tools = tidewright_mcp::Tools::new(channel, bearer, tenant, scope);
    tidewright_mcp::serve_stdio(tools).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn state(settings: &Settings, command: StateCommand) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    match command {
        StateCommand::Get { key, scope, full } => {
            let value = client.get_state(&reference(key, scope)?).await?;
            if full {
                let expires = value
                    .expires_at
                    .as_ref()
                    .map(|t| crate::output::format_utc(tidewright_api::convert::micros(t)));
                let entry = serde_json::json!({
                    "value": serde_json::from_str::<serde_json::Value>(&value.value_json)?,
                    "version": value.version,
                    "expiresAt": expires,
                });
                println!("{entry}");
            } else {
                println!("{}", value.value_json);
            }
        }
        StateCommand::List { scope } => {
            let (tenant, scope) = tenant_and_scope(scope)?;
            let mut after_key = String::new();
            loop {
                let page = client.list_state(&tenant, &scope, &after_key).await?;
                for value in &page.values {
                    let key = value.r#ref.as_ref().map_or("", |r| r.key.as_str());
                    println!("{key} {}", value.value_json);
                }
                if page.next_after_key.is_empty() {
                    break;
                }
                after_key = page.next_after_key;
            }
        }
        StateCommand::Put {
            key,
            value,
            scope,
            expect_version,
            ttl,
        } => {
            let ttl = match ttl {
                Some(ttl) if ttl.as_secs() == 0 => bail!("--ttl: at least 1s"),
                Some(ttl) => ttl,
                None => std::time::Duration::ZERO,
            };
            let stored = client
                .put_state(&reference(key, scope)?, &value, expect_version, ttl)
                .await?;
            println!("{}", stored.version);
        }
        StateCommand::Delete {
            key,
            scope,
            expect_version,
        } => {
            client
                .delete_state(&reference(key, scope)?, expect_version)
                .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn publish(settings: &Settings, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let delivered = connect(settings)
        .await?
        .state_stub()
        .publish(v1::PublishRequest {
            topic: Some(topic(args.topic, args.scope)?),
            message_json: args.message,
        })
        .await?
        .into_inner()
        .delivered;
    println!("delivered to {delivered} subscribers");
    Ok(ExitCode::SUCCESS)
}

pub async fn subscribe(settings: &Settings, args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let mut stream = connect(settings)
        .await?
        .state_stub()
        .subscribe(v1::SubscribeRequest {
            topic: Some(topic(args.topic, args.scope)?),
        })
        .await?
        .into_inner();
    let mut seen = 0;
    while args.count.is_none_or(|count| seen < count) {
        let Some(message) = stream.message().await? else {
            break;
        };
        println!("{}", message.message_json);
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
}
