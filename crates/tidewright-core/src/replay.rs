//! Session replay: an agent step's session as one timeline, turn by turn.
//! Each agent CLI's stream is read by its runtime on the worker into
//! [`SessionItem`]s (the same for every CLI), kept as the step's events
//! beside its verify rounds, steering, state changes and failovers;
//! [`timeline`] puts them in order, pairs each tool call with its output,
//! and numbers the turns. Pure, so every rule is unit-tested.

use serde::Serialize;

use crate::session_item::SessionItem;
use crate::state::{Event, EventKind, Micros};

/// One entry of a step's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub at: Micros,
    pub attempt: u32,
    /// The turn of its attempt's session it belongs to: 1 from the first
    /// prompt, one more at each prompt after; 0 before the first.
    pub turn: u32,
    /// What the attempt had cost, in dollars, when its session said it; 0
    /// for entries its session did not say.
    pub usd: f64,
    #[serde(flatten)]
    pub what: What,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum What {
    Prompt {
        text: String,
    },
    Text {
        text: String,
    },
    /// A tool call with its output, once the output came (`None` before:
    /// a live step's call under way, or a run that ended within it).
    Call {
        id: String,
        tool: String,
        input: String,
        output: Option<String>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        error: bool,
    },
    /// The step's state changed: an attempt started on a worker, paused
    /// for a provider's limit, ended.
    State {
        state: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        worker: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        message: String,
    },
    /// A verify round: its checks on the agent's committed work.
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
    /// The step moved to another runtime: a provider's limit.
    FailedOver {
        from: String,
        to: String,
        reason: String,
    },
}

/// Step `step`'s timeline from its task's events, in their order: each
/// tool call holds its output, turns are numbered per attempt, and each
/// entry carries the attempt's cost as its session last said it.
pub fn timeline(step: &str, events: &[Event]) -> Vec<Entry> {
    let mut timeline = Timeline::new(step);
    for event in events {
        timeline.add(event);
    }
    timeline.entries
}

/// A timeline made as its task's events are read, page by page: only
/// its step's are kept.
pub struct Timeline {
    step: String,
    pub entries: Vec<Entry>,
    /// Per attempt: its turn now, and its cost as last said.
    turns: std::collections::BTreeMap<u32, (u32, f64)>,
}

impl Timeline {
    pub fn new(step: &str) -> Self {
        Timeline {
            step: step.to_string(),
            entries: Vec::new(),
            turns: Default::default(),
        }
    }

    /// Takes the next of the task's events; another step's, or a kind the
    /// timeline does not show, changes nothing.
    pub fn add(&mut self, event: &Event) {
        let Some((attempt, what, usd)) = self.what(&event.kind) else {
            return;
        };
        let now = self.turns.entry(attempt).or_default();
        if matches!(what, What::Prompt { .. }) {
            now.0 += 1;
        }
        if let Some(usd) = usd {
            now.1 = usd;
        }
        self.entries.push(Entry {
            at: event.at,
            attempt,
            turn: now.0,
            usd: now.1,
            what,
        });
    }

    /// The entries, the end of each attempt that has ended carrying its
    /// final cost (`ended`: the attempt, what it cost): a CLI's own total,
    /// or one a CLI reports only as its turn ends, is known then. An
    /// attempt's state changes after it started (all but `running`) are
    /// its end and what followed it; an event's time is not compared with
    /// the attempt's, which the engine takes apart.
    pub fn finish(mut self, ended: &[(u32, f64)]) -> Vec<Entry> {
        for entry in &mut self.entries {
            let end = ended.iter().find(|(a, _)| *a == entry.attempt);
            if let (What::State { state, .. }, Some((_, usd))) = (&entry.what, end)
                && state != "running"
            {
                entry.usd = *usd;
            }
        }
        self.entries
    }

    /// What `kind` adds as an entry, of which attempt, with the cost its
    /// session said; `None` when it adds none (an output its call took).
    fn what(&mut self, kind: &EventKind) -> Option<(u32, What, Option<f64>)> {
        let (of, attempt, what) = match kind {
            EventKind::SessionItem {
                step,
                attempt,
                item,
                usd,
            } => {
                if *step != self.step {
                    return None;
                }
                let what = match item.clone() {
                    SessionItem::Prompt { text } => What::Prompt { text },
                    SessionItem::Text { text } => What::Text { text },
                    SessionItem::Call { id, tool, input } => What::Call {
                        id,
                        tool,
                        input,
                        output: None,
                        error: false,
                    },
                    SessionItem::Output { id, output, error } => {
                        if self.answered(*attempt, &id, &output, error) {
                            self.turns.entry(*attempt).or_default().1 = *usd;
                            return None;
                        }
                        // An output whose call is not in view stands
                        // alone, as a call of "?".
                        What::Call {
                            id,
                            tool: "?".into(),
                            input: String::new(),
                            output: Some(output),
                            error,
                        }
                    }
                };
                return Some((*attempt, what, Some(*usd)));
            }
            EventKind::StepState {
                step,
                state,
                attempt,
                worker,
                message,
                ..
            } => (
                step,
                *attempt,
                What::State {
                    state: state.as_str().to_string(),
                    worker: worker.clone(),
                    message: message.clone(),
                },
            ),
            EventKind::Verification {
                step,
                attempt,
                round,
                passed,
                message,
            } => (
                step,
                *attempt,
                What::Verification {
                    round: *round,
                    passed: *passed,
                    message: message.clone(),
                },
            ),
            EventKind::Steered {
                step,
                attempt,
                from,
                message,
                delivery,
            } => (
                step,
                *attempt,
                What::Steered {
                    from: from.clone(),
                    message: message.clone(),
                    delivery: delivery.clone(),
                },
            ),
            EventKind::FailedOver {
                step,
                attempt,
                from,
                to,
                reason,
                ..
            } => (
                step,
                *attempt,
                What::FailedOver {
                    from: from.clone(),
                    to: to.clone(),
                    reason: reason.clone(),
                },
            ),
            _ => return None,
        };
        (*of == self.step).then_some((attempt, what, None))
    }

