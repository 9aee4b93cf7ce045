//! Step runtimes: how one attempt of a step actually runs. Each attempt gets
//! a fresh workspace (`context/inputs.json` in, `output/result.json` out),
//! reports its log lines and progress as it goes, and ends with a result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use orca_api::convert::{now_micros, timestamp};
use orca_api::v1;
use orca_api::view::format_utc;
use orca_core::{ClaudeCodeSpec, LogStream, Runtime, ShellSpec, StepSpec};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{self, Checkpoints};
use crate::claude::{self, LimitEvent, Line, RunResult};
use crate::limits::{self, Limit};
use crate::mcp;
use crate::metrics::{Fault, WorkerMetrics};
use crate::secrets::{self, Redactor};
use orca_core::AttemptKey;

/// A line longer than this is cut: one runaway line must not become one
/// huge message.
const MAX_LINE_BYTES: usize = 16 * 1024;
/// A larger `output/result.json` fails the step rather than bloat the store.
const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
/// After SIGTERM, how long a cancelled step has before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(500);
/// Once the main process has exited, how long stray output may still drain.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// A stdout line `::progress <fraction> [message]` reports progress instead
/// of being logged.
const PROGRESS_PREFIX: &str = "::progress ";

/// What a running attempt tells its worker.
#[derive(Debug)]
pub enum Report {
    Progress {
        attempt: AttemptKey,
        fraction: f32,
        message: String,
    },
    Log {
        attempt: AttemptKey,
        stream: LogStream,
        line: String,
    },
    /// The agent started (or resumed) its session.
    Session {
        attempt: AttemptKey,
        session_id: String,
        model: String,
    },
    /// What the attempt has cost so far (its running total), after each
    /// model response.
    Spend {
        attempt: AttemptKey,
        cost: v1::Cost,
    },
    Done(v1::StepResult),
}

/// Why a running attempt is told to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub reason: String,
    /// The step will run again, continuing this attempt's session (its
    /// budget paused it): keep the workspace for the resume.
    pub resumable: bool,
}

impl Stop {
    pub fn new(reason: impl Into<String>) -> Self {
        Stop {
            reason: reason.into(),
            resumable: false,
        }
    }
}

/// Everything one attempt needs.
pub struct Attempt {
    pub key: AttemptKey,
    pub step: StepSpec,
    pub inputs_json: String,
    pub task_name: String,
    /// The worker's root for workspaces.
    pub work_dir: PathBuf,
    /// Where the step's `secretEnv` values are read from.
    pub secrets_dir: Option<PathBuf>,
    /// Leave the workspace after the attempt, for debugging. Removed by
    /// default: it may hold what the step made of its secrets, and a
    /// long-lived worker's disk must not fill.
    pub keep_workspace: bool,
    /// How Claude Code steps run on this worker.
    pub claude: Arc<ClaudeSettings>,
    /// An earlier attempt's agent session this one may continue.
    pub resume: Option<ResumeFrom>,
    /// How the step reaches the control plane for shared state; `None`
    /// when the control plane gave it no token.
    pub access: Option<StepAccess>,
    /// The W3C `traceparent` of this attempt's span, given to the process as
    /// `TRACEPARENT` so what it traces joins the task's trace.
    pub traceparent: Option<String>,
    /// The worker's metrics, which count this attempt.
    pub metrics: Arc<WorkerMetrics>,
    /// Where an agent's session is kept when the attempt ends short of
    /// success, and found when it resumes; `None` keeps sessions on this
    /// worker only.
    pub checkpoints: Option<Checkpoints>,
}

/// What a step needs to call the control plane as itself: the worker's
/// address and CA, and the attempt's own token (never the worker's).
#[derive(Debug, Clone, PartialEq)]
pub struct StepAccess {
    pub server: String,
    pub ca_file: Option<PathBuf>,
    pub token: String,
    /// The `orca` executable, for `orca state` in scripts and the agents'
    /// MCP server; its directory joins the end of the step's `PATH`.
    pub orca_bin: Option<PathBuf>,
}

/// An earlier attempt's agent session, as the control plane remembers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeFrom {
    /// The attempt that started it: its workspace holds the session.
    pub attempt: u32,
    pub session_id: String,
    /// What the session cost before this attempt.
    pub session_usd: f64,
    /// The newest attempt that ran in it.
    pub last_attempt: u32,
}

/// How long a failed Claude Code attempt's workspace waits for a retry to
/// resume it before it is removed.
pub const RETAIN_FOR: Duration = Duration::from_secs(3600);
/// Beside a workspace kept for a resume: `attempt-N.retained`.
const RETAINED_SUFFIX: &str = ".retained";

/// The worker's settings for the `claude-code` runtime.
#[derive(Debug, Clone, Default)]
pub struct ClaudeSettings {
    /// The `claude` executable.
    pub bin: PathBuf,
    /// The model when a step names none; the CLI's default when unset.
    pub model: Option<String>,
    pub api_key: Option<String>,
    /// A Claude subscription's token (`claude setup-token`), handed to the
    /// CLI as `CLAUDE_CODE_OAUTH_TOKEN`: its usage windows are reported as
    /// `rate_limit_event` lines with their reset.
    pub oauth_token: Option<String>,
    /// `ANTHROPIC_BASE_URL`, for a gateway (or a test's mock).
    pub base_url: Option<String>,
    /// The CLI's `HOME` (it writes `~/.claude.json` and session
    /// transcripts there): one per worker, kept between attempts.
    pub home: PathBuf,
}

/// What a resumed session is told.
const RESUME_PROMPT: &str = "Your previous run on this task stopped before it finished. \
Continue from where you left off and complete the original request.";

/// Turns a Claude Code step may take when it sets no `maxTurns`: an agent
/// that loops must end, and cost, at some point.
pub const DEFAULT_MAX_TURNS: u32 = 100;

impl Attempt {
    fn workspace(&self) -> PathBuf {
        self.workspace_of(self.key.attempt)
    }

    /// The workspace attempt `n` of this step had on this worker.
    pub(crate) fn workspace_of(&self, n: u32) -> PathBuf {
        self.work_dir
            .join(&self.key.task_id)
            .join(&self.key.step_id)
            .join(format!("attempt-{n}"))
    }

    /// Masks `secrets` and the attempt's own token in what the step says.
    fn redactor<'a>(&'a self, secrets: impl Iterator<Item = &'a String>) -> Arc<Redactor> {
        Arc::new(Redactor::new(
            secrets.chain(self.access.iter().map(|a| &a.token)),
        ))
    }

    /// Whether the step may run again after this attempt fails.
    fn has_attempts_left(&self) -> bool {
        self.step
            .retry
            .as_ref()
            .is_some_and(|r| r.max_attempts > self.key.attempt)
    }
}

/// Runs the attempt to its end and reports the result. A message on
/// `cancel` stops it.
pub async fn run(
    attempt: Attempt,
    reports: mpsc::UnboundedSender<Report>,
    cancel: oneshot::Receiver<Stop>,
) {
    let started_at = now_micros();
    let runtime = runtime_name(attempt.step.runtime());
    let running = attempt.metrics.started(runtime);
    let ended = match attempt.step.runtime() {
        Some(Runtime::Shell(shell)) => run_shell(&attempt, shell, &reports, cancel).await,
        Some(Runtime::Noop) => Ended::succeeded(String::new(), None),
        Some(Runtime::ClaudeCode(claude)) => run_claude(&attempt, claude, &reports, cancel).await,
        None => Ended::fault(
            Fault::UnknownRuntime,
            "the step sets no runtime this worker knows",
        ),
    };
    drop(running);
    attempt
        .metrics
        .finished(runtime, outcome_name(ended.outcome), ended.fault);
    let rate_limit = rate_limit(&attempt, &ended);
    let result = v1::StepResult {
        attempt: Some(v1::AttemptRef::from(&attempt.key)),
        outcome: ended.outcome as i32,
        output_json: ended.output_json,
        error: ended.error,
        exit_code: ended.exit_code,
        started_at: Some(timestamp(started_at)),
        finished_at: Some(timestamp(now_micros())),
        cost: ended.cost,
        stalled: ended.fault == Some(Fault::Stalled),
        rate_limit,
    };
    let _ = reports.send(Report::Done(result));
}

