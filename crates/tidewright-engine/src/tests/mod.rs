//! The engine in memory: a store in memory, workers that are channels, and
//! no process or port. Each test drives the engine through its handle as
//! the services do and reads what it committed back from the store.

use std::time::Duration;

use tidewright_core::{AttemptKey, Cost, Event, StepSpec, StepState, TaskSpec, TaskState};
use tidewright_store as store;
use tidewright_store::memory::MemoryStore;
use tidewright_store::{Commit, TaskRecord, Write};
use tidewright_store::{
    EventStore, RecoveryStore, RetentionStore, ScheduleStore, StateStore, StepStore, TaskStore,
    TenantStore, TriggerStore, WebhookStore, WriteStore,
};
use tokio::sync::mpsc;

use super::*;

mod attempts;
mod batch;
mod budget;
mod cold;
mod failover;
mod family;
mod follow;
mod gone;
mod replay;
mod retention;
mod review;
mod shares;
mod steer;
mod unserved;
mod verify;

/// How long a test waits for something the engine should do at once.
const PROMPTLY: Duration = Duration::from_secs(5);

struct Harness {
    engine: EngineHandle,
    store: MemoryStore,
    metrics: Arc<Metrics>,
}

/// A worker as the engine sees one: its id, and what the engine sends it.
struct FakeWorker {
    id: u64,
    inbox: mpsc::UnboundedReceiver<ToWorker>,
}

fn liveness(ttl: Duration) -> Liveness {
    Liveness {
        ttl,
        heartbeat_interval: ttl / 4,
    }
}

/// The engine's settings in these tests: workers silent 30 s are lost, and
/// the defaults otherwise.
fn settings() -> Settings {
    Settings {
        liveness: liveness(Duration::from_secs(30)),
        hot_tasks: DEFAULT_HOT_TASKS,
        limit_backoff: crate::DEFAULT_LIMIT_BACKOFF,
        retention: tidewright_store::retention::Retention::forever(),
        fallback: Default::default(),
    }
}

impl Harness {
    /// An engine over `store`, with the unfinished tasks of `backlog` to
    /// read back.
    fn start(store: MemoryStore, backlog: Vec<String>, liveness: Liveness) -> Harness {
        let tenants = StoredTenants::default();
        let settings = Settings {
            liveness,
            ..settings()
        };
        Harness::start_on(Arc::new(store.clone()), store, backlog, settings, tenants)
    }

    /// An engine over `store`, which starts from these tenants' budgets.
    fn start_with(store: MemoryStore, tenants: StoredTenants) -> Harness {
        Harness::start_on(
            Arc::new(store.clone()),
            store,
            Vec::new(),
            settings(),
            tenants,
        )
    }

    /// An engine over `store`, which the test keeps.
    fn new_on(store: MemoryStore) -> Harness {
        Harness::start_with(store, StoredTenants::default())
    }

    /// An engine over `engine_store`, a view of `store` (which the test
    /// reads).
    fn start_on(
        engine_store: Arc<dyn Store>,
        store: MemoryStore,
        backlog: Vec<String>,
        settings: Settings,
        tenants: StoredTenants,
    ) -> Harness {
        let metrics = Arc::new(Metrics::new());
        let (engine, _fatal) = start(
            engine_store,
            Arc::new(Hub::default()),
            backlog,
            settings,
            metrics.clone(),
            tenants,
        );
        Harness {
            engine,
            store,
            metrics,
        }
    }

    fn new() -> Harness {
        Harness::new_on(MemoryStore::new())
    }

    /// Submits a task as SubmitTask does.
    async fn submit(&self, id: &str, priority: i32, created_at: Micros, steps: Vec<StepSpec>) {
        let spec = TaskSpec {
            name: id.to_string(),
            priority,
            steps,
            ..TaskSpec::default()
        };
        let created = self
            .try_submit(id, "default", spec, created_at)
            .await
            .expect("submitted");
        assert_eq!(created, [tidewright_store::Created::New(id.to_string())]);
    }

    /// Submits `spec` into `tenant`, saying what the engine answered.
    async fn try_submit(
        &self,
        id: &str,
        tenant: &str,
        spec: TaskSpec,
        created_at: Micros,
    ) -> Result<Vec<tidewright_store::Created>, Error> {
        self.engine
            .submit(vec![Submission {
                id: id.to_string(),
                tenant: tenant.into(),
                spec,
                idempotency_key: None,
                created_at,
                plan_json: String::new(),
                trace_context: String::new(),
                unrunnable: None,
                audit: None,
            }])
            .await
    }

    async fn worker(&self, name: &str, capabilities: &[&str], slots: u32) -> FakeWorker {
        self.reconnect(name, capabilities, slots, Vec::new()).await
    }

    /// A worker that (re)registers saying which attempts it still runs.
    async fn reconnect(
        &self,
        name: &str,
        capabilities: &[&str],
        slots: u32,
        running: Vec<AttemptKey>,
    ) -> FakeWorker {
        let info = WorkerInfo {
            name: name.into(),
            pool: String::new(),
            capabilities: tidewright_core::queue::capabilities(capabilities),
            slots,
            peer: "test".into(),
            max_concurrent_agents: 0,
            isolation: "bubblewrap 0.8.0: namespaces user, pid".into(),
        };
        self.register(info, running).await
    }

    /// A worker registering as `info` says.
    async fn register(&self, info: WorkerInfo, running: Vec<AttemptKey>) -> FakeWorker {
        let (outbox, inbox) = mpsc::unbounded_channel();
        let id = self
            .engine
            .register(info, running, outbox)
            .await
            .expect("registered");
        let mut worker = FakeWorker { id, inbox };
        match worker.next().await {
            ToWorker::Registered { .. } => worker,
            other => panic!("expected registered, got {other:?}"),
        }
    }

