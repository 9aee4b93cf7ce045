//! Scheduling and dispatch: tasks admitted into the ready queue, and
//! ready steps handed to the free worker that can run them, highest
//! priority and oldest first, within each worker's credits (free slots).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tidewright_core::calendar::now_micros;
use tidewright_core::{AttemptKey, EventKind, Micros, ReadyQueue, StepState, TaskState};

use crate::effects::Effect;
use crate::engine::Engine;
use crate::handle::{Admitted, FleetNow, QueueDepth, WorkerNow};
use crate::live::{Active, Claim, Holder, new_active};
use crate::tenants::count_start;
use crate::to_worker::{Assignment, Resume, ToWorker};
use crate::workers::pool_of;

impl Engine {
    pub(super) fn admit(&mut self, task: Admitted) {
        self.metrics.task_submitted(&task.tenant);
        let id: Arc<str> = Arc::from(task.id.as_str());
        let mut active = new_active(
            task.spec,
            (task.tenant, task.trace_context),
            task.created_at,
            task.run,
            task.next_seq,
        );
        active.key = self.shares.key_of(&active.tenant, &active.spec);
        self.queue_ready(&id, &mut active);
        self.hold_at_gates(&id, &mut active, &[]);
        self.cold.reads.fresh.push(id.clone());
        self.failovers.watch(&id, &active.spec);
        self.tasks.insert(id.clone(), active);
        self.adopt_child(&id);
    }

    /// Puts a task's ready steps in the ready queue (those whose touches
    /// may overlap a sibling's wait for it).
    pub(super) fn queue_ready(&mut self, id: &Arc<str>, active: &mut Active) {
        if active.run.state() == TaskState::Paused {
            return;
        }
        let ready: Vec<usize> = active.run.queued().collect();
        let beside = self.claims_beside(id, active);
        for index in ready {
            if active.steps[index].queued.is_some() {
                continue;
            }
            if let Some(held) =
                ready_step(&mut self.queue, (id, active), index, now_micros(), &beside)
            {
                self.round.event(id, active, held);
            }
        }
    }

    /// Gives queued steps to workers with free slots, round-robin, until no
    /// worker can take anything more.
    pub(super) fn dispatch(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        // A step that moves to a fallback is handed out under its new
        // runtime in the same round.
        self.fail_over();
        let mut agents = self.agents_in_capped_pools();
        let mut capped = self.hold_capped_tenants();
        let mut order = 0;
        let mut idle_since_progress = 0;
        while !self.queue.is_empty()
            && !self.fleet.workers.order().is_empty()
            && idle_since_progress < self.fleet.workers.order().len()
        {
            let worker_id = self.fleet.workers.order()[order % self.fleet.workers.order().len()];
            order += 1;
            let head = match self.fleet.workers.get(&worker_id) {
                Some(w) if w.free() > 0 => {
                    let pool = agents.get(pool_of(&w.info));
                    if pool.is_some_and(|(running, cap)| running >= cap) {
                        self.queue.peek_for(&w.without_agents)
                    } else if self.fleet.pauses.is_empty()
                        || self.fleet.pauses.of(pool_of(&w.info)).next().is_none()
                    {
                        self.queue.peek_for(&w.info.capabilities)
                    } else {
                        // Without the agent runtimes a limit paused here.
                        let mut offered = w.info.capabilities.clone();
                        for (agent, _) in self.fleet.pauses.of(pool_of(&w.info)) {
                            offered.remove(agent);
                        }
                        self.queue.peek_for(&offered)
                    }
                }
                _ => None,
            };
            // A step of a task held only as its place in the queue waits
            // for the task to be read back (see `cold`).
            let item = match head {
                Some((key, (task_id, _))) if !self.tasks.contains_key(task_id) => {
                    let task_id = task_id.clone();
                    self.cold_at_head(&task_id, &key);
                    None
                }
                Some((key, _)) => self.queue.take(&key),
                None => None,
            };
            match item {
                Some((task_id, index)) => {
                    self.cold.reads.dispatched += 1;
                    idle_since_progress = 0;
                    if let Some(active) = self.tasks.get_mut(&task_id) {
                        count_start(&mut capped, &mut self.queue, &active.tenant);
                        let live = &mut active.steps[index];
                        live.queued = None;
                        if is_agent(&live.needs)
                            && let Some(w) = self.fleet.workers.get(&worker_id)
                            && let Some((running, _)) = agents.get_mut(pool_of(&w.info))
                        {
                            *running += 1;
                        }
                    }
                    self.assign(worker_id, task_id, index);
                }
                None => idle_since_progress += 1,
            }
        }
    }

