//! The suite's part on webhooks: endpoints, deliveries and the cursor.

use super::*;

/// A delivery of `task`'s success to endpoint `webhook_id`, not sent yet.
pub(super) fn pending_delivery(id: &str, webhook_id: &str, tenant: &str, task: &str) -> Delivery {
    Delivery {
        id: id.into(),
        webhook_id: webhook_id.into(),
        tenant: tenant.into(),
        task_id: task.into(),
        event: "task.succeeded".into(),
        payload: format!(r#"{{"id":"{id}","type":"task.succeeded"}}"#),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: 10,
        last_status: 0,
        last_latency_ms: 0,
        last_error: String::new(),
        created_at: 10,
        finished_at: 0,
    }
}

/// Endpoints are registered, replaced and removed (with their deliveries);
/// deliveries and the cursor commit together; the pending ones list
/// oldest first, the log newest first, by endpoint, tenant and page; all
/// of it survives a reopen.
pub async fn webhooks_their_deliveries_and_the_cursor_are_kept_and_listed(
    mut backend: impl Backend,
) {
    let store = backend.open().await;
    let webhook = |id: &str, tenant: &str| Webhook {
        id: id.into(),
        tenant: tenant.into(),
        url: format!("https://hooks.example/{id}"),
        events: vec!["task.succeeded".into(), "step.failed".into()],
        secret: "s3cret \"quoted\" ünïcode".into(),
        enabled: true,
        disabled_reason: String::new(),
        created_at: 5,
        // Every endpoint carries an A2A push config here: the record keeps
        // it, secrets and all.
        push: Some(TaskPush {
            task_id: "t1".into(),
            config_id: format!("c-{id}"),
            token: "tok \"en\"".into(),
            auth_scheme: "Bearer".into(),
            auth_credentials: "cr3d".into(),
        }),
    };
    let delivery =
        |id: &str, webhook_id: &str, tenant: &str| pending_delivery(id, webhook_id, tenant, "t1");
    assert_eq!(store.webhook_cursor().await.expect("cursor"), 0);
    commit(
        &*store,
        vec![
            Write::Webhook(Box::new(webhook("w1", "team"))),
            Write::Webhook(Box::new(webhook("w2", "other"))),
            Write::Webhook(Box::new(webhook("w3", "team"))),
            Write::Deliveries {
                cursor: Some(77),
                deliveries: vec![
                    delivery("d1", "w1", "team"),
                    delivery("d2", "w2", "other"),
                    delivery("d3", "w1", "team"),
                    delivery("d4", "w3", "team"),
                ],
            },
        ],
    )
    .await;
    let delivered = Delivery {
        state: DeliveryState::Delivered,
        attempts: 2,
        last_status: 204,
        last_latency_ms: 12,
        last_error: "first try: 500".into(),
        finished_at: 20,
        ..delivery("d1", "w1", "team")
    };
    let disabled = Webhook {
        enabled: false,
        disabled_reason: "the receiver answered 410 Gone".into(),
        ..webhook("w2", "other")
    };
    commit(
        &*store,
        vec![
            Write::Deliveries {
                cursor: None,
                deliveries: vec![delivered.clone()],
            },
            Write::Webhook(Box::new(disabled.clone())),
            Write::RemoveWebhook { id: "w3".into() },
        ],
    )
    .await;
    drop(store);
    let store = backend.open().await;
    assert_eq!(store.webhook_cursor().await.expect("cursor"), 77);
    assert_eq!(
        store.webhooks().await.expect("webhooks"),
        vec![webhook("w1", "team"), disabled]
    );
    let ids = |found: Vec<Delivery>| found.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.pending_deliveries(10).await.expect("pending")),
        ["d2", "d3"],
        "oldest first; d1 delivered, d4's endpoint removed"
    );
    assert_eq!(
        ids(store.pending_deliveries(1).await.expect("pending")),
        ["d2"]
    );
    let all = store
        .deliveries(DeliveryQuery {
            limit: 10,
            ..DeliveryQuery::default()
        })
        .await
        .expect("log");
    assert_eq!(all[2], delivered, "kept whole");
    assert_eq!(ids(all), ["d3", "d2", "d1"], "newest first");
    let of_w1 = store
        .deliveries(DeliveryQuery {
            webhook_id: Some("w1".into()),
            limit: 10,
            ..DeliveryQuery::default()
        })
        .await
        .expect("log");
    assert_eq!(ids(of_w1), ["d3", "d1"]);
    let page = store
        .deliveries(DeliveryQuery {
            tenants: Some(vec!["team".into()]),
            before_id: Some("d3".into()),
            limit: 10,
            ..DeliveryQuery::default()
        })
        .await
        .expect("log");
    assert_eq!(ids(page), ["d1"]);
}
