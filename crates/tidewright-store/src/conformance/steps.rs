//! The suite's part on steps: attempts, approvals, work on a repository,
//! costs and budgets, checkpoints and branches.

use super::*;

pub async fn attempts_are_kept_in_order_and_the_running_one_is_known(mut backend: impl Backend) {
    let store = with_tasks(&mut backend, &["t1"]).await;
    assert_eq!(store.running_attempt("t1", "a").await.expect("read"), None);
    // Attempt 1 leased to w1, lost; attempt 2 leased to w2.
    commit(
        &*store,
        vec![
            Write::Step(StepWrite {
                state: Some(StepState::Running),
                attempt: Some(1),
                worker: Some("w1".into()),
                started_at: Some(10),
                ..step("t1", "a")
            }),
            Write::Attempt(AttemptWrite {
                worker: Some("w1".into()),
                started_at: Some(10),
                ..attempt("t1", "a", 1)
            }),
        ],
    )
    .await;
    assert_eq!(
        store.running_attempt("t1", "a").await.expect("read"),
        Some(1)
    );
    commit(
        &*store,
        vec![
            Write::Attempt(AttemptWrite {
                state: Some(StepState::Failed),
                finished_at: Some(20),
                error: Some("the worker was lost".into()),
                exit_code: Some(137),
                ..attempt("t1", "a", 1)
            }),
            Write::Step(StepWrite {
                state: Some(StepState::Running),
                attempt: Some(2),
                worker: Some("w2".into()),
                started_at: Some(30),
                ..step("t1", "a")
            }),
        ],
    )
    .await;
    assert_eq!(
        store.running_attempt("t1", "a").await.expect("read"),
        Some(2),
        "the lease moved to attempt 2"
    );
    // The running attempt is shown from its step until its own row exists.
    let task = store.get_task("t1").await.expect("get").expect("t1");
    let attempts = &task.steps[0].attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        (
            attempts[0].attempt,
            attempts[0].worker.as_str(),
            attempts[0].state,
            attempts[0].error.as_str(),
            attempts[0].exit_code,
            attempts[0].started_at,
            attempts[0].finished_at
        ),
        (
            1,
            "w1",
            StepState::Failed,
            "the worker was lost",
            Some(137),
            10,
            20
        )
    );
    assert_eq!(
        (
            attempts[1].attempt,
            attempts[1].worker.as_str(),
            attempts[1].state
        ),
        (2, "w2", StepState::Running)
    );
    assert!(task.steps[1].attempts.is_empty());
    commit(
        &*store,
        vec![
            Write::Step(StepWrite {
                state: Some(StepState::Succeeded),
                finished_at: Some(40),
                output_json: Some(r#"{"n":1}"#.into()),
                exit_code: Some(Some(0)),
                ..step("t1", "a")
            }),
            Write::Attempt(AttemptWrite {
                worker: Some("w2".into()),
                started_at: Some(30),
                finished_at: Some(40),
                state: Some(StepState::Succeeded),
                exit_code: Some(0),
                ..attempt("t1", "a", 2)
            }),
        ],
    )
    .await;
    assert_eq!(store.running_attempt("t1", "a").await.expect("read"), None);
    assert_eq!(store.running_attempt("t1", "zz").await.expect("read"), None);
    let task = store.get_task("t1").await.expect("get").expect("t1");
    let a = &task.steps[0];
    assert_eq!(
        (
            a.state,
            a.output_json.as_str(),
            a.exit_code,
            a.attempts.len()
        ),
        (StepState::Succeeded, r#"{"n":1}"#, Some(0), 2)
    );
    // A cleared exit code reads back as none.
    let a = step_a_of_t1_after(
        &*store,
        StepWrite {
            exit_code: Some(None),
            ..step("t1", "a")
        },
    )
    .await;
    assert_eq!(a.exit_code, None);
}

/// The deadline of a wait for approval is what a new leader times the
/// wait by: it reads back from every path, survives a reopen, and a later
/// write in the same batch wins.
pub async fn a_step_awaiting_approval_keeps_its_deadline_until_it_is_cleared(
    mut backend: impl Backend,
) {
    let store = with_tasks(&mut backend, &["t1"]).await;
    let deadline = 1_800_000_000_000_000;
    commit(
        &*store,
        vec![
            Write::Step(StepWrite {
                state: Some(StepState::AwaitingApproval),
                approval_deadline: Some(deadline - 1),
                ..step("t1", "a")
            }),
            Write::Step(StepWrite {
                approval_deadline: Some(deadline),
                ..step("t1", "a")
            }),
            Write::Step(StepWrite {
                error: Some(String::new()),
                ..step("t1", "a")
            }),
        ],
    )
    .await;
    let task = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(
        (task.steps[0].state, task.steps[0].approval_deadline),
        (StepState::AwaitingApproval, deadline)
    );
    assert_eq!(task.steps[1].approval_deadline, 0, "only the step written");
    drop(store);
    let store = backend.open().await;
    let unfinished = store.unfinished_tasks().await.expect("recovery read");
    assert_eq!(unfinished[0].steps[0].approval_deadline, deadline);
    commit(
        &*store,
        vec![Write::Step(StepWrite {
            state: Some(StepState::Queued),
            approval_deadline: Some(0),
            ..step("t1", "a")
        })],
    )
    .await;
    let task = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(
        (task.steps[0].state, task.steps[0].approval_deadline),
        (StepState::Queued, 0)
    );
}

/// What a step did to its task's repository reads back from every path,
/// survives a reopen, a later write in the same batch wins, and a retry's
/// clearing removes it.
pub async fn a_steps_work_on_its_repository_reads_back_until_it_is_cleared(
    mut backend: impl Backend,
) {
    let store = with_tasks(&mut backend, &["t1"]).await;
    let work = |head: &str| tidewright_core::StepWork {
        branch: "tidewright/t1".into(),
        base_commit: "a".repeat(40),
        head_commit: head.repeat(40),
        files_changed: 2,
        insertions: 10,
        deletions: 3,
        changed_paths: vec!["src/lib.rs".into(), "README.md".into()],
        committed_by_tidewright: true,
        pushed: true,
        pull_request_url: "https://github.com/o/r/pull/7".into(),
    };
    commit(
        &*store,
        vec![
            Write::Step(StepWrite {
                work: Some(Some(work("b"))),
                ..step("t1", "a")
            }),
            Write::Step(StepWrite {
                work: Some(Some(work("c"))),
                ..step("t1", "a")
            }),
            Write::Step(StepWrite {
                error: Some(String::new()),
                ..step("t1", "a")
            }),
        ],
    )
    .await;
    let task = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(task.steps[0].work, Some(work("c")), "the later write wins");
    assert_eq!(task.steps[1].work, None, "only the step written");
    drop(store);
    let store = backend.open().await;
    let unfinished = store.unfinished_tasks().await.expect("recovery read");
    assert_eq!(unfinished[0].steps[0].work, Some(work("c")));
    let a = step_a_of_t1_after(
        &*store,
        StepWrite {
            work: Some(None),
            ..step("t1", "a")
        },
    )
    .await;
    assert_eq!(a.work, None);
}

pub async fn costs_add_up_per_step_and_task_in_reads_and_listings(mut backend: impl Backend) {
    let store = with_tasks(&mut backend, &["t1", "t2"]).await;
    let cost = |usd: f64, tokens: u64| Cost {
        usd,
        input_tokens: tokens,
        output_tokens: tokens / 10,
        cache_read_tokens: 1,
        cache_creation_tokens: 2,
    };
    let write = |step: &str, n: u32, session: Option<&str>, cost: Option<Cost>| {
        Write::Attempt(AttemptWrite {
            session_id: session.map(str::to_string),
            model: session.map(|_| "claude-test".to_string()),
            cost,
            ..attempt("t1", step, n)
        })
    };
    commit(
        &*store,
        vec![
            // The session is recorded when it starts; the cost when it ends.
            write("a", 1, Some("s-1"), None),
            write("a", 1, None, Some(cost(0.5, 100))),
            write("a", 2, None, Some(cost(0.25, 50))),
            write("b", 1, None, Some(cost(1.0, 10))),
        ],
    )
    .await;
    let task = store.get_task("t1").await.expect("get").expect("t1");
    let a = &task.steps[0];
    assert_eq!(
        (
            a.attempts[0].session_id.as_str(),
            a.attempts[0].model.as_str()
        ),
        ("s-1", "claude-test")
    );
    assert_eq!(a.attempts[0].cost, cost(0.5, 100));
    assert_eq!(a.cost, cost(0.5, 100) + cost(0.25, 50));
    let total = cost(0.5, 100) + cost(0.25, 50) + cost(1.0, 10);
    assert_eq!(task.cost, total);
    let listed = store.list_tasks(page(10)).await.expect("list");
    let t1 = listed.iter().find(|t| t.id == "t1").expect("t1 listed");
    assert_eq!(t1.cost, total);
    assert!(t1.steps.is_empty(), "listings carry no steps");
    let t2 = listed.iter().find(|t| t.id == "t2").expect("t2 listed");
    assert!(t2.cost.is_zero());
    let unfinished = store.unfinished_tasks().await.expect("unfinished");
    let t1 = unfinished.iter().find(|t| t.id == "t1").expect("t1");
    assert_eq!(
        t1.steps[0].attempts[0].session_id, "s-1",
        "recovery sees sessions"
    );
}

pub async fn budgets_shares_and_spend_per_tenant_are_kept_and_a_paused_task_is_unfinished(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    create(
        &*store,
        vec![
            new_task("t1", "team", None),
            new_task("t2", "team", None),
            new_task("t3", "other", None),
        ],
    )
    .await;
    let usd = |usd: f64| Cost {
        usd,
        input_tokens: 10,
        ..Cost::default()
    };
    let ended = |task: &str, n: u32, at: Micros, cost: Cost| {
        Write::Attempt(AttemptWrite {
            finished_at: Some(at),
            cost: Some(cost),
            ..attempt(task, "a", n)
        })
    };
    let budget = TenantBudget {
        usd_per_day: Some(5.0),
        tokens_per_month: Some(1000),
        ..TenantBudget::default()
    };
    let share = TenantShare {
        weight: 3,
        max_running: Some(0),
        fairness_key: Some(tidewright_core::share::FairnessKey::Label("team".into())),
    };
    let raised = TaskSpec {
        budget: Some(Budget {
            usd: Some(2.5),
            tokens: None,
            approvers: Vec::new(),
        }),
        ..new_task("t1", "team", None).spec
    };
    commit(
        &*store,
        vec![
            ended("t1", 1, 100, usd(1.0)),
            ended("t1", 2, 300, usd(0.5)),
            ended("t2", 1, 200, usd(0.25)),
            ended("t3", 1, 300, usd(4.0)),
            // Running (not ended) and free attempts count for nothing.
            Write::Attempt(attempt("t2", "b", 1)),
            Write::TenantBudget {
                tenant: "team".into(),
                budget,
            },
            Write::TenantBudget {
                tenant: "gone".into(),
                budget,
            },
            Write::TenantBudget {
                tenant: "gone".into(),
                budget: TenantBudget::default(),
            },
            Write::TenantShare {
                tenant: "team".into(),
                share: share.clone(),
            },
            Write::TenantShare {
                tenant: "gone".into(),
                share: share.clone(),
            },
            Write::TenantShare {
                tenant: "gone".into(),
                share: TenantShare::default(),
            },
            Write::Spec {
                id: "t1".into(),
                spec: Box::new(raised.clone()),
            },
            Write::Task(TaskWrite {
                id: "t1".into(),
                state: TaskState::Paused,
                message: "budget: spent".into(),
                started_at: None,
                finished_at: None,
            }),
        ],
    )
    .await;
    assert_eq!(
        store.tenant_budgets().await.expect("budgets"),
        [("team".to_string(), budget)],
        "an empty budget removes the tenant's"
    );
    assert_eq!(
        store.tenant_shares().await.expect("shares"),
        [("team".to_string(), share.clone())],
        "the default share removes the tenant's"
    );
    assert_eq!(
        store.spend_since(0).await.expect("spend"),
        [
            ("other".to_string(), usd(4.0)),
            ("team".to_string(), usd(1.75) + usd(0.0) + usd(0.0)),
        ]
    );
    assert_eq!(
        store.spend_since(200).await.expect("spend"),
        [
            ("other".to_string(), usd(4.0)),
            ("team".to_string(), usd(0.75) + usd(0.0)),
        ]
    );
    let t1 = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(
        (t1.state, t1.spec.budget),
        (TaskState::Paused, raised.budget)
    );
    assert!(
        store
            .unfinished_task_ids()
            .await
            .expect("ids")
            .contains(&"t1".to_string()),
        "a paused task is recovered after a restart"
    );
    let reopened = backend.open().await;
    assert_eq!(
        reopened.tenant_budgets().await.expect("budgets").len(),
        1,
        "budgets survive a reopen"
    );
    assert_eq!(
        reopened.tenant_shares().await.expect("shares"),
        [("team".to_string(), share)],
        "shares survive a reopen"
    );
}

/// Step `a` of task `t1` as it reads back after `change`.
async fn step_a_of_t1_after(store: &dyn Store, change: StepWrite) -> crate::StepRecord {
    commit(store, vec![Write::Step(change)]).await;
    let task = store.get_task("t1").await.expect("get").expect("t1");
    task.steps
        .into_iter()
        .find(|s| s.id == "a")
        .expect("step a")
}

pub async fn a_step_keeps_its_current_attempts_newest_checkpoint_until_its_task_expires(
    backend: impl Backend,
) {
    a_step_keeps_its_current_attempts_newest_until_its_task_expires(backend, Kept::Checkpoint)
        .await;
}

pub async fn a_step_keeps_its_current_attempts_branch_until_its_task_expires(
    backend: impl Backend,
) {
    a_step_keeps_its_current_attempts_newest_until_its_task_expires(backend, Kept::Branch).await;
}

/// What a step keeps for its next attempt: one case for both kinds.
#[derive(Clone, Copy)]
enum Kept {
    Checkpoint,
    Branch,
}

impl Kept {
    /// The write that keeps step `a`'s `bytes` from `attempt` of `task`.
    fn written(self, task: &str, attempt: u32, bytes: &[u8]) -> Write {
        match self {
            Kept::Checkpoint => Write::Checkpoint(Box::new(Checkpoint {
                task_id: task.into(),
                step_id: "a".into(),
                attempt,
                session_id: format!("s-{attempt}"),
                workspace: "/work/t1/a/attempt-1".into(),
                archive: bytes.to_vec(),
                created_at: 10,
            })),
            Kept::Branch => Write::Branch(Box::new(StepBranch {
                task_id: task.into(),
                step_id: "a".into(),
                attempt,
                head_commit: format!("{attempt}").repeat(40),
                bundle: bytes.to_vec(),
                diff: format!("--- a/x\n+++ b/x\n+attempt {attempt} ünïcode\n"),
                created_at: 10,
            })),
        }
    }

    /// What the store keeps of `task`'s `step`, as the write that kept it.
    async fn read(self, store: &dyn Store, task: &str, step: &str) -> Option<Write> {
        match self {
            Kept::Checkpoint => store
                .checkpoint(task, step)
                .await
                .expect("read")
                .map(Box::new)
                .map(Write::Checkpoint),
            Kept::Branch => store
                .step_branch(task, step)
                .await
                .expect("read")
                .map(Box::new)
                .map(Write::Branch),
        }
    }
}

async fn a_step_keeps_its_current_attempts_newest_until_its_task_expires(
    mut backend: impl Backend,
    kind: Kept,
) {
    let store = with_tasks(&mut backend, &["t1", "t2"]).await;
    let kept = |task: &str, attempt: u32, bytes: &[u8]| kind.written(task, attempt, bytes);
    let at_attempt = |task: &str, n: u32| {
        Write::Step(StepWrite {
            state: Some(StepState::Running),
            attempt: Some(n),
            ..step(task, "a")
        })
    };
    // Every byte value, so a backend that stores text would show it.
    let all_bytes: Vec<u8> = (0..=255).collect();
    commit(
        &*store,
        vec![
            at_attempt("t1", 1),
            kept("t1", 1, &all_bytes),
            // Not the step's current attempt: not kept.
            kept("t1", 2, b"early"),
            at_attempt("t2", 1),
            kept("t2", 1, b"t2"),
        ],
    )
    .await;
    assert_eq!(
        kind.read(&*store, "t1", "a").await,
        Some(kept("t1", 1, &all_bytes))
    );
    assert_eq!(kind.read(&*store, "t1", "b").await, None);
    assert_eq!(kind.read(&*store, "nope", "a").await, None);

    // Attempt 2 keeps its newest; attempt 1, late (a zombie), replaces
    // nothing.
    commit(
        &*store,
        vec![
            at_attempt("t1", 2),
            kept("t1", 2, b"second"),
            kept("t1", 1, b"zombie"),
            kept("t1", 2, b"second, again"),
        ],
    )
    .await;
    assert_eq!(
        kind.read(&*store, "t1", "a").await,
        Some(kept("t1", 2, b"second, again"))
    );
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        kind.read(&*store, "t1", "a").await,
        Some(kept("t1", 2, b"second, again")),
        "what is kept survives a reopen"
    );

    // It goes with its task once the task has been finished long enough;
    // an unfinished task's stays.
    let finish = Write::Task(TaskWrite {
        id: "t1".into(),
        state: TaskState::Failed,
        message: String::new(),
        started_at: None,
        finished_at: Some(500),
    });
    let expire = |finished_before| Write::ExpireKept { finished_before };
    commit(&*store, vec![finish, expire(500)]).await;
    assert!(
        kind.read(&*store, "t1", "a").await.is_some(),
        "not yet expired"
    );
    commit(&*store, vec![expire(501)]).await;
    assert_eq!(kind.read(&*store, "t1", "a").await, None);
    assert!(
        kind.read(&*store, "t2", "a").await.is_some(),
        "an unfinished task keeps what its step kept"
    );
}