/// The provider's limit, when that is what stopped an agent's run.
fn rate_limit(attempt: &Attempt, ended: &Ended) -> Option<v1::RateLimit> {
    let agent = matches!(attempt.step.runtime(), Some(Runtime::ClaudeCode(_)));
    if !agent || ended.outcome != v1::Outcome::Failed || ended.fault.is_some() {
        return None;
    }
    let limit = ended.limited.as_ref()?;
    Some(v1::RateLimit {
        reset_at: limit.reset.map(timestamp),
        signal: limit.signal.clone(),
    })
}

/// The `runtime` label of the worker's metrics.
fn runtime_name(runtime: Option<Runtime<'_>>) -> &'static str {
    match runtime {
        Some(Runtime::Shell(_)) => "shell",
        Some(Runtime::ClaudeCode(_)) => "claude_code",
        Some(Runtime::Noop) => "noop",
        None => "unknown",
    }
}

fn outcome_name(outcome: v1::Outcome) -> &'static str {
    match outcome {
        v1::Outcome::Succeeded => "succeeded",
        v1::Outcome::Failed => "failed",
        v1::Outcome::Cancelled => "cancelled",
        v1::Outcome::Unspecified => "unspecified",
    }
}

struct Ended {
    outcome: v1::Outcome,
    output_json: String,
    error: String,
    exit_code: Option<i32>,
    cost: Option<v1::Cost>,
    /// Set when the runtime failed, not the step.
    fault: Option<Fault>,
    /// Stopped to run again later in the same session: its workspace stays.
    resumable: bool,
    /// The provider's limit stopped the agent, as its CLI reported.
    limited: Option<Limit>,
}

impl Ended {
    fn succeeded(output_json: String, exit_code: Option<i32>) -> Self {
        Ended {
            outcome: v1::Outcome::Succeeded,
            output_json,
            error: String::new(),
            exit_code,
            cost: None,
            fault: None,
            resumable: false,
            limited: None,
        }
    }

    fn failed(error: impl Into<String>, exit_code: Option<i32>) -> Self {
        Ended {
            outcome: v1::Outcome::Failed,
            output_json: String::new(),
            error: error.into(),
            exit_code,
            cost: None,
            fault: None,
            resumable: false,
            limited: None,
        }
    }

    /// The runtime could not do its part; the step never ran to an end.
    fn fault(fault: Fault, error: impl Into<String>) -> Self {
        Ended {
            fault: Some(fault),
            ..Ended::failed(error, None)
        }
    }
}

/// The child's environment is built, not inherited: the basics a program
/// expects, the step's own variables, its secrets, and orca's. Nothing of the
/// worker's own (its token, its cloud credentials) leaks in.
fn environment(
    attempt: &Attempt,
    shell: &ShellSpec,
    secrets: &BTreeMap<String, String>,
    workspace: &Path,
) -> BTreeMap<String, String> {
    let mut env = basic_environment(attempt, workspace);
    env.extend(shell.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// What any step's process gets: the basics a program expects from the
/// worker's own environment, and orca's variables.
fn basic_environment(attempt: &Attempt, workspace: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.to_string(), value);
        }
    }
    if let Some(access) = &attempt.access {
        env.insert("ORCA_SERVER".into(), access.server.clone());
        env.insert("ORCA_TOKEN".into(), access.token.clone());
        if let Some(ca_file) = &access.ca_file {
            env.insert("ORCA_CA_FILE".into(), ca_file.display().to_string());
        }
        // Last, so a step's own `orca` on its PATH wins.
        if let Some(dir) = access.orca_bin.as_deref().and_then(Path::parent) {
            let path = env.entry("PATH".into()).or_default();
            if !path.is_empty() {
                path.push(':');
            }
            path.push_str(&dir.display().to_string());
        }
    }
    if let Some(traceparent) = &attempt.traceparent {
        env.insert("TRACEPARENT".into(), traceparent.clone());
        // Where to send it: a process with tracing of its own (the Claude
        // Code CLI with its telemetry on) exports where the worker does.
        // It is its own service, though: not the worker's name.
        for (name, value) in std::env::vars() {
            match name.as_str() {
                orca_telemetry::SERVICE_NAME_VARIABLE => {}
                orca_telemetry::RESOURCE_ATTRIBUTES_VARIABLE => {
                    if let Some(kept) = orca_telemetry::attributes_without_service_name(&value) {
                        env.insert(name, kept);
                    }
                }
                _ if name.starts_with("OTEL_") => {
                    env.insert(name, value);
                }
                _ => {}
            }
        }
    }
    let path = |p: &str| workspace.join(p).display().to_string();
    env.insert("ORCA_TASK_ID".into(), attempt.key.task_id.clone());
    env.insert("ORCA_TASK_NAME".into(), attempt.task_name.clone());
    env.insert("ORCA_STEP_ID".into(), attempt.key.step_id.clone());
    env.insert("ORCA_ATTEMPT".into(), attempt.key.attempt.to_string());
    env.insert("ORCA_WORKSPACE".into(), workspace.display().to_string());
    env.insert("ORCA_INPUTS".into(), path("context/inputs.json"));
    env.insert("ORCA_OUTPUT".into(), path("output/result.json"));
    env
}

async fn prepare_workspace(attempt: &Attempt) -> std::io::Result<PathBuf> {
    let workspace = attempt.workspace();
    // A fresh directory per attempt: a retry never sees a previous attempt's
    // half-written files.
    if tokio::fs::try_exists(&workspace).await? {
        tokio::fs::remove_dir_all(&workspace).await?;
    }
    ready_workspace(&workspace, attempt).await?;
    Ok(workspace)
}

/// Gives a workspace, fresh or resumed, its `context/` and `output/` and
/// this attempt's inputs; whatever else it holds stays.
async fn ready_workspace(workspace: &Path, attempt: &Attempt) -> std::io::Result<()> {
    tokio::fs::create_dir_all(workspace.join("context")).await?;
    tokio::fs::create_dir_all(workspace.join("output")).await?;
    tokio::fs::write(workspace.join("context/inputs.json"), &attempt.inputs_json).await
}

/// Resolves the step's secrets, runs it, and masks the secrets in its
/// error and output as its lines were masked on the way.
async fn run_shell(
    attempt: &Attempt,
    shell: &ShellSpec,
    reports: &mpsc::UnboundedSender<Report>,
    cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let secrets = match secrets::resolve(&shell.secret_env, attempt.secrets_dir.as_deref()) {
        Ok(secrets) => secrets,
        Err(message) => return Ended::fault(Fault::Secrets, message),
    };
    let redactor = attempt.redactor(secrets.values());
    let mut ended = run_process(attempt, shell, &secrets, &redactor, reports, cancel).await;
    ended.error = redactor.redact(ended.error);
    ended.output_json = redactor.redact(ended.output_json);
    remove_unless_kept(attempt).await;
    ended
}

/// Runs the Claude Code CLI headless on the step's prompt, or continues an
/// earlier attempt's session when its workspace is on this worker. The
/// outcome is the stream's `result` line, not the exit code: API errors
/// exit like successes, and a run killed before its result is a failure.
async fn run_claude(
    attempt: &Attempt,
    spec: &ClaudeCodeSpec,
    reports: &mpsc::UnboundedSender<Report>,
    cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let settings = &attempt.claude;
    let redactor = attempt.redactor(settings.api_key.iter().chain(&settings.oauth_token));
    if let Err(e) = tokio::fs::create_dir_all(&settings.home).await {
        return Ended::fault(
            Fault::Workspace,
            format!("creating the CLI's home {}: {e}", settings.home.display()),
        );
    }
    if !attempt.keep_workspace {
        sweep_retained(&attempt.work_dir, RETAIN_FOR).await;
    }
    let log = |line: String| {
        let _ = reports.send(Report::Log {
            attempt: attempt.key.clone(),
            stream: LogStream::Stdout,
            line,
        });
    };
    let resumed = match &attempt.resume {
        Some(resume) => {
            let (found, line) = checkpoint::place_session(attempt, resume).await;
            log(line);
            found.map(|workspace| (workspace, resume))
        }
        None => None,
    };
    let prepared = match &resumed {
        // Everything the agent made there stays.
        Some((workspace, _)) => ready_workspace(workspace, attempt)
            .await
            .map(|()| workspace.clone()),
        None => prepare_workspace(attempt).await,
    };
    let workspace = match prepared {
        Ok(w) => w,
        Err(e) => return Ended::fault(Fault::Workspace, format!("preparing the workspace: {e}")),
    };
    let max_turns = spec.max_turns.unwrap_or(DEFAULT_MAX_TURNS);
    let mut command = Command::new(&settings.bin);
    command.args(claude_args(
        spec,
        settings,
        max_turns,
        has_inputs(&attempt.inputs_json),
        resumed.as_ref().map(|(_, r)| r.session_id.as_str()),
        attempt.access.as_ref().and_then(|a| a.orca_bin.as_deref()),
    ));
    let env = claude_environment(attempt, settings, &workspace);
    let run = Arc::new(Mutex::new(ClaudeRun::new(max_turns)));
    let end = supervise(
        attempt,
        command,
        env,
        &workspace,
        StdoutLines::Claude(run.clone()),
        &redactor,
        reports,
        cancel,
    )
    .await;
    let run = std::mem::take(&mut *run.lock().unwrap_or_else(|e| e.into_inner()));
    let mut ended = match end {
        Ok(status) => {
            // A resumed session's reported cost includes what its earlier
            // attempts spent.
            let before = resumed.as_ref().map_or(0.0, |(_, r)| r.session_usd);
            claude_ended(status, &run, max_turns, before, &redactor)
        }
        Err(ended) => ended,
    };
    if ended.outcome == v1::Outcome::Failed && ended.fault.is_none() {
        ended.limited =
            limits::classify(run.limit_event.as_ref(), run.result.as_ref(), &ended.error);
        if let Some(line) = api_error_line(run.result.as_ref(), ended.limited.as_ref()) {
            log(line);
        }
    }
    // Ended before its result (cancelled, timed out, stalled, killed): what
    // its responses cost so far is all that is known.
    let spent = run.spent();
    if ended.cost.is_none() && spent != v1::Cost::default() {
        ended.cost = Some(spent);
    }
    // Short of success, the session is kept for a retry on any worker
    // (before the result: the retry may start as soon as it is in).
    if ended.outcome != v1::Outcome::Succeeded
        && let Some(line) =
            checkpoint::keep_session(attempt, &workspace, &run.session_id, &redactor).await
    {
        log(line);
    }
    finish_workspace(attempt, &workspace, &ended).await;
    ended
}

