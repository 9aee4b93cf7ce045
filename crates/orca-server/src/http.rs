//! The control plane's HTTP port: `/metrics` (Prometheus text format),
//! `/healthz` (the process answers), `/readyz` (the store is open and
//! gRPC is serving) and the JSON API under `/api/v1` (see `rest`). It starts before the store opens, so a probe can tell
//! "starting" from "dead". Probes need nothing; `/metrics` needs a bearer
//! token as gRPC does (see `auth`), and the port speaks TLS when gRPC does.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use orca_store_postgres::lease::Leader;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::acceptor::Acceptor;
use crate::auth::{Action, Authenticator, Identity};
use crate::console;
use crate::engine::EngineHandle;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::rest::{self, Services};
use crate::session::{self, Session, Sessions};
use crate::tls::{HttpsListener, ReloadingConfig};

/// What the handlers read; the engine arrives once the store is open, and
/// its arrival is what makes the control plane ready. A standby replica is
/// never ready: the Service sends traffic only to the leader.
pub struct Status {
    metrics: Arc<Metrics>,
    authenticator: Authenticator,
    engine: OnceLock<EngineHandle>,
    /// What `/api/v1` calls: the leader's gRPC services.
    services: OnceLock<Arc<Services>>,
    /// Who leads, while this replica stands by.
    standby: Mutex<Option<watch::Receiver<Option<Leader>>>>,
    stopping: AtomicBool,
    /// The console's browser sessions.
    pub sessions: Sessions,
    /// The port speaks TLS: session cookies are then Secure.
    tls: AtomicBool,
}

/// Whether a request reads or changes something: a change authenticated
/// by a session cookie must carry the session's CSRF token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Change,
}

/// The CSRF token's header.
pub const CSRF_HEADER: &str = "x-csrf-token";

impl Status {
    pub fn new(metrics: Arc<Metrics>, authenticator: Authenticator) -> Status {
        Status {
            metrics,
            authenticator,
            engine: OnceLock::new(),
            services: OnceLock::new(),
            standby: Mutex::new(None),
            stopping: AtomicBool::new(false),
            sessions: Sessions::default(),
            tls: AtomicBool::new(false),
        }
    }

    /// This replica stands by; `leader` says who leads.
    pub fn standing_by(&self, leader: watch::Receiver<Option<Leader>>) {
        if let Ok(mut standby) = self.standby.lock() {
            *standby = Some(leader);
        }
    }

    /// The store is open and gRPC serves: ready for traffic.
    pub fn ready(&self, engine: EngineHandle, services: Services) {
        if let Ok(mut standby) = self.standby.lock() {
            *standby = None;
        }
        let _ = self.services.set(Arc::new(services));
        let _ = self.engine.set(engine);
    }

    /// The services `/api/v1` calls, or UNAVAILABLE saying why there are
    /// none here (starting, standing by, stopping), as `/readyz` says it.
    pub fn services(&self) -> Result<Arc<Services>, tonic::Status> {
        match (self.readiness(), self.services.get()) {
            ((StatusCode::OK, _), Some(services)) => Ok(services.clone()),
            ((_, why), _) => Err(tonic::Status::unavailable(why.trim_end())),
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Who sends a request: its bearer token's identity, else its session
    /// cookie's, and then its rate, as gRPC checks it. With the cookie, a
    /// change needs the session's CSRF token as well. The session comes
    /// back too (its id and it) when the cookie named one.
    pub fn caller(
        &self,
        headers: &HeaderMap,
        access: Access,
    ) -> Result<(Identity, Option<(String, Session)>), Error> {
        if headers.contains_key(header::AUTHORIZATION) {
            return Ok((self.authenticator.identify(headers)?, None));
        }
        let Some(id) = session::cookie(headers, session::COOKIE) else {
            return Err(Error::Unauthenticated(
                "a bearer token (authorization: Bearer <token>) or a console session is required"
                    .into(),
            ));
        };
        let session = self.sessions.get(id).ok_or_else(|| {
            Error::Unauthenticated("the console session has ended; sign in again".into())
        })?;
        if access == Access::Change {
            let sent = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !session::same_secret(sent, &session.csrf) {
                return Err(Error::PermissionDenied(
                    "a change made with a console session needs its CSRF token in X-CSRF-Token"
                        .into(),
                ));
            }
        }
        self.authenticator.check_rate(&session.identity)?;
        Ok((session.identity.clone(), Some((id.to_string(), session))))
    }

    /// Session cookies get `Secure` when the port speaks TLS.
    pub fn secure_cookies(&self) -> bool {
        self.tls.load(Ordering::SeqCst)
    }

    /// A proxy serves this port over TLS: cookies are Secure.
    pub fn behind_tls(&self) {
        self.tls.store(true, Ordering::SeqCst);
    }

    /// Stopping (or deposed): take no more traffic.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn readiness(&self) -> (StatusCode, String) {
        let unavailable = |why: String| (StatusCode::SERVICE_UNAVAILABLE, why);
        if self.stopping.load(Ordering::SeqCst) {
            return unavailable("stopping\n".into());
        }
        if self.engine.get().is_some() {
            return (StatusCode::OK, "ready\n".into());
        }
        let standby = self.standby.lock().ok().and_then(|s| s.clone());
        match standby {
            Some(leader) => match leader.borrow().as_ref() {
                Some(leader) => unavailable(format!(
                    "standby: the leader is {} at {} (epoch {})\n",
                    leader.name, leader.address, leader.epoch
                )),
                None => unavailable("standby: no replica leads at the moment\n".into()),
            },
            None => unavailable("starting: the store is not open yet\n".into()),
        }
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

/// A one-time sign-in link (`orca up` prints one): opens a session and
/// sends the browser to the console.
async fn login(
    State(status): State<Arc<Status>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let code = query.get("code").map(String::as_str).unwrap_or_default();
    match status.sessions.redeem(code) {
        Ok((id, _)) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_string()),
                (
                    header::SET_COOKIE,
                    session::set_cookie(Some(&id), status.secure_cookies()),
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

async fn readyz(State(status): State<Arc<Status>>) -> (StatusCode, String) {
    status.readiness()
}

/// Serves the HTTP port on the acceptor's connections (over TLS with
/// `tls`) until the handle is aborted.
pub fn serve(
    acceptor: &Acceptor,
    tls: Option<Arc<ReloadingConfig>>,
    status: Arc<Status>,
    max_body: usize,
) -> JoinHandle<()> {
    if tls.is_some() {
        status.behind_tls();
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/login", get(login))
        .nest("/api/v1", rest::routes(max_body))
        .merge(console::routes())
        .fallback(console::fallback)
        .with_state(status);
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
