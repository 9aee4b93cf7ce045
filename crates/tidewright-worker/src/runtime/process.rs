//! Running one process for an attempt: its own process group, an
//! environment built rather than inherited, its stdout and stderr streamed
//! as reports (masked, cut at a line limit), and stopped on cancel,
//! timeout or silence.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use tidewright_core::{AttemptKey, LogStream};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, MAX_LINE_BYTES, Stop};
use super::repeats::{Repeats, ToolCall, Unchanged};
use super::steer::Input;
use crate::metrics::Fault;
use crate::program::find_program;
use crate::sandbox::Room;
use crate::sandbox::limits::{DiskWatch, Limits};
use crate::secrets::Redactor;

/// After SIGTERM, how long a cancelled step has before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(500);

/// Once the main process has exited, how long stray output may still drain.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How many of a process's last stderr lines are kept to tell why it
/// failed.
const TAIL_LINES: usize = 20;

/// A process that ended on its own.
#[derive(Debug, Clone)]
pub(crate) struct Exited {
    pub status: ExitStatus,
    /// When it failed: a path its last lines say it could not find that
    /// is on the worker but not in its sandbox, and how to give it.
    pub unseen: Option<String>,
}

impl Exited {
    /// Its failure in words: the exit, and the path it may have missed.
    pub fn failure(&self) -> String {
        let exit = describe_exit(self.status);
        match &self.unseen {
            Some(unseen) => format!("{exit}: {unseen}"),
            None => exit,
        }
    }
}

/// A stdout line `::progress <fraction> [message]` reports progress instead
/// of being logged.
const PROGRESS_PREFIX: &str = "::progress ";

