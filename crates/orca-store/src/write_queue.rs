//! The write queue every backend puts in front of its one writer: jobs in
//! the order they were handed over (the ordering promise of [`crate`]),
//! each answered once its transaction committed or failed, and held to the
//! [`Admission`] bound. A backend owns only the side that commits.

use std::future::Future;

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
}

impl WriteQueue {
    /// A queue held to `bound`, and the receiver its writer commits from.
    pub fn new(bound: Bound) -> (WriteQueue, mpsc::UnboundedReceiver<Queued>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let admission = Admission::new(bound);
        (WriteQueue { jobs, admission }, queue)
    }

    /// Queues the control plane's writes: never refused, never waiting.
    pub fn write(&self, batch: Vec<Write>) -> Commit {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            job: Job::Write(batch, reply),
            place: self.admission.always(),
        };
        if let Err(mpsc::error::SendError(Queued {
            job: Job::Write(_, reply),
            ..
        })) = self.jobs.send(queued)
        {
            drop(reply.send(Err(Error::Closed)));
        }
        answer
    }

    /// Queues new work once there is room, and answers what it committed.
    pub async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T> {
        let place = self.admission.admit().await?;
        self.send(place, job).await
    }

    /// [`Self::submit`], unless `refused` says why not first (a database
    /// that is away): then nothing is queued.
    pub async fn submit_unless<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
        refused: impl Future<Output = Error>,
    ) -> Result<T> {
        let place = tokio::select! {
            biased;
            why = refused => return Err(why),
            place = self.admission.admit() => place?,
        };
        self.send(place, job).await
    }

    async fn send<T>(&self, place: Place, job: impl FnOnce(Reply<T>) -> Job) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Queued {
                job: job(reply),
                place,
            })
            .map_err(|_| Error::Closed)?;
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
}
