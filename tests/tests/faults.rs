//! Faults, end to end: a control plane restarted or killed with -9, workers
//! killed, frozen or drained, steps retried on their backoff or timed out;
//! nothing is lost and no late result overwrites the outcome.

use std::time::Duration;

use serde_json::json;
use tidewright_api::v1;
use tidewright_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_loses_nothing_and_the_task_completes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path())?;
    let _w = server.worker("survivor", &["shell"], 2)?;
    server.wait_for_agents(&["survivor"]).await?;
    let client = server.tasks().await?;

    let gate = dir.path().join("gate");
    let wait_gate = format!(
        "{}; echo '{{\"waited\":true}}' > \"$TIDEWRIGHT_OUTPUT\"",
        wait_for_gate(&gate)
    );
    let long = submit(
        &client,
        task(
            "spans-restart",
            vec![
                shell_step("first", &[], "echo '{\"n\":1}' > \"$TIDEWRIGHT_OUTPUT\""),
                shell_step("slow", &["first"], &wait_gate),
                shell_step(
                    "last",
                    &["slow"],
                    "cat \"$TIDEWRIGHT_INPUTS\" > \"$TIDEWRIGHT_OUTPUT\"",
                ),
            ],
        ),
    )
    .await?;
    wait_step(&client, &long, "slow", v1::StepState::Running).await?;
    // More work, queued behind the busy slot or waiting to run.
    let mut queued = Vec::new();
    for i in 0..20 {
        queued.push(submit(&client, task(&format!("queued-{i}"), vec![noop_step("s")])).await?);
    }
    let before = all_task_ids(&client).await?;

    // kill -9: no graceful anything.
    let listen = server.listen_addr();
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    server = Server::start_on(dir.path(), &listen, &[])?;
    let client = server.tasks().await?;
    server.wait_for_agents(&["survivor"]).await?;

    let mut after = all_task_ids(&client).await?;
    let mut expected = before.clone();
    after.sort();
    expected.sort();
    assert_eq!(after, expected, "every submitted task is still there");

    std::fs::write(&gate, "")?;
    let task = wait_finished(&client, &long, FINISH).await?;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        task.message
    );
    // The worker reclaimed its running attempt instead of it running again.
    assert_eq!(step(&task, "slow").attempt, 1);
    assert_eq!(
        output(step(&task, "last")),
        json!({"slow": {"waited": true}})
    );
    for id in queued {
        let t = wait_finished(&client, &id, FINISH).await?;
        assert_eq!(t.state, v1::TaskState::Succeeded as i32);
    }
    Ok(())
}

