//! The deliver step, which tidewright adds after the last steps of a task that
//! names a repository: its worktree starts from the merge of those steps'
//! heads, so its branch, `tidewright/<task>`, is the task's work, measured from
//! the task's commit. It runs nothing; it pushes the branch when the
//! task's `repo` asks for a push or a pull request, and opens the pull
//! request, and follows it when asked (`follow`); or, when the task lands
//! through its base's queue, lands it (`land`). Nothing is pushed when the
//! task changed nothing.

use tidewright_core::RepoSpec;
use tidewright_git::worktree::Worktree;

use tokio::sync::{mpsc, oneshot};

use super::attempt::{Attempt, Ended, FromAttempt, Stop};
use super::repo;
use super::workspace::{prepare_workspace, remove_unless_kept};
use crate::metrics::Fault;

pub(crate) async fn run_deliver(
    attempt: &Attempt,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    mut cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let Some(task_repo) = attempt.repo.clone() else {
        return Ended::fault(
            Fault::Repository,
            "the deliver step's task names no repository",
        );
    };
    let workspace = match prepare_workspace(attempt).await {
        Ok(w) => w,
        Err(e) => return Ended::fault(Fault::Workspace, format!("preparing the workspace: {e}")),
    };
    let mut tree = match repo::check_out(attempt, &workspace).await {
        Ok(repo::CheckedOut {
            tree: Some(tree), ..
        }) => tree,
        Ok(_) => unreachable!("a task with a repository checks out a worktree"),
        Err(ended) => return ended,
    };
    tree.measure_from(&task_repo.commit);
    let mut ended = Ended::succeeded(String::new(), None);
    repo::record(attempt, &tree, &mut ended).await;
    let mut opened = None;
    if ended.is_success() {
        opened = deliver(attempt, &task_repo, &tree, &mut ended).await;
    }
    if let (Some(pr), Some((number, url))) = (&task_repo.pull_request, opened)
        && pr.follows()
        && ended.is_success()
    {
        super::follow::follow(
            attempt,
            (&task_repo, pr),
            (number, &url),
            &mut ended,
            (reports, &mut cancel),
        )
        .await;
    }
    if let Some(land) = &task_repo.land
        && ended.is_success()
    {
        super::land::land(
            attempt,
            (&task_repo, land),
            &tree,
            &mut ended,
            (reports, &mut cancel),
        )
        .await;
    }
    if !attempt.host.keep_workspace {
        let _ = tree.remove().await;
    }
    repo::evict(attempt).await;
    remove_unless_kept(attempt).await;
    ended
}

/// Pushes the branch and opens the pull request the task asks for, and
/// says what was delivered in the step's output; the pull request's
/// number and page, when one is open.
async fn deliver(
    attempt: &Attempt,
    task_repo: &RepoSpec,
    tree: &Worktree,
    ended: &mut Ended,
) -> Option<(u64, String)> {
    let work = ended.work.as_mut()?;
    let mut opened = None;
    let changed = work.head_commit != task_repo.commit;
    if changed && (task_repo.push || task_repo.pull_request.is_some()) {
        let credentials = match repo::credentials(attempt) {
            Ok(credentials) => credentials,
            Err(why) => {
                *ended = Ended::fault(Fault::Repository, why);
                return None;
            }
        };
        if let Err(e) = tree
            .mirror()
            .push(&task_repo.url, &work.branch, credentials.as_ref())
            .await
        {
            let why = match e {
                tidewright_git::Error::Refused { .. } => format!("repo.{e}"),
                other => format!("pushing {}: {other}", work.branch),
            };
            *ended = Ended::fault(Fault::Delivery, why);
            return None;
        }
        work.pushed = true;
        if let Some(pr) = &task_repo.pull_request {
            match pull_request(task_repo, pr, tree, &work.branch, credentials.as_ref()).await {
                Ok(pr) => {
                    work.pull_request_url = pr.url.clone();
                    opened = Some((pr.number, pr.url));
                }
                Err(why) => {
                    // The branch went up for the pull request alone: it
                    // does not stay without one.
                    let mut why = why;
                    if !task_repo.push {
                        match tree
                            .mirror()
                            .delete_pushed(&task_repo.url, &work.branch, credentials.as_ref())
                            .await
                        {
                            Ok(()) => why.push_str("; the branch pushed for it was deleted"),
                            Err(e) => {
                                why.push_str(&format!("; deleting the branch pushed for it: {e}"))
                            }
                        }
                    }
                    *ended = Ended::fault(Fault::Delivery, why);
                    return None;
                }
            }
        }
    }
    ended.output_json = serde_json::json!({
        "branch": work.branch,
        "head": work.head_commit,
        "changed": changed,
        "pushed": work.pushed,
        "pullRequest": work.pull_request_url,
    })
    .to_string();
    opened
}

/// Opens the task's pull request from its pushed branch (or finds it open
/// from an earlier attempt): to the base it names, else the task's ref
/// when that is a branch, else the remote's default branch.
async fn pull_request(
    task_repo: &RepoSpec,
    pr: &tidewright_core::repo::PullRequestSpec,
    tree: &Worktree,
    branch: &str,
    credentials: Option<&tidewright_git::Credentials>,
) -> Result<tidewright_git::forge::PullRequest, String> {
    let (forge, api) = tidewright_core::repo::forge_of(task_repo).ok_or_else(|| {
        "repo.pullRequest.forge: tidewright cannot tell whose API to call".to_string()
    })?;
    let named = [pr.base.as_str(), task_repo.git_ref.as_str()]
        .into_iter()
        .map(|b| b.strip_prefix("refs/heads/").unwrap_or(b))
        .find(|b| !b.is_empty() && *b != "HEAD" && !b.starts_with("refs/"));
    let base = match named {
        Some(base) => base.to_string(),
        None => tree
            .mirror()
            .default_branch(&task_repo.url, credentials)
            .await
            .map_err(|e| format!("repo.pullRequest.base: {e}"))?,
    };
    let ask = tidewright_git::forge::Ask {
        forge: &forge,
        api: &api,
        repo_url: &task_repo.url,
        head: branch,
        base: &base,
        title: &pr.title,
        body: &pr.body,
    };
    tidewright_git::forge::open_pull_request(&ask, credentials)
        .await
        .map_err(|e| match e {
            tidewright_git::Error::Refused { .. } => format!("repo.{e}"),
            other => format!("repo.pullRequest: {other}"),
        })
}
