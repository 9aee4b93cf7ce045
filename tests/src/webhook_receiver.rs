//! A webhook receiver on loopback for the webhook tests: it keeps every
//! request (headers and body, as received) and answers each with the next
//! scripted status, then with a default one the test may change.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub event: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    /// What the receiver answered.
    pub status: u16,
    /// When it arrived, by the wall clock the server stamps events with.
    pub arrived: SystemTime,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Script {
    next: VecDeque<u16>,
    default: u16,
    received: Vec<Received>,
}

pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut script = script.lock().unwrap_or_else(|e| e.into_inner());
    let status = script.next.pop_front().unwrap_or(script.default);
    script.received.push(Received {
        id: header(&headers, "orca-webhook-id"),
        event: header(&headers, "orca-webhook-event"),
        timestamp: header(&headers, "orca-webhook-timestamp"),
        signature: header(&headers, "orca-webhook-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
        arrived: SystemTime::now(),
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl Receiver {
    /// Listens on a free loopback port; answers `first` in turn, then
    /// `default`.
    pub async fn start(first: &[u16], default: u16) -> anyhow::Result<Receiver> {
        let script = Arc::new(Mutex::new(Script {
            next: first.iter().copied().collect(),
            default,
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            url,
            script,
            server,
        })
    }

    /// Every request so far, in the order they arrived.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// How many requests were answered 2xx, without copying them.
    pub fn accepted(&self) -> usize {
        let script = self.lock();
        script
            .received
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .count()
    }

    /// What later requests are answered.
    pub fn answer(&self, status: u16) {
        self.lock().default = status;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `signature` (`v1=<hex>`) is the HMAC-SHA256 of
/// `"{timestamp}.{body}"` under `secret`, compared in constant time: what
/// a receiver checks.
pub fn verifies(secret: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let Some(hex) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Some(tag) = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, format!("{timestamp}.{body}").as_bytes(), &tag).is_ok()
}
