//! The long-running commands: `tidewright server`, `tidewright worker` and `tidewright up`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tidewright_server::Config;
use tidewright_server::planner::PlannerConfig;
use tidewright_worker::{AgentCli, AgentSettings, WorkerConfig};

use std::num::NonZeroU32;

use tidewright_server::RateLimit;
use tidewright_server::jwt::JwtConfig;
use tidewright_server::tls::TlsFiles;

use crate::args::{
    AgentArgs, ClaudeArgs, CodexArgs, ControlPlaneArgs, GeminiArgs, OperatorRunArgs, PlannerArgs,
    ServerArgs, UpArgs, WorkerArgs,
};
use tidewright_client::Settings as Resolved;

/// The Anthropic API key: from the file `flag` names, else
/// $ANTHROPIC_API_KEY; `None` when neither gives one.
fn anthropic_api_key(file: Option<&Path>, flag: &str) -> anyhow::Result<Option<String>> {
    credential(file, flag, "ANTHROPIC_API_KEY")
}

/// A credential: from the file `flag` names, else the variable `env`;
/// `None` when neither gives one.
fn credential(file: Option<&Path>, flag: &str, env: &str) -> anyhow::Result<Option<String>> {
    let key = match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|key| key.trim().to_string())
            .with_context(|| format!("{flag} {}", path.display()))?,
        None => std::env::var(env).unwrap_or_default(),
    };
    Ok(Some(key).filter(|k| !k.is_empty()))
}

/// How a worker runs `claudeCode` steps; its `HOME` is the worker's to
/// choose.
fn claude_settings(args: &ClaudeArgs) -> anyhow::Result<AgentSettings> {
    Ok(AgentSettings {
        api_key: anthropic_api_key(
            args.anthropic_api_key_file.as_deref(),
            "--anthropic-api-key-file",
        )?,
        oauth_token: credential(
            args.claude_oauth_token_file.as_deref(),
            "--claude-oauth-token-file",
            "CLAUDE_CODE_OAUTH_TOKEN",
        )?,
        bin: args.claude_bin.clone(),
        model: args.model.clone(),
        base_url: std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        ..AgentSettings::default()
    })
}

/// How a worker runs `codex` steps; its home is the worker's to choose.
fn codex_settings(args: &CodexArgs) -> anyhow::Result<AgentSettings> {
    let base_url = std::env::var("OPENAI_BASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if let Some(url) = &base_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        anyhow::bail!("OPENAI_BASE_URL {url:?} must be an http:// or https:// URL");
    }
    Ok(AgentSettings {
        api_key: credential(
            args.openai_api_key_file.as_deref(),
            "--openai-api-key-file",
            "OPENAI_API_KEY",
        )?,
        bin: args.codex_bin.clone(),
        model: args.codex_model.clone(),
        base_url,
        prices: match &args.prices {
            Some(path) => price_table(path)?,
            None => Default::default(),
        },
        ..AgentSettings::default()
    })
}

/// How a worker runs `geminiCli` steps; its home is the worker's to
/// choose. The operator's prices are the codex flags' `--prices`.
fn gemini_settings(
    args: &GeminiArgs,
    prices: &tidewright_worker::runtime::prices::PriceTable,
) -> anyhow::Result<AgentSettings> {
    let base_url = std::env::var("GOOGLE_GEMINI_BASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if let Some(url) = &base_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        anyhow::bail!("GOOGLE_GEMINI_BASE_URL {url:?} must be an http:// or https:// URL");
    }
    Ok(AgentSettings {
        api_key: credential(
            args.gemini_api_key_file.as_deref(),
            "--gemini-api-key-file",
            "GEMINI_API_KEY",
        )?,
        bin: args.gemini_bin.clone(),
        model: args.gemini_model.clone(),
        base_url,
        prices: prices.clone(),
        ..AgentSettings::default()
    })
}

