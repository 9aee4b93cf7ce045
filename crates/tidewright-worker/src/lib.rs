//! tidewright's worker: holds a Connect stream to the control plane, registers its
//! capabilities and slots, asks for work with credits, and runs each
//! assignment in a runtime. Steps outlive the stream: when the control plane
//! goes away the worker reconnects with backoff, reclaims the attempts it is
//! still running, and delivers the results it could not send.

mod config;
mod error;
pub mod http;
mod isolation;
mod keeper;
pub mod mcp;
pub mod metrics;
pub mod program;
mod quota;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod seeds;

#[cfg(test)]
mod drain_tests;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tidewright_api::abort::AbortOnDrop;
use tidewright_api::client::{Bearer, ClientTls};
use tidewright_api::leader::{Choice, LEADER_KEY};
use tidewright_api::v1;
use tidewright_api::v1::agent_service_client::AgentServiceClient;
use tidewright_api::v1::server_message::Kind;
use tidewright_core::AttemptKey;
use tidewright_core::jitter::jitter;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::Instrument;

pub use crate::config::{
    DEFAULT_MAX_SEED_BYTES, DEFAULT_SEED_CACHE_BYTES, DEFAULT_SPARE_WORKTREES, WorkerConfig,
};
pub use crate::error::Error;
pub use crate::http::HttpSettings;
use crate::isolation::Isolation;
use crate::metrics::WorkerMetrics;
use crate::runtime::checkpoint::Checkpoints;
pub use crate::runtime::{AgentCli, AgentSettings};
use crate::runtime::{Attempt, FromAttempt};
pub use crate::sandbox::limits::{LimitSettings, Limits};
pub use crate::sandbox::{Sandbox, SandboxMode, SandboxSettings};

fn endpoint(server: &str, tls: &ClientTls) -> Result<Endpoint, Error> {
    tidewright_api::client::endpoint(server, tls).map_err(|e| Error::Settings(e.to_string()))
}

/// How long a stopping worker waits for its cancelled steps to end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Ends our half of the stream and waits for the control plane to end its
/// half, so the last messages (a hand-back, a final result) are read before
/// the connection goes. Dropping the stream instead would reset it.
async fn close_gracefully(
    outbound: mpsc::Sender<v1::WorkerMessage>,
    inbound: &mut tonic::Streaming<v1::ServerMessage>,
) {
    drop(outbound);
    let _ = tokio::time::timeout(STOP_WAIT, async {
        while let Ok(Some(_)) = inbound.message().await {}
    })
    .await;
}

/// Resolves at `deadline`; never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Used when the control plane does not say how often to heartbeat.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// What lives across sessions.
struct Worker {
    config: WorkerConfig,
    bearer: Bearer,
    /// The replica to connect to: the leader, as far as the worker knows.
    replicas: Choice,
    /// Running attempts and how to cancel each (taken once used).
    running: HashMap<AttemptKey, Option<oneshot::Sender<runtime::Stop>>>,
    /// Each running attempt's call to look at its pull request now.
    looks: HashMap<AttemptKey, Arc<tokio::sync::Notify>>,
    /// Where each running attempt takes people's messages for its agent.
    steers: HashMap<AttemptKey, tokio::sync::mpsc::UnboundedSender<runtime::Steer>>,
    /// Results not yet handed to a session.
    undelivered: VecDeque<v1::StepResult>,
    reports: mpsc::UnboundedReceiver<FromAttempt>,
    report_tx: mpsc::UnboundedSender<FromAttempt>,
    /// Shared by every Claude Code attempt.
    agents: Arc<runtime::Agents>,
    metrics: Arc<WorkerMetrics>,
    /// The current session's connection, for the checkpoints' calls.
    channel: watch::Sender<Option<Channel>>,
    /// What every attempt runs with: directories, sandbox, limits, egress,
    /// mirrors, where sessions and branches are kept.
    host: Arc<runtime::Host>,
    /// How steps are isolated and limited, as registration says it.
    isolation: String,
    /// The steps it may still be given (`--steps`).
    quota: quota::Quota,
    /// How far it got, for whoever started it.
    progress: watch::Sender<Progress>,
}

