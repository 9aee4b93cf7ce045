//! `runtimes: auto`: a step's agent runtime chosen at submit from how each
//! runtime fared on the task's repository. The outcomes are those kept:
//! every attempt of a step with attempts, and every task of an eval run
//! (`tidewright eval`). The step goes to the runtime with the most passes
//! per dollar whose expected cost fits the task's budget; the choice and
//! its reasons are written into the step ([`Chosen`]), and its first event
//! says them.
//!
//! A pass rate is counted as `(passed + 1) / (tries + 2)` (Laplace's rule):
//! one lucky try does not outrank a long record, and a runtime with few
//! tries is neither written off nor crowned. A runtime that never passed
//! is chosen only when none did.

use serde::{Deserialize, Serialize};

use crate::attempts::score::Standing;

mod apply;
mod scores;

pub use apply::apply;
pub use scores::{Ran, scores_of};

/// What a step's `runtimes` says. Only `auto` for now: the runtimes a step
/// runs on are otherwise its own, or its attempts'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Runtimes {
    /// The runtime with the most passes per dollar on the repository.
    Auto,
    /// A value that came over the wire and is not `auto`; validation
    /// refuses it by name. Never read from YAML.
    #[serde(skip)]
    Unknown(String),
}

impl Runtimes {
    pub fn as_str(&self) -> &str {
        match self {
            Runtimes::Auto => "auto",
            Runtimes::Unknown(other) => other,
        }
    }

    /// `None` for "".
    pub fn parse(name: &str) -> Option<Runtimes> {
        match name {
            "" => None,
            "auto" => Some(Runtimes::Auto),
            other => Some(Runtimes::Unknown(other.to_string())),
        }
    }
}

/// The runtime `runtimes: auto` chose for a step, as tidewright wrote it;
/// a task file never sets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Chosen {
    pub runtime: String,
    /// The step's runtime as submitted: what it runs on when nothing is
    /// known.
    pub preferred: String,
    /// Why, with each runtime's figures.
    pub why: String,
}

/// What a choice weighs besides the standings.
#[derive(Debug, Clone, Default)]
pub struct Asked<'a> {
    /// The step's runtime as submitted.
    pub own: &'a str,
    /// How many times the step runs on the runtime chosen: its attempts',
    /// else one.
    pub tries: u32,
    /// The task's budget in dollars, when it has one.
    pub budget_usd: Option<f64>,
    /// Runtimes that cannot take the step, each with why (no connected
    /// worker runs it; it reviews the step).
    pub unusable: Vec<(String, String)>,
}

/// The runtime for a step with `runtimes: auto`, from `standings` (each
/// runtime's on the task's repository), and why.
pub fn choose(standings: &[Standing], asked: &Asked<'_>) -> Chosen {
    let kept = |why: String| Chosen {
        runtime: asked.own.to_string(),
        preferred: asked.own.to_string(),
        why,
    };
    if standings.is_empty() {
        return kept(format!(
            "runtimes: auto kept {}: no outcomes are recorded on this repository yet (steps with attempts and `tidewright eval` record them)",
            asked.own
        ));
    }
    let mut figures = Vec::new();
    let mut candidates = Vec::new();
    for standing in standings {
        let runtime = &standing.runtime;
        let per_try = standing.usd / f64::from(standing.attempts.max(1));
        let tried = format!(
            "{runtime} {}/{} passed at ${per_try:.4} a try",
            standing.passed, standing.attempts
        );
        if let Some((_, why)) = asked.unusable.iter().find(|(r, _)| r == runtime) {
            figures.push(format!("{tried}, but {why}"));
            continue;
        }
        let expected = per_try * f64::from(asked.tries.max(1));
        if let Some(budget) = asked.budget_usd
            && expected > budget
        {
            figures.push(format!(
                "{tried}, over the ${budget} budget (${expected:.4} expected)"
            ));
            continue;
        }
        let rate = (f64::from(standing.passed) + 1.0) / (f64::from(standing.attempts) + 2.0);
        let per_dollar = if per_try > 0.0 {
            rate / per_try
        } else {
            f64::INFINITY
        };
        figures.push(if per_dollar.is_finite() {
            format!("{tried}, {per_dollar:.1} passes per dollar")
        } else {
            format!("{tried}, at no recorded cost")
        });
        candidates.push((standing, rate, per_dollar));
    }
    let any_passed = candidates.iter().any(|(s, ..)| s.passed > 0);
    let best = candidates
        .iter()
        .filter(|(s, ..)| s.passed > 0 || !any_passed)
        .max_by(|a, b| {
            a.2.total_cmp(&b.2)
                .then(a.1.total_cmp(&b.1))
                .then(a.0.attempts.cmp(&b.0.attempts))
                // The same figures: the name first in order wins.
                .then(b.0.runtime.cmp(&a.0.runtime))
        });
    let figures = figures.join("; ");
    match best {
        Some((standing, ..)) => Chosen {
            runtime: standing.runtime.clone(),
            preferred: asked.own.to_string(),
            why: format!(
                "runtimes: auto chose {}, the most passes per dollar on this repository: {figures}",
                standing.runtime
            ),
        },
        None => kept(format!(
            "runtimes: auto kept {}: no runtime with outcomes on this repository can take the step: {figures}",
            asked.own
        )),
    }
}

#[cfg(test)]
mod tests;
