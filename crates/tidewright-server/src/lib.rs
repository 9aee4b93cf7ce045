//! tidewright's control plane around its engine (`tidewright-engine`): the
//! application services' gRPC and HTTP adapters (`grpc`, `http`, over the
//! v1 conversions in `wire`), who may call what (`auth`), its ports and TLS
//! (`port`), what the services call out to (`outbound`), and the replicas
//! that lead or stand by on a store (`replica`; `store_url` is the one
//! place a backend is named).

mod auth;
mod config;
mod error;
mod grpc;
mod http;
mod outbound;
mod port;
mod replica;
#[cfg(test)]
mod services_tests;
mod store_url;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tidewright_engine::metrics;
use tidewright_engine::service::Templates;
use tidewright_store::leadership::Replica;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// What `Config` is made of, by the part each configures.
pub use auth::RateLimit;
pub use auth::jwt;
pub use config::{
    Config, DEFAULT_AUDIT_RETENTION, DEFAULT_MAX_SEED_STORE_BYTES, DEFAULT_RETENTION,
};
pub use error::{Error, PortName};
pub use outbound::{planner, repos, webhooks};
pub use port::tls;
pub use replica::tenant_budgets;
pub use store_url::StoreUrl;
pub use tidewright_engine::access::valid_tenant;
pub use tidewright_engine::service::KeptSettings;
pub use tidewright_engine::{DEFAULT_HOT_TASKS, DEFAULT_LIMIT_BACKOFF};
pub use tidewright_store::retention::{self, Retention};

use crate::http::app::App;
use crate::port::Port;

/// A control plane serving on `local_addr` until [`RunningServer::stop`].
pub struct RunningServer {
    pub local_addr: SocketAddr,
    /// Where the HTTP port (metrics, health) listens, when it does.
    pub http_addr: Option<SocketAddr>,
    /// Where tasks are kept: the SQLite file, or the PostgreSQL URL
    /// without its password.
    pub store: String,
    app: Arc<App>,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), Error>>,
}

impl RunningServer {
    /// A link that signs a browser into the console as `token`'s caller,
    /// once, within 15 minutes: what `tidewright up` prints. `None` without an
    /// HTTP port.
    pub fn sign_in_link(&self, token: &str) -> Result<Option<String>, Error> {
        let Some(http) = self.http_addr else {
            return Ok(None);
        };
        let identity = self.app.authenticator().authenticate_token(token)?;
        let code = self.app.sessions.mint_code(identity)?;
        Ok(Some(format!("http://{http}/login?code={code}")))
    }

    /// Stops gracefully: no new requests, streams end, then returns.
    pub async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        join(self.serving).await
    }

    /// Runs until `signal` resolves (then stops gracefully) or the server
    /// stops by itself on a fatal store failure.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::select! {
            _ = signal => self.stop().await,
            served = &mut self.serving => served.map_err(|e| Error::Fatal(format!("the server task failed: {e}")))?,
        }
    }
}

async fn join(serving: JoinHandle<Result<(), Error>>) -> Result<(), Error> {
    serving
        .await
        .map_err(|e| Error::Fatal(format!("the server task failed: {e}")))?
}

/// The built-in templates, and `dir`'s files, which replace built-ins of
/// the same name. A template that does not load stops the start, naming
/// its file: better than a refusal when someone runs it.
fn load_templates(dir: Option<&std::path::Path>) -> Result<Templates, Error> {
    let files = tidewright_core::template::catalog(dir).map_err(|source| Error::Io {
        context: "--templates-dir".into(),
        source,
    })?;
    let loaded = files
        .into_iter()
        .map(|file| {
            let template = file.load().map_err(|e| Error::Templates(e.to_string()))?;
            Ok((file, template))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Templates::new(loaded))
}

/// The forge webhooks' check, when asked for: its secret read now, so that
/// a control plane asked to take hooks it cannot check does not start.
fn forge_hooks(
    repos: &outbound::repos::Settings,
) -> Result<Option<auth::forge_hooks::ForgeHooks>, Error> {
    let Some(name) = &repos.forge_hooks_secret else {
        return Ok(None);
    };
    let said = |why: String| Error::Hooks(format!("--forge-hooks-secret {name}: {why}"));
    let secret = tidewright_core::secret::read(repos.secrets_dir.as_deref(), name)
        .map_err(|why| said(why.to_string()))?;
    let secret = secret.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(said(
            "the secret is empty: anyone could sign a delivery".into(),
        ));
    }
    Ok(Some(auth::forge_hooks::ForgeHooks::new(secret)))
}