    /// For each pool with a cap on agents (`maxConcurrentAgents`): how many
    /// agent steps its workers run now, and the cap (the lowest its
    /// workers name). Empty, and cheap, when no pool has one.
    fn agents_in_capped_pools(&self) -> HashMap<String, (u32, u32)> {
        let mut pools: HashMap<String, (u32, u32)> = HashMap::new();
        for worker in self.fleet.workers.values() {
            let cap = worker.info.max_concurrent_agents;
            if cap == 0 {
                continue;
            }
            let agents = worker
                .running
                .iter()
                .filter(|(task_id, index)| {
                    self.tasks
                        .get(task_id)
                        .is_some_and(|a| is_agent(&a.steps[*index].needs))
                })
                .count() as u32;
            let entry = pools
                .entry(pool_of(&worker.info).to_string())
                .or_insert((0, cap));
            entry.0 += agents;
            entry.1 = entry.1.min(cap);
        }
        pools
    }

    pub(super) fn assign(&mut self, worker_id: u64, task_id: Arc<str>, index: usize) {
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
        active.steps[index].worker = Some(worker_id);
        let land_riders = self.board_riders(worker_id, (&task_id, index));
        let Some(active) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let step = &active.spec.steps[index];
        // A step that chooses among attempts reads its candidates.
        let inputs_json = if step.select.is_some() {
            crate::choose::candidates(active, index)
        } else if step.review_of.is_some() {
            crate::review::inputs(active, index)
        } else {
            inputs_of(active, index)
        };
        let Some(worker) = self.fleet.workers.get_mut(&worker_id) else {
            return;
        };
        worker.credits -= 1;
        worker.running.insert((task_id.clone(), index));
        let assignment = Assignment {
            attempt: AttemptKey {
                task_id: task_id.to_string(),
                step_id: step.id.clone(),
                attempt,
            },
            step: step.clone(),
            inputs_json,
            task_name: active.spec.name.clone(),
            // A reviewer reads each round's change afresh.
            resume: (step.review_of.is_none())
                .then_some(active.steps[index].session.as_ref())
                .flatten()
                .map(|s| Resume {
                    attempt: s.attempt,
                    session_id: s.id.clone(),
                    session_usd: s.usd,
                    last_attempt: s.last_attempt,
                    // People's messages first, then what its checks or
                    // its reviewer said, if anything.
                    message: active.steps[index]
                        .steered
                        .iter()
                        .chain(std::iter::once(&active.steps[index].feedback))
                        .filter(|told| !told.is_empty())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n\n"),
                    round_base: active.steps[index]
                        .verified
                        .as_ref()
                        .map(|v| v.head_commit.clone())
                        .unwrap_or_default(),
                }),
            traceparent: active.trace_context.clone(),
            tenant: active.tenant.clone(),
            timeout: step
                .timeout_seconds
                .map(|s| Duration::from_secs(u64::from(s))),
            repo: active.spec.repo.clone(),
            dependency_heads: dependency_heads(active, index),
            task_egress: active.spec.egress.clone(),
            land_riders,
            land_fix: active.steps[index]
                .sent_back
                .as_ref()
                .map(|fix| fix.base.clone())
                .unwrap_or_default(),
        };
        let assignment_resumes = assignment.resume.is_some();
        self.round.effects.push(Effect::ToWorker(
            worker.outbox.clone(),
            ToWorker::Assign(Box::new(assignment)),
        ));
        let now = now_micros();
        let live = &mut active.steps[index];
        live.worker_name.clone_from(&worker.info.name);
        live.attempt_started = now;
        live.stopped_for_budget = false;
        // Told once: a later retry resumes without them.
        if assignment_resumes {
            live.steered.clear();
        }
        // What an agent before it left goes only with a move.
        live.handover = None;
        live.failover_said = false;
        self.metrics
            .attempt_started(&active.tenant, (now - live.queued_at) as f64 / 1e6);
        let ready_since = live.ready_since.take().unwrap_or(live.queued_at);
        if active.landing.is_some() && step.deliver.is_some() {
            self.metrics
                .landing_turn((now - ready_since).max(0) as f64 / 1e6);
        }
        let detail = crate::live::started(attempt, worker.info.name.clone(), now);
        self.apply(&task_id, changes, Some((index, detail)));
    }
}

