//! The SQLite store's own tests; the conformance suite runs here too.

use std::time::Duration;

use super::*;
use crate::schema::SCHEMA;
use tidewright_core::EventKind;
use tidewright_store::admission::Bound;
use tidewright_store::{AttemptWrite, Store, TaskWrite};

#[test]
fn durability_is_named_as_flags_name_it() {
    for name in Durability::NAMES {
        let parsed: Durability = name.parse().expect("a durability");
        assert_eq!(parsed.name(), name);
        assert_eq!(
            parsed,
            if name == "process" {
                Durability::Process
            } else {
                Durability::Machine
            }
        );
    }
    let refused = "fast".parse::<Durability>().expect_err("refused");
    assert_eq!(
        refused,
        "\"fast\" is not a durability; one of: process, machine"
    );
}
use tidewright_store::Expect;
use tidewright_store::conformance::new_task;

/// The store under the conformance suite: one file in a temp dir,
/// opened again from that file.
struct Sqlite {
    dir: tempfile::TempDir,
    durability: Durability,
}

impl Sqlite {
    fn new(durability: Durability) -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("tempdir"),
            durability,
        }
    }
}

#[async_trait]
impl tidewright_store::conformance::Backend for Sqlite {
    async fn open(&mut self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(self.dir.path(), self.durability).expect("open"))
    }
}

mod conformance {
    use super::*;
    tidewright_store::conformance_suite!(Sqlite::new(Durability::Process));
}

/// fsync on every commit changes nothing a reader sees.
mod conformance_fsynced {
    use super::*;
    tidewright_store::conformance_suite!(Sqlite::new(Durability::Machine));
}

#[tokio::test]
async fn a_database_from_before_tenants_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = Connection::open(dir.path().join("tidewright.db")).expect("open");
        // The tables as tidewright made them before tenants: SCHEMA itself,
        // which `migrate` extends.
        conn.execute_batch(SCHEMA).expect("old schema");
    }
    let store = SqliteStore::open(dir.path(), Durability::Process).expect("migrates");
    store
        .create_tasks(vec![new_task("t1", "default", None)])
        .await
        .expect("create");
    assert_eq!(
        store
            .get_task("t1")
            .await
            .expect("get")
            .expect("exists")
            .tenant,
        "default"
    );
    // Attempts gained their agent's session and cost.
    store
        .write(vec![Write::Attempt(AttemptWrite {
            task_id: "t1".into(),
            step_id: "a".into(),
            attempt: 1,
            session_id: Some("s-1".into()),
            cost: Some(Cost {
                usd: 0.5,
                ..Cost::default()
            }),
            ..AttemptWrite::default()
        })])
        .await
        .expect("answer")
        .expect("commit");
    let task = store.get_task("t1").await.expect("get").expect("exists");
    assert_eq!(task.cost.usd, 0.5);
}

#[tokio::test]
async fn a_stalled_database_makes_new_work_wait_then_refuses_it_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bound = Bound {
        max_queued: 3,
        wait: Duration::from_millis(200),
    };
    let store = SqliteStore::open_bounded(dir.path(), Durability::Process, bound).expect("open");
    store
        .create_tasks(vec![new_task("t1", "default", None)])
        .await
        .expect("create");
    // Another connection holds the write lock: the writer waits on it.
    let blocker = Connection::open(dir.path().join("tidewright.db")).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let event = |seq: u64| {
        Write::Event(Event {
            task_id: "t1".into(),
            seq,
            at: 0,
            kind: EventKind::TaskState {
                state: TaskState::Running,
                message: String::new(),
            },
        })
    };
    // The control plane's own writes are taken, past the bound too.
    let commits: Vec<Commit> = (2..=5).map(|seq| store.write(vec![event(seq)])).collect();
    // New work waits for room, then is told to back off.
    match store
        .create_tasks(vec![new_task("t2", "default", None)])
        .await
    {
        Err(Error::Overloaded(message)) => {
            assert!(message.contains("writes are waiting"), "{message}")
        }
        other => panic!("expected overloaded, got {other:?}"),
    }
    let put = StateChange::Put {
        key: StateKey {
            tenant: "default".into(),
            scope: "s".into(),
            key: "k".into(),
        },
        value_json: "1".into(),
        expect: Expect::Any,
        expires_at: 0,
        now: 1,
    };
    assert!(matches!(
        store.change_state(put.clone()).await,
        Err(Error::Overloaded(_))
    ));
    // Once the database moves, everything queued commits and there is
    // room again; what was refused was never stored.
    blocker.execute_batch("ROLLBACK").expect("unlock");
    for commit in commits {
        commit.await.expect("answer").expect("committed");
    }
    store
        .create_tasks(vec![new_task("t3", "default", None)])
        .await
        .expect("room again");
    store.change_state(put).await.expect("room again");
    assert!(store.get_task("t2").await.expect("get").is_none());
    assert_eq!(
        store
            .get_task("t1")
            .await
            .expect("get")
            .expect("t1")
            .last_seq,
        5
    );
}