/// The operator's prices (`--prices`), each checked.
fn price_table(path: &Path) -> anyhow::Result<tidewright_worker::runtime::prices::PriceTable> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--prices {}", path.display()))?;
    let table: tidewright_worker::runtime::prices::PriceTable = serde_yaml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("--prices {}: {e}", path.display()))?;
    for (model, prices) in &table {
        prices
            .check()
            .map_err(|e| anyhow::anyhow!("--prices {}: {model}: {e}", path.display()))?;
    }
    Ok(table)
}

/// Each agent CLI's settings, from its flags and the environment. The
/// operator's prices are the codex flags' `--prices`.
fn agent_settings(args: &AgentArgs) -> anyhow::Result<BTreeMap<AgentCli, AgentSettings>> {
    let codex = codex_settings(&args.codex)?;
    // Qwen Code calls OpenAI's API as Codex does: the same key, API and
    // prices.
    let qwen = AgentSettings {
        bin: args.qwen.qwen_bin.clone(),
        model: args.qwen.qwen_model.clone(),
        ..codex.clone()
    };
    Ok(BTreeMap::from([
        (AgentCli::ClaudeCode, claude_settings(&args.claude)?),
        (
            AgentCli::GeminiCli,
            gemini_settings(&args.gemini, &codex.prices)?,
        ),
        (AgentCli::QwenCode, qwen),
        (AgentCli::Codex, codex),
    ]))
}

/// Offers `grader` when the control plane has a grader model and the
/// workers have an Anthropic API key to call it with; says why not when the
/// model is named without a key.
fn offer_grader(
    capabilities: &mut Vec<String>,
    grading: bool,
    agents: &BTreeMap<AgentCli, AgentSettings>,
) {
    use tidewright_core::verify::grade::GRADER;
    if !grading || capabilities.iter().any(|c| c == GRADER) {
        return;
    }
    if agents
        .get(&AgentCli::ClaudeCode)
        .is_some_and(|s| s.api_key.is_some())
    {
        capabilities.push(GRADER.to_string());
    } else {
        eprintln!(
            "warning: --grader-model is set, but the local workers have no Anthropic API key to grade with, so they do not offer {GRADER} (ANTHROPIC_API_KEY, or --anthropic-api-key-file)"
        );
    }
}

/// Offers `cli`'s capability when its credentials are given and its CLI is
/// at hand; says why not when the credentials are given without the CLI.
fn offer_agent(capabilities: &mut Vec<String>, cli: AgentCli, settings: &AgentSettings) {
    let capability = cli.capability();
    if settings.secrets().next().is_none() || capabilities.iter().any(|c| c == capability) {
        return;
    }
    let path = std::env::var("PATH").ok();
    if tidewright_worker::program::find_program(&settings.bin, Path::new("."), path.as_deref())
        .is_some()
    {
        capabilities.push(capability.to_string());
    } else {
        eprintln!(
            "warning: a credential for {} is set, but the {} CLI {:?} is not found, so the local \
             workers do not offer {capability} (npm install -g {}, or --{}-bin)",
            cli.provider().name(),
            cli.name(),
            settings.bin.display().to_string(),
            cli.package(),
            cli.default_bin(),
        );
    }
}

/// The planner's settings; `None` without an API key.
fn planner_config(args: &PlannerArgs) -> anyhow::Result<Option<PlannerConfig>> {
    let Some(api_key) = anthropic_api_key(
        args.planner_api_key_file.as_deref(),
        "--planner-api-key-file",
    )?
    else {
        return Ok(None);
    };
    let base_url = args
        .planner_base_url
        .clone()
        .or_else(|| std::env::var("ANTHROPIC_BASE_URL").ok())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| PlannerConfig::DEFAULT_BASE_URL.to_string());
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        anyhow::bail!("--planner-base-url {base_url:?} must be an http:// or https:// URL");
    }
    Ok(Some(PlannerConfig {
        base_url,
        api_key,
        model: args.planner_model.clone(),
        max_tokens: 8192,
        timeout: args.planner_timeout,
    }))
}

