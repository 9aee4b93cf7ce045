//! The agents' MCP server as agent CLIs are told of it: tidewright's tools
//! (`tidewright_mcp`), started as `tidewright mcp` beside each agent.

use serde_json::json;

pub use tidewright_mcp::{SERVER_ENV, SERVER_NAME};

/// The `--mcp-config` value naming this server: `tidewright_bin mcp`, which finds
/// the server, the step's token and its task in the environment the agent
/// passes on (so no token is on a command line).
pub fn agent_config(tidewright_bin: &std::path::Path) -> String {
    json!({
        "mcpServers": {
            SERVER_NAME: {
                "type": "stdio",
                "command": tidewright_bin.display().to_string(),
                "args": ["mcp"],
            }
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_agent_config_runs_tidewright_mcp_without_secrets() {
        let config: Value =
            serde_json::from_str(&agent_config(std::path::Path::new("/usr/bin/tidewright")))
                .expect("json");
        let server = &config["mcpServers"][SERVER_NAME];
        assert_eq!(server["command"], "/usr/bin/tidewright");
        assert_eq!(server["args"], json!(["mcp"]));
        assert!(server.get("env").is_none());
    }
}