/// Where the mirrors are, in the work directory.
const MIRRORS_DIR: &str = ".mirrors";
/// Where the spare worktrees are, in the work directory.
const SPARES_DIR: &str = ".spares";
/// Beside the workspaces: the seeds of repositories' setups.
const SEEDS_DIR: &str = ".seeds";

/// Runs the worker until `shutdown` resolves; running steps are then
/// cancelled.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    start(config, shutdown).await?.ended().await
}

/// Where a started worker is on its way to taking work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not yet registered; `last_error` says why the last try failed.
    Connecting { last_error: Option<String> },
    /// The control plane has taken its registration (at least once).
    Registered,
}

/// A worker whose setup is done and whose sessions run in a task of their
/// own: its owner reads how far it got and how it ended, so a start
/// failure is never left unread.
pub struct Started {
    progress: watch::Receiver<Progress>,
    sessions: tokio::task::JoinHandle<Result<(), Error>>,
}

/// How the sessions' task ended.
fn ended(joined: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    joined.unwrap_or_else(|join| Err(Error::Protocol(format!("the worker panicked: {join}"))))
}

impl Started {
    /// Waits until the worker has registered, or `limit` passed, or it
    /// ended: then it is gone, and the error says why.
    pub async fn registered(mut self, limit: Duration) -> Result<Started, Error> {
        let mut progress = self.progress.clone();
        let waited = tokio::time::timeout(limit, async {
            tokio::select! {
                // Only the sessions' end drops the sender: that is the
                // other arm's to read.
                Ok(_) = progress.wait_for(|p| *p == Progress::Registered) => None,
                joined = &mut self.sessions => Some(ended(joined)),
            }
        })
        .await;
        match waited {
            Ok(None) => Ok(self),
            Ok(Some(Ok(()))) => Err(Error::Stopped),
            Ok(Some(Err(e))) => Err(e),
            Err(_) => {
                // Not left trying behind its owner's back.
                self.sessions.abort();
                let last_error = match &*self.progress.borrow() {
                    Progress::Connecting { last_error } => last_error.clone(),
                    Progress::Registered => None,
                };
                Err(Error::NotRegistered { limit, last_error })
            }
        }
    }

    /// Waits until the worker ends: `Ok` once it stopped as asked.
    pub async fn ended(self) -> Result<(), Error> {
        ended(self.sessions.await)
    }
}

