//! Retention end to end, on a real `tidewright server` and worker: a finished
//! task goes once its window has passed, and asking for it then says it
//! expired; a task that asks to be kept forever stays; bad windows stop
//! the start naming the flag.

use std::process::Command;
use std::time::{Duration, Instant};

use tidewright_api::v1;
use tidewright_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_goes_after_its_window_and_asking_for_it_says_it_expired()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start_on(dir.path(), "127.0.0.1:0", &["--retention", "1s"])?;
    let _worker = server.worker("w1", &["shell"], 2)?;
    server.wait_for_agents(&["w1"]).await?;
    let client = server.tasks().await?;
    let short = submit(&client, task("short", vec![noop_step("a")])).await?;
    let mut forever = task("forever", vec![noop_step("a")]);
    if let Some(spec) = forever.spec.as_mut() {
        spec.retention_seconds = Some(0);
    }
    let forever = submit(&client, forever).await?;
    let done = wait_finished(&client, &short, FINISH).await?;
    wait_finished(&client, &forever, FINISH).await?;
    let finished = done.finished_at.expect("finished");
    let expires = done.expires_at.expect("a finished task says when it goes");
    let window = (expires.seconds - finished.seconds) * 1_000_000_000
        + i64::from(expires.nanos - finished.nanos);
    assert_eq!(window, 1_000_000_000, "the default window");

    let get = |id: String| {
        let mut client = client.clone();
        async move { client.get_task(v1::GetTaskRequest { task_id: id }).await }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        match get(short.clone()).await {
            Err(status) => break status,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok(_) => panic!("task {short} still there 30 s after its window"),
        }
    };
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert!(
        refused.message().contains("expired at"),
        "{}",
        refused.message()
    );
    let said = fails_in_one_line(server.cli().args(["get", "task", &short]));
    assert!(said.contains("expired"), "{said}");
    let retried = client
        .clone()
        .retry_task(v1::RetryTaskRequest {
            task_id: short.clone(),
        })
        .await
        .expect_err("gone");
    assert_eq!(retried.code(), Code::NotFound);

    let kept = get(forever).await?.into_inner();
    assert_eq!(kept.expires_at, None, "kept forever");
    let listed = client
        .clone()
        .list_tasks(v1::ListTasksRequest::default())
        .await?
        .into_inner();
    let names: Vec<String> = listed
        .tasks
        .iter()
        .filter_map(|t| t.spec.as_ref().map(|s| s.name.clone()))
        .collect();
    assert_eq!(names, ["forever"]);
    Ok(())
}

#[test]
fn a_bad_window_stops_the_start_naming_its_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, named) in [
        (vec!["--retention", "3 weeks"], "--retention"),
        (vec!["--tenant-retention", "team-a"], "--tenant-retention"),
        (
            vec!["--tenant-retention", "Team_A=1d"],
            "--tenant-retention",
        ),
        (
            vec!["--tenant-retention", "a=1d", "--tenant-retention", "a=2d"],
            "--tenant-retention",
        ),
        (vec!["--audit-retention", "forever"], "--audit-retention"),
    ] {
        let out = Command::new(tidewright_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(&args)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
