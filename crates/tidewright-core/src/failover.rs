//! Failover: an agent step that names `fallback` runtimes goes on with
//! another provider when a limit of its own (a usage window, a rate limit)
//! pauses every pool that runs it, rather than wait, and is told so. The
//! move is written into the task's spec (the step's runtime becomes the
//! fallback's, and [`Failover`] says from what, why, and what the agent
//! before left for the next), so a restart finds the step where it went.
//!
//! Without the task's `failback`, a later step whose runtime an earlier
//! step of the task left starts where that step went ([`moves::kept_to`]): one
//! task keeps to one provider rather than go back and forth across a
//! window. With it, later steps start on their own runtime once its pause
//! ends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod moves;

pub use moves::{kept_to, move_to};

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
pub(crate) mod tests {
    use super::*;

    /// A move from `from`, for the tests.
    pub(crate) fn moved(from: &str) -> Failover {
        Failover {
            from: from.into(),
            preferred: from.into(),
            after_attempt: 1,
            reason: "claude-code rate limited".into(),
            ..Failover::default()
        }
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
}
