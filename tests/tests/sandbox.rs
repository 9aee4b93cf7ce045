//! Every step in a sandbox: hostile steps (a shell step, and a Claude Code
//! step whose Bash tool calls are the attacks) try to reach what is not
//! theirs and are refused, with each refusal in the step's events; what is
//! theirs keeps working; a killed worker leaves no sandboxed process; a
//! worker that cannot make a sandbox runs nothing unless told `--sandbox=off`,
//! which is shown and audited; a step held at a test's gate ends with the
//! test's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

/// What a worker's user keeps that no step may read: a private key in its
/// `~/.ssh`.
const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY----- worker-only";

/// The worker's credential for the model API: a sandboxed agent reaches
/// the API through the worker's proxy with a key of its attempt's.
const MODEL_KEY: &str = "sk-ant-test-key";

/// What the victim step keeps in its workspace.
const VICTIM_NOTES: &str = "victim-notes-not-for-others";

/// The worker's home, with its `~/.ssh`.
fn worker_home(dir: &Path) -> PathBuf {
    let home = dir.join("worker-home");
    std::fs::create_dir_all(home.join(".ssh")).expect("home");
    std::fs::write(home.join(".ssh/id_rsa"), SSH_KEY).expect("key");
    home
}

/// Services on the host's loopback: `other` on 127.0.0.2, which no list
/// allows, and `allowed` on 127.0.0.3, which the pool names with its port.
/// Each answers any request `200 ok`, so a refusal is the sandbox's.
struct Loopback {
    other: std::net::SocketAddr,
    allowed: std::net::SocketAddr,
    _serving: Vec<tidewright_api::abort::AbortOnDrop>,
}

impl Loopback {
    async fn start() -> Loopback {
        let mut serving = Vec::new();
        let mut addresses = Vec::new();
        for ip in ["127.0.0.2", "127.0.0.3"] {
            let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
            addresses.push(listener.local_addr().expect("addr"));
            serving.push(tidewright_api::abort::AbortOnDrop(tokio::spawn(
                async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    while let Ok((mut stream, _)) = listener.accept().await {
                        let mut head = [0u8; 4096];
                        let _ = stream.read(&mut head).await;
                        let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    }
                },
            )));
        }
        Loopback {
            other: addresses[0],
            allowed: addresses[1],
            _serving: serving,
        }
    }

    /// The pool's allow-list: the allowed service by its address and
    /// port, and `localhost` by name only (so it is refused: it resolves
    /// to loopback).
    fn allow(&self) -> String {
        format!("--egress-allow={},localhost", self.allowed)
    }
}

/// Starts worker `name` (sandboxed, the default) with `home` as its HOME.
fn sandboxed_worker(server: &Server, name: &str, home: &Path, extra: &[&str]) -> Process {
    start_strict_worker(
        &server.url,
        &server.data_dir,
        name,
        &["shell"],
        2,
        extra,
        &server.worker_token,
        &[("HOME", home.to_str().expect("utf-8"))],
    )
    .expect("worker")
}

/// A step that keeps notes in its workspace, then waits to be cancelled.
fn victim_step() -> v1::StepSpec {
    shell_step(
        "victim",
        &[],
        &format!("echo {VICTIM_NOTES} > notes; exec sleep 913.25"),
    )
}

/// Where a step tries to write outside its sandbox: a place on the host
/// that is neither its workspace nor a temporary directory (a step's `/tmp`
/// is its own, and the tests' directories are under the host's).
fn escape_path(server: &Server) -> PathBuf {
    let name = server.data_dir.file_name().expect("name").to_string_lossy();
    PathBuf::from(format!("/var/tmp/tidewright-escaped-{name}"))
}

