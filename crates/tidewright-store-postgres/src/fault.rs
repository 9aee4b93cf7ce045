//! PostgreSQL's errors, classified on the way out of the crate (see
//! `tidewright_store::fault!`).

use tidewright_store::Error;

/// The SQLSTATE `tidewright_fence` raises for a write from an ended epoch.
pub(crate) const FENCED: &str = "TW001";

tidewright_store::fault!(tokio_postgres::Error, classify);

impl Fault {
    /// The connection is gone (the server stopped, restarted, or ended the
    /// session): the transaction on it was rolled back by the server, and a
    /// new connection may succeed.
    pub(crate) fn lost_connection(&self) -> bool {
        let Fault::Driver(e) = self else {
            return false;
        };
        if e.is_closed() {
            return true;
        }
        match e.code() {
            // No SQLSTATE: the socket failed, or the server hung up.
            None => e.as_db_error().is_none(),
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
            }
        }
    }
}

/// What a caller can do about PostgreSQL's error.
fn classify(e: tokio_postgres::Error) -> Error {
    let message = format!("postgres: {}", describe(&e));
    let Some(code) = e.code().map(|c| c.code()) else {
        return Error::Unavailable(message);
    };
    if code == FENCED {
        return Error::Deposed(describe(&e));
    }
    match &code[..2] {
        // Integrity: a key or a sequence number taken.
        "23" => Error::Conflict(message),
        // A value the database will never take (say, one it cannot
        // encode), or a schema that is not tidewright's: retrying cannot help.
        "22" | "42" => Error::Corrupt(message),
        "XX" if matches!(code, "XX001" | "XX002") => Error::Corrupt(message),
        // Connections, resources, shutdowns, serialization failures,
        // timeouts: the database may serve again later.
        _ => Error::Unavailable(message),
    }
}

/// The server's own message when there is one; `tokio_postgres::Error`'s
/// display says only "db error" for those.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}
