//! The control plane's HTTP port: `/metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (the store is open and
//! gRPC is serving). It starts before the store opens, so a probe can tell
//! "starting" from "dead".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::engine::EngineHandle;
use crate::metrics::Metrics;

/// What the handlers read; the engine arrives once the store is open.
#[derive(Default)]
pub struct Status {
    pub metrics: Arc<Metrics>,
    engine: OnceLock<EngineHandle>,
    ready: AtomicBool,
}

impl Status {
    pub fn new(metrics: Arc<Metrics>) -> Status {
        Status {
            metrics,
            ..Status::default()
        }
    }

    /// The store is open and gRPC serves: ready for traffic.
    pub fn ready(&self, engine: EngineHandle) {
        let _ = self.engine.set(engine);
        self.ready.store(true, Ordering::Release);
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(status): State<Arc<Status>>) -> impl IntoResponse {
    // Before the engine runs there is no queue and no worker to count.
    let now = match status.engine.get() {
        Some(engine) => engine.list_agents().await.unwrap_or_default(),
        None => Default::default(),
    };
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        status.metrics.render(&now),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(status): State<Arc<Status>>) -> (StatusCode, &'static str) {
    if status.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the store is not open yet\n",
        )
    }
}

/// Serves the HTTP port on `listener` until the handle is aborted.
pub fn serve(listener: TcpListener, status: Arc<Status>) -> JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(status);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP port stopped");
        }
    })
}
