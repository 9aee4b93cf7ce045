//! The outcomes kept: the scores a kept task holds, whether it chose among
//! attempts or was an eval's.

use crate::attempts::score::{Score, TEMPLATE_LABEL};
use crate::eval;
use crate::spec::{StepSpec, TaskSpec};

/// What one step of a kept task came to, as its scores read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ran {
    pub passed: bool,
    /// The commit its work ended at, when it made one.
    pub head: Option<String>,
    pub usd: f64,
    /// From its first attempt's start to its last's end.
    pub millis: u64,
}

/// The scores a kept task holds: one per attempt of each step that chose
/// among attempts, and, for an eval's task run once, its one step. `ran`
/// says how a step (by id) came out. A score's repository is the key
/// ([`crate::repo::key`]) of the repository measured: an eval's task runs
/// on a snapshot, and its label names the repository it came from.
pub fn scores_of(spec: &TaskSpec, ran: impl Fn(&str) -> Option<Ran>) -> Vec<Score> {
    let repo = match spec.labels.get(eval::REPO_LABEL) {
        Some(key) => key.clone(),
        None => spec
            .repo
            .as_ref()
            .map(|r| crate::repo::key(&r.url))
            .unwrap_or_default(),
    };
    let template = spec.labels.get(TEMPLATE_LABEL).cloned().unwrap_or_default();
    let score = |step: &StepSpec, ran: Ran, won: bool| Score {
        runtime: step.agent_capability().unwrap_or_default().to_string(),
        repo: repo.clone(),
        template: template.clone(),
        passed: ran.passed,
        won,
        usd: ran.usd,
        millis: ran.millis,
    };
    let mut scores = Vec::new();
    for chooser in spec.steps.iter().filter(|s| s.select.is_some()) {
        let chosen = ran(&chooser.id).filter(|r| r.passed).and_then(|r| r.head);
        for id in chooser.select.iter().flat_map(|s| &s.attempts) {
            let (Some(attempt), Some(ran)) = (spec.steps.iter().find(|s| &s.id == id), ran(id))
            else {
                continue;
            };
            let won = ran.passed && ran.head.is_some() && ran.head == chosen;
            scores.push(score(attempt, ran, won));
        }
    }
    let evaluated = spec.labels.contains_key(eval::EVALS_LABEL);
    if evaluated && scores.is_empty() {
        let solved = spec.steps.iter().find(|s| s.id == eval::STEP);
        if let Some((step, ran)) = solved.and_then(|s| Some((s, ran(&s.id)?))) {
            let won = ran.passed;
            scores.push(score(step, ran, won));
        }
    }
    scores.retain(|s| !s.runtime.is_empty());
    scores
}
