//! The writer: one task and one connection that commit whatever has queued
//! up in one transaction (group commit), in the order it was handed over.
//!
//! A group first runs whole, batched ([`batch`]); if that fails on a bad
//! row, it runs again with a savepoint per job, so the bad job fails alone
//! and the rest commit. When the connection is lost, the server has rolled
//! the transaction back, so the group runs once more on a new connection.
//! When that fails too, the database is away: requests bringing new work
//! get [`Error::Unavailable`] at once, while the control plane's own writes
//! (which cannot be refused without losing a decision already made) wait,
//! in order, and commit once PostgreSQL is back; nothing after them
//! commits before them. A connection lost during COMMIT leaves the outcome
//! unknown until the transaction's id can be looked up, which is done
//! before anything is run again, so nothing is applied twice.

use std::collections::VecDeque;
use std::time::Duration;

use tidewright_store::Error;
use tidewright_store::write_queue::{Job, Queued};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_postgres::{Config, SimpleQueryMessage};

use crate::batch::{self, Done, Work};
use crate::conn::Conn;
use crate::fault::{Fault, Result};

/// Most jobs committed in one transaction: bounds the latency a burst adds.
const MAX_GROUP: usize = 512;
/// How long to wait before trying an unreachable database again, doubling
/// up to the most.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MOST_BACKOFF: Duration = Duration::from_secs(2);
/// How long a lookup waits for an unanswered transaction to end before the
/// writes in it are held and it is looked up again later.
const UNDECIDED: Duration = Duration::from_secs(10);

type Answer = std::result::Result<Done, Error>;

/// What the writer does for a queued job, and how it answers one: the
/// queue is the store contract's, the work this backend's.
trait Commits {
    fn work(&self) -> Work<'_>;
    fn answer(self, answer: Answer);
}

impl Commits for Job {
    fn work(&self) -> Work<'_> {
        match self {
            Job::Create(tasks, _) => Work::Create(tasks),
            Job::Write(writes, _) => Work::Write(writes),
            Job::State(change, _) => Work::State(change),
        }
    }

    fn answer(self, answer: Answer) {
        let mismatch =
            || Error::Unavailable("the writer answered a job with another's result".into());
        // A receiver that is gone no longer cares; nothing to do then.
        match self {
            Job::Create(_, reply) => drop(reply.send(answer.and_then(|done| match done {
                Done::Created(created) => Ok(created),
                _ => Err(mismatch()),
            }))),
            Job::Write(_, reply) => drop(reply.send(answer.map(|_| ()))),
            Job::State(_, reply) => drop(reply.send(answer.and_then(|done| match done {
                Done::State(outcome) => Ok(outcome),
                _ => Err(mismatch()),
            }))),
        }
    }
}

/// The control plane's writes, waiting for the database to come back.
struct Held {
    jobs: Vec<Queued>,
    /// The transaction they were last committed in, when its COMMIT got no
    /// answer: looked up before they are run again.
    unknown: Option<String>,
}

/// How a group's transaction ended, short of committing.
enum GroupFault {
    /// The connection is gone. `unknown` is the transaction's id when its
    /// COMMIT was sent, with the answers it would give.
    Lost {
        fault: Fault,
        unknown: Option<(String, Vec<Answer>)>,
    },
    /// The transaction failed as a whole (its COMMIT refused): every job
    /// fails with this.
    Failed(Error),
}

struct Writer {
    config: Config,
    conn: Option<Conn>,
    /// Why the database was last found away, for the answers while it is.
    away: String,
    /// Tells the store's callers whether it is away, so new work is
    /// refused before it waits for room in the queue.
    status: watch::Sender<Option<String>>,
    /// What opens each transaction ([`begin_sql`]), made once.
    begin: std::sync::Arc<str>,
}

