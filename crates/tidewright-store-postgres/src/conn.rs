//! Connections: one with its prepared statements, and the small pool the
//! reads share. A connection the server dropped is noticed and replaced,
//! so a restarted PostgreSQL is picked up without restarting tidewright.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tidewright_store::Error;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::fault::Result;

/// How long connecting may take before the database counts as unavailable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection and the statements prepared on it, so each statement is
/// parsed and planned once per connection rather than once per use.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// Connects as `application_name` (which `pg_stat_activity` shows).
    pub(crate) async fn open(config: &Config, application_name: &str) -> Result<Conn> {
        let mut config = config.clone();
        config.application_name(application_name);
        // tidewright's statements are short and keyed; compiling one (which
        // PostgreSQL does for any it costs as large, such as recovery's
        // scan of a backlog) took longer than running it: 340 ms of a
        // 1.3 s read of 100,000 tasks.
        let options = match config.get_options() {
            Some(given) => format!("{given} -c jit=off"),
            None => "-c jit=off".to_string(),
        };
        config.options(&options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server hangs up; the
            // client's next request then fails as a lost connection.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// The writer's connection. Its statements join rows sent as arrays to
    /// tables by key, and an index lookup per row is always the plan they
    /// need. PostgreSQL would choose otherwise twice: planned for the arrays
    /// at hand, a large group hashes the whole table (a scan that grows with
    /// every task ever kept); and a plan made while a table is still small
    /// (the first groups on a new database) scans it, and stays cached for
    /// the session while the table grows (measured: an update of 30
    /// attempts went from 0.2 ms to 4 ms at 60,000 rows). So the session
    /// plans once per statement, without the arrays' sizes, and never
    /// scans or hashes a table.
    pub(crate) async fn open_writer(config: &Config) -> Result<Conn> {
        let conn = Conn::open(config, "tidewright-writer").await?;
        conn.client
            .batch_execute(
                "SET plan_cache_mode = force_generic_plan;
                 SET enable_seqscan = off;
                 SET enable_hashjoin = off;
                 SET enable_mergejoin = off",
            )
            .await?;
        Ok(conn)
    }

    /// `sql` prepared on this connection, once.
    pub(crate) async fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// Idle connections for reads; more are opened when all are busy, and at
/// most `keep` are kept.
pub(crate) struct Pool {
    config: Config,
    idle: Mutex<Vec<Conn>>,
    keep: usize,
}

impl Pool {
    pub(crate) fn new(config: Config, keep: usize) -> Pool {
        Pool {
            config,
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An idle connection, or a new one; `fresh` skips the idle ones (after
    /// one of them turned out dead, the others likely are too).
    pub(crate) async fn get(&self, fresh: bool) -> Result<(Conn, bool)> {
        if !fresh {
            let idle = self.idle.lock().map_err(|_| Error::Closed)?.pop();
            if let Some(conn) = idle.filter(|c| !c.is_closed()) {
                return Ok((conn, true));
            }
        } else if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        Ok((Conn::open(&self.config, "tidewright-reader").await?, false))
    }

    pub(crate) fn put(&self, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
    }
}

/// A session of its own for a small, steady job (the lease, the roster):
/// opened on first use, and again after the server dropped it.
pub(crate) struct Reopening {
    config: Config,
    application_name: &'static str,
    conn: Option<Conn>,
}

impl Reopening {
    pub(crate) fn new(config: Config, application_name: &'static str) -> Reopening {
        Reopening {
            config,
            application_name,
            conn: None,
        }
    }

    /// Runs `work` on the session; a session found lost is dropped, so the
    /// next call opens another.
    pub(crate) async fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T>,
    ) -> tidewright_store::Result<T> {
        if self.conn.as_ref().is_none_or(Conn::is_closed) {
            self.conn = None;
            self.conn = Some(Conn::open(&self.config, self.application_name).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::Closed);
        };
        let outcome = work(conn).await;
        if let Err(fault) = &outcome
            && fault.lost_connection()
        {
            self.conn = None;
        }
        Ok(outcome?)
    }
}
