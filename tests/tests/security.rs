//! Security end to end, with real processes: TLS and mTLS (with certificate
//! reload), JWTs, rate limits and the CLI's contexts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;
use tidewright_api::client::ClientTls;
use tidewright_api::v1;
use tidewright_tests::*;
use tonic::Code;

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed"),
        }
    }

    /// Writes `<name>.pem` and `<name>.key`, signed by this CA, valid for
    /// 127.0.0.1 and localhost; returns their paths.
    fn issue(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.issuer.pem()).expect("write ca");
        path
    }
}

fn trusting(ca: &Path) -> ClientTls {
    ClientTls {
        ca_file: Some(ca.to_path_buf()),
        ..ClientTls::default()
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

async fn list_tasks(client: &mut Tasks) -> Result<usize, tonic::Status> {
    client
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .map(|r| r.into_inner().tasks.len())
}

#[tokio::test]
async fn tls_serves_the_cli_and_workers_and_mtls_holds_workers_to_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    let ca = Ca::new("tidewright test CA");
    let ca_file = ca.write(&certs, "ca");
    let (cert, key) = ca.issue(&certs, "server");
    let (worker_cert, worker_key) = ca.issue(&certs, "worker");
    let stranger = Ca::new("someone else");
    let (stranger_cert, stranger_key) = stranger.issue(&certs, "stranger");

    let http = free_addr();
    let mut server = Server::start_on(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
            "--tls-client-ca",
            path(&ca_file),
            "--http-listen",
            &http,
        ],
    )
    .expect("server");
    assert!(server.url.starts_with("https://"), "{}", server.url);
    server.client_tls = trusting(&ca_file);

    // The HTTP port speaks TLS too: probes and an authorized scrape work
    // over it, plain HTTP gets no answer.
    let (status, body) = https_get(&http, "/healthz", None, &ca_file)
        .await
        .expect("https healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = https_get(&http, "/metrics", Some(&server.admin_token), &ca_file)
        .await
        .expect("https metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tidewright_tasks_submitted_total"), "{body}");
    let (status, _) = https_get(&http, "/metrics", None, &ca_file)
        .await
        .expect("https metrics without a token");
    assert_eq!(status, 401);
    let plain_http = http_get(&http, "/healthz", None);
    assert!(
        !matches!(plain_http, Ok((200, _))),
        "plain HTTP must not be served: {plain_http:?}"
    );

    // A plaintext client gets nowhere.
    let plain_url = server.url.replace("https://", "http://");
    let plain = async {
        let channel = connect(&plain_url).await?;
        let mut client = v1::task_service_client::TaskServiceClient::new(channel);
        Ok::<_, anyhow::Error>(
            client
                .list_tasks(v1::ListTasksRequest::default())
                .await?
                .into_inner(),
        )
    };
    assert!(plain.await.is_err(), "plaintext must be refused");

    // A worker without a client certificate is refused and says why.
    let mut refused = server
        .worker_with("no-cert", &["shell"], 1, &["--ca-file", path(&ca_file)])
        .expect("worker");
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("refused worker exits");
    assert!(!status.success());
    let log = std::fs::read_to_string(&refused.log).expect("worker log");
    assert!(log.contains("client certificate"), "{log}");

    // A certificate from another CA fails the handshake.
    let stranger_tls = ClientTls {
        ca_file: Some(ca_file.clone()),
        cert_file: Some(stranger_cert),
        key_file: Some(stranger_key),
    };
    let stranger_call = async {
        let channel = connect_with(&server.url, &stranger_tls).await?;
        let mut client = v1::agent_service_client::AgentServiceClient::with_interceptor(
            channel,
            bearer(&server.worker_token),
        );
        Ok::<_, anyhow::Error>(client.list_agents(v1::ListAgentsRequest {}).await?)
    };
    assert!(
        stranger_call.await.is_err(),
        "a foreign client certificate must be refused"
    );

    // With its certificate, the worker runs what the CLI submits over TLS.
    let _worker = server
        .worker_with(
            "with-cert",
            &["shell"],
            1,
            &[
                "--ca-file",
                path(&ca_file),
                "--client-cert",
                path(&worker_cert),
                "--client-key",
                path(&worker_key),
            ],
        )
        .expect("worker");
    server
        .wait_for_agents(&["with-cert"])
        .await
        .expect("worker connects");
    let task_file = dir.path().join("task.yaml");
    std::fs::write(
        &task_file,
        "name: over-tls\nsteps:\n  - id: hello\n    shell:\n      command: [sh, -c, 'echo hi']\n",
    )
    .expect("task file");
    succeed(
        server
            .cli()
            .args(["submit", "--watch", "-f", path(&task_file)]),
    );

    // The same, through a context of the CLI's config file.
    let config = dir.path().join("tidewright-config.yaml");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, &server.admin_token).expect("token file");
    let tidewright = |args: &[&str]| {
        succeed(
            std::process::Command::new(tidewright_bin())
                .args(["--config", path(&config)])
                .args(args)
                .env_remove("TIDEWRIGHT_TOKEN")
                .current_dir(dir.path()),
        )
    };
    tidewright(&[
        "config",
        "set-context",
        "secure",
        "--server",
        &server.url,
        "--ca-file",
        path(&ca_file),
        "--token-file",
        path(&token_file),
    ]);
    let listed = tidewright(&["get", "tasks", "-o", "json"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("over-tls"));
    let contexts = tidewright(&["config", "get-contexts"]);
    assert!(String::from_utf8_lossy(&contexts.stdout).contains("*        secure"));
}