/// What the worker says of a run that ended on an API error: the status,
/// and what orca does with it. `None` when the run reported no status.
fn api_error_line(result: Option<&RunResult>, limit: Option<&Limit>) -> Option<String> {
    if let Some(limit) = limit {
        return Some(format!(
            "the provider's limit stopped the agent ({}): the pool pauses, and this attempt does not count",
            limit.signal
        ));
    }
    let result = result?;
    let status = result.api_error_status?;
    let kind = if result.api_error_type.is_empty() {
        String::new()
    } else {
        format!(" ({})", result.api_error_type)
    };
    Some(if status >= 500 {
        format!(
            "the API failed on its side (api_error_status {status}{kind}): the attempt fails, and the step's retry policy runs it again"
        )
    } else {
        format!("the API refused the request (api_error_status {status}{kind}): the attempt fails")
    })
}

/// How a CLI run that exited ended: its result line decides.
fn claude_ended(
    status: ExitStatus,
    run: &ClaudeRun,
    max_turns: u32,
    session_usd_before: f64,
    redactor: &Redactor,
) -> Ended {
    let Some(result) = &run.result else {
        return Ended {
            exit_code: status.code(),
            ..Ended::fault(
                Fault::NoResult,
                format!(
                    "the claude CLI ended without a result ({})",
                    describe_exit(status)
                ),
            )
        };
    };
    let cost = v1::Cost {
        usd: (result.total_cost_usd - session_usd_before).max(0.0),
        input_tokens: result.usage.input_tokens,
        output_tokens: result.usage.output_tokens,
        cache_read_tokens: result.usage.cache_read_input_tokens,
        cache_creation_tokens: result.usage.cache_creation_input_tokens,
    };
    let mut ended = match result.failure(Some(max_turns)) {
        Some(error) => Ended::failed(redactor.redact(error), status.code()),
        None => Ended::succeeded(
            redactor.redact(claude_output(result, run, &cost).to_string()),
            status.code(),
        ),
    };
    ended.cost = Some(cost);
    ended
}

/// After a Claude Code attempt: a failure that will be retried keeps its
/// workspace (and so its session) for the retry to resume, for a while,
/// as do workspaces kept for debugging; the marker beside it names this
/// attempt as the newest that ran there. Anything else removes it.
async fn finish_workspace(attempt: &Attempt, workspace: &Path, ended: &Ended) {
    let retry_may_come = ended.outcome == v1::Outcome::Failed && attempt.has_attempts_left();
    if attempt.keep_workspace || ended.resumable || retry_may_come {
        let _ = tokio::fs::write(retained_marker(workspace), attempt.key.attempt.to_string()).await;
    } else {
        remove_workspace(workspace.to_path_buf()).await;
    }
}

/// Beside a workspace kept for a resume; it holds the newest attempt that
/// ran there.
pub(crate) fn retained_marker(workspace: &Path) -> PathBuf {
    let mut name = workspace.file_name().unwrap_or_default().to_os_string();
    name.push(RETAINED_SUFFIX);
    workspace.with_file_name(name)
}

/// Removes workspaces kept for a resume that no retry came for within
/// `older_than` (the retry ran elsewhere, or never).
async fn sweep_retained(work_dir: &Path, older_than: Duration) {
    let work_dir = work_dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        let children = |dir: &Path| {
            std::fs::read_dir(dir)
                .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        for task in children(&work_dir).iter().filter(|p| p.is_dir()) {
            for step in children(task).iter().filter(|p| p.is_dir()) {
                for marker in children(step) {
                    let expired = marker
                        .to_str()
                        .is_some_and(|name| name.ends_with(RETAINED_SUFFIX))
                        && std::fs::metadata(&marker)
                            .and_then(|m| m.modified())
                            .is_ok_and(|at| at.elapsed().unwrap_or_default() >= older_than);
                    if expired {
                        let workspace = marker.with_extension("");
                        let _ = std::fs::remove_file(&marker);
                        let _ = std::fs::remove_dir_all(&workspace);
                        let _ = std::fs::remove_dir(step);
                        let _ = std::fs::remove_dir(task);
                    }
                }
            }
        }
    })
    .await;
}

async fn remove_unless_kept(attempt: &Attempt) {
    if !attempt.keep_workspace {
        remove_workspace(attempt.workspace()).await;
    }
}

fn has_inputs(inputs_json: &str) -> bool {
    !matches!(inputs_json.trim(), "" | "{}" | "null")
}

/// The CLI's argv. The prompt follows `-p` directly: a list flag such as
/// `--allowedTools A B` would swallow a positional prompt after it, so list
/// values are given as one `--flag=a,b` argument. With `orca_bin`, the
/// agent gets orca's shared-state tools (`orca mcp`) and only those MCP
/// servers, and may call them.
fn claude_args(
    spec: &ClaudeCodeSpec,
    settings: &ClaudeSettings,
    max_turns: u32,
    with_inputs: bool,
    resume: Option<&str>,
    orca_bin: Option<&Path>,
) -> Vec<String> {
    let mut prompt = match resume {
        // The session holds the original prompt and everything done since.
        Some(_) => RESUME_PROMPT.to_string(),
        None => spec.prompt.clone(),
    };
    if with_inputs && resume.is_none() {
        prompt.push_str(
            "\n\nThe outputs of the steps this one depends on are in context/inputs.json.",
        );
    }
    let mut args = vec![
        "-p".to_string(),
        prompt,
        "--output-format".into(),
        "stream-json".into(),
        // stream-json requires it.
        "--verbose".into(),
        // Each model response's usage as it ends, so cost streams in per
        // turn (budgets stop a run mid-way, not after it).
        "--include-partial-messages".into(),
        "--max-turns".into(),
        max_turns.to_string(),
    ];
    if let Some(session) = resume {
        args.extend(["--resume".into(), session.to_string()]);
    }
    if let Some(model) = spec.model.as_ref().or(settings.model.as_ref()) {
        args.extend(["--model".into(), model.clone()]);
    }
    let mut allowed = spec.allowed_tools.clone();
    if let Some(orca_bin) = orca_bin {
        args.push(format!("--mcp-config={}", mcp::agent_config(orca_bin)));
        args.push("--strict-mcp-config".into());
        allowed.push(format!("mcp__{}", mcp::SERVER_NAME));
    }
    if !allowed.is_empty() {
        args.push(format!("--allowedTools={}", allowed.join(",")));
    }
    if let Some(mode) = &spec.permission_mode {
        args.extend(["--permission-mode".into(), mode.as_str().to_string()]);
    }
    args
}

