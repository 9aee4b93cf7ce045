//! `tidewright up`'s ports: the console goes on the port after gRPC's unless
//! told otherwise, and a port nobody asked for is no reason to fail. And
//! `tidewright completion`, the shell scripts that complete tidewright's commands.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tidewright_api::v1;
use tidewright_tests::*;

/// A free loopback port `p` whose next port is held by the listener
/// returned (any process may hold the next port: an outgoing connection's
/// ephemeral port, another server).
fn port_with_the_next_one_taken() -> (u16, TcpListener) {
    for _ in 0..200 {
        let next = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = next.local_addr().expect("addr").port() - 1;
        if port > 1024 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return (port, next);
        }
    }
    panic!("no free port below a held one in 200 tries");
}

/// Starts `tidewright up` with `args` in `dir`; the process and what it printed
/// on stdout so far, once it printed `console`.
async fn up_printing_its_console(dir: &Path, args: &[&str]) -> (Process, String) {
    let (up, out) = Process::spawn_keeping_stdout(
        Command::new(tidewright_bin())
            .arg("up")
            .args(args)
            .current_dir(dir),
        dir,
        "up",
    )
    .expect("tidewright up");
    let printed = eventually(Duration::from_secs(30), || {
        let out = out.clone();
        async move {
            let printed = std::fs::read_to_string(out).ok()?;
            printed.contains("  console  ").then_some(printed)
        }
    })
    .await
    .expect("tidewright up prints where its console is");
    (up, printed)
}

#[tokio::test]
async fn tidewright_up_serves_its_console_elsewhere_when_the_port_after_grpcs_is_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, held) = port_with_the_next_one_taken();
    let taken = held.local_addr().expect("addr").port();
    let listen = format!("127.0.0.1:{port}");
    let (_up, printed) =
        up_printing_its_console(dir.path(), &["--listen", &listen, "--workers", "0"]).await;
    let link = printed
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("console"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a console link")
        .to_string();
    let origin = link
        .strip_prefix("http://")
        .and_then(|l| l.split('/').next())
        .expect("an http link")
        .to_string();
    assert!(origin.starts_with("127.0.0.1:"), "loopback: {link}");
    assert_ne!(origin, format!("127.0.0.1:{taken}"), "not the taken port");
    // The link works: it signs the browser in and sends it to the console.
    let path = &link[link.find("/login").expect("a sign-in path")..];
    let answer = http_call(&origin, "GET", path, None, &[], "").expect("the console answers");
    assert_eq!(answer.status, 303, "{answer:?}");
    assert!(
        answer.headers.to_ascii_lowercase().contains("set-cookie"),
        "{answer:?}"
    );
    // And gRPC is where it was asked to be.
    assert!(
        printed.contains(&format!("gRPC     http://{listen}")),
        "{printed}"
    );
    drop(held);
}

#[test]
fn an_http_listen_asked_for_that_cannot_be_bound_fails_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = held.local_addr().expect("addr").to_string();
    let line = fails_in_one_line(
        Command::new(tidewright_bin())
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "0",
                "--http-listen",
                &taken,
            ])
            .current_dir(dir.path()),
    );
    assert!(
        line.contains("--http-listen") && line.contains(&taken),
        "{line}"
    );
}

/// The worker of an `tidewright up` that cannot start is not reported as up:
/// `up` exits non-zero with that worker's own error. Here the sandbox's
/// relay is missing (tidewright copied alone to a directory of its own), as in a
/// `cargo install` of the CLI without it.
#[test]
fn up_with_a_worker_that_cannot_start_exits_non_zero_with_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lonely = dir.path().join("bin");
    std::fs::create_dir_all(&lonely).expect("mkdir");
    let bin = lonely.join("tidewright");
    std::fs::copy(tidewright_bin(), &bin).expect("copy tidewright");
    let data = dir.path().join("data");
    let (mut up, out) = Process::spawn_keeping_stdout(
        Command::new(&bin)
            .args(["up", "--listen", "127.0.0.1:0", "--workers", "1"])
            .arg("--data-dir")
            .arg(&data)
            .current_dir(dir.path()),
        dir.path(),
        "up",
    )
    .expect("tidewright up");
    let status = up
        .wait_exit(Duration::from_secs(60))
        .expect("up exits when its worker cannot start");
    assert!(!status.success(), "{status}");
    let said = std::fs::read_to_string(&up.log).expect("stderr");
    let last = said.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains("worker local-1 cannot start")
            && last.contains("the sandbox's network relay")
            && last.contains("tidewright-sandbox-net"),
        "{said}"
    );
    let printed = std::fs::read_to_string(out).expect("stdout");
    assert!(!printed.contains("tidewright is up"), "{printed}");
}

