//! Tasks end to end, on real `tidewright server` and `tidewright worker` processes over
//! loopback: a DAG runs in order and passes data, capabilities and priorities
//! route steps, submits are idempotent and print what scripts ask for,
//! watches resume, cancel and retry do what they say, pools cap their agents.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tidewright_api::v1;
use tidewright_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_dag_runs_in_dependency_order_and_passes_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) =
        Server::with_workers(dir.path(), &[("w1", &["shell"], 4), ("w2", &["shell"], 4)]).await?;

    // The shipped example, through the CLI, exactly as the README shows it.
    let out = server
        .cli()
        .args(["submit", "--watch", "-f"])
        .arg(repo_root().join("examples/fan-out-fan-in.yaml"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#"result (join): {"shards": 3, "words": 14}"#),
        "{stdout}"
    );

    // Each step echoes what it received, so the test sees its inputs exactly.
    let echo = r#"printf '{"me":"%s","saw":%s}' "$TIDEWRIGHT_STEP_ID" "$(cat "$TIDEWRIGHT_INPUTS")" > "$TIDEWRIGHT_OUTPUT""#;
    let client = server.tasks().await?;
    let id = submit(
        &client,
        task(
            "echo-dag",
            vec![
                shell_step("root", &[], echo),
                shell_step("a", &["root"], echo),
                shell_step("b", &["root"], echo),
                shell_step("c", &["root"], echo),
                shell_step("join", &["a", "b", "c"], echo),
            ],
        ),
    )
    .await?;
    let task = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        task.message
    );

    for s in &task.steps {
        for dep in &task
            .spec
            .as_ref()
            .expect("spec")
            .steps
            .iter()
            .find(|x| x.id == s.id)
            .expect("spec step")
            .depends_on
        {
            let dep = step(&task, dep);
            assert!(
                micros(&s.started_at) >= micros(&dep.finished_at),
                "{} started before {} finished",
                s.id,
                dep.id
            );
        }
    }
    let root = output(step(&task, "root"));
    assert_eq!(root, json!({"me": "root", "saw": {}}));
    for mid in ["a", "b", "c"] {
        assert_eq!(
            output(step(&task, mid)),
            json!({"me": mid, "saw": {"root": root}})
        );
    }
    let join = output(step(&task, "join"));
    assert_eq!(join["saw"].as_object().map(|o| o.len()), Some(3));
    assert_eq!(join["saw"]["b"], output(step(&task, "b")));
    let workers: std::collections::HashSet<_> =
        task.steps.iter().map(|s| s.worker.clone()).collect();
    assert!(
        workers.iter().all(|w| w == "w1" || w == "w2"),
        "{workers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_needing_a_capability_waits_for_a_worker_that_has_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("cpu", &["shell"], 2)]).await?;
    let client = server.tasks().await?;

    let mut gpu_step = noop_step("train");
    gpu_step.needs = vec!["gpu".into()];
    let gpu_task = submit(&client, task("needs-gpu", vec![gpu_step])).await?;
    let plain = submit(&client, task("plain", vec![noop_step("x")])).await?;
    // The plain task, submitted later, finishes; the gpu one still waits.
    let done = wait_finished(&client, &plain, FINISH).await?;
    assert_eq!(done.state, v1::TaskState::Succeeded as i32);
    let waiting = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: gpu_task.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        waiting.state,
        v1::TaskState::Queued as i32,
        "a step with no capable worker waits, it does not fail"
    );
    assert_eq!(step(&waiting, "train").state, v1::StepState::Queued as i32);

    let _gpu = server.worker("gpu-box", &["shell", "gpu"], 1)?;
    let done = wait_finished(&client, &gpu_task, FINISH).await?;
    assert_eq!(done.state, v1::TaskState::Succeeded as i32);
    assert_eq!(step(&done, "train").worker, "gpu-box");
    Ok(())
}

