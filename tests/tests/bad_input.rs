//! Bad input, end to end: every refusal names its field with the right
//! status and stores nothing; bad flags stop a process with one line.

use std::process::Command;

use tidewright_api::v1;
use tidewright_tests::*;
use tonic::Code;

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
            with(vec![{
                let mut step = codex_step("a", "p");
                if let Some(v1::step_spec::Runtime::Codex(codex)) = step.runtime.as_mut() {
                    codex.sandbox = "danger-full-access".into();
                }
                step
            }]),
            "spec.steps[0].codex.sandbox",
        ),
        (
            with(vec![codex_step("a", " ")]),
            "spec.steps[0].codex.prompt",
        ),
        (
            with(vec![gemini_step("a", "\0")]),
            "spec.steps[0].geminiCli.prompt",
        ),
        (
            v1::SubmitTaskRequest {
                spec: Some(v1::TaskSpec {
                    retention_seconds: Some(u64::MAX),
                    ..with(vec![noop_step("a")]).spec.unwrap_or_default()
                }),
                idempotency_key: String::new(),
                tenant: String::new(),
            },
            "spec.retentionSeconds",
        ),
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
    // A label key no label may have (an API fuzzer's, which the store's
    // JSON path once failed on with UNAVAILABLE).
    refused(
        client
            .list_tasks(v1::ListTasksRequest {
                labels: [("\u{e1}\u{8}\\\"".to_string(), "x".to_string())].into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "labels",
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

    // A registered worker's session items are refused, each naming its
    // field: an item of a kind the server does not know, a cost below 0,
    // and more items than one message may carry.
    let thought = v1::SessionItem {
        kind: "thought".into(),
        ..Default::default()
    };
    let text = v1::SessionItem {
        kind: "text".into(),
        text: "hi".into(),
        ..Default::default()
    };
    for (items, usd, field, says) in [
        (
            vec![thought],
            0.0,
            "session_items.items[0].kind",
            "\"thought\"",
        ),
        (vec![text.clone()], -1.0, "session_items.usd", "0 or more"),
        (vec![text; 257], 0.0, "session_items.items", "at most 256"),
    ] {
        let messages = vec![
            v1::WorkerMessage {
                kind: Some(v1::worker_message::Kind::Register(v1::Register {
                    name: "w".into(),
                    slots: 1,
                    ..Default::default()
                })),
            },
            v1::WorkerMessage {
                kind: Some(v1::worker_message::Kind::SessionItems(
                    v1::StepSessionItems {
                        attempt: Some(v1::AttemptRef {
                            task_id: kept.clone(),
                            step_id: "a".into(),
                            attempt: 1,
                        }),
                        items,
                        usd,
                    },
                )),
            },
        ];
        let mut stream = agents
            .connect(tokio_stream::iter(messages))
            .await?
            .into_inner();
        let status = loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{field}: the stream ended without a refusal"),
                Err(status) => break status,
            }
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(
            status.message().contains(field) && status.message().contains(says),
            "{field}: {}",
            status.message()
        );
    }

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

#[test]
fn a_heartbeat_slower_than_the_lease_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--worker-timeout",
                "2s",
                "--heartbeat-interval",
                "5s",
                "--data-dir",
            ])
            .arg(dir.path()),
    );
    assert!(
        stderr.contains("--heartbeat-interval") && stderr.contains("--worker-timeout"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("tidewright.db").exists(),
        "nothing was created"
    );
    Ok(())
}

/// A SQLite store URL's durability that is not one is refused naming it,
/// and nothing is made.
#[test]
fn a_store_urls_unknown_durability_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("elsewhere.db");
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--store"])
            .arg(format!("sqlite://{}?synchronous=sometimes", db.display()))
            .arg("--data-dir")
            .arg(dir.path()),
    );
    assert!(
        stderr.contains("--store") && stderr.contains("synchronous=\"sometimes\""),
        "{stderr}"
    );
    assert!(!db.exists(), "nothing was created");
    Ok(())
}

/// A store URL from a file: a missing file, a bad URL in it, and both
/// --store and --store-file are each refused naming the flag, and the URL
/// (it may hold a password) is never echoed.
#[test]
fn a_store_file_missing_bad_or_beside_store_is_refused_naming_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = || {
        let mut command = Command::new(tidewright_bin());
        command
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path());
        command
    };
    let missing = dir.path().join("no-such-file");
    let stderr = fails_in_one_line(server().arg("--store-file").arg(&missing));
    assert!(
        stderr.contains("--store-file") && stderr.contains("no-such-file"),
        "{stderr}"
    );

    let bad = dir.path().join("store-url");
    std::fs::write(&bad, "mysql://root:hunter2@db/tidewright\n")?;
    let stderr = fails_in_one_line(server().arg("--store-file").arg(&bad));
    assert!(stderr.contains("--store-file"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password was echoed: {stderr}"
    );

    let stderr = fails_in_one_line(
        server()
            .arg("--store-file")
            .arg(&bad)
            .args(["--store", "sqlite:///tmp/x.db"]),
    );
    assert!(
        stderr.contains("--store-file") && stderr.contains("--store"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("tidewright.db").exists(),
        "nothing was created"
    );
    Ok(())
}

#[test]
fn a_provider_limit_backoff_under_a_second_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--provider-limit-backoff",
                "200ms",
                "--data-dir",
            ])
            .arg(dir.path()),
    );
    assert!(
        stderr.contains("--provider-limit-backoff") && stderr.contains("at least 1s"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("tidewright.db").exists(),
        "nothing was created"
    );
    Ok(())
}

#[test]
fn a_worker_whose_subscription_token_file_is_missing_stops_naming_the_flag() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such-token");
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args([
                "--server",
                "http://127.0.0.1:9",
                "worker",
                "--claude-oauth-token-file",
            ])
            .arg(&missing)
            .arg("--work-dir")
            .arg(dir.path().join("work"))
            .env("TIDEWRIGHT_TOKEN", "tidewright_unused"),
    );
    assert!(
        stderr.contains("--claude-oauth-token-file") && stderr.contains("no-such-token"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_leader_lease_too_short_and_a_server_list_without_urls_are_one_line_each() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
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
    assert!(
        !dir.path().join("tidewright.db").exists(),
        "nothing was created"
    );

    // A list of replicas takes the first entry's scheme; without one there
    // is none to take.
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args(["--server", "127.0.0.1:7070,127.0.0.1:7071", "get", "tasks"])
            .env("XDG_CONFIG_HOME", dir.path()),
    );
    assert!(
        stderr.contains("127.0.0.1:7070") && stderr.contains("http://"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_grader_without_a_model_or_an_api_key_is_refused_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--grader-model",
                " ",
                "--data-dir",
            ])
            .arg(dir.path()),
    );
    assert!(
        stderr.contains("--grader-model") && stderr.contains("empty"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("tidewright.db").exists(),
        "nothing was created"
    );
    // A worker offering `grader` grades with its Anthropic API key; with
    // none, it does not start.
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args([
                "--server",
                "http://127.0.0.1:9",
                "worker",
                "--capability",
                "claude-code",
                "--capability",
                "grader",
                "--sandbox",
                "off",
                "--work-dir",
            ])
            .arg(dir.path().join("work"))
            .env("TIDEWRIGHT_TOKEN", "tidewright_unused")
            .env_remove("ANTHROPIC_API_KEY"),
    );
    assert!(
        stderr.contains("--capability grader") && stderr.contains("--anthropic-api-key-file"),
        "{stderr}"
    );
    Ok(())
}