#[test]
fn a_file_that_is_no_database_is_corrupt_and_an_unusable_directory_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tidewright.db"), vec![7u8; 8192]).expect("garbage");
    match SqliteStore::open(dir.path(), Durability::Process) {
        Err(Error::Corrupt(message)) => {
            assert!(message.contains("not a database"), "{message}")
        }
        Err(other) => panic!("expected corrupt, got {other:?}"),
        Ok(_) => panic!("opened garbage"),
    }
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("file");
    match SqliteStore::open(&file, Durability::Process) {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains("data directory"), "{message}")
        }
        Err(other) => panic!("expected unavailable, got {other:?}"),
        Ok(_) => panic!("opened a file as a directory"),
    }
}

#[test]
fn sqlite_errors_become_what_a_caller_can_do() {
    let failure = |code| {
        Error::from(Fault::Driver(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        )))
    };
    assert!(matches!(
        failure(rusqlite::ffi::SQLITE_BUSY),
        Error::Unavailable(_)
    ));
    assert!(matches!(
        failure(rusqlite::ffi::SQLITE_FULL),
        Error::Unavailable(_)
    ));
    assert!(matches!(
        failure(rusqlite::ffi::SQLITE_IOERR),
        Error::Unavailable(_)
    ));
    assert!(matches!(
        failure(rusqlite::ffi::SQLITE_CONSTRAINT),
        Error::Conflict(_)
    ));
    assert!(matches!(
        failure(rusqlite::ffi::SQLITE_CORRUPT),
        Error::Corrupt(_)
    ));
    let unknown_state = Error::from(Fault::from(
        "sideways".parse::<TaskState>().expect_err("not a state"),
    ));
    assert!(matches!(unknown_state, Error::Corrupt(_)));
}

#[tokio::test]
async fn a_database_from_before_retention_is_rewritten_once_to_give_space_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tidewright.db");
    {
        // As tidewright made it before retention: no incremental auto-vacuum, a
        // fleet order without times.
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(SCHEMA).expect("old schema");
        conn.execute("INSERT INTO fleet (commit_no, events) VALUES (1, '[]')", [])
            .expect("a fleet row");
    }
    let before = tidewright_core::calendar::now_micros();
    drop(SqliteStore::open(dir.path(), Durability::Process).expect("migrates"));
    let conn = Connection::open(&path).expect("open");
    let auto_vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
        .expect("pragma");
    assert_eq!(auto_vacuum, 2, "incremental");
    let at: i64 = conn
        .query_row("SELECT at FROM fleet WHERE commit_no = 1", [], |row| {
            row.get(0)
        })
        .expect("dated");
    assert!(
        at >= before,
        "dated at the upgrade, so kept a window from it"
    );
}

#[tokio::test]
async fn expired_tasks_give_their_space_back_to_the_file_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
    let line = "x".repeat(2000);
    let ids: Vec<String> = (0..200).map(|i| format!("t{i:03}")).collect();
    store
        .create_tasks(ids.iter().map(|id| new_task(id, "team", None)).collect())
        .await
        .expect("create");
    let mut writes = Vec::new();
    for id in &ids {
        for seq in 2..12 {
            writes.push(Write::Event(Event {
                task_id: id.clone(),
                seq,
                at: 1,
                kind: EventKind::Log {
                    step: "a".into(),
                    attempt: 1,
                    stream: tidewright_core::LogStream::Stdout,
                    line: line.clone(),
                },
            }));
        }
        writes.push(Write::Task(TaskWrite {
            id: id.clone(),
            state: TaskState::Succeeded,
            message: String::new(),
            started_at: None,
            finished_at: Some(5),
        }));
    }
    store.write(writes).await.expect("answer").expect("commit");
    let pages = || {
        let conn = Connection::open(store.path()).expect("open");
        conn.query_row("PRAGMA page_count", [], |row| row.get::<_, i64>(0))
            .expect("pages")
    };
    let full = pages();
    let rules = tidewright_store::retention::Retention {
        default: Some(1),
        ..Default::default()
    };
    let expiring = store.expiring(&rules, 100, 1000).await.expect("expiring");
    assert_eq!(expiring.len(), 200);
    store
        .write(vec![
            Write::Expire {
                tasks: expiring,
                at: 100,
            },
            Write::Trim(tidewright_store::retention::Trim {
                limit: 100,
                ..Default::default()
            }),
        ])
        .await
        .expect("answer")
        .expect("commit");
    let emptied = pages();
    assert!(
        emptied * 4 < full,
        "{full} pages with the logs, {emptied} once they went"
    );
}

#[test]
fn finding_expired_tasks_reads_through_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
    let conn = Connection::open(store.path()).expect("open");
    let plan = |sql: &str| {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan")
            .query_map([], |row| row.get::<_, String>(3))
            .expect("rows")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan")
            .join("; ")
    };
    let by_tenant = plan(
        "SELECT id, tenant, finished_at FROM tasks
         WHERE tenant = 'a' AND keep_for IS NULL AND finished_at > 0 AND finished_at < 5
         ORDER BY finished_at LIMIT 10",
    );
    assert!(
        by_tenant.contains("USING INDEX tasks_finished"),
        "{by_tenant}"
    );
    let own = plan(
        "SELECT id, tenant, finished_at FROM tasks
         WHERE keep_for > 0 AND finished_at > 0 AND finished_at + keep_for < 5
         ORDER BY finished_at + keep_for LIMIT 10",
    );
    assert!(own.contains("USING INDEX tasks_kept"), "{own}");
}