/// `{"dependency id": its output, ...}`: outputs are stored as JSON text and
/// spliced in as they are.
pub(super) fn inputs_of(active: &Active, index: usize) -> String {
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
            .and_then(|&i| active.steps[i].output.as_deref())
            .filter(|o| !o.is_empty())
            .unwrap_or("null");
        let key = serde_json::to_string(dep).unwrap_or_else(|_| "\"\"".into());
        let _ = write!(json, "{key}:{output}");
    }
    json.push('}');
    json
}

/// The heads of a step's dependencies that did work in the task's
/// repository, in the task's order of steps (not the order its
/// `dependsOn` lists them, nor the order they ended): the merge a step
/// starts from is the same however it is written or run.
pub(super) fn dependency_heads(
    active: &Active,
    index: usize,
) -> Vec<tidewright_core::repo::DependencyHead> {
    if active.spec.repo.is_none() {
        return Vec::new();
    }
    let deps = &active.spec.steps[index].depends_on;
    let mut heads: Vec<(usize, String, String)> = deps
        .iter()
        .filter_map(|dep| active.index.get(dep).copied())
        .chain(
            active.steps[index]
                .on_top_of
                .iter()
                .copied()
                .filter(|&j| crate::choose::goes_on(active, j)),
        )
        .filter_map(|i| {
            let head = active.steps[i].head.clone()?;
            // A step that chose among attempts holds the winner's work,
            // kept under the winner's name.
            let own = crate::choose::chosen(active, i).unwrap_or(i);
            Some((i, active.spec.steps[own].id.clone(), head))
        })
        .collect();
    // Sent back a failed landing, it goes on from its own work.
    if let Some(fix) = &active.steps[index].sent_back
        && !fix.from.is_empty()
    {
        heads.push((index, active.spec.steps[index].id.clone(), fix.from.clone()));
    }
    // Taken over from another runtime's agent, it goes on from that
    // agent's work (kept under the step's name).
    if let Some(failover) = &active.spec.steps[index].failover
        && !failover.head.is_empty()
    {
        heads.push((
            index,
            active.spec.steps[index].id.clone(),
            failover.head.clone(),
        ));
    }
    heads.sort();
    heads.dedup();
    heads
        .into_iter()
        .map(|(i, step, head)| tidewright_core::repo::DependencyHead {
            step,
            head,
            asked: active.spec.steps[i].asked(),
        })
        .collect()
}

impl Engine {
    /// The connected workers in order, and the queue.
    pub(crate) fn fleet_now(&self) -> FleetNow {
        let workers = self
            .fleet
            .workers
            .order()
            .iter()
            .filter_map(|id| self.fleet.workers.get(id).map(|w| (id, w)))
            .map(|(id, w)| WorkerNow {
                id: *id,
                info: w.info.clone(),
                running: w.running.len(),
                connected_at: w.connected_at,
                draining: w.draining,
                paused: self
                    .fleet
                    .pauses
                    .longest(pool_of(&w.info))
                    .map(|p| (p.until, p.reason.clone())),
            })
            .collect();
        let queue = self
            .queue
            .depth_by_needs()
            .map(|(needs, queued)| QueueDepth {
                needs: needs.clone(),
                queued,
            })
            .collect();
        let paused_agents = self.fleet.pauses.paused_now();
        let waiting_by_tenant = self
            .queue
            .waiting_by_sharer()
            .map(|(tenant, waiting)| (tenant.to_string(), waiting))
            .collect();
        let running_by_tenant: BTreeMap<String, usize> = self
            .running_by_tenant()
            .into_iter()
            .map(|(tenant, n)| (tenant.to_string(), n))
            .collect();
        FleetNow {
            workers,
            queue,
            waiting_by_tenant,
            running_by_tenant: running_by_tenant.into_iter().collect(),
            paused_agents,
            gone: self.fleet.workers.gone(),
            landings: self.landing_queues(),
        }
    }
}

