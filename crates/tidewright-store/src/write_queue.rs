//! The write queue every backend puts in front of its one writer: jobs in
//! the order they were handed over (the ordering promise of [`crate`]),
//! each answered once its transaction committed or failed, and held to the
//! [`Admission`] bound. A backend owns only the side that commits.
//!
//! A backend whose commit is cheap enough to run on a caller's thread may
//! let new work *lead* ([`WriteQueue::leading`]): a caller that finds the
//! writer idle, with nothing queued ahead of it, commits its own job on its
//! own thread, instead of handing it to the writer's thread and waiting to
//! be woken (two hand-offs between threads on every submit of a quiet
//! control plane). Under load the writer's thread is busy, callers queue,
//! and groups form as before.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::admission::{Admission, Bound, Place};
use crate::{Commit, Created, Error, NewTask, Result, StateChange, StateOutcome, Write};

/// What a writer commits: new tasks, the control plane's writes, or a
/// change of shared state.
pub enum Job {
    Create(Vec<NewTask>, Reply<Vec<Created>>),
    Write(Vec<Write>, Reply<()>),
    State(StateChange, Reply<StateOutcome>),
}

impl Job {
    /// New work, which a backend may refuse while its database is away;
    /// the control plane's writes never are, as dropping one would lose a
    /// decision already made.
    pub fn refusable(&self) -> bool {
        !matches!(self, Job::Write(..))
    }
}

/// Where a job's answer goes, once its transaction committed or failed.
pub type Reply<T> = oneshot::Sender<Result<T>>;

/// A job with its place in the bounded queue, given back once answered.
pub struct Queued {
    pub job: Job,
    pub place: Place,
}

/// The side that hands jobs over; the writer holds the receiver.
pub struct WriteQueue {
    jobs: mpsc::UnboundedSender<Queued>,
    admission: Admission,
    /// Jobs handed to the writer's thread that it has not yet taken into a
    /// group, when callers may lead.
    ahead: Option<Arc<AtomicUsize>>,
}

/// What a leader must know of the writer's thread: whether any job handed
/// over is still waiting to be taken. The writer counts what it takes
/// while it holds what a leader must hold to commit, so a leader that
/// finds nothing ahead knows that every job handed over before its own has
/// committed: the order of the queue holds across both ways to commit.
pub struct Ahead(Arc<AtomicUsize>);

impl Ahead {
    /// The writer took `jobs` more into the group it is committing.
    pub fn taken(&self, jobs: usize) {
        self.0.fetch_sub(jobs, Ordering::SeqCst);
    }

    /// Whether no job waits to be taken.
    pub fn none(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

impl WriteQueue {
    /// A queue held to `bound`, and the receiver its writer commits from.
    pub fn new(bound: Bound) -> (WriteQueue, mpsc::UnboundedReceiver<Queued>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let admission = Admission::new(bound);
        let ahead = None;
        (
            WriteQueue {
                jobs,
                admission,
                ahead,
            },
            queue,
        )
    }

    /// [`Self::new`], for a writer that lets callers lead
    /// ([`Self::submit_led`]): what it must count as it takes jobs.
    pub fn leading(bound: Bound) -> (WriteQueue, mpsc::UnboundedReceiver<Queued>, Ahead) {
        let (mut queue, receiver) = Self::new(bound);
        let ahead = Arc::new(AtomicUsize::new(0));
        queue.ahead = Some(ahead.clone());
        (queue, receiver, Ahead(ahead))
    }

    /// Queues the control plane's writes: never refused, never waiting.
    pub fn write(&self, batch: Vec<Write>) -> Commit {
        self.write_led(batch, Some)
    }

    /// [`Self::write`], offering the job to `lead` first (see
    /// [`Self::submit_led`]): the commit may be over when this returns.
    pub fn write_led(
        &self,
        batch: Vec<Write>,
        lead: impl FnOnce(Queued) -> Option<Queued>,
    ) -> Commit {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            job: Job::Write(batch, reply),
            place: self.admission.always(),
        };
        if let Some(Queued {
            job: Job::Write(_, reply),
            ..
        }) = lead(queued).and_then(|queued| self.hand_over(queued))
        {
            drop(reply.send(Err(Error::Closed)));
        }
        answer
    }

    /// Hands a job to the writer's thread; gives it back when the writer
    /// is gone.
    fn hand_over(&self, queued: Queued) -> Option<Queued> {
        // Counted before it is sent: a leader must never find a job in
        // the channel uncounted.
        if let Some(ahead) = &self.ahead {
            ahead.fetch_add(1, Ordering::SeqCst);
        }
        let mpsc::error::SendError(back) = self.jobs.send(queued).err()?;
        if let Some(ahead) = &self.ahead {
            ahead.fetch_sub(1, Ordering::SeqCst);
        }
        Some(back)
    }

    /// Queues new work once there is room, and answers what it committed.
    pub async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T> {
        let place = self.admission.admit().await?;
        self.send(place, job, Some).await
    }

    /// [`Self::submit`], unless `refused` says why not first (a database
    /// that is away): then nothing is queued.
    pub async fn submit_unless<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
        refused: impl Future<Output = Error>,
    ) -> Result<T> {
        let place = self.admit_unless(refused).await?;
        self.send(place, job, Some).await
    }

