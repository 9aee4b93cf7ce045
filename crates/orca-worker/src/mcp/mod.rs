//! The agents' MCP server (`orca mcp`), over stdio: the worker names it in
//! each agent's MCP config, and it calls the control plane with the step's
//! own token. Two sets of tools: the task's shared state and topics
//! (`state`), so one agent can leave a finding for another or wait for its
//! message; and the fleet (`fleet`), so a lead agent hands work to other
//! agents as tasks of their own (its task's children), waits for them and
//! reads what they did.

mod fleet;
mod state;

use orca_api::client::Bearer;
use orca_api::leader::Replicas;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tonic::{Code, Status};

use crate::error::Error;

/// The server's name in the agent's MCP config: its tools are
/// `mcp__orca__<tool>`.
pub const SERVER_NAME: &str = "orca";
/// What `orca mcp` reads from the environment the agent passes on: where
/// the control plane is, the step's token and CA, and its task (the
/// scope). An agent CLI that starts MCP servers with a narrowed
/// environment (Codex) is told to let these through.
pub const SERVER_ENV: [&str; 5] = [
    "ORCA_SERVER",
    "ORCA_TOKEN",
    "ORCA_CA_FILE",
    "ORCA_TASK_ID",
    "ORCA_TENANT",
];

/// Every tool, bound to one tenant and scope (a task's id).
#[derive(Clone)]
pub struct Tools {
    state: state::StateTools,
    fleet: fleet::FleetTools,
}

impl Tools {
    /// Tools over `channel` with `bearer`, in `scope` (a task's id) of
    /// `tenant` ("" for the token's own).
    pub fn new(channel: Replicas, bearer: Bearer, tenant: String, scope: String) -> Tools {
        Tools {
            state: state::StateTools::new(channel.clone(), bearer.clone(), tenant.clone(), scope),
            fleet: fleet::FleetTools::new(channel, bearer, tenant),
        }
    }
}

/// A required, non-empty string argument.
fn text(args: &JsonObject, name: &str) -> Result<String, String> {
    match args.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("{name}: must be a non-empty string")),
        None => Err(format!("{name}: required")),
    }
}

/// An optional whole-number argument.
fn number(args: &JsonObject, name: &str) -> Result<Option<u64>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{name}: must be a whole number, 0 or more")),
    }
}

fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the stored value is not JSON: {e}"))
}

/// What the agent is told when the control plane refuses a call: enough to
/// decide what to do next (a conflict means read again and retry).
fn refusal(status: &Status) -> String {
    let what = match status.code() {
        Code::Aborted => "conflict",
        Code::InvalidArgument => "invalid argument",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "not authenticated",
        Code::NotFound => "not found",
        Code::FailedPrecondition => "refused",
        Code::ResourceExhausted => "rate limited",
        Code::Unavailable => "the control plane is unreachable",
        _ => "failed",
    };
    format!("{what}: {}", status.message())
}

fn schema(properties: Value, required: &[&str]) -> JsonObject {
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Shared state and messages between the agents and steps of one orca task, \
                 and the fleet: submit tasks (this task's children) to other agents, wait \
                 for them, read their results and logs, list and cancel them.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let mut tools = state::tools();
        tools.extend(fleet::tools());
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let answer = match request.name.as_ref() {
            "state_get" => self.state.get(&args).await,
            "state_put" => self.state.put(&args).await,
            "state_delete" => self.state.delete(&args).await,
            "publish" => self.state.publish(&args).await,
            "wait_for_message" => self.state.wait_for_message(&args).await,
            "submit_task" => self.fleet.submit_task(&args).await,
            "submit_template" => self.fleet.submit_template(&args).await,
            "wait_for_task" => self.fleet.wait_for_task(&args).await,
            "get_task" => self.fleet.get_task(&args).await,
            "task_logs" => self.fleet.task_logs(&args).await,
            "list_tasks" => self.fleet.list_tasks(&args).await,
            "cancel_task" => self.fleet.cancel_task(&args).await,
            other => {
                return Err(McpError::invalid_params(
                    format!("there is no tool {other:?}"),
                    None,
                ));
            }
        };
        // A refused call is the tool's answer, for the agent to act on; not a
        // protocol error.
        Ok(match answer {
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        }
        .into())
    }
}

/// Serves the tools on stdin and stdout until the agent closes them.
pub async fn serve_stdio(tools: Tools) -> Result<(), Error> {
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::Mcp(format!("starting the MCP server: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::Mcp(format!("serving MCP: {e}")))?;
    Ok(())
}

/// The `--mcp-config` value naming this server: `orca_bin mcp`, which finds
/// the server, the step's token and its task in the environment the agent
/// passes on (so no token is on a command line).
pub fn agent_config(orca_bin: &std::path::Path) -> String {
    json!({
        "mcpServers": {
            SERVER_NAME: {
                "type": "stdio",
                "command": orca_bin.display().to_string(),
                "args": ["mcp"],
            }
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_by_name() {
        let args: JsonObject = serde_json::from_value(json!({
            "key": "", "n": -1, "ok": 3
        }))
        .expect("object");
        assert_eq!(
            text(&args, "key").expect_err("empty"),
            "key: must be a non-empty string"
        );
        assert_eq!(text(&args, "topic").expect_err("absent"), "topic: required");
        assert!(number(&args, "n").expect_err("negative").starts_with("n: "));
        assert_eq!(number(&args, "ok"), Ok(Some(3)));
        assert_eq!(number(&args, "absent"), Ok(None));
    }

    #[test]
    fn every_tool_has_an_object_schema_naming_its_required_arguments() {
        for tool in state::tools().into_iter().chain(fleet::tools()) {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            let properties = tool.input_schema["properties"]
                .as_object()
                .expect("properties");
            for required in tool.input_schema["required"].as_array().expect("required") {
                let name = required.as_str().expect("a name");
                assert!(properties.contains_key(name), "{}: {name}", tool.name);
            }
        }
    }

    #[test]
    fn the_agent_config_runs_orca_mcp_without_secrets() {
        let config: Value =
            serde_json::from_str(&agent_config(std::path::Path::new("/usr/bin/orca")))
                .expect("json");
        let server = &config["mcpServers"][SERVER_NAME];
        assert_eq!(server["command"], "/usr/bin/orca");
        assert_eq!(server["args"], json!(["mcp"]));
        assert!(server.get("env").is_none());
    }
}