/// Sets the worker up (its work directory, its sandbox, its proxies): an
/// error here is why it cannot run at all. Then its sessions start in a
/// task of their own, until `shutdown` resolves.
pub async fn start(
    mut config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Started, Error> {
    let replicas = Choice::new(&config.server).map_err(|e| Error::Settings(e.to_string()))?;
    for server in replicas.servers() {
        endpoint(server, &config.tls)?;
    }
    // Steps run inside their workspace, so every path handed to them
    // ($TIDEWRIGHT_OUTPUT...) must be absolute.
    let work_dir_error = |source| Error::WorkDir {
        path: config.work_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.work_dir).map_err(work_dir_error)?;
    config.work_dir = std::path::absolute(&config.work_dir).map_err(work_dir_error)?;
    let bearer =
        Bearer::new(config.token.as_deref()).map_err(|e| Error::Protocol(e.to_string()))?;
    // Each CLI's home sits beside the workspaces unless set: one per
    // worker, kept between attempts (its transcripts make a resume possible).
    let mut agents = runtime::Agents::new(&config.agents, &config.work_dir);
    let metrics = Arc::new(WorkerMetrics::new(config.slots));
    // Checked before the first step can come.
    let isolation = Isolation::make(&config, &mut agents, &metrics).await?;
    // A worker offering `grader` can grade, or does not start.
    let grader = if config
        .capabilities
        .iter()
        .any(|c| c == tidewright_core::verify::grade::GRADER)
    {
        let grader = runtime::grade::Grader::start(&agents)
            .await
            .map_err(Error::Settings)?;
        Some(Arc::new(grader))
    } else {
        None
    };
    let http = match &config.http {
        Some(settings) => {
            let (addr, serving) = http::serve(settings, metrics.clone()).await?;
            tracing::info!(%addr, "worker metrics and health on HTTP");
            Some(AbortOnDrop(serving))
        }
        None => None,
    };
    isolation.log();
    let (report_tx, reports) = mpsc::unbounded_channel();
    let (channel, connection) = watch::channel(None);
    let control_plane = Arc::new(keeper::ControlPlaneKeeper::new(connection, bearer.clone()));
    let keeper: Arc<dyn runtime::checkpoint::Keeper> = control_plane.clone();
    let checkpoints = (config.checkpoint_max_bytes > 0).then(|| Checkpoints {
        keeper: keeper.clone(),
        max_bytes: config.checkpoint_max_bytes,
        every: config.checkpoint_every,
    });
    // One mirror per repository for all of this worker's steps, beside
    // their workspaces unless told otherwise.
    let mirrors = Arc::new(
        tidewright_git::mirror::Mirrors::new(
            config
                .mirrors_dir
                .clone()
                .unwrap_or_else(|| config.work_dir.join(MIRRORS_DIR)),
            tidewright_git::program(),
        )
        .with_spares(config.work_dir.join(SPARES_DIR), config.spare_worktrees),
    );
    let seeds_dir = config
        .seeds_dir
        .clone()
        .unwrap_or_else(|| config.work_dir.join(SEEDS_DIR));
    let seeds = seeds::Seeds::open(
        seeds_dir.clone(),
        config.max_seed_bytes,
        config.seed_cache_bytes,
    )
    .map_err(|source| Error::WorkDir {
        path: seeds_dir.display().to_string(),
        source,
    })?;
    // Seeds are laid over checkouts where the sandbox can; else copied,
    // which costs time and disk but no safety, and the log says so.
    let seeds = match sandbox::overlay::probe(&isolation.sandbox, &seeds_dir).await {
        Ok(()) => seeds.with_overlays(true),
        Err(why) => {
            tracing::info!(
                method = seeds.method().as_str(),
                "seeds are copied into checkouts, not laid over them: {why}"
            );
            seeds
        }
    };
    let steps = config.steps;
    let (progress, progress_rx) = watch::channel(Progress::Connecting { last_error: None });
    let isolation_described = isolation.describe();
    let host = Arc::new(runtime::Host {
        work_dir: config.work_dir.clone(),
        secrets_dir: config.secrets_dir.clone(),
        keep_workspace: config.keep_workspaces,
        repeat_limit: config.repeat_limit,
        unchanged_turns: config.unchanged_turns,
        metrics: metrics.clone(),
        checkpoints,
        sandbox: Arc::new(isolation.sandbox),
        limits: Arc::new(isolation.limits),
        egress: isolation.egress.clone(),
        mirrors,
        mirrors_max_bytes: config.mirrors_max_bytes,
        // Where steps' branches are kept for steps on other workers: the
        // control plane, always (a step's dependents may run anywhere).
        branches: Some(keeper),
        grader,
        seeds: Arc::new(seeds),
        shared_seeds: Some(control_plane),
    });
    let worker = Worker {
        host,
        channel,
        bearer,
        replicas,
        config,
        running: HashMap::new(),
        looks: HashMap::new(),
        steers: HashMap::new(),
        undelivered: VecDeque::new(),
        reports,
        report_tx,
        agents: Arc::new(agents),
        metrics,
        isolation: isolation_described,
        quota: quota::Quota::new(steps),
        progress,
    };
    // Shutdown starts a drain; the session and the reconnect wait watch it.
    let (start_drain, drain) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = start_drain.send(true);
    });
    let sessions = tokio::spawn(async move {
        let ended = worker.sessions(drain).await;
        drop(http);
        ended
    });
    Ok(Started {
        progress: progress_rx,
        sessions,
    })
}