/// Attempts' costs add up per day and key, across commits and a reopen;
/// a read starts at its day and keeps to its tenants; days before the
/// kept window go.
pub async fn cost_sums_add_up_per_day_and_key_and_old_days_go(mut backend: impl Backend) {
    use tidewright_core::cost_sums::{CostKey, CostSum};
    let store = backend.open().await;
    let kept_from = |day: &str, tenant: &str, model: &str, usd: f64, from: &str| Write::CostSum {
        sum: CostSum {
            key: CostKey {
                day: day.into(),
                tenant: tenant.into(),
                repo: "https://git.example/app".into(),
                runtime: "claude-code".into(),
                model: model.into(),
                template: String::new(),
            },
            cost: Cost {
                usd,
                input_tokens: 100,
                output_tokens: 10,
                cache_read_tokens: 5,
                cache_creation_tokens: 1,
            },
            attempts: 1,
        },
        expire_before: from.into(),
    };
    let sum = |day: &str, tenant: &str, model: &str, usd: f64| {
        kept_from(day, tenant, model, usd, "2025-01-01")
    };
    commit(
        &*store,
        vec![
            sum("2026-11-01", "team", "opus", 0.25),
            sum("2026-11-01", "team", "opus", 0.5),
            sum("2026-11-02", "team", "sonnet", 1.0),
        ],
    )
    .await;
    commit(&*store, vec![sum("2026-11-02", "other", "opus", 2.0)]).await;
    drop(store);
    let store = backend.open().await;
    let all = store.cost_sums("2026-11-01", None).await.expect("sums");
    let seen: Vec<(&str, &str, &str, f64, u64, u64)> = all
        .iter()
        .map(|s| {
            (
                s.key.day.as_str(),
                s.key.tenant.as_str(),
                s.key.model.as_str(),
                s.cost.usd,
                s.cost.input_tokens,
                s.attempts,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("2026-11-01", "team", "opus", 0.75, 200, 2),
            ("2026-11-02", "other", "opus", 2.0, 100, 1),
            ("2026-11-02", "team", "sonnet", 1.0, 100, 1),
        ]
    );
    let later = store
        .cost_sums("2026-11-02", Some(vec!["team".into()]))
        .await
        .expect("sums");
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].key.model, "sonnet");
    assert_eq!(later[0].cost.cache_creation_tokens, 1);
    // A write whose kept window starts after a day drops that day.
    commit(
        &*store,
        vec![kept_from("2026-11-03", "team", "opus", 0.1, "2026-11-02")],
    )
    .await;
    let kept: Vec<String> = store
        .cost_sums("2000-01-01", None)
        .await
        .expect("sums")
        .into_iter()
        .map(|s| s.key.day)
        .collect();
    assert_eq!(kept, ["2026-11-02", "2026-11-02", "2026-11-03"]);
}
