//! A throwaway PostgreSQL for tests and benches: `initdb` in a temp dir, a
//! free loopback port, the socket in the temp dir; stopped and removed when
//! dropped. Run as root (as in CI containers), the server runs as the
//! `postgres` user, since PostgreSQL refuses to run as root.
//!
//! Tests that only need a database take one from [`Server::from_env`]: a
//! fresh database on `TIDEWRIGHT_TEST_POSTGRES_URL` (the test script's shared
//! cluster, or a developer's own server) or else on a cluster of their own.

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A server of one's own: stop and start it at will.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
    durable: bool,
}

impl Cluster {
    /// A cluster tuned for tests: no fsync (a crash of the machine loses it,
    /// which a throwaway does not mind).
    pub fn start() -> io::Result<Cluster> {
        Self::start_with(false)
    }

    /// A cluster that syncs its commits as a production server does, for
    /// figures that mean something.
    pub fn start_durable() -> io::Result<Cluster> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> io::Result<Cluster> {
        let bin = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("tidewright-pg-")
            .tempdir()?;
        let run_as = running_as_root()?.then_some("postgres");
        if let Some(user) = run_as {
            check(Command::new("chown").arg("-R").arg(user).arg(dir.path()))?;
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            run_as,
            durable,
        };
        let data = cluster.data();
        cluster.check_as(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "tidewright",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.port = free_port()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// `postgres://tidewright@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://tidewright@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again); returns once it accepts connections.
    pub fn start_server(&self) -> io::Result<()> {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        if !self.durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = self.dir.path().join("server.log");
        let started = self.check_as(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        started.map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            io::Error::other(format!("{e}\nserver log:\n{tail}"))
        })
    }

    /// Stops the server as an operator would (`pg_ctl stop -m fast`):
    /// sessions are ended and their transactions rolled back.
    pub fn stop_server(&self) -> io::Result<()> {
        self.check_as("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn check_as(&self, program: &str, args: &[&str]) -> io::Result<()> {
        let program = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        check(command.args(args))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.check_as("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// Where a test gets its databases.
pub struct Server {
    url: String,
    /// Kept running while the server is in use; `None` on a given URL.
    own: Option<Cluster>,
    /// The databases made on a given server, dropped with this.
    made: std::sync::Mutex<Vec<String>>,
}

impl Server {
    /// `TIDEWRIGHT_TEST_POSTGRES_URL` when set, else a cluster of its own.
    pub fn from_env() -> io::Result<Server> {
        match std::env::var("TIDEWRIGHT_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Ok(Server::at(url)),
            _ => {
                let cluster = Cluster::start()?;
                Ok(Server {
                    url: cluster.url("postgres"),
                    own: Some(cluster),
                    made: Default::default(),
                })
            }
        }
    }

    /// A server someone else runs, at `url`.
    pub fn at(url: String) -> Server {
        Server {
            url,
            own: None,
            made: Default::default(),
        }
    }

    /// A new, empty database on the server; its URL.
    pub async fn fresh_database(&self) -> io::Result<String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tidewright_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        admin(&self.url)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(io::Error::other)?;
        if let Ok(mut made) = self.made.lock() {
            made.push(name.clone());
        }
        Ok(with_database(&self.url, &name))
    }

    /// Drops a database [`fresh_database`](Self::fresh_database) made (its
    /// URL), ending its sessions first. A benchmark drops each run's
    /// database after the run: a dropped database leaves nothing for
    /// autovacuum to work through while the next run is measured.
    pub async fn drop_database(&self, url: &str) -> io::Result<()> {
        let path = url.split('?').next().unwrap_or(url);
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        let was_made = {
            let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
            let place = made.iter().position(|m| *m == name);
            place.map(|place| made.remove(place)).is_some()
        };
        if !was_made {
            return Err(io::Error::other(format!("{name} was not made here")));
        }
        drop_databases(&self.url, &[name]).await
    }
}

/// A developer's own server keeps no test databases: they are dropped,
/// their sessions ended first (a store may still hold some). An own
/// cluster goes whole, with its directory.
impl Drop for Server {
    fn drop(&mut self) {
        let made = std::mem::take(self.made.get_mut().unwrap_or_else(|e| e.into_inner()));
        if self.own.is_some() || made.is_empty() {
            return;
        }
        let url = self.url.clone();
        // Its own thread and runtime: this may run inside a test's runtime,
        // which cannot be blocked on from within.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_databases(&url, &made))
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!(
                "test databases left on {}: {e}",
                crate::redact_url(&self.url)
            );
        }
    }
}

/// A session on the server for creating and dropping databases.
async fn admin(url: &str) -> io::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(connection);
    Ok(client)
}

async fn drop_databases(url: &str, names: &[String]) -> io::Result<()> {
    let client = admin(url).await?;
    for name in names {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[name],
            )
            .await
            .map_err(io::Error::other)?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// `url` with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// The directory of `initdb` and `pg_ctl`: `TIDEWRIGHT_PG_BIN`, else Debian's
/// newest `/usr/lib/postgresql/<version>/bin`, else wherever `PATH` has
/// `initdb`.
fn binaries() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TIDEWRIGHT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "PostgreSQL's initdb was not found: install Debian's postgresql package (scripts/postgres.sh does), set TIDEWRIGHT_PG_BIN, or set TIDEWRIGHT_TEST_POSTGRES_URL",
            )
        })
}

/// `/proc/self` belongs to the process's effective user.
fn running_as_root() -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata("/proc/self")?.uid() == 0)
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

fn check(command: &mut Command) -> io::Result<()> {
    let output = command.output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{:?} failed ({}): {}",
        command,
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
