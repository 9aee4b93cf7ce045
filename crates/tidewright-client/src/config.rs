//! Where a client connects, with what: the config file's named contexts (a
//! server, its token, its TLS files), one of them current, like kubectl's
//! kubeconfig. Explicit settings (the CLI's flags, `TIDEWRIGHT_*` variables)
//! override the context; the context overrides the defaults.
//!
//! ```yaml
//! current-context: prod
//! contexts:
//!   prod:
//!     server: https://tidewright.example.com:7070
//!     token-file: prod.token      # relative to this file
//!     ca-file: prod-ca.pem
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tidewright_api::client::ClientTls;

use crate::error::Error;

/// Where a client goes when nothing says otherwise: `tidewright up`'s default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

/// The token `tidewright up` writes for people and programs, read from the
/// working directory when nothing else gives a token.
pub const LOCAL_ADMIN_TOKEN: &str = ".tidewright/admin.token";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Never shows the inline token: contexts end up in error messages and logs.
impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .finish()
    }
}

/// What the caller says outright; each field set here beats the context.
/// Its `Debug` never shows the token.
#[derive(Default, Clone, Debug)]
pub struct Overrides {
    /// The config file; it must then exist. `None` reads the default
    /// path, if the file is there.
    pub config: Option<PathBuf>,
    /// The context to use instead of the file's current one.
    pub context: Option<String>,
    /// The fields set outright, over the context's.
    pub set: Context,
    /// Read when nothing else gives a token; [`LOCAL_ADMIN_TOKEN`] when
    /// `None`.
    pub local_token: Option<PathBuf>,
}

impl Overrides {
    /// From the variables the CLI reads too: `TIDEWRIGHT_SERVER`, `TIDEWRIGHT_TOKEN`,
    /// `TIDEWRIGHT_TOKEN_FILE`, `TIDEWRIGHT_CA_FILE`, `TIDEWRIGHT_CLIENT_CERT`,
    /// `TIDEWRIGHT_CLIENT_KEY`, `TIDEWRIGHT_CONTEXT` and `TIDEWRIGHT_CONFIG`. Empty ones
    /// count as unset.
    pub fn from_env() -> Overrides {
        let text = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let path = |name: &str| text(name).map(PathBuf::from);
        Overrides {
            config: path("TIDEWRIGHT_CONFIG"),
            context: text("TIDEWRIGHT_CONTEXT"),
            set: Context {
                server: text("TIDEWRIGHT_SERVER"),
                token: text("TIDEWRIGHT_TOKEN"),
                token_file: path("TIDEWRIGHT_TOKEN_FILE"),
                ca_file: path("TIDEWRIGHT_CA_FILE"),
                client_cert: path("TIDEWRIGHT_CLIENT_CERT"),
                client_key: path("TIDEWRIGHT_CLIENT_KEY"),
            },
            local_token: None,
        }
    }
}

/// Where a client connects, with what. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// One URL, or several replicas' separated by commas.
    pub server: String,
    pub token: Option<String>,
    pub tls: ClientTls,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl Settings {
    /// A server with a token, without TLS files.
    pub fn new(server: impl Into<String>, token: Option<String>) -> Settings {
        Settings {
            server: server.into(),
            token,
            tls: ClientTls::default(),
        }
    }

    /// The overrides, then the context, then the defaults.
    pub fn resolve(overrides: &Overrides) -> Result<Settings, Error> {
        let (path, required) = match &overrides.config {
            Some(path) => (Some(path.clone()), true),
            None => (default_path(), false),
        };
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
        let context =
            match overrides.context.as_ref().or(file.current_context.as_ref()) {
                Some(name) => file.contexts.get(name).cloned().ok_or_else(|| {
                    Error::Config(format!("context {name:?} is not in {}", shown()))
                })?,
                None => Context::default(),
            };
        let set = &overrides.set;
        let server = set
            .server
            .clone()
            .or(context.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let token = if let Some(token) = &set.token {
            Some(token.clone())
        } else if let Some(file) = &set.token_file {
            Some(read_token(file, "token file")?)
        } else if let Some(token) = context.token {
            Some(token)
        } else if let Some(file) = &context.token_file {
            Some(read_token(&anchor(file, &dir), "the context's token-file")?)
        } else {
            let local = overrides
                .local_token
                .clone()
                .unwrap_or_else(|| PathBuf::from(LOCAL_ADMIN_TOKEN));
            local_token(&local)?
        };
        let from_context = |p: Option<PathBuf>| p.map(|p| anchor(&p, &dir));
        let tls = ClientTls {
            ca_file: set
                .ca_file
                .clone()
                .or_else(|| from_context(context.ca_file)),
            cert_file: set
                .client_cert
                .clone()
                .or_else(|| from_context(context.client_cert)),
            key_file: set
                .client_key
                .clone()
                .or_else(|| from_context(context.client_key)),
        };
        Ok(Settings { server, token, tls })
    }
}

/// `$XDG_CONFIG_HOME/tidewright/config.yaml`, else `~/.config/tidewright/config.yaml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("tidewright").join("config.yaml"))
}

