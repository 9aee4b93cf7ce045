//! The conformance suite against a real PostgreSQL, and what only a server
//! can do wrong: migrations raced and refused, a server stopped under load
//! and started again, a session killed mid-transaction.

use std::time::Duration;

use tidewright_core::{EventKind, LogStream};
use tidewright_store::conformance::{create, new_task};
use tidewright_store::{AuditRecord, Store};

use super::*;
use crate::throwaway::{Cluster, Server};

/// The store under the conformance suite: a fresh database on the test
/// server, opened again on the same database.
struct Postgres {
    server: Server,
    url: Option<String>,
}

impl Postgres {
    fn new() -> Self {
        Postgres {
            server: Server::from_env().expect("a PostgreSQL server for the tests"),
            url: None,
        }
    }
}

#[async_trait]
impl tidewright_store::conformance::Backend for Postgres {
    async fn open(&mut self) -> Arc<dyn Store> {
        if self.url.is_none() {
            self.url = Some(self.server.fresh_database().await.expect("database"));
        }
        let url = self.url.as_deref().unwrap_or_default();
        Arc::new(PostgresStore::open(url).await.expect("open"))
    }
}

mod conformance {
    use super::*;
    tidewright_store::conformance_suite!(Postgres::new());
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

pub(crate) fn log_event(task_id: &str, seq: u64, line: &str) -> Write {
    Write::Event(Event {
        task_id: task_id.into(),
        seq,
        at: 1_700_000_000_000_000 + seq as i64,
        kind: EventKind::Log {
            step: "a".into(),
            attempt: 1,
            stream: LogStream::Stdout,
            line: line.into(),
        },
    })
}

/// Polls `check` until it holds, failing after `what` took too long.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stalls `store`'s writer inside a transaction: another session holds the
/// audit table, and a write of an event (`line`, seq 2 of task t1) and an
/// audit record is handed over; the writer inserts the event, then waits
/// on the lock with the insert pending. Returns the session holding the
/// lock (ROLLBACK lets go), the write's answer to come, and the writer's
/// backend pid.
pub(crate) async fn stall_the_writer(
    url: &str,
    store: &PostgresStore,
    line: &str,
) -> (tokio_postgres::Client, tidewright_store::Commit, i32) {
    let holder = admin(url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE audit IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let commit = store.write(vec![
        log_event("t1", 2, line),
        Write::Audit(AuditRecord {
            action: "task.submit".into(),
            tenant: "default".into(),
            ..AuditRecord::default()
        }),
    ]);
    let watcher = admin(url).await;
    let waiting_writer = || async {
        watcher
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'tidewright-writer'
                   AND datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .map(|row| row.get::<_, i32>(0))
    };
    until("the writer waits on the lock", || async {
        waiting_writer().await.is_some()
    })
    .await;
    let pid = waiting_writer().await.expect("writer");
    (holder, commit, pid)
}

/// A store on a fresh database of the tests' server (kept while the
/// store is), with the database's URL.
async fn fresh_store() -> (Server, String, PostgresStore) {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    let store = PostgresStore::open(&url).await.expect("open");
    (server, url, store)
}

#[tokio::test]
async fn a_database_from_a_newer_tidewright_is_refused_and_racing_starts_migrate_once() {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    // Four servers start at once on an empty database.
    let opened = futures::future::join_all((0..4).map(|_| PostgresStore::open(&url))).await;
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let db = admin(&url).await;
    let versions: Vec<i64> = db
        .query(
            "SELECT version FROM tidewright_schema ORDER BY version",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=schema::VERSION).collect::<Vec<_>>());
    drop(opened);
    db.execute(
        "INSERT INTO tidewright_schema (version, written_by) VALUES ($1, '9.9.9')",
        &[&(schema::VERSION + 1)],
    )
    .await
    .expect("a newer tidewright was here");
    match PostgresStore::open(&url).await {
        Err(Error::Corrupt(message)) => {
            let said = format!(
                "schema is version {}, written by tidewright 9.9.9; this is tidewright {}",
                schema::VERSION + 1,
                env!("CARGO_PKG_VERSION")
            );
            assert!(message.contains(&said), "{message}")
        }
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("opened a database from a newer tidewright"),
    }
}

/// A database of version 11 with a task in it is carried to the ids'
/// byte-wise collation (version 12): the task reads back whole, with its
/// steps and events, and its keys are compared as bytes while a user's own
/// text keeps the database's collation.
#[tokio::test]
async fn ids_are_compared_byte_wise_after_the_upgrade_and_nothing_stored_is_lost() {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    let db = admin(&url).await;
    schema::migrate_to(&db, 11).await.expect("version 11");
    db.batch_execute(
        r#"INSERT INTO tasks (id, tenant, name, priority, state, spec, labels, created_at)
             VALUES ('01jtaskbeforetheupgrade0001', 'team-a', 'Before', 0, 'queued',
                     '{"name": "Before", "steps": [{"id": "a", "noop": {}}]}', '{}', now());
           INSERT INTO steps (task_id, step_id, position, state)
             VALUES ('01jtaskbeforetheupgrade0001', 'a', 0, 'queued');
           INSERT INTO events (task_id, seq, at, kind, body)
             VALUES ('01jtaskbeforetheupgrade0001', 1, now(), 'taskState',
                     '{"type": "taskState", "state": "queued"}');"#,
    )
    .await
    .expect("a task of version 11");
    let collation = |table: &'static str, column: &'static str| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT collation_name::text FROM information_schema.columns
                  WHERE table_name = $1 AND column_name = $2",
                &[&table, &column],
            )
            .await
            .expect("the column")
            .get::<_, Option<String>>(0)
        }
    };
    assert_eq!(
        collation("tasks", "id").await,
        None,
        "before: the database's"
    );

    let store = PostgresStore::open(&url).await.expect("open, migrating");
    for (table, column) in [
        ("tasks", "id"),
        ("tasks", "tenant"),
        ("tasks", "idempotency_key"),
        ("steps", "task_id"),
        ("attempts", "step_id"),
        ("event_groups", "task_id"),
        ("expired", "id"),
        ("deliveries", "webhook_id"),
    ] {
        assert_eq!(
            collation(table, column).await.as_deref(),
            Some("C"),
            "{table}.{column}"
        );
    }
    assert_eq!(collation("tasks", "name").await, None, "a user's text");
    let task = store
        .get_task("01jtaskbeforetheupgrade0001")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!((task.tenant.as_str(), task.steps.len()), ("team-a", 1));
    let events = store
        .events_after("01jtaskbeforetheupgrade0001", 0, 10)
        .await
        .expect("events");
    assert_eq!(events.len(), 1);
}

