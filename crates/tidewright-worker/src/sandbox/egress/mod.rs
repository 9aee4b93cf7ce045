//! A sandboxed step's network: a namespace of its own whose only ways out
//! are the ones its worker opens for it, per attempt, as Unix sockets bound
//! into the sandbox (a socket is reached through the filesystem, which the
//! sandbox shares in part; a TCP port on the worker's loopback is not):
//!
//! - its egress proxy (`HTTPS_PROXY`, `HTTP_PROXY`), which lets through
//!   what the step's policy allows ([`tidewright_core::egress`]) and says so on
//!   the step, connection by connection;
//! - relays to what tidewright opens as it is: the control plane (the step's
//!   `tidewright` calls and the agents' MCP server), the model proxy, the
//!   worker's OTLP endpoint, the task's repository host, and each loopback
//!   `host:port` the step's lists all name exactly.
//!
//! In the sandbox, `tidewright-sandbox-net` (its own crate) listens on loopback for each and relays to
//! its socket. Anything that goes around the proxy finds no route.

pub mod broker;
mod proxy;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidewright_api::abort::AbortOnDrop;
use tidewright_core::egress::{AllowList, Policy};
use tokio::net::{TcpStream, UnixListener};

use crate::metrics::WorkerMetrics;
/// The relay's executable, which the worker runs from beside `tidewright`.
pub use tidewright_sandbox_net::PROGRAM as RELAY_PROGRAM;
use tidewright_sandbox_net::Relay;

/// One connection's verdict, as the step's event says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    /// `host:port`.
    pub destination: String,
    pub allowed: bool,
    /// Why it was refused; empty when allowed.
    pub reason: String,
}

/// Where an attempt's verdicts go: its events.
pub type Teller = Arc<dyn Fn(Said) + Send + Sync>;

/// Where a step's sockets are in its sandbox.
const INSIDE_DIR: &str = "/run/tidewright";

/// The proxy's port in the sandbox unless one of tidewright's services has it.
const PROXY_PORT: u16 = 3128;

/// One of tidewright's services a step reaches without the proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub host: String,
    pub port: u16,
}

impl Service {
    /// The host and port of `url` (`http://127.0.0.1:7070`).
    pub fn from_url(url: &str) -> Option<Service> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split('/').next()?;
        let default = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (host, port.parse().ok()?),
            _ => (authority, default),
        };
        Some(Service {
            host: tidewright_core::egress::normalize_host(host),
            port,
        })
    }
}

/// A worker's egress, shared by its attempts.
pub struct Egress {
    /// The pool's allow-list (`--egress-allow`), if it set one.
    pool: Option<AllowList>,
    pool_name: String,
    /// The program run first in each sandbox: this `tidewright` binary.
    init: PathBuf,
    /// The control plane, the model proxy and the OTLP endpoint.
    services: Vec<Service>,
    /// Names the proxy resolves to these addresses before any lookup
    /// (`--egress-host`).
    names: Arc<Vec<(String, IpAddr)>>,
    /// How brokered hosts are reached: loaded at the first step with
    /// credentials.
    upstream: std::sync::OnceLock<Result<Arc<broker::Rustls>, String>>,
    metrics: Arc<WorkerMetrics>,
}

/// What serves one attempt's proxy socket.
pub(crate) struct Door {
    policy: Policy,
    pool: String,
    tell: Teller,
    metrics: Arc<WorkerMetrics>,
    names: Arc<Vec<(String, IpAddr)>>,
    /// The step's credentials, added to its requests to their hosts.
    broker: Option<broker::Broker>,
}

impl Door {
    /// Says a verdict on the step and counts it.
    fn tell(&self, destination: &str, allowed: bool, reason: String) {
        self.metrics.egress(&self.pool, allowed);
        (self.tell)(Said {
            destination: destination.to_string(),
            allowed,
            reason,
        });
    }
}

/// One attempt's ways out, open while it lives.
pub struct Gate {
    dir: PathBuf,
    relays: Vec<Relay>,
    init: PathBuf,
    hosts: Option<PathBuf>,
    env: Vec<(String, String)>,
    _serving: Vec<AbortOnDrop>,
}

