//! The agent CLIs a worker can run, as one table: each CLI's row (the
//! capability it is offered as, the provider whose model API it calls, its
//! defaults), the one settings shape every CLI runs with, and a worker's
//! agents: those settings per CLI and one model proxy per provider. A new
//! agent CLI is a folder beside `claude/` and one row here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidewright_core::{CLAUDE_CODE, CODEX, GEMINI_CLI, QWEN_CODE, Runtime};

use super::prices::PriceTable;
use crate::sandbox::model_proxy::{Credentials, ModelProxy};

/// An agent CLI this worker knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentCli {
    ClaudeCode,
    Codex,
    GeminiCli,
    QwenCode,
}

/// What tidewright knows of one agent CLI.
struct Row {
    /// As people read it.
    name: &'static str,
    /// Where it is installed from (npm).
    package: &'static str,
    /// The capability a worker offers to run its steps.
    capability: &'static str,
    /// The `runtime` label of the worker's metrics.
    label: &'static str,
    provider: Provider,
    /// The executable, when the worker is told none.
    bin: &'static str,
    /// Its homes, in the work directory, when the worker is told none.
    home: &'static str,
}

impl AgentCli {
    pub const ALL: [AgentCli; 4] = [
        AgentCli::ClaudeCode,
        AgentCli::Codex,
        AgentCli::GeminiCli,
        AgentCli::QwenCode,
    ];

    fn row(self) -> Row {
        match self {
            AgentCli::ClaudeCode => Row {
                name: "Claude Code",
                package: "@anthropic-ai/claude-code",
                capability: CLAUDE_CODE,
                label: "claude_code",
                provider: Provider::Anthropic,
                bin: "claude",
                home: ".claude-home",
            },
            AgentCli::Codex => Row {
                name: "Codex",
                package: "@openai/codex",
                capability: CODEX,
                label: "codex",
                provider: Provider::OpenAi,
                bin: "codex",
                home: ".codex-home",
            },
            AgentCli::GeminiCli => Row {
                name: "Gemini",
                package: "@google/gemini-cli",
                capability: GEMINI_CLI,
                label: "gemini_cli",
                provider: Provider::Google,
                bin: "gemini",
                home: ".gemini-home",
            },
            AgentCli::QwenCode => Row {
                name: "Qwen Code",
                package: "@qwen-code/qwen-code",
                capability: QWEN_CODE,
                label: "qwen_code",
                provider: Provider::OpenAi,
                bin: "qwen",
                home: ".qwen-home",
            },
        }
    }

    /// The CLI a step runs, when it runs one this worker knows.
    pub fn of(runtime: Option<Runtime<'_>>) -> Option<AgentCli> {
        match runtime? {
            Runtime::ClaudeCode(_) => Some(AgentCli::ClaudeCode),
            Runtime::Codex(_) => Some(AgentCli::Codex),
            Runtime::Gemini(_) => Some(AgentCli::GeminiCli),
            Runtime::Agent(agent) => AgentCli::named(&agent.cli),
            Runtime::Shell(_) | Runtime::Noop | Runtime::Deliver => None,
        }
    }

    /// The CLI whose capability is `capability`.
    pub fn named(capability: &str) -> Option<AgentCli> {
        AgentCli::ALL
            .into_iter()
            .find(|cli| cli.capability() == capability)
    }

    /// As people read it: `Claude Code`.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// Its npm package.
    pub fn package(self) -> &'static str {
        self.row().package
    }

    /// The executable, when the worker is told none.
    pub fn default_bin(self) -> &'static str {
        self.row().bin
    }

    pub fn capability(self) -> &'static str {
        self.row().capability
    }

    pub fn label(self) -> &'static str {
        self.row().label
    }

    pub fn provider(self) -> Provider {
        self.row().provider
    }
}

/// A model API agent CLIs call, as the worker's model proxy reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    Anthropic,
    OpenAi,
    Google,
}

