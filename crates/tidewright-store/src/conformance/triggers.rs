//! The suite's part on triggers.

use super::*;
use crate::triggers::{Reply, Trigger, TriggerRun};
use tidewright_core::trigger::{TriggerEvent, TriggerSpec};

/// Triggers are created, replaced (their history and the replies they owe)
/// and removed, by tenant and name, kept whole, and survive a reopen.
pub async fn triggers_are_kept_replaced_and_removed_with_their_replies_owed(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    let trigger = |tenant: &str, name: &str| Trigger {
        tenant: tenant.into(),
        spec: TriggerSpec {
            name: name.into(),
            repository: "acme/app".into(),
            event: TriggerEvent::Comment,
            template: "fix-issue".into(),
            params: [("title".to_string(), "\"quoted\" ünïcode".to_string())].into(),
            ..TriggerSpec::default()
        },
        created_at: 5,
        history: Vec::new(),
        replies: Vec::new(),
    };
    assert!(store.triggers().await.expect("none").is_empty());
    commit(
        &*store,
        vec![
            Write::Trigger(Box::new(trigger("team", "issues"))),
            Write::Trigger(Box::new(trigger("other", "issues"))),
            Write::Trigger(Box::new(trigger("team", "ci"))),
        ],
    )
    .await;
    let mut fired = trigger("team", "issues");
    fired.remember(TriggerRun {
        delivery: "d-1".into(),
        task_id: "t1".into(),
        refused: String::new(),
        at: 100,
    });
    fired.replies.push(Reply {
        task_id: "t1".into(),
        number: 7,
        on_pull_request: false,
    });
    commit(
        &*store,
        vec![
            Write::Trigger(Box::new(fired.clone())),
            Write::RemoveTrigger {
                tenant: "team".into(),
                name: "ci".into(),
            },
        ],
    )
    .await;
    drop(store);
    let store = backend.open().await;
    let kept = store.triggers().await.expect("triggers");
    let keys: Vec<(&str, &str)> = kept
        .iter()
        .map(|t| (t.tenant.as_str(), t.spec.name.as_str()))
        .collect();
    assert_eq!(keys, [("other", "issues"), ("team", "issues")]);
    assert_eq!(kept[1], fired, "kept whole");
    let one = store.trigger("team", "issues").await.expect("read");
    assert_eq!(one.as_ref(), Some(&fired));
    for (tenant, name) in [("team", "ci"), ("nobody", "issues"), ("team", "Issues")] {
        let none = store.trigger(tenant, name).await.expect("read");
        assert!(none.is_none(), "{tenant}/{name}");
    }
}
