//! What the engine answers when it will not do what it was asked. Each
//! transport maps these to its own statuses, in one place of its own.

/// The engine's refusals and failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request does not fit the current state (e.g. approving a step
    /// that is not waiting for approval).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Over a limit; the caller may try again after `retry_after`, when one
    /// is known.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The store failed; its error says whether a retry may help.
    #[error("{0}")]
    Store(#[from] orca_store::Error),
    /// The engine has stopped (the control plane is shutting down).
    #[error("the control plane is shutting down")]
    ShuttingDown,
}