fn with_retry(
    mut step: v1::StepSpec,
    max_attempts: u32,
    initial_delay_ms: u64,
    multiplier: f64,
) -> v1::StepSpec {
    step.retry = Some(v1::RetryPolicy {
        max_attempts,
        initial_delay_ms,
        max_delay_ms: 60_000,
        multiplier,
    });
    step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_spaced_by_the_backoff_policy_and_announced() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)]).await?;
    let mut client = server.tasks().await?;
    // Fails twice, then succeeds: a counter file outside the workspaces.
    let counter = dir.path().join("count");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; [ $n -ge 3 ] || {{ echo attempt $n fails >&2; exit 1; }}",
        c = counter.display()
    );
    let id = submit(
        &client,
        task(
            "flaky",
            vec![with_retry(shell_step("flaky", &[], &script), 3, 400, 2.0)],
        ),
    )
    .await?;
    let done = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(
        done.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        done.message
    );
    let flaky = step(&done, "flaky");
    assert_eq!(flaky.attempt, 3);
    let states: Vec<i32> = flaky.attempts.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [
            v1::StepState::Failed as i32,
            v1::StepState::Failed as i32,
            v1::StepState::Succeeded as i32
        ]
    );
    assert_eq!(flaky.attempts[0].exit_code, Some(1));

    // The event stream shows each failure and when the retry is due.
    let events = task_events(&mut client, &id, 0, false).await?;
    let step_events: Vec<(i32, u32, String)> = events
        .into_iter()
        .filter_map(|e| match e.kind {
            Some(v1::event::Kind::StepState(s)) => Some((s.state, s.attempt, s.message)),
            _ => None,
        })
        .collect();
    let failed = |attempt| {
        step_events.iter().any(|(s, a, m)| {
            *s == v1::StepState::Failed as i32 && *a == attempt && m == "exited with code 1"
        })
    };
    assert!(failed(1) && failed(2), "{step_events:?}");
    for (attempt, next) in [(1, "attempt 2 of 3 in 0."), (2, "attempt 3 of 3 in 0.")] {
        assert!(
            step_events
                .iter()
                .any(|(s, a, m)| *s == v1::StepState::Queued as i32
                    && *a == attempt
                    && m.starts_with(next)),
            "no retry announcement {next:?} in {step_events:?}"
        );
    }

    // Spacing: each retry is delayed by the policy's delay plus at most a
    // fifth of jitter, as the engine announced it, and starts no sooner.
    // How much later it starts is the machine's scheduling, not the
    // policy: a busy machine's, unbounded.
    for (n, base_ms) in [(1usize, 400f64), (2, 800.0)] {
        let announced = step_events
            .iter()
            .find_map(|(s, a, m)| {
                let rest = m.strip_prefix(&format!("attempt {} of 3 in ", n + 1))?;
                (*s == v1::StepState::Queued as i32 && *a == n as u32)
                    .then(|| rest.strip_suffix('s')?.parse::<f64>().ok())
                    .flatten()
            })
            .expect("announced");
        // Announced to the hundredth of a second.
        assert!(
            announced * 1000.0 >= base_ms - 5.0 && announced * 1000.0 <= base_ms * 1.2 + 5.0,
            "retry {n} announced in {announced}s; its backoff is {base_ms}ms plus a fifth at most"
        );
        let gap =
            micros(&flaky.attempts[n].started_at) - micros(&flaky.attempts[n - 1].finished_at);
        assert!(
            gap as f64 >= (announced - 0.005) * 1e6,
            "retry {n} came after {gap}us, before its announced {announced}s"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_attempts_fail_the_task_with_the_whole_history() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)]).await?;
    let client = server.tasks().await?;
    let id = submit(
        &client,
        task(
            "doomed",
            vec![
                with_retry(shell_step("doomed", &[], "echo no >&2; exit 4"), 2, 50, 1.0),
                shell_step("after", &["doomed"], "true"),
            ],
        ),
    )
    .await?;
    let done = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(done.state, v1::TaskState::Failed as i32);
    assert!(
        done.message
            .contains("\"doomed\" failed: exited with code 4"),
        "{}",
        done.message
    );
    let doomed = step(&done, "doomed");
    assert_eq!(doomed.attempts.len(), 2);
    for (n, attempt) in doomed.attempts.iter().enumerate() {
        assert_eq!(attempt.attempt, n as u32 + 1);
        assert_eq!(attempt.worker, "w");
        assert_eq!(attempt.state, v1::StepState::Failed as i32);
        assert_eq!(attempt.error, "exited with code 4");
        assert!(
            micros(&attempt.finished_at) >= micros(&attempt.started_at)
                && micros(&attempt.started_at) > 0
        );
    }
    assert_eq!(step(&done, "after").state, v1::StepState::Skipped as i32);

    // `tidewright get task` shows every attempt with its worker and reason.
    let out = server.cli().args(["get", "task", &id]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("doomed ") && l.contains("exited with code 4"))
        .collect();
    assert_eq!(rows.len(), 3, "the step row and two attempt rows:\n{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_step_leaves_no_process_behind() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)]).await?;
    let client = server.tasks().await?;
    let pid_file = dir.path().join("grandchild.pid");
    // The grandchild is found by its command line: the pid it writes is
    // the one its sandbox's process namespace gave it.
    let grandchild = ["sleep", "300.17"];
    let mut slow = shell_step(
        "slow",
        &[],
        &format!(
            "sh -c 'sleep 300.17 & echo $! > {}; wait' ; sleep 300",
            pid_file.display()
        ),
    );
    slow.timeout_seconds = 1;
    let id = submit(&client, task("timeout", vec![slow])).await?;
    let done = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(done.state, v1::TaskState::Failed as i32);
    assert_eq!(step(&done, "slow").error, "timed out after 1s");
    assert!(pid_file.exists(), "the grandchild started");
    eventually(Duration::from_secs(5), || {
        std::future::ready(processes(&grandchild).is_empty().then_some(()))
    })
    .await
    .map_err(|_| anyhow::anyhow!("the grandchild survived the timeout"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_step_loses_it_to_another_worker() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = dir.path().join("gate");
    let (server, workers) = Server::with_workers(dir.path(), &[("doomed", &["shell"], 1)]).await?;
    let client = server.tasks().await?;
    let id = submit(&client, task("survives", vec![first_attempt_waits(&gate)])).await?;
    wait_step(&client, &id, "work", v1::StepState::Running).await?;
    let _spare = server.worker("spare", &["shell"], 1)?;
    server.wait_for_agents(&["doomed", "spare"]).await?;

    workers[0].signal("KILL");
    let done = wait_finished(&client, &id, FINISH).await;
    // The killed worker's step process outlives it (it is in its own process
    // group); let it end.
    std::fs::write(&gate, "")?;
    let done = done?;
    assert_eq!(
        done.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        done.message
    );
    let work = step(&done, "work");
    assert_eq!((work.attempt, work.worker.as_str()), (2, "spare"));
    assert_eq!(output(work), json!({"attempt": 2}));
    // Exactly one result was accepted: the first attempt is recorded as lost.
    let states: Vec<i32> = work.attempts.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [
            v1::StepState::Queued as i32,
            v1::StepState::Succeeded as i32
        ]
    );
    assert!(
        work.attempts[0].error.contains("doomed disconnected"),
        "{}",
        work.attempts[0].error
    );
    // `get agents` shows it gone, and why, after those connected.
    let shown =
        String::from_utf8_lossy(&succeed(server.cli().args(["get", "agents"])).stdout).into_owned();
    // The table's rows: up to the blank line before the control plane's build.
    let rows: Vec<&str> = shown
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        matches!(rows.as_slice(), [spare, doomed]
            if spare.starts_with("spare ")
                && doomed.starts_with("doomed ")
                && doomed.contains(" gone ")
                && doomed.contains("ago: worker doomed disconnected")),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &succeed(server.cli().args(["get", "agents", "-o", "json"])).stdout,
    )?;
    assert_eq!(json[1]["name"], "doomed", "{json}");
    assert_eq!(
        json[1]["goneReason"], "worker doomed disconnected",
        "{json}"
    );
    assert!(json[1]["goneAt"].is_string(), "{json}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_its_lease_and_its_late_result_is_rejected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = dir.path().join("gate");
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--worker-timeout", "2s", "--heartbeat-interval", "250ms"],
    )?;
    let frozen = server.worker("frozen", &["shell"], 1)?;
    server.wait_for_agents(&["frozen"]).await?;
    let client = server.tasks().await?;
    let id = submit(&client, task("zombie", vec![first_attempt_waits(&gate)])).await?;
    wait_step(&client, &id, "work", v1::StepState::Running).await?;
    let _spare = server.worker("spare", &["shell"], 1)?;
    server.wait_for_agents(&["frozen", "spare"]).await?;

    frozen.signal("STOP");
    let done = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(
        done.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        done.message
    );
    let work = step(&done, "work");
    assert_eq!((work.attempt, work.worker.as_str()), (2, "spare"));
    assert!(
        work.attempts[0].error.contains("frozen was silent"),
        "{}",
        work.attempts[0].error
    );

    // The zombie wakes up and finishes attempt 1: its result is refused.
    std::fs::write(&gate, "")?;
    frozen.signal("CONT");
    let log = server.process.log.clone();
    eventually(FINISH, || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(log).ok()?;
            text.contains("rejected a result that is not for the current attempt")
                .then_some(())
        }
    })
    .await?;
    let after = client
        .clone()
        .get_task(v1::GetTaskRequest { task_id: id })
        .await?
        .into_inner();
    assert_eq!(after.state, v1::TaskState::Succeeded as i32);
    let work = step(&after, "work");
    assert_eq!(
        output(work),
        json!({"attempt": 2}),
        "the outcome is the new attempt's"
    );
    assert_eq!(work.attempts.len(), 2);
    assert_eq!(
        work.attempts[0].state,
        v1::StepState::Queued as i32,
        "the zombie's attempt stays lost"
    );
    Ok(())
}

