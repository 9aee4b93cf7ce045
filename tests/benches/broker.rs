//! `make bench-broker`: what the credential broker adds to a request to a
//! brokered host. An HTTPS server on loopback (a certificate of this
//! run's CA, a small JSON answer, connections kept alive) stands in for
//! the API host. One client sends requests one at a time, taking turns
//! between a TLS connection straight to it and one through an attempt's
//! egress proxy (its Unix socket, as the sandbox's relay reaches it): a
//! `CONNECT`, then TLS the proxy ends with the attempt's CA, the header
//! put in, and the request sent on over the proxy's own TLS to the host.
//! A request's time is from its send to its answer's last byte; the
//! broker's share is the difference of the two p50s.
//!
//! Sizes: TIDEWRIGHT_BENCH_BROKER_REQUESTS (per side and run, 1000). Each
//! run (TIDEWRIGHT_BENCH_RUNS, 5) has a new host, CA and broker.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tidewright_api::abort::AbortOnDrop;
use tidewright_tests::bench::*;
use tidewright_worker::sandbox::egress::Egress;
use tokio_rustls::rustls;

const HOST: &str = "api.bench.test";
const SECRET: &str = "bench-secret-token";
const ANSWER: &str = r#"{"login":"bench","id":1}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    let requests = env_number("TIDEWRIGHT_BENCH_BROKER_REQUESTS", 1000) as usize;
    println!(
        "tidewright credential broker benchmark: {} cores, release build, {requests} HTTPS requests per side and run, one at a time on one kept-alive connection each, direct and through the broker taking turns",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        measure_once(&mut table, requests).await?;
        println!("run {run} of {runs} done");
    }
    println!("\n{}", table.render(&command("bench-broker")));
    Ok(())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The API host: HTTPS on 127.0.0.1 with a certificate of `ca`'s for
/// [`HOST`], answering each request (authorized or not) with [`ANSWER`].
async fn api_host(ca: &CertifiedIssuer<'static, KeyPair>) -> anyhow::Result<(u16, AbortOnDrop)> {
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec![HOST.to_string()])?.signed_by(&key, ca)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(anyhow::Error::msg)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let serving = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|request: hyper::Request<_>| async move {
                    let authorized = request
                        .headers()
                        .get("authorization")
                        .is_some_and(|v| v.as_bytes() == format!("Bearer {SECRET}").as_bytes());
                    let status = if authorized { 200 } else { 401 };
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(ANSWER))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((port, AbortOnDrop(serving)))
}

/// A client's TLS trusting `root` alone.
fn trusting(
    root: rustls::pki_types::CertificateDer<'static>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root)?;
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// An HTTP/1 connection over TLS to [`HOST`] on `io`, driven in the
/// background.
async fn connection<T>(io: T, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<SendRequest<Body>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let name = rustls::pki_types::ServerName::try_from(HOST)?;
    let tls = tokio_rustls::TlsConnector::from(tls)
        .connect(name, io)
        .await?;
    let (sender, driving) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(driving);
    Ok(sender)
}

/// One request and its whole answer, in microseconds; `authorization` is
/// what the step sends (the direct side sends the secret itself).
async fn one(sender: &mut SendRequest<Body>, authorization: &str) -> anyhow::Result<i64> {
    let request = axum::http::Request::get("/user")
        .header("host", HOST)
        .header("authorization", authorization)
        .body(Body::empty())?;
    let started = Instant::now();
    let answer = sender.send_request(request).await?;
    anyhow::ensure!(answer.status().is_success(), "{}", answer.status());
    let body = axum::body::to_bytes(Body::new(answer.into_body()), usize::MAX).await?;
    let elapsed = started.elapsed().as_micros() as i64;
    anyhow::ensure!(body == ANSWER.as_bytes(), "not the host's answer");
    Ok(elapsed)
}

async fn measure_once(table: &mut Table, requests: usize) -> anyhow::Result<()> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let (port, _host) = api_host(&ca).await?;
    let at = format!("{HOST}:{port}");
    let secrets = tempfile::tempdir()?;
    std::fs::write(secrets.path().join("token"), SECRET)?;

    let metrics = Arc::new(tidewright_worker::metrics::WorkerMetrics::new(1));
    let egress = Egress::new(
        Some(std::slice::from_ref(&at)),
        "bench",
        "tidewright".into(),
        Vec::new(),
        vec![(HOST.to_string(), "127.0.0.1".parse()?)],
        metrics,
    )
    .map_err(anyhow::Error::msg)?
    .trusting(trusting(ca.der().clone())?);
    let credential = tidewright_core::credential::Credential {
        host: at.clone(),
        secret: "token".into(),
        header: "Authorization".into(),
        format: "Bearer {}".into(),
        env: "API_TOKEN".into(),
    };
    let broker = egress
        .broker(&[credential], Some(secrets.path()))
        .map_err(anyhow::Error::msg)?;
    let step_ca = broker.ca_der();
    let gate = egress
        .open(
            egress.policy(None, None, None),
            None,
            Arc::new(|_| {}),
            Some(broker),
        )
        .await?;
    let tunnel = tunnel_through(&gate.proxy_socket(), &at).await?;
    let direct = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    direct.set_nodelay(true)?;
    let mut sides = [
        (
            connection(direct, trusting(ca.der().clone())?).await?,
            format!("Bearer {SECRET}"),
        ),
        (
            connection(tunnel, trusting(step_ca)?).await?,
            "Bearer placeholder".to_string(),
        ),
    ];
    let mut times: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    let warm_up = 50;
    for n in 0..requests + warm_up {
        for (i, (sender, authorization)) in sides.iter_mut().enumerate() {
            let took = one(sender, authorization).await?;
            if n >= warm_up {
                times[i].push(took);
            }
        }
    }
    for values in &mut times {
        values.sort_unstable();
    }
    let ms = |values: &[i64], q: f64| quantile_ms(values, q);
    let [direct, brokered] = &times;
    for (figure, value) in [
        ("HTTPS request, direct, p50", ms(direct, 0.50)),
        ("HTTPS request, through the broker, p50", ms(brokered, 0.50)),
        ("HTTPS request, through the broker, p99", ms(brokered, 0.99)),
        (
            "added by the broker, p50",
            ms(brokered, 0.50) - ms(direct, 0.50),
        ),
    ] {
        table.add(figure, "ms", Better::Lower, value);
    }
    Ok(())
}