fn server_config(args: &ControlPlaneArgs) -> anyhow::Result<Config> {
    let ControlPlaneArgs {
        listen,
        http_listen,
        secure_cookies,
        tenant_budgets,
        store,
        security,
        limits,
        planner,
        grader_model,
        replica,
        checkpoints,
        retention,
        webhook_allow_private_networks,
        repo_secrets_dir,
        forge_hooks_secret,
        allow_local_repos,
        templates,
    } = args;
    if replica.leader_lease < std::time::Duration::from_millis(200) {
        anyhow::bail!(
            "--leader-lease ({:?}) must be at least 200ms: shorter, a busy database would depose a healthy leader",
            replica.leader_lease
        );
    }
    if store.heartbeat_interval.is_zero() || store.heartbeat_interval >= store.worker_timeout {
        anyhow::bail!(
            "--heartbeat-interval ({:?}) must be above zero and shorter than --worker-timeout ({:?})",
            store.heartbeat_interval,
            store.worker_timeout
        );
    }
    if store.provider_limit_backoff < std::time::Duration::from_secs(1) {
        anyhow::bail!(
            "--provider-limit-backoff ({:?}) must be at least 1s: shorter, a limited pool would keep calling the provider",
            store.provider_limit_backoff
        );
    }
    let mut config = Config::new(*listen, store.data_dir.clone());
    config.build = crate::build::this_build();
    config.store = Some(store.store_url()?);
    config.http_listen = *http_listen;
    config.secure_cookies = *secure_cookies;
    if let Some(path) = tenant_budgets {
        // Checked now, so a bad file stops the start with its reason.
        tidewright_server::tenant_budgets::read(path)?;
        config.tenant_budgets = Some(path.clone());
    }
    config.worker_timeout = store.worker_timeout;
    config.heartbeat_interval = store.heartbeat_interval;
    config.limit_backoff = store.provider_limit_backoff;
    config.fallback = tidewright_core::failover::FallbackPolicy::parse(&store.fallback_policy)
        .map_err(anyhow::Error::msg)?;
    config.hot_tasks = store.hot_tasks;
    config.leader_lease = replica.leader_lease;
    config.replica_name = replica.replica_name.clone();
    config.advertise = replica.advertise.clone();
    config.checkpoints = tidewright_server::KeptSettings {
        max_bytes: usize::try_from(checkpoints.max_checkpoint_bytes).unwrap_or(usize::MAX),
        retention: checkpoints.checkpoint_retention,
        max_branch_bytes: usize::try_from(checkpoints.max_branch_bytes).unwrap_or(usize::MAX),
    };
    config.seeds_dir = checkpoints.seed_store_dir.clone();
    config.max_seed_store_bytes = checkpoints.max_seed_store_bytes;
    config.retention = retention.rules()?;
    config.audit_retention = retention.audit_window();
    limits.apply(&mut config.limits);
    config.limits.grader = match grader_model.as_deref().map(str::trim) {
        None => None,
        Some("") => anyhow::bail!("--grader-model is empty: name a model, or leave it unset"),
        Some(model) => Some(model.to_string()),
    };
    config.webhooks.allow_private_networks = *webhook_allow_private_networks;
    config.repos.secrets_dir = repo_secrets_dir.clone();
    config.repos.forge_hooks_secret = forge_hooks_secret.clone();
    config.repos.allow_local = *allow_local_repos;
    config.templates_dir = templates.templates_dir.clone();
    config.planner = planner_config(planner)?;
    config.tokens_file = security.tokens_file.clone();
    config.jwt = JwtConfig {
        hs256_secret_file: security.jwt_hs256_secret_file.clone(),
        rs256_public_key_file: security.jwt_rs256_public_key.clone(),
        issuer: security.jwt_issuer.clone(),
        audience: security.jwt_audience.clone(),
    };
    config.audit_log = security.audit_log;
    config.rate_limit = security.rate_limit.and_then(|(rate, burst)| {
        Some(RateLimit {
            per_second: NonZeroU32::new(rate)?,
            burst: NonZeroU32::new(burst)?,
        })
    });
    config.tls = match (&security.tls_cert, &security.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: security.tls_client_ca.clone(),
        }),
        _ => None,
    };
    Ok(config)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

