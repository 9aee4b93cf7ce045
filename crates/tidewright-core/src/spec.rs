//! What a user submits: a task and its steps. The YAML task file, the proto
//! `TaskSpec` and (later) the Kubernetes `Task` spec all have this shape.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::attempts::{AttemptsSpec, SelectSpec};
use crate::budget::Budget;
use crate::egress::Egress;
use crate::repo::{DELIVER_STEP, RepoSpec};
use crate::step_limits::StepLimits;
use crate::verify::VerifySpec;

mod runtimes;

pub use runtimes::*;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Higher runs first; ties go to the oldest task.
    #[serde(default)]
    pub priority: i32,
    /// The steps; none when the task is a `prompt`.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// The task as one request instead of steps: it runs as one Claude Code
    /// step, or, with `plan`, is first planned into steps.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// Turn the prompt into a DAG of steps with one call to the model, then
    /// run that.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan: bool,
    /// What the task may spend. Crossing it stops the task's running agent
    /// steps and pauses the task until the budget is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// The repository the task works on: each step starts from its
    /// resolved commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoSpec>,
    /// The hosts every step of the task may reach (see [`crate::egress`]);
    /// a step's own list narrows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// How long the task is kept once it finishes, in seconds, in place of
    /// its tenant's or the control plane's window; 0 keeps it forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_seconds: Option<u64>,
    /// After one of its steps failed over, its later steps start on their
    /// own runtime again once its limit resets (see [`crate::failover`]);
    /// without it they keep to the runtime that step went to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failback: bool,
}

/// The id of the one step a bare prompt (without `plan`) runs as.
pub const PROMPT_STEP: &str = "agent";

