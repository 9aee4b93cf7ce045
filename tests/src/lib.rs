//! Harness for end-to-end tests and the benchmark: starts the real `tidewright`
//! binary as separate processes on loopback ports the system picks, talks
//! to them over gRPC, and cleans up (kills and removes) when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tidewright_api::v1;
use tidewright_api::v1::agent_service_client::AgentServiceClient;
use tidewright_api::v1::task_service_client::TaskServiceClient;
use tonic::transport::Channel;

pub use tidewright_api;

pub mod bench;
pub mod browser;
pub mod chart;
pub mod fixtures;
pub mod forge;
pub mod git_server;
pub mod kube_api;
pub mod provider;
pub mod webhook_receiver;
use tidewright_api::client::{Bearer, ClientTls};
use tonic::service::interceptor::InterceptedService;

/// Clients that carry a bearer token.
pub type Tasks = TaskServiceClient<InterceptedService<Channel, Bearer>>;
pub type Agents = AgentServiceClient<InterceptedService<Channel, Bearer>>;

pub fn bearer(token: &str) -> Bearer {
    Bearer::new(Some(token)).expect("a token fits in a header")
}

/// The `tidewright` binary under test: `$TIDEWRIGHT_BIN`, or the one cargo built beside
/// this test executable.
pub fn tidewright_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TIDEWRIGHT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/tidewright
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("tidewright");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p tidewright` (or set TIDEWRIGHT_BIN)",
        bin.display()
    );
    bin
}

/// A child process killed when dropped.
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    /// Spawns `command` with stderr to `<dir>/<name>.log`.
    pub fn spawn(command: &mut Command, dir: &Path, name: &str) -> anyhow::Result<Process> {
        let (log, stderr) = log_file(dir, name)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        Ok(Process { child, log })
    }

    /// [`Process::spawn`], with stdout kept in `<dir>/<name>.out` too.
    pub fn spawn_keeping_stdout(
        command: &mut Command,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<(Process, PathBuf)> {
        let out = dir.join(format!("{name}.out"));
        let stdout = std::fs::File::create(&out)?;
        let (log, stderr) = log_file(dir, name)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        Ok((Process { child, log }, out))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (TERM, INT, KILL, STOP, CONT).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                bail!("process {} still running after {limit:?}", self.child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, std::fs::File)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    Ok((path, file))
}

/// A control plane process.
pub struct Server {
    pub process: Process,
    pub url: String,
    pub data_dir: PathBuf,
    /// The tokens the control plane created on its first start.
    pub admin_token: String,
    pub worker_token: String,
    /// What this harness's clients trust (and show) when the server serves TLS.
    pub client_tls: ClientTls,
}

impl Server {
    /// Starts `tidewright server` on a free loopback port the system picks.
    pub fn start(data_dir: &Path) -> anyhow::Result<Server> {
        Server::start_on(data_dir, "127.0.0.1:0", &[])
    }

    /// Starts `tidewright server` listening on `listen`, with extra flags.
    pub fn start_on(data_dir: &Path, listen: &str, extra: &[&str]) -> anyhow::Result<Server> {
        Server::start_with_env(data_dir, listen, extra, &[])
    }

    /// `start_on` with extra environment variables.
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let (log, stderr) = log_file(data_dir, "server")?;
        let mut child = Command::new(tidewright_bin())
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            // The planner is set up by flags only: not by whatever key the
            // machine running the tests has.
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("spawning tidewright server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut process = Process { child, log };
        // The first line says where it listens; read it, then keep draining.
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                process.kill();
                bail!(
                    "tidewright server exited before listening; see {}",
                    process.log.display()
                );
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let url = first
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .with_context(|| format!("unexpected first line {first:?}"))?
            .to_string();
        let read = |name: &str| -> anyhow::Result<String> {
            Ok(std::fs::read_to_string(data_dir.join(name))
                .with_context(|| format!("{name} in {}", data_dir.display()))?
                .trim()
                .to_string())
        };
        Ok(Server {
            admin_token: read("admin.token").unwrap_or_default(),
            worker_token: read("worker.token").unwrap_or_default(),
            process,
            url,
            data_dir: data_dir.to_path_buf(),
            client_tls: ClientTls::default(),
        })
    }

    /// A server plus workers `(name, capabilities, slots)`, all connected.
    pub async fn with_workers(
        data_dir: &Path,
        workers: &[(&str, &[&str], u32)],
    ) -> anyhow::Result<(Server, Vec<Process>)> {
        let server = Server::start(data_dir)?;
        let processes = workers
            .iter()
            .map(|(name, capabilities, slots)| server.worker(name, capabilities, *slots))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let names: Vec<&str> = workers.iter().map(|(name, _, _)| *name).collect();
        server.wait_for_agents(&names).await?;
        Ok((server, processes))
    }

    /// `127.0.0.1:PORT` of this server, to restart on the same address.
    pub fn listen_addr(&self) -> String {
        let url = self.url.trim_start_matches("https://");
        url.trim_start_matches("http://").to_string()
    }

    /// A TaskService client with the admin token.
    pub async fn tasks(&self) -> anyhow::Result<Tasks> {
        self.tasks_as(&self.admin_token).await
    }

    pub async fn tasks_as(&self, token: &str) -> anyhow::Result<Tasks> {
        Ok(TaskServiceClient::with_interceptor(
            connect_with(&self.url, &self.client_tls).await?,
            bearer(token),
        ))
    }

    /// The newest audit records (up to 1000), as the admin reads them.
    pub async fn audit_log(&self) -> anyhow::Result<Vec<v1::AuditEvent>> {
        Ok(self
            .tasks()
            .await?
            .list_audit(v1::ListAuditRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .events)
    }

    /// An AgentService client with the admin token.
    pub async fn agents(&self) -> anyhow::Result<Agents> {
        Ok(AgentServiceClient::with_interceptor(
            connect_with(&self.url, &self.client_tls).await?,
            bearer(&self.admin_token),
        ))
    }

    /// The `tidewright` CLI pointed at this server with the admin token.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(tidewright_bin());
        command
            .args(["--server", &self.url])
            .env("TIDEWRIGHT_TOKEN", &self.admin_token)
            // No context from the developer's own config file.
            .env("XDG_CONFIG_HOME", &self.data_dir);
        if let Some(ca) = &self.client_tls.ca_file {
            command.arg("--ca-file").arg(ca);
        }
        command
    }

    /// Starts `tidewright worker` against this server.
    pub fn worker(&self, name: &str, capabilities: &[&str], slots: u32) -> anyhow::Result<Process> {
        self.worker_with(name, capabilities, slots, &[])
    }

    /// Starts `tidewright worker` with extra worker flags.
    pub fn worker_with(
        &self,
        name: &str,
        capabilities: &[&str],
        slots: u32,
        extra: &[&str],
    ) -> anyhow::Result<Process> {
        start_worker(
            &self.url,
            &self.data_dir,
            name,
            capabilities,
            slots,
            extra,
            &self.worker_token,
        )
    }

    /// Waits until this server serves its API: at once on SQLite; on
    /// PostgreSQL once it leads (a restarted replica stands by until the
    /// lease of the process it replaced has expired).
    pub async fn wait_leading(&self) -> anyhow::Result<()> {
        let client = self.tasks().await?;
        eventually(Duration::from_secs(30), || {
            let mut client = client.clone();
            async move {
                client
                    .list_tasks(v1::ListTasksRequest {
                        page_size: 1,
                        ..Default::default()
                    })
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await
        .with_context(|| format!("{} never led", self.url))
    }

    /// Waits until exactly these workers are connected.
    pub async fn wait_for_agents(&self, names: &[&str]) -> anyhow::Result<()> {
        let client = self.agents().await?;
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        eventually(Duration::from_secs(20), || {
            let mut client = client.clone();
            let want = want.clone();
            async move {
                let agents = client
                    .list_agents(v1::ListAgentsRequest {})
                    .await
                    .ok()?
                    .into_inner()
                    .agents;
                let mut have: Vec<String> = agents.into_iter().map(|a| a.name).collect();
                have.sort();
                (have == want).then_some(())
            }
        })
        .await
        .with_context(|| format!("workers {names:?} never connected"))
    }
}

/// A server whose tokens file holds exactly these lines, with extra flags.
pub fn start_with_tokens(dir: &Path, lines: &[String], extra: &[&str]) -> anyhow::Result<Server> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&tokens, lines.join("\n"))?;
    let tokens_arg = tokens.display().to_string();
    let mut args = vec!["--tokens-file", &tokens_arg];
    args.extend_from_slice(extra);
    Server::start_on(dir, "127.0.0.1:0", &args)
}

/// A control plane serving HTTP on `http` (plus `extra` flags), with a
/// token per role: `tidewright_admin` (admin "root"), `tidewright_dev` (developer
/// "dana"), `tidewright_viewer` (viewer "vic") and `tidewright_worker`; and one
/// connected shell worker, `w1`, with `slots`.
pub async fn start_with_roles(
    dir: &Path,
    http: &str,
    extra: &[&str],
    slots: u32,
) -> anyhow::Result<(Server, Process)> {
    let mut flags = vec!["--http-listen", http];
    flags.extend_from_slice(extra);
    let mut server = start_with_tokens(
        dir,
        &[
            token_line("tidewright_admin", "admin", "root"),
            token_line("tidewright_dev", "developer", "dana"),
            token_line("tidewright_viewer", "viewer", "vic"),
            token_line("tidewright_worker", "worker", "pool-a"),
        ],
        &flags,
    )?;
    server.worker_token = "tidewright_worker".into();
    server.admin_token = "tidewright_admin".into();
    let worker = server.worker("w1", &["shell"], slots)?;
    server.wait_for_agents(&["w1"]).await?;
    Ok((server, worker))
}

/// [`start_with_roles`] (its HTTP API on a free address), its steps run
/// by one Claude Code worker, `agent-1` (one slot), against `mock` rather
/// than by a shell worker; the server, the HTTP address and the worker.
pub async fn roles_with_claude(dir: &Path, mock: &provider::Mock) -> (Server, String, Process) {
    let http = free_addr();
    let (server, shell) = start_with_roles(&dir.join("server"), &http, &[], 1)
        .await
        .expect("server");
    drop(shell);
    let agent =
        start_named_claude_worker(&server, dir, "agent-1", mock, (&["claude-code"], 1), &[])
            .expect("worker");
    (server, http, agent)
}

/// Runs a command that must succeed; its output.
pub fn succeed(command: &mut Command) -> std::process::Output {
    let out = command.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must succeed; what it printed.
pub fn stdout_of(command: &mut Command) -> String {
    String::from_utf8_lossy(&succeed(command).stdout).into_owned()
}

/// Runs a command that must fail saying why in one line; that line.
pub fn fails_in_one_line(command: &mut Command) -> String {
    let out = command.output().expect("the command runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{command:?} succeeded");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

/// A tokens-file line for `token`.
pub fn token_line(token: &str, role: &str, name: &str) -> String {
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{digest} {role} {name}")
}

pub fn start_worker(
    url: &str,
    dir: &Path,
    name: &str,
    capabilities: &[&str],
    slots: u32,
    extra: &[&str],
    token: &str,
) -> anyhow::Result<Process> {
    start_worker_env(url, dir, name, capabilities, slots, extra, token, &[])
}

/// A pinned agent CLI the tests run: `$variable`, or the one its script
/// installs into `.tools/<dir>`.
fn pinned_bin(variable: &str, dir: &str, exe: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools")
                .join(dir)
                .join("node_modules/.bin")
                .join(exe)
        });
    assert!(
        path.exists(),
        "no {name} CLI at {}: run scripts/{dir}.sh (make test does)",
        path.display()
    );
    path
}

/// The pinned Claude Code CLI (or `TIDEWRIGHT_TEST_CLAUDE_BIN`).
pub fn claude_bin() -> PathBuf {
    pinned_bin(
        "TIDEWRIGHT_TEST_CLAUDE_BIN",
        "claude",
        "claude",
        "Claude Code",
    )
}

/// The pinned Codex CLI (or `TIDEWRIGHT_TEST_CODEX_BIN`).
pub fn codex_bin() -> PathBuf {
    pinned_bin("TIDEWRIGHT_TEST_CODEX_BIN", "codex", "codex", "Codex")
}

/// The pinned Gemini CLI (or `TIDEWRIGHT_TEST_GEMINI_BIN`).
pub fn gemini_bin() -> PathBuf {
    pinned_bin("TIDEWRIGHT_TEST_GEMINI_BIN", "gemini", "gemini", "Gemini")
}

/// The pinned Qwen Code CLI (or `TIDEWRIGHT_TEST_QWEN_BIN`).
pub fn qwen_bin() -> PathBuf {
    pinned_bin("TIDEWRIGHT_TEST_QWEN_BIN", "qwen", "qwen", "Qwen Code")
}

/// An `agent` step on the CLI `cli` (its capability): `prompt`, the
/// worker's model.
pub fn agent_step(cli: &str, id: &str, prompt: &str) -> v1::StepSpec {
    v1::StepSpec {
        id: id.into(),
        runtime: Some(v1::step_spec::Runtime::Agent(v1::AgentCliRuntime {
            cli: cli.into(),
            prompt: prompt.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A Gemini CLI step: `prompt`, the worker's model.
pub fn gemini_step(id: &str, prompt: &str) -> v1::StepSpec {
    v1::StepSpec {
        id: id.into(),
        runtime: Some(v1::step_spec::Runtime::GeminiCli(v1::GeminiCliRuntime {
            prompt: prompt.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A control plane and its one worker `agent-1` (one slot), running Claude
/// Code steps against `mock`, with `capabilities` and extra worker `flags`.
pub async fn claude_worker_with(
    dir: &Path,
    mock: &provider::Mock,
    capabilities: &[&str],
    flags: &[&str],
) -> (Server, Process) {
    let server = Server::start(dir).expect("server");
    let worker = start_claude_worker(&server, dir, mock, capabilities, 1, flags).expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    (server, worker)
}

/// A Claude Code step: `prompt`, at most 5 turns, these tools allowed.
pub fn claude_step(id: &str, prompt: &str, tools: &[&str]) -> v1::StepSpec {
    v1::StepSpec {
        id: id.into(),
        runtime: Some(v1::step_spec::Runtime::ClaudeCode(v1::ClaudeCodeRuntime {
            prompt: prompt.into(),
            max_turns: 5,
            allowed_tools: tools.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A Codex step: `prompt`, the worker's model.
pub fn codex_step(id: &str, prompt: &str) -> v1::StepSpec {
    v1::StepSpec {
        id: id.into(),
        runtime: Some(v1::step_spec::Runtime::Codex(v1::CodexRuntime {
            prompt: prompt.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The tests' small Python project: `add` in calc.py, wrong and right,
/// and the unittest that tells them apart.
pub mod calc {
    use std::path::Path;

    use crate::Server;
    use crate::git_server::{GitServer, account_secrets};

    pub const BUG: &str = "add = lambda a, b: a - b\n";
    pub const RIGHT: &str = "add = lambda a, b: a + b\n";
    pub const TEST: &str = "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n";

    /// The project (its bug and its test) as repository `calc` of a git
    /// server, and a control plane in `dir` that may read it, serving HTTP
    /// too, started with `extra` flags besides.
    pub struct Served {
        pub git: GitServer,
        /// The repository secrets' directory, for workers' `--secrets-dir`.
        pub secrets: String,
        pub server: Server,
        /// The console's and REST API's address.
        pub http: String,
    }

    pub fn served(dir: &Path, extra: &[&str]) -> anyhow::Result<Served> {
        let git = GitServer::start(dir)?;
        git.create_repo("calc", &[("calc.py", BUG), ("test_calc.py", TEST)]);
        let secrets = account_secrets(dir, "repo-secrets", "git-creds")?;
        let http = crate::free_addr();
        let mut flags = vec![
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--http-listen",
            &http,
        ];
        flags.extend_from_slice(extra);
        let server = Server::start_on(&dir.join("server"), "127.0.0.1:0", &flags)?;
        Ok(Served {
            git,
            secrets,
            server,
            http,
        })
    }
}

/// The OpenAI key the codex test workers hold.
pub const OPENAI_TEST_KEY: &str = "sk-openai-test-key";
/// The Gemini API key the gemini-cli test workers hold.
pub const GEMINI_TEST_KEY: &str = "gemini-test-key";

/// Starts worker `name` of `server` running the three agent CLIs (Claude
/// Code, Codex, Gemini CLI), each real and against its mock (`urls`:
/// Anthropic's, OpenAI's, Google's), offering `capabilities` with
/// `slots`, and `flags` besides.
pub fn start_three_runtime_worker(
    (server, dir, name): (&Server, &Path, &str),
    urls: (&str, &str, &str),
    (capabilities, slots): (&[&str], u32),
    flags: &[&str],
) -> anyhow::Result<Process> {
    let (claude, codex, gemini_cli) = (
        claude_bin().display().to_string(),
        codex_bin().display().to_string(),
        gemini_bin().display().to_string(),
    );
    let mut args = vec![
        "--claude-bin",
        &claude,
        "--codex-bin",
        &codex,
        "--gemini-bin",
        &gemini_cli,
    ];
    args.extend_from_slice(flags);
    let (anthropic, openai, gemini) = urls;
    start_worker_env(
        &server.url,
        dir,
        name,
        capabilities,
        slots,
        &args,
        &server.worker_token,
        &[
            ("ANTHROPIC_BASE_URL", anthropic),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
            ("OPENAI_BASE_URL", openai),
            ("OPENAI_API_KEY", OPENAI_TEST_KEY),
            ("GOOGLE_GEMINI_BASE_URL", gemini),
            ("GEMINI_API_KEY", GEMINI_TEST_KEY),
        ],
    )
}

/// What points a worker's CLIs on OpenAI's API at `mock`: its base URL and
/// the test key (Codex's and Qwen Code's alike).
fn openai_env(mock: &provider::Mock) -> [(&'static str, &str); 2] {
    [
        ("OPENAI_BASE_URL", mock.url.as_str()),
        ("OPENAI_API_KEY", OPENAI_TEST_KEY),
    ]
}

/// Starts worker `name` of `server`, running Codex steps with the real CLI
/// against `mock` (the worker's `OPENAI_BASE_URL`), with `capabilities`,
/// `slots` and extra worker `flags`.
pub fn start_codex_worker(
    server: &Server,
    dir: &Path,
    name: &str,
    mock: &provider::Mock,
    offer: (&[&str], u32),
    flags: &[&str],
) -> anyhow::Result<Process> {
    start_cli_worker(
        server,
        (dir, name),
        ("--codex-bin", codex_bin()),
        &openai_env(mock),
        offer,
        flags,
    )
}

/// Starts worker `name` of `server`, running Gemini CLI steps with the real
/// CLI against `mock` (the worker's key, [`GEMINI_TEST_KEY`]), with its
/// capabilities and slots and extra worker `flags`.
pub fn start_gemini_worker(
    server: &Server,
    dir: &Path,
    name: &str,
    mock: &provider::Mock,
    offer: (&[&str], u32),
    flags: &[&str],
) -> anyhow::Result<Process> {
    let env = [
        ("GOOGLE_GEMINI_BASE_URL", mock.url.as_str()),
        ("GEMINI_API_KEY", GEMINI_TEST_KEY),
    ];
    start_cli_worker(
        server,
        (dir, name),
        ("--gemini-bin", gemini_bin()),
        &env,
        offer,
        flags,
    )
}

/// Starts worker `name` of `server`, running Qwen Code steps with the real
/// CLI against `mock` (OpenAI's Responses API, as Codex's: the worker's
/// `OPENAI_BASE_URL` and key), with its capabilities and slots and extra
/// worker `flags`.
pub fn start_qwen_worker(
    server: &Server,
    dir: &Path,
    name: &str,
    mock: &provider::Mock,
    offer: (&[&str], u32),
    flags: &[&str],
) -> anyhow::Result<Process> {
    start_cli_worker(
        server,
        (dir, name),
        ("--qwen-bin", qwen_bin()),
        &openai_env(mock),
        offer,
        flags,
    )
}

/// A worker of `server` running an agent CLI (`--X-bin` and its path) with
/// the environment that points it at its mock.
fn start_cli_worker(
    server: &Server,
    (dir, name): (&Path, &str),
    (bin_flag, bin): (&str, PathBuf),
    env: &[(&str, &str)],
    (capabilities, slots): (&[&str], u32),
    flags: &[&str],
) -> anyhow::Result<Process> {
    let bin = bin.display().to_string();
    let mut args = vec![bin_flag, bin.as_str()];
    args.extend_from_slice(flags);
    start_worker_env(
        &server.url,
        dir,
        name,
        capabilities,
        slots,
        &args,
        &server.worker_token,
        env,
    )
}

/// Starts worker `agent-1` of `server`, running Claude Code steps with the
/// real CLI against `mock`, with `slots` and extra worker `flags`.
pub fn start_claude_worker(
    server: &Server,
    dir: &Path,
    mock: &provider::Mock,
    capabilities: &[&str],
    slots: u32,
    flags: &[&str],
) -> anyhow::Result<Process> {
    start_named_claude_worker(server, dir, "agent-1", mock, (capabilities, slots), flags)
}

/// [`start_claude_worker`] under another name, so its own work directory
/// and CLI home (a second machine, as far as sessions go).
pub fn start_named_claude_worker(
    server: &Server,
    dir: &Path,
    name: &str,
    mock: &provider::Mock,
    (capabilities, slots): (&[&str], u32),
    flags: &[&str],
) -> anyhow::Result<Process> {
    let bin = claude_bin().display().to_string();
    let mut args = vec!["--claude-bin", &bin];
    args.extend_from_slice(flags);
    start_worker_env(
        &server.url,
        dir,
        name,
        capabilities,
        slots,
        &args,
        &server.worker_token,
        &[
            ("ANTHROPIC_BASE_URL", &mock.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
        ],
    )
}

/// `start_worker` with extra environment variables. Its steps run in the
/// sandbox, as they do by default, sharing the test's directory `dir`
/// (read-write): the gates, markers and counters the tests' steps use are
/// there. The sandbox's own tests use [`start_strict_worker`].
#[allow(clippy::too_many_arguments)]
pub fn start_worker_env(
    url: &str,
    dir: &Path,
    name: &str,
    capabilities: &[&str],
    slots: u32,
    extra: &[&str],
    token: &str,
    envs: &[(&str, &str)],
) -> anyhow::Result<Process> {
    let shared = dir.to_str().context("a test directory in UTF-8")?;
    let mut args = extra.to_vec();
    args.extend(["--sandbox-shared", shared]);
    start_strict_worker(url, dir, name, capabilities, slots, &args, token, envs)
}

/// [`start_worker_env`] whose steps share nothing with the test: they see
/// their workspace, the system's programs and the worker's `PATH`, as a
/// worker's steps do by default.
#[allow(clippy::too_many_arguments)]
pub fn start_strict_worker(
    url: &str,
    dir: &Path,
    name: &str,
    capabilities: &[&str],
    slots: u32,
    extra: &[&str],
    token: &str,
    envs: &[(&str, &str)],
) -> anyhow::Result<Process> {
    Process::spawn(
        Command::new(tidewright_bin())
            .args([
                "--server",
                url,
                "worker",
                "--name",
                name,
                "--slots",
                &slots.to_string(),
            ])
            .arg("--capability")
            .arg(capabilities.join(","))
            // Relative, as the CLI's default is: the worker must resolve it.
            .arg("--work-dir")
            .arg(Path::new("work").join(name))
            .args(extra)
            .current_dir(dir)
            .env("TIDEWRIGHT_TOKEN", token)
            .env("XDG_CONFIG_HOME", dir)
            .env("RUST_LOG", "info")
            .env("PATH", system_first_path())
            .envs(envs.iter().copied()),
        dir,
        name,
    )
}

/// The `PATH` the tests' workers run with: the system's directories first,
/// then the rest of this one's. Steps run in a sandbox that has `/usr` and
/// the directories on the worker's `PATH`, not whatever a shim there calls
/// on (a pyenv shim runs pyenv from the home directory): the tests' steps
/// use the system's `python3` and `sh`.
pub fn system_first_path() -> String {
    let system = ["/usr/local/bin", "/usr/bin", "/bin"];
    let rest = std::env::var("PATH").unwrap_or_default();
    system
        .iter()
        .map(|s| s.to_string())
        .chain(
            rest.split(':')
                .filter(|dir| !system.contains(dir))
                .map(str::to_string),
        )
        .collect::<Vec<_>>()
        .join(":")
}

pub async fn connect(url: &str) -> anyhow::Result<Channel> {
    connect_with(url, &ClientTls::default()).await
}

/// A channel to `url`, over TLS with `tls` for an `https://` URL.
pub async fn connect_with(url: &str, tls: &ClientTls) -> anyhow::Result<Channel> {
    Ok(tidewright_api::client::endpoint(url, tls)?
        .connect()
        .await?)
}

