//! What tidewright's domain rules refuse.

/// Errors of tidewright's domain rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A submitted task breaks a rule; `field` is its path, e.g. `steps[2].dependsOn[0]`.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A state name that tidewright does not know.
    #[error("unknown state {0:?}")]
    UnknownState(String),
    /// A step cannot move from one state to the other.
    #[error("a step cannot go from {from} to {to}")]
    Transition {
        from: &'static str,
        to: &'static str,
    },
}

/// A rule broken at `field` (its path, e.g. `steps[2].dependsOn[0]`).
pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}
