//! What a client needs to call tidewright: the endpoint (plaintext, TLS, or TLS
//! with a client certificate) and its bearer token on every request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::Error;

/// TLS settings of a client. Without a CA file, `https://` servers are
/// checked against the system's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that ask workers for
    /// one (mTLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClientTls {
    fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::Client(format!("reading the {what} {}: {e}", path.display())))
}

/// The endpoint for `server`: `http://` for plaintext, `https://` for TLS.
pub fn endpoint(server: &str, tls: &ClientTls) -> Result<Endpoint, Error> {
    let endpoint = Endpoint::from_shared(server.to_string())
        .map_err(|_| {
            Error::Client(format!(
                "server {server:?} is not a URL like http://127.0.0.1:7070"
            ))
        })?
        .connect_timeout(Duration::from_secs(5))
        // A peer that stops answering (a paused or partitioned replica)
        // fails the calls waiting on it within 20 s, so a client can move
        // on to another replica, rather than wait forever.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if !server.starts_with("https://") {
        if tls.is_set() {
            return Err(Error::Client(format!(
                "server {server:?}: TLS files are set, so the URL must start with https://"
            )));
        }
        return Ok(endpoint);
    }
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca, "CA file")?)),
        None => config.with_native_roots(),
    };
    config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => config.identity(Identity::from_pem(
            read(cert, "client certificate")?,
            read(key, "client key")?,
        )),
        (None, None) => config,
        _ => {
            return Err(Error::Client(
                "a client certificate needs both its certificate and its key file".into(),
            ));
        }
    };
    endpoint
        .tls_config(config)
        .map_err(|e| Error::Client(format!("TLS settings for {server}: {e}")))
}

/// The innermost cause of an error, as people need it: "Connection
/// refused", not "transport error".
pub fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = e.to_string();
    let mut cause = e.source();
    while let Some(inner) = cause {
        reason = inner.to_string();
        cause = inner.source();
    }
    reason
}

/// Adds `authorization: Bearer <token>` to each request (nothing without a
/// token; the server then answers UNAUTHENTICATED), and the caller's trace
/// context (`traceparent`), so the server's spans join the caller's trace.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

/// Says whether there is a token, never what it is.
impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() {
            "<redacted>"
        } else {
            "none"
        };
        f.debug_tuple("Bearer").field(&shown).finish()
    }
}

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Bearer, Error> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Bearer(None)),
            Some(token) => format!("Bearer {token}")
                .parse::<MetadataValue<Ascii>>()
                .map(|mut value| {
                    // HTTP/2 then never adds it to a compression table.
                    value.set_sensitive(true);
                    Bearer(Some(value))
                })
                .map_err(|_| Error::Invalid("token", "holds characters a header cannot carry")),
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        tidewright_telemetry::inject_current(request.metadata_mut());
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_never_shows_its_token() {
        let bearer = Bearer::new(Some("s3cret-token")).expect("token");
        let shown = format!("{bearer:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let mut bearer = bearer;
        let request = bearer.call(Request::new(())).expect("intercepted");
        let value = request.metadata().get("authorization").expect("header");
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().expect("ascii"), "Bearer s3cret-token");
    }
}
