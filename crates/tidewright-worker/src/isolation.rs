//! How this worker holds its steps, made and checked once at start before
//! any step can come: the sandbox (or the audited choice of none), the
//! limits, the model proxy sandboxed agents call through, and the egress
//! proxy and relays that are a sandboxed step's only ways out.

use std::sync::Arc;

use tidewright_api::leader::Choice;

use crate::config::WorkerConfig;
use crate::error::Error;
use crate::metrics::WorkerMetrics;
use crate::runtime::{ClaudeSettings, CodexSettings, GeminiSettings};
use crate::sandbox::egress;
use crate::sandbox::limits::Limits;
use crate::sandbox::model_proxy;
use crate::sandbox::{Sandbox, SandboxMode};

/// Where in the work directory steps' `/etc` is laid out.
const ETC_DIR: &str = ".sandbox-etc";

/// What every step of this worker runs in.
pub(crate) struct Isolation {
    pub(crate) sandbox: Sandbox,
    pub(crate) limits: Limits,
    pub(crate) model_proxy: Option<Arc<model_proxy::ModelProxy>>,
    /// As `model_proxy`, for OpenAI's API (Codex).
    pub(crate) openai_proxy: Option<Arc<model_proxy::ModelProxy>>,
    /// As `model_proxy`, for Google's Gemini API.
    pub(crate) gemini_proxy: Option<Arc<model_proxy::ModelProxy>>,
    pub(crate) egress: Option<Arc<egress::Egress>>,
}

impl Isolation {
    /// Makes it all, or says why it cannot be made: a worker that cannot
    /// sandbox its steps runs none, unless told to run them unsandboxed,
    /// and a limit asked for and not held is refused as a sandbox is.
    pub(crate) async fn make(
        config: &WorkerConfig,
        claude: &ClaudeSettings,
        codex: &CodexSettings,
        gemini: &GeminiSettings,
        metrics: &Arc<WorkerMetrics>,
    ) -> Result<Isolation, Error> {
        egress::check(
            config.sandbox.egress_allow.as_deref(),
            config.sandbox.mode == SandboxMode::On,
        )
        .map_err(Error::Settings)?;
        // What steps see of /etc, laid out once in the work directory
        // (out of every step's view but through that one bind).
        let mut settings = config.sandbox.clone();
        if settings.etc_dir.is_none() {
            settings.etc_dir = Some(config.work_dir.join(ETC_DIR));
        }
        // Other steps' workspaces, the agents' homes and the secrets are
        // never a program's to resolve into.
        settings.hidden.push(config.work_dir.clone());
        settings.hidden.extend(config.secrets_dir.clone());
        let sandbox = Sandbox::make(&settings).await.map_err(Error::Sandbox)?;
        let limits = Limits::probe(config.limits.clone());
        if let Some(unheld) = limits.unheld() {
            return Err(Error::Sandbox(format!(
                "step limits cannot be held here: {unheld}"
            )));
        }
        let model_proxy = model_proxy(&sandbox, claude).await?;
        let openai_proxy = openai_proxy(&sandbox, codex).await?;
        let gemini_proxy = gemini_proxy(&sandbox, gemini).await?;
        let proxies: Vec<&model_proxy::ModelProxy> = model_proxy
            .iter()
            .chain(&openai_proxy)
            .chain(&gemini_proxy)
            .map(|p| p.as_ref())
            .collect();
        let egress = egress(config, &sandbox, &proxies, metrics)?;
        Ok(Isolation {
            sandbox,
            limits,
            model_proxy,
            openai_proxy,
            gemini_proxy,
            egress,
        })
    }

    /// Says in the log how steps run: once the worker has started, after
    /// any refusal of its other settings.
    pub(crate) fn log(&self) {
        match &self.sandbox {
            Sandbox::Off => tracing::warn!(
                "steps run without a sandbox (--sandbox=off): each sees what this worker sees"
            ),
            Sandbox::Bubblewrap { .. } => {
                tracing::info!(isolation = %self.sandbox.isolation(), "steps run sandboxed")
            }
        }
    }

    /// How steps are isolated and limited, as registration says it.
    pub(crate) fn describe(&self) -> String {
        format!("{}; {}", self.sandbox.isolation(), self.limits.describe())
    }
}