/// What any step's process gets: the basics a program expects from the
/// worker's own environment, and tidewright's variables.
pub(crate) fn basic_environment(attempt: &Attempt, workspace: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.to_string(), value);
        }
    }
    if let Some(access) = &attempt.access {
        env.insert("TIDEWRIGHT_SERVER".into(), access.server.clone());
        env.insert("TIDEWRIGHT_TOKEN".into(), access.token.clone());
        if let Some(ca_file) = &access.ca_file {
            env.insert("TIDEWRIGHT_CA_FILE".into(), ca_file.display().to_string());
        }
        // Last, so a step's own `tidewright` on its PATH wins.
        if let Some(dir) = access.tidewright_bin.as_deref().and_then(Path::parent) {
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
                tidewright_telemetry::SERVICE_NAME_VARIABLE => {}
                tidewright_telemetry::RESOURCE_ATTRIBUTES_VARIABLE => {
                    if let Some(kept) =
                        tidewright_telemetry::attributes_without_service_name(&value)
                    {
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
    env.insert("TIDEWRIGHT_TASK_ID".into(), attempt.key.task_id.clone());
    env.insert("TIDEWRIGHT_TASK_NAME".into(), attempt.task_name.clone());
    env.insert("TIDEWRIGHT_STEP_ID".into(), attempt.key.step_id.clone());
    env.insert("TIDEWRIGHT_ATTEMPT".into(), attempt.key.attempt.to_string());
    env.insert(
        "TIDEWRIGHT_WORKSPACE".into(),
        workspace.display().to_string(),
    );
    env.insert("TIDEWRIGHT_INPUTS".into(), path("context/inputs.json"));
    env.insert("TIDEWRIGHT_OUTPUT".into(), path("output/result.json"));
    if attempt.repo.is_some() {
        // The step works there; its own commits say which step made them.
        env.insert(
            "TIDEWRIGHT_REPO".into(),
            super::repo::worktree_dir(workspace).display().to_string(),
        );
        let name = format!("tidewright step {}", attempt.key.step_id);
        for var in ["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"] {
            env.insert(var.into(), name.clone());
        }
        for var in ["GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"] {
            env.insert(
                var.into(),
                tidewright_git::worktree::TIDEWRIGHT_AUTHOR.1.into(),
            );
        }
    }
    env
}

/// When an attempt last showed a sign of life: any line on its stdout or
/// stderr, which for an agent is every stream-json event (a message, a
/// tool call, a tool's result); and whether an agent is going round in
/// circles. Shared by the readers, which touch it, and the supervisor,
/// which declares the attempt stalled after its step's stall timeout of
/// silence, or as soon as it circles.
#[derive(Clone)]
struct Activity {
    started: tokio::time::Instant,
    /// Milliseconds after `started`.
    last: Arc<std::sync::atomic::AtomicU64>,
    /// Why the agent is going round in circles, once it is: busy, but
    /// getting nowhere, which stalls it as silence does.
    circling: Arc<Mutex<Option<String>>>,
    circled: Arc<tokio::sync::Notify>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: tokio::time::Instant::now(),
            last: Arc::default(),
            circling: Arc::default(),
            circled: Arc::default(),
        }
    }

    fn circle(&self, why: String) {
        let mut circling = self.circling.lock().unwrap_or_else(|e| e.into_inner());
        circling.get_or_insert(why);
        self.circled.notify_one();
    }

    /// Resolves, with why, once the agent is going round in circles.
    async fn circling(&self) -> String {
        loop {
            let notified = self.circled.notified();
            if let Some(why) = self
                .circling
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return why;
            }
            notified.await;
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

/// What reads a program's stdout when its lines are events (an agent
/// CLI's stream), not log lines.
pub trait LineReader: Send {
    /// The reports one stdout line makes. `raw` is the whole line: nothing
    /// of it is cut or masked yet.
    fn read(&mut self, raw: &str, attempt: &AttemptKey, redactor: &Redactor) -> Vec<FromAttempt>;
    /// The tool calls the agent made in the lines read since this was last
    /// asked, in order: the stall policy stops a run that repeats one.
    fn take_tool_calls(&mut self) -> Vec<ToolCall> {
        Vec::new()
    }
    /// What one stdout line adds to the agent's session, for its replay
    /// (messages, tool calls, their outputs), after [`LineReader::read`]
    /// read it; nothing is masked yet.
    fn said(&mut self, _raw: &str) -> Vec<tidewright_core::session_item::SessionItem> {
        Vec::new()
    }
    /// What the run has cost so far, in dollars, as its items are said.
    fn usd(&self) -> f64 {
        0.0
    }
}

/// Reads the fixture `name` of runtime `runtime` (recorded from the real
/// CLI under `tests/fixtures/`) through `reader`, as the worker reads a
/// run; the log lines it made.
#[cfg(test)]
pub(crate) fn replay_fixture(
    reader: &mut impl LineReader,
    runtime: &str,
    name: &str,
) -> Vec<String> {
    read_fixture(reader, runtime, name)
        .0
        .into_iter()
        .filter_map(|report| match report {
            FromAttempt::Log { line, .. } => Some(line),
            _ => None,
        })
        .collect()
}

/// The session items `reader` makes of the fixture `name` of runtime
/// `runtime`, read as [`replay_fixture`] reads it.
#[cfg(test)]
pub(crate) fn items_of_fixture(
    reader: &mut impl LineReader,
    runtime: &str,
    name: &str,
) -> Vec<tidewright_core::session_item::SessionItem> {
    read_fixture(reader, runtime, name).1
}

/// Each line of a recorded fixture through `reader`: the reports it made,
/// and the session items it said.
#[cfg(test)]
fn read_fixture(
    reader: &mut impl LineReader,
    runtime: &str,
    name: &str,
) -> (
    Vec<FromAttempt>,
    Vec<tidewright_core::session_item::SessionItem>,
) {
    let path = format!(
        "{}/tests/fixtures/{runtime}/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let key = AttemptKey {
        task_id: "t".into(),
        step_id: "s".into(),
        attempt: 1,
    };
    let redactor = Redactor::new(&[]);
    let (mut reports, mut items) = (Vec::new(), Vec::new());
    for line in text.lines() {
        reports.extend(reader.read(line, &key, &redactor));
        items.extend(reader.said(line));
    }
    (reports, items)
}

/// What a process's stdout lines are.
#[derive(Clone)]
pub(crate) enum StdoutLines {
    /// Log lines, and `::progress` lines.
    Plain,
    /// Events, read by the runtime that started the process; the tool
    /// calls they make are noted in the journal.
    Events(Arc<Mutex<dyn LineReader>>, super::handover::Journal),
}

/// Runs `command` in its sandbox with `room` in view, from `room.cwd`,
/// with exactly `env` (nothing of the worker's own environment: its token,
/// its credentials), streams its
/// output as reports, and stops its whole process group on cancel or
/// timeout. `Ok` with how the process ended when it ended on its own,
/// for the runtime to read its way; `Err` with the outcome otherwise
/// (could not start, cancelled, timed out).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn supervise(
    attempt: &Attempt,
    command: Command,
    env: BTreeMap<String, String>,
    room: &Room<'_>,
    (lines, input): (StdoutLines, Option<Input>),
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    cancel: &mut oneshot::Receiver<Stop>,
) -> Result<Exited, Ended> {
    let path_var = env.get("PATH").cloned();
    // Each step before the process runs fails as a start that could not be.
    let not_started = |why| Ended::fault(Fault::Start, why);
    let limited = limit(attempt, &command, room, path_var.as_deref()).map_err(not_started)?;
    // Its network's ways out, open while it runs.
    let gate = match open_network(attempt, reports).await {
        Ok(gate) => gate,
        Err(why) => {
            limited.release().await;
            return Err(not_started(why));
        }
    };
    let mut room = room.clone();
    room.network = gate.as_ref();
    let mut child = match spawn(attempt, command, env, &room, &limited, input.is_some()) {
        Ok(child) => child,
        Err(why) => {
            limited.release().await;
            return Err(not_started(why));
        }
    };
    // What feeds its input, for as long as it runs.
    let feeding = match (input, child.stdin.take()) {
        (Some(input), Some(stdin)) => Some(tokio::spawn(super::steer::feed(stdin, input))),
        _ => None,
    };
    // Its group, while its leader's id is known (not once it is reaped).
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let output = forward(&mut child, lines, (attempt, room.cwd), redactor, reports);
    let watched = watch(
        attempt,
        (&mut child, group),
        &output.activity,
        &limited,
        cancel,
    )
    .await;
    if let Some(feeding) = feeding {
        feeding.abort();
    }
    stop(attempt, group, output, limited, watched, &room, path_var).await
}

/// What an attempt's process runs under: its limits, and its cgroup and
/// disk watch when the limits ask for them.
struct Limited {
    settings: crate::sandbox::limits::LimitSettings,
    cgroup: Option<crate::sandbox::limits::StepCgroup>,
    disk: Option<DiskWatch>,
}

impl Limited {
    /// Gives back what was made for a process that did not start.
    async fn release(self) {
        if let Some(cgroup) = self.cgroup {
            cgroup.remove().await;
        }
    }
}

/// The program is there (in a sandbox a missing one is bubblewrap's
/// failure to exec it, an exit like any other: it is looked for first, so
/// it is said as what it is, a step that could not start), and the step's
/// limits are held: its cgroup made (its memory and process limits), its
/// workspace's disk watched.
fn limit(
    attempt: &Attempt,
    command: &Command,
    room: &Room<'_>,
    path_var: Option<&str>,
) -> Result<Limited, String> {
    let program = Path::new(command.as_std().get_program());
    if find_program(program, room.cwd, path_var).is_none() {
        let missing = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOENT as i32);
        return Err(format!(
            "could not start {:?}: {missing}",
            program.display().to_string()
        ));
    }
    let settings = attempt.host.limits.for_step(attempt.step.limits.as_ref())?;
    let cgroup = attempt
        .host
        .limits
        .enter(&cgroup_name(attempt), &settings)
        .map_err(|e| format!("making the step's cgroup: {e}"))?;
    let disk = DiskWatch::new(room.workspace, settings.disk_bytes);
    Ok(Limited {
        settings,
        cgroup,
        disk,
    })
}

/// The step's network, as its egress policy opens it while it runs (each
/// destination tried reported as it is); `None` without egress.
async fn open_network(
    attempt: &Attempt,
    reports: &mpsc::UnboundedSender<FromAttempt>,
) -> Result<Option<crate::sandbox::egress::Gate>, String> {
    let credentials = &attempt.step.credentials;
    let Some(egress) = &attempt.host.egress else {
        // Without its proxy a step's credentials could only be handed to
        // it: refused, never done another way.
        if !credentials.is_empty() {
            return Err(
                "the step's credentials need the sandbox's egress proxy, and this worker runs steps without one (--sandbox=off, or no network relay)"
                    .into(),
            );
        }
        return Ok(None);
    };
    let broker = if credentials.is_empty() {
        None
    } else {
        Some(egress.broker(credentials, attempt.host.secrets_dir.as_deref())?)
    };
    let policy = egress.policy(
        attempt.task_egress.as_ref(),
        attempt.step.egress.as_ref(),
        attempt.repo.as_ref(),
    );
    let (key, reports) = (attempt.key.clone(), reports.clone());
    let tell: crate::sandbox::egress::Teller =
        Arc::new(move |said: crate::sandbox::egress::Said| {
            let _ = reports.send(FromAttempt::Egress {
                attempt: key.clone(),
                destination: said.destination,
                allowed: said.allowed,
                reason: said.reason,
            });
        });
    egress
        .open(policy, attempt.repo.as_ref(), tell, broker)
        .await
        .map(Some)
        .map_err(|e| format!("opening the step's network: {e}"))
}

/// Starts the process: in its sandbox, in its cgroup and under its
/// rlimits, leading a process group of its own (so a kill reaches children
/// and grandchildren), with exactly `env`.
fn spawn(
    attempt: &Attempt,
    command: Command,
    mut env: BTreeMap<String, String>,
    room: &Room<'_>,
    limited: &Limited,
    fed: bool,
) -> Result<tokio::process::Child, String> {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let command = attempt.host.sandbox.confine(command, &mut env, room);
    let mut command = Limits::wrap(command, limited.cgroup.as_ref(), &limited.settings);
    if attempt.host.sandbox.own_group() {
        command.process_group(0);
    }
    command
        .env_clear()
        .envs(env)
        .current_dir(room.cwd)
        .stdin(if fed { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
        .spawn()
        .map_err(|e| format!("could not start {program:?}: {e}"))
}

/// The process's output as it is forwarded: stdout by `lines`, stderr as
/// log lines with its last ones kept, both signs of life.
struct Output {
    readers: Vec<tokio::task::JoinHandle<()>>,
    activity: Activity,
    tail: Tail,
}

/// Forwards the process's stdout and stderr as reports while it runs.
fn forward(
    child: &mut tokio::process::Child,
    lines: StdoutLines,
    (attempt, cwd): (&Attempt, &Path),
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<FromAttempt>,
) -> Output {
    let activity = Activity::new();
    let tail = Tail::default();
    let watch = Circles {
        repeats: Repeats::new(attempt.host.repeat_limit),
        unchanged: Some(Unchanged::new(attempt.host.unchanged_turns, cwd)),
    };
    let stdout = child.stdout.take().map(|out| {
        tokio::spawn(forward_lines(
            out,
            LogStream::Stdout,
            (lines, Some(watch)),
            attempt.key.clone(),
            (redactor.clone(), activity.clone(), None),
            reports.clone(),
        ))
    });
    let stderr = child.stderr.take().map(|err| {
        tokio::spawn(forward_lines(
            err,
            LogStream::Stderr,
            (StdoutLines::Plain, None),
            attempt.key.clone(),
            (redactor.clone(), activity.clone(), Some(tail.clone())),
            reports.clone(),
        ))
    });
    Output {
        readers: [stdout, stderr].into_iter().flatten().collect(),
        activity,
        tail,
    }
}

/// How the watch over a process ended: on its own, or stopped for why.
struct Watched {
    status: std::io::Result<ExitStatus>,
    cancelled: Option<Stop>,
    timed_out: Option<u32>,
    stalled: Option<u32>,
    /// Why the agent was going round in circles, when that stopped it.
    circling: Option<String>,
    disk_full: bool,
}

/// Waits for the process to exit, stopping its group on a cancel, at the
/// step's timeout, when it goes silent past its stall limit, or when its
/// workspace fills.
async fn watch(
    attempt: &Attempt,
    (child, group): (&mut tokio::process::Child, Option<Pid>),
    activity: &Activity,
    limited: &Limited,
    cancel: &mut oneshot::Receiver<Stop>,
) -> Watched {
    let mut watched = Watched {
        status: Ok(ExitStatus::default()),
        cancelled: None,
        timed_out: None,
        stalled: None,
        circling: None,
        disk_full: false,
    };
    let stall_limit = attempt.step.stall_timeout();
    let deadline = async {
        match attempt.step.timeout_seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await,
            None => std::future::pending().await,
        }
    };
    watched.status = tokio::select! {
        status = child.wait() => status,
        stop = cancel => {
            watched.cancelled = Some(stop.unwrap_or_else(|_| Stop::new("the worker is stopping")));
            stop_group(group, child).await
        }
        _ = deadline => {
            watched.timed_out = attempt.step.timeout_seconds;
            stop_group(group, child).await
        }
        _ = activity.silent(stall_limit.map(|s| Duration::from_secs(u64::from(s)))) => {
            watched.stalled = stall_limit;
            stop_group(group, child).await
        }
        why = activity.circling() => {
            watched.circling = Some(why);
            stop_group(group, child).await
        }
        _ = async {
            match &limited.disk {
                Some(disk) => disk.full().await,
                None => std::future::pending().await,
            }
        } => {
            watched.disk_full = true;
            stop_group(group, child).await
        }
    };
    watched
}

/// After the process: whatever it left running in its group ends with it,
/// its output drains, its limits are read and released, and how it ended
/// is said: stopped (cancelled, timed out, stalled), over a limit, or
/// exited on its own.
async fn stop(
    attempt: &Attempt,
    group: Option<Pid>,
    output: Output,
    limited: Limited,
    watched: Watched,
    room: &Room<'_>,
    path_var: Option<String>,
) -> Result<Exited, Ended> {
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    for reader in output.readers {
        let _ = tokio::time::timeout(DRAIN_GRACE, reader).await;
    }
    // A limit that ended it is its reason, whatever its exit said.
    let mut limit_hit = match limited.cgroup {
        Some(cgroup) => {
            let verdict = cgroup.verdict();
            cgroup.remove().await;
            verdict
        }
        None => None,
    };
    // A workspace at its limit at the end (a write refused at the
    // file-size limit, the watch's stop, or a fill between two looks)
    // fails the step, whatever its exit said.
    let mut over_disk = false;
    if limit_hit.is_none()
        && let Some(disk) = &limited.disk
    {
        limit_hit = disk.verdict().await;
        over_disk = limit_hit.is_some() || watched.disk_full;
    }

    let status = watched.status;
    let code = status.as_ref().ok().and_then(|s| s.code());
    if let Some(stop) = watched.cancelled {
        return Err(Ended::cancelled(stop, code));
    }
    if let Some(seconds) = watched.timed_out {
        return Err(Ended {
            exit_code: code,
            ..Ended::fault(Fault::Timeout, format!("timed out after {seconds}s"))
        });
    }
    if let Some(seconds) = watched.stalled {
        return Err(Ended {
            exit_code: code,
            ..Ended::fault(
                Fault::Stalled,
                format!("stalled: no output, progress, log or tool event for {seconds}s"),
            )
        });
    }
    if let Some(why) = watched.circling {
        return Err(Ended {
            exit_code: code,
            ..Ended::fault(Fault::Stalled, format!("stalled: {why}"))
        });
    }
    match (status, limit_hit) {
        (Ok(status), Some(limit)) if !status.success() || over_disk => {
            Err(Ended::failed(limit, status.code()))
        }
        (status, _) => {
            let status = status
                .map_err(|e| Ended::fault(Fault::Wait, format!("waiting for the process: {e}")))?;
            let unseen = (!status.success())
                .then(|| {
                    let lines = output.tail.lines();
                    attempt
                        .host
                        .sandbox
                        .unseen(room, path_var.as_ref(), &lines, status.code())
                })
                .flatten();
            Ok(Exited { status, unseen })
        }
    }
}

/// A process's last stderr lines, as they were logged (masked).
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<std::collections::VecDeque<String>>>);

impl Tail {
    fn push(&self, line: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.to_string());
    }

    fn lines(&self) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }
}

