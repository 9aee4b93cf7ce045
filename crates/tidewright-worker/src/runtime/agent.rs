//! What an agent CLI must provide for tidewright to run it ([`AgentRuntime`]),
//! and the one way every agent's attempt runs ([`run_agent`]): its session
//! resumed when an earlier attempt left one, the CLI supervised while its
//! stream is read, the provider's limit told apart from the step's own
//! failure, the cost so far kept when the run is cut short, and the session
//! kept for a retry on any worker when it did not succeed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewright_core::Cost;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use super::agent_stream::AgentStream;
use super::agents::AgentSettings;
use super::attempt::{Attempt, Ended, FromAttempt, Limit, Stop};
use super::dir_home::DirHome;
use super::prices::Prices;
use super::process::{StdoutLines, basic_environment, supervise};
use super::repo;
use super::session::{
    TranscriptPlaces, Transcripts, keep_session, keep_session_while_running, place_session,
    transcript_now,
};
use super::spend::{SpendReader, read_spend_while_running};
use super::workspace::{
    RETAIN_FOR, finish_workspace, has_inputs, prepare_workspace, ready_workspace, sweep_retained,
};
use crate::metrics::Fault;
use crate::sandbox::Room;
use crate::sandbox::model_proxy::{ModelProxy, Reach};
use crate::secrets::Redactor;

/// The most a stop waits for the CLI to write its session's transcript.
const TRANSCRIPT_WAIT: Duration = Duration::from_secs(5);

/// What a resumed session is told: the session holds the original prompt
/// and everything done since.
pub(crate) const RESUME_PROMPT: &str = "Your previous run on this task stopped before it finished. \
Continue from where you left off and complete the original request.";

/// The prompt an agent CLI is given: the step's (told where its inputs
/// are, when it has some), or, when it resumes a session, what the session
/// is `told` (a verified step's failed checks) or else [`RESUME_PROMPT`];
/// after the `briefing` when there is one. A new session that was to be
/// told something gets it after the step's prompt.
pub(crate) fn agent_prompt(
    prompt: &str,
    with_inputs: bool,
    (resume, told): (Option<&str>, &str),
    briefing: Option<&str>,
) -> String {
    let mut text = briefing.unwrap_or_default().to_string();
    match resume {
        Some(_) if !told.is_empty() => text.push_str(told),
        Some(_) => text.push_str(RESUME_PROMPT),
        None => {
            text.push_str(prompt);
            if with_inputs {
                text.push_str(
                    "\n\nThe outputs of the steps this one depends on are in context/inputs.json.",
                );
            }
            if !told.is_empty() {
                text.push_str("\n\n");
                text.push_str(told);
            }
        }
    }
    text
}

/// What one run of an agent CLI is launched with: the attempt, its
/// workspace, the directory it runs in (the workspace, or its
/// repository's worktree in it), the session it continues, and what comes
/// before the step's prompt (a conflict to resolve first).
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    pub attempt: &'a Attempt,
    pub workspace: &'a Path,
    pub cwd: &'a Path,
    pub resume: Option<&'a str>,
    pub briefing: Option<&'a str>,
}

impl Launch<'_> {
    /// The prompt this run is given for a step whose prompt is `step`
    /// (see `agent_prompt`).
    pub fn prompt(&self, step: &str) -> String {
        let told = self
            .attempt
            .resume
            .as_ref()
            .map_or("", |r| r.message.as_str());
        agent_prompt(
            step,
            has_inputs(&self.attempt.inputs_json),
            (self.resume, told),
            self.briefing,
        )
    }
}

/// One step of agent CLI `R`, as this worker runs it: how the worker
/// runs the CLI, the step's spec, the model it runs, and how it reaches
/// its model API.
pub struct AgentStep<'a, R: AgentRuntime> {
    pub settings: &'a AgentSettings,
    pub spec: &'a R::Spec,
    /// The step's model, else the worker's, else the CLI's default.
    pub model: String,
    /// Through the worker's model proxy: the CLI gets this attempt's key
    /// and the proxy's address, never the worker's credential.
    pub reach: Reach,
}

