//! What a control plane is started with: its ports, its store, its
//! credentials, its limits and what it keeps for how long.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tidewright_core::Limits;
use tidewright_store::retention::{self, Retention};

use crate::auth::{self, jwt};
use crate::outbound::{planner, repos, webhooks};
use crate::port::tls;
use crate::store_url::StoreUrl;
use tidewright_engine::service::KeptSettings;

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
    pub worker_timeout: Duration,
    /// How often workers are told to heartbeat; well under `worker_timeout`.
    pub heartbeat_interval: Duration,
    /// Unfinished tasks the engine holds whole in memory; beyond them,
    /// queued tasks nobody started keep only their place in the queue.
    pub hot_tasks: usize,
    /// The first pause of a pool's agents after a provider limit that
    /// names no reset time; it doubles with each limit in a row.
    pub limit_backoff: Duration,
    /// Which tenants' steps may move to a fallback runtime.
    pub fallback: tidewright_core::failover::FallbackPolicy,
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
    /// [`crate::RunningServer::http_addr`]) instead of failing the start.
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
    /// Tenants' budgets to set on start (see `replica::tenant_budgets`).
    pub tenant_budgets: Option<PathBuf>,
    /// How large agents' session checkpoints may be, and how long they
    /// are kept after their task finishes.
    pub checkpoints: KeptSettings,
    /// Where repositories' seeds are kept for every worker (`None`:
    /// `seeds/` in `data_dir`), and the most bytes they may take, past
    /// which the least recently used go; 0 keeps none.
    pub seeds_dir: Option<PathBuf>,
    pub max_seed_store_bytes: u64,
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
/// The most bytes of seeds kept by default.
pub const DEFAULT_MAX_SEED_STORE_BYTES: u64 = 20 << 30;
/// How long the audit log is kept by default: a year.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(365 * 86_400);

impl Config {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            listen,
            data_dir,
            store: None,
            worker_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            hot_tasks: tidewright_engine::DEFAULT_HOT_TASKS,
            limit_backoff: tidewright_engine::DEFAULT_LIMIT_BACKOFF,
            fallback: Default::default(),
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
            checkpoints: KeptSettings::default(),
            seeds_dir: None,
            max_seed_store_bytes: DEFAULT_MAX_SEED_STORE_BYTES,
            webhooks: webhooks::Settings::default(),
            templates_dir: None,
            repos: repos::Settings::default(),
            build: tidewright_core::build::Build::default(),
        }
    }
}
