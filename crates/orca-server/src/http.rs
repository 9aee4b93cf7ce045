//! The control plane's HTTP port: `/metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (the store is open and
//! gRPC is serving). It starts before the store opens, so a probe can tell
//! "starting" from "dead". Probes need nothing; `/metrics` needs a bearer
//! token as gRPC does (see `auth`), and the port speaks TLS when gRPC does.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::auth::{Action, Authenticator};
use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use crate::tls::{HttpsListener, ReloadingConfig};

/// What the handlers read; the engine arrives once the store is open, and
/// its arrival is what makes the control plane ready.
pub struct Status {
    metrics: Arc<Metrics>,
    authenticator: Authenticator,
    engine: OnceLock<EngineHandle>,
}

impl Status {
    pub fn new(metrics: Arc<Metrics>, authenticator: Authenticator) -> Status {
        Status {
            metrics,
            authenticator,
            engine: OnceLock::new(),
        }
    }

    /// The store is open and gRPC serves: ready for traffic.
    pub fn ready(&self, engine: EngineHandle) {
        let _ = self.engine.set(engine);
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(status): State<Arc<Status>>, headers: HeaderMap) -> Response {
    if let Err(refused) = status
        .authenticator
        .authorize_http(&headers, Action::ReadMetrics)
    {
        return refused.into_response();
    }
    // Before the engine runs there is no queue and no worker to count.
    let now = match status.engine.get() {
        Some(engine) => engine.list_agents().await.unwrap_or_default(),
        None => Default::default(),
    };
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        status.metrics.render(&now),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(status): State<Arc<Status>>) -> (StatusCode, &'static str) {
    if status.engine.get().is_some() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the store is not open yet\n",
        )
    }
}

/// Serves the HTTP port on `listener` (over TLS with `tls`) until the
/// handle is aborted.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadingConfig>>,
    status: Arc<Status>,
) -> std::io::Result<JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(status);
    let serving: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(tls) => {
            let listener = HttpsListener::new(listener, tls)?;
            Box::pin(async move { axum::serve(listener, app).await })
        }
        None => Box::pin(async move { axum::serve(listener, app).await }),
    };
    Ok(tokio::spawn(async move {
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "the HTTP port stopped");
        }
    }))
}
