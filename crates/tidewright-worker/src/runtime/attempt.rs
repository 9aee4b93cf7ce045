//! One attempt of a step: what it is given (`Attempt`), what it tells its
//! worker as it runs (`FromAttempt`), why it is stopped (`Stop`), and how it
//! ended (`Ended`).

use std::path::PathBuf;
use std::sync::Arc;

use tidewright_api::v1;
use tidewright_core::{AttemptKey, Cost, LogStream, Outcome, StepSpec};

use super::checkpoint::Checkpoints;
use crate::metrics::{Fault, WorkerMetrics};
use crate::secrets::Redactor;

/// What a running attempt tells its worker.
#[derive(Debug)]
pub enum FromAttempt {
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
    Spend { attempt: AttemptKey, cost: Cost },
    /// A connection the step asked of its egress proxy, and the verdict.
    Egress {
        attempt: AttemptKey,
        /// `host:port`.
        destination: String,
        allowed: bool,
        /// Why it was refused; empty when allowed.
        reason: String,
    },
    /// What the step's setup did, once its checkout is ready (or the
    /// setup failed).
    Setup {
        attempt: AttemptKey,
        report: tidewright_core::setup::SetupReport,
    },
    /// Items of the agent's session as its CLI streamed them (masked, each
    /// text cut), and what the attempt had cost then, in dollars.
    Said {
        attempt: AttemptKey,
        items: Vec<tidewright_core::session_item::SessionItem>,
        usd: f64,
    },
    /// Boxed: a result (with its work on a repository) is the largest
    /// message by far.
    Done(Box<v1::StepResult>),
}

/// A line longer than this is cut: one runaway line must not become one
/// huge message.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

impl FromAttempt {
    /// Items of an agent's session for replay: each text masked, then cut
    /// (so a cut never leaves part of a secret).
    pub(crate) fn said(
        attempt: &AttemptKey,
        redactor: &Redactor,
        items: Vec<tidewright_core::session_item::SessionItem>,
        usd: f64,
    ) -> Self {
        let items = items
            .into_iter()
            .map(|item| {
                item.map_texts(|text| tidewright_core::session_item::cut(redactor.redact(text)))
            })
            .collect();
        FromAttempt::Said {
            attempt: attempt.clone(),
            items,
            usd,
        }
    }

