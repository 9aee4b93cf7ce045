//! DAG validation: every rejection names the field (`steps[2].dependsOn[0]`)
//! and the step, so a user can fix the file without guessing.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::budget::{Budget, TenantBudget};
use crate::error::{Error, invalid};
use crate::spec::{ApprovalSpec, Runtime, StepSpec, TaskSpec};

mod agents;
mod attempts;
mod auto;
mod failover;
mod repository;
mod review;
mod verify;
pub use agents::valid_session_id;
use agents::{validate_agent, validate_claude, validate_codex, validate_gemini};
use repository::validate_delivery;
pub use repository::validate_repo;

/// Size limits on submitted tasks. The defaults keep one task's record small
/// enough to load, log and send around without thinking about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_steps: usize,
    pub max_name_bytes: usize,
    pub max_labels: usize,
    pub max_label_key_bytes: usize,
    pub max_label_value_bytes: usize,
    pub max_step_id_bytes: usize,
    pub max_needs: usize,
    pub max_capability_bytes: usize,
    /// All arguments of one command together.
    pub max_command_bytes: usize,
    /// All keys and values of one step's environment together.
    pub max_env_bytes: usize,
    /// One gRPC message, decoded (a submit, a worker's batch of logs).
    pub max_message_bytes: usize,
    /// A step's output JSON; a larger one fails the attempt.
    pub max_output_bytes: usize,
    /// One log line; a longer one is cut and marked as cut.
    pub max_log_line_bytes: usize,
    /// Watch streams one caller may hold open at once.
    pub max_watches_per_caller: usize,
    /// A Claude Code step's prompt.
    pub max_prompt_bytes: usize,
    /// How deep tasks submitted by steps may nest (a child is at depth 1).
    pub max_child_depth: u32,
    /// How many tasks the steps of one task may submit.
    pub max_children: usize,
    /// The model that grades verified steps' rubrics (`--grader-model`);
    /// without one, a rubric is refused, since nothing would grade it.
    pub grader: Option<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 1000,
            max_name_bytes: 253,
            max_labels: 64,
            max_label_key_bytes: 128,
            max_label_value_bytes: 256,
            max_step_id_bytes: 63,
            max_needs: 32,
            max_capability_bytes: 63,
            max_command_bytes: 64 * 1024,
            max_env_bytes: 64 * 1024,
            max_message_bytes: 4 * 1024 * 1024,
            max_output_bytes: 1024 * 1024,
            max_log_line_bytes: 16 * 1024,
            max_watches_per_caller: 64,
            max_prompt_bytes: 256 * 1024,
            max_child_depth: crate::family::DEFAULT_MAX_CHILD_DEPTH,
            max_children: crate::family::DEFAULT_MAX_CHILDREN,
            grader: None,
        }
    }
}

/// Checks a task: shape, sizes, references and acyclicity.
/// The longest retention a task may ask for: longer is a mistake (0 is
/// forever), and every window in microseconds stays far inside an i64.
pub const MAX_RETENTION_SECONDS: u64 = 100 * 365 * 24 * 3600;

