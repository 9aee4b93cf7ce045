//! SQLite's errors, kept whole inside the crate and classified once, on the
//! way out, into the neutral [`Error`] that says what a caller can do.

use tidewright_store::Error;

/// What went wrong inside: SQLite's own error, kept whole until it leaves
/// the crate as an [`Error`] that says what the caller can do.
#[derive(Debug)]
pub(crate) enum Fault {
    Sqlite(rusqlite::Error),
    Store(Error),
}

pub(crate) type Result<T> = std::result::Result<T, Fault>;

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        Fault::Sqlite(e)
    }
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Store(e)
    }
}

/// A stored state or kind name this build does not know.
impl From<tidewright_core::Error> for Fault {
    fn from(e: tidewright_core::Error) -> Self {
        Fault::Store(Error::Corrupt(e.to_string()))
    }
}

impl From<Fault> for Error {
    fn from(fault: Fault) -> Self {
        use rusqlite::ErrorCode;
        let e = match fault {
            Fault::Store(e) => return e,
            Fault::Sqlite(e) => e,
        };
        let message = format!("sqlite: {e}");
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Error::Corrupt(message),
            Some(ErrorCode::ConstraintViolation) => Error::Conflict(message),
            // Busy, locked, I/O, a full disk, an unopenable file: the
            // database may serve again later.
            Some(_) => Error::Unavailable(message),
            // Not from SQLite itself: a value that does not read back as
            // what was written.
            None if matches!(
                e,
                rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..)
                    | rusqlite::Error::Utf8Error(..)
            ) =>
            {
                Error::Corrupt(message)
            }
            None => Error::Unavailable(message),
        }
    }
}
