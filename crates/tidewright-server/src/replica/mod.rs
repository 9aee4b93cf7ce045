//! One replica's life on a store: it stands by (on PostgreSQL, answering
//! as a standby) until it leads, builds the leader's services (`leader`),
//! serves them until it is stopped, deposed or its engine fails, and closes
//! its ports.

mod candidate;
mod leader;
pub mod schedules;
mod standby;
mod triggers;

pub mod tenant_budgets;

use std::sync::Arc;
use std::time::Duration;

use tidewright_engine::metrics::Metrics;
use tidewright_engine::service::Templates;
use tidewright_store::leadership::{Leader, Leadership};
use tokio::sync::{oneshot, watch};

use crate::auth::Authenticator;
use crate::auth::step_token::StepTokens;
use crate::config::Config;
use crate::error::Error;
use crate::http::app::App;
use crate::port::acceptor::Acceptor;
use crate::port::tls::ReloadingConfig;
use crate::port::{self, Port};

use self::candidate::{Candidate, Leading};
use self::leader::LeaderServices;
use self::standby::StandbyServer;
use crate::store_url::StoreUrl;

/// How long a graceful stop waits for open streams before it cuts them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One run of a replica, from standing by (on PostgreSQL) through leading
/// to its stop.
pub(crate) struct ReplicaRun {
    pub config: Config,
    pub location: StoreUrl,
    pub leadership: Arc<dyn Leadership>,
    pub grpc: Acceptor,
    pub http: Option<Port>,
    pub tls: Option<Arc<ReloadingConfig>>,
    pub authenticator: Authenticator,
    pub step_tokens: Arc<StepTokens>,
    pub metrics: Arc<Metrics>,
    pub app: Arc<App>,
    pub templates: Arc<Templates>,
    pub stop_requested: oneshot::Receiver<()>,
    /// Told once the replica serves, as leader or standby.
    pub settled: oneshot::Sender<()>,
}

impl ReplicaRun {
    /// Stands by, leads, stops.
    pub(crate) async fn run(mut self) -> Result<(), Error> {
        let mut settled = Some(self.settled);
        let Some((leading, standby)) = stand_by(
            &self.config,
            &self.leadership,
            &self.grpc,
            &self.tls,
            &self.app,
            &mut self.stop_requested,
            &mut settled,
        )
        .await?
        else {
            port::close(self.grpc, self.http).await;
            return Ok(());
        };
        let services = LeaderServices::build(leader::Inputs {
            config: self.config,
            location: &self.location,
            epoch: leading.leader.epoch,
            leadership: self.leadership,
            authenticator: self.authenticator,
            step_tokens: self.step_tokens,
            metrics: self.metrics,
            templates: self.templates,
        })
        .await?;
        let leading = Lead {
            leading,
            standby,
            grpc: self.grpc,
            http: self.http,
            tls: self.tls,
            app: self.app,
            stop_requested: self.stop_requested,
            settled,
            store: self.location.redacted(),
        };
        leading.serve(services).await
    }
}

/// Waits until this replica leads (at once, as the sole owner of a SQLite
/// file), serving as a standby meanwhile. `None` when it was stopped first.
async fn stand_by(
    config: &Config,
    leadership: &Arc<dyn Leadership>,
    grpc: &Acceptor,
    tls: &Option<Arc<ReloadingConfig>>,
    app: &Arc<App>,
    stop_requested: &mut oneshot::Receiver<()>,
    settled: &mut Option<oneshot::Sender<()>>,
) -> Result<Option<(Leading, Option<StandbyServer>)>, Error> {
    let (leader_tx, leader) = watch::channel(None::<Leader>);
    let mut standby: Option<StandbyServer> = None;
    let candidate = Candidate::new(leadership.clone(), config.leader_lease);
    let (waiting, mut waited) = oneshot::channel();
    let standing = candidate.stand_by(&leader_tx, waiting);
    tokio::pin!(standing);
    loop {
        tokio::select! {
            leading = &mut standing => return Ok(Some((leading, standby))),
            Ok(()) = &mut waited, if standby.is_none() => {
                app.standing_by(leader.clone());
                standby = Some(StandbyServer::start(grpc, tls.clone(), leader.clone()).await?);
                if let Some(settled) = settled.take() {
                    let _ = settled.send(());
                }
                tracing::info!(address = %grpc.local_addr(), "standing by: another replica leads");
            }
            _ = &mut *stop_requested => {
                app.stopping();
                if let Some(standby) = standby {
                    standby.stop().await;
                }
                return Ok(None);
            }
        }
    }
}