/// The step of another task, among `beside`, that a step claiming
/// `mine` must wait for, its name (`<task>/<step>`), and why.
fn beside_holder(mine: &[String], beside: &[Claim]) -> Option<(Holder, String, String)> {
    if mine.is_empty() {
        return None;
    }
    beside.iter().find_map(|claim| {
        let (a, b) = tidewright_core::touches::first_overlap(mine, &claim.touches)?;
        let why = if a == b {
            format!(
                "waits for step {} of task {}: both touch {a}",
                claim.step, claim.task
            )
        } else {
            format!(
                "waits for step {} of task {}: it touches {a}, that step touches {b}",
                claim.step, claim.task
            )
        };
        Some((
            Holder::Beside(claim.task.clone(), claim.index),
            format!("{}/{}", claim.task, claim.step),
            why,
        ))
    })
}

/// The deliver step landing on the same base now, when step `index` is
/// its task's deliver step and the task lands through the base's queue:
/// one lands at a time, so each lands on the tip the last one left.
fn landing_holder(
    active: &Active,
    index: usize,
    beside: &[Claim],
) -> Option<(Holder, String, String)> {
    let (_, base) = active.landing.as_ref()?;
    active.spec.steps[index].deliver.as_ref()?;
    let claim = beside.iter().find(|c| c.lands)?;
    Some((
        Holder::Beside(claim.task.clone(), claim.index),
        format!("{}/{}", claim.task, claim.step),
        format!(
            "waits to land on {base}: task {} is landing there",
            claim.task
        ),
    ))
}

/// Puts step `index` in the ready queue, unless a sibling that is queued
/// or running may touch the same paths, or a step of another task among
/// `beside` (tasks keeping their touches to themselves on the same
/// repository): then it waits for that one, and the answer is the event
/// that says so (once per step it waits for).
pub(super) fn ready_step(
    queue: &mut ReadyQueue<(Arc<str>, usize)>,
    (task_id, active): (&Arc<str>, &mut Active),
    index: usize,
    now: Micros,
    beside: &[Claim],
) -> Option<EventKind> {
    let holder = active
        .touch_holder(index)
        .map(|(j, why)| (Holder::Sibling(j), active.spec.steps[j].id.clone(), why))
        .or_else(|| beside_holder(&active.spec.steps[index].touches, beside))
        .or_else(|| landing_holder(active, index, beside));
    if let Some((holder, waits_for, why)) = holder {
        let live = &mut active.steps[index];
        live.ready_since.get_or_insert(now);
        let newly = live.held_by.as_ref() != Some(&holder);
        // It starts from the work of the sibling it waited for, so the two
        // do not collide where their branches meet. Another task's work
        // is that task's.
        if let Holder::Sibling(j) = holder
            && !live.on_top_of.contains(&j)
        {
            live.on_top_of.push(j);
        }
        live.held_by = Some(holder);
        return newly.then(|| EventKind::StepState {
            step: active.spec.steps[index].id.clone(),
            state: StepState::Queued,
            attempt: active.run.step(index).attempt,
            worker: String::new(),
            message: why,
            waits_for,
            conflict: None,
        });
    }
    let live = &mut active.steps[index];
    live.held_by = None;
    live.enqueue(
        queue,
        (
            &active.tenant,
            &active.key,
            active.spec.priority,
            active.created_at,
        ),
        (task_id.clone(), index),
        now,
    );
    None
}

/// The steps of `active` that wait for a step no longer queued or
/// running: ready to be tried again. `beside_busy` says whether a step of
/// another task is.
pub(super) fn released(active: &Active, beside_busy: impl Fn(&str, usize) -> bool) -> Vec<usize> {
    active
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, live)| {
            let busy = match live.held_by.as_ref()? {
                Holder::Sibling(j) => active.busy(*j),
                Holder::Beside(task, j) => beside_busy(task, *j),
            };
            (!busy).then_some(i)
        })
        .collect()
}

