//! What `make release` relies on, held by `make test` too (the release
//! itself, its installs and `cargo publish --dry-run` are `make release`'s):
//! one version everywhere it is said, every published crate with what
//! crates.io asks of it and nothing it embeds outside its own directory,
//! and the relay a binary of the package that installs the command.

use std::path::Path;
use std::process::Command;

use tidewright_tests::*;

fn metadata() -> serde_json::Value {
    let out = succeed(
        Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(repo_root()),
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).expect(path)
}

#[test]
fn the_version_is_the_same_wherever_it_is_said() {
    let version = env!("CARGO_PKG_VERSION");
    let chart = read("charts/tidewright/Chart.yaml");
    assert!(
        chart.contains(&format!("\nversion: {version}\n")),
        "{chart}"
    );
    assert!(
        chart.contains(&format!("\nappVersion: \"{version}\"\n")),
        "{chart}"
    );
    let client = read("clients/python/pyproject.toml");
    assert!(
        client.contains(&format!("\nversion = \"{version}\"\n")),
        "{client}"
    );
    let changelog = read("CHANGELOG.md");
    assert!(
        changelog.contains(&format!("\n## {version}")),
        "the CHANGELOG has no entry for {version}"
    );
}

#[test]
fn every_published_crate_has_what_crates_io_asks_and_pins_its_siblings() {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().expect("packages");
    let published: Vec<&serde_json::Value> = packages
        .iter()
        .filter(|p| p["publish"] != serde_json::json!([]))
        .collect();
    let names: Vec<&str> = published
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert!(names.contains(&"tidewright"), "{names:?}");
    assert!(!names.contains(&"tidewright-tests"), "{names:?}");
    for package in &published {
        let name = &package["name"];
        for field in ["description", "license", "repository", "readme"] {
            assert!(
                package[field].as_str().is_some_and(|v| !v.is_empty()),
                "{name}: {field} is missing"
            );
        }
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            if dependency["path"].is_string() {
                let required = dependency["req"].as_str().unwrap_or("*");
                assert_eq!(
                    required,
                    format!("={}", env!("CARGO_PKG_VERSION")),
                    "{name} depends on {} by path without its version",
                    dependency["name"]
                );
            }
        }
        // What it embeds at build time is in its own directory (a crate on
        // crates.io has nothing beside it): no `../` out of it.
        let manifest = package["manifest_path"].as_str().expect("manifest");
        let dir = Path::new(manifest).parent().expect("crate dir");
        for file in walk(dir) {
            if file.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                for needle in [
                    "include_str!(\"../../",
                    "include_bytes!(\"../../",
                    "\"/../../",
                ] {
                    assert!(
                        !text.contains(needle),
                        "{} embeds a file outside its crate ({needle})",
                        file.display()
                    );
                }
            }
        }
    }
}

#[test]
fn the_relay_is_a_binary_of_the_package_that_installs_the_command() {
    let metadata = metadata();
    let cli = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "tidewright")
        .expect("the tidewright package");
    let mut binaries: Vec<&str> = cli["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| t["kind"] == serde_json::json!(["bin"]))
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    binaries.sort();
    assert_eq!(binaries, ["tidewright", "tidewright-sandbox-net"]);
    // The Debian package ships both.
    let manifest = read("crates/tidewright/Cargo.toml");
    for binary in binaries {
        assert!(
            manifest.contains(&format!(
                "[\"target/release/{binary}\", \"usr/bin/\", \"755\"]"
            )),
            "the .deb lacks {binary}"
        );
    }
}

/// Every file under `dir`, but build output.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    pending.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The rename is whole: the former name is in one line of the CHANGELOG,
/// and nowhere else git tracks.
#[test]
fn the_former_name_is_only_in_the_changelog() {
    // Spelled in two halves, so this file is not a place it is found in.
    let former = ["or", "ca"].concat();
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["grep", "-n", "-i", &former])
        .output()
        .expect("git grep");
    let found = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = found.lines().collect();
    assert!(
        matches!(lines.as_slice(), [one] if one.starts_with("CHANGELOG.md:") && one.contains(&format!("formerly {former}"))),
        "the former name is still found:\n{found}"
    );
}
