//! Landing batches in the engine: tasks waiting their turn on one base
//! whose touches cannot overlap ride in one landing; a batch whose checks
//! fail is split, the older half first, until the task that broke it lands
//! alone and gets the verdict, and the others land.

use tidewright_core::repo::DELIVER_STEP;
use tidewright_core::{CheckResult, StepWork, Verification};

use super::*;

/// A landing task whose one step touches `touches`.
fn touching(name: &str, touches: &str) -> TaskSpec {
    let mut spec = landing(name, "main");
    spec.steps[0].touches = vec![touches.into()];
    if let Some(land) = spec.repo.as_mut().and_then(|r| r.land.as_mut()) {
        land.checks = vec![tidewright_core::CheckSpec {
            name: "tests".into(),
            run: vec!["pytest".into()],
            timeout: String::new(),
        }];
    }
    spec
}

fn checked(passed: bool) -> Verification {
    Verification {
        round: 1,
        head_commit: "c".repeat(40),
        checks: vec![CheckResult {
            name: "tests".into(),
            passed,
            exit_code: Some(i32::from(!passed)),
            ..CheckResult::default()
        }],
        ..Verification::default()
    }
}

impl Harness {
    /// Task `id`'s work step ends with a head of its own.
    pub(super) async fn worked(&self, worker: &FakeWorker, id: &str) {
        self.send(
            worker,
            key(id, "work", 1),
            AttemptEnd::Succeeded,
            (String::new(), None),
            Some(StepWork {
                branch: format!("tidewright/{id}-work"),
                head_commit: format!("{id:0>40}"),
                ..StepWork::default()
            }),
        )
        .await;
        self.engine.credits(worker.id, 1).await.expect("credits");
    }

    /// A landing's result: its output, and its checks' verdict.
    async fn landed(
        &self,
        worker: &FakeWorker,
        attempt: AttemptKey,
        outcome: AttemptEnd,
        output: serde_json::Value,
    ) {
        let verdict = Some(checked(outcome == AttemptEnd::Succeeded));
        self.send(
            worker,
            attempt,
            outcome,
            (output.to_string(), verdict),
            None,
        )
        .await;
        // Its slot is free again, as a real worker says.
        self.engine.credits(worker.id, 1).await.expect("credits");
    }

    async fn send(
        &self,
        worker: &FakeWorker,
        attempt: AttemptKey,
        outcome: AttemptEnd,
        (output_json, verification): (String, Option<Verification>),
        work: Option<StepWork>,
    ) {
        let error = match outcome {
            AttemptEnd::Succeeded => String::new(),
            _ => "landing on main: the checks failed".into(),
        };
        self.engine
            .report(
                worker.id,
                StepResult {
                    output_json,
                    error,
                    work,
                    verification,
                    ..StepResult::ended(attempt, outcome)
                },
            )
            .await
            .expect("reported");
    }
}

impl FakeWorker {
    /// The next assignment: its attempt and the tasks riding in it.
    async fn landing(&mut self) -> (AttemptKey, Vec<String>) {
        match self.next().await {
            ToWorker::Assign(a) => (
                a.attempt,
                a.land_riders.into_iter().map(|r| r.task_id).collect(),
            ),
            other => panic!("expected an assignment, got {other:?}"),
        }
    }
}

/// What the landing says of each rider: merged into what was checked,
/// and landed when it passed.
fn batch(riders: &[&str], landed: bool) -> serde_json::Value {
    let riders: Vec<serde_json::Value> = riders
        .iter()
        .map(|id| {
            serde_json::json!({"task": id, "head": format!("{id:0>40}"), "merged": true, "landed": landed})
        })
        .collect();
    serde_json::json!({"landed": "d".repeat(40), "base": "main", "tip": "e".repeat(40), "batch": riders})
}