/// Binds, then serves: at once as the leader on SQLite; on PostgreSQL as
/// the leader when this replica takes the lease, and as a standby until
/// then. Returns once it serves either way.
pub async fn start(config: Config) -> Result<RunningServer, Error> {
    // Templates, tokens and TLS files load first, so a bad one stops the
    // start (before a first start writes its tokens).
    let templates = Arc::new(load_templates(config.templates_dir.as_deref())?);
    let forge_hooks = forge_hooks(&config.repos)?;
    // The ports too: one that cannot be bound stops the start before a
    // first start writes anything.
    let http_acceptor = match config.http_listen {
        Some(listen) => Some(port::bind_http(listen, config.http_listen_fallback).await?),
        None => None,
    };
    let grpc = port::bind(config.listen, PortName::Grpc).await?;
    let step_tokens = Arc::new(auth::step_token::StepTokens::load_or_create(
        &config.data_dir,
    )?);
    let authenticator = auth::Authenticator::new(
        auth::Tokens::load_or_create(config.tokens_file.as_deref(), &config.data_dir)?,
        jwt::JwtVerifier::load(&config.jwt)?,
        step_tokens.clone(),
        config.rate_limit,
    );
    let tls_for = |protocol| {
        config
            .tls
            .clone()
            .map(|files| tls::ReloadingConfig::load(files, protocol))
            .transpose()
            .map(|tls| tls.map(Arc::new))
    };
    let tls = tls_for(tls::Protocol::Grpc)?;
    // Then the HTTP port is served, before the store opens, so probes can tell a
    // control plane that is starting (opening and recovering its store)
    // from one that is not there.
    let metrics = Arc::new(metrics::Metrics::new());
    let app = Arc::new(App::new(metrics.clone(), authenticator.clone()));
    if let Some(hooks) = forge_hooks {
        app.take_forge_hooks(hooks);
    }
    let http = match http_acceptor {
        Some(acceptor) => {
            let serving = http::serve(
                &acceptor,
                tls_for(tls::Protocol::Http1)?,
                app.clone(),
                config.limits.max_message_bytes,
            );
            if config.secure_cookies {
                app.behind_tls();
            }
            Some(Port { acceptor, serving })
        }
        None => None,
    };
    let http_addr = http.as_ref().map(|port| port.acceptor.local_addr());
    let local_addr = grpc.local_addr();
    let location = config.store.clone().unwrap_or_else(|| StoreUrl::Sqlite {
        path: config.data_dir.join("tidewright.db"),
        durability: None,
    });
    let replica = this_replica(&config, local_addr);
    let leadership = location.leadership(replica, config.leader_lease).await?;
    let (stop, stop_requested) = oneshot::channel::<()>();
    let (settled, started) = oneshot::channel::<()>();
    let store = location.redacted();
    let run = replica::ReplicaRun {
        config,
        location,
        leadership,
        grpc,
        http,
        tls,
        authenticator,
        step_tokens,
        metrics,
        app: app.clone(),
        templates,
        stop_requested,
        settled,
    };
    let serving = tokio::spawn(run.run());
    if started.await.is_err() {
        join(serving).await?;
        return Err(Error::Fatal(
            "the control plane stopped while starting".into(),
        ));
    }
    Ok(RunningServer {
        local_addr,
        http_addr,
        store,
        app,
        stop,
        serving,
    })
}

/// This replica as the others name it and clients reach it.
fn this_replica(config: &Config, local_addr: SocketAddr) -> Replica {
    let name = config.replica_name.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("tidewright-{}", std::process::id()))
    });
    let address = config
        .advertise
        .clone()
        .unwrap_or_else(|| local_addr.to_string());
    Replica {
        id: ulid::Ulid::new().to_string(),
        name,
        address,
        named: config.replica_name.is_some(),
    }
}