/// Starts the writer on a thread of its own, with its connection, once
/// that connection is open. Every group waits on round trips to the
/// database while it holds its transaction open; on the process's shared
/// runtime each of those waited behind whatever else was ready to run (the
/// engine, gRPC), and the database idled meanwhile.
pub(crate) async fn start(
    config: Config,
    queue: mpsc::UnboundedReceiver<Queued>,
    status: watch::Sender<Option<String>>,
    fence: Option<i64>,
) -> std::result::Result<(), Error> {
    let (opened, open) = oneshot::channel();
    std::thread::Builder::new()
        .name("tidewright-postgres-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = opened.send(Err(Error::Unavailable(format!(
                        "the postgres writer could not start: {e}"
                    ))));
                    return;
                }
            };
            runtime.block_on(async move {
                match Conn::open_writer(&config).await {
                    Ok(conn) => {
                        let _ = opened.send(Ok(()));
                        run(config, conn, queue, status, fence).await;
                    }
                    Err(fault) => {
                        let _ = opened.send(Err(Error::from(fault)));
                    }
                }
            });
        })
        .map_err(|e| Error::Unavailable(format!("the postgres writer could not start: {e}")))?;
    open.await.map_err(|_| Error::Closed)?
}

/// Runs until every handle to the store is gone.
async fn run(
    config: Config,
    conn: Conn,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    status: watch::Sender<Option<String>>,
    fence: Option<i64>,
) {
    let mut writer = Writer {
        config,
        conn: Some(conn),
        away: String::new(),
        status,
        begin: begin_sql(fence).into(),
    };
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut backoff = FIRST_BACKOFF;
    let mut retry_at = Instant::now();
    loop {
        if !held.is_empty() {
            if Instant::now() >= retry_at {
                let Some(Held { jobs, unknown }) = held.pop_front() else {
                    continue;
                };
                match writer.commit(jobs, unknown).await {
                    None => backoff = FIRST_BACKOFF,
                    Some(again) => {
                        held.push_front(again);
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(MOST_BACKOFF);
                    }
                }
                continue;
            }
            // Away: answer new work at once; the control plane's writes
            // queue behind the held ones.
            tokio::select! {
                _ = tokio::time::sleep_until(retry_at) => {}
                queued = queue.recv() => match queued {
                    None => return,
                    Some(queued) if queued.job.refusable() => {
                        let e = Error::Unavailable(format!("{}; nothing was written: retry later", writer.away));
                        queued.job.answer(Err(e));
                    }
                    Some(queued) => held.push_back(Held { jobs: vec![queued], unknown: None }),
                }
            }
            continue;
        }
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut group = Vec::with_capacity(MAX_GROUP);
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(queued) => group.push(queued),
                Err(_) => break,
            }
        }
        if let Some(again) = writer.commit(group, None).await {
            held.push_back(again);
            retry_at = Instant::now() + backoff;
            backoff = (backoff * 2).min(MOST_BACKOFF);
        }
    }
}

impl Writer {
    /// The connection, opened again when the server dropped it.
    async fn connection(&mut self) -> Result<&mut Conn> {
        if self.conn.as_ref().is_none_or(Conn::is_closed) {
            self.conn = None;
            self.conn = Some(Conn::open_writer(&self.config).await?);
        }
        self.conn.as_mut().ok_or(Fault::Store(Error::Closed))
    }

