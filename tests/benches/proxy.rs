//! `make bench-proxy`: what the worker's model proxy and its egress proxy
//! add to an agent's streaming request. The mock Messages API on loopback answers each
//! request with a whole streamed turn (server-sent events, `stream: true`);
//! one client with a kept-alive connection sends requests one at a time,
//! taking turns between the API itself and the worker's model proxy in
//! front of it (in this process, as the worker runs it: a key of an
//! attempt's checked, the worker's put in its place, the answer streamed
//! back as it comes). A request's time is from its send to the last byte
//! of its stream. The proxy's share is the difference of the two p50s.
//! The egress proxy's is measured the same way on one connection each: a
//! TCP connection to the API, against a `CONNECT` tunnel through an
//! attempt's egress proxy (its Unix socket, as the sandbox's relay reaches
//! it; the relay's own hop inside the sandbox is not in it).
//!
//! Sizes: TIDEWRIGHT_BENCH_PROXY_REQUESTS (per side and run, 500). Each run
//! (TIDEWRIGHT_BENCH_RUNS, 5) has a new mock and proxy; the runs end in one table.

use std::time::Instant;

use axum::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use tidewright_tests::bench::*;
use tidewright_tests::provider::{Api, Mock};
use tidewright_worker::sandbox::egress::Egress;
use tidewright_worker::sandbox::model_proxy::{Credentials, ModelProxy};

const BODY: &str = r#"{"model":"claude-test","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    let requests = env_number("TIDEWRIGHT_BENCH_PROXY_REQUESTS", 500) as usize;
    println!(
        "tidewright model proxy benchmark: {} cores, release build, {requests} streamed Messages API requests per side and run, one at a time, direct and through the proxy taking turns",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        measure_once(&mut table, requests).await?;
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-proxy")));
    Ok(())
}

/// A streamed Messages API request to `uri` with `key`.
fn messages(uri: String, key: &str) -> anyhow::Result<axum::http::Request<Body>> {
    Ok(axum::http::Request::post(uri)
        .header("host", "api")
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Body::from(BODY))?)
}

/// Reads `answer` to its stream's last byte: the time since `started`, in
/// microseconds, once it is a whole turn.
async fn whole_turn(
    answer: axum::http::Response<hyper::body::Incoming>,
    started: Instant,
) -> anyhow::Result<i64> {
    anyhow::ensure!(answer.status().is_success(), "{}", answer.status());
    let streamed = axum::body::to_bytes(Body::new(answer.into_body()), usize::MAX).await?;
    let elapsed = started.elapsed().as_micros() as i64;
    anyhow::ensure!(
        String::from_utf8_lossy(&streamed).contains("message_stop"),
        "not a whole turn"
    );
    Ok(elapsed)
}

/// One streamed request to `url` with `key`, through a pooling client.
async fn one(client: &Client<HttpConnector, Body>, url: &str, key: &str) -> anyhow::Result<i64> {
    let request = messages(format!("{url}/v1/messages"), key)?;
    let started = Instant::now();
    whole_turn(client.request(request).await?, started).await
}

/// One streamed request on a connection of its own.
async fn one_on(sender: &mut SendRequest<Body>, key: &str) -> anyhow::Result<i64> {
    let request = messages("/v1/messages".into(), key)?;
    let started = Instant::now();
    whole_turn(sender.send_request(request).await?, started).await
}

/// An HTTP/1 connection over `io`, driven in the background.
async fn connection<T>(io: T) -> anyhow::Result<SendRequest<Body>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, driving) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(driving);
    Ok(sender)
}

/// The egress proxy's share: one connection straight to the API against
/// one through an attempt's egress proxy that allows it.
async fn egress_once(table: &mut Table, api: &str, requests: usize) -> anyhow::Result<()> {
    let addr = api.trim_start_matches("http://").to_string();
    let metrics = std::sync::Arc::new(tidewright_worker::metrics::WorkerMetrics::new(1));
    let egress = Egress::new(
        Some(std::slice::from_ref(&addr)),
        "bench",
        "tidewright".into(),
        Vec::new(),
        Vec::new(),
        metrics,
    )
    .map_err(anyhow::Error::msg)?;
    let gate = egress
        .open(
            egress.policy(None, None, None),
            None,
            std::sync::Arc::new(|_| {}),
            None,
        )
        .await?;
    let tunnel = tunnel_through(&gate.proxy_socket(), &addr).await?;
    let direct = tokio::net::TcpStream::connect(&addr).await?;
    direct.set_nodelay(true)?;
    let mut sides = [connection(direct).await?, connection(tunnel).await?];
    let mut times: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    let warm_up = 20;
    for n in 0..requests + warm_up {
        for (i, sender) in sides.iter_mut().enumerate() {
            let took = one_on(sender, "sk-ant-bench").await?;
            if n >= warm_up {
                times[i].push(took);
            }
        }
    }
    for values in &mut times {
        values.sort_unstable();
    }
    let ms = |values: &[i64], q: f64| quantile_ms(values, q);
    let [direct, tunnelled] = &times;
    for (figure, value) in [
        ("one connection, direct, p50", ms(direct, 0.50)),
        (
            "one connection, through the egress proxy, p50",
            ms(tunnelled, 0.50),
        ),
        (
            "one connection, through the egress proxy, p99",
            ms(tunnelled, 0.99),
        ),
        (
            "added by the egress proxy, p50",
            ms(tunnelled, 0.50) - ms(direct, 0.50),
        ),
    ] {
        table.add(figure, "ms", Better::Lower, value);
    }
    Ok(())
}

async fn measure_once(table: &mut Table, requests: usize) -> anyhow::Result<()> {
    let mock = Mock::start(Api::Anthropic, Vec::new()).await?;
    let proxy = ModelProxy::start(
        &mock.url,
        Credentials {
            api_key: Some("sk-ant-bench".into()),
            oauth_token: None,
            goog_api_key: None,
        },
    )
    .await?;
    let admission = proxy.admit();
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let sides = [
        (mock.url.clone(), "sk-ant-bench".to_string()),
        (proxy.url(), admission.key().clone()),
    ];
    let mut times: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    let warm_up = 20;
    let started = Instant::now();
    for n in 0..requests + warm_up {
        for (i, (url, key)) in sides.iter().enumerate() {
            let took = one(&client, url, key).await?;
            if n >= warm_up {
                times[i].push(took);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for values in &mut times {
        values.sort_unstable();
    }
    let ms = |values: &[i64], q: f64| quantile_ms(values, q);
    let [direct, proxied] = &times;
    for (figure, value) in [
        ("streamed request, direct, p50", ms(direct, 0.50)),
        ("streamed request, direct, p99", ms(direct, 0.99)),
        (
            "streamed request, through the proxy, p50",
            ms(proxied, 0.50),
        ),
        (
            "streamed request, through the proxy, p99",
            ms(proxied, 0.99),
        ),
        (
            "added by the proxy, p50",
            ms(proxied, 0.50) - ms(direct, 0.50),
        ),
    ] {
        table.add(figure, "ms", Better::Lower, value);
    }
    table.add(
        "requests, both sides",
        "req/s",
        Better::Higher,
        (2 * (requests + warm_up)) as f64 / seconds,
    );
    egress_once(table, &mock.url, requests).await
}
