//! The control plane's HTTP port: `/metrics` in Prometheus text format moves
//! by exactly what a workload did, and `/readyz` says "not ready" until the
//! store is open while `/healthz` already answers.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use std::process::Command;
use std::time::Duration;

use orca_tests::*;

/// A loopback address no one listens on now.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// `GET path` over HTTP/1.1: the status code and the body.
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Samples of a Prometheus text exposition: `name{labels}` → value. Every
/// line that is not a comment must parse.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics").expect("scrape");
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "a whole exposition");
    parse(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_what_a_workload_did() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_addr();
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--http-listen", &http]).expect("server");
    let _worker = server.worker("w1", &["shell"], 2).expect("worker");
    server.wait_for_agents(&["w1"]).await.expect("worker up");
    let before = scrape(&http);
    let delta = |after: &BTreeMap<String, f64>, series: &str| {
        after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
    };

    let client = server.tasks().await.expect("client");
    let mut ids = Vec::new();
    for (name, script) in [("ok-1", "true"), ("ok-2", "true"), ("bad", "exit 3")] {
        let id = submit(&client, task(name, vec![shell_step("only", &[], script)]))
            .await
            .expect("submit");
        ids.push(id);
    }
    for id in &ids {
        wait_finished(&client, id, Duration::from_secs(30))
            .await
            .expect("finished");
    }
    // The last task's end is counted in the same round that finishes it.
    let after = scrape(&http);
    for (series, moved) in [
        ("orca_tasks_submitted_total", 3.0),
        ("orca_tasks_finished_total{state=\"succeeded\"}", 2.0),
        ("orca_tasks_finished_total{state=\"failed\"}", 1.0),
        ("orca_step_attempts_started_total", 3.0),
        (
            "orca_step_attempts_finished_total{outcome=\"succeeded\"}",
            2.0,
        ),
        ("orca_step_attempts_finished_total{outcome=\"failed\"}", 1.0),
        ("orca_dispatch_latency_seconds_count", 3.0),
        ("orca_step_duration_seconds_count", 3.0),
    ] {
        assert_eq!(delta(&after, series), moved, "{series}");
    }
    assert_eq!(after.get("orca_workers_connected"), Some(&1.0));
    assert_eq!(after.get("orca_worker_slots"), Some(&2.0));
    assert_eq!(after.get("orca_worker_slots_busy"), Some(&0.0));
    let (status, body) = get(&http, "/healthz").expect("healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = get(&http, "/readyz").expect("readyz");
    assert_eq!(status, 200);
    let (status, _) = get(&http, "/nothing-here").expect("404");
    assert_eq!(status, 404);
}

#[test]
fn readyz_is_not_ready_until_the_store_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Another process holds the database: the control plane waits to open it.
    let db = dir.path().join("orca.db");
    let lock = rusqlite::Connection::open(&db).expect("db");
    lock.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE held (x);")
        .expect("lock");
    let http = free_addr();
    let _server = Process::spawn(
        Command::new(orca_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--http-listen", &http])
            .arg("--data-dir")
            .arg(dir.path()),
        dir.path(),
        "server",
    )
    .expect("server");
    let answer = |path: &str| get(&http, path).map(|(status, _)| status).unwrap_or(0);
    poll(|| answer("/healthz") == 200, "the HTTP port answers");
    let (status, body) = get(&http, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store is not open"), "{body}");
    drop(lock);
    poll(|| answer("/readyz") == 200, "ready once the store opens");
}

/// Polls `check` every 20 ms for up to 10 s.
fn poll(mut check: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
