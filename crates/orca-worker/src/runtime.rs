//! Step runtimes: how one attempt of a step actually runs. Each attempt gets
//! a fresh workspace (`context/inputs.json` in, `output/result.json` out),
//! reports its log lines and progress as it goes, and ends with a result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use orca_api::convert::{now_micros, timestamp};
use orca_api::v1;
use orca_core::{LogStream, ShellSpec, StepSpec};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use crate::AttemptKey;
use crate::secrets::{self, Redactor};

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
    Done(v1::StepResult),
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
}

impl Attempt {
    fn workspace(&self) -> PathBuf {
        self.work_dir
            .join(&self.key.task_id)
            .join(&self.key.step_id)
            .join(format!("attempt-{}", self.key.attempt))
    }
}

/// Runs the attempt to its end and reports the result. A message on
/// `cancel` stops it.
pub async fn run(
    attempt: Attempt,
    reports: mpsc::UnboundedSender<Report>,
    cancel: oneshot::Receiver<String>,
) {
    let started_at = now_micros();
    let ended = match (&attempt.step.shell, &attempt.step.noop) {
        (Some(shell), _) => run_shell(&attempt, shell, &reports, cancel).await,
        (None, Some(_)) => Ended::succeeded(String::new(), None),
        (None, None) => Ended::failed("the step sets no runtime this worker knows", None),
    };
    let result = v1::StepResult {
        attempt: Some(v1::AttemptRef {
            task_id: attempt.key.task_id.clone(),
            step_id: attempt.key.step_id.clone(),
            attempt: attempt.key.attempt,
        }),
        outcome: ended.outcome as i32,
        output_json: ended.output_json,
        error: ended.error,
        exit_code: ended.exit_code,
        started_at: Some(timestamp(started_at)),
        finished_at: Some(timestamp(now_micros())),
    };
    let _ = reports.send(Report::Done(result));
}

struct Ended {
    outcome: v1::Outcome,
    output_json: String,
    error: String,
    exit_code: Option<i32>,
}

impl Ended {
    fn succeeded(output_json: String, exit_code: Option<i32>) -> Self {
        Ended {
            outcome: v1::Outcome::Succeeded,
            output_json,
            error: String::new(),
            exit_code,
        }
    }

    fn failed(error: impl Into<String>, exit_code: Option<i32>) -> Self {
        Ended {
            outcome: v1::Outcome::Failed,
            output_json: String::new(),
            error: error.into(),
            exit_code,
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
    let mut env = BTreeMap::new();
    for name in ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.to_string(), value);
        }
    }
    env.extend(shell.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
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
    tokio::fs::create_dir_all(workspace.join("context")).await?;
    tokio::fs::create_dir_all(workspace.join("output")).await?;
    tokio::fs::write(workspace.join("context/inputs.json"), &attempt.inputs_json).await?;
    Ok(workspace)
}

/// Resolves the step's secrets, runs it, and masks the secrets in its
/// error and output as its lines were masked on the way.
async fn run_shell(
    attempt: &Attempt,
    shell: &ShellSpec,
    reports: &mpsc::UnboundedSender<Report>,
    cancel: oneshot::Receiver<String>,
) -> Ended {
    let secrets = match secrets::resolve(&shell.secret_env, attempt.secrets_dir.as_deref()) {
        Ok(secrets) => secrets,
        Err(message) => return Ended::failed(message, None),
    };
    let redactor = Arc::new(Redactor::new(secrets.values()));
    let mut ended = run_process(attempt, shell, &secrets, &redactor, reports, cancel).await;
    ended.error = redactor.redact(ended.error);
    ended.output_json = redactor.redact(ended.output_json);
    if !attempt.keep_workspace {
        remove_workspace(attempt.workspace()).await;
    }
    ended
}

/// Removes an attempt's workspace, then its step's and task's directories
/// once empty (removing one that still holds another attempt fails, as it
/// should). One blocking call, off the async threads.
async fn remove_workspace(workspace: PathBuf) {
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
    cancel: oneshot::Receiver<String>,
) -> Ended {
    let workspace = match prepare_workspace(attempt).await {
        Ok(w) => w,
        Err(e) => return Ended::failed(format!("preparing the workspace: {e}"), None),
    };
    let Some((program, args)) = shell.command.split_first() else {
        return Ended::failed("the command is empty", None);
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&workspace)
        .env_clear()
        .envs(environment(attempt, shell, secrets, &workspace))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a kill reaches children and grandchildren.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Ended::failed(format!("could not start {program:?}: {e}"), None),
    };
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let stdout = child.stdout.take().map(|out| {
        tokio::spawn(forward_lines(
            out,
            LogStream::Stdout,
            attempt.key.clone(),
            redactor.clone(),
            reports.clone(),
        ))
    });
    let stderr = child.stderr.take().map(|err| {
        tokio::spawn(forward_lines(
            err,
            LogStream::Stderr,
            attempt.key.clone(),
            redactor.clone(),
            reports.clone(),
        ))
    });

    let mut cancelled = None;
    let mut timed_out = None;
    let deadline = async {
        match attempt.step.timeout_seconds {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await,
            None => std::future::pending().await,
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        reason = cancel => {
            let reason = reason.unwrap_or_else(|_| "the worker is stopping".into());
            cancelled = Some(reason);
            stop_group(group, &mut child).await
        }
        _ = deadline => {
            timed_out = attempt.step.timeout_seconds;
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

    if let Some(reason) = cancelled {
        return Ended {
            outcome: v1::Outcome::Cancelled,
            output_json: String::new(),
            error: reason,
            exit_code: status.ok().and_then(|s| s.code()),
        };
    }
    if let Some(seconds) = timed_out {
        return Ended::failed(
            format!("timed out after {seconds}s"),
            status.ok().and_then(|s| s.code()),
        );
    }
    let status = match status {
        Ok(status) => status,
        Err(e) => return Ended::failed(format!("waiting for the process: {e}"), None),
    };
    if !status.success() {
        return Ended::failed(describe_exit(status), status.code());
    }
    match read_output(&workspace).await {
        Ok(output) => Ended::succeeded(output, status.code()),
        Err(message) => Ended::failed(message, status.code()),
    }
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
    attempt: AttemptKey,
    redactor: Arc<Redactor>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
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
        forward_lines(line.as_bytes(), LogStream::Stdout, key, redactor, reports).await;
        match received.recv().await {
            Some(Report::Log { line, .. }) => {
                assert!(line.len() <= MAX_LINE_BYTES);
                assert!(!line.contains("sk-"), "part of the secret survived the cut");
            }
            other => panic!("expected a log line, got {other:?}"),
        }
    }

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
        }
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
        let script = r#"echo "hello $ORCA_STEP_ID"; echo oops >&2; echo "::progress 0.5 half"; cat "$ORCA_INPUTS" > "$ORCA_OUTPUT""#;
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
        let (result, _) = run_to_end(attempt(dir.path(), &["/no/such/program"])).await;
        assert_eq!(result.outcome, v1::Outcome::Failed as i32);
        assert!(result.error.contains("could not start"), "{}", result.error);
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
        cancel.send("by test".into()).expect("runner alive");
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
