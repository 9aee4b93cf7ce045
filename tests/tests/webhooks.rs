//! Webhooks end to end: a real `tidewright server` and worker, and a receiver on
//! loopback (the server allows private networks for it): signatures, the
//! retry after a 500, order per task, the delivery log, 410, restarts, and
//! the refusals.

use std::collections::HashMap;
use std::time::Duration;

use tidewright_client::{Client, Settings, v1};
use tidewright_tests::webhook_receiver::{Received, Receiver, verify_with_libraries};
use tidewright_tests::*;
use tonic::Code;

/// A Standard Webhooks secret: `whsec_` and the base64 of a 32-byte key.
const SECRET: &str = "whsec_C2FtcGxlLWtleS1vZi10aGlydHktdHdvLWJ5dGVzIQ==";
const OTHER_SECRET: &str = "whsec_YW5vdGhlci1rZXktb2YtdGhpcnR5LXR3by1ieXRlcyE=";
const ALLOW: &str = "--webhook-allow-private-networks";
const ARRIVE: Duration = Duration::from_secs(30);

/// `request` as if sent `seconds` ago: its timestamp that old, and signed
/// for it as the sender would (Standard Webhooks: the base64 HMAC-SHA256,
/// under the secret's key, of "id.timestamp.body").
fn signed_long_ago(request: &Received, seconds: u64) -> Received {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("the secret's key");
    let then = request.timestamp.parse::<u64>().expect("a timestamp") - seconds;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signed = format!("{}.{then}.{}", request.id, request.body);
    let tag = ring::hmac::sign(&key, signed.as_bytes());
    Received {
        timestamp: then.to_string(),
        signature: format!("v1,{}", b64.encode(tag.as_ref())),
        ..request.clone()
    }
}

async fn client_of(server: &Server) -> anyhow::Result<Client> {
    Ok(Client::connect(Settings::new(&server.url, Some(server.admin_token.clone()))).await?)
}

fn spec(name: &str, script: &str) -> v1::TaskSpec {
    v1::TaskSpec {
        name: name.into(),
        steps: vec![shell_step("run", &[], script)],
        ..Default::default()
    }
}