impl<'a, R: AgentRuntime> AgentStep<'a, R> {
    pub fn new(settings: &'a AgentSettings, proxy: Option<&ModelProxy>, spec: &'a R::Spec) -> Self {
        AgentStep {
            settings,
            spec,
            model: settings.model_for(R::model(spec), R::DEFAULT_MODEL),
            reach: Reach::new(proxy),
        }
    }

    /// The credentials handed to the CLI: masked in all the step says.
    fn secrets(&self) -> Vec<&String> {
        self.settings
            .secrets()
            .chain(self.reach.attempt_key())
            .collect()
    }

    /// The CLI's executable: a sandboxed step may read it and what is
    /// around it.
    fn program(&self) -> &Path {
        &self.settings.bin
    }

    /// Where the CLI keeps its own state (made before a run).
    pub fn home(&self) -> &Path {
        &self.settings.home
    }

    /// The CLI's environment for `launch`: the attempt's own, the worker's
    /// home for the CLI as `HOME`, the run's own home (where the CLI sees
    /// it) and the model API's key and address in `vars`' variables.
    pub fn environment(
        &self,
        launch: &Launch,
        seen_home: &Path,
        vars: &CliVars,
    ) -> BTreeMap<String, String> {
        let mut env = basic_environment(launch.attempt, launch.workspace);
        env.insert("HOME".into(), self.home().display().to_string());
        env.insert(vars.home.into(), seen_home.display().to_string());
        if let Some(key) = self.reach.key(self.settings.api_key.as_ref()) {
            env.insert(vars.key.into(), key);
        }
        if let (Some(var), Some(url)) = (vars.base_url, self.api_url()) {
            env.insert(var.into(), url.to_string());
        }
        for (var, value) in vars.fixed {
            env.insert(var.to_string(), value.to_string());
        }
        env
    }

    /// What the step's model costs: the worker's prices for it, else
    /// `list`'s (the provider's list prices).
    pub fn prices(&self, list: fn(&str) -> Prices) -> Prices {
        Prices::for_model(&self.model, &self.settings.prices, list)
    }

    /// The model API's address as the run reaches it: the worker's proxy,
    /// else the base URL the worker was given, else the CLI's own.
    pub fn api_url(&self) -> Option<&str> {
        self.reach.proxy_url().or(self.settings.base_url.as_deref())
    }

    /// After the CLI's process ended (whatever became of it), in `cwd`: a
    /// home per working directory gets its settings back without the
    /// step's token, which goes with the run.
    fn ran(&self, cwd: &Path) {
        if let Some(home) = R::DIR_HOME {
            home.ran(self.home(), cwd);
        }
    }
}

/// A run whose process exited: its exit, what its stream read, what a
/// resumed session cost before this attempt, and what masks secrets in
/// what the run's end says.
pub struct Exit<'a, S> {
    pub status: ExitStatus,
    pub stream: &'a S,
    pub session_usd_before: f64,
    pub redactor: &'a Redactor,
}

/// The variables an agent CLI with a home per working directory reads,
/// as a run sets them: one row per CLI.
pub struct CliVars {
    /// Where the CLI finds its home.
    pub home: &'static str,
    /// The model API's key.
    pub key: &'static str,
    /// The model API's address, for a CLI that reads it from a variable.
    pub base_url: Option<&'static str>,
    /// Set as they are for every run.
    pub fixed: &'static [(&'static str, &'static str)],
}