/// A pool's allow-list checked before the worker starts anything: each
/// entry parses, and a sandbox will hold it (without one no list could
/// be: it is refused, not ignored).
pub fn check(allow: Option<&[String]>, names: &[String], sandboxed: bool) -> Result<(), String> {
    if !names.is_empty() && !sandboxed {
        return Err(
            "--egress-host needs the sandbox: steps run with --sandbox=off resolve names themselves"
                .into(),
        );
    }
    parse_names(names)?;
    let Some(allow) = allow else {
        return Ok(());
    };
    if !sandboxed {
        return Err(
            "--egress-allow needs the sandbox: steps run with --sandbox=off reach any host".into(),
        );
    }
    parse_pool(allow).map(drop)
}

fn parse_pool(allow: &[String]) -> Result<AllowList, String> {
    AllowList::parse(allow).map_err(|(n, why)| format!("--egress-allow {}: {why}", n + 1))
}

/// `--egress-host NAME=ADDRESS` entries, read: a name is a host name
/// (lowercase), an address an IP address.
pub fn parse_names(entries: &[String]) -> Result<Vec<(String, IpAddr)>, String> {
    entries
        .iter()
        .map(|entry| {
            let (name, address) = entry.split_once('=').ok_or_else(|| {
                format!("--egress-host {entry:?}: write NAME=ADDRESS (api.internal=10.0.0.5)")
            })?;
            let rule = tidewright_core::egress::Rule::parse(name)
                .ok()
                .filter(|r| r.port().is_none() && r.ip().is_none())
                .and_then(|r| r.exact_host().map(str::to_string))
                .ok_or_else(|| format!("--egress-host {entry:?}: {name:?} is not a host name"))?;
            let ip = address.trim().parse::<IpAddr>().map_err(|_| {
                format!("--egress-host {entry:?}: {address:?} is not an IP address")
            })?;
            Ok((rule, ip))
        })
        .collect()
}

impl Egress {
    /// `pool`: the worker's `--egress-allow` entries, if given; `init`:
    /// the `tidewright` binary; `services`: what steps reach as they are.
    pub fn new(
        pool: Option<&[String]>,
        pool_name: &str,
        init: PathBuf,
        services: Vec<Service>,
        names: Vec<(String, IpAddr)>,
        metrics: Arc<WorkerMetrics>,
    ) -> Result<Egress, String> {
        let pool = pool.map(parse_pool).transpose()?;
        Ok(Egress {
            pool,
            pool_name: pool_name.to_string(),
            init,
            services,
            names: Arc::new(names),
            upstream: std::sync::OnceLock::new(),
            metrics,
        })
    }

    /// Brokered hosts are reached trusting `roots` rather than the
    /// worker's (a benchmark's own CA).
    pub fn trusting(self, roots: Arc<broker::Rustls>) -> Egress {
        let _ = self.upstream.set(Ok(roots));
        self
    }

    /// A step's broker for `credentials`, their secrets read from
    /// `secrets_dir`.
    pub fn broker(
        &self,
        credentials: &[tidewright_core::credential::Credential],
        secrets_dir: Option<&Path>,
    ) -> Result<broker::Broker, String> {
        let upstream = self.upstream.get_or_init(broker::worker_roots).clone()?;
        broker::Broker::new(credentials, secrets_dir, upstream)
    }

    /// A step's policy: its pool's, task's and own lists, each that is
    /// set, and its repository's host opened by default, as are tidewright's
    /// services (relayed, but a client that sends them to the proxy gets
    /// there too). A list that does not parse (the control plane checked
    /// it) allows nothing.
    pub fn policy(
        &self,
        task: Option<&tidewright_core::Egress>,
        step: Option<&tidewright_core::Egress>,
        repo: Option<&tidewright_core::RepoSpec>,
    ) -> Policy {
        let mut lists = Vec::new();
        if let Some(pool) = &self.pool {
            lists.push(("pool", pool.clone()));
        }
        for (scope, egress) in [("task", task), ("step", step)] {
            if let Some(egress) = egress {
                lists.push((scope, AllowList::parse(&egress.allow).unwrap_or_default()));
            }
        }
        let defaults = repo
            .and_then(|r| repo_host(&r.url))
            .into_iter()
            .chain(self.services.iter().cloned())
            .map(|s| (s.host, s.port))
            .collect();
        Policy { lists, defaults }
    }

