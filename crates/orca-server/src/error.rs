//! The control plane's errors and their mappings: to gRPC statuses, and to
//! HTTP responses for the few the HTTP port can give.

use tonic::{Code, Status};

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule; `field` names it.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request carries no valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller is over a limit (its rate, or its open watches); it may
    /// try again after `retry_after`, when one is known.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The request does not fit the current state (e.g. retrying a running task).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A compare-and-set found another version: read again, then retry.
    #[error("{0}")]
    Conflict(String),
    /// A worker broke the Connect protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The store failed; its error says whether a retry may help.
    #[error("{0}")]
    Store(#[from] orca_store::Error),
    /// The engine has stopped (the server is shutting down).
    #[error("the control plane is shutting down")]
    ShuttingDown,
    /// A service the request needs did not answer (the planner's API); the
    /// request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// Binding or serving the gRPC port failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Setting up server reflection failed.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// An I/O error, such as binding the listen address.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The tokens file is missing, unreadable or malformed.
    #[error("auth: {0}")]
    Auth(String),
    /// A TLS certificate, key or CA file does not load.
    #[error("tls: {0}")]
    Tls(String),
    /// A commit failed after the engine had decided: the server stops rather
    /// than serve state that the store does not hold.
    #[error("fatal store failure: {0}")]
    Fatal(String),
    /// This replica led and no longer does: it stopped serving, and may
    /// start again as a standby.
    #[error("this replica no longer leads: {0}")]
    Deposed(String),
}

/// Reads a configuration file (a key, a certificate), naming it on failure.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<orca_core::Error> for Error {
    fn from(e: orca_core::Error) -> Self {
        match e {
            orca_core::Error::Invalid { field, message } => {
                Error::InvalidArgument { field, message }
            }
            other => Error::Protocol(other.to_string()),
        }
    }
}

impl From<orca_api::Error> for Error {
    fn from(e: orca_api::Error) -> Self {
        match e {
            orca_api::Error::UnknownEnum { field, value } => {
                Error::invalid(field, format!("unknown value {value}"))
            }
            orca_api::Error::Missing(field) => Error::invalid(field, "required"),
            orca_api::Error::Invalid(field, message) => Error::invalid(field, message),
            orca_api::Error::Client(message) => Error::Protocol(message),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidArgument { .. } | Error::Protocol(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Conflict(_) => Code::Aborted,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            Error::Store(e) => match e {
                orca_store::Error::Unavailable(_)
                | orca_store::Error::Closed
                | orca_store::Error::Deposed(_) => Code::Unavailable,
                orca_store::Error::Conflict(_) => Code::Aborted,
                // Retrying cannot mend what is stored: not UNAVAILABLE.
                orca_store::Error::Corrupt(_) => Code::DataLoss,
                orca_store::Error::Overloaded(_) => Code::ResourceExhausted,
            },
            Error::ShuttingDown | Error::Unavailable(_) | Error::Deposed(_) => Code::Unavailable,
            Error::Transport(_)
            | Error::Reflection(_)
            | Error::Io { .. }
            | Error::Auth(_)
            | Error::Tls(_)
            | Error::Fatal(_) => Code::Internal,
        };
        if matches!(code, Code::Internal | Code::Unavailable | Code::DataLoss) {
            tracing::warn!(error = %e, "request failed");
        }
        let mut status = Status::new(code, e.to_string());
        if let Error::ResourceExhausted {
            retry_after: Some(after),
            ..
        } = e
        {
            // Clients back off by this; the message says it to people.
            let millis = after.as_millis().max(1).to_string();
            if let Ok(value) = millis.parse() {
                status.metadata_mut().insert("retry-after-ms", value);
            }
        }
        status
    }
}

/// The HTTP port refuses only who calls and how often: 401, 403 and 429,
/// with the same one-line message gRPC would give.
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{HeaderValue, StatusCode, header};
        let code = match &self {
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::ResourceExhausted { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Store(orca_store::Error::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Store(orca_store::Error::Overloaded(_)) => StatusCode::TOO_MANY_REQUESTS,
            Error::ShuttingDown | Error::Unavailable(_) | Error::Deposed(_) | Error::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (code, format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        match &self {
            Error::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::ResourceExhausted {
                retry_after: Some(after),
                ..
            } => {
                // Whole seconds, rounded up, as Retry-After has it.
                let seconds = after.as_millis().div_ceil(1000).max(1);
                if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                    headers.insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_what_a_client_can_do() {
        let code = |e: orca_store::Error| Status::from(Error::Store(e)).code();
        assert_eq!(
            code(orca_store::Error::Unavailable("down".into())),
            Code::Unavailable
        );
        assert_eq!(code(orca_store::Error::Closed), Code::Unavailable);
        assert_eq!(
            code(orca_store::Error::Conflict("taken".into())),
            Code::Aborted
        );
        assert_eq!(
            code(orca_store::Error::Corrupt("bad row".into())),
            Code::DataLoss
        );
        assert_eq!(
            code(orca_store::Error::Overloaded("4096 writes wait".into())),
            Code::ResourceExhausted
        );
        let status = Status::from(Error::Store(orca_store::Error::Unavailable(
            "connection refused".into(),
        )));
        assert_eq!(
            status.message(),
            "the store is unavailable: connection refused"
        );
        let http = |e: orca_store::Error| {
            axum::response::IntoResponse::into_response(Error::Store(e)).status()
        };
        assert_eq!(
            http(orca_store::Error::Closed),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http(orca_store::Error::Corrupt("bad row".into())),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