/// The attacks, as a shell script: each prints `<name>: refused` or
/// `<name>: LEAKED <what it got>`; then what the step may do, each
/// printing `<name>: ok`.
fn attacks(
    server: &Server,
    home: &Path,
    victim_notes: &Path,
    worker_pid: u32,
    net: &Loopback,
) -> String {
    let data = server.data_dir.display();
    let escaped = escape_path(server);
    let other = net.other;
    let private_name = format!("localhost:{}", net.other.port());
    let allowed = net.allowed;
    format!(
        r#"try() {{ name=$1; shift; if out=$("$@" 2>&1); then echo "$name: LEAKED $out"; else echo "$name: refused"; fi; }}
try data-dir sh -c 'ls -A {data} | grep -v -x work'
try tokens-file cat {data}/tokens
try worker-token grep -l -r {token} /proc/1/environ /proc/self/environ {data}
try other-workspace cat {victim}
try worker-ssh cat {home}/.ssh/id_rsa
try write-outside sh -c 'echo x > {escaped}'
try write-system sh -c 'echo x > /usr/escaped'
try signal-worker kill -0 {worker_pid}
try model-key sh -c 'env | grep {model_key}'
try around-the-proxy curl -sS -m 5 --noproxy '*' http://{other}/
try other-host curl -sSf -m 5 http://{other}/
try metadata curl -sSf -m 5 http://169.254.169.254/latest/meta-data/
try private-name curl -sSf -m 5 --noproxy '' http://{private_name}/
curl -sSf -m 5 http://{allowed}/ > /dev/null && echo "allowed-host: ok"
tidewright state put probe 1 > /dev/null && echo "control-plane: ok"
echo mine > "$TIDEWRIGHT_WORKSPACE/mine" && echo "workspace: ok"
echo t > /tmp/t && echo "tmp: ok"
echo h > "$HOME/h" && echo "home: ok"
git --version > /dev/null && echo "tools: ok"
"#,
        token = server.worker_token,
        model_key = MODEL_KEY,
        victim = victim_notes.display(),
        home = home.display(),
        escaped = escaped.display(),
    )
}

const REFUSED: &[&str] = &[
    "data-dir",
    "tokens-file",
    "worker-token",
    "other-workspace",
    "worker-ssh",
    "write-outside",
    "write-system",
    "signal-worker",
    "model-key",
    "around-the-proxy",
    "other-host",
    "metadata",
    "private-name",
];
const ALLOWED: &[&str] = &[
    "workspace",
    "tmp",
    "home",
    "tools",
    "allowed-host",
    "control-plane",
];

/// The egress events of task `task_id`, as (destination, allowed, reason).
async fn egress_events(client: &Tasks, task_id: &str) -> Vec<(String, bool, String)> {
    task_events(&mut client.clone(), task_id, 0, false)
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| match e.kind {
            Some(v1::event::Kind::Egress(e)) => Some((e.destination, e.allowed, e.reason)),
            _ => None,
        })
        .collect()
}

/// Each connection the attacks asked of the proxy is an event on the
/// step: the refusals with their reasons, and the one allowed.
async fn assert_egress_events(client: &Tasks, task_id: &str, net: &Loopback) {
    let events = egress_events(client, task_id).await;
    let find = |destination: &str| {
        events
            .iter()
            .find(|(d, _, _)| d == destination)
            .unwrap_or_else(|| panic!("no egress event for {destination}: {events:?}"))
            .clone()
    };
    let (_, allowed, reason) = find(&net.other.to_string());
    assert!(!allowed && reason.contains("allow-list"), "{reason}");
    let (_, allowed, reason) = find("169.254.169.254:80");
    assert!(!allowed && reason.contains("allow-list"), "{reason}");
    let (_, allowed, reason) = find(&format!("localhost:{}", net.other.port()));
    assert!(
        !allowed && reason.contains("a loopback address"),
        "{reason}"
    );
    let (_, allowed, _) = find(&net.allowed.to_string());
    assert!(allowed, "{events:?}");
    // Going around the proxy reached nothing to ask.
    assert_eq!(events.len(), 4, "{events:?}");
}

/// Every attack refused and every allowed thing done, in `said`.
fn assert_refused_and_allowed(said: &str, server: &Server) {
    for name in REFUSED {
        assert!(
            said.contains(&format!("{name}: refused")),
            "{name} was not refused: {said}"
        );
    }
    for name in ALLOWED {
        assert!(
            said.contains(&format!("{name}: ok")),
            "{name} failed: {said}"
        );
    }
    assert!(!said.contains("LEAKED"), "{said}");
    assert!(!said.contains(SSH_KEY) && !said.contains(VICTIM_NOTES));
    assert!(!said.contains(&server.worker_token) || said.contains("worker-token: refused"));
    let escaped = escape_path(server);
    let outside = escaped.exists();
    let _ = std::fs::remove_file(&escaped);
    assert!(!outside, "a step wrote {}", escaped.display());
}

/// Starts the victim and waits until its notes are on the worker's disk;
/// the task and where the notes are.
async fn running_victim(server: &Server, client: &Tasks, worker: &str) -> (String, PathBuf) {
    let victim = submit(client, task("victim", vec![victim_step()]))
        .await
        .expect("victim");
    let notes = server
        .data_dir
        .join("work")
        .join(worker)
        .join(&victim)
        .join("victim/attempt-1/notes");
    eventually(Duration::from_secs(30), || {
        let found = std::fs::read_to_string(&notes).is_ok_and(|n| n.contains(VICTIM_NOTES));
        async move { found.then_some(()) }
    })
    .await
    .expect("the victim's notes");
    (victim, notes)
}

