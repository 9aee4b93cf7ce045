//! The pipelined producer: `submit` calls from many tasks coalesce into
//! `SubmitTasks` batches, so a program reaches the control plane's batched
//! rate without making batches itself, and each caller still gets its own
//! id or its own error.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::client::{Client, Submit, Submitted, submit_request};
use crate::error::Error;
use tidewright_api::v1;

/// The most tasks the control plane takes in one `SubmitTasks` call.
pub const MAX_BATCH: usize = 1000;

/// How a [`Producer`] forms its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// The most tasks in one call; 1 to [`MAX_BATCH`].
    pub max_batch: usize,
    /// How many calls may be under way at once. While all are, submits
    /// wait in the queue and go together in the next call: batches grow
    /// with the load, and a lone submit goes out at once.
    pub in_flight: usize,
    /// How long a call that found fewer than `max_batch` submits waiting
    /// holds on for more before it goes. Zero (the default) adds no
    /// latency; a few milliseconds make fuller batches at a steady rate.
    pub linger: Duration,
}

impl Default for Batching {
    fn default() -> Batching {
        Batching {
            max_batch: MAX_BATCH,
            in_flight: 4,
            linger: Duration::ZERO,
        }
    }
}

impl Batching {
    /// Refuses settings a producer cannot run with, naming the field.
    fn check(&self) -> Result<(), Error> {
        if !(1..=MAX_BATCH).contains(&self.max_batch) {
            return Err(Error::Config(format!(
                "max_batch: {} is not between 1 and {MAX_BATCH}",
                self.max_batch
            )));
        }
        if self.in_flight == 0 {
            return Err(Error::Config("in_flight: must be at least 1".into()));
        }
        Ok(())
    }
}

/// A submit waiting for its batch, with where its answer goes.
struct Queued {
    request: v1::SubmitTaskRequest,
    answer: oneshot::Sender<Result<Submitted, Error>>,
}

/// Submits tasks through `SubmitTasks` batches formed from concurrent
/// [`Producer::submit`] calls; see [`Client::producer`]. Cheap to clone;
/// the batching ends when the last clone is dropped, after the submits
/// already queued are answered.
#[derive(Clone, Debug)]
pub struct Producer {
    queue: mpsc::Sender<Queued>,
}

impl Client {
    /// A producer of this client's: its [`Producer::submit`] calls, from
    /// as many tasks as the program runs, go together in `SubmitTasks`
    /// batches as [`Batching`] says. Use it where many submits happen at
    /// once (a queue consumer, a webhook receiver under load): it reaches
    /// the batched rate without the caller making batches, while
    /// [`Client::submit`] stays the plainest call for one task at a time
    /// and [`Client::submit_many`] for a batch the caller already holds.
    /// Must be called within a Tokio runtime, which runs the batching.
    pub fn producer(&self, batching: Batching) -> Result<Producer, Error> {
        Producer::start(self.clone(), batching)
    }
}

impl Producer {
    pub(crate) fn start(client: Client, batching: Batching) -> Result<Producer, Error> {
        batching.check()?;
        // Room for every call's next batch: beyond it, submits wait here
        // (back-pressure) rather than queue without bound.
        let (queue, queued) = mpsc::channel(batching.max_batch * batching.in_flight);
        tokio::spawn(form_batches(client, batching, queued));
        Ok(Producer { queue })
    }

    /// Submits a task as [`Client::submit`] does (the same key rules, the
    /// same answer), in a batch with whatever other submits are waiting.
    /// A refusal of this task is this caller's alone; the rest of its
    /// batch is sent again without it.
    pub async fn submit(&self, task: impl Into<Submit>) -> Result<Submitted, Error> {
        let (answer, answered) = oneshot::channel();
        let request = submit_request(task.into());
        self.queue
            .send(Queued { request, answer })
            .await
            .map_err(|_| Error::Config("the producer has stopped".into()))?;
        answered
            .await
            .map_err(|_| Error::Config("the producer stopped before answering".into()))?
    }
}

/// Takes waiting submits into batches, one call per free slot, until every
/// `Producer` is dropped and the queue is empty.
async fn form_batches(client: Client, batching: Batching, mut queued: mpsc::Receiver<Queued>) {
    let slots = Arc::new(Semaphore::new(batching.in_flight));
    loop {
        // A slot first: while every call is under way, submits gather in
        // the queue, which is what makes batches under load.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queued.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batching.linger;
        while batch.len() < batching.max_batch {
            match queued.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) if batching.linger.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, queued.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        let client = client.clone();
        tokio::spawn(async move {
            for group in by_tenant(batch) {
                send(&client, group).await;
            }
            drop(slot);
        });
    }
}

/// The batch in one group per tenant, in order of first appearance: the
/// caller may submit to some tenants and not others, and a refusal for
/// one tenant names no task, so it must not reach another tenant's
/// submits.
fn by_tenant(batch: Vec<Queued>) -> Vec<Vec<Queued>> {
    let mut groups: Vec<Vec<Queued>> = Vec::new();
    for queued in batch {
        match groups
            .iter_mut()
            .find(|g| g[0].request.tenant == queued.request.tenant)
        {
            Some(group) => group.push(queued),
            None => groups.push(vec![queued]),
        }
    }
    groups
}