    /// Heartbeats for `worker` until the returned guard is dropped, as a
    /// live worker does.
    fn keep_alive(&self, worker: &FakeWorker) -> Heartbeats {
        let engine = self.engine.clone();
        let id = worker.id;
        Heartbeats(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            while engine.heartbeat(id).await.is_ok() {
                every.tick().await;
            }
        }))
    }

    /// Returns once every effect of what was sent before is out: the
    /// engine answers an expiry (here of nothing, at no time) after the
    /// effects queued ahead of it, as production's sweeps have it.
    async fn settled(&self) {
        self.engine.expire(Vec::new(), 0).await.expect("settled");
    }

    /// The task's events' kinds, as stored.
    async fn events(&self, id: &str) -> Vec<tidewright_core::EventKind> {
        self.store
            .events_after(id, 0, 1000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    async fn task(&self, id: &str) -> TaskRecord {
        self.store
            .get_task(id)
            .await
            .expect("read")
            .expect("the task")
    }

    async fn report(&self, worker: &FakeWorker, attempt: AttemptKey, outcome: AttemptEnd) {
        self.engine
            .report(
                worker.id,
                StepResult {
                    exit_code: Some(0),
                    ..StepResult::ended(attempt, outcome)
                },
            )
            .await
            .expect("reported");
    }

    /// A worker that registered with `slots` and offered them all.
    async fn ready_worker(&self, name: &str, capabilities: &[&str], slots: u32) -> FakeWorker {
        let worker = self.worker(name, capabilities, slots).await;
        self.engine
            .credits(worker.id, slots)
            .await
            .expect("credits");
        worker
    }

    /// What the worker reports `attempt` has spent so far.
    async fn spend(&self, worker: &FakeWorker, attempt: &AttemptKey, cost: Cost) {
        let attempt = attempt.clone();
        self.engine
            .spend(worker.id, attempt, cost)
            .await
            .expect("spend");
    }

    /// Polls the store until the task is in `state`.
    async fn until_state(&self, id: &str, state: TaskState) {
        let what = format!("the task is {}", state.as_str());
        self.until(id, &what, |t| t.state == state).await
    }

    /// Polls the store until `check` holds for the task.
    async fn until(&self, id: &str, what: &str, check: impl Fn(&TaskRecord) -> bool) {
        let deadline = tokio::time::Instant::now() + PROMPTLY;
        loop {
            let task = self.task(id).await;
            if check(&task) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {PROMPTLY:?}: {task:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl FakeWorker {
    async fn next(&mut self) -> ToWorker {
        tokio::time::timeout(PROMPTLY, self.inbox.recv())
            .await
            .expect("a message in time")
            .expect("the engine keeps the stream")
    }

    /// The next assignment, whole.
    async fn assignment(&mut self) -> crate::Assignment {
        match self.next().await {
            ToWorker::Assign(a) => *a,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    /// The next assignment's attempt.
    async fn assigned(&mut self) -> AttemptKey {
        self.assignment().await.attempt
    }

    /// Nothing waits for this worker (call after [`Harness::settled`]).
    /// The next `n` attempts the engine stops, sorted by task, each with
    /// why.
    async fn stopped(&mut self, n: usize) -> Vec<(AttemptKey, String)> {
        let mut stopped = Vec::new();
        for _ in 0..n {
            match self.next().await {
                ToWorker::Cancel {
                    attempt, reason, ..
                } => stopped.push((attempt, reason)),
                other => panic!("expected a stop, got {other:?}"),
            }
        }
        stopped.sort_by(|a, b| a.0.task_id.cmp(&b.0.task_id));
        stopped
    }

    fn idle(&mut self) -> bool {
        self.inbox.try_recv().is_err()
    }
}

/// Stops a worker's heartbeats when dropped.
struct Heartbeats(tokio::task::JoinHandle<()>);

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn noop(id: &str) -> StepSpec {
    StepSpec::noop(id)
}

fn key(task: &str, step: &str, attempt: u32) -> AttemptKey {
    AttemptKey {
        task_id: task.into(),
        step_id: step.into(),
        attempt,
    }
}

#[tokio::test]
async fn the_highest_priority_goes_first_and_the_oldest_within_a_priority() {
    let h = Harness::new();
    h.submit("low", 0, 1, vec![noop("a")]).await;
    h.submit("high-late", 5, 3, vec![noop("a")]).await;
    h.submit("high-early", 5, 2, vec![noop("a")]).await;
    let mut w = h.ready_worker("w", &["shell"], 3).await;
    let order = [
        w.assigned().await.task_id,
        w.assigned().await.task_id,
        w.assigned().await.task_id,
    ];
    assert_eq!(order, ["high-early", "high-late", "low"]);
}

#[tokio::test]
async fn a_tenants_backlog_does_not_starve_another_tenants_few_tasks() {
    let h = Harness::new();
    let one = |id: &str| TaskSpec {
        name: id.to_string(),
        steps: vec![noop("a")],
        ..TaskSpec::default()
    };
    for n in 0..40 {
        h.try_submit(&format!("flood-{n:02}"), "acme", one("flood"), n)
            .await
            .expect("submitted");
    }
    // Newer, and of the same priority: not behind acme's forty.
    for n in 0..3 {
        h.try_submit(&format!("few-{n}"), "zeta", one("few"), 100 + n)
            .await
            .expect("submitted");
    }
    let mut w = h.ready_worker("w", &["shell"], 8).await;
    let mut started = Vec::new();
    for _ in 0..8 {
        started.push(w.assigned().await.task_id);
    }
    let few = started.iter().filter(|id| id.starts_with("few-")).count();
    assert_eq!(few, 3, "zeta's three go in the first turns: {started:?}");
    assert_eq!(started[0], "flood-00", "oldest first within acme");
    // Each tenant's part, as the metrics read it.
    let now = h.engine.list_agents().await.expect("the fleet");
    assert_eq!(now.waiting_by_tenant, [("acme".to_string(), 35)]);
    assert_eq!(
        now.running_by_tenant,
        [("acme".to_string(), 5), ("zeta".to_string(), 3)]
    );
}

#[tokio::test]
async fn a_step_waits_for_a_worker_with_what_it_needs_and_never_exceeds_credits() {
    let h = Harness::new();
    h.submit("gpu", 0, 1, vec![noop("train").needing(&["gpu"])])
        .await;
    h.submit("plain", 0, 2, vec![noop("a"), noop("b")]).await;
    let mut cpu = h.worker("cpu", &["shell"], 4).await;
    h.engine.credits(cpu.id, 1).await.expect("credits");
    assert_eq!(cpu.assigned().await, key("plain", "a", 1));
    h.settled().await;
    assert!(cpu.idle(), "one credit, one step; never the gpu step");
    h.engine.credits(cpu.id, 1).await.expect("credits");
    assert_eq!(cpu.assigned().await, key("plain", "b", 1));
    h.engine.credits(cpu.id, 2).await.expect("credits");
    h.settled().await;
    assert!(cpu.idle(), "nothing it can run is left");
    let mut gpu = h.ready_worker("gpu", &["gpu", "shell"], 1).await;
    assert_eq!(gpu.assigned().await, key("gpu", "train", 1));
}

#[tokio::test]
async fn a_dependent_step_starts_once_its_dependency_succeeded() {
    let h = Harness::new();
    h.submit("dag", 0, 1, vec![noop("a"), noop("b").after(&["a"])])
        .await;
    let mut w = h.ready_worker("w", &["shell"], 2).await;
    let a = w.assigned().await;
    assert_eq!(a, key("dag", "a", 1));
    h.settled().await;
    assert!(w.idle(), "b waits for a");
    h.report(&w, a, AttemptEnd::Succeeded).await;
    assert_eq!(w.assigned().await, key("dag", "b", 1));
    h.report(&w, key("dag", "b", 1), AttemptEnd::Succeeded)
        .await;
    h.until_state("dag", TaskState::Succeeded).await;
}

#[tokio::test]
async fn steps_whose_touches_may_overlap_run_one_after_the_other_and_disjoint_ones_at_once() {
    let h = Harness::new();
    let touching = |id: &str, globs: &[&str]| {
        let mut step = noop(id);
        step.touches = globs.iter().map(|g| g.to_string()).collect();
        step
    };
    h.submit(
        "t",
        0,
        1,
        vec![
            touching("api", &["src/api/**"]),
            touching("handlers", &["src/api/handlers.rs"]),
            touching("web", &["src/web/**"]),
        ],
    )
    .await;
    let mut w = h.ready_worker("w", &["shell"], 3).await;
    let mut started = vec![w.assigned().await, w.assigned().await];
    started.sort_by(|a, b| a.step_id.cmp(&b.step_id));
    assert_eq!(started, vec![key("t", "api", 1), key("t", "web", 1)]);
    h.settled().await;
    assert!(w.idle(), "handlers waits for api");
    let task = h.task("t").await;
    assert_eq!(task.steps[1].state, StepState::Queued);
    let events = h.store.events_after("t", 0, 100).await.expect("events");
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::StepState { step, message, waits_for, .. }
            if step == "handlers" && waits_for == "api" && message == "waits for step api: it touches src/api/handlers.rs, step api touches src/api/**")),
        "the wait is said: {events:?}"
    );
    h.report(&w, key("t", "web", 1), AttemptEnd::Succeeded)
        .await;
    h.settled().await;
    assert!(w.idle(), "web does not hold handlers");
    h.report(&w, key("t", "api", 1), AttemptEnd::Succeeded)
        .await;
    assert_eq!(w.assigned().await, key("t", "handlers", 1));
    h.report(&w, key("t", "handlers", 1), AttemptEnd::Succeeded)
        .await;
    h.until_state("t", TaskState::Succeeded).await;
}

#[tokio::test]
async fn tasks_that_keep_their_touches_to_themselves_wait_for_each_other_on_one_repository() {
    let h = Harness::new();
    let touching = |id: &str, globs: &[&str]| {
        let mut step = noop(id);
        step.touches = globs.iter().map(|g| g.to_string()).collect();
        step
    };
    let on_repo = |name: &str, exclusive: bool, steps: Vec<StepSpec>| TaskSpec {
        name: name.into(),
        steps,
        repo: Some(tidewright_core::RepoSpec {
            url: "https://example.com/acme/app.git".into(),
            git_ref: "main".into(),
            commit: "0".repeat(40),
            exclusive: exclusive.then_some(tidewright_core::repo::Exclusive::Touches),
            ..tidewright_core::RepoSpec::default()
        }),
        ..TaskSpec::default()
    };
    let submit = |id: &'static str, spec: TaskSpec| {
        let h = &h;
        async move {
            h.try_submit(id, "default", spec, 1)
                .await
                .expect("submitted");
        }
    };
    submit(
        "t1",
        on_repo("first", true, vec![touching("api", &["src/api/**"])]),
    )
    .await;
    submit(
        "t2",
        on_repo(
            "second",
            true,
            vec![
                touching("handlers", &["src/api/handlers.rs"]),
                touching("web", &["src/web/**"]),
            ],
        ),
    )
    .await;
    // A task that does not opt in is not held, nor holds anyone.
    submit(
        "t3",
        on_repo("third", false, vec![touching("also", &["src/api/**"])]),
    )
    .await;
    let mut w = h.ready_worker("w", &["shell"], 4).await;
    let mut started = vec![w.assigned().await, w.assigned().await, w.assigned().await];
    started.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    assert_eq!(
        started,
        vec![
            key("t1", "api", 1),
            key("t2", "web", 1),
            key("t3", "also", 1)
        ]
    );
    h.settled().await;
    assert!(w.idle(), "handlers waits for t1's api");
    let events = h.store.events_after("t2", 0, 100).await.expect("events");
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::StepState { step, message, waits_for, .. }
            if step == "handlers" && waits_for == "t1/api" && message == "waits for step api of task t1: it touches src/api/handlers.rs, that step touches src/api/**")),
        "the wait is said: {events:?}"
    );
    h.report(&w, key("t1", "api", 1), AttemptEnd::Succeeded)
        .await;
    assert_eq!(w.assigned().await, key("t2", "handlers", 1));
}

