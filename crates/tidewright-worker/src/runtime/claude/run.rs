//! One Claude Code run as its stream is read: the session and model it
//! started, each turn as progress, what the agent says and does as log
//! lines, the cost after each model response, the result, and a provider
//! limit.

use tidewright_api::view::format_utc;
use tidewright_core::{AttemptKey, Cost};

use super::limits;
use super::stream::{LimitEvent, Line, Prices, RunResult, Usage, parse_line};
use crate::runtime::agent_stream::AgentStream;
use crate::runtime::attempt::{FromAttempt, Limit};
use crate::runtime::process::LineReader;
use crate::runtime::repeats::ToolCall;
use crate::runtime::steer::Progress;
use crate::secrets::Redactor;

/// What has been read of one CLI run so far.
#[derive(Debug, Default)]
pub struct ClaudeRun {
    max_turns: u32,
    pub(super) session_id: String,
    pub(super) model: String,
    /// Assistant messages seen: one per turn.
    turns: u32,
    last_message: String,
    pub(super) result: Option<RunResult>,
    /// What the model responses before the current one cost, priced here.
    settled: Cost,
    /// The current response's usage so far, and its model.
    turn: Usage,
    turn_model: String,
    /// A `rate_limit_event` said the limit was hit.
    limit_event: Option<LimitEvent>,
    /// The tool calls read and not yet taken.
    calls: Vec<ToolCall>,
    /// For a run fed through its streaming input: the messages it took and
    /// the turns it ended, which say when its input may close.
    progress: Option<tokio::sync::watch::Sender<Progress>>,
    /// Messages replayed: the prompt, then each person's message.
    replayed: u32,
}

impl ClaudeRun {
    pub fn new(max_turns: u32) -> Self {
        ClaudeRun {
            max_turns,
            ..ClaudeRun::default()
        }
    }

    /// Its progress as its lines are read, for what feeds its input.
    pub fn watched(&mut self) -> tokio::sync::watch::Receiver<Progress> {
        let (tx, rx) = tokio::sync::watch::channel(Progress::default());
        self.progress = Some(tx);
        rx
    }

    fn tell(&self, change: impl FnOnce(&mut Progress)) {
        if let Some(progress) = &self.progress {
            progress.send_modify(change);
        }
    }

    /// What the attempt's model responses have cost so far, priced from
    /// their usage (see [`Prices`]).
    fn spent(&self) -> Cost {
        let turn = &self.turn;
        Cost {
            usd: self.settled.usd + Prices::of(&self.turn_model).cost(turn),
            input_tokens: self.settled.input_tokens + turn.input_tokens,
            output_tokens: self.settled.output_tokens + turn.output_tokens,
            cache_read_tokens: self.settled.cache_read_tokens + turn.cache_read_input_tokens,
            cache_creation_tokens: self.settled.cache_creation_tokens
                + turn.cache_creation_input_tokens,
        }
    }
}

impl LineReader for ClaudeRun {
    fn take_tool_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    fn said(&mut self, raw: &str) -> Vec<tidewright_core::session_item::SessionItem> {
        crate::runtime::claude::stream::stream_json_items(raw)
    }

    fn usd(&self) -> f64 {
        AgentStream::spent(self).usd
    }

