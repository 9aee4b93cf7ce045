//! The control plane's HTTP port: `/metrics` (Prometheus text format),
//! `/healthz` (the process answers), `/readyz` (the store is open and
//! gRPC is serving) and the JSON API under `/api/v1` (see `rest`). It starts before the store opens, so a probe can tell
//! "starting" from "dead". Probes need nothing; `/metrics` needs a bearer
//! token as gRPC does (see `auth`), and the port speaks TLS when gRPC does.

pub(crate) mod a2a;
pub mod app;
mod console;
pub mod hooks;
mod mcp;
mod rest;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::Action;
use crate::auth::session;
use crate::http::app::App;
use crate::port::acceptor::Acceptor;
use crate::port::tls::{HttpsListener, ReloadingConfig};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(refused) = app
        .authenticator()
        .authorize_http(&headers, Action::ReadMetrics)
    {
        return refused.into_response();
    }
    // Before the engine runs there is no queue and no worker to count.
    let now = match app.engine() {
        Some(engine) => engine.list_agents().await.unwrap_or_default(),
        None => Default::default(),
    };
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        app.metrics().render(&now),
    )
        .into_response()
}

/// A one-time sign-in link (`tidewright up` prints one): opens a session and
/// sends the browser to the console.
async fn login(
    State(app): State<Arc<App>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let code = query.get("code").map(String::as_str).unwrap_or_default();
    match app.sessions.redeem(code) {
        Ok((id, _)) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_string()),
                (
                    header::SET_COOKIE,
                    session::set_cookie(Some(&id), app.secure_cookies()),
                ),
            ],
        )
            .into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, String) {
    app.readiness()
}

/// Serves the HTTP port on the acceptor's connections (over TLS with
/// `tls`) until the handle is aborted.
pub fn serve(
    acceptor: &Acceptor,
    tls: Option<Arc<ReloadingConfig>>,
    app: Arc<App>,
    max_body: usize,
) -> JoinHandle<()> {
    if tls.is_some() {
        app.behind_tls();
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/login", get(login))
        .nest("/api/v1", rest::routes(max_body))
        .merge(mcp::routes(app.clone(), max_body))
        .merge(a2a::routes(max_body))
        .merge(hooks::routes(max_body))
        .merge(console::routes())
        .fallback(console::fallback)
        .with_state(app);
    let connections = acceptor.connections();
    let local_addr = acceptor.local_addr();
    let serving: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(tls) => {
            let listener = HttpsListener::new(connections, local_addr, tls);
            Box::pin(async move { axum::serve(listener, app).await })
        }
        None => {
            let listener = Connections {
                connections,
                local_addr,
            };
            Box::pin(async move { axum::serve(listener, app).await })
        }
    };
    tokio::spawn(async move {
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "the HTTP port stopped");
        }
    })
}

/// The acceptor's plaintext connections, for `axum::serve`.
struct Connections {
    connections: ReceiverStream<TcpStream>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for Connections {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.connections.next().await {
                Some(socket) => match socket.peer_addr() {
                    Ok(peer) => return (socket, peer),
                    Err(_) => continue,
                },
                // The port is closing: serve nothing more.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}
