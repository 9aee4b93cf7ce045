//! A step's session replay as the HTTP API answers it: the step as
//! stored (its attempts with their costs and verify rounds), its timeline,
//! and its diff.

use serde::Serialize;
use tidewright_core::replay::{Entry, What};

use super::{StepView, rfc3339};
use crate::convert::timestamp;

/// An agent step's session, turn by turn: what it was told, what it said,
/// each tool call with its input and output, and around them its states,
/// verify rounds, steering and failovers, with the cost so far. Masked as
/// the worker masked it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayView {
    pub task_id: String,
    /// The step as `GET /tasks/{id}` shows it: its attempts, each with its
    /// cost and its verify round's checks and diff.
    pub step: StepView,
    pub entries: Vec<EntryView>,
    /// The step's own changes to the repository as a unified diff; empty
    /// when it changed nothing or its branch is no longer kept.
    pub diff: String,
}

/// One entry of the timeline.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    pub time: String,
    pub attempt: u32,
    /// The turn of the attempt's session: 1 from its first prompt, one
    /// more at each prompt after; 0 before the first.
    pub turn: u32,
    /// What the attempt had cost when its session said this, in dollars.
    pub usd: f64,
    #[serde(flatten)]
    pub what: WhatView,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum WhatView {
    /// A message to the agent: the prompt, a steering message, its checks'
    /// feedback. Starts a turn.
    Prompt { text: String },
    /// What the agent said.
    Text { text: String },
    /// A tool call: its input as JSON, its output once it came.
    Call {
        id: String,
        tool: String,
        input: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        error: bool,
    },
    /// The step's state changed: an attempt started, paused for a
    /// provider's limit, ended.
    State {
        state: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        worker: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        message: String,
    },
    /// A verify round on the agent's committed work.
    Verification {
        round: u32,
        passed: bool,
        message: String,
    },
    /// A person's message sent into the session.
    Steered {
        from: String,
        message: String,
        delivery: String,
    },
    /// The step moved to another runtime.
    FailedOver {
        from: String,
        to: String,
        reason: String,
    },
}

pub fn entry_view(entry: &Entry) -> EntryView {
    let what = match entry.what.clone() {
        What::Prompt { text } => WhatView::Prompt { text },
        What::Text { text } => WhatView::Text { text },
        What::Call {
            id,
            tool,
            input,
            output,
            error,
        } => WhatView::Call {
            id,
            tool,
            input,
            output,
            error,
        },
        What::State {
            state,
            worker,
            message,
        } => WhatView::State {
            state,
            worker,
            message,
        },
        What::Verification {
            round,
            passed,
            message,
        } => WhatView::Verification {
            round,
            passed,
            message,
        },
        What::Steered {
            from,
            message,
            delivery,
        } => WhatView::Steered {
            from,
            message,
            delivery,
        },
        What::FailedOver { from, to, reason } => WhatView::FailedOver { from, to, reason },
    };
    EntryView {
        time: rfc3339(&Some(timestamp(entry.at))).unwrap_or_default(),
        attempt: entry.attempt,
        turn: entry.turn,
        usd: entry.usd,
        what,
    }
}
