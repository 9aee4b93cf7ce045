//! The leader's reply loop: it posts each triggered task's result where
//! its event happened once the task has ended (the services decide what
//! and record it), looking every few seconds. Only the leader runs it; a
//! reply is forgotten only once the forge took it, so a new leader posts
//! what the last one had not.

use std::time::Duration;

use tidewright_api::abort::AbortOnDrop;
use tidewright_engine::service::Triggers;

/// How often the loop looks for ended tasks: a result is posted this long
/// after its task ends, at most.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Starts the loop; it stops when the handle is dropped (leadership lost,
/// the server stopped).
pub fn reply_periodically(triggers: Triggers) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            if let Err(e) = triggers.post_replies().await {
                tracing::warn!(error = %e, "posting triggered tasks' results");
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }))
}
