//! CreateSchedule, ListSchedules, GetSchedule, DeleteSchedule,
//! SuspendSchedule, ResumeSchedule and TriggerSchedule: checked, stored
//! and audited here; and firing, which the leader's loop calls: each tick
//! due submits its schedule's task with the tick as its idempotency key, so
//! a tick fires once however often a leader (this one after a restart, or
//! another after a failover) looks at it.

use tidewright_core::Micros;
use tidewright_core::calendar::now_micros;
use tidewright_core::schedule::{self, ConcurrencyPolicy, Decision, ScheduleSpec};
use tidewright_store::Write;
use tidewright_store::schedules::{Schedule, ScheduleRun};

use super::audit::audit_entry;
use super::calls::Submit;
use super::{Call, Schedules};
use crate::access::{Action, Identity, Role, Tenants};
use crate::error::Error;

/// A schedule of a tenant, by name.
#[derive(Debug, Clone, Default)]
pub struct ScheduleRef {
    /// Empty for the caller's first.
    pub tenant: String,
    pub name: String,
}

/// CreateSchedule.
#[derive(Debug, Clone, Default)]
pub struct CreateSchedule {
    /// Empty for the caller's first.
    pub tenant: String,
    pub spec: ScheduleSpec,
}

/// The label every task a schedule submits carries, naming it.
pub use tidewright_core::family::SCHEDULE_LABEL;

/// The idempotency key of a schedule's task for `tick`: the same on every
/// look at that tick, by any leader.
pub fn tick_key(name: &str, tick: Micros) -> String {
    format!("schedule/{name}/{tick}")
}

