//! The model API as a sandboxed agent reaches it: a proxy on the worker's
//! loopback. Each attempt gets a key of its own, good only while it runs
//! and only here. The proxy sends its requests on to the real API with the
//! worker's credential, so an agent's process never holds the fleet's key:
//! whatever it prints or sends elsewhere is worth nothing.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tidewright_api::abort::AbortOnDrop;

use crate::sandbox::provider_reset::{self, ProviderReset};

/// The most of a limited answer's body read for when it resets (Google's
/// `RetryInfo`); a longer one goes on unread.
const LIMIT_BODY_MAX: usize = 64 * 1024;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// The worker's credential, as the API takes it.
#[derive(Clone)]
pub struct Credentials {
    /// Sent as `x-api-key`.
    pub api_key: Option<String>,
    /// Sent as `Authorization: Bearer`.
    pub oauth_token: Option<String>,
    /// Sent as `x-goog-api-key` (Google's Gemini API).
    pub goog_api_key: Option<String>,
}

struct Shared {
    upstream: String,
    credentials: Credentials,
    /// The keys of the attempts running now.
    live: Mutex<HashSet<String>>,
    /// The last reset the provider named to each running attempt.
    resets: Mutex<HashMap<String, ProviderReset>>,
    client: Client<Https, Body>,
}

/// The proxy, serving while it lives.
pub struct ModelProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _serving: AbortOnDrop,
}

/// An attempt's key; it stops working when dropped.
pub struct Admission {
    key: String,
    shared: Arc<Shared>,
}

impl ModelProxy {
    /// Serves on a port of loopback the system picks, sending requests on
    /// to `upstream` with `credentials`.
    pub async fn start(upstream: &str, credentials: Credentials) -> std::io::Result<ModelProxy> {
        // Small writes go at once, both ways: a streamed answer is many
        // small events, and with Nagle's algorithm on, the last of them
        // waited for the peer's delayed ACK, 40 ms a request
        // (`make bench-proxy` found it).
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            credentials,
            live: Mutex::new(HashSet::new()),
            resets: Mutex::new(HashMap::new()),
            client: Client::builder(TokioExecutor::new()).build(https),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let serving = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ModelProxy {
            addr,
            shared,
            _serving: AbortOnDrop(serving),
        })
    }

    /// The base URL an agent is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `request` on as an agent's would be, for the worker's own
    /// calls (the grader's): under a key admitted for this call alone, so
    /// the same credential goes upstream the same way.
    pub async fn send(&self, mut request: Request) -> Response {
        let admission = self.admit();
        if let Ok(key) = HeaderValue::from_str(admission.key()) {
            request.headers_mut().insert("x-api-key", key);
        }
        forward(State(self.shared.clone()), request).await
    }

    /// A key for one attempt.
    pub fn admit(&self) -> Admission {
        let key = format!("sk-ant-tidewright-{}", random_hex());
        self.shared.lock_live().insert(key.clone());
        Admission {
            key,
            shared: self.shared.clone(),
        }
    }
}

impl Admission {
    pub fn key(&self) -> &String {
        &self.key
    }

    /// The last reset the provider named in a limited answer to this
    /// attempt, as the proxy read it.
    pub fn reset_seen(&self) -> Option<ProviderReset> {
        self.shared.lock_resets().get(&self.key).cloned()
    }
}

/// How one attempt's agent reaches its model API: through the worker's
/// proxy, with a key of the attempt's own, or (no proxy) directly, with
/// the worker's key.
pub struct Reach {
    proxied: Option<(String, Admission)>,
}

impl Reach {
    pub fn new(proxy: Option<&ModelProxy>) -> Reach {
        Reach {
            proxied: proxy.map(|p| (p.url(), p.admit())),
        }
    }

    /// The proxy's address, when the attempt goes through it.
    pub fn proxy_url(&self) -> Option<&str> {
        self.proxied.as_ref().map(|(url, _)| url.as_str())
    }

    /// The attempt's own key, when it has one: masked like the worker's.
    pub fn attempt_key(&self) -> Option<&String> {
        self.proxied.as_ref().map(|(_, admission)| admission.key())
    }

    /// The last reset the provider named to this attempt, when it goes
    /// through the proxy.
    pub fn reset_seen(&self) -> Option<ProviderReset> {
        self.proxied.as_ref().and_then(|(_, a)| a.reset_seen())
    }

    /// The key the CLI is handed: the attempt's own, else `workers`.
    pub fn key(&self, workers: Option<&String>) -> Option<String> {
        self.attempt_key().or(workers).cloned()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.shared.lock_live().remove(&self.key);
        self.shared.lock_resets().remove(&self.key);
    }
}

