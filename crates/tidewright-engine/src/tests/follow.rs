//! A followed pull request's verdicts in the engine: a failed check or a
//! request for changes goes back to the agent step whose work it points to
//! (or the one `pullRequest.owner` names), in its own session and from its
//! own work, with nothing merged in; the deliver step runs again once the
//! fix is in. A verdict with nothing an agent could fix (closed, a refused
//! merge) ends the task at once, and the rounds a task took are read back
//! after a restart.

use tidewright_core::repo::{DELIVER_STEP, MergeMethod, PullRequestSpec};
use tidewright_core::{CheckResult, StepWork, Verification};

use super::*;

/// A task of two agent steps, `a` and `b` (after `a` when `chained`),
/// whose pull request is followed and merged; owned by `owner` when given.
fn followed(name: &str, owner: &str, chained: bool) -> TaskSpec {
    let mut b = noop("b").needing(&["claude-code"]);
    if chained {
        b.depends_on = vec!["a".into()];
    }
    let mut spec = TaskSpec {
        name: name.into(),
        steps: vec![noop("a").needing(&["claude-code"]), b],
        repo: Some(tidewright_core::RepoSpec {
            url: "https://github.com/acme/app.git".into(),
            git_ref: "main".into(),
            commit: "0".repeat(40),
            pull_request: Some(PullRequestSpec {
                title: "t".into(),
                merge: Some(MergeMethod::Auto),
                max_fixes: Some(2),
                owner: owner.into(),
                ..PullRequestSpec::default()
            }),
            ..tidewright_core::RepoSpec::default()
        }),
        ..TaskSpec::default()
    };
    tidewright_core::spec::with_delivery(&mut spec);
    spec
}

/// What a look at the pull request found: each check, failed or not, and
/// the paths it points to.
fn found(checks: &[(&str, bool, &[&str])]) -> Verification {
    Verification {
        head_commit: "c".repeat(40),
        checks: checks
            .iter()
            .map(|(name, passed, paths)| CheckResult {
                name: name.to_string(),
                passed: *passed,
                trouble: if *passed { "success" } else { "failure" }.into(),
                tail: format!("{name} said so"),
                paths: paths.iter().map(|p| p.to_string()).collect(),
                ..CheckResult::default()
            })
            .collect(),
        ..Verification::default()
    }
}

impl Harness {
    /// Step `step` of task `id` ends its attempt `attempt` with a head
    /// that changed `changed`.
    async fn did(
        &self,
        worker: &FakeWorker,
        (id, step, attempt): (&str, &str, u32),
        changed: &str,
    ) {
        self.engine
            .session(
                worker.id,
                key(id, step, attempt),
                format!("s-{id}-{step}"),
                "m".into(),
            )
            .await
            .expect("session");
        self.engine
            .report(
                worker.id,
                StepResult {
                    work: Some(StepWork {
                        head_commit: format!("{step}{attempt:0>39}"),
                        changed_paths: vec![changed.into()],
                        ..StepWork::default()
                    }),
                    ..StepResult::ended(key(id, step, attempt), AttemptEnd::Succeeded)
                },
            )
            .await
            .expect("reported");
        self.engine.credits(worker.id, 1).await.expect("credits");
    }

    /// The deliver step's look at the pull request ends attempt `attempt`
    /// with `why`, and what it found.
    async fn looked(
        &self,
        worker: &FakeWorker,
        (id, attempt): (&str, u32),
        why: &str,
        seen: Verification,
    ) {
        self.engine
            .report(
                worker.id,
                StepResult {
                    error: format!("pull request https://github.com/acme/app/pull/1: {why}"),
                    verification: Some(seen),
                    ..StepResult::ended(key(id, DELIVER_STEP, attempt), AttemptEnd::Failed)
                },
            )
            .await
            .expect("reported");
        self.engine.credits(worker.id, 1).await.expect("credits");
    }
}

