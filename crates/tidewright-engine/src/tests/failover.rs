//! Failover in the engine: a step stopped at its provider's limit moves to
//! its fallback with its work and its agent's summary, visibly; a later
//! step keeps to where the task went, or fails back once the limit has
//! reset; a tenant the policy forbids waits and is told; and a restart
//! finds the step where it went.

use tidewright_core::failover::FallbackPolicy;
use tidewright_core::{ClaudeCodeSpec, EventKind, RepoSpec, StepWork};

use super::*;

const BASE: &str = "1111111111111111111111111111111111111111";
const HEAD: &str = "2222222222222222222222222222222222222222";

/// A Claude Code step that may fall back to Codex.
fn claude(id: &str) -> StepSpec {
    StepSpec {
        claude_code: Some(ClaudeCodeSpec {
            prompt: format!("do {id}"),
            ..ClaudeCodeSpec::default()
        }),
        noop: None,
        fallback: vec![tidewright_core::CODEX.into()],
        ..StepSpec::noop(id)
    }
}

/// Task `t` on a repository: `a`, then `b` after it.
fn two_steps(failback: bool) -> TaskSpec {
    TaskSpec {
        name: "t".into(),
        steps: vec![claude("a"), claude("b").after(&["a"])],
        repo: Some(RepoSpec {
            url: "https://git.example/calc.git".into(),
            commit: BASE.into(),
            ..RepoSpec::default()
        }),
        failback,
        ..TaskSpec::default()
    }
}

/// A worker running both agent CLIs, in a pool of its own.
async fn both_clis(h: &Harness) -> FakeWorker {
    h.ready_worker(
        "w",
        &[tidewright_core::CLAUDE_CODE, tidewright_core::CODEX],
        2,
    )
    .await
}

/// `attempt` stopped by Claude's limit, its work so far committed, and
/// what its agent did; the limit resets in `reset_in` µs.
async fn limited(h: &Harness, w: &FakeWorker, attempt: AttemptKey, reset_in: Micros) {
    h.engine
        .report(
            w.id,
            StepResult {
                error: "API Error: 429 usage limit reached".into(),
                rate_limited: Some(RateLimited {
                    reset: Some(tidewright_core::calendar::now_micros() + reset_in),
                    signal: "api_error_status 429".into(),
                }),
                work: Some(StepWork {
                    branch: "tidewright/t-a".into(),
                    base_commit: BASE.into(),
                    head_commit: HEAD.into(),
                    files_changed: 1,
                    changed_paths: vec!["calc.py".into()],
                    ..StepWork::default()
                }),
                handover: "- Edit: calc.py\nIt changed 1 files (+1 -1): calc.py\n".into(),
                ..StepResult::ended(attempt, AttemptEnd::Failed)
            },
        )
        .await
        .expect("reported");
}

