//! tidewright's MCP tools. Over stdio (`tidewright mcp`), the worker names them in each
//! agent's MCP config, and they call the control plane with the step's own
//! token; over HTTP (the control plane's `/mcp`), the fleet's tools act as
//! the caller of that request. Two sets of tools: the task's shared state and topics
//! (`state`), so one agent can leave a finding for another or wait for its
//! message; and the fleet (`fleet`), so a lead agent hands work to other
//! agents as tasks of their own (its task's children), waits for them and
//! reads what they did.

mod args;
mod fleet;
mod state;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use tidewright_api::client::Bearer;
use tidewright_api::leader::Replicas;

/// The server's name in the agent's MCP config: its tools are
/// `mcp__tidewright__<tool>`.
pub const SERVER_NAME: &str = "tidewright";
/// What `tidewright mcp` reads from the environment the agent passes on: where
/// the control plane is, the step's token and CA, and its task (the
/// scope). An agent CLI that starts MCP servers with a narrowed
/// environment (Codex) is told to let these through.
pub const SERVER_ENV: [&str; 5] = [
    "TIDEWRIGHT_SERVER",
    "TIDEWRIGHT_TOKEN",
    "TIDEWRIGHT_CA_FILE",
    "TIDEWRIGHT_TASK_ID",
    "TIDEWRIGHT_TENANT",
];

pub use fleet::{TaskCalls, WatchedEvents};

/// The fleet's tools, as listed.
pub fn fleet_tools() -> Vec<rmcp::model::Tool> {
    fleet::tools()
}

/// Why the tools could not be served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Serve(String),
}

/// The tools an MCP client is offered: the fleet's, and a task's shared
/// state when they are bound to one.
#[derive(Clone)]
pub struct Tools {
    state: Option<state::StateTools>,
    fleet: fleet::FleetTools,
}

impl Tools {
    /// Every tool, over `channel` with `bearer`, in `scope` (a task's id)
    /// of `tenant` ("" for the token's own): what `tidewright mcp` serves.
    pub fn new(channel: Replicas, bearer: Bearer, tenant: String, scope: String) -> Tools {
        let client = tidewright_api::v1::task_service_client::TaskServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
        Tools {
            state: Some(state::StateTools::new(
                channel,
                bearer,
                tenant.clone(),
                scope,
            )),
            fleet: fleet::FleetTools::new(std::sync::Arc::new(client), tenant),
        }
    }

    /// The fleet's tools alone, making their calls through `calls`.
    pub fn fleet(calls: std::sync::Arc<dyn TaskCalls>) -> Tools {
        Tools {
            state: None,
            fleet: fleet::FleetTools::new(calls, String::new()),
        }
    }

    /// Makes the call `request` names. A refused call is the tool's answer
    /// (marked as an error) for the agent to act on; a tool that is not
    /// here is a protocol error.
    pub async fn call(&self, request: CallToolRequestParams) -> Result<CallToolResult, McpError> {
        let args = request.arguments.unwrap_or_default();
        let answer = match (request.name.as_ref(), &self.state) {
            ("state_get", Some(state)) => state.get(&args).await,
            ("state_put", Some(state)) => state.put(&args).await,
            ("state_delete", Some(state)) => state.delete(&args).await,
            ("publish", Some(state)) => state.publish(&args).await,
            ("wait_for_message", Some(state)) => state.wait_for_message(&args).await,
            ("submit_task", _) => self.fleet.submit_task(&args).await,
            ("submit_template", _) => self.fleet.submit_template(&args).await,
            ("wait_for_task", _) => self.fleet.wait_for_task(&args).await,
            ("get_task", _) => self.fleet.get_task(&args).await,
            ("task_logs", _) => self.fleet.task_logs(&args).await,
            ("list_tasks", _) => self.fleet.list_tasks(&args).await,
            ("cancel_task", _) => self.fleet.cancel_task(&args).await,
            ("steer_task", _) => self.fleet.steer_task(&args).await,
            (other, _) => {
                return Err(McpError::invalid_params(
                    format!("there is no tool {other:?}"),
                    None,
                ));
            }
        };
        Ok(match answer {
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        })
    }

    /// The tools offered.
    pub fn list(&self) -> Vec<rmcp::model::Tool> {
        let mut tools = match self.state {
            Some(_) => state::tools(),
            None => Vec::new(),
        };
        tools.extend(fleet::tools());
        tools
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Shared state and messages between the agents and steps of one tidewright task, \
                 and the fleet: submit tasks (this task's children) to other agents, wait \
                 for them, read their results and logs, list, steer and cancel them.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        Ok(self.call(request).await?.into())
    }
}

/// Serves the tools on stdin and stdout until the agent closes them.
pub async fn serve_stdio(tools: Tools) -> Result<(), Error> {
    let running = tools
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Error::Serve(format!("starting the MCP server: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Error::Serve(format!("serving MCP: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
