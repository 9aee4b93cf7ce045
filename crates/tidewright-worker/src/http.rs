//! A worker's HTTP port: `/metrics` (its own Prometheus metrics), `/healthz`
//! (the process answers) and `/readyz` (registered with the control plane,
//! so able to take work). `/metrics` needs the bearer token the worker was
//! given for it; a port reachable from other hosts must have one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::metrics::WorkerMetrics;

/// Where the worker serves its HTTP port, and the token scrapers present.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// What `/metrics` asks for as `Authorization: Bearer <token>`; without
    /// one the port must be loopback, where only this host's users reach it.
    pub metrics_token: Option<String>,
}

struct Served {
    metrics: Arc<WorkerMetrics>,
    token: Option<String>,
}

/// Binds the port (refusing an open port without a token) and serves it
/// until the handle is aborted.
pub async fn serve(
    settings: &HttpSettings,
    metrics: Arc<WorkerMetrics>,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    let token = settings
        .metrics_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if token.is_none() && !settings.listen.ip().is_loopback() {
        return Err(Error::Settings(format!(
            "--http-listen {}: other hosts can reach it, so /metrics needs a token (--metrics-token-file)",
            settings.listen
        )));
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| Error::Settings(format!("--http-listen {}: {e}", settings.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Settings(format!("--http-listen {}: {e}", settings.listen)))?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(Served { metrics, token }));
    let serving = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the worker's HTTP port stopped");
        }
    });
    Ok((addr, serving))
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn scrape(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if let Some(expected) = &served.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let refusal = match presented {
            None => Some("a bearer token is required (authorization: Bearer <token>)\n"),
            Some(token) if !same_secret(token, expected) => Some("the token is not valid\n"),
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                refusal,
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        served.metrics.render(),
    )
        .into_response()
}

/// Compares without stopping at the first differing byte, so the time taken
/// says nothing of how much of a guess was right.
fn same_secret(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(served): State<Arc<Served>>) -> (StatusCode, &'static str) {
    if served.metrics.is_connected() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not registered with the control plane\n",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("tidewright_abc", "tidewright_abc"));
        assert!(!same_secret("tidewright_abd", "tidewright_abc"));
        assert!(!same_secret("tidewright_ab", "tidewright_abc"));
        assert!(!same_secret("", "tidewright_abc"));
    }

    #[tokio::test]
    async fn an_open_port_without_a_token_is_refused() {
        let settings = HttpSettings {
            listen: "0.0.0.0:0".parse().expect("addr"),
            metrics_token: None,
        };
        let err = serve(&settings, Arc::new(WorkerMetrics::new(1)))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("--metrics-token-file"), "{err}");
    }
}
