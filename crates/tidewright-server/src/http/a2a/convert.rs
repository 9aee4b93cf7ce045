//! tidewright's tasks as A2A tasks, and an A2A message as what tidewright runs: the
//! mapping alone, in memory, with no call made (the endpoint makes them).
//!
//! A tidewright task is an A2A task of the same id. Its A2A state follows the
//! tidewright state, except that a running task with a step awaiting approval,
//! or a task paused for its budget, is `INPUT_REQUIRED`: it goes on only
//! when a person acts. Each step that succeeds with an output is an
//! artifact of the step's name. Every tidewright event (state changes, progress,
//! log lines) is a status update whose message says it, so a client sees
//! the task live; the event itself rides in the update's metadata.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use tidewright_core::calendar::rfc3339;
use tidewright_core::template::Template;
use tidewright_core::{
    ClaudeCodeSpec, CodexSpec, Event, EventKind, GeminiSpec, StepSpec, StepState, TaskSpec,
    TaskState,
};
use tidewright_store::{StepRecord, TaskRecord};

use super::wire::{
    Artifact, ArtifactUpdate, Message, Part, SendMessageRequest, StatusUpdate, StreamResponse,
    Task, TaskStatus,
};
use crate::error::Error;

/// The label that puts a task in an A2A context: the client's
/// `contextId`, or one tidewright made for the first message of a context.
pub const CONTEXT_LABEL: &str = "tidewright.dev/a2a-context";

/// A context id becomes a label value: at most this long.
const MAX_CONTEXT_ID: usize = 128;

/// The metadata key a message names its skill with.
pub const SKILL_KEY: &str = "skill";

/// The agent runtimes a message can name as its skill, with what each is
/// called on the card.
pub const RUNTIMES: [(&str, &str); 4] = [
    (tidewright_core::CLAUDE_CODE, "Claude Code"),
    (tidewright_core::CODEX, "Codex"),
    (tidewright_core::GEMINI_CLI, "Gemini CLI"),
    (tidewright_core::QWEN_CODE, "Qwen Code"),
];

pub fn state_name(state: TaskState, interrupted: bool) -> &'static str {
    match state {
        TaskState::Queued => "TASK_STATE_SUBMITTED",
        TaskState::Running if interrupted => "TASK_STATE_INPUT_REQUIRED",
        TaskState::Running => "TASK_STATE_WORKING",
        TaskState::Paused => "TASK_STATE_INPUT_REQUIRED",
        TaskState::Succeeded => "TASK_STATE_COMPLETED",
        TaskState::Failed => "TASK_STATE_FAILED",
        TaskState::Cancelled => "TASK_STATE_CANCELED",
    }
}

/// The tidewright states an A2A state filter means.
pub fn states_named(name: &str) -> Option<Vec<TaskState>> {
    Some(match name {
        "TASK_STATE_SUBMITTED" => vec![TaskState::Queued],
        "TASK_STATE_WORKING" => vec![TaskState::Running],
        "TASK_STATE_INPUT_REQUIRED" => vec![TaskState::Paused],
        "TASK_STATE_COMPLETED" => vec![TaskState::Succeeded],
        "TASK_STATE_FAILED" => vec![TaskState::Failed],
        "TASK_STATE_CANCELED" => vec![TaskState::Cancelled],
        "TASK_STATE_REJECTED" | "TASK_STATE_AUTH_REQUIRED" => vec![],
        _ => return None,
    })
}

/// A task's A2A context: its label, or its own id for a task that came
/// some other way (each is then a context of one).
pub fn context_of(record: &TaskRecord) -> String {
    record
        .spec
        .labels
        .get(CONTEXT_LABEL)
        .cloned()
        .unwrap_or_else(|| record.id.clone())
}

/// An agent's message of one text part.
fn said(text: String, task_id: &str, context_id: &str, id: String) -> Message {
    Message {
        message_id: id,
        context_id: context_id.to_string(),
        task_id: task_id.to_string(),
        role: "ROLE_AGENT".into(),
        parts: vec![Part::text(text)],
        ..Message::default()
    }
}