/// A task of one step that lands on `base` of one repository through its
/// queue, with the deliver step a submit adds.
fn landing(name: &str, base: &str) -> TaskSpec {
    let mut spec = TaskSpec {
        name: name.into(),
        steps: vec![noop("work")],
        repo: Some(tidewright_core::RepoSpec {
            url: "https://example.com/acme/app.git".into(),
            git_ref: "main".into(),
            commit: "0".repeat(40),
            land: Some(tidewright_core::repo::LandSpec {
                base: base.into(),
                ..tidewright_core::repo::LandSpec::default()
            }),
            ..tidewright_core::RepoSpec::default()
        }),
        ..TaskSpec::default()
    };
    tidewright_core::spec::with_delivery(&mut spec);
    spec
}

#[tokio::test]
async fn tasks_landing_on_one_base_land_one_at_a_time_first_come_first_landed() {
    let h = Harness::new();
    for (id, base, at) in [
        ("t1", "main", 1),
        ("t2", "main", 2),
        ("t3", "main", 3),
        ("other", "release", 4),
    ] {
        h.try_submit(id, "default", landing(id, base), at)
            .await
            .expect("submitted");
    }
    let mut w = h.ready_worker("w", &["shell"], 8).await;
    for _ in 0..4 {
        let work = w.assigned().await;
        assert_eq!(work.step_id, "work");
    }
    let deliver = tidewright_core::repo::DELIVER_STEP;
    // t1 lands first; t3 and t2, ready after it, wait their turn in the
    // order the tasks were made; a task landing on another base does not.
    for id in ["t1", "t3", "t2", "other"] {
        h.report(&w, key(id, "work", 1), AttemptEnd::Succeeded)
            .await;
    }
    let mut first = vec![w.assigned().await, w.assigned().await];
    first.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    assert_eq!(first, vec![key("other", deliver, 1), key("t1", deliver, 1)]);
    h.settled().await;
    assert!(w.idle(), "t2 and t3 wait for t1 to land");
    let events = h.store.events_after("t3", 0, 100).await.expect("events");
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::StepState { step, message, waits_for, .. }
            if step == deliver && waits_for == &format!("t1/{deliver}") && message == "waits to land on main: task t1 is landing there")),
        "the wait is said: {events:?}"
    );
    // Each base's queue is listed in its order, and counted.
    let queues = |fleet: &crate::FleetNow| -> Vec<(String, Vec<(String, bool)>)> {
        fleet
            .landings
            .iter()
            .map(|q| {
                let tasks = q.tasks.iter().map(|t| (t.task_id.clone(), t.landing));
                (q.base.clone(), tasks.collect())
            })
            .collect()
    };
    let fleet = h.engine.list_agents().await.expect("fleet");
    assert_eq!(
        queues(&fleet),
        vec![
            (
                "main".to_string(),
                vec![
                    ("t1".to_string(), true),
                    ("t2".to_string(), false),
                    ("t3".to_string(), false)
                ]
            ),
            ("release".to_string(), vec![("other".to_string(), true)]),
        ]
    );
    let metrics = h.metrics.render(&fleet);
    let depth =
        "tidewright_landing_queue_depth{repo=\"https://example.com/acme/app\",base=\"main\"} 3";
    assert!(metrics.lines().any(|l| l == depth), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l == "tidewright_landing_wait_seconds_count 2"),
        "t1's and other's turns: {metrics}"
    );
    h.report(&w, key("t1", deliver, 1), AttemptEnd::Succeeded)
        .await;
    assert_eq!(
        w.assigned().await,
        key("t2", deliver, 1),
        "the oldest waiting lands next"
    );
    h.settled().await;
    let fleet = h.engine.list_agents().await.expect("fleet");
    assert_eq!(
        queues(&fleet)[0],
        (
            "main".to_string(),
            vec![("t2".to_string(), true), ("t3".to_string(), false)]
        ),
        "t1 left the queue when it landed"
    );
    assert!(w.idle(), "t3 waits for t2");
    h.report(&w, key("t2", deliver, 1), AttemptEnd::Failed)
        .await;
    assert_eq!(
        w.assigned().await,
        key("t3", deliver, 1),
        "a landing that failed ends its turn too"
    );
}