impl Schedules {
    pub async fn create_schedule(&self, call: Call<CreateSchedule>) -> Result<Schedule, Error> {
        const ACTION: &str = "schedule.create";
        let caller = self.cx.permit(&call, Action::WriteTasks, ACTION)?;
        let CreateSchedule { tenant, spec } = call.into_message();
        let created = async {
            let _writing = self.cx.schedule_writes.lock().await;
            let tenant = caller.tenant_for(&tenant, "tenant", "schedule tasks in")?;
            let now = now_micros();
            schedule::validate(&spec, now, &self.cx.limits).map_err(Error::from)?;
            if let Some(template) = &spec.template {
                self.cx
                    .templates
                    .find(&template.name)
                    .map_err(|e| match e {
                        Error::NotFound(message) => Error::invalid("template.name", message),
                        other => other,
                    })?;
            }
            if self.schedule_named(&tenant, &spec.name).await?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "schedule {:?} of tenant {tenant:?} exists; delete it first",
                    spec.name
                )));
            }
            let schedule = Schedule {
                tenant,
                spec,
                created_at: now,
                handled: now,
                history: Vec::new(),
            };
            self.cx
                .commit(vec![Write::Schedule(Box::new(schedule.clone()))])
                .await?;
            self.cx.schedules_changed.notify_one();
            Ok(schedule)
        }
        .await;
        let target = created
            .as_ref()
            .map(|s| s.spec.name.clone())
            .unwrap_or_default();
        let schedule = self.cx.refusal_audited(&caller, ACTION, &target, created)?;
        let detail = format!("{} {}", schedule.spec.cron, schedule.spec.timezone);
        let entry = audit_entry(
            &caller,
            ACTION,
            &schedule.tenant,
            &schedule.spec.name,
            "ok",
            detail,
        );
        self.cx.record(vec![entry]);
        Ok(schedule)
    }

    pub async fn list_schedules(&self, call: Call<()>) -> Result<Vec<Schedule>, Error> {
        let caller = call.require(Action::ReadTasks)?;
        let mut all = self.cx.store.schedules().await?;
        all.retain(|s| caller.can_see(&s.tenant));
        Ok(all)
    }

    pub async fn get_schedule(&self, call: Call<ScheduleRef>) -> Result<Schedule, Error> {
        let caller = call.require(Action::ReadTasks)?;
        self.find_schedule(&caller, &call.into_message()).await
    }

    pub async fn delete_schedule(&self, call: Call<ScheduleRef>) -> Result<(), Error> {
        const ACTION: &str = "schedule.delete";
        let caller = self.cx.permit(&call, Action::WriteTasks, ACTION)?;
        let wanted = call.into_message();
        let removed = async {
            let _writing = self.cx.schedule_writes.lock().await;
            let found = self.find_schedule(&caller, &wanted).await?;
            self.cx
                .commit(vec![Write::RemoveSchedule {
                    tenant: found.tenant.clone(),
                    name: found.spec.name.clone(),
                }])
                .await?;
            Ok(found)
        }
        .await;
        let found = self
            .cx
            .refusal_audited(&caller, ACTION, &wanted.name, removed)?;
        let entry = audit_entry(
            &caller,
            ACTION,
            &found.tenant,
            &found.spec.name,
            "ok",
            String::new(),
        );
        self.cx.record(vec![entry]);
        Ok(())
    }

    /// Suspends a schedule (`suspend`), or resumes it: ticks passed while
    /// it was suspended do not fire.
    pub async fn suspend_schedule(
        &self,
        call: Call<ScheduleRef>,
        suspend: bool,
    ) -> Result<Schedule, Error> {
        let action = if suspend {
            "schedule.suspend"
        } else {
            "schedule.resume"
        };
        let caller = self.cx.permit(&call, Action::WriteTasks, action)?;
        let wanted = call.into_message();
        let changed = async {
            let _writing = self.cx.schedule_writes.lock().await;
            let mut found = self.find_schedule(&caller, &wanted).await?;
            if found.spec.suspended != suspend {
                found.spec.suspended = suspend;
                if !suspend {
                    found.handled = found.handled.max(now_micros());
                }
                self.cx
                    .commit(vec![Write::Schedule(Box::new(found.clone()))])
                    .await?;
                if !suspend {
                    self.cx.schedules_changed.notify_one();
                }
            }
            Ok(found)
        }
        .await;
        let found = self
            .cx
            .refusal_audited(&caller, action, &wanted.name, changed)?;
        let entry = audit_entry(
            &caller,
            action,
            &found.tenant,
            &found.spec.name,
            "ok",
            String::new(),
        );
        self.cx.record(vec![entry]);
        Ok(found)
    }

    /// Runs a schedule's task now, whatever its cron says, as a run of its
    /// history; the task's id.
    pub async fn trigger_schedule(&self, call: Call<ScheduleRef>) -> Result<String, Error> {
        const ACTION: &str = "schedule.trigger";
        let caller = self.cx.permit(&call, Action::WriteTasks, ACTION)?;
        let wanted = call.into_message();
        let fired = async {
            let _writing = self.cx.schedule_writes.lock().await;
            let mut found = self.find_schedule(&caller, &wanted).await?;
            let now = now_micros();
            let key = format!("schedule/{}/trigger/{now}", found.spec.name);
            let task_id = self.submit_for(&found, key).await?;
            let run = ScheduleRun {
                tick: now,
                last_tick: now,
                ticks: None,
                task_id: task_id.clone(),
                skipped: String::new(),
                at: now,
            };
            // In its history, not as a tick handled: a due tick still fires.
            found.remember(run.clone());
            self.keep_runs(found, &[run]).await?;
            Ok(task_id)
        }
        .await;
        let task_id = self
            .cx
            .refusal_audited(&caller, ACTION, &wanted.name, fired)?;
        Ok(task_id)
    }

    /// Waits until a schedule is made or resumed here (the leader's loop
    /// sleeps on it beside its timer). One made before the wait began
    /// counts: the wake is kept until it is waited for.
    pub async fn schedules_changed(&self) {
        self.cx.schedules_changed.notified().await;
    }

    /// Fires the ticks due now of every schedule that is not suspended, and
    /// records what each did; when the next tick of any is due (`None`:
    /// none is). The leader calls it, and again at that time.
    pub async fn fire_schedules(&self) -> Result<Option<Micros>, Error> {
        // Held from the read on: a suspend, a delete or a trigger waits
        // until this firing has stored what it did, and none is written
        // over by a record read before it.
        let _writing = self.cx.schedule_writes.lock().await;
        let mut next = None::<Micros>;
        for mut found in self.cx.store.schedules().await? {
            if found.spec.suspended {
                continue;
            }
            let Ok(ticks) = schedule::Ticks::new(&found.spec.cron, &found.spec.timezone) else {
                continue;
            };
            let now = now_micros();
            let decisions = schedule::due(
                &ticks,
                found.handled,
                now,
                found.spec.starting_deadline_seconds,
                found.spec.missed,
            );
            if !decisions.is_empty() {
                let mut runs = Vec::with_capacity(decisions.len());
                for decision in decisions {
                    let run = self.decide(&found, decision, now).await;
                    found.record(run.clone());
                    runs.push(run);
                }
                self.keep_runs(found.clone(), &runs).await?;
            }
            if let Some(tick) = ticks.next_after(found.handled.max(now_micros())) {
                next = Some(next.map_or(tick, |n| n.min(tick)));
            }
        }
        Ok(next)
    }

    /// Stores a schedule with the `runs` just added to its history, and in
    /// the same commit the webhook deliveries that tell of them.
    async fn keep_runs(&self, found: Schedule, runs: &[ScheduleRun]) -> Result<(), Error> {
        let deliveries = self.cx.webhooks.schedule_deliveries(&found, runs).await?;
        let mut writes = vec![Write::Schedule(Box::new(found))];
        if !deliveries.is_empty() {
            writes.push(Write::Deliveries {
                cursor: None,
                deliveries: deliveries.clone(),
            });
        }
        self.cx.commit(writes).await?;
        if !deliveries.is_empty() {
            self.cx.webhooks.committed(deliveries);
        }
        Ok(())
    }

    /// What one decision did: the task a tick fired, or why it was skipped.
    async fn decide(&self, found: &Schedule, decision: Decision, now: Micros) -> ScheduleRun {
        match decision {
            Decision::Skip {
                first,
                last,
                ticks,
                reason,
            } => ScheduleRun {
                tick: first,
                last_tick: last,
                ticks: ticks.map(|n| n as u64),
                task_id: String::new(),
                skipped: reason,
                at: now,
            },
            Decision::Fire(tick) => {
                let run = |task_id: String, skipped: String| ScheduleRun {
                    tick,
                    last_tick: tick,
                    ticks: None,
                    task_id,
                    skipped,
                    at: now,
                };
                if let Some(running) = self.running_task_of(found).await {
                    match found.spec.concurrency_policy {
                        ConcurrencyPolicy::Allow => {}
                        ConcurrencyPolicy::Forbid => {
                            return run(
                                String::new(),
                                format!("concurrencyPolicy Forbid: task {running} still runs"),
                            );
                        }
                        ConcurrencyPolicy::Replace => {
                            let _ = self
                                .cx
                                .engine
                                .cancel(running, "replaced by the schedule's next run".into())
                                .await;
                        }
                    }
                }
                match self
                    .submit_for(found, tick_key(&found.spec.name, tick))
                    .await
                {
                    Ok(task_id) => run(task_id, String::new()),
                    Err(e) => run(String::new(), format!("the task was refused: {e}")),
                }
            }
        }
    }

    /// The task of the schedule's last fired tick, while it runs.
    async fn running_task_of(&self, found: &Schedule) -> Option<String> {
        let last = found.history.iter().rev().find(|r| !r.task_id.is_empty())?;
        let task = self.cx.store.get_task(&last.task_id).await.ok()??;
        (!task.state.is_terminal()).then(|| last.task_id.clone())
    }

    /// Submits the schedule's task, as its tenant, under `key`; its id.
    async fn submit_for(&self, found: &Schedule, key: String) -> Result<String, Error> {
        let mut spec = match (&found.spec.task, &found.spec.template) {
            (Some(task), _) => task.clone(),
            (None, Some(template)) => {
                let given: Vec<(String, String)> = template
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.cx.templates.find(&template.name)?.render(&given)?
            }
            (None, None) => return Err(Error::invalid("task", "the schedule has no task")),
        };
        spec.labels
            .insert(SCHEDULE_LABEL.to_string(), found.spec.name.clone());
        let scheduler = Identity {
            name: format!("schedule {}", found.spec.name),
            role: Role::Developer,
            tenants: Tenants::Only(vec![found.tenant.clone()]),
            step: None,
        };
        let request = Submit {
            spec: Some(spec),
            idempotency_key: key,
            tenant: found.tenant.clone(),
        };
        let mut submitted = self.cx.submit(vec![request], false, &scheduler).await?;
        submitted
            .pop()
            .map(|s| s.task_id)
            .ok_or_else(|| Error::Internal("no task was created".into()))
    }

    /// The schedule `name` of `tenant`, if there is one.
    async fn schedule_named(&self, tenant: &str, name: &str) -> Result<Option<Schedule>, Error> {
        Ok(self.cx.store.schedule(tenant, name).await?)
    }

    async fn find_schedule(
        &self,
        caller: &Identity,
        wanted: &ScheduleRef,
    ) -> Result<Schedule, Error> {
        let tenant = caller.tenant_for(&wanted.tenant, "tenant", "see schedules of")?;
        self.schedule_named(&tenant, &wanted.name)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no schedule {:?} in tenant {tenant:?}",
                    wanted.name
                ))
            })
    }
}