/// A step's output as an artifact named for the step: its JSON as a data
/// part, and an agent's final answer (`result`) as text besides.
pub fn artifact(step: &StepRecord) -> Option<Artifact> {
    if step.state != StepState::Succeeded || step.output_json.trim().is_empty() {
        return None;
    }
    let output: Value = serde_json::from_str(&step.output_json)
        .unwrap_or_else(|_| Value::String(step.output_json.clone()));
    let mut parts = Vec::new();
    match output.get("result").and_then(Value::as_str) {
        Some(answer) => parts.push(Part::text(answer)),
        None => {
            if let Value::String(text) = &output {
                parts.push(Part::text(text.clone()));
            }
        }
    }
    if !output.is_string() {
        parts.push(Part::data(output));
    }
    Some(Artifact {
        artifact_id: step.id.clone(),
        name: step.id.clone(),
        description: format!("the output of step {}", step.id),
        parts,
    })
}

/// What a task's snapshot says it waits for a person on, if anything.
fn waiting_on(record: &TaskRecord) -> Option<String> {
    if record.state == TaskState::Paused {
        return Some(format!(
            "paused: {}",
            if record.message.is_empty() {
                "its budget is spent; raise it to go on"
            } else {
                &record.message
            }
        ));
    }
    let awaiting: Vec<&str> = record
        .steps
        .iter()
        .filter(|s| s.state == StepState::AwaitingApproval)
        .map(|s| s.id.as_str())
        .collect();
    (record.state == TaskState::Running && !awaiting.is_empty())
        .then(|| format!("awaiting approval: step {}", awaiting.join(", ")))
}

/// A task as A2A shows it: its state, what it last said, its artifacts.
pub fn task(record: &TaskRecord) -> Task {
    let context_id = context_of(record);
    let waiting = waiting_on(record);
    let text = waiting
        .clone()
        .or_else(|| (!record.message.is_empty()).then(|| record.message.clone()));
    let at = [record.finished_at, record.started_at, record.created_at]
        .into_iter()
        .find(|at| *at != 0)
        .unwrap_or_default();
    let mut metadata = Map::new();
    metadata.insert(
        "tidewright".into(),
        json!({
            "tenant": record.tenant,
            "name": record.spec.name,
            "state": record.state.as_str(),
            "costUsd": record.cost.usd,
            "lastSeq": record.last_seq,
        }),
    );
    Task {
        id: record.id.clone(),
        status: TaskStatus {
            state: state_name(record.state, waiting.is_some()),
            message: text.map(|text| {
                said(
                    text,
                    &record.id,
                    &context_id,
                    format!("{}-{}", record.id, record.last_seq),
                )
            }),
            timestamp: rfc3339(at),
        },
        context_id,
        artifacts: record.steps.iter().filter_map(artifact).collect(),
        history: Vec::new(),
        metadata,
    }
}

/// A task's A2A state as its events unfold, from a snapshot on.
#[derive(Debug, Clone)]
pub struct Follow {
    task_id: String,
    context_id: String,
    state: TaskState,
    awaiting: BTreeSet<String>,
}

impl Follow {
    pub fn new(record: &TaskRecord) -> Follow {
        Follow {
            task_id: record.id.clone(),
            context_id: context_of(record),
            state: record.state,
            awaiting: record
                .steps
                .iter()
                .filter(|s| s.state == StepState::AwaitingApproval)
                .map(|s| s.id.clone())
                .collect(),
        }
    }

    /// For one event read on its own, of the task as stored after it (a
    /// push notification): a step's event is of a running task, whatever
    /// state the task has reached since.
    pub fn at_event(record: &TaskRecord, event: &Event) -> Follow {
        let mut follow = Follow::new(record);
        if !matches!(event.kind, EventKind::TaskState { .. }) {
            follow.state = TaskState::Running;
        }
        follow
    }

