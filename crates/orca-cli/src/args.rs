//! The command line. Every flag can also come from an `ORCA_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use orca_server::StoreUrl;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "orca",
    version,
    about = "Orchestrate fleets of AI coding agents",
    propagate_version = true
)]
pub struct Cli {
    /// The control plane to talk to: http://host:port, or https:// for
    /// TLS [default: the context's server, else http://127.0.0.1:7070].
    #[arg(long, global = true, env = "ORCA_SERVER")]
    pub server: Option<String>,

    /// Bearer token (an orca token or a JWT). Without it (or --token-file
    /// or a context), the CLI reads .orca/admin.token, and `orca worker`
    /// reads .orca/worker.token: the tokens `orca up` creates.
    #[arg(long, global = true, env = "ORCA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A file holding the bearer token.
    #[arg(long, global = true, env = "ORCA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM CA certificates that an https:// server's certificate must
    /// chain to; the system's roots without it.
    #[arg(long, global = true, env = "ORCA_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate, for servers that require one of workers.
    #[arg(long, global = true, env = "ORCA_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,

    /// PEM key of --client-cert.
    #[arg(long, global = true, env = "ORCA_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,

    /// The context (server, token, CA) to use from the config file, instead
    /// of its current one.
    #[arg(long, global = true, env = "ORCA_CONTEXT")]
    pub context: Option<String>,

    /// How log lines are written to stderr: text, or json (one object per
    /// line, for log collectors). Each carries its trace id.
    #[arg(long, global = true, env = "ORCA_LOG_FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: orca_telemetry::LogFormat,

