//! Budgets while work runs. Each agent attempt's cost streams in after
//! every model turn; the engine adds it to its task and its tenant and,
//! when either crosses its budget, pauses the task (every task of the
//! tenant, for a tenant budget): its running steps are stopped, their
//! attempts come back uncounted, and nothing of it starts until the budget
//! is raised or its window resets. Submits into a spent tenant are refused
//! before anything is stored (see [`SpentTenants`]).

use std::sync::Arc;

use tidewright_core::calendar::now_micros;
use tidewright_core::calendar::rfc3339;
use tidewright_core::{AttemptKey, Micros, TaskState};
use tidewright_core::{Budget, Cost, TenantBudget};
use tidewright_store::Write;
use tokio::sync::oneshot;

use crate::effects::Effect;
use crate::engine::Engine;
use crate::error::Error;
use crate::handle::TenantSpending;
use crate::live::Active;
use crate::tenants::Budgets;

/// What a task has spent: its ended attempts and its running ones so far.
pub(crate) fn spent_by(active: &Active) -> Cost {
    active.spent + active.steps.iter().map(|s| s.running_cost).sum()
}

/// What counts against a task's own budget: what it spent, and what the
/// tasks its steps submitted spent.
fn charged_to(active: &Active) -> Cost {
    spent_by(active) + active.family_spent
}

/// Why a task may not run on now, if its own or its tenant's budget is
/// spent.
fn over_budget(active: &Active, budgets: &Budgets, at: Micros) -> Option<String> {
    if let Some(why) = over_own_budget(active) {
        return Some(format!("budget: the task {why}"));
    }
    tenant_over_budget(&active.tenant, budgets, at)
}

/// Why a task has spent its own budget, if it has.
pub(crate) fn over_own_budget(active: &Active) -> Option<String> {
    active
        .spec
        .budget
        .as_ref()
        .and_then(|budget| budget.exceeded_by(&charged_to(active)))
}

/// Why a tenant's tasks may not run on now, if its budget is spent.
fn tenant_over_budget(tenant: &str, budgets: &Budgets, at: Micros) -> Option<String> {
    let limit = budgets.limits.get(tenant)?;
    let spent = budgets
        .spend
        .get(tenant)
        .cloned()
        .unwrap_or_default()
        .exhausted(limit, at)?;
    Some(format!(
        "budget: tenant {tenant:?} {} this {} (resets at {})",
        spent.why,
        spent.window.as_str(),
        rfc3339(spent.resets_at)
    ))
}

impl Engine {
    /// A running attempt's cost so far (its running total).
    pub(super) fn spend(&mut self, worker: u64, attempt: AttemptKey, cost: Cost) {
        let Some((task_id, index)) = self.current(worker, &attempt) else {
            return;
        };
        let Some(active) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let live = &mut active.steps[index];
        let grew = cost.since(&live.running_cost);
        live.running_cost = cost;
        let tenant = active.tenant.clone();
        self.budgets.count(&tenant, grew, now_micros());
        self.enforce_budgets(&task_id);
        self.charge_ancestors(&task_id, grew);
    }