impl Provider {
    /// The API's root, when the worker is given no base URL: the CLIs'
    /// request paths follow it.
    pub fn default_upstream(self) -> &'static str {
        match self {
            Provider::Anthropic => "https://api.anthropic.com",
            Provider::OpenAi => "https://api.openai.com",
            Provider::Google => "https://generativelanguage.googleapis.com",
        }
    }

    /// As the worker's log and errors name it.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "Anthropic's API",
            Provider::OpenAi => "OpenAI's API",
            Provider::Google => "Google's Gemini API",
        }
    }

    /// The worker's credential as this API takes it: Anthropic's key as
    /// `x-api-key` and a subscription's token as a bearer; OpenAI's key as
    /// a bearer; Google's as `x-goog-api-key`.
    fn credentials(self, settings: &AgentSettings) -> Credentials {
        let key = settings.api_key.clone();
        match self {
            Provider::Anthropic => Credentials {
                api_key: key,
                oauth_token: settings.oauth_token.clone(),
                goog_api_key: None,
            },
            Provider::OpenAi => Credentials {
                api_key: None,
                oauth_token: key,
                goog_api_key: None,
            },
            Provider::Google => Credentials {
                api_key: None,
                oauth_token: None,
                goog_api_key: key,
            },
        }
    }
}

/// How a worker runs one agent CLI: every CLI's settings have this shape.
#[derive(Debug, Clone, Default)]
pub struct AgentSettings {
    /// The CLI's executable.
    pub bin: PathBuf,
    /// The model when a step names none; the runtime's default when unset.
    pub model: Option<String>,
    /// The provider's API key, handed to the CLI by environment only.
    pub api_key: Option<String>,
    /// A subscription's token instead of a key, for a CLI that takes one
    /// (Claude Code's `claude setup-token`).
    pub oauth_token: Option<String>,
    /// The provider's API at another address: a gateway, or a test's mock.
    pub base_url: Option<String>,
    /// Where the CLI keeps its state: one per worker, kept between
    /// attempts (its session transcripts make a resume possible).
    pub home: PathBuf,
    /// The operator's prices (`--prices`), before the list prices.
    pub prices: PriceTable,
}

impl AgentSettings {
    /// The API's root, which the worker's proxy sends sandboxed CLIs'
    /// requests on to: the base URL given, else the provider's. OpenAI's
    /// base URLs end in `/v1` by convention, which the CLIs' paths hold
    /// (Codex's `/v1/responses` from a base URL that ends in the proxy's
    /// `/v1`, Qwen Code's whatever its base URL ends in): it is left out.
    pub fn upstream(&self, provider: Provider) -> String {
        match &self.base_url {
            Some(url) if provider == Provider::OpenAi => {
                let url = url.trim_end_matches('/');
                url.strip_suffix("/v1").unwrap_or(url).to_string()
            }
            Some(url) => url.clone(),
            None => provider.default_upstream().to_string(),
        }
    }

    /// The credentials to hide from the step: the key and the token.
    pub fn secrets(&self) -> impl Iterator<Item = &String> {
        self.api_key.iter().chain(&self.oauth_token)
    }