#[tokio::test]
async fn renewed_certificates_take_effect_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let first_ca = first.write(dir.path(), "first-ca");
    let second_ca = second.write(dir.path(), "second-ca");
    let (cert, key) = first.issue(dir.path(), "server");
    let server = Server::start_on(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &["--tls-cert", path(&cert), "--tls-key", path(&key)],
    )
    .expect("server");
    let call = |tls: ClientTls| {
        let url = server.url.clone();
        let token = server.admin_token.clone();
        async move {
            let channel = connect_with(&url, &tls).await?;
            let mut client = v1::task_service_client::TaskServiceClient::with_interceptor(
                channel,
                bearer(&token),
            );
            Ok::<_, anyhow::Error>(list_tasks(&mut client).await?)
        }
    };
    call(trusting(&first_ca))
        .await
        .expect("first certificate serves");

    // Renew: the same paths now hold a certificate of the second CA.
    let renewed = dir.path().join("renewed");
    std::fs::create_dir_all(&renewed).expect("dir");
    let (new_cert, new_key) = second.issue(&renewed, "server");
    std::fs::copy(&new_key, &key).expect("key");
    std::fs::copy(&new_cert, &cert).expect("cert");

    call(trusting(&second_ca))
        .await
        .expect("the renewed certificate serves new connections");
    assert!(
        call(trusting(&first_ca)).await.is_err(),
        "the old certificate is gone"
    );
}

const SECRET: &str = "a test secret that is long enough for HS256";

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

