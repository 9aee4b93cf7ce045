//! The store's one writer, which commits queued jobs in groups on a thread
//! of its own or, when it is idle, a submit on the caller's thread; and the
//! checkpoint thread, which folds the write-ahead log back into the
//! database file and, with the writer, keeps it short.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use tidewright_store::fleet;
use tidewright_store::write_queue::{Ahead, Job, Queued, Reply};
use tidewright_store::{Created, Error, StateOutcome, Write};

use crate::batch::{apply_writes, change_state, create_tasks, to_json};
use crate::fault::Result;

/// Most jobs committed in one transaction: bounds the latency a burst adds.
const MAX_GROUP: usize = 512;

/// How often the WAL is folded back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// How long the log may grow, and what it keeps of its size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalLimits {
    /// A log this long (in frames, a page each) after a background
    /// checkpoint means commits keep it from restarting. The writer's own
    /// checkpoint syncs twice, a stall every commit queued behind it waits
    /// out: worth it a few times a second under a heavy load, not at a
    /// light one. 64 MiB of 4 KiB pages.
    pub(crate) long_frames: u64,
    /// What the log may keep of its size once it restarts (bytes): a
    /// burst's log is cut back, not kept at its largest.
    pub(crate) size_limit: i64,
}

impl Default for WalLimits {
    fn default() -> Self {
        WalLimits {
            long_frames: 16 * 1024,
            size_limit: 64 << 20,
        }
    }
}

/// What the checkpoint thread tells the writer.
pub(crate) struct WalState {
    pub(crate) limits: WalLimits,
    pub(crate) writer_done: AtomicBool,
    /// The log's length in frames at the last background checkpoint.
    frames: AtomicU64,
}

impl WalState {
    pub(crate) fn new(limits: WalLimits) -> Self {
        WalState {
            limits,
            writer_done: AtomicBool::new(false),
            frames: AtomicU64::new(0),
        }
    }
}