    /// The config file with contexts [default: $XDG_CONFIG_HOME/orca/config.yaml,
    /// else ~/.config/orca/config.yaml].
    #[arg(long, global = true, env = "ORCA_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane.
    Server(ServerArgs),
    /// Run a worker that connects to the control plane.
    Worker(WorkerArgs),
    /// Run the control plane and local workers in one process.
    Up(UpArgs),
    /// Submit a task from a YAML file.
    Submit(SubmitArgs),
    /// Show tasks, one task, or agents.
    Get(GetArgs),
    /// Print a task's log lines.
    Logs(LogsArgs),
    /// Cancel a task; cancelling a finished task changes nothing.
    Cancel(CancelArgs),
    /// Re-run the failed, cancelled and skipped steps of a finished task,
    /// keeping the succeeded ones and their outputs.
    Retry(RetryArgs),
    /// Let a step awaiting approval run (you must be one of its approvers).
    Approve(ApproveArgs),
    /// Fail a step awaiting approval, saying why; the task fails as after
    /// any failed step.
    Reject(RejectArgs),
    /// Budgets: show tenants' spend against their budgets, set a tenant's
    /// (admins), raise a task's to let it go on.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Task templates: list, show and run them.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Webhooks: endpoints that receive a tenant's task events as signed
    /// JSON POSTs, and their delivery log (admins only).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Follow a task live, with a progress bar per step.
    Watch(WatchArgs),
    /// Show the audit log: who submitted, cancelled or retried what, and
    /// what was refused (admins only).
    Audit(AuditArgs),
    /// Shared state between agents: JSON values with versions and TTLs.
    #[command(subcommand)]
    State(StateCommand),
    /// Send a JSON message to a topic's current subscribers.
    Publish(PublishArgs),
    /// Print the messages published to a topic from now on, one JSON per line.
    Subscribe(SubscribeArgs),
    /// Serve shared state and topics as MCP tools on stdio, for an agent
    /// (workers give each Claude Code step this server).
    Mcp(McpArgs),
    /// Show and edit the contexts of the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The Kubernetes operator.
    #[command(subcommand)]
    Operator(OperatorCommand),
}

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
    #[arg(long, env = "ORCA_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's name in the leader lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The coordination.k8s.io Lease replicas elect a leader with.
    #[arg(long, env = "ORCA_LEASE_NAME", default_value = "orca-operator")]
    pub lease_name: String,
    /// The lease's namespace (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// A leader that has not renewed for this long loses the lease.
    #[arg(long, env = "ORCA_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How often each pool's load is read and its size decided.
    #[arg(long, env = "ORCA_SCALE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub scale_interval: Duration,
    /// The image of worker pods when an Agent names none.
    #[arg(long, env = "ORCA_WORKER_IMAGE")]
    pub worker_image: String,
    /// The control plane's address as worker pods reach it; --server when unset.
    #[arg(long, env = "ORCA_WORKER_SERVER")]
    pub worker_server: Option<String>,
    /// The Secret (in each Agent's namespace) holding a worker-role token.
    #[arg(
        long,
        env = "ORCA_WORKER_TOKEN_SECRET",
        default_value = "orca-worker-token"
    )]
    pub worker_token_secret: String,
    /// The key of the token in that Secret.
    #[arg(long, env = "ORCA_WORKER_TOKEN_KEY", default_value = "token")]
    pub worker_token_key: String,
    /// The Secret (in each Agent's namespace, key `token`) that worker pods
    /// ask scrapers of their /metrics for; without it, worker pods serve no
    /// HTTP port (no metrics, no HTTP probes).
    #[arg(long, env = "ORCA_WORKER_METRICS_TOKEN_SECRET")]
    pub worker_metrics_token_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// List the contexts; `*` marks the current one.
    GetContexts,
    /// Make a context the current one.
    UseContext { name: String },
    /// Create or update a context; only the given fields change.
    SetContext {
        name: String,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        token_file: Option<PathBuf>,
        #[arg(long)]
        ca_file: Option<PathBuf>,
        #[arg(long)]
        client_cert: Option<PathBuf>,
        #[arg(long)]
        client_key: Option<PathBuf>,
    },
    /// Remove a context.
    DeleteContext { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Durability {
    /// Survives a crash of orca; may lose the last commits on power loss.
    #[default]
    Process,
    /// fsync on every commit: survives power loss.
    Machine,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory for the tokens and keys orca makes, and for orca.db unless
    /// --store names another place.
    #[arg(long, env = "ORCA_DATA_DIR", default_value = ".orca")]
    pub data_dir: PathBuf,

    /// Where tasks are kept: sqlite:///path/to/orca.db, or
    /// postgres://user@host:port/database [default: orca.db in --data-dir]
    // Read as text and checked by `store_url`: clap's own error would echo
    // the value, password and all.
    #[arg(long, env = "ORCA_STORE", hide_env_values = true)]
    pub store: Option<String>,

    #[arg(long, env = "ORCA_DURABILITY", value_enum, default_value_t)]
    pub durability: Durability,

    /// A worker silent this long loses its steps, which run again elsewhere;
    /// after a restart, running steps wait this long for their worker.
    #[arg(long, env = "ORCA_LEASE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// How often workers heartbeat; shorter than the lease TTL.
    #[arg(long, env = "ORCA_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Unfinished tasks held whole in memory. Beyond them, a queued task
    /// nobody started keeps only its place in the queue, and is read back
    /// from the store as it nears the head (about a tenth of the memory).
    #[arg(long, env = "ORCA_HOT_TASKS", default_value_t = orca_server::DEFAULT_HOT_TASKS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub hot_tasks: usize,
}

impl StoreArgs {
    /// Where `--store` points; `None` for orca.db in `--data-dir`.
    pub fn store_url(&self) -> anyhow::Result<Option<StoreUrl>> {
        self.store
            .as_deref()
            .map(|url| url.parse().map_err(|e| anyhow::anyhow!("--store: {e}")))
            .transpose()
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,
}

/// The control plane's settings, for `orca server` and `orca up` alike.
#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// Address for gRPC. Loopback by default; say 0.0.0.0:7070 to serve others.
    #[arg(long, env = "ORCA_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Where to serve /metrics (Prometheus), /healthz, /readyz and the
    /// JSON API under /api/v1 over HTTP, e.g. 127.0.0.1:7071; not served
    /// without it.
    #[arg(long, env = "ORCA_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// Mark console session cookies Secure even though this port speaks
    /// plain HTTP: for a proxy or Ingress that serves it over TLS. (With
    /// --tls-cert they are Secure anyway.)
    #[arg(long, env = "ORCA_SECURE_COOKIES")]
    pub secure_cookies: bool,

    /// A YAML file of tenants' budgets (`team-a: {usdPerDay: 50,
    /// usdPerMonth: 800}`), set on every start; `orca budget set` changes
    /// one until the next.
    #[arg(long, env = "ORCA_TENANT_BUDGETS")]
    pub tenant_budgets: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub security: SecurityArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub planner: PlannerArgs,

    #[command(flatten)]
    pub replica: ReplicaArgs,

    #[command(flatten)]
    pub checkpoints: CheckpointArgs,

    /// Let webhook endpoints reach loopback, link-local and private
    /// networks (RFC 1918, CGNAT, IPv6 unique local). Off by default, so a
    /// webhook cannot be turned on what sits inside the cluster.
    #[arg(long, env = "ORCA_WEBHOOK_ALLOW_PRIVATE_NETWORKS")]
    pub webhook_allow_private_networks: bool,
}

/// Agents' session checkpoints, which workers leave with the control plane
/// so a retry resumes the session on any worker.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Largest checkpoint kept (a session's transcript and workspace,
    /// compressed); a larger one is refused and the session stays on its
    /// worker.
    #[arg(long, env = "ORCA_MAX_CHECKPOINT_BYTES", default_value_t = 8 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_checkpoint_bytes: u64,

    /// How long a finished task's checkpoints are kept (for `orca retry`),
    /// then removed.
    #[arg(long, env = "ORCA_CHECKPOINT_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub checkpoint_retention: Duration,
}

