//! What the HTTP port's handlers share (`App`): the caller's
//! identity from a token or a console session, whether the control plane
//! is ready, and the leader's services that `/api/v1` calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{HeaderMap, StatusCode, header};
use tidewright_store::leadership::Leader;
use tokio::sync::watch;

use crate::auth::session::{self, Session, Sessions};
use crate::auth::{Authenticator, Identity};
use crate::error::Error;
use tidewright_engine::EngineHandle;
use tidewright_engine::Error as Refusal;
use tidewright_engine::metrics::Metrics;
/// The services the routes call, the leader's; they exist once the store
/// is open.
pub use tidewright_engine::service::Services;

/// What the handlers read; the engine arrives once the store is open, and
/// its arrival is what makes the control plane ready. A standby replica is
/// never ready: the Service sends traffic only to the leader.
pub struct App {
    metrics: Arc<Metrics>,
    authenticator: Authenticator,
    engine: OnceLock<EngineHandle>,
    /// What `/api/v1` calls: the leader's services.
    services: OnceLock<Arc<Services>>,
    /// Who leads, while this replica stands by.
    standby: Mutex<Option<watch::Receiver<Option<Leader>>>>,
    stopping: AtomicBool,
    /// The console's browser sessions.
    pub sessions: Sessions,
    /// The port speaks TLS: session cookies are then Secure.
    tls: AtomicBool,
    /// Forge webhooks' secret and the deliveries taken, when the control
    /// plane takes them.
    forge_hooks: OnceLock<crate::auth::forge_hooks::ForgeHooks>,
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

impl App {
    pub fn new(metrics: Arc<Metrics>, authenticator: Authenticator) -> App {
        App {
            metrics,
            authenticator,
            engine: OnceLock::new(),
            services: OnceLock::new(),
            standby: Mutex::new(None),
            stopping: AtomicBool::new(false),
            sessions: Sessions::default(),
            tls: AtomicBool::new(false),
            forge_hooks: OnceLock::new(),
        }
    }

    /// This control plane takes forge webhooks, checked with `hooks`.
    pub fn take_forge_hooks(&self, hooks: crate::auth::forge_hooks::ForgeHooks) {
        let _ = self.forge_hooks.set(hooks);
    }

    pub(crate) fn forge_hooks(&self) -> Option<&crate::auth::forge_hooks::ForgeHooks> {
        self.forge_hooks.get()
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
    pub fn services(&self) -> Result<Arc<Services>, Error> {
        match (self.readiness(), self.services.get()) {
            ((StatusCode::OK, _), Some(services)) => Ok(services.clone()),
            ((_, why), _) => Err(Error::Service(Refusal::Unavailable(
                why.trim_end().to_string(),
            ))),
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The engine, once the store is open.
    pub fn engine(&self) -> Option<&EngineHandle> {
        self.engine.get()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
            return Err(Error::Service(Refusal::Unauthenticated(
                "a bearer token (authorization: Bearer <token>) or a console session is required"
                    .into(),
            )));
        };
        let session = self.sessions.get(id).ok_or_else(|| {
            Error::Service(Refusal::Unauthenticated(
                "the console session has ended; sign in again".into(),
            ))
        })?;
        if access == Access::Change {
            let sent = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !session::same_secret(sent, &session.csrf) {
                return Err(Error::Service(Refusal::PermissionDenied(
                    "a change made with a console session needs its CSRF token in X-CSRF-Token"
                        .into(),
                )));
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

    pub(crate) fn readiness(&self) -> (StatusCode, String) {
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
