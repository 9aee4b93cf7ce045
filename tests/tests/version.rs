//! What a build says of itself: `tidewright version` (the version, the
//! commit it was built from, the day), and the control plane's build in
//! `get agents`, its JSON and the HTTP API's fleet.

use std::process::Command;

use tidewright_tests::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this checkout is at, as the build script read it.
fn head() -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_prints_the_version_the_commit_and_the_build_day() {
    let out = succeed(Command::new(tidewright_bin()).arg("version"));
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let prefix = format!("tidewright {VERSION} (commit ");
    assert!(line.starts_with(&prefix), "{line}");
    let json = succeed(Command::new(tidewright_bin()).args(["version", "-o", "json"]));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(json["version"], VERSION);
    let commit = json["commit"].as_str().expect("commit").to_string();
    // Built from this checkout: its commit (a test edits nothing, but the
    // binary may have been built while the checkout had changes).
    if let Some(head) = head() {
        assert_eq!(commit.trim_end_matches("-dirty"), head, "{json}");
        assert!(line.contains(&head[..12]), "{line}");
    }
    let built = json["builtAt"].as_str().expect("builtAt");
    assert_eq!(built.len(), "2026-11-27T03:29:43.000Z".len(), "{built}");
    assert!(
        line.ends_with(&format!(", built {})", &built[..10])),
        "{line}"
    );
}

#[tokio::test]
async fn get_agents_and_the_http_api_name_the_control_planes_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_addr();
    let server =
        Server::start_on(dir.path(), "127.0.0.1:0", &["--http-listen", &http]).expect("server");
    let table = succeed(server.cli().args(["get", "agents"]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("Control plane: tidewright {VERSION} (commit ")),
        "{table}"
    );
    let (code, body) = http_get(&http, "/api/v1/agents", Some(&server.admin_token)).expect("GET");
    assert_eq!(code, 200, "{body}");
    let fleet: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(fleet["server"]["version"], VERSION, "{fleet}");
    let mine = succeed(Command::new(tidewright_bin()).args(["version", "-o", "json"]));
    let mine: serde_json::Value = serde_json::from_slice(&mine.stdout).expect("JSON");
    assert_eq!(fleet["server"]["commit"], mine["commit"], "{fleet}");
    assert_eq!(fleet["server"]["builtAt"], mine["builtAt"], "{fleet}");
}
