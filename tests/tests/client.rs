//! The Rust client library (`tidewright-client`) against a real `tidewright server`
//! and `tidewright worker` on loopback: waits, watches across a kill -9 of the
//! control plane, paging, retries of UNAVAILABLE, typed errors and state.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use tidewright_client::{Client, Error, Settings, StateKey, Submit, WatchOptions, v1};
use tidewright_tests::*;
use tonic::Code;

const FINISH: Duration = Duration::from_secs(60);

async fn client_of(server: &Server) -> anyhow::Result<Client> {
    Ok(Client::connect(Settings::new(&server.url, Some(server.admin_token.clone()))).await?)
}

fn spec(name: &str, steps: Vec<v1::StepSpec>) -> v1::TaskSpec {
    v1::TaskSpec {
        name: name.into(),
        steps,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_is_submitted_and_waited_for_and_its_key_makes_it_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 4)]).await?;
    let client = client_of(&server).await?;
    let dag = spec(
        "dag",
        vec![
            shell_step("a", &[], "echo '{\"n\": 1}' > \"$TIDEWRIGHT_OUTPUT\""),
            shell_step("b", &[], "echo '{\"n\": 2}' > \"$TIDEWRIGHT_OUTPUT\""),
            shell_step(
                "sum",
                &["a", "b"],
                "cat \"$TIDEWRIGHT_INPUTS\" > \"$TIDEWRIGHT_OUTPUT\"",
            ),
        ],
    );
    let task = client
        .submit_and_wait(Submit::new(dag.clone()).idempotency_key("dag-1"))
        .await?;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        task.message
    );
    let sum = step_output(&task, "sum")?;
    assert_eq!(sum, serde_json::json!({"a": {"n": 1}, "b": {"n": 2}}));

    let again = client
        .submit(Submit::new(dag).idempotency_key("dag-1"))
        .await?;
    assert_eq!(
        (again.task_id.as_str(), again.created),
        (task.id.as_str(), false)
    );
    assert_eq!(all_task_ids(&server.tasks().await?).await?, vec![task.id]);
    Ok(())
}

/// A batch is one call: every task made and run, each with its own key,
/// answered in order; sent again it makes nothing new; a bad task refuses
/// the whole batch naming its index, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_made_whole_once_or_refused_whole_naming_its_task() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, _workers) = Server::with_workers(dir.path(), &[("w", &["shell"], 4)]).await?;
    let client = client_of(&server).await?;
    let tasks: Vec<Submit> = (0..5)
        .map(|n| Submit::new(spec(&format!("many-{n}"), vec![noop_step("a")])))
        .collect();
    let submitted = client.submit_many(tasks.clone()).await?;
    assert_eq!(submitted.len(), 5);
    assert!(submitted.iter().all(|s| s.created));
    let keys: HashSet<&str> = submitted
        .iter()
        .map(|s| s.idempotency_key.as_str())
        .collect();
    assert_eq!(keys.len(), 5, "a key of its own each");
    for (n, task) in submitted.iter().enumerate() {
        let ended = tokio::time::timeout(FINISH, client.wait(&task.task_id)).await??;
        assert_eq!(ended.spec.map(|s| s.name), Some(format!("many-{n}")));
        assert_eq!(ended.state, v1::TaskState::Succeeded as i32);
    }
    // The same keys again, as after a lost answer: the same tasks.
    let again: Vec<Submit> = tasks
        .into_iter()
        .zip(&submitted)
        .map(|(task, s)| task.idempotency_key(s.idempotency_key.clone()))
        .collect();
    let again = client.submit_many(again).await?;
    assert!(again.iter().all(|s| !s.created));
    let ids = |s: &[tidewright_client::Submitted]| {
        s.iter().map(|s| s.task_id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&again), ids(&submitted));

    let refused = client
        .submit_many([
            spec("fine", vec![noop_step("a")]),
            spec("dup", vec![noop_step("a"), noop_step("a")]),
        ])
        .await
        .expect_err("duplicate ids");
    assert_eq!(refused.code(), Some(Code::InvalidArgument));
    assert_eq!(refused.field(), Some("tasks[1].spec.steps[1].id"));
    assert_eq!(all_task_ids(&server.tasks().await?).await?.len(), 5);
    Ok(())
}

