//! What the engine knows of tenants: their budgets and spend, and the
//! tenants whose budget is spent now (shared between the engine, which
//! keeps it current, and the way in, which refuses their submits before
//! anything is stored); and their shares of the fleet, which dispatch
//! holds to (see `shares`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewright_core::calendar::now_micros;
use tidewright_core::{
    Cost, Exhausted, Micros, TaskSpec, TenantBudget, TenantShare, TenantSpend, Window,
};
use tidewright_store::Store;

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
                    tidewright_core::calendar::rfc3339(spent.resets_at)
                ),
                retry_after: Some(Duration::from_micros((spent.resets_at - now) as u64)),
            }),
        }
    }
}

/// Tenants' budgets, what each spent in the current day and month, and
/// their shares, as the store holds them: what the engine starts from.
pub async fn load_tenants(store: &dyn Store) -> Result<StoredTenants, Error> {
    let now = now_micros();
    let limits = store.tenant_budgets().await?.into_iter().collect();
    let (day, month) = (Window::Day.start(now), Window::Month.start(now));
    let mut spend: HashMap<String, TenantSpend> = HashMap::new();
    for (tenant, cost) in store.spend_since(month).await? {
        spend.entry(tenant).or_default().month = (month, cost);
    }
    for (tenant, cost) in store.spend_since(day).await? {
        spend.entry(tenant).or_default().day = (day, cost);
    }
    let shares = store.tenant_shares().await?.into_iter().collect();
    Ok(StoredTenants {
        limits,
        spend,
        shares,
    })
}

/// What the engine knows of tenants' budgets and spend.
#[derive(Default)]
pub(crate) struct Budgets {
    /// As admins set them; a tenant without one may spend without limit.
    pub(crate) limits: HashMap<String, TenantBudget>,
    /// Spend in the current day and month, by tenant.
    pub(crate) spend: HashMap<String, TenantSpend>,
    pub(crate) spent: SpentTenants,
    /// The earliest reset of a spent tenant's window: then its paused
    /// tasks may go on.
    pub(crate) next_reset: Option<Micros>,
}

impl Budgets {
    pub(crate) fn new(
        limits: HashMap<String, TenantBudget>,
        spend: HashMap<String, TenantSpend>,
        spent: SpentTenants,
    ) -> Self {
        let mut budgets = Budgets {
            limits,
            spend,
            spent,
            next_reset: None,
        };
        let tenants: Vec<String> = budgets.limits.keys().cloned().collect();
        for tenant in tenants {
            budgets.refresh(&tenant, now_micros());
        }
        budgets
    }

    pub(crate) fn count(&mut self, tenant: &str, cost: Cost, at: Micros) {
        if cost.is_zero() {
            return;
        }
        self.spend
            .entry(tenant.to_string())
            .or_default()
            .add(cost, at);
    }

    /// Whether `tenant` has spent one of its budgets at `at`; keeps the
    /// shared view and the next reset in step.
    pub(crate) fn refresh(&mut self, tenant: &str, at: Micros) -> Option<Exhausted> {
        // A tenant that spent nothing yet is spent already under a zero
        // budget.
        let exhausted = self.limits.get(tenant).and_then(|limit| {
            self.spend
                .get(tenant)
                .cloned()
                .unwrap_or_default()
                .exhausted(limit, at)
        });
        if let Some(spent) = &exhausted {
            self.next_reset = Some(
                self.next_reset
                    .map_or(spent.resets_at, |r| r.min(spent.resets_at)),
            );
        }
        self.spent.set(tenant, exhausted.clone());
        exhausted
    }

    /// A tenant's budget and its spend in the current day and month.
    pub(crate) fn of(&self, tenant: &str, at: Micros) -> (TenantBudget, Cost, Cost) {
        let spend = self.spend.get(tenant).cloned().unwrap_or_default();
        (
            self.limits.get(tenant).copied().unwrap_or_default(),
            spend.in_window(Window::Day, at),
            spend.in_window(Window::Month, at),
        )
    }

    /// Every tenant that has a budget or has spent something.
    pub(crate) fn tenants(&self) -> Vec<String> {
        let mut tenants: Vec<String> = self
            .limits
            .keys()
            .chain(self.spend.keys())
            .cloned()
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }
}

/// Tenants' budgets, their spend in the current day and month, and their
/// shares of the fleet, as the store holds them when the engine starts.
#[derive(Debug, Clone, Default)]
pub struct StoredTenants {
    pub limits: HashMap<String, tidewright_core::TenantBudget>,
    pub spend: HashMap<String, tidewright_core::TenantSpend>,
    pub shares: HashMap<String, tidewright_core::TenantShare>,
}

/// Tenants' shares as admins set them; a tenant without one has weight 1
/// and no cap.
#[derive(Default)]
pub(crate) struct Shares {
    pub(crate) set: HashMap<String, TenantShare>,
}

impl Shares {
    pub(crate) fn new(set: HashMap<String, TenantShare>) -> Self {
        Shares { set }
    }

    /// A task's key within its tenant's share, from its spec (see
    /// [`TenantShare::key_of`]).
    pub(crate) fn key_of(&self, tenant: &str, spec: &TaskSpec) -> String {
        let repo = spec.repo.as_ref().map(|r| r.url.as_str());
        self.key_of_parts(tenant, repo, &spec.labels).to_string()
    }

    /// As [`Shares::key_of`], from a cold task's repository and labels.
    pub(crate) fn key_of_parts<'a>(
        &self,
        tenant: &str,
        repo: Option<&'a str>,
        labels: &'a BTreeMap<String, String>,
    ) -> &'a str {
        self.set
            .get(tenant)
            .map_or("", |share| share.key_of(repo, labels))
    }

    /// The tenants with a cap, and their caps.
    pub(crate) fn caps(&self) -> impl Iterator<Item = (&str, u32)> {
        self.set
            .iter()
            .filter_map(|(t, s)| s.max_running.map(|cap| (t.as_str(), cap)))
    }
}

/// For the tenants with a cap on running steps: how many run now, and the
/// cap. Dispatch counts what it hands out against it.
pub(crate) type Capped = HashMap<String, (usize, u32)>;

/// Counts a step handed to `tenant` against its cap; holds the tenant back
/// once it is at it.
pub(crate) fn count_start(
    capped: &mut Capped,
    queue: &mut tidewright_core::ReadyQueue<(std::sync::Arc<str>, usize)>,
    tenant: &str,
) {
    if let Some((running, cap)) = capped.get_mut(tenant) {
        *running += 1;
        if *running >= *cap as usize {
            queue.set_capped(tenant, true);
        }
    }
}
