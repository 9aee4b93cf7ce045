//! tidewright's control plane around its engine (`tidewright-engine`): the application
//! services as typed calls, their gRPC and HTTP adapters, who may call
//! what, TLS, webhooks, and the replicas that lead or stand by on a store
//! (`store_url.rs` is the one place a backend is named).

mod a2a;
mod acceptor;
mod agent_service;
pub mod auth;
pub mod branches;
mod call;
pub mod checkpoints;
mod console;
mod error;
mod grpc;
mod http;
mod http_state;
pub mod jwt;
mod mcp;
pub mod planner;
mod replica;
pub mod repos;
mod rest;
pub mod schedules;
mod secret;
pub mod session;
mod standby;
mod state_service;
pub mod step_token;
mod store_url;
mod task_service;
pub mod tenant_budgets;
pub mod tls;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidewright_api::v1::agent_service_server::AgentServiceServer;
use tidewright_api::v1::state_service_server::StateServiceServer;
use tidewright_api::v1::task_service_server::TaskServiceServer;
use tidewright_core::Limits;
use tidewright_store::leadership::{Leadership, Replica};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

pub use error::{Error, PortName};
pub use store_url::StoreUrl;
pub use task_service::task_to_proto;
pub use tidewright_engine::access::valid_tenant;
use tidewright_engine::service::{self, Planner, TaskApi, Templates};
use tidewright_engine::{self as engine, hub, metrics};
pub use tidewright_engine::{DEFAULT_HOT_TASKS, DEFAULT_LIMIT_BACKOFF};
pub use tidewright_store::retention::{self, Retention};
pub use tidewright_store_sqlite::Durability;

/// How long a graceful stop waits for open streams before it cuts them.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A checkpoint's message beyond its archive: ids, paths, protobuf framing.
const CHECKPOINT_FRAMING_BYTES: usize = 64 * 1024;