    pub fn finished(&self) -> bool {
        self.state.is_terminal()
    }

    /// Waits for a person: a `SendMessage` that blocks answers then.
    pub fn interrupted(&self) -> bool {
        self.state == TaskState::Paused
            || (self.state == TaskState::Running && !self.awaiting.is_empty())
    }

    /// The status update an event makes, its state the task's after it.
    pub fn update(&mut self, event: &Event) -> StatusUpdate {
        let text = match &event.kind {
            EventKind::TaskState { state, message } => {
                self.state = *state;
                if message.is_empty() {
                    format!("task {state}")
                } else {
                    format!("task {state}: {message}")
                }
            }
            EventKind::StepState {
                step,
                state,
                attempt,
                message,
                ..
            } => {
                if *state == StepState::AwaitingApproval {
                    self.awaiting.insert(step.clone());
                } else {
                    self.awaiting.remove(step);
                }
                let mut text = format!("step {step} {state}");
                if *attempt > 1 {
                    text.push_str(&format!(" (attempt {attempt})"));
                }
                if !message.is_empty() {
                    text.push_str(&format!(": {message}"));
                }
                text
            }
            EventKind::Progress {
                step,
                fraction,
                message,
                ..
            } => format!("{step}: {:.0}% {message}", fraction * 100.0)
                .trim_end()
                .to_string(),
            EventKind::Log { line, .. } => line.clone(),
            EventKind::Egress {
                step,
                destination,
                allowed,
                reason,
                ..
            } => match allowed {
                true => format!("{step}: connected to {destination}"),
                false => format!("{step}: refused a connection to {destination}: {reason}"),
            },
            EventKind::Verification { step, message, .. } => format!("{step}: {message}"),
            EventKind::FailedOver {
                step,
                from,
                to,
                reason,
                ..
            } => format!("{step}: failed over from {from} to {to}: {reason}"),
            EventKind::Setup { step, setup, .. } => format!("{step}: {}", setup.summary()),
            EventKind::Steered {
                step,
                from,
                message,
                delivery,
                ..
            } => format!("{step}: steered by {from} ({delivery}): {message:?}"),
            EventKind::SessionItem { step, item, .. } => {
                use tidewright_core::session_item::SessionItem as I;
                match item {
                    I::Prompt { text } => format!("{step}: told: {text}"),
                    I::Text { text } => format!("{step}: {text}"),
                    I::Call { tool, .. } => format!("{step}: called {tool}"),
                    I::Output { id, error, .. } => match error {
                        true => format!("{step}: call {id} failed"),
                        false => format!("{step}: call {id} answered"),
                    },
                }
            }
        };
        let mut metadata = Map::new();
        metadata.insert(
            "tidewrightEvent".into(),
            json!({ "seq": event.seq, "event": event.kind }),
        );
        StatusUpdate {
            task_id: self.task_id.clone(),
            context_id: self.context_id.clone(),
            status: TaskStatus {
                state: state_name(self.state, self.interrupted()),
                message: Some(said(
                    text,
                    &self.task_id,
                    &self.context_id,
                    format!("{}-{}", self.task_id, event.seq),
                )),
                timestamp: rfc3339(event.at),
            },
            metadata,
        }
    }

    /// The artifact update for a step that has just succeeded, read from
    /// the task as stored after it.
    pub fn artifact_update(&self, step: &StepRecord) -> Option<StreamResponse> {
        artifact(step).map(|artifact| {
            StreamResponse::ArtifactUpdate(ArtifactUpdate {
                task_id: self.task_id.clone(),
                context_id: self.context_id.clone(),
                artifact,
                last_chunk: true,
            })
        })
    }
}

/// The step an event says has succeeded, if it says so.
pub fn succeeded_step(event: &Event) -> Option<&str> {
    match &event.kind {
        EventKind::StepState {
            step,
            state: StepState::Succeeded,
            ..
        } => Some(step),
        _ => None,
    }
}