/// The CLI's environment, built: the basics, its own home, the API key and
/// base URL, and no traffic beyond the API calls.
fn claude_environment(
    attempt: &Attempt,
    settings: &ClaudeSettings,
    workspace: &Path,
) -> BTreeMap<String, String> {
    let mut env = basic_environment(attempt, workspace);
    env.insert("HOME".into(), settings.home.display().to_string());
    env.insert(
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
        "1".into(),
    );
    env.insert("DISABLE_AUTOUPDATER".into(), "1".into());
    if let Some(key) = &settings.api_key {
        env.insert("ANTHROPIC_API_KEY".into(), key.clone());
    }
    if let Some(token) = &settings.oauth_token {
        env.insert("CLAUDE_CODE_OAUTH_TOKEN".into(), token.clone());
    }
    if let Some(url) = &settings.base_url {
        env.insert("ANTHROPIC_BASE_URL".into(), url.clone());
    }
    env
}

/// The step's output: the run's result, its session and model (from the
/// init line), what this attempt cost, and the session's cost per model (a
/// resumed session's includes its earlier attempts, as the CLI counts it).
fn claude_output(result: &RunResult, run: &ClaudeRun, cost: &v1::Cost) -> serde_json::Value {
    let mut output = result.output();
    output["model"] = serde_json::json!(run.model);
    if result.session_id.is_empty() {
        output["sessionId"] = serde_json::json!(run.session_id);
    }
    let by_model: serde_json::Map<String, serde_json::Value> = result
        .model_usage
        .iter()
        .map(|(name, usage)| {
            (
                name.clone(),
                serde_json::json!({
                    "usd": usage.cost_usd,
                    "inputTokens": usage.input_tokens,
                    "outputTokens": usage.output_tokens,
                    "cacheReadTokens": usage.cache_read_input_tokens,
                    "cacheCreationTokens": usage.cache_creation_input_tokens,
                }),
            )
        })
        .collect();
    output["cost"] = serde_json::json!({
        "usd": cost.usd,
        "inputTokens": cost.input_tokens,
        "outputTokens": cost.output_tokens,
        "cacheReadTokens": cost.cache_read_tokens,
        "cacheCreationTokens": cost.cache_creation_tokens,
        "sessionByModel": by_model,
    });
    output
}

/// What has been read of one CLI run so far.
#[derive(Debug, Default)]
struct ClaudeRun {
    max_turns: u32,
    session_id: String,
    model: String,
    /// Assistant messages seen: one per turn.
    turns: u32,
    last_message: String,
    result: Option<RunResult>,
    /// What the model responses before the current one cost, priced here.
    settled: v1::Cost,
    /// The current response's usage so far, and its model.
    turn: claude::Usage,
    turn_model: String,
    /// A `rate_limit_event` said the limit was hit.
    limit_event: Option<LimitEvent>,
}

impl ClaudeRun {
    fn new(max_turns: u32) -> Self {
        ClaudeRun {
            max_turns,
            ..ClaudeRun::default()
        }
    }

    /// What the attempt's model responses have cost so far, priced from
    /// their usage (see [`claude::Prices`]).
    fn spent(&self) -> v1::Cost {
        let turn = &self.turn;
        v1::Cost {
            usd: self.settled.usd + claude::Prices::of(&self.turn_model).cost(turn),
            input_tokens: self.settled.input_tokens + turn.input_tokens,
            output_tokens: self.settled.output_tokens + turn.output_tokens,
            cache_read_tokens: self.settled.cache_read_tokens + turn.cache_read_input_tokens,
            cache_creation_tokens: self.settled.cache_creation_tokens
                + turn.cache_creation_input_tokens,
        }
    }

    /// The reports one stdout line makes: log lines for what the agent says
    /// and does, progress at each new turn, the cost so far after each
    /// model response.
    fn read(&mut self, raw: &str, attempt: &AttemptKey, redactor: &Redactor) -> Vec<Report> {
        let log = |line: String| {
            let mut line = redactor.redact(line);
            orca_core::truncate_at_char_boundary(&mut line, MAX_LINE_BYTES);
            Report::Log {
                attempt: attempt.clone(),
                stream: LogStream::Stdout,
                line,
            }
        };
        match claude::parse_line(raw) {
            Ok(Line::Init { session_id, model }) => {
                let line = format!("claude session {session_id} (model {model})");
                self.session_id.clone_from(&session_id);
                self.model.clone_from(&model);
                vec![
                    log(line),
                    Report::Session {
                        attempt: attempt.clone(),
                        session_id,
                        model,
                    },
                ]
            }
            Ok(Line::Assistant {
                message_id,
                log: text,
            }) => {
                let mut reports = Vec::new();
                if message_id != self.last_message {
                    self.last_message = message_id;
                    self.turns += 1;
                    let first = text.lines().next().unwrap_or_default();
                    let mut message = format!("turn {} of {}: {first}", self.turns, self.max_turns);
                    orca_core::truncate_at_char_boundary(&mut message, 200);
                    reports.push(Report::Progress {
                        attempt: attempt.clone(),
                        fraction: (self.turns as f32 / self.max_turns.max(1) as f32).min(1.0),
                        message: redactor.redact(message),
                    });
                }
                reports.extend(text.lines().map(|line| log(line.to_string())));
                reports
            }
            Ok(Line::ApiRetry(message)) => vec![log(message)],
            Ok(Line::TurnStarted { model, usage }) => {
                self.settled = self.spent();
                self.turn = usage;
                self.turn_model = model;
                Vec::new()
            }
            Ok(Line::RateLimited(event)) => {
                let until = event
                    .resets_at
                    .map(|at| format!(" until {}", format_utc(at)))
                    .unwrap_or_default();
                self.limit_event = Some(event);
                vec![log(format!(
                    "the provider's usage limit was reached{until}"
                ))]
            }
            Ok(Line::TurnUsage(usage)) => {
                self.turn = self.turn.max(&usage);
                vec![Report::Spend {
                    attempt: attempt.clone(),
                    cost: self.spent(),
                }]
            }
            Ok(Line::Result(result)) => {
                self.result = Some(*result);
                Vec::new()
            }
            Ok(Line::Other) => Vec::new(),
            // The CLI's own warnings can land on stdout: keep them as logs.
            Err(_) => vec![log(raw.trim_end().to_string())],
        }
    }
}

/// Removes an attempt's workspace, then its step's and task's directories
/// once empty (removing one that still holds another attempt fails, as it
/// should). One blocking call, off the async threads.
pub(crate) async fn remove_workspace(workspace: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&workspace);
        for parent in workspace.ancestors().skip(1).take(2) {
            let _ = std::fs::remove_dir(parent);
        }
    })
    .await;
}

async fn run_process(
    attempt: &Attempt,
    shell: &ShellSpec,
    secrets: &BTreeMap<String, String>,
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<Report>,
    cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let workspace = match prepare_workspace(attempt).await {
        Ok(w) => w,
        Err(e) => return Ended::fault(Fault::Workspace, format!("preparing the workspace: {e}")),
    };
    let Some((program, args)) = shell.command.split_first() else {
        return Ended::failed("the command is empty", None);
    };
    let mut command = Command::new(program);
    command.args(args);
    let env = environment(attempt, shell, secrets, &workspace);
    let end = supervise(
        attempt,
        command,
        env,
        &workspace,
        StdoutLines::Plain,
        redactor,
        reports,
        cancel,
    )
    .await;
    let status = match end {
        Ok(status) => status,
        Err(ended) => return ended,
    };
    if !status.success() {
        return Ended::failed(describe_exit(status), status.code());
    }
    match read_output(&workspace).await {
        Ok(output) => Ended::succeeded(output, status.code()),
        Err(message) => Ended::failed(message, status.code()),
    }
}

/// When an attempt last showed a sign of life: any line on its stdout or
/// stderr, which for an agent is every stream-json event (a message, a
/// tool call, a tool's result). Shared by the readers, which touch it, and
/// the supervisor, which declares the attempt stalled after its step's
/// stall timeout of silence.
#[derive(Clone)]
struct Activity {
    started: tokio::time::Instant,
    /// Milliseconds after `started`.
    last: Arc<std::sync::atomic::AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: tokio::time::Instant::now(),
            last: Arc::default(),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Resolves once the attempt has been silent for `limit`; never
    /// without one.
    async fn silent(&self, limit: Option<Duration>) {
        let Some(limit) = limit else {
            return std::future::pending().await;
        };
        loop {
            let silent = self.silent_for();
            if silent >= limit {
                return;
            }
            tokio::time::sleep(limit - silent).await;
        }
    }
}