impl Worker {
    /// Connects, and connects again, until drained or refused for good.
    async fn sessions(mut self, mut drain: watch::Receiver<bool>) -> Result<(), Error> {
        let mut delay = self.config.reconnect_min;
        loop {
            let session = self.session(drain.clone()).await;
            self.metrics.set_connected(false);
            if let Err(e) = &session {
                self.progress.send_if_modified(|p| match p {
                    Progress::Connecting { last_error } => {
                        *last_error = Some(e.to_string());
                        true
                    }
                    Progress::Registered => false,
                });
            }
            match session {
                Ok(SessionEnd::Drained) => break,
                Ok(SessionEnd::Closed { registered }) => {
                    tracing::info!(worker = %self.config.name, "control plane closed the stream; reconnecting");
                    if registered {
                        delay = self.config.reconnect_min;
                    }
                }
                // Reconnecting cannot fix a refusal of who we are or what we
                // registered: stop and say why.
                Err(Error::Refused(status))
                    if matches!(
                        status.code(),
                        tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                            | tonic::Code::InvalidArgument
                    ) =>
                {
                    self.stop_all("the worker was refused").await;
                    return Err(Error::Refused(status));
                }
                // A standby named the leader: go there now.
                Err(Error::Refused(status)) if status.metadata().get(LEADER_KEY).is_some() => {
                    tracing::info!(worker = %self.config.name, leader = %self.replicas.current(), "following the leader");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(worker = %self.config.name, error = %e, "session ended; reconnecting")
                }
            }
            // Draining with no control plane to hand steps back to: stop them.
            if *drain.borrow() {
                break;
            }
            // Runners keep going while disconnected; their results wait.
            tokio::select! {
                _ = drain.changed() => break,
                _ = // Up to a quarter less, so a fleet does not reconnect in lockstep.
                tokio::time::sleep(jitter(delay, 0.75, 1.0)) => {}
            }
            delay = (delay * 2).min(self.config.reconnect_max);
        }
        self.stop_all("the worker is stopping").await;
        Ok(())
    }
}

/// How a session ended.
enum SessionEnd {
    /// The control plane closed the stream; reconnect.
    Closed { registered: bool },
    /// The worker drained: nothing runs here any more.
    Drained,
}

impl Worker {
    /// One Connect stream, from register to its end or to a finished drain.
    async fn session(&mut self, mut drain: watch::Receiver<bool>) -> Result<SessionEnd, Error> {
        // Read at each connect, so renewed client certificates are used.
        let server = self.replicas.current().to_string();
        let endpoint = endpoint(&server, &self.config.tls)?
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        let session = self.connected(endpoint, &mut drain).await;
        match &session {
            Err(Error::Refused(status)) => self.replicas.learn(&server, status),
            Err(Error::Connect(_)) => self.replicas.failed(&server),
            _ => {}
        }
        session
    }

