//! The CLI's side of the config file: its flags and `TIDEWRIGHT_*` variables as
//! the client library's overrides, and `tidewright config`, which edits the
//! file. The file's format and how a context resolves are `tidewright-client`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use tidewright_client::{Context, DEFAULT_SERVER, Overrides, Settings};

use crate::args::{Cli, Command, ConfigCommand};

/// Flags, then the context, then the defaults. Without a token from
/// either, `tidewright worker` reads `.tidewright/worker.token` and every other
/// command `.tidewright/admin.token`: the tokens `tidewright up` creates.
pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
    let local_token = matches!(cli.command, Command::Worker(_))
        .then(|| PathBuf::from(".tidewright/worker.token"));
    Ok(Settings::resolve(&Overrides {
        config: cli.config.clone(),
        context: cli.context.clone(),
        set: Context {
            server: cli.server.clone(),
            token: cli.token.clone(),
            token_file: cli.token_file.clone(),
            ca_file: cli.ca_file.clone(),
            client_cert: cli.client_cert.clone(),
            client_key: cli.client_key.clone(),
        },
        local_token,
    })?)
}

/// The config file's path, and whether the user named it (then it must exist).
fn config_path(cli: &Cli) -> (Option<PathBuf>, bool) {
    match &cli.config {
        Some(path) => (Some(path.clone()), true),
        None => (tidewright_client::default_path(), false),
    }
}

/// `tidewright config ...`
pub fn command(cli: &Cli, command: &ConfigCommand) -> anyhow::Result<ExitCode> {
    let (path, required) = config_path(cli);
    let path = path.ok_or_else(|| anyhow::anyhow!("no config file: set --config or HOME"))?;
    // set-context creates the file it is pointed at.
    let creates = matches!(command, ConfigCommand::SetContext { .. });
    let mut file = tidewright_client::load_config(&path, required && !creates)?;
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
                    bail!(
                        "--server {server:?} is not a URL like https://tidewright.example.com:7070"
                    );
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
    tidewright_client::save_config(&path, &file)?;
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

    /// How contexts resolve is the library's (and tested there); this is
    /// that each flag reaches it.
    #[test]
    fn each_flag_reaches_the_resolution() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            "current-context: prod\ncontexts:\n  prod:\n    server: https://tidewright.example:7070\n    token: tok-prod\n  lab:\n    server: http://lab:7070\n    token: tok-lab\n",
        )
        .expect("config");
        let c = config.to_str().expect("utf-8");
        let lab = resolve(&cli(&[
            "tidewright",
            "--config",
            c,
            "--context",
            "lab",
            "get",
            "agents",
        ]))
        .expect("resolves");
        assert_eq!(
            (lab.server.as_str(), lab.token.as_deref()),
            ("http://lab:7070", Some("tok-lab"))
        );
        let flags = resolve(&cli(&[
            "tidewright",
            "--config",
            c,
            "--server",
            "https://other:1",
            "--token",
            "t",
            "--ca-file",
            "/ca.pem",
            "--client-cert",
            "/c.pem",
            "--client-key",
            "/k.pem",
            "get",
            "agents",
        ]))
        .expect("resolves");
        assert_eq!(flags.server, "https://other:1");
        assert_eq!(flags.token.as_deref(), Some("t"));
        assert_eq!(flags.tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(flags.tls.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(flags.tls.key_file, Some(PathBuf::from("/k.pem")));
        let missing = dir.path().join("missing.yaml");
        let err = resolve(&cli(&[
            "tidewright",
            "--config",
            missing.to_str().expect("utf-8"),
            "get",
            "agents",
        ]))
        .expect_err("a named file must exist");
        assert!(err.to_string().contains("missing.yaml"), "{err}");
    }
}
