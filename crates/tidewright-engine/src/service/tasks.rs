//! The task calls: SubmitTask(s), GetTask, ListTasks, CancelTask,
//! RetryTask, PlanTask, CountTasks, and the audit log and activity reads
//! (ListLandings is `landings`').

use tidewright_core::calendar::now_micros;
use tidewright_core::plan::Plan;
use tidewright_core::{Limits, TaskSpec, TaskState, validate};
use tidewright_store::{AuditRecord, Created, TaskQuery, TaskRecord};

use tidewright_core::family::refuse_reserved_labels;

use super::audit::audit_entry;
use super::calls::{
    ListAudit, ListTasks, OfTenants, PlanTask, PlannedTask, StepRef, Submit, Submitted, TaskPage,
    TaskRef,
};
use super::{
    Call, Context, DEFAULT_PAGE_SIZE, MAX_BATCH, MAX_IDEMPOTENCY_KEY_BYTES, MAX_NAME_PREFIX, Tasks,
    asked_tenants, family, page_size,
};
use crate::access::{Action, Identity};
use crate::activity::MinuteSummary;
use crate::create::Submission;
use crate::error::Error;
use crate::handle::CancelAnswer;

impl Tasks {
    pub async fn submit_task(&self, call: Call<Submit>) -> Result<Submitted, Error> {
        let caller = self
            .cx
            .permit_tasks(&call, Action::WriteTasks, "task.submit")?;
        let request = call.into_message();
        let submitted = match request
            .spec
            .as_ref()
            .map(|s| refuse_reserved_labels(s, "spec."))
        {
            Some(Err(e)) => Err(e.into()),
            _ => self.cx.submit(vec![request], false, &caller).await,
        };
        let mut submitted = self
            .cx
            .refusal_audited(&caller, "task.submit", "", submitted)?;
        submitted
            .pop()
            .ok_or_else(|| Error::Internal("no task was created".into()))
    }

    /// Several tasks at once: all are made, or none (the first refusal
    /// names its task's index).
    pub async fn submit_tasks(&self, call: Call<Vec<Submit>>) -> Result<Vec<Submitted>, Error> {
        let caller = self
            .cx
            .permit_tasks(&call, Action::WriteTasks, "task.submit")?;
        let tasks = call.into_message();
        let forged = tasks.iter().enumerate().find_map(|(i, t)| {
            let spec = t.spec.as_ref()?;
            refuse_reserved_labels(spec, &format!("tasks[{i}].spec.")).err()
        });
        let submitted = if let Some(forged) = forged {
            Err(forged.into())
        } else if tasks.is_empty() {
            Err(Error::invalid("tasks", "at least one task is required"))
        } else if tasks.len() > MAX_BATCH {
            Err(Error::invalid(
                "tasks",
                format!("has {} tasks; the limit is {MAX_BATCH}", tasks.len()),
            ))
        } else {
            self.cx.submit(tasks, true, &caller).await
        };
        self.cx
            .refusal_audited(&caller, "task.submit", "", submitted)
    }

    pub async fn get_task(&self, call: Call<TaskRef>) -> Result<TaskRecord, Error> {
        let caller = call.require_tasks(Action::ReadTasks)?;
        let task = self.cx.load(&call.into_message().task_id, &caller).await?;
        self.cx.with_place(task, &caller).await
    }

    /// A step's own changes to its task's repository as a unified diff:
    /// empty when it changed nothing, or its branch is no longer kept.
    pub async fn step_diff(&self, call: Call<StepRef>) -> Result<String, Error> {
        let caller = call.require(Action::ReadTasks)?;
        let request = call.into_message();
        let task = self.cx.load(&request.task_id, &caller).await?;
        if !task.steps.iter().any(|s| s.id == request.step_id) {
            return Err(Error::NotFound(format!(
                "step {:?} of task {}",
                request.step_id, task.id
            )));
        }
        Ok(self
            .cx
            .store
            .step_branch(&task.id, &request.step_id)
            .await?
            .map(|kept| kept.diff)
            .unwrap_or_default())
    }

