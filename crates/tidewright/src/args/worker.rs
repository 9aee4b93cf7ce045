//! The flags of `tidewright worker` (and the worker `tidewright up` runs): its
//! offer, its agent CLIs and its sandbox.

use super::*;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Name shown in `tidewright get agents`; defaults to the host name.
    #[arg(long, env = "TIDEWRIGHT_WORKER_NAME")]
    pub name: Option<String>,

    /// The pool (Kubernetes `Agent`) this worker belongs to.
    #[arg(long, env = "TIDEWRIGHT_POOL", default_value = "")]
    pub pool: String,

    /// The pool's cap on Claude Code steps running at once, across all its
    /// workers (0: none): fan-out stops here before the provider's limit.
    #[arg(long, env = "TIDEWRIGHT_MAX_CONCURRENT_AGENTS", default_value_t = 0)]
    pub max_concurrent_agents: u32,

    /// Run this many steps, then leave (0: no end). With 1, each step has
    /// a worker, and so a pod, of its own (`Agent.spec.isolation: pod`).
    #[arg(long, env = "TIDEWRIGHT_STEPS", default_value_t = 0)]
    pub steps: u32,

    #[command(flatten)]
    pub offer: OfferArgs,

    /// Root of per-attempt workspaces.
    #[arg(long, env = "TIDEWRIGHT_WORK_DIR", default_value = ".tidewright/work")]
    pub work_dir: PathBuf,

    /// One file per secret, named as steps name them in `secretEnv` (a
    /// mounted Kubernetes Secret has this layout).
    #[arg(long, env = "TIDEWRIGHT_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// Leave each attempt's workspace behind when it ends, for debugging;
    /// by default it is removed (it may hold what a step made of a secret).
    #[arg(long, env = "TIDEWRIGHT_KEEP_WORKSPACES")]
    pub keep_workspaces: bool,

    /// An agent that calls one tool with one input this many times in a
    /// row is going round in circles: it is stopped as stalled, and says
    /// so (0: never).
    #[arg(long, env = "TIDEWRIGHT_REPEAT_LIMIT", default_value_t = tidewright_worker::runtime::repeats::DEFAULT_REPEAT_LIMIT)]
    pub repeat_limit: u32,

    /// An agent whose work (the files of its working directory) is as it
    /// was after this many of its turns in a row is stalled: it is stopped,
    /// and says so (0: never).
    #[arg(long, env = "TIDEWRIGHT_UNCHANGED_TURNS", default_value_t = tidewright_worker::runtime::repeats::DEFAULT_UNCHANGED_TURNS)]
    pub unchanged_turns: u32,

    /// On SIGTERM or Ctrl-C: take no new work, let running steps finish for
    /// this long, then hand the rest back to run elsewhere at once.
    #[arg(long, env = "TIDEWRIGHT_DRAIN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub drain_grace: Duration,

    /// Largest session checkpoint an agent step leaves with the control
    /// plane when it ends short of success, so its retry resumes on any
    /// worker; workspace files beyond it are left out. 0: sessions stay on
    /// this worker.
    #[arg(long, env = "TIDEWRIGHT_CHECKPOINT_MAX_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub checkpoint_max_bytes: u64,

    /// How often a running agent's session is checkpointed with the
    /// control plane when it changed, so that a retry after this worker
    /// dies (kill -9, a lost node) resumes it on any worker. 0s: only when
    /// an attempt ends short of success.
    #[arg(long, env = "TIDEWRIGHT_CHECKPOINT_EVERY", default_value = "60s", value_parser = parse_duration)]
    pub checkpoint_every: Duration,

    /// Where the mirrors of tasks' repositories are kept (one bare mirror
    /// per repository URL); <work-dir>/.mirrors by default. Workers may
    /// share one (a volume a pool's pods mount): they take turns on each
    /// mirror.
    #[arg(long, env = "TIDEWRIGHT_MIRRORS_DIR")]
    pub mirrors_dir: Option<PathBuf>,

    /// After each step on a repository, the least recently used mirrors
    /// no step is using are removed until the rest take at most this many
    /// bytes; 0 keeps them all.
    #[arg(long, env = "TIDEWRIGHT_MIRRORS_MAX_BYTES", default_value_t = 0)]
    pub mirrors_max_bytes: u64,

    /// Worktrees kept checked out ahead of need, per repository, at the
    /// commit its steps start from (in <work-dir>/.spares): a step's
    /// worktree is then ready without checking out every file. Each takes
    /// the disk of one checkout; 0 keeps none.
    #[arg(long, env = "TIDEWRIGHT_SPARE_WORKTREES", default_value_t = tidewright_worker::DEFAULT_SPARE_WORKTREES)]
    pub spare_worktrees: usize,

    /// Where the seeds of repositories' setups are kept (what a setup such
    /// as `npm ci` made, once per key, put into each step's checkout);
    /// <work-dir>/.seeds by default.
    #[arg(long, env = "TIDEWRIGHT_SEEDS_DIR")]
    pub seeds_dir: Option<PathBuf>,

    /// A setup whose paths take more than this many bytes is not kept as a
    /// seed (the step still runs; the next one runs the setup again).
    #[arg(long, env = "TIDEWRIGHT_MAX_SEED_BYTES", default_value_t = tidewright_worker::DEFAULT_MAX_SEED_BYTES)]
    pub max_seed_bytes: u64,

    /// The most all of this worker's seeds may take; past it, those used
    /// longest ago go. 0 for no bound.
    #[arg(long, env = "TIDEWRIGHT_SEED_CACHE_BYTES", default_value_t = tidewright_worker::DEFAULT_SEED_CACHE_BYTES)]
    pub seed_cache_bytes: u64,

    #[command(flatten)]
    pub agents: AgentArgs,

    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Where to serve this worker's /metrics (Prometheus), /healthz and
    /// /readyz over HTTP, e.g. 127.0.0.1:7071; not served without it.
    #[arg(long, env = "TIDEWRIGHT_WORKER_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// A file holding the bearer token /metrics asks scrapers for; needed
    /// when --http-listen is not a loopback address.
    #[arg(long, env = "TIDEWRIGHT_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
}

