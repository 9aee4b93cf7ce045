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

    /// Sets the double up (`/_double/users`, `ci`, `settings`).
    fn control(&self, what: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let answer = crate::http_call(
            &self.addr,
            "POST",
            &format!("/_double/{what}"),
            None,
            &[("content-type", "application/json")],
            &body.to_string(),
        )?;
        if answer.status != 200 {
            bail!("the double refused {what}: {}", answer.body);
        }
        Ok(())
    }

    /// A user whose `token` the double takes (a reviewer).
    pub fn add_user(&self, token: &str, login: &str) -> anyhow::Result<()> {
        self.add_user_with(token, login, "write")
    }

    /// A user with `permission` on every repository: admin, maintain,
    /// write, triage or read.
    pub fn add_user_with(&self, token: &str, login: &str, permission: &str) -> anyhow::Result<()> {
        self.add_user_id(token, (login, 0), permission)
    }

    /// A user as `add_user_with` adds one, with GitLab's user `id`.
    pub fn add_user_id(
        &self,
        token: &str,
        (login, id): (&str, u64),
        permission: &str,
    ) -> anyhow::Result<()> {
        self.control(
            "users",
            serde_json::json!({"token": token, "login": login, "permission": permission, "id": id}),
        )
    }

    /// A call to its GitLab API as the user of `token`: the status and the
    /// JSON answer.
    pub fn gitlab(
        &self,
        (method, path): (&str, &str),
        token: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let headers = [
            ("content-type", "application/json"),
            ("private-token", token),
        ];
        self.call((method, &format!("/api/v4{path}")), None, &headers, body)
    }

    /// A call to its GitHub API as the user of `token`, as GitHub's own
    /// clients make it: the status and the JSON answer.
    pub fn github(
        &self,
        (method, path): (&str, &str),
        token: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let headers = [
            ("content-type", "application/json"),
            ("user-agent", "tidewright-tests"),
            ("accept", "application/vnd.github+json"),
        ];
        self.call((method, path), Some(token), &headers, body)
    }

    /// The CI `project` runs on each commit asked about: the check `name`,
    /// `run` by `sh -c` in a checkout of the commit.
    pub fn ci(&self, project: &str, name: &str, run: &str) -> anyhow::Result<()> {
        self.control(
            "ci",
            serde_json::json!({"project": project, "name": name, "run": run}),
        )
    }

    /// `project`'s merge settings (`allow_squash_merge`, …) and protection
    /// (`required_approvals`).
    pub fn settings(&self, project: &str, settings: serde_json::Value) -> anyhow::Result<()> {
        self.control(
            "settings",
            serde_json::json!({"project": project, "settings": settings}),
        )
    }

    /// One call to the double with `headers` and `body` (none when null).
    fn call(
        &self,
        (method, path): (&str, &str),
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let answer = crate::http_call(&self.addr, method, path, bearer, headers, &body)?;
        Ok((answer.status, answer.json()))
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

/// One of GitHub's example webhook deliveries of `event` (and `action`),
/// `changes` merged into it, signed with `secret` (unsigned: `None`) by
/// GitHub's own library and POSTed to `url` as delivery `delivery`
/// (tests/forge/deliver.mjs): the answer's status and body.
pub fn deliver_github(
    url: &str,
    (event, action): (&str, &str),
    secret: Option<&str>,
    delivery: &str,
    changes: &serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    // Node resolves the script's packages from where it sits: beside them.
    let script = tools().join("deliver.mjs");
    let part = tools().join(format!("deliver.mjs.{}", std::process::id()));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("forge/deliver.mjs"),
        &part,
    )?;
    std::fs::rename(&part, &script)?;
    let out = Command::new("node")
        .arg(&script)
        .args([url, event, action, secret.unwrap_or_default(), delivery])
        .arg(changes.to_string())
        .output()
        .context("node runs tests/forge/deliver.mjs (scripts/forge.sh installs its packages)")?;
    if !out.status.success() {
        bail!(
            "deliver.mjs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        answer["status"].as_u64().unwrap_or_default() as u16,
        answer["body"].as_str().unwrap_or_default().to_string(),
    ))
}
