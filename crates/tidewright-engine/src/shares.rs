//! Tenants' shares of the fleet: each one's weight in the ready queue's
//! fair share, and its cap on running steps, which dispatch keeps by
//! holding a tenant's waiting steps back while it is at it.
//!
//! A tenant's running steps are counted afresh each dispatch round, from
//! the workers' steps and those a restart left running (orphans, until
//! their workers claim them), so the count cannot drift from the fleet's,
//! and a new leader holds the caps from its first round. It costs a pass
//! over the running steps per round, and only when some tenant has a cap.

use std::collections::HashMap;

use tidewright_core::TenantShare;
use tokio::sync::oneshot;

use crate::effects::Effect;
use crate::engine::Engine;
use crate::handle::TenantShareNow;
use crate::tenants::Capped;

impl Engine {
    /// Gives the queue each stored tenant's weight (on start).
    pub(crate) fn weigh_tenants(&mut self) {
        for (tenant, share) in &self.shares.set {
            self.queue.set_weight(tenant, share.weight);
        }
    }

    /// Sets a tenant's share (already stored); dispatch holds to it from
    /// this round. The answer resolves once the round has committed.
    pub(crate) fn set_tenant_share(
        &mut self,
        tenant: &str,
        share: TenantShare,
    ) -> oneshot::Receiver<()> {
        self.queue.set_weight(tenant, share.weight);
        if share.max_running.is_none() {
            self.queue.set_capped(tenant, false);
        }
        if share.is_default() {
            self.shares.set.remove(tenant);
        } else {
            self.shares.set.insert(tenant.to_string(), share);
        }
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        committed
    }

    /// Each tenant with a share set, running or waiting (of `only`, or
    /// all): its share, and how many of its steps run and wait.
    pub(crate) fn tenant_shares(&self, only: Option<Vec<String>>) -> Vec<TenantShareNow> {
        let running = self.running_by_tenant();
        let waiting: HashMap<&str, usize> = self.queue.waiting_by_sharer().collect();
        let mut tenants: Vec<&str> = self.shares.set.keys().map(String::as_str).collect();
        tenants.extend(running.keys());
        tenants.extend(waiting.keys());
        tenants.sort_unstable();
        tenants.dedup();
        tenants
            .into_iter()
            .filter(|t| only.as_ref().is_none_or(|only| only.iter().any(|o| o == t)))
            .map(|t| {
                let share = self.shares.set.get(t).cloned().unwrap_or_default();
                let waiting = waiting.get(t).copied().unwrap_or(0);
                let running = running.get(t).copied().unwrap_or(0);
                (t.to_string(), share, running, waiting)
            })
            .collect()
    }

    /// How many steps of each tenant run now: on workers, and left running
    /// by a restart until their workers claim them. Keyed by the tasks'
    /// own tenant names: no allocation per running step, as dispatch asks
    /// each round while a tenant has a cap.
    pub(crate) fn running_by_tenant(&self) -> HashMap<&str, usize> {
        let mut running: HashMap<&str, usize> = HashMap::new();
        let workers = self
            .fleet
            .workers
            .values()
            .flat_map(|w| w.running.iter().map(|(task, _)| task));
        let orphans = self.fleet.orphans.keys().map(|(task, _)| task);
        for task in workers.chain(orphans) {
            if let Some(active) = self.tasks.get(task) {
                *running.entry(active.tenant.as_str()).or_default() += 1;
            }
        }
        running
    }

    /// The capped tenants' running steps against their caps, each held
    /// back in the queue while at its cap. Empty, and cheap, when no
    /// tenant has a cap.
    pub(crate) fn hold_capped_tenants(&mut self) -> Capped {
        let mut capped: Capped = self
            .shares
            .caps()
            .map(|(t, cap)| (t.to_string(), (0, cap)))
            .collect();
        if capped.is_empty() {
            return capped;
        }
        for (tenant, n) in self.running_by_tenant() {
            if let Some((running, _)) = capped.get_mut(tenant) {
                *running = n;
            }
        }
        for (tenant, &(running, cap)) in &capped {
            self.queue.set_capped(tenant, running >= cap as usize);
        }
        capped
    }
}