/// The name of an attempt's cgroup: unique on the machine, as another
/// worker may run the same attempt's retry beside this one.
fn cgroup_name(attempt: &Attempt) -> String {
    format!(
        "tidewright-{}-{}-{}-{}",
        std::process::id(),
        attempt.key.task_id,
        attempt.key.step_id,
        attempt.key.attempt
    )
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

pub(crate) fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended without an exit code".into(),
    }
}

/// What tells an agent going round in circles, from its stream: its tool
/// calls in a row, and its turns that leave its work as it was.
struct Circles {
    repeats: Repeats,
    /// Given to a blocking task for each turn, and back.
    unchanged: Option<Unchanged>,
}

impl Circles {
    /// Why the agent goes round in circles after one line's `calls`, when
    /// it does.
    async fn after(&mut self, calls: &[ToolCall]) -> Option<String> {
        let mut why = None;
        for call in calls {
            why = why.or(self.repeats.call(call));
        }
        if calls.is_empty() {
            return why;
        }
        // One line's calls are one turn of the model.
        let Some(mut unchanged) = self.unchanged.take() else {
            return why;
        };
        let Ok((unchanged, stalled)) = tokio::task::spawn_blocking(move || {
            let stalled = unchanged.turn();
            (unchanged, stalled)
        })
        .await
        else {
            return why;
        };
        self.unchanged = Some(unchanged);
        why.or(stalled)
    }
}

