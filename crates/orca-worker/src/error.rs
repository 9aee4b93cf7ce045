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
    /// The work directory cannot be used.
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
