//! Schedules on a real control plane and worker: a schedule's task is
//! submitted at each tick (here every second), each tick once, across a
//! kill -9 of the control plane; trigger runs it now; suspend stops it and
//! resume does not fire what it passed over; Forbid skips a tick while the
//! last run runs, Replace cancels it; and a schedule that will not do is
//! refused naming its field, with nothing stored.

use std::collections::HashSet;
use std::time::Duration;

use tidewright_client::{Client, Settings, v1};
use tidewright_tests::webhook_receiver::{Received, Receiver, verify_with_libraries};
use tidewright_tests::*;
use tonic::Code;

async fn client_of(server: &Server) -> anyhow::Result<Client> {
    Ok(Client::connect(Settings::new(&server.url, Some(server.admin_token.clone()))).await?)
}

fn every_second(name: &str, script: &str) -> v1::ScheduleSpec {
    v1::ScheduleSpec {
        name: name.into(),
        cron: "* * * * * *".into(),
        timezone: "Europe/Rome".into(),
        task: Some(v1::TaskSpec {
            name: format!("{name}-run"),
            steps: vec![shell_step("run", &[], script)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The schedule's runs that fired, oldest first: (tick in µs, task id).
fn fired(schedule: &v1::Schedule) -> Vec<(i64, String)> {
    schedule
        .history
        .iter()
        .filter(|run| !run.task_id.is_empty())
        .map(|run| {
            let tick = run
                .tick
                .as_ref()
                .map(tidewright_api::convert::micros)
                .unwrap_or_default();
            (tick, run.task_id.clone())
        })
        .collect()
}

/// The tasks a schedule submitted, by the label it gives them.
async fn tasks_of(client: &Client, name: &str) -> anyhow::Result<Vec<String>> {
    let filter = v1::ListTasksRequest {
        labels: [("tidewright.dev/schedule".to_string(), name.to_string())].into(),
        page_size: 1000,
        ..Default::default()
    };
    let page = client.list_page(&filter, "").await?;
    Ok(page.tasks.into_iter().map(|t| t.id).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_fires_once_across_a_kill_9_and_trigger_suspend_and_resume_do_as_said()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listen = free_addr();
    let mut server = Server::start_on(dir.path(), &listen, &[])?;
    let _worker = server.worker("w", &["shell"], 4)?;
    let client = client_of(&server).await?;
    let created = client
        .create_schedule("", every_second("heartbeat", "true"))
        .await?;
    assert!(created.next_tick.is_some(), "{created:?}");
    // Ticks fire, each a task of its own, and the tasks succeed.
    let schedule = eventually(Duration::from_secs(20), || async {
        let found = client.schedule("", "heartbeat").await.ok()?;
        (fired(&found).len() >= 3).then_some(found)
    })
    .await?;
    let runs = fired(&schedule);
    let ticks: Vec<i64> = runs.iter().map(|(t, _)| *t).collect();
    assert!(ticks.windows(2).all(|w| w[1] > w[0]), "{ticks:?}");
    assert!(
        ticks.iter().all(|t| t % 1_000_000 == 0),
        "ticks are whole seconds: {ticks:?}"
    );

    // kill -9 of the control plane, and a restart on the same store: the
    // ticks go on, and none fires twice (one task per tick, each tick's
    // task made once whatever the restart saw).
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    server = Server::start_on(dir.path(), &listen, &[])?;
    let client = client_of(&server).await?;
    let before = ticks.last().copied().unwrap_or_default();
    let schedule = eventually(Duration::from_secs(20), || async {
        let found = client.schedule("", "heartbeat").await.ok()?;
        let after = fired(&found).iter().filter(|(t, _)| *t > before).count();
        (after >= 2).then_some(found)
    })
    .await?;
    let runs = fired(&schedule);
    let ids: HashSet<&String> = runs.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), runs.len(), "a task per tick: {runs:?}");
    let ticks: Vec<i64> = runs.iter().map(|(t, _)| *t).collect();
    assert!(ticks.windows(2).all(|w| w[1] > w[0]), "{ticks:?}");
    let submitted = tasks_of(&client, "heartbeat").await?;
    for (_, id) in &runs {
        assert!(submitted.contains(id), "{id} carries the schedule's label");
    }

    // Trigger runs it now, as a run of its history.
    let triggered = client.trigger_schedule("", "heartbeat").await?;
    let found = client.schedule("", "heartbeat").await?;
    assert!(
        found.history.iter().any(|r| r.task_id == triggered),
        "{found:?}"
    );
    client.wait(&triggered).await?;

    // Suspended: no next tick. Resumed: runs go on from then, none for the
    // ticks it passed over.
    let suspended = client.suspend_schedule("", "heartbeat", true).await?;
    assert!(suspended.next_tick.is_none(), "{suspended:?}");
    assert!(suspended.spec.as_ref().is_some_and(|s| s.suspended));
    let last_before = fired(&suspended)
        .last()
        .map(|(t, _)| *t)
        .unwrap_or_default();
    // A tick passes while suspended (the clock, not a sleep: the next
    // whole second after the last tick).
    eventually(Duration::from_secs(5), || async {
        (tidewright_core::calendar::now_micros() > last_before + 2_000_000).then_some(())
    })
    .await?;
    let resumed_at = tidewright_core::calendar::now_micros();
    client.suspend_schedule("", "heartbeat", false).await?;
    let schedule = eventually(Duration::from_secs(20), || async {
        let found = client.schedule("", "heartbeat").await.ok()?;
        fired(&found)
            .iter()
            .any(|(t, _)| *t > resumed_at)
            .then_some(found)
    })
    .await?;
    for (tick, id) in fired(&schedule) {
        assert!(
            tick <= last_before || tick >= resumed_at - 1_000_000 || id == triggered,
            "tick {tick} fired while suspended ({last_before}..{resumed_at})"
        );
    }
    client.delete_schedule("", "heartbeat").await?;
    assert!(client.schedules().await?.is_empty());
    Ok(())
}

/// A Standard Webhooks secret: `whsec_` and the base64 of a 32-byte key.
const SECRET: &str = "whsec_C2FtcGxlLWtleS1vZi10aGlydHktdHdvLWJ5dGVzIQ==";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_a_tick_while_the_last_run_still_runs_and_webhooks_tell_of_each()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--webhook-allow-private-networks"],
    )?;
    let _worker = server.worker("w", &["shell"], 4)?;
    let client = client_of(&server).await?;
    let receiver = Receiver::start(&[], 204).await?;
    client
        .create_webhook(
            "",
            &receiver.url,
            &["schedule.fired", "schedule.skipped"],
            SECRET,
        )
        .await?;
    let gate = dir.path().join("gate");
    let mut spec = every_second("one-at-a-time", &wait_for_gate(&gate));
    spec.concurrency_policy = "Forbid".into();
    client.create_schedule("", spec).await?;
    let found = eventually(Duration::from_secs(20), || async {
        let found = client.schedule("", "one-at-a-time").await.ok()?;
        found
            .history
            .iter()
            .any(|r| r.skipped.starts_with("concurrencyPolicy Forbid: task "))
            .then_some(found)
    })
    .await?;
    assert_eq!(fired(&found).len(), 1, "one run at a time: {found:?}");
    std::fs::write(&gate, "")?;
    client.delete_schedule("", "one-at-a-time").await?;

    // The endpoint heard of the tick that fired, with its task, and of a
    // skipped one, with why; each once, and each verifies with the
    // Standard Webhooks libraries.
    let (_, task_id) = fired(&found).remove(0);
    let heard = eventually(Duration::from_secs(30), || async {
        let heard: Vec<Received> = receiver.received();
        let kinds: HashSet<String> = heard.iter().map(|r| r.event.clone()).collect();
        (kinds.contains("schedule.fired") && kinds.contains("schedule.skipped")).then_some(heard)
    })
    .await?;
    let fired_events: Vec<serde_json::Value> = heard
        .iter()
        .filter(|r| r.event == "schedule.fired")
        .map(Received::json)
        .collect();
    assert_eq!(fired_events.len(), 1, "{heard:?}");
    assert_eq!(fired_events[0]["task"]["id"], task_id.as_str());
    assert_eq!(fired_events[0]["schedule"]["name"], "one-at-a-time");
    assert_eq!(fired_events[0]["schedule"]["timezone"], "Europe/Rome");
    let skipped = heard
        .iter()
        .find(|r| r.event == "schedule.skipped")
        .map(Received::json)
        .unwrap_or_default();
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("concurrencyPolicy Forbid: task ")),
        "{skipped}"
    );
    let ids: HashSet<&str> = heard.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), heard.len(), "each delivered once: {heard:?}");
    let bodies: Vec<(&Received, &str)> = heard.iter().map(|r| (r, r.body.as_str())).collect();
    for (said, request) in verify_with_libraries(SECRET, &bodies).iter().zip(&heard) {
        assert_eq!(said, &("ok".to_string(), "ok".to_string()), "{request:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_cancels_the_last_run_and_fires() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[])?;
    let _worker = server.worker("w", &["shell"], 4)?;
    let client = client_of(&server).await?;
    let gate = dir.path().join("gate");
    let mut spec = every_second("latest-only", &wait_for_gate(&gate));
    spec.concurrency_policy = "Replace".into();
    client.create_schedule("", spec).await?;
    let runs = eventually(Duration::from_secs(20), || async {
        let found = client.schedule("", "latest-only").await.ok()?;
        let runs = fired(&found);
        (runs.len() >= 2).then_some(runs)
    })
    .await?;
    // The first run was cancelled when the second fired.
    let first = client.wait(&runs[0].1).await?;
    assert_eq!(first.state, v1::TaskState::Cancelled as i32, "{first:?}");
    assert!(
        first
            .message
            .contains("replaced by the schedule's next run"),
        "{}",
        first.message
    );
    client.delete_schedule("", "latest-only").await?;
    std::fs::write(&gate, "")?;
    Ok(())
}

#[tokio::test]
async fn a_schedule_that_will_not_do_is_refused_naming_its_field_and_nothing_is_stored()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &[])?;
    let client = client_of(&server).await?;
    client
        .create_schedule("", every_second("taken", "true"))
        .await?;
    let good = every_second("nightly", "true");
    let cases = [
        (
            v1::ScheduleSpec {
                cron: "0 3 * *".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "cron",
        ),
        (
            v1::ScheduleSpec {
                cron: "0 0 30 2 *".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "cron",
        ),
        (
            v1::ScheduleSpec {
                timezone: "Mars/Olympus".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "timezone",
        ),
        (
            v1::ScheduleSpec {
                task: Some(v1::TaskSpec::default()),
                ..good.clone()
            },
            Code::InvalidArgument,
            "task.steps",
        ),
        (
            v1::ScheduleSpec {
                task: None,
                template: Some(v1::ScheduleTemplate {
                    name: "no-such-template".into(),
                    ..Default::default()
                }),
                ..good.clone()
            },
            Code::InvalidArgument,
            "template.name",
        ),
        (
            v1::ScheduleSpec {
                concurrency_policy: "Sometimes".into(),
                ..good.clone()
            },
            Code::InvalidArgument,
            "spec.concurrencyPolicy",
        ),
        (every_second("taken", "true"), Code::AlreadyExists, ""),
    ];
    for (spec, code, field) in cases {
        let refused = client
            .create_schedule("", spec.clone())
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Some(code), "{spec:?}: {refused}");
        if !field.is_empty() {
            assert_eq!(refused.field(), Some(field), "{refused}");
        }
    }
    let kept: Vec<String> = client
        .schedules()
        .await?
        .iter()
        .filter_map(|s| s.spec.as_ref().map(|s| s.name.clone()))
        .collect();
    assert_eq!(kept, ["taken"], "nothing else was stored");
    // The CLI says it in one line, naming the field.
    let line = fails_in_one_line(server.cli().args([
        "schedule",
        "create",
        "bad",
        "--cron",
        "0 3 * * 1-5",
        "--timezone",
        "Europe/Nowhere",
        "--template",
        "x",
    ]));
    assert!(
        line.starts_with("error: invalid argument: timezone: "),
        "{line}"
    );
    Ok(())
}