/// What a process's stdout lines are.
#[derive(Clone)]
enum StdoutLines {
    /// Log lines, and `::progress` lines.
    Plain,
    /// The Claude Code CLI's stream-json events.
    Claude(Arc<Mutex<ClaudeRun>>),
}

/// Runs `command` in `workspace` with exactly `env` (nothing of the
/// worker's own environment: its token, its credentials), streams its
/// output as reports, and stops its whole process group on cancel or
/// timeout. `Ok` with the exit status when the process ended on its own,
/// for the runtime to read its way; `Err` with the outcome otherwise
/// (could not start, cancelled, timed out).
#[allow(clippy::too_many_arguments)]
async fn supervise(
    attempt: &Attempt,
    mut command: Command,
    env: BTreeMap<String, String>,
    workspace: &Path,
    lines: StdoutLines,
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<Report>,
    cancel: oneshot::Receiver<Stop>,
) -> Result<ExitStatus, Ended> {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    command
        .env_clear()
        .envs(env)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a kill reaches children and grandchildren.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Err(Ended::fault(
                Fault::Start,
                format!("could not start {program:?}: {e}"),
            ));
        }
    };
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let activity = Activity::new();
    let stdout = child.stdout.take().map(|out| {
        tokio::spawn(forward_lines(
            out,
            LogStream::Stdout,
            lines.clone(),
            attempt.key.clone(),
            (redactor.clone(), activity.clone()),
            reports.clone(),
        ))
    });
    let stderr = child.stderr.take().map(|err| {
        tokio::spawn(forward_lines(
            err,
            LogStream::Stderr,
            StdoutLines::Plain,
            attempt.key.clone(),
            (redactor.clone(), activity.clone()),
            reports.clone(),
        ))
    });

    let mut cancelled = None;
    let mut timed_out = None;
    let mut stalled = None;
    let stall_limit = attempt.step.stall_timeout();
    let deadline = async {
        match attempt.step.timeout_seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await,
            None => std::future::pending().await,
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        stop = cancel => {
            cancelled = Some(stop.unwrap_or_else(|_| Stop::new("the worker is stopping")));
            stop_group(group, &mut child).await
        }
        _ = deadline => {
            timed_out = attempt.step.timeout_seconds;
            stop_group(group, &mut child).await
        }
        _ = activity.silent(stall_limit.map(|s| Duration::from_secs(u64::from(s)))) => {
            stalled = stall_limit;
            stop_group(group, &mut child).await
        }
    };
    // Whatever the step left running in its group ends with it.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    for reader in [stdout, stderr].into_iter().flatten() {
        let _ = tokio::time::timeout(DRAIN_GRACE, reader).await;
    }

    let code = status.as_ref().ok().and_then(|s| s.code());
    if let Some(stop) = cancelled {
        return Err(Ended {
            outcome: v1::Outcome::Cancelled,
            output_json: String::new(),
            error: stop.reason,
            exit_code: code,
            cost: None,
            fault: None,
            resumable: stop.resumable,
            limited: None,
        });
    }
    if let Some(seconds) = timed_out {
        return Err(Ended {
            exit_code: code,
            ..Ended::fault(Fault::Timeout, format!("timed out after {seconds}s"))
        });
    }
    if let Some(seconds) = stalled {
        return Err(Ended {
            exit_code: code,
            ..Ended::fault(
                Fault::Stalled,
                format!("stalled: no output, progress, log or tool event for {seconds}s"),
            )
        });
    }
    status.map_err(|e| Ended::fault(Fault::Wait, format!("waiting for the process: {e}")))
}

/// SIGTERM to the whole group, then SIGKILL after a short grace.
async fn stop_group(
    group: Option<Pid>,
    child: &mut tokio::process::Child,
) -> std::io::Result<ExitStatus> {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
    }
    match tokio::time::timeout(TERM_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            child.wait().await
        }
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended without an exit code".into(),
    }
}

/// The step's output: `output/result.json` when present, which must be JSON.
/// It is read only if it is a regular file, never through a symlink.
async fn read_output(workspace: &Path) -> Result<String, String> {
    let path = workspace.join("output/result.json");
    let meta = match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("output/result.json: {e}")),
    };
    if !meta.is_file() {
        return Err("output/result.json is not a regular file".into());
    }
    if meta.len() > MAX_OUTPUT_BYTES {
        return Err(format!(
            "output/result.json is {} bytes; the limit is {MAX_OUTPUT_BYTES}",
            meta.len()
        ));
    }
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| format!("output/result.json: {e}"))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("output/result.json is not valid JSON: {e}"))?;
    Ok(text.trim().to_string())
}

async fn forward_lines(
    pipe: impl AsyncRead + Unpin,
    stream: LogStream,
    lines: StdoutLines,
    attempt: AttemptKey,
    (redactor, activity): (Arc<Redactor>, Activity),
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => activity.touch(),
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        if let StdoutLines::Claude(run) = &lines {
            // The whole event is read before anything of it is cut.
            let raw = String::from_utf8_lossy(&buf);
            let reports_of_line = run
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .read(&raw, &attempt, &redactor);
            for report in reports_of_line {
                if reports.send(report).is_err() {
                    return;
                }
            }
            continue;
        }
        // Masked before it is cut, so a cut never leaves part of a secret.
        let mut line = redactor.redact(String::from_utf8_lossy(&buf).into_owned());
        orca_core::truncate_at_char_boundary(&mut line, MAX_LINE_BYTES);
        let report = match (stream, line.strip_prefix(PROGRESS_PREFIX)) {
            (LogStream::Stdout, Some(rest)) => match parse_progress(rest) {
                Some((fraction, message)) => Report::Progress {
                    attempt: attempt.clone(),
                    fraction,
                    message,
                },
                None => Report::Log {
                    attempt: attempt.clone(),
                    stream,
                    line,
                },
            },
            _ => Report::Log {
                attempt: attempt.clone(),
                stream,
                line,
            },
        };
        if reports.send(report).is_err() {
            return;
        }
    }
}

