//! The flags of the long-running commands: `tidewright server`, `tidewright up`
//! and `tidewright operator run` (a worker's are in `worker.rs`).

use super::*;

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Print the CustomResourceDefinitions (Agent, Task) as YAML.
    Crd,
    /// Run the operator in a cluster: reconcile Agents and Tasks against the
    /// control plane at --server (with --token, a developer token for all
    /// tenants).
    Run(Box<OperatorRunArgs>),
}

#[derive(Debug, Args)]
pub struct OperatorRunArgs {
    /// Watch Agents and Tasks in this namespace only; all namespaces when unset.
    #[arg(long, env = "TIDEWRIGHT_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's name in the leader lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The coordination.k8s.io Lease replicas elect a leader with.
    #[arg(
        long,
        env = "TIDEWRIGHT_LEASE_NAME",
        default_value = "tidewright-operator"
    )]
    pub lease_name: String,
    /// The lease's namespace (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// A leader that has not renewed for this long loses the lease.
    #[arg(long, env = "TIDEWRIGHT_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How often each pool's load is read and its size decided.
    #[arg(long, env = "TIDEWRIGHT_SCALE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub scale_interval: Duration,
    /// The image of worker pods when an Agent names none.
    #[arg(long, env = "TIDEWRIGHT_WORKER_IMAGE")]
    pub worker_image: String,
    /// The control plane's address as worker pods reach it; --server when unset.
    #[arg(long, env = "TIDEWRIGHT_WORKER_SERVER")]
    pub worker_server: Option<String>,
    /// The Secret (in each Agent's namespace) holding a worker-role token.
    #[arg(
        long,
        env = "TIDEWRIGHT_WORKER_TOKEN_SECRET",
        default_value = "tidewright-worker-token"
    )]
    pub worker_token_secret: String,
    /// The key of the token in that Secret.
    #[arg(long, env = "TIDEWRIGHT_WORKER_TOKEN_KEY", default_value = "token")]
    pub worker_token_key: String,
    /// The Secret (in each Agent's namespace, key `token`) that worker pods
    /// ask scrapers of their /metrics for; without it, worker pods serve no
    /// HTTP port (no metrics, no HTTP probes).
    #[arg(long, env = "TIDEWRIGHT_WORKER_METRICS_TOKEN_SECRET")]
    pub worker_metrics_token_secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory for the tokens and keys tidewright makes, and for tidewright.db unless
    /// --store names another place.
    #[arg(long, env = "TIDEWRIGHT_DATA_DIR", default_value = ".tidewright")]
    pub data_dir: PathBuf,

    /// Where tasks are kept: sqlite:///path/to/tidewright.db, or
    /// postgres://user@host:port/database [default: tidewright.db in --data-dir]
    // Read as text and checked by `store_url`: clap's own error would echo
    // the value, password and all.
    #[arg(long, env = "TIDEWRIGHT_STORE", hide_env_values = true)]
    pub store: Option<String>,

    /// A file holding the --store URL, for a URL with a password in it
    /// (a mounted Secret): never in the environment a process inherits.
    #[arg(long, env = "TIDEWRIGHT_STORE_FILE")]
    pub store_file: Option<PathBuf>,

    /// A worker silent this long loses its steps, which run again elsewhere;
    /// after a restart, running steps wait this long for their worker.
    #[arg(long, env = "TIDEWRIGHT_WORKER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub worker_timeout: Duration,

    /// How often workers heartbeat; shorter than the worker timeout.
    #[arg(long, env = "TIDEWRIGHT_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Unfinished tasks held whole in memory. Beyond them, a queued task
    /// nobody started keeps only its place in the queue, and is read back
    /// from the store as it nears the head (about a tenth of the memory).
    #[arg(long, env = "TIDEWRIGHT_HOT_TASKS", default_value_t = tidewright_server::DEFAULT_HOT_TASKS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub hot_tasks: usize,

    /// How long a pool's agents pause after a provider limit (HTTP 429 or
    /// 529) that names no reset time; it doubles with each limit in a row,
    /// up to 30 minutes. A limit that names its reset pauses until then.
    #[arg(long, env = "TIDEWRIGHT_PROVIDER_LIMIT_BACKOFF", default_value = "60s", value_parser = parse_duration)]
    pub provider_limit_backoff: Duration,

    /// Which tenants' steps may move to a `fallback` runtime while a
    /// provider limit pauses their own: `allow` (the default) or `forbid`
    /// for every tenant, or `TENANT=allow|forbid` for one; repeat it or
    /// separate with commas, a later value winning. A forbidden tenant's
    /// task that names `fallback` is refused, and a step already queued
    /// waits for its own runtime, saying why.
    #[arg(
        long,
        env = "TIDEWRIGHT_FALLBACK_POLICY",
        value_delimiter = ',',
        value_name = "POLICY"
    )]
    pub fallback_policy: Vec<String>,
}

