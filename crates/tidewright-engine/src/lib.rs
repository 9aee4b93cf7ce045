//! tidewright's engine: one task owns the live state of every unfinished task,
//! the ready queue and the connected workers, so scheduling needs no locks;
//! around it, the application services every client calls (`service`) and
//! who may call what (`access`). It knows no wire: the gRPC and REST
//! adapters in `tidewright-server` hand it tidewright-core's types and convert what it
//! answers (a worker's messages are [`ToWorker`]s, converted in one place
//! there).
//!
//! It decides in memory, then hands the writes of each round to the store in
//! order; what a decision shows to the outside (an assignment, a watch event,
//! a reply) is held back until that round has committed. A crash can
//! therefore lose only decisions nobody has seen, and recovery rebuilds the
//! rest from the store.
//!
//! `handle` is the way in (commands). `engine` holds the state, in owned
//! parts the deciding modules borrow: `live` (a task and its steps),
//! `workers::Fleet` (the workers, the steps a restart left running, the
//! pauses `limits` keeps, what the fleet offers), `cold::ColdQueue` (the
//! backlog still to be read back and the cold tasks of a deep queue),
//! `retention::Sweeper` (what the sweep decided by), `tenants` (budgets,
//! spend, the spent gate the way in checks, and shares), `timers` (retries waiting
//! out their backoff, approvals that time out). The modules that decide
//! add their methods to the engine: `create` makes tasks; `apply` records
//! the state machine's changes; `dispatch` schedules ready steps onto
//! workers; `results` takes what workers report (and retries and cancels);
//! `approval` holds steps at their human gates; `budget` pauses what
//! crosses a budget; `shares` holds dispatch to tenants' weights and caps;
//! `steer` sends people's messages to running agents; `limits` pauses a pool's agents at a provider's limit;
//! `verify` decides verified steps' rounds; `land` says each landing's
//! verdict (the queue of a base is `dispatch`'s holding);
//! `recovery` drops silent workers and rebuilds after a restart; `cold`
//! keeps a deep queue in the store; `retention` removes finished tasks once
//! kept long enough. `effects` is what a committed round releases,
//! `to_worker` what a worker is told, `hub` the fan-out to watchers,
//! `metrics` and `activity` the counts. This file is the loop: commands
//! in, state changes applied, rounds committed. `tests` drives it all in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tidewright_core::calendar::now_micros;
use tidewright_core::{EventKind, Micros, ReadyQueue};
use tidewright_store::Store;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backlog::{Backlog, ColdQueue, Reads};
use crate::effects::Effect;
use crate::engine::{MAX_ROUND, Round};
use crate::handle::Command;
use crate::hub::Hub;
use crate::limits::Pauses;
use crate::metrics::Metrics;
use crate::retention::Sweeper;
use crate::tenants::{Budgets, Shares};
use crate::timers::Timers;
use crate::workers::{Fleet, Workers};

pub mod access;
pub mod activity;
pub mod channels;
pub mod hub;
pub mod metrics;
pub mod service;

mod apply;
mod approval;
mod backlog;
mod batch;
mod budget;
mod choose;
mod cold;
mod create;
mod dispatch;
mod effects;
mod engine;
mod error;
mod failover;
mod family;
mod handle;
mod kin;
mod land;
mod limits;
mod live;
mod recovery;
mod results;
pub mod retention;
mod review;
mod running;
pub mod seeds;
mod shares;
mod steer;
mod tenants;
mod timers;
mod to_worker;
mod unserved;
mod verify;
mod workers;

use backlog::load_backlog;
pub use create::Submission;
use effects::run_effects;
pub use engine::{DEFAULT_HOT_TASKS, Engine, Settings};
pub use error::Error;
pub use handle::{
    Admitted, AttemptEnd, CancelAnswer, Decision, EgressReport, EngineHandle, FleetNow, Gone,
    LandingQueue, QueueDepth, QueuedLanding, RateLimited, Steer, StepResult, TenantShareNow,
    TenantSpending, WorkerInfo, WorkerNow,
};
pub use limits::DEFAULT_LIMIT_BACKOFF;
pub use tenants::{SpentTenants, StoredTenants, load_tenants};
pub use to_worker::{Assignment, Outbox, Resume, ToWorker};
pub use unserved::Offered;
pub use workers::Liveness;