    pub async fn list_tasks(&self, call: Call<ListTasks>) -> Result<TaskPage, Error> {
        let caller = call.require_tasks(Action::ReadTasks)?;
        let request = call.into_message();
        if !request.page_token.is_empty() && !valid_task_id(&request.page_token) {
            return Err(Error::invalid(
                "page_token",
                "is not a token from a previous response",
            ));
        }
        let page_size = page_size(request.page_size, DEFAULT_PAGE_SIZE)?;
        if let Some(step) = &caller.step {
            self.cx.step_alive(step).await?;
        }
        // A key no label may have matches no task; refused, as a submit
        // refuses it, rather than handed to the store's query.
        if let Some((key, _)) = request
            .labels
            .iter()
            .find(|(key, _)| !tidewright_core::validate::valid_label_key(key))
        {
            return Err(Error::invalid(
                "labels",
                format!("{key:?} is not a label key: letters, digits, '-', '_', '.' and '/' only"),
            ));
        }
        let mut labels = family::narrowed(&caller, request.labels);
        labels.sort();
        let tenants = asked_tenants(&caller, request.tenants)?;
        if request.name_prefix.len() > MAX_NAME_PREFIX {
            return Err(Error::invalid(
                "name_prefix",
                format!("is longer than {MAX_NAME_PREFIX} bytes"),
            ));
        }
        let mut tasks = self
            .cx
            .store
            .list_tasks(TaskQuery {
                states: request.states,
                labels,
                page_size: page_size + 1,
                before_id: (!request.page_token.is_empty()).then_some(request.page_token),
                tenants,
                name_prefix: request.name_prefix,
            })
            .await?;
        let more = tasks.len() > page_size;
        tasks.truncate(page_size);
        let next_page_token = if more {
            tasks.last().map(|t| t.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(TaskPage {
            tasks: tasks
                .into_iter()
                .map(|task| self.cx.seen_now(task))
                .collect(),
            next_page_token,
        })
    }

    pub async fn cancel_task(&self, call: Call<TaskRef>) -> Result<TaskRecord, Error> {
        let caller = self
            .cx
            .permit_tasks(&call, Action::WriteTasks, "task.cancel")?;
        let task_id = call.into_message().task_id;
        let cancelled = async {
            let task = self.cx.load(&task_id, &caller).await?;
            if !task.state.is_terminal() {
                let reason = format!("cancelled by {}", caller.name);
                match self.cx.engine.cancel(task_id.clone(), reason).await? {
                    CancelAnswer::Done | CancelAnswer::NotActive => {}
                }
            }
            Ok::<_, Error>(task.tenant)
        }
        .await;
        self.cx
            .audited(&caller, "task.cancel", &task_id, cancelled)?;
        self.cx.load(&task_id, &caller).await
    }

    pub async fn retry_task(&self, call: Call<TaskRef>) -> Result<TaskRecord, Error> {
        let caller = self.cx.permit(&call, Action::WriteTasks, "task.retry")?;
        let task_id = call.into_message().task_id;
        let retried = async {
            let task = self.cx.load(&task_id, &caller).await?;
            if !task.state.is_terminal() {
                return Err(Error::FailedPrecondition(format!(
                    "task {task_id} is still {}; cancel it first",
                    task.state
                )));
            }
            if task.steps.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "task {task_id} has no steps to retry (its plan could not run); submit the prompt again"
                )));
            }
            let tenant = task.tenant.clone();
            self.cx.engine.reopen(task).await?;
            Ok(tenant)
        }
        .await;
        self.cx.audited(&caller, "task.retry", &task_id, retried)?;
        self.cx.load(&task_id, &caller).await
    }

    pub async fn plan_task(&self, call: Call<PlanTask>) -> Result<PlannedTask, Error> {
        // Planning spends money: it takes the right to submit.
        let caller = self.cx.permit(&call, Action::WriteTasks, "task.plan")?;
        let request = call.into_message();
        let planned = async {
            caller.tenant_for(&request.tenant, "tenant", "submit to")?;
            let spec = self.cx.checked_spec(request.spec, "")?;
            if !spec.plan {
                return Err(Error::invalid(
                    "spec.plan",
                    "PlanTask plans a prompt task: set plan (and prompt)",
                ));
            }
            let planned = self.cx.plan(&spec).await?;
            Ok(match planned_spec(&spec, planned.plan, &self.cx.limits) {
                Ok(spec) => PlannedTask {
                    spec,
                    plan_json: planned.plan_json,
                    problem: String::new(),
                },
                Err(problem) => PlannedTask {
                    spec,
                    plan_json: planned.plan_json,
                    problem,
                },
            })
        }
        .await;
        self.cx.refusal_audited(&caller, "task.plan", "", planned)
    }

    /// How many tasks are in each state.
    pub async fn count_tasks(&self, call: Call<OfTenants>) -> Result<Vec<(TaskState, u64)>, Error> {
        let caller = call.require(Action::ReadTasks)?;
        let tenants = asked_tenants(&caller, call.into_message().tenants)?;
        Ok(self.cx.store.count_tasks(tenants).await?)
    }

    pub async fn list_audit(&self, call: Call<ListAudit>) -> Result<Vec<AuditRecord>, Error> {
        let caller = call.require(Action::ReadAudit)?;
        let request = call.into_message();
        Ok(self
            .cx
            .store
            .audit_after(
                request.after_seq,
                page_size(request.page_size, DEFAULT_PAGE_SIZE)?,
                caller.visible_tenants(),
            )
            .await?)
    }

    /// The last hour, minute by minute.
    pub async fn get_activity(&self, call: Call<OfTenants>) -> Result<Vec<MinuteSummary>, Error> {
        let caller = call.require(Action::ReadTasks)?;
        let tenants = asked_tenants(&caller, call.into_message().tenants)?;
        Ok(self.cx.metrics.activity(tenants.as_deref()))
    }
}