/// Waits until the receiver has answered 2xx to `count` requests.
async fn delivered(
    receiver: &Receiver,
    count: usize,
) -> anyhow::Result<Vec<tidewright_tests::webhook_receiver::Received>> {
    eventually(ARRIVE, || async {
        let ok: Vec<_> = receiver
            .received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect();
        (ok.len() >= count).then_some(ok)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_after_a_500_ordered_per_task_and_logged()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[ALLOW])?;
    let _worker = server.worker("w", &["shell"], 2)?;
    server.wait_for_agents(&["w"]).await?;
    let client = client_of(&server).await?;
    // The first request is answered 500, every later one 204.
    let receiver = Receiver::start(&[500], 204).await?;
    let webhook = client
        .create_webhook(
            "",
            &receiver.url,
            &["task.succeeded", "task.failed", "step.failed"],
            SECRET,
        )
        .await?;
    assert!(webhook.enabled);

    let failing = client
        .submit(spec("fails", "echo no; exit 3"))
        .await?
        .task_id;
    client.wait(&failing).await?;
    let passing = client.submit(spec("passes", "true")).await?.task_id;
    client.wait(&passing).await?;

    let ok = delivered(&receiver, 3).await?;
    let all = receiver.received();
    // The 500 was tried again, under the same idempotency id.
    assert_eq!(all[0].status, 500);
    assert!(
        ok.iter().any(|r| r.id == all[0].id),
        "the first delivery came again: {all:?}"
    );
    let ids: std::collections::HashSet<&str> = ok.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "three deliveries, each once: {ok:?}");

    // Every delivery verifies with both Standard Webhooks libraries; a
    // tampered body, a wrong secret and an old timestamp (a replay, signed
    // as it was) fail with both.
    let ok_both = ("ok".to_string(), "ok".to_string());
    let bodies: Vec<(&Received, &str)> = all.iter().map(|r| (r, r.body.as_str())).collect();
    for (said, request) in verify_with_libraries(SECRET, &bodies).iter().zip(&all) {
        assert_eq!(said, &ok_both, "{request:?}");
    }
    let tampered: Vec<String> = all
        .iter()
        .map(|r| r.body.replace("\"task\"", "\"tusk\""))
        .collect();
    let tampered: Vec<(&Received, &str)> = all
        .iter()
        .zip(&tampered)
        .map(|(r, b)| (r, b.as_str()))
        .collect();
    let replayed: Vec<Received> = all.iter().map(|r| signed_long_ago(r, 600)).collect();
    let replayed: Vec<(&Received, &str)> = replayed.iter().map(|r| (r, r.body.as_str())).collect();
    for (secret, deliveries, case) in [
        (SECRET, &tampered, "a tampered body"),
        (OTHER_SECRET, &bodies, "a wrong secret"),
        (SECRET, &replayed, "a timestamp ten minutes old"),
    ] {
        for (said, (request, _)) in verify_with_libraries(secret, deliveries)
            .iter()
            .zip(deliveries)
        {
            assert!(
                said.0 != "ok" && said.1 != "ok",
                "{case} verified: {said:?} for {request:?}"
            );
        }
    }
    for request in &all {
        let body = request.json();
        assert_eq!(body["id"], request.id.as_str());
        assert_eq!(body["type"], request.event.as_str());
        assert_eq!(body["tenant"], "default");
    }
    // Per task, in the order the events happened: the step failed, then
    // the task.
    let failing_events: Vec<&str> = ok
        .iter()
        .filter(|r| r.json()["task"]["id"] == failing.as_str())
        .map(|r| r.event.as_str())
        .collect();
    assert_eq!(failing_events, ["step.failed", "task.failed"]);
    let step = ok
        .iter()
        .find(|r| r.event == "step.failed")
        .expect("step.failed");
    assert_eq!(step.json()["step"]["id"], "run");
    assert_eq!(step.json()["task"]["name"], "fails");
    let passed = ok
        .iter()
        .find(|r| r.event == "task.succeeded")
        .expect("task.succeeded");
    assert_eq!(passed.json()["task"]["id"], passing.as_str());

    // The log: each delivered, the first after two tries.
    let log = eventually(ARRIVE, || async {
        let page = client.webhook_deliveries(&webhook.id, 10, "").await.ok()?;
        page.deliveries
            .iter()
            .all(|d| d.state == "delivered")
            .then_some(page.deliveries)
    })
    .await?;
    assert_eq!(log.len(), 3);
    let first = log.iter().find(|d| d.id == all[0].id).expect("in the log");
    assert_eq!((first.attempts, first.last_status), (2, 204));
    assert!(first.finished_at.is_some());
    assert!(
        log.iter()
            .all(|d| d.webhook_id == webhook.id && d.tenant == "default")
    );
    let newest_first: Vec<&str> = log.iter().map(|d| d.id.as_str()).collect();
    let mut sorted = newest_first.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(newest_first, sorted);

    // The CLI shows the same, and never the secret.
    let out = succeed(server.cli().args(["webhook", "deliveries", "-o", "json"]));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(shown.as_array().map(Vec::len), Some(3));
    let listed = succeed(server.cli().args(["webhook", "list", "-o", "json"]));
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&webhook.id) && !text.contains(SECRET),
        "{text}"
    );
    let audit =
        String::from_utf8_lossy(&succeed(server.cli().args(["audit", "-o", "json"])).stdout)
            .into_owned();
    assert!(
        audit.contains("webhook.create") && !audit.contains(SECRET),
        "{audit}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_answers_410_disables_its_endpoint() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[ALLOW])?;
    let _worker = server.worker("w", &["shell"], 2)?;
    server.wait_for_agents(&["w"]).await?;
    let client = client_of(&server).await?;
    let gone = Receiver::start(&[], 410).await?;
    let witness = Receiver::start(&[], 204).await?;
    let doomed = client
        .create_webhook("", &gone.url, &["task.succeeded"], SECRET)
        .await?;
    client
        .create_webhook("", &witness.url, &["task.succeeded"], SECRET)
        .await?;

    let first = client.submit(spec("one", "true")).await?.task_id;
    client.wait(&first).await?;
    delivered(&witness, 1).await?;
    let disabled = eventually(ARRIVE, || async {
        let all = client.webhooks().await.ok()?;
        all.into_iter().find(|w| w.id == doomed.id && !w.enabled)
    })
    .await?;
    assert!(
        disabled.disabled_reason.contains("410"),
        "{}",
        disabled.disabled_reason
    );

    // Later events reach the witness, and no longer the disabled endpoint.
    let second = client.submit(spec("two", "true")).await?.task_id;
    client.wait(&second).await?;
    delivered(&witness, 2).await?;
    assert_eq!(gone.received().len(), 1, "one request, answered 410");
    let log = client
        .webhook_deliveries(&doomed.id, 10, "")
        .await?
        .deliveries;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].state.as_str(), log[0].last_status), ("failed", 410));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_control_plane_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start_on(dir.path(), "127.0.0.1:0", &[ALLOW])?;
    let _worker = server.worker("w", &["shell"], 2)?;
    server.wait_for_agents(&["w"]).await?;
    let client = client_of(&server).await?;
    // Down at first.
    let receiver = Receiver::start(&[], 503).await?;
    let webhook = client
        .create_webhook("", &receiver.url, &["task.succeeded"], SECRET)
        .await?;
    let task = client.submit(spec("survives", "true")).await?.task_id;
    client.wait(&task).await?;
    let refused = eventually(ARRIVE, || async { receiver.received().first().cloned() }).await?;
    assert_eq!(refused.status, 503);
    // The kill comes once the refusal is stored: the receiver answers before
    // the control plane writes down the attempt, and an attempt killed in
    // between is rightly tried again without being counted.
    eventually(ARRIVE, || async {
        let page = client.webhook_deliveries(&webhook.id, 10, "").await.ok()?;
        page.deliveries
            .into_iter()
            .find(|d| d.attempts == 1 && d.last_status == 503)
    })
    .await?;

    let listen = server.listen_addr();
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    receiver.answer(204);
    server = Server::start_on(dir.path(), &listen, &[ALLOW])?;

    let ok = delivered(&receiver, 1).await?;
    assert_eq!(
        ok[0].id, refused.id,
        "the same delivery, tried again after the restart"
    );
    assert_eq!(ok[0].body, refused.body, "with the same body");
    let client = client_of(&server).await?;
    let log = eventually(ARRIVE, || async {
        let page = client.webhook_deliveries(&webhook.id, 10, "").await.ok()?;
        page.deliveries.into_iter().find(|d| d.state == "delivered")
    })
    .await?;
    assert!(log.attempts >= 2, "{log:?}");
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.status == 204)
            .count(),
        1,
        "delivered once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_are_refused_naming_the_field_and_nothing_is_stored() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("tidewright_admin", "admin", "root"),
            token_line("tidewright_dev", "developer", "dana"),
        ],
        &[],
    )?;
    let admin =
        Client::connect(Settings::new(&server.url, Some("tidewright_admin".into()))).await?;
    let receiver = Receiver::start(&[], 204).await?;

    // Without --webhook-allow-private-networks, loopback is refused.
    let refused = admin
        .create_webhook("", &receiver.url, &["task.succeeded"], SECRET)
        .await
        .expect_err("loopback");
    assert_eq!(
        (refused.code(), refused.field()),
        (Some(Code::InvalidArgument), Some("url"))
    );
    assert!(
        refused
            .to_string()
            .contains("--webhook-allow-private-networks"),
        "{refused}"
    );
    let metadata = admin
        .create_webhook(
            "",
            "http://169.254.169.254/latest",
            &["task.succeeded"],
            SECRET,
        )
        .await
        .expect_err("link-local");
    assert_eq!(metadata.field(), Some("url"));

    let cases: [(&str, &[&str], &str, &str); 5] = [
        ("ftp://example.com/hook", &["task.succeeded"], SECRET, "url"),
        (
            "https://203.0.113.9/hook",
            &["task.exploded"],
            SECRET,
            "events[0]",
        ),
        ("https://203.0.113.9/hook", &[], SECRET, "events"),
        (
            "https://203.0.113.9/hook",
            &["task.failed"],
            "a-webhook-secret-of-some-length",
            "secret",
        ),
        (
            "https://203.0.113.9/hook",
            &["task.failed"],
            "whsec_c2hvcnQ=",
            "secret",
        ),
    ];
    let mut by_field = HashMap::new();
    for (url, events, secret, field) in cases {
        let e = admin
            .create_webhook("", url, events, secret)
            .await
            .expect_err(field);
        assert_eq!(
            (e.code(), e.field()),
            (Some(Code::InvalidArgument), Some(field)),
            "{e}"
        );
        by_field.insert(field, e.to_string());
    }
    let developer =
        Client::connect(Settings::new(&server.url, Some("tidewright_dev".into()))).await?;
    let denied = developer
        .create_webhook("", "https://203.0.113.9/hook", &["task.failed"], SECRET)
        .await
        .expect_err("admins only");
    assert_eq!(denied.code(), Some(Code::PermissionDenied));
    assert!(
        admin.webhooks().await?.is_empty(),
        "nothing was stored: {by_field:?}"
    );

    // The CLI says it in one line, naming the field.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET)?;
    let line = fails_in_one_line(
        server
            .cli()
            .args([
                "--token",
                "tidewright_admin",
                "webhook",
                "add",
                &receiver.url,
                "--events",
                "task.failed",
                "--secret-file",
            ])
            .arg(&secret),
    );
    assert!(line.starts_with("error: invalid argument: url: "), "{line}");
    let missing = fails_in_one_line(server.cli().args([
        "--token",
        "tidewright_admin",
        "webhook",
        "remove",
        "nope",
    ]));
    assert!(missing.contains("not found"), "{missing}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_awaiting_approval_is_announced_with_its_step() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[ALLOW])?;
    let _worker = server.worker("w", &["shell"], 2)?;
    server.wait_for_agents(&["w"]).await?;
    let client = client_of(&server).await?;
    let receiver = Receiver::start(&[], 204).await?;
    client
        .create_webhook("", &receiver.url, &["approval.requested"], SECRET)
        .await?;
    let spec = tidewright_client::parse_task(
        "name: gated\nsteps:\n  - id: ship\n    approval: {message: 'Ship it?', approvers: [admin]}\n    shell: {command: [true]}\n",
    )?;
    let id = client.submit(spec).await?.task_id;
    let announced = delivered(&receiver, 1).await?;
    let body = announced[0].json();
    assert_eq!(announced[0].event, "approval.requested");
    assert_eq!(body["task"]["id"], id.as_str());
    assert_eq!(body["step"]["id"], "ship");
    assert_eq!(body["step"]["state"], "awaiting_approval");
    client
        .decide_step(&id, "ship", tidewright_client::Decision::Approve, "go")
        .await?;
    assert_eq!(
        client.wait(&id).await?.state,
        v1::TaskState::Succeeded as i32
    );
    Ok(())
}

