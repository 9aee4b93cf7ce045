//! The command line. Every flag can also come from an `TIDEWRIGHT_*` variable.
//! The long-running commands' flags are in `serve`, the client commands'
//! in `commands`; this module holds the top level and the parsers.

mod commands;
#[cfg(test)]
mod reference;
mod serve;
mod worker;

pub use commands::*;
pub use serve::*;
pub use worker::*;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tidewright_server::StoreUrl;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "tidewright",
    version,
    about = "Orchestrate fleets of AI coding agents",
    propagate_version = true
)]
pub struct Cli {
    /// The control plane to talk to: http://host:port, or https:// for
    /// TLS [default: the context's server, else http://127.0.0.1:7070].
    #[arg(long, global = true, env = "TIDEWRIGHT_SERVER")]
    pub server: Option<String>,

    /// Bearer token (a tidewright token or a JWT). Without it (or --token-file
    /// or a context), the CLI reads .tidewright/admin.token, and `tidewright worker`
    /// reads .tidewright/worker.token: the tokens `tidewright up` creates.
    #[arg(long, global = true, env = "TIDEWRIGHT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A file holding the bearer token.
    #[arg(long, global = true, env = "TIDEWRIGHT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM CA certificates that an https:// server's certificate must
    /// chain to; the system's roots without it.
    #[arg(long, global = true, env = "TIDEWRIGHT_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate, for servers that require one of workers.
    #[arg(
        long,
        global = true,
        env = "TIDEWRIGHT_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "TIDEWRIGHT_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// The context (server, token, CA) to use from the config file, instead
    /// of its current one.
    #[arg(long, global = true, env = "TIDEWRIGHT_CONTEXT")]
    pub context: Option<String>,

    /// How log lines are written to stderr: text, or json (one object per
    /// line, for log collectors). Each carries its trace id when traces are
    /// exported.
    #[arg(long, global = true, env = "TIDEWRIGHT_LOG_FORMAT", default_value = "text", value_parser = parse_log_format)]
    pub log_format: tidewright_telemetry::LogFormat,

    /// The config file with contexts [default: $XDG_CONFIG_HOME/tidewright/config.yaml,
    /// else ~/.config/tidewright/config.yaml].
    #[arg(long, global = true, env = "TIDEWRIGHT_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane.
    Server(Box<ServerArgs>),
    /// Run a worker that connects to the control plane.
    Worker(Box<WorkerArgs>),
    /// Run the control plane and local workers in one process.
    Up(Box<UpArgs>),
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
    /// Send a message into a running agent step's session: Claude Code
    /// takes it mid-turn; with --follow-up, once its turn ends.
    Steer(SteerArgs),
    /// Fail a step awaiting approval, saying why; the task fails as after
    /// any failed step.
    Reject(RejectArgs),
    /// Budgets: show tenants' spend against their budgets, set a tenant's
    /// (admins), raise a task's to let it go on.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Tenants' shares of the fleet: show each one's weight, cap, running
    /// and waiting steps; set a tenant's (admins).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// What agents cost, by day, tenant, repository, runtime, model or
    /// template, over up to 400 days (table, CSV or JSON).
    Cost(CostArgs),
    /// Task templates: list, show and run them.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Schedules: a task submitted at each tick of a cron, in a time zone.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Triggers: a forge's event on a repository (an issue labelled, a
    /// comment command, a failed check) starts a template's task.
    #[command(subcommand)]
    Trigger(TriggerCommand),
    /// Webhooks: endpoints that receive a tenant's task events as signed
    /// JSON POSTs, and their delivery log (admins only).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Seeds: what repositories' setups made (node_modules, a virtualenv),
    /// kept by the control plane for every worker.
    #[command(subcommand)]
    Seed(SeedCommand),
    /// Follow a task live, with a progress bar per step.
    Watch(WatchArgs),
    /// Show the audit log: who submitted, cancelled or retried what, and
    /// what was refused (admins only).
    Audit(AuditArgs),
    /// Measure agents on a repository's own history: each commit that
    /// landed on its branch and changed both code and tests is a task (its
    /// message), started from its parent with nothing after it, egress
    /// closed, passed when the commit's own tests pass on the agent's work;
    /// a table per runtime and attempt count, compared with the last run
    /// on the repository. The workers read the snapshots it makes as local
    /// repositories: the control plane needs --allow-local-repos.
    Eval(EvalArgs),
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
    /// Print this build's version, the commit it was built from and when.
    Version {
        /// table (one line, for people), or json.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Write a man page for each command (tidewright.1, tidewright-up.1, …)
    /// into a directory: what the packages install.
    #[command(hide = true)]
    Man {
        /// Where to write them; made when missing.
        dir: std::path::PathBuf,
    },
    /// Print a shell completion script, e.g. `source <(tidewright completion bash)`.
    Completion {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
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

fn parse_log_format(text: &str) -> Result<tidewright_telemetry::LogFormat, String> {
    tidewright_telemetry::LogFormat::parse(text).ok_or_else(|| "text or json".to_string())
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

/// `2GiB`, `512MiB`, `64KiB`, or a bare number of bytes; above zero.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    tidewright_core::step_limits::parse_bytes(text)
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
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 15s, 2m or 7d"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m, h or d"
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

    /// The book's CLI page is what the definitions print; with
    /// TIDEWRIGHT_WRITE_DOCS=1 the test writes it instead.
    #[test]
    fn the_books_cli_page_is_the_cli_help() {
        let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/src/cli.md");
        let made = super::reference::markdown();
        if std::env::var_os("TIDEWRIGHT_WRITE_DOCS").is_some() {
            std::fs::write(&page, &made).expect("write the page");
        }
        let kept = std::fs::read_to_string(&page).unwrap_or_default();
        assert!(
            kept == made,
            "docs/src/cli.md differs from the CLI's --help: run TIDEWRIGHT_WRITE_DOCS=1 cargo test -p tidewright"
        );
    }

    #[test]
    fn shipped_defaults_parse_and_bind_loopback() {
        let cli = Cli::try_parse_from(["tidewright", "up"]).expect("defaults parse");
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.workers, 2);
        let up = up.control_plane;
        assert!(up.listen.ip().is_loopback());
        assert_eq!(up.store.data_dir, PathBuf::from(".tidewright"));
        assert_eq!(up.store.worker_timeout, Duration::from_secs(30));
        assert_eq!(up.store.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(up.store.hot_tasks, tidewright_server::DEFAULT_HOT_TASKS);
        let cli = Cli::try_parse_from(["tidewright", "server"]).expect("defaults parse");
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
    fn sizes_parse() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("0").expect_err("zero").contains("above zero"));
        assert!(parse_bytes("2GB").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
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
        assert!(Cli::try_parse_from(["tidewright", "worker", "--slots", "0"]).is_err());
    }

    #[test]
    fn the_cap_on_tasks_in_memory_is_at_least_one() {
        let refused = Cli::try_parse_from(["tidewright", "server", "--hot-tasks", "0"])
            .expect_err("zero holds nothing");
        assert!(refused.to_string().contains("--hot-tasks"), "{refused}");
        let cli =
            Cli::try_parse_from(["tidewright", "server", "--hot-tasks", "1000"]).expect("parses");
        let Command::Server(server) = cli.command else {
            panic!("not server")
        };
        assert_eq!(server.control_plane.store.hot_tasks, 1000);
    }

    #[test]
    fn approve_takes_a_step_or_the_budget_not_both() {
        let approve = |args: &[&str]| {
            Cli::try_parse_from(["tidewright", "approve"].iter().chain(args)).map(|cli| {
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