/// How this control plane shares a PostgreSQL store with other replicas:
/// one leads, the others stand by.
#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// How long the leader's lease lasts without renewal: a standby takes
    /// over about this long after the leader dies. PostgreSQL only.
    #[arg(long, env = "ORCA_LEADER_LEASE", default_value = "4s", value_parser = parse_duration)]
    pub leader_lease: Duration,

    /// This replica's name in `orca get servers`; the host name by default.
    #[arg(long, env = "ORCA_REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// The host:port clients reach this replica's gRPC port at, which the
    /// standbys hand out while it leads (a pod IP, a host name); the listen
    /// address by default.
    #[arg(long, env = "ORCA_ADVERTISE")]
    pub advertise: Option<String>,
}

/// The planner, which turns a prompt task with `plan: true` into steps with
/// one call to the Anthropic Messages API.
#[derive(Debug, Args)]
pub struct PlannerArgs {
    /// A file holding the planner's Anthropic API key; $ANTHROPIC_API_KEY
    /// otherwise. Without a key, tasks asking to be planned are refused.
    #[arg(long, env = "ORCA_PLANNER_API_KEY_FILE")]
    pub planner_api_key_file: Option<PathBuf>,

    /// The model that plans.
    #[arg(long, env = "ORCA_PLANNER_MODEL", default_value = orca_server::planner::PlannerConfig::DEFAULT_MODEL)]
    pub planner_model: String,

    /// The Messages API's base URL; $ANTHROPIC_BASE_URL, else
    /// https://api.anthropic.com.
    #[arg(long, env = "ORCA_PLANNER_BASE_URL")]
    pub planner_base_url: Option<String>,

    /// How long one planning call may take.
    #[arg(long, env = "ORCA_PLANNER_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub planner_timeout: Duration,
}

/// Input limits; each refusal names the limit it hit. Unset ones keep their
/// defaults.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Largest gRPC message accepted [default: 4194304].
    #[arg(long, env = "ORCA_MAX_MESSAGE_BYTES", value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_message_bytes: Option<u64>,
    /// Steps per task [default: 1000].
    #[arg(long, env = "ORCA_MAX_STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,
    /// Bytes of one step's command, all arguments together [default: 65536].
    #[arg(long, env = "ORCA_MAX_COMMAND_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_command_bytes: Option<u64>,
    /// Bytes of one step's environment, keys and values [default: 65536].
    #[arg(long, env = "ORCA_MAX_ENV_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_env_bytes: Option<u64>,
    /// Labels per task [default: 64].
    #[arg(long, env = "ORCA_MAX_LABELS", value_parser = clap::value_parser!(u64).range(0..))]
    pub max_labels: Option<u64>,
    /// Bytes of a step's output JSON; a larger one fails the attempt [default: 1048576].
    #[arg(long, env = "ORCA_MAX_OUTPUT_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_output_bytes: Option<u64>,
    /// Bytes of one log line; longer ones are cut and marked [default: 16384].
    #[arg(long, env = "ORCA_MAX_LOG_LINE_BYTES", value_parser = clap::value_parser!(u64).range(64..))]
    pub max_log_line_bytes: Option<u64>,
    /// Watch streams one caller may hold open [default: 64].
    #[arg(long, env = "ORCA_MAX_WATCHES_PER_CALLER", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_watches_per_caller: Option<u64>,
    /// Bytes of a Claude Code step's prompt [default: 262144].
    #[arg(long, env = "ORCA_MAX_PROMPT_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_prompt_bytes: Option<u64>,
}