    /// Opens an attempt's ways out: a directory of sockets only the
    /// worker's user can reach, served until the gate is dropped.
    ///
    /// `repo` is the step's repository: its host is relayed too (as the
    /// services are, so `git` reaches it even at a loopback address, which
    /// `NO_PROXY` keeps from the proxy), each connection an event.
    ///
    /// With a `broker`, the step's credentials' hosts go through the proxy
    /// (never a relay, nor `NO_PROXY`), and the step trusts the attempt's
    /// CA beside the worker's roots.
    pub async fn open(
        &self,
        policy: Policy,
        repo: Option<&tidewright_core::RepoSpec>,
        tell: Teller,
        broker: Option<broker::Broker>,
    ) -> std::io::Result<Gate> {
        let dir = std::env::temp_dir().join(format!(
            "tidewright-net-{}",
            crate::sandbox::model_proxy::random_hex()
        ));
        make_private_dir(&dir)?;
        let mut gate = Gate {
            dir: dir.clone(),
            relays: Vec::new(),
            init: self.init.clone(),
            hosts: None,
            env: Vec::new(),
            _serving: Vec::new(),
        };
        if let Some(broker) = &broker {
            gate.env.extend(trust(&dir, broker)?);
        }
        let brokered: Vec<Service> = broker
            .iter()
            .flat_map(|b| b.destinations())
            .map(|(host, port)| Service {
                host: host.to_string(),
                port,
            })
            .collect();
        let door = Arc::new(Door {
            policy,
            pool: self.pool_name.clone(),
            tell,
            metrics: self.metrics.clone(),
            names: self.names.clone(),
            broker,
        });
        // Told apart from tidewright's services, each connection an event: the
        // repository's host, and each loopback address a list names
        // exactly (`NO_PROXY` keeps loopback from the proxy, as a step's
        // own servers are there).
        let loopback = door.policy.exact().into_iter().filter(|(host, _)| {
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        });
        let mut opened: Vec<Service> = Vec::new();
        for service in repo
            .and_then(|r| repo_host(&r.url))
            .into_iter()
            .chain(loopback.map(|(host, port)| Service { host, port }))
        {
            if !self.services.contains(&service)
                && !opened.contains(&service)
                && !brokered.contains(&service)
            {
                opened.push(service);
            }
        }
        let told = self.services.len();
        let mut names = Vec::new();
        let mut taken = Vec::new();
        for (n, service) in self.services.iter().chain(&opened).enumerate() {
            let Some(listen) = inside_address(service, n) else {
                continue;
            };
            if service.host.parse::<IpAddr>().is_err() && service.host != "localhost" {
                names.push((listen.ip(), service.host.clone()));
            }
            taken.push(listen);
            let socket = format!("service-{n}.sock");
            let listener = UnixListener::bind(dir.join(&socket))?;
            let upstream = (service.host.clone(), service.port);
            let tell = (n >= told).then(|| door.clone());
            gate._serving.push(AbortOnDrop(tokio::spawn(relay_to(
                listener, upstream, tell,
            ))));
            gate.relays.push(Relay {
                listen,
                socket: Path::new(INSIDE_DIR).join(socket),
            });
        }
        let mut port = PROXY_PORT;
        while taken.iter().any(|a| a.port() == port) {
            port += 1;
        }
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = UnixListener::bind(dir.join("proxy.sock"))?;
        gate._serving
            .push(AbortOnDrop(tokio::spawn(serve_proxy(listener, door))));
        gate.relays.push(Relay {
            listen,
            socket: Path::new(INSIDE_DIR).join("proxy.sock"),
        });
        let proxy = format!("http://{listen}");
        let mut no_proxy = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        no_proxy.extend(names.iter().map(|(_, name)| name.clone()));
        let no_proxy = no_proxy.join(",");
        for (name, value) in [
            ("HTTPS_PROXY", &proxy),
            ("https_proxy", &proxy),
            ("HTTP_PROXY", &proxy),
            ("http_proxy", &proxy),
            ("NO_PROXY", &no_proxy),
            ("no_proxy", &no_proxy),
        ] {
            gate.env.push((name.to_string(), value.clone()));
        }
        if !names.is_empty() {
            // The services' names lead to their relays in the sandbox.
            let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (ip, name) in &names {
                hosts.push_str(&format!("\n{ip} {name}\n"));
            }
            let path = dir.join("hosts");
            std::fs::write(&path, hosts)?;
            gate.hosts = Some(path);
        }
        Ok(gate)
    }
}

