//! A choice put in place on its step.

use super::Chosen;
use crate::spec::StepSpec;

/// Puts `chosen` in place on `step`: its runtime, and a fallback list that
/// no longer names it (the runtime it left takes its place there).
pub fn apply(step: &mut StepSpec, chosen: Chosen) {
    if chosen.runtime != chosen.preferred {
        *step = step.on_runtime(&chosen.runtime);
        for fallback in &mut step.fallback {
            if *fallback == chosen.runtime {
                fallback.clone_from(&chosen.preferred);
            }
        }
    }
    step.chosen = Some(chosen);
}
