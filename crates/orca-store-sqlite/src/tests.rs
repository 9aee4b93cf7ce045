//! The SQLite store's own tests; the conformance suite runs here too.

use std::time::Duration;

use super::*;
use crate::schema::SCHEMA;
use orca_store::AttemptWrite;
use orca_store::admission::Bound;

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
use orca_store::Expect;
use orca_store::conformance::new_task;

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
impl orca_store::conformance::Backend for Sqlite {
    async fn open(&mut self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(self.dir.path(), self.durability).expect("open"))
    }
}

mod conformance {
    use super::*;
    orca_store::conformance_suite!(Sqlite::new(Durability::Process));
}

/// fsync on every commit changes nothing a reader sees.
mod conformance_fsynced {
    use super::*;
    orca_store::conformance_suite!(Sqlite::new(Durability::Machine));
}

#[tokio::test]
async fn a_database_from_before_tenants_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = Connection::open(dir.path().join("orca.db")).expect("open");
        // The tables as orca made them before tenants: SCHEMA itself,
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
    let blocker = Connection::open(dir.path().join("orca.db")).expect("open");
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
    std::fs::write(dir.path().join("orca.db"), vec![7u8; 8192]).expect("garbage");
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
        Error::from(Fault::Sqlite(rusqlite::Error::SqliteFailure(
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
