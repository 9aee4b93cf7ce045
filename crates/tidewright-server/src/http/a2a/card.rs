//! The agent card, `/.well-known/agent-card.json`: who tidewright is to another
//! agent, where it answers (JSON-RPC at `/a2a`), how a caller proves who it
//! is (a tidewright token as a bearer token), and its skills: each template, and
//! each agent runtime the fleet's connected workers offer, with their pools.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tidewright_core::template::Template;

use super::convert::RUNTIMES;

/// Where the card is served, as A2A's discovery expects it.
pub const CARD_PATH: &str = "/.well-known/agent-card.json";

/// Where the JSON-RPC binding answers.
pub const RPC_PATH: &str = "/a2a";

/// The protocol version tidewright speaks.
pub const PROTOCOL_VERSION: &str = "1.0";

/// The card. `base` is this port's URL as the caller reached it;
/// `runtimes` maps each runtime a connected worker offers to its pools.
pub fn card(base: &str, templates: &[Template], runtimes: &BTreeMap<String, Vec<String>>) -> Value {
    let mut skills: Vec<Value> = templates
        .iter()
        .map(|t| {
            let parameters: Vec<String> = t
                .parameters
                .iter()
                .map(|(name, p)| {
                    let required = if p.required { ", required" } else { "" };
                    format!("{name} ({}{required})", p.kind.name())
                })
                .collect();
            let mut description = t.description.clone();
            if !parameters.is_empty() {
                description.push_str(&format!(
                    " Parameters, as a data part's object (a text part is `prompt`): {}.",
                    parameters.join(", ")
                ));
            }
            json!({
                "id": t.name,
                "name": t.name,
                "description": description.trim(),
                "tags": ["template"],
                "inputModes": ["text/plain", "application/json"],
                "outputModes": ["text/plain", "application/json"],
            })
        })
        .collect();
    for (runtime, name) in RUNTIMES {
        let Some(pools) = runtimes.get(runtime) else {
            continue;
        };
        if templates.iter().any(|t| t.name == runtime) {
            continue;
        }
        let mut tags = vec!["agent".to_string(), runtime.to_string()];
        tags.extend(pools.iter().map(|p| format!("pool:{p}")));
        skills.push(json!({
            "id": runtime,
            "name": name,
            "description": format!(
                "{name} runs the message's text as its prompt, as one step on a worker of the \
                 fleet (pools: {}).",
                pools.join(", ")
            ),
            "tags": tags,
            "inputModes": ["text/plain"],
            "outputModes": ["text/plain", "application/json"],
        }));
    }
    json!({
        "name": "tidewright",
        "description": "tidewright's fleet of coding agents: a message becomes a tidewright task (a \
            template, or a prompt for an agent runtime, named as metadata.skill; a bare \
            text runs as a Claude Code prompt), queued, run, retried and costed by the \
            fleet, its progress streamed live.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [{
            "url": format!("{base}{RPC_PATH}"),
            "protocolBinding": "JSONRPC",
            "protocolVersion": PROTOCOL_VERSION,
        }],
        "capabilities": {
            "streaming": true,
            "pushNotifications": true,
        },
        "securitySchemes": {
            "tidewright": {
                "httpAuthSecurityScheme": {
                    "scheme": "Bearer",
                    "description": "a tidewright token (of the control plane's --tokens-file), or a JWT it trusts",
                }
            }
        },
        "securityRequirements": [{ "schemes": { "tidewright": { "list": [] } } }],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    })
}
