//! The fleet's tools: a lead agent submits tasks (a task file's fields, or
//! a template with its parameters) that other agents run, waits for them,
//! reads their results and logs, lists, steers and cancels them. Each call goes to
//! the control plane with the step's token, which makes every task the
//! agent submits a child of its own task: in its tenant, cancelled when it
//! ends, and within the control plane's depth and fan-out limits. The
//! answers are the views `tidewright get task -o json` prints.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};
use tidewright_api::client::Bearer;
use tidewright_api::leader::Replicas;
use tidewright_api::v1;
use tidewright_api::v1::task_service_client::TaskServiceClient;
use tidewright_api::view::task_view;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;

use crate::args::{number, refusal, schema, text};

/// How long `wait_for_task` waits when the agent does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(600);
/// The longest wait an agent may ask for; its step's timeout still rules.
const MAX_WAIT_SECONDS: u64 = 3600;
/// How long `cancel_task` waits for the task's running steps to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// Log lines `task_logs` answers when the agent does not say, and at most.
const DEFAULT_TAIL: u64 = 100;
const MAX_TAIL: u64 = 2000;

/// A task's events as a watch gives them.
pub type WatchedEvents = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;

/// The TaskService calls the fleet's tools make, as some caller: over
/// gRPC with a token (`tidewright mcp`), or in the control plane as the caller
/// of an HTTP request (its `/mcp`).
#[async_trait::async_trait]
pub trait TaskCalls: Send + Sync {
    async fn submit_task(
        &self,
        request: v1::SubmitTaskRequest,
    ) -> Result<v1::SubmitTaskResponse, Status>;
    async fn submit_template(
        &self,
        request: v1::SubmitTemplateRequest,
    ) -> Result<v1::SubmitTaskResponse, Status>;
    async fn get_task(&self, request: v1::GetTaskRequest) -> Result<v1::Task, Status>;
    async fn list_tasks(
        &self,
        request: v1::ListTasksRequest,
    ) -> Result<v1::ListTasksResponse, Status>;
    async fn cancel_task(&self, request: v1::CancelTaskRequest) -> Result<v1::Task, Status>;
    async fn watch_task(&self, request: v1::WatchTaskRequest) -> Result<WatchedEvents, Status>;
    async fn steer_step(
        &self,
        request: v1::SteerStepRequest,
    ) -> Result<v1::SteerStepResponse, Status>;
}

type Client = TaskServiceClient<InterceptedService<Replicas, Bearer>>;

#[async_trait::async_trait]
impl TaskCalls for Client {
    async fn submit_task(
        &self,
        request: v1::SubmitTaskRequest,
    ) -> Result<v1::SubmitTaskResponse, Status> {
        Ok(Client::submit_task(&mut self.clone(), request)
            .await?
            .into_inner())
    }
    async fn submit_template(
        &self,
        request: v1::SubmitTemplateRequest,
    ) -> Result<v1::SubmitTaskResponse, Status> {
        Ok(Client::submit_template(&mut self.clone(), request)
            .await?
            .into_inner())
    }
    async fn get_task(&self, request: v1::GetTaskRequest) -> Result<v1::Task, Status> {
        Ok(Client::get_task(&mut self.clone(), request)
            .await?
            .into_inner())
    }
    async fn list_tasks(
        &self,
        request: v1::ListTasksRequest,
    ) -> Result<v1::ListTasksResponse, Status> {
        Ok(Client::list_tasks(&mut self.clone(), request)
            .await?
            .into_inner())
    }
    async fn cancel_task(&self, request: v1::CancelTaskRequest) -> Result<v1::Task, Status> {
        Ok(Client::cancel_task(&mut self.clone(), request)
            .await?
            .into_inner())
    }
    async fn steer_step(
        &self,
        request: v1::SteerStepRequest,
    ) -> Result<v1::SteerStepResponse, Status> {
        Ok(Client::steer_step(&mut self.clone(), request)
            .await?
            .into_inner())
    }
    async fn watch_task(&self, request: v1::WatchTaskRequest) -> Result<WatchedEvents, Status> {
        let events = Client::watch_task(&mut self.clone(), request)
            .await?
            .into_inner();
        Ok(Box::pin(events))
    }
}

