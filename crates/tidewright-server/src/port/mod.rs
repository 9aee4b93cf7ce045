//! The control plane's two ports: binding them (the HTTP port falling back
//! to one the system picks when the default is taken), the acceptor that
//! hands a port's connections to whichever server serves now, TLS, and
//! closing them again.

pub mod acceptor;
pub mod tls;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Error, PortName};

use self::acceptor::Acceptor;

/// A bound port and what serves it.
pub(crate) struct Port {
    pub acceptor: Acceptor,
    pub serving: JoinHandle<()>,
}

pub(crate) async fn bind(listen: SocketAddr, port: PortName) -> Result<Acceptor, Error> {
    let bound = |source| Error::Bind {
        port,
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bound)?;
    Acceptor::new(listener).map_err(bound)
}

/// Binds the HTTP port at `listen`; when that port is taken and `fallback`
/// says the address was tidewright's choice, not the user's, at a port the
/// system picks on the same interface instead.
pub(crate) async fn bind_http(listen: SocketAddr, fallback: bool) -> Result<Acceptor, Error> {
    match bind(listen, PortName::Http).await {
        Err(Error::Bind { source, .. })
            if fallback && source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            let any = SocketAddr::new(listen.ip(), 0);
            let acceptor = bind(any, PortName::Http).await?;
            tracing::info!(busy = %listen, serving = %acceptor.local_addr(), "the HTTP port tidewright chose was taken; serving HTTP on one the system picked");
            Ok(acceptor)
        }
        bound => bound,
    }
}

/// Closes both ports, so they can be bound again at once.
pub(crate) async fn close(grpc: Acceptor, http: Option<Port>) {
    grpc.close().await;
    if let Some(Port { acceptor, serving }) = http {
        serving.abort();
        let _ = serving.await;
        acceptor.close().await;
    }
}
