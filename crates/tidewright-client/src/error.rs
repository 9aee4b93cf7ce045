//! The client's one error type: a refusal keeps the server's gRPC status
//! and the request field it names, so a program can branch on either.

/// The metadata key the control plane names a refused request's field in.
pub const FIELD_METADATA: &str = "tidewright-field";

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The settings cannot be used: a config file, a context, a TLS file,
    /// a task file.
    #[error("{0}")]
    Config(String),
    /// No replica of the control plane could be reached.
    #[error("cannot reach the control plane at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The control plane answered with an error.
    #[error("{}: {}", code_name(.status.code()), .status.message())]
    Status {
        status: Box<tonic::Status>,
        /// The request field at fault, for INVALID_ARGUMENT.
        field: Option<String>,
    },
    /// A watched task's events could not be resumed within the patience
    /// the watch was given.
    #[error("lost the stream of task {task_id} after event {last_seq}")]
    StreamLost { task_id: String, last_seq: u64 },
}

impl Error {
    /// The gRPC code of a refusal; `None` for errors that never reached
    /// the server.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status { status, .. } => Some(status.code()),
            Error::Unreachable { .. } => Some(tonic::Code::Unavailable),
            _ => None,
        }
    }

    /// The request field the server named (`spec.steps[0].id`...).
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Status { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The server's status, whole: code, message and metadata.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// The status a caller should see: a call the transport dropped before the
/// control plane answered it (hyper cancels a request whose connection
/// closed under it, as when the server was just killed) did not reach the
/// control plane, which is UNAVAILABLE, and safe to try again. A
/// cancellation the server sent has no transport error behind it and stays
/// as it is.
pub(crate) fn as_reached(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::Cancelled && std::error::Error::source(&status).is_some() {
        return tonic::Status::unavailable(format!(
            "the connection closed before an answer: {}",
            status.message()
        ));
    }
    status
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        let status = as_reached(status);
        let field = status
            .metadata()
            .get(FIELD_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        Error::Status {
            status: Box::new(status),
            field,
        }
    }
}

impl From<tidewright_api::Error> for Error {
    fn from(e: tidewright_api::Error) -> Error {
        Error::Config(e.to_string())
    }
}

/// A gRPC code as people read it in one line.
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::ResourceExhausted => "resource exhausted",
        tonic::Code::FailedPrecondition => "failed precondition",
        tonic::Code::Aborted => "conflict",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::DeadlineExceeded => "deadline exceeded",
        tonic::Code::DataLoss => "data loss",
        _ => "request failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_the_transport_cancelled_is_unavailable_and_a_servers_cancel_is_kept() {
        let mut dropped = tonic::Status::cancelled("operation was canceled: connection closed");
        dropped.set_source(std::sync::Arc::new(std::io::Error::other(
            "connection closed",
        )));
        assert_eq!(Error::from(dropped).code(), Some(tonic::Code::Unavailable));
        let sent = tonic::Status::cancelled("the server cancelled it");
        assert_eq!(Error::from(sent).code(), Some(tonic::Code::Cancelled));
    }

    #[test]
    fn a_refusal_keeps_its_code_message_and_field() {
        let mut status = tonic::Status::invalid_argument("spec.steps[0].id: required");
        status
            .metadata_mut()
            .insert(FIELD_METADATA, "spec.steps[0].id".parse().expect("ascii"));
        let e = Error::from(status);
        assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));
        assert_eq!(e.field(), Some("spec.steps[0].id"));
        assert_eq!(
            e.to_string(),
            "invalid argument: spec.steps[0].id: required"
        );
        let plain = Error::from(tonic::Status::not_found("task x"));
        assert_eq!(plain.field(), None);
        assert_eq!(plain.to_string(), "not found: task x");
    }
}
