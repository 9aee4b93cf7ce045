//! The secrets tidewright makes for its callers: random tokens, and files only
//! their owner reads. Who a caller is and what it may do is
//! `tidewright_engine::access`.

use std::path::Path;

use crate::error::Error;

pub(crate) use tidewright_core::hex;

/// A fresh random token, e.g. `tidewright_3f9c…` (256 bits).
pub fn generate_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Auth(format!("no randomness for a token: {e}")))?;
    Ok(format!("tidewright_{}", hex(&bytes)))
}

/// Writes a file only its owner can read.
pub(crate) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}
