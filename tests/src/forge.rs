//! The forge double (`tests/forge/double.py`): GitHub's pull request calls
//! checked against GitHub's published OpenAPI description, GitLab's merge
//! request calls against its REST documentation, and the branches against
//! the git server's repositories. Its tools come from `scripts/forge.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::Process;

pub struct ForgeDouble {
    /// `127.0.0.1:port`.
    pub addr: String,
    _process: Process,
}

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/forge")
}

impl ForgeDouble {
    /// Starts the double over the git server's repositories in `repos`,
    /// taking `token` alone (as a forge takes the token its git takes).
    pub fn start(dir: &Path, repos: &Path, token: &str) -> anyhow::Result<ForgeDouble> {
        let dir = dir.join("forge");
        std::fs::create_dir_all(&dir)?;
        let python = tools().join("venv/bin/python");
        let spec = tools().join("node_modules/@octokit/openapi/generated/api.github.com.json");
        if !python.exists() || !spec.exists() {
            bail!("the forge double's tools are missing: run scripts/forge.sh");
        }
        let token_file = dir.join("token");
        std::fs::write(&token_file, token)?;
        let port_file = dir.join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("forge/double.py");
        let process = Process::spawn(
            Command::new(python)
                .arg(script)
                .arg("--spec")
                .arg(spec)
                .arg("--repos")
                .arg(repos)
                .arg("--token-file")
                .arg(&token_file)
                .arg("--port-file")
                .arg(&port_file),
            &dir,
            "forge-double",
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            if Instant::now() > deadline {
                bail!(
                    "the forge double did not start: {}",
                    std::fs::read_to_string(&process.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok(ForgeDouble {
            addr: format!("127.0.0.1:{}", port.trim()),
            _process: process,
        })
    }

    /// The GitHub API root it serves.
    pub fn github_api(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The GitLab API root it serves.
    pub fn gitlab_api(&self) -> String {
        format!("http://{}/api/v4", self.addr)
    }

    /// Every request it has seen: forge, method, path, valid, why.
    pub fn requests(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let (status, body) = crate::http_get(&self.addr, "/_double/requests", None)?;
        if status != 200 {
            bail!("the double answered {status}: {body}");
        }
        serde_json::from_str(&body).context("the double's requests")
    }
}
