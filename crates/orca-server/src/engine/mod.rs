//! The engine: one task owns the live state of every unfinished task, the
//! ready queue and the connected workers, so scheduling needs no locks.
//!
//! It decides in memory, then hands the writes of each round to the store in
//! order; what a decision shows to the outside (an assignment, a watch event,
//! a reply) is held back until that round has committed. A crash can
//! therefore lose only decisions nobody has seen, and recovery rebuilds the
//! rest from the store.
//!
//! `handle` is the way in (commands), `effects` what a committed round
//! releases, and this file the loop with its scheduling, leases and
//! recovery; `tests` drives it all in memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use orca_api::convert::{now_micros, optional_timestamp};
use orca_api::v1;
use orca_core::{
    AttemptKey, Capabilities, Change, Event, EventKind, Micros, QueueKey, ReadyQueue, StepState,
    StepStatus, TaskRun, TaskSpec, TaskState,
};
use orca_store::{AttemptWrite, Commit, StepWrite, Store, TaskRecord, Write};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;

use crate::Error;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::step_token::StepTokens;

mod create;
mod effects;
mod handle;

pub use create::Submission;
use create::event_of;
use effects::{Assignment, Effect, run_effects};
use handle::Command;
pub use handle::{Admitted, CancelAnswer, EngineHandle, StepReport, WorkerInfo};

/// The error of a step whose output file is not JSON.
const INVALID_OUTPUT: &str = "the step's output is not valid JSON";

/// Commands handled per round: each round is one store transaction.
const MAX_ROUND: usize = 1024;

pub type Outbox = mpsc::UnboundedSender<Result<v1::ServerMessage, Status>>;

/// A retry waiting for its backoff: (due, task, step, failed attempt).
type DueRetry = (Micros, Arc<str>, usize, u32);

struct StepSlot {
    needs: Capabilities,
    queued: Option<QueueKey>,
    /// When it last became ready to run, for the dispatch latency.
    queued_at: Micros,
    /// The model its agent reported, for cost by model.
    model: String,
    /// The worker running the current attempt.
    worker: Option<u64>,
    /// Its name and when the attempt started, for the attempt's history
    /// row, which is written once, when the attempt ends.
    worker_name: String,
    attempt_started: Micros,
    /// The output JSON of a succeeded step, for its dependents.
    output: Option<String>,
    /// The agent session its attempts have built, for a retry to resume.
    session: Option<Session>,
}

impl StepSlot {
    /// Puts the step in the ready queue, in its place by (priority, age),
    /// and remembers where and since when.
    fn enqueue(
        &mut self,
        queue: &mut ReadyQueue<(Arc<str>, usize)>,
        order: (i32, Micros),
        step: (Arc<str>, usize),
        now: Micros,
    ) {
        self.queued = Some(queue.push(&self.needs, order.0, order.1, step));
        self.queued_at = now;
    }
}

/// An agent's session as a step's attempts left it.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    id: String,
    /// The attempt that started it: its workspace holds the session, and
    /// every resumed attempt runs there.
    attempt: u32,
    /// What its attempts have cost so far.
    usd: f64,
}

struct Active {
    spec: Arc<TaskSpec>,
    /// Its steps' tokens are good in this tenant only.
    tenant: String,
    /// The task span's `traceparent`, handed to each attempt.
    trace_context: String,
    created_at: Micros,
    run: TaskRun,
    next_seq: u64,
    slots: Vec<StepSlot>,
    index: HashMap<String, usize>,
}

struct Worker {
    info: WorkerInfo,
    outbox: Outbox,
    credits: u32,
    running: HashSet<(Arc<str>, usize)>,
    connected_at: Micros,
    /// When it last sent anything; silent past the lease TTL, it is dropped.
    last_seen: Micros,
    /// Shutting down: gets no new work.
    draining: bool,
}

impl Worker {
    /// Steps it may be given now: what it asked for, never beyond its slots.
    fn free(&self) -> u32 {
        if self.draining {
            return 0;
        }
        self.credits
            .min(self.info.slots.saturating_sub(self.running.len() as u32))
    }
}

/// A step that was running when the control plane restarted: its worker may
/// reconnect and claim it before `deadline`; after that it runs again.
struct Orphan {
    attempt: u32,
    deadline: Micros,
}

#[derive(Default)]
struct Round {
    writes: Vec<Write>,
    effects: Vec<Effect>,
    events: Vec<Arc<Event>>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    tasks: HashMap<Arc<str>, Active>,
    queue: ReadyQueue<(Arc<str>, usize)>,
    workers: HashMap<u64, Worker>,
    /// Workers in connection order, for round-robin dispatch.
    worker_order: Vec<u64>,
    next_worker: u64,
    orphans: HashMap<(Arc<str>, usize), Orphan>,
    leases: Leases,
    /// Retries waiting for their backoff, earliest first.
    retries: BinaryHeap<Reverse<DueRetry>>,
    round: Round,
    effects: mpsc::UnboundedSender<(Commit, Vec<Effect>)>,
    metrics: Arc<Metrics>,
}

