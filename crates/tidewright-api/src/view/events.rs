//! The JSON shapes of a task's events, as watchers read them: the HTTP
//! API's server-sent events and `tidewright watch -o json`.

use serde::Serialize;

use super::{rfc3339, step_state_name, task_state_name};
use crate::v1;

/// One event of a task's log, as a watcher reads it (the HTTP API's
/// server-sent events carry one each, with `seq` as the event id).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub task_id: String,
    pub seq: u64,
    /// Its place in the fleet's order, on the fleet stream only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(flatten)]
    pub kind: EventKindView,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum EventKindView {
    TaskState {
        state: &'static str,
        #[serde(skip_serializing_if = "String::is_empty")]
        message: String,
    },
    StepState {
        step: String,
        state: &'static str,
        attempt: u32,
        #[serde(skip_serializing_if = "String::is_empty")]
        worker: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        message: String,
        /// The step whose `touches` may overlap this one's, which it
        /// waits for; `<task>/<step>` for another task's.
        #[serde(rename = "waitsFor", skip_serializing_if = "String::is_empty")]
        waits_for: String,
        /// Its dependencies' work that would not merge.
        #[serde(skip_serializing_if = "Option::is_none")]
        conflict: Option<ConflictView>,
    },
    Progress {
        step: String,
        attempt: u32,
        fraction: f32,
        #[serde(skip_serializing_if = "String::is_empty")]
        message: String,
    },
    Log {
        step: String,
        attempt: u32,
        stream: &'static str,
        line: String,
    },
    /// A connection the step asked of its egress proxy.
    Egress {
        step: String,
        attempt: u32,
        /// `host:port`.
        destination: String,
        allowed: bool,
        #[serde(skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// A verified step's round of checks on its committed work.
    Verification {
        step: String,
        attempt: u32,
        round: u32,
        passed: bool,
        message: String,
    },
    /// An agent step moved to one of its fallback runtimes.
    FailedOver {
        step: String,
        attempt: u32,
        from: String,
        to: String,
        reason: String,
        /// Its work so far and a summary of its session went with it.
        carried: bool,
    },
    /// What a step's setup did before its process ran.
    Setup {
        step: String,
        attempt: u32,
        setup: super::task::SetupView,
    },
    /// A person's message sent into a running agent step's session.
    Steered {
        step: String,
        attempt: u32,
        from: String,
        message: String,
        delivery: String,
    },
    /// An item of an agent step's session as its CLI streamed it, and
    /// what its attempt had cost then.
    SessionItem {
        step: String,
        attempt: u32,
        item: SessionItemView,
        usd: f64,
    },
    /// A kind this build does not know.
    Unknown,
}

/// One item of an agent's session, the same for every CLI: a message to
/// the agent (`prompt`, which starts a turn), what it said (`text`), a
/// tool it called (`call`, its arguments as JSON) and what the call
/// answered (`output`). Masked; each text cut at 16 KiB, the cut said.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SessionItemView {
    Prompt {
        text: String,
    },
    Text {
        text: String,
    },
    Call {
        id: String,
        tool: String,
        input: String,
    },
    Output {
        id: String,
        output: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        error: bool,
    },
}

/// The wire's session item as the API shows it; `None` for a kind this
/// build does not know.
pub fn session_item_view(item: &v1::SessionItem) -> Option<SessionItemView> {
    use tidewright_core::session_item::SessionItem as I;
    Some(match I::try_from(item.clone()).ok()? {
        I::Prompt { text } => SessionItemView::Prompt { text },
        I::Text { text } => SessionItemView::Text { text },
        I::Call { id, tool, input } => SessionItemView::Call { id, tool, input },
        I::Output { id, output, error } => SessionItemView::Output { id, output, error },
    })
}

impl EventKindView {
    /// The `type` field's value: the SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKindView::TaskState { .. } => "taskState",
            EventKindView::StepState { .. } => "stepState",
            EventKindView::Progress { .. } => "progress",
            EventKindView::Log { .. } => "log",
            EventKindView::Egress { .. } => "egress",
            EventKindView::Verification { .. } => "verification",
            EventKindView::FailedOver { .. } => "failedOver",
            EventKindView::Setup { .. } => "setup",
            EventKindView::Steered { .. } => "steered",
            EventKindView::SessionItem { .. } => "sessionItem",
            EventKindView::Unknown => "unknown",
        }
    }
}

/// Dependencies' work that would not merge: `with`'s head against the
/// merge of those `after` it, in `paths`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConflictView {
    pub with: String,
    pub after: Vec<String>,
    pub paths: Vec<String>,
}

pub fn event_view(event: &v1::Event) -> EventView {
    use v1::event::Kind;
    let kind = match &event.kind {
        Some(Kind::TaskState(e)) => EventKindView::TaskState {
            state: task_state_name(e.state),
            message: e.message.clone(),
        },
        Some(Kind::StepState(e)) => EventKindView::StepState {
            step: e.step_id.clone(),
            state: step_state_name(e.state),
            attempt: e.attempt,
            worker: e.worker.clone(),
            message: e.message.clone(),
            waits_for: e.waits_for.clone(),
            conflict: e.conflict.as_ref().map(|c| ConflictView {
                with: c.with.clone(),
                after: c.after.clone(),
                paths: c.paths.clone(),
            }),
        },
        Some(Kind::Progress(e)) => EventKindView::Progress {
            step: e.step_id.clone(),
            attempt: e.attempt,
            fraction: e.fraction,
            message: e.message.clone(),
        },
        Some(Kind::Log(e)) => EventKindView::Log {
            step: e.step_id.clone(),
            attempt: e.attempt,
            stream: match v1::LogStream::try_from(e.stream) {
                Ok(v1::LogStream::Stderr) => "stderr",
                _ => "stdout",
            },
            line: e.line.clone(),
        },
        Some(Kind::Egress(e)) => EventKindView::Egress {
            step: e.step_id.clone(),
            attempt: e.attempt,
            destination: e.destination.clone(),
            allowed: e.allowed,
            reason: e.reason.clone(),
        },
        Some(Kind::Verification(e)) => EventKindView::Verification {
            step: e.step_id.clone(),
            attempt: e.attempt,
            round: e.round,
            passed: e.passed,
            message: e.message.clone(),
        },
        Some(Kind::FailedOver(e)) => EventKindView::FailedOver {
            step: e.step_id.clone(),
            attempt: e.attempt,
            from: e.from.clone(),
            to: e.to.clone(),
            reason: e.reason.clone(),
            carried: e.carried,
        },
        Some(Kind::Setup(e)) => EventKindView::Setup {
            step: e.step_id.clone(),
            attempt: e.attempt,
            setup: super::task::setup_view(&e.setup.clone().unwrap_or_default()),
        },
        Some(Kind::Steered(e)) => EventKindView::Steered {
            step: e.step_id.clone(),
            attempt: e.attempt,
            from: e.from.clone(),
            message: e.message.clone(),
            delivery: e.delivery.clone(),
        },
        Some(Kind::SessionItem(e)) => match e.item.as_ref().and_then(session_item_view) {
            Some(item) => EventKindView::SessionItem {
                step: e.step_id.clone(),
                attempt: e.attempt,
                item,
                usd: e.usd,
            },
            None => EventKindView::Unknown,
        },
        None => EventKindView::Unknown,
    };
    EventView {
        task_id: event.task_id.clone(),
        seq: event.seq,
        position: (event.position > 0).then_some(event.position),
        time: rfc3339(&event.time),
        kind,
    }
}
