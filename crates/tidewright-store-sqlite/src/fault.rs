//! SQLite's errors, classified on the way out of the crate (see
//! `tidewright_store::fault!`).

use tidewright_store::Error;

tidewright_store::fault!(rusqlite::Error, classify);

/// What a caller can do about SQLite's error.
fn classify(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
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