#[tokio::test]
async fn disjoint_landings_ride_in_one_batch_and_a_red_one_is_split_until_its_culprit_lands_alone()
{
    let h = Harness::new();
    // b, c and d touch apart; e overlaps b, so it waits for a batch of
    // its own; f says nothing of what it touches, so it lands alone.
    let tasks = [
        ("a", "a/**"),
        ("b", "b/**"),
        ("c", "c/**"),
        ("d", "d/**"),
        ("e", "b/y.py"),
    ];
    for (at, (id, touches)) in tasks.iter().enumerate() {
        h.try_submit(id, "default", touching(id, touches), at as i64 + 1)
            .await
            .expect("submitted");
    }
    h.try_submit("f", "default", landing("f", "main"), 6)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 8).await;
    for _ in 0..6 {
        assert_eq!(w.assigned().await.step_id, "work");
    }
    // a lands first, alone: nobody waits yet.
    h.worked(&w, "a").await;
    assert_eq!(w.landing().await, (key("a", DELIVER_STEP, 1), Vec::new()));
    for id in ["b", "c", "d", "e", "f"] {
        h.worked(&w, id).await;
    }
    h.landed(
        &w,
        key("a", DELIVER_STEP, 1),
        AttemptEnd::Succeeded,
        batch(&[], true),
    )
    .await;
    // b takes its turn with c and d riding; e overlaps b, f may touch
    // anything.
    assert_eq!(
        w.landing().await,
        (key("b", DELIVER_STEP, 1), vec!["c".into(), "d".into()])
    );
    h.settled().await;
    assert!(w.idle(), "e and f wait for the batch");
    let fleet = h.engine.list_agents().await.expect("fleet");
    let landing_now: Vec<&str> = fleet.landings[0]
        .tasks
        .iter()
        .filter(|t| t.landing)
        .map(|t| t.task_id.as_str())
        .collect();
    assert_eq!(landing_now, ["b", "c", "d"], "the batch lands now");
    // Red: split into [b, c] and [d], which land in turn, before e.
    h.landed(
        &w,
        key("b", DELIVER_STEP, 1),
        AttemptEnd::Failed,
        batch(&["c", "d"], false),
    )
    .await;
    assert_eq!(
        w.landing().await,
        (key("b", DELIVER_STEP, 2), vec!["c".into()])
    );
    h.landed(
        &w,
        key("b", DELIVER_STEP, 2),
        AttemptEnd::Succeeded,
        batch(&["c"], true),
    )
    .await;
    assert_eq!(w.landing().await, (key("d", DELIVER_STEP, 2), Vec::new()));
    h.landed(
        &w,
        key("d", DELIVER_STEP, 2),
        AttemptEnd::Failed,
        batch(&[], false),
    )
    .await;
    // The split is done: e and f form batches afresh (f alone).
    assert_eq!(w.landing().await, (key("e", DELIVER_STEP, 1), Vec::new()));
    h.landed(
        &w,
        key("e", DELIVER_STEP, 1),
        AttemptEnd::Succeeded,
        batch(&[], true),
    )
    .await;
    assert_eq!(w.landing().await, (key("f", DELIVER_STEP, 1), Vec::new()));
    for (id, state) in [
        ("a", TaskState::Succeeded),
        ("b", TaskState::Succeeded),
        ("c", TaskState::Succeeded),
        ("d", TaskState::Failed),
        ("e", TaskState::Succeeded),
    ] {
        h.until_state(id, state).await;
    }
    let c = h.task("c").await;
    let deliver = &c.steps[1];
    assert_eq!(
        deliver.attempts.len(),
        2,
        "c rode twice: in the red batch, then in its half"
    );
    assert!(
        deliver.attempts[0].error.contains("the batch is split"),
        "{:?}",
        deliver.attempts[0]
    );
    let output: serde_json::Value = serde_json::from_str(&deliver.output_json).expect("json");
    assert_eq!(output["batch"], "b", "c landed in b's landing: {output}");
    let d = h.task("d").await;
    assert!(
        d.steps[1].error.contains("the checks failed"),
        "d broke the batch, and its verdict says so: {:?}",
        d.steps[1]
    );
    let metrics = h.metrics.render(&Default::default());
    for line in [
        "tidewright_landings_total{outcome=\"split\"} 1",
        "tidewright_landings_total{outcome=\"checks_failed\"} 1",
        "tidewright_landings_total{outcome=\"landed\"} 4",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn a_batch_whose_worker_is_lost_sends_its_riders_back_to_wait_their_turn() {
    let h = Harness::new();
    for (at, (id, touches)) in [("a", "a/**"), ("b", "b/**"), ("c", "c/**")]
        .iter()
        .enumerate()
    {
        h.try_submit(id, "default", touching(id, touches), at as i64 + 1)
            .await
            .expect("submitted");
    }
    let mut w = h.ready_worker("w", &["shell"], 8).await;
    for _ in 0..3 {
        assert_eq!(w.assigned().await.step_id, "work");
    }
    h.worked(&w, "a").await;
    assert_eq!(w.landing().await.0, key("a", DELIVER_STEP, 1));
    h.worked(&w, "b").await;
    h.worked(&w, "c").await;
    h.landed(
        &w,
        key("a", DELIVER_STEP, 1),
        AttemptEnd::Succeeded,
        batch(&[], true),
    )
    .await;
    assert_eq!(
        w.landing().await,
        (key("b", DELIVER_STEP, 1), vec!["c".into()])
    );
    // The worker goes: b and c wait again, b first, and land together on
    // the next worker.
    h.engine.disconnected(w.id).await.expect("disconnected");
    let mut next = h.ready_worker("next", &["shell"], 8).await;
    assert_eq!(
        next.landing().await,
        (key("b", DELIVER_STEP, 2), vec!["c".into()])
    );
    h.landed(
        &next,
        key("b", DELIVER_STEP, 2),
        AttemptEnd::Succeeded,
        batch(&["c"], true),
    )
    .await;
    h.until_state("b", TaskState::Succeeded).await;
    h.until_state("c", TaskState::Succeeded).await;
}

/// A landing task whose one step is an agent's.
fn by_an_agent(name: &str, max_fixes: Option<u32>) -> TaskSpec {
    let mut spec = landing(name, "main");
    spec.steps[0] = noop("work").needing(&["claude-code"]);
    if let Some(land) = spec.repo.as_mut().and_then(|r| r.land.as_mut()) {
        land.max_fixes = max_fixes;
    }
    spec
}

impl Harness {
    /// A landing's verdict: its work conflicts with main in `path`.
    async fn bounced(&self, worker: &FakeWorker, attempt: AttemptKey, path: &str) {
        self.engine
            .report(
                worker.id,
                StepResult {
                    error: format!(
                        "landing on main: the task's work conflicts with main at cccc: {path}"
                    ),
                    conflict: Some(tidewright_core::repo::MergeConflict {
                        with: "main".into(),
                        after: Vec::new(),
                        paths: vec![path.into()],
                    }),
                    ..StepResult::ended(attempt, AttemptEnd::Failed)
                },
            )
            .await
            .expect("reported");
        self.engine.credits(worker.id, 1).await.expect("credits");
    }
}

#[tokio::test]
async fn a_landing_that_conflicts_goes_back_to_its_agent_which_fixes_it_on_the_tip_and_lands() {
    let h = Harness::new();
    h.try_submit("t", "default", by_an_agent("t", None), 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["claude-code", "shell"], 8).await;
    assert_eq!(w.assigned().await, key("t", "work", 1));
    h.worked(&w, "t").await;
    assert_eq!(w.assigned().await, key("t", DELIVER_STEP, 1));
    h.bounced(&w, key("t", DELIVER_STEP, 1), "calc.py").await;
    // The agent's step runs again from its own work, told why, merging
    // main's tip first; the deliver step waits for it.
    let fix = w.assignment().await;
    assert_eq!(fix.attempt, key("t", "work", 2));
    assert_eq!(fix.land_fix, "main");
    assert_eq!(
        fix.dependency_heads
            .iter()
            .map(|h| (h.step.as_str(), h.head.as_str()))
            .collect::<Vec<_>>(),
        [("work", format!("{:0>40}", "t").as_str())],
        "it goes on from its own work"
    );
    h.until("t", "the deliver step waits for the fix", |t| {
        t.steps[1].state == StepState::Waiting
    })
    .await;
    h.send(
        &w,
        key("t", "work", 2),
        AttemptEnd::Succeeded,
        (String::new(), None),
        Some(StepWork {
            head_commit: "f".repeat(40),
            ..StepWork::default()
        }),
    )
    .await;
    // Fixed, it lands again: from the fix's head.
    let again = w.assignment().await;
    assert_eq!(again.attempt, key("t", DELIVER_STEP, 2));
    assert_eq!(again.dependency_heads[0].head, "f".repeat(40));
    h.landed(
        &w,
        key("t", DELIVER_STEP, 2),
        AttemptEnd::Succeeded,
        batch(&[], true),
    )
    .await;
    h.until_state("t", TaskState::Succeeded).await;
    let metrics = h.metrics.render(&Default::default());
    assert!(
        metrics
            .lines()
            .any(|l| l == "tidewright_landing_fix_rounds_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_same_landing_failure_twice_or_no_rounds_left_fails_the_task() {
    let h = Harness::new();
    h.try_submit("again", "default", by_an_agent("again", None), 1)
        .await
        .expect("submitted");
    h.try_submit("none", "default", by_an_agent("none", Some(0)), 2)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["claude-code", "shell"], 8).await;
    for _ in 0..2 {
        assert_eq!(w.assigned().await.step_id, "work");
    }
    h.worked(&w, "again").await;
    assert_eq!(w.assigned().await, key("again", DELIVER_STEP, 1));
    h.worked(&w, "none").await;
    h.bounced(&w, key("again", DELIVER_STEP, 1), "calc.py")
        .await;
    // "none" lands once "again" leaves the queue; "again"'s agent fixes.
    let mut next = vec![w.assigned().await, w.assigned().await];
    next.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    assert_eq!(
        next,
        [key("again", "work", 2), key("none", DELIVER_STEP, 1)]
    );
    h.bounced(&w, key("none", DELIVER_STEP, 1), "calc.py").await;
    h.until_state("none", TaskState::Failed).await;
    h.worked_again_as(&w, "again", 2).await;
    assert_eq!(w.assigned().await, key("again", DELIVER_STEP, 2));
    h.bounced(&w, key("again", DELIVER_STEP, 2), "calc.py")
        .await;
    h.until_state("again", TaskState::Failed).await;
    let again = h.task("again").await;
    assert!(
        again.steps[1]
            .error
            .ends_with("(the same failure as the last round of fixes)"),
        "{:?}",
        again.steps[1].error
    );
    let none = h.task("none").await;
    assert!(
        none.steps[1].error.ends_with(": calc.py"),
        "maxFixes 0 fails at once: {:?}",
        none.steps[1].error
    );
}

#[tokio::test]
async fn after_a_restart_the_agent_sent_back_a_failed_landing_still_fixes_it_on_the_tip() {
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        h.try_submit("t", "default", by_an_agent("t", Some(1)), 1)
            .await
            .expect("submitted");
        let mut w = h.ready_worker("w", &["claude-code", "shell"], 8).await;
        assert_eq!(w.assigned().await, key("t", "work", 1));
        h.engine
            .session(w.id, key("t", "work", 1), "s-1".into(), "m".into())
            .await
            .expect("session");
        h.worked(&w, "t").await;
        assert_eq!(w.assigned().await, key("t", DELIVER_STEP, 1));
        h.bounced(&w, key("t", DELIVER_STEP, 1), "calc.py").await;
        assert_eq!(w.assigned().await, key("t", "work", 2));
        h.settled().await;
    }
    // The control plane restarts while the agent fixes; nobody reclaims
    // the attempt, so it runs again: still a fix, from its own work, with
    // the tip merged and the failure told.
    let (h, mut w, _heartbeats) = Harness::restarted_with_an_agent(&store).await;
    let fix = w.assignment().await;
    assert_eq!(fix.attempt, key("t", "work", 3));
    assert_eq!(fix.land_fix, "main");
    assert_eq!(fix.dependency_heads[0].head, format!("{:0>40}", "t"));
    assert!(
        fix.resume
            .as_ref()
            .is_some_and(|r| r.message.contains("could not land on main")),
        "{:?}",
        fix.resume
    );
    // Its one round is spent: the next failed landing fails the task.
    h.worked_again_as(&w, "t", 3).await;
    assert_eq!(w.assigned().await, key("t", DELIVER_STEP, 2));
    h.bounced(&w, key("t", DELIVER_STEP, 2), "calc.py").await;
    h.until_state("t", TaskState::Failed).await;
    let t = h.task("t").await;
    assert!(
        t.steps[1]
            .error
            .ends_with("(its 1 round(s) of fixes are spent)"),
        "{:?}",
        t.steps[1].error
    );
}

impl Harness {
    /// The control plane started again on `store`, with its unfinished
    /// tasks, and worker `w` (an agent's and a shell's, 8 slots) back with
    /// nothing running, kept alive, its slots free.
    pub(super) async fn restarted_with_an_agent(
        store: &MemoryStore,
    ) -> (Harness, FakeWorker, Heartbeats) {
        let backlog = store.unfinished_task_ids().await.expect("recovery");
        let h = Harness::start(
            store.reopen(),
            backlog,
            liveness(Duration::from_millis(300)),
        );
        let w = h
            .reconnect("w", &["claude-code", "shell"], 8, Vec::new())
            .await;
        let heartbeats = h.keep_alive(&w);
        h.engine.credits(w.id, 8).await.expect("credits");
        (h, w, heartbeats)
    }

    /// Task `id`'s work step's attempt `attempt` ends with a head.
    pub(super) async fn worked_again_as(&self, worker: &FakeWorker, id: &str, attempt: u32) {
        self.send(
            worker,
            key(id, "work", attempt),
            AttemptEnd::Succeeded,
            (String::new(), None),
            Some(StepWork {
                head_commit: "e".repeat(40),
                ..StepWork::default()
            }),
        )
        .await;
    }
}

#[tokio::test]
async fn a_base_whose_batches_fail_takes_smaller_ones_until_one_lands() {
    let h = Harness::new();
    // b to e land with one check, f to i with another: they never ride
    // together, and f to i wait until b to e are done.
    for (at, id) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .enumerate()
    {
        let mut spec = touching(id, &format!("{id}/**"));
        if at >= 5
            && let Some(land) = spec.repo.as_mut().and_then(|r| r.land.as_mut())
        {
            land.checks[0].name = "lint".into();
        }
        h.try_submit(id, "default", spec, at as i64 + 1)
            .await
            .expect("submitted");
    }
    let mut w = h.ready_worker("w", &["shell"], 16).await;
    for _ in 0..9 {
        assert_eq!(w.assigned().await.step_id, "work");
    }
    h.worked(&w, "a").await;
    assert_eq!(w.landing().await, (key("a", DELIVER_STEP, 1), Vec::new()));
    for id in ["b", "c", "d", "e", "f", "g", "h", "i"] {
        h.worked(&w, id).await;
    }
    h.landed(
        &w,
        key("a", DELIVER_STEP, 1),
        AttemptEnd::Succeeded,
        batch(&[], true),
    )
    .await;
    let riders = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        w.landing().await,
        (key("b", DELIVER_STEP, 1), riders(&["c", "d", "e"]))
    );
    h.landed(
        &w,
        key("b", DELIVER_STEP, 1),
        AttemptEnd::Failed,
        batch(&["c", "d", "e"], false),
    )
    .await;
    assert_eq!(
        w.landing().await,
        (key("b", DELIVER_STEP, 2), riders(&["c"]))
    );
    h.landed(
        &w,
        key("b", DELIVER_STEP, 2),
        AttemptEnd::Succeeded,
        batch(&["c"], true),
    )
    .await;
    assert_eq!(
        w.landing().await,
        (key("d", DELIVER_STEP, 2), riders(&["e"]))
    );
    h.landed(
        &w,
        key("d", DELIVER_STEP, 2),
        AttemptEnd::Failed,
        batch(&["e"], false),
    )
    .await;
    assert_eq!(w.landing().await, (key("d", DELIVER_STEP, 3), Vec::new()));
    h.landed(
        &w,
        key("d", DELIVER_STEP, 3),
        AttemptEnd::Failed,
        batch(&[], false),
    )
    .await;
    assert_eq!(w.landing().await, (key("e", DELIVER_STEP, 3), Vec::new()));
    h.landed(
        &w,
        key("e", DELIVER_STEP, 3),
        AttemptEnd::Succeeded,
        batch(&[], true),
    )
    .await;
    // Two splits in a row left room for 1; e's landing doubled it: f
    // takes one rider, not the three waiting.
    assert_eq!(
        w.landing().await,
        (key("f", DELIVER_STEP, 1), riders(&["g"]))
    );
    h.landed(
        &w,
        key("f", DELIVER_STEP, 1),
        AttemptEnd::Succeeded,
        batch(&["g"], true),
    )
    .await;
    assert_eq!(
        w.landing().await,
        (key("h", DELIVER_STEP, 1), riders(&["i"])),
        "h takes the one left"
    );
}
