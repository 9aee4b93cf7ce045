//! The HTTP ports: the control plane's `/metrics` in Prometheus text format
//! moves by exactly what a workload did, and `/readyz` says "not ready" until
//! the store is open while `/healthz` already answers; a worker's own
//! `/metrics` shows what it runs and how its runtimes failed. Metrics need a
//! token, probes do not.

use std::collections::BTreeMap;

use std::process::Command;
use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::*;

fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_get(addr, path, None)
}

fn get_as(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    http_get(addr, path, token)
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

fn scrape(addr: &str, token: &str) -> BTreeMap<String, f64> {
    let (status, body) = get_as(addr, "/metrics", Some(token)).expect("scrape");
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
    let before = scrape(&http, &server.admin_token);
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
    let after = scrape(&http, &server.admin_token);
    for (series, moved) in [
        ("tidewright_tasks_submitted_total", 3.0),
        ("tidewright_tasks_finished_total{state=\"succeeded\"}", 2.0),
        ("tidewright_tasks_finished_total{state=\"failed\"}", 1.0),
        ("tidewright_step_attempts_started_total", 3.0),
        (
            "tidewright_step_attempts_finished_total{outcome=\"succeeded\"}",
            2.0,
        ),
        (
            "tidewright_step_attempts_finished_total{outcome=\"failed\"}",
            1.0,
        ),
        ("tidewright_dispatch_latency_seconds_count", 3.0),
        ("tidewright_step_duration_seconds_count", 3.0),
    ] {
        assert_eq!(delta(&after, series), moved, "{series}");
    }
    assert_eq!(after.get("tidewright_workers_connected"), Some(&1.0));
    assert_eq!(after.get("tidewright_worker_slots"), Some(&2.0));
    assert_eq!(after.get("tidewright_worker_slots_busy"), Some(&0.0));
    let (status, body) = get(&http, "/healthz").expect("healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = get(&http, "/readyz").expect("readyz");
    assert_eq!(status, 200);
    // Any other path a browser asks for is the console's page (it routes
    // in the URL's hash); anything else there is 404.
    let (status, body) = get(&http, "/nothing-here").expect("the console");
    assert_eq!(status, 200);
    assert!(body.contains("<div id=\"app\">"), "{body}");
    let posted = http_call(&http, "POST", "/nothing-here", None, &[], "").expect("404");
    assert_eq!(posted.status, 404);
}

#[test]
fn readyz_is_not_ready_until_the_store_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Another process holds the database: the control plane waits to open it.
    let db = dir.path().join("tidewright.db");
    let lock = rusqlite::Connection::open(&db).expect("db");
    lock.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE held (x);")
        .expect("lock");
    let http = free_addr();
    let _server = Process::spawn(
        Command::new(tidewright_bin())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_for_every_tenant_and_probes_need_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_addr();
    let lines = [
        token_line("admin-token", "admin", "root"),
        token_line("scraper-token", "viewer", "prometheus tenants=*"),
        token_line("team-a-viewer", "viewer", "alice tenants=team-a"),
        token_line("worker-token", "worker", "w"),
    ];
    let _server = start_with_tokens(dir.path(), &lines, &["--http-listen", &http]).expect("server");
    let (status, body) = get(&http, "/metrics").expect("no token");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("a bearer token is required"), "{body}");
    let (status, body) = get_as(&http, "/metrics", Some("not-a-token")).expect("bad token");
    assert_eq!(status, 401, "{body}");
    let (status, body) = get_as(&http, "/metrics", Some("worker-token")).expect("worker");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("w (worker) may not read metrics"), "{body}");
    let (status, body) = get_as(&http, "/metrics", Some("team-a-viewer")).expect("one tenant");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("tenants=*"), "{body}");
    scrape(&http, "scraper-token");
    scrape(&http, "admin-token");
    assert_eq!(get(&http, "/healthz").expect("healthz").0, 200);
    assert_eq!(get(&http, "/readyz").expect("readyz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shows_what_it_runs_and_how_its_runtimes_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let http = free_addr();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-me\n").expect("token file");
    let token_file = token_file.display().to_string();
    let _worker = server
        .worker_with(
            "w1",
            &["shell"],
            2,
            &["--http-listen", &http, "--metrics-token-file", &token_file],
        )
        .expect("worker");
    poll(
        || get(&http, "/readyz").is_ok_and(|(status, _)| status == 200),
        "the worker is ready once registered",
    );
    let (status, body) = get(&http, "/metrics").expect("no token");
    assert_eq!(status, 401, "{body}");
    let (status, _) = get_as(&http, "/metrics", Some("scrape-mf")).expect("wrong token");
    assert_eq!(status, 401);
    let before = scrape(&http, "scrape-me");
    assert_eq!(before.get("tidewright_worker_connected"), Some(&1.0));
    assert_eq!(before.get("tidewright_worker_slots"), Some(&2.0));

    // A step held at a gate is counted as running while it runs.
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gate");
    let held = submit(
        &client,
        task("held", vec![shell_step("wait", &[], &wait_for_gate(&gate))]),
    )
    .await
    .expect("submit");
    let running = "tidewright_worker_steps_running{runtime=\"shell\"}";
    poll(
        || scrape(&http, "scrape-me").get(running) == Some(&1.0),
        "the held step shows as running",
    );
    std::fs::write(&gate, "").expect("open the gate");
    wait_succeeded(&client, &held, Duration::from_secs(30))
        .await
        .expect("held task");

    // A program that does not exist is the runtime's failure, not the step's.
    let mut missing = shell_step("missing", &[], "unused");
    if let Some(v1::step_spec::Runtime::Shell(shell)) = &mut missing.runtime {
        shell.command = vec!["/no/such/program".into()];
    }
    let missing = submit(&client, task("missing", vec![missing]))
        .await
        .expect("submit");
    let failing = submit(
        &client,
        task("exits-3", vec![shell_step("bad", &[], "exit 3")]),
    )
    .await
    .expect("submit");
    for id in [&missing, &failing] {
        wait_finished(&client, id, Duration::from_secs(30))
            .await
            .expect("finished");
    }
    // The result reaches the control plane after the worker counted it.
    let after = scrape(&http, "scrape-me");
    for (series, value) in [
        (running, 0.0),
        (
            "tidewright_worker_step_attempts_finished_total{runtime=\"shell\",outcome=\"succeeded\"}",
            1.0,
        ),
        (
            "tidewright_worker_step_attempts_finished_total{runtime=\"shell\",outcome=\"failed\"}",
            2.0,
        ),
        (
            "tidewright_worker_runtime_failures_total{runtime=\"shell\",reason=\"start\"}",
            1.0,
        ),
    ] {
        assert_eq!(after.get(series), Some(&value), "{series} in {after:?}");
    }
    assert_eq!(
        after
            .keys()
            .filter(|k| k.starts_with("tidewright_worker_runtime_failures_total"))
            .count(),
        1,
        "only the missing program is a runtime failure: {after:?}"
    );
}

#[test]
fn a_worker_port_open_to_other_hosts_needs_a_metrics_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = fails_in_one_line(
        Command::new(tidewright_bin())
            .args([
                "--server",
                "http://127.0.0.1:9",
                "--token",
                "unused",
                "worker",
                "--http-listen",
                "0.0.0.0:0",
            ])
            .current_dir(dir.path())
            .env("XDG_CONFIG_HOME", dir.path()),
    );
    assert!(
        stderr.contains("--http-listen 0.0.0.0:0") && stderr.contains("--metrics-token-file"),
        "{stderr}"
    );
}