/// How long a worker's hold on its steps lasts without a sign of life.
#[derive(Debug, Clone, Copy)]
pub struct Leases {
    pub ttl: Duration,
    pub heartbeat_interval: Duration,
}

/// Starts the engine over the unfinished tasks of `recovered`. Returns its
/// handle and a receiver that reports a fatal store failure.
pub fn start(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    recovered: Vec<TaskRecord>,
    leases: Leases,
    step_tokens: Arc<StepTokens>,
    metrics: Arc<Metrics>,
) -> (EngineHandle, watch::Receiver<Option<String>>) {
    let (commands, inbox) = mpsc::channel(8192);
    let (effects, effect_queue) = mpsc::unbounded_channel();
    let (fatal_tx, fatal_rx) = watch::channel(None);
    let handle = EngineHandle {
        commands,
        store: store.clone(),
    };
    let mut engine = Engine {
        store,
        tasks: HashMap::new(),
        queue: ReadyQueue::default(),
        workers: HashMap::new(),
        worker_order: Vec::new(),
        next_worker: 1,
        orphans: HashMap::new(),
        leases,
        retries: BinaryHeap::new(),
        round: Round::default(),
        effects,
        metrics,
    };
    engine.recover(recovered);
    tokio::spawn(run_effects(effect_queue, hub, step_tokens, fatal_tx));
    tokio::spawn(engine.run(inbox));
    (handle, fatal_rx)
}

impl Engine {
    async fn run(mut self, mut inbox: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands = Vec::with_capacity(MAX_ROUND);
        loop {
            tokio::select! {
                received = inbox.recv_many(&mut commands, MAX_ROUND) => {
                    if received == 0 {
                        break;
                    }
                    for command in commands.drain(..) {
                        if matches!(command, Command::Shutdown) {
                            self.workers.clear();
                            self.worker_order.clear();
                            continue;
                        }
                        self.handle(command);
                    }
                }
                _ = tick.tick() => {
                    self.expire_orphans();
                    self.expire_silent_workers();
                }
                _ = retry_due(self.retries.peek().map(|Reverse(r)| r.0)) => self.release_retries(),
            }
            self.dispatch();
            self.flush();
        }
    }

    /// Sends the round's writes to the store and queues its effects behind
    /// the commit.
    fn flush(&mut self) {
        let round = std::mem::take(&mut self.round);
        if round.writes.is_empty() && round.effects.is_empty() && round.events.is_empty() {
            return;
        }
        let mut effects = round.effects;
        if !round.events.is_empty() {
            effects.push(Effect::Publish(round.events));
        }
        let commit = if round.writes.is_empty() {
            let (done, commit) = oneshot::channel();
            let _ = done.send(Ok(()));
            commit
        } else {
            self.store.write(round.writes)
        };
        let _ = self.effects.send((commit, effects));
    }