    /// The session on a connection to `endpoint`.
    async fn connected(
        &mut self,
        endpoint: Endpoint,
        drain: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, Error> {
        let closed = Ok(SessionEnd::Closed { registered: true });
        let channel = endpoint.connect().await?;
        self.channel.send_replace(Some(channel.clone()));
        let mut client = AgentServiceClient::with_interceptor(channel, self.bearer.clone());

        let (outbound, outgoing) = mpsc::channel::<v1::WorkerMessage>(1024);
        let mut reclaim: Vec<v1::AttemptRef> =
            self.running.keys().map(v1::AttemptRef::from).collect();
        reclaim.extend(self.undelivered.iter().filter_map(|r| r.attempt.clone()));
        let register = v1::WorkerMessage {
            kind: Some(v1::worker_message::Kind::Register(v1::Register {
                name: self.config.name.clone(),
                pool: self.config.pool.clone(),
                capabilities: self.config.capabilities.clone(),
                slots: self.config.slots,
                running: reclaim,
                max_concurrent_agents: self.config.max_concurrent_agents,
                isolation: self.isolation.clone(),
            })),
        };
        outbound
            .send(register)
            .await
            .map_err(|_| Error::Protocol("outbound stream closed".into()))?;
        let mut inbound = client
            .connect(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        let heartbeat_every = match inbound.message().await? {
            Some(v1::ServerMessage {
                kind: Some(Kind::Registered(registered)),
            }) => {
                tracing::info!(worker = %self.config.name, id = %registered.worker_id, "registered");
                self.metrics.set_connected(true);
                self.progress.send_replace(Progress::Registered);
                match registered.heartbeat_interval_ms {
                    0 => DEFAULT_HEARTBEAT,
                    ms => Duration::from_millis(u64::from(ms)),
                }
            }
            _ => return Err(Error::Protocol("expected registered".into())),
        };
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        while let Some(result) = self.undelivered.pop_front() {
            if let Err(unsent) = outbound.send(result_message(result)).await {
                self.keep_undelivered(unsent.0);
                return closed;
            }
        }
        self.quota.new_session();
        let free = self.config.slots.saturating_sub(self.running.len() as u32);
        let free = self.quota.grant(free);
        if free > 0 && outbound.send(credits(free)).await.is_err() {
            return closed;
        }

        let mut drain_deadline: Option<tokio::time::Instant> = None;
        // The control plane has taken the drain: no assignment is on its
        // way. Until then one sent before it saw the drain may still come,
        // and running nothing now does not mean running nothing.
        let mut drain_taken = false;
        // Once the drain's grace is over: the attempts stopped to be handed
        // back, each once its agent's session is kept.
        let mut handing_back: Option<std::collections::HashSet<AttemptKey>> = None;
        let hand_back_reason =
            format!("handed back by worker {} as it shut down", self.config.name);
        loop {
            // Its steps all run and ended (`--steps`): leave as a drain does.
            if drain_deadline.is_none() && self.quota.spent() && self.running.is_empty() {
                tracing::info!(worker = %self.config.name, steps = self.config.steps, "ran its steps; leaving");
                let message = v1::WorkerMessage {
                    kind: Some(v1::worker_message::Kind::Drain(v1::Drain {})),
                };
                let _ = outbound.send(message).await;
                close_gracefully(outbound, &mut inbound).await;
                return Ok(SessionEnd::Drained);
            }
            if drain_deadline.is_none() && *drain.borrow() {
                // Stop getting work; what runs may finish within the grace.
                tracing::info!(worker = %self.config.name, running = self.running.len(), "draining");
                let message = v1::WorkerMessage {
                    kind: Some(v1::worker_message::Kind::Drain(v1::Drain {})),
                };
                if outbound.send(message).await.is_err() {
                    return closed;
                }
                drain_deadline = Some(tokio::time::Instant::now() + self.config.drain_grace);
            }
            if drain_deadline.is_some() && drain_taken && self.running.is_empty() {
                close_gracefully(outbound, &mut inbound).await;
                return Ok(SessionEnd::Drained);
            }
            tokio::select! {
                _ = drain.changed(), if drain_deadline.is_none() => {}
                _ = sleep_until(drain_deadline) => {
                    if handing_back.is_none() {
                        // Grace is over: stop what still runs, so it is
                        // queued again now rather than after the worker timeout;
                        // each is handed back once it has ended and its
                        // agent's session is kept, to resume elsewhere.
                        tracing::info!(worker = %self.config.name, steps = self.running.len(), "drain grace over; handing steps back");
                        for stop in self.running.values_mut().filter_map(Option::take) {
                            let _ = stop.send(runtime::Stop {
                                reason: hand_back_reason.clone(),
                                resumable: true,
                            });
                        }
                        handing_back = Some(self.running.keys().cloned().collect());
                        drain_deadline = Some(tokio::time::Instant::now() + STOP_WAIT);
                        continue;
                    }
                    // What has not ended by now is handed back as it is.
                    let attempts: Vec<v1::AttemptRef> = self.running.keys().map(v1::AttemptRef::from).collect();
                    let _ = outbound.send(release(attempts, hand_back_reason)).await;
                    close_gracefully(outbound, &mut inbound).await;
                    return Ok(SessionEnd::Drained);
                }
                _ = heartbeat.tick() => {
                    let beat = v1::WorkerMessage {
                        kind: Some(v1::worker_message::Kind::Heartbeat(v1::Heartbeat {})),
                    };
                    if outbound.send(beat).await.is_err() {
                        return closed;
                    }
                }
                message = inbound.message() => match message? {
                    Some(v1::ServerMessage { kind: Some(Kind::DrainTaken(_)) }) => drain_taken = true,
                    Some(message) => self.on_server_message(message),
                    None => return closed,
                },
                Some(report) = self.reports.recv() => {
                    let done = matches!(report, FromAttempt::Done(_));
                    let mut message = None;
                    if let FromAttempt::Done(result) = &report
                        && let Some(key) = result.attempt.clone().map(AttemptKey::from)
                    {
                        self.running.remove(&key);
                        self.looks.remove(&key);
                        self.steers.remove(&key);
                        // Stopped by the drain: not the step's failure.
                        if result.outcome != v1::Outcome::Succeeded as i32
                            && handing_back.as_ref().is_some_and(|h| h.contains(&key))
                        {
                            message = Some(release(vec![v1::AttemptRef::from(&key)], hand_back_reason.clone()));
                        }
                    }
                    let message = message.unwrap_or_else(|| report_message(report));
                    if let Err(unsent) = outbound.send(message).await {
                        self.keep_undelivered(unsent.0);
                        return closed;
                    }
                    if done && drain_deadline.is_none() {
                        let granted = self.quota.grant(1);
                        if granted > 0 && outbound.send(credits(granted)).await.is_err() {
                            return closed;
                        }
                    }
                }
            }
        }
    }

    /// Cancels every running step and waits (briefly) for each to end, so
    /// no step process outlives the worker.
    async fn stop_all(&mut self, reason: &str) {
        for stop in self.running.values_mut().filter_map(Option::take) {
            let _ = stop.send(runtime::Stop::new(reason));
        }
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(FromAttempt::Done(result))) => {
                    if let Some(key) = result.attempt.map(AttemptKey::from) {
                        self.running.remove(&key);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    fn keep_undelivered(&mut self, message: v1::WorkerMessage) {
        if let Some(v1::worker_message::Kind::Result(result)) = message.kind {
            self.undelivered.push_back(result);
        }
    }

    fn on_server_message(&mut self, message: v1::ServerMessage) {
        match message.kind {
            Some(Kind::Assignment(assignment)) => {
                let (Some(key), Some(step)) =
                    (assignment.attempt.map(AttemptKey::from), assignment.step)
                else {
                    tracing::warn!("ignoring an assignment without attempt or step");
                    return;
                };
                tracing::debug!(task = %key.task_id, step = %key.step_id, attempt = key.attempt, "assigned");
                let (cancel, cancelled) = oneshot::channel();
                self.quota.assigned();
                self.running.insert(key.clone(), Some(cancel));
                let look = Arc::new(tokio::sync::Notify::new());
                self.looks.insert(key.clone(), look.clone());
                let (steer, steers) = runtime::Steers::channel();
                self.steers.insert(key.clone(), steer);
                // The attempt's span is a child of the task's, wherever the
                // task was submitted; it lasts as long as the attempt runs.
                // Without an exporter there is none, and the step's process
                // still gets a child of the task's trace.
                let (span, traceparent) = if tidewright_telemetry::traced() {
                    let span = tracing::info_span!(
                        parent: None,
                        "attempt",
                        otel.name = %format!("step {} attempt {}", key.step_id, key.attempt),
                        task.id = %key.task_id,
                        step.id = %key.step_id,
                        attempt = key.attempt,
                    );
                    tidewright_telemetry::set_parent(
                        &span,
                        tidewright_telemetry::parent_from_traceparent(&assignment.traceparent),
                    );
                    let traceparent = tidewright_telemetry::traceparent(&span);
                    (span, traceparent)
                } else {
                    let child = tidewright_telemetry::child_traceparent(&assignment.traceparent);
                    (tracing::Span::none(), child)
                };
                let attempt = Attempt {
                    traceparent,
                    repo: assignment.repo.map(Into::into),
                    dependency_heads: assignment
                        .dependency_heads
                        .into_iter()
                        .map(|h| tidewright_core::repo::DependencyHead {
                            step: h.step_id,
                            head: h.head_commit,
                            asked: h.asked,
                        })
                        .collect(),
                    task_egress: assignment.task_egress.map(Into::into),
                    land_riders: assignment.land_riders.into_iter().map(Into::into).collect(),
                    land_fix: assignment.land_fix,
                    tenant: assignment.tenant,
                    grader_model: assignment.grader_model,
                    look,
                    steers,
                    host: self.host.clone(),
                    key,
                    step: step.into(),
                    inputs_json: assignment.inputs_json,
                    task_name: assignment.task_name,
                    resume: assignment.resume.map(|r| runtime::ResumeFrom {
                        attempt: r.attempt,
                        session_id: r.session_id,
                        session_usd: r.session_usd,
                        last_attempt: r.last_attempt,
                        message: r.message,
                        round_base: r.round_base,
                    }),
                    access: (!assignment.step_token.is_empty()).then(|| runtime::StepAccess {
                        server: self.config.server.clone(),
                        ca_file: self.config.tls.ca_file.clone(),
                        token: assignment.step_token,
                        tidewright_bin: self.config.tidewright_bin.clone(),
                    }),
                };
                tokio::spawn(
                    runtime::run(
                        attempt,
                        self.agents.clone(),
                        self.report_tx.clone(),
                        cancelled,
                    )
                    .instrument(span),
                );
            }
            Some(Kind::Cancel(cancel)) => {
                if let Some(key) = cancel.attempt.map(AttemptKey::from)
                    && let Some(stop) = self.running.get_mut(&key).and_then(Option::take)
                {
                    tracing::info!(task = %key.task_id, step = %key.step_id, "cancelling");
                    let _ = stop.send(runtime::Stop {
                        reason: cancel.reason,
                        resumable: cancel.resumable,
                    });
                }
            }
            Some(Kind::Look(look)) => {
                if let Some(key) = look.attempt.map(AttemptKey::from)
                    && let Some(notify) = self.looks.get(&key)
                {
                    tracing::debug!(task = %key.task_id, why = %look.why, "looking at the pull request now");
                    // A permit is kept when no look waits: one asked
                    // while the step looks is not lost.
                    notify.notify_one();
                }
            }
            Some(Kind::Steer(steer)) => {
                if let Some(key) = steer.attempt.map(AttemptKey::from)
                    && let Some(to) = self.steers.get(&key)
                {
                    tracing::info!(task = %key.task_id, step = %key.step_id, from = %steer.from, "a message for the agent");
                    let _ = to.send(runtime::Steer {
                        message: steer.message,
                        from: steer.from,
                        follow_up: steer.follow_up,
                    });
                }
            }
            Some(Kind::Registered(_)) | Some(Kind::DrainTaken(_)) | None => {}
        }
    }
}

fn credits(n: u32) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Credits(v1::Credits {
            credits: n,
        })),
    }
}

fn release(attempts: Vec<v1::AttemptRef>, reason: String) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Release(v1::Release {
            attempts,
            reason,
        })),
    }
}

