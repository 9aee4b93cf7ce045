//! What a worker is told at start: its control plane, its name and pool,
//! what it offers, where it works, and how it runs and sandboxes steps.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tidewright_api::client::ClientTls;

use crate::http::HttpSettings;
use crate::runtime::{self, AgentCli, AgentSettings};
use crate::sandbox::SandboxSettings;
use crate::sandbox::limits::LimitSettings;

/// Spare worktrees per repository and commit, unless told otherwise: a
/// fan-out's first two steps start at once without a checkout.
pub const DEFAULT_SPARE_WORKTREES: usize = 2;
/// The largest seed a worker keeps by default: 4 GiB.
pub const DEFAULT_MAX_SEED_BYTES: u64 = 4 << 30;
/// The most all of a worker's seeds take by default.
pub const DEFAULT_SEED_CACHE_BYTES: u64 = 20 << 30;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The control plane, e.g. `http://127.0.0.1:7070`.
    pub server: String,
    pub name: String,
    pub pool: String,
    pub capabilities: Vec<String>,
    pub slots: u32,
    /// How many steps it runs before it leaves; 0 for no end.
    pub steps: u32,
    /// The pool's cap on agent steps running at once; 0 for none.
    pub max_concurrent_agents: u32,
    /// Root of the per-attempt workspaces.
    pub work_dir: PathBuf,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// On shutdown, how long running steps may finish before the worker
    /// hands them back to run elsewhere.
    pub drain_grace: Duration,
    /// A token with the worker role.
    pub token: Option<String>,
    /// CA and client certificate for an `https://` server.
    pub tls: ClientTls,
    /// One file per secret that steps may ask for in `secretEnv`.
    pub secrets_dir: Option<PathBuf>,
    /// Leave each attempt's workspace behind when it ends.
    pub keep_workspaces: bool,
    /// An agent that calls one tool with one input this many times in a
    /// row is stopped as stalled (0: never).
    pub repeat_limit: u32,
    /// An agent whose work is as it was after this many of its turns in a
    /// row is stopped as stalled (0: never).
    pub unchanged_turns: u32,
    /// How each agent CLI's steps run (the CLI, the model, the credential,
    /// the API's address, prices); a CLI not named runs with its defaults.
    pub agents: BTreeMap<AgentCli, AgentSettings>,
    /// The `tidewright` executable steps call back with (`tidewright state`, the
    /// agents' MCP server); `None` leaves them to find one on their `PATH`.
    pub tidewright_bin: Option<PathBuf>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` for
    /// nowhere.
    pub http: Option<HttpSettings>,
    /// The largest session checkpoint an agent attempt leaves with the
    /// control plane; 0 keeps sessions on this worker only.
    pub checkpoint_max_bytes: usize,
    /// How often a running agent's session is checkpointed when it
    /// changed, so a retry after this worker dies resumes it; `None`: only
    /// when an attempt ends short of success.
    pub checkpoint_every: Option<std::time::Duration>,
    /// Where the mirrors of tasks' repositories are; `<work_dir>/.mirrors`
    /// when `None`. A volume the pods of a pool share works: they take
    /// turns on each mirror as one worker's steps do.
    pub mirrors_dir: Option<PathBuf>,
    /// After a step on a repository, the least recently used mirrors not
    /// in use are removed until the rest take at most this; 0: no bound.
    pub mirrors_max_bytes: u64,
    /// Worktrees kept checked out ahead of need at the commit a
    /// repository's steps start from (in `<work_dir>/.spares`), so a step's
    /// is ready without a checkout of every file; 0 for none.
    pub spare_worktrees: usize,
    /// Where the seeds of repositories' setups are kept; `<work_dir>/.seeds`
    /// when `None`.
    pub seeds_dir: Option<PathBuf>,
    /// A setup whose paths take more than this is not kept as a seed.
    pub max_seed_bytes: u64,
    /// The most all this worker's seeds may take; past it, those used
    /// longest ago go (0: no bound).
    pub seed_cache_bytes: u64,
    /// How steps are sandboxed (on unless `--sandbox=off`).
    pub sandbox: SandboxSettings,
    /// What each step may use.
    pub limits: LimitSettings,
}

impl WorkerConfig {
    pub fn new(server: impl Into<String>, name: impl Into<String>, work_dir: PathBuf) -> Self {
        WorkerConfig {
            server: server.into(),
            name: name.into(),
            pool: String::new(),
            capabilities: vec!["shell".into()],
            slots: 4,
            steps: 0,
            max_concurrent_agents: 0,
            work_dir,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            drain_grace: Duration::from_secs(25),
            token: None,
            tls: ClientTls::default(),
            secrets_dir: None,
            keep_workspaces: false,
            repeat_limit: runtime::repeats::DEFAULT_REPEAT_LIMIT,
            unchanged_turns: runtime::repeats::DEFAULT_UNCHANGED_TURNS,
            agents: BTreeMap::new(),
            tidewright_bin: None,
            http: None,
            checkpoint_max_bytes: runtime::checkpoint::DEFAULT_MAX_BYTES,
            checkpoint_every: Some(runtime::checkpoint::DEFAULT_EVERY),
            mirrors_dir: None,
            mirrors_max_bytes: 0,
            spare_worktrees: DEFAULT_SPARE_WORKTREES,
            seeds_dir: None,
            max_seed_bytes: DEFAULT_MAX_SEED_BYTES,
            seed_cache_bytes: DEFAULT_SEED_CACHE_BYTES,
            sandbox: SandboxSettings::default(),
            limits: LimitSettings::default(),
        }
    }
}