/// The events one write gives each task are one row per task, however
/// they interleave (the conformance suite reads them back every way); the
/// fleet's order names runs, and reads rows from before runs.
#[tokio::test]
async fn the_events_of_one_task_in_one_write_are_one_row_and_the_fleet_names_runs() {
    let (_server, url, store) = fresh_store().await;
    tidewright_store::conformance::write_interleaved(&store).await;
    let db = admin(&url).await;
    let rows: Vec<(String, i64, i64)> = db
        .query(
            "SELECT task_id, seq, last FROM event_groups WHERE seq > 1 ORDER BY task_id",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, [("t1".into(), 2, 4), ("t2".into(), 2, 3)]);

    // The fleet's order names runs: the create's commit is one run per
    // task. A row from before runs (no `lasts`) still reads back.
    let first: (Vec<String>, Vec<i64>, Option<Vec<i64>>) = db
        .query_one(
            "SELECT task_ids, seqs, lasts FROM fleet ORDER BY commit_no LIMIT 1",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .expect("the create's row");
    assert_eq!(
        first,
        (vec!["t1".into(), "t2".into()], vec![1, 1], Some(vec![1, 1]))
    );
    let fleet = store.fleet_events_after(0, None, 100).await.expect("fleet");
    db.execute(
        "UPDATE fleet SET lasts = NULL WHERE commit_no = (SELECT MIN(commit_no) FROM fleet)",
        &[],
    )
    .await
    .expect("an older row");
    let again = store.fleet_events_after(0, None, 100).await.expect("fleet");
    assert_eq!(again.events, fleet.events);
    assert_eq!(store.fleet_head().await.expect("head"), fleet.through);
}

/// The writer's plans are made once per session, often on empty tables
/// (a new database); they must still look rows up by key, or every group
/// scans a table that only grows.
#[tokio::test]
async fn the_writer_looks_rows_up_by_key_even_when_planned_on_empty_tables() {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    drop(PostgresStore::open(&url).await.expect("open"));
    let conn = Conn::open_writer(&parse_url(&url).expect("url"))
        .await
        .expect("writer");
    conn.client
        .batch_execute(
            "PREPARE finish(text[], text[], bigint[], text[]) AS
                UPDATE attempts a SET state = u.state
                FROM UNNEST($1, $2, $3, $4) AS u(task_id, step_id, attempt, state)
                WHERE a.task_id = u.task_id AND a.step_id = u.step_id AND a.attempt = u.attempt",
        )
        .await
        .expect("prepare");
    let plan: Vec<String> = conn
        .client
        .simple_query("EXPLAIN EXECUTE finish('{t}', '{s}', '{1}', '{succeeded}')")
        .await
        .expect("explain")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Index Scan using attempts_pkey"), "{plan}");
    assert!(
        !plan.contains("Seq Scan") && !plan.contains("Hash"),
        "{plan}"
    );
}

#[tokio::test]
async fn an_unreachable_server_and_a_bad_url_are_told_apart() {
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    match PostgresStore::open(&format!(
        "postgres://tidewright@127.0.0.1:{port}/tidewright"
    ))
    .await
    {
        Err(Error::Unavailable(message)) => assert!(message.contains("postgres"), "{message}"),
        Err(other) => panic!("expected unavailable, got {other}"),
        Ok(_) => panic!("nothing listens there"),
    }
    match PostgresStore::open("postgres://tidewright@127.0.0.1:notaport/tidewright").await {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains("URL is not valid"), "{message}")
        }
        Err(other) => panic!("expected a bad URL, got {other}"),
        Ok(_) => panic!("opened a bad URL"),
    }
}

