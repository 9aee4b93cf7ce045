//! The credential broker: a step's `credentials` ([`tidewright_core::credential`])
//! added by its egress proxy to its HTTPS requests to the hosts they name.
//!
//! Each attempt gets a CA of its own, made here and never written where the
//! step can read its key; the sandbox trusts it beside the roots the worker
//! trusts. A `CONNECT` to a brokered host is answered with TLS the proxy
//! terminates, with a certificate for that host from the attempt's CA; each
//! request on it goes on to the host over TLS the worker verifies, with
//! the credential's header put in place of any the step sent (its
//! placeholder), the `Host` the credential's own (so a shared front cannot
//! route it to another site), and no compression asked for (so an answer
//! that quotes the secret is masked before the step reads it). A `CONNECT`
//! to any other host is tunnelled as it was: the secret never goes there.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tidewright_core::credential::Credential;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::Door;

/// What a placeholder variable holds: the step's tools see a token that
/// is worth nothing anywhere.
const PLACEHOLDER_PREFIX: &str = "tidewright-placeholder-";

/// The variables each TLS client in a sandbox reads its trusted roots
/// from: OpenSSL's (curl, git, Python's ssl), Go's, Python requests',
/// curl's and git's own. Node reads only the CA, as extra roots.
const BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "REQUESTS_CA_BUNDLE",
];
const EXTRA_CA_VARS: &[&str] = &["NODE_EXTRA_CA_CERTS"];

/// The TLS client settings brokered hosts are reached with.
pub type Rustls = rustls::ClientConfig;

/// One brokered host and what is sent to it.
struct Brokered {
    host: String,
    port: u16,
    header: HeaderName,
    value: HeaderValue,
    /// The secret, to mask in what comes back.
    secret: Vec<u8>,
}

/// One attempt's broker.
pub struct Broker {
    ca: CertifiedIssuer<'static, KeyPair>,
    brokered: Vec<Brokered>,
    /// The placeholder variables: (name, value).
    placeholders: Vec<(String, String)>,
    /// A host's TLS, made at its first `CONNECT`.
    leaves: Mutex<HashMap<usize, Arc<rustls::ServerConfig>>>,
    upstream: Arc<rustls::ClientConfig>,
}

