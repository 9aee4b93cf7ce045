//! The operator's one error type. Each variant says which side failed: the
//! Kubernetes API, the control plane, or the resource itself.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("control plane: {}: {}", .0.code(), .0.message())]
    ControlPlane(#[from] tonic::Status),
    #[error("control plane client: {0}")]
    Client(#[from] tidewright_api::Error),
    #[error("{kind} {name}: {problem}")]
    Resource {
        kind: &'static str,
        name: String,
        problem: String,
    },
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Neither in a pod nor given a kubeconfig; the text says what was tried.
    #[error("no Kubernetes API to talk to: {0}")]
    NoCluster(String),
    #[error("leader election: {0}")]
    Leadership(String),
}

impl Error {
    /// Whether retrying later can help (the API or the control plane was
    /// away) rather than the resource being wrong.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::Resource { .. })
    }
}