/// Sends one batch and answers each of its submits. A refusal naming one
/// task (`tasks[3].spec.name`) is that task's; the others are sent again
/// without it (their keys make a repeat safe). Any other failure is every
/// task's.
async fn send(client: &Client, batch: Vec<Queued>) {
    let (mut requests, mut answers): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|q| (q.request, q.answer)).unzip();
    while !requests.is_empty() {
        let request = v1::SubmitTasksRequest { tasks: requests };
        let outcome = client
            .retrying(|| {
                let mut stub = client.tasks.clone();
                let request = request.clone();
                async move { stub.submit_tasks(request).await }
            })
            .await;
        requests = request.tasks;
        match outcome {
            Ok(made) => {
                for ((made, request), answer) in made.tasks.into_iter().zip(requests).zip(answers) {
                    let _ = answer.send(Ok(Submitted {
                        task_id: made.task_id,
                        created: made.created,
                        idempotency_key: request.idempotency_key,
                    }));
                }
                return;
            }
            Err(error) => match refused_task(&error, requests.len()) {
                Some((index, own)) => {
                    requests.remove(index);
                    let _ = answers.remove(index).send(Err(own));
                }
                None => {
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                    return;
                }
            },
        }
    }
}

/// Which task of a batch of `len` a refusal names, and the refusal as a
/// lone submit of that task would have had it (`spec.name`, not
/// `tasks[3].spec.name`).
fn refused_task(error: &Error, len: usize) -> Option<(usize, Error)> {
    let status = error.status()?;
    let field = error.field()?;
    let rest = field.strip_prefix("tasks[")?;
    let (index, rest) = rest.split_once("].")?;
    let index: usize = index.parse().ok().filter(|i| *i < len)?;
    let prefix = &field[..field.len() - rest.len()];
    let message = status.message();
    let mut own = tonic::Status::new(
        status.code(),
        message.strip_prefix(prefix).unwrap_or(message),
    );
    if let Ok(value) = rest.parse() {
        own.metadata_mut()
            .insert(crate::error::FIELD_METADATA, value);
    }
    Some((index, Error::from(own)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(field: &str, message: &str) -> Error {
        let mut status = tonic::Status::invalid_argument(message);
        status
            .metadata_mut()
            .insert(crate::error::FIELD_METADATA, field.parse().expect("ascii"));
        Error::from(status)
    }

    #[test]
    fn a_refusal_naming_a_task_is_that_tasks_as_a_lone_submit_would_have_it() {
        let batch = refusal(
            "tasks[2].spec.steps[0].id",
            "tasks[2].spec.steps[0].id: required",
        );
        let (index, own) = refused_task(&batch, 3).expect("names a task");
        assert_eq!(index, 2);
        assert_eq!(own.field(), Some("spec.steps[0].id"));
        assert_eq!(own.code(), Some(tonic::Code::InvalidArgument));
        assert_eq!(
            own.to_string(),
            "invalid argument: spec.steps[0].id: required"
        );
    }

    #[test]
    fn a_refusal_naming_no_task_of_the_batch_is_everyones() {
        for field in ["tasks", "tasks[3].spec.name", "tasks[x].spec", "spec.name"] {
            assert!(refused_task(&refusal(field, "no"), 3).is_none(), "{field}");
        }
        let plain = Error::from(tonic::Status::resource_exhausted("queue full"));
        assert!(refused_task(&plain, 3).is_none());
    }

    #[test]
    fn batching_a_producer_cannot_run_with_is_refused_naming_the_field() {
        let refused = |batching: Batching| batching.check().expect_err("refused").to_string();
        for max_batch in [0, MAX_BATCH + 1] {
            let message = refused(Batching {
                max_batch,
                ..Batching::default()
            });
            assert!(message.starts_with("max_batch: "), "{message}");
        }
        let message = refused(Batching {
            in_flight: 0,
            ..Batching::default()
        });
        assert!(message.starts_with("in_flight: "), "{message}");
        for max_batch in [1, MAX_BATCH] {
            let fine = Batching {
                max_batch,
                in_flight: 1,
                ..Batching::default()
            };
            assert!(fine.check().is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn a_batch_is_grouped_by_tenant_in_order() {
        let queued = |tenant: &str, key: &str| Queued {
            request: v1::SubmitTaskRequest {
                tenant: tenant.into(),
                idempotency_key: key.into(),
                ..Default::default()
            },
            answer: oneshot::channel().0,
        };
        let groups = by_tenant(vec![
            queued("a", "1"),
            queued("b", "2"),
            queued("a", "3"),
            queued("", "4"),
        ]);
        let keys: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|q| q.request.idempotency_key.as_str())
                    .collect()
            })
            .collect();
        assert_eq!(keys, [vec!["1", "3"], vec!["2"], vec!["4"]]);
    }
}