/// How a worker reaches brokered hosts: over TLS it verifies with the
/// roots it trusts (the system's, or `SSL_CERT_FILE`'s).
pub fn worker_roots() -> Result<Arc<Rustls>, String> {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_native_roots()
        .map_err(|e| format!("loading the worker's trusted roots: {e}"))?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Broker {
    /// Reads each credential's secret from `secrets_dir` and makes the
    /// attempt's CA; why not, naming the credential, never a value.
    pub fn new(
        credentials: &[Credential],
        secrets_dir: Option<&Path>,
        upstream: Arc<rustls::ClientConfig>,
    ) -> Result<Broker, String> {
        let mut brokered = Vec::new();
        let mut placeholders = Vec::new();
        for credential in credentials {
            let (host, port) = credential
                .destination()
                .map_err(|why| format!("credential for {}: {why}", credential.host))?;
            let secret =
                tidewright_core::secret::read(secrets_dir, &credential.secret).map_err(|why| {
                    format!("secret {:?} for {host}:{port}: {why}", credential.secret)
                })?;
            let header = HeaderName::from_bytes(credential.header.as_bytes())
                .map_err(|_| format!("credential for {host}:{port}: a bad header name"))?;
            let mut value = HeaderValue::from_str(&credential.value(&secret)).map_err(|_| {
                format!(
                    "secret {:?} for {host}:{port} cannot be sent in a header (it holds a line break or a control character)",
                    credential.secret
                )
            })?;
            value.set_sensitive(true);
            if !credential.env.is_empty() {
                let placeholder = format!(
                    "{PLACEHOLDER_PREFIX}{}",
                    crate::sandbox::model_proxy::random_hex()
                );
                placeholders.push((credential.env.clone(), placeholder));
            }
            brokered.push(Brokered {
                host,
                port,
                header,
                value,
                secret: secret.into_bytes(),
            });
        }
        let ca = make_ca(&brokered).map_err(|e| format!("making the step's CA: {e}"))?;
        Ok(Broker {
            ca,
            brokered,
            placeholders,
            leaves: Mutex::new(HashMap::new()),
            upstream,
        })
    }

    /// Which credential `host:port` has, if any.
    pub(crate) fn covers(&self, host: &str, port: u16) -> Option<usize> {
        let host = tidewright_core::egress::normalize_host(host);
        self.brokered
            .iter()
            .position(|b| b.host == host && b.port == port)
    }

    /// The brokered destinations, as (host, port): these go through the
    /// proxy, never around it.
    pub(crate) fn destinations(&self) -> impl Iterator<Item = (&str, u16)> {
        self.brokered.iter().map(|b| (b.host.as_str(), b.port))
    }

    /// The attempt's CA certificate (no key), DER.
    pub fn ca_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// The attempt's CA certificate (no key), PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// What the step's processes get: the placeholders, and the trust
    /// variables pointing at `bundle` (the worker's roots and the CA) and
    /// `ca` (the CA alone), as the sandbox sees them.
    pub(crate) fn env(&self, bundle: &Path, ca: &Path) -> Vec<(String, String)> {
        let mut env = self.placeholders.clone();
        let bundle = bundle.display().to_string();
        let ca = ca.display().to_string();
        env.extend(BUNDLE_VARS.iter().map(|v| (v.to_string(), bundle.clone())));
        env.extend(EXTRA_CA_VARS.iter().map(|v| (v.to_string(), ca.clone())));
        env
    }

    /// The TLS a step's client meets for brokered host `n`.
    fn leaf(&self, n: usize) -> Result<Arc<rustls::ServerConfig>, String> {
        let mut leaves = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = leaves.get(&n) {
            return Ok(config.clone());
        }
        let host = &self.brokered[n].host;
        let params = CertificateParams::new(vec![host.clone()]).map_err(|e| e.to_string())?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.ca)
            .map_err(|e| e.to_string())?;
        let chain = vec![cert.der().clone(), self.ca.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        leaves.insert(n, config.clone());
        Ok(config)
    }

    /// Serves brokered host `n` to the step on `client` (after its
    /// `CONNECT` was answered), each request sent on over `upstream` (a
    /// connection to an address the door checked), and over new ones
    /// the door opens when the host closes one.
    pub(super) async fn serve<S>(&self, client: S, upstream: TcpStream, n: usize, door: &Door)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let brokered = &self.brokered[n];
        let Ok(leaf) = self.leaf(n) else {
            return;
        };
        let Ok(client) = tokio_rustls::TlsAcceptor::from(leaf).accept(client).await else {
            return;
        };
        let Some(sender) = self.connect(upstream, n).await else {
            return;
        };
        let sender = tokio::sync::Mutex::new(sender);
        let authority = if brokered.port == 443 {
            brokered.host.clone()
        } else {
            super::proxy::said_as(&brokered.host, brokered.port)
        };
        let Ok(authority) = HeaderValue::from_str(&authority) else {
            return;
        };
        let service = hyper::service::service_fn(|mut request: hyper::Request<Incoming>| {
            let headers = request.headers_mut();
            headers.remove(&brokered.header);
            headers.insert(brokered.header.clone(), brokered.value.clone());
            headers.insert(hyper::header::HOST, authority.clone());
            headers.insert(
                hyper::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            headers.remove(hyper::header::PROXY_AUTHORIZATION);
            let sender = &sender;
            async move {
                let mut sender = sender.lock().await;
                if sender.ready().await.is_err() {
                    let Ok(fresh) = door.open(&brokered.host, brokered.port).await else {
                        return Err(Unreachable);
                    };
                    match self.connect(fresh, n).await {
                        Some(fresh) => *sender = fresh,
                        None => return Err(Unreachable),
                    }
                }
                let answer = sender
                    .send_request(request)
                    .await
                    .map_err(|_| Unreachable)?;
                let (mut parts, body) = answer.into_parts();
                for value in parts.headers.values_mut() {
                    if let Some(masked) = mask_value(value, &brokered.secret) {
                        *value = masked;
                    }
                }
                Ok::<_, Unreachable>(hyper::Response::from_parts(
                    parts,
                    Masked::new(body, brokered.secret.clone()),
                ))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(client), service)
            .await;
    }

    /// An HTTP/1.1 connection over TLS to brokered host `n`.
    async fn connect(
        &self,
        tcp: TcpStream,
        n: usize,
    ) -> Option<hyper::client::conn::http1::SendRequest<Incoming>> {
        let host = &self.brokered[n].host;
        let name = rustls::pki_types::ServerName::try_from(host.clone()).ok()?;
        let tls = tokio_rustls::TlsConnector::from(self.upstream.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| tracing::warn!(host = %host, error = %e, "a brokered host's TLS failed"))
            .ok()?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(connection);
        Some(sender)
    }
}

/// The brokered host could not be reached: the step's client sees its
/// connection end.
#[derive(Debug)]
struct Unreachable;

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the brokered host could not be reached")
    }
}

impl std::error::Error for Unreachable {}

/// A CA for one attempt, allowed to vouch only for the hosts it brokers
/// (name constraints: a client that checks them trusts it for nothing
/// else).
fn make_ca(brokered: &[Brokered]) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "tidewright step credential broker",
    );
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let permitted = brokered
        .iter()
        .map(|b| match b.host.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::from_addr_prefix(ip, bits))
            }
            Err(_) => rcgen::GeneralSubtree::DnsName(b.host.clone()),
        })
        .collect();
    params.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: Vec::new(),
    });
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