/// The labels of `requests` (each a task of one step `s`) in the order
/// their steps started on a worker of one slot, held by a gated step while
/// all of them were submitted.
async fn start_order(
    requests: Vec<(v1::SubmitTaskRequest, &'static str)>,
    cli_first: &[&[&str]],
) -> anyhow::Result<Vec<&'static str>> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("solo", &["shell"], 1)]).await?;
    let client = server.tasks().await?;
    for args in cli_first {
        succeed(server.cli().args(*args));
    }

    // Hold the only slot until the gate file exists.
    let gate = dir.path().join("gate");
    let script = wait_for_gate(&gate);
    let blocker = submit(
        &client,
        task("blocker", vec![shell_step("hold", &[], &script)]),
    )
    .await?;
    wait_step(&client, &blocker, "hold", v1::StepState::Running).await?;

    let mut ids = HashMap::new();
    for (request, label) in requests {
        ids.insert(submit(&client, request).await?, label);
    }
    std::fs::write(&gate, "")?;
    let mut started = Vec::new();
    for (id, label) in &ids {
        let task = wait_finished(&client, id, FINISH).await?;
        started.push((micros(&step(&task, "s").started_at), *label));
    }
    started.sort();
    Ok(started.into_iter().map(|(_, label)| label).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_steps_start_in_priority_order() -> anyhow::Result<()> {
    let mut requests = Vec::new();
    for (name, priority) in [
        ("p1", 1),
        ("p5-old", 5),
        ("p3", 3),
        ("p5-new", 5),
        ("p0", 0),
        ("neg", -2),
    ] {
        let mut request = task(name, vec![noop_step("s")]);
        if let Some(spec) = request.spec.as_mut() {
            spec.priority = priority;
        }
        requests.push((request, name));
    }
    let order = start_order(requests, &[]).await?;
    assert_eq!(order, ["p5-old", "p5-new", "p3", "p1", "p0", "neg"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_backlog_does_not_starve_another_tenants_few_tasks() -> anyhow::Result<()> {
    // acme's backlog first, then zeta's few: the same priority.
    let mut requests = Vec::new();
    for (tenant, n) in [("acme", 12), ("zeta", 3)] {
        for i in 0..n {
            let mut request = task(&format!("{tenant}-{i}"), vec![noop_step("s")]);
            request.tenant = tenant.to_string();
            requests.push((request, tenant));
        }
    }
    let order = start_order(requests, &[]).await?;
    assert_eq!(
        order[..6],
        ["acme", "zeta", "acme", "zeta", "acme", "zeta"],
        "in turn: {order:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_of_weight_3_takes_three_turns_to_anothers_one() -> anyhow::Result<()> {
    let mut requests = Vec::new();
    for i in 0..10 {
        for tenant in ["acme", "zeta"] {
            let mut request = task(&format!("{tenant}-{i}"), vec![noop_step("s")]);
            request.tenant = tenant.to_string();
            requests.push((request, tenant));
        }
    }
    let order = start_order(requests, &[&["tenant", "set", "acme", "--weight", "3"]]).await?;
    let acme = order[..8].iter().filter(|t| **t == "acme").count();
    assert_eq!(acme, 6, "three to one: {order:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_submit_returns_the_same_task() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let mut client = server.tasks().await?;
    let mut request = task("once", vec![noop_step("a")]);
    request.idempotency_key = "deploy-42".into();
    let first = client.submit_task(request.clone()).await?.into_inner();
    let again = client.submit_task(request).await?.into_inner();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(first.task_id, again.task_id);
    assert_eq!(all_task_ids(&client).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_prints_what_a_script_asks_for() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w1", &["shell"], 2)]).await?;
    let file = |name: &str, command: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: {name}\nsteps:\n  - id: only\n    shell: {{command: [sh, -c, '{command}']}}\n"
            ),
        )?;
        Ok(path)
    };
    let passes = file("passes", "echo working; echo 42 > $TIDEWRIGHT_OUTPUT")?;
    let fails = file("fails", "echo giving up; exit 3")?;
    let stdout = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let client = server.tasks().await?;
    let get = |id: String| {
        let mut client = client.clone();
        async move {
            client
                .get_task(v1::GetTaskRequest { task_id: id })
                .await
                .map(|t| t.into_inner())
        }
    };

    // -o name: the id alone, a line of its own, as `kubectl -o name`.
    let out = succeed(
        server
            .cli()
            .args(["submit", "-o", "name", "-f"])
            .arg(&passes),
    );
    let named = stdout(&out);
    let id = named.trim_end_matches('\n');
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{named:?}"
    );
    assert_eq!(named, format!("{id}\n"));
    assert_eq!(get(id.to_string()).await?.id, id);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("task {id} submitted")));

    // -o json and -o yaml: the created task, shaped as `tidewright get task`.
    let out = succeed(
        server
            .cli()
            .args(["submit", "-o", "json", "-f"])
            .arg(&passes),
    );
    let created: Value = serde_json::from_str(&stdout(&out))?;
    let json_id = created["id"].as_str().expect("an id").to_string();
    assert_eq!(created["name"], "passes");
    assert_eq!(created["steps"][0]["id"], "only");
    let shown = succeed(server.cli().args(["get", "task", &json_id, "-o", "json"]));
    let shown: Value = serde_json::from_str(&stdout(&shown))?;
    for key in ["id", "tenant", "name", "priority", "createdAt"] {
        assert!(!created[key].is_null(), "{key} missing from {created}");
        assert_eq!(created[key], shown[key], "{key}");
    }
    let out = succeed(
        server
            .cli()
            .args(["submit", "-o", "yaml", "-f"])
            .arg(&passes),
    );
    let created: Value = serde_yaml::from_str(&stdout(&out))?;
    assert_eq!(created["name"], "passes");
    get(created["id"].as_str().expect("an id").to_string()).await?;

    // --watch -o json: the live view on stderr, the ended task on stdout,
    // and the exit status as without -o.
    let out = succeed(
        server
            .cli()
            .args(["submit", "--watch", "-o", "json", "-f"])
            .arg(&passes),
    );
    let ended: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(ended["state"], "succeeded");
    assert_eq!(ended["steps"][0]["output"], json!(42));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only | working"));
    let out = server
        .cli()
        .args(["submit", "--watch", "-o", "json", "-f"])
        .arg(&fails)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let ended: Value = serde_json::from_str(&stdout(&out))?;
    assert_eq!(ended["state"], "failed");
    // --watch -o name: the id, then the exit status of the task.
    let out = server
        .cli()
        .args(["submit", "--watch", "-o", "name", "-f"])
        .arg(&fails)
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let id = stdout(&out).trim().to_string();
    assert_eq!(
        get(id).await?.state,
        v1::TaskState::Failed as i32,
        "the id printed is the failed task's"
    );

    // tidewright get speaks -o name too.
    let listed = stdout(&succeed(server.cli().args(["get", "tasks", "-o", "name"])));
    assert_eq!(listed.lines().count(), 6, "{listed}");
    assert_eq!(
        listed.lines().map(str::to_string).collect::<Vec<_>>(),
        all_task_ids(&client).await?
    );

    // A format that does not exist: usage error naming the flag, nothing
    // submitted.
    let out = server
        .cli()
        .args(["submit", "-o", "xml", "-f"])
        .arg(&passes)
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("'xml'") && error.contains("--output"),
        "{error}"
    );
    assert_eq!(all_task_ids(&client).await?.len(), 6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_a_sequence_number_with_nothing_missed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)]).await?;
    let mut client = server.tasks().await?;
    let id = submit(
        &client,
        task(
            "chatty",
            vec![
                shell_step("a", &[], "for i in 1 2 3 4 5; do echo line $i; done"),
                shell_step("b", &["a"], "echo '::progress 0.5 half'; echo done"),
            ],
        ),
    )
    .await?;
    // Following live from the start sees the whole story, ending with the
    // task's final event.
    let live = task_events(&mut client, &id, 0, true).await?;
    let seqs: Vec<u64> = live.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=live.len() as u64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    assert!(matches!(
        live.last().and_then(|e| e.kind.clone()),
        Some(v1::event::Kind::TaskState(t)) if t.state == v1::TaskState::Succeeded as i32
    ));
    let logs = live
        .iter()
        .filter(|e| matches!(e.kind, Some(v1::event::Kind::Log(_))))
        .count();
    assert_eq!(logs, 6);
    assert!(
        live.iter()
            .any(|e| matches!(&e.kind, Some(v1::event::Kind::Progress(p)) if p.fraction == 0.5))
    );

    // Resuming after any point yields exactly the rest.
    for cut in [0, 1, 5, live.len() as u64 - 1, live.len() as u64] {
        let rest = task_events(&mut client, &id, cut, true).await?;
        assert_eq!(rest, live[cut as usize..].to_vec(), "resumed after {cut}");
    }
    // Without follow, the stored events and then the end.
    assert_eq!(
        task_events(&mut client, &id, 3, false).await?,
        live[3..].to_vec()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_step_and_failure_skips_the_rest() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)]).await?;
    let mut client = server.tasks().await?;

    let id = submit(
        &client,
        task(
            "long",
            vec![
                shell_step("sleepy", &[], "sleep 300"),
                shell_step("after", &["sleepy"], "true"),
            ],
        ),
    )
    .await?;
    wait_step(&client, &id, "sleepy", v1::StepState::Running).await?;
    let asked = tidewright_api::convert::now_micros();
    client
        .cancel_task(v1::CancelTaskRequest {
            task_id: id.clone(),
        })
        .await?;
    let cancelled = wait_finished(&client, &id, Duration::from_secs(10)).await?;
    // The worker killed the step and its report was in within a second.
    let stopped = micros(&step(&cancelled, "sleepy").attempts[0].finished_at);
    assert!(
        stopped - asked < 1_000_000,
        "cancel took {}us to reach the running step",
        stopped - asked
    );
    assert_eq!(cancelled.state, v1::TaskState::Cancelled as i32);
    assert_eq!(
        step(&cancelled, "sleepy").state,
        v1::StepState::Cancelled as i32
    );
    assert_eq!(
        step(&cancelled, "after").state,
        v1::StepState::Cancelled as i32
    );
    // Cancelling again is fine and changes nothing.
    let again = client
        .cancel_task(v1::CancelTaskRequest {
            task_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(again.state, v1::TaskState::Cancelled as i32);

    let id = submit(
        &client,
        task(
            "fails",
            vec![
                shell_step("bad", &[], "echo nope >&2; exit 7"),
                shell_step("never", &["bad"], "true"),
            ],
        ),
    )
    .await?;
    let failed = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(failed.state, v1::TaskState::Failed as i32);
    assert!(
        failed
            .message
            .contains("\"bad\" failed: exited with code 7"),
        "{}",
        failed.message
    );
    assert_eq!(step(&failed, "bad").exit_code, Some(7));
    assert_eq!(step(&failed, "never").state, v1::StepState::Skipped as i32);

    // `tidewright watch` exits non-zero for a failed task.
    let out = server.cli().args(["watch", &id]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_retry_reruns_only_what_did_not_succeed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)]).await?;
    let mut client = server.tasks().await?;
    let fixed = dir.path().join("fixed");
    let echo = r#"printf '{"me":"%s","attempt":%s,"saw":%s}' "$TIDEWRIGHT_STEP_ID" "$TIDEWRIGHT_ATTEMPT" "$(cat "$TIDEWRIGHT_INPUTS")" > "$TIDEWRIGHT_OUTPUT""#;
    let id = submit(
        &client,
        task(
            "fix-and-retry",
            vec![
                shell_step("first", &[], echo),
                shell_step(
                    "broken",
                    &["first"],
                    &format!("[ -e {} ] || exit 9; {echo}", fixed.display()),
                ),
                shell_step("last", &["broken"], echo),
            ],
        ),
    )
    .await?;
    let failed = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(failed.state, v1::TaskState::Failed as i32);
    assert_eq!(step(&failed, "last").state, v1::StepState::Skipped as i32);
    let first_output = output(step(&failed, "first"));

    // Refused while it cannot be retried.
    refused(
        client
            .retry_task(v1::RetryTaskRequest {
                task_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );

    std::fs::write(&fixed, "")?;
    let out = server.cli().args(["retry", &id, "--watch"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 step(s) run again"), "{stdout}");

    let done = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(
        done.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        done.message
    );
    assert_eq!(
        step(&done, "first").attempt,
        1,
        "the succeeded step did not run again"
    );
    assert_eq!(
        output(step(&done, "first")),
        first_output,
        "and kept its output"
    );
    assert_eq!(step(&done, "broken").attempt, 2);
    assert_eq!(step(&done, "broken").attempts.len(), 2);
    let last = output(step(&done, "last"));
    assert_eq!(last["saw"]["broken"]["saw"]["first"], first_output);
    assert!(done.finished_at.is_some() && done.message.is_empty());

    refused(
        client
            .retry_task(v1::RetryTaskRequest {
                task_id: id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "succeeded",
    );
    let gate = dir.path().join("gate");
    let running = submit(&client, task("busy", vec![first_attempt_waits(&gate)])).await?;
    wait_step(&client, &running, "work", v1::StepState::Running).await?;
    refused(
        client
            .retry_task(v1::RetryTaskRequest { task_id: running })
            .await,
        Code::FailedPrecondition,
        "running",
    );
    std::fs::write(&gate, "")?;
    // A watcher from the start sees the whole story, both runs, to the end.
    let events = task_events(&mut client, &id, 0, true).await?;
    let finals: Vec<i32> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::TaskState(t)) if t.state >= v1::TaskState::Succeeded as i32 => {
                Some(t.state)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        finals,
        [
            v1::TaskState::Failed as i32,
            v1::TaskState::Succeeded as i32
        ]
    );
    Ok(())
}

/// `maxConcurrentAgents`: two real workers of one pool, each with room for
/// two steps, run one agent step at a time between them; a step that is
/// not an agent's runs beside it.
#[tokio::test]
async fn a_pool_runs_no_more_agent_steps_at_once_than_its_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let flags = ["--pool", "coders", "--max-concurrent-agents", "1"];
    let _workers: Vec<Process> = ["w1", "w2"]
        .iter()
        .map(|name| {
            server
                .worker_with(name, &["shell", "claude-code"], 2, &flags)
                .expect("worker")
        })
        .collect();
    server
        .wait_for_agents(&["w1", "w2"])
        .await
        .expect("workers");
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gate");
    // Shell steps standing in for agents: they need what an agent needs.
    let agent = |id: &str| {
        let mut step = shell_step(id, &[], &wait_for_gate(&gate));
        step.needs = vec!["claude-code".into()];
        step
    };
    let agents = submit(
        &client,
        task("agents", vec![agent("a1"), agent("a2"), agent("a3")]),
    )
    .await
    .expect("submit");
    let plain = submit(&client, task("plain", vec![shell_step("s", &[], "true")]))
        .await
        .expect("submit");
    wait_succeeded(&client, &plain, Duration::from_secs(20))
        .await
        .expect("the plain step runs while agents are capped");
    let running = |task: &v1::Task| {
        task.steps
            .iter()
            .filter(|s| s.state == v1::StepState::Running as i32)
            .count()
    };
    let first = wait_task(&client, &agents, Duration::from_secs(20), |t| {
        (running(&t) == 1).then_some(t)
    })
    .await
    .expect("one agent runs");
    assert_eq!(
        first
            .steps
            .iter()
            .filter(|s| s.state == v1::StepState::Queued as i32)
            .count(),
        2,
        "the others wait for the cap, with three free slots"
    );
    std::fs::write(&gate, "").expect("open the gate");
    let done = wait_succeeded(&client, &agents, Duration::from_secs(30))
        .await
        .expect("all run, one at a time");
    // One at a time: each started after the one before it finished.
    let mut spans: Vec<(i64, i64)> = done
        .steps
        .iter()
        .map(|s| (micros(&s.started_at), micros(&s.finished_at)))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlapping agents: {spans:?}");
    }
}