/// Submits from many tasks at once through a producer go in a few
/// `SubmitTasks` calls (the tasks of one call share their creation time),
/// and each caller gets its own answer: its task, or the refusal of its
/// own bad spec naming the field as a lone submit would, while the rest of
/// its batch is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_coalesces_concurrent_submits_and_answers_each_its_own() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let client = client_of(&server).await?;
    let producer = client.producer(tidewright_client::Batching {
        max_batch: 100,
        in_flight: 1,
        ..Default::default()
    })?;
    const SUBMITS: usize = 300;
    let bad = |n: usize| n % 50 == 7;
    let mut calls = Vec::new();
    for n in 0..SUBMITS {
        let producer = producer.clone();
        let steps = if bad(n) {
            vec![noop_step("a"), noop_step("a")]
        } else {
            vec![noop_step("a")]
        };
        let task =
            Submit::new(spec(&format!("produced-{n}"), steps)).idempotency_key(format!("p-{n}"));
        calls.push(tokio::spawn(async move { producer.submit(task).await }));
    }
    let mut made = Vec::new();
    for (n, call) in calls.into_iter().enumerate() {
        match call.await? {
            Ok(submitted) => {
                assert!(!bad(n), "task {n} has duplicate step ids, and was made");
                assert!(submitted.created);
                assert_eq!(submitted.idempotency_key, format!("p-{n}"));
                made.push((n, submitted.task_id));
            }
            Err(refused) => {
                assert!(bad(n), "task {n} was refused: {refused}");
                assert_eq!(refused.code(), Some(Code::InvalidArgument));
                assert_eq!(refused.field(), Some("spec.steps[1].id"), "{refused}");
            }
        }
    }
    assert_eq!(made.len(), SUBMITS - SUBMITS / 50);
    let mut calls_made = HashSet::new();
    for (n, id) in &made {
        let task = client.get(id).await?;
        assert_eq!(task.spec.map(|s| s.name), Some(format!("produced-{n}")));
        calls_made.insert(task.created_at.map(|t| (t.seconds, t.nanos)));
    }
    assert!(
        calls_made.len() <= SUBMITS / 10,
        "{} submits made in {} calls",
        made.len(),
        calls_made.len()
    );
    assert_eq!(
        all_task_ids(&server.tasks().await?).await?.len(),
        made.len()
    );
    Ok(())
}

/// The stream of a task's events goes on through a kill -9 and restart of
/// the control plane: every event once, in order, none missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_a_control_plane_restart_with_nothing_missed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path())?;
    let _worker = server.worker("w", &["shell"], 2)?;
    server.wait_for_agents(&["w"]).await?;
    let client = client_of(&server).await?;

    let gate = dir.path().join("gate");
    let script = format!(
        "for i in $(seq 1 20); do echo before-$i; done; {}; for i in $(seq 1 20); do echo after-$i; done",
        wait_for_gate(&gate)
    );
    let id = client
        .submit(spec("talks", vec![shell_step("talk", &[], &script)]))
        .await?
        .task_id;

    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut events = client.watch(&id);
    let watching = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(event) = events.next().await {
            let event = event?;
            let _ = seen_tx.send(event.clone());
            all.push(event);
        }
        anyhow::Ok(all)
    });
    // Until the first half is out, then no graceful anything.
    tokio::time::timeout(FINISH, async {
        while let Some(event) = seen.recv().await {
            if matches!(&event.kind, Some(v1::event::Kind::Log(l)) if l.line == "before-20") {
                return;
            }
        }
    })
    .await?;
    let listen = server.listen_addr();
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    server = Server::start_on(dir.path(), &listen, &[])?;
    server.wait_for_agents(&["w"]).await?;
    std::fs::write(&gate, "")?;

    let watched = tokio::time::timeout(FINISH, watching).await???;
    let seqs: Vec<u64> = watched.iter().map(|e| e.seq).collect();
    let contiguous: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, contiguous, "every event once, in order");
    let last = watched.last().expect("events");
    assert!(tidewright_client::is_final(last), "{last:?}");
    let lines: Vec<&str> = watched
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Log(l)) => Some(l.line.as_str()),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (1..=20)
        .map(|i| format!("before-{i}"))
        .chain((1..=20).map(|i| format!("after-{i}")))
        .collect();
    assert_eq!(lines, expected);

    // The same events the restarted control plane has stored.
    let client = client_of(&server).await?;
    let stored: Vec<v1::Event> = client
        .watch_with(
            &id,
            WatchOptions {
                follow: false,
                ..WatchOptions::default()
            },
        )
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(stored, watched);
    // And from a sequence number, only what follows it.
    let tail: Vec<u64> = client
        .watch_with(
            &id,
            WatchOptions {
                after_seq: 10,
                ..WatchOptions::default()
            },
        )
        .map(|e| e.map(|e| e.seq))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(tail, contiguous[10..].to_vec());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_every_task_newest_first() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let client = client_of(&server).await?;
    let mut submitted = Vec::new();
    for i in 0..25 {
        let mut task = spec(&format!("listed-{i}"), vec![noop_step("s")]);
        task.labels.insert("batch".into(), "paged".into());
        submitted.push(client.submit(task).await?.task_id);
    }
    client.submit(spec("other", vec![noop_step("s")])).await?;
    let filter = v1::ListTasksRequest {
        labels: [("batch".to_string(), "paged".to_string())].into(),
        page_size: 10,
        ..Default::default()
    };
    let first = client.list_page(&filter, "").await?;
    assert_eq!(first.tasks.len(), 10);
    assert!(!first.next_page_token.is_empty());
    let listed: Vec<String> = client
        .list(filter)
        .map(|t| t.map(|t| t.id))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    submitted.reverse();
    assert_eq!(listed, submitted, "all 25 over three pages, newest first");
    Ok(())
}