#[derive(Clone)]
pub(super) struct FleetTools {
    calls: Arc<dyn TaskCalls>,
    tenant: String,
}

impl FleetTools {
    pub(super) fn new(calls: Arc<dyn TaskCalls>, tenant: String) -> FleetTools {
        FleetTools { calls, tenant }
    }

    pub(super) async fn submit_task(&self, args: &JsonObject) -> Result<Value, String> {
        let task = args
            .get("task")
            .ok_or_else(|| "task: required (a task file's fields: name, steps...)".to_string())?;
        let spec: tidewright_core::TaskSpec =
            serde_json::from_value(task.clone()).map_err(|e| format!("task: {e}"))?;
        let submitted = self
            .calls
            .submit_task(v1::SubmitTaskRequest {
                spec: Some((&spec).into()),
                idempotency_key: optional_text(args, "key")?,
                tenant: self.tenant.clone(),
            })
            .await
            .map_err(|s| refusal(&s))?;
        Ok(json!({"taskId": submitted.task_id, "created": submitted.created}))
    }

    pub(super) async fn submit_template(&self, args: &JsonObject) -> Result<Value, String> {
        let name = text(args, "name")?;
        let mut parameters = std::collections::HashMap::new();
        match args.get("parameters") {
            None | Some(Value::Null) => {}
            Some(Value::Object(given)) => {
                for (key, value) in given {
                    let value = match value {
                        Value::String(s) => s.clone(),
                        Value::Number(_) | Value::Bool(_) => value.to_string(),
                        _ => {
                            return Err(format!(
                                "parameters.{key}: must be text, a number or a boolean"
                            ));
                        }
                    };
                    parameters.insert(key.clone(), value);
                }
            }
            Some(_) => return Err("parameters: must be an object".into()),
        }
        let submitted = self
            .calls
            .submit_template(v1::SubmitTemplateRequest {
                name,
                parameters,
                idempotency_key: optional_text(args, "key")?,
                tenant: self.tenant.clone(),
            })
            .await
            .map_err(|s| refusal(&s))?;
        Ok(json!({"taskId": submitted.task_id, "created": submitted.created}))
    }

    pub(super) async fn wait_for_task(&self, args: &JsonObject) -> Result<Value, String> {
        let task_id = text(args, "taskId")?;
        let wait = match number(args, "timeoutSeconds")? {
            None => DEFAULT_WAIT,
            Some(s) if (1..=MAX_WAIT_SECONDS).contains(&s) => Duration::from_secs(s),
            Some(_) => return Err(format!("timeoutSeconds: 1 to {MAX_WAIT_SECONDS}")),
        };
        let finished = self.finished_within(&task_id, wait).await?;
        let mut task = self.get_task(args).await?;
        if !finished {
            task["timedOut"] = Value::Bool(true);
        }
        Ok(task)
    }

    /// Whether the task finished within `wait`: follows its events, which
    /// end once it has.
    async fn finished_within(&self, task_id: &str, wait: Duration) -> Result<bool, String> {
        let mut events = self
            .calls
            .watch_task(v1::WatchTaskRequest {
                task_id: task_id.to_string(),
                after_seq: 0,
                follow: true,
            })
            .await
            .map_err(|s| refusal(&s))?;
        let ended = tokio::time::timeout(wait, async {
            loop {
                match events.next().await {
                    Some(Ok(_)) => {}
                    None => return Ok(()),
                    Some(Err(status)) => return Err(refusal(&status)),
                }
            }
        })
        .await;
        match ended {
            Ok(Ok(())) => Ok(true),
            Ok(Err(refused)) => Err(refused),
            Err(_) => Ok(false),
        }
    }

    pub(super) async fn get_task(&self, args: &JsonObject) -> Result<Value, String> {
        let task = self
            .calls
            .get_task(v1::GetTaskRequest {
                task_id: text(args, "taskId")?,
            })
            .await
            .map_err(|s| refusal(&s))?;
        serde_json::to_value(task_view(&task)).map_err(|e| e.to_string())
    }