/// `0.25 splitting input` -> (0.25, "splitting input").
fn parse_progress(rest: &str) -> Option<(f32, String)> {
    let (number, message) = rest.split_once(' ').unwrap_or((rest, ""));
    let fraction: f32 = number.parse().ok()?;
    fraction
        .is_finite()
        .then(|| (fraction.clamp(0.0, 1.0), message.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_secret_across_the_line_cut_is_masked_not_halved() {
        let secret = "sk-live-0123456789".to_string();
        let redactor = Arc::new(Redactor::new([&secret]));
        let line = format!("{}{secret}\n", "a".repeat(MAX_LINE_BYTES - 5));
        let (reports, mut received) = mpsc::unbounded_channel();
        let key = AttemptKey {
            task_id: "t".into(),
            step_id: "s".into(),
            attempt: 1,
        };
        forward_lines(
            line.as_bytes(),
            LogStream::Stdout,
            StdoutLines::Plain,
            key,
            (redactor, Activity::new()),
            reports,
        )
        .await;
        match received.recv().await {
            Some(Report::Log { line, .. }) => {
                assert!(line.len() <= MAX_LINE_BYTES);
                assert!(!line.contains("sk-"), "part of the secret survived the cut");
            }
            other => panic!("expected a log line, got {other:?}"),
        }
    }

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn attempt(dir: &Path, command: &[&str]) -> Attempt {
        Attempt {
            key: AttemptKey {
                task_id: "t1".into(),
                step_id: "s".into(),
                attempt: 1,
            },
            step: StepSpec::shell("s", command),
            inputs_json: r#"{"up":{"n":2}}"#.into(),
            task_name: "test".into(),
            secrets_dir: None,
            keep_workspace: true,
            work_dir: dir.to_path_buf(),
            claude: Arc::new(ClaudeSettings::default()),
            resume: None,
            access: None,
            traceparent: Some(TRACEPARENT.into()),
            metrics: Arc::new(WorkerMetrics::new(1)),
            checkpoints: None,
        }
    }

    /// A Claude Code attempt whose "CLI" is a script printing `lines`
    /// (stream-json), then exiting with `code`; its argv goes to `argv.txt`.
    fn claude_attempt(dir: &Path, lines: &[&str], code: i32) -> Attempt {
        claude_attempt_doing(dir, "", lines, code)
    }

    /// [`claude_attempt`] whose CLI runs the shell `script` first, in its
    /// working directory.
    fn claude_attempt_doing(dir: &Path, script: &str, lines: &[&str], code: i32) -> Attempt {
        let prelude = script;
        let script = dir.join("fake-claude");
        let mut body = String::from(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$PWD/../argv.txt\"\nenv > \"$PWD/../env.txt\"\n",
        );
        body.push_str(prelude);
        body.push('\n');
        for line in lines {
            body.push_str(&format!("echo '{line}'\n"));
        }
        body.push_str(&format!("exit {code}\n"));
        std::fs::write(&script, body).expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let mut attempt = attempt(dir, &["unused"]);
        attempt.step.shell = None;
        attempt.step.claude_code = Some(ClaudeCodeSpec {
            prompt: "write hello.txt".into(),
            model: None,
            max_turns: Some(4),
            allowed_tools: vec!["Write".into(), "Bash(git:*)".into()],
            permission_mode: Some(orca_core::PermissionMode::AcceptEdits),
        });
        attempt.claude = Arc::new(ClaudeSettings {
            bin: script,
            model: Some("claude-test".into()),
            api_key: Some("sk-ant-secret-key".into()),
            oauth_token: Some("sk-ant-oat01-secret-token".into()),
            base_url: Some("http://127.0.0.1:9".into()),
            home: dir.join("home"),
        });
        attempt.access = Some(StepAccess {
            server: "http://127.0.0.1:7070".into(),
            ca_file: None,
            token: "orca_step_for_this_attempt".into(),
            orca_bin: Some("/opt/orca/bin/orca".into()),
        });
        attempt
    }

    const INIT: &str =
        r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-test"}"#;
    const TOOL: &str = r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","name":"Write","input":{"file_path":"hello.txt"}}]}}"#;
    const TEXT: &str = r#"{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"Done, key sk-ant-secret-key"}]}}"#;
    const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"Done.","session_id":"s-1","num_turns":2,"total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":3},"modelUsage":{"claude-test":{"inputTokens":10,"outputTokens":3,"costUSD":0.5}}}"#;

    #[tokio::test]
    async fn a_claude_run_reports_its_cost_after_each_response_and_keeps_it_when_cut_short() {
        let start = |id: &str| {
            format!(
                r#"{{"type":"stream_event","event":{{"type":"message_start","message":{{"id":"{id}","model":"claude-sonnet-4-5","usage":{{"input_tokens":1000,"output_tokens":1,"cache_read_input_tokens":100,"cache_creation_input_tokens":40}}}}}}}}"#
            )
        };
        let end = r#"{"type":"stream_event","event":{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":200}}}"#;
        let (first, second) = (start("m1"), start("m2"));
        let dir = tempfile::tempdir().expect("tempdir");
        // Two responses, then the CLI dies before its result line.
        let lines = [INIT, first.as_str(), TOOL, end, second.as_str(), TEXT, end];
        let (result, reports) = run_to_end(claude_attempt(dir.path(), &lines, 1)).await;
        let spends: Vec<&v1::Cost> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Spend { cost, .. } => Some(cost),
                _ => None,
            })
            .collect();
        // Sonnet: $3 input, $15 output, $3.75 cache write, $0.30 cache read
        // per million tokens.
        let turn = (1000.0 * 3.0 + 200.0 * 15.0 + 40.0 * 3.75 + 100.0 * 0.3) / 1e6;
        assert_eq!(spends.len(), 2, "{spends:?}");
        assert!((spends[0].usd - turn).abs() < 1e-12, "{spends:?}");
        assert!((spends[1].usd - 2.0 * turn).abs() < 1e-12, "{spends:?}");
        assert_eq!(
            (spends[1].input_tokens, spends[1].output_tokens),
            (2000, 400),
            "running totals"
        );
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert_eq!(
            result.cost.as_ref(),
            Some(spends[1]),
            "an attempt cut short is charged what its responses cost"
        );
        let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
        assert!(argv.split('\0').any(|a| a == "--include-partial-messages"));
    }

    #[tokio::test]
    async fn a_run_the_cli_says_its_limit_stopped_reports_the_limit_and_its_reset() {
        let event = r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1767225600,"rateLimitType":"five_hour"},"uuid":"u","session_id":"s-1"}"#;
        // The result's words alone would not say it was a limit.
        let refused = r#"{"type":"result","subtype":"success","is_error":true,"result":"You are out of extra usage","session_id":"s-1"}"#;
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, reports) =
            run_to_end(claude_attempt(dir.path(), &[INIT, event, refused], 1)).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert_eq!(
            result.rate_limit.and_then(|l| l.reset_at),
            Some(timestamp(1_767_225_600_000_000))
        );
        assert!(
            logs_of(&reports)
                .iter()
                .any(|l| l.starts_with("the provider's usage limit was reached until")),
            "{:?}",
            logs_of(&reports)
        );
        // Without the event, the same error is the step's own failure.
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, _) = run_to_end(claude_attempt(dir.path(), &[INIT, refused], 1)).await;
        assert_eq!(result.rate_limit, None);
    }

    #[tokio::test]
    async fn a_claude_run_reports_turns_tools_and_its_result_with_cost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, reports) =
            run_to_end(claude_attempt(dir.path(), &[INIT, TOOL, TEXT, RESULT], 0)).await;
        assert_eq!(
            result.outcome,
            v1::Outcome::Succeeded as i32,
            "{}",
            result.error
        );
        let output: serde_json::Value = serde_json::from_str(&result.output_json).expect("json");
        assert_eq!(output["result"], "Done.");
        assert_eq!(output["sessionId"], "s-1");
        assert_eq!(output["model"], "claude-test");
        assert_eq!(output["cost"]["usd"], 0.5);
        assert_eq!(
            output["cost"]["sessionByModel"]["claude-test"]["inputTokens"],
            10
        );
        assert_eq!(
            result.cost,
            Some(v1::Cost {
                usd: 0.5,
                input_tokens: 10,
                output_tokens: 3,
                ..v1::Cost::default()
            })
        );
        assert!(reports.iter().any(|r| matches!(r, Report::Session { session_id, model, .. } if session_id == "s-1" && model == "claude-test")));
        let logs = logs_of(&reports);
        assert!(
            logs.contains(&"tool: Write file_path=hello.txt".to_string()),
            "{logs:?}"
        );
        assert!(
            logs.iter().any(|l| l == "Done, key ***"),
            "the API key is masked: {logs:?}"
        );
        let progress: Vec<f32> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Progress { fraction, .. } => Some(*fraction),
                _ => None,
            })
            .collect();
        assert_eq!(progress, [0.25, 0.5], "one step per turn of 4");
        // argv: the prompt right after -p, list flags as one `--flag=a,b`.
        let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
        let argv: Vec<&str> = argv.split('\0').collect();
        assert_eq!(
            &argv[..2],
            [
                "-p",
                "write hello.txt\n\nThe outputs of the steps this one depends on are in context/inputs.json."
            ]
        );
        for expected in [
            "--verbose",
            "--allowedTools=Write,Bash(git:*),mcp__orca",
            "--strict-mcp-config",
            "acceptEdits",
            "claude-test",
        ] {
            assert!(argv.contains(&expected), "{argv:?} lacks {expected}");
        }
        // orca's tools, through `orca mcp`, with the token in the
        // environment rather than on the command line.
        let mcp_config = argv
            .iter()
            .find_map(|a| a.strip_prefix("--mcp-config="))
            .expect("an MCP config");
        let mcp_config: serde_json::Value = serde_json::from_str(mcp_config).expect("json");
        assert_eq!(
            mcp_config["mcpServers"]["orca"]["command"],
            "/opt/orca/bin/orca"
        );
        assert!(!argv.iter().any(|a| a.contains("orca_step_")), "{argv:?}");
        // The environment is built: the worker's own is not inherited.
        let env = std::fs::read_to_string(dir.path().join("t1/s/env.txt")).expect("env");
        assert!(
            env.contains(&format!("HOME={}", dir.path().join("home").display())),
            "{env}"
        );
        assert!(env.contains("ANTHROPIC_API_KEY=sk-ant-secret-key"));
        assert!(env.contains("CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-secret-token\n"));
        assert!(!argv.iter().any(|a| a.contains("sk-ant-")), "{argv:?}");
        assert!(env.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:9"));
        assert!(env.contains("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"));
        assert!(env.contains("ORCA_TOKEN=orca_step_for_this_attempt\n"));
        assert!(env.contains("ORCA_SERVER=http://127.0.0.1:7070\n"));
        assert!(
            env.lines()
                .any(|l| l.starts_with("PATH=") && l.ends_with(":/opt/orca/bin")),
            "orca's directory ends the PATH: {env}"
        );
        // cargo sets this in the test process, the "worker" here.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert!(
            !env.contains("CARGO_MANIFEST_DIR"),
            "the worker's environment leaked into the CLI's: {env}"
        );
    }

    #[tokio::test]
    async fn a_claude_run_fails_on_an_error_result_or_without_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_error = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 400 bad"}"#;
        let (result, _) = run_to_end(claude_attempt(dir.path(), &[INIT, api_error], 1)).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert_eq!(result.error, "API Error: 400 bad");

        // Killed (or crashed) before its result: a failure, even at exit 0.
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, _) = run_to_end(claude_attempt(dir.path(), &[INIT, TOOL], 0)).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert_eq!(
            result.error,
            "the claude CLI ended without a result (exited with code 0)"
        );
    }

    fn logs_of(reports: &[Report]) -> Vec<String> {
        reports
            .iter()
            .filter_map(|r| match r {
                Report::Log { line, .. } => Some(line.clone()),
                _ => None,
            })
            .collect()
    }

    /// Attempt 2 of the fake CLI's step, told that attempt 1 started
    /// session `s-1`, which cost 0.2 so far.
    fn second_attempt_resuming_s1(dir: &Path) -> Attempt {
        let mut attempt = claude_attempt(dir, &[INIT, RESULT], 0);
        attempt.key.attempt = 2;
        attempt.resume = Some(ResumeFrom {
            attempt: 1,
            session_id: "s-1".into(),
            session_usd: 0.2,
            last_attempt: 1,
        });
        attempt
    }

    #[tokio::test]
    async fn a_retry_resumes_the_session_in_its_workspace_and_pays_only_its_share() {
        let dir = tempfile::tempdir().expect("tempdir");
        let attempt = second_attempt_resuming_s1(dir.path());
        let first = dir.path().join("t1/s/attempt-1");
        std::fs::create_dir_all(&first).expect("attempt 1's workspace");
        std::fs::write(first.join("made-by-attempt-1.txt"), "kept").expect("file");
        let transcripts = dir.path().join("home/.claude/projects/-t1-s-attempt-1");
        std::fs::create_dir_all(&transcripts).expect("projects");
        std::fs::write(transcripts.join("s-1.jsonl"), "{}\n").expect("transcript");

        let (result, reports) = run_to_end(attempt).await;
        assert_eq!(
            result.outcome,
            v1::Outcome::Succeeded as i32,
            "{}",
            result.error
        );
        let cost = result.cost.expect("cost");
        assert!(
            (cost.usd - 0.3).abs() < 1e-9,
            "0.5 so far less 0.2 before: {}",
            cost.usd
        );
        assert!(
            logs_of(&reports)
                .contains(&"resuming session s-1 of attempt 1 in its workspace".into())
        );
        let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
        let argv: Vec<&str> = argv.split('\0').collect();
        assert_eq!(&argv[..2], ["-p", RESUME_PROMPT]);
        let at = argv
            .iter()
            .position(|a| *a == "--resume")
            .expect("--resume");
        assert_eq!(argv[at + 1], "s-1");
        assert!(
            first.join("made-by-attempt-1.txt").exists(),
            "ran in attempt 1's workspace, which stays kept"
        );
        assert!(!dir.path().join("t1/s/attempt-2").exists());
    }

    #[tokio::test]
    async fn a_retry_without_the_session_at_hand_starts_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let attempt = second_attempt_resuming_s1(dir.path());
        // The workspace is here, its transcript is not.
        std::fs::create_dir_all(dir.path().join("t1/s/attempt-1")).expect("workspace");
        let (result, reports) = run_to_end(attempt).await;
        assert_eq!(
            result.outcome,
            v1::Outcome::Succeeded as i32,
            "{}",
            result.error
        );
        assert_eq!(result.cost.expect("cost").usd, 0.5);
        assert!(logs_of(&reports).contains(
            &"starting a new session: session s-1 of attempt 1 is not on this worker".into()
        ));
        let argv = std::fs::read_to_string(dir.path().join("t1/s/argv.txt")).expect("argv");
        assert!(!argv.contains("--resume"));
        assert_eq!(
            argv.split('\0').nth(1),
            Some(
                "write hello.txt\n\nThe outputs of the steps this one depends on are in context/inputs.json."
            )
        );
    }

    /// Checkpoints kept in memory, counting the reads.
    #[derive(Default)]
    struct MemoryKeeper {
        kept: Mutex<Option<v1::Checkpoint>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl checkpoint::Keeper for MemoryKeeper {
        async fn put(&self, checkpoint: v1::Checkpoint) -> Result<(), String> {
            *self.kept.lock().expect("lock") = Some(checkpoint);
            Ok(())
        }

        async fn get(&self, _: &AttemptKey) -> Result<Option<v1::Checkpoint>, String> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(self.kept.lock().expect("lock").clone())
        }
    }

    fn keeping(mut attempt: Attempt, keeper: &Arc<MemoryKeeper>) -> Attempt {
        attempt.checkpoints = Some(Checkpoints {
            keeper: keeper.clone(),
            max_bytes: checkpoint::DEFAULT_MAX_BYTES,
        });
        attempt
    }

    /// What the fake CLI does in attempt 1: writes a file, and the
    /// session's transcript where the real one would.
    const WRITES_NOTES_AND_TRANSCRIPT: &str = "echo 'half done sk-ant-secret-key' > notes.txt; \
        mkdir -p \"$HOME/.claude/projects/here\"; \
        echo \"{\\\"cwd\\\":\\\"$PWD\\\"}\" > \"$HOME/.claude/projects/here/s-1.jsonl\"";

    #[tokio::test]
    async fn a_failed_session_is_kept_and_a_retry_on_another_worker_resumes_it_from_there() {
        let keeper = Arc::new(MemoryKeeper::default());
        let api_error =
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500"}"#;
        // Worker A: attempt 1 fails mid-session.
        let a = tempfile::tempdir().expect("tempdir");
        let mut first =
            claude_attempt_doing(a.path(), WRITES_NOTES_AND_TRANSCRIPT, &[INIT, api_error], 1);
        first.step.retry = Some(orca_core::RetryPolicy::new(2));
        let (result, reports) = run_to_end(keeping(first, &keeper)).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        let kept = keeper
            .kept
            .lock()
            .expect("lock")
            .clone()
            .expect("a checkpoint");
        assert_eq!(kept.session_id, "s-1");
        assert_eq!(kept.attempt.as_ref().map(|a| a.attempt), Some(1));
        let workspace_a = a.path().join("t1/s/attempt-1");
        assert_eq!(kept.workspace, workspace_a.display().to_string());
        assert!(
            logs_of(&reports)
                .iter()
                .any(|l| l.starts_with("checkpoint kept: session s-1, ")),
            "{:?}",
            logs_of(&reports)
        );

        // Worker B: attempt 2 resumes it from the checkpoint, in its own
        // directories, the API key masked in what travelled.
        let b = tempfile::tempdir().expect("tempdir");
        let second = keeping(second_attempt_resuming_s1(b.path()), &keeper);
        let (result, reports) = run_to_end(second).await;
        assert_eq!(
            result.outcome,
            v1::Outcome::Succeeded as i32,
            "{}",
            result.error
        );
        assert!(
            logs_of(&reports).contains(
                &"resuming session s-1 of attempt 1 from the checkpoint attempt 1 left".into()
            ),
            "{:?}",
            logs_of(&reports)
        );
        let workspace_b = b.path().join("t1/s/attempt-1");
        assert_eq!(
            std::fs::read_to_string(workspace_b.join("notes.txt")).expect("notes"),
            "half done ***\n"
        );
        let transcript = checkpoint::transcript_path(&b.path().join("home"), &workspace_b, "s-1");
        assert_eq!(
            std::fs::read_to_string(transcript).expect("transcript"),
            format!("{{\"cwd\":\"{}\"}}\n", workspace_b.display())
        );
        let argv = std::fs::read_to_string(b.path().join("t1/s/argv.txt")).expect("argv");
        assert!(argv.contains("--resume\0s-1"), "{argv:?}");

        // Attempt 3 back on A, which holds only attempt 1's run: the
        // checkpoint attempt 2 left is newer, so A takes it. On B, whose
        // copy is the newest, nothing is read.
        *keeper.kept.lock().expect("lock") = Some(v1::Checkpoint {
            attempt: Some(v1::AttemptRef {
                attempt: 2,
                ..kept.attempt.clone().expect("attempt")
            }),
            ..kept.clone()
        });
        let third_on = |dir: &Path| {
            let mut third = keeping(second_attempt_resuming_s1(dir), &keeper);
            third.key.attempt = 3;
            if let Some(resume) = third.resume.as_mut() {
                resume.last_attempt = 2;
            }
            third
        };
        std::fs::write(a.path().join("t1/s/attempt-1.retained"), "1").expect("A's marker");
        let (_, reports) = run_to_end(third_on(a.path())).await;
        assert!(
            logs_of(&reports).contains(
                &"resuming session s-1 of attempt 1 from the checkpoint attempt 2 left".into()
            ),
            "{:?}",
            logs_of(&reports)
        );
        let reads = keeper.reads.load(std::sync::atomic::Ordering::Relaxed);
        std::fs::write(b.path().join("t1/s/attempt-1.retained"), "2").expect("B's marker");
        let (_, reports) = run_to_end(third_on(b.path())).await;
        assert!(
            logs_of(&reports)
                .contains(&"resuming session s-1 of attempt 1 in its workspace".into()),
            "{:?}",
            logs_of(&reports)
        );
        assert_eq!(
            keeper.reads.load(std::sync::atomic::Ordering::Relaxed),
            reads,
            "a worker with the newest copy reads no checkpoint"
        );
    }

    #[tokio::test]
    async fn a_failed_attempt_with_retries_left_keeps_its_workspace_until_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let api_error =
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500"}"#;
        let mut attempt = claude_attempt(dir.path(), &[INIT, api_error], 1);
        attempt.keep_workspace = false;
        attempt.step.retry = Some(orca_core::RetryPolicy::new(2));
        let (result, _) = run_to_end(attempt).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        let workspace = dir.path().join("t1/s/attempt-1");
        assert!(workspace.is_dir(), "kept for the retry to resume");
        assert!(dir.path().join("t1/s/attempt-1.retained").is_file());

        // Not yet expired: stays. Expired: gone, with its marker.
        sweep_retained(dir.path(), Duration::from_secs(3600)).await;
        assert!(workspace.is_dir());
        sweep_retained(dir.path(), Duration::ZERO).await;
        assert!(!workspace.exists());
        assert!(!dir.path().join("t1/s/attempt-1.retained").exists());

        // The last attempt's failure keeps nothing.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut attempt = claude_attempt(dir.path(), &[INIT, api_error], 1);
        attempt.keep_workspace = false;
        let (result, _) = run_to_end(attempt).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert!(!dir.path().join("t1/s/attempt-1").exists());
    }

    async fn run_to_end(attempt: Attempt) -> (v1::StepResult, Vec<Report>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_cancel, cancelled) = oneshot::channel();
        run(attempt, tx, cancelled).await;
        let mut reports = Vec::new();
        while let Ok(report) = rx.try_recv() {
            if let Report::Done(result) = report {
                return (result, reports);
            }
            reports.push(report);
        }
        panic!("no result reported");
    }

    #[tokio::test]
    async fn shell_step_reads_inputs_writes_output_and_streams_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = r#"echo "hello $ORCA_STEP_ID"; echo oops >&2; echo "::progress 0.5 half"; echo "trace $TRACEPARENT"; cat "$ORCA_INPUTS" > "$ORCA_OUTPUT""#;
        let (result, reports) = run_to_end(attempt(dir.path(), &["sh", "-c", script])).await;
        assert_eq!(
            result.outcome,
            v1::Outcome::Succeeded as i32,
            "{}",
            result.error
        );
        assert_eq!(result.output_json, r#"{"up":{"n":2}}"#);
        assert_eq!(result.exit_code, Some(0));
        let logs: Vec<_> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Log { stream, line, .. } => Some((*stream, line.as_str())),
                _ => None,
            })
            .collect();
        assert!(logs.contains(&(LogStream::Stdout, "hello s")), "{logs:?}");
        assert!(logs.contains(&(LogStream::Stderr, "oops")), "{logs:?}");
        let traced = format!("trace {TRACEPARENT}");
        assert!(
            logs.contains(&(LogStream::Stdout, traced.as_str())),
            "{logs:?}"
        );
        assert!(reports.iter().any(|r| matches!(r, Report::Progress { fraction, message, .. } if *fraction == 0.5 && message == "half")));
    }

    #[tokio::test]
    async fn exit_status_decides_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, _) = run_to_end(attempt(dir.path(), &["sh", "-c", "exit 3"])).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert_eq!(result.exit_code, Some(3));
        assert_eq!(result.error, "exited with code 3");
    }

    #[tokio::test]
    async fn invalid_output_json_fails_the_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, _) = run_to_end(attempt(
            dir.path(),
            &["sh", "-c", "echo '{nope' > \"$ORCA_OUTPUT\""],
        ))
        .await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert!(result.error.contains("not valid JSON"), "{}", result.error);
    }

    #[tokio::test]
    async fn output_symlink_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, _) = run_to_end(attempt(
            dir.path(),
            &["sh", "-c", "ln -s /etc/hostname \"$ORCA_OUTPUT\""],
        ))
        .await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert!(
            result.error.contains("not a regular file"),
            "{}",
            result.error
        );
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let attempt = attempt(dir.path(), &["/no/such/program"]);
        let metrics = attempt.metrics.clone();
        let (result, _) = run_to_end(attempt).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert!(result.error.contains("could not start"), "{}", result.error);
        // The runtime failed, not the step: the worker's metrics say which.
        let text = metrics.render();
        assert!(
            text.contains(
                "orca_worker_runtime_failures_total{runtime=\"shell\",reason=\"start\"} 1"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_step_failing_on_its_own_is_no_runtime_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let attempt = attempt(dir.path(), &["sh", "-c", "exit 3"]);
        let metrics = attempt.metrics.clone();
        let (result, _) = run_to_end(attempt).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        let text = metrics.render();
        assert!(
            text.contains(
                "orca_worker_step_attempts_finished_total{runtime=\"shell\",outcome=\"failed\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("orca_worker_runtime_failures_total{"),
            "{text}"
        );
        assert!(
            text.contains("orca_worker_steps_running{runtime=\"shell\"} 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (cancel, cancelled) = oneshot::channel();
        let running = tokio::spawn(run(
            attempt(dir.path(), &["sh", "-c", &script]),
            tx,
            cancelled,
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                break pid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the step never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        cancel.send(Stop::new("by test")).expect("runner alive");
        running.await.expect("runner");
        let result = loop {
            match rx.recv().await {
                Some(Report::Done(result)) => break result,
                Some(_) => continue,
                None => panic!("no result"),
            }
        };
        assert_eq!(result.outcome, v1::Outcome::Cancelled as i32);
        assert_eq!(result.error, "by test");
        // SIGKILL lands asynchronously: the grandchild must be gone (or a
        // zombie awaiting its reaper) within a deadline.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| !stat.contains(") Z "))
                .unwrap_or(false)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while alive() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "grandchild {pid} survived the cancel"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn timeout_kills_the_step_and_fails_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut slow = attempt(dir.path(), &["sh", "-c", "sleep 300"]);
        slow.step.timeout_seconds = Some(1);
        let (result, _) = run_to_end(slow).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert_eq!(result.error, "timed out after 1s");
    }

    #[tokio::test]
    async fn a_silent_step_is_stalled_and_a_talking_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut silent = attempt(dir.path(), &["sh", "-c", "echo started; sleep 300"]);
        silent.step.stall_timeout_seconds = Some(1);
        let began = std::time::Instant::now();
        let (result, _) = run_to_end(silent).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert!(result.stalled);
        assert_eq!(
            result.error,
            "stalled: no output, progress, log or tool event for 1s"
        );
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "killed, not waited out"
        );

        // Quiet for less than the limit at a time, for longer than it in
        // all: alive.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut talking = attempt(
            dir.path(),
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5 6; do echo \"::progress 0.$i\"; sleep 0.4; done",
            ],
        );
        talking.step.stall_timeout_seconds = Some(1);
        let (result, _) = run_to_end(talking).await;
        assert_eq!(
            result.outcome,
            v1::Outcome::Succeeded as i32,
            "{}",
            result.error
        );
        assert!(!result.stalled);
    }

    #[test]
    fn progress_lines_parse() {
        assert_eq!(
            parse_progress("0.5 half way"),
            Some((0.5, "half way".into()))
        );
        assert_eq!(parse_progress("2"), Some((1.0, String::new())));
        assert_eq!(parse_progress("NaN x"), None);
        assert_eq!(parse_progress("abc"), None);
    }
}