/// The pids of live processes whose command line is exactly `argv` (a
/// zombie's is empty), wherever they run: in a sandbox's process namespace
/// too, whose pids the process itself does not know.
pub fn processes(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Polls `check` until it yields a value or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls GetTask until `check` picks something from the task.
pub async fn wait_task<T>(
    client: &Tasks,
    task_id: &str,
    limit: Duration,
    check: impl Fn(v1::Task) -> Option<T>,
) -> anyhow::Result<T> {
    eventually(limit, || {
        let mut client = client.clone();
        let task_id = task_id.to_string();
        let check = &check;
        async move {
            let task = client
                .get_task(v1::GetTaskRequest { task_id })
                .await
                .ok()?
                .into_inner();
            check(task)
        }
    })
    .await
}

/// Waits for a task to reach a final state and returns it.
pub async fn wait_finished(
    client: &Tasks,
    task_id: &str,
    limit: Duration,
) -> anyhow::Result<v1::Task> {
    let finished = [
        v1::TaskState::Succeeded as i32,
        v1::TaskState::Failed as i32,
        v1::TaskState::Cancelled as i32,
    ];
    wait_task(client, task_id, limit, |task| {
        finished.contains(&task.state).then_some(task)
    })
    .await
    .with_context(|| format!("task {task_id} did not finish"))
}

/// Waits until a step of a task is in `state`.
/// Waits for the task to finish and fails unless it succeeded, saying how
/// each step ended.
pub async fn wait_succeeded(
    client: &Tasks,
    task_id: &str,
    limit: Duration,
) -> anyhow::Result<v1::Task> {
    let task = wait_finished(client, task_id, limit).await?;
    if task.state != v1::TaskState::Succeeded as i32 {
        let steps: Vec<String> = task
            .steps
            .iter()
            .map(|s| format!("{} (state {}): {}", s.id, s.state, s.error))
            .collect();
        bail!(
            "task {task_id} did not succeed: {}; {steps:?}",
            task.message
        );
    }
    Ok(task)
}

/// The output of the task's step `step_id`, as JSON.
pub fn step_output(task: &v1::Task, step_id: &str) -> anyhow::Result<serde_json::Value> {
    let step = task
        .steps
        .iter()
        .find(|s| s.id == step_id)
        .with_context(|| format!("no step {step_id}"))?;
    serde_json::from_str(&step.output_json)
        .with_context(|| format!("the output of {step_id}: {:?}", step.output_json))
}

pub async fn wait_step(
    client: &Tasks,
    task_id: &str,
    step: &str,
    state: v1::StepState,
) -> anyhow::Result<v1::Step> {
    wait_task(client, task_id, Duration::from_secs(20), |task| {
        task.steps
            .into_iter()
            .find(|s| s.id == step && s.state == state as i32)
    })
    .await
    .with_context(|| format!("step {step} of {task_id} never reached {state:?}"))
}

/// Every event of a task from its first, until it finishes (a minute at
/// most).
pub async fn events_until_done(client: &Tasks, id: &str) -> Vec<v1::Event> {
    let mut stream = client
        .clone()
        .watch_task(v1::WatchTaskRequest {
            task_id: id.into(),
            after_seq: 0,
            follow: true,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut events = Vec::new();
    let collect = async {
        while let Ok(Some(event)) = stream.message().await {
            events.push(event);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("the task finishes");
    events
}

/// Waits until no task is left queued or running.
pub async fn wait_all_finished(client: &Tasks, limit: Duration) -> anyhow::Result<()> {
    eventually(limit, || {
        let mut client = client.clone();
        async move {
            let open = client
                .list_tasks(v1::ListTasksRequest {
                    states: vec![v1::TaskState::Queued as i32, v1::TaskState::Running as i32],
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            open.tasks.is_empty().then_some(())
        }
    })
    .await
    .context("tasks still open")
}

/// A shell loop that waits until `gate` exists, or until its directory is
/// gone, so no step outlives its test. It watches a file it makes in that
/// directory, not the directory: a sandboxed step has the directory bound
/// in, and a bound directory stays there for the step when it is removed
/// outside (its entries go).
pub fn wait_for_gate(gate: &Path) -> String {
    let dir = gate.parent().unwrap_or(gate);
    let held = dir.join(".gate-held");
    std::fs::write(&held, "").expect("the gate's directory");
    format!(
        "while [ ! -e {gate} ]; do [ -e {held} ] || exit 1; sleep 0.02; done",
        gate = gate.display(),
        held = held.display()
    )
}

/// Returns once step `step` of task `task_id` has logged `text`, within
/// `limit`.
pub async fn until_logged(
    client: &Tasks,
    (task_id, step): (&str, &str),
    text: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    eventually(limit, || async {
        step_log(client, task_id, step)
            .await
            .contains(text)
            .then_some(())
    })
    .await
    .with_context(|| format!("step {step} of task {task_id} logs {text:?}"))
}

/// The lines step `step` of task `task_id` logged, one per line.
pub async fn step_log(client: &Tasks, task_id: &str, step: &str) -> String {
    let events = task_events(&mut client.clone(), task_id, 0, false)
        .await
        .expect("events");
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::Log(l)) if l.step_id == step => Some(l.line.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `attempts` in all, a retry within 50-100 ms.
pub fn quick_retries(attempts: u32) -> Option<v1::RetryPolicy> {
    Some(v1::RetryPolicy {
        max_attempts: attempts,
        initial_delay_ms: 50,
        max_delay_ms: 100,
        multiplier: 1.0,
    })
}

/// A shell step.
/// Asserts that `answer` is `INVALID_ARGUMENT` naming `field` first.
pub fn refused_naming<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, field: &str) {
    let status = answer.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{field}: {}",
        status.message()
    );
}

/// The check the tests' Python projects run: `python3 -m unittest -v`,
/// named `tests`, within two minutes.
pub fn unittest_check() -> v1::CheckSpec {
    v1::CheckSpec {
        name: "tests".into(),
        run: vec![
            "python3".into(),
            "-m".into(),
            "unittest".into(),
            "-v".into(),
        ],
        timeout: "2m".into(),
    }
}

pub fn shell_step(id: &str, deps: &[&str], script: &str) -> v1::StepSpec {
    v1::StepSpec {
        id: id.into(),
        depends_on: deps.iter().map(|s| s.to_string()).collect(),
        needs: Vec::new(),
        runtime: Some(v1::step_spec::Runtime::Shell(v1::ShellRuntime {
            command: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn noop_step(id: &str) -> v1::StepSpec {
    v1::StepSpec {
        id: id.into(),
        runtime: Some(v1::step_spec::Runtime::Noop(v1::NoopRuntime {})),
        ..Default::default()
    }
}

/// Task `name` of `steps` on the repository at `url`, from its `main`, read
/// with the secret `git-creds` (`git_server::account_secrets`).
pub fn task_on_repo(name: &str, steps: Vec<v1::StepSpec>, url: &str) -> v1::SubmitTaskRequest {
    let mut request = task(name, steps);
    if let Some(spec) = request.spec.as_mut() {
        spec.repo = Some(v1::RepoSpec {
            url: url.into(),
            r#ref: "main".into(),
            credentials_secret: "git-creds".into(),
            ..v1::RepoSpec::default()
        });
    }
    request
}

pub fn task(name: &str, steps: Vec<v1::StepSpec>) -> v1::SubmitTaskRequest {
    v1::SubmitTaskRequest {
        spec: Some(v1::TaskSpec {
            name: name.into(),
            steps,
            ..Default::default()
        }),
        idempotency_key: String::new(),
        tenant: String::new(),
    }
}

/// A task given as a prompt, to be planned or to run as one agent step.
pub fn prompt_task(prompt: &str, plan: bool) -> v1::SubmitTaskRequest {
    v1::SubmitTaskRequest {
        spec: Some(v1::TaskSpec {
            prompt: prompt.into(),
            plan,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn submit(client: &Tasks, request: v1::SubmitTaskRequest) -> anyhow::Result<String> {
    Ok(client
        .clone()
        .submit_task(request)
        .await?
        .into_inner()
        .task_id)
}

/// Every task id in the store, via ListTasks.
pub async fn all_task_ids(client: &Tasks) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .clone()
            .list_tasks(v1::ListTasksRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        ids.extend(page.tasks.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        token = page.next_page_token;
    }
}

pub fn micros(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref()
        .map(tidewright_api::convert::micros)
        .unwrap_or(0)
}

/// A process's resident memory, from /proc.
pub fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib / 1024)
}

/// A loopback address no one listens on now.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

fn http_request(addr: &str, path: &str, token: Option<&str>) -> String {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Connection: close\r\n\r\n")
}

/// The status code and body of a whole HTTP/1.1 response.
fn http_response(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An HTTP/1.1 answer: its status, its header lines as sent, its body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON (Null when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// `method path` over plain HTTP/1.1 with `token` as the bearer token,
/// more header lines and a body.
pub fn http_call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpAnswer> {
    use std::io::{Read, Write};
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (status, body) = http_response(&response);
    let headers = response
        .split_once("\r\n\r\n")
        .map(|(head, _)| head.to_string())
        .unwrap_or_default();
    let chunked = headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok(HttpAnswer {
        status,
        headers,
        body: if chunked { unchunk(&body) } else { body },
    })
}

/// A chunked body's data: each chunk is its size in hex, CRLF, the data,
/// CRLF; a zero size ends it.
fn unchunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    data
}

/// `GET path` over plain HTTP/1.1, with `token` as the bearer token: the
/// status code and the body.
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(http_request(addr, path, token).as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(http_response(&response))
}

/// `http_get` over TLS, trusting the CA in `ca_file`.
pub async fn https_get(
    addr: &str,
    path: &str,
    token: Option<&str>,
    ca_file: &Path,
) -> anyhow::Result<(u16, String)> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_file)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let socket = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let mut stream = connector.connect(name, socket).await?;
    stream
        .write_all(http_request(addr, path, token).as_bytes())
        .await?;
    let mut response = Vec::new();
    // A server may close without close_notify after `Connection: close`.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    Ok(http_response(&String::from_utf8_lossy(&response)))
}

/// How long an end-to-end task may take to finish.
pub const FINISH: Duration = Duration::from_secs(60);

/// The step `id` of `task`.
pub fn step<'a>(task: &'a v1::Task, id: &str) -> &'a v1::Step {
    task.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

/// A step's output, as JSON.
pub fn output(step: &v1::Step) -> serde_json::Value {
    serde_json::from_str(&step.output_json)
        .unwrap_or_else(|e| panic!("step {} output {:?}: {e}", step.id, step.output_json))
}

/// The repository's root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
}

/// Asserts a call fails with `code` and a message naming `field`.
pub fn refused<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    match result {
        Ok(ok) => panic!("expected {code:?} naming {field:?}, got {ok:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().contains(field),
                "{:?} does not name {field:?}",
                status.message()
            );
        }
    }
}

/// Attempt 1 waits for `gate`; later attempts finish at once. Each writes
/// which attempt produced the output.
pub fn first_attempt_waits(gate: &Path) -> v1::StepSpec {
    shell_step(
        "work",
        &[],
        &format!(
            "if [ \"$TIDEWRIGHT_ATTEMPT\" = 1 ]; then {}; fi; echo \"{{\\\"attempt\\\": $TIDEWRIGHT_ATTEMPT}}\" > \"$TIDEWRIGHT_OUTPUT\"",
            wait_for_gate(gate)
        ),
    )
}

/// A task's events after `after_seq`; with `follow`, until it finishes.
pub async fn task_events(
    client: &mut Tasks,
    task_id: &str,
    after_seq: u64,
    follow: bool,
) -> anyhow::Result<Vec<v1::Event>> {
    let mut stream = client
        .watch_task(v1::WatchTaskRequest {
            task_id: task_id.into(),
            after_seq,
            follow,
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        events.push(event);
    }
    Ok(events)
}

/// The directory of PostgreSQL's programs (pg_dump, psql), as
/// scripts/postgres.sh finds initdb: TIDEWRIGHT_PG_BIN, else Debian's newest.
pub fn pg_bin() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("TIDEWRIGHT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("psql").exists())
        .collect();
    dirs.sort();
    dirs.pop().context("no /usr/lib/postgresql/*/bin/psql")
}
