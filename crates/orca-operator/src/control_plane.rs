//! The operator's connection to the orca control plane: one channel, the
//! operator's token on every call.

use orca_api::client::{Bearer, ClientTls, endpoint};
use orca_api::v1::agent_service_client::AgentServiceClient;
use orca_api::v1::task_service_client::TaskServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::Error;

pub type Tasks = TaskServiceClient<InterceptedService<Channel, Bearer>>;
pub type Agents = AgentServiceClient<InterceptedService<Channel, Bearer>>;

/// Cheap to clone; calls share one HTTP/2 connection.
#[derive(Clone)]
pub struct ControlPlane {
    tasks: Tasks,
    agents: Agents,
}

impl ControlPlane {
    /// Connects lazily: the operator starts (and answers its probes) while
    /// the control plane is still coming up, and calls fail until it is.
    pub fn connect_lazy(server: &str, token: Option<&str>, tls: &ClientTls) -> Result<Self, Error> {
        let channel = endpoint(server, tls)?.connect_lazy();
        let bearer = Bearer::new(token)?;
        Ok(ControlPlane {
            tasks: TaskServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            agents: AgentServiceClient::with_interceptor(channel, bearer),
        })
    }

    pub fn tasks(&self) -> Tasks {
        self.tasks.clone()
    }

    pub fn agents(&self) -> Agents {
        self.agents.clone()
    }
}
