//! Budgets in the engine: spend streaming in pauses a task (or a tenant's
//! tasks) at its budget, stopped attempts come back uncounted, a raise or
//! a higher tenant budget resumes, and a spent tenant's submits are refused
//! with nothing stored.

use tidewright_core::{AttemptKey, Budget, Cost, TenantBudget};

use super::*;

fn usd(usd: f64) -> Cost {
    Cost {
        usd,
        input_tokens: 100,
        ..Cost::default()
    }
}

fn dollars(usd: f64) -> Budget {
    Budget {
        usd: Some(usd),
        tokens: None,
        approvers: Vec::new(),
    }
}

fn budgeted(id: &str, budget: Option<Budget>, steps: Vec<StepSpec>) -> TaskSpec {
    TaskSpec {
        name: id.to_string(),
        steps,
        budget,
        ..TaskSpec::default()
    }
}

/// Task `t` submitted with `spec`, its first step given to a worker.
async fn first_attempt(h: &Harness, spec: TaskSpec) -> (FakeWorker, AttemptKey) {
    h.try_submit("t", "default", spec, 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    let a = w.assigned().await;
    (w, a)
}

/// The worker is told to stop `attempt`, for its budget.
pub(super) async fn stopped_for_budget(w: &mut FakeWorker, attempt: &AttemptKey) {
    match w.next().await {
        ToWorker::Cancel {
            attempt: stopped,
            reason,
            ..
        } => {
            assert_eq!(&stopped, attempt);
            assert!(reason.starts_with("budget: "), "{reason:?}");
        }
        other => panic!("expected a stop, got {other:?}"),
    }
}

pub(super) async fn report_cost(
    h: &Harness,
    w: &FakeWorker,
    attempt: AttemptKey,
    outcome: AttemptEnd,
    cost: Cost,
) {
    h.engine
        .report(
            w.id,
            StepResult {
                cost: Some(cost),
                ..StepResult::ended(attempt, outcome)
            },
        )
        .await
        .expect("reported");
}

#[tokio::test]
async fn a_task_over_its_budget_pauses_uncounted_and_a_raise_resumes_it() {
    let h = Harness::new();
    let spec = budgeted("t", Some(dollars(1.0)), vec![noop("a"), noop("b")]);
    let (mut w, a) = first_attempt(&h, spec).await;
    h.spend(&w, &a, usd(0.6)).await;
    h.settled().await;
    assert_eq!(h.task("t").await.state, TaskState::Running, "within budget");
    // The running total crosses the budget: the attempt is stopped.
    h.spend(&w, &a, usd(1.05)).await;
    stopped_for_budget(&mut w, &a).await;
    h.until_state("t", TaskState::Paused).await;
    let task = h.task("t").await;
    assert!(
        task.message
            .starts_with("budget: the task spent $1.0500 of its $1 budget"),
        "{}",
        task.message
    );
    report_cost(&h, &w, a, AttemptEnd::Cancelled, usd(1.05)).await;
    h.until("t", "the stopped step waits, queued", |t| {
        t.steps[0].state == StepState::Queued
    })
    .await;
    // Nothing of a paused task starts, though the worker has room.
    h.engine.credits(w.id, 1).await.expect("credits");
    h.settled().await;
    assert!(w.idle(), "a paused task starts nothing");
    // Raising by too little keeps it paused; enough resumes it.
    h.engine
        .raise_budget("t".into(), dollars(0.01))
        .await
        .expect("raise");
    h.settled().await;
    assert!(w.idle(), "still over budget");
    assert_eq!(h.task("t").await.state, TaskState::Paused);
    h.engine
        .raise_budget("t".into(), dollars(1.0))
        .await
        .expect("raise");
    let again = w.assigned().await;
    assert_eq!(again, key("t", "a", 2), "the same step goes on");
    let task = h.task("t").await;
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.spec.budget.and_then(|b| b.usd), Some(2.01), "stored");
    assert_eq!(
        task.steps[0].attempts[0].cost.usd, 1.05,
        "its spend is kept"
    );
    // A finished task's budget cannot be raised.
    h.report(&w, again, AttemptEnd::Succeeded).await;
    h.engine.credits(w.id, 1).await.expect("credits");
    let b = w.assigned().await;
    h.report(&w, b, AttemptEnd::Succeeded).await;
    h.until_state("t", TaskState::Succeeded).await;
    let refused = h.engine.raise_budget("t".into(), dollars(1.0)).await;
    assert!(
        matches!(refused, Err(Error::FailedPrecondition(ref m)) if m.contains("not running")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_attempt_stopped_for_the_budget_is_handed_back_even_after_the_task_resumed() {
    let h = Harness::new();
    let spec = budgeted("t", Some(dollars(1.0)), vec![noop("a")]);
    let (mut w, a) = first_attempt(&h, spec).await;
    h.spend(&w, &a, usd(1.0)).await;
    stopped_for_budget(&mut w, &a).await;
    // Raised before the stopped attempt came back: its end is still no
    // failure of the step, which runs again.
    h.engine
        .raise_budget("t".into(), dollars(5.0))
        .await
        .expect("raise");
    report_cost(&h, &w, a, AttemptEnd::Cancelled, usd(1.0)).await;
    h.engine.credits(w.id, 1).await.expect("credits");
    assert_eq!(w.assigned().await, key("t", "a", 2));
    assert_eq!(h.task("t").await.state, TaskState::Running);
}

#[tokio::test]
async fn an_attempt_stopped_by_the_budget_does_not_use_up_its_retries() {
    let h = Harness::new();
    let budget = Budget {
        usd: None,
        tokens: Some(150),
        approvers: Vec::new(),
    };
    let mut step = noop("a");
    step.retry = Some(tidewright_core::RetryPolicy::new(1));
    let spec = budgeted("t", Some(budget), vec![step]);
    let (mut w, a) = first_attempt(&h, spec).await;
    // 100 + 100 tokens: over 150.
    h.spend(&w, &a, usd(0.0)).await;
    let mut twice = usd(0.0);
    twice.input_tokens = 200;
    h.spend(&w, &a, twice).await;
    stopped_for_budget(&mut w, &a).await;
    // The worker's process failed as it was killed: still not the step's
    // failure, and its only attempt is not spent.
    report_cost(&h, &w, a, AttemptEnd::Failed, twice).await;
    h.until("t", "paused, the step queued", |t| {
        t.state == TaskState::Paused && t.steps[0].state == StepState::Queued
    })
    .await;
    h.engine
        .raise_budget(
            "t".into(),
            Budget {
                usd: None,
                tokens: Some(1000),
                approvers: Vec::new(),
            },
        )
        .await
        .expect("raise");
    h.engine.credits(w.id, 1).await.expect("credits");
    let again = w.assigned().await;
    assert_eq!(again.attempt, 2);
    h.report(&w, again, AttemptEnd::Succeeded).await;
    h.until_state("t", TaskState::Succeeded).await;
}

#[tokio::test]
async fn a_spent_tenant_pauses_its_tasks_refuses_submits_and_resumes_when_raised() {
    let h = Harness::new();
    let day = |usd| TenantBudget {
        usd_per_day: Some(usd),
        ..TenantBudget::default()
    };
    h.engine
        .set_tenant_budget("team".into(), day(1.0))
        .await
        .expect("set");
    for id in ["t1", "t2"] {
        h.try_submit(id, "team", budgeted(id, None, vec![noop("a")]), 1)
            .await
            .expect("submitted");
    }
    h.try_submit(
        "other",
        "default",
        budgeted("other", None, vec![noop("a")]),
        2,
    )
    .await
    .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 3).await;
    let mut running = [w.assigned().await, w.assigned().await, w.assigned().await];
    running.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let (other, t1, t2) = (running[0].clone(), running[1].clone(), running[2].clone());
    assert_eq!((t1.task_id.as_str(), t2.task_id.as_str()), ("t1", "t2"));
    // Two tasks' spend adds up to the tenant's day.
    h.spend(&w, &t1, usd(0.5)).await;
    h.spend(&w, &t2, usd(0.5)).await;
    let stopped = w.stopped(2).await;
    for (_, reason) in &stopped {
        assert!(reason.contains("tenant \"team\""), "{reason:?}");
        assert!(reason.contains("this day"), "{reason:?}");
    }
    assert_eq!(stopped.iter().map(|s| &s.0).collect::<Vec<_>>(), [&t1, &t2]);
    for id in ["t1", "t2"] {
        h.until_state(id, TaskState::Paused).await;
    }
    // The other tenant runs on; the spent one may not submit.
    assert_eq!(h.task("other").await.state, TaskState::Running);
    let refused = h
        .try_submit("t3", "team", budgeted("t3", None, vec![noop("a")]), 3)
        .await;
    match refused {
        Err(Error::ResourceExhausted {
            message,
            retry_after,
        }) => {
            assert!(message.contains("per-day budget resets at"), "{message}");
            assert!(
                message.contains("spent $1.0000 of its $1 budget"),
                "{message}"
            );
            let wait = retry_after.expect("a reset");
            assert!(wait <= Duration::from_secs(86_400), "{wait:?}");
        }
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
    assert!(
        h.store.get_task("t3").await.expect("read").is_none(),
        "nothing stored"
    );
    let spending = h
        .engine
        .budgets(Some(vec!["team".into()]))
        .await
        .expect("budgets");
    assert_eq!(spending.len(), 1);
    assert_eq!(spending[0].2.usd, 1.0, "today's spend");
    // A higher budget lets them go on, and new work in.
    report_cost(&h, &w, t1, AttemptEnd::Cancelled, usd(0.5)).await;
    report_cost(&h, &w, t2, AttemptEnd::Cancelled, usd(0.5)).await;
    h.engine
        .set_tenant_budget("team".into(), day(5.0))
        .await
        .expect("raise");
    h.engine.credits(w.id, 2).await.expect("credits");
    let mut resumed = [w.assigned().await.task_id, w.assigned().await.task_id];
    resumed.sort();
    assert_eq!(resumed, ["t1", "t2"]);
    h.try_submit("t3", "team", budgeted("t3", None, vec![noop("a")]), 3)
        .await
        .expect("admitted again");
    drop(other);
}

#[tokio::test]
async fn a_paused_tasks_attempt_reclaimed_after_a_restart_is_stopped_again() {
    // Paused for its budget; the control plane stops before the stopped
    // attempt comes back.
    let store = MemoryStore::new();
    let a = {
        let h = Harness::new_on(store.clone());
        let spec = budgeted("t", Some(dollars(1.0)), vec![noop("a")]);
        let (mut w, a) = first_attempt(&h, spec).await;
        h.spend(&w, &a, usd(1.2)).await;
        stopped_for_budget(&mut w, &a).await;
        h.until_state("t", TaskState::Paused).await;
        a
    };
    // Its worker, still running it, reclaims it from the next: it is told
    // to stop again, and its end is no failure of the step.
    let h = Harness::start(
        store.reopen(),
        vec!["t".into()],
        liveness(Duration::from_secs(30)),
    );
    let mut w = h.reconnect("w", &["shell"], 1, vec![a.clone()]).await;
    stopped_for_budget(&mut w, &a).await;
    report_cost(&h, &w, a, AttemptEnd::Cancelled, usd(1.2)).await;
    h.until("t", "the stopped step waits, queued, uncounted", |t| {
        t.state == TaskState::Paused && t.steps[0].state == StepState::Queued
    })
    .await;
}

#[tokio::test]
async fn a_tenant_budget_counts_what_the_store_holds_from_before_a_restart() {
    let store = MemoryStore::new();
    let h = Harness::new_on(store.clone());
    h.try_submit("t", "team", budgeted("t", None, vec![noop("a")]), 1)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 1).await;
    let a = w.assigned().await;
    report_cost(&h, &w, a, AttemptEnd::Succeeded, usd(2.0)).await;
    h.until_state("t", TaskState::Succeeded).await;
    store
        .write(vec![Write::TenantBudget {
            tenant: "team".into(),
            budget: TenantBudget {
                usd_per_month: Some(2.0),
                ..TenantBudget::default()
            },
        }])
        .await
        .expect("committed")
        .expect("stored");
    drop(h);
    // A new engine reads the month's spend back: the tenant is spent.
    let tenants = load_tenants(&store).await.expect("loaded");
    assert_eq!(tenants.spend["team"].month.1.usd, 2.0);
    let h = Harness::start_with(store, tenants);
    let refused = h
        .try_submit("t2", "team", budgeted("t2", None, vec![noop("a")]), 2)
        .await;
    assert!(
        matches!(&refused, Err(Error::ResourceExhausted { message, .. }) if message.contains("per-month")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_approval_lets_a_task_paused_for_its_budget_go_on_with_as_much_again() {
    let h = Harness::new();
    let budget = Budget {
        approvers: vec!["lead".into()],
        ..dollars(1.0)
    };
    let spec = budgeted("t", Some(budget), vec![noop("a")]);
    let (mut w, a) = first_attempt(&h, spec).await;
    let refused = h.engine.approve_budget("t".into()).await;
    assert!(
        matches!(refused, Err(Error::FailedPrecondition(ref m)) if m.contains("not paused for its own budget")),
        "a running task has nothing to approve: {refused:?}"
    );
    h.spend(&w, &a, usd(1.2)).await;
    stopped_for_budget(&mut w, &a).await;
    report_cost(&h, &w, a, AttemptEnd::Cancelled, usd(1.2)).await;
    h.until_state("t", TaskState::Paused).await;
    h.engine.credits(w.id, 1).await.expect("credits");

    let granted = h.engine.approve_budget("t".into()).await.expect("approved");
    assert_eq!(granted, dollars(1.0), "as much again as its budget");
    assert_eq!(w.assigned().await, key("t", "a", 2), "the step goes on");
    let task = h.task("t").await;
    assert_eq!(task.state, TaskState::Running);
    let stored = task.spec.budget.expect("a budget");
    assert_eq!(stored.usd, Some(2.0));
    assert_eq!(stored.approvers, ["lead"], "its approvers stay");
}