impl LimitArgs {
    /// The defaults with the given flags applied.
    pub fn apply(&self, limits: &mut orca_core::Limits) {
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
    }
}

/// Who may call, over what, and how often.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Tokens file: one `sha256:<hex> <role> <name> [tenants=a,b|*]` per
    /// line. Without it, DATA_DIR/tokens is used, created with an admin and
    /// a worker token on first start.
    #[arg(long, env = "ORCA_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Accept HS256 JWTs signed with the secret in this file (32 bytes or more).
    #[arg(long, env = "ORCA_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,

    /// Accept RS256 JWTs signed by the key whose PEM public half is in this file.
    #[arg(long, env = "ORCA_JWT_RS256_PUBLIC_KEY")]
    pub jwt_rs256_public_key: Option<PathBuf>,

    /// JWTs must carry this `iss`.
    #[arg(long, env = "ORCA_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// JWTs must carry this `aud`.
    #[arg(long, env = "ORCA_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Serve TLS with this PEM certificate chain (re-read when it changes).
    #[arg(long, env = "ORCA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "ORCA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Client certificates must chain to these PEM CAs, and workers must
    /// present one (mTLS).
    #[arg(long, env = "ORCA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Requests per second per caller (token name or JWT subject), e.g.
    /// `50` or `50/200` for a burst of 200. Over it: RESOURCE_EXHAUSTED with
    /// a retry hint. No limit by default.
    #[arg(long, env = "ORCA_RATE_LIMIT", value_parser = parse_rate)]
    pub rate_limit: Option<(u32, u32)>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Name shown in `orca get agents`; defaults to the host name.
    #[arg(long, env = "ORCA_WORKER_NAME")]
    pub name: Option<String>,

    /// The pool (Kubernetes `Agent`) this worker belongs to.
    #[arg(long, env = "ORCA_POOL", default_value = "")]
    pub pool: String,

    /// The pool's cap on Claude Code steps running at once, across all its
    /// workers (0: none): fan-out stops here before the provider's limit.
    #[arg(long, env = "ORCA_MAX_CONCURRENT_AGENTS", default_value_t = 0)]
    pub max_concurrent_agents: u32,

    #[command(flatten)]
    pub offer: OfferArgs,

    /// Root of per-attempt workspaces.
    #[arg(long, env = "ORCA_WORK_DIR", default_value = ".orca/work")]
    pub work_dir: PathBuf,

    /// One file per secret, named as steps name them in `secretEnv` (a
    /// mounted Kubernetes Secret has this layout).
    #[arg(long, env = "ORCA_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Leave each attempt's workspace behind when it ends, for debugging;
    /// by default it is removed (it may hold what a step made of a secret).
    #[arg(long, env = "ORCA_KEEP_WORKSPACES")]
    pub keep_workspaces: bool,

    /// On SIGTERM or Ctrl-C: take no new work, let running steps finish for
    /// this long, then hand the rest back to run elsewhere at once.
    #[arg(long, env = "ORCA_DRAIN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub drain_grace: Duration,

    /// Largest session checkpoint an agent step leaves with the control
    /// plane when it ends short of success, so its retry resumes on any
    /// worker; workspace files beyond it are left out. 0: sessions stay on
    /// this worker.
    #[arg(long, env = "ORCA_CHECKPOINT_MAX_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub checkpoint_max_bytes: u64,

    #[command(flatten)]
    pub claude: ClaudeArgs,

    /// Where to serve this worker's /metrics (Prometheus), /healthz and
    /// /readyz over HTTP, e.g. 127.0.0.1:7071; not served without it.
    #[arg(long, env = "ORCA_WORKER_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// A file holding the bearer token /metrics asks scrapers for; needed
    /// when --http-listen is not a loopback address.
    #[arg(long, env = "ORCA_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
}