pub fn validate(spec: &TaskSpec, limits: &Limits) -> Result<(), Error> {
    if spec.name.len() > limits.max_name_bytes {
        return Err(invalid(
            "name",
            format!(
                "is {} bytes; the limit is {}",
                spec.name.len(),
                limits.max_name_bytes
            ),
        ));
    }
    validate_labels(&spec.labels, limits)?;
    if let Some(budget) = &spec.budget {
        validate_budget(budget, "budget")?;
    }
    if let Some(repo) = &spec.repo {
        validate_repo(repo, "repo")?;
    }
    if let Some(egress) = &spec.egress {
        validate_egress(egress, "egress")?;
    }
    if spec
        .retention_seconds
        .is_some_and(|s| s > MAX_RETENTION_SECONDS)
    {
        return Err(invalid(
            "retentionSeconds",
            format!("is more than {MAX_RETENTION_SECONDS} (100 years); 0 keeps the task forever"),
        ));
    }
    if spec.plan && spec.prompt.is_empty() {
        return Err(invalid("plan", "planning needs the task's prompt"));
    }
    if !spec.prompt.is_empty() {
        if !spec.steps.is_empty() {
            return Err(invalid(
                "prompt",
                "a task is a prompt or a list of steps, not both",
            ));
        }
        return validate_task_prompt(&spec.prompt, limits);
    }
    if spec.steps.is_empty() {
        return Err(invalid(
            "steps",
            "a task needs at least one step (or a prompt)",
        ));
    }
    if spec.steps.len() > limits.max_steps {
        return Err(invalid(
            "steps",
            format!(
                "has {} steps; the limit (max-steps) is {}",
                spec.steps.len(),
                limits.max_steps
            ),
        ));
    }

    let mut index: HashMap<&str, usize> = HashMap::with_capacity(spec.steps.len());
    for (i, step) in spec.steps.iter().enumerate() {
        validate_step_id(i, &step.id, limits)?;
        if let Some(first) = index.insert(step.id.as_str(), i) {
            return Err(invalid(
                format!("steps[{i}].id"),
                format!("step id {:?} is already used by steps[{first}]", step.id),
            ));
        }
    }
    for (i, step) in spec.steps.iter().enumerate() {
        validate_step(i, step, &index, limits)?;
        if let Some(egress) = &step.egress {
            validate_egress(egress, &format!("steps[{i}].egress"))?;
        }
        if !step.credentials.is_empty() {
            let (policy, lists) = crate::credential::submit_policy(
                spec.egress.as_ref(),
                step.egress.as_ref(),
                spec.repo.as_ref().map(|r| r.url.as_str()),
            );
            crate::credential::validate(&step.credentials, i, &policy, &lists)?;
        }
        if let Some(limits) = &step.limits {
            limits.validate(&format!("steps[{i}].limits"))?;
        }
        validate_delivery(i, step, spec.repo.is_some())?;
        verify::validate_verify(i, step, spec.repo.is_some(), limits)?;
        auto::validate_runtimes(i, step, spec.repo.is_some())?;
        attempts::validate_attempts(i, step, spec.repo.is_some(), limits)?;
        failover::validate_fallback(i, step)?;
        review::validate_review(i, step, spec.repo.is_some(), limits)?;
    }
    let expanded: usize = spec
        .steps
        .iter()
        .map(|s| {
            s.attempts.as_ref().map_or(1, |a| a.n as usize + 1) + usize::from(s.review.is_some())
        })
        .sum();
    if expanded > limits.max_steps {
        return Err(invalid(
            "steps",
            format!(
                "has {expanded} steps with its attempts and reviewers (each step with attempts is its attempts and the step that chooses; each review is a step); the limit (max-steps) is {}",
                limits.max_steps
            ),
        ));
    }
    repository::validate_land(spec, limits)?;
    repository::validate_follow(spec)?;
    check_acyclic(spec, &index)
}

/// Every entry of an egress allow-list parses; `field` is where the list
/// sits (`egress`, `steps[2].egress`).
pub fn validate_egress(egress: &crate::egress::Egress, field: &str) -> Result<(), Error> {
    crate::egress::AllowList::parse(&egress.allow)
        .map(drop)
        .map_err(|(n, why)| invalid(format!("{field}.allow[{n}]"), why))
}

/// A path in a step's private home: relative, inside it (no `..`), of
/// plain names.
pub fn home_path(path: &str) -> Result<(), String> {
    let parts: Vec<&str> = path.split('/').collect();
    let plain = |part: &&str| {
        !part.is_empty()
            && *part != "."
            && *part != ".."
            && part.len() <= 255
            && !part.contains('\0')
    };
    if path.len() > 1024 || !parts.iter().all(plain) {
        return Err(format!(
            "{path:?} must be a path inside the home, like .npmrc or .config/gh/hosts.yml (relative, no '..')"
        ));
    }
    Ok(())
}