/// Runs `step` as a task of its own, which must succeed (the step's
/// attacks failing is its success); the task's id.
async fn run_to_success(client: &Tasks, step: v1::StepSpec) -> String {
    let id = submit(client, task("hostile", vec![step]))
        .await
        .expect("hostile");
    let done = wait_finished(client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(done.state, v1::TaskState::Succeeded as i32, "{done:?}");
    id
}

/// The workers connected to `server`.
async fn connected(server: &Server) -> Vec<v1::Agent> {
    server
        .agents()
        .await
        .expect("agents")
        .list_agents(v1::ListAgentsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .agents
}

#[tokio::test]
async fn a_hostile_shell_step_is_refused_all_that_is_not_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let home = worker_home(dir.path());
    let net = Loopback::start().await;
    let worker = sandboxed_worker(&server, "agent-1", &home, &[&net.allow()]);
    server.wait_for_agents(&["agent-1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");
    let (victim, notes) = running_victim(&server, &client, "agent-1").await;

    let script = attacks(&server, &home, &notes, worker.pid(), &net);
    let hostile = run_to_success(&client, shell_step("h", &[], &script)).await;
    assert_refused_and_allowed(&step_log(&client, &hostile, "h").await, &server);
    assert_egress_events(&client, &hostile, &net).await;

    // The worker says how its steps are isolated.
    let agents = connected(&server).await;
    assert!(
        agents[0].isolation.starts_with("bubblewrap"),
        "{:?}",
        agents[0]
    );
    let _ = client
        .clone()
        .cancel_task(v1::CancelTaskRequest { task_id: victim })
        .await;
}

#[tokio::test]
async fn a_hostile_claude_code_step_is_refused_through_its_bash_tool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let home = worker_home(dir.path());
    let bin = claude_bin().display().to_string();
    // The mock's address is known once it runs; the script needs the
    // victim's path, known once the victim runs: the victim goes first,
    // on a shell worker of its own.
    let shell = sandboxed_worker(&server, "shell-1", &home, &[]);
    server.wait_for_agents(&["shell-1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");
    let (victim, notes) = running_victim(&server, &client, "shell-1").await;

    let net = Loopback::start().await;
    let script = attacks(&server, &home, &notes, shell.pid(), &net);
    let mock = Mock::start(
        Api::Anthropic,
        vec![Reply::claude_bash(&script), Reply::Text("done".into())],
    )
    .await
    .expect("mock");
    let _agent = start_strict_worker(
        &server.url,
        &server.data_dir,
        "agent-1",
        &[tidewright_core::CLAUDE_CODE],
        1,
        &["--claude-bin", &bin, &net.allow()],
        &server.worker_token,
        &[
            ("HOME", home.to_str().expect("utf-8")),
            ("ANTHROPIC_BASE_URL", &mock.url),
            ("ANTHROPIC_API_KEY", MODEL_KEY),
        ],
    )
    .expect("agent worker");
    server
        .wait_for_agents(&["agent-1", "shell-1"])
        .await
        .expect("agent");
    // The model API on the host's loopback is reached all the same: through
    // the worker's model proxy, relayed into the sandbox.
    let hostile = run_to_success(&client, claude_step("a", "look around", &["Bash"])).await;
    assert_egress_events(&client, &hostile, &net).await;
    // What the Bash tool answered went back to the model.
    let mut answered = String::new();
    for request in mock.requests() {
        tool_results(&request, &mut answered);
    }
    assert_refused_and_allowed(&answered, &server);
    let _ = client
        .clone()
        .cancel_task(v1::CancelTaskRequest { task_id: victim })
        .await;
}

/// The text of every `tool_result` block in a Messages API request.
fn tool_results(value: &serde_json::Value, into: &mut String) {
    match value {
        serde_json::Value::Object(map)
            if map.get("type").and_then(|t| t.as_str()) == Some("tool_result") =>
        {
            match &map["content"] {
                serde_json::Value::String(text) => into.push_str(text),
                blocks => {
                    for block in blocks.as_array().into_iter().flatten() {
                        into.push_str(block["text"].as_str().unwrap_or_default());
                    }
                }
            }
            into.push('\n');
        }
        serde_json::Value::Object(map) => map.values().for_each(|v| tool_results(v, into)),
        serde_json::Value::Array(items) => items.iter().for_each(|v| tool_results(v, into)),
        _ => {}
    }
}

#[tokio::test]
async fn a_worker_killed_with_sigkill_leaves_no_sandboxed_process_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let home = worker_home(dir.path());
    let mut worker = sandboxed_worker(&server, "agent-1", &home, &[]);
    server.wait_for_agents(&["agent-1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");
    running_victim(&server, &client, "agent-1").await;
    let sleeper = ["sleep", "913.25"];
    eventually(Duration::from_secs(10), || {
        let running = processes(&sleeper).len() == 1;
        async move { running.then_some(()) }
    })
    .await
    .expect("the victim's sleep runs");

    worker.signal("KILL");
    worker.wait_exit(Duration::from_secs(10)).expect("killed");
    eventually(Duration::from_secs(10), || {
        let left = processes(&sleeper);
        async move { left.is_empty().then_some(()) }
    })
    .await
    .expect("no sandboxed process outlives its worker");
}

#[tokio::test]
async fn a_worker_that_cannot_make_a_sandbox_says_why_and_how_to_fix_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-bwrap");
    let missing = missing.to_str().expect("utf-8");
    let server = Server::start(dir.path()).expect("server");
    let line = fails_in_one_line(
        server
            .cli()
            .args(["worker", "--name", "w", "--bwrap", missing])
            .env("TIDEWRIGHT_TOKEN", &server.worker_token)
            .current_dir(dir.path()),
    );
    assert!(line.contains("cannot be sandboxed"), "{line}");
    assert!(
        line.contains("--sandbox=off") && line.contains("bubblewrap"),
        "{line}"
    );
    let line = fails_in_one_line(
        std::process::Command::new(tidewright_bin())
            .args(["up", "--data-dir"])
            .arg(dir.path().join("up"))
            .args(["--listen", "127.0.0.1:0", "--bwrap", missing])
            .env("XDG_CONFIG_HOME", dir.path()),
    );
    assert!(line.contains("--sandbox=off"), "{line}");

    // A tidewright without its relay beside it (a broken install): refused at
    // start, naming what is missing. A hard link, since the binary finds
    // the relay beside where it really is.
    let alone = tempfile::tempdir_in(tidewright_bin().parent().expect("bin dir")).expect("tempdir");
    let lone_tidewright = alone.path().join("tidewright");
    std::fs::hard_link(tidewright_bin(), &lone_tidewright).expect("link tidewright");
    let line = fails_in_one_line(
        std::process::Command::new(&lone_tidewright)
            .args(["worker", "--name", "w2", "--server", &server.url])
            .env("TIDEWRIGHT_TOKEN", &server.worker_token)
            .current_dir(dir.path()),
    );
    assert!(
        line.contains("tidewright-sandbox-net") && line.contains("missing"),
        "{line}"
    );
    // Nothing registered.
    let agents = connected(&server).await;
    assert!(agents.is_empty(), "{agents:?}");
}

#[tokio::test]
async fn sandbox_off_is_a_choice_shown_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let home = worker_home(dir.path());
    let _worker = sandboxed_worker(&server, "loose-1", &home, &["--sandbox", "off"]);
    server.wait_for_agents(&["loose-1"]).await.expect("worker");

    let out = succeed(server.cli().args(["get", "agents"]));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ISOLATION"), "{table}");
    assert!(table.contains("none (--sandbox=off)"), "{table}");
    let audited = eventually(Duration::from_secs(10), || async {
        server
            .audit_log()
            .await
            .ok()?
            .into_iter()
            .find(|e| e.action == "worker.unsandboxed")
    })
    .await
    .expect("the choice is in the audit log");
    assert_eq!(audited.actor, "loose-1");
    assert!(audited.detail.contains("--sandbox=off"), "{audited:?}");
}

