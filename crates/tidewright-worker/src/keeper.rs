//! The control plane as the keeper of agents' checkpoints and steps'
//! branches, and of repositories' seeds (see `seeds`), over the worker's
//! current connection (waiting out a reconnect, and again while a replica
//! hands over).

mod seeds;

use std::future::Future;
use std::time::Duration;

use tidewright_api::client::Bearer;
use tidewright_api::v1;
use tidewright_api::v1::agent_service_client::AgentServiceClient;
use tidewright_core::AttemptKey;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::runtime::checkpoint::{BranchBundle, Keeper, SessionCheckpoint};

/// How long a checkpoint call waits for a connection (the worker may be
/// between sessions), and how long it goes on trying a control plane that
/// is unavailable or whose connection broke (a replica handing over, the
/// leader killed: the worker's next session finds the new one).
const KEEPER_WAIT: Duration = Duration::from_secs(10);
const KEEPER_RETRY_FOR: Duration = Duration::from_secs(30);
/// A checkpoint read back may be as large as the control plane keeps.
const MAX_CHECKPOINT_MESSAGE: usize = 1 << 30;

/// Checkpoints kept by the control plane, over the worker's connection.
pub(crate) struct ControlPlaneKeeper {
    pub(crate) connection: watch::Receiver<Option<Channel>>,
    pub(crate) bearer: Bearer,
    /// How long a call goes on trying, and the most it waits between
    /// tries: [`KEEPER_RETRY_FOR`] and a second, but for tests.
    pub(crate) retry: (Duration, Duration),
}

impl ControlPlaneKeeper {
    pub(crate) fn new(connection: watch::Receiver<Option<Channel>>, bearer: Bearer) -> Self {
        ControlPlaneKeeper {
            connection,
            bearer,
            retry: (KEEPER_RETRY_FOR, Duration::from_secs(1)),
        }
    }
}

type AgentClient = AgentServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, tidewright_api::client::Bearer>,
>;

impl ControlPlaneKeeper {
    /// Calls the control plane with the current connection, again while it
    /// is unavailable or the connection broke (each call keeps or reads
    /// one thing whole, so a second try is the same call), for at most
    /// [`KEEPER_RETRY_FOR`]: the next try waits for the worker's next
    /// session, or a second.
    async fn call<T, F>(
        &self,
        what: &str,
        call: impl Fn(AgentClient) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (retry_for, pause) = self.retry;
        let until = tokio::time::Instant::now() + retry_for;
        loop {
            let mut connection = self.connection.clone();
            match call(self.client(what).await?).await {
                Err(status) if passing(&status) && tokio::time::Instant::now() < until => {
                    let _ = tokio::time::timeout(pause, connection.changed()).await;
                }
                answer => return answer.map(tonic::Response::into_inner),
            }
        }
    }

    /// A client on the session's connection; between sessions, the next
    /// one's.
    async fn client(&self, what: &str) -> Result<AgentClient, tonic::Status> {
        let mut connection = self.connection.clone();
        let waited = tokio::time::timeout(KEEPER_WAIT, connection.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|found| found.ok().and_then(|channel| channel.clone()));
        let Some(channel) = waited else {
            return Err(tonic::Status::unavailable(format!(
                "no connection to the control plane to {what}"
            )));
        };
        Ok(
            AgentServiceClient::with_interceptor(channel, self.bearer.clone())
                .max_decoding_message_size(MAX_CHECKPOINT_MESSAGE)
                .max_encoding_message_size(MAX_CHECKPOINT_MESSAGE),
        )
    }
}

#[async_trait::async_trait]
impl Keeper for ControlPlaneKeeper {
    async fn put(&self, checkpoint: SessionCheckpoint) -> Result<(), String> {
        let checkpoint = v1::Checkpoint {
            attempt: Some(v1::AttemptRef::from(&checkpoint.attempt)),
            session_id: checkpoint.session_id,
            workspace: checkpoint.workspace,
            archive: checkpoint.archive,
        };
        self.call("keep a checkpoint", |mut client| {
            let checkpoint = checkpoint.clone();
            async move { client.put_checkpoint(checkpoint).await }
        })
        .await
        .map(|_| ())
        .map_err(|status| format!("the control plane refused it: {}", status.message()))
    }