    /// Commits `jobs` and answers them; or, when the database cannot be
    /// reached, answers the new work as unavailable and gives back the
    /// control plane's writes to try again later.
    async fn commit(&mut self, jobs: Vec<Queued>, unknown: Option<String>) -> Option<Held> {
        let mut unknown: Option<(String, Option<Vec<Answer>>)> = unknown.map(|xid| (xid, None));
        let mut last = Error::Unavailable("postgres: the connection was lost".into());
        let begin = self.begin.clone();
        // Once, and once more on a new connection after losing one.
        for _ in 0..2 {
            let conn = match self.connection().await {
                Ok(conn) => conn,
                Err(fault) => {
                    last = Error::from(fault);
                    break;
                }
            };
            if let Some((xid, answers)) = unknown.take() {
                match committed(conn, &xid).await {
                    Ok(Some(true)) => {
                        let answers = answers
                            .unwrap_or_else(|| jobs.iter().map(|_| Ok(Done::Written)).collect());
                        answer(jobs, answers);
                        self.reachable();
                        return None;
                    }
                    // Rolled back: run it again.
                    Ok(Some(false)) => {}
                    // Still undecided: kept, and looked up again later.
                    Ok(None) => {
                        unknown = Some((xid, answers));
                        last = Error::Unavailable(
                            "postgres: a transaction whose COMMIT went unanswered is still in progress"
                                .into(),
                        );
                        break;
                    }
                    Err(fault) if fault.lost_connection() => {
                        self.conn = None;
                        unknown = Some((xid, answers));
                        last = Error::from(fault);
                        continue;
                    }
                    Err(fault) => {
                        self.conn = None;
                        fail(jobs, Error::from(fault));
                        self.reachable();
                        return None;
                    }
                }
            }
            let works: Vec<Work<'_>> = jobs.iter().map(|q| q.job.work()).collect();
            let outcome = attempt(conn, &works, &begin).await;
            drop(works);
            match outcome {
                Ok(answers) => {
                    answer(jobs, answers);
                    self.reachable();
                    return None;
                }
                Err(GroupFault::Failed(e)) => {
                    tracing::error!(error = %e, "store commit failed");
                    // Whatever state the session is in, a new one is clean.
                    self.conn = None;
                    fail(jobs, e);
                    self.reachable();
                    return None;
                }
                Err(GroupFault::Lost { fault, unknown: u }) => {
                    last = Error::from(fault);
                    tracing::warn!(error = %last, "lost the connection to postgres while committing");
                    self.conn = None;
                    unknown = u.map(|(xid, answers)| (xid, Some(answers)));
                }
            }
        }
        self.away = last.to_string();
        self.set_aside(jobs, unknown.map(|(xid, _)| xid))
    }

    /// The database answered: new work is taken again.
    fn reachable(&self) {
        self.status.send_if_modified(|away| away.take().is_some());
    }

    /// The database is away: new work is told so; the control plane's
    /// writes are kept, with the transaction to look up if there is one.
    fn set_aside(&self, jobs: Vec<Queued>, unknown: Option<String>) -> Option<Held> {
        tracing::warn!(reason = %self.away, "postgres is unreachable; the control plane's writes wait until it is back");
        self.status.send_replace(Some(self.away.clone()));
        let mut kept = Vec::new();
        for queued in jobs {
            if !queued.job.refusable() {
                kept.push(queued);
                continue;
            }
            let message = if unknown.is_some() {
                format!(
                    "{}; the connection was lost while committing, so this may have been applied: retry with the same idempotency key",
                    self.away
                )
            } else {
                format!("{}; nothing was written: retry later", self.away)
            };
            queued.job.answer(Err(Error::Unavailable(message)));
        }
        (!kept.is_empty()).then_some(Held {
            jobs: kept,
            unknown,
        })
    }
}

fn answer(jobs: Vec<Queued>, answers: Vec<Answer>) {
    for (queued, answer) in jobs.into_iter().zip(answers) {
        queued.job.answer(answer);
        // Only now, answered, does the job leave the queue's count.
        drop(queued.place);
    }
}

fn fail(jobs: Vec<Queued>, e: Error) {
    for queued in jobs {
        queued.job.answer(Err(e.clone()));
        drop(queued.place);
    }
}

/// Whether the transaction `xid` committed. One still in progress (the
/// server has not yet noticed its connection is gone, or is still making
/// its COMMIT durable) would commit later if taken for rolled back and run
/// again: its session is ended, and the question asked again until the
/// transaction has ended one way or the other; `None` if it still has not
/// after [`UNDECIDED`], to be asked again later.
async fn committed(conn: &mut Conn, xid: &str) -> Result<Option<bool>> {
    let statement = conn
        .statement("SELECT txid_status($1::text::bigint)")
        .await?;
    let deadline = Instant::now() + UNDECIDED;
    loop {
        let row = conn.client.query_one(&statement, &[&xid]).await?;
        match row.get::<_, Option<String>>(0).as_deref() {
            Some("in progress") if Instant::now() < deadline => {
                // Sessions show the transaction id's low 32 bits.
                conn.client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE backend_xid::text::bigint = $1::text::bigint % 4294967296",
                        &[&xid],
                    )
                    .await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some("in progress") => return Ok(None),
            status => return Ok(Some(status == Some("committed"))),
        }
    }
}

