//! The live state of an unfinished task the engine holds whole: its run,
//! and per step where it waits, who runs it, and what it has cost.

use std::collections::HashMap;
use std::sync::Arc;

use tidewright_core::{Capabilities, Micros, QueueKey, ReadyQueue, TaskRun, TaskSpec};
use tidewright_store::StepWrite;

/// What the engine holds of one step while its task runs: where it
/// waits, who runs it, what it has cost and produced.
pub(crate) struct LiveStep {
    pub(crate) needs: Capabilities,
    pub(crate) queued: Option<QueueKey>,
    /// When it last became ready to run, for the dispatch latency.
    pub(crate) queued_at: Micros,
    /// When it became ready this time, queued or held for another step
    /// (a landing's wait for its turn on the base starts here); none
    /// once an attempt starts.
    pub(crate) ready_since: Option<Micros>,
    /// The model its agent reported, for cost by model.
    pub(crate) model: String,
    /// The worker running the current attempt.
    pub(crate) worker: Option<u64>,
    /// Its name and when the attempt started, for the attempt's history
    /// row, which is written once, when the attempt ends.
    pub(crate) worker_name: String,
    pub(crate) attempt_started: Micros,
    /// The output JSON of a succeeded step, for its dependents.
    pub(crate) output: Option<String>,
    /// A succeeded step's head commit in its task's repository, for its
    /// dependents to start from.
    pub(crate) head: Option<String>,
    /// Steps whose work it starts from besides its own dependencies': a
    /// sibling it waited for because their `touches` may overlap, or steps
    /// whose work a dependent found in conflict with its own
    /// (`onConflict: rerun`).
    pub(crate) on_top_of: Vec<usize>,
    /// How many times it was run again so.
    pub(crate) reruns: u32,
    /// The agent session its attempts have built, for a retry to resume.
    pub(crate) session: Option<Session>,
    /// A verified step's last round of checks, and what its session is
    /// told when it resumes for the next ("" when none failed).
    pub(crate) verified: Option<tidewright_core::Verification>,
    pub(crate) feedback: String,
    /// While it awaits approval: when that wait times out (0: never).
    pub(crate) awaiting: Option<Micros>,
    /// What its running attempt has cost so far, as its worker reports it.
    pub(crate) running_cost: tidewright_core::Cost,
    /// Its running attempt was told to stop for a budget: however it ends,
    /// short of success, the step runs again uncounted (even when the task
    /// resumed before the attempt came back).
    pub(crate) stopped_for_budget: bool,
    /// People's messages for its agent that its session is told when it
    /// resumes (a CLI that reads no input while it runs: Codex, Gemini CLI).
    pub(crate) steered: Vec<String>,
    /// Its running attempt was interrupted for [`Live::steered`]: short of
    /// success it runs again uncounted, resumed with them.
    pub(crate) stopped_for_steer: bool,
    /// Ready, but waiting for this step, queued or running, whose
    /// `touches` may overlap its own.
    pub(crate) held_by: Option<Holder>,
    /// Its last attempt found its dependencies' work in conflict: said by
    /// the step's next event.
    pub(crate) conflict: Option<tidewright_core::repo::MergeConflict>,
    /// A landing deliver step's batch: the tasks whose deliver steps ride
    /// in its running attempt (see `batch`).
    pub(crate) riders: Vec<Arc<str>>,
    /// A deliver step riding in another task's landing: that task.
    pub(crate) batch_lead: Option<Arc<str>>,
    /// A succeeded step's changed paths, to tell whose work a landing's
    /// conflict is in.
    pub(crate) changed: Vec<String>,
    /// A succeeded step's work, for the step that chooses among attempts
    /// to take the winner's as its own.
    pub(crate) work: Option<tidewright_core::StepWork>,
    /// A step sent back to fix its work: by a failed landing (see `land`)
    /// or a review's requested changes (see `review`).
    pub(crate) sent_back: Option<SentBack>,
    /// A reviewing step: how many times its verdict sent the reviewed
    /// step back, and where the reviewed step's work began before the
    /// first time (each round's change is read from there: a step sent
    /// back goes on from its own head).
    pub(crate) reviews: u32,
    pub(crate) reviewed_from: Option<String>,
    /// What its agent left when its provider's limit stopped it, for the
    /// agent that may take it over on a fallback (see `failover`).
    pub(crate) handover: Option<Handover>,
    /// Why it cannot fail over was said: said once until it moves or runs.
    pub(crate) failover_said: bool,
}

/// What a step sent back to fix its work starts from: its own work (the
/// head it ended at), and, for a failed landing, the tip of `base`, merged
/// in by its worker ("" for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentBack {
    pub(crate) base: String,
    pub(crate) from: String,
}

