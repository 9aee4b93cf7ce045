//! The tenants whose budget is spent now: shared between the engine, which
//! keeps it current, and the way in, which refuses their submits before
//! anything is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orca_core::{Exhausted, Micros};

use crate::error::Error;

/// The tenants whose budget is spent now, shared with the services so a
/// submit is refused before it reaches the store. The engine keeps it
/// current; an entry whose window has ended no longer refuses.
#[derive(Clone, Default)]
pub struct SpentTenants(Arc<Mutex<HashMap<String, Exhausted>>>);

impl SpentTenants {
    pub(crate) fn set(&self, tenant: &str, spent: Option<Exhausted>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match spent {
            Some(spent) => map.insert(tenant.to_string(), spent),
            None => map.remove(tenant),
        };
    }

    /// RESOURCE_EXHAUSTED, naming the budget, its window and its reset,
    /// when `tenant` may not start new work at `now`.
    pub fn admit(&self, tenant: &str, now: Micros) -> Result<(), Error> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(tenant).filter(|spent| spent.resets_at > now) {
            None => Ok(()),
            Some(spent) => Err(Error::ResourceExhausted {
                message: format!(
                    "tenant {tenant:?} {} this {}: its per-{} budget resets at {}",
                    spent.why,
                    spent.window.as_str(),
                    spent.window.as_str(),
                    orca_core::calendar::rfc3339(spent.resets_at)
                ),
                retry_after: Some(Duration::from_micros((spent.resets_at - now) as u64)),
            }),
        }
    }
}