/// What opens a transaction and reads its id: fenced with the leader's
/// epoch when there is one, in the same round trip.
fn begin_sql(fence: Option<i64>) -> String {
    match fence {
        Some(epoch) => {
            format!("BEGIN; SELECT txid_current()::text; SELECT tidewright_fence({epoch})")
        }
        None => "BEGIN; SELECT txid_current()::text".to_string(),
    }
}

/// Opens a transaction with `sql` ([`begin_sql`]); its id, to look up if
/// its COMMIT goes unanswered.
async fn begin(conn: &mut Conn, sql: &str) -> std::result::Result<String, GroupFault> {
    let messages = conn
        .client
        .simple_query(sql)
        .await
        .map_err(|e| classify(e.into()))?;
    messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| {
            GroupFault::Failed(Error::Unavailable("postgres gave no transaction id".into()))
        })
}

/// Statements that only steer the transaction.
async fn steer(conn: &mut Conn, sql: &str) -> std::result::Result<(), GroupFault> {
    conn.client
        .batch_execute(sql)
        .await
        .map_err(|e| classify(e.into()))
}

/// A failure outside any one job's work: the whole group's.
fn classify(fault: Fault) -> GroupFault {
    if fault.lost_connection() {
        GroupFault::Lost {
            fault,
            unknown: None,
        }
    } else {
        GroupFault::Failed(fault.into())
    }
}

/// Commits; a COMMIT without an answer leaves `answers` pending on the
/// transaction's fate.
async fn end(
    conn: &mut Conn,
    xid: String,
    answers: Vec<Answer>,
) -> std::result::Result<Vec<Answer>, GroupFault> {
    match conn.client.batch_execute("COMMIT").await {
        Ok(()) => Ok(answers),
        Err(e) => {
            let fault = Fault::from(e);
            if fault.lost_connection() {
                Err(GroupFault::Lost {
                    fault,
                    unknown: Some((xid, answers)),
                })
            } else {
                Err(GroupFault::Failed(fault.into()))
            }
        }
    }
}

/// Runs a group in one transaction: batched whole first; when a job fails,
/// again with a savepoint per job so it fails alone.
async fn attempt(
    conn: &mut Conn,
    works: &[Work<'_>],
    begin_sql: &str,
) -> std::result::Result<Vec<Answer>, GroupFault> {
    let xid = begin(conn, begin_sql).await?;
    match batch::apply(conn, works).await {
        Ok(done) => return end(conn, xid, done.into_iter().map(Ok).collect()).await,
        Err(fault) if fault.lost_connection() => return Err(classify(fault)),
        Err(fault) => {
            tracing::debug!(error = %Error::from(fault), "a job of the group failed; running each in its own savepoint");
            steer(conn, "ROLLBACK").await?;
        }
    }
    let xid = begin(conn, begin_sql).await?;
    let mut answers = Vec::with_capacity(works.len());
    for work in works {
        steer(conn, "SAVEPOINT job").await?;
        match batch::apply(conn, std::slice::from_ref(work)).await {
            Ok(mut done) => {
                steer(conn, "RELEASE job").await?;
                answers.push(Ok(done.pop().unwrap_or(Done::Written)));
            }
            Err(fault) if fault.lost_connection() => return Err(classify(fault)),
            Err(fault) => {
                steer(conn, "ROLLBACK TO job; RELEASE job").await?;
                answers.push(Err(Error::from(fault)));
            }
        }
    }
    end(conn, xid, answers).await
}