/// Polls the fleet until no limit pauses any pool.
async fn until_resumed(h: &Harness) {
    let deadline = tokio::time::Instant::now() + PROMPTLY;
    while h
        .engine
        .list_agents()
        .await
        .expect("fleet")
        .workers
        .iter()
        .any(|w| w.paused.is_some())
    {
        assert!(tokio::time::Instant::now() < deadline, "still paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_step_at_its_limit_moves_to_its_fallback_with_its_work_and_the_next_keeps_to_it() {
    let h = Harness::new();
    h.try_submit("t", "default", two_steps(false), 1)
        .await
        .expect("submitted");
    let mut w = both_clis(&h).await;
    let first = w.assignment().await;
    assert_eq!(first.step.agent_capability(), Some("claude-code"));
    limited(&h, &w, first.attempt.clone(), 1_000_000).await;

    // Straight to Codex, on top of Claude's work, told what it did.
    let moved = w.assignment().await;
    assert_eq!(moved.attempt.step_id, "a");
    assert_eq!(moved.step.agent_capability(), Some("codex"));
    assert_eq!(moved.step.prompt(), "do a");
    assert_eq!(moved.step.fallback, ["claude-code"]);
    let failover = moved
        .step
        .failover
        .clone()
        .expect("the move is on the step");
    assert_eq!(
        (failover.from.as_str(), failover.preferred.as_str()),
        ("claude-code", "claude-code")
    );
    assert_eq!(failover.after_attempt, first.attempt.attempt);
    assert_eq!(failover.head, HEAD);
    assert_eq!(
        failover.base, BASE,
        "its work is measured from where Claude began"
    );
    assert!(
        failover.summary.starts_with("- Edit: calc.py"),
        "{failover:?}"
    );
    assert!(
        failover
            .reason
            .starts_with("claude-code rate limited (api_error_status 429)"),
        "{failover:?}"
    );
    assert_eq!(moved.resume, None, "Claude's session is not Codex's");
    assert_eq!(
        moved
            .dependency_heads
            .iter()
            .map(|d| (d.step.as_str(), d.head.as_str()))
            .collect::<Vec<_>>(),
        [("a", HEAD)],
        "it starts from the work so far"
    );
    // The move is stored, an event and an audit record.
    let task = h.task("t").await;
    assert_eq!(task.spec.steps[0].agent_capability(), Some("codex"));
    assert_eq!(task.spec.steps[0].failover, Some(failover));
    let said: Vec<EventKind> = h
        .events("t")
        .await
        .into_iter()
        .filter(|e| matches!(e, EventKind::FailedOver { .. }))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        matches!(&said[0], EventKind::FailedOver { step, from, to, carried: true, .. }
            if step == "a" && from == "claude-code" && to == "codex"),
        "{said:?}"
    );
    let audit = h.store.audit_after(0, 100, None).await.expect("audit");
    assert!(
        audit.iter().any(|a| a.action == "step.failed_over"
            && a.target == "t"
            && a.detail
                .contains("from claude-code to codex, with its work")),
        "{audit:?}"
    );

    // Claude's window resets; without failback, `b` keeps to Codex.
    until_resumed(&h).await;
    h.report(&w, moved.attempt, AttemptEnd::Succeeded).await;
    h.engine.credits(w.id, 1).await.expect("credits");
    let next = w.assignment().await;
    assert_eq!(next.attempt.step_id, "b");
    assert_eq!(next.step.agent_capability(), Some("codex"));
    let kept = next.step.failover.expect("b moved too");
    assert!(
        kept.reason
            .contains("step a of the task failed over from claude-code to codex"),
        "{kept:?}"
    );
    assert!(
        kept.head.is_empty() && kept.summary.is_empty(),
        "b carries nothing"
    );
}

#[tokio::test]
async fn with_failback_the_next_step_returns_to_its_own_runtime_after_the_reset() {
    let h = Harness::new();
    h.try_submit("t", "default", two_steps(true), 1)
        .await
        .expect("submitted");
    let mut w = both_clis(&h).await;
    let first = w.assignment().await;
    limited(&h, &w, first.attempt, 1_000_000).await;
    let moved = w.assignment().await;
    assert_eq!(moved.step.agent_capability(), Some("codex"));
    until_resumed(&h).await;
    h.report(&w, moved.attempt, AttemptEnd::Succeeded).await;
    h.engine.credits(w.id, 1).await.expect("credits");
    let next = w.assignment().await;
    assert_eq!(next.attempt.step_id, "b");
    assert_eq!(next.step.agent_capability(), Some("claude-code"));
    assert_eq!(next.step.failover, None);
}

#[tokio::test]
async fn a_tenant_the_policy_forbids_waits_for_its_own_runtime_and_is_told_once() {
    let store = MemoryStore::new();
    let settings = Settings {
        fallback: FallbackPolicy::parse(&["acme=forbid"]).expect("policy"),
        ..settings()
    };
    let h = Harness::start_on(
        Arc::new(store.clone()),
        store,
        Vec::new(),
        settings,
        StoredTenants::default(),
    );
    h.try_submit("t", "acme", two_steps(false), 1)
        .await
        .expect("submitted");
    let mut w = both_clis(&h).await;
    let first = w.assignment().await;
    limited(&h, &w, first.attempt, 60_000_000).await;
    h.until("t", "the step waits queued", |t| {
        t.steps[0].state == StepState::Queued
    })
    .await;
    // A tick later (the engine looks again each half second), still so.
    h.settled().await;
    assert!(
        w.idle(),
        "nothing runs: codex is not used, claude is paused"
    );
    let said = h.events("t").await;
    assert!(
        !said
            .iter()
            .any(|e| matches!(e, EventKind::FailedOver { .. })),
        "{said:?}"
    );
    let told: Vec<&String> = said
        .iter()
        .filter_map(|e| match e {
            EventKind::StepState { message, .. } if message.contains("fallback policy") => {
                Some(message)
            }
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 1, "{said:?}");
    assert!(
        told[0].contains("forbids failover for tenant \"acme\", so it waits for claude-code"),
        "{told:?}"
    );
    assert_eq!(h.task("t").await.spec.steps[0].failover, None);
}

#[tokio::test]
async fn a_restart_finds_the_moved_step_on_its_fallback_without_the_old_session() {
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        h.try_submit("t", "default", two_steps(false), 1)
            .await
            .expect("submitted");
        let mut w = both_clis(&h).await;
        let first = w.assignment().await;
        h.engine
            .session(
                w.id,
                first.attempt.clone(),
                "claude-session".into(),
                "opus".into(),
            )
            .await
            .expect("session");
        limited(&h, &w, first.attempt, 60_000_000).await;
        let moved = w.assignment().await;
        assert_eq!(moved.step.agent_capability(), Some("codex"));
        // The worker goes before the step's Codex attempt ends.
        drop(w);
        h.settled().await;
    }
    let h = Harness::start(
        store.reopen(),
        vec!["t".into()],
        liveness(Duration::from_millis(300)),
    );
    let mut w = h.ready_worker("w2", &[tidewright_core::CODEX], 1).await;
    let _alive = h.keep_alive(&w);
    let again = w.assignment().await;
    assert_eq!(again.attempt.step_id, "a");
    assert_eq!(again.step.agent_capability(), Some("codex"));
    assert_eq!(
        again.resume, None,
        "the Claude session is not resumed on Codex"
    );
    assert_eq!(
        again
            .dependency_heads
            .iter()
            .map(|d| d.head.as_str())
            .collect::<Vec<_>>(),
        [HEAD]
    );
}
