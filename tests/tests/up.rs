//! `orca up`'s ports: the console goes on the port after gRPC's unless
//! told otherwise, and a port nobody asked for is no reason to fail. And
//! `orca completion`, the shell scripts that complete orca's commands.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use orca_tests::*;

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

/// Starts `orca up` with `args` in `dir`; the process and what it printed
/// on stdout so far, once it printed `console`.
async fn up_printing_its_console(dir: &Path, args: &[&str]) -> (Process, String) {
    let (up, out) = Process::spawn_keeping_stdout(
        Command::new(orca_bin())
            .arg("up")
            .args(args)
            .current_dir(dir),
        dir,
        "up",
    )
    .expect("orca up");
    let printed = eventually(Duration::from_secs(30), || {
        let out = out.clone();
        async move {
            let printed = std::fs::read_to_string(out).ok()?;
            printed.contains("  console  ").then_some(printed)
        }
    })
    .await
    .expect("orca up prints where its console is");
    (up, printed)
}

#[tokio::test]
async fn orca_up_serves_its_console_elsewhere_when_the_port_after_grpcs_is_taken() {
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
        Command::new(orca_bin())
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

#[test]
fn orca_completion_prints_a_script_for_each_shell_and_refuses_another() {
    for (shell, mark) in [
        ("bash", "complete -F _orca"),
        ("zsh", "#compdef orca"),
        ("fish", "complete -c orca"),
    ] {
        let out = succeed(Command::new(orca_bin()).args(["completion", shell]));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(mark), "{shell}: {script}");
        for command in ["submit", "template", "webhook"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let refused = Command::new(orca_bin())
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
