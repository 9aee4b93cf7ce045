//! The leader's schedule loop: it fires each schedule's due ticks (the
//! services decide and record what each does) and sleeps until the next
//! tick or until a schedule is made or resumed on this replica, looking
//! again at least every second so one made on another is found. Only the
//! leader runs it; a tick's task is submitted under the tick as its
//! idempotency key, so a new leader that looks at a tick the last one
//! fired finds its task instead of making another.

use std::time::Duration;

use tidewright_api::abort::AbortOnDrop;
use tidewright_engine::service::Schedules;

/// The longest the loop sleeps without looking.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// Starts the loop; it stops when the handle is dropped (leadership lost,
/// the server stopped).
pub fn fire_periodically(schedules: Schedules) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            let next = match schedules.fire_schedules().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "firing schedules");
                    None
                }
            };
            let now = tidewright_core::calendar::now_micros();
            let wait = next
                .map(|tick| Duration::from_micros(u64::try_from(tick - now).unwrap_or(0)))
                .unwrap_or(LOOK_AT_LEAST_EVERY)
                .min(LOOK_AT_LEAST_EVERY);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = schedules.schedules_changed() => {}
            }
        }
    }))
}