    pub(super) async fn task_logs(&self, args: &JsonObject) -> Result<Value, String> {
        let task_id = text(args, "taskId")?;
        let step = optional_text(args, "step")?;
        let tail = match number(args, "tail")? {
            None => DEFAULT_TAIL,
            Some(n) if (1..=MAX_TAIL).contains(&n) => n,
            Some(_) => return Err(format!("tail: 1 to {MAX_TAIL}")),
        } as usize;
        let mut events = self
            .calls
            .watch_task(v1::WatchTaskRequest {
                task_id: task_id.clone(),
                after_seq: 0,
                follow: false,
            })
            .await
            .map_err(|s| refusal(&s))?;
        let mut lines = std::collections::VecDeque::with_capacity(tail);
        while let Some(event) = events.next().await {
            let event = event.map_err(|s| refusal(&s))?;
            // Its log lines, and a verified step's rounds among them.
            let line = match event.kind {
                Some(v1::event::Kind::Log(log)) => {
                    json!({"step": log.step_id, "attempt": log.attempt, "line": log.line})
                }
                Some(v1::event::Kind::Verification(round)) => json!({
                    "step": round.step_id, "attempt": round.attempt, "line": round.message,
                    "round": round.round, "passed": round.passed,
                }),
                _ => continue,
            };
            if !step.is_empty() && line["step"] != step.as_str() {
                continue;
            }
            if lines.len() == tail {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        Ok(json!({"taskId": task_id, "lines": lines}))
    }

    pub(super) async fn list_tasks(&self, args: &JsonObject) -> Result<Value, String> {
        let states = match optional_text(args, "state")?.as_str() {
            "" => Vec::new(),
            name => vec![task_state(name)? as i32],
        };
        let page = self
            .calls
            .list_tasks(v1::ListTasksRequest {
                states,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .map_err(|s| refusal(&s))?;
        let tasks: Vec<Value> = page
            .tasks
            .iter()
            .map(|task| {
                let view = task_view(task);
                json!({
                    "taskId": view.id,
                    "name": view.name,
                    "state": view.state,
                    "createdAt": view.created_at,
                })
            })
            .collect();
        Ok(json!({"tasks": tasks}))
    }

    pub(super) async fn cancel_task(&self, args: &JsonObject) -> Result<Value, String> {
        let task_id = text(args, "taskId")?;
        self.calls
            .cancel_task(v1::CancelTaskRequest {
                task_id: task_id.clone(),
            })
            .await
            .map_err(|s| refusal(&s))?;
        // Its running steps stop within a second or so: the agent is told
        // the end, not the request.
        self.finished_within(&task_id, CANCEL_WAIT).await?;
        let task = self.get_task(args).await?;
        Ok(json!({"taskId": task_id, "state": task["state"], "message": task["message"]}))
    }

    /// Tells a running agent step of a task this task submitted something
    /// (into its turn, or once its turn ends): a lead agent steering a
    /// child that goes the wrong way.
    pub(super) async fn steer_task(&self, args: &JsonObject) -> Result<Value, String> {
        let follow_up = match args.get("followUp") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("followUp: must be true or false".into()),
        };
        let steered = self
            .calls
            .steer_step(v1::SteerStepRequest {
                task_id: text(args, "taskId")?,
                step_id: text(args, "step")?,
                message: text(args, "message")?,
                follow_up,
            })
            .await
            .map_err(|s| refusal(&s))?;
        Ok(json!({"attempt": steered.attempt, "delivery": steered.delivery}))
    }
}

/// An optional string argument; empty when absent.
fn optional_text(args: &JsonObject, name: &str) -> Result<String, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{name}: must be a string")),
    }
}

fn task_state(name: &str) -> Result<v1::TaskState, String> {
    Ok(match name {
        "queued" => v1::TaskState::Queued,
        "running" => v1::TaskState::Running,
        "paused" => v1::TaskState::Paused,
        "succeeded" => v1::TaskState::Succeeded,
        "failed" => v1::TaskState::Failed,
        "cancelled" => v1::TaskState::Cancelled,
        other => {
            return Err(format!(
                "state: {other:?} is not one of queued, running, paused, succeeded, failed, cancelled"
            ));
        }
    })
}

pub(super) fn tools() -> Vec<Tool> {
    let task_id =
        json!({"type": "string", "description": "The task's id, as submit_task answered it."});
    let key = json!({
        "type": "string", "maxLength": 256,
        "description": "An idempotency key: submitting again with it answers the first task, \
                        so a retried call never makes two."
    });
    vec![
        Tool::new(
            "submit_task",
            "Hand work to the fleet: submit a task (a task file's fields: name, steps, each \
             step a shell command or an agent with its prompt) for other agents to run. It is \
             this task's child: cancelled if this task ends first. Answers its taskId; then \
             wait_for_task.",
            schema(
                json!({
                    "task": {
                        "type": "object",
                        "description": "A task file's fields, e.g. {\"name\": \"fix-tests\", \
                                        \"steps\": [{\"id\": \"fix\", \"claudeCode\": {\"prompt\": \"...\"}}]}",
                    },
                    "key": key,
                }),
                &["task"],
            ),
        ),
        Tool::new(
            "submit_template",
            "Submit the task a template of the control plane makes with these parameters \
             (a child of this task, as submit_task's).",
            schema(
                json!({
                    "name": {"type": "string", "description": "The template's name."},
                    "parameters": {"type": "object",
                                   "description": "Each parameter's value: text, a number or a boolean."},
                    "key": key,
                }),
                &["name"],
            ),
        ),
        Tool::new(
            "wait_for_task",
            "Wait until a task this task submitted finishes, then answer it whole: its state, \
             message, cost and each step's state and output. Answers timedOut=true (and the \
             task as it is) if it has not finished in time.",
            schema(
                json!({
                    "taskId": task_id,
                    "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": MAX_WAIT_SECONDS,
                                       "description": "How long to wait (default 600)."},
                }),
                &["taskId"],
            ),
        ),
        Tool::new(
            "get_task",
            "A task this task submitted, as it is now: its state, message, cost and each \
             step's state and output, and each attempt (a verified step's rounds among them: \
             each its checks and the end of what failed).",
            schema(json!({"taskId": task_id}), &["taskId"]),
        ),
        Tool::new(
            "task_logs",
            "The last log lines of a task this task submitted (of one step when named), with a \
             verified step's rounds among them (each with its round and whether it passed).",
            schema(
                json!({
                    "taskId": task_id,
                    "step": {"type": "string", "description": "Only this step's lines."},
                    "tail": {"type": "integer", "minimum": 1, "maximum": MAX_TAIL,
                             "description": "How many of the last lines (default 100)."},
                }),
                &["taskId"],
            ),
        ),
        Tool::new(
            "list_tasks",
            "The tasks this task submitted, newest first.",
            schema(
                json!({
                    "state": {"type": "string",
                              "enum": ["queued", "running", "paused", "succeeded", "failed", "cancelled"],
                              "description": "Only tasks in this state."},
                }),
                &[],
            ),
        ),
        Tool::new(
            "cancel_task",
            "Cancel a task this task submitted; its running steps stop.",
            schema(json!({"taskId": task_id.clone()}), &["taskId"]),
        ),
        Tool::new(
            "steer_task",
            "Tell a running Claude Code step of a task this task submitted something, without \
             stopping it: the message reaches its model within the turn under way (or, with \
             followUp, once the turn ends). Answers the attempt it went to and how.",
            schema(
                json!({
                    "taskId": task_id,
                    "step": {"type": "string", "description": "The running agent step's id."},
                    "message": {"type": "string", "maxLength": 16384,
                                "description": "What to tell the agent."},
                    "followUp": {"type": "boolean",
                                 "description": "After its current turn rather than into it."},
                }),
                &["taskId", "step", "message"],
            ),
        ),
    ]
}