/// The model proxy sandboxed agents call through, so their processes hold
/// a key of their attempt's, not the worker's, and reach the API from a
/// network of their own: whenever steps are sandboxed.
async fn model_proxy(
    sandbox: &Sandbox,
    claude: &ClaudeSettings,
) -> Result<Option<Arc<model_proxy::ModelProxy>>, Error> {
    if matches!(sandbox, Sandbox::Off) {
        return Ok(None);
    }
    let upstream = claude
        .base_url
        .as_deref()
        .unwrap_or(model_proxy::DEFAULT_UPSTREAM);
    let credentials = model_proxy::Credentials {
        api_key: claude.api_key.clone(),
        oauth_token: claude.oauth_token.clone(),
        goog_api_key: None,
    };
    let proxy = model_proxy::ModelProxy::start(upstream, credentials)
        .await
        .map_err(|e| Error::Sandbox(format!("the agents' model proxy could not start: {e}")))?;
    Ok(Some(Arc::new(proxy)))
}

/// As [`model_proxy`], for Codex: OpenAI's API, whose key goes as a
/// bearer token. Started only when the worker has a key to hide.
async fn openai_proxy(
    sandbox: &Sandbox,
    codex: &CodexSettings,
) -> Result<Option<Arc<model_proxy::ModelProxy>>, Error> {
    if matches!(sandbox, Sandbox::Off) || codex.api_key.is_none() {
        return Ok(None);
    }
    let credentials = model_proxy::Credentials {
        api_key: None,
        oauth_token: codex.api_key.clone(),
        goog_api_key: None,
    };
    let proxy = model_proxy::ModelProxy::start(codex.upstream(), credentials)
        .await
        .map_err(|e| Error::Sandbox(format!("the OpenAI proxy for Codex could not start: {e}")))?;
    Ok(Some(Arc::new(proxy)))
}

/// As [`model_proxy`], for the Gemini CLI: Google's API, whose key goes as
/// `x-goog-api-key`. Started only when the worker has a key to hide.
async fn gemini_proxy(
    sandbox: &Sandbox,
    gemini: &GeminiSettings,
) -> Result<Option<Arc<model_proxy::ModelProxy>>, Error> {
    if matches!(sandbox, Sandbox::Off) || gemini.api_key.is_none() {
        return Ok(None);
    }
    let credentials = model_proxy::Credentials {
        api_key: None,
        oauth_token: None,
        goog_api_key: gemini.api_key.clone(),
    };
    let proxy = model_proxy::ModelProxy::start(gemini.upstream(), credentials)
        .await
        .map_err(|e| Error::Sandbox(format!("the Gemini proxy could not start: {e}")))?;
    Ok(Some(Arc::new(proxy)))
}

/// Sandboxed steps' ways out of their network: the pool's allow-list, and
/// the services relayed in as they are (the control plane, the model proxy,
/// the OTLP endpoint a step's own traces go to). Without the `tidewright` binary
/// to start a sandbox's relay, steps have no network at all, and the log
/// says so; a relay named and missing stops the worker.
fn egress(
    config: &WorkerConfig,
    sandbox: &Sandbox,
    proxies: &[&model_proxy::ModelProxy],
    metrics: &Arc<WorkerMetrics>,
) -> Result<Option<Arc<egress::Egress>>, Error> {
    let allow = config.sandbox.egress_allow.as_deref();
    let init = match (sandbox, &config.sandbox.init) {
        (Sandbox::Off, _) => return Ok(None),
        (Sandbox::Bubblewrap { .. }, None) => {
            tracing::warn!("no network relay for sandboxes was given: steps have no network");
            return Ok(None);
        }
        // Named and missing: a broken install, said at start rather than
        // as every step's failure.
        (Sandbox::Bubblewrap { .. }, Some(init)) if !init.is_file() => {
            return Err(Error::Sandbox(format!(
                "the sandbox's network relay {} is missing: {} ships beside tidewright, from the same build",
                init.display(),
                egress::RELAY_PROGRAM
            )));
        }
        (Sandbox::Bubblewrap { .. }, Some(init)) => init.clone(),
    };
    let mut services: Vec<egress::Service> = Choice::new(&config.server)
        .map(|c| {
            c.servers()
                .iter()
                .filter_map(|s| egress::Service::from_url(s))
                .collect()
        })
        .unwrap_or_default();
    services.extend(
        proxies
            .iter()
            .filter_map(|p| egress::Service::from_url(&p.url())),
    );
    // Where a step's own traces go, as the worker hands it OTEL_*.
    for name in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        if let Ok(url) = std::env::var(name) {
            services.extend(egress::Service::from_url(&url));
        }
    }
    services.dedup();
    let egress = egress::Egress::new(allow, &config.pool, init, services, metrics.clone())
        .map_err(Error::Settings)?;
    Ok(Some(Arc::new(egress)))
}
