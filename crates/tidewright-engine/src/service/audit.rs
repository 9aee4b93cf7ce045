//! How each call is recorded: a change as it is made, a refusal with why,
//! in the store's audit log (in order with every other write) and the
//! server's log.

use tidewright_core::calendar::now_micros;
use tidewright_store::{AuditRecord, Write};

use super::{Call, Context};
use crate::access::{Action, Identity};
use crate::error::Error;

impl Context {
    /// Writes an audit record to the server's log, as structured fields,
    /// when `--audit-log` asks for it.
    pub(super) fn log_audit(&self, e: &AuditRecord) {
        if !self.audit_log {
            return;
        }
        tracing::info!(
            target: "tidewright::audit",
            actor = %e.actor,
            role = %e.role,
            action = %e.action,
            tenant = %e.tenant,
            task = %e.target,
            outcome = %e.outcome,
            detail = %e.detail,
            "audit"
        );
    }

    /// Audits a refusal of `result` (a bad field, a full store, another
    /// tenant's task); a success is the caller's to audit.
    pub(super) fn refusal_audited<T>(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        result.inspect_err(|e| self.record_refusal(caller, name, target, e))
    }

    /// Checks the caller's role; a refusal is audited.
    pub(super) fn permit<T>(
        &self,
        request: &Call<T>,
        action: Action,
        name: &'static str,
    ) -> Result<Identity, Error> {
        request.require(action).inspect_err(|e| {
            if let Some(caller) = request.caller() {
                self.record_refusal(caller, name, "", e);
            }
        })
    }

    /// Audits a change to one task: `Ok(tenant)`, or why it was refused.
    pub(super) fn audited(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        result: Result<String, Error>,
    ) -> Result<(), Error> {
        self.audited_with(caller, name, target, result.map(|t| (t, String::new())))
    }

    /// [`Self::audited`], with what else a reader needs: `Ok((tenant,
    /// detail))`.
    pub(super) fn audited_with(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        result: Result<(String, String), Error>,
    ) -> Result<(), Error> {
        let (tenant, detail) = self.refusal_audited(caller, name, target, result)?;
        let entry = audit_entry(caller, name, &tenant, target, "ok", detail);
        self.record(vec![entry]);
        Ok(())
    }

    pub(super) fn record_refusal(
        &self,
        caller: &Identity,
        name: &'static str,
        target: &str,
        why: &dyn std::fmt::Display,
    ) {
        let outcome = format!("refused: {why}");
        self.record(vec![audit_entry(
            caller,
            name,
            "",
            target,
            &outcome,
            String::new(),
        )]);
    }

    /// Appends to the audit log (in order with every other write) and,
    /// with `--audit-log`, to the server's log.
    pub(super) fn record(&self, entries: Vec<AuditRecord>) {
        entries.iter().for_each(|e| self.log_audit(e));
        // Not awaited: the write queue keeps it in order behind the change,
        // and the answer need not wait for a second commit.
        drop(
            self.store
                .write(entries.into_iter().map(Write::Audit).collect()),
        );
    }
}

pub(super) fn audit_entry(
    caller: &Identity,
    action: &str,
    tenant: &str,
    target: &str,
    outcome: &str,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at: now_micros(),
        actor: caller.name.clone(),
        role: caller.role.to_string(),
        action: action.to_string(),
        tenant: tenant.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        detail,
    }
}