#[tokio::test]
async fn jwts_authenticate_people_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt-secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let public_key = fixtures.join("jwt-rs256.pub.pem");
    let server = Server::start_on(
        &dir.path().join("data"),
        "127.0.0.1:0",
        &[
            "--jwt-hs256-secret-file",
            path(&secret),
            "--jwt-rs256-public-key",
            path(&public_key),
            "--jwt-issuer",
            "https://idp.example",
        ],
    )
    .expect("server");
    let hs256 = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signs")
    };
    let claims = |role: &str, exp: u64| {
        json!({"sub": format!("{role}@example"), "role": role, "tenants": ["team-a"],
               "exp": exp, "iss": "https://idp.example"})
    };
    let submit = |token: String| {
        let server = &server;
        async move {
            let mut client = server.tasks_as(&token).await.expect("client");
            let mut request = task("jwt", vec![noop_step("a")]);
            request.tenant = "team-a".into();
            client.submit_task(request).await.map(|r| r.into_inner())
        }
    };

    let developer = hs256(claims("developer", in_an_hour()));
    submit(developer.clone())
        .await
        .expect("a developer JWT submits");

    let rsa_key = std::fs::read(fixtures.join("jwt-rs256.key")).expect("rsa key");
    let rs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("developer", in_an_hour()),
        &EncodingKey::from_rsa_pem(&rsa_key).expect("rsa key parses"),
    )
    .expect("signs");
    submit(rs256).await.expect("an RS256 JWT submits");

    let expired = hs256(claims(
        "developer",
        jsonwebtoken::get_current_timestamp() - 3600,
    ));
    let status = submit(expired).await.expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());

    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("admin", in_an_hour()),
        &EncodingKey::from_secret(b"not the server's secret, but just as long"),
    )
    .expect("signs");
    let status = submit(forged).await.expect_err("forged");
    assert_eq!(status.code(), Code::Unauthenticated);

    let viewer = hs256(claims("viewer", in_an_hour()));
    let status = submit(viewer.clone()).await.expect_err("viewers only read");
    assert_eq!(status.code(), Code::PermissionDenied);

    // The viewer sees team-a's two tasks; the CLI carries the JWT as is.
    let out = succeed(
        server
            .cli()
            .env("TIDEWRIGHT_TOKEN", &viewer)
            .args(["get", "tasks", "-o", "json"]),
    );
    let tasks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(tasks.as_array().map(Vec::len), Some(2), "{tasks}");

    // tidewright's own tokens still work beside JWTs.
    let mut admin = server.tasks().await.expect("client");
    assert_eq!(list_tasks(&mut admin).await.expect("admin lists"), 2);
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_is_told_to_wait_and_others_are_unaffected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin_token, viewer_token) = (
        "tidewright_admin_test_token",
        "tidewright_viewer_test_token",
    );
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line(admin_token, "admin", "ops"),
            token_line(viewer_token, "viewer", "dashboard"),
        ],
        &["--rate-limit", "2/20"],
    )
    .expect("server");
    let mut admin = server.tasks_as(admin_token).await.expect("client");
    // The burst allowance is served in full.
    for i in 0..20 {
        list_tasks(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("request {i} is within the burst: {e}"));
    }
    let status = list_tasks(&mut admin).await.expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("retry in"),
        "{}",
        status.message()
    );
    let hint: u64 = status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a retry-after-ms hint");
    assert!(hint > 0 && hint <= 1000, "{hint}");

    // Another caller has its own allowance.
    let mut viewer = server.tasks_as(viewer_token).await.expect("client");
    list_tasks(&mut viewer)
        .await
        .expect("one caller's burst does not slow another");

    // And the limited caller is served again once its bucket refills.
    eventually(Duration::from_secs(5), || {
        let mut admin = admin.clone();
        async move { list_tasks(&mut admin).await.ok() }
    })
    .await
    .expect("served again after the hint");
}