impl LiveStep {
    /// Puts the step in the ready queue, in its place by (priority, its
    /// tenant's share, age), and remembers where and since when.
    pub(crate) fn enqueue(
        &mut self,
        queue: &mut ReadyQueue<(Arc<str>, usize)>,
        (tenant, key, priority, created): (&str, &str, i32, Micros),
        step: (Arc<str>, usize),
        now: Micros,
    ) {
        self.queued = Some(queue.push(&self.needs, (tenant, key, priority), created, step));
        self.queued_at = now;
        self.ready_since.get_or_insert(now);
    }
}

/// What an agent stopped at its limit left for the agent that takes its
/// step over (see `failover`): kept in memory until the step moves or
/// runs again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Handover {
    /// The runtime it ran on: its work goes with the step only when the
    /// step leaves that runtime.
    pub(crate) runtime: String,
    /// The commit its work so far ended at, and the one it started from;
    /// "" when it made none.
    pub(crate) head: String,
    pub(crate) base: String,
    pub(crate) summary: String,
}

/// What a ready step waits for before it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A step of its own task.
    Sibling(usize),
    /// A step of another task on the same repository and ref, both tasks
    /// keeping their `touches` to themselves (`repo.exclusive: touches`).
    Beside(Arc<str>, usize),
}

/// A queued or running step of another task that claims paths of the same
/// repository and ref.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub(crate) task: Arc<str>,
    pub(crate) index: usize,
    pub(crate) step: String,
    pub(crate) touches: Vec<String>,
    /// Its deliver step, landing on the same base: another task's waits
    /// its turn (its touches are none).
    pub(crate) lands: bool,
}

/// An agent's session as a step's attempts left it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub(crate) id: String,
    /// The attempt that started it: its workspace holds the session, and
    /// every resumed attempt runs there.
    pub(crate) attempt: u32,
    /// The newest attempt that ran in it: a worker whose copy of the
    /// session is older takes the step's checkpoint instead.
    pub(crate) last_attempt: u32,
    /// What its attempts have cost so far.
    pub(crate) usd: f64,
}

pub(crate) struct Active {
    pub(crate) spec: Arc<TaskSpec>,
    /// Its steps' tokens are good in this tenant only.
    pub(crate) tenant: String,
    /// Its key within its tenant's share (its repository, a label's
    /// value; "" for a tenant without a fairness key), as it was when the
    /// task was taken in.
    pub(crate) key: String,
    /// The task span's `traceparent`, handed to each attempt.
    pub(crate) trace_context: String,
    pub(crate) created_at: Micros,
    pub(crate) run: TaskRun,
    pub(crate) next_seq: u64,
    pub(crate) steps: Vec<LiveStep>,
    pub(crate) index: HashMap<String, usize>,
    /// What its ended attempts cost.
    pub(crate) spent: tidewright_core::Cost,
    /// What the tasks its steps submitted (and theirs) have spent: it
    /// counts against this task's budget (see `family`).
    pub(crate) family_spent: tidewright_core::Cost,
    /// Some step names `touches`: only then may a step wait for a sibling
    /// (so a task without them pays nothing for the check).
    pub(crate) claims_paths: bool,
    /// Some step chooses among attempts: only then is a ready choice
    /// looked for after each change (so a task without pays nothing).
    pub(crate) chooses: bool,
    /// Its repository and ref, when it keeps its `touches` to itself
    /// against other tasks that do (`repo.exclusive: touches`).
    pub(crate) exclusive: Option<(String, String)>,
    /// Its repository and base branch, when it lands through that base's
    /// queue (`repo.land`): its deliver step takes its turn there.
    pub(crate) landing: Option<(String, String)>,
    /// The rounds of fixes its failed landings were sent back for, and
    /// what the last one failed on (the same failure twice ends them).
    pub(crate) land_fixes: u32,
    pub(crate) land_failure: String,
}