use tidewright_api::abort::AbortOnDrop;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where gRPC listens; loopback unless the operator says otherwise.
    pub listen: SocketAddr,
    /// Holds the tokens and keys tidewright makes, and `tidewright.db` unless `store`
    /// says otherwise.
    pub data_dir: PathBuf,
    /// Where tasks are kept; `None` for `tidewright.db` in `data_dir`.
    pub store: Option<StoreUrl>,
    /// A worker silent this long loses its steps, which run again as their
    /// next attempt. After a restart, a step that was running waits this
    /// long for its worker to reconnect and reclaim it.
    pub lease_ttl: Duration,
    /// How often workers are told to heartbeat; well under `lease_ttl`.
    pub heartbeat_interval: Duration,
    /// Unfinished tasks the engine holds whole in memory; beyond them,
    /// queued tasks nobody started keep only their place in the queue.
    pub hot_tasks: usize,
    /// The first pause of a pool's agents after a provider limit that
    /// names no reset time; it doubles with each limit in a row.
    pub limit_backoff: Duration,
    pub limits: Limits,
    /// Tokens file; `None` keeps (and on first start creates) one in
    /// `data_dir`.
    pub tokens_file: Option<PathBuf>,
    /// Keys for users' JWTs; none configured accepts only tidewright's tokens.
    pub jwt: jwt::JwtConfig,
    /// Requests per second per caller; `None` for no limit.
    pub rate_limit: Option<auth::RateLimit>,
    /// Write each audit record to the log too, not only to the store.
    pub audit_log: bool,
    /// Serve TLS (and, with a client CA, hold workers to client
    /// certificates); `None` serves plaintext, for loopback.
    pub tls: Option<tls::TlsFiles>,
    /// Plans prompt tasks submitted with `plan`; `None` refuses them.
    pub planner: Option<planner::PlannerConfig>,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/api/v1` are served;
    /// `None` for nowhere.
    pub http_listen: Option<SocketAddr>,
    /// `http_listen` is tidewright's choice, not the user's: when its port is
    /// taken, HTTP is served on one the system picks (see
    /// [`RunningServer::http_addr`]) instead of failing the start.
    pub http_listen_fallback: bool,
    /// Session cookies are Secure even on plain HTTP: a TLS proxy serves
    /// the port.
    pub secure_cookies: bool,
    /// On PostgreSQL, how long the leader's lease lasts unrenewed: a
    /// standby takes over about this long after the leader dies.
    pub leader_lease: Duration,
    /// This replica's name for people (`tidewright get servers`); the host name
    /// when `None`.
    pub replica_name: Option<String>,
    /// The address clients reach this replica's gRPC port at, which
    /// standbys hand out when it leads; the bound address when `None`.
    pub advertise: Option<String>,
    /// Tenants' budgets to set on start (see [`tenant_budgets`]).
    pub tenant_budgets: Option<PathBuf>,
    /// How large agents' session checkpoints may be, and how long they
    /// are kept after their task finishes.
    pub checkpoints: checkpoints::Settings,
    /// How webhook deliveries are made, and where they may go.
    pub webhooks: webhooks::Settings,
    /// Task templates to offer besides the built-in set; read at start.
    pub templates_dir: Option<PathBuf>,
    /// How tasks' repositories are reached.
    pub repos: repos::Settings,
    /// How long finished tasks are kept (and the fleet's event order and
    /// ended webhook deliveries, by the default window).
    pub retention: Retention,
    /// How long the audit log, and the record of each removed task, is
    /// kept; `None` forever.
    pub audit_retention: Option<Duration>,
    /// This build, which the control plane reports to its clients.
    pub build: tidewright_core::build::Build,
}

/// How long a finished task is kept by default: a month.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// How long the audit log is kept by default: a year.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86_400);

impl Config {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            listen,
            data_dir,
            store: None,
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            hot_tasks: engine::DEFAULT_HOT_TASKS,
            limit_backoff: engine::DEFAULT_LIMIT_BACKOFF,
            limits: Limits::default(),
            tokens_file: None,
            jwt: jwt::JwtConfig::default(),
            rate_limit: None,
            audit_log: false,
            retention: Retention {
                default: retention::window_of(DEFAULT_RETENTION),
                ..Retention::default()
            },
            audit_retention: Some(DEFAULT_AUDIT_RETENTION),
            tls: None,
            planner: None,
            http_listen: None,
            http_listen_fallback: false,
            secure_cookies: false,
            leader_lease: Duration::from_secs(4),
            replica_name: None,
            advertise: None,
            tenant_budgets: None,
            checkpoints: checkpoints::Settings::default(),
            webhooks: webhooks::Settings::default(),
            templates_dir: None,
            repos: repos::Settings::default(),
            build: tidewright_core::build::Build::default(),
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
    status: Arc<http_state::HttpState>,
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
        let identity = self.status.authenticator().authenticate_token(token)?;
        let code = self.status.sessions.mint_code(identity)?;
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

/// Binds, then serves: at once as the leader on SQLite; on PostgreSQL as
/// the leader when this replica takes the lease, and as a standby until
/// then. Returns once it serves either way.
pub async fn start(config: Config) -> Result<RunningServer, Error> {
    // Templates, tokens and TLS files load first, so a bad one stops the
    // start (before a first start writes its tokens).
    let templates = Arc::new(load_templates(config.templates_dir.as_deref())?);
    // The ports too: one that cannot be bound stops the start before a
    // first start writes anything.
    let http_acceptor = match config.http_listen {
        Some(listen) => Some(bind_http(listen, config.http_listen_fallback).await?),
        None => None,
    };
    let grpc = bind(config.listen, PortName::Grpc).await?;
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
    // Then the HTTP port is served, before the store opens, so probes can tell a
    // control plane that is starting (opening and recovering its store)
    // from one that is not there.
    let metrics = Arc::new(metrics::Metrics::new());
    let status = Arc::new(http_state::HttpState::new(
        metrics.clone(),
        authenticator.clone(),
    ));
    let http = match http_acceptor {
        Some(acceptor) => {
            let serving = http::serve(
                &acceptor,
                tls_for(tls::Protocol::Http1)?,
                status.clone(),
                config.limits.max_message_bytes,
            );
            if config.secure_cookies {
                status.behind_tls();
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
    let run = ReplicaRun {
        config,
        location,
        leadership,
        grpc,
        http,
        tls,
        authenticator,
        step_tokens,
        metrics,
        status: status.clone(),
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
        status,
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

/// A bound port and what serves it.
struct Port {
    acceptor: acceptor::Acceptor,
    serving: JoinHandle<()>,
}

async fn bind(listen: SocketAddr, port: PortName) -> Result<acceptor::Acceptor, Error> {
    let bound = |source| Error::Bind {
        port,
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bound)?;
    acceptor::Acceptor::new(listener).map_err(bound)
}

/// Binds the HTTP port at `listen`; when that port is taken and `fallback`
/// says the address was tidewright's choice, not the user's, at a port the
/// system picks on the same interface instead.
async fn bind_http(listen: SocketAddr, fallback: bool) -> Result<acceptor::Acceptor, Error> {
    match bind(listen, PortName::Http).await {
        Err(Error::Bind { source, .. })
            if fallback && source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let any = SocketAddr::new(listen.ip(), 0);
            let acceptor = bind(any, PortName::Http).await?;
            tracing::info!(busy = %listen, serving = %acceptor.local_addr(), "the HTTP port tidewright chose was taken; serving HTTP on one the system picked");
            Ok(acceptor)
        }
        bound => bound,
    }
}

/// One run of a replica, from standing by (on PostgreSQL) through leading
/// to its stop.
struct ReplicaRun {
    config: Config,
    location: StoreUrl,
    leadership: Arc<dyn Leadership>,
    grpc: acceptor::Acceptor,
    http: Option<Port>,
    tls: Option<Arc<tls::ReloadingConfig>>,
    authenticator: auth::Authenticator,
    step_tokens: Arc<step_token::StepTokens>,
    metrics: Arc<metrics::Metrics>,
    status: Arc<http_state::HttpState>,
    templates: Arc<Templates>,
    stop_requested: oneshot::Receiver<()>,
    /// Told once the replica serves, as leader or standby.
    settled: oneshot::Sender<()>,
}

impl ReplicaRun {
    async fn run(self) -> Result<(), Error> {
        let ReplicaRun {
            config,
            location,
            leadership,
            grpc,
            http,
            tls,
            authenticator,
            step_tokens,
            metrics,
            status,
            templates,
            mut stop_requested,
            settled,
        } = self;
        let mut settled = Some(settled);
        let (leader_tx, leader) = watch::channel(None);
        let mut standby: Option<standby::StandbyServer> = None;
        // Stands by until this replica leads (at once, as the sole owner
        // of a SQLite file), serving as a standby meanwhile.
        let candidate = replica::Candidate::new(leadership.clone(), config.leader_lease);
        let leading = {
            let (waiting, mut waited) = oneshot::channel();
            let standing = candidate.stand_by(&leader_tx, waiting);
            tokio::pin!(standing);
            loop {
                tokio::select! {
                    leading = &mut standing => break leading,
                    Ok(()) = &mut waited, if standby.is_none() => {
                        status.standing_by(leader.clone());
                        standby = Some(standby::StandbyServer::start(&grpc, tls.clone(), leader.clone()).await?);
                        if let Some(settled) = settled.take() {
                            let _ = settled.send(());
                        }
                        tracing::info!(address = %grpc.local_addr(), "standing by: another replica leads");
                    }
                    _ = &mut stop_requested => {
                        status.stopping();
                        if let Some(standby) = standby {
                            standby.stop().await;
                        }
                        close(grpc, http).await;
                        return Ok(());
                    }
                }
            }
        };
        let epoch = leading.leader.epoch;
        let store = location.open(Some(epoch)).await?;
        // A new leader lists what it must recover and serves; the tasks
        // themselves are read back while it does (see engine::recovery).
        let listing = std::time::Instant::now();
        let backlog = store.unfinished_task_ids().await?;
        tracing::info!(
            tasks = backlog.len(),
            listed_ms = listing.elapsed().as_millis() as u64,
            "recovering the unfinished tasks while serving"
        );
        if let Some(path) = &config.tenant_budgets {
            tenant_budgets::apply(store.as_ref(), tenant_budgets::read(path)?).await?;
        }
        let tenants = engine::load_tenant_budgets(store.as_ref()).await?;
        let hub = Arc::new(hub::Hub::default());
        let (engine, fatal) = engine::start(
            store.clone(),
            hub.clone(),
            backlog,
            engine::Settings {
                liveness: engine::Liveness {
                    ttl: config.lease_ttl,
                    heartbeat_interval: config.heartbeat_interval,
                },
                hot_tasks: config.hot_tasks,
                limit_backoff: config.limit_backoff,
                retention: config.retention.clone(),
            },
            metrics.clone(),
            tenants,
        );
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<TaskServiceServer<task_service::TaskGrpc>>()
            .await;
        health_reporter
            .set_serving::<AgentServiceServer<agent_service::AgentApi>>()
            .await;
        health_reporter
            .set_serving::<StateServiceServer<state_service::StateApi>>()
            .await;
        let workers_need_certificates = config
            .tls
            .as_ref()
            .is_some_and(|files| files.client_ca.is_some());
        let max_message_bytes = config.limits.max_message_bytes;
        let planner = match config.planner {
            Some(planner) => {
                Some(Arc::new(planner::AnthropicPlanner::new(planner)?) as Arc<dyn Planner>)
            }
            None => None,
        };
        // Webhooks are delivered by the leader only, from the store, so a
        // new leader goes on where the last stopped.
        let webhooks = Arc::new(webhooks::Webhooks::new(
            store.clone(),
            config.webhooks.clone(),
        ));
        let delivering = webhooks.start(hub.watch_fleet())?;
        // Shared by gRPC and the HTTP API, which calls the same methods.
        let tasks = Arc::new(TaskApi::new(service::Parts {
            store: store.clone(),
            engine: engine.clone(),
            hub: hub.clone(),
            metrics,
            limits: config.limits.clone(),
            planner,
            webhooks,
            repositories: Arc::new(repos::GitRepositories::new(config.repos.clone())),
            templates,
            trace_context: tidewright_telemetry::task_trace_context,
            audit_log: config.audit_log,
        }));
        // Schedules fire from the leader only, each tick once.
        let _scheduling = schedules::fire_periodically(tasks.clone());
        let checkpoints = checkpoints::Checkpoints::new(store.clone(), config.checkpoints);
        let expiring = AbortOnDrop(checkpoints.expire_periodically());
        let sweeping = AbortOnDrop(engine::retention::sweep_periodically(
            engine.clone(),
            store.clone(),
            config.audit_retention.and_then(retention::window_of),
        ));
        // Workers put and get checkpoints on this service: room for the
        // largest the server keeps.
        let max_agent_message_bytes = max_message_bytes.max(
            config
                .checkpoints
                .max_bytes
                .max(config.checkpoints.max_branch_bytes)
                + CHECKPOINT_FRAMING_BYTES,
        );
        let branches = branches::Branches::new(store.clone(), config.checkpoints.max_branch_bytes);
        let agents = Arc::new(
            agent_service::AgentApi::new(
                engine.clone(),
                config.limits,
                workers_need_certificates,
                leadership,
                checkpoints,
                branches,
                step_tokens,
            )
            .with_build(&config.build),
        );
        let topics = Arc::new(state_service::Topics::default());
        let state = Arc::new(state_service::StateApi::new(store, topics.clone()));
        let services = http_state::Services {
            tasks: tasks.clone(),
            agents: agents.clone(),
            state: state.clone(),
        };

        // The lease is kept while serving; losing it stops the serving.
        let (deposed_tx, deposed) = watch::channel(None::<String>);
        let (release, released) = oneshot::channel();
        let keeping = tokio::spawn(async move {
            if let Some(why) = leading.keep(released).await {
                deposed_tx.send_replace(Some(why));
            }
        });

        let (signalled, shutdown_started) = oneshot::channel::<()>();
        let stopping = status.clone();
        let (mut fatal_seen, mut deposed_seen) = (fatal.clone(), deposed.clone());
        let ending = engine.clone();
        let signal = async move {
            tokio::select! {
                _ = &mut stop_requested => {}
                _ = fatal_seen.changed() => {}
                Ok(()) = deposed_seen.changed() => {}
            }
            stopping.stopping();
            // Worker and watch streams never end on their own: end them.
            ending.shutdown().await;
            hub.close_all();
            topics.close_all();
            let _ = signalled.send(());
        };
        // Health stays open for probes, and reflection for tools.
        // Everything else needs a token.
        let router = crate::grpc::with_reflection(tonic::transport::Server::builder())?
            .add_service(health)
            .add_service(InterceptedService::new(
                TaskServiceServer::new(task_service::TaskGrpc(tasks))
                    .max_decoding_message_size(max_message_bytes),
                authenticator.clone(),
            ))
            .add_service(InterceptedService::new(
                AgentServiceServer::from_arc(agents)
                    .max_decoding_message_size(max_agent_message_bytes),
                authenticator.clone(),
            ))
            .add_service(InterceptedService::new(
                StateServiceServer::from_arc(state).max_decoding_message_size(max_message_bytes),
                authenticator,
            ));
        // From here on new connections reach the leader's services; the
        // standby's connections are ended, and their clients reconnect.
        let server = crate::grpc::serve_router(router, grpc.connections(), tls.clone(), signal);
        tokio::pin!(server);
        if let Some(standby) = standby.take() {
            tokio::select! {
                served = &mut server => {
                    served?;
                }
                _ = standby.stop() => {}
            }
        }
        status.ready(engine.clone(), services);
        if let Some(settled) = settled.take() {
            let _ = settled.send(());
        }
        tracing::info!(
            address = %grpc.local_addr(),
            tls = tls.is_some(),
            store = %location.redacted(),
            epoch,
            "control plane serving"
        );
        let cut_off = async {
            let _ = shutdown_started.await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        let served = tokio::select! {
            served = &mut server => served.map_err(Error::from),
            _ = cut_off => {
                tracing::warn!("streams still open after the stop grace; cutting them");
                Ok(())
            }
        };
        // Released only now, with nothing more to write under this epoch.
        drop(expiring);
        drop(sweeping);
        drop(delivering);
        let _ = release.send(());
        let _ = keeping.await;
        close(grpc, http).await;
        served?;
        if let Some(why) = deposed.borrow().clone() {
            return Err(Error::Deposed(why));
        }
        if let Some(message) = fatal.borrow().clone() {
            return Err(Error::Fatal(message));
        }
        Ok(())
    }
}

/// Closes both ports, so they can be bound again at once.
async fn close(grpc: acceptor::Acceptor, http: Option<Port>) {
    grpc.close().await;
    if let Some(Port { acceptor, serving }) = http {
        serving.abort();
        let _ = serving.await;
        acceptor.close().await;
    }
}
