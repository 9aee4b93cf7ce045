//! Opening the store: its directory and file, the schema and its
//! migrations, the writer's and the checkpoints' threads, the readers'
//! pool, and how a read runs on it off the async threads.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tidewright_store::Error;
use tidewright_store::admission::Bound;
use tidewright_store::write_queue::WriteQueue;

use crate::fault::{Fault, Result};
use crate::schema::{SCHEMA, migrate, refuse_newer};
use crate::writer::{WalLimits, WalState, Writer, run_checkpoints, run_writer};
use crate::{Durability, SqliteStore};

const READERS: usize = 4;

impl SqliteStore {
    /// Opens (creating if needed) `tidewright.db` in `data_dir`.
    pub fn open(data_dir: &Path, durability: Durability) -> tidewright_store::Result<SqliteStore> {
        Self::open_bounded(data_dir, durability, Bound::default())
    }

    /// Opens `tidewright.db` in `data_dir` with its write queue held to `bound`.
    pub fn open_bounded(
        data_dir: &Path,
        durability: Durability,
        bound: Bound,
    ) -> tidewright_store::Result<SqliteStore> {
        Ok(Self::open_at(
            &data_dir.join("tidewright.db"),
            durability,
            bound,
            WalLimits::default(),
        )?)
    }

    /// Opens (creating if needed, with its directory) the database file
    /// `path`.
    pub fn open_file(path: &Path, durability: Durability) -> tidewright_store::Result<SqliteStore> {
        Ok(Self::open_at(
            path,
            durability,
            Bound::default(),
            WalLimits::default(),
        )?)
    }

    pub(crate) fn open_at(
        path: &Path,
        durability: Durability,
        bound: Bound,
        wal_limits: WalLimits,
    ) -> Result<SqliteStore> {
        let data_dir = path.parent().unwrap_or(Path::new("."));
        let unusable = |source: std::io::Error| {
            Error::Unavailable(format!("data directory {}: {source}", data_dir.display()))
        };
        if !data_dir.as_os_str().is_empty() {
            std::fs::create_dir_all(data_dir).map_err(unusable)?;
        }
        let path = path.to_path_buf();
        let writer = open_connection(&path, durability)?;
        // Space freed by retention goes back to the file system a trim at a
        // time; a new database is made so, an older one is rewritten once
        // (`migrate`).
        refuse_newer(&writer)?;
        writer.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        writer.execute_batch(SCHEMA)?;
        migrate(&writer)?;
        // Checkpoints copy the WAL into the database file and fsync; run on
        // the writer they would stall every commit queued behind them, so a
        // thread of their own does them instead, concurrently with writes.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.pragma_update(None, "journal_size_limit", wal_limits.size_limit)?;
        let checkpointer = open_connection(&path, durability)?;
        let readers = (0..READERS)
            .map(|_| open_connection(&path, durability))
            .collect::<Result<Vec<_>>>()?;
        let (jobs, queue, ahead) = WriteQueue::leading(bound);
        let writer = Arc::new(Writer::new(
            writer,
            ahead,
            durability == Durability::Process,
        ));
        let wal = Arc::new(WalState::new(wal_limits));
        let shared = wal.clone();
        let thread_writer = writer.clone();
        std::thread::Builder::new()
            .name("tidewright-store-writer".into())
            .spawn(move || {
                run_writer(&thread_writer, queue, &shared);
                shared.writer_done.store(true, Ordering::Relaxed);
            })
            .map_err(unusable)?;
        std::thread::Builder::new()
            .name("tidewright-store-checkpoint".into())
            .spawn(move || run_checkpoints(checkpointer, &wal))
            .map_err(unusable)?;
        Ok(SqliteStore {
            jobs,
            writer,
            readers: Arc::new(Mutex::new(readers)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read on a pooled connection off the async threads.
    pub(crate) async fn read<T, F>(&self, f: F) -> tidewright_store::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers
                .lock()
                .map_err(|_| Fault::Store(Error::Closed))?
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&path, Durability::Process)?,
            };
            let result = f(&conn);
            if let Ok(mut pool) = readers.lock() {
                pool.push(conn);
            }
            result.map_err(Error::from)
        })
        .await
        .map_err(|e| Error::Unavailable(format!("a read failed to run: {e}")))?
    }
}

pub(crate) fn open_connection(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Process => "NORMAL",
        Durability::Machine => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}
