//! End to end: real `orca server` and `orca worker` processes on loopback.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use orca_api::v1;
use orca_tests::*;
use serde_json::{Value, json};
use tonic::Code;

const FINISH: Duration = Duration::from_secs(60);

fn step<'a>(task: &'a v1::Task, id: &str) -> &'a v1::Step {
    task.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

fn output(step: &v1::Step) -> Value {
    serde_json::from_str(&step.output_json)
        .unwrap_or_else(|e| panic!("step {} output {:?}: {e}", step.id, step.output_json))
}

/// Shell that waits until `gate` exists. It also gives up once the test's
/// directory is gone, so a step whose worker was killed (its process group
/// outlives the worker) cannot spin on after the test.
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
}

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
    let echo =
        r#"printf '{"me":"%s","saw":%s}' "$ORCA_STEP_ID" "$(cat "$ORCA_INPUTS")" > "$ORCA_OUTPUT""#;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_steps_start_in_priority_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("solo", &["shell"], 1)]).await?;
    let client = server.tasks().await?;

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
        ids.insert(submit(&client, request).await?, name);
    }
    std::fs::write(&gate, "")?;
    let mut started = Vec::new();
    for (id, name) in &ids {
        let task = wait_finished(&client, id, FINISH).await?;
        started.push((micros(&step(&task, "s").started_at), *name));
    }
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, n)| *n).collect();
    assert_eq!(order, ["p5-old", "p5-new", "p3", "p1", "p0", "neg"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_loses_nothing_and_the_task_completes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path())?;
    let _w = server.worker("survivor", &["shell"], 2)?;
    server.wait_for_agents(&["survivor"]).await?;
    let client = server.tasks().await?;

    let gate = dir.path().join("gate");
    let wait_gate = format!(
        "{}; echo '{{\"waited\":true}}' > \"$ORCA_OUTPUT\"",
        wait_for_gate(&gate)
    );
    let long = submit(
        &client,
        task(
            "spans-restart",
            vec![
                shell_step("first", &[], "echo '{\"n\":1}' > \"$ORCA_OUTPUT\""),
                shell_step("slow", &["first"], &wait_gate),
                shell_step("last", &["slow"], "cat \"$ORCA_INPUTS\" > \"$ORCA_OUTPUT\""),
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

/// Asserts a call fails with `code` and a message naming `field`.
fn refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    field: &str,
) {
    match result {
        Ok(ok) => panic!("expected {code:?} naming {field:?}, got {ok:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().contains(field),
                "{:?} does not name {field:?}",
                status.message()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_and_stores_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let mut client = server.tasks().await?;
    let kept = submit(&client, task("kept", vec![noop_step("a")])).await?;
    let before = all_task_ids(&client).await?;

    let with = |steps: Vec<v1::StepSpec>| task("bad", steps);
    let dep = |id: &str, deps: &[&str]| {
        let mut s = noop_step(id);
        s.depends_on = deps.iter().map(|d| d.to_string()).collect();
        s
    };
    let cases: Vec<(v1::SubmitTaskRequest, &str)> = vec![
        (
            with(vec![dep("a", &["c"]), dep("b", &["a"]), dep("c", &["b"])]),
            "cycle",
        ),
        (
            with(vec![dep("a", &["ghost"])]),
            "spec.steps[0].dependsOn[0]",
        ),
        (
            with(vec![noop_step("a"), noop_step("a")]),
            "spec.steps[1].id",
        ),
        (with(vec![]), "spec.steps"),
        (
            with(vec![v1::StepSpec {
                id: "a".into(),
                ..Default::default()
            }]),
            "spec.steps[0]",
        ),
        (
            with(vec![shell_step("a", &[], &"x".repeat(70_000))]),
            "spec.steps[0].shell.command",
        ),
        (with(vec![noop_step("Bad Id")]), "spec.steps[0].id"),
        (
            v1::SubmitTaskRequest {
                spec: Some(v1::TaskSpec {
                    name: "n".repeat(300),
                    steps: vec![noop_step("a")],
                    ..Default::default()
                }),
                idempotency_key: String::new(),
                tenant: String::new(),
            },
            "spec.name",
        ),
        (
            v1::SubmitTaskRequest {
                spec: None,
                idempotency_key: String::new(),
                tenant: String::new(),
            },
            "spec",
        ),
        (
            v1::SubmitTaskRequest {
                spec: with(vec![noop_step("a")]).spec,
                idempotency_key: "k".repeat(300),
                tenant: String::new(),
            },
            "idempotency_key",
        ),
        (
            v1::SubmitTaskRequest {
                spec: with(vec![noop_step("a")]).spec,
                idempotency_key: String::new(),
                tenant: "Not A Tenant".into(),
            },
            "tenant",
        ),
    ];
    for (request, field) in cases {
        refused(
            client.submit_task(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    // One bad task in a batch rejects the batch: nothing of it is stored.
    refused(
        client
            .submit_tasks(v1::SubmitTasksRequest {
                tasks: vec![
                    task("fine", vec![noop_step("a")]),
                    with(vec![dep("a", &["nope"])]),
                ],
            })
            .await,
        Code::InvalidArgument,
        "tasks[1].spec.steps[0].dependsOn[0]",
    );
    refused(
        client
            .submit_tasks(v1::SubmitTasksRequest { tasks: vec![] })
            .await,
        Code::InvalidArgument,
        "tasks",
    );

    refused(
        client
            .get_task(v1::GetTaskRequest {
                task_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    refused(
        client
            .get_task(v1::GetTaskRequest {
                task_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "task_id",
    );
    refused(
        client
            .cancel_task(v1::CancelTaskRequest {
                task_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "nope",
    );
    refused(
        client
            .watch_task(v1::WatchTaskRequest {
                task_id: "nope".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "nope",
    );
    refused(
        client
            .list_tasks(v1::ListTasksRequest {
                states: vec![v1::TaskState::Running as i32, 99],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "states[1]",
    );
    refused(
        client
            .list_tasks(v1::ListTasksRequest {
                page_token: "garbage".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );

    // A worker that registers badly is refused too.
    let mut agents = server.agents().await?;
    let register = v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Register(v1::Register {
            name: "w".into(),
            slots: 0,
            ..Default::default()
        })),
    };
    let status = match agents.connect(tokio_stream::iter(vec![register])).await {
        Ok(mut stream) => stream.get_mut().message().await.expect_err("refused"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("register.slots"),
        "{}",
        status.message()
    );

    // The CLI says the same in one line and exits non-zero.
    let bad_file = dir.path().join("bad.yaml");
    std::fs::write(
        &bad_file,
        "name: x\nsteps:\n  - id: a\n    dependsOn: [zz]\n    noop: {}\n",
    )?;
    let stderr = fails_in_one_line(server.cli().args(["submit", "-f"]).arg(&bad_file));
    assert!(
        stderr.contains("invalid argument: spec.steps[0].dependsOn[0]"),
        "{stderr}"
    );
    std::fs::write(&bad_file, "name: x\nsteps:\n  - id: a\n    shel: {}\n")?;
    let out = server
        .cli()
        .args(["submit", "-f"])
        .arg(&bad_file)
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shel"));

    let mut after = all_task_ids(&client).await?;
    let mut before = before;
    after.sort();
    before.sort();
    assert_eq!(after, before, "rejected requests stored nothing");
    let kept = client
        .get_task(v1::GetTaskRequest { task_id: kept })
        .await?
        .into_inner();
    assert_eq!(kept.spec.map(|s| s.name), Some("kept".into()));
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
    let passes = file("passes", "echo working; echo 42 > $ORCA_OUTPUT")?;
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

    // -o json and -o yaml: the created task, shaped as `orca get task`.
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

    // orca get speaks -o name too.
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

async fn collect(
    client: &mut Tasks,
    task_id: &str,
    after_seq: u64,
    follow: bool,
) -> anyhow::Result<Vec<v1::Event>> {
    let mut stream = client
        .watch_task(v1::WatchTaskRequest {
            task_id: task_id.into(),
            after_seq,
            follow,
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        events.push(event);
    }
    Ok(events)
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
    let live = collect(&mut client, &id, 0, true).await?;
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
        let rest = collect(&mut client, &id, cut, true).await?;
        assert_eq!(rest, live[cut as usize..].to_vec(), "resumed after {cut}");
    }
    // Without follow, the stored events and then the end.
    assert_eq!(
        collect(&mut client, &id, 3, false).await?,
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
    let asked = orca_api::convert::now_micros();
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

    // `orca watch` exits non-zero for a failed task.
    let out = server.cli().args(["watch", &id]).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
    Ok(())
}

/// Asks the server, through one version of the reflection protocol and with
/// no token, for its services and for the file that defines
/// `orca.v1.TaskService`; answers the service names and that file's
/// descriptor.
macro_rules! reflect_without_a_token {
    ($version:ident, $channel:expr) => {{
        use prost::Message as _;
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let ask = |request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(vec![
                ask(MessageRequest::ListServices(String::new())),
                ask(MessageRequest::FileContainingSymbol(
                    "orca.v1.TaskService".into(),
                )),
            ]))
            .await?
            .into_inner();
        let mut services = Vec::new();
        let mut files = Vec::new();
        while let Some(answer) = answers.message().await? {
            match answer.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    services.extend(list.service.into_iter().map(|s| s.name))
                }
                Some(MessageResponse::FileDescriptorResponse(found)) => {
                    for bytes in found.file_descriptor_proto {
                        files.push(prost_types::FileDescriptorProto::decode(bytes.as_slice())?);
                    }
                }
                other => panic!("unexpected reflection answer: {other:?}"),
            }
        }
        (services, files)
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_a_token() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let channel = connect(&server.url).await?;
    let health = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "orca.v1.TaskService".into(),
        })
        .await?
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    // grpcurl and grpcui speak v1; Python's grpcio-reflection, Postman and
    // older grpcurl only v1alpha. Neither needs a token.
    let v1 = reflect_without_a_token!(v1, channel.clone());
    let v1alpha = reflect_without_a_token!(v1alpha, channel);
    for (version, (services, files)) in [("v1", v1), ("v1alpha", v1alpha)] {
        for service in [
            "orca.v1.TaskService",
            "orca.v1.AgentService",
            "orca.v1.StateService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|n| n == service),
                "{version}: {service} missing from {services:?}"
            );
        }
        // The file that defines TaskService describes its methods.
        let task_service = files
            .iter()
            .filter(|f| f.package() == "orca.v1")
            .flat_map(|f| &f.service)
            .find(|s| s.name() == "TaskService")
            .unwrap_or_else(|| panic!("{version}: no TaskService in {files:?}"));
        let methods: Vec<&str> = task_service.method.iter().map(|m| m.name()).collect();
        for method in ["SubmitTask", "GetTask", "ListTasks", "WatchTask"] {
            assert!(
                methods.contains(&method),
                "{version}: {method} missing from {methods:?}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_up_works_with_zero_configuration_and_stops_cleanly_on_ctrl_c() -> anyhow::Result<()> {
    // A fresh directory, no flags but a free port: data and tokens go to
    // ./.orca, and the CLI run from here finds its token by itself.
    let dir = tempfile::tempdir()?;
    let data = dir.path().join(".orca");
    let mut up = Process::spawn(
        Command::new(orca_bin())
            .args(["up", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path()),
        dir.path(),
        "up",
    )?;
    let endpoint = data.join("endpoint");
    let url = eventually(Duration::from_secs(20), || {
        let endpoint = endpoint.clone();
        async move {
            std::fs::read_to_string(endpoint)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        }
    })
    .await?;
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "binds loopback: {url}"
    );
    let cli = |args: &[&str]| {
        Command::new(orca_bin())
            .args(["--server", &url])
            .args(args)
            .env_remove("ORCA_TOKEN")
            .current_dir(dir.path())
            .output()
    };
    let names = eventually(Duration::from_secs(20), || {
        let out = cli(&["get", "agents", "-o", "json"]);
        std::future::ready(out.ok().and_then(|out| {
            let agents: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
            let mut names: Vec<String> = agents
                .iter()
                .filter_map(|a| a["name"].as_str().map(String::from))
                .collect();
            names.sort();
            (names.len() == 2).then_some(names)
        }))
    })
    .await?;
    assert_eq!(names, ["local-1", "local-2"]);
    std::fs::write(
        dir.path().join("hi.yaml"),
        "name: hi\nsteps:\n  - id: hi\n    shell: {command: [echo, hi]}\n",
    )?;
    let out = cli(&["submit", "-f", "hi.yaml", "--watch"])?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("orca.db").exists());

    let token = std::fs::read_to_string(data.join("admin.token"))?;
    let mut agents = v1::agent_service_client::AgentServiceClient::with_interceptor(
        connect(&url).await?,
        bearer(token.trim()),
    );
    agents.list_agents(v1::ListAgentsRequest {}).await?;
    up.signal("INT");
    let status = up.wait_exit(Duration::from_secs(10))?;
    assert!(status.success(), "orca up exited with {status}");
    assert!(
        agents.list_agents(v1::ListAgentsRequest {}).await.is_err(),
        "nothing listens after Ctrl-C"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_up_offers_claude_code_with_a_key_and_the_cli_at_hand() -> anyhow::Result<()> {
    // The capabilities `orca up`'s local workers offer, given an API key and
    // a Claude Code CLI that is there or not.
    async fn offered(claude_bin: &Path) -> anyhow::Result<(Vec<String>, String)> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join(".orca");
        let mut up = Process::spawn(
            Command::new(orca_bin())
                .args(["up", "--listen", "127.0.0.1:0", "--workers", "1"])
                .env("ANTHROPIC_API_KEY", "sk-ant-test-key")
                .env("ORCA_CLAUDE_BIN", claude_bin)
                .current_dir(dir.path()),
            dir.path(),
            "up",
        )?;
        let endpoint = data.join("endpoint");
        let url = eventually(Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&endpoint).unwrap_or_default();
            std::future::ready(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
        })
        .await?;
        let token = std::fs::read_to_string(data.join("admin.token"))?;
        let agents = v1::agent_service_client::AgentServiceClient::with_interceptor(
            connect(&url).await?,
            bearer(token.trim()),
        );
        let capabilities = eventually(Duration::from_secs(20), || {
            let mut agents = agents.clone();
            async move {
                let listed = agents.list_agents(v1::ListAgentsRequest {}).await.ok()?;
                Some(listed.into_inner().agents.first()?.capabilities.clone())
            }
        })
        .await?;
        up.signal("INT");
        up.wait_exit(Duration::from_secs(10))?;
        Ok((capabilities, std::fs::read_to_string(&up.log)?))
    }

    let dir = tempfile::tempdir()?;
    let cli = dir.path().join("claude");
    std::fs::write(&cli, "#!/bin/sh\n")?;
    std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (capabilities, _) = offered(&cli).await?;
    assert_eq!(capabilities, ["claude-code", "shell"]);

    let (capabilities, log) = offered(&dir.path().join("no-such-claude")).await?;
    assert_eq!(capabilities, ["shell"], "no CLI, no claude-code");
    assert!(
        log.contains("the Claude Code CLI") && log.contains("is not found"),
        "{log}"
    );
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

    // Spacing: the policy's delay, plus at most a fifth of jitter and some
    // scheduling slack.
    for (n, base_ms) in [(1usize, 400i64), (2, 800)] {
        let gap =
            micros(&flaky.attempts[n].started_at) - micros(&flaky.attempts[n - 1].finished_at);
        assert!(
            gap >= base_ms * 1000,
            "retry {n} came after {gap}us, before its {base_ms}ms backoff"
        );
        assert!(
            gap <= base_ms * 1200 + 400_000,
            "retry {n} came after {gap}us, far past its {base_ms}ms backoff"
        );
    }

    // The event stream shows each failure and when the retry is due.
    let events = collect(&mut client, &id, 0, false).await?;
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

    // `orca get task` shows every attempt with its worker and reason.
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
    let mut slow = shell_step(
        "slow",
        &[],
        &format!(
            "sh -c 'sleep 300 & echo $! > {}; wait' ; sleep 300",
            pid_file.display()
        ),
    );
    slow.timeout_seconds = 1;
    let id = submit(&client, task("timeout", vec![slow])).await?;
    let done = wait_finished(&client, &id, FINISH).await?;
    assert_eq!(done.state, v1::TaskState::Failed as i32);
    assert_eq!(step(&done, "slow").error, "timed out after 1s");
    let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    eventually(Duration::from_secs(5), || {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        std::future::ready((!alive).then_some(()))
    })
    .await
    .map_err(|_| anyhow::anyhow!("grandchild {pid} survived the timeout"))?;
    Ok(())
}

/// Attempt 1 waits for `gate`; later attempts finish at once. Each writes
/// which attempt produced the output.
fn first_attempt_waits(gate: &Path) -> v1::StepSpec {
    shell_step(
        "work",
        &[],
        &format!(
            "if [ \"$ORCA_ATTEMPT\" = 1 ]; then {}; fi; echo \"{{\\\"attempt\\\": $ORCA_ATTEMPT}}\" > \"$ORCA_OUTPUT\"",
            wait_for_gate(gate)
        ),
    )
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_its_lease_and_its_late_result_is_rejected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = dir.path().join("gate");
    let server = Server::start_on(
        dir.path(),
        "127.0.0.1:0",
        &["--lease-ttl", "2s", "--heartbeat-interval", "250ms"],
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
    let server = Server::start(dir.path())?; // lease TTL 30s: a hand-back must not wait for it
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
async fn manual_retry_reruns_only_what_did_not_succeed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)]).await?;
    let mut client = server.tasks().await?;
    let fixed = dir.path().join("fixed");
    let echo = r#"printf '{"me":"%s","attempt":%s,"saw":%s}' "$ORCA_STEP_ID" "$ORCA_ATTEMPT" "$(cat "$ORCA_INPUTS")" > "$ORCA_OUTPUT""#;
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
    let events = collect(&mut client, &id, 0, true).await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_control_plane_with_2000_tasks_in_flight_loses_nothing() -> anyhow::Result<()>
{
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    const TASKS: usize = 2000;
    const BATCH: usize = 50;
    let dir = tempfile::tempdir()?;
    let flags = ["--lease-ttl", "3s", "--heartbeat-interval", "500ms"];
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

#[test]
fn a_heartbeat_slower_than_the_lease_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let stderr = fails_in_one_line(
        Command::new(orca_bin())
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--lease-ttl",
                "2s",
                "--heartbeat-interval",
                "5s",
                "--data-dir",
            ])
            .arg(dir.path()),
    );
    assert!(
        stderr.contains("--heartbeat-interval") && stderr.contains("--lease-ttl"),
        "{stderr}"
    );
    assert!(!dir.path().join("orca.db").exists(), "nothing was created");
    Ok(())
}

#[test]
fn a_leader_lease_too_short_and_a_server_list_without_urls_are_one_line_each() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let stderr = fails_in_one_line(
        Command::new(orca_bin())
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--leader-lease",
                "50ms",
                "--data-dir",
            ])
            .arg(dir.path()),
    );
    assert!(stderr.contains("--leader-lease"), "{stderr}");
    assert!(!dir.path().join("orca.db").exists(), "nothing was created");

    // A list of replicas takes the first entry's scheme; without one there
    // is none to take.
    let stderr = fails_in_one_line(
        Command::new(orca_bin())
            .args(["--server", "127.0.0.1:7070,127.0.0.1:7071", "get", "tasks"])
            .env("XDG_CONFIG_HOME", dir.path()),
    );
    assert!(
        stderr.contains("127.0.0.1:7070") && stderr.contains("http://"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_but_health_and_reflection_needs_a_valid_token() -> anyhow::Result<()> {
    use tonic_health::pb::health_client::HealthClient;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let admin = server.tasks().await?;
    let kept = submit(&admin, task("kept", vec![noop_step("a")])).await?;
    let before = all_task_ids(&admin).await?;

    for token in [None, Some("orca_not_a_real_token")] {
        let channel = connect(&server.url).await?;
        let bearer = orca_api::client::Bearer::new(token)?;
        let mut tasks = v1::task_service_client::TaskServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
        let mut agents =
            v1::agent_service_client::AgentServiceClient::with_interceptor(channel.clone(), bearer);
        refused(
            tasks
                .submit_task(task("sneaky", vec![noop_step("a")]))
                .await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            tasks
                .get_task(v1::GetTaskRequest {
                    task_id: kept.clone(),
                })
                .await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            tasks.list_tasks(v1::ListTasksRequest::default()).await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            tasks
                .cancel_task(v1::CancelTaskRequest {
                    task_id: kept.clone(),
                })
                .await,
            Code::Unauthenticated,
            "token",
        );
        refused(
            agents.list_agents(v1::ListAgentsRequest {}).await,
            Code::Unauthenticated,
            "token",
        );
        let register = v1::WorkerMessage {
            kind: Some(v1::worker_message::Kind::Register(v1::Register {
                name: "intruder".into(),
                slots: 1,
                ..Default::default()
            })),
        };
        let status = agents
            .connect(tokio_stream::iter(vec![register]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated);
        // Probes need no token.
        let health = HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await?
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    // The CLI without a token says so in one line.
    let out = Command::new(orca_bin())
        .args(["--server", &server.url, "get", "tasks"])
        .env_remove("ORCA_TOKEN")
        .current_dir(dir.path())
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unauthenticated: a bearer token is required")
    );

    assert_eq!(
        all_task_ids(&admin).await?,
        before,
        "nothing was stored or changed"
    );
    let agents = server
        .agents()
        .await?
        .list_agents(v1::ListAgentsRequest {})
        .await?
        .into_inner()
        .agents;
    assert!(agents.is_empty(), "no intruder registered");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_a_token_may_do() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("orca_admin", "admin", "root"),
            token_line("orca_dev", "developer", "dana"),
            token_line("orca_viewer", "viewer", "vic"),
            token_line("orca_worker", "worker", "pool-a"),
        ],
        &[],
    )?;
    let developer = server.tasks_as("orca_dev").await?;
    let id = submit(&developer, task("by-dev", vec![noop_step("a")])).await?;

    let mut viewer = server.tasks_as("orca_viewer").await?;
    refused(
        viewer.submit_task(task("no", vec![noop_step("a")])).await,
        Code::PermissionDenied,
        "vic (viewer) may not submit",
    );
    refused(
        viewer
            .cancel_task(v1::CancelTaskRequest {
                task_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "viewer",
    );
    refused(
        viewer
            .retry_task(v1::RetryTaskRequest {
                task_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "viewer",
    );
    let seen = viewer
        .get_task(v1::GetTaskRequest {
            task_id: id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(seen.id, id, "a viewer reads");

    let mut worker = server.tasks_as("orca_worker").await?;
    refused(
        worker
            .get_task(v1::GetTaskRequest {
                task_id: id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "pool-a (worker)",
    );
    refused(
        worker.submit_task(task("no", vec![noop_step("a")])).await,
        Code::PermissionDenied,
        "worker",
    );

    // Only worker (and admin) tokens may connect as a worker.
    let register = || v1::WorkerMessage {
        kind: Some(v1::worker_message::Kind::Register(v1::Register {
            name: "dev-box".into(),
            slots: 1,
            ..Default::default()
        })),
    };
    let mut as_dev = v1::agent_service_client::AgentServiceClient::with_interceptor(
        connect(&server.url).await?,
        bearer("orca_dev"),
    );
    let status = as_dev
        .connect(tokio_stream::iter(vec![register()]))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    let _w = start_worker(
        &server.url,
        dir.path(),
        "pool-a-1",
        &["shell"],
        1,
        &[],
        "orca_worker",
    )?;
    let admin = server.tasks_as("orca_admin").await?;
    let done = wait_finished(&admin, &id, FINISH).await?;
    assert_eq!(done.state, v1::TaskState::Succeeded as i32);
    assert_eq!(
        all_task_ids(&admin).await?,
        [id],
        "refused submits stored nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_bad_token_stops_with_one_clear_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let mut worker = start_worker(
        &server.url,
        dir.path(),
        "impostor",
        &["shell"],
        1,
        &[],
        "orca_wrong",
    )?;
    let status = worker.wait_exit(Duration::from_secs(20))?;
    assert!(!status.success());
    let log = std::fs::read_to_string(&worker.log)?;
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("the token is not valid"),
        "{log}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_tasks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = dir.path().join("gate");
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("orca_admin", "admin", "root"),
            token_line("orca_alice", "developer", "alice tenants=team-a"),
            token_line("orca_bob", "developer", "bob tenants=team-b"),
            token_line("orca_worker", "worker", "pool"),
        ],
        &[],
    )?;
    let _w = start_worker(
        &server.url,
        dir.path(),
        "w",
        &["shell"],
        2,
        &[],
        "orca_worker",
    )?;
    let bob = server.tasks_as("orca_bob").await?;
    let mut request = task("bobs", vec![first_attempt_waits(&gate)]);
    request.idempotency_key = "shared-key".into();
    let bobs = submit(&bob, request.clone()).await?;
    wait_step(&bob, &bobs, "work", v1::StepState::Running).await?;

    let mut alice = server.tasks_as("orca_alice").await?;
    refused(
        alice
            .get_task(v1::GetTaskRequest {
                task_id: bobs.clone(),
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    refused(
        alice
            .cancel_task(v1::CancelTaskRequest {
                task_id: bobs.clone(),
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    refused(
        alice
            .retry_task(v1::RetryTaskRequest {
                task_id: bobs.clone(),
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    refused(
        alice
            .watch_task(v1::WatchTaskRequest {
                task_id: bobs.clone(),
                after_seq: 0,
                follow: true,
            })
            .await,
        Code::NotFound,
        &bobs,
    );
    let mut into_b = task("sneak", vec![noop_step("a")]);
    into_b.tenant = "team-b".into();
    refused(
        alice.submit_task(into_b).await,
        Code::PermissionDenied,
        "alice may not submit to tenant \"team-b\"",
    );
    // The same idempotency key in Alice's tenant is Alice's own task.
    let alices = submit(&alice, request).await?;
    assert_ne!(alices, bobs);
    let listed: Vec<String> = alice
        .list_tasks(v1::ListTasksRequest::default())
        .await?
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        listed,
        std::slice::from_ref(&alices),
        "a listing shows only the caller's tenants"
    );

    // Bob's task went on untouched.
    let still = bob
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: bobs.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        (still.state, still.tenant.as_str()),
        (v1::TaskState::Running as i32, "team-b")
    );
    std::fs::write(&gate, "")?;
    assert_eq!(
        wait_finished(&bob, &bobs, FINISH).await?.state,
        v1::TaskState::Succeeded as i32
    );
    let admin = server.tasks_as("orca_admin").await?;
    assert_eq!(
        all_task_ids(&admin).await?.len(),
        2,
        "the admin sees every tenant"
    );
    assert_eq!(
        wait_finished(&alice, &alices, FINISH).await?.tenant,
        "team-a"
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
