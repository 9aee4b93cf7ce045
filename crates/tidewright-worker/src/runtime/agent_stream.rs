//! What reads an agent CLI's stream as its run goes ([`AgentStream`],
//! one per CLI): its session, its spend, its provider's limits; and what
//! the worker logs when a limit stopped it.

use tidewright_core::Cost;

use super::attempt::Limit;
use super::process::LineReader;

/// What the worker logs of a run the provider's `limit` stopped: the
/// pool's `agents` (a runtime's capability) pause, and the attempt does
/// not count.
pub(crate) fn paused(agents: &str, limit: &Limit) -> String {
    format!(
        "the provider's limit stopped the agent ({}): the pool's {agents} agents pause, and this attempt does not count",
        limit.signal
    )
}

/// One run's stream as it is read: progress, tool calls, usage, the
/// result and provider limits, from the CLI's structured fields.
pub trait AgentStream: LineReader + 'static {
    /// The session the run started or resumed; empty before it said.
    fn session_id(&self) -> &str;
    /// What the run's model responses cost so far.
    fn spent(&self) -> Cost;
    /// Whether a run's spend is read from its session's transcript as the
    /// CLI writes it ([`AgentStream::read_transcript`]): for a CLI whose
    /// stream reports tokens only when its turn ends, so that a budget
    /// stops it within the turn.
    const SPEND_IN_TRANSCRIPT: bool = false;
    /// Whether the stream says the prompt its session took (as a session
    /// item); the worker says it for a CLI whose stream does not.
    const SAYS_PROMPT: bool = true;
    /// One line the CLI added to its session's transcript during this run;
    /// true when what the run spent grew.
    fn read_transcript(&mut self, _line: &str) -> bool {
        false
    }
    /// The provider's limit, when that is what ended a run that failed
    /// with `error`.
    fn limit(&self, error: &str) -> Option<Limit>;
    /// What the worker logs of the API error that ended the run, if one
    /// did: its status and what tidewright does with it.
    fn api_error_line(&self, limit: Option<&Limit>) -> Option<String>;
}
