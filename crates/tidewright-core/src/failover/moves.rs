//! Moving a step to a fallback, and where a later step of the task goes.

use super::Failover;
use crate::spec::{StepSpec, TaskSpec};

/// The step on `to`, one of its fallbacks: the same prompt and everything
/// else the same, its fallbacks the rest of its list and then the runtime
/// it leaves (which it may go back to should `to` pause as well).
pub fn move_to(step: &StepSpec, to: &str, failover: Failover) -> StepSpec {
    let mut fallback: Vec<String> = step.fallback.iter().filter(|f| *f != to).cloned().collect();
    if !fallback.contains(&failover.from) {
        fallback.push(failover.from.clone());
    }
    StepSpec {
        fallback,
        failover: Some(failover),
        ..step.on_runtime(to)
    }
}

/// Without `failback`: the runtime an earlier step of the task moved to
/// from `step`'s own, when `step` names it among its fallbacks, and that
/// step's id. `None` with `failback`, or when no step moved so.
pub fn kept_to<'a>(spec: &'a TaskSpec, step: &StepSpec) -> Option<(&'a str, &'a str)> {
    if spec.failback || step.failover.is_some() {
        return None;
    }
    let own = step.agent_capability()?;
    spec.steps.iter().find_map(|moved| {
        let failover = moved.failover.as_ref()?;
        let to = moved.agent_capability()?;
        (failover.preferred == own && step.fallback.iter().any(|f| f == to))
            .then_some((to, moved.id.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::tests::moved;
    use crate::spec::{AgentSpec, ClaudeCodeSpec};
    use crate::validate::tests::rejected;

    fn claude(id: &str, fallback: &[&str]) -> StepSpec {
        StepSpec {
            claude_code: Some(ClaudeCodeSpec {
                prompt: "fix it".into(),
                model: Some("opus".into()),
                ..ClaudeCodeSpec::default()
            }),
            noop: None,
            fallback: fallback.iter().map(|f| f.to_string()).collect(),
            touches: vec!["src/**".into()],
            ..StepSpec::noop(id)
        }
    }

    #[test]
    fn a_moved_step_runs_the_same_prompt_on_its_fallback_and_may_come_back() {
        let step = claude("fix", &["codex", "gemini-cli"]);
        let on = move_to(&step, "codex", moved("claude-code"));
        assert_eq!(on.agent_capability(), Some("codex"));
        assert_eq!(on.prompt(), "fix it");
        assert_eq!(
            on.agent,
            Some(AgentSpec {
                cli: "codex".into(),
                prompt: "fix it".into(),
                model: None
            }),
            "Claude's model is not Codex's"
        );
        assert_eq!(on.fallback, ["gemini-cli", "claude-code"]);
        assert_eq!(on.touches, step.touches);
        assert_eq!(
            on.failover.as_ref().map(|f| f.from.as_str()),
            Some("claude-code")
        );
    }

    #[test]
    fn later_steps_keep_to_where_the_task_went_unless_it_fails_back() {
        let mut spec = TaskSpec {
            name: "t".into(),
            steps: vec![
                move_to(&claude("a", &["codex"]), "codex", moved("claude-code")),
                claude("b", &["codex"]),
                claude("c", &["gemini-cli"]),
                claude("d", &[]),
            ],
            ..TaskSpec::default()
        };
        assert_eq!(kept_to(&spec, &spec.steps[1]), Some(("codex", "a")));
        assert_eq!(
            kept_to(&spec, &spec.steps[2]),
            None,
            "codex is not its fallback"
        );
        assert_eq!(kept_to(&spec, &spec.steps[3]), None, "it names no fallback");
        assert_eq!(
            kept_to(&spec, &spec.steps[0]),
            None,
            "a moved step decides alone"
        );
        spec.failback = true;
        assert_eq!(kept_to(&spec, &spec.steps[1]), None);
    }

    #[test]
    fn each_bad_fallback_is_refused_naming_its_field() {
        let task = |step: StepSpec| TaskSpec {
            name: "t".into(),
            steps: vec![step],
            ..TaskSpec::default()
        };
        let cases: Vec<(StepSpec, &str, &str)> = vec![
            (
                claude("a", &["cobol"]),
                "steps[0].fallback[0]",
                "\"cobol\" is not an agent runtime",
            ),
            (
                claude("a", &["codex", "claude-code"]),
                "steps[0].fallback[1]",
                "is the step's own runtime",
            ),
            (
                claude("a", &["codex", "codex"]),
                "steps[0].fallback[1]",
                "named twice",
            ),
            (
                StepSpec {
                    fallback: vec!["codex".into()],
                    ..StepSpec::shell("a", &["true"])
                },
                "steps[0].fallback",
                "fallback is for agent steps",
            ),
            (
                StepSpec {
                    failover: Some(moved("claude-code")),
                    ..claude("a", &[])
                },
                "steps[0].failover",
                "tidewright writes this",
            ),
        ];
        for (step, field, says) in cases {
            let (got, message) = rejected(&task(step));
            assert_eq!(got, field, "{message}");
            assert!(message.contains(says), "{field}: {message}");
        }
        crate::validate(
            &task(claude("a", &["codex", "gemini-cli"])),
            &crate::Limits::default(),
        )
        .expect("a good fallback is taken");
    }
}