/// An agent CLI: what is its own in running a step, implemented on a
/// type that names it. The next CLI is a new folder beside `claude/`
/// implementing this, and a row in `agents.rs`.
pub trait AgentRuntime: Sized + Send + Sync {
    /// What a step of this CLI says to run (its runtime's field, or the
    /// `agent` step's).
    type Spec: Send + Sync;
    /// What reads one run's stdout.
    type Stream: AgentStream + Default;
    /// For a CLI that reads its settings from its home: its homes, one
    /// per working directory.
    const DIR_HOME: Option<DirHome> = None;
    /// The model when neither the step nor the worker names one; empty
    /// for a CLI left to choose its own.
    const DEFAULT_MODEL: &'static str;
    /// The model the step names.
    fn model(spec: &Self::Spec) -> Option<&String>;
    /// The prompt the step names (a run is given it as `Launch::prompt`
    /// makes it).
    fn prompt(spec: &Self::Spec) -> &str;
    /// What of its home a run in `cwd` keeps on the worker, as paths
    /// under the home (its transcripts of `cwd`, which a resume reads): a
    /// sandboxed run's home is private and gone after it, but for these.
    fn kept_in_home(cwd: &Path) -> Vec<PathBuf> {
        Self::DIR_HOME.iter().map(|home| home.of(cwd)).collect()
    }
    /// Where the CLI keeps its sessions' transcripts under its home.
    const TRANSCRIPTS: TranscriptPlaces;
    /// A reader for a new run.
    fn stream(step: &AgentStep<Self>) -> Self::Stream;
    /// The CLI's command and exactly its environment, as `launch` says.
    fn command(step: &AgentStep<Self>, launch: &Launch) -> (Command, BTreeMap<String, String>);
    /// How a run whose process exited ended, from what its stream said.
    fn ended(step: &AgentStep<Self>, exit: Exit<'_, Self::Stream>) -> Ended;
    /// For a CLI that reads its input while it runs, where people's
    /// messages reach its session (see `steer`): what feeds it, its prompt
    /// first, watching `stream` for what it took. `None`: the prompt is in
    /// its command and it reads no input.
    fn input(
        _step: &AgentStep<Self>,
        _launch: &Launch,
        _stream: &mut Self::Stream,
    ) -> Option<super::steer::Input> {
        None
    }
}

impl<S> Exit<'_, S> {
    /// How the run of `cli`, which reports its tokens for tidewright to price
    /// as `cost`, ended by its `result` line: succeeded with `output` (its
    /// answer, session and model; the cost is added to it), or failed with
    /// the error the line named (the CLI's exit when it named none). A run
    /// with no `result` line is the runtime's fault.
    pub(crate) fn by_result(
        &self,
        cli: &str,
        result: Option<Result<serde_json::Value, &str>>,
        cost: Cost,
    ) -> Ended {
        let (status, redactor) = (self.status, self.redactor);
        let mut ended = match result {
            None => {
                return Ended {
                    exit_code: status.code(),
                    ..Ended::fault(
                        Fault::NoResult,
                        format!(
                            "the {cli} CLI ended without a result ({})",
                            super::process::describe_exit(status)
                        ),
                    )
                };
            }
            Some(Ok(mut output)) => {
                output["cost"] = serde_json::json!({
                    "usd": cost.usd,
                    "inputTokens": cost.input_tokens,
                    "outputTokens": cost.output_tokens,
                    "cacheReadTokens": cost.cache_read_tokens,
                });
                Ended::succeeded(redactor.redact(output.to_string()), status.code())
            }
            Some(Err(error)) => {
                let error = if error.is_empty() {
                    format!("the {cli} CLI {}", super::process::describe_exit(status))
                } else {
                    error.to_string()
                };
                Ended::failed(redactor.redact(error), status.code())
            }
        };
        ended.cost = Some(cost);
        ended
    }
}

