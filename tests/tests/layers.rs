//! The engine and its services know no wire: neither `tidewright-engine`'s own
//! dependencies nor anything they pull in is a transport or the generated
//! `v1` code. The compiler keeps the wire out only while this holds.

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