    fn handle(&mut self, command: Command) {
        if let Command::Credits { worker, .. }
        | Command::Progress { worker, .. }
        | Command::Logs { worker, .. }
        | Command::Report { worker, .. }
        | Command::Session { worker, .. }
        | Command::Heartbeat { worker }
        | Command::Drain { worker }
        | Command::Release { worker, .. } = &command
            && let Some(w) = self.workers.get_mut(worker)
        {
            w.last_seen = now_micros();
        }
        match command {
            Command::Admit(tasks, done) => {
                for task in tasks {
                    self.admit(task);
                }
                self.round.effects.push(Effect::Done(done));
            }
            Command::Register {
                info,
                running,
                outbox,
                reply,
            } => {
                let id = self.next_worker;
                self.next_worker += 1;
                let _ = outbox.send(Ok(v1::ServerMessage {
                    kind: Some(v1::server_message::Kind::Registered(v1::Registered {
                        worker_id: id.to_string(),
                        heartbeat_interval_ms: self.leases.heartbeat_interval.as_millis() as u32,
                    })),
                }));
                tracing::info!(worker = %info.name, id, slots = info.slots, "worker registered");
                self.workers.insert(
                    id,
                    Worker {
                        info,
                        outbox,
                        credits: 0,
                        running: HashSet::new(),
                        connected_at: now_micros(),
                        last_seen: now_micros(),
                        draining: false,
                    },
                );
                self.worker_order.push(id);
                for attempt in running {
                    self.adopt(id, attempt);
                }
                let _ = reply.send(id);
            }
            Command::Credits { worker, credits } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.credits = w.credits.saturating_add(credits).min(w.info.slots);
                }
            }
            Command::Progress {
                worker,
                attempt,
                fraction,
                message,
            } => {
                let Some((task_id, _)) = self.current(worker, &attempt) else {
                    return;
                };
                let fraction = fraction.clamp(0.0, 1.0);
                self.round.writes.push(Write::Progress {
                    task_id: attempt.task_id.clone(),
                    step_id: attempt.step_id.clone(),
                    fraction,
                    message: message.clone(),
                });
                self.event(
                    &task_id,
                    EventKind::Progress {
                        step: attempt.step_id,
                        attempt: attempt.attempt,
                        fraction,
                        message,
                    },
                );
            }
            Command::Logs {
                worker,
                attempt,
                lines,
            } => {
                let Some((task_id, _)) = self.current(worker, &attempt) else {
                    return;
                };
                for (stream, line) in lines {
                    self.event(
                        &task_id,
                        EventKind::Log {
                            step: attempt.step_id.clone(),
                            attempt: attempt.attempt,
                            stream,
                            line,
                        },
                    );
                }
            }
            Command::Report { worker, report } => self.report(worker, report),
            Command::Session {
                worker,
                attempt,
                session_id,
                model,
            } => self.session(worker, attempt, session_id, model),
            Command::Heartbeat { .. } => {}
            Command::Drain { worker } => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    tracing::info!(worker = %w.info.name, running = w.running.len(), "worker draining");
                    w.draining = true;
                }
            }
            Command::Release {
                worker,
                attempts,
                reason,
            } => {
                for attempt in attempts {
                    if let Some((task_id, index)) = self.current(worker, &attempt) {
                        if let Some(w) = self.workers.get_mut(&worker) {
                            w.running.remove(&(task_id.clone(), index));
                        }
                        self.requeue(&task_id, index, &reason);
                    }
                }
            }
            Command::Disconnected { worker } => {
                let reason = self
                    .workers
                    .get(&worker)
                    .map(|w| format!("worker {} disconnected", w.info.name));
                if let Some(reason) = reason {
                    self.drop_worker(worker, &reason);
                }
            }
            Command::Cancel {
                task_id,
                reason,
                reply,
            } => self.cancel(&task_id, &reason, reply),
            Command::ListAgents(reply) => {
                let agents = self
                    .worker_order
                    .iter()
                    .filter_map(|id| self.workers.get(id).map(|w| (id, w)))
                    .map(|(id, w)| v1::Agent {
                        id: id.to_string(),
                        name: w.info.name.clone(),
                        pool: w.info.pool.clone(),
                        capabilities: w.info.capabilities.iter().cloned().collect(),
                        slots: w.info.slots,
                        running: w.running.len() as u32,
                        connected_at: optional_timestamp(w.connected_at),
                        peer: w.info.peer.clone(),
                        draining: w.draining,
                    })
                    .collect();
                let queue = self
                    .queue
                    .depth_by_needs()
                    .map(|(needs, queued)| v1::QueueDepth {
                        capabilities: needs.iter().cloned().collect(),
                        queued: u32::try_from(queued).unwrap_or(u32::MAX),
                    })
                    .collect();
                let _ = reply.send(v1::ListAgentsResponse { agents, queue });
            }
            Command::Reopen { record, reply } => {
                let _ = reply.send(self.reopen(*record));
            }
            Command::Shutdown => {}
        }
    }

    /// Rebuilds live state from the store after a restart. Steps that were
    /// running wait for their worker to reclaim them (see [`Orphan`]).
    fn recover(&mut self, tasks: Vec<TaskRecord>) {
        let deadline = now_micros() + self.leases.ttl.as_micros() as Micros;
        let count = tasks.len();
        for mut record in tasks {
            let spec = Arc::new(std::mem::take(&mut record.spec));
            let run = restore_run(&record, &spec);
            let id: Arc<str> = Arc::from(record.id.as_str());
            let mut active = restore_active(&record, spec, run);
            for (index, step) in record.steps.iter().enumerate() {
                if step.state == StepState::Running {
                    self.orphans.insert(
                        (id.clone(), index),
                        Orphan {
                            attempt: step.attempt,
                            deadline,
                        },
                    );
                }
            }
            self.queue_ready(&id, &mut active);
            self.tasks.insert(id, active);
        }
        if count > 0 {
            tracing::info!(
                tasks = count,
                orphans = self.orphans.len(),
                "recovered unfinished tasks"
            );
        }
    }

    /// Brings a finished task back to life from its stored record.
    fn reopen(&mut self, mut record: TaskRecord) -> Result<oneshot::Receiver<()>, Error> {
        if self.tasks.contains_key(record.id.as_str()) {
            return Err(Error::FailedPrecondition(format!(
                "task {} is still running",
                record.id
            )));
        }
        let spec = Arc::new(std::mem::take(&mut record.spec));
        let mut run = restore_run(&record, &spec);
        let changes = run.reopen("retried by request").ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "task {} is {}; only a failed or cancelled task can be retried",
                record.id, record.state
            ))
        })?;
        let id: Arc<str> = Arc::from(record.id.as_str());
        self.tasks
            .insert(id.clone(), restore_active(&record, spec, run));
        self.apply(&id, changes, None);
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        Ok(committed)
    }

    fn admit(&mut self, task: Admitted) {
        self.metrics.task_submitted();
        let id: Arc<str> = Arc::from(task.id.as_str());
        let mut active = new_active(
            task.spec,
            (task.tenant, task.trace_context),
            task.created_at,
            task.run,
            task.next_seq,
        );
        self.queue_ready(&id, &mut active);
        self.tasks.insert(id, active);
    }

    /// Puts a task's ready steps in the ready queue.
    fn queue_ready(&mut self, id: &Arc<str>, active: &mut Active) {
        let ready: Vec<usize> = active.run.queued().collect();
        for index in ready {
            let (priority, created_at) = (active.spec.priority, active.created_at);
            active.slots[index].enqueue(
                &mut self.queue,
                (priority, created_at),
                (id.clone(), index),
                now_micros(),
            );
        }
    }

    /// The task and step index of an attempt, if it is current and `worker`
    /// runs it. Reports from anyone else are fenced off here.
    fn current(&self, worker: u64, attempt: &AttemptKey) -> Option<(Arc<str>, usize)> {
        let (task_id, active) = self.tasks.get_key_value(attempt.task_id.as_str())?;
        let index = *active.index.get(&attempt.step_id)?;
        let status = active.run.step(index);
        let current = status.state == StepState::Running
            && status.attempt == attempt.attempt
            && active.slots[index].worker == Some(worker);
        current.then(|| (task_id.clone(), index))
    }

    fn event(&mut self, task_id: &Arc<str>, kind: EventKind) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let event = Arc::new(Event {
            task_id: task_id.to_string(),
            seq: active.next_seq,
            at: now_micros(),
            kind,
        });
        active.next_seq += 1;
        self.round.writes.push(Write::Event((*event).clone()));
        self.round.events.push(event);
    }

    /// Records the state machine's changes: store writes, events, queue
    /// entries. `detail` adds fields to the write of one step.
    fn apply(
        &mut self,
        task_id: &Arc<str>,
        changes: Vec<Change>,
        mut detail: Option<(usize, StepWrite)>,
    ) {
        let now = now_micros();
        for change in changes {
            let Some(active) = self.tasks.get_mut(task_id) else {
                return;
            };
            // A step's event names its current attempt and who runs it.
            let (attempt, worker_name) = match &change {
                Change::Step { index, .. } => (
                    active.run.step(*index).attempt,
                    active.slots[*index]
                        .worker
                        .and_then(|w| self.workers.get(&w))
                        .map(|w| w.info.name.clone())
                        .unwrap_or_default(),
                ),
                _ => (0, String::new()),
            };
            let recorded = event_of(&active.spec, &change, attempt, &worker_name);
            match change {
                Change::Task { state, message } => {
                    if state.is_terminal() {
                        self.metrics.task_finished(state.as_str());
                    }
                    self.round.writes.push(Write::Task {
                        id: task_id.to_string(),
                        state,
                        message: message.clone(),
                        started_at: (state == TaskState::Running).then_some(now),
                        // A reopened task is not finished any more.
                        finished_at: Some(if state.is_terminal() { now } else { 0 }),
                    });
                }
                Change::Retry {
                    index,
                    failed,
                    max_attempts,
                } => {
                    let base = active.spec.steps[index]
                        .retry
                        .as_ref()
                        .map(|r| r.delay_before(failed + 1))
                        .unwrap_or_default();
                    let delay = base.mul_f64(jitter());
                    let due = now + delay.as_micros() as Micros;
                    let step_id = active.spec.steps[index].id.clone();
                    self.retries
                        .push(Reverse((due, task_id.clone(), index, failed)));
                    self.round.writes.push(Write::Step(StepWrite {
                        task_id: task_id.to_string(),
                        step_id: step_id.clone(),
                        state: Some(StepState::Queued),
                        ..StepWrite::default()
                    }));
                    self.event(
                        task_id,
                        EventKind::StepState {
                            step: step_id,
                            state: StepState::Queued,
                            attempt: failed,
                            worker: String::new(),
                            message: format!(
                                "attempt {} of {max_attempts} in {:.2}s",
                                failed + 1,
                                delay.as_secs_f64()
                            ),
                        },
                    );
                }
                Change::Step {
                    index,
                    state,
                    message,
                } => {
                    let slot = &mut active.slots[index];
                    if let Some(key) = slot.queued.take() {
                        self.queue.remove(&key);
                    }
                    if state == StepState::Queued {
                        slot.enqueue(
                            &mut self.queue,
                            (active.spec.priority, active.created_at),
                            (task_id.clone(), index),
                            now,
                        );
                    }
                    let step_id = active.spec.steps[index].id.clone();
                    let mut write = match detail.take() {
                        Some((i, write)) if i == index => write,
                        other => {
                            detail = other;
                            StepWrite::default()
                        }
                    };
                    write.task_id = task_id.to_string();
                    write.step_id = step_id;
                    write.state = Some(state);
                    if matches!(state, StepState::Waiting | StepState::Queued) {
                        // A step waiting to run carries no error; the reason
                        // it waits is in its event.
                        write.error.get_or_insert_with(String::new);
                    } else if !message.is_empty() && write.error.is_none() {
                        write.error = Some(message.clone());
                    }
                    self.round.writes.push(Write::Step(write));
                }
            }
            if let Some(kind) = recorded {
                self.event(task_id, kind);
            }
        }
        if self
            .tasks
            .get(task_id)
            .is_some_and(|a| a.run.state().is_terminal())
        {
            self.tasks.remove(task_id);
        }
    }

    /// Gives queued steps to workers with free slots, round-robin, until no
    /// worker can take anything more.
    fn dispatch(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let mut order = 0;
        let mut idle_since_progress = 0;
        while !self.queue.is_empty()
            && !self.worker_order.is_empty()
            && idle_since_progress < self.worker_order.len()
        {
            let worker_id = self.worker_order[order % self.worker_order.len()];
            order += 1;
            let item = match self.workers.get(&worker_id) {
                Some(w) if w.free() > 0 => self.queue.pop_for(&w.info.capabilities),
                _ => None,
            };
            match item {
                Some((task_id, index)) => {
                    idle_since_progress = 0;
                    if let Some(slot) = self.tasks.get_mut(&task_id).map(|a| &mut a.slots[index]) {
                        slot.queued = None;
                    }
                    self.assign(worker_id, task_id, index);
                }
                None => idle_since_progress += 1,
            }
        }
    }

    fn assign(&mut self, worker_id: u64, task_id: Arc<str>, index: usize) {
        let Some(active) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let (attempt, changes) = match active.run.start(index) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(task = %task_id, index, error = %e, "queued step could not start");
                return;
            }
        };
        active.slots[index].worker = Some(worker_id);
        let step = &active.spec.steps[index];
        let inputs_json = inputs_of(active, index);
        let Some(worker) = self.workers.get_mut(&worker_id) else {
            return;
        };
        worker.credits -= 1;
        worker.running.insert((task_id.clone(), index));
        let assignment = Assignment {
            message: v1::Assignment {
                attempt: Some(v1::AttemptRef {
                    task_id: task_id.to_string(),
                    step_id: step.id.clone(),
                    attempt,
                }),
                step: Some(v1::StepSpec::from(step)),
                inputs_json,
                task_name: active.spec.name.clone(),
                resume: active.slots[index].session.as_ref().map(|s| v1::Resume {
                    attempt: s.attempt,
                    session_id: s.id.clone(),
                    session_usd: s.usd,
                }),
                step_token: String::new(),
                traceparent: active.trace_context.clone(),
            },
            tenant: active.tenant.clone(),
            timeout: step
                .timeout_seconds
                .map(|s| Duration::from_secs(u64::from(s))),
        };
        self.round
            .effects
            .push(Effect::Assign(worker.outbox.clone(), Box::new(assignment)));
        let now = now_micros();
        let slot = &mut active.slots[index];
        slot.worker_name.clone_from(&worker.info.name);
        slot.attempt_started = now;
        self.metrics
            .attempt_started((now - slot.queued_at) as f64 / 1e6);
        let detail = StepWrite {
            attempt: Some(attempt),
            worker: Some(worker.info.name.clone()),
            started_at: Some(now_micros()),
            finished_at: Some(0),
            output_json: Some(String::new()),
            error: Some(String::new()),
            exit_code: Some(None),
            progress: Some((0.0, String::new())),
            ..StepWrite::default()
        };
        self.apply(&task_id, changes, Some((index, detail)));
    }

    /// Records the session on the attempt, and remembers it for a retry.
    fn session(&mut self, worker: u64, attempt: AttemptKey, session_id: String, model: String) {
        let Some((task_id, index)) = self.current(worker, &attempt) else {
            return;
        };
        let Some(slot) = self.tasks.get_mut(&task_id).map(|a| &mut a.slots[index]) else {
            return;
        };
        // A resumed session keeps its workspace and cost so far; a new one
        // starts here, at zero.
        slot.model.clone_from(&model);
        match &slot.session {
            Some(previous) if previous.id == session_id => {}
            _ => {
                slot.session = Some(Session {
                    id: session_id.clone(),
                    attempt: attempt.attempt,
                    usd: 0.0,
                });
            }
        }
        self.round.writes.push(Write::Attempt(AttemptWrite {
            task_id: attempt.task_id,
            step_id: attempt.step_id,
            attempt: attempt.attempt,
            worker: Some(slot.worker_name.clone()),
            started_at: Some(slot.attempt_started),
            session_id: Some(session_id),
            model: Some(model),
            ..AttemptWrite::default()
        }));
    }

    fn report(&mut self, worker: u64, report: StepReport) {
        let Some((task_id, index)) = self.current(worker, &report.attempt) else {
            tracing::warn!(
                task = %report.attempt.task_id,
                step = %report.attempt.step_id,
                attempt = report.attempt.attempt,
                worker,
                "rejected a result that is not for the current attempt"
            );
            return;
        };
        if let Some(w) = self.workers.get_mut(&worker) {
            w.running.remove(&(task_id.clone(), index));
        }
        let mut outcome = match report.outcome {
            v1::Outcome::Succeeded => orca_core::Outcome::Succeeded,
            v1::Outcome::Cancelled => orca_core::Outcome::Cancelled(report.error.clone()),
            v1::Outcome::Failed | v1::Outcome::Unspecified => {
                orca_core::Outcome::Failed(if report.error.is_empty() {
                    "the step failed".into()
                } else {
                    report.error.clone()
                })
            }
        };
        let output = report.output_json.trim();
        let output_ok =
            output.is_empty() || serde_json::from_str::<serde_json::Value>(output).is_ok();
        if outcome == orca_core::Outcome::Succeeded && !output_ok {
            outcome = orca_core::Outcome::Failed(INVALID_OUTPUT.into());
        }
        let Some(active) = self.tasks.get_mut(&task_id) else {
            return;
        };
        if outcome == orca_core::Outcome::Succeeded {
            active.slots[index].output = Some(output.to_string());
        }
        let changes = match active.run.finish(index, outcome) {
            Ok(changes) => changes,
            Err(e) => {
                tracing::error!(task = %task_id, index, error = %e, "result could not be applied");
                return;
            }
        };
        let to_cancel = stop_running_if_winding_down(active, &changes);
        let attempt_state = match report.outcome {
            v1::Outcome::Succeeded if output_ok => StepState::Succeeded,
            v1::Outcome::Cancelled => StepState::Cancelled,
            _ => StepState::Failed,
        };
        let slot = &mut active.slots[index];
        if let (Some(session), Some(cost)) = (&mut slot.session, &report.cost) {
            session.usd += cost.usd;
        }
        if let Some(cost) = &report.cost {
            self.metrics.agent_spent(&slot.model, cost);
        }
        let started = report.started_at.unwrap_or(slot.attempt_started);
        let ran = (started > 0).then(|| (now_micros() - started) as f64 / 1e6);
        self.metrics.attempt_finished(attempt_state.as_str(), ran);
        self.round.writes.push(Write::Attempt(AttemptWrite {
            task_id: task_id.to_string(),
            step_id: report.attempt.step_id.clone(),
            attempt: report.attempt.attempt,
            worker: Some(slot.worker_name.clone()),
            started_at: report.started_at.or(Some(slot.attempt_started)),
            finished_at: Some(now_micros()),
            state: Some(attempt_state),
            error: Some(if output_ok {
                report.error.clone()
            } else {
                INVALID_OUTPUT.into()
            }),
            exit_code: report.exit_code,
            cost: report.cost,
            ..AttemptWrite::default()
        }));
        let detail = StepWrite {
            finished_at: Some(now_micros()),
            started_at: report.started_at,
            output_json: Some(output.to_string()),
            error: Some(report.error),
            exit_code: Some(report.exit_code),
            ..StepWrite::default()
        };
        self.apply(&task_id, changes, Some((index, detail)));
        self.send_cancels(&task_id, to_cancel, "another step of the task failed");
    }

    /// Forgets a worker: its stream ends and its steps run again as their
    /// next attempt.
    fn drop_worker(&mut self, worker_id: u64, reason: &str) {
        let Some(worker) = self.workers.remove(&worker_id) else {
            return;
        };
        self.worker_order.retain(|w| *w != worker_id);
        tracing::info!(worker = %worker.info.name, id = worker_id, running = worker.running.len(), reason, "worker dropped");
        for (task_id, index) in worker.running {
            self.requeue(&task_id, index, reason);
        }
    }

    /// A worker silent past the lease TTL (stopped, partitioned, wedged)
    /// loses its steps; whatever it reports later is fenced off.
    fn expire_silent_workers(&mut self) {
        let ttl = self.leases.ttl.as_micros() as Micros;
        let now = now_micros();
        let silent: Vec<(u64, String)> = self
            .workers
            .iter()
            .filter(|(_, w)| now - w.last_seen > ttl)
            .map(|(id, w)| {
                (
                    *id,
                    format!(
                        "worker {} was silent for {:.1}s",
                        w.info.name,
                        (now - w.last_seen) as f64 / 1e6
                    ),
                )
            })
            .collect();
        for (id, reason) in silent {
            tracing::warn!(%reason, "lease expired");
            self.drop_worker(id, &reason);
        }
    }

    fn requeue(&mut self, task_id: &Arc<str>, index: usize, reason: &str) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let slot = &mut active.slots[index];
        slot.worker = None;
        self.metrics.attempt_finished("lost", None);
        self.round.writes.push(Write::Attempt(AttemptWrite {
            task_id: task_id.to_string(),
            step_id: active.spec.steps[index].id.clone(),
            attempt: active.run.step(index).attempt,
            // After a restart the engine does not know these; the step row
            // still says who ran it.
            worker: (!slot.worker_name.is_empty()).then(|| slot.worker_name.clone()),
            started_at: (slot.attempt_started != 0).then_some(slot.attempt_started),
            finished_at: Some(now_micros()),
            state: Some(StepState::Queued),
            error: Some(reason.to_string()),
            ..AttemptWrite::default()
        }));
        match active.run.requeue(index, reason) {
            Ok(changes) => self.apply(task_id, changes, None),
            Err(e) => tracing::error!(task = %task_id, index, error = %e, "could not requeue"),
        }
    }

    /// A reconnecting worker still runs an attempt the store knows as running.
    fn adopt(&mut self, worker_id: u64, attempt: AttemptKey) {
        let Some((task_id, active)) = self.tasks.get_key_value(attempt.task_id.as_str()) else {
            return;
        };
        let Some(&index) = active.index.get(&attempt.step_id) else {
            return;
        };
        let key = (task_id.clone(), index);
        if self
            .orphans
            .get(&key)
            .is_none_or(|o| o.attempt != attempt.attempt)
        {
            return;
        }
        self.orphans.remove(&key);
        let Some(worker) = self.workers.get_mut(&worker_id) else {
            return;
        };
        worker.running.insert(key.clone());
        let name = worker.info.name.clone();
        if let Some(active) = self.tasks.get_mut(&key.0) {
            let slot = &mut active.slots[index];
            slot.worker = Some(worker_id);
            slot.worker_name.clone_from(&name);
        }
        tracing::info!(task = %key.0, step = %attempt.step_id, worker = %name, "reclaimed a running step");
        self.event(
            &key.0,
            EventKind::StepState {
                step: attempt.step_id,
                state: StepState::Running,
                attempt: attempt.attempt,
                worker: name,
                message: "reclaimed by its worker after a control-plane restart".into(),
            },
        );
    }

    fn expire_orphans(&mut self) {
        if self.orphans.is_empty() {
            return;
        }
        let now = now_micros();
        let expired: Vec<(Arc<str>, usize)> = self
            .orphans
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.orphans.remove(&key);
            self.requeue(
                &key.0,
                key.1,
                "no worker reclaimed it after a control-plane restart",
            );
        }
    }

    /// Moves retries whose backoff is over into the ready queue. A retry of
    /// a task that was cancelled or moved on meanwhile is dropped.
    fn release_retries(&mut self) {
        let now = now_micros();
        while self.retries.peek().is_some_and(|Reverse(r)| r.0 <= now) {
            let Some(Reverse((_, task_id, index, failed))) = self.retries.pop() else {
                break;
            };
            let Some(active) = self.tasks.get_mut(&task_id) else {
                continue;
            };
            let status = active.run.step(index);
            let slot = &mut active.slots[index];
            if status.state != StepState::Queued
                || status.attempt != failed
                || slot.queued.is_some()
            {
                continue;
            }
            slot.enqueue(
                &mut self.queue,
                (active.spec.priority, active.created_at),
                (task_id.clone(), index),
                now_micros(),
            );
        }
    }

    fn cancel(&mut self, task_id: &str, reason: &str, reply: oneshot::Sender<CancelAnswer>) {
        let Some(id) = self.tasks.get_key_value(task_id).map(|(id, _)| id.clone()) else {
            let _ = reply.send(CancelAnswer::NotActive);
            return;
        };
        let Some(active) = self.tasks.get_mut(&id) else {
            return;
        };
        let changes = active.run.cancel(reason);
        let running: Vec<usize> = active.run.running().collect();
        self.apply(&id, changes, None);
        self.send_cancels(&id, running, reason);
        self.round.effects.push(Effect::CancelDone(reply));
    }

    fn send_cancels(&mut self, task_id: &Arc<str>, steps: Vec<usize>, reason: &str) {
        let Some(active) = self.tasks.get(task_id) else {
            return;
        };
        for index in steps {
            let Some(worker) = active.slots[index]
                .worker
                .and_then(|w| self.workers.get(&w))
            else {
                continue;
            };
            let message = v1::ServerMessage {
                kind: Some(v1::server_message::Kind::Cancel(v1::CancelStep {
                    attempt: Some(v1::AttemptRef {
                        task_id: task_id.to_string(),
                        step_id: active.spec.steps[index].id.clone(),
                        attempt: active.run.step(index).attempt,
                    }),
                    reason: reason.to_string(),
                })),
            };
            self.round
                .effects
                .push(Effect::ToWorker(worker.outbox.clone(), Box::new(message)));
        }
    }
}