/// An endpoint receives the events after it was registered, never those
/// from before, even when another endpoint came and went in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_gets_only_the_events_after_it_was_registered() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[ALLOW])?;
    let _worker = server.worker("w", &["shell"], 2)?;
    server.wait_for_agents(&["w"]).await?;
    let client = client_of(&server).await?;
    let before = client.submit(spec("before", "true")).await?.task_id;
    client.wait(&before).await?;
    let first = Receiver::start(&[], 204).await?;
    let gone = client
        .create_webhook("", &first.url, &["task.succeeded"], SECRET)
        .await?;
    let seen = client.submit(spec("seen", "true")).await?.task_id;
    client.wait(&seen).await?;
    assert_eq!(
        delivered(&first, 1).await?[0].json()["task"]["id"],
        seen.as_str()
    );
    client.delete_webhook(&gone.id).await?;
    let between = client.submit(spec("between", "true")).await?.task_id;
    client.wait(&between).await?;

    let second = Receiver::start(&[], 204).await?;
    let kept = client
        .create_webhook("", &second.url, &["task.succeeded"], SECRET)
        .await?;
    let after = client.submit(spec("after", "true")).await?.task_id;
    client.wait(&after).await?;
    let got = delivered(&second, 1).await?;
    assert_eq!(got[0].json()["task"]["id"], after.as_str());
    // Deliveries are made in the order of the events, so any of an event
    // from before would be in the log by now.
    let log = client
        .webhook_deliveries(&kept.id, 10, "")
        .await?
        .deliveries;
    let tasks: Vec<&str> = log.iter().map(|d| d.task_id.as_str()).collect();
    assert_eq!(tasks, [after.as_str()], "nothing from before it");
    assert_eq!(first.received().len(), 1, "nothing after it was removed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_their_deliveries_are_managed_over_http_as_over_grpc() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let http = free_addr();
    let (_server, _worker) = start_with_roles(dir.path(), &http, &[ALLOW], 1).await?;
    let call = |method: &str, path: &str, token: &str, body: &str| {
        http_call(&http, method, path, Some(token), &[], body).expect("the HTTP port answers")
    };
    let receiver = Receiver::start(&[], 204).await?;
    let body = |url: &str, events: &str, secret: &str| {
        format!(r#"{{"url": "{url}", "events": {events}, "secret": "{secret}"}}"#)
    };
    let good = body(&receiver.url, r#"["task.succeeded"]"#, SECRET);

    // Refusals: the HTTP status and the field, and nothing stored.
    let developer = call("POST", "/api/v1/webhooks", "tidewright_dev", &good);
    assert_eq!(developer.status, 403, "{}", developer.body);
    for (body, field) in [
        (
            body("ftp://example.com/x", r#"["task.failed"]"#, SECRET),
            "url",
        ),
        (
            body(&receiver.url, r#"["task.exploded"]"#, SECRET),
            "events[0]",
        ),
        (body(&receiver.url, r#"["task.failed"]"#, ""), "secret"),
        (
            format!(r#"{{"url": "{}", "colour": "red"}}"#, receiver.url),
            "body",
        ),
    ] {
        let refused = call("POST", "/api/v1/webhooks", "tidewright_admin", &body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.body);
        assert_eq!(refused.json()["error"]["field"], field, "{}", refused.body);
    }
    let listed = call("GET", "/api/v1/webhooks", "tidewright_admin", "");
    assert_eq!(
        listed.json()["webhooks"],
        serde_json::json!([]),
        "nothing stored"
    );

    let created = call("POST", "/api/v1/webhooks", "tidewright_admin", &good);
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(
        !created.body.contains(SECRET),
        "the secret is never answered"
    );
    let id = created.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(created.json()["tenant"], "default");
    assert_eq!(created.json()["enabled"], true);
    let listed = call("GET", "/api/v1/webhooks", "tidewright_admin", "");
    assert_eq!(listed.json()["webhooks"][0]["id"], id.as_str());
    assert!(!listed.body.contains(SECRET));
    let viewer = call("GET", "/api/v1/webhooks", "tidewright_viewer", "");
    assert_eq!(viewer.status, 403, "{}", viewer.body);

    let submitted = call(
        "POST",
        "/api/v1/tasks",
        "tidewright_dev",
        "name: ok\nsteps:\n  - id: a\n    shell: {command: ['true']}\n",
    );
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let task = submitted.json()["taskId"].clone();
    let arrived = delivered(&receiver, 1).await?;
    assert_eq!(arrived[0].json()["task"]["id"], task);

    let path = format!("/api/v1/webhook-deliveries?webhook={id}&pageSize=10");
    let log = eventually(ARRIVE, || async {
        let page = call("GET", &path, "tidewright_admin", "").json();
        (page["deliveries"][0]["state"] == "delivered").then_some(page)
    })
    .await?;
    let delivery = &log["deliveries"][0];
    assert_eq!(delivery["id"], arrived[0].id.as_str());
    assert_eq!(delivery["taskId"], task);
    assert_eq!(delivery["event"], "task.succeeded");
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["lastStatus"], 204);
    assert!(delivery["finishedAt"].is_string(), "{log}");
    for (query, field) in [("colour=red", "colour"), ("pageSize=many", "pageSize")] {
        let refused = call(
            "GET",
            &format!("/api/v1/webhook-deliveries?{query}"),
            "tidewright_admin",
            "",
        );
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.json()["error"]["field"], field);
    }

    let removed = call(
        "DELETE",
        &format!("/api/v1/webhooks/{id}"),
        "tidewright_admin",
        "",
    );
    assert_eq!(removed.status, 204, "{}", removed.body);
    let again = call(
        "DELETE",
        &format!("/api/v1/webhooks/{id}"),
        "tidewright_admin",
        "",
    );
    assert_eq!(again.status, 404, "{}", again.body);
    let listed = call("GET", "/api/v1/webhooks", "tidewright_admin", "");
    assert_eq!(listed.json()["webhooks"], serde_json::json!([]));
    Ok(())
}

/// `tidewright webhook add --secret-file F` with no F yet writes a new Standard
/// Webhooks secret there, readable by its owner only, and the deliveries
/// verify with it in a receiver's libraries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_a_secret_a_receivers_library_verifies_with() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[ALLOW])?;
    let _worker = server.worker("w", &["shell"], 1)?;
    server.wait_for_agents(&["w"]).await?;
    let receiver = Receiver::start(&[], 204).await?;
    let secret_file = dir.path().join("bot.secret");
    let added = succeed(
        server
            .cli()
            .args([
                "webhook",
                "add",
                &receiver.url,
                "--events",
                "task.failed",
                "--secret-file",
            ])
            .arg(&secret_file),
    );
    assert!(
        String::from_utf8_lossy(&added.stderr).contains("wrote a new signing secret"),
        "{added:?}"
    );
    let secret = std::fs::read_to_string(&secret_file)?.trim().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let mode = std::fs::metadata(&secret_file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let client = client_of(&server).await?;
    let id = client.submit(spec("fails", "exit 1")).await?.task_id;
    client.wait(&id).await?;
    let got = delivered(&receiver, 1).await?;
    let said = verify_with_libraries(&secret, &[(&got[0], got[0].body.as_str())]);
    assert_eq!(said, [("ok".to_string(), "ok".to_string())]);
    Ok(())
}