impl StoreArgs {
    /// Where `--store` points; `None` for tidewright.db in `--data-dir`.
    /// The store: --store, or tidewright.db in --data-dir. How hard a SQLite
    /// store works to survive a crash is its URL's to say
    /// (`?synchronous=full` fsyncs every commit).
    pub fn store_url(&self) -> anyhow::Result<StoreUrl> {
        let from_file = match &self.store_file {
            Some(_) if self.store.is_some() => {
                anyhow::bail!("--store and --store-file both name the store; give one")
            }
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("--store-file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let (flag, said) = match (&from_file, self.store.as_deref()) {
            (Some(text), _) => ("--store-file", Some(text.trim())),
            (None, said) => ("--store", said),
        };
        let url = match said {
            Some(url) => url.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?,
            None => StoreUrl::Sqlite {
                path: self.data_dir.join("tidewright.db"),
                durability: None,
            },
        };
        Ok(url)
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,
}

/// The control plane's settings, for `tidewright server` and `tidewright up` alike.
#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// Address for gRPC. Loopback by default; say 0.0.0.0:7070 to serve others.
    #[arg(long, env = "TIDEWRIGHT_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Where to serve /metrics (Prometheus), /healthz, /readyz and the
    /// JSON API under /api/v1 over HTTP, e.g. 127.0.0.1:7071; not served
    /// without it.
    #[arg(long, env = "TIDEWRIGHT_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// Mark console session cookies Secure even though this port speaks
    /// plain HTTP: for a proxy or Ingress that serves it over TLS. (With
    /// --tls-cert they are Secure anyway.)
    #[arg(long, env = "TIDEWRIGHT_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// A YAML file of tenants' budgets (`team-a: {usdPerDay: 50,
    /// usdPerMonth: 800}`), set on every start; `tidewright budget set` changes
    /// one until the next.
    #[arg(long, env = "TIDEWRIGHT_TENANT_BUDGETS")]
    pub tenant_budgets: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub security: SecurityArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub planner: PlannerArgs,

    /// The model that grades verified steps' rubrics, apart from their
    /// agents (`claude-sonnet-4-5`): workers offering `grader` call it with
    /// their Anthropic API key. Without it, a step with a rubric is refused.
    #[arg(long, env = "TIDEWRIGHT_GRADER_MODEL")]
    pub grader_model: Option<String>,

    #[command(flatten)]
    pub replica: ReplicaArgs,

    #[command(flatten)]
    pub checkpoints: CheckpointArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,

    /// Let webhook endpoints reach loopback, link-local and private
    /// networks (RFC 1918, CGNAT, IPv6 unique local). Off by default, so a
    /// webhook cannot be turned on what sits inside the cluster.
    #[arg(long, env = "TIDEWRIGHT_WEBHOOK_ALLOW_PRIVATE_NETWORKS")]
    pub webhook_allow_private_networks: bool,

    /// One file per secret (a mounted Kubernetes Secret has this layout):
    /// the credentials tasks name in `repo.credentialsSecret`, with which
    /// the control plane resolves their refs. Git gets them from a helper,
    /// never in its arguments or a URL.
    #[arg(long, env = "TIDEWRIGHT_REPO_SECRETS_DIR")]
    pub repo_secrets_dir: Option<PathBuf>,

    /// Take forge webhooks on the HTTP port (`/hooks/github`,
    /// `/hooks/gitlab`), checked with this secret of --repo-secrets-dir:
    /// GitHub's signature key, GitLab's token. A followed pull request is
    /// looked at as soon as its forge says something of it.
    #[arg(long, env = "TIDEWRIGHT_FORGE_HOOKS_SECRET", value_name = "NAME")]
    pub forge_hooks_secret: Option<String>,

    /// Accept tasks whose repository is a `file://` path or plain
    /// `http://`: on one machine, and in tests. Off by default, so a task
    /// cannot read a repository on the control plane's own disk.
    #[arg(long, env = "TIDEWRIGHT_ALLOW_LOCAL_REPOS")]
    pub allow_local_repos: bool,

    /// The task templates the server offers to every client (ListTemplates,
    /// SubmitTemplate, `/api/v1/templates`): the built-in set and these,
    /// read at start.
    #[command(flatten)]
    pub templates: super::TemplateSource,
}

/// How long finished tasks, and the history kept by age, are kept.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// How long a finished task is kept, with its events, logs, attempts
    /// and checkpoints, then removed (asked for after, it is NOT_FOUND
    /// saying it expired). 0 keeps tasks forever. A tenant's window
    /// (--tenant-retention) or a task's own (`retentionSeconds`) comes
    /// first. The fleet's event order and ended webhook deliveries are
    /// kept as long.
    #[arg(long, env = "TIDEWRIGHT_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,

