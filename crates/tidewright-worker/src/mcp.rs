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

/// This server as an entry of a CLI's own settings file (`mcpServers`),
/// for a CLI that keeps a variable whose value looks like a JWT (a step
/// token does) from every MCP server, whatever its settings allow (the
/// Gemini CLI and Qwen Code): trusted, so its calls need no approval, and
/// given the step's `token` itself. The file holding it is the worker's
/// user's alone ([`write_private`]), and the token is taken out of it when
/// the run ends.
pub fn trusted_server(tidewright_bin: &std::path::Path, token: &str) -> serde_json::Value {
    json!({
        SERVER_NAME: {
            "command": tidewright_bin.display().to_string(),
            "args": ["mcp"],
            "env": {"TIDEWRIGHT_TOKEN": token},
            "trust": true,
        }
    })
}

/// Writes `text` to `path`, readable by the worker's user only: a CLI's
/// settings may hold the step's token.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
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

    #[test]
    fn a_private_file_is_the_workers_users_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("home/settings.json");
        write_private(&path, "{}").expect("written");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let server = &trusted_server(std::path::Path::new("/t"), "tok")[SERVER_NAME];
        assert_eq!(server["env"]["TIDEWRIGHT_TOKEN"], "tok");
        assert_eq!(server["trust"], true);
    }
}