    /// Gives the output to its call, the last of `attempt`'s with that id
    /// still without one; false when there is none.
    fn answered(&mut self, attempt: u32, id: &str, output: &str, error: bool) -> bool {
        let call = self.entries.iter_mut().rev().find(|e| {
            e.attempt == attempt
                && matches!(&e.what, What::Call { id: c, output: None, .. } if c == id)
        });
        match call {
            Some(Entry {
                what:
                    What::Call {
                        output: o,
                        error: e,
                        ..
                    },
                ..
            }) => {
                *o = Some(output.to_string());
                *e = error;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StepState;

    fn event(seq: u64, kind: EventKind) -> Event {
        Event {
            task_id: "t".into(),
            seq,
            at: seq as Micros * 1000,
            kind,
        }
    }

    /// Step `step`'s attempt 1 moved to `state`.
    fn moved(seq: u64, step: &str, state: StepState) -> Event {
        event(
            seq,
            EventKind::StepState {
                step: step.into(),
                state,
                attempt: 1,
                worker: String::new(),
                message: String::new(),
                waits_for: String::new(),
                conflict: None,
            },
        )
    }

    fn said(step: &str, attempt: u32, item: SessionItem, usd: f64) -> EventKind {
        EventKind::SessionItem {
            step: step.into(),
            attempt,
            item,
            usd,
        }
    }

    fn call(id: &str) -> SessionItem {
        SessionItem::Call {
            id: id.into(),
            tool: "Bash".into(),
            input: r#"{"command":"ls"}"#.into(),
        }
    }

    fn output(id: &str, text: &str) -> SessionItem {
        SessionItem::Output {
            id: id.into(),
            output: text.into(),
            error: false,
        }
    }

    #[test]
    fn a_call_holds_its_output_and_turns_count_prompts_per_attempt() {
        let prompt = |text: &str| SessionItem::Prompt { text: text.into() };
        let events = vec![
            moved(1, "fix", StepState::Running),
            event(2, said("fix", 1, prompt("fix the bug"), 0.0)),
            event(3, said("fix", 1, call("c1"), 0.01)),
            event(4, said("other", 1, call("c1"), 0.5)),
            event(5, said("fix", 1, output("c1", "a.rs"), 0.01)),
            event(6, said("fix", 1, prompt("use v2"), 0.01)),
            event(
                7,
                said(
                    "fix",
                    1,
                    SessionItem::Text {
                        text: "done".into(),
                    },
                    0.02,
                ),
            ),
            event(8, said("fix", 2, prompt("again"), 0.0)),
            event(9, said("fix", 2, output("c9", "orphan"), 0.001)),
        ];
        let entries = timeline("fix", &events);
        let shape: Vec<(u32, u32, f64)> =
            entries.iter().map(|e| (e.attempt, e.turn, e.usd)).collect();
        assert_eq!(
            shape,
            vec![
                (1, 0, 0.0),
                (1, 1, 0.0),
                (1, 1, 0.01),
                (1, 2, 0.01),
                (1, 2, 0.02),
                (2, 1, 0.0),
                (2, 1, 0.001),
            ]
        );
        assert_eq!(
            entries[2].what,
            What::Call {
                id: "c1".into(),
                tool: "Bash".into(),
                input: r#"{"command":"ls"}"#.into(),
                output: Some("a.rs".into()),
                error: false,
            }
        );
        assert!(
            matches!(&entries[6].what, What::Call { tool, output: Some(o), .. } if tool == "?" && o == "orphan")
        );
    }

    #[test]
    fn an_output_goes_to_its_own_attempts_call() {
        let events = vec![
            event(1, said("s", 1, call("c1"), 0.0)),
            event(2, said("s", 2, call("c1"), 0.0)),
            event(3, said("s", 2, output("c1", "second"), 0.0)),
        ];
        let entries = timeline("s", &events);
        assert!(matches!(&entries[0].what, What::Call { output: None, .. }));
        assert!(matches!(&entries[1].what, What::Call { output: Some(o), .. } if o == "second"));
    }

    #[test]
    fn an_attempts_end_carries_its_final_cost() {
        let mut timeline = Timeline::new("s");
        for event in [
            moved(1, "s", StepState::Running),
            event(2, said("s", 1, call("c"), 0.0)),
            moved(3, "s", StepState::Succeeded),
        ] {
            timeline.add(&event);
        }
        let entries = timeline.finish(&[(1, 0.25), (2, 9.0)]);
        let usd: Vec<f64> = entries.iter().map(|e| e.usd).collect();
        assert_eq!(usd, vec![0.0, 0.0, 0.25]);
    }
}
