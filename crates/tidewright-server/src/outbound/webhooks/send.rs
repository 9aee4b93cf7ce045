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

// Standard Webhooks (standardwebhooks.com): a receiver verifies a delivery
// with that specification's libraries (`standardwebhooks`, `svix`, ...).
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a Standard Webhooks secret: `whsec_` and the base64 of
/// its key.
pub const SECRET_PREFIX: &str = "whsec_";
/// How long a secret's key may be, in bytes, as the specification asks.
pub const SECRET_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// The key of a `whsec_<base64>` secret, or why it is not one.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        format!("must be a Standard Webhooks secret, {SECRET_PREFIX} and the base64 of its key")
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| format!("after {SECRET_PREFIX}, must be base64 (its key's bytes)"))?;
    if !SECRET_KEY_BYTES.contains(&key.len()) {
        return Err(format!(
            "its key must be {} to {} bytes, not {}",
            SECRET_KEY_BYTES.start(),
            SECRET_KEY_BYTES.end(),
            key.len()
        ));
    }
    Ok(key)
}

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> Result<String, String> {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness for a secret: {e}"))?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// `v1,` and the base64 HMAC-SHA256, keyed by the secret's key, of
/// `"{id}.{timestamp}.{body}"`: what a receiver's library recomputes to
/// trust a delivery (the id and the timestamp, signed too, let it refuse
/// a replay).
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    use base64::Engine as _;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body.as_bytes());
    let tag = context.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

/// Loopback, link-local, private (RFC 1918, CGNAT, IPv6 unique local),
/// unspecified, multicast and reserved addresses: where a webhook must
/// not reach unless an admin allows it.
pub fn is_private(ip: IpAddr) -> bool {
    tidewright_core::address::not_public(ip).is_some()
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

    /// POSTs `body` to `url`, signed with `secret`, as delivery `id`, with
    /// `headers` besides (an A2A push's token and authorization).
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        id: &str,
        body: &str,
        headers: &[(&'static str, String)],
    ) -> Answer {
        let started = Instant::now();
        let answer = |status, error: String| Answer {
            status,
            latency: started.elapsed(),
            error,
        };
        // Checked when the endpoint was registered; one stored before
        // secrets were Standard Webhooks ones cannot be signed with.
        let key = match secret_key(secret) {
            Ok(key) => key,
            Err(why) => return answer(None, format!("the endpoint's secret {why}")),
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
        let mut request = http::Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("tidewright-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header(ID_HEADER, id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(&key, id, timestamp, body))
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
            Ok(Err(e)) => answer(None, tidewright_api::client::innermost_cause(&e)),
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

    /// The Standard Webhooks specification's own example: its secret, id,
    /// timestamp and payload, and the signature it gives.
    #[test]
    fn the_signature_is_the_specifications() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a secret");
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_is_whsec_and_the_base64_of_24_to_64_bytes() {
        let made = new_secret().expect("a secret");
        assert_eq!(secret_key(&made).map(|k| k.len()), Ok(32));
        assert_ne!(made, new_secret().expect("another"));
        for (secret, says) in [
            (
                "a-webhook-secret-of-some-length",
                "must be a Standard Webhooks secret",
            ),
            ("whsec_not base64!", "must be base64"),
            ("whsec_c2hvcnQ=", "must be 24 to 64 bytes, not 5"),
        ] {
            let err = secret_key(secret).expect_err("refused");
            assert!(err.contains(says), "{secret}: {err}");
        }
    }
}