    /// A tenant's own retention window, as TENANT=DURATION (team-a=7d;
    /// 0 keeps the tenant's tasks forever). Repeat the flag, or separate
    /// entries with commas in the variable.
    #[arg(long, env = "TIDEWRIGHT_TENANT_RETENTION", value_delimiter = ',', value_parser = parse_tenant_retention)]
    pub tenant_retention: Vec<(String, Duration)>,

    /// How long the audit log, and the record of each removed task, is
    /// kept. 0 keeps it forever.
    #[arg(long, env = "TIDEWRIGHT_AUDIT_RETENTION", default_value = "365d", value_parser = parse_duration)]
    pub audit_retention: Duration,
}

impl RetentionArgs {
    /// The windows in the store's terms (0 is forever); a tenant named
    /// twice is refused.
    pub fn rules(&self) -> anyhow::Result<tidewright_server::retention::Retention> {
        use tidewright_server::retention::window_of;
        let mut tenants = std::collections::BTreeMap::new();
        for (tenant, window) in &self.tenant_retention {
            if tenants.insert(tenant.clone(), window_of(*window)).is_some() {
                anyhow::bail!("--tenant-retention names {tenant} twice; say it once");
            }
        }
        Ok(tidewright_server::retention::Retention {
            default: window_of(self.retention),
            tenants,
        })
    }

    /// The audit log's window; `None` (0) keeps it forever.
    pub fn audit_window(&self) -> Option<Duration> {
        (!self.audit_retention.is_zero()).then_some(self.audit_retention)
    }
}

/// `TENANT=DURATION`, for --tenant-retention.
fn parse_tenant_retention(text: &str) -> Result<(String, Duration), String> {
    let (tenant, window) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not TENANT=DURATION, like team-a=7d"))?;
    if !tidewright_server::valid_tenant(tenant) {
        return Err(format!(
            "{tenant:?} is not a tenant name: lowercase letters, digits and '-', up to 63"
        ));
    }
    Ok((tenant.to_string(), parse_duration(window)?))
}

/// Agents' session checkpoints, which workers leave with the control plane
/// so a retry resumes the session on any worker.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Largest checkpoint kept (a session's transcript and workspace,
    /// compressed); a larger one is refused and the session stays on its
    /// worker.
    #[arg(long, env = "TIDEWRIGHT_MAX_CHECKPOINT_BYTES", default_value_t = 8 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_checkpoint_bytes: u64,

    /// Largest step branch kept (a git bundle of a step's commits, for the
    /// steps after it on other workers); a larger one fails its step.
    #[arg(long, env = "TIDEWRIGHT_MAX_BRANCH_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_branch_bytes: u64,

    /// How long a finished task's checkpoints and steps' branches are kept
    /// (for `tidewright retry`), then removed.
    #[arg(long, env = "TIDEWRIGHT_CHECKPOINT_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub checkpoint_retention: Duration,

    /// Where repositories' seeds (what their setups made, packed) are kept
    /// for every worker; `seeds/` in the data directory by default. A
    /// cache: the standbys of a PostgreSQL store need not share it.
    #[arg(long, env = "TIDEWRIGHT_SEED_STORE_DIR", value_name = "DIR")]
    pub seed_store_dir: Option<PathBuf>,

    /// The most bytes of seeds kept; past it, those used longest ago go.
    /// 0 keeps none: each worker runs its setups itself.
    #[arg(long, env = "TIDEWRIGHT_MAX_SEED_STORE_BYTES", default_value_t = tidewright_server::DEFAULT_MAX_SEED_STORE_BYTES)]
    pub max_seed_store_bytes: u64,
}

