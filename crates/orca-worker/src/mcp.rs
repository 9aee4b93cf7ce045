//! The agents' MCP server (`orca mcp`): the control plane's shared state and
//! topics as tools a Claude Code agent can call, over stdio. The worker
//! names it in each agent's `--mcp-config`; it calls the `StateService` with
//! the step's own token, in its task's scope, so one agent can leave a
//! finding for another or wait for its message.

use std::time::Duration;

use orca_api::client::Bearer;
use orca_api::leader::Replicas;
use orca_api::v1;
use orca_api::v1::state_service_client::StateServiceClient;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
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
/// How long `wait_for_message` waits when the agent does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait an agent may ask for; a step's own timeout still rules.
const MAX_WAIT_SECONDS: u64 = 600;

type Client = StateServiceClient<InterceptedService<Replicas, Bearer>>;

/// The tools, bound to one tenant and scope.
#[derive(Clone)]
pub struct StateTools {
    client: Client,
    tenant: String,
    scope: String,
}

impl StateTools {
    /// Tools over `channel` with `bearer`, in `scope` (a task's id) of
    /// `tenant` ("" for the token's own).
    pub fn new(channel: Replicas, bearer: Bearer, tenant: String, scope: String) -> StateTools {
        StateTools {
            client: StateServiceClient::with_interceptor(channel, bearer),
            tenant,
            scope,
        }
    }

    fn at(&self, key: String) -> Option<v1::StateRef> {
        Some(v1::StateRef {
            tenant: self.tenant.clone(),
            scope: self.scope.clone(),
            key,
        })
    }

    async fn get(&self, args: &JsonObject) -> Result<Value, String> {
        let key = text(args, "key")?;
        let found = self
            .client
            .clone()
            .get_state(v1::GetStateRequest {
                r#ref: self.at(key.clone()),
            })
            .await;
        match found {
            Ok(value) => {
                let value = value.into_inner();
                Ok(json!({
                    "key": key,
                    "found": true,
                    "value": parse(&value.value_json)?,
                    "version": value.version,
                }))
            }
            Err(status) if status.code() == Code::NotFound => {
                Ok(json!({"key": key, "found": false}))
            }
            Err(status) => Err(refusal(&status)),
        }
    }

    async fn put(&self, args: &JsonObject) -> Result<Value, String> {
        let key = text(args, "key")?;
        let value = args
            .get("value")
            .ok_or_else(|| "value: required (any JSON value)".to_string())?;
        let stored = self
            .client
            .clone()
            .put_state(v1::PutStateRequest {
                r#ref: self.at(key.clone()),
                value_json: value.to_string(),
                expect_version: number(args, "expectVersion")?,
                ttl_seconds: number(args, "ttlSeconds")?
                    .map_or(Ok(0), u32::try_from)
                    .map_err(|_| "ttlSeconds: too large".to_string())?,
            })
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        Ok(json!({"key": key, "version": stored.version}))
    }

    async fn delete(&self, args: &JsonObject) -> Result<Value, String> {
        let key = text(args, "key")?;
        self.client
            .clone()
            .delete_state(v1::DeleteStateRequest {
                r#ref: self.at(key.clone()),
                expect_version: number(args, "expectVersion")?,
            })
            .await
            .map_err(|s| refusal(&s))?;
        Ok(json!({"key": key, "deleted": true}))
    }

    async fn publish(&self, args: &JsonObject) -> Result<Value, String> {
        let topic = text(args, "topic")?;
        let message = args
            .get("message")
            .ok_or_else(|| "message: required (any JSON value)".to_string())?;
        let sent = self
            .client
            .clone()
            .publish(v1::PublishRequest {
                topic: self.at(topic.clone()),
                message_json: message.to_string(),
            })
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        Ok(json!({"topic": topic, "delivered": sent.delivered}))
    }

    async fn wait_for_message(&self, args: &JsonObject) -> Result<Value, String> {
        let topic = text(args, "topic")?;
        let wait = match number(args, "timeoutSeconds")? {
            None => DEFAULT_WAIT,
            Some(s) if (1..=MAX_WAIT_SECONDS).contains(&s) => Duration::from_secs(s),
            Some(_) => return Err(format!("timeoutSeconds: 1 to {MAX_WAIT_SECONDS}")),
        };
        let mut messages = self
            .client
            .clone()
            .subscribe(v1::SubscribeRequest {
                topic: self.at(topic.clone()),
            })
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        match tokio::time::timeout(wait, messages.message()).await {
            Ok(Ok(Some(message))) => Ok(json!({
                "topic": topic,
                "message": parse(&message.message_json)?,
                "sender": message.sender,
            })),
            Ok(Ok(None)) => Err("the control plane ended the subscription".into()),
            Ok(Err(status)) => Err(refusal(&status)),
            Err(_) => Ok(json!({"topic": topic, "timedOut": true})),
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

fn tools() -> Vec<Tool> {
    let key = json!({"type": "string", "description": "The key, e.g. \"findings/root-cause\"."});
    let expect = json!({
        "type": "integer", "minimum": 0,
        "description": "Only if the key is at this version now (0: only if it has no value). \
                        On a conflict, read the key again and decide anew."
    });
    vec![
        Tool::new(
            "state_get",
            "Read a value the agents of this task share. Answers found=false when the key \
             has no value.",
            schema(json!({"key": key}), &["key"]),
        ),
        Tool::new(
            "state_put",
            "Store a JSON value for the other agents of this task (and the steps after this \
             one) under a key. Answers the value's new version.",
            schema(
                json!({
                    "key": key,
                    "value": {"description": "Any JSON value."},
                    "expectVersion": expect,
                    "ttlSeconds": {"type": "integer", "minimum": 1,
                                   "description": "Forget the value after this many seconds."},
                }),
                &["key", "value"],
            ),
        ),
        Tool::new(
            "state_delete",
            "Remove a shared value.",
            schema(json!({"key": key, "expectVersion": expect}), &["key"]),
        ),
        Tool::new(
            "publish",
            "Send a JSON message to the agents of this task waiting on a topic. Answers how \
             many received it; nobody waiting means nobody gets it (use state_put for facts \
             that must last).",
            schema(
                json!({
                    "topic": {"type": "string"},
                    "message": {"description": "Any JSON value."},
                }),
                &["topic", "message"],
            ),
        ),
        Tool::new(
            "wait_for_message",
            "Wait for the next message another agent of this task publishes on a topic \
             after this call starts. Answers timedOut=true if none comes in time.",
            schema(
                json!({
                    "topic": {"type": "string"},
                    "timeoutSeconds": {"type": "integer", "minimum": 1,
                                       "maximum": MAX_WAIT_SECONDS,
                                       "description": "How long to wait (default 60)."},
                }),
                &["topic"],
            ),
        ),
    ]
}

impl ServerHandler for StateTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Shared state and messages between the agents and steps of one orca task.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        let answer = match request.name.as_ref() {
            "state_get" => self.get(&args).await,
            "state_put" => self.put(&args).await,
            "state_delete" => self.delete(&args).await,
            "publish" => self.publish(&args).await,
            "wait_for_message" => self.wait_for_message(&args).await,
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
pub async fn serve_stdio(tools: StateTools) -> Result<(), Error> {
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
        for tool in tools() {
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
