//! The Helm chart as tests render it: the real helm binary (scripts/tools.sh
//! fetches it into .tools/bin, or $TIDEWRIGHT_HELM), and its output as objects.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::repo_root;

/// helm, run from the repository's root.
pub fn helm() -> Command {
    let path = std::env::var_os("TIDEWRIGHT_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin/helm"));
    assert!(
        path.exists(),
        "no helm at {}: run scripts/tools.sh (make test does)",
        path.display()
    );
    let mut command = Command::new(path);
    command.current_dir(repo_root());
    command
}

/// `helm template` with these `--set` values: its objects, or its error.
pub fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut command = helm();
    command.args([
        "template",
        "tidewright",
        "charts/tidewright",
        "--namespace",
        "tidewright-system",
        "--include-crds",
    ]);
    for set in sets {
        command.args(["--set", set]);
    }
    let out = command.output().expect("helm runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("utf-8");
    Ok(documents(&text))
}

/// The YAML documents of a stream, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}
