//! What a replica builds once it leads: the store opened under its epoch,
//! the engine recovering the unfinished tasks, the application services
//! with what they call out to, the loops only a leader runs (schedules,
//! webhook deliveries, checkpoint expiry, retention), and the gRPC router
//! over it all.

use std::sync::Arc;

use tidewright_api::abort::AbortOnDrop;
use tidewright_api::v1::agent_service_server::AgentServiceServer;
use tidewright_api::v1::state_service_server::StateServiceServer;
use tidewright_api::v1::task_service_server::TaskServiceServer;
use tidewright_engine::hub::Hub;
use tidewright_engine::metrics::Metrics;
use tidewright_engine::seeds::SeedStore;
use tidewright_engine::service::{self, Planner, Templates};
use tidewright_engine::{self as engine, EngineHandle};
use tidewright_store::leadership::Leadership;
use tidewright_store::retention;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use crate::auth::Authenticator;
use crate::auth::step_token::StepTokens;
use crate::config::Config;
use crate::error::Error;
use crate::grpc::TaskGrpc;
use crate::grpc::agents::AgentApi;
use crate::grpc::state::StateGrpc;
use crate::outbound::planner::AnthropicPlanner;
use crate::outbound::repos::GitRepositories;
use crate::outbound::webhooks::Webhooks;

use super::{schedules, tenant_budgets, triggers};
use crate::store_url::StoreUrl;

/// A checkpoint's message beyond its archive: ids, paths, protobuf framing.
const CHECKPOINT_FRAMING_BYTES: usize = 64 * 1024;

/// What the leader's services are made from.
pub(super) struct Inputs<'a> {
    pub config: Config,
    pub location: &'a StoreUrl,
    pub epoch: i64,
    pub leadership: Arc<dyn Leadership>,
    pub authenticator: Authenticator,
    pub step_tokens: Arc<StepTokens>,
    pub metrics: Arc<Metrics>,
    pub templates: Arc<Templates>,
}

/// The leader's services, and what stops them.
pub(super) struct LeaderServices {
    pub engine: EngineHandle,
    /// Set when the engine fails for good: the replica stops.
    pub fatal: watch::Receiver<Option<String>>,
    pub hub: Arc<Hub>,
    /// The gRPC services, each behind the authenticator but health and
    /// reflection.
    pub router: Router,
    /// What every transport calls: the gRPC router's services, and the
    /// HTTP port's routes.
    pub services: service::Services,
    /// The loops only a leader runs; dropped before the lease is released.
    pub background: Vec<AbortOnDrop>,
}

impl LeaderServices {
    pub(super) async fn build(inputs: Inputs<'_>) -> Result<LeaderServices, Error> {
        let Inputs {
            config,
            location,
            epoch,
            leadership,
            authenticator,
            step_tokens,
            metrics,
            templates,
        } = inputs;
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
        let tenants = engine::load_tenants(store.as_ref()).await?;
        let hub = Arc::new(Hub::default());
        let (engine, fatal) = engine::start(
            store.clone(),
            hub.clone(),
            backlog,
            engine::Settings {
                liveness: engine::Liveness {
                    ttl: config.worker_timeout,
                    heartbeat_interval: config.heartbeat_interval,
                },
                hot_tasks: config.hot_tasks,
                limit_backoff: config.limit_backoff,
                retention: config.retention.clone(),
                fallback: config.fallback.clone(),
            },
            metrics.clone(),
            tenants,
        );
        let seeds = open_seeds(&config)?;
        let planner = match config.planner {
            Some(planner) => Some(Arc::new(AnthropicPlanner::new(planner)?) as Arc<dyn Planner>),
            None => None,
        };
        // Webhooks are delivered by the leader only, from the store, so a
        // new leader goes on where the last stopped.
        let webhooks = Arc::new(Webhooks::new(store.clone(), config.webhooks.clone()));
        let delivering = webhooks.start(hub.watch_fleet(), crate::http::a2a::push_body)?;
        // Shared by gRPC and the HTTP API, which calls the same methods.
        let services = service::Services::new(service::Parts {
            store: store.clone(),
            engine: engine.clone(),
            hub: hub.clone(),
            metrics,
            limits: config.limits.clone(),
            fallback: config.fallback.clone(),
            planner,
            webhooks,
            repositories: Arc::new(GitRepositories::new(config.repos.clone())),
            templates,
            trace_context: tidewright_telemetry::task_trace_context,
            audit_log: config.audit_log,
            leadership,
            build: config.build.clone(),
            kept: config.checkpoints,
            seeds,
        });
        // Schedules fire from the leader only, each tick once.
        let scheduling = schedules::fire_periodically(services.schedules.clone());
        // Triggered tasks' results are posted from the leader only.
        let replying = triggers::reply_periodically(services.triggers.clone());
        let expiring = AbortOnDrop(services.kept.expire_periodically());
        let sweeping = AbortOnDrop(engine::retention::sweep_periodically(
            engine.clone(),
            store.clone(),
            config.audit_retention.and_then(retention::window_of),
        ));
        let workers_need_certificates = config
            .tls
            .as_ref()
            .is_some_and(|files| files.client_ca.is_some());
        let max_message_bytes = config.limits.max_message_bytes;
        // Workers put and get checkpoints on this service: room for the
        // largest the server keeps.
        let max_agent_message_bytes = max_message_bytes.max(
            config
                .checkpoints
                .max_bytes
                .max(config.checkpoints.max_branch_bytes)
                + CHECKPOINT_FRAMING_BYTES,
        );
        let agents = Arc::new(AgentApi {
            engine: engine.clone(),
            limits: config.limits,
            require_client_certificate: workers_need_certificates,
            fleet: services.fleet.clone(),
            kept: services.kept.clone(),
            seeds: services.seeds.clone(),
            step_tokens,
        });
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<TaskServiceServer<TaskGrpc>>()
            .await;
        health_reporter
            .set_serving::<AgentServiceServer<AgentApi>>()
            .await;
        health_reporter
            .set_serving::<StateServiceServer<StateGrpc>>()
            .await;
        // Health stays open for probes, and reflection for tools.
        // Everything else needs a token.
        let router = crate::grpc::with_reflection(tonic::transport::Server::builder())?
            .add_service(health)
            .add_service(InterceptedService::new(
                TaskServiceServer::new(TaskGrpc(services.clone()))
                    .max_decoding_message_size(max_message_bytes),
                authenticator.clone(),
            ))
            .add_service(InterceptedService::new(
                AgentServiceServer::from_arc(agents.clone())
                    .max_decoding_message_size(max_agent_message_bytes),
                authenticator.clone(),
            ))
            .add_service(InterceptedService::new(
                StateServiceServer::new(StateGrpc(services.state.clone()))
                    .max_decoding_message_size(max_message_bytes),
                authenticator,
            ));
        Ok(LeaderServices {
            engine,
            fatal,
            hub,
            router,
            services,
            background: vec![scheduling, replying, expiring, sweeping, delivering],
        })
    }
}

/// The seeds' store the config names, made if missing; `None` when it
/// keeps none.
fn open_seeds(config: &Config) -> Result<Option<Arc<SeedStore>>, Error> {
    if config.max_seed_store_bytes == 0 {
        return Ok(None);
    }
    let dir = config
        .seeds_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("seeds"));
    SeedStore::open(dir.clone(), config.max_seed_store_bytes)
        .map(|store| Some(Arc::new(store)))
        .map_err(|source| Error::Io {
            context: format!("opening the seeds' store {} (--seeds-dir)", dir.display()),
            source,
        })
}
