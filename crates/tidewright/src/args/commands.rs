//! The flags of the client commands: submit, get, watch, templates,
//! webhooks, budgets, state, approvals and the config file.

use super::*;

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

    /// Submit this template (`tidewright template list`), its parameters given
    /// with -p key=value.
    #[arg(long, conflicts_with_all = ["plan", "plan_only"])]
    pub template: Option<String>,

    #[command(flatten)]
    pub templates: TemplateChoice,

    /// Have the control plane plan the task's prompt into a DAG of steps.
    #[arg(long)]
    pub plan: bool,

    /// Show the plan of the task's prompt without running it.
    #[arg(long, conflicts_with_all = ["watch", "idempotency_key", "output"])]
    pub plan_only: bool,

    #[command(flatten)]
    pub options: SubmitOptions,
}

/// How a task is submitted and followed: `tidewright submit`'s and
/// `tidewright template run`'s.
#[derive(Debug, Args)]
pub struct SubmitOptions {
    /// Follow the task until it finishes; exit non-zero if it fails.
    #[arg(short, long)]
    pub watch: bool,

    /// What to print: `table` (messages for people), `name` (the task's id
    /// alone), `json` or `yaml` (the task as `tidewright get task` prints it; with
    /// --watch, once it has ended, and the live view goes to stderr).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,

    /// Submitting again with the same key returns the same task.
    #[arg(long, env = "TIDEWRIGHT_IDEMPOTENCY_KEY")]
    pub idempotency_key: Option<String>,