impl Shared {
    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_resets(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProviderReset>> {
        self.resets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// 16 random bytes, in hex.
pub(crate) fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = urandom.read_exact(&mut bytes);
    }
    tidewright_core::hex(&bytes)
}

/// One request: refused unless it carries a live attempt's key; else sent
/// on with the worker's credential in its place, and the answer streamed
/// back as it comes.
async fn forward(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let headers = request.headers_mut();
    let presented = headers
        .get("x-api-key")
        .or_else(|| headers.get("x-goog-api-key"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        });
    let Some(key) = presented.filter(|key| shared.lock_live().contains(key)) else {
        return (
            StatusCode::UNAUTHORIZED,
            "tidewright: not a key of a running attempt on this worker",
        )
            .into_response();
    };
    headers.remove("x-api-key");
    headers.remove("x-goog-api-key");
    headers.remove("authorization");
    headers.remove("host");
    let header = |value: &str| HeaderValue::from_str(value).ok();
    if let Some(key) = shared.credentials.api_key.as_deref().and_then(header) {
        headers.insert("x-api-key", key);
    }
    if let Some(key) = shared.credentials.goog_api_key.as_deref().and_then(header) {
        headers.insert("x-goog-api-key", key);
    }
    if let Some(bearer) = shared
        .credentials
        .oauth_token
        .as_deref()
        .and_then(|t| header(&format!("Bearer {t}")))
    {
        headers.insert("authorization", bearer);
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let Ok(uri) = format!("{}{path}", shared.upstream).parse::<Uri>() else {
        return (
            StatusCode::BAD_GATEWAY,
            "tidewright: a bad upstream address",
        )
            .into_response();
    };
    *request.uri_mut() = uri;
    let mut answer = match shared.client.request(request).await {
        Ok(answer) if provider_reset::LIMIT_STATUSES.contains(&answer.status().as_u16()) => {
            limited(&shared, key, answer.map(Body::new)).await
        }
        Ok(answer) => answer.map(Body::new).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("tidewright: the model API could not be reached: {e}"),
        )
            .into_response(),
    };
    // A limit or a failure of the API's ends the CLI's request: the CLI's
    // own client would retry it (a 429 for as long as the provider says),
    // while tidewright pauses the pool for a limit and its retry policy
    // decides the rest. The API clients the CLIs are built on (OpenAI's,
    // Anthropic's, Qwen Code's) take this header as "do not retry".
    let status = answer.status();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        answer
            .headers_mut()
            .insert("x-should-retry", HeaderValue::from_static("false"));
    }
    answer
}

/// A limited answer, passed on as it came; the reset it names is kept for
/// the attempt (its body read for one when its headers name none).
async fn limited(shared: &Shared, key: String, answer: Response) -> Response {
    let now = tidewright_core::calendar::now_micros();
    if let Some(reset) = provider_reset::reset_of(answer.headers(), None, now) {
        shared.lock_resets().insert(key, reset);
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let body = match axum::body::to_bytes(body, LIMIT_BODY_MAX).await {
        Ok(bytes) => bytes,
        // Too long to be an error's, or cut off: it goes on as far as read.
        Err(e) => {
            tracing::warn!(status = %parts.status, error = %e, "a limited answer's body could not be read whole; passed on empty");
            return Response::from_parts(parts, Body::empty());
        }
    };
    if let Some(reset) = provider_reset::reset_of(&parts.headers, Some(&body), now) {
        shared.lock_resets().insert(key, reset);
    }
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that answers each request with the key it was sent.
    async fn upstream() -> (String, AbortOnDrop) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(|request: Request| async move {
            let said = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string()
            };
            format!(
                "{} {} {}",
                request.uri().path(),
                said("x-api-key"),
                said("authorization")
            )
        });
        let serving = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), AbortOnDrop(serving))
    }

    /// What `key` gets from the proxy at `url` as `x-api-key`.
    async fn call(url: &str, key: &str) -> (StatusCode, String) {
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let request = Request::post(format!("{url}/v1/messages?beta=true"))
            .header("x-api-key", key)
            .body(Body::empty())
            .expect("request");
        let answer = client.request(request).await.expect("answer");
        let status = answer.status();
        let body = axum::body::to_bytes(Body::new(answer.into_body()), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn only_a_running_attempts_key_is_sent_on_and_with_the_workers_credential() {
        let (api, _api) = upstream().await;
        let proxy = ModelProxy::start(
            &api,
            Credentials {
                api_key: Some("sk-ant-real".into()),
                oauth_token: None,
                goog_api_key: None,
            },
        )
        .await
        .expect("proxy");
        let admission = proxy.admit();
        let key = admission.key().clone();
        assert_ne!(key, "sk-ant-real");

        let (status, said) = call(&proxy.url(), &key).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(said, "/v1/messages sk-ant-real -");

        let (status, _) = call(&proxy.url(), "sk-ant-real").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the real key is no key here"
        );
        drop(admission);
        let (status, _) = call(&proxy.url(), &key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "an ended attempt's key");
    }

    #[tokio::test]
    async fn a_limit_or_a_failure_of_the_api_tells_the_cli_not_to_retry() {
        // An upstream answering with the status its path names.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(|request: Request| async move {
            let status = request
                .uri()
                .path()
                .trim_start_matches('/')
                .parse()
                .unwrap_or(200);
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
        });
        let _serving = AbortOnDrop(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        let proxy = ModelProxy::start(
            &format!("http://{addr}"),
            Credentials {
                api_key: Some("sk-real".into()),
                oauth_token: None,
                goog_api_key: None,
            },
        )
        .await
        .expect("proxy");
        let admission = proxy.admit();
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        for (status, told) in [
            (200, None),
            (400, None),
            (429, Some("false")),
            (500, Some("false")),
            (529, Some("false")),
        ] {
            let request = Request::post(format!("{}/{status}", proxy.url()))
                .header("x-api-key", admission.key())
                .body(Body::empty())
                .expect("request");
            let answer = client.request(request).await.expect("answer");
            assert_eq!(answer.status().as_u16(), status);
            let said = answer
                .headers()
                .get("x-should-retry")
                .and_then(|v| v.to_str().ok());
            assert_eq!(said, told, "{status}");
        }
    }
}
