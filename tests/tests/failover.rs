//! Control-plane replicas on one PostgreSQL: one leads, the others stand by
//! and take over when it dies or is paused. Real processes, a real
//! PostgreSQL, clients that follow the leader; the figures a failover costs
//! are printed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use tidewright_api::client::ClientTls;
use tidewright_api::leader::Replicas;
use tidewright_api::v1;
use tidewright_api::v1::task_service_client::TaskServiceClient;
use tidewright_store_postgres::throwaway;
use tidewright_tests::git_server::{GitServer, account_secrets, secret_holding_worker};
use tidewright_tests::*;
use tonic::service::interceptor::InterceptedService;

use crate::land::{CALC, CALC_TEST, gated_landing, touching};

/// Short, so the tests are quick; the default is 4 s.
const LEASE: &str = "2s";
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) type Client =
    TaskServiceClient<InterceptedService<Replicas, tidewright_api::client::Bearer>>;

/// One replica: its addresses stay the same across restarts.
pub(crate) struct Member {
    name: String,
    listen: String,
    http: String,
    pub(crate) server: Option<Server>,
}

pub(crate) struct Cluster {
    /// Drops the test database when the cluster goes.
    _postgres: throwaway::Server,
    dir: tempfile::TempDir,
    store: String,
    pub(crate) members: Vec<Member>,
    admin_token: String,
    pub(crate) worker_token: String,
    /// Flags every replica starts with besides the cluster's own.
    flags: Vec<String>,
}

impl Cluster {
    async fn start(replicas: usize) -> anyhow::Result<Cluster> {
        Cluster::start_with(replicas, &[]).await
    }

    pub(crate) async fn start_with(replicas: usize, flags: &[&str]) -> anyhow::Result<Cluster> {
        let postgres = throwaway::Server::from_env()?;
        let store = postgres.fresh_database().await?;
        let mut cluster = Cluster {
            _postgres: postgres,
            dir: tempfile::tempdir()?,
            store,
            members: (0..replicas)
                .map(|i| Member {
                    name: format!("replica-{i}"),
                    listen: free_addr(),
                    http: free_addr(),
                    server: None,
                })
                .collect(),
            admin_token: String::new(),
            worker_token: String::new(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        // The first makes the tokens and keys every replica shares (in
        // Kubernetes, a Secret); the others start once they exist.
        for i in 0..replicas {
            cluster.start_member(i)?;
        }
        let first = cluster.members[0].server.as_ref().expect("started");
        cluster.admin_token = first.admin_token.clone();
        cluster.worker_token = first.worker_token.clone();
        Ok(cluster)
    }

    fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &self.members[i];
        let mut flags = vec![
            "--store",
            &self.store,
            "--leader-lease",
            LEASE,
            "--replica-name",
            &member.name,
            "--http-listen",
            &member.http,
        ];
        flags.extend(self.flags.iter().map(String::as_str));
        let server = Server::start_on(self.dir.path(), &member.listen, &flags)?;
        self.members[i].server = Some(server);
        Ok(())
    }

    /// Every replica's URL, as `--server` takes them, `first` first.
    fn servers_from(&self, first: usize) -> String {
        let n = self.members.len();
        (0..n)
            .map(|k| format!("http://{}", self.members[(first + k) % n].listen))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn servers(&self) -> String {
        self.servers_from(0)
    }

    /// A client given every replica, asking `first` first.
    fn client_from(&self, first: usize) -> anyhow::Result<Client> {
        Ok(TaskServiceClient::with_interceptor(
            Replicas::new(&self.servers_from(first), &ClientTls::default())?,
            bearer(&self.admin_token),
        ))
    }

    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.client_from(0)
    }

    /// The replicas whose /readyz says ready.
    fn ready(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| {
                self.members[i].server.is_some()
                    && matches!(
                        http_get(&self.members[i].http, "/readyz", None),
                        Ok((200, _))
                    )
            })
            .collect()
    }

    /// Waits until exactly one replica, other than `not`, is ready.
    pub(crate) async fn leader(&self, not: Option<usize>) -> anyhow::Result<usize> {
        eventually(Duration::from_secs(30), || async {
            match self.ready()[..] {
                [one] if Some(one) != not => Some(one),
                _ => None,
            }
        })
        .await
        .with_context(|| {
            let probes: Vec<_> = (0..self.members.len()).map(|i| self.readyz(i)).collect();
            format!("one replica leads: {probes:?}")
        })
    }

    /// The resident memory of the largest replica running, in MiB.
    fn largest_rss_mib(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| m.server.as_ref())
            .map(|server| rss_mib(server.process.pid()))
            .max()
            .unwrap_or(0)
    }

    fn readyz(&self, i: usize) -> (u16, String) {
        http_get(&self.members[i].http, "/readyz", None).unwrap_or((0, String::new()))
    }
}

