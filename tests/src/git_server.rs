//! A real git server over smart HTTP, as a forge serves one: nginx in
//! front of git's own `git http-backend` through fcgiwrap, with basic
//! auth, on a free loopback port. Clone, fetch and push go through the
//! protocol a forge speaks, and a wrong password is really refused.
//! `scripts/git-server.sh` installs nginx and fcgiwrap.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{Process, free_addr};

/// The one account the server knows.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct-horse-battery";

pub struct GitServer {
    /// Where the bare repositories are, `<name>.git` each.
    root: PathBuf,
    /// `host:port`.
    pub addr: String,
    /// Where it serves HTTPS (`127.0.0.1:port`), when started with TLS.
    pub tls_addr: Option<String>,
    dir: PathBuf,
    _fcgiwrap: Process,
    _nginx: Process,
}

fn program(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Runs git in `dir` as a known author; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// A bare repository on this machine's disk, `dir/origin.git` (what a
/// control plane with `--allow-local-repos` takes as `file://…`), whose
/// `main` holds `files`; its path.
pub fn local_repository(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let origin = dir.join("origin.git");
    git(dir, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
    let seed = dir.join("seed");
    git(dir, &["clone", "-q", &origin.display().to_string(), "seed"]);
    for (path, content) in files {
        let file = seed.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
        std::fs::write(file, content).expect("write");
    }
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    origin
}

/// A secrets directory `dir/name` (as `--secrets-dir` and
/// `--repo-secrets-dir` read one) holding the server's account as secret
/// `secret`; its path.
pub fn account_secrets(dir: &Path, name: &str, secret: &str) -> anyhow::Result<String> {
    let secrets = dir.join(name);
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join(secret), format!("{USER}:{PASSWORD}\n"))?;
    Ok(secrets.display().to_string())
}

/// A worker of shell steps named `name`, holding the git server's account
/// as the secret `git-creds`, as a worker that pushes and lands does.
pub fn secret_holding_worker(
    url: &str,
    dir: &Path,
    name: &str,
    slots: u32,
    token: &str,
) -> anyhow::Result<Process> {
    let secrets = account_secrets(dir, "worker-secrets", "git-creds")?;
    crate::start_worker(
        url,
        dir,
        name,
        &["shell"],
        slots,
        &["--secrets-dir", &secrets],
        token,
    )
}

impl GitServer {
    /// Starts fcgiwrap and nginx under `dir`; both stop when this drops.
    pub fn start(dir: &Path) -> anyhow::Result<GitServer> {
        GitServer::start_with(dir, None)
    }

    /// [`GitServer::start`], serving HTTPS too on [`GitServer::tls_addr`]
    /// with `tls`'s certificate chain and key (PEM files).
    pub fn start_with_tls(dir: &Path, tls: (&Path, &Path)) -> anyhow::Result<GitServer> {
        GitServer::start_with(dir, Some(tls))
    }

    fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> anyhow::Result<GitServer> {
        let dir = dir.join("git-server");
        let root = dir.join("repos");
        for sub in ["repos", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let exec_path = Command::new("git").arg("--exec-path").output()?;
        let backend =
            PathBuf::from(String::from_utf8(exec_path.stdout)?.trim()).join("git-http-backend");
        if !backend.exists() {
            bail!("{} is missing", backend.display());
        }
        let socket = dir.join("fcgi.sock");
        let fcgiwrap = Process::spawn(
            Command::new(program("TIDEWRIGHT_FCGIWRAP", "/usr/sbin/fcgiwrap"))
                .arg("-s")
                .arg(format!("unix:{}", socket.display())),
            &dir,
            "fcgiwrap",
        )
        .context("fcgiwrap: run scripts/git-server.sh")?;
        std::fs::write(
            dir.join("htpasswd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}\n"),
        )?;
        let addr = free_addr();
        let tls_addr = tls.map(|_| free_addr());
        let tls_listen = match (tls, &tls_addr) {
            (Some((cert, key)), Some(at)) => format!(
                "listen {at} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};",
                cert.display(),
                key.display()
            ),
            _ => String::new(),
        };
        let d = dir.display();
        let config = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/nginx-error.log info;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {d}/nginx-access.log;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen {addr};
    {tls_listen}
    client_max_body_size 0;
    location / {{
      auth_basic "tidewright tests";
      auth_basic_user_file {d}/htpasswd;
      fastcgi_pass unix:{socket};
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param HTTP_GIT_PROTOCOL $http_git_protocol;
    }}
  }}
}}
"#,
            socket = socket.display(),
            backend = backend.display(),
            root = root.display(),
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let nginx = Process::spawn(
            Command::new(program("TIDEWRIGHT_NGINX", "/usr/sbin/nginx"))
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf),
            &dir,
            "nginx",
        )
        .context("nginx: run scripts/git-server.sh")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() || !socket.exists() {
            if Instant::now() > deadline {
                bail!("the git server did not start; see {}", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(GitServer {
            root,
            addr,
            tls_addr,
            dir,
            _fcgiwrap: fcgiwrap,
            _nginx: nginx,
        })
    }

    /// An empty bare repository `name`, pushable over HTTP; its path.
    pub fn create_bare(&self, name: &str) -> PathBuf {
        git(
            &self.root,
            &["init", "-q", "--bare", "-b", "main", &format!("{name}.git")],
        );
        let bare = self.root.join(format!("{name}.git"));
        git(&bare, &["config", "http.receivepack", "true"]);
        bare
    }

    /// Where the served repositories are on disk.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Each commit repository `name`'s main has pointed at (its
    /// first-parent history, newest first, cloned into `dir`), and whether
    /// its Python unittest suite passes there: a base's invariant, checked.
    pub fn main_history_tested(&self, name: &str, dir: &Path) -> Vec<(String, bool)> {
        let clone = dir.join(format!("check-{}", name.replace('/', "-")));
        git(
            dir,
            &[
                "clone",
                "-q",
                &self.root.join(format!("{name}.git")).display().to_string(),
                &clone.display().to_string(),
            ],
        );
        let commits = git(&clone, &["rev-list", "--first-parent", "origin/main"]);
        commits
            .lines()
            .map(|commit| {
                git(&clone, &["checkout", "-q", "-f", commit]);
                let passed = Command::new("python3")
                    .args(["-m", "unittest", "-q"])
                    .current_dir(&clone)
                    .output()
                    .is_ok_and(|out| out.status.success());
                (commit.to_string(), passed)
            })
            .collect()
    }

    /// The URL of repository `name`, without credentials.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    /// A new repository `name` whose `main` holds `files`; its commit.
    pub fn create_repo(&self, name: &str, files: &[(&str, &str)]) -> String {
        let bare = self.root.join(format!("{name}.git"));
        git(
            &self.root,
            &["init", "-q", "--bare", "-b", "main", &format!("{name}.git")],
        );
        git(&bare, &["config", "http.receivepack", "true"]);
        self.commit(name, files, "initial")
    }

    /// Commits `files` on `main` of repository `name`, as a person pushing
    /// to it would, but on disk; the new commit.
    pub fn commit(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        let work = self.dir.join(format!("work-{name}"));
        if !work.exists() {
            let bare = self.root.join(format!("{name}.git"));
            git(
                &self.dir,
                &[
                    "clone",
                    "-q",
                    &bare.display().to_string(),
                    &work.display().to_string(),
                ],
            );
            git(&work, &["checkout", "-q", "-B", "main"]);
        }
        for (path, text) in files {
            let path = work.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("dirs");
            }
            std::fs::write(path, text).expect("file");
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&work, &["push", "-q", "origin", "main"]);
        git(&work, &["rev-parse", "HEAD"])
    }

    /// Runs git in repository `name` on the server's disk; its output.
    pub fn inside(&self, name: &str, args: &[&str]) -> String {
        git(&self.root.join(format!("{name}.git")), args)
    }

    /// The commit `git_ref` names in repository `name`.
    pub fn rev_parse(&self, name: &str, git_ref: &str) -> String {
        git(
            &self.root.join(format!("{name}.git")),
            &["rev-parse", git_ref],
        )
    }
}