/// Runs `step` as a task of its own: it fails saying `reason`, or, with
/// none, succeeds.
async fn ends_saying(client: &Tasks, step: v1::StepSpec, reason: Option<&str>) {
    let id = submit(client, task("limited", vec![step.clone()]))
        .await
        .expect("submit");
    let done = wait_finished(client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    let ended = tidewright_tests::step(&done, &step.id);
    match reason {
        Some(reason) => {
            assert_eq!(
                done.state,
                v1::TaskState::Failed as i32,
                "{}: {done:?}",
                step.id
            );
            assert_eq!(ended.error, reason, "{}: {done:?}", step.id);
        }
        None => assert_eq!(done.state, v1::TaskState::Succeeded as i32, "{done:?}"),
    }
}

#[tokio::test]
async fn a_step_past_its_memory_or_process_limit_ends_saying_which() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let home = worker_home(dir.path());
    let worker = sandboxed_worker(
        &server,
        "agent-1",
        &home,
        &["--step-memory", "64MiB", "--step-processes", "32"],
    );
    server.wait_for_agents(&["agent-1"]).await.expect("worker");
    let agents = connected(&server).await;
    assert!(
        agents[0]
            .isolation
            .contains("limits memory 64 MiB (cgroup v"),
        "{:?}",
        agents[0].isolation
    );
    let client = server.tasks().await.expect("client");
    let forks = shell_step(
        "forks",
        &[],
        "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait",
    );
    let hog = shell_step(
        "hog",
        &[],
        "python3 -c 'b = bytearray(256 * 1024 * 1024); print(len(b))'",
    );
    let small = shell_step("small", &[], "python3 -c 'print(len(bytearray(1024)))'");
    for (step, reason) in [
        (forks, Some("pids limit 32")),
        (hog, Some("oom: memory limit 64 MiB")),
        (small, None),
    ] {
        ends_saying(&client, step, reason).await;
    }
    // No cgroup of a step outlives it.
    let left: Vec<_> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(':')?;
            let (controller, path) = rest.split_once(':')?;
            (controller == "pids" || controller == "memory")
                .then(|| format!("/sys/fs/cgroup/{controller}{path}"))
        })
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("tidewright-{}", worker.pid()))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A git server with repository `app`, and a server that takes local
/// repositories, its credentials in secret `git-creds`; the workers'
/// secrets directory, which holds them too.
fn repository_and_server(dir: &Path) -> (tidewright_tests::git_server::GitServer, Server, String) {
    use tidewright_tests::git_server::{GitServer, account_secrets};
    let git = GitServer::start(dir).expect("git server");
    git.create_repo("app", &[("README.md", "hello\n")]);
    let secrets = account_secrets(dir, "repo-secrets", "git-creds").expect("secrets");
    let server = Server::start_on(
        &dir.join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )
    .expect("server");
    let worker_secrets = account_secrets(dir, "w-secrets", "git-creds").expect("secrets");
    (git, server, worker_secrets)
}