/// What the card offers: each template, and each agent runtime.
#[derive(Debug, Clone, Default)]
pub struct Skills {
    pub templates: Vec<Template>,
}

impl Skills {
    fn template(&self, id: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == id)
    }

    /// Every skill's id, templates first.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.templates.iter().map(|t| t.name.clone()).collect();
        for (runtime, _) in RUNTIMES {
            if self.template(runtime).is_none() {
                ids.push(runtime.to_string());
            }
        }
        ids
    }
}

/// What a message asks tidewright to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Run {
    Task(Box<TaskSpec>),
    Template {
        name: String,
        parameters: BTreeMap<String, String>,
    },
}

/// A message checked and read: what to run, in which context, with which
/// idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub run: Run,
    pub context_id: String,
    pub idempotency_key: String,
}

/// Reads a `SendMessage`: the skill is `metadata.skill` (the request's,
/// else the message's); without one the text runs as a prompt task, as
/// `tidewright run` does. A runtime's skill runs the text as that runtime's one
/// step; a template's takes its parameters from the data parts (a JSON
/// object) and the text as its `prompt` parameter, when it has one.
/// `new_context` names a context for a message that names none.
pub fn asked(
    request: &SendMessageRequest,
    skills: &Skills,
    new_context: impl FnOnce() -> String,
) -> Result<Asked, Error> {
    let message = request
        .message
        .as_ref()
        .ok_or_else(|| Error::invalid("message", "is required"))?;
    if message.message_id.is_empty() {
        return Err(Error::invalid("message.messageId", "is required"));
    }
    if !matches!(message.role.as_str(), "" | "ROLE_USER") {
        return Err(Error::invalid(
            "message.role",
            format!(
                "is {:?}; a message to tidewright is ROLE_USER",
                message.role
            ),
        ));
    }
    if !message.task_id.is_empty() {
        return Err(Error::invalid(
            "message.taskId",
            "a tidewright task takes no further messages: send a new one (it may name the \
             task in referenceTaskIds)",
        ));
    }
    if message.context_id.len() > MAX_CONTEXT_ID {
        return Err(Error::invalid(
            "message.contextId",
            format!("is longer than {MAX_CONTEXT_ID} bytes"),
        ));
    }
    if message.parts.is_empty() {
        return Err(Error::invalid(
            "message.parts",
            "at least one part is required",
        ));
    }
    let mut texts = Vec::new();
    let mut data = Vec::new();
    for (i, part) in message.parts.iter().enumerate() {
        let field = format!("message.parts[{i}]");
        let kinds = [
            part.text.is_some(),
            part.raw.is_some(),
            part.url.is_some(),
            part.data.is_some(),
        ];
        match kinds {
            [true, false, false, false] => texts.push(part.text.clone().unwrap_or_default()),
            [false, false, false, true] => {
                data.push((field, part.data.clone().unwrap_or_default()))
            }
            [false, true, false, false] | [false, false, true, false] => {
                return Err(Error::invalid(
                    field,
                    "tidewright takes text and data parts; a file (raw or url) is not run",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    field,
                    "a part holds exactly one of text, raw, url and data",
                ));
            }
        }
    }
    let text = texts.join("\n\n");
    let skill = skill_named(request, message)?;
    let run = match skill.as_deref() {
        None => {
            refuse_data(&data, "a message without a skill")?;
            Run::Task(Box::new(TaskSpec {
                prompt: required_text(text)?,
                ..TaskSpec::default()
            }))
        }
        Some(id) => match skills.template(id) {
            Some(template) => template_run(template, text, data)?,
            None => match RUNTIMES.iter().find(|(runtime, _)| *runtime == id) {
                Some((runtime, _)) => {
                    refuse_data(&data, &format!("skill {id:?}"))?;
                    Run::Task(Box::new(runtime_task(runtime, required_text(text)?)))
                }
                None => {
                    return Err(Error::invalid(
                        "metadata.skill",
                        format!(
                            "{id:?} is not a skill of this agent (there are: {})",
                            skills.ids().join(", ")
                        ),
                    ));
                }
            },
        },
    };
    let context_id = if message.context_id.is_empty() {
        new_context()
    } else {
        message.context_id.clone()
    };
    Ok(Asked {
        run,
        context_id,
        idempotency_key: format!("a2a/{}", message.message_id),
    })
}

