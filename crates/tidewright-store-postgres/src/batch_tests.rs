//! The fold of a group's writes into rows, in memory.

use tidewright_core::{StepState, TaskState};
use tidewright_store::TaskWrite;

use super::*;

#[test]
fn writes_to_one_row_fold_into_one_and_the_last_value_of_each_field_wins() {
    let mut rows = Rows::default();
    let step = |step_id: &str| StepWrite {
        task_id: "t1".into(),
        step_id: step_id.into(),
        ..StepWrite::default()
    };
    let writes = [
        Write::Step(StepWrite {
            state: Some(StepState::Running),
            worker: Some("w1".into()),
            exit_code: Some(Some(3)),
            ..step("a")
        }),
        Write::Step(StepWrite {
            progress: Some((0.5, "half".into())),
            ..step("a")
        }),
        Write::Step(step("b")),
        Write::Step(StepWrite {
            state: Some(StepState::Succeeded),
            exit_code: Some(None),
            ..step("a")
        }),
        Write::Task(TaskWrite {
            id: "t1".into(),
            state: TaskState::Running,
            message: String::new(),
            started_at: Some(5),
            finished_at: None,
        }),
        Write::Task(TaskWrite {
            id: "t1".into(),
            state: TaskState::Succeeded,
            message: "done".into(),
            started_at: None,
            finished_at: Some(9),
        }),
    ];
    for write in &writes {
        rows.fold(write).expect("folds");
    }
    let steps = &rows.step_updates.order;
    assert_eq!(
        steps.len(),
        2,
        "one row per step, in the order first touched"
    );
    assert_eq!(
        (steps[0].step_id.as_str(), steps[1].step_id.as_str()),
        ("a", "b")
    );
    let a = &steps[0];
    assert_eq!(a.state, Some(StepState::Succeeded));
    assert_eq!(a.worker.as_deref(), Some("w1"), "kept from the first write");
    assert_eq!(a.progress, Some((0.5, "half".to_string())));
    assert_eq!(a.exit_code, Some(None), "cleared by the last write");
    let task = &rows.task_updates.order;
    assert_eq!(task.len(), 1);
    assert_eq!(
        (task[0].state.as_str(), task[0].message.as_str()),
        ("succeeded", "done")
    );
    assert_eq!(
        (task[0].started_at, task[0].finished_at),
        (Some(5), Some(9))
    );
}

#[test]
fn nul_is_replaced_in_text_and_in_json_strings_and_keys() {
    assert_eq!(text("a\0b"), "a\u{FFFD}b");
    assert_eq!(
        json_text(r#"{"k":"v"}"#),
        r#"{"k":"v"}"#,
        "untouched without NUL"
    );
    let cleaned: serde_json::Value =
        serde_json::from_str(&json_text(r#"{"a\u0000":["x\u0000y",1]}"#)).expect("json");
    assert_eq!(cleaned, serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}y", 1]}));
}
