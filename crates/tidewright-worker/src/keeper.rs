//! The control plane as the keeper of agents' checkpoints and steps'
//! branches, over the worker's current connection (waiting out a
//! reconnect, and again while a replica hands over).

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
/// between sessions), and how often it tries a control plane that is
/// unavailable (a replica handing over).
const KEEPER_WAIT: Duration = Duration::from_secs(10);
const KEEPER_TRIES: u32 = 5;
/// A checkpoint read back may be as large as the control plane keeps.
const MAX_CHECKPOINT_MESSAGE: usize = 1 << 30;

/// Checkpoints kept by the control plane, over the worker's connection.
pub(crate) struct ControlPlaneKeeper {
    pub(crate) connection: watch::Receiver<Option<Channel>>,
    pub(crate) bearer: Bearer,
}

type AgentClient = AgentServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, tidewright_api::client::Bearer>,
>;

impl ControlPlaneKeeper {
    /// Calls the control plane with the current connection, again while it
    /// is unavailable, a few times.
    async fn call<T, F>(
        &self,
        what: &str,
        call: impl Fn(AgentClient) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut tries = 0;
        loop {
            // The session's connection; between sessions, the next one's.
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
            let client = AgentServiceClient::with_interceptor(channel, self.bearer.clone())
                .max_decoding_message_size(MAX_CHECKPOINT_MESSAGE)
                .max_encoding_message_size(MAX_CHECKPOINT_MESSAGE);
            match call(client).await {
                Err(status)
                    if status.code() == tonic::Code::Unavailable && tries + 1 < KEEPER_TRIES =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                answer => return answer.map(tonic::Response::into_inner),
            }
        }
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

/// The attempt that left what the control plane gave: as it says, else the
/// asking attempt's step at attempt 0.
fn left_by(said: Option<v1::AttemptRef>, asking: &AttemptKey) -> AttemptKey {
    said.map(AttemptKey::from).unwrap_or_else(|| AttemptKey {
        attempt: 0,
        ..asking.clone()
    })
}
