//! A command run in a checkout, sandboxed as its step would be, apart from
//! the step's own process: a verified step's check, a repository's setup.
//! Its lines go to the step's log behind a label, and the end of its output
//! is held for what it is run for.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tidewright_core::verify::CheckSpec;
use tidewright_core::{ShellSpec, StepLimits, StepSpec};
use tidewright_git::worktree::Worktree;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use super::process::{StdoutLines, basic_environment, supervise};
use crate::sandbox::Room;
use crate::sandbox::overlay::Overlay;
use crate::secrets::Redactor;

/// The most of a command's output held while it runs, from its end.
const HELD_BYTES: usize = 64 * 1024;

/// What a command has of its own in place of its step's: a setup's limits
/// and secrets. A check has none.
#[derive(Default)]
pub(crate) struct Own<'a> {
    /// In place of the step's limits.
    pub limits: Option<&'a StepLimits>,
    /// Besides the basics: variables the step does not have.
    pub env: BTreeMap<String, String>,
}

/// Runs the check's command in `dir`, sandboxed as the step would be
/// (its egress and limits, or its `own` limits in their place; the
/// check's timeout, no stall watch, no token to the control plane); how it
/// ended, and its output as it came, masked. Its lines go to the step's
/// log behind `label` (a repository's setup runs this way too).
pub(crate) async fn run_in_sandbox(
    attempt: &Attempt,
    (label, check, own): (&str, &CheckSpec, &Own<'_>),
    (dir, tree, overlays): (&Path, &Worktree, &[Overlay]),
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    cancel: &mut oneshot::Receiver<Stop>,
) -> (Result<super::process::Exited, Ended>, String) {
    let Some((program, args)) = check.run.split_first() else {
        return (
            Err(Ended::failed("the check's run is empty", None)),
            String::new(),
        );
    };
    let as_step = Attempt {
        key: attempt.key.clone(),
        step: StepSpec {
            shell: Some(ShellSpec {
                command: check.run.clone(),
                ..ShellSpec::default()
            }),
            noop: None,
            timeout_seconds: Some(
                u32::try_from(check.timeout().as_secs().max(1)).unwrap_or(u32::MAX),
            ),
            egress: attempt.step.egress.clone(),
            limits: own.limits.or(attempt.step.limits.as_ref()).cloned(),
            ..StepSpec::noop(&attempt.step.id)
        },
        inputs_json: String::new(),
        task_name: attempt.task_name.clone(),
        resume: None,
        access: None,
        traceparent: attempt.traceparent.clone(),
        repo: None,
        dependency_heads: Vec::new(),
        task_egress: attempt.task_egress.clone(),
        land_riders: Vec::new(),
        land_fix: String::new(),
        tenant: attempt.tenant.clone(),
        grader_model: String::new(),
        look: Arc::default(),
        steers: Default::default(),
        host: attempt.host.clone(),
    };
    let mut command = Command::new(program);
    command.args(args);
    let mut env = basic_environment(&as_step, dir);
    env.extend(own.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut room = Room::new(dir, dir);
    room.command = Some(program.into());
    room.overlays = overlays.to_vec();
    // Its checkout borrows the mirror's objects, which it may read only.
    room.readable.push(tree.mirror().objects());
    // Its lines are the step's log, said as the check's, and held for the
    // round's result.
    let (lines, mut said) = mpsc::unbounded_channel();
    let mut output = String::new();
    let mut relay = |report: FromAttempt| match report {
        FromAttempt::Log {
            attempt,
            stream,
            line,
        } => {
            output.push_str(&line);
            output.push('\n');
            if output.len() > 2 * HELD_BYTES {
                output = tidewright_core::last_bytes(&output, HELD_BYTES).to_string();
            }
            let _ = reports.send(FromAttempt::Log {
                attempt,
                stream,
                line: format!("{label}: {line}"),
            });
        }
        FromAttempt::Progress { .. } => {}
        other => {
            let _ = reports.send(other);
        }
    };
    let supervised = supervise(
        &as_step,
        command,
        env,
        &room,
        (StdoutLines::Plain, None),
        redactor,
        &lines,
        cancel,
    );
    tokio::pin!(supervised);
    let end = loop {
        tokio::select! {
            end = &mut supervised => break end,
            Some(report) = said.recv() => relay(report),
        }
    };
    // What it said before it ended is all in by now.
    while let Ok(report) = said.try_recv() {
        relay(report);
    }
    (end, output)
}