/// A call made while the control plane is down is tried again until it is
/// back; a submit so repeated still makes one task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_calls_are_retried_until_the_control_plane_is_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Server::start(dir.path())?;
    let client = client_of(&server).await?;
    let listen = server.listen_addr();
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;

    let impatient = client.clone().retry_unavailable_for(Duration::ZERO);
    let down = impatient.get("01JAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(down.expect_err("down").code(), Some(Code::Unavailable));

    let submitting = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .submit(spec("while-down", vec![noop_step("s")]))
                .await
        }
    });
    server = Server::start_on(dir.path(), &listen, &[])?;
    let submitted = tokio::time::timeout(FINISH, submitting).await???;
    assert!(submitted.created);
    assert_eq!(
        all_task_ids(&server.tasks().await?).await?,
        vec![submitted.task_id]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_the_status_and_name_the_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let client = client_of(&server).await?;

    let missing = client
        .get("01JAAAAAAAAAAAAAAAAAAAAAAA")
        .await
        .expect_err("no task");
    assert_eq!(missing.code(), Some(Code::NotFound));
    assert!(missing.to_string().starts_with("not found: "), "{missing}");

    let twice = client
        .submit(spec("dup", vec![noop_step("a"), noop_step("a")]))
        .await
        .expect_err("duplicate ids");
    assert_eq!(twice.code(), Some(Code::InvalidArgument));
    assert_eq!(twice.field(), Some("spec.steps[1].id"));
    let status = twice.status().expect("a status");
    assert!(status.message().contains("already used"), "{status:?}");
    // Nothing was stored.
    assert!(all_task_ids(&server.tasks().await?).await?.is_empty());

    let watch = client
        .watch("01JAAAAAAAAAAAAAAAAAAAAAAA")
        .collect::<Vec<_>>()
        .await;
    assert_eq!(watch.len(), 1, "one error, then the stream ends");
    assert_eq!(
        watch[0].as_ref().expect_err("no task").code(),
        Some(Code::NotFound)
    );

    let stranger =
        Client::connect(Settings::new(&server.url, Some("tidewright_wrong".into()))).await?;
    let refused = stranger.get("x").await.expect_err("bad token");
    assert_eq!(refused.code(), Some(Code::Unauthenticated));

    let nobody = free_addr();
    match Client::connect(Settings::new(format!("http://{nobody}"), None)).await {
        Err(Error::Unreachable { server, reason }) => {
            assert!(server.contains(&nobody), "{server}");
            assert!(reason.contains("refused"), "{reason}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_put_read_guarded_by_version_and_deleted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path())?;
    let client = client_of(&server).await?;
    let key = StateKey::new("release", "owner");
    let first = client
        .put_state(&key, r#"{"who": "a"}"#, Some(0), Duration::ZERO)
        .await?;
    assert_eq!(first.version, 1);
    let read = client.get_state(&key).await?;
    assert_eq!(
        (read.value_json.as_str(), read.version),
        (r#"{"who": "a"}"#, 1)
    );
    let conflict = client
        .put_state(&key, r#"{"who": "b"}"#, Some(0), Duration::ZERO)
        .await
        .expect_err("taken");
    assert_eq!(conflict.code(), Some(Code::Aborted));
    let not_json = client
        .put_state(&key, "not json", None, Duration::ZERO)
        .await
        .expect_err("not JSON");
    assert_eq!(not_json.field(), Some("value_json"));
    let listed = client.list_state("", "release", "").await?;
    let keys: HashSet<&str> = listed
        .values
        .iter()
        .filter_map(|v| v.r#ref.as_ref().map(|r| r.key.as_str()))
        .collect();
    assert_eq!(keys, HashSet::from(["owner"]));
    client.delete_state(&key, Some(1)).await?;
    let gone = client.get_state(&key).await.expect_err("deleted");
    assert_eq!(gone.code(), Some(Code::NotFound));
    Ok(())
}