/// How a worker runs each agent CLI.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub claude: ClaudeArgs,

    #[command(flatten)]
    pub codex: CodexArgs,

    #[command(flatten)]
    pub gemini: GeminiArgs,

    #[command(flatten)]
    pub qwen: QwenArgs,
}

/// How a worker runs `claudeCode` steps.
#[derive(Debug, Args)]
pub struct ClaudeArgs {
    /// The Claude Code CLI that runs `claudeCode` steps (offer the
    /// `claude-code` capability to get them).
    #[arg(long, env = "TIDEWRIGHT_CLAUDE_BIN", default_value = "claude")]
    pub claude_bin: PathBuf,

    /// The model of `claudeCode` steps that name none; the CLI's default when unset.
    #[arg(long, env = "TIDEWRIGHT_MODEL")]
    pub model: Option<String>,

    /// A file holding the Anthropic API key; $ANTHROPIC_API_KEY otherwise.
    #[arg(long, env = "TIDEWRIGHT_ANTHROPIC_API_KEY_FILE")]
    pub anthropic_api_key_file: Option<PathBuf>,

    /// A file holding a Claude subscription's token (`claude setup-token`),
    /// for agents that run on a subscription's usage windows;
    /// $CLAUDE_CODE_OAUTH_TOKEN otherwise.
    #[arg(long, env = "TIDEWRIGHT_CLAUDE_OAUTH_TOKEN_FILE")]
    pub claude_oauth_token_file: Option<PathBuf>,
}

/// How a worker runs `codex` steps.
#[derive(Debug, Args)]
pub struct CodexArgs {
    /// The Codex CLI that runs `codex` steps (offer the `codex` capability
    /// to get them).
    #[arg(long, env = "TIDEWRIGHT_CODEX_BIN", default_value = "codex")]
    pub codex_bin: PathBuf,

    /// The model of `codex` steps that name none (gpt-5-codex when unset).
    #[arg(long, env = "TIDEWRIGHT_CODEX_MODEL")]
    pub codex_model: Option<String>,

