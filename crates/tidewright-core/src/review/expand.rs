//! A step with `review`, expanded at submit: the step, then its reviewer's
//! step, which what depended on the step waits for too.

use super::{ReviewOf, SUFFIX, instructions};
use crate::spec::{AgentSpec, StepSpec, TaskSpec};

/// Puts after each step with `review` the step that reviews it, on the
/// reviewer's runtime, and has every step that depended on it wait for
/// that one as well. Runs after validation (and after the deliver step is
/// added, which so waits for the review too); a task without reviews is
/// left as it is.
pub fn with_reviews(spec: &mut TaskSpec) {
    if spec.steps.iter().all(|s| s.review.is_none()) {
        return;
    }
    let reviewed: Vec<(String, String)> = spec
        .steps
        .iter()
        .filter(|s| s.review.is_some())
        .map(|s| (s.id.clone(), format!("{}{SUFFIX}", s.id)))
        .collect();
    for step in &mut spec.steps {
        for (id, reviewer) in &reviewed {
            if step.depends_on.contains(id) {
                step.depends_on.push(reviewer.clone());
            }
        }
    }
    let mut steps = Vec::with_capacity(spec.steps.len() + reviewed.len());
    for step in std::mem::take(&mut spec.steps) {
        let reviewer = step.review.as_ref().map(|review| StepSpec {
            depends_on: vec![step.id.clone()],
            agent: Some(AgentSpec {
                cli: review.runtime.clone(),
                prompt: instructions(&review.focus),
                model: None,
            }),
            noop: None,
            review_of: Some(ReviewOf {
                step: step.id.clone(),
                must_pass: review.must_pass,
                rounds: review.rounds(),
            }),
            ..StepSpec::noop(&format!("{}{SUFFIX}", step.id))
        });
        steps.push(step);
        steps.extend(reviewer);
    }
    spec.steps = steps;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::ReviewSpec;
    use crate::spec::ClaudeCodeSpec;
    use crate::validate::tests::rejected;

    #[test]
    fn the_reviewer_follows_its_step_and_what_depended_on_the_step_waits_for_it() {
        let fix = StepSpec {
            claude_code: Some(ClaudeCodeSpec {
                prompt: "fix it".into(),
                ..ClaudeCodeSpec::default()
            }),
            noop: None,
            review: Some(ReviewSpec {
                runtime: "codex".into(),
                must_pass: true,
                focus: "naming".into(),
                ..ReviewSpec::default()
            }),
            ..StepSpec::noop("fix")
        };
        let mut spec = TaskSpec {
            name: "t".into(),
            steps: vec![fix, StepSpec::noop("after").after(&["fix"])],
            ..TaskSpec::default()
        };
        with_reviews(&mut spec);
        let ids: Vec<&str> = spec.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["fix", "fix.review", "after"]);
        let reviewer = &spec.steps[1];
        assert_eq!(reviewer.depends_on, ["fix"]);
        assert_eq!(reviewer.agent_capability(), Some("codex"));
        assert!(reviewer.prompt().contains("Look in particular at: naming"));
        assert_eq!(
            reviewer.review_of,
            Some(ReviewOf {
                step: "fix".into(),
                must_pass: true,
                rounds: 2
            })
        );
        assert_eq!(spec.steps[2].depends_on, ["fix", "fix.review"]);
        assert!(
            spec.steps[0].review.is_some(),
            "the author knows it is reviewed"
        );
    }

    #[test]
    fn each_bad_review_is_refused_naming_its_field() {
        let claude = |review: ReviewSpec| StepSpec {
            claude_code: Some(ClaudeCodeSpec {
                prompt: "fix it".into(),
                ..ClaudeCodeSpec::default()
            }),
            noop: None,
            review: Some(review),
            ..StepSpec::noop("fix")
        };
        let codex = || ReviewSpec {
            runtime: "codex".into(),
            ..ReviewSpec::default()
        };
        let on_repo = |step: StepSpec| TaskSpec {
            name: "t".into(),
            steps: vec![step],
            repo: Some(crate::RepoSpec {
                url: "https://git.example/a.git".into(),
                ..crate::RepoSpec::default()
            }),
            ..TaskSpec::default()
        };
        let cases: Vec<(TaskSpec, &str, &str)> = vec![
            (
                on_repo(claude(ReviewSpec {
                    runtime: "cobol".into(),
                    ..codex()
                })),
                "steps[0].review.runtime",
                "not an agent runtime",
            ),
            (
                on_repo(claude(ReviewSpec {
                    rounds: Some(0),
                    ..codex()
                })),
                "steps[0].review.rounds",
                "1 to 10",
            ),
            (
                TaskSpec {
                    repo: None,
                    ..on_repo(claude(codex()))
                },
                "steps[0].review",
                "needs a repo",
            ),
            (
                on_repo(StepSpec {
                    review: Some(codex()),
                    ..StepSpec::shell("fix", &["true"])
                }),
                "steps[0].review",
                "agent step",
            ),
            (
                on_repo(StepSpec {
                    review_of: Some(ReviewOf::default()),
                    ..claude(codex())
                }),
                "steps[0].reviewOf",
                "tidewright sets this",
            ),
        ];
        for (spec, field, says) in cases {
            let (got, message) = rejected(&spec);
            assert_eq!(got, field, "{message}");
            assert!(message.contains(says), "{field}: {message}");
        }
        crate::validate(&on_repo(claude(codex())), &crate::Limits::default()).expect("valid");
    }
}