/// Every configurable input limit refuses with the limit named, and a
/// refused request leaves the store as it was.
#[tokio::test]
async fn each_input_limit_is_configurable_refuses_by_name_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _workers) = {
        let server = Server::start_on(
            dir.path(),
            "127.0.0.1:0",
            &[
                "--max-message-bytes",
                "8192",
                "--max-steps",
                "3",
                "--max-command-bytes",
                "200",
                "--max-env-bytes",
                "100",
                "--max-labels",
                "2",
                "--max-output-bytes",
                "100",
                "--max-log-line-bytes",
                "64",
                "--max-watches-per-caller",
                "2",
            ],
        )
        .expect("server");
        let worker = server.worker("w", &["shell"], 4).expect("worker");
        server.wait_for_agents(&["w"]).await.expect("worker");
        (server, worker)
    };
    let client = server.tasks().await.expect("client");
    let before = all_task_ids(&client).await.expect("list");

    let refused = |request: v1::SubmitTaskRequest, named: &'static str| {
        let mut client = client.clone();
        async move {
            let status = client.submit_task(request).await.expect_err(named);
            assert!(
                status.message().contains(named),
                "{named}: {:?} {}",
                status.code(),
                status.message()
            );
            status.code()
        }
    };
    let big = "x".repeat(10_000);
    assert_eq!(
        refused(task("huge", vec![shell_step("a", &[], &big)]), "limit").await,
        Code::OutOfRange
    );
    let steps = (0..4).map(|i| noop_step(&format!("s{i}"))).collect();
    assert_eq!(
        refused(task("many", steps), "max-steps").await,
        Code::InvalidArgument
    );
    assert_eq!(
        refused(
            task("long", vec![shell_step("a", &[], &"y".repeat(300))]),
            "max-command-bytes"
        )
        .await,
        Code::InvalidArgument
    );
    let mut env_step = shell_step("a", &[], "true");
    if let Some(v1::step_spec::Runtime::Shell(shell)) = &mut env_step.runtime {
        shell.env.insert("BIG".into(), "z".repeat(200));
    }
    assert_eq!(
        refused(task("env", vec![env_step]), "max-env-bytes").await,
        Code::InvalidArgument
    );
    let mut labelled = task("labels", vec![noop_step("a")]);
    if let Some(spec) = &mut labelled.spec {
        for key in ["a", "b", "c"] {
            spec.labels.insert(key.into(), "v".into());
        }
    }
    assert_eq!(refused(labelled, "max-labels").await, Code::InvalidArgument);
    assert_eq!(
        all_task_ids(&client).await.expect("list"),
        before,
        "nothing stored"
    );

    // What a step sends back is held to its limits too.
    let output = submit(
        &client,
        task(
            "big-output",
            vec![shell_step(
                "a",
                &[],
                "printf '\"%0200d\"' 0 > \"$TIDEWRIGHT_OUTPUT\"",
            )],
        ),
    )
    .await
    .expect("submit");
    let finished = wait_finished(&client, &output, Duration::from_secs(20))
        .await
        .expect("finishes");
    assert_eq!(finished.state, v1::TaskState::Failed as i32);
    assert!(
        finished.steps[0].error.contains("max-output-bytes"),
        "{}",
        finished.steps[0].error
    );

    let logs = submit(
        &client,
        task(
            "long-line",
            vec![shell_step("a", &[], "printf '%0300d\\n' 0")],
        ),
    )
    .await
    .expect("submit");
    wait_finished(&client, &logs, Duration::from_secs(20))
        .await
        .expect("finishes");
    let out = server.cli().args(["logs", &logs]).output().expect("cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max-log-line-bytes"), "{text}");
    assert!(!text.contains(&"0".repeat(65)), "{text}");

    // Watches: two open at once, the third refused until one closes.
    let gate = dir.path().join("gate");
    let held = submit(
        &client,
        task("held", vec![shell_step("a", &[], &wait_for_gate(&gate))]),
    )
    .await
    .expect("submit");
    let watch = |client: &Tasks| {
        let mut client = client.clone();
        let held = held.clone();
        async move {
            client
                .watch_task(v1::WatchTaskRequest {
                    task_id: held,
                    after_seq: 0,
                    follow: true,
                })
                .await
        }
    };
    let first = watch(&client).await.expect("first watch");
    let _second = watch(&client).await.expect("second watch");
    let status = watch(&client).await.expect_err("third watch");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("max-watches-per-caller"),
        "{}",
        status.message()
    );
    drop(first);
    eventually(Duration::from_secs(10), || async {
        watch(&client).await.ok().map(|_| ())
    })
    .await
    .expect("a closed watch frees its slot");
    std::fs::write(&gate, "").expect("open the gate");
    wait_finished(&client, &held, Duration::from_secs(20))
        .await
        .expect("finishes");
}