/// Reads the config file; a missing one is empty unless `required`.
pub fn load(path: &Path, required: bool) -> Result<ConfigFile, Error> {
    match std::fs::read_to_string(path) {
        // serde_yaml names the field and the line of a mistake.
        Ok(text) => serde_yaml::from_str(&text)
            .map_err(|e| Error::Config(format!("config file {}: {e}", path.display()))),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(ConfigFile::default())
        }
        Err(e) => Err(Error::Config(format!(
            "config file {}: {e}",
            path.display()
        ))),
    }
}

/// Writes the file readable by its owner only (it may hold tokens), whole
/// or not at all.
pub fn save(path: &Path, file: &ConfigFile) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |what: &Path, e: &dyn std::fmt::Display| {
        Error::Config(format!("writing {}: {e}", what.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
    }
    let text = serde_yaml::to_string(file).map_err(|e| failed(path, &e))?;
    let temporary = path.with_extension("yaml.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| failed(&temporary, &e))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|e| failed(&temporary, &e))?;
    std::fs::rename(&temporary, path).map_err(|e| failed(path, &e))
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

fn read_token(path: &Path, what: &str) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| Error::Config(format!("{what} {}: {e}", path.display())))
}

/// The token `tidewright up` wrote, if it is there.
fn local_token(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Config(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_config(config: &Path) -> Overrides {
        Overrides {
            config: Some(config.to_path_buf()),
            local_token: Some(PathBuf::from("/nonexistent/tidewright-test.token")),
            ..Overrides::default()
        }
    }

    #[test]
    fn overrides_beat_the_context_which_beats_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(dir.path().join("prod.token"), "tok-prod\n").expect("token");
        std::fs::write(
            &config,
            "current-context: prod\ncontexts:\n  prod:\n    server: https://tidewright.example:7070\n    token-file: prod.token\n    ca-file: ca.pem\n  lab:\n    server: http://lab:7070\n    token: tok-lab\n",
        )
        .expect("config");
        let resolved = Settings::resolve(&with_config(&config)).expect("resolves");
        assert_eq!(resolved.server, "https://tidewright.example:7070");
        assert_eq!(resolved.token.as_deref(), Some("tok-prod"));
        assert_eq!(resolved.tls.ca_file, Some(dir.path().join("ca.pem")));

        let resolve = |context: Option<&str>, server: Option<&str>, token: Option<&str>| {
            Settings::resolve(&Overrides {
                context: context.map(String::from),
                set: Context {
                    server: server.map(String::from),
                    token: token.map(String::from),
                    ..Context::default()
                },
                ..with_config(&config)
            })
        };
        let lab = resolve(Some("lab"), None, None).expect("resolves");
        assert_eq!(lab.server, "http://lab:7070");
        assert_eq!(lab.token.as_deref(), Some("tok-lab"));

        let explicit = resolve(None, Some("http://other:1"), Some("t")).expect("resolves");
        assert_eq!(explicit.server, "http://other:1");
        assert_eq!(explicit.token.as_deref(), Some("t"));

        let err = resolve(Some("nope"), None, None).expect_err("unknown context");
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn a_named_config_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(Settings::resolve(&with_config(&dir.path().join("missing.yaml"))).is_err());
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "contexts:\n  a:\n    sever: x\n").expect("write");
        let err = Settings::resolve(&with_config(&bad)).expect_err("typo");
        assert!(err.to_string().contains("sever"), "{err}");
    }

    #[test]
    fn no_debug_form_shows_a_token() {
        let secret = "s3cret-token-value";
        let settings = Settings::new("http://127.0.0.1:1", Some(secret.into()));
        let context = Context {
            token: Some(secret.into()),
            ..Context::default()
        };
        let overrides = Overrides {
            set: context.clone(),
            ..Overrides::default()
        };
        for shown in [
            format!("{settings:?}"),
            format!("{context:?}"),
            format!("{overrides:?}"),
        ] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
    }
}
