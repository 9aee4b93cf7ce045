//! The CLI's config file: named contexts (a server, its token, its TLS
//! files), one of them current, like kubectl's kubeconfig. Flags and `ORCA_*`
//! variables override the context; the context overrides the defaults.
//!
//! ```yaml
//! current-context: prod
//! contexts:
//!   prod:
//!     server: https://orca.example.com:7070
//!     token-file: prod.token      # relative to this file
//!     ca-file: prod-ca.pem
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use orca_api::client::ClientTls;
use serde::{Deserialize, Serialize};

use crate::args::{Cli, Command, ConfigCommand};

/// Where the CLI goes when nothing says otherwise: `orca up`'s default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Context {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// A token inline; `token-file` keeps it out of this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

/// Where a command connects, with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub server: String,
    pub token: Option<String>,
    pub tls: ClientTls,
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("orca").join("config.yaml"))
}

/// The config file's path, and whether the user named it (then it must exist).
fn config_path(cli: &Cli) -> (Option<PathBuf>, bool) {
    match &cli.config {
        Some(path) => (Some(path.clone()), true),
        None => (default_path(), false),
    }
}

fn load(path: &Path, required: bool) -> anyhow::Result<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_yaml::from_str(&text).with_context(|| format!("config file {}", path.display()))
        }
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(ConfigFile::default())
        }
        Err(e) => bail!("config file {}: {e}", path.display()),
    }
}

/// Paths in the config file are relative to it; `~/` is the home directory.
fn anchor(path: &Path, config_dir: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    config_dir.join(path)
}

fn read_token(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))
}

/// Flags, then the context, then the defaults.
pub fn resolve(cli: &Cli) -> anyhow::Result<Resolved> {
    let (path, required) = config_path(cli);
    let (file, dir) = match &path {
        Some(path) => (
            load(path, required)?,
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        ),
        None => (ConfigFile::default(), PathBuf::new()),
    };
    let shown = || {
        path.as_ref()
            .map_or("the config file".to_string(), |p| p.display().to_string())
    };
    let context = match cli.context.as_ref().or(file.current_context.as_ref()) {
        Some(name) => file
            .contexts
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("context {name:?} is not in {}", shown()))?,
        None => Context::default(),
    };
    let server = cli
        .server
        .clone()
        .or(context.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let token = if let Some(token) = &cli.token {
        Some(token.clone())
    } else if let Some(file) = &cli.token_file {
        Some(read_token(file, "--token-file")?)
    } else if let Some(token) = context.token {
        Some(token)
    } else if let Some(file) = &context.token_file {
        Some(read_token(&anchor(file, &dir), "the context's token-file")?)
    } else {
        local_token(matches!(cli.command, Command::Worker(_)))?
    };
    let from_context = |p: Option<PathBuf>| p.map(|p| anchor(&p, &dir));
    let tls = ClientTls {
        ca_file: cli
            .ca_file
            .clone()
            .or_else(|| from_context(context.ca_file)),
        cert_file: cli
            .client_cert
            .clone()
            .or_else(|| from_context(context.client_cert)),
        key_file: cli
            .client_key
            .clone()
            .or_else(|| from_context(context.client_key)),
    };
    Ok(Resolved { server, token, tls })
}

/// The token `orca up` wrote in the working directory, if it is there.
fn local_token(worker: bool) -> anyhow::Result<Option<String>> {
    let path = if worker {
        ".orca/worker.token"
    } else {
        ".orca/admin.token"
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("{path}: {e}"),
    }
}