/// After a failure for good (not one that will be retried), the steps still
/// running must be told to stop.
fn stop_running_if_winding_down(active: &Active, changes: &[Change]) -> Vec<usize> {
    let retried = changes.iter().any(|c| matches!(c, Change::Retry { .. }));
    let failed_now = changes.iter().any(|c| {
        matches!(
            c,
            Change::Step {
                state: StepState::Failed | StepState::Cancelled,
                ..
            }
        )
    });
    if failed_now && !retried && active.run.is_winding_down() {
        active.run.running().collect()
    } else {
        Vec::new()
    }
}

/// Up to a fifth more than the base delay, so failures do not retry in
/// lockstep. The clock's nanoseconds are random enough for that.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    1.0 + f64::from(nanos % 1000) / 5000.0
}

/// Resolves when the earliest retry is due; never when none waits.
async fn retry_due(due: Option<Micros>) {
    match due {
        Some(due) => {
            let wait = (due - now_micros()).max(0) as u64;
            tokio::time::sleep(Duration::from_micros(wait)).await;
        }
        None => std::future::pending().await,
    }
}

/// A stored task's state machine, as the store last saw it.
fn restore_run(record: &TaskRecord, spec: &TaskSpec) -> TaskRun {
    let statuses = record
        .steps
        .iter()
        .map(|s| StepStatus {
            state: s.state,
            attempt: s.attempt,
        })
        .collect();
    TaskRun::restore(spec, record.state, statuses)
}