    /// A line an agent's stream gives the step's log: masked, and cut to
    /// a log line's length.
    pub(crate) fn agent_log(attempt: &AttemptKey, redactor: &Redactor, line: String) -> Self {
        let mut line = redactor.redact(line);
        tidewright_core::truncate_at_char_boundary(&mut line, MAX_LINE_BYTES);
        FromAttempt::Log {
            attempt: attempt.clone(),
            stream: LogStream::Stdout,
            line,
        }
    }
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

/// One attempt: what to run (its assignment from the control plane), and
/// the worker's facilities it runs with.
pub struct Attempt {
    pub key: AttemptKey,
    pub step: StepSpec,
    pub inputs_json: String,
    pub task_name: String,
    /// An earlier attempt's agent session this one may continue.
    pub resume: Option<ResumeFrom>,
    /// How the step reaches the control plane for shared state; `None`
    /// when the control plane gave it no token.
    pub access: Option<StepAccess>,
    /// The W3C `traceparent` of this attempt's span, given to the process as
    /// `TRACEPARENT` so what it traces joins the task's trace.
    pub traceparent: Option<String>,
    /// The task's repository, at the commit the task started from.
    pub repo: Option<tidewright_core::RepoSpec>,
    /// Its dependencies' heads in the repository, (step id, commit), in
    /// the task's order: the step starts from their merge.
    pub dependency_heads: Vec<tidewright_core::repo::DependencyHead>,
    /// Its task's egress allow-list, which the step's narrows.
    pub task_egress: Option<tidewright_core::Egress>,
    /// A landing deliver step's batch: other tasks' work it lands in the
    /// same checked merge as its own.
    pub land_riders: Vec<tidewright_core::repo::LandRider>,
    /// Sent back a failed landing to fix: the base branch whose tip is
    /// merged into its work before it runs; empty otherwise.
    pub land_fix: String,
    /// Its task's tenant: a seed made for one tenant's steps is never
    /// another's.
    pub tenant: String,
    /// The model that grades the step's rubric; empty without one.
    pub grader_model: String,
    /// Notified when the control plane asks a deliver step following a
    /// pull request to look at it now (its forge said something of it).
    pub look: Arc<tokio::sync::Notify>,
    /// People's messages for its agent (see `steer`).
    pub steers: super::steer::Steers,
    /// What it runs with: the same for every attempt of this worker.
    pub host: Arc<Host>,
}

/// What a worker's attempts run with: its directories, its sandbox, limits
/// and network, its repositories' mirrors, where sessions and branches are
/// kept, and its metrics. Made once when the worker starts.
#[derive(Clone)]
pub struct Host {
    /// The worker's root for workspaces.
    pub work_dir: PathBuf,
    /// Where the step's `secretEnv` values are read from.
    pub secrets_dir: Option<PathBuf>,
    /// Leave the workspace after the attempt, for debugging. Removed by
    /// default: it may hold what the step made of its secrets, and a
    /// long-lived worker's disk must not fill.
    pub keep_workspace: bool,
    /// The worker's metrics, which count this attempt.
    pub metrics: Arc<WorkerMetrics>,
    /// Where an agent's session is kept when the attempt ends short of
    /// success, and found when it resumes; `None` keeps sessions on this
    /// worker only.
    pub checkpoints: Option<Checkpoints>,
    /// What the step's process runs in.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
    /// What it may use.
    pub limits: Arc<crate::sandbox::limits::Limits>,
    /// Its ways out of the sandbox's network; `None` unsandboxed.
    pub egress: Option<Arc<crate::sandbox::egress::Egress>>,
    /// This worker's mirrors of repositories.
    pub mirrors: Arc<tidewright_git::mirror::Mirrors>,
    /// After the step, mirrors beyond this many bytes are evicted (0: no
    /// bound).
    pub mirrors_max_bytes: u64,
    /// Where the step's branch is kept for its dependents on other
    /// workers, and theirs found; `None` for a worker on its own (tests).
    pub branches: Option<Arc<dyn super::checkpoint::Keeper>>,
    /// An agent that calls one tool with one input this many times in a
    /// row is stopped as stalled (0: never).
    pub repeat_limit: u32,
    /// An agent whose work is as it was after this many of its turns in a
    /// row is stopped as stalled (0: never).
    pub unchanged_turns: u32,
    /// Grades verified steps' rubrics, on a worker offering `grader`.
    pub grader: Option<Arc<super::grade::Grader>>,
    /// The seeds of repositories' setups this worker keeps.
    pub seeds: Arc<crate::seeds::Seeds>,
    /// The control plane's store of seeds, shared with every worker;
    /// `None` for a worker on its own (tests).
    pub shared_seeds: Option<Arc<dyn crate::seeds::SharedSeeds>>,
}

/// What a step needs to call the control plane as itself: the worker's
/// address and CA, and the attempt's own token (never the worker's).
#[derive(Debug, Clone, PartialEq)]
pub struct StepAccess {
    pub server: String,
    pub ca_file: Option<PathBuf>,
    pub token: String,
    /// The `tidewright` executable, for `tidewright state` in scripts and the agents'
    /// MCP server; its directory joins the end of the step's `PATH`.
    pub tidewright_bin: Option<PathBuf>,
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
    /// What the session is told: a verified step's failed checks; empty
    /// to go on where it stopped.
    pub message: String,
    /// A verified step's last round's commit, which this round's own diff
    /// is from; empty before a round.
    pub round_base: String,
}

impl Attempt {
    pub(crate) fn workspace(&self) -> PathBuf {
        self.workspace_of(self.key.attempt)
    }

    /// The workspace attempt `n` of this step had on this worker.
    pub(crate) fn workspace_of(&self, n: u32) -> PathBuf {
        self.host
            .work_dir
            .join(&self.key.task_id)
            .join(&self.key.step_id)
            .join(format!("attempt-{n}"))
    }

    /// Masks `secrets` and the attempt's own token in what the step says.
    pub(crate) fn redactor<'a>(
        &'a self,
        secrets: impl Iterator<Item = &'a String>,
    ) -> Arc<Redactor> {
        Arc::new(Redactor::new(
            secrets.chain(self.access.iter().map(|a| &a.token)),
        ))
    }

    /// Sends a line of the worker's own about this attempt (a check
    /// started, the grader's verdict, a landing) to its step's log.
    pub(crate) fn log(
        &self,
        reports: &tokio::sync::mpsc::UnboundedSender<FromAttempt>,
        line: String,
    ) {
        let _ = reports.send(FromAttempt::Log {
            attempt: self.key.clone(),
            stream: LogStream::Stdout,
            line,
        });
    }

    /// Whether the step may run again after this attempt fails.
    pub(crate) fn has_attempts_left(&self) -> bool {
        self.step
            .retry
            .as_ref()
            .is_some_and(|r| r.max_attempts > self.key.attempt)
    }
}

