//! The control plane on PostgreSQL (`--store postgres://…`): the same
//! processes as on SQLite, a real server, the same promises.

use std::process::Command;
use std::time::Duration;

use tidewright_api::v1;
use tidewright_store_postgres::throwaway;
use tidewright_tests::*;

const FINISH: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_on_postgres_runs_a_dag_and_a_kill_9_loses_nothing() -> anyhow::Result<()> {
    let postgres = throwaway::Server::from_env()?;
    let store = postgres.fresh_database().await?;
    let dir = tempfile::tempdir()?;
    let flags = ["--store", store.as_str()];
    let mut server = Server::start_on(dir.path(), "127.0.0.1:0", &flags)?;
    let _worker = server.worker("pg-worker", &["shell"], 4)?;
    server.wait_for_agents(&["pg-worker"]).await?;
    let client = server.tasks().await?;
    let gate = dir.path().join("gate");
    let dag = submit(
        &client,
        task(
            "on-postgres",
            vec![
                shell_step("first", &[], "echo '{\"n\":1}' > \"$TIDEWRIGHT_OUTPUT\""),
                shell_step("slow", &["first"], &wait_for_gate(&gate)),
                shell_step(
                    "last",
                    &["slow"],
                    "cat \"$TIDEWRIGHT_INPUTS\" > \"$TIDEWRIGHT_OUTPUT\"",
                ),
            ],
        ),
    )
    .await?;
    wait_step(&client, &dag, "slow", v1::StepState::Running).await?;
    let mut queued = Vec::new();
    for i in 0..20 {
        queued.push(submit(&client, task(&format!("queued-{i}"), vec![noop_step("s")])).await?);
    }
    let mut before = all_task_ids(&client).await?;
    // Nothing of it is in the data directory: only tokens and keys.
    assert!(!dir.path().join("tidewright.db").exists());

    let listen = server.listen_addr();
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    server = Server::start_on(dir.path(), &listen, &flags)?;
    server.wait_leading().await?;
    let client = server.tasks().await?;
    let mut after = all_task_ids(&client).await?;
    before.sort();
    after.sort();
    assert_eq!(after, before, "every acknowledged task is still there");

    std::fs::write(&gate, "")?;
    let finished = wait_finished(&client, &dag, FINISH).await?;
    assert_eq!(
        finished.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        finished.message
    );
    let slow = finished
        .steps
        .iter()
        .find(|s| s.id == "slow")
        .expect("slow");
    assert_eq!(slow.attempt, 1, "the worker reclaimed its running attempt");
    for id in queued {
        let t = wait_finished(&client, &id, FINISH).await?;
        assert_eq!(t.state, v1::TaskState::Succeeded as i32);
    }
    // The CLI reads it back through the same server.
    let shown = succeed(server.cli().args(["get", "task", &dag, "-o", "json"]));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(shown["state"], "succeeded", "{shown}");
    Ok(())
}

#[test]
fn a_store_tidewright_cannot_use_is_one_readable_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port();
    let cases = [
        ("mysql://root:secret@db/tidewright", "--store"),
        (
            "postgres://tidewright@127.0.0.1:notaport/tidewright",
            "--store",
        ),
        (
            &*format!("postgres://tidewright:secret@127.0.0.1:{port}/tidewright"),
            "postgres",
        ),
    ];
    for (store, named) in cases {
        let out = Command::new(tidewright_bin())
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--store",
                store,
                "--data-dir",
            ])
            .arg(dir.path())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store}");
        let lines: Vec<&str> = stderr
            .trim()
            .lines()
            .filter(|l| !l.contains(" INFO ") && !l.contains(" WARN "))
            .collect();
        assert_eq!(lines.len(), 1, "{store}: {stderr}");
        assert!(stderr.contains(named), "{store}: {stderr}");
        assert!(
            !stderr.contains("secret"),
            "a password never shows: {stderr}"
        );
    }
    Ok(())
}
