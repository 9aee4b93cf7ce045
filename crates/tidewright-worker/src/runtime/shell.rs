//! The shell runtime: a step's command, run as given in its workspace
//! with its variables and secrets; its exit code and `output/result.json`
//! are the result.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tidewright_core::ShellSpec;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use super::process::{StdoutLines, basic_environment, supervise};
use super::repo;
use super::workspace::{prepare_workspace, read_output, remove_unless_kept};
use crate::metrics::Fault;
use crate::sandbox::Room;
use crate::secrets::{self, Redactor};

/// The child's environment is built, not inherited: the basics a program
/// expects, the step's own variables, its secrets, and tidewright's. Nothing of the
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

/// Resolves the step's secrets, runs it, and masks the secrets in its
/// error and output as its lines were masked on the way.
pub(crate) async fn run_shell(
    attempt: &Attempt,
    shell: &ShellSpec,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let secrets = match secrets::resolve(&shell.secret_env, attempt.host.secrets_dir.as_deref()) {
        Ok(secrets) => secrets,
        Err(message) => return Ended::fault(Fault::Secrets, message),
    };
    // Files in the private home need one: unsandboxed, the step's home is
    // the worker's, where no secret of one step belongs.
    if !shell.secret_files.is_empty()
        && matches!(*attempt.host.sandbox, crate::sandbox::Sandbox::Off)
    {
        return Ended::fault(
            Fault::Secrets,
            "secretFiles go in the step's private home, which a worker running steps with --sandbox=off does not give",
        );
    }
    let (files, file_values) =
        match secrets::SecretFiles::write(&shell.secret_files, attempt.host.secrets_dir.as_deref())
        {
            Ok(written) => written,
            Err(message) => return Ended::fault(Fault::Secrets, message),
        };
    let redactor = attempt.redactor(secrets.values().chain(&file_values));
    let mut ended = run_process(
        attempt,
        shell,
        (&secrets, &files),
        &redactor,
        reports,
        cancel,
    )
    .await;
    drop(files);
    ended.map_error(|error| redactor.redact(error.to_string()));
    ended.output_json = redactor.redact(ended.output_json);
    remove_unless_kept(attempt).await;
    ended
}

async fn run_process(
    attempt: &Attempt,
    shell: &ShellSpec,
    (secrets, files): (&BTreeMap<String, String>, &secrets::SecretFiles),
    redactor: &Arc<Redactor>,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    mut cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let workspace = match prepare_workspace(attempt).await {
        Ok(w) => w,
        Err(e) => return Ended::fault(Fault::Workspace, format!("preparing the workspace: {e}")),
    };
    let Some((program, args)) = shell.command.split_first() else {
        return Ended::failed("the command is empty", None);
    };
    // In its repository's worktree when its task names one.
    let repo::CheckedOut { mut tree, cwd, .. } = match repo::check_out(attempt, &workspace).await {
        Ok(checked_out) => checked_out,
        Err(ended) => return ended,
    };
    let mut seeded = super::setup::Seeded::default();
    if let Some(tree) = &mut tree {
        match super::setup::provide(attempt, (&cwd, tree), redactor, reports, &mut cancel).await {
            Ok(given) => seeded = given,
            Err(ended) => return ended,
        }
        tree.exclude(&seeded.paths);
    }
    let mut command = Command::new(program);
    command.args(args);
    let env = environment(attempt, shell, secrets, &workspace);
    let mut room = Room::new(&workspace, &cwd);
    room.command = Some(program.into());
    // Its repository borrows the mirror's objects, which it may read only.
    room.readable
        .extend(tree.as_ref().map(|t| t.mirror().objects()));
    room.home_secrets = files.files().to_vec();
    room.overlays = seeded.overlays.clone();
    let end = supervise(
        attempt,
        command,
        env,
        &room,
        (StdoutLines::Plain, None),
        redactor,
        reports,
        &mut cancel,
    )
    .await;
    let mut ended = match end {
        Ok(exited) if !exited.status.success() => {
            Ended::failed(exited.failure(), exited.status.code())
        }
        Ok(exited) => match read_output(&workspace).await {
            Ok(output) => Ended::succeeded(output, exited.status.code()),
            Err(message) => Ended::failed(message, exited.status.code()),
        },
        Err(ended) => ended,
    };
    if let Some(tree) = tree {
        repo::finish(attempt, tree, &mut ended, attempt.host.keep_workspace).await;
    }
    ended
}