/// The skill the request names, if any, as a string.
fn skill_named(request: &SendMessageRequest, message: &Message) -> Result<Option<String>, Error> {
    let named = [
        ("metadata.skill", request.metadata.as_ref()),
        ("message.metadata.skill", message.metadata.as_ref()),
    ]
    .into_iter()
    .find_map(|(field, metadata)| Some((field, metadata?.get(SKILL_KEY)?)));
    match named {
        None => Ok(None),
        Some((_, Value::String(id))) if !id.is_empty() => Ok(Some(id.clone())),
        Some((field, other)) => Err(Error::invalid(
            field,
            format!("is {other}; a skill is named by its id, a string"),
        )),
    }
}

fn required_text(text: String) -> Result<String, Error> {
    if text.trim().is_empty() {
        return Err(Error::invalid(
            "message.parts",
            "a text part saying what to do is required",
        ));
    }
    Ok(text)
}

fn refuse_data(data: &[(String, Value)], what: &str) -> Result<(), Error> {
    match data.first() {
        Some((field, _)) => Err(Error::invalid(
            field.clone(),
            format!("{what} takes text; a data part holds a template's parameters"),
        )),
        None => Ok(()),
    }
}

/// A runtime's one step on `prompt`.
fn runtime_task(runtime: &str, prompt: String) -> TaskSpec {
    let mut step = StepSpec {
        noop: None,
        ..StepSpec::noop(tidewright_core::PROMPT_STEP)
    };
    match runtime {
        tidewright_core::CODEX => {
            step.codex = Some(CodexSpec {
                prompt,
                ..CodexSpec::default()
            })
        }
        tidewright_core::GEMINI_CLI => {
            step.gemini_cli = Some(GeminiSpec {
                prompt,
                ..GeminiSpec::default()
            })
        }
        tidewright_core::CLAUDE_CODE => {
            step.claude_code = Some(ClaudeCodeSpec {
                prompt,
                ..ClaudeCodeSpec::default()
            })
        }
        // An agent CLI with no runtime field of its own.
        cli => {
            step.agent = Some(tidewright_core::AgentSpec {
                cli: cli.to_string(),
                prompt,
                model: None,
            })
        }
    }
    TaskSpec {
        name: format!("a2a-{runtime}"),
        steps: vec![step],
        ..TaskSpec::default()
    }
}