pub async fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let config = server_config(&args.control_plane)?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // One signal for every run: a replica that loses the lease starts
    // again, as a standby, and stops on the same Ctrl-C or SIGTERM.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop.send(true);
    });
    loop {
        let running = start_control_plane(config.clone()).await?;
        println!(
            "tidewright control plane listening on {scheme}://{}",
            running.local_addr
        );
        if let Some(http) = running.http_addr {
            println!("metrics and health on {scheme}://{http}");
        }
        let mut stopped = stopped.clone();
        match running
            .run_until(async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
        {
            Err(tidewright_server::Error::Deposed(why)) => {
                eprintln!("tidewright: this replica no longer leads ({why}); standing by again");
            }
            outcome => {
                outcome?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

pub async fn worker(args: WorkerArgs, target: Resolved) -> anyhow::Result<ExitCode> {
    let name = args.name.unwrap_or_else(default_worker_name);
    let mut config = WorkerConfig::new(target.server, name, args.work_dir);
    config.tls = target.tls;
    config.secrets_dir = args.secrets_dir;
    config.keep_workspaces = args.keep_workspaces;
    config.repeat_limit = args.repeat_limit;
    config.unchanged_turns = args.unchanged_turns;
    config.pool = args.pool;
    config.max_concurrent_agents = args.max_concurrent_agents;
    config.steps = args.steps;
    config.capabilities = args.offer.capabilities;
    config.slots = args.offer.slots;
    config.drain_grace = args.drain_grace;
    config.checkpoint_max_bytes = usize::try_from(args.checkpoint_max_bytes).unwrap_or(usize::MAX);
    config.checkpoint_every = (!args.checkpoint_every.is_zero()).then_some(args.checkpoint_every);
    config.mirrors_dir = args.mirrors_dir;
    config.mirrors_max_bytes = args.mirrors_max_bytes;
    config.spare_worktrees = args.spare_worktrees;
    config.seeds_dir = args.seeds_dir;
    config.max_seed_bytes = args.max_seed_bytes;
    config.seed_cache_bytes = args.seed_cache_bytes;
    config.sandbox = args.sandbox.settings();
    config.limits = args.sandbox.limits();
    config.token = target.token;
    config.tidewright_bin = std::env::current_exe().ok();
    config.http = match args.http_listen {
        Some(listen) => Some(tidewright_worker::HttpSettings {
            listen,
            metrics_token: args
                .metrics_token_file
                .as_deref()
                .map(|path| {
                    let token = std::fs::read_to_string(path)
                        .with_context(|| format!("--metrics-token-file {}", path.display()))?;
                    match token.trim() {
                        "" => anyhow::bail!("--metrics-token-file {} is empty", path.display()),
                        token => Ok(token.to_string()),
                    }
                })
                .transpose()?,
        }),
        None if args.metrics_token_file.is_some() => {
            anyhow::bail!("--metrics-token-file: give --http-listen too, or there is no /metrics")
        }
        None => None,
    };
    config.agents = agent_settings(&args.agents)?;
    tidewright_worker::run(config, stop_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn operator(args: OperatorRunArgs, target: Resolved) -> anyhow::Result<ExitCode> {
    let kube = tidewright_operator::kube_client().await?;
    let control_plane = tidewright_operator::ControlPlane::connect_lazy(
        &target.server,
        target.token.as_deref(),
        &target.tls,
    )?;
    let config = tidewright_operator::OperatorConfig {
        namespace: args.namespace,
        identity: args.identity.unwrap_or_else(default_worker_name),
        lease_name: args.lease_name,
        lease_namespace: args.lease_namespace,
        lease_duration: args.lease_duration,
        scale_interval: args.scale_interval,
        workers: tidewright_operator::WorkerSettings {
            server: args.worker_server.unwrap_or(target.server),
            image: args.worker_image,
            token_secret: args.worker_token_secret,
            token_key: args.worker_token_key,
            metrics_token_secret: args.worker_metrics_token_secret,
        },
        control_plane,
    };
    tidewright_operator::run(kube, config, stop_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn default_worker_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("worker-{}", std::process::id()))
}

/// Starts the control plane; a port that cannot be bound is named by the
/// flag that asked for it.
async fn start_control_plane(config: Config) -> anyhow::Result<tidewright_server::RunningServer> {
    tidewright_server::start(config).await.map_err(|e| match e {
        tidewright_server::Error::Bind { port, addr, source } => {
            let flag = match port {
                tidewright_server::PortName::Grpc => "--listen",
                tidewright_server::PortName::Http => "--http-listen",
            };
            anyhow::anyhow!("{flag} {addr}: cannot bind {port}: {source}")
        }
        e => anyhow::Error::new(e).context("starting the control plane"),
    })
}

/// How long `up` waits for a local worker to register with the control
/// plane beside it: it only connects over loopback, so a worker that takes
/// longer is stuck, and the user hears why.
const WORKER_REGISTERS_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    if args.control_plane.security.tls_cert.is_some() {
        anyhow::bail!(
            "--tls-cert: `tidewright up` serves loopback in plaintext; use `tidewright server` for TLS"
        );
    }
    // Said before anything starts: a machine where steps cannot be
    // sandboxed gets the reason and the fix, not workers that fail.
    let sandbox = args.sandbox.settings();
    tidewright_worker::Sandbox::make(&sandbox)
        .await
        .map_err(|why| anyhow::anyhow!(why))?;
    if let Some(unheld) = tidewright_worker::Limits::probe(args.sandbox.limits()).unheld() {
        anyhow::bail!("step limits cannot be held here: {unheld}");
    }
    let mut config = server_config(&args.control_plane)?;
    // The console is on by default here, on loopback: the port after
    // gRPC's, or one the system picks when gRPC's was picked too or the
    // next one is taken (any process may hold it, often for an outgoing
    // connection): a port nobody asked for is no reason to fail.
    if config.http_listen.is_none() {
        let port = match args.control_plane.listen.port() {
            0 | u16::MAX => 0,
            grpc => grpc + 1,
        };
        config.http_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        config.http_listen_fallback = true;
    }
    let data_dir = &args.control_plane.store.data_dir;
    let running = start_control_plane(config).await?;
    // The store and the tokens are no step's to read.
    let mut sandbox = sandbox;
    sandbox.hidden.push(data_dir.clone());
    let endpoint = format!("http://{}", running.local_addr);
    // Scripts (and `make demo`) read the address from here when the port was
    // chosen by the system.
    let endpoint_file = data_dir.join("endpoint");
    std::fs::write(&endpoint_file, format!("{endpoint}\n"))
        .with_context(|| format!("writing {}", endpoint_file.display()))?;

    // The control plane created the tokens on its first start.
    let token_file = data_dir.join("worker.token");
    let worker_token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading {}", token_file.display()))?
        .trim()
        .to_string();
    let agents = agent_settings(&args.agents)?;
    let mut capabilities = args.offer.capabilities.clone();
    // With a key and the CLI at hand, the embedded tidewright runs agents out of
    // the box; without the CLI it says so instead of taking steps it would
    // only fail.
    for (cli, settings) in &agents {
        offer_agent(&mut capabilities, *cli, settings);
    }
    offer_grader(
        &mut capabilities,
        args.control_plane.grader_model.is_some(),
        &agents,
    );
    let (stop_workers, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = Vec::new();
    let mut names = Vec::new();
    for i in 1..=args.workers {
        let name = format!("local-{i}");
        let mut config = WorkerConfig::new(
            endpoint.clone(),
            name.clone(),
            data_dir.join("work").join(&name),
        );
        config.capabilities = capabilities.clone();
        config.slots = args.offer.slots;
        config.agents = agents.clone();
        // Ctrl-C on `tidewright up` stops everything: running steps are handed
        // back at once and run again when tidewright next starts.
        config.drain_grace = std::time::Duration::ZERO;
        config.token = Some(worker_token.clone());
        config.secrets_dir = args.secrets_dir.clone();
        config.tidewright_bin = std::env::current_exe().ok();
        config.sandbox = sandbox.clone();
        config.limits = args.sandbox.limits();
        let mut stop = stop_workers.subscribe();
        let started = tidewright_worker::start(config, async move {
            let _ = stop.recv().await;
        })
        .await
        .map_err(|e| anyhow::anyhow!("worker {name} cannot start: {e}"))?;
        workers.push((name.clone(), started));
        names.push(name);
    }
    // Each has registered, or `up` fails with its own words: a worker that
    // never took work must not be reported as up.
    let mut running_workers = Vec::new();
    for (name, started) in workers {
        let started = started
            .registered(WORKER_REGISTERS_WITHIN)
            .await
            .map_err(|e| anyhow::anyhow!("worker {name} cannot start: {e}"))?;
        // One that ends later says so, here and in the log.
        running_workers.push(tokio::spawn(async move {
            if let Err(e) = started.ended().await {
                tracing::error!(worker = %name, error = %e, "a local worker stopped");
                eprintln!("tidewright: worker {name} stopped: {e}");
            }
        }));
    }

    println!("tidewright is up");
    println!("  gRPC     {endpoint}  (health checking and reflection enabled)");
    println!("  store    {}", running.store);
    let admin_token_file = data_dir.join("admin.token");
    if let Some(http) = running.http_addr {
        // The console opens signed in as the admin, once: the link holds a
        // one-time code, not the token. With tokens of one's own
        // (--tokens-file) there is no admin.token: one signs in by pasting.
        match std::fs::read_to_string(&admin_token_file) {
            Ok(admin_token) => {
                if let Some(link) = running.sign_in_link(admin_token.trim())? {
                    println!("  console  {link}  (signs you in once, within 15 minutes)");
                }
            }
            Err(_) => println!("  console  http://{http}/  (sign in with a token)"),
        }
        println!(
            "  metrics  http://{http}/metrics  (with the admin token; /healthz, /readyz without)"
        );
    }
    println!(
        "  token    {} (the CLI reads .tidewright/admin.token by itself; paste it to sign in to the console)",
        admin_token_file.display()
    );
    println!(
        "  workers  {} ({} slots each; capabilities: {})",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        },
        args.offer.slots,
        capabilities.join(", ")
    );
    println!("Try: tidewright --server {endpoint} submit -f examples/fan-out-fan-in.yaml --watch");
    println!("Press Ctrl-C to stop.");

    // Workers stop first, so they do not try to reconnect to a server that
    // is going away.
    running
        .run_until(async {
            stop_signal().await;
            let _ = stop_workers.send(());
            for worker in running_workers {
                let _ = worker.await;
            }
        })
        .await?;
    println!("tidewright stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_table_is_read_and_a_bad_one_is_refused_naming_the_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let good = file(
            "good.yaml",
            "gpt-6.1: {input: 2.5, cachedInput: 0.25, output: 20}\n",
        );
        let table = price_table(&good).expect("read");
        assert_eq!(table["gpt-6.1"].output, 20.0);
        for (text, said) in [
            (
                "gpt-6.1: {input: -1, cachedInput: 0.25, output: 20}\n",
                "gpt-6.1: input must be zero or more dollars",
            ),
            (
                "gpt-6.1: {input: 1, cached: 0.25, output: 20}\n",
                "unknown field `cached`",
            ),
            (
                "gpt-6.1: {input: 1, output: 20}\n",
                "missing field `cachedInput`",
            ),
        ] {
            let bad = file("bad.yaml", text);
            let error = price_table(&bad).expect_err(text).to_string();
            assert!(
                error.starts_with("--prices ") && error.contains(said),
                "{error}"
            );
        }
    }
}
