//! The operator's connection to the tidewright control plane: one channel that
//! follows the leading replica, the operator's token on every call.

use tidewright_api::client::{Bearer, ClientTls};
use tidewright_api::leader::Replicas;
use tidewright_api::v1::agent_service_client::AgentServiceClient;
use tidewright_api::v1::task_service_client::TaskServiceClient;
use tonic::service::interceptor::InterceptedService;

use crate::error::Error;

pub type Tasks = TaskServiceClient<InterceptedService<Replicas, Bearer>>;
pub type Agents = AgentServiceClient<InterceptedService<Replicas, Bearer>>;

/// Cheap to clone; calls share one HTTP/2 connection.
#[derive(Clone)]
pub struct ControlPlane {
    tasks: Tasks,
    agents: Agents,
}

impl ControlPlane {
    /// Connects lazily: the operator starts (and answers its probes) while
    /// the control plane is still coming up, and calls fail until it is.
    /// Through a Service, or to a list of replicas, calls follow the
    /// leader: a call that meets a standby or a dead leader fails, and the
    /// reconcile that made it runs again, against the leader.
    pub fn connect_lazy(server: &str, token: Option<&str>, tls: &ClientTls) -> Result<Self, Error> {
        let channel = Replicas::new(server, tls)?;
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
