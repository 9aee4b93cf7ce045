//! The layers hold: the engine and its services know no wire (neither
//! `tidewright-engine`'s own dependencies nor anything they pull in is a
//! transport or the generated `v1` code; the compiler keeps the wire out
//! only while this holds); in the server an adapter never calls another
//! (gRPC, HTTP and what the services call out to each stand on the
//! services alone); and every module imports what it uses by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use tidewright_tests::repo_root;

/// What speaks a wire: gRPC, HTTP, the generated protocol, and the
/// telemetry crate (whose OTLP exporter speaks gRPC).
const TRANSPORTS: &[&str] = &[
    "tonic",
    "tonic-health",
    "tonic-reflection",
    "axum",
    "http",
    "hyper",
    "hyper-util",
    "reqwest",
    "prost",
    "tidewright-api",
    "tidewright-telemetry",
];

#[test]
fn the_engine_depends_on_no_transport_directly_or_through_another_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "tree",
            "--offline",
            "-p",
            "tidewright-engine",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("UTF-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"tidewright-store"),
        "the tree lists the engine's dependencies: {tree}"
    );
    let wires: Vec<&&str> = crates
        .iter()
        .filter(|name| TRANSPORTS.contains(name))
        .collect();
    assert!(
        wires.is_empty(),
        "tidewright-engine depends on {wires:?}; the adapters in tidewright-server convert the wire to its calls"
    );
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Each file under `crates/tidewright-server/src/{from}` that names
/// `crate::{to}`, with the line.
fn server_imports(from: &str, to: &str) -> Vec<String> {
    let root = repo_root().join("crates/tidewright-server/src").join(from);
    let needle = format!("crate::{to}");
    rust_files(&root)
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).expect("readable");
            text.lines()
                .filter(|line| line.contains(&needle) && !line.trim_start().starts_with("//"))
                .map(|line| format!("{}: {}", file.display(), line.trim()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn no_adapter_of_the_server_calls_another() {
    for (from, to) in [
        ("http", "grpc"),
        ("grpc", "http"),
        ("outbound", "http"),
        ("outbound", "grpc"),
        ("http", "replica"),
        ("grpc", "replica"),
    ] {
        let found = server_imports(from, to);
        assert!(
            found.is_empty(),
            "{from}/ reaches into {to}/; both stand on the services (tidewright_engine::service) and wire.rs: {found:#?}"
        );
    }
}

#[test]
fn the_crates_import_by_name_not_by_glob() {
    let mut globs = Vec::new();
    for file in rust_files(&repo_root().join("crates")) {
        let text = std::fs::read_to_string(&file).expect("readable");
        for line in text.lines() {
            let line = line.trim();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let line = line.strip_prefix("pub(crate) ").unwrap_or(line);
            let Some(path) = line.strip_prefix("use ") else {
                continue;
            };
            // A module of this workspace, taken whole. A test module takes
            // what it tests (`use super::*`), and an enum's variants may
            // be named bare where they are matched.
            let ours = ["crate::", "self::", "super::", "tidewright_"]
                .iter()
                .any(|start| path.starts_with(start));
            if ours && path.ends_with("::*;") && path != "super::*;" {
                globs.push(format!("{}: {line}", file.display()));
            }
        }
    }
    assert!(
        globs.is_empty(),
        "a glob import hides what a module depends on: name the items: {globs:#?}"
    );
}