/// How this control plane shares a PostgreSQL store with other replicas:
/// one leads, the others stand by.
#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// How long the leader's lease lasts without renewal: a standby takes
    /// over about this long after the leader dies. PostgreSQL only.
    #[arg(long, env = "TIDEWRIGHT_LEADER_LEASE", default_value = "4s", value_parser = parse_duration)]
    pub leader_lease: Duration,

    /// This replica's name in `tidewright get servers`; the host name by default.
    #[arg(long, env = "TIDEWRIGHT_REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// The host:port clients reach this replica's gRPC port at, which the
    /// standbys hand out while it leads (a pod IP, a host name); the listen
    /// address by default.
    #[arg(long, env = "TIDEWRIGHT_ADVERTISE")]
    pub advertise: Option<String>,
}

/// The planner, which turns a prompt task with `plan: true` into steps with
/// one call to the Anthropic Messages API.
#[derive(Debug, Args)]
pub struct PlannerArgs {
    /// A file holding the planner's Anthropic API key; $ANTHROPIC_API_KEY
    /// otherwise. Without a key, tasks asking to be planned are refused.
    #[arg(long, env = "TIDEWRIGHT_PLANNER_API_KEY_FILE")]
    pub planner_api_key_file: Option<PathBuf>,

    /// The model that plans.
    #[arg(long, env = "TIDEWRIGHT_PLANNER_MODEL", default_value = tidewright_server::planner::PlannerConfig::DEFAULT_MODEL)]
    pub planner_model: String,

    /// The Messages API's base URL; $ANTHROPIC_BASE_URL, else
    /// https://api.anthropic.com.
    #[arg(long, env = "TIDEWRIGHT_PLANNER_BASE_URL")]
    pub planner_base_url: Option<String>,

    /// How long one planning call may take.
    #[arg(long, env = "TIDEWRIGHT_PLANNER_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub planner_timeout: Duration,
}

/// Input limits; each refusal names the limit it hit. Unset ones keep their
/// defaults.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Largest gRPC message accepted [default: 4194304].
    #[arg(long, env = "TIDEWRIGHT_MAX_MESSAGE_BYTES", value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_message_bytes: Option<u64>,
    /// Steps per task [default: 1000].
    #[arg(long, env = "TIDEWRIGHT_MAX_STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,
    /// Bytes of one step's command, all arguments together [default: 65536].
    #[arg(long, env = "TIDEWRIGHT_MAX_COMMAND_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_command_bytes: Option<u64>,
    /// Bytes of one step's environment, keys and values [default: 65536].
    #[arg(long, env = "TIDEWRIGHT_MAX_ENV_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_env_bytes: Option<u64>,
    /// Labels per task [default: 64].
    #[arg(long, env = "TIDEWRIGHT_MAX_LABELS", value_parser = clap::value_parser!(u64).range(0..))]
    pub max_labels: Option<u64>,
    /// Bytes of a step's output JSON; a larger one fails the attempt [default: 1048576].
    #[arg(long, env = "TIDEWRIGHT_MAX_OUTPUT_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_output_bytes: Option<u64>,
    /// Bytes of one log line; longer ones are cut and marked [default: 16384].
    #[arg(long, env = "TIDEWRIGHT_MAX_LOG_LINE_BYTES", value_parser = clap::value_parser!(u64).range(64..))]
    pub max_log_line_bytes: Option<u64>,
    /// Watch streams one caller may hold open [default: 64].
    #[arg(long, env = "TIDEWRIGHT_MAX_WATCHES_PER_CALLER", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_watches_per_caller: Option<u64>,
    /// Bytes of a Claude Code step's prompt [default: 262144].
    #[arg(long, env = "TIDEWRIGHT_MAX_PROMPT_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_prompt_bytes: Option<u64>,
    /// How deep tasks submitted by running steps (an agent's subtasks) may
    /// nest; 0: steps may not submit tasks [default: 3].
    #[arg(long, env = "TIDEWRIGHT_MAX_CHILD_DEPTH", value_parser = clap::value_parser!(u64).range(0..=64))]
    pub max_child_depth: Option<u64>,
    /// Tasks the steps of one task may submit, all told [default: 20].
    #[arg(long, env = "TIDEWRIGHT_MAX_CHILDREN", value_parser = clap::value_parser!(u64).range(0..=10000))]
    pub max_children: Option<u64>,
}