/// PASSIVE checkpoints never block the writer; they stop with it. They
/// copy the bulk of the log into the database, concurrently with commits.
pub(crate) fn run_checkpoints(conn: Connection, wal: &WalState) {
    while !wal.writer_done.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        match checkpoint(&conn) {
            Ok(frames) => wal.frames.store(frames, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

/// A PASSIVE checkpoint; answers the log's length in frames.
fn checkpoint(conn: &Connection) -> rusqlite::Result<u64> {
    let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
    Ok(frames.max(0) as u64)
}

/// The one connection that writes, shared by the writer's thread and the
/// callers that lead.
pub(crate) struct Writer {
    conn: Mutex<Connection>,
    ahead: Ahead,
    /// Whether callers may commit on their own threads: not when every
    /// commit is fsynced, as a caller's thread is one of the runtime's few
    /// and would stall everything else on it for the sync.
    leads: bool,
    /// Jobs committed by the callers that led: how often the hand-off was
    /// saved.
    pub(crate) led: AtomicU64,
}

impl Writer {
    pub(crate) fn new(conn: Connection, ahead: Ahead, leads: bool) -> Self {
        Writer {
            conn: Mutex::new(conn),
            ahead,
            leads,
            led: AtomicU64::new(0),
        }
    }

    /// Commits `job` on this thread when the writer is idle and nothing
    /// queued ahead of it waits: no thread is woken, and the caller's
    /// answer is ready when this returns. Gives the job back otherwise, to
    /// be queued. A commit here is as short as the writer's own with one
    /// job in it (no sync at synchronous=NORMAL; see [`Self::leads`]).
    pub(crate) fn lead(&self, job: Queued) -> Option<Queued> {
        if !self.leads {
            return Some(job);
        }
        let Ok(mut conn) = self.conn.try_lock() else {
            return Some(job);
        };
        if !self.ahead.none() {
            return Some(job);
        }
        commit_group(&mut conn, &mut vec![job]);
        self.led.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The writer loop: take every job that has queued up (up to a bound),
/// commit them in one transaction, then answer each in order. A caller
/// that leads holds the connection meanwhile; the jobs taken are counted
/// while it is held, so no leader commits ahead of one of them.
///
/// SQLite restarts the log from its start only when a write begins with
/// every frame already copied into the database. Under steady commits the
/// background checkpoint never catches the last ones (the log grew by
/// gigabytes a minute, each commit extending the file), so when it reports
/// a long log the writer copies the few frames left itself, between two
/// commits, and its next commit starts the log over.
pub(crate) fn run_writer(
    writer: &Writer,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    wal: &WalState,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut caught_up = std::time::Instant::now();
    while let Some(first) = queue.blocking_recv() {
        // A leader that panicked mid-commit left no transaction open (the
        // transaction rolls back as it unwinds): the connection is sound.
        let mut conn = writer.conn.lock().unwrap_or_else(|p| p.into_inner());
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        writer.ahead.taken(group.len());
        commit_group(&mut conn, &mut group);
        if caught_up.elapsed() >= CHECKPOINT_EVERY
            && wal.frames.load(Ordering::Relaxed) >= wal.limits.long_frames
        {
            caught_up = std::time::Instant::now();
            match checkpoint(&conn) {
                Ok(frames) => wal.frames.store(frames, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
    }
}

enum Answer {
    Created(Reply<Vec<Created>>, Result<Vec<Created>>),
    Written(Reply<()>, Result<()>),
    State(Reply<StateOutcome>, Result<StateOutcome>),
}

fn commit_group(conn: &mut Connection, group: &mut Vec<Queued>) {
    let mut answers = Vec::with_capacity(group.len());
    // Given back once the group is answered: until then its jobs count.
    let mut places = Vec::with_capacity(group.len());
    let outcome = (|| -> Result<()> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The fleet's events of the jobs that stay, in the order written.
        let mut fleet_entries = fleet::Entries::default();
        for Queued { job, place } in group.drain(..) {
            places.push(place);
            tx.execute_batch("SAVEPOINT job")?;
            match job {
                Job::Create(tasks, reply) => {
                    let result = create_tasks(&tx, &tasks);
                    end_savepoint(&tx, result.is_ok())?;
                    if let Ok(created) = &result {
                        for (task, outcome) in tasks.iter().zip(created) {
                            if matches!(outcome, Created::New(_)) {
                                task.events.iter().for_each(|e| fleet_entries.push(e));
                            }
                        }
                    }
                    answers.push(Answer::Created(reply, result));
                }
                Job::Write(writes, reply) => {
                    let result = apply_writes(&tx, &writes);
                    end_savepoint(&tx, result.is_ok())?;
                    if result.is_ok() {
                        for write in &writes {
                            match write {
                                Write::Create(task) => {
                                    task.events.iter().for_each(|e| fleet_entries.push(e))
                                }
                                Write::Event(event) => fleet_entries.push(event),
                                _ => {}
                            }
                        }
                    }
                    answers.push(Answer::Written(reply, result));
                }
                Job::State(change, reply) => {
                    let result = change_state(&tx, &change);
                    end_savepoint(&tx, result.is_ok())?;
                    answers.push(Answer::State(reply, result));
                }
            }
        }
        insert_fleet_rows(&tx, &fleet_entries)?;
        tx.commit()?;
        Ok(())
    })();
    // When the transaction fails, every job in it fails with it, each told
    // why; none was applied.
    let failed = outcome.err().map(|fault| {
        let e = Error::from(fault);
        tracing::error!(error = %e, "store commit failed");
        e
    });
    for answer in answers {
        // A receiver that is gone no longer cares; nothing to do then.
        match (answer, &failed) {
            (Answer::Created(reply, result), None) => drop(reply.send(result.map_err(Error::from))),
            (Answer::Written(reply, result), None) => drop(reply.send(result.map_err(Error::from))),
            (Answer::State(reply, result), None) => drop(reply.send(result.map_err(Error::from))),
            (Answer::Created(reply, _), Some(e)) => drop(reply.send(Err(e.clone()))),
            (Answer::Written(reply, _), Some(e)) => drop(reply.send(Err(e.clone()))),
            (Answer::State(reply, _), Some(e)) => drop(reply.send(Err(e.clone()))),
        }
    }
    drop(places);
}

/// The transaction's row(s) of the fleet's order (see `tidewright_store::fleet`):
/// the one writer numbers them as it commits, so commit numbers rise in
/// commit order.
fn insert_fleet_rows(conn: &Connection, entries: &fleet::Entries) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let last: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(commit_no), 0) FROM fleet")?
        .query_row([], |row| row.get(0))?;
    let now = tidewright_core::calendar::now_micros();
    for (commit, row) in entries.rows(last as u64) {
        conn.prepare_cached("INSERT INTO fleet (commit_no, events, at) VALUES (?1, ?2, ?3)")?
            .execute(params![
                commit as i64,
                to_json(&fleet::runs(row), "the fleet's events")?,
                now
            ])?;
    }
    Ok(())
}

/// Ends the savepoint a job ran in: keeps its changes, or undoes them so
/// one bad job fails alone while the rest of the group commits.
fn end_savepoint(conn: &Connection, keep: bool) -> Result<()> {
    if keep {
        conn.execute_batch("RELEASE job")?;
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;
    use tidewright_store::{TaskStore, WriteStore};

    use tidewright_store::AuditRecord;
    use tidewright_store::admission::Bound;
    use tidewright_store::conformance::new_task;

    use super::*;
    use crate::{Durability, SqliteStore};

    /// Commits that never let the writer idle kept the background
    /// checkpoint from ever catching up, and the log grew by gigabytes a
    /// minute. Now it outgrows its limit, restarts and is cut back while the
    /// commits go on, and every commit is kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_commits_that_never_pause_the_log_restarts_and_is_cut_back() {
        const SIZE_LIMIT: u64 = 1 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tidewright.db");
        let limits = WalLimits {
            long_frames: 256,
            size_limit: SIZE_LIMIT as i64,
        };
        let store = Arc::new(
            SqliteStore::open_at(&path, Durability::Process, Bound::default(), limits)
                .expect("open"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            writers.spawn(async move {
                let mut written = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let entry = AuditRecord {
                        actor: format!("writer-{n}"),
                        action: "task.submit".into(),
                        detail: "x".repeat(4000),
                        ..AuditRecord::default()
                    };
                    store
                        .write(vec![Write::Audit(entry)])
                        .await
                        .expect("answer")
                        .expect("commit");
                    written += 1;
                }
                written
            });
        }
        let wal = dir.path().join("tidewright.db-wal");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut longest, mut cut_back) = (0, false);
        while Instant::now() < deadline && !cut_back {
            let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            longest = longest.max(len);
            cut_back = longest > 2 * SIZE_LIMIT && len <= SIZE_LIMIT;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut written = 0;
        while let Some(count) = writers.join_next().await {
            written += count.expect("a writer");
        }
        assert!(
            cut_back,
            "the log grew to {longest} bytes and was never cut back to {SIZE_LIMIT}"
        );
        let stored: u64 = Connection::open(&path)
            .expect("open")
            .query_row("SELECT COUNT(*) FROM audit", [], |row| row.get(0))
            .expect("count");
        assert_eq!(stored, written, "every commit is kept");
    }

    fn audit(actor: &str) -> Write {
        Write::Audit(AuditRecord {
            actor: actor.into(),
            action: "task.submit".into(),
            ..AuditRecord::default()
        })
    }

    fn actors(path: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(path).expect("open");
        let mut rows = conn
            .prepare("SELECT actor FROM audit ORDER BY seq")
            .expect("prepare");
        rows.query_map([], |row| row.get(0))
            .expect("query")
            .map(|actor| actor.expect("an actor"))
            .collect()
    }

    #[tokio::test]
    async fn a_submit_to_an_idle_writer_commits_on_its_own_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
        for n in 0..20 {
            let task = new_task(&format!("t{n}"), "default", None);
            store.create_tasks(vec![task]).await.expect("created");
        }
        assert_eq!(store.writer.led.load(Ordering::Relaxed), 20);
        for n in 0..20 {
            let id = format!("t{n}");
            assert!(store.get_task(&id).await.expect("read").is_some(), "{id}");
        }
        // Every commit fsynced: the runtime's threads never wait on a sync.
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), Durability::Machine).expect("open");
        store
            .create_tasks(vec![new_task("t", "default", None)])
            .await
            .expect("created");
        assert_eq!(store.writer.led.load(Ordering::Relaxed), 0);
    }

    /// The engine's writes lead only when it asks (it has nothing else to
    /// do): then the commit is over when the call returns.
    #[tokio::test]
    async fn a_write_leads_an_idle_writer_only_when_asked_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), Durability::Process).expect("open");
        let mut led = store.write_leading(vec![audit("led")]);
        assert!(
            matches!(led.try_recv(), Ok(Ok(()))),
            "committed on this thread"
        );
        assert_eq!(store.writer.led.load(Ordering::Relaxed), 1);
        store
            .write(vec![audit("handed over")])
            .await
            .expect("answer")
            .expect("commit");
        assert_eq!(store.writer.led.load(Ordering::Relaxed), 1, "not led");
        assert_eq!(
            actors(&dir.path().join("tidewright.db")),
            ["led", "handed over"]
        );
    }

    /// A job handed to the writer's thread and not yet taken is ahead of a
    /// submit that would lead: the submit is queued behind it instead, and
    /// they commit in the order they were handed over.
    #[tokio::test]
    async fn a_submit_never_commits_ahead_of_a_job_queued_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tidewright.db");
        let conn = crate::open::open_connection(&path, Durability::Process).expect("open");
        conn.execute_batch(crate::schema::SCHEMA).expect("schema");
        crate::schema::migrate(&conn).expect("migrate");
        let (queue, receiver, ahead) =
            tidewright_store::write_queue::WriteQueue::leading(Bound::default());
        let queue = Arc::new(queue);
        let writer = Arc::new(Writer::new(conn, ahead, true));
        // The writer's thread has not started: the first write waits.
        let first = queue.write(vec![audit("first")]);
        let (decided, given_back) = tokio::sync::oneshot::channel();
        let second = tokio::spawn({
            let (queue, writer) = (queue.clone(), writer.clone());
            async move {
                queue
                    .submit_led(
                        |reply| Job::Write(vec![audit("second")], reply),
                        |job| {
                            let back = writer.lead(job);
                            let _ = decided.send(back.is_some());
                            back
                        },
                    )
                    .await
            }
        });
        assert!(given_back.await.expect("decided"), "it did not lead");
        let wal = Arc::new(WalState::new(WalLimits::default()));
        let thread = std::thread::spawn({
            let (writer, wal) = (writer.clone(), wal.clone());
            move || run_writer(&writer, receiver, &wal)
        });
        first.await.expect("answered").expect("committed");
        second.await.expect("joined").expect("committed");
        assert_eq!(actors(&path), ["first", "second"]);
        // Once the writer's thread has let go of the connection (it answers
        // before it does), with nothing ahead, the next one leads.
        let deadline = Instant::now() + Duration::from_secs(10);
        while writer.conn.try_lock().is_err() {
            assert!(
                Instant::now() < deadline,
                "the writer's thread never let go"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        queue
            .submit_led(
                |reply| Job::Write(vec![audit("third")], reply),
                |job| writer.lead(job),
            )
            .await
            .expect("committed");
        assert_eq!(writer.led.load(Ordering::Relaxed), 1);
        assert_eq!(actors(&path), ["first", "second", "third"]);
        drop(queue);
        thread
            .join()
            .expect("the writer's thread ends with its queue");
    }
}
