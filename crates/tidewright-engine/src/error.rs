//! What the engine and its services answer when they will not do what they
//! were asked. Each transport maps these to its own statuses, in one place
//! of its own.

/// The engine's and the services' refusals and failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule; `field` names it.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The call carries no valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request does not fit the current state (e.g. approving a step
    /// that is not waiting for approval).
    #[error("{0}")]
    FailedPrecondition(String),
    /// What a create names is there already.
    #[error("{0}")]
    AlreadyExists(String),
    /// A compare-and-set found another version: read again, then retry.
    #[error("{0}")]
    Conflict(String),
    /// Over a limit; the caller may try again after `retry_after`, when one
    /// is known.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The store failed; its error says whether a retry may help.
    #[error("{0}")]
    Store(#[from] tidewright_store::Error),
    /// The engine has stopped (the control plane is shutting down).
    #[error("the control plane is shutting down")]
    ShuttingDown,
    /// A service the call needs did not answer (the planner's API); the
    /// call may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// Something that cannot happen did: a bug, said as such.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A rule of the domain that a request breaks names its field; the other
/// domain errors (an unknown state, a step moving the wrong way) are not
/// the caller's to mend.
impl From<tidewright_core::Error> for Error {
    fn from(e: tidewright_core::Error) -> Self {
        match e {
            tidewright_core::Error::Invalid { field, message } => {
                Error::InvalidArgument { field, message }
            }
            other => Error::Internal(other.to_string()),
        }
    }
}