fn result_message(result: v1::StepResult) -> v1::WorkerMessage {
    v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Result(result)),
    }
}

fn report_message(report: FromAttempt) -> v1::WorkerMessage {
    use v1::worker_message::Kind as K;
    let kind = match report {
        FromAttempt::Progress {
            attempt,
            fraction,
            message,
        } => K::Progress(v1::StepProgressReport {
            attempt: Some(v1::AttemptRef::from(attempt)),
            fraction,
            message,
        }),
        FromAttempt::Log {
            attempt,
            stream,
            line,
        } => K::Logs(v1::StepLogs {
            attempt: Some(v1::AttemptRef::from(attempt)),
            lines: vec![v1::LogEntry {
                stream: v1::LogStream::from(stream) as i32,
                line,
            }],
        }),
        FromAttempt::Session {
            attempt,
            session_id,
            model,
        } => K::Session(v1::StepSession {
            attempt: Some(v1::AttemptRef::from(attempt)),
            session_id,
            model,
        }),
        FromAttempt::Spend { attempt, cost } => K::Spend(v1::StepSpend {
            attempt: Some(v1::AttemptRef::from(attempt)),
            cost: Some(cost.into()),
        }),
        FromAttempt::Egress {
            attempt,
            destination,
            allowed,
            reason,
        } => K::Egress(v1::StepEgressReport {
            attempt: Some(v1::AttemptRef::from(attempt)),
            destination,
            allowed,
            reason,
        }),
        FromAttempt::Setup { attempt, report } => K::Setup(v1::StepSetupReport {
            attempt: Some(v1::AttemptRef::from(attempt)),
            setup: Some((&report).into()),
        }),
        FromAttempt::Said {
            attempt,
            items,
            usd,
        } => K::SessionItems(v1::StepSessionItems {
            attempt: Some(v1::AttemptRef::from(attempt)),
            items: items.iter().map(v1::SessionItem::from).collect(),
            usd,
        }),
        FromAttempt::Done(result) => K::Result(*result),
    };
    v1::WorkerMessage { kind: Some(kind) }
}