    /// An attempt ended: its final cost (as its runtime priced it, when it
    /// said) replaces the running total.
    pub(super) fn settle_cost(&mut self, task_id: &Arc<str>, index: usize, cost: Option<Cost>) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let live = std::mem::take(&mut active.steps[index].running_cost);
        let cost = cost.unwrap_or(live);
        active.spent += cost;
        let grew = cost.since(&live);
        if !grew.is_zero() {
            let tenant = active.tenant.clone();
            self.budgets.count(&tenant, grew, now_micros());
            self.charge_ancestors(task_id, grew);
        }
    }

    /// Pauses what a crossed budget covers: the task, or every task of its
    /// tenant.
    pub(super) fn enforce_budgets(&mut self, task_id: &Arc<str>) {
        let now = now_micros();
        let Some(active) = self.tasks.get(task_id) else {
            return;
        };
        let tenant = active.tenant.clone();
        self.budgets.refresh(&tenant, now);
        let Some(reason) = tenant_over_budget(&tenant, &self.budgets, now) else {
            if let Some(reason) = over_budget(active, &self.budgets, now) {
                self.pause_task(task_id, &reason, "task");
            }
            return;
        };
        let ids: Vec<Arc<str>> = self
            .tasks
            .iter()
            .filter(|(_, a)| a.tenant == tenant && a.run.state() != TaskState::Paused)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.pause_task(&id, &reason, "tenant");
        }
    }

    /// Pauses a task whose tenant has spent its budget.
    pub(super) fn pause_if_tenant_spent(&mut self, task_id: &Arc<str>) {
        let Some(active) = self.tasks.get(task_id) else {
            return;
        };
        if active.run.state() == TaskState::Paused {
            return;
        }
        if let Some(reason) = tenant_over_budget(&active.tenant, &self.budgets, now_micros()) {
            self.pause_task(task_id, &reason, "tenant");
        }
    }

    /// Stops a task for its budget: its queued steps leave the queue, its
    /// running ones are told to stop.
    /// `budget` says whose budget it was, task or tenant, for the metrics.
    pub(super) fn pause_task(&mut self, task_id: &Arc<str>, reason: &str, budget: &str) {
        let Some(active) = self.tasks.get_mut(task_id) else {
            return;
        };
        let Some(changes) = active.run.pause(reason) else {
            return;
        };
        for live in &mut active.steps {
            if let Some(key) = live.queued.take() {
                self.queue.remove(&key);
            }
        }
        let running: Vec<usize> = active.run.running().collect();
        for &index in &running {
            active.steps[index].stopped_for_budget = true;
        }
        tracing::info!(task = %task_id, reason, "task paused");
        self.metrics.budget_paused(budget);
        self.apply(task_id, changes, None);
        self.send_stops(task_id, running, reason, true);
        // What its steps submitted waits with it.
        if budget != "tenant" {
            let reason = if budget == "parent" {
                reason.to_string()
            } else {
                format!("budget: its parent task {task_id} is paused for its budget")
            };
            self.pause_children(task_id, &reason);
        }
    }

    /// Lets paused tasks go on whose budgets (their own and their tenant's)
    /// have room now; only `tenant`'s when given.
    pub(super) fn resume_within_budget(&mut self, tenant: Option<&str>, message: &str) {
        let now = now_micros();
        let ids: Vec<Arc<str>> = self
            .tasks
            .iter()
            .filter(|(id, a)| {
                a.run.state() == TaskState::Paused
                    && tenant.is_none_or(|t| t == a.tenant)
                    && over_budget(a, &self.budgets, now).is_none()
                    && self.ancestor_over_budget(id).is_none()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(active) = self.tasks.get_mut(&id) else {
                continue;
            };
            let Some(changes) = active.run.resume(message) else {
                continue;
            };
            tracing::info!(task = %id, message, "task resumed");
            self.apply(&id, changes, None);
            let Some(mut active) = self.tasks.remove(&id) else {
                continue;
            };
            self.queue_ready(&id, &mut active);
            self.tasks.insert(id, active);
        }
    }

    /// A tenant's day or month ended: what its spent budget paused may go on.
    pub(super) fn reset_budget_windows(&mut self) {
        let now = now_micros();
        if self.budgets.next_reset.is_none_or(|at| at > now) {
            return;
        }
        self.budgets.next_reset = None;
        for tenant in self.budgets.tenants() {
            self.budgets.refresh(&tenant, now);
        }
        self.resume_within_budget(None, "the budget's window reset");
    }

    /// Raises a running task's budget by `by`; it resumes if that is room
    /// enough. The new budget is stored with the task.
    pub(super) fn raise_budget(
        &mut self,
        task_id: &str,
        by: Budget,
    ) -> Result<oneshot::Receiver<()>, Error> {
        let Some((id, active)) = self.tasks.get_key_value(task_id) else {
            return Err(Error::FailedPrecondition(format!(
                "task {task_id} is not running; only an unfinished task's budget can be raised"
            )));
        };
        let id = id.clone();
        let mut spec = (*active.spec).clone();
        spec.budget = Some(spec.budget.unwrap_or_default().raised(&by));
        self.round.writes.push(Write::Spec {
            id: id.to_string(),
            spec: Box::new(spec.clone()),
        });
        if let Some(active) = self.tasks.get_mut(&id) {
            active.spec = Arc::new(spec);
        }
        let tenant = self.tasks.get(&id).map(|a| a.tenant.clone());
        if let Some(tenant) = tenant {
            self.resume_within_budget(Some(&tenant), "its budget was raised");
        }
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        Ok(committed)
    }

    /// An approver lets a task paused for its own budget go on: the budget
    /// grows by as much again as it was. Answers what was granted, and the
    /// round's commit.
    pub(super) fn approve_budget(
        &mut self,
        task_id: &str,
    ) -> Result<(Budget, oneshot::Receiver<()>), Error> {
        let active = self.tasks.get(task_id).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "task {task_id} is not running; only a paused task's budget can be approved"
            ))
        })?;
        if active.run.state() != TaskState::Paused || over_own_budget(active).is_none() {
            return Err(Error::FailedPrecondition(format!(
                "task {task_id} is not paused for its own budget: there is nothing to approve"
            )));
        }
        let budget = active.spec.budget.clone().unwrap_or_default();
        let grant = Budget {
            usd: budget.usd,
            tokens: budget.tokens,
            approvers: Vec::new(),
        };
        let committed = self.raise_budget(task_id, grant.clone())?;
        Ok((grant, committed))
    }

    /// Sets a tenant's budget (already stored); its paused tasks go on if
    /// it has room now, and a spent one stops at once.
    /// Sets a tenant's budget (none: unlimited); the answer resolves once
    /// the change has committed.
    pub(super) fn set_tenant_budget(
        &mut self,
        tenant: &str,
        budget: TenantBudget,
    ) -> oneshot::Receiver<()> {
        self.change_tenant_budget(tenant, budget);
        let (done, committed) = oneshot::channel();
        self.round.effects.push(Effect::Done(done));
        committed
    }

    /// Each tenant (of `only`, or all), its budget, and what it spent this
    /// UTC day and month.
    pub(super) fn tenant_spending(&self, only: Option<Vec<String>>) -> Vec<TenantSpending> {
        let now = now_micros();
        self.budgets
            .tenants()
            .into_iter()
            .filter(|t| only.as_ref().is_none_or(|only| only.contains(t)))
            .map(|t| {
                let (budget, day, month) = self.budgets.of(&t, now);
                (t, budget, day, month)
            })
            .collect()
    }

    fn change_tenant_budget(&mut self, tenant: &str, budget: TenantBudget) {
        if budget.is_empty() {
            self.budgets.limits.remove(tenant);
        } else {
            self.budgets.limits.insert(tenant.to_string(), budget);
        }
        let now = now_micros();
        if self.budgets.refresh(tenant, now).is_some() {
            let any = self
                .tasks
                .iter()
                .find(|(_, a)| a.tenant == tenant)
                .map(|(id, _)| id.clone());
            if let Some(id) = any {
                self.enforce_budgets(&id);
            }
        } else {
            self.resume_within_budget(Some(tenant), "the tenant's budget was raised");
        }
    }
}