/// A number as a parameter's text. Protobuf's JSON numbers are doubles (a
/// Python or JavaScript SDK sends `2` as `2.0`): a whole one reads as the
/// integer it is.
fn number_text(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// A template's parameters from the data parts (objects, merged in order),
/// and the text as its `prompt` parameter.
fn template_run(
    template: &Template,
    text: String,
    data: Vec<(String, Value)>,
) -> Result<Run, Error> {
    let mut parameters = BTreeMap::new();
    for (field, value) in data {
        let Value::Object(object) = value else {
            return Err(Error::invalid(
                format!("{field}.data"),
                format!(
                    "template {:?} takes its parameters as a JSON object",
                    template.name
                ),
            ));
        };
        for (name, value) in object {
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => number_text(&n),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(Error::invalid(
                        format!("{field}.data.{name}"),
                        format!("is {other}; a parameter is a string, number or boolean"),
                    ));
                }
            };
            parameters.insert(name, value);
        }
    }
    if !text.trim().is_empty() {
        if !template.parameters.contains_key("prompt") {
            let names: Vec<&str> = template.parameters.keys().map(String::as_str).collect();
            return Err(Error::invalid(
                "message.parts",
                format!(
                    "template {:?} has no prompt parameter to take the text; its parameters \
                     ({}) go in a data part",
                    template.name,
                    names.join(", ")
                ),
            ));
        }
        parameters.entry("prompt".to_string()).or_insert(text);
    }
    Ok(Run::Template {
        name: template.name.clone(),
        parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewright_core::template::TemplateFile;

    fn template() -> Template {
        TemplateFile {
            name: "fix".into(),
            text: "description: fixes\nparameters:\n  prompt: {required: true}\n  \
                   issue: {type: integer, required: true}\nsteps:\n- id: s\n  \
                   shell: {command: [echo, '${{ prompt }} ${{ issue }}']}\n"
                .into(),
            origin: "test".into(),
        }
        .load()
        .expect("template loads")
    }

    fn request(parts: Vec<Part>, skill: Option<&str>) -> SendMessageRequest {
        SendMessageRequest {
            message: Some(Message {
                message_id: "m-1".into(),
                role: "ROLE_USER".into(),
                parts,
                ..Message::default()
            }),
            metadata: skill.map(|s| {
                let mut m = Map::new();
                m.insert(SKILL_KEY.into(), Value::String(s.into()));
                m
            }),
            ..SendMessageRequest::default()
        }
    }

    fn skills() -> Skills {
        Skills {
            templates: vec![template()],
        }
    }

    fn refused(request: SendMessageRequest) -> String {
        match asked(&request, &skills(), || "ctx".into()) {
            Err(Error::Service(tidewright_engine::Error::InvalidArgument { field, .. })) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_text_without_a_skill_is_a_prompt_task_in_a_new_context_keyed_by_its_message() {
        let asked = asked(
            &request(vec![Part::text("fix it")], None),
            &skills(),
            || "ctx-new".into(),
        )
        .expect("asked");
        assert_eq!(asked.context_id, "ctx-new");
        assert_eq!(asked.idempotency_key, "a2a/m-1");
        assert_eq!(
            asked.run,
            Run::Task(Box::new(TaskSpec {
                prompt: "fix it".into(),
                ..TaskSpec::default()
            }))
        );
    }

    #[test]
    fn a_template_skill_takes_data_as_parameters_and_text_as_its_prompt() {
        let asked = asked(
            &request(
                vec![
                    Part::text("the flaky test"),
                    Part::data(json!({"issue": 42.0})),
                ],
                Some("fix"),
            ),
            &skills(),
            || "c".into(),
        )
        .expect("asked");
        let Run::Template { name, parameters } = asked.run else {
            panic!("a template run")
        };
        assert_eq!(name, "fix");
        assert_eq!(parameters["issue"], "42");
        assert_eq!(parameters["prompt"], "the flaky test");
    }

    #[test]
    fn a_runtime_skill_runs_the_text_as_its_one_step() {
        let asked = asked(
            &request(vec![Part::text("hi")], Some("codex")),
            &skills(),
            || "c".into(),
        )
        .expect("asked");
        let Run::Task(spec) = asked.run else {
            panic!("a task")
        };
        assert_eq!(spec.steps.len(), 1);
        assert_eq!(
            spec.steps[0].codex.as_ref().map(|c| c.prompt.as_str()),
            Some("hi")
        );
    }

    #[test]
    fn bad_messages_are_refused_naming_the_field() {
        assert_eq!(
            refused(request(vec![Part::text("x")], Some("nope"))),
            "metadata.skill"
        );
        assert_eq!(refused(request(vec![], None)), "message.parts");
        assert_eq!(
            refused(request(
                vec![
                    Part::text("x"),
                    Part {
                        url: Some("https://x".into()),
                        ..Part::default()
                    }
                ],
                None
            )),
            "message.parts[1]"
        );
        assert_eq!(
            refused(request(
                vec![Part {
                    text: Some("a".into()),
                    data: Some(json!({})),
                    ..Part::default()
                }],
                None
            )),
            "message.parts[0]"
        );
        assert_eq!(
            refused(request(vec![Part::data(json!([1]))], Some("fix"))),
            "message.parts[0].data"
        );
        assert_eq!(
            refused(request(vec![Part::data(json!({"issue": 1}))], None)),
            "message.parts[0]"
        );
        let mut agent = request(vec![Part::text("x")], None);
        agent.message.as_mut().expect("message").role = "ROLE_AGENT".into();
        assert_eq!(refused(agent), "message.role");
        let mut follow_up = request(vec![Part::text("x")], None);
        follow_up.message.as_mut().expect("message").task_id = "t".into();
        assert_eq!(refused(follow_up), "message.taskId");
        let mut no_id = request(vec![Part::text("x")], None);
        no_id.message.as_mut().expect("message").message_id.clear();
        assert_eq!(refused(no_id), "message.messageId");
        assert_eq!(refused(SendMessageRequest::default()), "message");
    }

    fn record(state: TaskState, steps: Vec<StepRecord>) -> TaskRecord {
        let mut spec = TaskSpec::default();
        spec.labels.insert(CONTEXT_LABEL.into(), "ctx".into());
        TaskRecord {
            id: "t1".into(),
            tenant: "default".into(),
            spec,
            state,
            idempotency_key: None,
            message: String::new(),
            created_at: 1,
            started_at: 2,
            finished_at: 0,
            steps,
            last_seq: 3,
            cost: Default::default(),
            plan_json: String::new(),
            trace_context: String::new(),
            expires_at: 0,
        }
    }

    fn step(id: &str, state: StepState, output: &str) -> StepRecord {
        StepRecord {
            id: id.into(),
            state,
            attempt: 1,
            worker: String::new(),
            started_at: 0,
            finished_at: 0,
            progress: 0.0,
            progress_message: String::new(),
            output_json: output.into(),
            error: String::new(),
            exit_code: None,
            attempts: vec![],
            cost: Default::default(),
            approval_deadline: 0,
            work: None,
            queued_reason: String::new(),
        }
    }

    #[test]
    fn a_task_shows_its_state_context_and_each_outputs_artifact() {
        let shown = task(&record(
            TaskState::Running,
            vec![
                step("a", StepState::Succeeded, r#"{"result":"done","n":1}"#),
                step("b", StepState::AwaitingApproval, ""),
            ],
        ));
        assert_eq!(shown.context_id, "ctx");
        assert_eq!(shown.status.state, "TASK_STATE_INPUT_REQUIRED");
        assert_eq!(shown.artifacts.len(), 1);
        assert_eq!(shown.artifacts[0].parts[0], Part::text("done"));
        let done = task(&record(TaskState::Succeeded, vec![]));
        assert_eq!(done.status.state, "TASK_STATE_COMPLETED");
    }

    #[test]
    fn events_move_the_followed_state() {
        let mut follow = Follow::new(&record(TaskState::Queued, vec![]));
        let event = |seq, kind| Event {
            task_id: "t1".into(),
            seq,
            at: 5,
            kind,
        };
        let running = follow.update(&event(
            1,
            EventKind::TaskState {
                state: TaskState::Running,
                message: String::new(),
            },
        ));
        assert_eq!(running.status.state, "TASK_STATE_WORKING");
        let waiting = follow.update(&event(
            2,
            EventKind::StepState {
                step: "b".into(),
                state: StepState::AwaitingApproval,
                attempt: 1,
                worker: String::new(),
                message: String::new(),
                waits_for: String::new(),
                conflict: None,
            },
        ));
        assert_eq!(waiting.status.state, "TASK_STATE_INPUT_REQUIRED");
        assert!(follow.interrupted());
        let done = follow.update(&event(
            3,
            EventKind::TaskState {
                state: TaskState::Succeeded,
                message: String::new(),
            },
        ));
        assert_eq!(done.status.state, "TASK_STATE_COMPLETED");
        assert!(follow.finished());
    }
}
