//! The control plane's errors and their mappings: to gRPC statuses, and to
//! HTTP responses for the few the HTTP port can give.

use tidewright_engine::Error as Refusal;
use tonic::{Code, Status};

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What the services refuse or fail at (a field, a caller, a state, a
    /// limit, the store): the engine's error, whether a service or the
    /// server on its behalf said it, so each means one status everywhere.
    #[error(transparent)]
    Service(#[from] tidewright_engine::Error),
    /// A worker broke the Connect protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Binding or serving the gRPC port failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Setting up server reflection failed.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A port could not be bound: `port` says which, so a caller can name
    /// the setting that chose its address.
    #[error("binding {port} {addr}: {source}")]
    Bind {
        port: PortName,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// An I/O error, such as reading a configuration file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The tokens file is missing, unreadable or malformed.
    #[error("auth: {0}")]
    Auth(String),
    /// A task template of --templates-dir does not load.
    #[error("{0}")]
    Templates(String),
    /// The forge webhooks' secret does not load.
    #[error("{0}")]
    Hooks(String),
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

/// The ports a control plane serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortName {
    Grpc,
    Http,
}

impl std::fmt::Display for PortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortName::Grpc => "the gRPC port",
            PortName::Http => "the HTTP port",
        })
    }
}

/// Reads a configuration file (a key, a certificate), naming it on failure.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })
}

impl Error {
    /// A request field that breaks a rule; `field` names it.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Service(Refusal::invalid(field, message))
    }
}

impl From<tidewright_store::Error> for Error {
    fn from(e: tidewright_store::Error) -> Self {
        Error::Service(Refusal::Store(e))
    }
}

impl From<tidewright_core::Error> for Error {
    fn from(e: tidewright_core::Error) -> Self {
        match e {
            tidewright_core::Error::Invalid { field, message } => Error::invalid(field, message),
            other => Error::Protocol(other.to_string()),
        }
    }
}

impl From<tidewright_api::Error> for Error {
    fn from(e: tidewright_api::Error) -> Self {
        match e {
            tidewright_api::Error::UnknownEnum { field, value } => {
                Error::invalid(field, format!("unknown value {value}"))
            }
            tidewright_api::Error::Missing(field) => Error::invalid(field, "required"),
            tidewright_api::Error::Invalid(field, message) => Error::invalid(field, message),
            tidewright_api::Error::Client(message) => Error::Protocol(message),
        }
    }
}

/// The gRPC code of a refusal or failure of the services' kind.
fn service_code(e: &Refusal) -> Code {
    match e {
        Refusal::InvalidArgument { .. } => Code::InvalidArgument,
        Refusal::NotFound(_) => Code::NotFound,
        Refusal::FailedPrecondition(_) => Code::FailedPrecondition,
        Refusal::AlreadyExists(_) => Code::AlreadyExists,
        Refusal::Conflict(_) => Code::Aborted,
        Refusal::Unauthenticated(_) => Code::Unauthenticated,
        Refusal::PermissionDenied(_) => Code::PermissionDenied,
        Refusal::ResourceExhausted { .. } => Code::ResourceExhausted,
        Refusal::Store(e) => match e {
            tidewright_store::Error::Unavailable(_)
            | tidewright_store::Error::Closed
            | tidewright_store::Error::Deposed(_) => Code::Unavailable,
            tidewright_store::Error::Conflict(_) => Code::Aborted,
            // Retrying cannot mend what is stored: not UNAVAILABLE.
            tidewright_store::Error::Corrupt(_) => Code::DataLoss,
            tidewright_store::Error::Overloaded(_) => Code::ResourceExhausted,
        },
        Refusal::ShuttingDown | Refusal::Unavailable(_) => Code::Unavailable,
        Refusal::Internal(_) => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Service(e) => service_code(e),
            Error::Protocol(_) => Code::InvalidArgument,
            Error::Deposed(_) => Code::Unavailable,
            Error::Transport(_)
            | Error::Reflection(_)
            | Error::Io { .. }
            | Error::Bind { .. }
            | Error::Auth(_)
            | Error::Tls(_)
            | Error::Hooks(_)
            | Error::Templates(_)
            | Error::Fatal(_) => Code::Internal,
        };
        if matches!(code, Code::Internal | Code::Unavailable | Code::DataLoss) {
            tracing::warn!(error = %e, "request failed");
        }
        let mut status = Status::new(code, e.to_string());
        if let Error::Service(Refusal::InvalidArgument { field, .. }) = &e
            && let Ok(value) = field.parse()
        {
            // Programs read which field without parsing the message.
            status.metadata_mut().insert(FIELD, value);
        }
        if let Error::Service(Refusal::ResourceExhausted {
            retry_after: Some(after),
            ..
        }) = e
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

/// The metadata key naming the request field an INVALID_ARGUMENT is about.
pub const FIELD: &str = "tidewright-field";

/// What a refused HTTP request answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The gRPC code, as gRPC spells it: `INVALID_ARGUMENT`.
    pub code: String,
    pub message: String,
    /// The request field at fault, for INVALID_ARGUMENT.
    pub field: Option<String>,
}