#[tokio::test]
async fn a_landings_verdict_is_an_event_and_counted_and_a_conflict_is_not_retried() {
    let h = Harness::new();
    let deliver = tidewright_core::repo::DELIVER_STEP;
    let mut w = h.ready_worker("w", &["shell"], 8).await;
    let checked = tidewright_core::Verification {
        round: 1,
        head_commit: "c".repeat(40),
        checks: vec![tidewright_core::CheckResult {
            name: "tests".into(),
            passed: true,
            exit_code: Some(0),
            ..tidewright_core::CheckResult::default()
        }],
        ..tidewright_core::Verification::default()
    };
    let verdicts = [
        (
            "landed",
            AttemptEnd::Succeeded,
            None,
            format!(r#"{{"landed": "{}"}}"#, "c".repeat(40)),
        ),
        (
            "bounced",
            AttemptEnd::Failed,
            Some(tidewright_core::repo::MergeConflict {
                with: "main".into(),
                after: Vec::new(),
                paths: vec!["calc.py".into()],
            }),
            String::new(),
        ),
    ];
    for (at, (id, outcome, conflict, output_json)) in verdicts.into_iter().enumerate() {
        h.try_submit(id, "default", landing(id, "main"), at as i64 + 1)
            .await
            .expect("submitted");
        assert_eq!(w.assigned().await, key(id, "work", 1));
        h.report(&w, key(id, "work", 1), AttemptEnd::Succeeded)
            .await;
        assert_eq!(w.assigned().await, key(id, deliver, 1));
        let error = match outcome {
            AttemptEnd::Succeeded => String::new(),
            _ => "landing on main: the task's work conflicts with main at cccc: calc.py".into(),
        };
        h.engine
            .report(
                w.id,
                StepResult {
                    output_json,
                    error,
                    verification: conflict.is_none().then(|| checked.clone()),
                    conflict,
                    ..StepResult::ended(key(id, deliver, 1), outcome)
                },
            )
            .await
            .expect("reported");
        h.settled().await;
    }
    let said = |id: &str| {
        let h = &h;
        let id = id.to_string();
        async move {
            h.store
                .events_after(&id, 0, 100)
                .await
                .expect("events")
                .into_iter()
                .find_map(|e| match e.kind {
                    EventKind::Verification {
                        step,
                        passed,
                        message,
                        ..
                    } if step == deliver => Some((passed, message)),
                    _ => None,
                })
        }
    };
    let (passed, message) = said("landed").await.expect("said");
    assert!(passed);
    assert_eq!(
        message,
        format!("landed on main at {}: its check passed", "c".repeat(12))
    );
    let (passed, message) = said("bounced").await.expect("said");
    assert!(!passed && message.ends_with(": calc.py"), "{message}");
    let bounced = h.task("bounced").await;
    assert_eq!(bounced.state, TaskState::Failed);
    assert_eq!(
        bounced.steps[1].attempts.len(),
        1,
        "a conflict is not retried, whatever deliver's retry policy says"
    );
    let metrics = h.metrics.render(&Default::default());
    for line in [
        "tidewright_landings_total{outcome=\"landed\"} 1",
        "tidewright_landings_total{outcome=\"conflict\"} 1",
        "tidewright_time_to_land_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_conflict_at_a_merge_runs_the_later_side_again_on_top_of_the_earlier() {
    let h = Harness::new();
    let mut join = noop("join").after(&["left", "right"]);
    join.on_conflict = Some(tidewright_core::OnConflict::Rerun);
    let spec = TaskSpec {
        name: "t".into(),
        steps: vec![noop("left"), noop("right"), join],
        repo: Some(tidewright_core::RepoSpec {
            url: "https://example.com/acme/app.git".into(),
            commit: "0".repeat(40),
            ..tidewright_core::RepoSpec::default()
        }),
        ..TaskSpec::default()
    };
    h.try_submit("t", "default", spec, 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 3).await;
    let worked = |head: &str| tidewright_core::StepWork {
        head_commit: head.repeat(40),
        ..tidewright_core::StepWork::default()
    };
    let worker_id = w.id;
    let report = |step: &str, attempt: u32, outcome, head: Option<&str>, conflict| {
        h.engine.report(
            worker_id,
            StepResult {
                exit_code: Some(0),
                work: head.map(worked),
                conflict,
                ..StepResult::ended(key("t", step, attempt), outcome)
            },
        )
    };
    let assignment = |message: ToWorker| match message {
        ToWorker::Assign(a) => *a,
        other => panic!("expected an assignment, got {other:?}"),
    };
    let heads = |a: &crate::to_worker::Assignment| {
        a.dependency_heads
            .iter()
            .map(|h| format!("{}@{}", h.step, &h.head[..1]))
            .collect::<Vec<_>>()
    };
    let mut first = [assignment(w.next().await), assignment(w.next().await)];
    first.sort_by(|a, b| a.attempt.step_id.cmp(&b.attempt.step_id));
    assert!(first.iter().all(|a| a.dependency_heads.is_empty()));
    report("left", 1, AttemptEnd::Succeeded, Some("a"), None)
        .await
        .expect("reported");
    report("right", 1, AttemptEnd::Succeeded, Some("b"), None)
        .await
        .expect("reported");
    let joined = assignment(w.next().await);
    assert_eq!(joined.attempt, key("t", "join", 1));
    assert_eq!(heads(&joined), ["left@a", "right@b"]);
    // join finds right's work in conflict with left's: right runs again,
    // from left's head, and join waits for it.
    let conflict = tidewright_core::repo::MergeConflict {
        with: "right".into(),
        after: vec!["left".into()],
        paths: vec!["config.toml".into()],
    };
    report("join", 1, AttemptEnd::Failed, None, Some(conflict.clone()))
        .await
        .expect("reported");
    // The three slots' results are in: the worker has room again.
    h.engine.credits(worker_id, 3).await.expect("credits");
    let again = assignment(w.next().await);
    assert_eq!(again.attempt, key("t", "right", 2));
    assert_eq!(heads(&again), ["left@a"]);
    let task = h.task("t").await;
    assert_eq!(task.steps[2].state, StepState::Waiting);
    let events = h.store.events_after("t", 0, 100).await.expect("events");
    let said: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepState {
                step,
                conflict: Some(c),
                ..
            } => Some((step.as_str(), c)),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        [("join", &conflict)],
        "join's event says what conflicted"
    );
    report("right", 2, AttemptEnd::Succeeded, Some("c"), None)
        .await
        .expect("reported");
    let joined = assignment(w.next().await);
    assert_eq!(joined.attempt, key("t", "join", 2));
    assert_eq!(heads(&joined), ["left@a", "right@c"]);
    report("join", 2, AttemptEnd::Succeeded, Some("d"), None)
        .await
        .expect("reported");
    h.until_state("t", TaskState::Succeeded).await;
}

/// Task `t`'s step `a`, its attempt 1 on worker `first` lost as its
/// stream drops, and running again as attempt 2 on worker `second`.
async fn lost_and_run_again() -> (Harness, FakeWorker, FakeWorker) {
    let h = Harness::new();
    h.submit("t", 0, 1, vec![noop("a")]).await;
    let mut first = h.ready_worker("first", &["shell"], 1).await;
    assert_eq!(first.assigned().await, key("t", "a", 1));
    h.engine.disconnected(first.id).await.expect("dropped");
    let mut second = h.ready_worker("second", &["shell"], 1).await;
    assert_eq!(second.assigned().await, key("t", "a", 2));
    (h, first, second)
}

#[tokio::test]
async fn a_lost_attempt_runs_again_and_its_late_result_is_fenced_off() {
    let (h, first, second) = lost_and_run_again().await;
    // Attempt 1's result, late, from either worker, counts for nothing.
    h.report(&first, key("t", "a", 1), AttemptEnd::Failed).await;
    h.report(&second, key("t", "a", 1), AttemptEnd::Failed)
        .await;
    h.settled().await;
    let task = h.task("t").await;
    assert_eq!(
        (task.state, task.steps[0].state, task.steps[0].attempt),
        (TaskState::Running, StepState::Running, 2)
    );
    h.report(&second, key("t", "a", 2), AttemptEnd::Succeeded)
        .await;
    h.until_state("t", TaskState::Succeeded).await;
    let attempts = &h.task("t").await.steps[0].attempts;
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.worker.as_str(), a.state))
            .collect::<Vec<_>>(),
        [
            (1, "first", StepState::Queued),
            (2, "second", StepState::Succeeded)
        ],
        "the lost attempt is kept with who ran it"
    );
}