/// A step's limits: sizes that parse, counts above zero, at least one set.
/// A budget names at least one limit, each above zero. `field` is where
/// it sits (`budget` in a task, a raise's own fields).
pub fn validate_budget(budget: &Budget, field: &str) -> Result<(), Error> {
    if budget.is_empty() {
        return Err(invalid(field, "set usd, tokens or both"));
    }
    if let Some(usd) = budget.usd
        && !(usd.is_finite() && usd > 0.0)
    {
        return Err(invalid(
            format!("{field}.usd"),
            format!("must be a number of dollars above 0, not {usd}"),
        ));
    }
    if budget.tokens == Some(0) {
        return Err(invalid(format!("{field}.tokens"), "must be at least 1"));
    }
    if budget.approvers.len() > MAX_APPROVERS {
        return Err(invalid(
            format!("{field}.approvers"),
            format!("at most {MAX_APPROVERS} approvers"),
        ));
    }
    for (a, approver) in budget.approvers.iter().enumerate() {
        if approver.trim().is_empty() || approver.len() > MAX_APPROVER_BYTES {
            return Err(invalid(
                format!("{field}.approvers[{a}]"),
                format!("an approver is a name or a role, 1 to {MAX_APPROVER_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// The longest approver a budget names: a token's name or a JWT subject.
const MAX_APPROVER_BYTES: usize = 253;

/// A tenant budget's dollar amounts are numbers, 0 or more (0 lets the
/// tenant spend nothing). `field` is where it sits.
pub fn validate_tenant_budget(budget: &TenantBudget, field: &str) -> Result<(), Error> {
    for (part, usd) in [
        ("usdPerDay", budget.usd_per_day),
        ("usdPerMonth", budget.usd_per_month),
    ] {
        if let Some(usd) = usd
            && !(usd.is_finite() && usd >= 0.0)
        {
            return Err(invalid(
                format!("{field}.{part}"),
                format!("must be a number of dollars, 0 or more, not {usd}"),
            ));
        }
    }
    Ok(())
}

fn validate_task_prompt(prompt: &str, limits: &Limits) -> Result<(), Error> {
    if prompt.trim().is_empty() {
        return Err(invalid("prompt", "is blank"));
    }
    if prompt.len() > limits.max_prompt_bytes {
        return Err(invalid(
            "prompt",
            format!(
                "is {} bytes; the limit (max-prompt-bytes) is {}",
                prompt.len(),
                limits.max_prompt_bytes
            ),
        ));
    }
    if prompt.contains('\0') {
        return Err(invalid("prompt", "holds a NUL byte"));
    }
    Ok(())
}

/// Whether a label key holds only what any label key may: letters,
/// digits, '-', '_', '.' and '/' (a filter on labels is held to it too).
pub fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn validate_labels(labels: &BTreeMap<String, String>, limits: &Limits) -> Result<(), Error> {
    if labels.len() > limits.max_labels {
        return Err(invalid(
            "labels",
            format!(
                "has {} labels; the limit (max-labels) is {}",
                labels.len(),
                limits.max_labels
            ),
        ));
    }
    for (key, value) in labels {
        if key.is_empty() || key.len() > limits.max_label_key_bytes {
            return Err(invalid(
                format!("labels[{key:?}]"),
                format!(
                    "a label key must be 1 to {} bytes",
                    limits.max_label_key_bytes
                ),
            ));
        }
        if !valid_label_key(key) {
            return Err(invalid(
                format!("labels[{key:?}]"),
                "a label key may hold only letters, digits, '-', '_', '.' and '/'",
            ));
        }
        if value.len() > limits.max_label_value_bytes {
            return Err(invalid(
                format!("labels[{key:?}]"),
                format!(
                    "the value is {} bytes; the limit is {}",
                    value.len(),
                    limits.max_label_value_bytes
                ),
            ));
        }
    }
    Ok(())
}

fn validate_step_id(i: usize, id: &str, limits: &Limits) -> Result<(), Error> {
    let field = format!("steps[{i}].id");
    if id.is_empty() {
        return Err(invalid(field, "a step needs an id"));
    }
    if id.len() > limits.max_step_id_bytes {
        return Err(invalid(
            field,
            format!(
                "step id {id:?} is {} bytes; the limit is {}",
                id.len(),
                limits.max_step_id_bytes
            ),
        ));
    }
    let well_formed = id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !well_formed {
        return Err(invalid(
            field,
            format!(
                "step id {id:?} must start with a lowercase letter or digit and hold only those, '-' and '_'"
            ),
        ));
    }
    Ok(())
}

fn validate_step(
    i: usize,
    step: &StepSpec,
    index: &HashMap<&str, usize>,
    limits: &Limits,
) -> Result<(), Error> {
    let id = &step.id;
    let mut seen = HashSet::new();
    for (d, dep) in step.depends_on.iter().enumerate() {
        let field = format!("steps[{i}].dependsOn[{d}]");
        if dep == id {
            return Err(invalid(field, format!("step {id:?} depends on itself")));
        }
        if !index.contains_key(dep.as_str()) {
            return Err(invalid(
                field,
                format!("step {id:?} depends on {dep:?}, which is not a step of this task"),
            ));
        }
        if !seen.insert(dep) {
            return Err(invalid(field, format!("step {id:?} lists {dep:?} twice")));
        }
    }

    if step.needs.len() > limits.max_needs {
        return Err(invalid(
            format!("steps[{i}].needs"),
            format!(
                "step {id:?} needs {} capabilities; the limit is {}",
                step.needs.len(),
                limits.max_needs
            ),
        ));
    }
    for (n, capability) in step.needs.iter().enumerate() {
        validate_capability(capability, limits).map_err(|message| {
            invalid(
                format!("steps[{i}].needs[{n}]"),
                format!("step {id:?}: {message}"),
            )
        })?;
    }

    if let Some(retry) = &step.retry {
        let field = format!("steps[{i}].retry");
        if !(1..=100).contains(&retry.max_attempts) {
            return Err(invalid(
                format!("{field}.maxAttempts"),
                format!("step {id:?}: must be 1 to 100"),
            ));
        }
        if retry.max_delay_ms > 3_600_000 {
            return Err(invalid(
                format!("{field}.maxDelayMs"),
                format!("step {id:?}: at most 3600000 (an hour)"),
            ));
        }
        if retry.initial_delay_ms > retry.max_delay_ms {
            return Err(invalid(
                format!("{field}.initialDelayMs"),
                format!(
                    "step {id:?}: must not exceed maxDelayMs ({})",
                    retry.max_delay_ms
                ),
            ));
        }
        if !(1.0..=10.0).contains(&retry.multiplier) {
            return Err(invalid(
                format!("{field}.multiplier"),
                format!("step {id:?}: must be 1 to 10"),
            ));
        }
    }
    if step
        .timeout_seconds
        .is_some_and(|t| !(1..=604_800).contains(&t))
    {
        return Err(invalid(
            format!("steps[{i}].timeoutSeconds"),
            format!("step {id:?}: must be 1 to 604800 (a week)"),
        ));
    }
    if step
        .stall_timeout_seconds
        .is_some_and(|t| !(1..=604_800).contains(&t))
    {
        return Err(invalid(
            format!("steps[{i}].stallTimeoutSeconds"),
            format!("step {id:?}: must be 1 to 604800 (a week)"),
        ));
    }
    if let Some(approval) = &step.approval {
        validate_approval(i, id, approval, limits)?;
    }
    repository::validate_step_work(i, step)?;

    match step.runtime() {
        None if step.runtime_count() == 0 => Err(invalid(
            format!("steps[{i}]"),
            format!(
                "step {id:?} sets no runtime; set one of: shell, noop, claudeCode, codex, geminiCli, agent"
            ),
        )),
        None => Err(invalid(
            format!("steps[{i}]"),
            format!(
                "step {id:?} sets more than one runtime; set exactly one of: shell, noop, claudeCode, codex, geminiCli, agent"
            ),
        )),
        Some(Runtime::Noop | Runtime::Deliver) => Ok(()),
        Some(Runtime::ClaudeCode(claude)) => validate_claude(i, id, claude, limits),
        Some(Runtime::Codex(codex)) => validate_codex(i, id, codex, limits),
        Some(Runtime::Gemini(gemini)) => validate_gemini(i, id, gemini, limits),
        Some(Runtime::Agent(agent)) => validate_agent(i, id, agent, limits),
        Some(Runtime::Shell(shell)) => {
            validate_argv(
                format!("steps[{i}].shell.command"),
                (&format!("step {id:?}"), &shell.command),
                || format!("step {id:?} needs a program to run"),
                limits,
            )?;
            let field = format!("steps[{i}].shell.env");
            for (key, kind) in shell
                .env
                .keys()
                .map(|k| (k, "env"))
                .chain(shell.secret_env.keys().map(|k| (k, "secretEnv")))
            {
                if key.is_empty() || key.contains(['=', '\0']) {
                    return Err(invalid(
                        format!("steps[{i}].shell.{kind}[{key:?}]"),
                        format!(
                            "step {id:?}: an environment variable name must be non-empty, without '=' or NUL"
                        ),
                    ));
                }
            }
            for (key, secret) in &shell.secret_env {
                let field = format!("steps[{i}].shell.secretEnv[{key:?}]");
                if shell.env.contains_key(key) {
                    return Err(invalid(
                        field,
                        format!("step {id:?}: {key} is set in env too; set it in one place"),
                    ));
                }
                if !crate::secret::valid_name(secret) {
                    return Err(invalid(
                        field,
                        format!(
                            "step {id:?}: secret name {secret:?} must be 1 to 253 bytes of letters, digits, '-', '_' and '.', not starting with '.'"
                        ),
                    ));
                }
            }
            for (path, secret) in &shell.secret_files {
                let field = format!("steps[{i}].shell.secretFiles[{path:?}]");
                if let Err(why) = home_path(path) {
                    return Err(invalid(field, format!("step {id:?}: {why}")));
                }
                if !crate::secret::valid_name(secret) {
                    return Err(invalid(
                        field,
                        format!(
                            "step {id:?}: secret name {secret:?} must be 1 to 253 bytes of letters, digits, '-', '_' and '.', not starting with '.'"
                        ),
                    ));
                }
            }
            if shell.env.values().any(|v| v.contains('\0')) {
                return Err(invalid(
                    field,
                    format!("step {id:?}: a value holds a NUL byte"),
                ));
            }
            let bytes: usize = shell
                .env
                .iter()
                .chain(&shell.secret_env)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            if bytes > limits.max_env_bytes {
                return Err(invalid(
                    field,
                    format!(
                        "step {id:?}: the environment is {bytes} bytes; the limit (max-env-bytes) is {}",
                        limits.max_env_bytes
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// A command tidewright runs as argv (a shell step's, a check's): a
/// program, no NUL byte, within max-command-bytes; `missing` says what
/// lacks a program. Each refusal names `field`.
fn validate_argv(
    field: String,
    (whose, argv): (&str, &[String]),
    missing: impl FnOnce() -> String,
    limits: &Limits,
) -> Result<(), Error> {
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err(invalid(field, missing()));
    }
    if argv.iter().any(|arg| arg.contains('\0')) {
        return Err(invalid(
            field,
            format!("{whose}: an argument holds a NUL byte"),
        ));
    }
    let bytes: usize = argv.iter().map(String::len).sum();
    if bytes > limits.max_command_bytes {
        return Err(invalid(
            field,
            format!(
                "{whose}: the command is {bytes} bytes; the limit (max-command-bytes) is {}",
                limits.max_command_bytes
            ),
        ));
    }
    Ok(())
}

/// Approvers, each of whom a caller can match, a question of a sane size
/// and a timeout within a month.
fn validate_approval(
    i: usize,
    id: &str,
    approval: &ApprovalSpec,
    limits: &Limits,
) -> Result<(), Error> {
    let field = format!("steps[{i}].approval");
    if approval.approvers.is_empty() {
        return Err(invalid(
            format!("{field}.approvers"),
            format!("step {id:?}: name at least one approver (a caller's name or a role)"),
        ));
    }
    if approval.approvers.len() > MAX_APPROVERS {
        return Err(invalid(
            format!("{field}.approvers"),
            format!("step {id:?}: at most {MAX_APPROVERS} approvers"),
        ));
    }
    for (a, approver) in approval.approvers.iter().enumerate() {
        if approver.trim().is_empty() || approver.len() > limits.max_name_bytes {
            return Err(invalid(
                format!("{field}.approvers[{a}]"),
                format!(
                    "step {id:?}: an approver is a name or a role, 1 to {} bytes",
                    limits.max_name_bytes
                ),
            ));
        }
    }
    if approval.message.len() > MAX_APPROVAL_MESSAGE_BYTES {
        return Err(invalid(
            format!("{field}.message"),
            format!("step {id:?}: at most {MAX_APPROVAL_MESSAGE_BYTES} bytes"),
        ));
    }
    if approval
        .timeout_seconds
        .is_some_and(|t| !(1..=MAX_APPROVAL_SECONDS).contains(&t))
    {
        return Err(invalid(
            format!("{field}.timeoutSeconds"),
            format!("step {id:?}: must be 1 to {MAX_APPROVAL_SECONDS} (30 days)"),
        ));
    }
    Ok(())
}

const MAX_APPROVERS: usize = 32;
const MAX_APPROVAL_MESSAGE_BYTES: usize = 4096;
const MAX_APPROVAL_SECONDS: u32 = 30 * 24 * 3600;

/// Capability names are what workers advertise: short, plain tokens.
pub fn validate_capability(capability: &str, limits: &Limits) -> Result<(), String> {
    if capability.is_empty() || capability.len() > limits.max_capability_bytes {
        return Err(format!(
            "a capability must be 1 to {} bytes",
            limits.max_capability_bytes
        ));
    }
    if !capability
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
    {
        return Err(format!(
            "capability {capability:?} may hold only letters, digits, '-', '_', '.', '/' and ':'"
        ));
    }
    Ok(())
}

/// Depth-first search; on a cycle, names its steps in order.
fn check_acyclic(spec: &TaskSpec, index: &HashMap<&str, usize>) -> Result<(), Error> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; spec.steps.len()];
    for root in 0..spec.steps.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Explicit stack of (step, next dependency to visit): deep DAGs must
        // not overflow the thread's stack.
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::OnPath;
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match spec.steps[node].depends_on.get(*next) {
                None => {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
                Some(dep) => {
                    *next += 1;
                    let dep = index[dep.as_str()];
                    match marks[dep] {
                        Mark::Done => {}
                        Mark::New => {
                            marks[dep] = Mark::OnPath;
                            stack.push((dep, 0));
                        }
                        Mark::OnPath => {
                            let start = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                            let mut path: Vec<&str> = stack[start..]
                                .iter()
                                .map(|(n, _)| spec.steps[*n].id.as_str())
                                .collect();
                            path.push(spec.steps[dep].id.as_str());
                            return Err(invalid(
                                format!("steps[{dep}].dependsOn"),
                                format!("the dependencies form a cycle: {}", path.join(" -> ")),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "validate_repo_tests.rs"]
mod repo_tests;