/// Live state for a stored task; succeeded steps keep their outputs for
/// their dependents.
fn restore_active(record: &TaskRecord, spec: Arc<TaskSpec>, run: TaskRun) -> Active {
    let mut active = new_active(
        spec,
        (record.tenant.clone(), record.trace_context.clone()),
        record.created_at,
        run,
        record.last_seq + 1,
    );
    for (slot, step) in active.slots.iter_mut().zip(&record.steps) {
        if step.state == StepState::Succeeded {
            slot.output = Some(step.output_json.clone());
        }
        slot.session = last_session(&step.attempts);
    }
    active
}

/// The session the newest attempt with one ran: the attempt that started
/// it, and what every attempt in it cost.
fn last_session(attempts: &[orca_store::AttemptRecord]) -> Option<Session> {
    let id = &attempts
        .iter()
        .rev()
        .find(|a| !a.session_id.is_empty())?
        .session_id;
    let mut in_session = attempts.iter().filter(|a| &a.session_id == id);
    let first = in_session.next()?;
    Some(Session {
        id: id.clone(),
        attempt: first.attempt,
        usd: first.cost.usd + in_session.map(|a| a.cost.usd).sum::<f64>(),
    })
}

/// `(tenant, trace_context)` come from the stored task.
fn new_active(
    spec: Arc<TaskSpec>,
    (tenant, trace_context): (String, String),
    created_at: Micros,
    run: TaskRun,
    next_seq: u64,
) -> Active {
    let slots = spec
        .steps
        .iter()
        .map(|s| StepSlot {
            needs: orca_core::queue::capabilities(&s.required_capabilities()),
            queued: None,
            worker: None,
            worker_name: String::new(),
            attempt_started: 0,
            output: None,
            session: None,
            queued_at: 0,
            model: String::new(),
        })
        .collect();
    let index = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    Active {
        spec,
        tenant,
        trace_context,
        created_at,
        run,
        next_seq,
        slots,
        index,
    }
}

/// `{"dependency id": its output, ...}`: outputs are stored as JSON text and
/// spliced in as they are.
fn inputs_of(active: &Active, index: usize) -> String {
    let deps = &active.spec.steps[index].depends_on;
    if deps.is_empty() {
        return "{}".into();
    }
    let mut json = String::from("{");
    for (n, dep) in deps.iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        let output = active
            .index
            .get(dep)
            .and_then(|&i| active.slots[i].output.as_deref())
            .filter(|o| !o.is_empty())
            .unwrap_or("null");
        let key = serde_json::to_string(dep).unwrap_or_else(|_| "\"\"".into());
        let _ = write!(json, "{key}:{output}");
    }
    json.push('}');
    json
}

#[cfg(test)]
mod tests;
