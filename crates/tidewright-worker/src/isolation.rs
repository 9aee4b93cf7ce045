//! How this worker holds its steps, made and checked once at start before
//! any step can come: the sandbox (or the audited choice of none), the
//! limits, the model proxies sandboxed agents call through, and the egress
//! proxy and relays that are a sandboxed step's only ways out.

use std::sync::Arc;

use tidewright_api::leader::Choice;

use crate::config::WorkerConfig;
use crate::error::Error;
use crate::metrics::WorkerMetrics;
use crate::runtime::Agents;
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
    pub(crate) egress: Option<Arc<egress::Egress>>,
}

impl Isolation {
    /// Makes it all, or says why it cannot be made: a worker that cannot
    /// sandbox its steps runs none, unless told to run them unsandboxed,
    /// and a limit asked for and not held is refused as a sandbox is.
    /// Sandboxed, `agents` get their model proxies.
    pub(crate) async fn make(
        config: &WorkerConfig,
        agents: &mut Agents,
        metrics: &Arc<WorkerMetrics>,
    ) -> Result<Isolation, Error> {
        egress::check(
            config.sandbox.egress_allow.as_deref(),
            &config.sandbox.egress_hosts,
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
        // Sandboxed agents' processes hold a key of their attempt's, never
        // the worker's, and reach their API from a network of their own.
        if !matches!(sandbox, Sandbox::Off) {
            agents
                .start_proxies(&config.capabilities)
                .await
                .map_err(Error::Sandbox)?;
        }
        let proxies: Vec<&model_proxy::ModelProxy> = agents.proxies().collect();
        let egress = egress(config, &sandbox, &proxies, metrics)?;
        Ok(Isolation {
            sandbox,
            limits,
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
    let names = egress::parse_names(&config.sandbox.egress_hosts).map_err(Error::Settings)?;
    let egress = egress::Egress::new(allow, &config.pool, init, services, names, metrics.clone())
        .map_err(Error::Settings)?;
    Ok(Some(Arc::new(egress)))
}
