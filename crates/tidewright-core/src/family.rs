//! Parent and child tasks: a task a running step submits (an agent fanning
//! work out to the fleet) is that step's task's child. The link is in the
//! child's labels, which tidewright alone sets: who its parent is, which step
//! submitted it, and how deep it is (a child of a task nobody's step made
//! is at depth 1). Pure: the checks of depth and fan-out are here; who may
//! submit, and what ends with a parent, are the engine's.

use std::collections::BTreeMap;

use crate::error::{Error, invalid};
use crate::spec::TaskSpec;

/// The parent task's id.
pub const PARENT_LABEL: &str = "tidewright.dev/parent";
/// The id of the parent's step that submitted the task.
pub const PARENT_STEP_LABEL: &str = "tidewright.dev/parent-step";
/// How many parents are above the task.
pub const DEPTH_LABEL: &str = "tidewright.dev/depth";
/// The schedule that submitted the task.
pub const SCHEDULE_LABEL: &str = "tidewright.dev/schedule";

/// The labels only tidewright sets: a task submitted with one is refused, so no
/// caller can claim a parent (its budget, its cancellation) or a schedule.
pub const RESERVED_LABELS: [&str; 4] =
    [PARENT_LABEL, PARENT_STEP_LABEL, DEPTH_LABEL, SCHEDULE_LABEL];

/// How deep children may nest, and how many one task may have, unless the
/// control plane says otherwise (`--max-child-depth`, `--max-children`).
pub const DEFAULT_MAX_CHILD_DEPTH: u32 = 3;
pub const DEFAULT_MAX_CHILDREN: usize = 20;

/// The task's parent, when it has one.
pub fn parent_of(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels.get(PARENT_LABEL).map(String::as_str)
}

/// How many parents are above the task: 0 for a task no step submitted.
pub fn depth_of(labels: &BTreeMap<String, String>) -> u32 {
    labels
        .get(DEPTH_LABEL)
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// Refuses a submitted task that sets a label only tidewright sets, naming it.
pub fn refuse_reserved_labels(spec: &TaskSpec, field: &str) -> Result<(), Error> {
    match RESERVED_LABELS
        .iter()
        .find(|reserved| spec.labels.contains_key(**reserved))
    {
        Some(reserved) => Err(invalid(
            format!("{field}labels.{reserved}"),
            "is set by tidewright alone (it links a task to its parent or its schedule)",
        )),
        None => Ok(()),
    }
}

/// Makes `child` the child of `parent` (its labels) submitted by its step
/// `step`, if the limits allow: `siblings` is how many children `parent`
/// has already. Refusals name what limits them.
pub fn adopt(
    child: &mut TaskSpec,
    parent_id: &str,
    parent: &BTreeMap<String, String>,
    step: &str,
    siblings: usize,
    max_depth: u32,
    max_children: usize,
) -> Result<(), Error> {
    let depth = depth_of(parent) + 1;
    if depth > max_depth {
        return Err(invalid(
            "parent",
            format!(
                "task {parent_id} is at depth {}: its children would be deeper than the limit (max-child-depth) of {max_depth}",
                depth - 1
            ),
        ));
    }
    if siblings >= max_children {
        return Err(invalid(
            "parent",
            format!(
                "task {parent_id} has {siblings} children: the limit (max-children) is {max_children}"
            ),
        ));
    }
    child
        .labels
        .insert(PARENT_LABEL.into(), parent_id.to_string());
    child.labels.insert(PARENT_STEP_LABEL.into(), step.into());
    child.labels.insert(DEPTH_LABEL.into(), depth.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_labelled_with_its_parent_step_and_depth_within_the_limits() {
        let mut child = TaskSpec::default();
        adopt(&mut child, "t1", &BTreeMap::new(), "lead", 0, 3, 20).expect("adopted");
        assert_eq!(parent_of(&child.labels), Some("t1"));
        assert_eq!(child.labels[PARENT_STEP_LABEL], "lead");
        assert_eq!(depth_of(&child.labels), 1);

        // Its own child is at depth 2; past the limit, refused naming it.
        let mut grandchild = TaskSpec::default();
        adopt(&mut grandchild, "t2", &child.labels, "s", 0, 2, 20).expect("depth 2");
        assert_eq!(depth_of(&grandchild.labels), 2);
        let mut too_deep = TaskSpec::default();
        let refused =
            adopt(&mut too_deep, "t3", &grandchild.labels, "s", 0, 2, 20).expect_err("depth 3 > 2");
        assert!(refused.to_string().contains("max-child-depth"), "{refused}");
        assert!(too_deep.labels.is_empty(), "nothing set on a refusal");

        let refused = adopt(
            &mut TaskSpec::default(),
            "t1",
            &BTreeMap::new(),
            "s",
            20,
            3,
            20,
        )
        .expect_err("fan-out");
        assert!(refused.to_string().contains("max-children"), "{refused}");
    }

    #[test]
    fn a_submitted_task_may_not_set_the_labels_tidewright_sets() {
        let mut spec = TaskSpec::default();
        spec.labels.insert("team".into(), "a".into());
        refuse_reserved_labels(&spec, "").expect("its own labels");
        for reserved in RESERVED_LABELS {
            let mut forged = spec.clone();
            forged.labels.insert(reserved.into(), "x".into());
            let refused = refuse_reserved_labels(&forged, "spec.").expect_err("reserved");
            assert!(
                refused
                    .to_string()
                    .starts_with(&format!("spec.labels.{reserved}")),
                "{refused}"
            );
        }
    }
}