/// Submits one-step tasks, one at a time, until told to stop; a submit that
/// fails is sent again with the same idempotency key, as the CLI does.
struct Load {
    /// When each acknowledged submit was sent (its last try) and answered.
    acknowledged: Arc<Mutex<Vec<(Instant, Instant, String)>>>,
    stop: tokio::sync::watch::Sender<bool>,
    running: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(client: Client) -> Load {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let record = acknowledged.clone();
        let running = tokio::spawn(async move {
            for n in 0.. {
                let mut request = task(&format!("load-{n}"), vec![shell_step("s", &[], "true")]);
                request.idempotency_key = format!("load-{n}");
                loop {
                    if *stopped.borrow() {
                        return;
                    }
                    let sent = Instant::now();
                    match client.clone().submit_task(request.clone()).await {
                        Ok(answer) => {
                            let id = answer.into_inner().task_id;
                            record
                                .lock()
                                .expect("lock")
                                .push((sent, Instant::now(), id));
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        });
        Load {
            acknowledged,
            stop,
            running,
        }
    }

    /// When the first submit sent after `since` was acknowledged.
    fn first_sent_after(&self, since: Instant) -> Option<Instant> {
        self.acknowledged
            .lock()
            .expect("lock")
            .iter()
            .find(|(sent, _, _)| *sent > since)
            .map(|(_, acked, _)| *acked)
    }

    fn count_between(&self, from: Instant, to: Instant) -> usize {
        self.acknowledged
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, acked, _)| *acked >= from && *acked < to)
            .count()
    }

    async fn stop(self) -> Vec<String> {
        let _ = self.stop.send(true);
        let _ = self.running.await;
        let acknowledged = self.acknowledged.lock().expect("lock");
        acknowledged.iter().map(|(_, _, id)| id.clone()).collect()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_five_times_under_load_loses_nothing_and_runs_nothing_twice()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let first = cluster.leader(None).await?;
    // Standbys say who leads: to probes, and to calls.
    for i in (0..3).filter(|&i| i != first) {
        let (code, body) = cluster.readyz(i);
        assert_eq!(code, 503, "a standby is not ready");
        assert!(
            body.contains(&cluster.members[first].listen),
            "names the leader: {body}"
        );
        let direct = cluster.members[i]
            .server
            .as_ref()
            .expect("up")
            .tasks()
            .await?;
        let refused = direct
            .clone()
            .get_task(v1::GetTaskRequest {
                task_id: "t".into(),
            })
            .await
            .expect_err("a standby serves no calls");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(
            refused
                .metadata()
                .get("tidewright-leader")
                .and_then(|v| v.to_str().ok()),
            Some(cluster.members[first].listen.as_str()),
            "{}",
            refused.message()
        );
    }

    // A worker given every replica, and a step that runs through all the
    // failovers on it.
    let servers = cluster.servers();
    let _worker = start_worker(
        &servers,
        cluster.dir.path(),
        "ha-worker",
        &["shell"],
        8,
        &[],
        &cluster.worker_token,
    )?;
    let client = cluster.client()?;
    let gate = cluster.dir.path().join("gate");
    let long = submit_through(
        &client,
        task("long", vec![shell_step("wait", &[], &wait_for_gate(&gate))]),
    )
    .await?;
    eventually(Duration::from_secs(30), || async {
        let task = client
            .clone()
            .get_task(v1::GetTaskRequest {
                task_id: long.clone(),
            })
            .await
            .ok()?
            .into_inner();
        (task.steps[0].state == v1::StepState::Running as i32).then_some(())
    })
    .await?;

    let load = Load::start(client.clone());
    let warmed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = load.count_between(warmed, Instant::now());
    assert!(before > 0, "the load runs before the first kill");

    let mut to_leader = Vec::new();
    let mut unavailable = Vec::new();
    let mut connections = Vec::new();
    let mut memory = Vec::new();
    let mut leader = first;
    for round in 1..=5 {
        let server = cluster.members[leader].server.as_mut().expect("leader up");
        server.process.signal("KILL");
        server.process.wait_exit(Duration::from_secs(10))?;
        // Timed from its death: until then it leads, and may answer.
        let killed_at = Instant::now();
        cluster.members[leader].server = None;
        let next = cluster.leader(Some(leader)).await?;
        let led_after = killed_at.elapsed();
        let accepted_after = eventually(Duration::from_secs(30), || async {
            load.first_sent_after(killed_at).map(|at| at - killed_at)
        })
        .await?;
        println!(
            "failover {round}: {} -> {}: new leader after {led_after:?}, submits accepted again after {accepted_after:?}",
            cluster.members[leader].name, cluster.members[next].name
        );
        assert!(
            led_after < WORKER_TIMEOUT + Duration::from_secs(2),
            "a standby leads within the lease TTL and a little: {led_after:?}"
        );
        to_leader.push(led_after);
        unavailable.push(accepted_after);
        // The supervisor (Kubernetes) starts the killed replica again; it
        // stands by.
        cluster.start_member(leader)?;
        let restarted = leader;
        eventually(Duration::from_secs(30), || async {
            let (code, body) = cluster.readyz(restarted);
            (code == 503 && body.starts_with("standby")).then_some(())
        })
        .await?;
        connections.push(postgres_sessions(&cluster.store).await?);
        memory.push(cluster.largest_rss_mib());
        leader = next;
    }
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = load.count_between(settled, Instant::now());
    let acknowledged = load.stop().await;

    std::fs::write(&gate, "")?;
    let long = wait_through(&client, &long).await?;
    assert_eq!(
        long.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        long.message
    );
    assert_eq!(
        long.steps[0].attempt, 1,
        "the worker reclaimed its step across five failovers: {:?}",
        long.steps[0].attempts
    );
    let mut lost = 0;
    let mut twice = 0;
    for id in &acknowledged {
        let task = wait_through(&client, id).await?;
        if task.state != v1::TaskState::Succeeded as i32 {
            lost += 1;
        }
        for step in &task.steps {
            let outcomes = step
                .attempts
                .iter()
                .filter(|a| a.state == v1::StepState::Succeeded as i32)
                .count();
            if outcomes > 1 {
                twice += 1;
            }
        }
    }
    let mut sorted_leader = to_leader.clone();
    sorted_leader.sort();
    let mut sorted_unavailable = unavailable.clone();
    sorted_unavailable.sort();
    println!(
        "five failovers, lease {LEASE}: new leader p50 {:?} max {:?}; submits unavailable p50 {:?} max {:?}; \
         {} tasks acknowledged, {lost} lost, {twice} steps with two outcomes; \
         one-at-a-time submits in 2 s: {before} before, {after} after; postgres sessions after each round: {connections:?}; \
         the largest replica's RSS after each round (MiB): {memory:?}",
        percentile(&sorted_leader, 0.5),
        sorted_leader.last().expect("five"),
        percentile(&sorted_unavailable, 0.5),
        sorted_unavailable.last().expect("five"),
        acknowledged.len(),
    );
    assert_eq!(lost, 0, "every acknowledged task succeeded");
    assert_eq!(twice, 0, "no step has two outcomes");
    let (first_count, last_count) = (connections[0], *connections.last().expect("five"));
    assert!(
        last_count <= first_count + 2,
        "sessions do not grow with failovers: {connections:?}"
    );
    let (first_rss, last_rss) = (memory[0], *memory.last().expect("five"));
    assert!(
        last_rss <= first_rss * 2 + 64,
        "memory does not grow with failovers: {memory:?} MiB"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_commits_nothing_when_it_wakes_and_stands_by() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let first = cluster.leader(None).await?;
    let other = 1 - first;
    let paused = cluster.members[first].server.as_ref().expect("up");
    // A connection to the leader made before it pauses; a submit on it
    // waits, unread, while the leader is stopped.
    let direct = paused.tasks().await?;
    paused.process.signal("STOP");
    let mut held = task("held", vec![noop_step("s")]);
    held.idempotency_key = "held-while-paused".into();
    let pending = tokio::spawn({
        let held = held.clone();
        async move { direct.clone().submit_task(held).await }
    });

    let next = cluster.leader(Some(first)).await?;
    assert_eq!(next, other);
    // (A client asking the paused one first would wait for its keepalive
    // to give up on it, which is longer than this pause.)
    let client = cluster.client_from(other)?;
    let meanwhile = submit_through(&client, task("meanwhile", vec![noop_step("s")])).await?;

    paused.process.signal("CONT");
    let answer = tokio::time::timeout(Duration::from_secs(30), pending).await??;
    assert!(
        answer.is_err(),
        "the paused leader's submit is refused, not committed: {answer:?}"
    );
    // It stands by now, naming the new leader.
    eventually(Duration::from_secs(30), || async {
        let (code, body) = cluster.readyz(first);
        (code == 503 && body.contains(&cluster.members[other].listen)).then_some(())
    })
    .await
    .with_context(|| format!("the old leader stands by: {:?}", cluster.readyz(first)))?;
    // Nothing it held was applied: the key is free, and the new leader's
    // work is intact.
    let resubmitted = client.clone().submit_task(held).await?.into_inner();
    assert!(resubmitted.created, "nothing was stored under the held key");
    let kept = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: meanwhile.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(kept.id, meanwhile);
    let log = std::fs::read_to_string(&paused.process.log)?;
    assert!(
        log.contains("no longer leads"),
        "the old leader says why it stepped down"
    );
    Ok(())
}

/// Submits, following the leader through a failover.
pub(crate) async fn submit_through(
    client: &Client,
    request: v1::SubmitTaskRequest,
) -> anyhow::Result<String> {
    eventually(Duration::from_secs(30), || async {
        client
            .clone()
            .submit_task(request.clone())
            .await
            .ok()
            .map(|answer| answer.into_inner().task_id)
    })
    .await
    .context("a submit is accepted")
}

/// The task once it has finished, following the leader.
pub(crate) async fn wait_through(client: &Client, id: &str) -> anyhow::Result<v1::Task> {
    eventually(Duration::from_secs(60), || async {
        let task = client
            .clone()
            .get_task(v1::GetTaskRequest {
                task_id: id.to_string(),
            })
            .await
            .ok()?
            .into_inner();
        let done = [
            v1::TaskState::Succeeded,
            v1::TaskState::Failed,
            v1::TaskState::Cancelled,
        ]
        .iter()
        .any(|s| *s as i32 == task.state);
        done.then_some(task)
    })
    .await
    .with_context(|| format!("task {id} finishes"))
}

/// Sessions open on the test database.
async fn postgres_sessions(url: &str) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_given_only_a_standby_follow_it_to_the_leader() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let leader = cluster.leader(None).await?;
    let standby = cluster.members[1 - leader].server.as_ref().expect("up");

    // The CLI: reads, submits and `get servers`, all through the standby.
    let servers = succeed(standby.cli().args(["get", "servers", "-o", "json"]));
    let servers: serde_json::Value = serde_json::from_slice(&servers.stdout)?;
    let servers = servers.as_array().expect("a list");
    assert_eq!(servers.len(), 2, "{servers:?}");
    let leading: Vec<_> = servers
        .iter()
        .filter(|s| s["leading"] == true)
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["epoch"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        leading,
        [(cluster.members[leader].name.as_str(), 1)],
        "{servers:?}"
    );
    let file = cluster.dir.path().join("hello.yaml");
    std::fs::write(
        &file,
        "name: hello\nsteps:\n  - id: only\n    shell: {command: [sh, -c, 'echo hi']}\n",
    )?;
    let submitted = succeed(
        standby
            .cli()
            .arg("submit")
            .arg("-f")
            .arg(&file)
            .args(["-o", "name"]),
    );
    let id = String::from_utf8(submitted.stdout)?.trim().to_string();
    assert!(!id.is_empty());

    // A worker: it registers with the leader, and runs the task.
    let _worker = start_worker(
        &standby.url,
        cluster.dir.path(),
        "follower",
        &["shell"],
        1,
        &[],
        &cluster.worker_token,
    )?;
    let client = cluster.client()?;
    let done = wait_through(&client, &id).await?;
    assert_eq!(
        done.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        done.message
    );
    let agents = succeed(standby.cli().args(["get", "agents", "-o", "json"]));
    let agents: serde_json::Value = serde_json::from_slice(&agents.stdout)?;
    assert_eq!(agents[0]["name"], "follower", "{agents}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rides_through_a_failover() -> anyhow::Result<()> {
    use tidewright_operator::crd::TidewrightTask;
    use tidewright_operator::{Context, ControlPlane, WorkerSettings, tasks};
    use tidewright_tests::kube_api::{MockKube, sh, task_resource};

    let mut cluster = Cluster::start(2).await?;
    let leader = cluster.leader(None).await?;
    let _worker = start_worker(
        &cluster.servers(),
        cluster.dir.path(),
        "w",
        &["shell"],
        2,
        &[],
        &cluster.worker_token,
    )?;
    let mock = MockKube::start();
    // Through a Service the operator is given one address; here, the
    // replicas', which it must follow the same way.
    let control_plane = ControlPlane::connect_lazy(
        &cluster.servers(),
        Some(&cluster.admin_token),
        &ClientTls::default(),
    )?;
    let workers = WorkerSettings {
        server: cluster.servers(),
        image: "ghcr.io/tidewright/tidewright-worker:test".into(),
        token_secret: "tidewright-worker-token".into(),
        token_key: "token".into(),
        metrics_token_secret: None,
    };
    let ctx = Arc::new(Context::new(
        mock.client.clone(),
        control_plane,
        workers,
        "operator-0",
        Duration::from_secs(5),
    ));
    let gate = cluster.dir.path().join("gate");
    let path = "/apis/tidewright.dev/v1alpha1/namespaces/team-a/tasks/across";
    mock.put(
        path,
        task_resource(
            "across",
            "uid-across",
            serde_json::json!([sh("held", &[], &wait_for_gate(&gate))]),
            None,
        ),
    );
    // A reconcile that fails (the control plane is failing over) is run
    // again, as the controller's requeue would.
    let reconcile = || async {
        let object: TidewrightTask =
            serde_json::from_value(mock.get(path).expect("stored")).expect("a Task");
        tasks::reconcile(Arc::new(object), ctx.clone()).await.ok()
    };
    let status = || {
        mock.get(path)
            .map(|t| t["status"].clone())
            .unwrap_or_default()
    };
    eventually(Duration::from_secs(30), || async {
        reconcile().await?;
        (status()["phase"] == "Running").then_some(())
    })
    .await
    .context("the Task runs")?;
    let task_id = status()["taskId"].as_str().unwrap_or_default().to_string();

    let server = cluster.members[leader].server.as_mut().expect("up");
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    cluster.members[leader].server = None;
    cluster.leader(Some(leader)).await?;

    // Reconciling the same resource again submits nothing new, and the
    // status follows the task to its end on the new leader.
    eventually(Duration::from_secs(30), reconcile)
        .await
        .context("a reconcile succeeds against the new leader")?;
    std::fs::write(&gate, "")?;
    eventually(Duration::from_secs(60), || async {
        (status()["phase"] == "Succeeded").then_some(())
    })
    .await
    .with_context(|| format!("the Task's status follows it: {}", status()))?;
    assert_eq!(status()["taskId"], task_id.as_str());
    let client = cluster.client()?;
    let ids = eventually(Duration::from_secs(30), || async {
        client
            .clone()
            .list_tasks(v1::ListTasksRequest {
                page_size: 10,
                ..Default::default()
            })
            .await
            .ok()
            .map(|page| {
                page.into_inner()
                    .tasks
                    .into_iter()
                    .map(|t| t.id)
                    .collect::<Vec<_>>()
            })
    })
    .await?;
    assert_eq!(ids, [task_id], "submitted once across the failover");
    Ok(())
}

/// Every run a schedule's history showed while `watch` ran: tick (µs) ->
/// the task ids and skip reasons seen for it.
type Runs = Arc<Mutex<std::collections::BTreeMap<i64, (Vec<String>, Vec<String>)>>>;

/// Reads the schedule `name` every 200 ms (its history holds the last 20
/// ticks, so nothing is missed) and keeps every run it shows.
fn watch_schedule(client: Client, name: &str) -> (Runs, tokio::task::JoinHandle<()>) {
    let runs: Runs = Arc::default();
    let (kept, name) = (runs.clone(), name.to_string());
    let watching = tokio::spawn(async move {
        loop {
            let request = v1::ScheduleRequest {
                tenant: String::new(),
                name: name.clone(),
            };
            if let Ok(found) = client.clone().get_schedule(request).await {
                let mut kept = kept.lock().expect("lock");
                for run in found.into_inner().history {
                    let tick = run
                        .tick
                        .as_ref()
                        .map(tidewright_api::convert::micros)
                        .unwrap_or_default();
                    let (tasks, skips) = kept.entry(tick).or_default();
                    if !run.task_id.is_empty() && !tasks.contains(&run.task_id) {
                        tasks.push(run.task_id);
                    }
                    if !run.skipped.is_empty() && !skips.contains(&run.skipped) {
                        skips.push(run.skipped);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (runs, watching)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_tick_once_when_the_leader_is_killed_at_the_tick()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(3).await?;
    let mut leader = cluster.leader(None).await?;
    let client = cluster.client()?;
    let spec = v1::ScheduleSpec {
        name: "beat".into(),
        cron: "* * * * * *".into(),
        task: Some(v1::TaskSpec {
            name: "beat".into(),
            steps: vec![shell_step("s", &[], "true")],
            ..Default::default()
        }),
        ..Default::default()
    };
    client
        .clone()
        .create_schedule(v1::CreateScheduleRequest {
            tenant: String::new(),
            spec: Some(spec),
        })
        .await?;
    let (runs, watching) = watch_schedule(client.clone(), "beat");
    let fired = || {
        runs.lock()
            .expect("lock")
            .values()
            .filter(|(t, _)| !t.is_empty())
            .count()
    };
    eventually(Duration::from_secs(20), || async {
        (fired() >= 3).then_some(())
    })
    .await?;

    // Killed at a tick (its first milliseconds, when the leader submits the
    // tick's task and then records it), three times.
    for offset_ms in [0u64, 1, 3] {
        let into = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_micros();
        let to_tick = Duration::from_micros(u64::from(1_000_000 - into));
        tokio::time::sleep(to_tick + Duration::from_millis(offset_ms)).await;
        let server = cluster.members[leader].server.as_mut().expect("leader up");
        server.process.signal("KILL");
        server.process.wait_exit(Duration::from_secs(10))?;
        cluster.members[leader].server = None;
        let next = cluster.leader(Some(leader)).await?;
        cluster.start_member(leader)?;
        // Ticks fire again under the new leader.
        let before = fired();
        eventually(Duration::from_secs(20), || async {
            (fired() >= before + 2).then_some(())
        })
        .await?;
        leader = next;
    }
    client
        .clone()
        .suspend_schedule(v1::ScheduleRequest {
            tenant: String::new(),
            name: "beat".into(),
        })
        .await?;
    // One more read after the suspension, then the record is whole.
    tokio::time::sleep(Duration::from_millis(500)).await;
    watching.abort();
    let runs = runs.lock().expect("lock").clone();

    // Every second from the first tick to the last fired, each once.
    let ticks: Vec<i64> = runs.keys().copied().collect();
    let (first, last) = (ticks[0], *ticks.last().expect("ticks"));
    let every: Vec<i64> = (0..=(last - first) / 1_000_000)
        .map(|k| first + k * 1_000_000)
        .collect();
    assert_eq!(ticks, every, "no tick missing from the history");
    for (tick, (tasks, skips)) in &runs {
        assert_eq!(tasks.len(), 1, "tick {tick}: one task: {tasks:?}");
        assert!(skips.is_empty(), "tick {tick} was not skipped: {skips:?}");
    }
    // And no task beyond them: one per tick, by the schedule's label.
    let listed = client
        .clone()
        .list_tasks(v1::ListTasksRequest {
            labels: [("tidewright.dev/schedule".to_string(), "beat".to_string())].into(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .tasks;
    let mut fired_ids: Vec<String> = runs.values().map(|(t, _)| t[0].clone()).collect();
    let mut listed_ids: Vec<String> = listed.iter().map(|t| t.id.clone()).collect();
    fired_ids.sort();
    listed_ids.sort();
    assert_eq!(fired_ids, listed_ids, "each tick's task, and no other");
    // How late each tick's task was made: the failovers' ticks wait for a
    // new leader, within the starting deadline.
    let mut late: Vec<Duration> = listed
        .iter()
        .filter_map(|task| {
            let made = tidewright_api::convert::micros(task.created_at.as_ref()?);
            let tick = runs.iter().find(|(_, (t, _))| t[0] == task.id)?.0;
            Some(Duration::from_micros((made - tick).max(0) as u64))
        })
        .collect();
    late.sort();
    println!(
        "three kill -9s of the leader at a tick (3 replicas, lease {LEASE}): {} ticks, each fired once, none skipped; \
         a tick's task made after it: p50 {:?}, max {:?}",
        runs.len(),
        percentile(&late, 0.5),
        late.last().expect("ticks"),
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_leader_while_a_landing_is_checked_lands_each_task_once_in_turn()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    let first_commit = git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds")?;
    let mut cluster =
        Cluster::start_with(2, &["--allow-local-repos", "--repo-secrets-dir", &secrets]).await?;
    let first = cluster.leader(None).await?;
    let _worker = secret_holding_worker(
        &cluster.servers(),
        dir.path(),
        "lander",
        4,
        &cluster.worker_token,
    )?;
    let client = cluster.client()?;
    let gate = dir.path().join("gates").join("open");
    std::fs::create_dir_all(gate.parent().expect("gates"))?;
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        ids.push(submit_through(&client, gated_landing(&git, name, &gate)).await?);
    }
    // One lands, its checks held at the gate; the other waits its turn.
    let deliver_states = || async {
        let mut states = Vec::new();
        for id in &ids {
            let task = client
                .clone()
                .get_task(v1::GetTaskRequest {
                    task_id: id.clone(),
                })
                .await
                .ok()?
                .into_inner();
            states.push(task.steps.iter().find(|s| s.id == "deliver")?.state);
        }
        states.sort();
        Some(states)
    };
    let queued = v1::StepState::Queued as i32;
    let running = v1::StepState::Running as i32;
    eventually(Duration::from_secs(60), || async {
        (deliver_states().await? == [queued, running]).then_some(())
    })
    .await
    .context("one task lands while the other waits")?;
    // Its checks run, held at the gate: the deliver step is past what it
    // keeps with the control plane before it lands (its branch), and in
    // the landing itself.
    let direct = cluster.members[first]
        .server
        .as_ref()
        .expect("leader up")
        .tasks()
        .await?;
    landing_checked(&direct, &ids)
        .await
        .context("the landing's checks run")?;
    kill_leader(&mut cluster, first).await?;
    // The standby holds the queue as the leader did: still one landing,
    // one waiting, before the gate opens.
    eventually(Duration::from_secs(60), || async {
        (deliver_states().await? == [queued, running]).then_some(())
    })
    .await
    .context("the queue stands after the failover")?;
    std::fs::write(&gate, "")?;
    for id in &ids {
        let task = wait_through(&client, id).await?;
        assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:?}");
        let deliver = task
            .steps
            .iter()
            .find(|s| s.id == "deliver")
            .expect("deliver");
        assert_eq!(
            deliver.attempts.len(),
            1,
            "the landing's attempt rode through the failover: {:?}",
            deliver.attempts
        );
    }
    // Each landed once, in turn, and every commit main has passes.
    let history = git.main_history_tested("app", dir.path());
    assert_eq!(
        history.len(),
        3,
        "the first commit and two landings: {history:?}"
    );
    assert!(history.iter().all(|(_, passed)| *passed), "{history:?}");
    assert_eq!(
        history.last().map(|(c, _)| c.as_str()),
        Some(first_commit.as_str())
    );
    Ok(())
}

/// A kill -9 of the leader while a batch of two tasks' landing is checked:
/// the worker's attempt rides through the failover and lands both in one
/// commit; the new leader, which does not know the batch, sends the rider
/// back to the queue, where its work is found on main already and lands as
/// it is. main gets each task's work once, and no commit it did not check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_leader_while_a_batch_is_checked_lands_its_tasks_once() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds")?;
    // The rider, which no worker reclaims after the failover, waits its
    // worker timeout before it goes back to the queue.
    let mut cluster = Cluster::start_with(
        2,
        &[
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--worker-timeout",
            "10s",
            "--heartbeat-interval",
            "1s",
        ],
    )
    .await?;
    let first = cluster.leader(None).await?;
    let _worker = secret_holding_worker(
        &cluster.servers(),
        dir.path(),
        "lander",
        4,
        &cluster.worker_token,
    )?;
    let client = cluster.client()?;
    let (gate_one, gate_batch) = (
        dir.path().join("gate-one").join("open"),
        dir.path().join("gate-batch").join("open"),
    );
    for gate in [&gate_one, &gate_batch] {
        std::fs::create_dir_all(gate.parent().expect("gate"))?;
    }
    // "one" lands alone and holds the queue at its gate until "two" and
    // "three", which touch apart, wait behind it; then they land together.
    let one = touching(
        &git,
        "one",
        "printf 'x = 1\\n' > one.py",
        &["one.py"],
        &gate_one,
    );
    let one = submit_through(&client, one).await?;
    let direct = cluster.members[first]
        .server
        .as_ref()
        .expect("leader up")
        .tasks()
        .await?;
    landing_checked(&direct, std::slice::from_ref(&one))
        .await
        .context("one's landing is checked")?;
    let mut ids = Vec::new();
    for name in ["two", "three"] {
        let script = format!("printf 'y = 2\\n' > {name}.py");
        let request = touching(&git, name, &script, &[&format!("{name}.py")], &gate_batch);
        ids.push(submit_through(&client, request).await?);
    }
    eventually(Duration::from_secs(60), || async {
        let mut waiting = 0;
        for id in &ids {
            let task = client
                .clone()
                .get_task(v1::GetTaskRequest {
                    task_id: id.clone(),
                })
                .await
                .ok()?
                .into_inner();
            let deliver = task.steps.iter().find(|s| s.id == "deliver")?;
            waiting += usize::from(deliver.state == v1::StepState::Queued as i32);
        }
        (waiting == 2).then_some(())
    })
    .await
    .context("two and three wait behind one")?;
    std::fs::write(&gate_one, "")?;
    landing_checked(&direct, &ids)
        .await
        .context("the batch's landing is checked")?;
    kill_leader(&mut cluster, first).await?;
    std::fs::write(&gate_batch, "")?;
    let mut landed = Vec::new();
    for id in std::iter::once(&one).chain(&ids) {
        let task = wait_through(&client, id).await?;
        assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:?}");
        let deliver = task
            .steps
            .iter()
            .find(|s| s.id == "deliver")
            .expect("deliver");
        let output: serde_json::Value = serde_json::from_str(&deliver.output_json)?;
        landed.push(output["landed"].as_str().unwrap_or_default().to_string());
    }
    // one's landing, and the batch's one commit, which the rider's second
    // turn found on main: nothing landed twice, and every commit passes.
    let history = git.main_history_tested("app", dir.path());
    assert_eq!(
        history.len(),
        3,
        "the first commit, one's landing and the batch's: {history:?}"
    );
    assert!(history.iter().all(|(_, passed)| *passed), "{history:?}");
    assert_eq!(landed[1], landed[2], "two and three landed in one commit");
    assert_eq!(history[0].0, landed[1]);
    Ok(())
}

/// Returns once one of tasks `ids`' deliver step runs its landing's
/// checks (its log says so), as seen through `direct`.
async fn landing_checked(direct: &Tasks, ids: &[String]) -> anyhow::Result<()> {
    eventually(Duration::from_secs(60), || async {
        for id in ids {
            if step_log(direct, id, "deliver")
                .await
                .contains("land: checking")
            {
                return Some(());
            }
        }
        None
    })
    .await
}

/// kill -9 of the leader, member `first`; returns once another leads.
pub(crate) async fn kill_leader(cluster: &mut Cluster, first: usize) -> anyhow::Result<()> {
    let leader = cluster.members[first].server.as_mut().expect("leader up");
    leader.process.signal("KILL");
    leader.process.wait_exit(Duration::from_secs(10))?;
    cluster.members[first].server = None;
    cluster.leader(Some(first)).await?;
    Ok(())
}

/// Two tenants backlogged behind one slot when the leader is killed: the
/// replica that takes over holds the weights and caps set on the first.
/// acme (weight 3) gets three starts to zeta's one, and held (cap 0) none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_leader_with_two_tenants_backlogged_keeps_their_shares()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(2).await?;
    let first = cluster.leader(None).await?;
    let client = cluster.client()?;
    for (tenant, weight, max_running) in [("acme", Some(3), None), ("held", None, Some(0))] {
        client
            .clone()
            .set_tenant_share(v1::SetTenantShareRequest {
                tenant: tenant.into(),
                weight,
                max_running,
                fairness_key: String::new(),
            })
            .await?;
    }
    let _worker = start_worker(
        &cluster.servers(),
        cluster.dir.path(),
        "solo",
        &["shell"],
        1,
        &[],
        &cluster.worker_token,
    )?;
    // The only slot held until the gate opens, while both backlogs queue.
    let gate = cluster.dir.path().join("gate");
    let blocker = submit_through(
        &client,
        task("blocker", vec![shell_step("s", &[], &wait_for_gate(&gate))]),
    )
    .await?;
    eventually(Duration::from_secs(30), || async {
        let task = client
            .clone()
            .get_task(v1::GetTaskRequest {
                task_id: blocker.clone(),
            })
            .await
            .ok()?
            .into_inner();
        (task.steps.first()?.state == v1::StepState::Running as i32).then_some(())
    })
    .await
    .context("the blocker runs")?;
    let mut ids = Vec::new();
    for i in 0..16 {
        for tenant in ["acme", "zeta"] {
            let mut request = task(&format!("{tenant}-{i}"), vec![shell_step("s", &[], "true")]);
            request.tenant = tenant.into();
            ids.push((submit_through(&client, request).await?, tenant));
        }
    }
    let mut held = Vec::new();
    for i in 0..2 {
        let mut request = task(&format!("held-{i}"), vec![shell_step("s", &[], "true")]);
        request.tenant = "held".into();
        held.push(submit_through(&client, request).await?);
    }

    kill_leader(&mut cluster, first).await?;
    std::fs::write(&gate, "")?;
    let mut starts = Vec::new();
    for (id, tenant) in &ids {
        let task = wait_through(&client, id).await?;
        assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:?}");
        let started = task.steps[0]
            .started_at
            .as_ref()
            .map(|t| (t.seconds, t.nanos))
            .context("started")?;
        starts.push((started, *tenant));
    }
    starts.sort();
    let order: Vec<&str> = starts.iter().map(|(_, t)| *t).collect();
    let acme = order[..16].iter().filter(|t| **t == "acme").count();
    assert!(
        (11..=13).contains(&acme),
        "three starts to one after the failover, not one to one: {acme} of 16 in {order:?}"
    );
    // held's cap of 0 holds on the new leader: its steps still wait.
    let shares = client
        .clone()
        .list_tenant_shares(v1::ListTenantSharesRequest {})
        .await?
        .into_inner()
        .tenants;
    let held_now = shares
        .iter()
        .find(|s| s.tenant == "held")
        .context("held's share")?;
    assert_eq!(
        (held_now.max_running, held_now.running, held_now.waiting),
        (Some(0), 0, 2),
        "{shares:?}"
    );
    Ok(())
}