/// Repository `app` at `main`, with its credentials.
fn app_repo(git: &tidewright_tests::git_server::GitServer) -> v1::RepoSpec {
    v1::RepoSpec {
        url: git.url("app"),
        r#ref: "main".into(),
        credentials_secret: "git-creds".into(),
        ..v1::RepoSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_lists_merge_narrowest_wins_and_a_tasks_repository_host_is_open_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (git, server, worker_secrets) = repository_and_server(dir.path());
    let net = Loopback::start().await;
    // The pool allows both loopback services by address and port.
    let pool = format!("--egress-allow={},{}", net.other, net.allowed);
    let _worker = server
        .worker_with(
            "w1",
            &["shell"],
            2,
            &["--secrets-dir", &worker_secrets, &pool],
        )
        .expect("worker");
    let client = server.tasks().await.expect("client");

    // The task allows both too; the step only `allowed`: `other` is
    // refused, by the step's list. The repository's host is reached
    // though no list names it (any HTTP answer, a 401 included, is the
    // server's).
    let url = git.url("app");
    let script = format!(
        r#"curl -sSf -m 5 http://{allowed}/ > /dev/null && echo "allowed: ok"
curl -sSf -m 5 http://{other}/ > /dev/null || echo "other: refused"
code=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' '{url}/info/refs?service=git-upload-pack')
[ "$code" != 000 ] && echo "repository: ok $code""#,
        allowed = net.allowed,
        other = net.other,
    );
    let mut step = shell_step("s", &[], &script);
    step.egress = Some(v1::Egress {
        allow: vec![net.allowed.to_string()],
    });
    let mut request = task("narrow", vec![step]);
    if let Some(spec) = request.spec.as_mut() {
        spec.egress = Some(v1::Egress {
            allow: vec![net.other.to_string(), net.allowed.to_string()],
        });
        spec.repo = Some(app_repo(&git));
    }
    let id = submit(&client, request).await.expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(done.state, v1::TaskState::Succeeded as i32, "{done:?}");
    let said = step_log(&client, &id, "s").await;
    for line in ["allowed: ok", "other: refused", "repository: ok"] {
        assert!(said.contains(line), "{line}: {said}");
    }
    let events = egress_events(&client, &id).await;
    let repo_host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the repository's host")
        .to_string();
    assert!(
        events.contains(&(
            net.other.to_string(),
            false,
            "not in the step's egress allow-list".into()
        )),
        "{events:?}"
    );
    assert!(
        events.contains(&(net.allowed.to_string(), true, String::new())),
        "{events:?}"
    );
    assert!(
        events.contains(&(repo_host, true, String::new())),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_bad_egress_entry_is_refused_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let client = server.tasks().await.expect("client");
    let mut step = shell_step("s", &[], "true");
    step.egress = Some(v1::Egress {
        allow: vec!["github.com".into(), "git*.com".into()],
    });
    let refused = submit(&client, task("bad", vec![step]))
        .await
        .expect_err("a bad entry");
    assert!(
        refused.to_string().contains("steps[0].egress.allow[1]"),
        "{refused}"
    );
    let mut request = task("bad", vec![shell_step("s", &[], "true")]);
    if let Some(spec) = request.spec.as_mut() {
        spec.egress = Some(v1::Egress {
            allow: vec!["api.github.com:99999".into()],
        });
    }
    let refused = submit(&client, request).await.expect_err("a bad port");
    assert!(refused.to_string().contains("egress.allow[0]"), "{refused}");
    // Nothing was stored.
    let listed = client
        .clone()
        .list_tasks(v1::ListTasksRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.tasks.is_empty(), "{listed:?}");
    // A worker's own bad entry stops it at start, naming the flag; and an
    // allow-list a worker cannot hold is refused, not ignored.
    for (flags, says) in [
        (
            &["--egress-allow", "*.ok.com,bad entry"][..],
            "--egress-allow 2",
        ),
        (
            &["--sandbox=off", "--egress-allow", "ok.com"][..],
            "--egress-allow needs the sandbox",
        ),
        (&["--egress-host", "api.internal"][..], "write NAME=ADDRESS"),
        (
            &["--egress-host", "api.internal=10.0.0.300"][..],
            "is not an IP address",
        ),
        (
            &["--egress-host", "*.internal=10.0.0.5"][..],
            "is not a host name",
        ),
        (
            &["--sandbox=off", "--egress-host", "api.internal=10.0.0.5"][..],
            "--egress-host needs the sandbox",
        ),
    ] {
        let line = fails_in_one_line(
            server
                .cli()
                .args(["worker", "--name", "w"])
                .args(flags)
                .env("TIDEWRIGHT_TOKEN", &server.worker_token)
                .current_dir(dir.path()),
        );
        assert!(line.contains(says), "{line}");
    }
}

#[tokio::test]
async fn a_step_past_its_disk_limit_or_its_own_limits_ends_saying_which() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let home = worker_home(dir.path());
    let _worker = sandboxed_worker(&server, "agent-1", &home, &["--step-disk", "64MiB"]);
    server.wait_for_agents(&["agent-1"]).await.expect("worker");
    let agents = connected(&server).await;
    assert!(
        agents[0].isolation.contains("disk 64 MiB"),
        "{:?}",
        agents[0].isolation
    );
    let client = server.tasks().await.expect("client");
    let limited = |id: &str, script: &str, limits: Option<v1::StepLimits>| {
        let mut step = shell_step(id, &[], script);
        step.limits = limits;
        step
    };
    let cases = [
        // One file past the limit: refused at it.
        (
            limited("one-file", "dd if=/dev/zero of=big bs=1M count=200", None),
            Some("disk limit 64 MiB"),
        ),
        // Many files, each under it: stopped by the measure, or failed by
        // it at the end.
        (
            limited(
                "many-files",
                "i=0; while [ $i -lt 20 ]; do head -c 10485760 /dev/zero > f$i || exit 0; i=$((i+1)); done; sleep 30",
                None,
            ),
            Some("disk limit 64 MiB"),
        ),
        // A step's own limits, narrower than its pool's (none, for memory).
        (
            limited(
                "own-disk",
                "head -c 2097152 /dev/zero > two-mib",
                Some(v1::StepLimits {
                    disk: "1MiB".into(),
                    ..Default::default()
                }),
            ),
            Some("disk limit 1 MiB"),
        ),
        (
            limited(
                "own-memory",
                "python3 -c 'b = bytearray(256 * 1024 * 1024); print(len(b))'",
                Some(v1::StepLimits {
                    memory: "32MiB".into(),
                    ..Default::default()
                }),
            ),
            Some("oom: memory limit 32 MiB"),
        ),
        (
            limited("small", "head -c 1024 /dev/zero > small", None),
            None,
        ),
    ];
    for (step, reason) in cases {
        ends_saying(&client, step, reason).await;
    }
    // A bad size is refused at submit, naming its field.
    let step = limited(
        "bad",
        "true",
        Some(v1::StepLimits {
            disk: "10GB".into(),
            ..Default::default()
        }),
    );
    let refused = submit(&client, task("bad", vec![step]))
        .await
        .expect_err("a bad size");
    assert!(
        refused.to_string().contains("steps[0].limits.disk"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_secret_file_is_in_its_steps_private_home_only_masked_and_gone_after() {
    const TOKEN: &str = "npm-token-only-for-the-publish-step";
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let home = worker_home(dir.path());
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets");
    std::fs::write(secrets.join("npm-token"), TOKEN).expect("secret");
    let secrets_dir = secrets.to_str().expect("utf-8");
    let _worker = sandboxed_worker(&server, "w1", &home, &["--secrets-dir", secrets_dir]);
    server.wait_for_agents(&["w1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");
    let with_file = |id: &str, script: &str| {
        let mut step = shell_step(id, &[], script);
        if let Some(v1::step_spec::Runtime::Shell(shell)) = &mut step.runtime {
            shell
                .secret_files
                .insert(".config/npm/.npmrc".into(), "npm-token".into());
        }
        step
    };
    let script = r#"echo "token: $(cat "$HOME/.config/npm/.npmrc")"
if echo x > "$HOME/.config/npm/.npmrc" 2>/dev/null; then echo "write: LEAKED"; else echo "write: refused"; fi
digest=$(sha256sum < "$HOME/.config/npm/.npmrc" | cut -c1-64)
printf '{"digest":"%s"}' "$digest" > "$TIDEWRIGHT_OUTPUT""#;
    let publish = with_file("publish", script);
    // Its sibling names no file: its home has none.
    let sibling = shell_step(
        "sibling",
        &[],
        r#"if cat "$HOME/.config/npm/.npmrc" 2>/dev/null; then echo "sibling: LEAKED"; else echo "sibling: refused"; fi"#,
    );
    let id = submit(&client, task("publish", vec![publish, sibling]))
        .await
        .expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(done.state, v1::TaskState::Succeeded as i32, "{done:?}");
    let said = step_log(&client, &id, "publish").await;
    assert!(said.contains("token: ***"), "masked: {said}");
    assert!(said.contains("write: refused"), "{said}");
    assert!(!said.contains(TOKEN), "{said}");
    assert!(
        step_log(&client, &id, "sibling")
            .await
            .contains("sibling: refused")
    );
    let output: serde_json::Value =
        serde_json::from_str(&tidewright_tests::step(&done, "publish").output_json).expect("json");
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(TOKEN.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(output["digest"], digest.as_str(), "the step read the file");
    // Gone from the worker once the step ended.
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("tidewright-secrets-")
        })
        .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
        .filter(|f| std::fs::read_to_string(f.path()).is_ok_and(|v| v == TOKEN))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Unsandboxed, there is no private home: refused, not put elsewhere.
    let _loose = start_strict_worker(
        &server.url,
        &server.data_dir,
        "loose-1",
        &["loose"],
        1,
        &["--sandbox=off", "--secrets-dir", secrets_dir],
        &server.worker_token,
        &[("HOME", home.to_str().expect("utf-8"))],
    )
    .expect("loose worker");
    server
        .wait_for_agents(&["w1", "loose-1"])
        .await
        .expect("workers");
    let mut loose = with_file("loose", "true");
    loose.needs = vec!["loose".into()];
    let id = submit(&client, task("loose", vec![loose]))
        .await
        .expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert!(
        tidewright_tests::step(&done, "loose")
            .error
            .contains("private home"),
        "{done:?}"
    );
    // A path out of the home is refused at submit, naming the field.
    let mut bad = shell_step("bad", &[], "true");
    if let Some(v1::step_spec::Runtime::Shell(shell)) = &mut bad.runtime {
        shell
            .secret_files
            .insert("../../etc/x".into(), "npm-token".into());
    }
    let refused = submit(&client, task("bad", vec![bad]))
        .await
        .expect_err("a path out of the home");
    assert!(
        refused.to_string().contains("steps[0].shell.secretFiles"),
        "{refused}"
    );
}

/// A step's repository is its own: the worker's mirror of it (whose
/// config and hooks the worker's own git reads and runs, outside any
/// sandbox) is out of the step's reach, so a hook or a `core.fsmonitor`
/// planted there, an object added or a ref moved never reaches the mirror
/// on the worker (what the step wrote, if anything, was in its own private
/// `/tmp`); the step's commits still reach the steps after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_cannot_write_its_repositorys_mirror_or_plant_what_the_worker_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (git, server, worker_secrets) = repository_and_server(dir.path());
    // Its steps share nothing with the test, as a worker's steps do by
    // default.
    let _worker = start_strict_worker(
        &server.url,
        &server.data_dir,
        "w1",
        &["shell"],
        2,
        &["--secrets-dir", &worker_secrets],
        &server.worker_token,
        &[],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let escaped = escape_path(&server);
    let _ = std::fs::remove_file(&escaped);

    // Where the mirror is, as the step can tell: its worktree's common
    // directory, or the repository its objects borrow from.
    let plant = format!(
        r#"common=$(git rev-parse --path-format=absolute --git-common-dir)
alt=$(head -n 1 "$common/objects/info/alternates" 2>/dev/null)
if [ -n "$alt" ]; then mirror=${{alt%/objects}}; else mirror=$common; fi
[ "$mirror" != "$PWD/.git" ] && echo "found-mirror: ok"
mkdir -p "$mirror/hooks"
printf '#!/bin/sh\necho escaped > {escaped}\n' > "$mirror/hooks/post-checkout" && chmod +x "$mirror/hooks/post-checkout"
git config --file "$mirror/config" core.fsmonitor "$mirror/hooks/post-checkout"
echo x > "$mirror/objects/planted" || echo "objects: refused"
echo work > work.txt && git add work.txt && git commit -q -m work && echo "commit: ok"
git --git-dir="$mirror" update-ref refs/remotes/origin/main "$(git rev-parse HEAD)" || true"#,
        escaped = escaped.display(),
    );
    let steps = vec![
        shell_step("plant", &[], &plant),
        shell_step("after", &["plant"], "cat work.txt && git status --short"),
    ];
    let mut request = task("mirror", steps);
    if let Some(spec) = request.spec.as_mut() {
        spec.repo = Some(app_repo(&git));
    }
    let id = submit(&client, request).await.expect("submit");
    let done = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    let said = step_log(&client, &id, "plant").await;
    assert_eq!(
        done.state,
        v1::TaskState::Succeeded as i32,
        "{said}\n{done:?}"
    );
    for line in ["found-mirror: ok", "objects: refused", "commit: ok"] {
        assert!(said.contains(line), "{line}: {said}");
    }
    assert_eq!(step_log(&client, &id, "after").await.trim(), "work");
    let mirrors = server.data_dir.join("work/w1/.mirrors");
    let mirror = std::fs::read_dir(&mirrors)
        .expect("mirrors")
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .expect("a mirror")
        .path();
    assert!(
        !mirror.join("hooks/post-checkout").exists(),
        "a hook planted"
    );
    let config = std::fs::read_to_string(mirror.join("config")).expect("config");
    assert!(!config.contains("fsmonitor"), "{config}");
    assert!(
        !mirror.join("objects/planted").exists(),
        "an object planted"
    );
    assert_eq!(
        tidewright_tests::git_server::git(&mirror, &["rev-parse", "refs/remotes/origin/main"]),
        tidewright_tests::git_server::git(
            &mirror,
            &["rev-parse", &format!("tidewright/{id}-plant^")]
        ),
        "the remote's branch moved"
    );
    assert!(
        !escaped.exists(),
        "the worker ran what a step planted in its mirror"
    );
}

/// A step held at a gate ends when its test's directory goes: the tests'
/// safety net, so that no step outlives its test. The directory is bound
/// into the sandbox (`--sandbox-shared`), where it stays when it is removed
/// outside; what is in it goes.
#[tokio::test]
async fn a_step_held_at_a_gate_ends_when_its_tests_directory_goes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let shared_arg = shared.path().to_str().expect("utf-8").to_string();
    let _worker = start_strict_worker(
        &server.url,
        &server.data_dir,
        "agent-1",
        &["shell"],
        1,
        &["--sandbox-shared", &shared_arg],
        &server.worker_token,
        &[],
    )
    .expect("worker");
    server.wait_for_agents(&["agent-1"]).await.expect("worker");
    let client = server.tasks().await.expect("client");
    let script = wait_for_gate(&shared.path().join("gate"));
    submit(
        &client,
        task("held", vec![shell_step("held", &[], &script)]),
    )
    .await
    .expect("submit");
    let held = ["sh", "-c", script.as_str()];
    eventually(Duration::from_secs(30), || {
        let running = processes(&held).len() == 1;
        async move { running.then_some(()) }
    })
    .await
    .expect("the step waits at its gate");

    drop(shared);
    eventually(Duration::from_secs(10), || {
        let left = processes(&held);
        async move { left.is_empty().then_some(()) }
    })
    .await
    .expect("the step ends with its test's directory");
}
