//! Attempts: one agent step run several times at once, across runtimes,
//! each in its own checkout on its own branch, and one of them chosen. At
//! submit a step with `attempts` becomes its attempts (`fix.1`, `fix.2`,
//! ...) and, under the step's own id, the step that chooses among them:
//! what depends on the step continues from the chosen attempt's work.
//! Which attempt wins, among those that passed, is decided here; the
//! expansion is [`expand`], the judge's part [`judge`].

pub mod expand;
pub mod judge;
pub mod score;

use serde::{Deserialize, Serialize};

/// The most attempts a step may ask for.
pub const MAX_ATTEMPTS: u32 = 10;

/// Between a step's id and its attempt's number: no step id a user writes
/// holds it, so an attempt's id never collides with a step's.
pub const SEPARATOR: char = '.';

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttemptsSpec {
    /// How many attempts run at once (1 to 10).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 10)))]
    pub n: u32,
    /// The agent runtimes they run on, taken in turn (`[claude-code,
    /// codex, gemini-cli]`); the step's own runtime `n` times when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<String>,
    /// How the winner is chosen among the attempts that passed.
    #[serde(default, skip_serializing_if = "Select::is_default")]
    pub select: Select,
    /// Stop the other attempts once one passes: it wins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_early: bool,
}

/// How the winner is chosen among the attempts that passed (for a step
/// with `verify`, those whose checks passed; else those whose agent
/// finished).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// The step's checks, then a judge among those that passed them.
    #[default]
    ChecksThenJudge,
    /// The step's checks alone: of those that passed, the one sent back
    /// the fewest times, then the cheapest, then the first listed.
    Checks,
    /// A judge among the attempts that finished, for a step without checks.
    Judge,
    /// The first to pass wins, and the others are stopped.
    FirstPassing,
    /// A value that came over the wire and is none of these; validation
    /// refuses it by name. Never read from YAML.
    #[serde(skip)]
    Unknown(String),
}

impl Select {
    pub fn as_str(&self) -> &str {
        match self {
            Select::ChecksThenJudge => "checks-then-judge",
            Select::Checks => "checks",
            Select::Judge => "judge",
            Select::FirstPassing => "first-passing",
            Select::Unknown(other) => other,
        }
    }

    /// "" is the default.
    pub fn parse(name: &str) -> Select {
        match name {
            "" | "checks-then-judge" => Select::ChecksThenJudge,
            "checks" => Select::Checks,
            "judge" => Select::Judge,
            "first-passing" => Select::FirstPassing,
            other => Select::Unknown(other.to_string()),
        }
    }

    fn is_default(&self) -> bool {
        *self == Select::ChecksThenJudge
    }

    /// Whether the step's checks decide first: it needs `verify`.
    pub fn needs_checks(&self) -> bool {
        matches!(self, Select::ChecksThenJudge | Select::Checks)
    }

    /// Whether a judge compares the attempts when more than one passed.
    pub fn judged(&self) -> bool {
        matches!(self, Select::ChecksThenJudge | Select::Judge)
    }
}

/// The step tidewright puts under the id of a step with attempts: it waits
/// for every attempt to end (or one to pass, stopping early), then takes
/// the winner's work and output as its own. A task file never sets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectSpec {
    /// Its attempts' step ids, in order.
    pub attempts: Vec<String>,
    pub select: Select,
    pub stop_early: bool,
    /// What the attempts were asked, for the judge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
}

impl SelectSpec {
    /// Whether the others stop once one passes.
    pub fn stops_early(&self) -> bool {
        self.stop_early || self.select == Select::FirstPassing
    }
}

/// The id of attempt `k` (from 1) of step `step`.
pub fn attempt_id(step: &str, k: u32) -> String {
    format!("{step}{SEPARATOR}{k}")
}

/// The runtime of attempt `k` (from 1): the runtimes in turn, else the
/// step's own.
pub fn runtime_of<'a>(attempts: &'a AttemptsSpec, own: &'a str, k: u32) -> &'a str {
    if attempts.runtimes.is_empty() {
        return own;
    }
    let i = (k as usize - 1) % attempts.runtimes.len();
    &attempts.runtimes[i]
}

/// One attempt as the choice sees it, once it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Its place among the step's attempts (from 0).
    pub index: usize,
    /// It passed: its agent finished and, with `verify`, its checks passed.
    pub passed: bool,
    /// The rounds its checks ran (1 when it passed first time; 0 without
    /// `verify`).
    pub rounds: u32,
    pub usd: f64,
}

/// The attempt that wins without a judge: of those that passed, the one
/// sent back the fewest times, then the cheapest, then the first listed.
/// `None` when none passed.
pub fn best(finished: &[Finished]) -> Option<usize> {
    finished
        .iter()
        .filter(|f| f.passed)
        .min_by(|a, b| {
            a.rounds
                .cmp(&b.rounds)
                .then(a.usd.total_cmp(&b.usd))
                .then(a.index.cmp(&b.index))
        })
        .map(|f| f.index)
}

#[cfg(test)]
#[path = "attempts_tests.rs"]
mod tests;
