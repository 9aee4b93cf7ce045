//! Failover: an agent step that names `fallback` runtimes goes on with
//! another provider when a limit of its own (a usage window, a rate limit)
//! pauses every pool that runs it, rather than wait, and is told so. The
//! move is written into the task's spec (the step's runtime becomes the
//! fallback's, and [`Failover`] says from what, why, and what the agent
//! before left for the next), so a restart finds the step where it went.
//!
//! Without the task's `failback`, a later step whose runtime an earlier
//! step of the task left starts where that step went ([`kept_to`]): one
//! task keeps to one provider rather than go back and forth across a
//! window. With it, later steps start on their own runtime once its pause
//! ends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{StepSpec, TaskSpec};

/// The longest summary of a session carried to the next agent.
pub const MAX_SUMMARY_BYTES: usize = 4096;

/// A step's move to another runtime, as tidewright wrote it; a task file
/// never sets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failover {
    /// The runtime it left.
    pub from: String,
    /// Its runtime as submitted: what later steps return to.
    pub preferred: String,
    /// Its attempts up to this one ran before the move: their sessions
    /// are another CLI's, never resumed.
    pub after_attempt: u32,
    /// Why: the limit that paused `from`.
    pub reason: String,
    /// The commit its work so far ended at, which the next agent starts
    /// from; "" when it made none (a queued step's move).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head: String,
    /// The commit that work is measured from (where the agent before
    /// started): the step's work, whoever made it, is measured from here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base: String,
    /// What the agent before did, written for the next; "" for a queued
    /// step's move.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

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

/// What the next agent is told before its task, on `to`: who began the
/// step, why it stopped, where its work is, and what it did.
pub fn briefing(failover: &Failover, to: &str) -> String {
    let mut text = format!(
        "Before your task: another agent ({}) began this step and stopped when its provider's limit was reached ({}). You ({to}) take over.",
        failover.from, failover.reason
    );
    if !failover.head.is_empty() {
        text.push_str(
            " Its work so far is in your working directory, committed on this branch: go on from it rather than start again.",
        );
    }
    if !failover.summary.is_empty() {
        text.push_str("\n\nWhat it did:\n");
        text.push_str(&failover.summary);
    }
    text.push_str(
        "\n\nCheck what it left rather than trust it, and finish the task.\n\nThen your task:\n\n",
    );
    text
}

/// Which tenants may fail over (`--fallback-policy`): a default for all,
/// and tenants that differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackPolicy {
    allow: bool,
    tenants: BTreeMap<String, bool>,
}

impl Default for FallbackPolicy {
    fn default() -> Self {
        FallbackPolicy {
            allow: true,
            tenants: BTreeMap::new(),
        }
    }
}

impl FallbackPolicy {
    /// From the flag's values, in order, each `allow` or `forbid` (every
    /// tenant) or `TENANT=allow|forbid`; a later one wins. Why not, naming
    /// the value.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<FallbackPolicy, String> {
        let mut policy = FallbackPolicy::default();
        for value in values {
            let value = value.as_ref().trim();
            let (tenant, verdict) = match value.split_once('=') {
                Some((tenant, verdict)) => (Some(tenant.trim()), verdict.trim()),
                None => (None, value),
            };
            let allow = match verdict {
                "allow" => true,
                "forbid" => false,
                other => {
                    return Err(format!(
                        "--fallback-policy {value:?}: {other:?} is neither allow nor forbid (write allow, forbid, or TENANT=allow|forbid)"
                    ));
                }
            };
            match tenant {
                Some("") => {
                    return Err(format!("--fallback-policy {value:?}: the tenant is empty"));
                }
                Some(tenant) => {
                    policy.tenants.insert(tenant.to_string(), allow);
                }
                None => {
                    policy.allow = allow;
                    policy.tenants.clear();
                }
            }
        }
        Ok(policy)
    }

    /// Whether `tenant`'s steps may move to a fallback.
    pub fn allows(&self, tenant: &str) -> bool {
        self.tenants.get(tenant).copied().unwrap_or(self.allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{AgentSpec, ClaudeCodeSpec, StepSpec};

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

    fn moved(from: &str) -> Failover {
        Failover {
            from: from.into(),
            preferred: from.into(),
            after_attempt: 1,
            reason: "claude-code rate limited".into(),
            ..Failover::default()
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
    fn the_next_agent_is_told_who_began_why_it_stopped_and_what_it_did() {
        let failover = Failover {
            head: "a".repeat(40),
            summary: "- Edit: calc.py".into(),
            ..moved("claude-code")
        };
        let told = briefing(&failover, "codex");
        assert!(
            told.starts_with("Before your task: another agent (claude-code)"),
            "{told}"
        );
        assert!(
            told.contains("(claude-code rate limited). You (codex) take over."),
            "{told}"
        );
        assert!(told.contains("committed on this branch"), "{told}");
        assert!(told.contains("What it did:\n- Edit: calc.py"), "{told}");
        assert!(told.ends_with("Then your task:\n\n"), "{told}");
        let queued = briefing(&moved("claude-code"), "codex");
        assert!(
            !queued.contains("committed") && !queued.contains("What it did"),
            "{queued}"
        );
    }

    #[test]
    fn the_policy_allows_by_default_and_a_later_value_wins() {
        let none: [&str; 0] = [];
        assert!(FallbackPolicy::parse(&none).expect("empty").allows("any"));
        let policy = FallbackPolicy::parse(&["forbid", "acme=allow"]).expect("valid");
        assert!(policy.allows("acme"));
        assert!(!policy.allows("beta"));
        let policy = FallbackPolicy::parse(&["acme=forbid", "allow"]).expect("valid");
        assert!(
            policy.allows("acme"),
            "a default given later resets the tenants"
        );
        let policy = FallbackPolicy::parse(&[" beta = forbid "]).expect("valid");
        assert!(!policy.allows("beta") && policy.allows("acme"));
        assert_eq!(
            FallbackPolicy::parse(&["acme=never"]),
            Err("--fallback-policy \"acme=never\": \"never\" is neither allow nor forbid (write allow, forbid, or TENANT=allow|forbid)".into())
        );
        assert!(
            FallbackPolicy::parse(&["=forbid"]).is_err_and(|e| e.contains("the tenant is empty"))
        );
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
            match crate::validate(&task(step), &crate::Limits::default()) {
                Err(crate::Error::Invalid {
                    field: got,
                    message,
                }) => {
                    assert_eq!(got, field, "{message}");
                    assert!(message.contains(says), "{field}: {message}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        crate::validate(
            &task(claude("a", &["codex", "gemini-cli"])),
            &crate::Limits::default(),
        )
        .expect("a good fallback is taken");
    }
}
