//! SetTenantShare and ListTenantShares: the checks and the audit; the
//! engine's dispatch holds to the weights and caps.

use tidewright_core::TenantShare;
use tidewright_store::Write;

use super::calls::SetTenantShare;
use super::{Call, Shares};
use crate::access::{Action, checked_tenant};
use crate::error::Error;
use crate::handle::TenantShareNow;

impl Shares {
    /// Sets a tenant's share (what is left out is the default); answers it
    /// with the tenant's steps running and waiting now.
    pub async fn set_tenant_share(
        &self,
        request: Call<SetTenantShare>,
    ) -> Result<TenantShareNow, Error> {
        const ACTION: &str = "tenant.set_share";
        let caller = self.cx.permit(&request, Action::SetTenants, ACTION)?;
        let SetTenantShare {
            tenant,
            weight,
            max_running,
            fairness_key,
        } = request.into_message();
        let set = async {
            checked_tenant("tenant", &tenant)?;
            let share = TenantShare::from_signed(weight, max_running, &fairness_key, "")?;
            // Stored first: the engine acts on what a restart would find.
            self.cx
                .commit(vec![Write::TenantShare {
                    tenant: tenant.clone(),
                    share: share.clone(),
                }])
                .await?;
            let described = describe_share(&share);
            self.cx
                .engine
                .set_tenant_share(tenant.clone(), share)
                .await?;
            Ok((tenant.clone(), described))
        }
        .await;
        self.cx.audited_with(&caller, ACTION, "", set)?;
        let listed = self.cx.engine.shares(Some(vec![tenant.clone()])).await?;
        Ok(listed
            .into_iter()
            .next()
            .unwrap_or_else(|| (tenant, TenantShare::default(), 0, 0)))
    }

    /// Every tenant with a share set or steps running or waiting, of those
    /// the caller may see.
    pub async fn list_tenant_shares(
        &self,
        request: Call<()>,
    ) -> Result<Vec<TenantShareNow>, Error> {
        let caller = request.require(Action::ReadTasks)?;
        self.cx.engine.shares(caller.visible_tenants()).await
    }
}

fn describe_share(share: &TenantShare) -> String {
    let mut described = match share.max_running {
        Some(cap) => format!("weight {}, at most {cap} running", share.weight),
        None => format!("weight {}, no cap on running steps", share.weight),
    };
    if let Some(key) = &share.fairness_key {
        described.push_str(&format!(", shared by {key}"));
    }
    described
}