impl Context {
    /// Validates and converts one submit; `field` prefixes error paths. A
    /// prompt task gets its steps here: its one agent step, or its plan. A
    /// plan that cannot run makes a task that fails at once, keeping the
    /// plan.
    async fn prepare(
        &self,
        request: Submit,
        field: &str,
        now: i64,
        caller: &Identity,
    ) -> Result<Submission, Error> {
        let tenant = caller.tenant_for(&request.tenant, &format!("{field}tenant"), "submit to")?;
        let mut spec = self.checked_spec(request.spec, field)?;
        if let Some(i) = spec.steps.iter().position(|s| !s.fallback.is_empty())
            && !self.fallback.allows(&tenant)
        {
            return Err(Error::FailedPrecondition(format!(
                "{field}spec.steps[{i}].fallback: the server's fallback policy (--fallback-policy) forbids failover for tenant {tenant:?}"
            )));
        }
        let key = request.idempotency_key;
        if let Some(step) = &caller.step {
            self.adopt(&mut spec, step, &key).await?;
        }
        if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(Error::invalid(
                format!("{field}idempotency_key"),
                format!(
                    "is {} bytes; the limit is {MAX_IDEMPOTENCY_KEY_BYTES}",
                    key.len()
                ),
            ));
        }
        self.resolve_repo(&mut spec, field).await?;
        let mut plan_json = String::new();
        let mut unrunnable = None;
        if let Some(step) = spec.prompt_as_step() {
            spec.steps = vec![step];
        } else if spec.plan {
            let planned = self.plan(&spec).await?;
            plan_json = planned.plan_json;
            match planned_spec(&spec, planned.plan, &self.limits) {
                Ok(planned) => spec = planned,
                Err(problem) => unrunnable = Some(format!("the plan cannot run: {problem}")),
            }
        }
        if unrunnable.is_none() {
            self.choose_runtimes(&mut spec, &tenant).await?;
            tidewright_core::attempts::expand::with_attempts(&mut spec);
            tidewright_core::spec::with_delivery(&mut spec);
            tidewright_core::review::expand::with_reviews(&mut spec);
        }
        let id = self.new_id();
        let audit = audit_entry(
            caller,
            "task.submit",
            &tenant,
            &id,
            "ok",
            format!("created {:?}", spec.name),
        );
        Ok(Submission {
            trace_context: (self.trace_context)(&id, &spec.name),
            id,
            tenant,
            spec,
            idempotency_key: (!key.is_empty()).then_some(key),
            created_at: now,
            plan_json,
            unrunnable,
            audit: Some(audit),
        })
    }

    /// Validates every task of the batch, then has the engine create them.
    pub(super) async fn submit(
        &self,
        requests: Vec<Submit>,
        batch: bool,
        caller: &Identity,
    ) -> Result<Vec<Submitted>, Error> {
        let now = now_micros();
        let mut submissions = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let field = if batch {
                format!("tasks[{i}].")
            } else {
                String::new()
            };
            submissions.push(self.prepare(request, &field, now, caller).await?);
        }
        let records: Vec<Option<AuditRecord>> =
            submissions.iter().map(|s| s.audit.clone()).collect();
        let created = self.engine.submit(submissions).await?;
        // The new tasks' first events are stored: the fleet's followers
        // read them.
        if created.iter().any(|c| matches!(c, Created::New(_))) {
            self.hub.fleet_changed();
        }
        let mut answers = Vec::with_capacity(created.len());
        let mut matched = Vec::new();
        for (outcome, record) in created.into_iter().zip(records) {
            match outcome {
                // Its record was stored with it.
                Created::New(id) => {
                    record.iter().for_each(|r| self.log_audit(r));
                    answers.push(Submitted {
                        task_id: id,
                        created: true,
                    });
                }
                Created::Existing(existing) => {
                    matched.extend(record.map(|record| AuditRecord {
                        target: existing.clone(),
                        detail: "idempotency key matched an existing task".into(),
                        ..record
                    }));
                    answers.push(Submitted {
                        task_id: existing,
                        created: false,
                    });
                }
            }
        }
        if !matched.is_empty() {
            self.record(matched);
        }
        Ok(answers)
    }
}

/// `spec` with the planned steps, when they make a valid task; else what
/// is wrong with them, naming the field. The stored spec keeps its prompt,
/// so it shows where the steps came from.
fn planned_spec(
    spec: &TaskSpec,
    plan: Result<Plan, String>,
    limits: &Limits,
) -> Result<TaskSpec, String> {
    let plan = plan?;
    let as_submitted = TaskSpec {
        name: if spec.name.is_empty() {
            plan.name
        } else {
            spec.name.clone()
        },
        steps: plan.steps,
        prompt: String::new(),
        plan: false,
        ..spec.clone()
    };
    validate(&as_submitted, limits).map_err(|e| e.to_string())?;
    Ok(TaskSpec {
        prompt: spec.prompt.clone(),
        plan: true,
        ..as_submitted
    })
}

fn valid_task_id(id: &str) -> bool {
    id.len() == 26 && id.chars().all(|c| c.is_ascii_alphanumeric())
}