/// A replica that leads, with what it serves on.
struct Lead {
    leading: Leading,
    /// The standby's server, until the leader's takes its connections.
    standby: Option<StandbyServer>,
    grpc: Acceptor,
    http: Option<Port>,
    tls: Option<Arc<ReloadingConfig>>,
    app: Arc<App>,
    stop_requested: oneshot::Receiver<()>,
    settled: Option<oneshot::Sender<()>>,
    /// Where tasks are kept, without a password, for the log.
    store: String,
}

impl Lead {
    /// Serves the leader's services on the gRPC port (and makes the HTTP
    /// port ready) until a stop, a lost lease or a fatal engine failure,
    /// then releases the lease and closes the ports.
    async fn serve(self, leader: LeaderServices) -> Result<(), Error> {
        let Lead {
            leading,
            mut standby,
            grpc,
            http,
            tls,
            app,
            mut stop_requested,
            mut settled,
            store,
        } = self;
        let epoch = leading.leader.epoch;
        // The lease is kept while serving; losing it stops the serving.
        let (deposed_tx, deposed) = watch::channel(None::<String>);
        let (release, released) = oneshot::channel();
        let keeping = tokio::spawn(async move {
            if let Some(why) = leading.keep(released).await {
                deposed_tx.send_replace(Some(why));
            }
        });

        let LeaderServices {
            engine,
            fatal,
            hub,
            router,
            services,
            background,
        } = leader;
        let state = services.state.clone();
        let (signalled, shutdown_started) = oneshot::channel::<()>();
        let stopping = app.clone();
        let (mut fatal_seen, mut deposed_seen) = (fatal.clone(), deposed.clone());
        let ending = engine.clone();
        let signal = async move {
            tokio::select! {
                _ = &mut stop_requested => {}
                _ = fatal_seen.changed() => {}
                Ok(()) = deposed_seen.changed() => {}
            }
            stopping.stopping();
            // Worker and watch streams never end on their own: end them.
            ending.shutdown().await;
            hub.close_all();
            state.close_topics();
            let _ = signalled.send(());
        };
        // From here on new connections reach the leader's services; the
        // standby's connections are ended, and their clients reconnect.
        let server = crate::grpc::serve_router(router, grpc.connections(), tls.clone(), signal);
        tokio::pin!(server);
        if let Some(standby) = standby.take() {
            tokio::select! {
                served = &mut server => {
                    served?;
                }
                _ = standby.stop() => {}
            }
        }
        app.ready(engine, services);
        if let Some(settled) = settled.take() {
            let _ = settled.send(());
        }
        tracing::info!(
            address = %grpc.local_addr(),
            tls = tls.is_some(),
            store = %store,
            epoch,
            "control plane serving"
        );
        let cut_off = async {
            let _ = shutdown_started.await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        let served = tokio::select! {
            served = &mut server => served.map_err(Error::from),
            _ = cut_off => {
                tracing::warn!("streams still open after the stop grace; cutting them");
                Ok(())
            }
        };
        // Released only now, with nothing more to write under this epoch.
        drop(background);
        let _ = release.send(());
        let _ = keeping.await;
        port::close(grpc, http).await;
        served?;
        if let Some(why) = deposed.borrow().clone() {
            return Err(Error::Deposed(why));
        }
        if let Some(message) = fatal.borrow().clone() {
            return Err(Error::Fatal(message));
        }
        Ok(())
    }
}
