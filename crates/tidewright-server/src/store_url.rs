//! Where the control plane keeps its state, as `--store` names it:
//! `sqlite:///path/to/tidewright.db` (the embedded default; `?synchronous=full`
//! to fsync every commit) or `postgres://user@host/db` (for clusters and
//! replicas). Everything about the store is in its URL; this is the one
//! place that names a backend crate.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use tidewright_store::Store;
use tidewright_store::leadership::{Leadership, Replica, SoleOwner};
use tidewright_store_sqlite::{Durability, SqliteStore};

use crate::error::Error;

#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The database file, and how hard it works to survive a crash when
    /// the URL says (`None`: the default, [`Durability::Process`]).
    Sqlite {
        path: PathBuf,
        durability: Option<Durability>,
    },
    /// A libpq-style URL, checked when parsed.
    Postgres(String),
}

impl FromStr for StoreUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if let Some(rest) = value.strip_prefix("sqlite://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if path.is_empty() {
                return Err("a sqlite store needs a file: sqlite:///path/to/tidewright.db".into());
            }
            let mut durability = None;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                durability = Some(match pair.split_once('=') {
                    Some(("synchronous", "normal")) => Durability::Process,
                    Some(("synchronous", "full")) => Durability::Machine,
                    Some(("synchronous", other)) => {
                        return Err(format!(
                            "synchronous={other:?} is not a setting of a sqlite store: normal or full"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{pair:?} is not a setting of a sqlite store: the one setting is synchronous=normal|full"
                        ));
                    }
                });
            }
            return Ok(StoreUrl::Sqlite {
                path: PathBuf::from(path),
                durability,
            });
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            tidewright_store_postgres::parse_url(value)
                .map_err(|e| format!("not a valid postgres URL ({e})"))?;
            return Ok(StoreUrl::Postgres(value.to_string()));
        }
        // The value is not echoed: a mistyped URL may hold a password.
        Err("expected sqlite:///path/to/tidewright.db or postgres://user@host:port/database".into())
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl StoreUrl {
    /// The location as logs and `tidewright up` show it: a URL's password hidden.
    pub fn redacted(&self) -> String {
        match self {
            StoreUrl::Sqlite { path, .. } => path.display().to_string(),
            StoreUrl::Postgres(url) => tidewright_store_postgres::redact_url(url),
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
            StoreUrl::Sqlite { .. } => Arc::new(SoleOwner::new(replica)),
            StoreUrl::Postgres(url) => Arc::new(
                tidewright_store_postgres::lease::PostgresLeadership::join(url, replica, ttl)
                    .await?,
            ),
        })
    }

    /// Opens the store (creating a SQLite file, or migrating a PostgreSQL
    /// database, as needed); on PostgreSQL, for the replica leading at
    /// `epoch`, its writes fenced with it.
    pub(crate) async fn open(&self, epoch: Option<i64>) -> Result<Arc<dyn Store>, Error> {
        use tidewright_store_postgres::PostgresStore;
        Ok(match (self, epoch) {
            (StoreUrl::Sqlite { path, durability }, _) => Arc::new(SqliteStore::open_file(
                path,
                durability.unwrap_or_default(),
            )?),
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
            "sqlite:///var/lib/tidewright/tidewright.db".parse(),
            Ok(StoreUrl::Sqlite {
                path: "/var/lib/tidewright/tidewright.db".into(),
                durability: None
            })
        );
        assert_eq!(
            "sqlite:///var/lib/tidewright/tidewright.db?synchronous=full".parse(),
            Ok(StoreUrl::Sqlite {
                path: "/var/lib/tidewright/tidewright.db".into(),
                durability: Some(Durability::Machine)
            })
        );
        assert_eq!(
            "sqlite:///o.db?synchronous=normal".parse(),
            Ok(StoreUrl::Sqlite {
                path: "/o.db".into(),
                durability: Some(Durability::Process)
            })
        );
        for (bad, named) in [
            ("sqlite:///o.db?synchronous=extra", "synchronous=\"extra\""),
            ("sqlite:///o.db?mode=ro", "\"mode=ro\""),
        ] {
            let refused = bad.parse::<StoreUrl>().expect_err(bad);
            assert!(refused.contains(named), "{refused}");
        }
        assert_eq!(
            "postgres://tidewright@db:5432/tidewright".parse(),
            Ok(StoreUrl::Postgres(
                "postgres://tidewright@db:5432/tidewright".into()
            ))
        );
        for bad in [
            "sqlite://",
            "mysql://root@db/tidewright",
            "/var/lib/tidewright",
            "postgres://tidewright@db:port/tidewright",
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
        let url: StoreUrl =
            "postgres://tidewright:hunter2@db:5432/tidewright?sslmode=disable&password=again"
                .parse()
                .expect("valid");
        let shown = format!("{url:?} {}", url.redacted());
        assert!(
            !shown.contains("hunter2") && !shown.contains("again"),
            "{shown}"
        );
        assert!(
            shown.contains(
                "postgres://tidewright:***@db:5432/tidewright?sslmode=disable&password=***"
            ),
            "{shown}"
        );
    }
}
