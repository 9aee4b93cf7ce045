//! One try of one delivery: a signed JSON POST, answered within ten
//! seconds, to an address that is not on a private network unless the
//! server allows those. The address is checked where the connection is
//! made (the resolver), so a name that resolved to a public address when
//! the endpoint was registered cannot be turned on an inside one later.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use crate::error::Error;

/// How long a receiver has to answer one try.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Of an answer's body, what is read (and kept in the log's error).
const MAX_ANSWER_BYTES: usize = 4096;

pub const ID_HEADER: &str = "orca-webhook-id";
pub const EVENT_HEADER: &str = "orca-webhook-event";
pub const TIMESTAMP_HEADER: &str = "orca-webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "orca-webhook-signature";

/// `v1=` and the hex HMAC-SHA256, keyed by the endpoint's secret, of
/// `"{timestamp}.{body}"`: what a receiver recomputes to trust a delivery
/// (the timestamp, signed too, lets it refuse old replays).
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body.as_bytes());
    let tag = context.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// Loopback, link-local, private (RFC 1918, CGNAT, IPv6 unique local),
/// unspecified, multicast and reserved addresses: where a webhook must
/// not reach unless an admin allows it.
pub fn is_private(ip: IpAddr) -> bool {
    orca_core::address::not_public(ip).is_some()
}

/// Why an address is refused, for the log and the registration's answer.
pub fn refusal(host: &str, ip: IpAddr) -> String {
    format!(
        "{host} resolves to {ip}, a loopback, link-local or private address; an admin may allow those with --webhook-allow-private-networks"
    )
}

/// Resolves names, and refuses private addresses unless allowed.
#[derive(Clone)]
struct Guard {
    allow_private: bool,
}

type Resolving = Pin<
    Box<dyn std::future::Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>,
>;

impl tower_service::Service<Name> for Guard {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private && let Some(inside) = found.iter().find(|a| is_private(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    refusal(&host, inside.ip()),
                ));
            }
            Ok(found.into_iter())
        })
    }
}

/// How one try went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    pub latency: Duration,
    /// What went wrong: the transport's error, or the start of a non-2xx
    /// answer's body.
    pub error: String,
}

/// Sends deliveries; shares connections between them.
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector<Guard>>, Full<Bytes>>,
    allow_private: bool,
}

impl Sender {
    pub fn new(allow_private: bool) -> Result<Sender, Error> {
        let mut http = HttpConnector::new_with_resolver(Guard { allow_private });
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| Error::Tls(format!("the webhooks' trusted roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Sender {
            client,
            allow_private,
        })
    }

    /// POSTs `body` to `url`, signed with `secret`, as delivery `id`.
    pub async fn send(&self, url: &str, secret: &str, id: &str, event: &str, body: &str) -> Answer {
        let started = Instant::now();
        let answer = |status, error: String| Answer {
            status,
            latency: started.elapsed(),
            error,
        };
        // An address in the URL itself is never resolved: check it here.
        if let Ok(uri) = url.parse::<http::Uri>()
            && let Some(host) = uri.host()
            && let Ok(ip) = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            && !self.allow_private
            && is_private(ip)
        {
            return answer(None, refusal(host, ip));
        }
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("orca-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(ID_HEADER, id)
            .header(EVENT_HEADER, event)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(secret, timestamp, body))
            .body(Full::new(Bytes::from(body.to_string())));
        let request = match request {
            Ok(request) => request,
            Err(e) => return answer(None, format!("building the request: {e}")),
        };
        let tried = tokio::time::timeout(TIMEOUT, async {
            let response = self.client.request(request).await?;
            let status = response.status();
            // Only the start of the body: a receiver's answer is not ours
            // to keep whole.
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, body))
        })
        .await;
        match tried {
            Err(_) => answer(None, format!("no answer within {}s", TIMEOUT.as_secs())),
            // The innermost cause: "connection refused", the guard's refusal.
            Ok(Err(e)) => answer(None, orca_api::client::innermost_cause(&e)),
            Ok(Ok((status, _))) if status.is_success() => {
                answer(Some(status.as_u16()), String::new())
            }
            Ok(Ok((status, body))) => {
                let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                answer(
                    Some(status.as_u16()),
                    format!("answered {status}: {}", text.trim()),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_and_the_body() {
        // RFC 4231 test case 2 ("what do ya want for nothing?", key "Jefe"),
        // split as "{timestamp}.{body}" would be.
        let sig = signature("Jefe", 0, "what do ya want for nothing?");
        assert_ne!(sig, signature("Jefe", 1, "what do ya want for nothing?"));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"0.what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sig, format!("v1={hex}"));
        let rfc = ring::hmac::sign(&key, b"what do ya want for nothing?");
        let rfc_hex: String = rfc.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            rfc_hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