impl TaskSpec {
    /// A prompt task that runs as it is: its one Claude Code step.
    pub fn prompt_as_step(&self) -> Option<StepSpec> {
        (!self.prompt.is_empty() && !self.plan).then(|| StepSpec {
            claude_code: Some(ClaudeCodeSpec {
                prompt: self.prompt.clone(),
                ..ClaudeCodeSpec::default()
            }),
            noop: None,
            ..StepSpec::noop(PROMPT_STEP)
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepSpec {
    /// Unique within the task: lowercase letters, digits, '-' and '_'.
    #[cfg_attr(
        feature = "schema",
        schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"))
    )]
    pub id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Capabilities a worker must advertise to run this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Exactly one runtime is set; validation says so when not. Kept as one
    /// optional field per runtime (not a serde enum) so the YAML reads
    /// `shell: {...}` and the Kubernetes schema stays a plain object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<ShellSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noop: Option<NoopSpec>,
    /// Runs the Claude Code CLI headless on a prompt, in the step's workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_code: Option<ClaudeCodeSpec>,
    /// Runs the Codex CLI headless (`codex exec`) on a prompt, in the
    /// step's workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codex: Option<CodexSpec>,
    /// Runs the Gemini CLI headless (`gemini -p`) on a prompt, in the
    /// step's workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemini_cli: Option<GeminiSpec>,
    /// Runs an agent CLI that the workers know by its capability
    /// (`qwen-code`, or any of the above) headless on a prompt, in the
    /// step's workspace: each new agent CLI is run through this, with no
    /// runtime field of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// Makes the task's branch from its last steps' and delivers it. Tidewright
    /// adds this step to a task that names a repository (see
    /// [`with_delivery`]); a task file never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<DeliverSpec>,
    /// What happens when an attempt fails; no retry when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// An attempt still running after this long is killed and fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub timeout_seconds: Option<u32>,
    /// An attempt that shows no sign of life (no output line, progress,
    /// log or tool event) for this long is killed and fails as stalled,
    /// then retried per its policy. Agent steps (Claude Code, Codex)
    /// default to [`DEFAULT_AGENT_STALL_SECONDS`]; other steps are not
    /// watched unless they set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub stall_timeout_seconds: Option<u32>,
    /// A person must approve the step before it runs: once its
    /// dependencies succeed it waits, `awaiting_approval`, for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
    /// The paths it means to change in the task's repository, as globs
    /// (`src/api/**`): a step whose globs may overlap another's waits for
    /// it rather than run beside it. Empty: no claim, no wait.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
    /// A change outside `touches` fails the step; otherwise it is an event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub touches_strict: bool,
    /// What happens when its dependencies' work in the task's repository
    /// will not merge: `fail` (the default) or `rerun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_conflict: Option<OnConflict>,
    /// The hosts its process may reach through the worker's egress proxy
    /// (see [`crate::egress`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// Secrets its worker's egress proxy adds to its HTTPS requests to
    /// named hosts, which its processes never hold (see
    /// [`crate::credential`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<crate::credential::Credential>,
    /// What it may use of its worker; each unset one is its pool's, and
    /// each set one is held to the pool's (the lower wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<StepLimits>,
    /// An agent step is done when these checks pass on its committed
    /// work, run apart from the agent; until then its session is sent
    /// back what failed (see [`crate::verify`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// Runs the agent step several times at once, across runtimes, each
    /// on its own branch, and continues from the one chosen (see
    /// [`crate::attempts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<AttemptsSpec>,
    /// Chooses among a step's attempts: tidewright puts it in place of a
    /// step with `attempts` (see [`crate::attempts::expand::with_attempts`]); a
    /// task file never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub select: Option<SelectSpec>,
    /// Agent runtimes it may move to, in order, when a provider's limit
    /// pauses every pool that runs its own (see [`crate::failover`]);
    /// without any it waits for the limit to reset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    /// Its move to a fallback, as tidewright wrote it; a task file never
    /// sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub failover: Option<crate::failover::Failover>,
    /// A reviewer agent reads its diff and approves or requests changes,
    /// which go back into its session (see [`crate::review`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<crate::review::ReviewSpec>,
    /// Set on the step that reviews another: tidewright puts it after a
    /// step with `review`; a task file never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub review_of: Option<crate::review::ReviewOf>,
    /// `auto`: tidewright runs the agent step on the runtime with the most
    /// passes per dollar on the task's repository, within its budget (see
    /// [`crate::auto`]); its own runtime is the one used while nothing is
    /// known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtimes: Option<crate::auto::Runtimes>,
    /// The runtime `runtimes: auto` chose, and why, as tidewright wrote it;
    /// a task file never sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub chosen: Option<crate::auto::Chosen>,
}

/// What a step does when its dependencies' work will not merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// The step fails, naming the steps and the paths.
    Fail,
    /// The later of the two runs again on top of the earlier's work, and
    /// the step waits for it (twice at most, then it fails).
    Rerun,
    /// The step's own Claude Code agent resolves the conflict in the
    /// conflicted worktree, told what each side was asked, before its
    /// task; tidewright commits the merge.
    Agent,
    /// A value that came over the wire and is neither; validation refuses
    /// it by name. Never read from YAML (serde refuses it there).
    #[serde(skip)]
    Unknown(String),
}

impl OnConflict {
    pub fn as_str(&self) -> &str {
        match self {
            OnConflict::Fail => "fail",
            OnConflict::Rerun => "rerun",
            OnConflict::Agent => "agent",
            OnConflict::Unknown(other) => other,
        }
    }

    pub fn parse(name: &str) -> OnConflict {
        match name {
            "fail" => OnConflict::Fail,
            "rerun" => OnConflict::Rerun,
            "agent" => OnConflict::Agent,
            other => OnConflict::Unknown(other.to_string()),
        }
    }
}

/// A human gate before a step: who may decide, what they are asked, and how
/// long the step waits before it fails for want of a decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSpec {
    /// What the approvers are asked, shown with the waiting step.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Who may approve or reject: a caller's name (its token's name, its
    /// JWT subject) or a role (`admin`, `developer`, `viewer`). Nobody else
    /// may decide, admins included.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub approvers: Vec<String>,
    /// Undecided after this long, the step fails saying so; it waits for
    /// ever when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub timeout_seconds: Option<u32>,
}

impl ApprovalSpec {
    /// Whether a caller of this name and role may decide.
    pub fn names(&self, name: &str, role: &str) -> bool {
        self.approvers.iter().any(|a| a == name || a == role)
    }
}

/// Retries with exponential backoff: the delay before attempt n (n >= 2) is
/// `initialDelayMs * multiplier^(n-2)`, at most `maxDelayMs`, plus up to a
/// fifth more of jitter so a fleet of failures does not retry in lockstep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: 1 means no retry.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 100)))]
    pub max_attempts: u32,
    #[serde(default = "RetryPolicy::default_initial_delay_ms")]
    pub initial_delay_ms: u64,
    #[serde(default = "RetryPolicy::default_max_delay_ms")]
    pub max_delay_ms: u64,
    #[serde(default = "RetryPolicy::default_multiplier")]
    pub multiplier: f64,
}