#[tokio::test]
async fn text_postgres_cannot_hold_is_stored_without_its_nul() {
    let (_server, _url, store) = fresh_store().await;
    let mut task = new_task("t1", "default", None);
    task.spec.name = "nul\0name".into();
    store.create_tasks(vec![task]).await.expect("created");
    store
        .write(vec![log_event("t1", 2, "a\0b")])
        .await
        .expect("answer")
        .expect("committed");
    let read = store.get_task("t1").await.expect("get").expect("t1");
    assert_eq!(read.spec.name, "nul\u{FFFD}name");
    let events = store.events_after("t1", 1, 10).await.expect("events");
    match &events[0].kind {
        EventKind::Log { line, .. } => assert_eq!(line, "a\u{FFFD}b"),
        other => panic!("expected a log line, got {other:?}"),
    }
    assert!(store.get_task("t\0").await.expect("get").is_none());
}

#[tokio::test]
async fn a_session_killed_mid_transaction_is_run_again_whole() {
    let (_server, url, store) = fresh_store().await;
    create(&store, vec![new_task("t1", "default", None)]).await;
    let (holder, commit, pid) = stall_the_writer(&url, &store, "once").await;
    let killer = admin(&url).await;
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate");
    holder.batch_execute("ROLLBACK").await.expect("unlock");
    commit
        .await
        .expect("answer")
        .expect("committed on a new connection");
    let events = store.events_after("t1", 0, 10).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2],
        "applied once"
    );
    let audit = store.audit_after(0, 10, None).await.expect("audit");
    assert_eq!(audit.iter().map(|r| r.seq).collect::<Vec<_>>(), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_under_load_refuses_new_work_and_on_restart_everything_goes_on() {
    // This one stops its server, so it always has one of its own.
    let cluster = Cluster::start().expect("cluster");
    let url = cluster.url("postgres");
    let store = Arc::new(PostgresStore::open(&url).await.expect("open"));
    create(&*store, vec![new_task("log", "default", None)]).await;
    // Load: clients submitting tasks, and the control plane writing a log.
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let submitting = tokio::spawn({
        let store = store.clone();
        let acked = acked.clone();
        async move {
            let mut acknowledged = Vec::new();
            let mut refusals = Vec::new();
            let mut since_refused = 0;
            for i in 0.. {
                let id = format!("t{i:05}");
                match store
                    .create_tasks(vec![new_task(&id, "default", None)])
                    .await
                {
                    Ok(_) => {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        acknowledged.push(id);
                        since_refused += 1;
                    }
                    Err(e) => {
                        refusals.push(e);
                        since_refused = 0;
                        // A client backing off, as told to.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                // Stopped, refused, then taken again for a while.
                if !refusals.is_empty() && since_refused >= 50 {
                    break;
                }
            }
            (acknowledged, refusals)
        }
    });
    let mut commits = Vec::new();
    let mut seq = 1;
    let mut write_some = |n: usize, commits: &mut Vec<Commit>| {
        for _ in 0..n {
            seq += 1;
            commits.push(store.write(vec![log_event("log", seq, "line")]));
        }
    };
    write_some(200, &mut commits);
    until("submits are taken", || async {
        acked.load(std::sync::atomic::Ordering::Relaxed) >= 100
    })
    .await;
    tokio::task::block_in_place(|| cluster.stop_server()).expect("stop");
    // Written while the server is down: held, in order.
    write_some(200, &mut commits);
    until("submits are refused", || async {
        matches!(
            store
                .create_tasks(vec![new_task("probe", "default", None)])
                .await,
            Err(Error::Unavailable(_))
        )
    })
    .await;
    match store
        .create_tasks(vec![new_task("probe", "default", None)])
        .await
    {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains("postgres"), "{message}");
            assert!(message.contains("retry"), "{message}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    tokio::task::block_in_place(|| cluster.start_server()).expect("start again");
    write_some(200, &mut commits);
    let (acknowledged, refusals) = submitting.await.expect("load");
    assert!(
        refusals.iter().all(|e| matches!(e, Error::Unavailable(_))),
        "{refusals:?}"
    );
    for commit in commits {
        commit.await.expect("answer").expect("committed once back");
    }
    for id in &acknowledged {
        assert!(
            store.get_task(id).await.expect("get").is_some(),
            "acknowledged {id} was lost"
        );
    }
    let events = store.events_after("log", 0, 1000).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=601).collect::<Vec<_>>(),
        "every write, in order, once"
    );
}

/// The control plane's writes held while the database is away may fill
/// the write queue. New work is still told at once that the database is
/// away, not kept waiting for room and then called overload; once it is
/// back, new work is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_is_told_the_database_is_away_even_when_held_writes_fill_the_queue() {
    let cluster = Cluster::start().expect("cluster");
    let store = PostgresStore::open_bounded(
        &cluster.url("postgres"),
        tidewright_store::admission::Bound {
            max_queued: 8,
            wait: Duration::from_secs(30),
        },
    )
    .await
    .expect("open");
    create(&store, vec![new_task("log", "default", None)]).await;
    tokio::task::block_in_place(|| cluster.stop_server()).expect("stop");
    let commits: Vec<Commit> = (2..=40)
        .map(|seq| store.write(vec![log_event("log", seq, "line")]))
        .collect();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        store.create_tasks(vec![new_task("refused", "default", None)]),
    )
    .await
    .expect("answered well before the queue's wait for room");
    match refused {
        Err(Error::Unavailable(message)) => assert!(message.contains("retry"), "{message}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    tokio::task::block_in_place(|| cluster.start_server()).expect("start again");
    for commit in commits {
        commit.await.expect("answer").expect("committed once back");
    }
    until("new work is taken again", || async {
        store
            .create_tasks(vec![new_task("taken", "default", None)])
            .await
            .is_ok()
    })
    .await;
    let events = store.events_after("log", 0, 100).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>(),
        "every held write, in order, once"
    );
    assert!(store.get_task("refused").await.expect("get").is_none());
}

/// Where [`Relay`] cuts the session that sends COMMIT.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Before the server sees it: the transaction rolls back.
    BeforeCommit,
    /// After the server committed, before its answer reaches the store.
    AfterCommit,
}