/// How an attempt ended, before it becomes the step's result.
pub struct Ended {
    /// Succeeded, or failed or cancelled with why.
    pub(crate) outcome: Outcome,
    pub(crate) output_json: String,
    pub(crate) exit_code: Option<i32>,
    pub(crate) cost: Option<Cost>,
    /// Set when the runtime failed, not the step.
    pub(crate) fault: Option<Fault>,
    /// Stopped to run again later in the same session: its workspace stays.
    pub(crate) resumable: bool,
    /// The provider's limit stopped the agent, as its CLI reported.
    pub(crate) limited: Option<Limit>,
    /// Its dependencies' work would not merge, so it did not run.
    pub(crate) conflict: Option<tidewright_core::repo::MergeConflict>,
    /// What the step did to its task's repository.
    pub(crate) work: Option<tidewright_core::StepWork>,
    /// A verified step's checks on that work.
    pub(crate) verification: Option<tidewright_core::Verification>,
    /// Stopped by its provider's limit: what the agent did, for the one
    /// that may take the step over (see `handover`); "" otherwise.
    pub(crate) handover: String,
}

impl Ended {
    /// It ended as `outcome`, and that is all that is known yet.
    fn as_far_as_known(outcome: Outcome, output_json: String, exit_code: Option<i32>) -> Self {
        Ended {
            outcome,
            output_json,
            exit_code,
            cost: None,
            fault: None,
            resumable: false,
            limited: None,
            work: None,
            conflict: None,
            verification: None,
            handover: String::new(),
        }
    }

    pub fn succeeded(output_json: String, exit_code: Option<i32>) -> Self {
        Ended::as_far_as_known(Outcome::Succeeded, output_json, exit_code)
    }

    /// Stopped by `stop`, its process's exit `exit_code` when it had one.
    pub(crate) fn cancelled(stop: Stop, exit_code: Option<i32>) -> Self {
        Ended {
            resumable: stop.resumable,
            ..Ended::as_far_as_known(Outcome::Cancelled(stop.reason), String::new(), exit_code)
        }
    }

    pub fn failed(error: impl Into<String>, exit_code: Option<i32>) -> Self {
        Ended::as_far_as_known(Outcome::Failed(error.into()), String::new(), exit_code)
    }

    pub(crate) fn is_success(&self) -> bool {
        self.outcome == Outcome::Succeeded
    }

    pub(crate) fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Failed(_))
    }

    /// Why it failed or was cancelled; empty when it succeeded.
    pub(crate) fn error(&self) -> &str {
        match &self.outcome {
            Outcome::Succeeded => "",
            Outcome::Failed(error) | Outcome::Cancelled(error) => error,
        }
    }

    /// Rewrites why it failed or was cancelled.
    pub(crate) fn map_error(&mut self, f: impl FnOnce(&str) -> String) {
        if let Outcome::Failed(error) | Outcome::Cancelled(error) = &mut self.outcome {
            *error = f(error);
        }
    }

    /// Whether it ended at its provider's limit on a step that may move
    /// to a fallback runtime: its work is kept and summed up for the agent
    /// that takes it over.
    pub(crate) fn hands_over(&self, attempt: &Attempt) -> bool {
        self.limited.is_some() && !attempt.step.fallback.is_empty()
    }

    /// The runtime could not do its part; the step never ran to an end.
    pub fn fault(fault: Fault, error: impl Into<String>) -> Self {
        Ended {
            fault: Some(fault),
            ..Ended::failed(error, None)
        }
    }
}

/// A provider limit that ended an agent's run.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// When the limit resets (microseconds since the epoch), when the
    /// agent's reports said; `None`: the pool backs off.
    pub reset: Option<tidewright_core::Micros>,
    /// Which report decided, as people read it in the step's events.
    pub signal: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewright_core::session_item::{MAX_ITEM_BYTES, SessionItem};

    /// A secret in a tool's output, where the cut would fall in it, is
    /// masked whole before the text is cut.
    #[test]
    fn a_session_items_texts_are_masked_then_cut() {
        let secret = "sk-live-0123456789".to_string();
        let redactor = Redactor::new([&secret]);
        let key = AttemptKey {
            task_id: "t".into(),
            step_id: "s".into(),
            attempt: 1,
        };
        let output = format!("{}{secret} and more", "a".repeat(MAX_ITEM_BYTES - 5));
        let items = vec![
            SessionItem::Call {
                id: "c".into(),
                tool: "Bash".into(),
                input: format!("{{\"command\":\"echo {secret}\"}}"),
            },
            SessionItem::Output {
                id: "c".into(),
                output,
                error: false,
            },
        ];
        let FromAttempt::Said { items, usd, .. } = FromAttempt::said(&key, &redactor, items, 0.5)
        else {
            panic!("a said report");
        };
        assert_eq!(usd, 0.5);
        let shown = format!("{items:?}");
        assert!(!shown.contains("sk-live"), "{shown}");
        assert!(!shown.contains("0123456789"), "{shown}");
        match &items[1] {
            SessionItem::Output { output, .. } => {
                assert!(output.len() < MAX_ITEM_BYTES + 64, "{}", output.len());
                assert!(output.ends_with("bytes cut)"), "{output}");
            }
            other => panic!("{other:?}"),
        }
    }
}