impl Gate {
    /// The environment the step's process gets: its proxy.
    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// What bubblewrap binds read-only: (host path, path in the sandbox).
    pub(crate) fn binds(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut binds = vec![(self.dir.clone(), PathBuf::from(INSIDE_DIR))];
        if let Some(hosts) = &self.hosts {
            binds.push((hosts.clone(), "/etc/hosts".into()));
        }
        binds
    }

    /// The command line that goes before the step's program in the
    /// sandbox: `tidewright-sandbox-net`, with its relays.
    pub(crate) fn init(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![self.init.clone().into()];
        args.extend(self.relays.iter().map(|r| r.arg().into()));
        args.push("--".into());
        args
    }

    /// The egress proxy's socket on the worker (what the sandbox has at
    /// `/run/tidewright/proxy.sock`).
    pub fn proxy_socket(&self) -> PathBuf {
        self.dir.join("proxy.sock")
    }

    /// The program [`Gate::init`] starts, which the sandbox must see.
    pub(crate) fn program(&self) -> &Path {
        &self.init
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where a service listens in the sandbox: a loopback address as it is
/// (`127.0.0.1:7070` there too), a name at an address of its own
/// (`127.0.0.10` up) that the sandbox's hosts file gives it. Another
/// address cannot be had there: `None`.
fn inside_address(service: &Service, n: usize) -> Option<SocketAddr> {
    let ip = match service.host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => ip,
        Ok(_) => return None,
        Err(_) if service.host == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Err(_) => IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(10 + n).ok()?)),
    };
    Some(SocketAddr::new(ip, service.port))
}

/// The host a repository is fetched from, for `http(s)://` and
/// `ssh://` URLs and scp-like `git@host:path`; none for a local path.
fn repo_host(url: &str) -> Option<Service> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Service::from_url(url);
    }
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next()?;
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, 22),
        };
        return Some(Service {
            host: tidewright_core::egress::normalize_host(host),
            port,
        });
    }
    if url.contains("://") || url.starts_with('/') || url.starts_with('.') {
        return None;
    }
    let (user_host, _) = url.split_once(':')?;
    let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
    Some(Service {
        host: tidewright_core::egress::normalize_host(host),
        port: 22,
    })
}

/// Writes what a brokered step trusts into its gate's directory: the
/// attempt's CA, and a bundle of it and the roots the worker trusts
/// (`SSL_CERT_FILE`'s, or the system's), so the hosts it reaches through
/// tunnels verify as they did; the variables that point its clients at
/// them, as the sandbox sees them.
fn trust(dir: &Path, broker: &broker::Broker) -> std::io::Result<Vec<(String, String)>> {
    let ca = broker.ca_pem();
    let roots = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let mut bundle = std::fs::read_to_string(&roots).unwrap_or_else(|e| {
        tracing::warn!(roots = %roots.display(), error = %e, "a brokered step trusts its CA alone: the worker's roots could not be read");
        String::new()
    });
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&ca);
    std::fs::write(dir.join("ca.pem"), &ca)?;
    std::fs::write(dir.join("trust.pem"), bundle)?;
    let inside = Path::new(INSIDE_DIR);
    Ok(broker.env(&inside.join("trust.pem"), &inside.join("ca.pem")))
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

async fn serve_proxy(listener: UnixListener, door: Arc<Door>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let door = door.clone();
        tokio::spawn(async move { proxy::serve(stream, &door).await });
    }
}