/// A TCP relay in front of the server that, once armed, cuts the next
/// session to send COMMIT.
struct Relay {
    port: u16,
    armed: Arc<std::sync::Mutex<Option<Cut>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(server_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let armed = Arc::new(std::sync::Mutex::new(None));
        let accepting = tokio::spawn({
            let armed = armed.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await;
                    if let Ok(server) = server {
                        tokio::spawn(relay(client, server, armed.clone()));
                    }
                }
            }
        });
        Relay {
            port,
            armed,
            accepting,
        }
    }

    fn arm(&self, cut: Cut) {
        *self.armed.lock().expect("lock") = Some(cut);
    }

    fn fired(&self) -> bool {
        self.armed.lock().expect("lock").is_none()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn relay(
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    armed: Arc<std::sync::Mutex<Option<Cut>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let Ok(n @ 1..) = read else { return };
                let chunk = &up[..n];
                // A simple-protocol COMMIT: 'Q', its length, "COMMIT\0".
                let commit = chunk.windows(7).any(|w| w == b"COMMIT\0");
                let cut = if commit { armed.lock().expect("lock").take() } else { None };
                match cut {
                    Some(Cut::BeforeCommit) => return,
                    Some(Cut::AfterCommit) => {
                        let _ = server.write_all(chunk).await;
                        // Its answer means the server committed; the store
                        // never hears it.
                        let _ = server.read(&mut down).await;
                        return;
                    }
                    None => {
                        if server.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                }
            }
            read = server.read(&mut down) => {
                let Ok(n @ 1..) = read else { return };
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A COMMIT whose answer is lost may have committed or not; the writer
/// looks the transaction up before running anything again, so a group that
/// committed is answered as done (running it again would create its task
/// twice and fail), and one that did not is run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_without_an_answer_is_looked_up_and_never_applied_twice() {
    let cluster = Cluster::start().expect("cluster");
    let relay = Relay::start(cluster.port()).await;
    let store = PostgresStore::open(&format!(
        "postgres://tidewright@127.0.0.1:{}/postgres",
        relay.port
    ))
    .await
    .expect("open");
    create(&store, vec![new_task("log", "default", None)]).await;
    for (round, cut) in [Cut::AfterCommit, Cut::BeforeCommit]
        .into_iter()
        .enumerate()
    {
        relay.arm(cut);
        let id = format!("t{round}");
        let (created, written) = tokio::join!(
            store.create_tasks(vec![new_task(&id, "default", None)]),
            store.write(vec![log_event("log", round as u64 + 2, "line")]),
        );
        assert!(relay.fired(), "{cut:?}: the relay cut a session at COMMIT");
        assert_eq!(
            created.unwrap_or_else(|e| panic!("{cut:?}: create answered {e}")),
            vec![Created::New(id.clone())]
        );
        written
            .expect("answer")
            .unwrap_or_else(|e| panic!("{cut:?}: write answered {e}"));
        assert!(store.get_task(&id).await.expect("get").is_some());
    }
    let events = store.events_after("log", 1, 100).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3],
        "each write once"
    );
}