/// Runs an agent's attempt to its end: in a new session, or continuing an
/// earlier attempt's (its workspace on this worker, or restored from the
/// step's checkpoint).
pub(crate) async fn run_agent<R: AgentRuntime>(
    runtime: &AgentStep<'_, R>,
    attempt: &Attempt,
    reports: &mpsc::UnboundedSender<FromAttempt>,
    mut cancel: oneshot::Receiver<Stop>,
) -> Ended {
    let redactor = attempt.redactor(runtime.secrets().into_iter());
    if let Err(e) = tokio::fs::create_dir_all(runtime.home()).await {
        return Ended::fault(
            Fault::Workspace,
            format!("creating the CLI's home {}: {e}", runtime.home().display()),
        );
    }
    if !attempt.host.keep_workspace {
        sweep_retained(&attempt.host.work_dir, RETAIN_FOR).await;
    }
    let log = |line: String| attempt.log(reports, line);
    let transcripts = Transcripts::new(runtime.home(), R::TRANSCRIPTS);
    let resumed = match &attempt.resume {
        Some(resume) => {
            let (found, line) = place_session(attempt, resume, &transcripts).await;
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
    // In its repository's worktree when its task names one.
    let repo::CheckedOut {
        mut tree,
        cwd,
        briefing,
    } = match repo::check_out(attempt, &workspace).await {
        Ok(checked_out) => checked_out,
        Err(ended) => return ended,
    };
    let mut seeded = super::setup::Seeded::default();
    if let Some(tree) = &mut tree {
        match super::setup::provide(attempt, (&cwd, tree), &redactor, reports, &mut cancel).await {
            Ok(given) => seeded = given,
            Err(ended) => return ended,
        }
        tree.exclude(&seeded.paths);
    }
    // A reviewer is told the change it reviews.
    let briefing = match (&attempt.step.review_of, &tree) {
        (Some(_), Some(tree)) => match super::review::briefing(attempt, tree).await {
            Ok(review) => Some(review + briefing.as_deref().unwrap_or("")),
            Err(ended) => return ended,
        },
        _ => briefing,
    };
    // A step taken over from another runtime's agent is told what it
    // left, unless it resumes a session that was told already.
    let briefing = match (&attempt.step.failover, &resumed) {
        (Some(failover), None) => {
            let to = attempt.step.agent_capability().unwrap_or_default();
            Some(
                tidewright_core::failover::briefing(failover, to)
                    + briefing.as_deref().unwrap_or(""),
            )
        }
        _ => briefing,
    };
    let launch = Launch {
        attempt,
        workspace: &workspace,
        cwd: &cwd,
        resume: resumed.as_ref().map(|(_, r)| r.session_id.as_str()),
        briefing: briefing.as_deref(),
    };
    let (command, env) = R::command(runtime, &launch);
    // The replay of a session whose stream does not say its prompt starts
    // with it all the same.
    if !R::Stream::SAYS_PROMPT {
        let text = launch.prompt(R::prompt(runtime.spec));
        let prompt = vec![tidewright_core::session_item::SessionItem::Prompt { text }];
        let _ = reports.send(FromAttempt::said(&attempt.key, &redactor, prompt, 0.0));
    }
    let mut room = Room::new(&workspace, &cwd);
    room.overlays = seeded.overlays.clone();
    room.programs.push(runtime.program().to_path_buf());
    // Its repository borrows the mirror's objects, which it may read only.
    room.readable
        .extend(tree.as_ref().map(|t| t.mirror().objects()));
    for under_home in R::kept_in_home(&cwd) {
        let kept = runtime.home().join(&under_home);
        if let Err(e) = tokio::fs::create_dir_all(&kept).await {
            return Ended::fault(
                Fault::Workspace,
                format!("creating {}: {e}", kept.display()),
            );
        }
        room.home_state.push((kept, under_home));
    }
    if let Some(told) = attempt.resume.as_ref().filter(|r| !r.message.is_empty()) {
        if told
            .message
            .starts_with(tidewright_core::steer::TOLD_PREFIX)
        {
            log(format!(
                "steered: the agent's session resumes with the message (session {})",
                told.session_id
            ));
        } else {
            log(format!(
                "sent back by its checks: the agent's turn starts, told what failed (session {})",
                told.session_id
            ));
        }
    }
    let mut stream = R::stream(runtime);
    let input = R::input(runtime, &launch, &mut stream);
    let reads_input = input.is_some();
    let input = input.map(|mut input| {
        let (key, redactor, reports) = (attempt.key.clone(), redactor.clone(), reports.clone());
        input.log = Some(Box::new(move |line| {
            let _ = reports.send(FromAttempt::agent_log(&key, &redactor, line));
        }));
        input
    });
    let stream = Arc::new(Mutex::new(stream));
    let journal = super::handover::Journal::default();
    let session_now = || {
        let stream = stream.lock().unwrap_or_else(|e| e.into_inner());
        stream.session_id().to_string()
    };
    // A stop reaches the CLI once its session's transcript is on disk, or
    // after TRANSCRIPT_WAIT: the CLI writes it a moment after each turn,
    // and a session stopped before then cannot be resumed.
    let (stop_tx, mut stop_rx) = oneshot::channel::<Stop>();
    let forward = async {
        let stop = (&mut cancel).await;
        let id = session_now();
        let until = tokio::time::Instant::now() + TRANSCRIPT_WAIT;
        while tidewright_core::validate::valid_session_id(&id)
            && transcripts.find(&id).is_none()
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Ok(stop) = stop {
            let _ = stop_tx.send(stop);
        }
    };
    let supervised = async {
        let supervised = supervise(
            attempt,
            command,
            env,
            &room,
            (StdoutLines::Events(stream.clone(), journal.clone()), input),
            &redactor,
            reports,
            &mut stop_rx,
        );
        tokio::pin!(supervised);
        tokio::select! {
            biased;
            end = &mut supervised => end,
            () = forward => supervised.await,
        }
    };
    // Where this run's lines of a resumed session's transcript start.
    let resumed_at = match &resumed {
        Some((_, resume)) => transcript_now(&transcripts, &resume.session_id)
            .await
            .map(|(path, meta)| (path, meta.len())),
        None => None,
    };
    let mut spend = SpendReader::new(resumed_at);
    // The session is kept as it grows, for a retry after this worker dies;
    // its spend is read as it grows where the stream reports it late.
    let end = tokio::select! {
        biased;
        end = supervised => end,
        never = keep_session_while_running(
            attempt,
            &workspace,
            session_now,
            &redactor,
            &transcripts,
            log,
        ) => match never {},
        never = read_spend_while_running(
            R::Stream::SPEND_IN_TRANSCRIPT,
            attempt,
            (&stream, &mut spend),
            &transcripts,
            reports,
        ) => match never {},
    };
    // What the CLI wrote since the last read: the run's own responses,
    // whole, are what it is charged.
    if R::Stream::SPEND_IN_TRANSCRIPT {
        spend.read(&stream, &transcripts).await;
    }
    runtime.ran(&cwd);
    let stream = std::mem::take(&mut *stream.lock().unwrap_or_else(|e| e.into_inner()));
    let mut ended = match end {
        Ok(exited) => {
            // A resumed session's reported cost includes what its earlier
            // attempts spent.
            let before = resumed.as_ref().map_or(0.0, |(_, r)| r.session_usd);
            let exit = Exit {
                status: exited.status,
                stream: &stream,
                session_usd_before: before,
                redactor: &redactor,
            };
            let mut ended = R::ended(runtime, exit);
            if let Some(unseen) = exited.unseen.filter(|_| ended.is_failure()) {
                ended.map_error(|error| format!("{error}: {unseen}"));
            }
            ended
        }
        Err(ended) => ended,
    };
    if ended.is_failure() && ended.fault.is_none() {
        ended.limited = stream.limit(ended.error());
        if let Some(limit) = &mut ended.limited {
            reset_from_the_provider(limit, &runtime.reach);
        }
        if let Some(line) = stream.api_error_line(ended.limited.as_ref()) {
            log(line);
        }
    }
    // Ended before its result (cancelled, timed out, stalled, killed): what
    // its responses cost so far is all that is known.
    let spent = stream.spent();
    if ended.cost.is_none() && spent != Cost::default() {
        ended.cost = Some(spent);
    }
    // A follow-up for a CLI without input: the control plane resumes the
    // session with it (here, or on another worker), so it is kept.
    if !reads_input && attempt.steers.follow_up_came().await {
        ended.resumable = true;
    }
    // A reviewer's changes are never kept; its answer is its verdict.
    let tree = match tree {
        Some(tree) if attempt.step.review_of.is_some() => {
            let _ = tree.remove().await;
            super::review::read_verdict(&mut ended);
            None
        }
        tree => tree,
    };
    if let Some(tree) = tree {
        repo::record(attempt, &tree, &mut ended).await;
        if ended.hands_over(attempt) {
            ended.handover = journal.summary(ended.work.as_ref());
        }
        verify_work(
            attempt,
            &tree,
            &mut ended,
            (&redactor, reports),
            &mut cancel,
        )
        .await;
        // A workspace kept for a resume keeps its worktree as the session
        // left it.
        let keep = attempt.host.keep_workspace
            || ended.resumable
            || (ended.is_failure() && attempt.has_attempts_left());
        repo::close(attempt, tree, &mut ended, keep).await;
    }
    // Short of success, or sent back by its checks, the session is kept
    // for a retry on any worker (before the result: the retry may start as
    // soon as it is in); so is a landing task's, which a failed landing
    // may send back to it.
    if (!ended.is_success() || ended.resumable || may_be_sent_back(attempt))
        && let Some(line) = keep_session(
            attempt,
            &workspace,
            stream.session_id(),
            &redactor,
            &transcripts,
            false,
        )
        .await
    {
        log(line);
    }
    if ended.hands_over(attempt) && ended.handover.is_empty() {
        ended.handover = journal.summary(None);
    }
    finish_workspace(attempt, &workspace, &ended).await;
    ended
}

/// Whether the step's task lands, or follows its pull request, with
/// rounds of fixes: a failure there then resumes its agent's session, on
/// any worker.
fn may_be_sent_back(attempt: &Attempt) -> bool {
    let Some(repo) = attempt.repo.as_ref() else {
        return false;
    };
    // A reviewed step's session may be sent the reviewer's comments.
    if attempt.step.review.is_some() {
        return true;
    }
    let landing = repo.land.as_ref().is_some_and(|land| land.fixes() > 0);
    let followed = repo
        .pull_request
        .as_ref()
        .is_some_and(|pr| pr.follows() && pr.fixes() > 0);
    landing || followed
}

/// A verified step whose agent succeeded: its checks run on the work it
/// committed, and its rubric is graded once they pass. When the round does
/// not pass, the session and workspace are kept for the round that resumes
/// it.
async fn verify_work(
    attempt: &Attempt,
    tree: &tidewright_git::worktree::Worktree,
    ended: &mut Ended,
    (redactor, reports): (&Arc<Redactor>, &mpsc::UnboundedSender<FromAttempt>),
    cancel: &mut oneshot::Receiver<Stop>,
) {
    let (Some(spec), Some(work)) = (&attempt.step.verify, &ended.work) else {
        return;
    };
    if !ended.is_success() {
        return;
    }
    let work = work.clone();
    match super::verify::run_checks(attempt, spec, (tree, &work), redactor, reports, cancel).await {
        Ok(found) => {
            ended.resumable = !found.passed();
            // The grader's call is charged to the attempt, as its agent's are.
            if let Some(grade) = &found.grade {
                ended.cost = Some(ended.cost.unwrap_or_default() + grade.cost);
            }
            ended.verification = Some(found);
        }
        Err(stopped) => {
            *ended = Ended {
                work: Some(work),
                cost: ended.cost,
                ..stopped
            };
        }
    }
}

/// A limit resets when the provider said, as the model proxy read its
/// answer (what the CLI reports of it, when it does, is the fallback: a
/// run without the proxy), with a little jitter so the pool's agents do
/// not all call at the instant it resets; the event names the source.
fn reset_from_the_provider(limit: &mut Limit, reach: &Reach) {
    let Some(said) = reach.reset_seen() else {
        return;
    };
    let wait = (said.at - tidewright_core::calendar::now_micros()).max(0);
    let spread = std::time::Duration::from_micros((wait / 10).min(1_000_000) as u64);
    let jitter = tidewright_core::jitter::jitter(spread, 0.0, 1.0).as_micros() as i64;
    limit.reset = Some(said.at + jitter);
    limit.signal = format!("{}; reset from {}", limit.signal, said.source);
}
