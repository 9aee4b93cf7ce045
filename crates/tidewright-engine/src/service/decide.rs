//! ApproveStep and RejectStep: who may decide is the step's own list of
//! approvers (a caller's name or role), checked here against the stored
//! spec; whether the step still waits is the engine's to say, as it
//! applies the decision.

use tidewright_store::TaskRecord;

use super::calls::DecideStep;
use super::{Call, Tasks};
use crate::access::Action;
use crate::error::Error;
use crate::handle::Decision;

/// A reason longer than this is a paste gone wrong.
pub(super) const MAX_REASON_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Approve,
    Reject,
}

impl Tasks {
    pub async fn approve_step(&self, call: Call<DecideStep>) -> Result<TaskRecord, Error> {
        self.decide_step(call, Verdict::Approve).await
    }

    pub async fn reject_step(&self, call: Call<DecideStep>) -> Result<TaskRecord, Error> {
        self.decide_step(call, Verdict::Reject).await
    }

    async fn decide_step(
        &self,
        request: Call<DecideStep>,
        verdict: Verdict,
    ) -> Result<TaskRecord, Error> {
        let action = match verdict {
            Verdict::Approve => "step.approve",
            Verdict::Reject => "step.reject",
        };
        let caller = self.cx.permit(&request, Action::DecideApprovals, action)?;
        let DecideStep {
            task_id,
            step_id,
            reason,
        } = request.into_message();
        let decided = async {
            let reason = reason.trim();
            if step_id.is_empty() {
                return Err(Error::invalid("step_id", "required"));
            }
            if verdict == Verdict::Reject && reason.is_empty() {
                return Err(Error::invalid(
                    "reason",
                    "required to reject a step: say why, for the step's error and the audit log",
                ));
            }
            if reason.len() > MAX_REASON_BYTES {
                return Err(Error::invalid(
                    "reason",
                    format!("at most {MAX_REASON_BYTES} bytes"),
                ));
            }
            let task = self.cx.load(&task_id, &caller).await?;
            let step = task
                .spec
                .steps
                .iter()
                .find(|s| s.id == step_id)
                .ok_or_else(|| Error::NotFound(format!("step {step_id:?} of task {task_id}")))?;
            let approval = step.approval.as_ref().ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "step {step_id:?} of task {task_id} has no approval gate"
                ))
            })?;
            if !approval.names(&caller.name, &caller.role.to_string()) {
                return Err(Error::PermissionDenied(format!(
                    "{} ({}) is not an approver of step {step_id:?}; its approvers are: {}",
                    caller.name,
                    caller.role,
                    approval.approvers.join(", ")
                )));
            }
            let verb = match verdict {
                Verdict::Approve => "approved",
                Verdict::Reject => "rejected",
            };
            let message = if reason.is_empty() {
                format!("{verb} by {}", caller.name)
            } else {
                format!("{verb} by {}: {reason}", caller.name)
            };
            let decision = match verdict {
                Verdict::Approve => Decision::Approve { message },
                Verdict::Reject => Decision::Reject { message },
            };
            self.cx
                .engine
                .decide(task_id.clone(), step_id.clone(), decision)
                .await?;
            let detail = if reason.is_empty() {
                format!("step {step_id}")
            } else {
                format!("step {step_id}: {reason}")
            };
            Ok((task.tenant, detail))
        }
        .await;
        self.cx.audited_with(&caller, action, &task_id, decided)?;
        self.cx.load(&task_id, &caller).await
    }
}
