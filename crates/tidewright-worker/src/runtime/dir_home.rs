//! A home of its own per working directory, for an agent CLI that reads
//! its settings from its home (Codex, the Gemini CLI, Qwen Code): under
//! the worker's home for that CLI, `<name>/<the working directory,
//! mangled>`. A run then sees its own sessions and no other step's, and the
//! settings tidewright writes there (with the step's token for tidewright's
//! MCP server, when the step may call it) are that run's alone.

use std::path::{Path, PathBuf};

use super::attempt::Attempt;
use super::session::mangled;
use crate::mcp::write_private;
use crate::sandbox::{SANDBOX_HOME, Sandbox};

/// Tidewright's executable and the step's token, for its MCP server.
pub type McpAccess<'a> = Option<(&'a Path, &'a str)>;

/// A settings file: where it goes in a home, and what it holds with
/// tidewright's MCP server or without.
pub type SettingsFile = (&'static str, fn(McpAccess) -> String);

/// An agent CLI's homes per working directory.
#[derive(Clone, Copy)]
pub struct DirHome {
    /// The folder of the CLI's homes under the worker's home.
    pub name: &'static str,
    /// The settings file tidewright writes in a home, and what it holds
    /// with tidewright's MCP server or without; `None` for a CLI whose
    /// runtime writes its own (Codex's `config.toml` names the model).
    pub settings: Option<SettingsFile>,
}

impl DirHome {
    /// Under the worker's home, the home of runs in `cwd`.
    pub fn of(&self, cwd: &Path) -> PathBuf {
        Path::new(self.name).join(mangled(cwd))
    }

    /// The home of a run in `cwd`, on the worker under `home` (made, with
    /// its settings written for `attempt`), and as the CLI sees it: the
    /// sandbox gives the process a private home of its own.
    pub fn prepare(&self, home: &Path, attempt: &Attempt, cwd: &Path) -> (PathBuf, PathBuf) {
        let under_home = self.of(cwd);
        let host_home = home.join(&under_home);
        let _ = std::fs::create_dir_all(&host_home);
        let mcp = attempt
            .access
            .as_ref()
            .and_then(|a| Some((a.tidewright_bin.as_deref()?, a.token.as_str())));
        self.write_settings(&host_home, mcp);
        let seen_home = match attempt.host.sandbox.as_ref() {
            Sandbox::Off => host_home.clone(),
            _ => Path::new(SANDBOX_HOME).join(&under_home),
        };
        (host_home, seen_home)
    }

    /// After a run in `cwd`: its settings again without the step's token,
    /// which goes with the run.
    pub fn ran(&self, home: &Path, cwd: &Path) {
        self.write_settings(&home.join(self.of(cwd)), None);
    }

    fn write_settings(&self, host_home: &Path, mcp: McpAccess) {
        if let Some((file, json)) = self.settings {
            let _ = write_private(&host_home.join(file), &json(mcp));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(mcp: McpAccess) -> String {
        match mcp {
            Some((_, token)) => format!("{{\"token\":\"{token}\"}}"),
            None => "{}".into(),
        }
    }

    #[test]
    fn a_run_leaves_its_homes_settings_without_the_token() {
        let home = tempfile::tempdir().expect("temp dir");
        let cli = DirHome {
            name: "cli",
            settings: Some(("conf/settings.json", json)),
        };
        let cwd = Path::new("/w/t1/s/attempt-1");
        assert_eq!(cli.of(cwd), Path::new("cli/-w-t1-s-attempt-1"));
        let file = home.path().join(cli.of(cwd)).join("conf/settings.json");
        cli.write_settings(
            &home.path().join(cli.of(cwd)),
            Some((Path::new("/bin/t"), "tok")),
        );
        assert_eq!(
            std::fs::read_to_string(&file).expect("written"),
            "{\"token\":\"tok\"}"
        );
        cli.ran(home.path(), cwd);
        assert_eq!(std::fs::read_to_string(&file).expect("written"), "{}");
    }
}
