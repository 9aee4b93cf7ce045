//! Reviews in the engine: requested changes send the reviewed step back
//! into its session on its own work, told the comments; an approval lets
//! the task go on; the rounds spent, a review that must pass fails the
//! task and one that need not lets it go on; and a restart remembers the
//! rounds spent.

use tidewright_core::review::ReviewSpec;
use tidewright_core::{ClaudeCodeSpec, RepoSpec, StepWork};

use super::*;
use crate::Assignment;

const BASE: &str = "1111111111111111111111111111111111111111";

fn head(n: u8) -> String {
    format!("{n}").repeat(40)
}

/// `fix`, reviewed by Codex, then `after`, as submitted: expanded.
fn reviewed(must_pass: bool, rounds: u32) -> TaskSpec {
    let fix = StepSpec {
        claude_code: Some(ClaudeCodeSpec {
            prompt: "fix add".into(),
            ..ClaudeCodeSpec::default()
        }),
        noop: None,
        review: Some(ReviewSpec {
            runtime: tidewright_core::CODEX.into(),
            must_pass,
            rounds: Some(rounds),
            ..ReviewSpec::default()
        }),
        ..StepSpec::noop("fix")
    };
    let mut spec = TaskSpec {
        name: "t".into(),
        steps: vec![fix, StepSpec::noop("after").after(&["fix"])],
        repo: Some(RepoSpec {
            url: "https://git.example/calc.git".into(),
            commit: BASE.into(),
            ..RepoSpec::default()
        }),
        ..TaskSpec::default()
    };
    tidewright_core::review::expand::with_reviews(&mut spec);
    spec
}

/// The author's attempt succeeded at `head`.
async fn wrote(h: &Harness, w: &FakeWorker, a: &Assignment, at: &str) {
    h.engine
        .report(
            w.id,
            StepResult {
                work: Some(StepWork {
                    branch: "tidewright/t-fix".into(),
                    // A step sent back goes on from its own head.
                    base_commit: a
                        .dependency_heads
                        .first()
                        .map_or(BASE.to_string(), |d| d.head.clone()),
                    head_commit: at.into(),
                    files_changed: 1,
                    changed_paths: vec!["calc.py".into()],
                    ..StepWork::default()
                }),
                ..StepResult::ended(a.attempt.clone(), AttemptEnd::Succeeded)
            },
        )
        .await
        .expect("reported");
}

const CHANGES: &str = r#"{"verdict":"request_changes","summary":"Unclear.","comments":[{"path":"calc.py","line":1,"body":"Use a def."}]}"#;

/// The reviewer's verdict, as its worker reports it.
async fn verdict(h: &Harness, w: &FakeWorker, a: &Assignment, output: &str) {
    let approved = output.contains("\"approve\"");
    h.engine
        .report(
            w.id,
            StepResult {
                output_json: output.into(),
                error: if approved {
                    String::new()
                } else {
                    "changes requested (1 comment): Unclear.".into()
                },
                ..StepResult::ended(
                    a.attempt.clone(),
                    if approved {
                        AttemptEnd::Succeeded
                    } else {
                        AttemptEnd::Failed
                    },
                )
            },
        )
        .await
        .expect("reported");
}

async fn start(h: &Harness, spec: TaskSpec) -> FakeWorker {
    h.try_submit("t", "default", spec, 1)
        .await
        .expect("submitted");
    h.ready_worker(
        "w",
        &[tidewright_core::CLAUDE_CODE, tidewright_core::CODEX],
        8,
    )
    .await
}