    /// The tenant (namespace) for the task; the token's first by default.
    #[arg(long, env = "TIDEWRIGHT_TENANT")]
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
        /// How many tasks at most (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
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
    /// How each agent runtime fared on the outcomes kept (the attempts of
    /// steps with `attempts`, and the tasks of `tidewright eval`):
    /// attempts, passed, won, pass rate, cost, dollars per pass and median
    /// time. What `runtimes: auto` chooses by.
    Scores {
        /// Only outcomes on this repository (its URL, as the tasks and
        /// `tidewright eval --repo` name it; a trailing `/` or `.git` aside).
        #[arg(long)]
        repo: Option<String>,
        /// Only attempts of tasks made from this template.
        #[arg(long)]
        template: Option<String>,
        /// The newest tasks of each kind (with attempts; of evals) read, at
        /// most (1 to 10000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// List each base's landing queue (tasks with `repo.land`): the task
    /// landing now, then those waiting their turn.
    Landings {
        /// Only queues holding this tenant's tasks (repeatable); every
        /// tenant the token may see without it.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
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
    override_usage = "tidewright approve TASK STEP [--reason R]\n       tidewright approve TASK --budget [--reason R]"
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
pub struct SteerArgs {
    pub task: String,
    /// The running agent step.
    pub step: String,
    /// What to tell the agent ("Use the v2 API instead.").
    pub message: String,
    /// After the agent's current turn rather than into it.
    #[arg(long)]
    pub follow_up: bool,
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
    #[arg(long, env = "TIDEWRIGHT_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
}

/// Which templates a client command uses: this machine's, or the control
/// plane's.
#[derive(Debug, Clone, Args)]
pub struct TemplateChoice {
    #[command(flatten)]
    pub local: TemplateSource,

    /// Use the control plane's templates (its built-in set and `tidewright
    /// server --templates-dir`), rendered there, instead of this machine's.
    #[arg(long, conflicts_with = "templates_dir")]
    pub on_server: bool,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// The templates: built-in and from --templates-dir (or the control
    /// plane's, with --on-server), with their parameters (required ones
    /// marked *).
    List {
        #[command(flatten)]
        templates: TemplateChoice,
    },
    /// Print a template: its description, parameters and steps.
    Show {
        name: String,
        #[command(flatten)]
        templates: TemplateChoice,
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
    #[command(flatten)]
    pub options: SubmitOptions,
    #[command(flatten)]
    pub templates: TemplateChoice,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule: its task (-f) or template (--template, -p) is
    /// submitted at each tick of the cron, in the time zone, each tick once.
    Create(ScheduleCreateArgs),
    /// The schedules, with their next tick and last run.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// A schedule and its history: what each of its last ticks did.
    Get {
        name: String,
        #[arg(long, env = "TIDEWRIGHT_TENANT")]
        tenant: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a schedule; the tasks it submitted stay.
    Delete {
        name: String,
        #[arg(long, env = "TIDEWRIGHT_TENANT")]
        tenant: Option<String>,
    },
    /// Stop a schedule's ticks from firing until it is resumed.
    Suspend {
        name: String,
        #[arg(long, env = "TIDEWRIGHT_TENANT")]
        tenant: Option<String>,
    },
    /// Let a suspended schedule fire again, from its next tick on.
    Resume {
        name: String,
        #[arg(long, env = "TIDEWRIGHT_TENANT")]
        tenant: Option<String>,
    },
    /// Submit a schedule's task now; prints its id.
    Trigger {
        name: String,
        #[arg(long, env = "TIDEWRIGHT_TENANT")]
        tenant: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    /// Unique in its tenant: lowercase letters, digits and '-'.
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), six with
    /// seconds first, or a name such as @daily: "0 3 * * 1-5".
    #[arg(long)]
    pub cron: String,
    /// An IANA time zone, such as Europe/Rome [default: UTC].
    #[arg(long, default_value = "")]
    pub timezone: String,
    /// The task file each tick submits ("-" for standard input).
    #[arg(short, long, conflicts_with = "template")]
    pub file: Option<PathBuf>,
    /// Or a template to run at each tick, with its parameters as -p.
    #[arg(long)]
    pub template: Option<String>,
    /// A template parameter, as key=value (repeatable).
    #[arg(short = 'p', long = "param", requires = "template")]
    pub params: Vec<String>,
    /// While the last run's task runs: Allow (fire anyway), Forbid (skip
    /// the tick) or Replace (cancel it, then fire).
    #[arg(long, default_value = "Allow")]
    pub concurrency_policy: String,
    /// How late a tick may fire; later, it is missed [default: 60].
    #[arg(long)]
    pub starting_deadline_seconds: Option<u32>,
    /// What becomes of missed ticks: skip, or runOnce (the newest fires
    /// when the control plane is back).
    #[arg(long, default_value = "skip")]
    pub missed: String,
    /// Create it suspended.
    #[arg(long)]
    pub suspended: bool,
    /// The tenant; the token's first by default.
    #[arg(long, env = "TIDEWRIGHT_TENANT")]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Add a trigger: the forge's event on the repository, delivered to
    /// this control plane's /hooks/github or /hooks/gitlab (see
    /// --forge-hooks-secret), starts the template's task, once per
    /// delivery, and its result is commented where the event happened.
    Add(Box<TriggerAddArgs>),
    /// The triggers, with what their last delivery did.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Remove a trigger; the tasks it started stay.
    Remove {
        name: String,
        #[arg(long, env = "TIDEWRIGHT_TENANT")]
        tenant: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct TriggerAddArgs {
    /// Unique in its tenant: lowercase letters, digits and '-'.
    pub name: String,
    /// github or gitlab.
    #[arg(long, default_value = "github")]
    pub forge: String,
    /// owner/name (GitLab: group/subgroup/name).
    #[arg(long)]
    pub repository: String,
    /// issueLabeled (an issue got --label), comment (a comment on a pull
    /// request starts with --command, from a user with write access) or
    /// checkFailed (a check suite or pipeline failed on --branch).
    #[arg(long)]
    pub event: String,
    /// The template whose task it starts [default: the event's own:
    /// fix-issue, pr-command or fix-ci].
    #[arg(long, default_value = "")]
    pub template: String,
    /// issueLabeled: the label [default: agent].
    #[arg(long, default_value = "")]
    pub label: String,
    /// comment: the command [default: /tidewright]; the rest of the comment
    /// is the prompt.
    #[arg(long, default_value = "")]
    pub command: String,
    /// checkFailed: the branch [default: the repository's default branch].
    #[arg(long, default_value = "")]
    pub branch: String,
    /// A template parameter it always fills in, as key=value (repeatable);
    /// it wins over the event's own.
    #[arg(short = 'p', long = "param")]
    pub params: Vec<String>,
    /// The secret in the control plane's --repo-secrets-dir holding the
    /// forge token it comments and checks permissions with [default:
    /// git-token].
    #[arg(long, default_value = "")]
    pub credentials_secret: String,
    /// The forge's API root [default: the public one].
    #[arg(long, default_value = "")]
    pub api_url: String,
    /// The tenant; the token's first by default.
    #[arg(long, env = "TIDEWRIGHT_TENANT")]
    pub tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SeedCommand {
    /// The seeds kept for every worker: repository, key, size, age, uses
    /// and how long their setup took; the most recently used first.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this repository's.
        #[arg(long)]
        repo: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Drop a seed from the store and from every worker; the next step
    /// that needs it runs its setup again.
    Delete {
        /// Its key (as `seed list` shows it), or the key's first 12 or more
        /// hex digits.
        key: String,
    },
    /// Drop a seed, then make it again now: a task on its repository's
    /// default branch whose one step runs the setup. The new seed's key is
    /// the old one's unless the key files changed on the branch since.
    Rebuild {
        /// Its key, or the key's first 12 or more hex digits.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint for a tenant's events. Each delivery is a JSON
    /// POST signed as Standard Webhooks says (the webhook-id,
    /// webhook-timestamp and webhook-signature headers, which a receiver
    /// verifies with a Standard Webhooks library), retried with back-off
    /// for up to a day until it is answered 2xx.
    Add {
        /// Where to POST: https://... (http:// and private addresses need
        /// the server's --webhook-allow-private-networks).
        url: String,
        /// The event types, comma-separated: task.succeeded, task.failed,
        /// task.cancelled, task.paused, step.failed, approval.requested,
        /// schedule.fired, schedule.skipped.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// A file holding the signing secret, a Standard Webhooks one
        /// (whsec_ and the base64 of a 24 to 64 byte key); it never goes on
        /// the command line. Where the file does not exist, a new secret is
        /// written there (readable by you only) for the receiver.
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
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
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

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Each tenant's weight and cap, and its steps running and waiting.
    Get {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Set a tenant's share of the fleet (admins only): its weight against
    /// other tenants' steps of equal priority, its cap on running steps,
    /// and its fairness key. What is left out is the default: weight 1, no
    /// cap, no key.
    Set {
        tenant: String,
        /// 1 to 1000: its turns against a tenant of weight 1's one.
        #[arg(long, allow_negative_numbers = true)]
        weight: Option<i64>,
        /// At most this many of its steps run at once; 0 runs none.
        #[arg(long, allow_negative_numbers = true)]
        max_running: Option<i64>,
        /// `repo` or `label:<name>`: shares its part equally among its
        /// tasks' repositories, or that label's values.
        #[arg(long, default_value = "")]
        fairness_key: String,
    },
}

#[derive(Debug, Args)]
pub struct CostArgs {
    /// Group by these, in order: day, tenant, repo, runtime, model,
    /// template (`repo,runtime`); none for one total.
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// From `30d` (the last 30 days, today one of them), `1d` to `400d`;
    /// this month when left out.
    #[arg(long, default_value = "")]
    pub since: String,
    #[arg(short, long, value_enum, default_value_t = CostFormat::Table)]
    pub output: CostFormat,
}

/// How `tidewright cost` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CostFormat {
    /// For people: a table, the dearest first, and the total.
    #[default]
    Table,
    /// For spreadsheets: a header line, then a line per row.
    Csv,
    /// For programs: the whole report.
    Json,
    Yaml,
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
    /// The scope: the task's id inside a step ($TIDEWRIGHT_TASK_ID), or any name
    /// the tenant's tasks share.
    #[arg(long, env = "TIDEWRIGHT_TASK_ID")]
    pub scope: Option<String>,
    /// The tenant; the token's first by default.
    #[arg(long, env = "TIDEWRIGHT_TENANT")]
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
    /// How many records at most (1 to 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The repository whose history is read (its URL or path, as git
    /// clones it).
    #[arg(long)]
    pub repo: String,
    /// The branch whose landed commits (its first parents) are read.
    #[arg(long = "ref", default_value = "main")]
    pub git_ref: String,
    /// How far back: 90d, 2w, 36h, or a date.
    #[arg(long, default_value = "90d")]
    pub since: String,
    /// The agent runtimes measured, comma-separated (claude-code, codex,
    /// gemini-cli, qwen-code).
    #[arg(long, value_delimiter = ',', required = true)]
    pub runtimes: Vec<String>,
    /// The attempt counts measured, comma-separated, each 1 to 10: with
    /// more than one, the first attempt to pass the tests wins.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub attempts: Vec<u32>,
    /// The most commits taken, newest first (1 to 200).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: u32,
    /// What runs the commit's tests, in the root of the agent's work.
    #[arg(long, default_value = "python3 -m unittest")]
    pub test_command: String,
    /// Where each commit's snapshot repository is made: a path the
    /// control plane's workers read.
    #[arg(long, default_value = ".tidewright/evals")]
    pub snapshots: std::path::PathBuf,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub task: String,
}