impl RetryPolicy {
    fn default_initial_delay_ms() -> u64 {
        1000
    }

    fn default_max_delay_ms() -> u64 {
        60_000
    }

    fn default_multiplier() -> f64 {
        2.0
    }

    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            initial_delay_ms: Self::default_initial_delay_ms(),
            max_delay_ms: Self::default_max_delay_ms(),
            multiplier: Self::default_multiplier(),
        }
    }

    /// The delay before `attempt` (2 for the first retry), without jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let retries_before = attempt.saturating_sub(2).min(64) as i32;
        let ms = self.initial_delay_ms as f64 * self.multiplier.powi(retries_before);
        Duration::from_millis(ms.min(self.max_delay_ms as f64) as u64)
    }
}

impl StepSpec {
    /// The runtime, when exactly one is set.
    pub fn runtime(&self) -> Option<Runtime<'_>> {
        if self.runtime_count() != 1 {
            return None;
        }
        if let Some(shell) = &self.shell {
            Some(Runtime::Shell(shell))
        } else if let Some(claude) = &self.claude_code {
            Some(Runtime::ClaudeCode(claude))
        } else if let Some(codex) = &self.codex {
            Some(Runtime::Codex(codex))
        } else if let Some(gemini) = &self.gemini_cli {
            Some(Runtime::Gemini(gemini))
        } else if let Some(agent) = &self.agent {
            Some(Runtime::Agent(agent))
        } else if self.noop.is_some() {
            Some(Runtime::Noop)
        } else {
            Some(Runtime::Deliver)
        }
    }

    /// How many runtimes the step sets (valid: exactly one).
    pub fn runtime_count(&self) -> usize {
        usize::from(self.shell.is_some())
            + usize::from(self.noop.is_some())
            + usize::from(self.claude_code.is_some())
            + usize::from(self.codex.is_some())
            + usize::from(self.gemini_cli.is_some())
            + usize::from(self.agent.is_some())
            + usize::from(self.deliver.is_some())
    }

    /// What a worker must offer to run the step: its `needs`, its agent
    /// runtime's capability (`claude-code`, `codex`) for an agent step (a
    /// shell step runs anywhere), and `grader` when a rubric is graded.
    pub fn required_capabilities(&self) -> Vec<String> {
        let graded = self.verify.as_ref().is_some_and(|v| !v.rubric.is_empty());
        required(&self.needs, self.agent_capability(), graded)
    }

    /// The capability of an agent step's runtime (`claude-code`, `codex`,
    /// an agent CLI's); `None` for any other step.
    pub fn agent_capability(&self) -> Option<&str> {
        match self.runtime() {
            Some(Runtime::ClaudeCode(_)) => Some(CLAUDE_CODE),
            Some(Runtime::Codex(_)) => Some(CODEX),
            Some(Runtime::Gemini(_)) => Some(GEMINI_CLI),
            Some(Runtime::Agent(agent)) => Some(agent.cli.as_str()),
            _ => None,
        }
    }

    /// Whether the step asks the control plane's grader model: to grade
    /// its rubric, or to judge among attempts.
    pub fn graded(&self) -> bool {
        self.verify.as_ref().is_some_and(|v| !v.rubric.is_empty())
            || self.select.as_ref().is_some_and(|s| s.select.judged())
    }

    /// The agent step run by another agent CLI, `runtime`: the same
    /// prompt and everything else the same, but what only its own CLI
    /// reads (its model, its tools).
    pub fn on_runtime(&self, runtime: &str) -> StepSpec {
        StepSpec {
            claude_code: None,
            codex: None,
            gemini_cli: None,
            agent: Some(AgentSpec {
                cli: runtime.to_string(),
                prompt: self.prompt().to_string(),
                model: None,
            }),
            ..self.clone()
        }
    }

    /// An agent step's prompt, whole; "" for any other step.
    pub fn prompt(&self) -> &str {
        match self.runtime() {
            Some(Runtime::ClaudeCode(claude)) => &claude.prompt,
            Some(Runtime::Codex(codex)) => &codex.prompt,
            Some(Runtime::Gemini(gemini)) => &gemini.prompt,
            Some(Runtime::Agent(agent)) => &agent.prompt,
            _ => "",
        }
    }

    /// A shell step, for tests and examples.
    pub fn shell(id: &str, command: &[&str]) -> Self {
        StepSpec {
            id: id.to_string(),
            depends_on: Vec::new(),
            needs: Vec::new(),
            shell: Some(ShellSpec {
                command: command.iter().map(|s| s.to_string()).collect(),
                env: BTreeMap::new(),
                secret_env: BTreeMap::new(),
                secret_files: BTreeMap::new(),
            }),
            noop: None,
            claude_code: None,
            codex: None,
            gemini_cli: None,
            agent: None,
            deliver: None,
            retry: None,
            timeout_seconds: None,
            stall_timeout_seconds: None,
            approval: None,
            touches: Vec::new(),
            touches_strict: false,
            on_conflict: None,
            egress: None,
            credentials: Vec::new(),
            limits: None,
            verify: None,
            attempts: None,
            select: None,
            fallback: Vec::new(),
            failover: None,
            runtimes: None,
            chosen: None,
            review: None,
            review_of: None,
        }
    }

    /// A no-op step, for tests and benchmarks.
    pub fn noop(id: &str) -> Self {
        StepSpec {
            id: id.to_string(),
            depends_on: Vec::new(),
            needs: Vec::new(),
            shell: None,
            noop: Some(NoopSpec {}),
            claude_code: None,
            codex: None,
            gemini_cli: None,
            agent: None,
            deliver: None,
            retry: None,
            timeout_seconds: None,
            stall_timeout_seconds: None,
            approval: None,
            touches: Vec::new(),
            touches_strict: false,
            on_conflict: None,
            egress: None,
            credentials: Vec::new(),
            limits: None,
            verify: None,
            attempts: None,
            select: None,
            fallback: Vec::new(),
            failover: None,
            runtimes: None,
            chosen: None,
            review: None,
            review_of: None,
        }
    }

    pub fn after(mut self, deps: &[&str]) -> Self {
        self.depends_on = deps.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn retrying(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// How long an attempt may stay silent before it is stalled: its own
    /// setting, or the agents' default for an agent's step.
    pub fn stall_timeout(&self) -> Option<u32> {
        let agent = matches!(
            self.runtime(),
            Some(
                Runtime::ClaudeCode(_) | Runtime::Codex(_) | Runtime::Gemini(_) | Runtime::Agent(_)
            )
        );
        self.stall_timeout_seconds
            .or(agent.then_some(DEFAULT_AGENT_STALL_SECONDS))
    }

    /// Attempts allowed in all (1 without a retry policy).
    pub fn max_attempts(&self) -> u32 {
        self.retry.as_ref().map_or(1, |r| r.max_attempts.max(1))
    }

    /// The step waits for one of `approvers` to approve it.
    pub fn approved_by(mut self, approvers: &[&str]) -> Self {
        self.approval = Some(ApprovalSpec {
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            ..ApprovalSpec::default()
        });
        self
    }

    pub fn needing(mut self, capabilities: &[&str]) -> Self {
        self.needs = capabilities.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// Adds the deliver step to a task that names a repository and has none:
/// it depends on the task's last steps (those nothing depends on), so the
/// task's branch is their merge, and retries as a push may fail for a
/// moment.
pub fn with_delivery(spec: &mut TaskSpec) {
    if spec.repo.is_none()
        || spec.steps.is_empty()
        || spec.steps.iter().any(|s| s.deliver.is_some())
    {
        return;
    }
    // A landing without checks of its own runs its verified steps' checks
    // on the merge (each name once: the first step's check of a name).
    let verified: Vec<crate::verify::CheckSpec> = spec
        .steps
        .iter()
        .filter_map(|s| s.verify.as_ref())
        .flat_map(|v| v.checks.iter().cloned())
        .collect();
    if let Some(land) = spec.repo.as_mut().and_then(|r| r.land.as_mut())
        && land.checks.is_empty()
    {
        for check in verified {
            if !land.checks.iter().any(|c| c.name == check.name) {
                land.checks.push(check);
            }
        }
    }
    let depended_on: std::collections::HashSet<&str> = spec
        .steps
        .iter()
        .flat_map(|s| s.depends_on.iter().map(String::as_str))
        .collect();
    let sinks = spec
        .steps
        .iter()
        .filter(|s| !depended_on.contains(s.id.as_str()))
        .map(|s| s.id.clone())
        .collect();
    spec.steps.push(StepSpec {
        depends_on: sinks,
        noop: None,
        deliver: Some(DeliverSpec {}),
        retry: Some(RetryPolicy::new(3)),
        ..StepSpec::noop(DELIVER_STEP)
    });
}

impl StepSpec {
    /// What the step was asked to do, for the agent resolving a conflict
    /// between its work and another's: its prompt, or its command.
    pub fn asked(&self) -> String {
        let mut asked = match self.runtime() {
            Some(Runtime::ClaudeCode(claude)) => claude.prompt.clone(),
            Some(Runtime::Codex(codex)) => codex.prompt.clone(),
            Some(Runtime::Gemini(gemini)) => gemini.prompt.clone(),
            Some(Runtime::Agent(agent)) => agent.prompt.clone(),
            Some(Runtime::Shell(shell)) => format!("run `{}`", shell.command.join(" ")),
            _ => String::new(),
        };
        crate::text::truncate_at_char_boundary(&mut asked, crate::repo::MAX_ASKED_BYTES);
        asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_task_file_parses_with_camel_case_fields() {
        let yaml = r#"
name: demo
labels: {team: infra}
priority: 5
steps:
  - id: a
    shell: {command: [echo, hi], env: {X: "1"}}
  - id: b
    dependsOn: [a]
    needs: [gpu]
    noop: {}
"#;
        let spec: TaskSpec = serde_yaml::from_str(yaml).expect("parses");
        assert_eq!(spec.priority, 5);
        assert_eq!(spec.steps[1].depends_on, vec!["a"]);
        assert_eq!(spec.steps[1].runtime(), Some(Runtime::Noop));
        match spec.steps[0].runtime() {
            Some(Runtime::Shell(s)) => assert_eq!(s.command, vec!["echo", "hi"]),
            other => panic!("unexpected runtime {other:?}"),
        }
    }

    #[test]
    fn the_queue_view_of_a_stored_spec_reads_priority_needs_labels_and_repo_alone() {
        let mut agent = StepSpec::noop("agent");
        agent.noop = None;
        agent.claude_code = Some(ClaudeCodeSpec {
            prompt: "do it".into(),
            ..ClaudeCodeSpec::default()
        });
        let spec = TaskSpec {
            priority: -3,
            steps: vec![
                StepSpec::shell("plain", &["echo", "hi"]),
                StepSpec::noop("gpu").needing(&["gpu", "big"]),
                agent.clone().needing(&["repo"]),
                StepSpec {
                    id: "any".into(),
                    claude_code: None,
                    agent: Some(AgentSpec {
                        cli: QWEN_CODE.into(),
                        prompt: "do it".into(),
                        model: None,
                    }),
                    ..agent.clone()
                },
                StepSpec {
                    id: "graded".into(),
                    verify: Some(crate::VerifySpec {
                        rubric: "It is documented.".into(),
                        ..crate::VerifySpec::default()
                    }),
                    ..agent
                },
            ],
            labels: [("team".to_string(), "infra".to_string())].into(),
            repo: Some(crate::RepoSpec {
                url: "https://git.example/app.git".into(),
                ..crate::RepoSpec::default()
            }),
            ..TaskSpec::default()
        };
        let json = serde_json::to_string(&spec).expect("json");
        let view: QueueView = serde_json::from_str(&json).expect("a view");
        assert_eq!(view.priority, -3);
        // What a tenant's fairness key keys a cold task by.
        assert_eq!(view.labels, spec.labels);
        assert_eq!(
            view.repo.map(|r| r.url).as_deref(),
            Some("https://git.example/app.git")
        );
        let needs: Vec<Vec<String>> = view
            .steps
            .iter()
            .map(QueueViewStep::required_capabilities)
            .collect();
        let expected: Vec<Vec<String>> = spec
            .steps
            .iter()
            .map(StepSpec::required_capabilities)
            .collect();
        assert_eq!(needs, expected);
        assert_eq!(needs[2], ["repo", CLAUDE_CODE]);
        assert_eq!(needs[3], [QWEN_CODE]);
        assert_eq!(needs[4], [CLAUDE_CODE, "grader"]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay_ms: 100,
            max_delay_ms: 1000,
            multiplier: 3.0,
        };
        let delays: Vec<u64> = (2..=6)
            .map(|n| policy.delay_before(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 300, 900, 1000, 1000]);
    }

    #[test]
    fn retry_defaults_fill_in() {
        let step: StepSpec =
            serde_yaml::from_str("id: a\nnoop: {}\nretry: {maxAttempts: 3}\ntimeoutSeconds: 5\n")
                .expect("parses");
        assert_eq!(step.retry, Some(RetryPolicy::new(3)));
        assert_eq!(step.max_attempts(), 3);
        assert_eq!(step.timeout_seconds, Some(5));
    }

    #[test]
    fn a_command_written_as_one_line_is_refused_with_the_list_that_runs_it_in_a_shell() {
        let yaml = "name: x\nsteps:\n  - id: a\n    shell:\n      command: echo \"hi\"; sleep 1\n";
        let err = serde_yaml::from_str::<TaskSpec>(yaml)
            .expect_err("a string is not a command")
            .to_string();
        assert!(
            err.starts_with("steps[0].shell.command: a list, not a string")
                && err.contains(r#"write command: ["sh","-c","echo \"hi\"; sleep 1"]"#),
            "{err}"
        );
        // The list it shows is a command that parses.
        let shown = "name: x\nsteps:\n  - id: a\n    shell:\n      command: [\"sh\",\"-c\",\"echo \\\"hi\\\"; sleep 1\"]\n";
        let spec: TaskSpec = serde_yaml::from_str(shown).expect("the list form parses");
        let shell = spec.steps[0].shell.as_ref().expect("a shell step");
        assert_eq!(shell.command, ["sh", "-c", "echo \"hi\"; sleep 1"]);
        // JSON, as the HTTP API reads it, says the same.
        let json = r#"{"name":"x","steps":[{"id":"a","shell":{"command":"make test"}}]}"#;
        let err = serde_json::from_str::<TaskSpec>(json)
            .expect_err("a string is not a command")
            .to_string();
        assert!(
            err.contains(r#"write command: ["sh","-c","make test"]"#),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let yaml = "name: x\nsteps:\n  - id: a\n    dependson: [b]\n    noop: {}\n";
        let err = serde_yaml::from_str::<TaskSpec>(yaml)
            .expect_err("typo must not pass")
            .to_string();
        assert!(err.contains("dependson"), "{err}");
    }
}

/// A step's `needs`, and its agent runtime's capability for an agent step.
fn required(needs: &[String], agent: Option<&str>, graded: bool) -> Vec<String> {
    let mut needs = needs.to_vec();
    let grader = graded.then_some(crate::verify::grade::GRADER);
    for implied in agent.into_iter().chain(grader) {
        if !needs.iter().any(|n| n == implied) {
            needs.push(implied.to_string());
        }
    }
    needs
}

/// What the ready queue needs of a stored spec: its priority, what each
/// step needs, and what a fairness key may key it by (its labels, its
/// repository's URL), read from the spec's JSON without the rest (prompts,
/// commands, env), which recovery of a deep queue would otherwise parse a
/// million times.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub steps: Vec<QueueViewStep>,
    /// What a tenant's fairness key may key the task by.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub repo: Option<QueueViewRepo>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct QueueViewRepo {
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueViewStep {
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    claude_code: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    codex: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    gemini_cli: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    agent: Option<QueueViewAgent>,
    #[serde(default)]
    verify: Option<QueueViewVerify>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct QueueViewAgent {
    #[serde(default)]
    cli: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct QueueViewVerify {
    /// Present only when not empty: a spec is stored as serialized.
    #[serde(default)]
    rubric: Option<serde::de::IgnoredAny>,
}

impl QueueViewStep {
    /// As [`StepSpec::required_capabilities`].
    pub fn required_capabilities(&self) -> Vec<String> {
        let agent = if self.claude_code.is_some() {
            Some(CLAUDE_CODE)
        } else if self.codex.is_some() {
            Some(CODEX)
        } else if self.gemini_cli.is_some() {
            Some(GEMINI_CLI)
        } else {
            self.agent.as_ref().map(|a| a.cli.as_str())
        };
        let graded = self.verify.as_ref().is_some_and(|v| v.rubric.is_some());
        required(&self.needs, agent, graded)
    }
}
