//! SteerStep: a person's message for a running agent step, checked and
//! audited (who sent it, to which step, how many bytes) here; the engine
//! sends it to the step's worker.

use super::calls::SteerStep;
use super::{Call, Tasks};
use crate::access::Action;
use crate::error::Error;
use crate::handle::Steer;

impl Tasks {
    /// Sends the message; answers the attempt it went to and how it
    /// reaches the agent ("mid-turn", "after the turn").
    pub async fn steer_step(&self, call: Call<SteerStep>) -> Result<(u32, String), Error> {
        const ACTION: &str = "step.steer";
        let caller = self.cx.permit_tasks(&call, Action::WriteTasks, ACTION)?;
        let SteerStep {
            task_id,
            step_id,
            message,
            follow_up,
        } = call.into_message();
        let target = format!("{task_id}/{step_id}");
        let steered = async {
            tidewright_core::steer::validate_message(&message)?;
            let task = self.cx.load(&task_id, &caller).await?;
            if task.state.is_terminal() {
                return Err(Error::FailedPrecondition(format!(
                    "task {task_id} is {}: a message reaches a running agent only",
                    task.state
                )));
            }
            let bytes = message.len();
            let (attempt, delivery) = self
                .cx
                .engine
                .steer(Steer {
                    task_id: task_id.clone(),
                    step_id: step_id.clone(),
                    message,
                    from: caller.name.clone(),
                    follow_up,
                })
                .await?;
            let detail = format!(
                "{bytes}-byte message to attempt {attempt}, {}",
                delivery.as_str()
            );
            Ok((
                task.tenant,
                detail,
                (attempt, delivery.as_str().to_string()),
            ))
        }
        .await;
        let (tenant, detail, answer) =
            self.cx.refusal_audited(&caller, ACTION, &target, steered)?;
        self.cx
            .audited_with(&caller, ACTION, &target, Ok((tenant, detail)))?;
        Ok(answer)
    }
}