    /// A file holding the OpenAI API key; $OPENAI_API_KEY otherwise. The
    /// API is $OPENAI_BASE_URL when set (a gateway), else OpenAI's.
    #[arg(long, env = "TIDEWRIGHT_OPENAI_API_KEY_FILE")]
    pub openai_api_key_file: Option<PathBuf>,

    /// A YAML or JSON file of what `codex` steps' tokens cost, in US
    /// dollars per million, by model name (the longest name a model starts
    /// with): `gpt-6.1: {input: 2.5, cachedInput: 0.25, output: 20}`.
    /// Models it does not name are priced at OpenAI's list prices.
    #[arg(long, env = "TIDEWRIGHT_PRICES_FILE")]
    pub prices: Option<PathBuf>,
}

/// How a worker runs `geminiCli` steps.
#[derive(Debug, Args)]
pub struct GeminiArgs {
    /// The Gemini CLI that runs `geminiCli` steps (offer the `gemini-cli`
    /// capability to get them).
    #[arg(long, env = "TIDEWRIGHT_GEMINI_BIN", default_value = "gemini")]
    pub gemini_bin: PathBuf,

    /// The model of `geminiCli` steps that name none (gemini-2.5-pro when unset).
    #[arg(long, env = "TIDEWRIGHT_GEMINI_MODEL")]
    pub gemini_model: Option<String>,

    /// A file holding the Gemini API key; $GEMINI_API_KEY otherwise. The
    /// API is $GOOGLE_GEMINI_BASE_URL when set (a gateway), else Google's.
    #[arg(long, env = "TIDEWRIGHT_GEMINI_API_KEY_FILE")]
    pub gemini_api_key_file: Option<PathBuf>,
}

/// How a worker runs Qwen Code's steps (`agent: {cli: qwen-code}`). Its
/// key and API are OpenAI's, as Codex's: `--openai-api-key-file` (else
/// $OPENAI_API_KEY) and $OPENAI_BASE_URL; its tokens are priced by
/// `--prices`.
#[derive(Debug, Args)]
pub struct QwenArgs {
    /// The Qwen Code CLI that runs `qwen-code` steps (offer the `qwen-code`
    /// capability to get them).
    #[arg(long, env = "TIDEWRIGHT_QWEN_BIN", default_value = "qwen")]
    pub qwen_bin: PathBuf,

    /// The model of `qwen-code` steps that name none (gpt-5 when unset).
    #[arg(long, env = "TIDEWRIGHT_QWEN_MODEL")]
    pub qwen_model: Option<String>,
}

/// What a worker offers: its capabilities and how many steps it runs at once.
#[derive(Debug, Args)]
pub struct OfferArgs {
    /// Capabilities offered; repeat or separate with commas.
    #[arg(
        long = "capability",
        env = "TIDEWRIGHT_CAPABILITIES",
        value_delimiter = ',',
        default_value = "shell"
    )]
    pub capabilities: Vec<String>,

    /// Steps run at once (per worker).
    #[arg(long, env = "TIDEWRIGHT_SLOTS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub slots: u32,
}

/// Whether a worker's steps run sandboxed.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum SandboxArg {
    /// Each step under bubblewrap: its workspace and the system's
    /// programs, nothing else of the host; the worker does not start where
    /// that cannot be made.
    #[default]
    On,
    /// Steps run as the worker's user, seeing what it sees (logged, and
    /// recorded in the audit log when the worker registers).
    Off,
}