#[tokio::test]
async fn a_steps_setup_is_an_event_and_kept_on_its_attempt_and_a_stale_ones_is_not() {
    use tidewright_core::setup::{SetupReport, SetupSource};
    let (h, first, second) = lost_and_run_again().await;
    let report = |source, millis| SetupReport {
        seed: "5e".repeat(32),
        source,
        method: "overlay".into(),
        millis,
        run_millis: 9_000,
        ..SetupReport::default()
    };
    // The lost attempt's, late: fenced off like its result.
    h.engine
        .setup(first.id, key("t", "a", 1), report(SetupSource::Ran, 1))
        .await
        .expect("sent");
    h.engine
        .setup(second.id, key("t", "a", 2), report(SetupSource::Store, 12))
        .await
        .expect("sent");
    h.settled().await;
    let task = h.task("t").await;
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts[0].setup, None, "{attempts:?}");
    assert_eq!(attempts[1].setup, Some(report(SetupSource::Store, 12)));
    let told: Vec<(u32, SetupReport)> = h
        .store
        .events_after("t", 0, 100)
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| match e.kind {
            tidewright_core::EventKind::Setup { attempt, setup, .. } => Some((attempt, setup)),
            _ => None,
        })
        .collect();
    assert_eq!(told, [(2, report(SetupSource::Store, 12))]);
}

#[tokio::test]
async fn a_silent_worker_loses_its_lease() {
    let h = Harness::start(
        MemoryStore::new(),
        Vec::new(),
        liveness(Duration::from_millis(300)),
    );
    h.submit("t", 0, 1, vec![noop("a")]).await;
    let mut silent = h.ready_worker("silent", &["shell"], 1).await;
    assert_eq!(silent.assigned().await, key("t", "a", 1));
    let mut alive = h.ready_worker("alive", &["shell"], 1).await;
    // `alive` keeps its lease by heartbeating; `silent` says nothing. Past
    // the TTL the step is `alive`'s as attempt 2.
    let _heartbeats = h.keep_alive(&alive);
    assert_eq!(alive.assigned().await, key("t", "a", 2));
    let task = h.task("t").await;
    assert!(
        task.steps[0].attempts[0]
            .error
            .contains("worker silent was silent for"),
        "{:?}",
        task.steps[0].attempts
    );
}

#[tokio::test]
async fn after_a_restart_a_running_step_is_reclaimed_by_its_worker_or_requeued() {
    // The first control plane: two steps running on w1.
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        h.submit("kept", 0, 1, vec![noop("a")]).await;
        h.submit("lost", 0, 2, vec![noop("a")]).await;
        let mut w1 = h.ready_worker("w1", &["shell"], 2).await;
        w1.assigned().await;
        w1.assigned().await;
        h.settled().await;
    }
    // Restarted from the store, with a short TTL for the orphans.
    let backlog = store.unfinished_task_ids().await.expect("recovery");
    assert_eq!(backlog, ["kept", "lost"]);
    let h = Harness::start(
        store.reopen(),
        backlog,
        liveness(Duration::from_millis(300)),
    );
    // w1 comes back still running "kept", but not "lost".
    let mut w1 = h
        .reconnect("w1", &["shell"], 2, vec![key("kept", "a", 1)])
        .await;
    let _heartbeats = h.keep_alive(&w1);
    h.engine.credits(w1.id, 1).await.expect("credits");
    // Nobody reclaims "lost": past the TTL it runs again, as attempt 2.
    assert_eq!(w1.assigned().await, key("lost", "a", 2));
    // The reclaimed attempt's result is accepted: the same attempt, not
    // run twice.
    h.report(&w1, key("kept", "a", 1), AttemptEnd::Succeeded)
        .await;
    h.until("kept", "the reclaimed attempt finishes the task", |t| {
        t.state == TaskState::Succeeded && t.steps[0].attempt == 1
    })
    .await;
}

/// The memory store, whose backlog reads wait until the test opens the
/// gate: a new leader's recovery held mid-way. It notes the tasks read
/// back by id (cold tasks), and every batch of writes and of tasks created
/// it was handed.
struct SlowBacklog {
    store: MemoryStore,
    gate: Arc<tokio::sync::Semaphore>,
    read_by_id: Arc<std::sync::Mutex<Vec<String>>>,
    handed: Arc<std::sync::Mutex<Vec<Handed>>>,
}

#[derive(Debug)]
enum Handed {
    /// The ids of the tasks created.
    Created(Vec<String>),
    Written(Vec<Write>),
}

impl SlowBacklog {
    fn new(store: MemoryStore, gate: Arc<tokio::sync::Semaphore>) -> Self {
        SlowBacklog {
            store,
            gate,
            read_by_id: Arc::default(),
            handed: Arc::default(),
        }
    }
}

impl Store for SlowBacklog {}

#[async_trait::async_trait]
impl WriteStore for SlowBacklog {
    async fn create_tasks(
        &self,
        tasks: Vec<tidewright_store::NewTask>,
    ) -> tidewright_store::Result<Vec<tidewright_store::Created>> {
        let handed = Handed::Created(tasks.iter().map(|t| t.id.clone()).collect());
        self.handed.lock().expect("not poisoned").push(handed);
        self.store.create_tasks(tasks).await
    }

    fn write(&self, batch: Vec<Write>) -> Commit {
        let handed = Handed::Written(batch.clone());
        self.handed.lock().expect("not poisoned").push(handed);
        self.store.write(batch)
    }

    async fn wait_for_room(&self) -> tidewright_store::Result<()> {
        self.store.wait_for_room().await
    }
}

#[async_trait::async_trait]
impl RecoveryStore for SlowBacklog {
    async fn unfinished_task_ids(&self) -> tidewright_store::Result<Vec<String>> {
        self.store.unfinished_task_ids().await
    }

    async fn unfinished_tasks_between(
        &self,
        first: &str,
        last: &str,
    ) -> tidewright_store::Result<Vec<TaskRecord>> {
        let _open = self.gate.acquire().await.expect("gate");
        self.store.unfinished_tasks_between(first, last).await
    }

    async fn unfinished_tasks_by_id(
        &self,
        ids: &[String],
    ) -> tidewright_store::Result<Vec<TaskRecord>> {
        self.read_by_id
            .lock()
            .expect("not poisoned")
            .extend_from_slice(ids);
        self.store.unfinished_tasks_by_id(ids).await
    }
}

/// The areas `SlowBacklog` passes on to the memory store as they are: a
/// row per method, `fn name(arguments) -> answer;`.
macro_rules! passed_on {
    ($($area:ident { $(fn $name:ident($($arg:ident: $ty:ty),*) -> $answer:ty;)* })*) => {
        $(
            #[async_trait::async_trait]
            impl $area for SlowBacklog {
                $(
                    async fn $name(&self, $($arg: $ty),*) -> tidewright_store::Result<$answer> {
                        self.store.$name($($arg),*).await
                    }
                )*
            }
        )*
    };
}

