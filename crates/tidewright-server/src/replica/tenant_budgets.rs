//! Tenants' budgets from a file (`--tenant-budgets`, the chart's
//! `tenantBudgets`): YAML mapping each tenant to its limits, set in the
//! store on every start, so a deployment's configuration is what holds
//! after a restart. `tidewright budget set` changes a budget until then.
//!
//! ```yaml
//! team-a: {usdPerDay: 50, usdPerMonth: 800}
//! team-b: {tokensPerDay: 20000000}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use tidewright_core::TenantBudget;
use tidewright_engine::Error as Refusal;
use tidewright_store::{Store, Write};

use crate::auth::valid_tenant;
use crate::error::Error;

/// Reads and checks the file: every tenant name valid, every amount a
/// number of dollars; an error names the file and the field.
pub fn read(path: &Path) -> Result<Vec<(String, TenantBudget)>, Error> {
    let text = crate::error::read_file(path)?;
    let named = |field: String, message: String| {
        Error::Service(Refusal::InvalidArgument {
            field: format!("{}: {field}", path.display()),
            message,
        })
    };
    let budgets: BTreeMap<String, TenantBudget> =
        serde_yaml::from_slice(&text).map_err(|e| named("tenant budgets".into(), e.to_string()))?;
    for (tenant, budget) in &budgets {
        if !valid_tenant(tenant) {
            return Err(named(
                tenant.clone(),
                "a tenant is lowercase letters, digits and '-', 1 to 63 bytes".into(),
            ));
        }
        tidewright_core::validate::validate_tenant_budget(budget, tenant).map_err(|e| match e {
            tidewright_core::Error::Invalid { field, message } => named(field, message),
            other => named(tenant.clone(), other.to_string()),
        })?;
    }
    Ok(budgets.into_iter().collect())
}

/// Stores the budgets, before the engine reads them back.
pub async fn apply(store: &dyn Store, budgets: Vec<(String, TenantBudget)>) -> Result<(), Error> {
    if budgets.is_empty() {
        return Ok(());
    }
    let writes = budgets
        .into_iter()
        .map(|(tenant, budget)| Write::TenantBudget { tenant, budget })
        .collect();
    store
        .write(writes)
        .await
        .map_err(|_| Error::Service(Refusal::ShuttingDown))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Vec<(String, TenantBudget)>, Error> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("budgets.yaml");
        std::fs::write(&path, text).expect("write");
        read(&path)
    }

    #[test]
    fn a_file_maps_tenants_to_their_limits_and_bad_ones_name_the_field() {
        let budgets =
            read_text("team-a: {usdPerDay: 50, usdPerMonth: 800}\nteam-b: {tokensPerDay: 1000}\n")
                .expect("read");
        assert_eq!(budgets.len(), 2);
        assert_eq!(budgets[0].1.usd_per_day, Some(50.0));
        assert_eq!(budgets[1].1.tokens_per_day, Some(1000));
        let field = |text: &str| match read_text(text) {
            Err(Error::Service(Refusal::InvalidArgument { field, message })) => {
                format!("{field} | {message}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(field("team-a: {usdPerDay: -5}\n").contains("team-a.usdPerDay"));
        assert!(field("Team_A: {usdPerDay: 5}\n").contains("Team_A"));
        assert!(field("team-a: {usdPerDya: 5}\n").contains("usdPerDya"));
    }
}