#[tokio::test]
async fn a_failed_check_goes_back_to_the_agent_whose_work_it_points_to_and_the_fix_is_followed_again()
 {
    let h = Harness::new();
    h.try_submit("t", "default", followed("t", "", true), 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["claude-code", "shell"], 8).await;
    assert_eq!(w.assigned().await, key("t", "a", 1));
    h.did(&w, ("t", "a", 1), "a.py").await;
    assert_eq!(w.assigned().await, key("t", "b", 1));
    h.did(&w, ("t", "b", 1), "b.py").await;
    assert_eq!(w.assigned().await, key("t", DELIVER_STEP, 1));
    // A reviewer's comments point to b.py: b's work, not a's.
    h.looked(
        &w,
        ("t", 1),
        "alice requested changes",
        found(&[
            ("unittest", true, &[]),
            ("review by alice", false, &["b.py"]),
        ]),
    )
    .await;
    let fix = w.assignment().await;
    assert_eq!(fix.attempt, key("t", "b", 2));
    assert_eq!(
        fix.land_fix, "",
        "nothing is merged into a pull request's fix"
    );
    let told = fix
        .resume
        .as_ref()
        .map(|r| r.message.clone())
        .unwrap_or_default();
    assert!(
        told.contains("Your pull request is not ready to merge")
            && told.contains("The review by alice failed (failure):\nreview by alice said so")
            && told.contains("round 1 of 2"),
        "{told}"
    );
    assert!(
        fix.dependency_heads
            .iter()
            .any(|d| d.step == "b" && d.head == format!("b{:0>39}", 1)),
        "it goes on from its own work: {:?}",
        fix.dependency_heads
    );
    h.did(&w, ("t", "b", 2), "b.py").await;
    let again = w.assignment().await;
    assert_eq!(again.attempt, key("t", DELIVER_STEP, 2));
    h.engine
        .report(
            w.id,
            StepResult {
                output_json: serde_json::json!({"merged": "d".repeat(40)}).to_string(),
                ..StepResult::ended(key("t", DELIVER_STEP, 2), AttemptEnd::Succeeded)
            },
        )
        .await
        .expect("reported");
    h.until_state("t", TaskState::Succeeded).await;
    let metrics = h.metrics.render(&Default::default());
    for line in [
        "tidewright_pull_request_fix_rounds_total 1",
        "tidewright_landings_total{outcome=\"pull_request_failed\"} 1",
        "tidewright_landings_total{outcome=\"merged\"} 1",
        "tidewright_time_to_land_seconds_count 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

#[tokio::test]
async fn the_owner_named_fixes_and_a_closed_pull_request_or_the_same_failure_twice_ends_the_task() {
    let h = Harness::new();
    h.try_submit("owned", "default", followed("owned", "a", false), 1)
        .await
        .expect("submitted");
    h.try_submit("closed", "default", followed("closed", "", true), 2)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["claude-code", "shell"], 8).await;
    // owned's a and b run at once; closed's b after its a.
    let mut first = vec![w.assigned().await, w.assigned().await, w.assigned().await];
    first.sort_by(|x, y| (&x.task_id, &x.step_id).cmp(&(&y.task_id, &y.step_id)));
    assert_eq!(
        first,
        [
            key("closed", "a", 1),
            key("owned", "a", 1),
            key("owned", "b", 1)
        ]
    );
    h.did(&w, ("owned", "a", 1), "a.py").await;
    h.did(&w, ("owned", "b", 1), "b.py").await;
    assert_eq!(w.assigned().await, key("owned", DELIVER_STEP, 1));
    h.did(&w, ("closed", "a", 1), "a.py").await;
    assert_eq!(w.assigned().await, key("closed", "b", 1));
    h.did(&w, ("closed", "b", 1), "b.py").await;
    assert_eq!(w.assigned().await, key("closed", DELIVER_STEP, 1));
    // Closed by a person: nothing failed an agent could fix.
    h.looked(&w, ("closed", 1), "closed without merging", found(&[]))
        .await;
    h.until_state("closed", TaskState::Failed).await;
    let closed = h.task("closed").await;
    assert_eq!(closed.steps[2].attempt, 1, "unretried");
    assert!(closed.steps[2].error.ends_with("closed without merging"));
    // pullRequest.owner: a fixes, though the check points at b.py.
    let failing = || found(&[("unittest", false, &["b.py"])]);
    h.looked(&w, ("owned", 1), "check(s) failed", failing())
        .await;
    assert_eq!(w.assigned().await, key("owned", "a", 2));
    h.did(&w, ("owned", "a", 2), "a.py").await;
    // Then the same failure ends it.
    assert_eq!(w.assigned().await, key("owned", DELIVER_STEP, 2));
    h.looked(&w, ("owned", 2), "check(s) failed", failing())
        .await;
    h.until_state("owned", TaskState::Failed).await;
    let owned = h.task("owned").await;
    assert!(
        owned.steps[2]
            .error
            .ends_with("(the same failure as the last round of fixes)"),
        "{:?}",
        owned.steps[2].error
    );
}

#[tokio::test]
async fn after_a_restart_the_agent_fixing_a_pull_request_is_told_again_and_its_rounds_count() {
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        let mut spec = followed("t", "", true);
        if let Some(pr) = spec.repo.as_mut().and_then(|r| r.pull_request.as_mut()) {
            pr.max_fixes = Some(1);
        }
        h.try_submit("t", "default", spec, 1)
            .await
            .expect("submitted");
        let mut w = h.ready_worker("w", &["claude-code", "shell"], 8).await;
        assert_eq!(w.assigned().await, key("t", "a", 1));
        h.did(&w, ("t", "a", 1), "a.py").await;
        assert_eq!(w.assigned().await, key("t", "b", 1));
        h.did(&w, ("t", "b", 1), "b.py").await;
        assert_eq!(w.assigned().await, key("t", DELIVER_STEP, 1));
        h.looked(
            &w,
            ("t", 1),
            "check(s) failed",
            found(&[("unittest", false, &[])]),
        )
        .await;
        assert_eq!(w.assigned().await, key("t", "b", 2));
        h.settled().await;
    }
    let (h, mut w, _heartbeats) = Harness::restarted_with_an_agent(&store).await;
    let fix = w.assignment().await;
    assert_eq!(fix.attempt, key("t", "b", 3));
    assert_eq!(fix.land_fix, "");
    assert!(
        fix.resume
            .as_ref()
            .is_some_and(|r| r.message.contains("Check unittest failed (failure)")),
        "{:?}",
        fix.resume
    );
    // Its one round is spent: the next failure ends the task.
    h.did(&w, ("t", "b", 3), "b.py").await;
    assert_eq!(w.assigned().await, key("t", DELIVER_STEP, 2));
    h.looked(
        &w,
        ("t", 2),
        "check(s) failed",
        found(&[("lint", false, &[])]),
    )
    .await;
    h.until_state("t", TaskState::Failed).await;
    let t = h.task("t").await;
    assert!(
        t.steps[2]
            .error
            .ends_with("(its 1 round(s) of fixes are spent)"),
        "{:?}",
        t.steps[2].error
    );
}

#[tokio::test]
async fn a_forge_event_on_its_repository_has_the_running_follow_up_look_now() {
    let h = Harness::new();
    h.try_submit("t", "default", followed("t", "", true), 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["claude-code", "shell"], 8).await;
    // Nothing follows yet: its steps run.
    let asked = |project: &str| h.engine.forge_event(project.into(), "check_run".into());
    assert_eq!(asked("acme/app").await.expect("asked"), 0);
    assert_eq!(w.assigned().await, key("t", "a", 1));
    h.did(&w, ("t", "a", 1), "a.py").await;
    assert_eq!(w.assigned().await, key("t", "b", 1));
    h.did(&w, ("t", "b", 1), "b.py").await;
    assert_eq!(w.assigned().await, key("t", DELIVER_STEP, 1));
    assert_eq!(asked("acme/other").await.expect("asked"), 0);
    assert_eq!(asked("acme/app").await.expect("asked"), 1);
    match w.next().await {
        ToWorker::Look { attempt, why } => {
            assert_eq!(attempt, key("t", DELIVER_STEP, 1));
            assert_eq!(why, "check_run");
        }
        other => panic!("expected a look, got {other:?}"),
    }
}
