//! The suite's part on shared state: compare-and-set by version, expiry,
//! and a scope's values a page at a time.

use super::*;

pub async fn state_compares_and_sets_by_version_and_expires(mut backend: impl Backend) {
    let store = backend.open().await;
    let key = |k: &str| StateKey {
        tenant: "default".into(),
        scope: "t1".into(),
        key: k.into(),
    };
    let put = |k: &str, value: &str, expect: Expect, expires_at: i64, now: i64| StateChange::Put {
        key: key(k),
        value_json: value.into(),
        expect,
        expires_at,
        now,
    };
    let version = |outcome: StateOutcome| match outcome {
        StateOutcome::Done(Some(entry)) => entry.version,
        other => panic!("expected a value, got {other:?}"),
    };
    let change = |change| store.change_state(change);
    assert_eq!(
        version(
            change(put("k", r#"{"n":1}"#, Expect::Absent, 0, 10))
                .await
                .expect("put")
        ),
        1
    );
    // Absent no more: a second create conflicts, naming what it found.
    assert_eq!(
        change(put("k", "2", Expect::Absent, 0, 11))
            .await
            .expect("put"),
        StateOutcome::Conflict { found: Some(1) }
    );
    assert_eq!(
        version(
            change(put("k", "2", Expect::Version(1), 0, 12))
                .await
                .expect("cas")
        ),
        2
    );
    // A stale version fails and changes nothing.
    assert_eq!(
        change(put("k", "3", Expect::Version(1), 0, 13))
            .await
            .expect("cas"),
        StateOutcome::Conflict { found: Some(2) }
    );
    let entry = store
        .get_state(key("k"), 14)
        .await
        .expect("get")
        .expect("k");
    assert_eq!(
        (entry.value_json.as_str(), entry.version, entry.updated_at),
        ("2", 2, 12)
    );
    // A delete that expects another version changes nothing.
    assert_eq!(
        change(StateChange::Delete {
            key: key("k"),
            expect: Expect::Version(7),
            now: 15,
        })
        .await
        .expect("delete"),
        StateOutcome::Conflict { found: Some(2) }
    );
    // Deleted, then put again: the version keeps counting.
    assert_eq!(
        change(StateChange::Delete {
            key: key("k"),
            expect: Expect::Version(2),
            now: 15,
        })
        .await
        .expect("delete"),
        StateOutcome::Done(None)
    );
    assert!(store.get_state(key("k"), 16).await.expect("get").is_none());
    assert_eq!(
        version(
            change(put("k", "4", Expect::Absent, 0, 17))
                .await
                .expect("put")
        ),
        4
    );
    // A value with a TTL is gone once it expires, and counts as absent.
    change(put("ttl", "\"soon\"", Expect::Any, 100, 20))
        .await
        .expect("put");
    let live = store.get_state(key("ttl"), 99).await.expect("get");
    assert_eq!(live.map(|e| e.expires_at), Some(100));
    assert!(
        store
            .get_state(key("ttl"), 100)
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        change(put("ttl", "1", Expect::Version(1), 0, 101))
            .await
            .expect("cas"),
        StateOutcome::Conflict { found: None },
        "an expired value is absent to a compare-and-set"
    );
    assert_eq!(
        version(
            change(put("ttl", "1", Expect::Absent, 0, 101))
                .await
                .expect("put")
        ),
        2
    );
    // Scopes and tenants do not see each other's keys.
    let elsewhere = StateKey {
        tenant: "team-b".into(),
        ..key("k")
    };
    assert!(store.get_state(elsewhere, 18).await.expect("get").is_none());
    let other_scope = StateKey {
        scope: "t2".into(),
        ..key("k")
    };
    assert!(
        store
            .get_state(other_scope, 18)
            .await
            .expect("get")
            .is_none()
    );
}

pub async fn a_scope_lists_its_live_values_in_key_order_a_page_at_a_time(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    let put = |tenant: &str, scope: &str, key: &str, expires_at: i64| StateChange::Put {
        key: StateKey {
            tenant: tenant.into(),
            scope: scope.into(),
            key: key.into(),
        },
        value_json: format!("{{\"key\":\"{key}\"}}"),
        expect: Expect::Any,
        expires_at,
        now: 10,
    };
    for change in [
        put("default", "shared", "c", 0),
        put("default", "shared", "a", 0),
        put("default", "shared", "b", 0),
        put("default", "shared", "expired", 20),
        put("default", "shared", "gone", 0),
        put("default", "other", "a", 0),
        put("team-b", "shared", "a", 0),
    ] {
        store.change_state(change).await.expect("put");
    }
    store
        .change_state(StateChange::Delete {
            key: StateKey {
                tenant: "default".into(),
                scope: "shared".into(),
                key: "gone".into(),
            },
            expect: Expect::Any,
            now: 11,
        })
        .await
        .expect("delete");
    let scope = StateScope {
        tenant: "default".into(),
        scope: "shared".into(),
    };
    let keys = |found: Vec<(StateKey, crate::StateEntry)>| -> Vec<String> {
        found.into_iter().map(|(k, _)| k.key).collect()
    };
    let all = store
        .list_state(page(scope.clone(), "", 100, 30))
        .await
        .expect("list");
    assert_eq!(all[0].0.tenant, "default");
    assert_eq!(all[0].1.value_json.replace(' ', ""), r#"{"key":"a"}"#);
    assert_eq!(all[0].1.version, 1);
    assert_eq!(keys(all), ["a", "b", "c"], "live values only, in key order");
    assert_eq!(
        keys(
            store
                .list_state(page(scope.clone(), "", 2, 30))
                .await
                .expect("page")
        ),
        ["a", "b"]
    );
    assert_eq!(
        keys(
            store
                .list_state(page(scope.clone(), "b", 2, 30))
                .await
                .expect("next")
        ),
        ["c"]
    );
    assert_eq!(
        keys(
            store
                .list_state(page(scope.clone(), "", 100, 15))
                .await
                .expect("before expiry")
        ),
        ["a", "b", "c", "expired"]
    );
    let other = StateScope {
        tenant: "team-b".into(),
        scope: "shared".into(),
    };
    assert_eq!(
        keys(
            store
                .list_state(page(other, "", 100, 30))
                .await
                .expect("team-b")
        ),
        ["a"]
    );
}

/// A page of `scope` as the conformance cases ask for one.
fn page(scope: StateScope, after_key: &str, limit: usize, now: Micros) -> StateQuery {
    StateQuery {
        scope,
        after_key: after_key.to_string(),
        limit,
        now,
    }
}