/// Every file under `dir`, read whole, for greps.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path, bytes));
            }
        }
    }
    found
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_secret_never_reaches_the_store_the_events_the_logs_or_the_cli() {
    use sha2::Digest;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    // Made here, so it is in no source file and no command line.
    let secret = format!("sk-test-{}-{}", std::process::id(), in_an_hour());
    std::fs::write(secrets.join("api-key"), format!("{secret}\n")).expect("secret");
    let http = free_addr();
    let server = Server::start_on(&data, "127.0.0.1:0", &["--http-listen", &http]).expect("server");
    let worker_http = free_addr();
    let _worker = server
        .worker_with(
            "w",
            &["shell"],
            2,
            &[
                "--secrets-dir",
                path(&secrets),
                "--http-listen",
                &worker_http,
            ],
        )
        .expect("worker");
    server.wait_for_agents(&["w"]).await.expect("worker");

    let task_file = dir.path().join("task.yaml");
    std::fs::write(
        &task_file,
        r#"name: uses-a-secret
steps:
  - id: use
    shell:
      command:
        - sh
        - -c
        - |
          echo "the key is $API_KEY"
          echo "$API_KEY" >&2
          echo "::progress 0.5 using $API_KEY"
          env
          digest=$(printf '%s' "$API_KEY" | sha256sum | cut -c1-64)
          printf '{"key":"%s","digest":"%s"}' "$API_KEY" "$digest" > "$TIDEWRIGHT_OUTPUT"
      secretEnv:
        API_KEY: api-key
"#,
    )
    .expect("task file");
    succeed(
        server
            .cli()
            .args(["submit", "--watch", "-f", path(&task_file)]),
    );
    let client = server.tasks().await.expect("client");
    let ids = all_task_ids(&client).await.expect("list");
    let id = ids.first().expect("the task").clone();
    let used = wait_finished(&client, &id, Duration::from_secs(20))
        .await
        .expect("finished");
    let output: serde_json::Value =
        serde_json::from_str(&used.steps[0].output_json).expect("output json");
    let digest: String = sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(output["digest"], digest.as_str(), "the step had the secret");
    assert_eq!(output["key"], "***", "and it was masked on the way back");

    // A secret the worker does not hold fails the step, naming it.
    let mut missing = shell_step("a", &[], "true");
    if let Some(v1::step_spec::Runtime::Shell(shell)) = &mut missing.runtime {
        shell.secret_env.insert("X".into(), "not-there".into());
    }
    let failed = submit(&client, task("missing", vec![missing]))
        .await
        .expect("submit");
    let failed = wait_finished(&client, &failed, Duration::from_secs(20))
        .await
        .expect("finished");
    assert!(
        failed.steps[0].error.contains("\"not-there\""),
        "{}",
        failed.steps[0].error
    );

    let mut seen = Vec::new();
    for args in [
        vec!["get", "task", id.as_str(), "-o", "json"],
        vec!["get", "task", id.as_str()],
        vec!["get", "tasks", "-o", "yaml"],
        vec!["logs", id.as_str()],
        vec!["watch", id.as_str()],
    ] {
        let out = succeed(server.cli().args(&args));
        seen.push((format!("tidewright {}", args.join(" ")), out.stdout));
        seen.push((
            format!("tidewright {} (stderr)", args.join(" ")),
            out.stderr,
        ));
    }
    let logs = String::from_utf8_lossy(&seen[6].1).to_string();
    assert!(logs.contains("the key is ***"), "{logs}");
    // Metrics, the control plane's and the worker's.
    for (place, addr, token) in [
        ("/metrics", &http, Some(server.admin_token.as_str())),
        ("the worker's /metrics", &worker_http, None),
    ] {
        let (status, body) = http_get(addr, "/metrics", token).expect("scrape");
        assert_eq!(status, 200, "{place}: {body}");
        seen.push((place.to_string(), body.into_bytes()));
    }
    // The store (database and WAL), the server's and worker's logs.
    for (file, bytes) in all_bytes(&data) {
        seen.push((file.display().to_string(), bytes));
    }
    for (place, bytes) in &seen {
        assert!(!holds(bytes, &secret), "the secret is in {place}");
        // Tokens are only in the files made to hold them: not in the
        // store, not in a log, not in the step's environment.
        if !place.ends_with(".token") {
            assert!(
                !holds(bytes, &server.worker_token),
                "the worker token is in {place}"
            );
            assert!(
                !holds(bytes, &server.admin_token),
                "the admin token is in {place}"
            );
        }
    }
}

