//! The worker's one error type.

/// Errors of a worker session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control plane's address or the TLS files cannot be used.
    #[error("{0}")]
    Settings(String),
    /// The connection could not be made or broke.
    #[error("connecting: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The control plane answered with an error status.
    #[error("the control plane refused: {}", .0.message())]
    Refused(#[from] tonic::Status),
    /// The control plane broke the Connect protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Steps cannot be sandboxed here (and `--sandbox=off` was not given),
    /// or a limit asked for cannot be held.
    #[error("{0}")]
    Sandbox(String),
    /// A started worker has not registered within the time its owner
    /// gave; `last_error` is why its last try failed.
    #[error("it did not register within {limit:?}{}", last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    NotRegistered {
        limit: std::time::Duration,
        last_error: Option<String>,
    },
    /// A started worker was stopped before it registered.
    #[error("it stopped before it registered")]
    Stopped,
    /// The work directory cannot be used.
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