/// Starts the engine, which serves at once and reads the unfinished tasks
/// named in `backlog` back from the store in the background. Returns its
/// handle and a receiver that reports a fatal store failure.
pub fn start(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    backlog: Vec<String>,
    settings: Settings,
    metrics: Arc<Metrics>,
    tenants: StoredTenants,
) -> (EngineHandle, watch::Receiver<Option<String>>) {
    let (commands, inbox) = mpsc::channel(8192);
    let (effects, effect_queue) = mpsc::unbounded_channel();
    let (fatal_tx, fatal_rx) = watch::channel(None);
    let spent = SpentTenants::default();
    let retention = Arc::new(settings.retention);
    let offered = Offered::default();
    let handle = EngineHandle {
        commands,
        store: store.clone(),
        spent: spent.clone(),
        retention: retention.clone(),
        offered: offered.clone(),
    };
    let backlog: Vec<Arc<str>> = backlog.into_iter().map(Arc::from).collect();
    let mut engine = Engine {
        store: store.clone(),
        // Not sized to the backlog: most of a deep one is held cold, and
        // a table sized for all of it would become resident page by page
        // as the few tasks held whole land all over it.
        tasks: HashMap::default(),
        queue: ReadyQueue::default(),
        fleet: Fleet {
            workers: Workers::default(),
            orphans: HashMap::new(),
            pauses: Pauses::new(settings.limit_backoff),
            unserved: unserved::Unserved::new(offered),
            liveness: settings.liveness,
        },
        cold: ColdQueue {
            backlog: Backlog::new(&backlog),
            reads: Reads::default(),
            hot: settings.hot_tasks.max(1),
        },
        timers: Timers::default(),
        budgets: Budgets::new(tenants.limits, tenants.spend, spent),
        shares: Shares::new(tenants.shares),
        round: Round::default(),
        effects,
        metrics,
        sweeper: Sweeper::new(retention),
        children: HashMap::new(),
        batches: Default::default(),
        failovers: engine::Failovers::new(settings.fallback.clone()),
    };
    engine.weigh_tenants();
    if !backlog.is_empty() {
        tokio::spawn(load_backlog(
            store.clone(),
            handle.commands.clone(),
            backlog,
            fatal_tx.clone(),
        ));
    }
    tokio::spawn(run_effects(
        effect_queue,
        hub,
        (store, handle.commands.downgrade()),
        fatal_tx,
    ));
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
                            self.fleet.workers.clear();
                            continue;
                        }
                        self.handle(command);
                    }
                }
                _ = tick.tick() => {
                    self.expire_orphans();
                    self.expire_silent_workers();
                    self.reset_budget_windows();
                    self.tell_unserved();
                }
                _ = due(self.next_due()) => {
                    self.release_retries();
                    self.expire_approvals();
                }
            }
            self.dispatch();
            self.cool_down();
            self.read_ahead();
            self.flush(inbox.is_empty());
        }
    }

    /// Sends the round's writes to the store and queues its effects behind
    /// the commit. When the engine is `idle` (nothing waits in its inbox),
    /// it may commit them itself, sparing a hand-off to the writer's thread
    /// and back: it has nothing to decide meanwhile. With commands waiting,
    /// it decides on while the writer commits.
    fn flush(&mut self, idle: bool) {
        let mut round = std::mem::take(&mut self.round);
        let queued = std::mem::take(&mut round.queued);
        if round.writes.is_empty() && round.effects.is_empty() && round.events.is_empty() {
            for done in queued {
                let _ = done.send(());
            }
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
        } else if idle {
            self.store.write_leading(round.writes)
        } else {
            self.store.write(round.writes)
        };
        // The writes are queued behind every earlier one: a submit may be
        // answered now, while they commit.
        for done in queued {
            let _ = done.send(());
        }
        let _ = self.effects.send((commit, effects));
    }

    fn handle(&mut self, command: Command) {
        if let Command::Credits { worker, .. }
        | Command::Progress { worker, .. }
        | Command::Logs { worker, .. }
        | Command::Egress { worker, .. }
        | Command::SessionItems { worker, .. }
        | Command::Setup { worker, .. }
        | Command::StepResult { worker, .. }
        | Command::Session { worker, .. }
        | Command::Spend { worker, .. }
        | Command::Heartbeat { worker }
        | Command::Drain { worker }
        | Command::Release { worker, .. } = &command
        {
            self.fleet.workers.seen(*worker);
        }
        let Some(command) = self.defer(command) else {
            return;
        };
        match command {
            Command::Submitted(tasks, queued) => {
                for task in tasks {
                    self.admit(task);
                }
                self.round.queued.push(queued);
            }
            Command::Submit(tasks, stored) => self.take_over_unstored(tasks, stored),
            Command::Register {
                info,
                running,
                outbox,
                reply,
            } => {
                let offers = info.capabilities.clone();
                let id = self.register(info, running, outbox);
                self.fleet.unserved.offers(&offers);
                let _ = reply.send(id);
            }
            Command::Credits { worker, credits } => self.fleet.workers.credit(worker, credits),
            Command::Progress {
                worker,
                attempt,
                fraction,
                message,
            } => self.progress(worker, attempt, fraction, message),
            Command::Logs {
                worker,
                attempt,
                lines,
            } => self.logs(worker, attempt, lines),
            Command::Egress {
                worker,
                attempt,
                egress,
            } => self.egress(worker, attempt, egress),
            Command::SessionItems {
                worker,
                attempt,
                items,
                usd,
            } => self.session_items(worker, attempt, items, usd),
            Command::Setup {
                worker,
                attempt,
                setup,
            } => self.setup(worker, attempt, setup),
            Command::StepResult { worker, result } => self.report(worker, *result),
            Command::Session {
                worker,
                attempt,
                session_id,
                model,
            } => self.session(worker, attempt, session_id, model),
            Command::Spend {
                worker,
                attempt,
                cost,
            } => self.spend(worker, attempt, cost),
            Command::ApproveBudget { task_id, reply } => {
                let _ = reply.send(self.approve_budget(&task_id));
            }
            Command::RaiseBudget { task_id, by, reply } => {
                let _ = reply.send(self.raise_budget(&task_id, by));
            }
            Command::SetTenantBudget {
                tenant,
                budget,
                reply,
            } => {
                let _ = reply.send(self.set_tenant_budget(&tenant, budget));
            }
            Command::Budgets { tenants, reply } => {
                let _ = reply.send(self.tenant_spending(tenants));
            }
            Command::Steer { steer, reply } => {
                let _ = reply.send(self.steer(steer));
            }
            Command::SetTenantShare {
                tenant,
                share,
                reply,
            } => {
                let _ = reply.send(self.set_tenant_share(&tenant, share));
            }
            Command::Shares { tenants, reply } => {
                let _ = reply.send(self.tenant_shares(tenants));
            }
            Command::Heartbeat { .. } => {}
            Command::Drain { worker } => {
                let offered = self
                    .fleet
                    .workers
                    .get(&worker)
                    .filter(|w| !w.draining)
                    .map(|w| w.info.capabilities.clone());
                self.fleet.workers.drain(worker);
                if let Some(offered) = offered {
                    self.fleet.unserved.withdraws(&offered, &self.queue);
                }
                // Sent behind every assignment already made to it, on
                // the same outbox: after this one, none comes.
                if let Some(w) = self.fleet.workers.get(&worker) {
                    self.round.effects.push(crate::effects::Effect::ToWorker(
                        w.outbox.clone(),
                        crate::to_worker::ToWorker::DrainTaken,
                    ));
                }
            }
            Command::Release {
                worker,
                attempts,
                reason,
            } => self.release(worker, attempts, &reason),
            Command::Disconnected { worker } => self.disconnected(worker),
            Command::Cancel {
                task_id,
                reason,
                reply,
            } => self.cancel(&task_id, &reason, reply),
            Command::ForgeEvent {
                project,
                why,
                reply,
            } => {
                let _ = reply.send(self.wake_followers(&project, &why));
            }
            Command::ListAgents(reply) => {
                let _ = reply.send(self.fleet_now());
            }
            Command::Adopt { worker, attempt } => self.adopt(worker, attempt),
            Command::Recovered { ids, tasks, kin } => self.recovered(ids, tasks, kin),
            Command::Expire { tasks, now, reply } => {
                let _ = reply.send(self.expire(tasks, now));
            }
            Command::Reopen { record, kin, reply } => {
                let _ = reply.send(self.reopen(*record, kin));
            }
            Command::Decide {
                task_id,
                step_id,
                decision,
                reply,
            } => {
                let _ = reply.send(self.decide(&task_id, &step_id, decision));
            }
            Command::Shutdown => {}
        }
    }

    /// Removes the expired tasks the sweep found at `now`, but those the
    /// engine holds (reopened since); answers once that committed.
    fn expire(
        &mut self,
        tasks: Vec<tidewright_store::retention::Expiring>,
        now: Micros,
    ) -> oneshot::Receiver<()> {
        let (tasks_held, cold) = (&self.tasks, &self.cold.backlog);
        let held = |id: &str| tasks_held.contains_key(id) || cold.holds(id);
        if let Some(write) = self.sweeper.expire(tasks, now, held) {
            self.round.writes.push(write);
        }
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        committed
    }

    fn event(&mut self, task_id: &Arc<str>, kind: EventKind) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        self.round.event(task_id, active, kind);
    }
}

/// Resolves at `at`; never when it is `None`.
async fn due(at: Option<Micros>) {
    match at {
        Some(due) => {
            let wait = (due - now_micros()).max(0) as u64;
            tokio::time::sleep(Duration::from_micros(wait)).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