passed_on! {
    TaskStore {
        fn get_task(id: &str) -> Option<TaskRecord>;
        fn tasks_by_id(ids: &[String]) -> Vec<TaskRecord>;
        fn list_tasks(query: store::TaskQuery) -> Vec<TaskRecord>;
        fn count_tasks(tenants: Option<Vec<String>>) -> Vec<(TaskState, u64)>;
    }
    StepStore {
        fn running_attempt(task_id: &str, step_id: &str) -> Option<u32>;
        fn checkpoint(task_id: &str, step_id: &str) -> Option<store::Checkpoint>;
        fn step_branch(task_id: &str, step_id: &str) -> Option<store::StepBranch>;
    }
    EventStore {
        fn events_after(task_id: &str, after: u64, limit: usize) -> Vec<Event>;
        fn fleet_events_after(after: u64, tenants: Option<Vec<String>>, limit: usize)
            -> store::fleet::FleetPage;
        fn fleet_head() -> u64;
        fn audit_after(after: u64, limit: usize, tenants: Option<Vec<String>>)
            -> Vec<store::AuditRecord>;
    }
    StateStore {
        fn list_state(query: store::StateQuery) -> Vec<(store::StateKey, store::StateEntry)>;
        fn change_state(change: store::StateChange) -> store::StateOutcome;
        fn get_state(key: store::StateKey, now: Micros) -> Option<store::StateEntry>;
    }
    RetentionStore {
        fn expiring(retention: &store::retention::Retention, now: Micros, limit: usize)
            -> Vec<store::retention::Expiring>;
        fn expired(id: &str) -> Option<store::retention::Expired>;
    }
    TenantStore {
        fn tenant_budgets() -> Vec<(String, tidewright_core::TenantBudget)>;
        fn tenant_shares() -> Vec<(String, tidewright_core::TenantShare)>;
        fn spend_since(since: Micros) -> Vec<(String, tidewright_core::Cost)>;
        fn cost_sums(from: &str, tenants: Option<Vec<String>>) -> Vec<tidewright_core::cost_sums::CostSum>;
    }
    WebhookStore {
        fn webhooks() -> Vec<store::webhooks::Webhook>;
        fn webhook_cursor() -> u64;
        fn pending_deliveries(limit: usize) -> Vec<store::webhooks::Delivery>;
        fn deliveries(query: store::webhooks::DeliveryQuery) -> Vec<store::webhooks::Delivery>;
    }
    ScheduleStore {
        fn schedules() -> Vec<store::schedules::Schedule>;
        fn schedule(tenant: &str, name: &str) -> Option<store::schedules::Schedule>;
    }
    TriggerStore {
        fn triggers() -> Vec<store::triggers::Trigger>;
        fn trigger(tenant: &str, name: &str) -> Option<store::triggers::Trigger>;
    }
}

#[tokio::test]
async fn a_new_leader_serves_while_its_backlog_is_read_and_what_concerns_an_unread_task_waits_for_it()
 {
    // The old leader: "kept" running on w1, "doomed" queued for a
    // capability nobody offers.
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        h.submit("kept", 0, 1, vec![noop("a")]).await;
        let mut on_gpu = noop("a");
        on_gpu.needs = vec!["gpu".into()];
        h.submit("doomed", 0, 2, vec![on_gpu]).await;
        let mut w1 = h.ready_worker("w1", &["shell"], 1).await;
        assert_eq!(w1.assigned().await, key("kept", "a", 1));
        h.settled().await;
    }
    // The new leader reads nothing back until the gate opens.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = SlowBacklog::new(store.reopen(), gate.clone());
    let backlog = store.unfinished_task_ids().await.expect("ids");
    let h = Harness::start_on(
        Arc::new(slow),
        store.reopen(),
        backlog,
        settings(),
        StoredTenants::default(),
    );

    // It serves new work at once.
    h.submit("fresh", 0, 3, vec![noop("a")]).await;
    let mut w2 = h.ready_worker("w2", &["shell"], 1).await;
    assert_eq!(w2.assigned().await, key("fresh", "a", 1));
    // w1 comes back running "kept" and reports it; a user cancels
    // "doomed". All of it waits for those tasks to be read.
    let w1 = h
        .reconnect("w1", &["shell"], 1, vec![key("kept", "a", 1)])
        .await;
    h.report(&w1, key("kept", "a", 1), AttemptEnd::Succeeded)
        .await;
    let engine = h.engine.clone();
    let cancel =
        tokio::spawn(async move { engine.cancel("doomed".into(), "not needed".into()).await });
    h.settled().await;
    assert!(!cancel.is_finished(), "the cancel waits for its task");
    assert_eq!(h.task("kept").await.state, TaskState::Running);
    let refused = h
        .engine
        .reopen(h.task("doomed").await)
        .await
        .expect_err("an unread task is still running");
    assert!(refused.to_string().contains("still running"), "{refused}");

    gate.add_permits(1);
    let answer = cancel.await.expect("joined").expect("cancel");
    assert!(matches!(answer, CancelAnswer::Done), "committed");
    h.until_state("doomed", TaskState::Cancelled).await;
    // The reclaimed attempt's waiting result is taken: attempt 1, once.
    h.until("kept", "the reclaim and the result apply, in order", |t| {
        t.state == TaskState::Succeeded && t.steps[0].attempt == 1
    })
    .await;
}

#[tokio::test]
async fn cancel_reaches_the_running_step_and_stops_what_has_not_started() {
    let h = Harness::new();
    h.submit("t", 0, 1, vec![noop("a"), noop("b").after(&["a"])])
        .await;
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    let a = w.assigned().await;
    let answer = h
        .engine
        .cancel("t".into(), "no longer needed".into())
        .await
        .expect("cancel");
    assert!(matches!(answer, CancelAnswer::Done), "committed");
    match w.next().await {
        ToWorker::Cancel {
            attempt, reason, ..
        } => {
            assert_eq!(attempt, a);
            assert!(reason.contains("no longer needed"), "{reason:?}");
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    h.report(&w, a, AttemptEnd::Cancelled).await;
    h.until_state("t", TaskState::Cancelled).await;
    let task = h.task("t").await;
    assert_eq!(task.steps[1].state, StepState::Cancelled, "b never ran");
    // Cancelling again is fine: the task is no longer the engine's.
    let again = h
        .engine
        .cancel("t".into(), "again".into())
        .await
        .expect("cancel");
    assert!(matches!(again, CancelAnswer::NotActive));
    assert_eq!(h.task("t").await.state, TaskState::Cancelled);
}

#[tokio::test]
async fn a_task_without_a_key_is_stored_by_the_write_that_gives_its_step_out() {
    let store = MemoryStore::new();
    let watched = SlowBacklog::new(store.clone(), Arc::new(tokio::sync::Semaphore::new(1)));
    let handed = watched.handed.clone();
    let h = Harness::start_on(
        Arc::new(watched),
        store,
        Vec::new(),
        settings(),
        StoredTenants::default(),
    );
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    let created = h
        .try_submit(
            "t",
            "default",
            TaskSpec {
                steps: vec![noop("a")],
                ..TaskSpec::default()
            },
            1,
        )
        .await
        .expect("submitted");
    assert_eq!(created, [tidewright_store::Created::New("t".into())]);
    // Answered once stored: readable at once.
    assert_eq!(h.task("t").await.steps[0].id, "a");
    assert_eq!(w.assigned().await, key("t", "a", 1));
    let handed = handed.lock().expect("not poisoned");
    let with_task: Vec<&Vec<Write>> = handed
        .iter()
        .filter_map(|h| match h {
            Handed::Created(ids) => panic!("no separate create: {ids:?}"),
            Handed::Written(writes) => writes
                .iter()
                .any(|w| matches!(w, Write::Create(task) if task.id == "t"))
                .then_some(writes),
        })
        .collect();
    assert_eq!(with_task.len(), 1, "stored once");
    let writes = with_task[0];
    let made = writes
        .iter()
        .position(|w| matches!(w, Write::Create(_)))
        .expect("made");
    let given = writes
        .iter()
        .position(|w| matches!(w, Write::Step(s) if s.task_id == "t" && s.attempt == Some(1)))
        .expect("the step's first attempt is in the same write");
    assert!(made < given, "made before its step starts: {writes:?}");
}

#[tokio::test]
async fn a_task_submitted_twice_with_one_key_is_made_and_run_once() {
    let h = Harness::new();
    let submission = |id: &str| Submission {
        id: id.into(),
        tenant: "default".into(),
        spec: TaskSpec {
            steps: vec![noop("a")],
            ..TaskSpec::default()
        },
        idempotency_key: Some("deploy-42".into()),
        created_at: 1,
        plan_json: String::new(),
        trace_context: String::new(),
        unrunnable: None,
        audit: None,
    };
    let created = h
        .engine
        .submit(vec![submission("first"), submission("second")])
        .await
        .expect("submitted");
    assert_eq!(
        created,
        [
            tidewright_store::Created::New("first".into()),
            tidewright_store::Created::Existing("first".into())
        ]
    );
    let mut w = h.ready_worker("w", &["shell"], 2).await;
    assert_eq!(w.assigned().await, key("first", "a", 1));
    h.settled().await;
    assert!(w.idle(), "the second submit made nothing to run");
    // A task whose plan cannot run is made failed, and never scheduled.
    let mut unrunnable = submission("planned");
    unrunnable.idempotency_key = None;
    unrunnable.unrunnable = Some("the plan cannot run: a cycle".into());
    h.engine.submit(vec![unrunnable]).await.expect("submitted");
    h.settled().await;
    assert!(w.idle());
    let task = h.task("planned").await;
    assert_eq!(
        (task.state, task.message.as_str()),
        (TaskState::Failed, "the plan cannot run: a cycle")
    );
}

fn gated(id: &str, approvers: &[&str], timeout_seconds: Option<u32>) -> StepSpec {
    let mut step = noop(id).approved_by(approvers);
    if let Some(approval) = &mut step.approval {
        approval.timeout_seconds = timeout_seconds;
    }
    step
}

fn approve(by: &str) -> Decision {
    Decision::Approve {
        message: format!("approved by {by}"),
    }
}

#[tokio::test]
async fn a_gated_step_runs_only_once_approved_and_a_second_decision_is_refused() {
    let h = Harness::new();
    h.submit(
        "t",
        0,
        1,
        vec![
            noop("build"),
            gated("deploy", &["alice"], None).after(&["build"]),
        ],
    )
    .await;
    let mut w = h.ready_worker("w", &["shell"], 2).await;
    let build = w.assigned().await;
    h.report(&w, build, AttemptEnd::Succeeded).await;
    h.until("t", "deploy waits at its gate", |t| {
        t.steps[1].state == StepState::AwaitingApproval
    })
    .await;
    h.settled().await;
    assert!(w.idle(), "nothing runs before a decision");
    assert_eq!(
        h.task("t").await.steps[1].approval_deadline,
        0,
        "no timeout"
    );

    h.engine
        .decide("t".into(), "deploy".into(), approve("alice"))
        .await
        .expect("approved");
    assert_eq!(w.assigned().await, key("t", "deploy", 1));
    let again = h
        .engine
        .decide("t".into(), "deploy".into(), approve("alice"))
        .await
        .expect_err("a second approval");
    assert!(
        matches!(&again, Error::FailedPrecondition(m) if m.contains("not awaiting approval: it is running")),
        "{again:?}"
    );
    let events = h.store.events_after("t", 0, 100).await.expect("events");
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::StepState { step, state: StepState::Queued, message, .. }
                if step == "deploy" && message == "approved by alice")),
        "the decision is in the step's events: {events:#?}"
    );
}