/// The bytes of `data` with each whole `secret` in them starred, the
/// length kept (so a `Content-Length` still holds).
fn mask(data: &mut [u8], secret: &[u8]) -> bool {
    if secret.is_empty() || data.len() < secret.len() {
        return false;
    }
    let mut masked = false;
    let mut at = 0;
    while let Some(found) = memchr::memmem::find(&data[at..], secret) {
        let start = at + found;
        data[start..start + secret.len()].fill(b'*');
        at = start + secret.len();
        masked = true;
    }
    masked
}

fn mask_value(value: &HeaderValue, secret: &[u8]) -> Option<HeaderValue> {
    let mut bytes = value.as_bytes().to_vec();
    if !mask(&mut bytes, secret) {
        return None;
    }
    HeaderValue::from_bytes(&bytes).ok()
}

/// An answer's body with the secret starred as it streams: the last
/// bytes of each chunk wait for the next, where a secret cut across two
/// would end.
struct Masked {
    inner: Incoming,
    secret: Vec<u8>,
    held: Vec<u8>,
    /// Trailers, sent after what is held.
    trailers: Option<Frame<Bytes>>,
    ended: bool,
}

impl Masked {
    fn new(inner: Incoming, secret: Vec<u8>) -> Masked {
        Masked {
            inner,
            secret,
            held: Vec::new(),
            trailers: None,
            ended: false,
        }
    }
}

impl Body for Masked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                if !this.held.is_empty() {
                    let rest = std::mem::take(&mut this.held);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest)))));
                }
                return Poll::Ready(this.trailers.take().map(Ok));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.held.extend_from_slice(&data);
                        mask(&mut this.held, &this.secret);
                        let keep = this.secret.len().saturating_sub(1);
                        if this.held.len() > keep {
                            let rest = this.held.split_off(this.held.len() - keep);
                            let out = std::mem::replace(&mut this.held, rest);
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(trailers) => {
                        this.trailers = Some(trailers);
                        this.ended = true;
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        // Masking keeps the length.
        let mut hint = self.inner.size_hint();
        let held = self.held.len() as u64;
        hint.set_lower(hint.lower() + held);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_starred_in_place_wherever_it_is() {
        let mut data = b"a s3cret and s3cret".to_vec();
        assert!(mask(&mut data, b"s3cret"));
        assert_eq!(data, b"a ****** and ******");
        let mut none = b"nothing".to_vec();
        assert!(!mask(&mut none, b"s3cret"));
        let value = HeaderValue::from_static("Bearer s3cret");
        assert_eq!(
            mask_value(&value, b"s3cret").as_ref().map(|v| v.as_bytes()),
            Some(&b"Bearer ******"[..])
        );
    }

    #[test]
    fn a_brokers_ca_vouches_only_for_its_hosts_and_holds_no_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("gh"), "s3cret-value\n").expect("secret");
        let credential = Credential {
            host: "api.github.com".into(),
            secret: "gh".into(),
            header: "Authorization".into(),
            format: "Bearer {}".into(),
            env: "GH_TOKEN".into(),
        };
        let roots = worker_roots().expect("roots");
        let broker = Broker::new(
            std::slice::from_ref(&credential),
            Some(dir.path()),
            roots.clone(),
        )
        .expect("broker");
        assert_eq!(broker.covers("API.github.com", 443), Some(0));
        assert_eq!(broker.covers("api.github.com", 8443), None);
        assert_eq!(broker.covers("github.com", 443), None);
        let pem = broker.ca_pem();
        assert!(pem.contains("BEGIN CERTIFICATE") && !pem.contains("s3cret"));
        let env = broker.env(Path::new("/run/b.pem"), Path::new("/run/ca.pem"));
        let placeholder = env
            .iter()
            .find(|(name, _)| name == "GH_TOKEN")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        assert!(placeholder.starts_with(PLACEHOLDER_PREFIX), "{env:?}");
        assert!(env.iter().all(|(_, value)| !value.contains("s3cret")));
        assert!(broker.leaf(0).is_ok());

        // A secret that is not there, or cannot be a header, is said by
        // name.
        let missing = Credential {
            secret: "nope".into(),
            ..credential.clone()
        };
        let why = Broker::new(&[missing], Some(dir.path()), roots.clone())
            .err()
            .unwrap_or_default();
        assert!(
            why.contains("\"nope\"") && why.contains("api.github.com:443"),
            "{why}"
        );
        std::fs::write(dir.path().join("bad"), "a\nb").expect("secret");
        let bad = Credential {
            secret: "bad".into(),
            ..credential
        };
        let why = Broker::new(&[bad], Some(dir.path()), roots)
            .err()
            .unwrap_or_default();
        assert!(why.contains("line break") && !why.contains("a\nb"), "{why}");
    }
}