impl Active {
    /// Its queued or running steps that claim paths, as another task on
    /// the same repository sees them.
    pub(crate) fn claims(&self, task: &Arc<str>) -> impl Iterator<Item = Claim> + '_ {
        let task = task.clone();
        self.steps
            .iter()
            .enumerate()
            .filter(move |(j, live)| {
                !self.spec.steps[*j].touches.is_empty()
                    && (live.queued.is_some() || self.running(*j))
            })
            .map(move |(j, _)| Claim {
                task: task.clone(),
                index: j,
                step: self.spec.steps[j].id.clone(),
                touches: self.spec.steps[j].touches.clone(),
                lands: false,
            })
    }

    /// Its deliver step, when the task lands through a queue and the step
    /// is queued or running: the turn of the base it lands on.
    pub(crate) fn landing_claim(&self, task: &Arc<str>) -> Option<Claim> {
        self.landing.as_ref()?;
        let j = *self.index.get(tidewright_core::repo::DELIVER_STEP)?;
        self.busy(j).then(|| Claim {
            task: task.clone(),
            index: j,
            step: self.spec.steps[j].id.clone(),
            touches: Vec::new(),
            lands: true,
        })
    }

    /// Whether step `index` is queued or running: a step held for it waits.
    pub(crate) fn busy(&self, index: usize) -> bool {
        self.steps[index].queued.is_some() || self.running(index)
    }

    /// Whether step `index` has an attempt under way.
    pub(crate) fn running(&self, index: usize) -> bool {
        self.run.step(index).state == tidewright_core::StepState::Running
    }

    /// Whether steps `a` and `b` are attempts of the same step.
    fn rivals(&self, a: usize, b: usize) -> bool {
        let chooser = self.run.chooser_of(a);
        chooser.is_some() && chooser == self.run.chooser_of(b)
    }

    /// The sibling step `index` must wait for, and why: one queued or
    /// running whose `touches` may overlap its own (the lowest such).
    pub(crate) fn touch_holder(&self, index: usize) -> Option<(usize, String)> {
        let mine = &self.spec.steps[index].touches;
        if mine.is_empty() {
            return None;
        }
        self.steps
            .iter()
            .enumerate()
            .filter(|(j, live)| *j != index && (live.queued.is_some() || self.running(*j)))
            // Attempts of one step never meet: only one's work goes on.
            .filter(|(j, _)| !self.rivals(index, *j))
            .find_map(|(j, _)| {
                let other = &self.spec.steps[j];
                let (a, b) = tidewright_core::touches::first_overlap(mine, &other.touches)?;
                let why = if a == b {
                    format!("waits for step {}: both touch {a}", other.id)
                } else {
                    format!(
                        "waits for step {}: it touches {a}, step {} touches {b}",
                        other.id, other.id
                    )
                };
                Some((j, why))
            })
    }
}

/// `(tenant, trace_context)` come from the stored task.
pub(crate) fn new_active(
    spec: Arc<TaskSpec>,
    (tenant, trace_context): (String, String),
    created_at: Micros,
    run: TaskRun,
    next_seq: u64,
) -> Active {
    let claims_paths = spec.steps.iter().any(|s| !s.touches.is_empty());
    let chooses = spec.steps.iter().any(|s| s.select.is_some());
    let steps = spec
        .steps
        .iter()
        .map(|s| LiveStep {
            needs: tidewright_core::queue::capabilities(&s.required_capabilities()),
            queued: None,
            worker: None,
            worker_name: String::new(),
            attempt_started: 0,
            output: None,
            head: None,
            on_top_of: Vec::new(),
            reruns: 0,
            session: None,
            verified: None,
            feedback: String::new(),
            awaiting: None,
            queued_at: 0,
            ready_since: None,
            model: String::new(),
            running_cost: tidewright_core::Cost::default(),
            stopped_for_budget: false,
            steered: Vec::new(),
            stopped_for_steer: false,
            held_by: None,
            riders: Vec::new(),
            batch_lead: None,
            changed: Vec::new(),
            work: None,
            sent_back: None,
            reviews: 0,
            reviewed_from: None,
            conflict: None,
            handover: None,
            failover_said: false,
        })
        .collect();
    let index = spec
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    Active {
        tenant,
        key: String::new(),
        trace_context,
        created_at,
        run,
        next_seq,
        steps,
        index,
        claims_paths,
        chooses,
        exclusive: spec.repo.as_ref().and_then(|r| r.exclusive_key()),
        landing: spec.repo.as_ref().and_then(|r| r.land_key()),
        spec,
        spent: tidewright_core::Cost::default(),
        family_spent: tidewright_core::Cost::default(),
        land_fixes: 0,
        land_failure: String::new(),
    }
}

/// The write of a step whose attempt `attempt` started on `worker` at
/// `now`: what an earlier attempt left is cleared.
pub(crate) fn started(attempt: u32, worker: String, now: Micros) -> StepWrite {
    StepWrite {
        attempt: Some(attempt),
        worker: Some(worker),
        started_at: Some(now),
        finished_at: Some(0),
        output_json: Some(String::new()),
        error: Some(String::new()),
        exit_code: Some(None),
        progress: Some((0.0, String::new())),
        ..StepWrite::default()
    }
}