    /// Waits for room for new work without queueing any (see
    /// [`crate::WriteStore::wait_for_room`]), unless `refused` says why not
    /// first.
    pub async fn wait_for_room(&self, refused: impl Future<Output = Error>) -> Result<()> {
        self.admit_unless(refused).await.map(drop)
    }

    /// A place for new work, unless `refused` says why not first.
    async fn admit_unless(&self, refused: impl Future<Output = Error>) -> Result<Place> {
        tokio::select! {
            biased;
            why = refused => Err(why),
            place = self.admission.admit() => place,
        }
    }

    /// [`Self::submit`], offering the job to `lead` first: it commits the
    /// job on this thread and answers it when the writer is idle with
    /// nothing [`Ahead`], or gives it back to be queued.
    pub async fn submit_led<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
        lead: impl FnOnce(Queued) -> Option<Queued>,
    ) -> Result<T> {
        let place = self.admission.admit().await?;
        self.send(place, job, lead).await
    }

    /// Offers the job to `lead`, hands it to the writer's thread if `lead`
    /// gives it back, and waits for its answer.
    async fn send<T>(
        &self,
        place: Place,
        job: impl FnOnce(Reply<T>) -> Job,
        lead: impl FnOnce(Queued) -> Option<Queued>,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            job: job(reply),
            place,
        };
        if let Some(queued) = lead(queued)
            && self.hand_over(queued).is_some()
        {
            return Err(Error::Closed);
        }
        answer.await.map_err(|_| Error::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_reach_the_writer_in_order_and_a_closed_writer_answers_closed() {
        let (queue, mut writer) = WriteQueue::new(Bound::default());
        let first = queue.write(Vec::new());
        let second = queue.write(Vec::new());
        for expected in [true, true] {
            let Some(Queued {
                job: Job::Write(_, reply),
                ..
            }) = writer.recv().await
            else {
                panic!("a write");
            };
            assert_eq!(reply.send(Ok(())).is_ok(), expected);
        }
        assert_eq!(first.await.expect("answered"), Ok(()));
        assert_eq!(second.await.expect("answered"), Ok(()));
        drop(writer);
        assert_eq!(
            queue.write(Vec::new()).await.expect("answered"),
            Err(Error::Closed)
        );
        let refused = queue
            .submit(|reply| Job::Create(Vec::new(), reply))
            .await
            .expect_err("closed");
        assert_eq!(refused, Error::Closed);
    }

    #[tokio::test]
    async fn new_work_is_refused_when_the_backend_says_so_first() {
        let (queue, mut writer) = WriteQueue::new(Bound::default());
        let refused = queue
            .submit_unless(
                |reply| Job::Create(Vec::new(), reply),
                std::future::ready(Error::Unavailable("away".into())),
            )
            .await
            .expect_err("refused");
        assert_eq!(refused, Error::Unavailable("away".into()));
        assert!(writer.try_recv().is_err(), "nothing was queued");
        assert!(Job::Create(Vec::new(), oneshot::channel().0).refusable());
        assert!(!Job::Write(Vec::new(), oneshot::channel().0).refusable());
    }

    #[tokio::test]
    async fn a_leader_commits_its_own_job_or_gives_it_back_to_be_queued() {
        let (queue, mut writer, ahead) = WriteQueue::leading(Bound::default());
        assert!(ahead.none());
        // The writer is idle: the job is answered where it was led, and
        // never reaches the writer's thread.
        let led = queue
            .submit_led(
                |reply| Job::Create(Vec::new(), reply),
                |queued| {
                    let Job::Create(_, reply) = queued.job else {
                        panic!("the job submitted");
                    };
                    drop(reply.send(Ok(vec![])));
                    None
                },
            )
            .await;
        assert_eq!(led, Ok(vec![]));
        assert!(writer.try_recv().is_err(), "nothing was queued");
        // A write handed over counts as ahead until the writer takes it.
        let written = queue.write(Vec::new());
        assert!(!ahead.none());
        // A job given back by its leader is queued behind it.
        let queued = tokio::spawn(async move {
            queue
                .submit_led(|reply| Job::Create(Vec::new(), reply), Some)
                .await
        });
        let mut jobs = Vec::new();
        while jobs.len() < 2 {
            jobs.push(writer.recv().await.expect("a job"));
        }
        ahead.taken(jobs.len());
        assert!(ahead.none());
        let mut jobs = jobs.into_iter();
        let Some(Queued {
            job: Job::Write(_, write),
            ..
        }) = jobs.next()
        else {
            panic!("the write first");
        };
        let Some(Queued {
            job: Job::Create(_, create),
            ..
        }) = jobs.next()
        else {
            panic!("then the job its leader gave back");
        };
        drop(write.send(Ok(())));
        drop(create.send(Ok(vec![])));
        assert_eq!(written.await.expect("answered"), Ok(()));
        assert_eq!(queued.await.expect("joined"), Ok(vec![]));
    }
}