/// How a worker runs `claudeCode` steps.
#[derive(Debug, Args)]
pub struct ClaudeArgs {
    /// The Claude Code CLI that runs `claudeCode` steps (offer the
    /// `claude-code` capability to get them).
    #[arg(long, env = "ORCA_CLAUDE_BIN", default_value = "claude")]
    pub claude_bin: PathBuf,

    /// The model of `claudeCode` steps that name none; the CLI's default when unset.
    #[arg(long, env = "ORCA_MODEL")]
    pub model: Option<String>,

    /// A file holding the Anthropic API key; $ANTHROPIC_API_KEY otherwise.
    #[arg(long, env = "ORCA_ANTHROPIC_API_KEY_FILE")]
    pub anthropic_api_key_file: Option<PathBuf>,
}

/// What a worker offers: its capabilities and how many steps it runs at once.
#[derive(Debug, Args)]
pub struct OfferArgs {
    /// Capabilities offered; repeat or separate with commas.
    #[arg(
        long = "capability",
        env = "ORCA_CAPABILITIES",
        value_delimiter = ',',
        default_value = "shell"
    )]
    pub capabilities: Vec<String>,

    /// Steps run at once (per worker).
    #[arg(long, env = "ORCA_SLOTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: u32,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,

    /// The local workers' secrets: one file per secret, named as steps name
    /// them in `secretEnv`.
    #[arg(long, env = "ORCA_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Local workers to start.
    #[arg(long, env = "ORCA_WORKERS", default_value_t = 2)]
    pub workers: u32,

    /// With an Anthropic API key, the local workers also offer
    /// `claude-code`, so prompt tasks and agent steps run out of the box.
    #[command(flatten)]
    pub offer: OfferArgs,

    #[command(flatten)]
    pub claude: ClaudeArgs,
}

