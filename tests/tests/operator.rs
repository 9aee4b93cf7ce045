//! The operator's view of real tasks: what a `Task` resource's status would
//! say, computed from a task run by a real control plane and worker.

use std::time::Duration;

use orca_api::v1;
use orca_operator::crd::TaskPhase;
use orca_operator::status::task_status;
use orca_tests::*;

#[tokio::test]
async fn task_status_mirrors_a_running_and_a_finished_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 2)])
        .await
        .expect("server and worker");
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gate");
    let id = submit(
        &client,
        task(
            "mirrored",
            vec![
                shell_step("quick", &[], "true"),
                shell_step(
                    "held",
                    &["quick"],
                    &format!("echo '::progress 0.5 halfway'; {}", wait_for_gate(&gate)),
                ),
            ],
        ),
    )
    .await
    .expect("submit");

    let running = wait_task(&client, &id, Duration::from_secs(20), |task| {
        let held = task.steps.iter().find(|s| s.id == "held")?;
        (held.state == v1::StepState::Running as i32 && held.progress > 0.0).then_some(task)
    })
    .await
    .expect("held step reports progress");
    let status = task_status(&running, Some(1));
    assert_eq!(status.phase, Some(TaskPhase::Running));
    assert_eq!(status.task_id.as_deref(), Some(id.as_str()));
    assert_eq!(status.steps.as_deref(), Some("1/2"));
    assert_eq!(status.progress.as_deref(), Some("75%"));
    assert_eq!((status.steps_succeeded, status.steps_running), (1, 1));
    assert!(status.start_time.is_some() && status.completion_time.is_none());
    assert_eq!(status.conditions[0].status, "False");

    std::fs::write(&gate, "").expect("open the gate");
    let finished = wait_finished(&client, &id, Duration::from_secs(20))
        .await
        .expect("finishes");
    let status = task_status(&finished, Some(1));
    assert_eq!(status.phase, Some(TaskPhase::Succeeded));
    assert_eq!(status.steps.as_deref(), Some("2/2"));
    assert_eq!(status.progress.as_deref(), Some("100%"));
    assert_eq!(status.steps_succeeded, 2);
    assert!(status.completion_time >= status.start_time);
    assert_eq!(
        (
            status.conditions[0].status.as_str(),
            status.conditions[0].reason.as_str()
        ),
        ("True", "Succeeded")
    );
    // Reading the task again gives the same status: nothing to patch.
    let again = client
        .clone()
        .get_task(v1::GetTaskRequest { task_id: id })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(task_status(&again, Some(1)), status);
}