    /// The model a step runs: its own, the worker's, else `default`.
    pub fn model_for(&self, step: Option<&String>, default: &str) -> String {
        step.or(self.model.as_ref())
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

/// The agent CLIs of a worker: each one's settings, and the model proxy
/// of each provider its sandboxed agents call through.
#[derive(Default)]
pub struct Agents {
    settings: BTreeMap<AgentCli, AgentSettings>,
    proxies: BTreeMap<Provider, Arc<ModelProxy>>,
}

impl Agents {
    /// `given`'s settings, each CLI's executable and home defaulted (its
    /// home beside the workspaces, in `work_dir`), without proxies yet.
    pub fn new(given: &BTreeMap<AgentCli, AgentSettings>, work_dir: &Path) -> Agents {
        let settings = AgentCli::ALL
            .into_iter()
            .map(|cli| {
                let row = cli.row();
                let mut settings = given.get(&cli).cloned().unwrap_or_default();
                if settings.bin.as_os_str().is_empty() {
                    settings.bin = row.bin.into();
                }
                if settings.home.as_os_str().is_empty() {
                    settings.home = work_dir.join(row.home);
                }
                (cli, settings)
            })
            .collect();
        Agents {
            settings,
            proxies: BTreeMap::new(),
        }
    }

    /// How `cli` runs.
    pub fn settings(&self, cli: AgentCli) -> &AgentSettings {
        static NONE: std::sync::OnceLock<AgentSettings> = std::sync::OnceLock::new();
        self.settings
            .get(&cli)
            .unwrap_or_else(|| NONE.get_or_init(AgentSettings::default))
    }

    /// The proxy `cli`'s sandboxed runs reach their model API through.
    pub fn proxy(&self, cli: AgentCli) -> Option<&ModelProxy> {
        self.proxies.get(&cli.provider()).map(Arc::as_ref)
    }

    /// The proxy `provider`'s API is reached through, when one runs.
    pub fn shared_proxy(&self, provider: Provider) -> Option<Arc<ModelProxy>> {
        self.proxies.get(&provider).cloned()
    }

    /// Every proxy, to relay into sandboxes.
    pub fn proxies(&self) -> impl Iterator<Item = &ModelProxy> {
        self.proxies.values().map(Arc::as_ref)
    }

    /// Starts one model proxy for each provider that an agent this worker
    /// offers (by `capabilities`) calls, with that agent's credential:
    /// when steps are sandboxed, their processes hold a key of their
    /// attempt's, never the worker's. Agents of one provider share its
    /// proxy; the first offered gives its address and credential.
    pub async fn start_proxies(&mut self, capabilities: &[String]) -> Result<(), String> {
        for cli in AgentCli::ALL {
            let provider = cli.provider();
            if self.proxies.contains_key(&provider)
                || !capabilities.iter().any(|c| c == cli.capability())
            {
                continue;
            }
            let settings = self.settings(cli);
            let proxy =
                ModelProxy::start(&settings.upstream(provider), provider.credentials(settings))
                    .await
                    .map_err(|e| {
                        format!(
                            "the model proxy for {} could not start: {e}",
                            provider.name()
                        )
                    })?;
            self.proxies.insert(provider, Arc::new(proxy));
        }
        Ok(())
    }

    /// For a test: `cli`'s proxy is `proxy`.
    #[cfg(test)]
    pub fn with_proxy(mut self, cli: AgentCli, proxy: Arc<ModelProxy>) -> Agents {
        self.proxies.insert(cli.provider(), proxy);
        self
    }

    /// For a test: `cli` runs with `settings`.
    #[cfg(test)]
    pub fn with(mut self, cli: AgentCli, settings: AgentSettings) -> Agents {
        self.settings.insert(cli, settings);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cli_has_its_own_capability_label_and_home() {
        let agents = Agents::new(&BTreeMap::new(), Path::new("/w"));
        let (mut capabilities, mut labels, mut homes) = (vec![], vec![], vec![]);
        for cli in AgentCli::ALL {
            let settings = agents.settings(cli);
            assert!(!capabilities.contains(&cli.capability()), "{cli:?}");
            assert!(!labels.contains(&cli.label()), "{cli:?}");
            assert!(!homes.contains(&settings.home), "{cli:?}");
            capabilities.push(cli.capability());
            labels.push(cli.label());
            homes.push(settings.home.clone());
            assert!(settings.home.starts_with("/w"), "{cli:?}");
            assert!(!settings.bin.as_os_str().is_empty(), "{cli:?}");
        }
    }

    #[test]
    fn what_a_worker_is_told_comes_before_the_defaults() {
        let given = BTreeMap::from([(
            AgentCli::Codex,
            AgentSettings {
                bin: "/opt/codex".into(),
                home: "/h".into(),
                base_url: Some("http://127.0.0.1:9/v1".into()),
                ..AgentSettings::default()
            },
        )]);
        let agents = Agents::new(&given, Path::new("/w"));
        let codex = agents.settings(AgentCli::Codex);
        assert_eq!(codex.bin, Path::new("/opt/codex"));
        assert_eq!(codex.home, Path::new("/h"));
        assert_eq!(codex.upstream(Provider::OpenAi), "http://127.0.0.1:9");
        let gemini = agents.settings(AgentCli::GeminiCli);
        assert_eq!(
            gemini.upstream(Provider::Google),
            "https://generativelanguage.googleapis.com"
        );
        assert_eq!(codex.model_for(None, "m"), "m");
        assert_eq!(codex.model_for(Some(&"s".to_string()), "m"), "s");
    }

    #[tokio::test]
    async fn one_proxy_per_provider_of_the_agents_offered() {
        let mut agents = Agents::new(&BTreeMap::new(), Path::new("/w"));
        agents
            .start_proxies(&["shell".into(), CODEX.into(), GEMINI_CLI.into()])
            .await
            .expect("proxies start");
        assert!(agents.proxy(AgentCli::ClaudeCode).is_none());
        let codex = agents.proxy(AgentCli::Codex).expect("OpenAI's proxy");
        let gemini = agents.proxy(AgentCli::GeminiCli).expect("Google's proxy");
        assert_ne!(codex.url(), gemini.url());
        assert_eq!(agents.proxies().count(), 2);
    }
}