#[tokio::test]
async fn a_rejected_step_fails_with_the_reason_and_stops_its_task() {
    let h = Harness::new();
    h.submit(
        "t",
        0,
        1,
        vec![
            gated("deploy", &["alice"], None),
            noop("smoke").after(&["deploy"]),
        ],
    )
    .await;
    h.until("t", "deploy waits from the start", |t| {
        t.steps[0].state == StepState::AwaitingApproval
    })
    .await;
    h.engine
        .decide(
            "t".into(),
            "deploy".into(),
            Decision::Reject {
                message: "rejected by alice: not on a Friday".into(),
            },
        )
        .await
        .expect("rejected");
    let task = h.task("t").await;
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.steps[0].error, "rejected by alice: not on a Friday");
    assert_eq!(task.steps[1].state, StepState::Skipped);
    assert_eq!(
        task.message,
        "step \"deploy\" failed: rejected by alice: not on a Friday"
    );
    let late = h
        .engine
        .decide("t".into(), "deploy".into(), approve("alice"))
        .await
        .expect_err("the task is over");
    assert!(matches!(late, Error::FailedPrecondition(_)), "{late:?}");
}

#[tokio::test]
async fn an_approval_past_its_timeout_fails_the_step_saying_so_and_is_audited() {
    let h = Harness::new();
    h.submit("t", 0, 1, vec![gated("deploy", &["alice"], Some(1))])
        .await;
    // A submit is answered once the task is committed; the engine stores
    // the deadline as it takes the task over, just after.
    h.until("t", "the deadline is stored with the step", |t| {
        t.steps[0].approval_deadline > 0
    })
    .await;
    let waiting = h.task("t").await;
    h.until_state("t", TaskState::Failed).await;
    let task = h.task("t").await;
    assert_eq!(
        task.steps[0].error,
        "no approver decided within 1s: the approval timed out"
    );
    assert_eq!(task.steps[0].approval_deadline, 0, "cleared once decided");
    assert!(
        now_micros() >= waiting.steps[0].approval_deadline,
        "not before its deadline"
    );
    let audit = h.store.audit_after(0, 10, None).await.expect("audit");
    assert!(
        audit.iter().any(|a| a.action == "step.approval_timeout"
            && a.actor == "tidewright"
            && a.target == "t"
            && a.detail.starts_with("step deploy")),
        "{audit:#?}"
    );
}

#[tokio::test]
async fn a_worker_that_runs_steps_unsandboxed_is_on_the_audit_record() {
    let h = Harness::new();
    let sandboxed = h.reconnect("boxed", &["shell"], 1, Vec::new()).await;
    let loose = WorkerInfo {
        name: "loose".into(),
        pool: String::new(),
        capabilities: tidewright_core::queue::capabilities(&["shell"]),
        slots: 1,
        peer: "test".into(),
        max_concurrent_agents: 0,
        isolation: format!("{} (--sandbox=off)", tidewright_core::UNSANDBOXED),
    };
    let _loose = h.register(loose, Vec::new()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let audit = loop {
        let audit = h.store.audit_after(0, 10, None).await.expect("audit");
        if !audit.is_empty() || std::time::Instant::now() > deadline {
            break audit;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(audit.len(), 1, "only the unsandboxed worker: {audit:#?}");
    assert_eq!(audit[0].action, "worker.unsandboxed");
    assert_eq!(audit[0].actor, "loose");
    assert_eq!(audit[0].role, "worker");
    assert!(audit[0].detail.contains("--sandbox=off"), "{audit:#?}");
    drop(sandboxed);
}

#[tokio::test]
async fn a_step_awaiting_approval_keeps_its_deadline_across_a_restart_and_can_be_approved() {
    let store = MemoryStore::new();
    let deadline = {
        let h = Harness::new_on(store.clone());
        h.submit("t", 0, 1, vec![gated("deploy", &["alice"], Some(3600))])
            .await;
        h.settled().await;
        h.task("t").await.steps[0].approval_deadline
    };
    assert!(deadline > 0);
    let backlog = store.unfinished_task_ids().await.expect("recovery");
    let h = Harness::start(store.reopen(), backlog, liveness(Duration::from_secs(30)));
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    h.settled().await;
    assert!(w.idle(), "still waiting after the restart");
    assert_eq!(
        h.task("t").await.steps[0].approval_deadline,
        deadline,
        "the wait did not start over"
    );
    h.engine
        .decide("t".into(), "deploy".into(), approve("alice"))
        .await
        .expect("approved after the restart");
    assert_eq!(w.assigned().await, key("t", "deploy", 1));
    let task = h.task("t").await;
    assert_eq!(task.steps[0].state, StepState::Running);
    let events = h.store.events_after("t", 0, 100).await.expect("events");
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::StepState { state: StepState::AwaitingApproval, message, .. }
            if message == "awaiting approval by alice within 3600s")));
}