impl LimitArgs {
    /// The defaults with the given flags applied.
    pub fn apply(&self, limits: &mut tidewright_core::Limits) {
        let set = |target: &mut usize, value: Option<u64>| {
            if let Some(value) = value {
                *target = usize::try_from(value).unwrap_or(usize::MAX);
            }
        };
        set(&mut limits.max_message_bytes, self.max_message_bytes);
        set(&mut limits.max_steps, self.max_steps);
        set(&mut limits.max_command_bytes, self.max_command_bytes);
        set(&mut limits.max_env_bytes, self.max_env_bytes);
        set(&mut limits.max_labels, self.max_labels);
        set(&mut limits.max_output_bytes, self.max_output_bytes);
        set(&mut limits.max_log_line_bytes, self.max_log_line_bytes);
        set(
            &mut limits.max_watches_per_caller,
            self.max_watches_per_caller,
        );
        set(&mut limits.max_prompt_bytes, self.max_prompt_bytes);
        set(&mut limits.max_children, self.max_children);
        if let Some(depth) = self.max_child_depth {
            limits.max_child_depth = u32::try_from(depth).unwrap_or(u32::MAX);
        }
    }
}

/// Who may call, over what, and how often.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Tokens file: one `sha256:<hex> <role> <name> [tenants=a,b|*]` per
    /// line. Without it, DATA_DIR/tokens is used, created with an admin and
    /// a worker token on first start.
    #[arg(long, env = "TIDEWRIGHT_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Accept HS256 JWTs signed with the secret in this file (32 bytes or more).
    #[arg(long, env = "TIDEWRIGHT_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,

    /// Accept RS256 JWTs signed by the key whose PEM public half is in this file.
    #[arg(long, env = "TIDEWRIGHT_JWT_RS256_PUBLIC_KEY")]
    pub jwt_rs256_public_key: Option<PathBuf>,

    /// JWTs must carry this `iss`.
    #[arg(long, env = "TIDEWRIGHT_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// JWTs must carry this `aud`.
    #[arg(long, env = "TIDEWRIGHT_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Serve TLS with this PEM certificate chain (re-read when it changes).
    #[arg(long, env = "TIDEWRIGHT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "TIDEWRIGHT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Client certificates must chain to these PEM CAs, and workers must
    /// present one (mTLS).
    #[arg(long, env = "TIDEWRIGHT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Requests per second per caller (token name or JWT subject), e.g.
    /// `50` or `50/200` for a burst of 200. Over it: RESOURCE_EXHAUSTED with
    /// a retry hint. No limit by default.
    #[arg(long, env = "TIDEWRIGHT_RATE_LIMIT", value_parser = parse_rate)]
    pub rate_limit: Option<(u32, u32)>,

    /// Also write each audit record to the server's log, as a line of
    /// fields (target `tidewright::audit`), for a log collector. The records are
    /// stored either way, and `tidewright audit` lists them; off by default, as a
    /// line per submit costs a busy control plane a few percent.
    #[arg(long, env = "TIDEWRIGHT_AUDIT_LOG")]
    pub audit_log: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,

    /// The local workers' secrets: one file per secret, named as steps name
    /// them in `secretEnv`.
    #[arg(long, env = "TIDEWRIGHT_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Local workers to start.
    #[arg(long, env = "TIDEWRIGHT_WORKERS", default_value_t = 2)]
    pub workers: u32,

    /// With an Anthropic API key, the local workers also offer
    /// `claude-code`, so prompt tasks and agent steps run out of the box.
    #[command(flatten)]
    pub offer: OfferArgs,

    #[command(flatten)]
    pub agents: AgentArgs,

    #[command(flatten)]
    pub sandbox: SandboxArgs,
}