    /// The reports one stdout line makes: log lines for what the agent says
    /// and does, progress at each new turn, the cost so far after each
    /// model response.
    fn read(&mut self, raw: &str, attempt: &AttemptKey, redactor: &Redactor) -> Vec<FromAttempt> {
        let log = |line: String| FromAttempt::agent_log(attempt, redactor, line);
        match parse_line(raw) {
            Ok(Line::Init { session_id, model }) => {
                let line = format!("claude session {session_id} (model {model})");
                self.session_id.clone_from(&session_id);
                self.model.clone_from(&model);
                vec![
                    log(line),
                    FromAttempt::Session {
                        attempt: attempt.clone(),
                        session_id,
                        model,
                    },
                ]
            }
            Ok(Line::Assistant {
                message_id,
                log: text,
                calls,
            }) => {
                self.calls.extend(calls);
                let mut reports = Vec::new();
                if message_id != self.last_message {
                    self.last_message = message_id;
                    self.turns += 1;
                    let first = text.lines().next().unwrap_or_default();
                    let mut message = format!("turn {} of {}: {first}", self.turns, self.max_turns);
                    tidewright_core::truncate_at_char_boundary(&mut message, 200);
                    reports.push(FromAttempt::Progress {
                        attempt: attempt.clone(),
                        fraction: (self.turns as f32 / self.max_turns.max(1) as f32).min(1.0),
                        message: redactor.redact(message),
                    });
                }
                reports.extend(text.lines().map(|line| log(line.to_string())));
                reports
            }
            Ok(Line::ApiRetry(message)) => vec![log(message)],
            Ok(Line::TurnStarted { model, usage }) => {
                self.settled = self.spent();
                self.turn = usage;
                self.turn_model = model;
                Vec::new()
            }
            Ok(Line::RateLimited(event)) => {
                let until = event
                    .resets_at
                    .map(|at| format!(" until {}", format_utc(at)))
                    .unwrap_or_default();
                self.limit_event = Some(event);
                vec![log(format!(
                    "the provider's usage limit was reached{until}"
                ))]
            }
            Ok(Line::TurnUsage(usage)) => {
                self.turn = self.turn.max(&usage);
                vec![FromAttempt::Spend {
                    attempt: attempt.clone(),
                    cost: self.spent(),
                }]
            }
            Ok(Line::Replayed(said)) => {
                self.replayed += 1;
                self.tell(|p| p.replayed += 1);
                // The first is the prompt; each after it a person's
                // message, now in the session.
                if self.replayed > 1 {
                    let mut line = format!("the agent took the message: {said}");
                    tidewright_core::truncate_at_char_boundary(&mut line, 500);
                    vec![log(line)]
                } else {
                    Vec::new()
                }
            }
            Ok(Line::Result(result)) => {
                let failed = result.failure(None).is_some();
                self.result = Some(*result);
                self.tell(|p| {
                    p.results += 1;
                    p.failed = failed;
                });
                Vec::new()
            }
            Ok(Line::Other) => Vec::new(),
            // The CLI's own warnings can land on stdout: keep them as logs.
            Err(_) => vec![log(raw.trim_end().to_string())],
        }
    }
}

impl AgentStream for ClaudeRun {
    fn session_id(&self) -> &str {
        &self.session_id
    }

    fn spent(&self) -> Cost {
        ClaudeRun::spent(self)
    }

    fn limit(&self, error: &str) -> Option<Limit> {
        limits::classify(self.limit_event.as_ref(), self.result.as_ref(), error)
    }

    fn api_error_line(&self, limit: Option<&Limit>) -> Option<String> {
        api_error_line(self.result.as_ref(), limit)
    }
}

/// What the worker says of a run that ended on an API error: the status,
/// and what tidewright does with it. `None` when the run reported no status.
fn api_error_line(result: Option<&RunResult>, limit: Option<&Limit>) -> Option<String> {
    if let Some(limit) = limit {
        return Some(format!(
            "the provider's limit stopped the agent ({}): the pool pauses, and this attempt does not count",
            limit.signal
        ));
    }
    let result = result?;
    let status = result.api_error_status?;
    let kind = if result.api_error_type.is_empty() {
        String::new()
    } else {
        format!(" ({})", result.api_error_type)
    };
    Some(if status >= 500 {
        format!(
            "the API failed on its side (api_error_status {status}{kind}): the attempt fails, and the step's retry policy runs it again"
        )
    } else {
        format!("the API refused the request (api_error_status {status}{kind}): the attempt fails")
    })
}