#[test]
fn tidewright_completion_prints_a_script_for_each_shell_and_refuses_another() {
    for (shell, mark) in [
        ("bash", "complete -F _tidewright"),
        ("zsh", "#compdef tidewright"),
        ("fish", "complete -c tidewright"),
    ] {
        let out = succeed(Command::new(tidewright_bin()).args(["completion", shell]));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(mark), "{shell}: {script}");
        for command in ["submit", "template", "webhook"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let refused = Command::new(tidewright_bin())
        .args(["completion", "tcsh"])
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("invalid value 'tcsh' for '<SHELL>'"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidewright_up_works_with_zero_configuration_and_stops_cleanly_on_ctrl_c()
-> anyhow::Result<()> {
    // A fresh directory, no flags but a free port: data and tokens go to
    // ./.tidewright, and the CLI run from here finds its token by itself.
    let dir = tempfile::tempdir()?;
    let data = dir.path().join(".tidewright");
    let mut up = Process::spawn(
        Command::new(tidewright_bin())
            .args(["up", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path()),
        dir.path(),
        "up",
    )?;
    let endpoint = data.join("endpoint");
    let url = eventually(Duration::from_secs(20), || {
        let endpoint = endpoint.clone();
        async move {
            std::fs::read_to_string(endpoint)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        }
    })
    .await?;
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "binds loopback: {url}"
    );
    let cli = |args: &[&str]| {
        Command::new(tidewright_bin())
            .args(["--server", &url])
            .args(args)
            .env_remove("TIDEWRIGHT_TOKEN")
            .current_dir(dir.path())
            .output()
    };
    let names = eventually(Duration::from_secs(20), || {
        let out = cli(&["get", "agents", "-o", "json"]);
        std::future::ready(out.ok().and_then(|out| {
            let agents: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
            let mut names: Vec<String> = agents
                .iter()
                .filter_map(|a| a["name"].as_str().map(String::from))
                .collect();
            names.sort();
            (names.len() == 2).then_some(names)
        }))
    })
    .await?;
    assert_eq!(names, ["local-1", "local-2"]);
    std::fs::write(
        dir.path().join("hi.yaml"),
        "name: hi\nsteps:\n  - id: hi\n    shell: {command: [echo, hi]}\n",
    )?;
    let out = cli(&["submit", "-f", "hi.yaml", "--watch"])?;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("tidewright.db").exists());

    let token = std::fs::read_to_string(data.join("admin.token"))?;
    let mut agents = v1::agent_service_client::AgentServiceClient::with_interceptor(
        connect(&url).await?,
        bearer(token.trim()),
    );
    agents.list_agents(v1::ListAgentsRequest {}).await?;
    up.signal("INT");
    let status = up.wait_exit(Duration::from_secs(10))?;
    assert!(status.success(), "tidewright up exited with {status}");
    assert!(
        agents.list_agents(v1::ListAgentsRequest {}).await.is_err(),
        "nothing listens after Ctrl-C"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidewright_up_offers_claude_code_with_a_key_and_the_cli_at_hand() -> anyhow::Result<()> {
    // The capabilities `tidewright up`'s local workers offer, given an API key and
    // a Claude Code CLI that is there or not.
    async fn offered(claude_bin: &Path) -> anyhow::Result<(Vec<String>, String)> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join(".tidewright");
        let mut up = Process::spawn(
            Command::new(tidewright_bin())
                .args(["up", "--listen", "127.0.0.1:0", "--workers", "1"])
                .env("ANTHROPIC_API_KEY", "sk-ant-test-key")
                .env("TIDEWRIGHT_CLAUDE_BIN", claude_bin)
                .current_dir(dir.path()),
            dir.path(),
            "up",
        )?;
        let endpoint = data.join("endpoint");
        let url = eventually(Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&endpoint).unwrap_or_default();
            std::future::ready(Some(text.trim().to_string()).filter(|t| !t.is_empty()))
        })
        .await?;
        let token = std::fs::read_to_string(data.join("admin.token"))?;
        let agents = v1::agent_service_client::AgentServiceClient::with_interceptor(
            connect(&url).await?,
            bearer(token.trim()),
        );
        let capabilities = eventually(Duration::from_secs(20), || {
            let mut agents = agents.clone();
            async move {
                let listed = agents.list_agents(v1::ListAgentsRequest {}).await.ok()?;
                Some(listed.into_inner().agents.first()?.capabilities.clone())
            }
        })
        .await?;
        up.signal("INT");
        up.wait_exit(Duration::from_secs(10))?;
        Ok((capabilities, std::fs::read_to_string(&up.log)?))
    }

    let dir = tempfile::tempdir()?;
    let cli = dir.path().join("claude");
    std::fs::write(&cli, "#!/bin/sh\n")?;
    std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let (capabilities, _) = offered(&cli).await?;
    assert_eq!(capabilities, ["claude-code", "shell"]);

    let (capabilities, log) = offered(&dir.path().join("no-such-claude")).await?;
    assert_eq!(capabilities, ["shell"], "no CLI, no claude-code");
    assert!(
        log.contains("the Claude Code CLI") && log.contains("is not found"),
        "{log}"
    );
    Ok(())
}