/// Writes the file readable by its owner only: it may hold tokens.
fn save(path: &Path, file: &ConfigFile) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_yaml::to_string(file)?;
    let temporary = path.with_extension("yaml.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `orca config ...`
pub fn command(cli: &Cli, command: &ConfigCommand) -> anyhow::Result<ExitCode> {
    let (path, required) = config_path(cli);
    let path = path.ok_or_else(|| anyhow::anyhow!("no config file: set --config or HOME"))?;
    // set-context creates the file it is pointed at.
    let creates = matches!(command, ConfigCommand::SetContext { .. });
    let mut file = load(&path, required && !creates)?;
    match command {
        ConfigCommand::GetContexts => {
            println!("CURRENT  NAME  SERVER");
            for (name, context) in &file.contexts {
                let current = file.current_context.as_deref() == Some(name.as_str());
                println!(
                    "{:<8} {name}  {}",
                    if current { "*" } else { "" },
                    context.server.as_deref().unwrap_or(DEFAULT_SERVER)
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        ConfigCommand::UseContext { name } => {
            if !file.contexts.contains_key(name) {
                bail!("context {name:?} is not in {}", path.display());
            }
            file.current_context = Some(name.clone());
        }
        ConfigCommand::SetContext {
            name,
            server,
            token_file,
            ca_file,
            client_cert,
            client_key,
        } => {
            if name.is_empty() {
                bail!("the context name must not be empty");
            }
            let context = file.contexts.entry(name.clone()).or_default();
            let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
            if let Some(server) = server {
                let scheme = server.starts_with("http://") || server.starts_with("https://");
                if !scheme || tonic::transport::Endpoint::from_shared(server.clone()).is_err() {
                    bail!("--server {server:?} is not a URL like https://orca.example.com:7070");
                }
                context.server = Some(server.clone());
            }
            // Stored absolute: the file is read from other directories.
            if let Some(p) = token_file {
                context.token_file = Some(absolute(p));
            }
            if let Some(p) = ca_file {
                context.ca_file = Some(absolute(p));
            }
            if let Some(p) = client_cert {
                context.client_cert = Some(absolute(p));
            }
            if let Some(p) = client_key {
                context.client_key = Some(absolute(p));
            }
            if file.current_context.is_none() {
                file.current_context = Some(name.clone());
            }
        }
        ConfigCommand::DeleteContext { name } => {
            if file.contexts.remove(name).is_none() {
                bail!("context {name:?} is not in {}", path.display());
            }
            if file.current_context.as_deref() == Some(name.as_str()) {
                file.current_context = None;
            }
        }
    }
    save(&path, &file)?;
    println!("{} updated", path.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).expect("parses")
    }

    #[test]
    fn flags_beat_the_context_which_beats_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(dir.path().join("prod.token"), "tok-prod\n").expect("token");
        std::fs::write(
            &config,
            "current-context: prod\ncontexts:\n  prod:\n    server: https://orca.example:7070\n    token-file: prod.token\n    ca-file: ca.pem\n  lab:\n    server: http://lab:7070\n    token: tok-lab\n",
        )
        .expect("config");
        let c = config.to_str().expect("utf-8");
        let resolved = resolve(&cli(&["orca", "--config", c, "get", "agents"])).expect("resolves");
        assert_eq!(resolved.server, "https://orca.example:7070");
        assert_eq!(resolved.token.as_deref(), Some("tok-prod"));
        assert_eq!(resolved.tls.ca_file, Some(dir.path().join("ca.pem")));

        let lab = resolve(&cli(&[
            "orca",
            "--config",
            c,
            "--context",
            "lab",
            "get",
            "agents",
        ]))
        .expect("resolves");
        assert_eq!(lab.server, "http://lab:7070");
        assert_eq!(lab.token.as_deref(), Some("tok-lab"));

        let flags = resolve(&cli(&[
            "orca",
            "--config",
            c,
            "--server",
            "http://other:1",
            "--token",
            "t",
            "get",
            "agents",
        ]))
        .expect("resolves");
        assert_eq!(flags.server, "http://other:1");
        assert_eq!(flags.token.as_deref(), Some("t"));

        let err = resolve(&cli(&[
            "orca",
            "--config",
            c,
            "--context",
            "nope",
            "get",
            "agents",
        ]))
        .expect_err("unknown context");
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn a_named_config_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.yaml");
        assert!(
            resolve(&cli(&[
                "orca",
                "--config",
                missing.to_str().expect("utf-8"),
                "get",
                "agents"
            ]))
            .is_err()
        );
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "contexts:\n  a:\n    sever: x\n").expect("write");
        let err = resolve(&cli(&[
            "orca",
            "--config",
            bad.to_str().expect("utf-8"),
            "get",
            "agents",
        ]))
        .expect_err("typo");
        assert!(format!("{err:#}").contains("sever"), "{err:#}");
    }
}