#[tokio::test]
async fn a_pools_cap_on_agents_holds_across_its_workers_and_other_steps_still_run() {
    let h = Harness::new();
    let agent = |id: &str| noop(id).needing(&[tidewright_core::CLAUDE_CODE]);
    h.submit("agents", 0, 1, vec![agent("a1"), agent("a2"), agent("a3")])
        .await;
    h.submit("shell", 0, 2, vec![noop("s")]).await;
    let in_pool = |name: &str| WorkerInfo {
        name: name.into(),
        pool: "coders".into(),
        capabilities: tidewright_core::queue::capabilities(&[
            tidewright_core::CLAUDE_CODE,
            "shell",
        ]),
        slots: 2,
        peer: "test".into(),
        max_concurrent_agents: 1,
        isolation: "bubblewrap 0.8.0: namespaces user, pid".into(),
    };
    let mut w1 = h.register(in_pool("w1"), Vec::new()).await;
    let mut w2 = h.register(in_pool("w2"), Vec::new()).await;
    h.engine.credits(w1.id, 2).await.expect("credits");
    h.engine.credits(w2.id, 2).await.expect("credits");
    // One agent for the pool, whichever worker; the shell step runs too.
    let mut given = Vec::new();
    for worker in [&mut w1, &mut w2] {
        h.settled().await;
        while let Ok(message) = worker.inbox.try_recv() {
            if let ToWorker::Assign(a) = message {
                given.push((worker.id, a.attempt));
            }
        }
    }
    let steps: Vec<&str> = given.iter().map(|(_, k)| k.step_id.as_str()).collect();
    assert_eq!(steps.len(), 2, "{given:?}");
    assert!(
        steps.contains(&"s"),
        "the shell step is not held back: {given:?}"
    );
    let (runner, first) = given
        .iter()
        .find(|(_, k)| k.task_id == "agents")
        .cloned()
        .expect("one agent runs");
    // When it ends, the next agent starts: never two at once.
    let worker = if runner == w1.id { &w1 } else { &w2 };
    h.report(worker, first, AttemptEnd::Succeeded).await;
    h.settled().await;
    let mut next = Vec::new();
    for worker in [&mut w1, &mut w2] {
        while let Ok(message) = worker.inbox.try_recv() {
            if let ToWorker::Assign(a) = message {
                next.push(a.attempt);
            }
        }
    }
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0].task_id, "agents");
}

/// Each retry is told the agent's session: the attempt that started it
/// (its workspace) and the newest that ran in it (a worker holding an older
/// copy takes the checkpoint), also after a restart.
#[tokio::test]
async fn a_retry_is_told_the_session_its_first_and_its_newest_attempt_across_a_restart() {
    let store = MemoryStore::new();
    let mut step = noop("a");
    step.retry = Some(tidewright_core::RetryPolicy {
        initial_delay_ms: 0,
        ..tidewright_core::RetryPolicy::new(4)
    });
    let resume_of = |message: ToWorker| match message {
        ToWorker::Assign(a) => a.resume,
        other => panic!("expected an assignment, got {other:?}"),
    };
    let resume = |attempt, last_attempt| Resume {
        attempt,
        session_id: "s-1".into(),
        session_usd: 0.0,
        last_attempt,
        message: String::new(),
        round_base: String::new(),
    };
    {
        let h = Harness::new_on(store.clone());
        h.submit("t", 0, 1, vec![step]).await;
        let mut w = h.ready_worker("w1", &["shell"], 1).await;
        assert_eq!(
            resume_of(w.next().await),
            None,
            "a first attempt resumes nothing"
        );
        for (attempt, told) in [(1, None), (2, Some(resume(1, 1)))] {
            if let Some(told) = told {
                assert_eq!(resume_of(w.next().await), Some(told));
            }
            let key = key("t", "a", attempt);
            h.engine
                .session(w.id, key.clone(), "s-1".into(), "m".into())
                .await
                .expect("session");
            h.report(&w, key, AttemptEnd::Failed).await;
            // As a worker does once an attempt is done.
            h.engine.credits(w.id, 1).await.expect("credits");
        }
        assert_eq!(resume_of(w.next().await), Some(resume(1, 2)));
        h.settled().await;
    }
    // Restarted from the store: attempt 3 was running on w1, which is gone.
    let backlog = store.unfinished_task_ids().await.expect("recovery");
    let h = Harness::start(
        store.reopen(),
        backlog,
        liveness(Duration::from_millis(300)),
    );
    let mut w2 = h.worker("w2", &["shell"], 1).await;
    let _heartbeats = h.keep_alive(&w2);
    h.engine.credits(w2.id, 1).await.expect("credits");
    assert_eq!(resume_of(w2.next().await), Some(resume(1, 2)));
}

/// A limit is one provider's: a Codex agent's 429 pauses the pool's codex
/// steps, uncounted, while its Claude Code steps start as before.
#[tokio::test]
async fn a_codex_limit_pauses_the_pools_codex_agents_and_not_its_claude_agents() {
    let h = Harness::new();
    let codex = |id: &str| noop(id).needing(&[tidewright_core::CODEX]);
    let claude = |id: &str| noop(id).needing(&[tidewright_core::CLAUDE_CODE]);
    h.submit("first", 0, 1, vec![codex("c")]).await;
    let info = WorkerInfo {
        name: "w".into(),
        pool: "mixed".into(),
        capabilities: tidewright_core::queue::capabilities(&[
            tidewright_core::CLAUDE_CODE,
            tidewright_core::CODEX,
        ]),
        slots: 4,
        peer: "test".into(),
        max_concurrent_agents: 0,
        isolation: String::new(),
    };
    let mut w = h.register(info, Vec::new()).await;
    h.engine.credits(w.id, 4).await.expect("credits");
    h.settled().await;
    let assigned = |w: &mut FakeWorker| {
        let mut given = Vec::new();
        while let Ok(message) = w.inbox.try_recv() {
            if let ToWorker::Assign(a) = message {
                given.push(a.attempt);
            }
        }
        given
    };
    let first = assigned(&mut w);
    assert_eq!(first.len(), 1, "{first:?}");
    h.engine
        .report(
            w.id,
            StepResult {
                attempt: first[0].clone(),
                outcome: AttemptEnd::Failed,
                output_json: String::new(),
                error: "exceeded retry limit, last status: 429 Too Many Requests".into(),
                exit_code: Some(1),
                started_at: None,
                cost: None,
                stalled: false,
                rate_limited: Some(RateLimited {
                    reset: None,
                    signal: "status 429".into(),
                }),
                work: None,
                conflict: None,
                verification: None,
                handover: String::new(),
            },
        )
        .await
        .expect("reported");
    h.submit("second", 0, 2, vec![codex("c2")]).await;
    h.submit("third", 0, 3, vec![claude("k")]).await;
    h.settled().await;
    let next: Vec<(String, String)> = assigned(&mut w)
        .into_iter()
        .map(|k| (k.task_id, k.step_id))
        .collect();
    assert_eq!(
        next,
        [("third".to_string(), "k".to_string())],
        "only the Claude Code step starts while codex is paused"
    );
    let fleet = h.engine.list_agents().await.expect("fleet");
    let (_, reason) = fleet.workers[0]
        .paused
        .clone()
        .expect("the pool shows its pause");
    assert!(
        reason.starts_with("codex rate limited (status 429)"),
        "{reason}"
    );
    // The limited attempt did not count: the step waits queued for its
    // first attempt again.
    let task = h.task("first").await;
    assert_eq!(task.steps[0].state, StepState::Queued);
}