/// How a worker's steps are sandboxed.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Run each step in a sandbox (on), or not (off).
    #[arg(long, env = "TIDEWRIGHT_SANDBOX", value_enum, default_value_t = SandboxArg::On)]
    pub sandbox: SandboxArg,

    /// A directory sandboxed steps may read, for tools installed outside
    /// /usr (repeat, or separate with `:`). The directories on the
    /// worker's PATH and its agent CLIs' are readable already.
    #[arg(long, env = "TIDEWRIGHT_SANDBOX_READ_ONLY", value_delimiter = ':')]
    pub sandbox_read_only: Vec<PathBuf>,

    /// A directory every sandboxed step may read and write, seeing the
    /// others' writes, such as a build cache (repeat, or separate with `:`).
    #[arg(long, env = "TIDEWRIGHT_SANDBOX_SHARED", value_delimiter = ':')]
    pub sandbox_shared: Vec<PathBuf>,

    /// Hosts this pool's sandboxed steps may reach through the worker's
    /// egress proxy: `host`, `host:port`, `*.domain[:port]` or `*` (repeat,
    /// or separate with `,`). A task's and a step's own lists narrow it.
    /// Unset: steps reach only the control plane, the model API and their
    /// task's repository host. A name that resolves to a private or
    /// link-local address is refused unless named with its port.
    #[arg(long, env = "TIDEWRIGHT_EGRESS_ALLOW", value_delimiter = ',')]
    pub egress_allow: Option<Vec<String>>,

    /// A name the egress proxy resolves to an address before any DNS
    /// lookup, as a hosts file would: `NAME=ADDRESS` (repeat, or separate
    /// with `,`). For hosts the worker's resolver does not know, such as
    /// an internal API a step's credential is for. The allow-lists still
    /// judge the name, and a private address still needs an entry naming
    /// the host with its port.
    #[arg(long, env = "TIDEWRIGHT_EGRESS_HOST", value_delimiter = ',')]
    pub egress_host: Vec<String>,

    /// The bubblewrap executable the sandbox is made with.
    #[arg(long, env = "TIDEWRIGHT_BWRAP", default_value = "bwrap")]
    pub bwrap: PathBuf,

    /// Each step's memory (e.g. 2GiB), in a cgroup of its own below the
    /// worker's: past it the step ends with `oom: memory limit 2 GiB`. The
    /// worker does not start where it cannot be held.
    #[arg(long, env = "TIDEWRIGHT_STEP_MEMORY", value_parser = parse_bytes)]
    pub step_memory: Option<u64>,

    /// Each step's processes at once, in a cgroup of its own below the
    /// worker's: a step ended by a fork refused at it says
    /// `pids limit N`. The worker does not start where it cannot be held.
    #[arg(long, env = "TIDEWRIGHT_STEP_PROCESSES", value_parser = clap::value_parser!(u64).range(1..))]
    pub step_processes: Option<u64>,

    /// Each process's open files in a step (an rlimit).
    #[arg(long, env = "TIDEWRIGHT_STEP_OPEN_FILES", value_parser = clap::value_parser!(u64).range(1..))]
    pub step_open_files: Option<u64>,

    /// Each process's CPU seconds in a step (an rlimit: SIGXCPU, then
    /// SIGKILL).
    #[arg(long, env = "TIDEWRIGHT_STEP_CPU_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub step_cpu_seconds: Option<u64>,

    /// What each step's workspace may hold (e.g. 10GiB): measured while it
    /// runs, and no file larger (an rlimit); past it the step ends `disk
    /// limit 10 GiB`. A step's own `limits` may ask for less.
    #[arg(long, env = "TIDEWRIGHT_STEP_DISK", value_parser = parse_bytes)]
    pub step_disk: Option<u64>,
}

impl SandboxArgs {
    pub fn limits(&self) -> tidewright_worker::LimitSettings {
        tidewright_worker::LimitSettings {
            memory_bytes: self.step_memory,
            processes: self.step_processes,
            open_files: self.step_open_files,
            cpu_seconds: self.step_cpu_seconds,
            disk_bytes: self.step_disk,
        }
    }

    pub fn settings(&self) -> tidewright_worker::SandboxSettings {
        tidewright_worker::SandboxSettings {
            mode: match self.sandbox {
                SandboxArg::On => tidewright_worker::SandboxMode::On,
                SandboxArg::Off => tidewright_worker::SandboxMode::Off,
            },
            bwrap: self.bwrap.clone(),
            read_only: self.sandbox_read_only.clone(),
            shared: self.sandbox_shared.clone(),
            // The worker adds its own directories.
            hidden: Vec::new(),
            egress_allow: self.egress_allow.clone(),
            egress_hosts: self.egress_host.clone(),
            // Each sandbox's network is started by the relay beside this
            // binary, from the same build.
            init: std::env::current_exe().ok().and_then(|exe| {
                Some(
                    exe.parent()?
                        .join(tidewright_worker::sandbox::egress::RELAY_PROGRAM),
                )
            }),
            // The worker lays it out in its work directory.
            etc_dir: None,
        }
    }
}