/// How a command prints what it got back.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Format {
    /// For people: tables and messages.
    #[default]
    Table,
    /// For programs: the whole record.
    Json,
    /// For programs: the whole record.
    Yaml,
    /// For scripts: one identifier per line (a task's id, an agent's name,
    /// an audit record's sequence number), as `kubectl -o name`.
    Name,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The task file (YAML); `-` reads standard input.
    #[arg(
        short = 'f',
        long = "file",
        required_unless_present_any = ["prompt", "template"],
        conflicts_with_all = ["prompt", "template"]
    )]
    pub file: Option<PathBuf>,

    /// Submit this prompt as the task (one Claude Code step; with --plan,
    /// planned into steps first) instead of a file. With --template, each
    /// -p is one of the template's parameters, as key=value.
    #[arg(short = 'p', long)]
    pub prompt: Vec<String>,

    /// Submit this template (`orca template list`), its parameters given
    /// with -p key=value.
    #[arg(long, conflicts_with_all = ["plan", "plan_only"])]
    pub template: Option<String>,

    #[command(flatten)]
    pub templates: TemplateSource,

    /// Have the control plane plan the task's prompt into a DAG of steps.
    #[arg(long)]
    pub plan: bool,

    /// Show the plan of the task's prompt without running it.
    #[arg(long, conflicts_with_all = ["watch", "idempotency_key", "output"])]
    pub plan_only: bool,

    /// Follow the task until it finishes; exit non-zero if it fails.
    #[arg(short, long)]
    pub watch: bool,

    /// What to print: `table` (messages for people), `name` (the task's id
    /// alone), `json` or `yaml` (the task as `orca get task` prints it; with
    /// --watch, once it has ended, and the live view goes to stderr).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,

    /// Submitting again with the same key returns the same task.
    #[arg(long, env = "ORCA_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,

    /// The tenant (namespace) for the task; the token's first by default.
    #[arg(long, env = "ORCA_TENANT")]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(subcommand)]
    pub what: GetWhat,
}

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// List tasks, newest first.
    Tasks {
        /// Only tasks in this state (repeatable).
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only tasks with this label, as key=value (repeatable).
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        /// Only this tenant's tasks (repeatable); every tenant the token
        /// may see without it.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Only tasks whose name starts with this.
        #[arg(long)]
        name: Option<String>,
        /// How many tasks at most.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show one task with its steps.
    Task {
        id: String,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// List connected workers.
    Agents {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// List the control plane's replicas: which leads, since when, at
    /// which epoch.
    Servers {
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub task: String,
    /// Only this step's lines.
    pub step: Option<String>,
    /// Keep printing new lines until the task finishes.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub task: String,
}

#[derive(Debug, Args)]
#[command(
    override_usage = "orca approve TASK STEP [--reason R]\n       orca approve TASK --budget [--reason R]"
)]
pub struct ApproveArgs {
    pub task: String,
    /// The step awaiting approval.
    #[arg(required_unless_present = "budget")]
    pub step: Option<String>,
    /// Instead of a step: let a task paused for its own budget go on with
    /// as much again (you must be among the budget's approvers).
    #[arg(long, conflicts_with = "step")]
    pub budget: bool,
    /// Why; kept in the step's events and the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    pub task: String,
    /// The step awaiting approval.
    pub step: String,
    /// Why: the step's error, in its events and the audit log.
    #[arg(long)]
    pub reason: String,
}

/// Where templates come from besides the built-in set.
#[derive(Debug, Clone, Args)]
pub struct TemplateSource {
    /// A directory of templates (NAME.yaml), besides the built-in ones; a
    /// template there replaces a built-in of its name.
    #[arg(long, env = "ORCA_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// The templates: built-in and from --templates-dir, with their
    /// parameters (required ones marked *).
    List {
        #[command(flatten)]
        templates: TemplateSource,
    },
    /// Print a template: its description, parameters and steps.
    Show {
        name: String,
        #[command(flatten)]
        templates: TemplateSource,
    },
    /// Submit a template as a task, with its parameters as -p key=value.
    Run(TemplateRunArgs),
}

#[derive(Debug, Args)]
pub struct TemplateRunArgs {
    pub name: String,
    /// A parameter, as key=value (repeatable).
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    /// Follow the task until it finishes; exit non-zero if it fails.
    #[arg(short, long)]
    pub watch: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
    /// Submitting again with the same key returns the same task.
    #[arg(long, env = "ORCA_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,
    /// The tenant (namespace) for the task; the token's first by default.
    #[arg(long, env = "ORCA_TENANT")]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub templates: TemplateSource,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint for a tenant's events. Each delivery is a JSON
    /// POST signed with the secret (the Orca-Webhook-Signature header),
    /// retried with back-off for up to a day until it is answered 2xx.
    Add {
        /// Where to POST: https://... (http:// and private addresses need
        /// the server's --webhook-allow-private-networks).
        url: String,
        /// The event types, comma-separated: task.succeeded, task.failed,
        /// task.cancelled, task.paused, step.failed, approval.requested.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// A file holding the signing secret (at least 16 bytes); it never
        /// goes on the command line.
        #[arg(long)]
        secret_file: PathBuf,
        /// The tenant whose events go there [default: the token's first].
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The registered endpoints (never their secrets).
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove an endpoint and its deliveries.
    Remove { id: String },
    /// The delivery log, newest first: state, tries, last status, latency.
    Deliveries {
        /// Only this endpoint's.
        #[arg(long)]
        webhook: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Each tenant's budget and what it spent this UTC day and month.
    Get {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Set a tenant's budget per UTC day and month (admins only). Parts
    /// left out are no limit; with none, the tenant's budget is removed.
    Set {
        tenant: String,
        #[arg(long)]
        usd_per_day: Option<f64>,
        #[arg(long)]
        usd_per_month: Option<f64>,
        #[arg(long)]
        tokens_per_day: Option<u64>,
        #[arg(long)]
        tokens_per_month: Option<u64>,
    },
    /// Add to a task's budget; a task paused for its budget goes on where
    /// it stopped, each agent resuming its session.
    Raise {
        task: String,
        /// Dollars to add.
        #[arg(long)]
        usd: Option<f64>,
        /// Tokens to add.
        #[arg(long)]
        tokens: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub task: String,
    /// Follow the task until it finishes; exit non-zero if it fails.
    #[arg(short, long)]
    pub watch: bool,
}

/// Where a key or topic lives. Inside a step, the task's own scope.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// The scope: the task's id inside a step ($ORCA_TASK_ID), or any name
    /// the tenant's tasks share.
    #[arg(long, env = "ORCA_TASK_ID")]
    pub scope: Option<String>,
    /// The tenant; the token's first by default.
    #[arg(long, env = "ORCA_TENANT")]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print a key's value (JSON); exit 1 when it has none.
    Get {
        key: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Print the version and expiry too, as JSON.
        #[arg(long)]
        full: bool,
    },
    /// Store a JSON value; prints its new version.
    Put {
        key: String,
        /// A JSON value, e.g. '{"found": true}' or '"text"'.
        value: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Only if the key is at this version (0: only if it has no value).
        #[arg(long)]
        expect_version: Option<u64>,
        /// The value expires after this long (e.g. 10m).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Print every live value of the scope, one `KEY VALUE` line each, in
    /// key order.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Delete a key's value.
    Delete {
        key: String,
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        expect_version: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    pub topic: String,
    /// A JSON value.
    pub message: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

#[derive(Debug, Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    pub topic: String,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Records after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// How many records at most.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub task: String,
}

fn parse_log_format(text: &str) -> Result<orca_telemetry::LogFormat, String> {
    orca_telemetry::LogFormat::parse(text).ok_or_else(|| "text or json".to_string())
}

/// `RATE` or `RATE/BURST`, both above zero; the burst defaults to the rate.
fn parse_rate(text: &str) -> Result<(u32, u32), String> {
    let number = |part: &str| {
        part.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{text:?} is not a rate like 50 or 50/200 (both above zero)"))
    };
    match text.split_once('/') {
        Some((rate, burst)) => Ok((number(rate)?, number(burst)?)),
        None => number(text).map(|rate| (rate, rate)),
    }
}

/// `500ms`, `15s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 15s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shipped_defaults_parse_and_bind_loopback() {
        let cli = Cli::try_parse_from(["orca", "up"]).expect("defaults parse");
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.workers, 2);
        let up = up.control_plane;
        assert!(up.listen.ip().is_loopback());
        assert_eq!(up.store.data_dir, PathBuf::from(".orca"));
        assert_eq!(up.store.lease_ttl, Duration::from_secs(30));
        assert_eq!(up.store.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(up.store.hot_tasks, orca_server::DEFAULT_HOT_TASKS);
        let cli = Cli::try_parse_from(["orca", "server"]).expect("defaults parse");
        let Command::Server(server) = cli.command else {
            panic!("not server")
        };
        assert!(server.control_plane.listen.ip().is_loopback());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("50"), Ok((50, 50)));
        assert_eq!(parse_rate("50/200"), Ok((50, 200)));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn worker_slots_are_bounded() {
        assert!(Cli::try_parse_from(["orca", "worker", "--slots", "0"]).is_err());
    }

    #[test]
    fn the_cap_on_tasks_in_memory_is_at_least_one() {
        let refused = Cli::try_parse_from(["orca", "server", "--hot-tasks", "0"])
            .expect_err("zero holds nothing");
        assert!(refused.to_string().contains("--hot-tasks"), "{refused}");
        let cli = Cli::try_parse_from(["orca", "server", "--hot-tasks", "1000"]).expect("parses");
        let Command::Server(server) = cli.command else {
            panic!("not server")
        };
        assert_eq!(server.control_plane.store.hot_tasks, 1000);
    }

    #[test]
    fn approve_takes_a_step_or_the_budget_not_both() {
        let approve = |args: &[&str]| {
            Cli::try_parse_from(["orca", "approve"].iter().chain(args)).map(|cli| {
                match cli.command {
                    Command::Approve(a) => (a.step, a.budget),
                    _ => panic!("approve parses as approve"),
                }
            })
        };
        assert_eq!(
            approve(&["t", "s"]).expect("a step"),
            (Some("s".into()), false)
        );
        assert_eq!(
            approve(&["t", "--budget"]).expect("the budget"),
            (None, true)
        );
        assert!(approve(&["t"]).is_err(), "one of them");
        assert!(approve(&["t", "s", "--budget"]).is_err(), "not both");
    }
}
