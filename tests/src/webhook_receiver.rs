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
    /// Its Standard Webhooks headers: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`.
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    /// The event type its body names.
    pub event: String,
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
    let body = String::from_utf8_lossy(&body).into_owned();
    let event = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b["type"].as_str().map(str::to_string))
        .unwrap_or_default();
    script.received.push(Received {
        id: header(&headers, "webhook-id"),
        timestamp: header(&headers, "webhook-timestamp"),
        signature: header(&headers, "webhook-signature"),
        event,
        body,
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

/// What a receiver's Standard Webhooks libraries say of each of
/// `deliveries` (headers as sent, body) under `secret`: for each, the
/// `standardwebhooks` and the `svix` package's answers (PyPI, pinned by
/// scripts/webhook-verifiers.sh), "ok" or the error each raised.
pub fn verify_with_libraries(
    secret: &str,
    deliveries: &[(&Received, &str)],
) -> Vec<(String, String)> {
    let root = crate::repo_root();
    let python = std::process::Command::new(root.join("scripts/webhook-verifiers.sh"))
        .output()
        .expect("scripts/webhook-verifiers.sh runs");
    assert!(
        python.status.success(),
        "scripts/webhook-verifiers.sh: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
    let request = serde_json::json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|(received, body)| serde_json::json!({
            "headers": {
                "webhook-id": received.id,
                "webhook-timestamp": received.timestamp,
                "webhook-signature": received.signature,
            },
            "body": body,
        })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(python)
        .arg(root.join("tests/webhooks/verify.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the verifier starts");
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin
            .write_all(request.to_string().as_bytes())
            .expect("the verifier reads");
    }
    let out = child.wait_with_output().expect("the verifier ends");
    assert!(
        out.status.success(),
        "tests/webhooks/verify.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("the verifier answers JSON");
    said.iter()
        .map(|r| {
            (
                r["standardwebhooks"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["svix"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
