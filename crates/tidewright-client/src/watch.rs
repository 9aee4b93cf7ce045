//! A task's events as a `Stream` that survives broken connections: after a
//! break it asks again from the last sequence number it handed out, so a
//! reader sees every event once, in order, across control-plane restarts
//! and failovers.

use std::time::Duration;

use futures::Stream;
use tidewright_api::v1;
use tidewright_api::v1::event::Kind;
use tokio::time::Instant;

use crate::error::Error;
use crate::stubs::TaskStub;

/// How a watch starts and how long it keeps trying to resume.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Events after this sequence number; 0 for all of them.
    pub after_seq: u64,
    /// Follow live events until the task ends; `false` stops after the
    /// stored events.
    pub follow: bool,
    /// How long the connection may stay broken before the stream gives up
    /// with [`Error::StreamLost`].
    pub resume_for: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            after_seq: 0,
            follow: true,
            resume_for: Duration::from_secs(60),
        }
    }
}

/// True for a task's final state: succeeded, failed or cancelled.
pub fn is_final(event: &v1::Event) -> bool {
    matches!(&event.kind, Some(Kind::TaskState(t)) if matches!(
        v1::TaskState::try_from(t.state),
        Ok(v1::TaskState::Succeeded | v1::TaskState::Failed | v1::TaskState::Cancelled)
    ))
}

/// Codes that no second try changes: the stream ends with them.
fn is_permanent(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::NotFound
            | tonic::Code::InvalidArgument
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::FailedPrecondition
            | tonic::Code::Unimplemented
    )
}

struct Follow {
    stub: TaskStub,
    task_id: String,
    options: WatchOptions,
    last_seq: u64,
    /// The newest event seen ends the task. Only the newest counts: a
    /// retried task has an earlier final event in its log.
    ended: bool,
    open: Option<tonic::Streaming<v1::Event>>,
    broken_since: Option<Instant>,
    pause: Duration,
    done: bool,
}

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

impl Follow {
    /// Waits before the next try; false once the watch has been broken
    /// longer than its patience.
    async fn before_retry(&mut self) -> bool {
        let since = *self.broken_since.get_or_insert_with(Instant::now);
        if since.elapsed() + self.pause > self.options.resume_for {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        true
    }

    fn lost(&mut self) -> Option<Result<v1::Event, Error>> {
        self.done = true;
        Some(Err(Error::StreamLost {
            task_id: self.task_id.clone(),
            last_seq: self.last_seq,
        }))
    }

    fn failed(&mut self, status: tonic::Status) -> Option<Result<v1::Event, Error>> {
        self.done = true;
        Some(Err(status.into()))
    }

    async fn next(&mut self) -> Option<Result<v1::Event, Error>> {
        loop {
            if self.done {
                return None;
            }
            let stream = match &mut self.open {
                Some(stream) => stream,
                None => {
                    let request = v1::WatchTaskRequest {
                        task_id: self.task_id.clone(),
                        after_seq: self.last_seq,
                        follow: self.options.follow,
                    };
                    match self.stub.watch_task(request).await {
                        Ok(stream) => self.open.insert(stream.into_inner()),
                        Err(status) if is_permanent(status.code()) => return self.failed(status),
                        Err(_) if self.before_retry().await => continue,
                        Err(_) => return self.lost(),
                    }
                }
            };
            match stream.message().await {
                Ok(Some(event)) => {
                    self.broken_since = None;
                    self.pause = FIRST_PAUSE;
                    // A replay after a resume starts past the last event
                    // handed out; this guards against a server that did not.
                    if event.seq <= self.last_seq {
                        continue;
                    }
                    self.last_seq = event.seq;
                    self.ended = is_final(&event);
                    return Some(Ok(event));
                }
                Ok(None) => {
                    self.open = None;
                    // The server ends a followed stream when the task ends;
                    // ending before that is a restart or a deposed leader.
                    if !self.options.follow || self.ended {
                        self.done = true;
                        return None;
                    }
                    if !self.before_retry().await {
                        return self.lost();
                    }
                }
                Err(status) if is_permanent(status.code()) => return self.failed(status),
                Err(_) => {
                    self.open = None;
                    if !self.before_retry().await {
                        return self.lost();
                    }
                }
            }
        }
    }
}

/// The events of `task_id` as `options` says; see [`crate::Client::watch`].
pub(crate) fn events(
    stub: TaskStub,
    task_id: &str,
    options: WatchOptions,
) -> impl Stream<Item = Result<v1::Event, Error>> + Send + 'static {
    let follow = Follow {
        stub,
        task_id: task_id.to_string(),
        last_seq: options.after_seq,
        options,
        ended: false,
        open: None,
        broken_since: None,
        pause: FIRST_PAUSE,
        done: false,
    };
    futures::stream::unfold(follow, |mut follow| async move {
        let next = follow.next().await?;
        Some((next, follow))
    })
}
