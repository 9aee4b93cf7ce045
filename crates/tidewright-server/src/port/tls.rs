//! TLS for the gRPC listener and the HTTP port. Certificates are read from
//! disk and read again when the files change, so a renewed certificate
//! (cert-manager, an ACME client) takes effect on the next connection
//! without a restart. With a
//! client CA, clients may present a certificate; a presented one must chain
//! to that CA, and workers must present one (mTLS).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::Error;
use crate::error::read_file;

/// A client that has not finished its handshake by then is dropped, so
/// idle sockets cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's certificate, key and (optional) client CA live.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to. With it,
    /// workers must present a client certificate.
    pub client_ca: Option<PathBuf>,
}

/// The protocol a listener speaks over TLS, as ALPN names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: HTTP/2 only.
    Grpc,
    /// The HTTP port (metrics, probes): HTTP/1.1.
    Http1,
}

impl Protocol {
    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Protocol::Grpc => vec![b"h2".to_vec()],
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
        }
    }
}

/// The server's TLS configuration, rebuilt when its files change.
pub struct ReloadingConfig {
    files: TlsFiles,
    protocol: Protocol,
    current: Mutex<Loaded>,
}

struct Loaded {
    /// The files' contents the config was built from.
    contents: Vec<Vec<u8>>,
    config: Arc<ServerConfig>,
}

impl ReloadingConfig {
    /// Loads the files once; a bad file stops the start with its name.
    pub fn load(files: TlsFiles, protocol: Protocol) -> Result<ReloadingConfig, Error> {
        let contents = read_all(&files)?;
        let config = Arc::new(build(&files, &contents, protocol)?);
        Ok(ReloadingConfig {
            files,
            protocol,
            current: Mutex::new(Loaded { contents, config }),
        })
    }

    /// The config for a new connection: rebuilt if the files changed. A
    /// half-written or broken renewal keeps the last good config serving.
    fn config(&self) -> Arc<ServerConfig> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match read_all(&self.files) {
            Ok(contents) if contents != current.contents => {
                match build(&self.files, &contents, self.protocol) {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificates reloaded");
                        *current = Loaded {
                            contents,
                            config: Arc::new(config),
                        };
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "TLS files unreadable; keeping the previous ones"),
        }
        current.config.clone()
    }
}

fn read_all(files: &TlsFiles) -> Result<Vec<Vec<u8>>, Error> {
    let paths = [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ];
    paths.into_iter().flatten().map(|p| read_file(p)).collect()
}

fn tls_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{}: {what}", path.display()))
}

fn build(
    files: &TlsFiles,
    contents: &[Vec<u8>],
    protocol: Protocol,
) -> Result<ServerConfig, Error> {
    let certs = CertificateDer::pem_slice_iter(&contents[0])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(tls_error(&files.cert, "holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| tls_error(&files.key, e))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match (&files.client_ca, contents.get(2)) {
        (Some(path), Some(pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| tls_error(path, e))?;
                roots.add(cert).map_err(|e| tls_error(path, e))?;
            }
            if roots.is_empty() {
                return Err(tls_error(path, "holds no PEM certificate"));
            }
            // Users' CLIs connect without a certificate; workers are held
            // to one in the agent service. A certificate that is presented
            // must be valid, or the handshake fails.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls_error(path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&files.key, e))?;
    config.alpn_protocols = protocol.alpn();
    Ok(config)
}

/// Yields the `connections` whose TLS handshake succeeds. Handshakes run
/// concurrently, so a slow client holds up no one. Ends when the
/// connections do, or when the server drops the stream.
pub fn incoming(
    mut connections: ReceiverStream<TcpStream>,
    tls: Arc<ReloadingConfig>,
) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
    let (ready, stream) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let socket = tokio::select! {
                socket = connections.next() => match socket {
                    Some(socket) => socket,
                    None => return,
                },
                _ = ready.closed() => return,
            };
            let acceptor = TlsAcceptor::from(tls.config());
            let ready = ready.clone();
            tokio::spawn(async move {
                let peer = socket.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(stream)
}

/// The HTTP port's listener under TLS: yields connections whose handshake
/// succeeded, for `axum::serve`.
pub struct HttpsListener {
    incoming: ReceiverStream<io::Result<TlsStream<TcpStream>>>,
    local_addr: std::net::SocketAddr,
}

impl HttpsListener {
    pub fn new(
        connections: ReceiverStream<TcpStream>,
        local_addr: std::net::SocketAddr,
        tls: Arc<ReloadingConfig>,
    ) -> HttpsListener {
        HttpsListener {
            incoming: incoming(connections, tls),
            local_addr,
        }
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => {
                    let Ok(peer) = stream.get_ref().0.peer_addr() else {
                        continue;
                    };
                    return (stream, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop only ends with the listener: serve nothing.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
