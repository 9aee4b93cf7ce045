//! A step that no connected worker can run never waits without a reason:
//! `submit` says it once, `get task` (and the console's JSON) while it
//! lasts, the step's first event too; and a worker that can run it takes it
//! as soon as it connects.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::*;

const SAID: &str =
    "no connected worker offers gpu: a worker started with --capability gpu offers it";

#[tokio::test]
async fn a_step_no_worker_can_run_says_why_and_runs_when_one_that_can_connects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let _shell = server.worker("shell-1", &["shell"], 1).expect("worker");
    server
        .wait_for_agents(&["shell-1"])
        .await
        .expect("worker up");
    let file = dir.path().join("train.yaml");
    std::fs::write(
        &file,
        "name: train\nsteps:\n  - id: train\n    needs: [gpu]\n    shell:\n      command: [sh, -c, 'echo trained']\n",
    )
    .expect("task file");
    let submitted = succeed(server.cli().args(["submit", "-o", "name", "-f"]).arg(&file));
    let id = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    let said = String::from_utf8_lossy(&submitted.stderr);
    assert_eq!(
        said.matches(&format!("step train waits: {SAID}")).count(),
        1,
        "{said}"
    );
    let shown = String::from_utf8_lossy(&succeed(server.cli().args(["get", "task", &id])).stdout)
        .into_owned();
    assert!(
        shown.contains(&format!("Queued:    step train waits: {SAID}")),
        "{shown}"
    );
    let json = String::from_utf8_lossy(
        &succeed(server.cli().args(["get", "task", &id, "-o", "json"])).stdout,
    )
    .into_owned();
    assert!(
        json.contains(&format!("\"queuedReason\": \"{SAID}\"")),
        "{json}"
    );
    let client = server.tasks().await.expect("client");
    let events = task_events(&mut client.clone(), &id, 0, false)
        .await
        .expect("events");
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            Some(v1::event::Kind::StepState(s)) if s.step_id == "train" && s.message == SAID)),
        "{events:?}"
    );

    // One that can run it connects: it runs, and nothing says it waits.
    let _gpu = server
        .worker("gpu-1", &["gpu", "shell"], 1)
        .expect("worker");
    let done = wait_succeeded(&client, &id, Duration::from_secs(30))
        .await
        .expect("runs once a worker offers gpu");
    assert_eq!(step(&done, "train").queued_reason, "");
}