async fn forward_lines(
    pipe: impl AsyncRead + Unpin,
    stream: LogStream,
    (lines, mut circles): (StdoutLines, Option<Circles>),
    attempt: AttemptKey,
    (redactor, activity, tail): (Arc<Redactor>, Activity, Option<Tail>),
    reports: mpsc::UnboundedSender<FromAttempt>,
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
        if let StdoutLines::Events(run, journal) = &lines {
            // The whole event is read before anything of it is cut.
            let raw = String::from_utf8_lossy(&buf);
            let (reports_of_line, calls) = {
                let mut run = run.lock().unwrap_or_else(|e| e.into_inner());
                let mut reports = run.read(&raw, &attempt, &redactor);
                let items = run.said(&raw);
                if !items.is_empty() {
                    reports.push(FromAttempt::said(&attempt, &redactor, items, run.usd()));
                }
                (reports, run.take_tool_calls())
            };
            journal.noted(&calls, &redactor);
            if let Some(circles) = circles.as_mut()
                && let Some(why) = circles.after(&calls).await
            {
                activity.circle(why);
            }
            for report in reports_of_line {
                if reports.send(report).is_err() {
                    return;
                }
            }
            continue;
        }
        // Masked before it is cut, so a cut never leaves part of a secret.
        let mut line = redactor.redact(String::from_utf8_lossy(&buf).into_owned());
        tidewright_core::truncate_at_char_boundary(&mut line, MAX_LINE_BYTES);
        if let Some(tail) = &tail {
            tail.push(&line);
        }
        let report = match (stream, line.strip_prefix(PROGRESS_PREFIX)) {
            (LogStream::Stdout, Some(rest)) => match parse_progress(rest) {
                Some((fraction, message)) => FromAttempt::Progress {
                    attempt: attempt.clone(),
                    fraction,
                    message,
                },
                None => FromAttempt::Log {
                    attempt: attempt.clone(),
                    stream,
                    line,
                },
            },
            _ => FromAttempt::Log {
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
            (StdoutLines::Plain, None),
            key,
            (redactor, Activity::new(), None),
            reports,
        )
        .await;
        match received.recv().await {
            Some(FromAttempt::Log { line, .. }) => {
                assert!(line.len() <= MAX_LINE_BYTES);
                assert!(!line.contains("sk-"), "part of the secret survived the cut");
            }
            other => panic!("expected a log line, got {other:?}"),
        }
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