/// A developer's own server (`TIDEWRIGHT_TEST_POSTGRES_URL`) keeps none of the
/// databases the tests made, even one a store still has sessions on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_databases_on_a_given_server_are_dropped_afterwards() {
    let cluster = Cluster::start().expect("cluster");
    let given = Server::at(cluster.url("postgres"));
    let url = given.fresh_database().await.expect("database");
    let name = url.rsplit('/').next().expect("name").to_string();
    let store = PostgresStore::open(&url).await.expect("open");
    create(&store, vec![new_task("t1", "default", None)]).await;
    let db = admin(&cluster.url("postgres")).await;
    let count = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, i64>(0);
    let before = db
        .query(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("query");
    assert_eq!(count(before), 1);
    drop(given);
    let after = db
        .query(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("query");
    assert_eq!(count(after), 0, "{name} was left behind");
    drop(store);
}

/// A benchmark drops each run's database after the run: it is gone from
/// the server, a second drop is refused, and so is a database this
/// server did not make.
#[tokio::test]
async fn a_database_made_for_a_test_can_be_dropped_before_the_end() {
    let server = Server::from_env().expect("server");
    let url = server.fresh_database().await.expect("database");
    let name = url
        .split('?')
        .next()
        .and_then(|path| path.rsplit('/').next())
        .expect("name")
        .to_string();
    let store = PostgresStore::open(&url).await.expect("open");
    drop(store);
    server.drop_database(&url).await.expect("dropped");
    let exists = |name: String| {
        let url = url.clone();
        async move {
            let postgres = crate::throwaway::with_database(&url, "postgres");
            let db = admin(&postgres).await;
            db.query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
        }
    };
    assert_eq!(exists(name.clone()).await, 0, "{name} is still there");
    let again = server.drop_database(&url).await;
    assert!(again.is_err(), "a second drop of {name} was not refused");
    let elsewhere = crate::throwaway::with_database(&url, "postgres");
    assert!(
        server.drop_database(&elsewhere).await.is_err(),
        "dropping a database it did not make was not refused"
    );
}