/// The audit log as `reader` sees it, once it holds `count` records (they
/// are written in order behind each call's change, not before its answer).
async fn audit_log_of(reader: &Tasks, count: usize) -> Vec<v1::AuditEvent> {
    eventually(Duration::from_secs(10), || {
        let mut reader = reader.clone();
        async move {
            let events = reader
                .list_audit(v1::ListAuditRequest::default())
                .await
                .ok()?
                .into_inner()
                .events;
            (events.len() == count).then_some(events)
        }
    })
    .await
    .expect("the audit records")
}

#[tokio::test]
async fn the_audit_log_says_who_changed_what_and_what_was_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("tidewright_root", "admin", "root"),
            token_line("tidewright_dana", "developer", "dana"),
            token_line("tidewright_vic", "viewer", "vic"),
        ],
        &["--audit-log"],
    )
    .expect("server");
    let dana = server.tasks_as("tidewright_dana").await.expect("client");
    let gate = dir.path().join("gate");
    let id = submit(
        &dana,
        task("audited", vec![shell_step("a", &[], &wait_for_gate(&gate))]),
    )
    .await
    .expect("submit");
    dana.clone()
        .cancel_task(v1::CancelTaskRequest {
            task_id: id.clone(),
        })
        .await
        .expect("cancel");
    let vic = server.tasks_as("tidewright_vic").await.expect("client");
    let refused = vic
        .clone()
        .submit_task(task("sneaky", vec![noop_step("a")]))
        .await
        .expect_err("viewers do not submit");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let status = dana
        .clone()
        .list_audit(v1::ListAuditRequest::default())
        .await
        .expect_err("only admins read the audit log");
    assert_eq!(status.code(), Code::PermissionDenied);

    let root = server.tasks_as("tidewright_root").await.expect("client");
    let events = audit_log_of(&root, 3).await;
    let summary: Vec<(&str, &str, &str, bool)> = events
        .iter()
        .map(|e| {
            (
                e.actor.as_str(),
                e.action.as_str(),
                e.task_id.as_str(),
                e.outcome == "ok",
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("dana", "task.submit", id.as_str(), true),
            ("dana", "task.cancel", id.as_str(), true),
            ("vic", "task.submit", "", false),
        ]
    );
    assert_eq!(events[0].tenant, "default");
    assert!(
        events[2].outcome.contains("may not"),
        "{}",
        events[2].outcome
    );

    // The CLI shows it, and with --audit-log the server's log carries the
    // same as fields.
    let out = succeed(
        server
            .cli()
            .env("TIDEWRIGHT_TOKEN", "tidewright_root")
            .args(["audit", "-o", "json"]),
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed[1]["action"], "task.cancel");
    assert_eq!(listed[1]["actor"], "dana");
    let log = std::fs::read_to_string(&server.process.log).expect("server log");
    assert!(
        log.lines().any(|l| l.contains("tidewright::audit")
            && l.contains("actor=dana")
            && l.contains("task.submit")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("tidewright::audit")
            && l.contains("actor=dana")
            && l.contains("task.cancel")),
        "{log}"
    );
}

#[tokio::test]
async fn without_audit_log_the_records_are_stored_and_not_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with_tokens(
        dir.path(),
        &[
            token_line("tidewright_root", "admin", "root"),
            token_line("tidewright_dana", "developer", "dana"),
        ],
        &[],
    )
    .expect("server");
    let dana = server.tasks_as("tidewright_dana").await.expect("client");
    let id = submit(&dana, task("quiet", vec![noop_step("a")]))
        .await
        .expect("submit");
    let root = server.tasks_as("tidewright_root").await.expect("client");
    let records = audit_log_of(&root, 1).await;
    assert_eq!(
        (records[0].action.as_str(), records[0].task_id.as_str()),
        ("task.submit", id.as_str())
    );
    let log = std::fs::read_to_string(&server.process.log).expect("server log");
    assert!(!log.contains("tidewright::audit"), "{log}");
}