    async fn get(&self, attempt: &AttemptKey) -> Result<Option<SessionCheckpoint>, String> {
        let request = v1::GetCheckpointRequest {
            attempt: Some(v1::AttemptRef::from(attempt)),
        };
        match self
            .call("read a checkpoint", |mut client| {
                let request = request.clone();
                async move { client.get_checkpoint(request).await }
            })
            .await
        {
            Ok(checkpoint) => Ok(Some(SessionCheckpoint {
                attempt: left_by(checkpoint.attempt, attempt),
                session_id: checkpoint.session_id,
                workspace: checkpoint.workspace,
                archive: checkpoint.archive,
            })),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(format!(
                "the control plane did not give it: {}",
                status.message()
            )),
        }
    }

    async fn put_branch(&self, branch: BranchBundle) -> Result<(), String> {
        let branch = v1::StepBranch {
            attempt: Some(v1::AttemptRef::from(&branch.attempt)),
            head_commit: branch.head_commit,
            bundle: branch.bundle,
            diff: branch.diff,
        };
        self.call("keep a step's branch", |mut client| {
            let branch = branch.clone();
            async move { client.put_branch(branch).await }
        })
        .await
        .map(|_| ())
        .map_err(|status| format!("the control plane refused it: {}", status.message()))
    }

    async fn get_branch(
        &self,
        attempt: &AttemptKey,
        step_id: &str,
    ) -> Result<Option<BranchBundle>, String> {
        let request = v1::GetBranchRequest {
            attempt: Some(v1::AttemptRef::from(attempt)),
            step_id: step_id.to_string(),
        };
        match self
            .call("read a step's branch", |mut client| {
                let request = request.clone();
                async move { client.get_branch(request).await }
            })
            .await
        {
            Ok(branch) => Ok(Some(BranchBundle {
                attempt: left_by(branch.attempt, attempt),
                head_commit: branch.head_commit,
                bundle: branch.bundle,
                diff: branch.diff,
            })),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(format!(
                "the control plane did not give it: {}",
                status.message()
            )),
        }
    }
}

/// Whether a call failed for its connection, not for what it asked: the
/// control plane unavailable (a replica handing over), or the connection
/// gone under it (tonic says `transport error`, or the call was cut off).
fn passing(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => true,
        tonic::Code::Unknown => status.message().contains("transport error"),
        _ => false,
    }
}

/// The attempt that left what the control plane gave: as it says, else the
/// asking attempt's step at attempt 0.
fn left_by(said: Option<v1::AttemptRef>, asking: &AttemptKey) -> AttemptKey {
    said.map(AttemptKey::from).unwrap_or_else(|| AttemptKey {
        attempt: 0,
        ..asking.clone()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn keeper() -> ControlPlaneKeeper {
        let channel = Channel::from_static("http://127.0.0.1:9").connect_lazy();
        let (_, connection) = watch::channel(Some(channel));
        ControlPlaneKeeper {
            retry: (Duration::from_millis(300), Duration::from_millis(1)),
            ..ControlPlaneKeeper::new(connection, Bearer::new(Some("t")).expect("bearer"))
        }
    }

    /// A call that fails with `status` `times` times, then answers: the
    /// answer's code, and the calls made.
    async fn failing(status: tonic::Status, times: u32) -> (Result<u32, tonic::Code>, u32) {
        let calls = Arc::new(AtomicU32::new(0));
        let answer = keeper()
            .call("keep a step's branch", |_| {
                let calls = calls.clone();
                let status = status.clone();
                async move {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        n if n < times => Err(status),
                        _ => Ok(tonic::Response::new(7)),
                    }
                }
            })
            .await;
        (answer.map_err(|s| s.code()), calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_call_whose_connection_broke_is_made_again_and_a_refusal_is_not() {
        // The leader killed mid-call: tonic's transport error, then the new
        // leader answers.
        let broke = tonic::Status::unknown("transport error");
        assert_eq!(failing(broke, 3).await, (Ok(7), 4));
        let handing_over = tonic::Status::unavailable("not the leader");
        assert_eq!(failing(handing_over, 6).await, (Ok(7), 7));
        // What the control plane refused is its answer.
        let refused = tonic::Status::failed_precondition("not current");
        assert_eq!(
            failing(refused, 1).await,
            (Err(tonic::Code::FailedPrecondition), 1)
        );
        // Not for ever: past the deadline the last failure is the answer.
        let (answer, _) = failing(tonic::Status::unavailable("down"), u32::MAX).await;
        assert_eq!(answer, Err(tonic::Code::Unavailable));
    }
}
