//! What a standby replica answers on the leader's services: UNAVAILABLE,
//! naming the leader in the message (for people) and in the `tidewright-leader`
//! metadata (for clients, which follow it). The standby serves the same
//! service names as the leader, so a call finds an answer rather than
//! UNIMPLEMENTED. Health says those services do not serve here.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use tidewright_api::v1::agent_service_server::AgentServiceServer;
use tidewright_api::v1::state_service_server::StateServiceServer;
use tidewright_api::v1::task_service_server::TaskServiceServer;
use tidewright_store::leadership::Leader;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

use crate::error::Error;
use crate::grpc::TaskGrpc;
use crate::grpc::agents::AgentApi;
use crate::grpc::state::StateGrpc;
use crate::port::acceptor::Acceptor;
use crate::port::tls::ReloadingConfig;

/// The metadata key naming the leader's address.
pub const LEADER_KEY: &str = "tidewright-leader";

/// Stands in for the service `S` while this replica does not lead.
pub struct Standby<S> {
    leader: watch::Receiver<Option<Leader>>,
    service: PhantomData<fn() -> S>,
}

impl<S> Standby<S> {
    pub fn new(leader: watch::Receiver<Option<Leader>>) -> Self {
        Standby {
            leader,
            service: PhantomData,
        }
    }
}

impl<S> Clone for Standby<S> {
    fn clone(&self) -> Self {
        Standby::new(self.leader.clone())
    }
}

impl<S: NamedService> NamedService for Standby<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Standby<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        std::future::ready(Ok(refusal(self.leader.borrow().as_ref()).into_http()))
    }
}

/// A standby's gRPC server: health says the services do not serve here,
/// and every call to them is told where the leader is.
pub struct StandbyServer {
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
}

impl StandbyServer {
    pub async fn start(
        grpc: &Acceptor,
        tls: Option<Arc<ReloadingConfig>>,
        leader: watch::Receiver<Option<Leader>>,
    ) -> Result<StandbyServer, Error> {
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_not_serving::<TaskServiceServer<TaskGrpc>>()
            .await;
        health_reporter
            .set_not_serving::<AgentServiceServer<AgentApi>>()
            .await;
        health_reporter
            .set_not_serving::<StateServiceServer<StateGrpc>>()
            .await;
        let router = crate::grpc::with_reflection(tonic::transport::Server::builder())?
            .add_service(health)
            .add_service(Standby::<TaskServiceServer<TaskGrpc>>::new(leader.clone()))
            .add_service(Standby::<AgentServiceServer<AgentApi>>::new(leader.clone()))
            .add_service(Standby::<StateServiceServer<StateGrpc>>::new(leader));
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = crate::grpc::serve_router(router, grpc.connections(), tls, async {
            let _ = stopped.await;
        });
        let serving = tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::warn!(error = %e, "the standby's gRPC server failed");
            }
        });
        Ok(StandbyServer { stop, serving })
    }

    /// Ends its connections (clients reconnect, to the leader's server).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.serving.await;
    }
}

/// The answer to a call that reached a standby.
pub fn refusal(leader: Option<&Leader>) -> Status {
    let Some(leader) = leader else {
        return Status::unavailable(
            "this replica is a standby and no replica leads at the moment: retry shortly",
        );
    };
    let mut status = Status::unavailable(format!(
        "this replica is a standby; the leader is {} at {} (epoch {}): call it there",
        leader.name, leader.address, leader.epoch
    ));
    if let Ok(address) = leader.address.parse() {
        status.metadata_mut().insert(LEADER_KEY, address);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_names_the_leader_for_people_and_for_clients() {
        let leader = Leader {
            epoch: 7,
            holder: "id".into(),
            name: "tidewright-1".into(),
            address: "10.0.0.7:7443".into(),
            since: 1,
        };
        let status = refusal(Some(&leader));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status
                .message()
                .contains("tidewright-1 at 10.0.0.7:7443 (epoch 7)")
        );
        assert_eq!(
            status
                .metadata()
                .get(LEADER_KEY)
                .and_then(|v| v.to_str().ok()),
            Some("10.0.0.7:7443")
        );
        let status = refusal(None);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.metadata().get(LEADER_KEY).is_none());
    }
}