/// Relays each connection to `upstream`; with a door, each is an event on
/// the step (its repository host, which it reaches by default).
async fn relay_to(listener: UnixListener, upstream: (String, u16), tell: Option<Arc<Door>>) {
    let said = proxy::said_as(&upstream.0, upstream.1);
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if let Some(door) = &tell {
            door.tell(&said, true, String::new());
        }
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await {
                // Relayed as written: no small write waits on Nagle's.
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A service on 127.0.0.1 that answers each connection with `hello`.
    async fn hello() -> (SocketAddr, AbortOnDrop) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serving = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"hello").await;
            }
        });
        (addr, AbortOnDrop(serving))
    }

    /// What the proxy answers `request` with, and the step's events.
    async fn ask(policy: Policy, request: &str) -> (String, Vec<Said>) {
        let (reports, mut said) = tokio::sync::mpsc::unbounded_channel();
        let door = Door {
            policy,
            pool: "p".into(),
            tell: Arc::new(move |s| {
                let _ = reports.send(s);
            }),
            metrics: Arc::new(WorkerMetrics::new(1)),
            names: Arc::new(Vec::new()),
            broker: None,
        };
        let (mut step, proxy_end) = tokio::io::duplex(4096);
        let serving = tokio::spawn(async move { proxy::serve(proxy_end, &door).await });
        step.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let _ = step.read_to_end(&mut answer).await;
        // A tunnel lasts until both sides close.
        drop(step);
        let _ = serving.await;
        let mut events = Vec::new();
        while let Ok(event) = said.try_recv() {
            events.push(event);
        }
        (String::from_utf8_lossy(&answer).into_owned(), events)
    }

    fn verdicts(events: &[Said]) -> Vec<(String, bool)> {
        events
            .iter()
            .map(|e| (e.destination.clone(), e.allowed))
            .collect()
    }

    #[tokio::test]
    async fn the_proxy_tunnels_what_is_allowed_and_refuses_the_rest_saying_so() {
        let (addr, _serving) = hello().await;
        let exact = Policy {
            lists: vec![("step", AllowList::parse(&[addr.to_string()]).expect("list"))],
            defaults: Vec::new(),
        };
        let (answer, events) =
            ask(exact.clone(), &format!("CONNECT {addr} HTTP/1.1\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");
        assert_eq!(verdicts(&events), vec![(addr.to_string(), true)]);

        // The same service by a name opened broadly: it resolves to
        // loopback, and is refused.
        let broad = Policy {
            lists: vec![("pool", AllowList::parse(&["localhost"]).expect("list"))],
            defaults: Vec::new(),
        };
        let target = format!("localhost:{}", addr.port());
        let (answer, events) = ask(broad, &format!("CONNECT {target} HTTP/1.1\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("a loopback address"), "{answer}");
        assert_eq!(verdicts(&events), vec![(target, false)]);

        // Plain HTTP, to a host no list allows.
        let (answer, events) = ask(
            exact,
            "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert_eq!(
            verdicts(&events),
            vec![("169.254.169.254:80".to_string(), false)]
        );

        // Not a proxy request at all.
        let (answer, events) = ask(Policy::default(), "GET / HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(events.is_empty());
    }

    #[test]
    fn services_and_repositories_name_their_hosts() {
        let at = |host: &str, port| {
            Some(Service {
                host: host.into(),
                port,
            })
        };
        assert_eq!(
            Service::from_url("http://127.0.0.1:7070"),
            at("127.0.0.1", 7070)
        );
        assert_eq!(
            Service::from_url("https://tidewright.svc/x"),
            at("tidewright.svc", 443)
        );
        assert_eq!(Service::from_url("http://[::1]:80"), at("::1", 80));
        assert_eq!(
            repo_host("https://github.com/o/r.git"),
            at("github.com", 443)
        );
        assert_eq!(repo_host("ssh://git@host:2222/r"), at("host", 2222));
        assert_eq!(repo_host("git@github.com:o/r.git"), at("github.com", 22));
        assert_eq!(repo_host("/srv/repo.git"), None);
        assert_eq!(repo_host("file:///srv/repo.git"), None);
    }

    #[test]
    fn loopback_services_keep_their_address_and_names_get_one() {
        let service = |host: &str| Service {
            host: host.into(),
            port: 7070,
        };
        let at = |s: &str| Some(s.parse::<SocketAddr>().expect("addr"));
        assert_eq!(
            inside_address(&service("127.0.0.1"), 0),
            at("127.0.0.1:7070")
        );
        assert_eq!(
            inside_address(&service("localhost"), 1),
            at("127.0.0.1:7070")
        );
        assert_eq!(
            inside_address(&service("tidewright.svc"), 1),
            at("127.0.0.11:7070")
        );
        assert_eq!(inside_address(&service("10.0.0.5"), 0), None);
    }
}
