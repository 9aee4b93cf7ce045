//! Tenants' shares in the engine: a tenant at its cap on running steps
//! waits while others run and goes on as its steps end; weights stored
//! before a start hold from the first dispatch; a fairness key shares a
//! tenant's part among its labels' values.

use tidewright_core::TenantShare;

use super::*;

fn one(id: &str) -> TaskSpec {
    TaskSpec {
        name: id.to_string(),
        steps: vec![noop("a")],
        ..TaskSpec::default()
    }
}

/// The tenant of each of the next `n` assignments.
async fn tenants_of_next(w: &mut FakeWorker, n: usize) -> Vec<String> {
    let mut tenants = Vec::new();
    for _ in 0..n {
        let id = w.assigned().await.task_id;
        tenants.push(id.split('-').next().unwrap_or_default().to_string());
    }
    tenants
}

#[tokio::test]
async fn a_tenant_at_its_cap_waits_while_others_run_and_goes_on_as_its_steps_end() {
    let h = Harness::new();
    let capped = TenantShare {
        max_running: Some(2),
        ..TenantShare::default()
    };
    h.engine
        .set_tenant_share("acme".into(), capped.clone())
        .await
        .expect("set");
    for n in 0..5 {
        h.try_submit(&format!("acme-{n}"), "acme", one("acme"), n)
            .await
            .expect("submitted");
    }
    for n in 0..2 {
        h.try_submit(&format!("zeta-{n}"), "zeta", one("zeta"), 10 + n)
            .await
            .expect("submitted");
    }
    let mut w = h.ready_worker("w", &["shell"], 6).await;
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(w.assigned().await);
    }
    h.settled().await;
    assert!(w.idle(), "acme is at its cap of 2 with 2 slots free");
    let acme: Vec<&AttemptKey> = first
        .iter()
        .filter(|a| a.task_id.starts_with("acme"))
        .collect();
    assert_eq!(acme.len(), 2, "{first:?}");
    let now = h.engine.shares(None).await.expect("shares");
    assert_eq!(
        now,
        [
            ("acme".to_string(), capped, 2, 3),
            ("zeta".to_string(), TenantShare::default(), 2, 0)
        ]
    );
    // One of its steps ends: one more of acme's starts, no more.
    h.report(&w, acme[0].clone(), AttemptEnd::Succeeded).await;
    assert!(w.assigned().await.task_id.starts_with("acme"));
    h.settled().await;
    assert!(w.idle(), "at its cap again");
    // The cap lifted: the rest start (the worker asks for the slot its
    // ended step freed).
    h.engine.credits(w.id, 1).await.expect("credits");
    h.engine
        .set_tenant_share("acme".into(), TenantShare::default())
        .await
        .expect("set");
    assert_eq!(tenants_of_next(&mut w, 2).await, ["acme", "acme"]);
}

#[tokio::test]
async fn a_cap_of_zero_runs_nothing_of_the_tenant_until_raised() {
    let h = Harness::new();
    let none = TenantShare {
        max_running: Some(0),
        ..TenantShare::default()
    };
    h.engine
        .set_tenant_share("acme".into(), none.clone())
        .await
        .expect("set");
    h.try_submit("acme-0", "acme", one("acme"), 0)
        .await
        .expect("submitted");
    let mut w = h.ready_worker("w", &["shell"], 2).await;
    h.settled().await;
    assert!(w.idle(), "nothing of acme runs");
    h.engine
        .set_tenant_share(
            "acme".into(),
            TenantShare {
                max_running: Some(1),
                ..none
            },
        )
        .await
        .expect("set");
    assert_eq!(w.assigned().await.task_id, "acme-0");
}

#[tokio::test]
async fn weights_stored_before_a_start_hold_from_its_first_dispatch() {
    let store = MemoryStore::new();
    store
        .write(vec![Write::TenantShare {
            tenant: "heavy".into(),
            share: TenantShare {
                weight: 3,
                ..TenantShare::default()
            },
        }])
        .await
        .expect("committed")
        .expect("stored");
    let tenants = load_tenants(&store).await.expect("loaded");
    let h = Harness::start_with(store, tenants);
    for n in 0..20 {
        h.try_submit(&format!("light-{n:02}"), "light", one("light"), n)
            .await
            .expect("submitted");
        h.try_submit(&format!("heavy-{n:02}"), "heavy", one("heavy"), n)
            .await
            .expect("submitted");
    }
    let mut w = h.ready_worker("w", &["shell"], 8).await;
    let started = tenants_of_next(&mut w, 8).await;
    let heavy = started.iter().filter(|t| *t == "heavy").count();
    assert_eq!(heavy, 6, "three turns to one: {started:?}");
}

#[tokio::test]
async fn a_fairness_key_shares_a_tenants_part_among_its_label_values() {
    let h = Harness::new();
    let by_team = TenantShare {
        fairness_key: Some("label:team".parse().expect("key")),
        ..TenantShare::default()
    };
    h.engine
        .set_tenant_share("acme".into(), by_team)
        .await
        .expect("set");
    let labelled = |team: &str| TaskSpec {
        labels: [("team".to_string(), team.to_string())].into(),
        ..one(team)
    };
    // The big team's backlog first, then the small team's few.
    for n in 0..20 {
        h.try_submit(&format!("big-{n:02}"), "acme", labelled("big"), n)
            .await
            .expect("submitted");
    }
    for n in 0..3 {
        h.try_submit(&format!("small-{n}"), "acme", labelled("small"), 100 + n)
            .await
            .expect("submitted");
    }
    let mut w = h.ready_worker("w", &["shell"], 6).await;
    let started = tenants_of_next(&mut w, 6).await;
    assert_eq!(
        started.iter().filter(|t| *t == "small").count(),
        3,
        "the small team's three go in the first turns: {started:?}"
    );
}