async fn agent(server: &Server, name: &str) -> anyhow::Result<Option<v1::Agent>> {
    let agents = server
        .agents()
        .await?
        .list_agents(v1::ListAgentsRequest {})
        .await?
        .into_inner()
        .agents;
    Ok(agents.into_iter().find(|a| a.name == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_without_killing_its_step() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = dir.path().join("gate");
    let (server, mut workers) =
        Server::with_workers(dir.path(), &[("leaving", &["shell"], 2)]).await?;
    let client = server.tasks().await?;
    let long = submit(&client, task("long", vec![first_attempt_waits(&gate)])).await?;
    wait_step(&client, &long, "work", v1::StepState::Running).await?;

    workers[0].signal("TERM");
    eventually(FINISH, || async {
        agent(&server, "leaving")
            .await
            .ok()
            .flatten()
            .filter(|a| a.draining)
    })
    .await?;
    // It has a free slot, but takes no new work: the queued tasks wait for
    // another worker and run there as soon as it connects.
    let mut quick = Vec::new();
    for i in 0..3 {
        quick.push(submit(&client, task(&format!("quick-{i}"), vec![noop_step("s")])).await?);
    }
    let _staying = server.worker("staying", &["shell"], 2)?;
    for id in &quick {
        let done = wait_finished(&client, id, FINISH).await?;
        assert_eq!(step(&done, "s").worker, "staying");
    }
    let still = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: long.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        step(&still, "work").state,
        v1::StepState::Running as i32,
        "the draining worker's step keeps running"
    );

    std::fs::write(&gate, "")?;
    let done = wait_finished(&client, &long, FINISH).await?;
    let work = step(&done, "work");
    assert_eq!(
        (work.attempt, work.worker.as_str()),
        (1, "leaving"),
        "it finished where it started"
    );
    assert_eq!(output(work), json!({"attempt": 1}));
    let status = workers[0].wait_exit(Duration::from_secs(10))?;
    assert!(
        status.success(),
        "the drained worker exits cleanly: {status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_drain_grace_steps_are_handed_back_at_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = dir.path().join("gate");
    let server = Server::start(dir.path())?; // worker timeout 30s: a hand-back must not wait for it
    let mut quitter = server.worker_with("quitter", &["shell"], 1, &["--drain-grace", "1s"])?;
    server.wait_for_agents(&["quitter"]).await?;
    let client = server.tasks().await?;
    let id = submit(
        &client,
        task("handed-back", vec![first_attempt_waits(&gate)]),
    )
    .await?;
    wait_step(&client, &id, "work", v1::StepState::Running).await?;
    let _other = server.worker("other", &["shell"], 1)?;
    server.wait_for_agents(&["other", "quitter"]).await?;

    quitter.signal("TERM");
    let done = wait_finished(&client, &id, Duration::from_secs(15)).await?;
    let work = step(&done, "work");
    assert_eq!((work.attempt, work.worker.as_str()), (2, "other"));
    assert_eq!(work.attempts[0].state, v1::StepState::Queued as i32);
    assert!(
        work.attempts[0]
            .error
            .contains("handed back by worker quitter"),
        "{}",
        work.attempts[0].error
    );
    let requeued_after =
        micros(&work.attempts[1].started_at) - micros(&work.attempts[0].finished_at);
    assert!(
        requeued_after < 5_000_000,
        "re-queued {requeued_after}us after the hand-back"
    );
    let status = quitter.wait_exit(Duration::from_secs(10))?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_control_plane_with_2000_tasks_in_flight_loses_nothing() -> anyhow::Result<()>
{
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    const TASKS: usize = 2000;
    const BATCH: usize = 50;
    let dir = tempfile::tempdir()?;
    let flags = ["--worker-timeout", "3s", "--heartbeat-interval", "500ms"];
    let mut server = Server::start_on(dir.path(), "127.0.0.1:0", &flags)?;
    let _w1 = server.worker("w1", &["shell"], 8)?;
    let _w2 = server.worker("w2", &["shell"], 8)?;
    server.wait_for_agents(&["w1", "w2"]).await?;
    let listen = server.listen_addr();
    let url = server.url.clone();
    let token = server.admin_token.clone();

    // A client that submits through the crash: each task has an
    // idempotency key, so re-sending a batch whose answer was lost is safe.
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let submitter = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            for start in (0..TASKS).step_by(BATCH) {
                let batch: Vec<v1::SubmitTaskRequest> = (start..start + BATCH)
                    .map(|i| {
                        let mut request =
                            task(&format!("t{i}"), vec![shell_step("s", &[], "sleep 0.02")]);
                        request.idempotency_key = format!("key-{i}");
                        request
                    })
                    .collect();
                loop {
                    anyhow::ensure!(
                        tokio::time::Instant::now() < deadline,
                        "could not submit batch {start}"
                    );
                    let answer = match connect(&url).await {
                        Ok(channel) => {
                            v1::task_service_client::TaskServiceClient::with_interceptor(
                                channel,
                                bearer(&token),
                            )
                            .submit_tasks(v1::SubmitTasksRequest {
                                tasks: batch.clone(),
                            })
                            .await
                            .ok()
                        }
                        Err(_) => None,
                    };
                    if let Some(answer) = answer {
                        let mut acked = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                        for (n, t) in answer.into_inner().tasks.into_iter().enumerate() {
                            acked.insert(format!("key-{}", start + n), t.task_id);
                        }
                        break;
                    }
                    // The server is down: back off before trying again.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            anyhow::Ok(())
        })
    };

    eventually(FINISH, || {
        let acked = acked.clone();
        async move { (acked.lock().ok()?.len() >= 600).then_some(()) }
    })
    .await?;
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    server = Server::start_on(dir.path(), &listen, &flags)?;
    submitter.await??;

    let acked = acked
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert_eq!(acked.len(), TASKS);
    let client = server.tasks().await?;
    wait_all_finished(&client, Duration::from_secs(180)).await?;

    // Every acknowledged task is there exactly once (idempotency held
    // across the crash), finished, with exactly one accepted result.
    let stored: BTreeSet<String> = all_task_ids(&client).await?.into_iter().collect();
    let acked_ids: BTreeSet<String> = acked.values().cloned().collect();
    assert_eq!(acked_ids.len(), TASKS, "one task per idempotency key");
    assert_eq!(stored, acked_ids, "nothing lost, nothing extra");
    for id in &acked_ids {
        let t = client
            .clone()
            .get_task(v1::GetTaskRequest {
                task_id: id.clone(),
            })
            .await?
            .into_inner();
        assert_eq!(
            t.state,
            v1::TaskState::Succeeded as i32,
            "task {id}: {}",
            t.message
        );
        let s = step(&t, "s");
        let accepted: Vec<u32> = s
            .attempts
            .iter()
            .filter(|a| a.state == v1::StepState::Succeeded as i32)
            .map(|a| a.attempt)
            .collect();
        assert_eq!(
            accepted,
            [s.attempt],
            "task {id}: one accepted result, from the current attempt"
        );
    }
    Ok(())
}
