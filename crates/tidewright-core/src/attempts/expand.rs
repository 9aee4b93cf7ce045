//! A step with `attempts`, expanded at submit: its attempts, each the step
//! on its runtime, and the step that chooses, under the step's own id.

use super::{SelectSpec, attempt_id, runtime_of};
use crate::spec::{StepSpec, TaskSpec};

/// Turns each step with `attempts` into its attempts and the step that
/// chooses among them (under its id, so what depends on it is unchanged).
/// Runs after validation; a task without attempts is left as it is.
pub fn with_attempts(spec: &mut TaskSpec) {
    if spec.steps.iter().all(|s| s.attempts.is_none()) {
        return;
    }
    // So that the runtimes' scores find it (`tidewright get scores`).
    spec.labels
        .insert(super::score::ATTEMPTS_LABEL.to_string(), "true".to_string());
    let mut steps = Vec::with_capacity(spec.steps.len());
    for mut step in std::mem::take(&mut spec.steps) {
        let Some(attempts) = step.attempts.take() else {
            steps.push(step);
            continue;
        };
        // Said once, by the step that chooses, not by each attempt.
        let chosen = step.chosen.take();
        let own = step.agent_capability().unwrap_or_default().to_string();
        let prompt = step.prompt().to_string();
        let ids: Vec<String> = (1..=attempts.n).map(|k| attempt_id(&step.id, k)).collect();
        for (k, id) in (1..=attempts.n).zip(&ids) {
            let runtime = runtime_of(&attempts, &own, k);
            let mut attempt = if runtime == own {
                step.clone()
            } else {
                step.on_runtime(runtime)
            };
            attempt.id.clone_from(id);
            steps.push(attempt);
        }
        let select = SelectSpec {
            attempts: ids.clone(),
            stop_early: attempts.stop_early,
            prompt,
            select: attempts.select,
        };
        let needs = if select.select.judged() {
            vec![crate::verify::grade::GRADER.to_string()]
        } else {
            Vec::new()
        };
        steps.push(StepSpec {
            depends_on: ids,
            needs,
            select: Some(select),
            chosen,
            ..StepSpec::noop(&step.id)
        });
    }
    spec.steps = steps;
}
