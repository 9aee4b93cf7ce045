//! Whether this process makes spans: set once, when tracing is set up, and
//! read wherever a span or a trace id would be made.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this process makes spans: [`crate::init`] found an exporter.
static TRACED: AtomicBool = AtomicBool::new(false);

/// Whether this process makes spans (traces are exported). Without, the
/// span helpers here make none, and callers may skip theirs.
pub fn traced() -> bool {
    TRACED.load(Ordering::Relaxed)
}

/// Says whether traces are exported, once, at start.
pub(crate) fn set(traced: bool) {
    TRACED.store(traced, Ordering::Relaxed);
}
