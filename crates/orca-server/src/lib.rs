//! orca's control plane: the gRPC services (tasks, agents, health,
//! reflection), the engine that schedules steps onto workers, and the event
//! log that watchers replay and follow.

mod agent_service;
pub mod auth;
mod engine;
mod error;
mod http;
mod hub;
pub mod jwt;
mod metrics;
pub mod planner;
mod state_service;
pub mod step_token;
mod store_url;
mod task_service;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use orca_api::v1::agent_service_server::AgentServiceServer;
use orca_api::v1::state_service_server::StateServiceServer;
use orca_api::v1::task_service_server::TaskServiceServer;
use orca_core::Limits;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

pub use error::Error;
pub use orca_store_sqlite::Durability;
pub use store_url::StoreUrl;
pub use task_service::task_to_proto;

/// How long a graceful stop waits for open streams before it cuts them.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Config {
    /// Where gRPC listens; loopback unless the operator says otherwise.
    pub listen: SocketAddr,
    /// Holds the tokens and keys orca makes, and `orca.db` unless `store`
    /// says otherwise.
    pub data_dir: PathBuf,
    /// Where tasks are kept; `None` for `orca.db` in `data_dir`.
    pub store: Option<StoreUrl>,
    /// How hard SQLite works to survive a crash (PostgreSQL's own settings
    /// decide for it).
    pub durability: Durability,
    /// A worker silent this long loses its steps, which run again as their
    /// next attempt. After a restart, a step that was running waits this
    /// long for its worker to reconnect and reclaim it.
    pub lease_ttl: Duration,
    /// How often workers are told to heartbeat; well under `lease_ttl`.
    pub heartbeat_interval: Duration,
    pub limits: Limits,
    /// Tokens file; `None` keeps (and on first start creates) one in
    /// `data_dir`.
    pub tokens_file: Option<PathBuf>,
    /// Keys for users' JWTs; none configured accepts only orca's tokens.
    pub jwt: jwt::JwtConfig,
    /// Requests per second per caller; `None` for no limit.
    pub rate_limit: Option<auth::RateLimit>,
    /// Serve TLS (and, with a client CA, hold workers to client
    /// certificates); `None` serves plaintext, for loopback.
    pub tls: Option<tls::TlsFiles>,
    /// Plans prompt tasks submitted with `plan`; `None` refuses them.
    pub planner: Option<planner::PlannerConfig>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` for
    /// nowhere.
    pub http_listen: Option<SocketAddr>,
}

impl Config {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            listen,
            data_dir,
            store: None,
            durability: Durability::default(),
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            limits: Limits::default(),
            tokens_file: None,
            jwt: jwt::JwtConfig::default(),
            rate_limit: None,
            tls: None,
            planner: None,
            http_listen: None,
        }
    }
}

/// A control plane serving on `local_addr` until [`RunningServer::stop`].
pub struct RunningServer {
    pub local_addr: SocketAddr,
    /// Where the HTTP port (metrics, health) listens, when it does.
    pub http_addr: Option<SocketAddr>,
    /// Where tasks are kept: the SQLite file, or the PostgreSQL URL
    /// without its password.
    pub store: String,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<Result<(), Error>>,
}

impl RunningServer {
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

/// Opens the store, recovers unfinished tasks, binds and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, Error> {
    // Tokens and TLS files load first, so a bad one stops the start.
    let step_tokens = Arc::new(step_token::StepTokens::load_or_create(&config.data_dir)?);
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
    // Then the HTTP port, before the store opens, so probes can tell a
    // control plane that is starting (opening and recovering its store)
    // from one that is not there.
    let metrics = Arc::new(metrics::Metrics::new());
    let status = Arc::new(http::Status::new(metrics.clone(), authenticator.clone()));
    let (http_addr, http_serving) = match config.http_listen {
        Some(listen) => {
            let bound = |source| Error::Io {
                context: format!("binding the HTTP port {listen}"),
                source,
            };
            let listener = TcpListener::bind(listen).await.map_err(bound)?;
            let addr = listener.local_addr().map_err(bound)?;
            let serving = http::serve(listener, tls_for(tls::Protocol::Http1)?, status.clone())
                .map_err(bound)?;
            (Some(addr), Some(serving))
        }
        None => (None, None),
    };
    let workers_need_certificates = config
        .tls
        .as_ref()
        .is_some_and(|files| files.client_ca.is_some());
    let location = config
        .store
        .clone()
        .unwrap_or_else(|| StoreUrl::Sqlite(config.data_dir.join("orca.db")));
    let store = location.open(config.durability).await?;
    let recovered = store.unfinished_tasks().await?;
    let hub = Arc::new(hub::Hub::default());
    let (engine, mut fatal) = engine::start(
        store.clone(),
        hub.clone(),
        recovered,
        engine::Leases {
            ttl: config.lease_ttl,
            heartbeat_interval: config.heartbeat_interval,
        },
        step_tokens,
        metrics,
    );

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Io {
            context: format!("binding {}", config.listen),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the bound address".into(),
        source,
    })?;

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<TaskServiceServer<task_service::TaskApi>>()
        .await;
    health_reporter
        .set_serving::<AgentServiceServer<agent_service::AgentApi>>()
        .await;
    health_reporter
        .set_serving::<StateServiceServer<state_service::StateApi>>()
        .await;
    // Both reflection versions: grpcurl and grpcui speak v1, but Python's
    // grpcio-reflection, Postman and older grpcurl speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(orca_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let max_message_bytes = config.limits.max_message_bytes;
    let planner = match config.planner {
        Some(planner) => Some(Arc::new(planner::Planner::new(planner)?)),
        None => None,
    };
    let store_for_state = store.clone();
    let tasks = task_service::TaskApi::new(
        store,
        engine.clone(),
        hub.clone(),
        config.limits.clone(),
        planner,
    );
    let agents =
        agent_service::AgentApi::new(engine.clone(), config.limits, workers_need_certificates);
    status.ready(engine.clone());
    let topics = Arc::new(state_service::Topics::default());
    let state = state_service::StateApi::new(store_for_state, topics.clone());

    let (stop, stop_requested) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let (signalled, shutdown_started) = oneshot::channel::<()>();
        let signal = async {
            tokio::select! {
                _ = stop_requested => {}
                _ = fatal.changed() => {}
            }
            // Worker and watch streams never end on their own: end them.
            engine.shutdown().await;
            hub.close_all();
            topics.close_all();
            let _ = signalled.send(());
        };
        let router = tonic::transport::Server::builder()
            .trace_fn(orca_telemetry::rpc_span)
            // Health stays open for probes, and reflection for tools: it
            // tells only what the public proto says. Everything else needs
            // a token.
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(
                TaskServiceServer::new(tasks).max_decoding_message_size(max_message_bytes),
                authenticator.clone(),
            ))
            .add_service(InterceptedService::new(
                AgentServiceServer::new(agents).max_decoding_message_size(max_message_bytes),
                authenticator.clone(),
            ))
            .add_service(InterceptedService::new(
                StateServiceServer::new(state).max_decoding_message_size(max_message_bytes),
                authenticator,
            ));
        let server = async move {
            match tls {
                Some(tls) => {
                    router
                        .serve_with_incoming_shutdown(tls::incoming(listener, tls), signal)
                        .await
                }
                None => {
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    router.serve_with_incoming_shutdown(incoming, signal).await
                }
            }
        };
        let cut_off = async {
            let _ = shutdown_started.await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        tokio::select! {
            served = server => served?,
            _ = cut_off => tracing::warn!("streams still open after the stop grace; cutting them"),
        }
        if let Some(http) = http_serving {
            http.abort();
        }
        if let Some(message) = fatal.borrow().clone() {
            return Err(Error::Fatal(message));
        }
        Ok(())
    });
    tracing::info!(%local_addr, tls = config.tls.is_some(), store = %location.redacted(), "control plane serving");
    Ok(RunningServer {
        local_addr,
        http_addr,
        store: location.redacted(),
        stop,
        serving,
    })
}