#[tokio::test]
async fn requested_changes_go_back_into_the_authors_session_and_an_approval_lets_it_go_on() {
    let h = Harness::new();
    let mut w = start(&h, reviewed(true, 2)).await;
    let first = w.assignment().await;
    assert_eq!(first.attempt.step_id, "fix");
    h.engine
        .session(w.id, first.attempt.clone(), "s-1".into(), "opus".into())
        .await
        .expect("session");
    wrote(&h, &w, &first, &head(2)).await;
    let review = w.assignment().await;
    assert_eq!(review.attempt.step_id, "fix.review");
    assert_eq!(review.step.agent_capability(), Some("codex"));
    let inputs: serde_json::Value = serde_json::from_str(&review.inputs_json).expect("json");
    assert_eq!(inputs["step"], "fix");
    assert_eq!(inputs["asked"], "fix add");
    assert_eq!(inputs["base"], BASE);
    assert_eq!(inputs["head"], head(2));
    assert_eq!(inputs["round"], 1);
    assert_eq!(
        review
            .dependency_heads
            .iter()
            .map(|d| d.head.clone())
            .collect::<Vec<_>>(),
        [head(2)],
        "the reviewer's checkout is the author's work"
    );
    verdict(&h, &w, &review, CHANGES).await;

    // Back to the author, in its session, on its own work, told why.
    let again = w.assignment().await;
    assert_eq!(again.attempt.step_id, "fix");
    let resume = again.resume.clone().expect("its session resumes");
    assert_eq!(resume.session_id, "s-1");
    assert!(
        resume.message.starts_with(
            "A reviewer (codex) read your change and requested changes (review round 1 of 2)."
        ) && resume.message.contains("- calc.py:1: Use a def."),
        "{}",
        resume.message
    );
    assert_eq!(
        again
            .dependency_heads
            .iter()
            .map(|d| d.head.clone())
            .collect::<Vec<_>>(),
        [head(2)]
    );
    let task = h.task("t").await;
    assert_eq!(
        task.steps[1].state,
        StepState::Waiting,
        "the review waits again"
    );
    assert_eq!(
        task.steps[2].state,
        StepState::Waiting,
        "and so does what follows"
    );
    wrote(&h, &w, &again, &head(3)).await;
    let second = w.assignment().await;
    assert_eq!(second.attempt.step_id, "fix.review");
    let inputs: serde_json::Value = serde_json::from_str(&second.inputs_json).expect("json");
    assert_eq!(
        (inputs["head"].as_str(), inputs["round"].as_u64()),
        (Some(head(3).as_str()), Some(2))
    );
    assert_eq!(
        inputs["base"], BASE,
        "the reviewer reads the whole change, from where it began"
    );
    verdict(
        &h,
        &w,
        &second,
        r#"{"verdict":"approve","summary":"Good."}"#,
    )
    .await;
    let after = w.assignment().await;
    assert_eq!(after.attempt.step_id, "after");
    h.report(&w, after.attempt, AttemptEnd::Succeeded).await;
    h.until_state("t", TaskState::Succeeded).await;
}

#[tokio::test]
async fn the_rounds_spent_a_review_that_must_pass_fails_and_one_that_need_not_goes_on() {
    for must_pass in [true, false] {
        let h = Harness::new();
        let mut w = start(&h, reviewed(must_pass, 1)).await;
        let first = w.assignment().await;
        wrote(&h, &w, &first, &head(2)).await;
        let review = w.assignment().await;
        verdict(&h, &w, &review, CHANGES).await;
        let again = w.assignment().await;
        wrote(&h, &w, &again, &head(3)).await;
        let last = w.assignment().await;
        verdict(&h, &w, &last, CHANGES).await;
        if must_pass {
            h.until_state("t", TaskState::Failed).await;
            let task = h.task("t").await;
            assert_eq!(
                task.steps[1].error,
                "the reviewer (codex) did not approve after 1 round(s) of changes: changes requested (1 comment): Unclear."
            );
        } else {
            let after = w.assignment().await;
            assert_eq!(after.attempt.step_id, "after");
            let task = h.task("t").await;
            assert_eq!(task.steps[1].state, StepState::Succeeded);
            assert!(
                task.steps[1]
                    .error
                    .ends_with("the review need not pass (mustPass is off), so the task goes on"),
                "{}",
                task.steps[1].error
            );
            let kept: serde_json::Value =
                serde_json::from_str(&task.steps[1].output_json).expect("the verdict is kept");
            assert_eq!(kept["verdict"], "request_changes");
        }
    }
}

#[tokio::test]
async fn a_restart_remembers_the_rounds_a_review_spent() {
    let store = MemoryStore::new();
    {
        let h = Harness::new_on(store.clone());
        let mut w = start(&h, reviewed(true, 1)).await;
        let first = w.assignment().await;
        wrote(&h, &w, &first, &head(2)).await;
        let review = w.assignment().await;
        verdict(&h, &w, &review, CHANGES).await;
        let again = w.assignment().await;
        wrote(&h, &w, &again, &head(3)).await;
        // The second review starts; the control plane stops.
        let _ = w.assignment().await;
        h.settled().await;
    }
    let h = Harness::start(
        store.reopen(),
        vec!["t".into()],
        liveness(Duration::from_millis(300)),
    );
    let mut w = h.ready_worker("w2", &[tidewright_core::CODEX], 1).await;
    let _alive = h.keep_alive(&w);
    let review = w.assignment().await;
    assert_eq!(review.attempt.step_id, "fix.review");
    let inputs: serde_json::Value = serde_json::from_str(&review.inputs_json).expect("json");
    assert_eq!(inputs["round"], 2);
    verdict(&h, &w, &review, CHANGES).await;
    h.until_state("t", TaskState::Failed).await;
}
