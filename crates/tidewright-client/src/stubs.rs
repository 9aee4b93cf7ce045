//! The generated stubs the client holds, each over the replica that leads
//! and with the caller's token.

use tidewright_api::client::Bearer;
use tidewright_api::leader::Replicas;
use tidewright_api::v1::agent_service_client::AgentServiceClient;
use tidewright_api::v1::state_service_client::StateServiceClient;
use tidewright_api::v1::task_service_client::TaskServiceClient;
use tonic::service::interceptor::InterceptedService;

/// The generated stubs, each over the replica that leads, with the token.
pub type TaskStub = TaskServiceClient<InterceptedService<Replicas, Bearer>>;
pub type StateStub = StateServiceClient<InterceptedService<Replicas, Bearer>>;
pub type AgentStub = AgentServiceClient<InterceptedService<Replicas, Bearer>>;