impl Engine {
    /// What the queued and running steps of other tasks on the same
    /// repository and ref claim, when task `id` (`active`) names touches
    /// and keeps them to itself against those tasks; and the deliver step
    /// landing on its base now, when it lands through a queue. Nothing
    /// otherwise, at no cost.
    pub(super) fn claims_beside(&self, id: &str, active: &Active) -> Vec<Claim> {
        let mut claims = Vec::new();
        if let Some(key) = active.exclusive.as_ref().filter(|_| active.claims_paths) {
            claims.extend(
                self.tasks
                    .iter()
                    .filter(|(other, a)| other.as_ref() != id && a.exclusive.as_ref() == Some(key))
                    .flat_map(|(other, a)| a.claims(other).collect::<Vec<_>>()),
            );
        }
        if let Some(key) = &active.landing {
            claims.extend(
                self.tasks
                    .iter()
                    .filter(|(other, a)| other.as_ref() != id && a.landing.as_ref() == Some(key))
                    .filter_map(|(other, a)| a.landing_claim(other)),
            );
        }
        claims
    }

    /// Whether step `index` of task `id` is queued or running.
    pub(super) fn busy(&self, id: &str, index: usize) -> bool {
        self.tasks.get(id).is_some_and(|a| a.busy(index))
    }

    /// Steps of task `id` that waited for a step now neither queued nor
    /// running try again.
    pub(super) fn release_held(&mut self, id: &Arc<str>, now: Micros) {
        let Some(active) = self.tasks.get(id) else {
            return;
        };
        if !(active.claims_paths || active.landing.is_some())
            || active.run.state() == TaskState::Paused
        {
            return;
        }
        let released = released(active, |task, j| self.busy(task, j));
        if released.is_empty() {
            return;
        }
        let beside = self.claims_beside(id, active);
        let Some(active) = self.tasks.get_mut(id) else {
            return;
        };
        for index in released {
            if active.run.step(index).state == StepState::Queued
                && active.steps[index].queued.is_none()
            {
                if let Some(held) = ready_step(&mut self.queue, (id, active), index, now, &beside) {
                    self.round.event(id, active, held);
                }
            } else {
                active.steps[index].held_by = None;
            }
        }
    }

    /// Other tasks on repository and ref `key` whose steps wait for
    /// another task's (`landing`: tasks landing on base `key`): after task
    /// `id` changed, they try again, the oldest task first, so the queue
    /// of a base lands tasks in the order they were made.
    pub(super) fn release_beside(
        &mut self,
        id: &str,
        (key, landing): (&(String, String), bool),
        now: Micros,
    ) {
        let mut waiting: Vec<(Micros, Arc<str>)> = self
            .tasks
            .iter()
            .filter(|(other, a)| {
                let same = if landing {
                    a.landing.as_ref() == Some(key)
                } else {
                    a.exclusive.as_ref() == Some(key)
                };
                other.as_ref() != id
                    && same
                    && a.steps
                        .iter()
                        .any(|s| matches!(s.held_by, Some(Holder::Beside(..))))
            })
            .map(|(other, a)| (a.created_at, other.clone()))
            .collect();
        waiting.sort();
        for (_, other) in waiting {
            self.release_held(&other, now);
        }
    }
}

/// Whether a step that needs `needs` is an agent's.
fn is_agent(needs: &tidewright_core::Capabilities) -> bool {
    agent_of(needs).is_some()
}

/// The agent runtime a step that needs `needs` runs on, if any.
pub(crate) fn agent_of(needs: &tidewright_core::Capabilities) -> Option<&'static str> {
    tidewright_core::AGENT_CAPABILITIES
        .into_iter()
        .find(|agent| needs.contains(*agent))
}

impl Engine {
    /// Tells each queued step whose last worker has been gone the grace
    /// why it waits, by an event.
    pub(crate) fn tell_unserved(&mut self) {
        for (needs, reason) in self.fleet.unserved.due() {
            let waiting: Vec<(Arc<str>, usize)> =
                self.queue.items_needing(&needs).cloned().collect();
            for (task_id, index) in waiting {
                // A task held only as its place in the queue is told when
                // it is read (its step's reason is said by every read).
                let Some(active) = self.tasks.get_mut(&task_id) else {
                    continue;
                };
                let kind = EventKind::StepState {
                    step: active.spec.steps[index].id.clone(),
                    state: StepState::Queued,
                    attempt: active.run.step(index).attempt,
                    worker: String::new(),
                    message: reason.clone(),
                    waits_for: String::new(),
                    conflict: None,
                };
                self.round.event(&task_id, active, kind);
            }
        }
    }
}
