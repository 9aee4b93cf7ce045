//! A spawned task tied to its owner's life.

use tokio::task::JoinHandle;

/// Stops a spawned task when dropped, whichever way its owner returns.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