/// The HTTP status that says what a gRPC code says.
pub fn http_status(code: Code) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        // The request does not fit the resource as it is now.
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled | Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refused HTTP request, from the status gRPC gives: the HTTP status
/// above, `{"error": {"code", "message", "field"}}`, and the headers a
/// client acts on (WWW-Authenticate, Retry-After).
pub fn http_error(status: &Status) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let field = status
        .metadata()
        .get(FIELD)
        .and_then(|f| f.to_str().ok())
        .map(str::to_string);
    let body = ErrorBody {
        error: ErrorDetail {
            code: grpc_code_name(status.code()),
            message: status.message().to_string(),
            field,
        },
    };
    let mut response = (http_status(status.code()), axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if status.code() == Code::Unauthenticated {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    let retry_after = status
        .metadata()
        .get("retry-after-ms")
        .and_then(|ms| ms.to_str().ok()?.parse::<u64>().ok());
    if let Some(millis) = retry_after {
        // Whole seconds, rounded up, as Retry-After has it.
        let seconds = millis.div_ceil(1000).max(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            headers.insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// What a refusal is, as A2A's JSON-RPC binding numbers its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum A2aCode {
    TaskNotFound = -32001,
    TaskNotCancelable = -32002,
    UnsupportedOperation = -32004,
    ExtendedAgentCardNotConfigured = -32007,
    VersionNotSupported = -32009,
    InvalidRequest = -32600,
    MethodNotFound = -32601,
    InvalidParams = -32602,
    Internal = -32603,
    Parse = -32700,
}

/// A refused A2A call as JSON-RPC's error code and a body's `error`
/// object: `code`, `message`, and `data` as A2A has it (a
/// `google.rpc.ErrorInfo` whose reason is the gRPC code and whose metadata
/// names the field at fault). `None` for who calls and how much (401, 403,
/// 429 and 503), which A2A leaves to the transport: [`http_error`]
/// answers those, as on every HTTP route.
pub fn a2a_error(status: &Status) -> Option<(A2aCode, serde_json::Value)> {
    let code = match status.code() {
        Code::Unauthenticated
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::Unavailable => return None,
        Code::InvalidArgument | Code::OutOfRange => A2aCode::InvalidParams,
        Code::NotFound => A2aCode::TaskNotFound,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
            A2aCode::UnsupportedOperation
        }
        Code::Unimplemented => A2aCode::MethodNotFound,
        _ => A2aCode::Internal,
    };
    Some((code, a2a_error_object(code, status)))
}

/// The `error` object of a JSON-RPC answer, for `code`.
pub fn a2a_error_object(code: A2aCode, status: &Status) -> serde_json::Value {
    let mut metadata = serde_json::Map::new();
    if let Some(field) = status.metadata().get(FIELD).and_then(|f| f.to_str().ok()) {
        metadata.insert("field".into(), field.into());
    }
    serde_json::json!({
        "code": code as i64,
        "message": status.message(),
        "data": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": grpc_code_name(status.code()),
            "domain": "tidewright.dev",
            "metadata": metadata,
        }],
    })
}

/// `INVALID_ARGUMENT`, as gRPC spells its codes.
fn grpc_code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The probes' and `/metrics`' refusals (who calls, how often, a store
/// away): the status and headers of [`http_error`], the body one line of
/// text as gRPC's message.
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let status = Status::from(self);
        let mut response = http_error(&status);
        *response.body_mut() = axum::body::Body::from(format!("{}\n", status.message()));
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_answers_say_what_grpc_says_and_name_the_field() {
        let answer = http_error(&Status::from(Error::invalid(
            "steps[1].id",
            "must be unique",
        )));
        assert_eq!(answer.status(), axum::http::StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "INVALID_ARGUMENT",
                "message": "steps[1].id: must be unique",
                "field": "steps[1].id",
            }})
        );
        let limited = http_error(&Status::from(Error::Service(Refusal::ResourceExhausted {
            message: "slow down".into(),
            retry_after: Some(std::time::Duration::from_millis(1500)),
        })));
        assert_eq!(limited.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()["retry-after"], "2");
        let code = |code| http_status(code).as_u16();
        assert_eq!(code(Code::FailedPrecondition), 409);
        assert_eq!(code(Code::DataLoss), 500);
        assert_eq!(code(Code::Unavailable), 503);
        assert_eq!(grpc_code_name(Code::PermissionDenied), "PERMISSION_DENIED");
    }

    #[test]
    fn store_errors_map_to_what_a_client_can_do() {
        let code = |e: tidewright_store::Error| Status::from(Error::from(e)).code();
        assert_eq!(
            code(tidewright_store::Error::Unavailable("down".into())),
            Code::Unavailable
        );
        assert_eq!(code(tidewright_store::Error::Closed), Code::Unavailable);
        assert_eq!(
            code(tidewright_store::Error::Conflict("taken".into())),
            Code::Aborted
        );
        assert_eq!(
            code(tidewright_store::Error::Corrupt("bad row".into())),
            Code::DataLoss
        );
        assert_eq!(
            code(tidewright_store::Error::Overloaded(
                "4096 writes wait".into()
            )),
            Code::ResourceExhausted
        );
        let status = Status::from(Error::from(tidewright_store::Error::Unavailable(
            "connection refused".into(),
        )));
        assert_eq!(
            status.message(),
            "the store is unavailable: connection refused"
        );
        let http = |e: tidewright_store::Error| {
            axum::response::IntoResponse::into_response(Error::from(e)).status()
        };
        assert_eq!(
            http(tidewright_store::Error::Closed),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http(tidewright_store::Error::Corrupt("bad row".into())),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