fn state_event(task_id: &str, seq: u64) -> Event {
    Event {
        task_id: task_id.into(),
        seq,
        at: 1_000 + seq as i64,
        kind: EventKind::TaskState {
            state: TaskState::Running,
            message: format!("{task_id} {seq}"),
        },
    }
}

/// The events one write gives each task are one row per task, however
/// they interleave (the conformance suite reads them back every way).
#[tokio::test]
async fn the_events_of_one_task_in_one_write_are_one_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
    tidewright_store::conformance::write_interleaved(&store).await;
    let conn = Connection::open(dir.path().join("tidewright.db")).expect("open");
    let rows: Vec<(String, i64, i64)> = conn
        .prepare("SELECT task_id, seq, last FROM event_groups WHERE seq > 1 ORDER BY task_id")
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(rows, [("t1".into(), 2, 4), ("t2".into(), 2, 3)]);
    // A number stored already fails the write, as a repeated event did.
    let again = store
        .write(vec![Write::Event(state_event("t2", 2))])
        .await
        .expect("answer");
    assert!(again.is_err(), "{again:?}");
}

/// A database whose events were a row each is carried over: each becomes a
/// group of one, read back as before.
#[tokio::test]
async fn a_database_with_an_event_a_row_is_carried_over_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tidewright.db");
    {
        let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
        store
            .create_tasks(vec![new_task("t1", "default", None)])
            .await
            .expect("create");
    }
    {
        // As tidewright stored events before groups.
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "CREATE TABLE events (task_id TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
                 kind TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (task_id, seq)) WITHOUT ROWID;
             DELETE FROM event_groups;",
        )
        .expect("the old table");
        for seq in 1..=3u64 {
            let event = state_event("t1", seq);
            conn.execute(
                "INSERT INTO events (task_id, seq, at, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    event.task_id,
                    seq as i64,
                    event.at,
                    event.kind.name(),
                    serde_json::to_string(&event.kind).expect("json")
                ],
            )
            .expect("an old event");
        }
    }
    let store = SqliteStore::open(dir.path(), Durability::Process).expect("migrates");
    let events = store.events_after("t1", 0, 100).await.expect("read");
    assert_eq!(
        events,
        (1..=3)
            .map(|seq| state_event("t1", seq))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .get_task("t1")
            .await
            .expect("get")
            .expect("kept")
            .last_seq,
        3
    );
    let conn = Connection::open(&path).expect("open");
    let old: bool = conn
        .prepare("SELECT 1 FROM sqlite_schema WHERE name = 'events'")
        .expect("prepare")
        .exists([])
        .expect("query");
    assert!(!old, "the old table is gone");
}

/// Replay from late in a long task starts at the row holding the number,
/// found by the key, not by walking the task's rows from its first.
#[test]
fn replay_finds_its_first_row_by_the_key() {
    let conn = Connection::open_in_memory().expect("open");
    conn.execute_batch(SCHEMA).expect("schema");
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", crate::events::AFTER))
        .expect("prepare")
        .query_map(params!["t1", 5000, 10], |row| row.get::<_, String>(3))
        .expect("plan")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    let searches = plan
        .iter()
        .filter(|step| step.contains("SEARCH event_groups USING PRIMARY KEY (task_id=? AND seq"))
        .count();
    assert_eq!(searches, 2, "{plan:#?}");
}

/// The fleet's order stores a commit's entries as runs of a task's numbers;
/// a row written before runs (an entry each) still reads back.
#[tokio::test]
async fn the_fleets_order_is_stored_as_runs_and_older_rows_still_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
    store
        .create_tasks(vec![new_task("t1", "default", None)])
        .await
        .expect("create");
    store
        .write(vec![
            Write::Event(state_event("t1", 2)),
            Write::Event(state_event("t1", 3)),
        ])
        .await
        .expect("answer")
        .expect("commit");
    let conn = Connection::open(dir.path().join("tidewright.db")).expect("open");
    let newest: String = conn
        .query_row(
            "SELECT events FROM fleet ORDER BY commit_no DESC LIMIT 1",
            [],
            |row| row.get(0),
        )
        .expect("a row");
    assert_eq!(newest, r#"[["t1",2,3]]"#);
    // As tidewright wrote the row before runs.
    conn.execute(
        "UPDATE fleet SET events = '[[\"t1\",2],[\"t1\",3]]' WHERE events = ?1",
        [&newest],
    )
    .expect("an older row");
    let page = store.fleet_events_after(0, None, 100).await.expect("fleet");
    let seqs: Vec<u64> = page.events.iter().map(|(_, e)| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(
        store.fleet_head().await.expect("head"),
        page.events.last().map(|(at, _)| *at).expect("an event")
    );
}
