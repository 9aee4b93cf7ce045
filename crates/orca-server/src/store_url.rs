//! Where the control plane keeps its state, as `--store` names it:
//! `sqlite:///path/to/orca.db` (the embedded default) or
//! `postgres://user@host/db` (for clusters and, next, replicas).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use orca_store::Store;
use orca_store::leadership::{Leadership, Replica, SoleOwner};
use orca_store_sqlite::{Durability, SqliteStore};

use crate::Error;

#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The database file.
    Sqlite(PathBuf),
    /// A libpq-style URL, checked when parsed.
    Postgres(String),
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if let Some(path) = value.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("a sqlite store needs a file: sqlite:///path/to/orca.db".into());
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            orca_store_postgres::parse_url(value)
                .map_err(|e| format!("not a valid postgres URL ({e})"))?;
            return Ok(StoreUrl::Postgres(value.to_string()));
        }
        // The value is not echoed: a mistyped URL may hold a password.
        Err("expected sqlite:///path/to/orca.db or postgres://user@host:port/database".into())
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl StoreUrl {
    /// The location as logs and `orca up` show it: a URL's password hidden.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => path.display().to_string(),
            StoreUrl::Postgres(url) => orca_store_postgres::redact_url(url),
        }
    }

    /// How this replica leads on the store: by a lease shared with the
    /// other replicas on PostgreSQL; as the one owner of a SQLite file.
    pub(crate) async fn leadership(
        &self,
        replica: Replica,
        ttl: std::time::Duration,
    ) -> Result<Arc<dyn Leadership>, Error> {
        Ok(match self {
            StoreUrl::Sqlite(_) => Arc::new(SoleOwner::new(replica)),
            StoreUrl::Postgres(url) => Arc::new(
                orca_store_postgres::lease::PostgresLeadership::join(url, replica, ttl).await?,
            ),
        })
    }

    /// Opens the store (creating a SQLite file, or migrating a PostgreSQL
    /// database, as needed); on PostgreSQL, for the replica leading at
    /// `epoch`, its writes fenced with it.
    pub(crate) async fn open(
        &self,
        durability: Durability,
        epoch: Option<i64>,
    ) -> Result<Arc<dyn Store>, Error> {
        use orca_store_postgres::PostgresStore;
        Ok(match (self, epoch) {
            (StoreUrl::Sqlite(path), _) => Arc::new(SqliteStore::open_file(path, durability)?),
            (StoreUrl::Postgres(url), Some(epoch)) => {
                Arc::new(PostgresStore::open_leading(url, epoch).await?)
            }
            (StoreUrl::Postgres(url), None) => Arc::new(PostgresStore::open(url).await?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_name_a_backend_or_say_what_is_expected() {
        assert_eq!(
            "sqlite:///var/lib/orca/orca.db".parse(),
            Ok(StoreUrl::Sqlite("/var/lib/orca/orca.db".into()))
        );
        assert_eq!(
            "postgres://orca@db:5432/orca".parse(),
            Ok(StoreUrl::Postgres("postgres://orca@db:5432/orca".into()))
        );
        for bad in [
            "sqlite://",
            "mysql://root@db/orca",
            "/var/lib/orca",
            "postgres://orca@db:port/orca",
        ] {
            let refused = bad.parse::<StoreUrl>().expect_err(bad);
            assert!(
                refused.contains("expected")
                    || refused.contains("postgres URL")
                    || refused.contains("needs a file"),
                "{refused}"
            );
            assert!(
                !refused.contains("root@"),
                "the value is not echoed: {refused}"
            );
        }
    }

    #[test]
    fn passwords_never_show() {
        let url: StoreUrl = "postgres://orca:hunter2@db:5432/orca?sslmode=disable&password=again"
            .parse()
            .expect("valid");
        let shown = format!("{url:?} {}", url.redacted());
        assert!(
            !shown.contains("hunter2") && !shown.contains("again"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://orca:***@db:5432/orca?sslmode=disable&password=***"),
            "{shown}"
        );
    }
}
