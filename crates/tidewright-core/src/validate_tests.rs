//! The rules every task spec is checked against, each refusal naming its field.

use super::*;
use crate::spec::ShellSpec;

fn task(steps: Vec<StepSpec>) -> TaskSpec {
    TaskSpec {
        name: "t".into(),
        steps,
        ..TaskSpec::default()
    }
}

/// The field and message validation refuses `spec` with, under the
/// default limits.
pub(crate) fn rejected(spec: &TaskSpec) -> (String, String) {
    match validate(spec, &Limits::default()) {
        Err(Error::Invalid { field, message }) => (field, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn a_task_is_a_prompt_or_steps() {
    let prompt = |text: &str, plan: bool| TaskSpec {
        prompt: text.into(),
        plan,
        ..TaskSpec::default()
    };
    assert_eq!(
        validate(&prompt("Fix the flaky test", true), &Limits::default()),
        Ok(())
    );
    assert_eq!(
        validate(&prompt("Fix the flaky test", false), &Limits::default()),
        Ok(())
    );
    assert_eq!(rejected(&prompt("", true)).0, "plan");
    assert_eq!(rejected(&prompt("", false)).0, "steps");
    assert_eq!(rejected(&prompt("  ", false)).0, "prompt");
    assert_eq!(rejected(&prompt(" \n ", true)).0, "prompt");
    assert_eq!(rejected(&prompt("a\0b", false)).0, "prompt");
    let huge = "x".repeat(Limits::default().max_prompt_bytes + 1);
    assert!(
        rejected(&prompt(&huge, true))
            .1
            .contains("max-prompt-bytes")
    );
    let both = TaskSpec {
        steps: vec![StepSpec::noop("a")],
        ..prompt("Fix it", false)
    };
    assert_eq!(
        rejected(&both),
        (
            "prompt".to_string(),
            "a task is a prompt or a list of steps, not both".to_string()
        )
    );
    let step = prompt("Fix it", false).prompt_as_step().expect("a step");
    assert_eq!(
        validate(&task(vec![step]), &Limits::default()),
        Ok(()),
        "a bare prompt runs as one valid Claude Code step"
    );
    assert!(prompt("Fix it", true).prompt_as_step().is_none());
}

#[test]
fn secret_env_names_secrets_and_does_not_shadow_env() {
    let with_secret = |var: &str, secret: &str, also_env: bool| {
        let mut step = StepSpec::shell("a", &["true"]);
        if let Some(shell) = &mut step.shell {
            shell.secret_env.insert(var.into(), secret.into());
            if also_env {
                shell.env.insert(var.into(), "plain".into());
            }
        }
        task(vec![step])
    };
    assert_eq!(
        validate(
            &with_secret("API_KEY", "api-key", false),
            &Limits::default()
        ),
        Ok(())
    );
    let (field, message) = rejected(&with_secret("API_KEY", "../etc/passwd", false));
    assert_eq!(field, "steps[0].shell.secretEnv[\"API_KEY\"]");
    assert!(message.contains("secret name"), "{message}");
    assert!(
        rejected(&with_secret("API_KEY", ".hidden", false))
            .1
            .contains("secret name")
    );
    assert!(
        rejected(&with_secret("API_KEY", "api-key", true))
            .1
            .contains("in env too")
    );
    assert!(
        rejected(&with_secret("A=B", "api-key", false))
            .0
            .contains("secretEnv")
    );
}

#[test]
fn claude_code_steps_are_checked_field_by_field() {
    let claude = |edit: &dyn Fn(&mut crate::spec::ClaudeCodeSpec)| {
        let mut spec = crate::spec::ClaudeCodeSpec {
            prompt: "fix the bug".into(),
            ..Default::default()
        };
        edit(&mut spec);
        let mut step = StepSpec::noop("agent");
        step.noop = None;
        step.claude_code = Some(spec);
        task(vec![step])
    };
    assert_eq!(validate(&claude(&|_| {}), &Limits::default()), Ok(()));
    let limits = Limits {
        max_prompt_bytes: 8,
        ..Limits::default()
    };
    let Err(Error::Invalid { field, message }) = validate(&claude(&|_| {}), &limits) else {
        panic!("a long prompt is refused");
    };
    assert_eq!(field, "steps[0].claudeCode.prompt");
    assert!(message.contains("max-prompt-bytes"), "{message}");
    type Edit<'a> = &'a dyn Fn(&mut crate::spec::ClaudeCodeSpec);
    let cases: [(Edit, &str); 5] = [
        (&|c| c.prompt = "  ".into(), "steps[0].claudeCode.prompt"),
        (&|c| c.max_turns = Some(0), "steps[0].claudeCode.maxTurns"),
        (
            &|c| c.model = Some("a model".into()),
            "steps[0].claudeCode.model",
        ),
        (
            &|c| c.allowed_tools = vec!["Read".into(), "Write,Bash".into()],
            "steps[0].claudeCode.allowedTools[1]",
        ),
        (
            &|c| c.permission_mode = Some(crate::spec::PermissionMode::parse("yolo")),
            "steps[0].claudeCode.permissionMode",
        ),
    ];
    for (edit, want) in cases {
        assert_eq!(rejected(&claude(edit)).0, want);
    }
    // Two runtimes at once name all three choices.
    let mut both = StepSpec::noop("x");
    both.claude_code = Some(crate::spec::ClaudeCodeSpec {
        prompt: "p".into(),
        ..Default::default()
    });
    assert!(rejected(&task(vec![both])).1.contains("claudeCode"));
}

#[test]
fn a_claude_code_step_needs_a_claude_code_worker() {
    let mut step = StepSpec::noop("agent").needing(&["git"]);
    step.noop = None;
    step.claude_code = Some(crate::spec::ClaudeCodeSpec {
        prompt: "p".into(),
        ..Default::default()
    });
    assert_eq!(step.required_capabilities(), ["git", "claude-code"]);
    assert_eq!(
        StepSpec::shell("s", &["true"]).required_capabilities(),
        Vec::<String>::new()
    );
}

#[test]
fn codex_steps_are_checked_field_by_field_and_need_a_codex_worker() {
    let codex = |edit: &dyn Fn(&mut crate::spec::CodexSpec)| {
        let mut spec = crate::spec::CodexSpec {
            prompt: "add tests".into(),
            ..Default::default()
        };
        edit(&mut spec);
        let mut step = StepSpec::noop("agent").needing(&["git"]);
        step.noop = None;
        step.codex = Some(spec);
        task(vec![step])
    };
    assert_eq!(validate(&codex(&|_| {}), &Limits::default()), Ok(()));
    type Edit<'a> = &'a dyn Fn(&mut crate::spec::CodexSpec);
    let cases: [(Edit, &str); 4] = [
        (&|c| c.prompt = " ".into(), "steps[0].codex.prompt"),
        (&|c| c.prompt = "a\0b".into(), "steps[0].codex.prompt"),
        (
            &|c| c.model = Some("a model".into()),
            "steps[0].codex.model",
        ),
        (
            &|c| c.sandbox = crate::spec::CodexSandbox::from_wire("danger-full-access"),
            "steps[0].codex.sandbox",
        ),
    ];
    for (edit, want) in cases {
        assert_eq!(rejected(&codex(edit)).0, want);
    }
    assert_eq!(
        codex(&|_| {}).steps[0].required_capabilities(),
        ["git", "codex"]
    );
    // An agent's step: watched for silence by default.
    assert_eq!(
        codex(&|_| {}).steps[0].stall_timeout(),
        Some(crate::DEFAULT_AGENT_STALL_SECONDS)
    );
    // A step with two agent runtimes is refused, naming codex among them.
    let mut both = codex(&|_| {}).steps[0].clone();
    both.claude_code = Some(crate::spec::ClaudeCodeSpec {
        prompt: "p".into(),
        ..Default::default()
    });
    assert!(rejected(&task(vec![both])).1.contains("codex"));
    // The task file's spelling, and serde refusing what it does not know.
    let yaml = "name: x\nsteps:\n  - id: a\n    codex: {prompt: p, sandbox: readOnly}\n";
    let spec: crate::TaskSpec = serde_yaml::from_str(yaml).expect("parses");
    assert_eq!(
        spec.steps[0].codex.as_ref().and_then(|c| c.sandbox.clone()),
        Some(crate::spec::CodexSandbox::ReadOnly)
    );
    let bad = "name: x\nsteps:\n  - id: a\n    codex: {prompt: p, sandbox: yolo}\n";
    assert!(serde_yaml::from_str::<crate::TaskSpec>(bad).is_err());
}

#[test]
fn gemini_cli_steps_are_checked_field_by_field_and_need_a_gemini_cli_worker() {
    let gemini = |edit: &dyn Fn(&mut crate::spec::GeminiSpec)| {
        let mut spec = crate::spec::GeminiSpec {
            prompt: "summarize".into(),
            ..Default::default()
        };
        edit(&mut spec);
        let mut step = StepSpec::noop("agent");
        step.noop = None;
        step.gemini_cli = Some(spec);
        task(vec![step])
    };
    assert_eq!(validate(&gemini(&|_| {}), &Limits::default()), Ok(()));
    type Edit<'a> = &'a dyn Fn(&mut crate::spec::GeminiSpec);
    let cases: [(Edit, &str); 2] = [
        (&|g| g.prompt = " ".into(), "steps[0].geminiCli.prompt"),
        (
            &|g| g.model = Some("a model".into()),
            "steps[0].geminiCli.model",
        ),
    ];
    for (edit, want) in cases {
        assert_eq!(rejected(&gemini(edit)).0, want);
    }
    let step = &gemini(&|_| {}).steps[0];
    assert_eq!(step.required_capabilities(), ["gemini-cli"]);
    assert_eq!(
        step.stall_timeout(),
        Some(crate::DEFAULT_AGENT_STALL_SECONDS)
    );
    let yaml = "name: x\nsteps:\n  - id: a\n    geminiCli: {prompt: p, model: gemini-2.5-flash}\n";
    let spec: crate::TaskSpec = serde_yaml::from_str(yaml).expect("parses");
    assert_eq!(
        spec.steps[0]
            .gemini_cli
            .as_ref()
            .and_then(|g| g.model.as_deref()),
        Some("gemini-2.5-flash")
    );
}

#[test]
fn fan_out_fan_in_is_valid() {
    let spec = task(vec![
        StepSpec::noop("split"),
        StepSpec::noop("a").after(&["split"]),
        StepSpec::noop("b").after(&["split"]),
        StepSpec::noop("c").after(&["split"]),
        StepSpec::noop("join").after(&["a", "b", "c"]),
    ]);
    assert_eq!(validate(&spec, &Limits::default()), Ok(()));
}

#[test]
fn empty_task_is_rejected() {
    assert_eq!(rejected(&task(vec![])).0, "steps");
}

#[test]
fn duplicate_step_id_names_both_places() {
    let (field, message) = rejected(&task(vec![StepSpec::noop("a"), StepSpec::noop("a")]));
    assert_eq!(field, "steps[1].id");
    assert!(message.contains("steps[0]"), "{message}");
}

#[test]
fn missing_dependency_names_step_and_field() {
    let (field, message) = rejected(&task(vec![
        StepSpec::noop("a"),
        StepSpec::noop("b").after(&["a", "zz"]),
    ]));
    assert_eq!(field, "steps[1].dependsOn[1]");
    assert!(
        message.contains("\"b\"") && message.contains("\"zz\""),
        "{message}"
    );
}

#[test]
fn self_dependency_is_rejected() {
    let (field, _) = rejected(&task(vec![StepSpec::noop("a").after(&["a"])]));
    assert_eq!(field, "steps[0].dependsOn[0]");
}

#[test]
fn cycle_is_reported_with_its_path() {
    let (field, message) = rejected(&task(vec![
        StepSpec::noop("a"),
        StepSpec::noop("b").after(&["a", "d"]),
        StepSpec::noop("c").after(&["b"]),
        StepSpec::noop("d").after(&["c"]),
    ]));
    assert!(field.ends_with(".dependsOn"), "{field}");
    assert!(message.contains("cycle"), "{message}");
    for id in ["b", "c", "d"] {
        assert!(message.contains(id), "{message}");
    }
    assert!(
        !message.contains("a ->"),
        "a is not on the cycle: {message}"
    );
}

#[test]
fn deep_chain_does_not_overflow() {
    let mut steps = vec![StepSpec::noop("s0")];
    for i in 1..1000 {
        let prev = format!("s{}", i - 1);
        steps.push(StepSpec::noop(&format!("s{i}")).after(&[prev.as_str()]));
    }
    assert_eq!(validate(&task(steps), &Limits::default()), Ok(()));
}

#[test]
fn bad_step_ids_are_rejected() {
    for id in ["", "Upper", "-lead", "has space", &"x".repeat(64)] {
        let (field, _) = rejected(&task(vec![StepSpec::noop(id)]));
        assert_eq!(field, "steps[0].id", "id {id:?}");
    }
}

#[test]
fn runtime_must_be_exactly_one() {
    let mut none = StepSpec::noop("a");
    none.noop = None;
    assert!(rejected(&task(vec![none])).1.contains("no runtime"));
    let mut both = StepSpec::noop("a");
    both.shell = Some(ShellSpec {
        command: vec!["true".into()],
        ..ShellSpec::default()
    });
    assert!(rejected(&task(vec![both])).1.contains("more than one"));
}

#[test]
fn empty_command_is_rejected() {
    let (field, _) = rejected(&task(vec![StepSpec::shell("a", &[])]));
    assert_eq!(field, "steps[0].shell.command");
}

#[test]
fn oversized_fields_name_the_limit() {
    let limits = Limits::default();
    let mut spec = task(vec![StepSpec::noop("a")]);
    spec.name = "n".repeat(limits.max_name_bytes + 1);
    assert_eq!(rejected(&spec).0, "name");

    let big = "x".repeat(limits.max_command_bytes);
    let spec = task(vec![StepSpec::shell("a", &["echo", &big])]);
    let (field, message) = rejected(&spec);
    assert_eq!(field, "steps[0].shell.command");
    assert!(message.contains("limit"), "{message}");

    let mut spec = task(vec![StepSpec::noop("a")]);
    spec.labels
        .insert("k".into(), "v".repeat(limits.max_label_value_bytes + 1));
    assert_eq!(rejected(&spec).0, "labels[\"k\"]");

    let steps = (0..=limits.max_steps)
        .map(|i| StepSpec::noop(&format!("s{i}")))
        .collect();
    assert_eq!(rejected(&task(steps)).0, "steps");
}

#[test]
fn retry_and_timeout_ranges_are_checked() {
    use crate::spec::RetryPolicy;
    let with = |policy: RetryPolicy| task(vec![StepSpec::noop("a").retrying(policy)]);
    assert_eq!(
        rejected(&with(RetryPolicy::new(0))).0,
        "steps[0].retry.maxAttempts"
    );
    let mut slow = RetryPolicy::new(3);
    slow.initial_delay_ms = slow.max_delay_ms + 1;
    assert_eq!(rejected(&with(slow)).0, "steps[0].retry.initialDelayMs");
    let mut wild = RetryPolicy::new(3);
    wild.multiplier = f64::NAN;
    assert_eq!(rejected(&with(wild)).0, "steps[0].retry.multiplier");
    let mut step = StepSpec::noop("a");
    step.timeout_seconds = Some(0);
    assert_eq!(rejected(&task(vec![step])).0, "steps[0].timeoutSeconds");
    let mut step = StepSpec::noop("a");
    step.stall_timeout_seconds = Some(0);
    assert_eq!(
        rejected(&task(vec![step])).0,
        "steps[0].stallTimeoutSeconds"
    );
}

#[test]
fn a_retention_window_is_at_most_a_hundred_years_and_zero_is_forever() {
    let with = |seconds: u64| TaskSpec {
        retention_seconds: Some(seconds),
        ..task(vec![StepSpec::noop("a")])
    };
    let (field, message) = rejected(&with(crate::validate::MAX_RETENTION_SECONDS + 1));
    assert_eq!(field, "retentionSeconds");
    assert!(message.contains("100 years"), "{message}");
    for fine in [0, 1, crate::validate::MAX_RETENTION_SECONDS] {
        assert_eq!(validate(&with(fine), &Limits::default()), Ok(()), "{fine}");
    }
}

#[test]
fn budgets_name_a_limit_above_zero() {
    let with = |budget: Budget| TaskSpec {
        budget: Some(budget),
        ..task(vec![StepSpec::noop("a")])
    };
    assert_eq!(rejected(&with(Budget::default())).0, "budget");
    for usd in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let (field, message) = rejected(&with(Budget {
            usd: Some(usd),
            tokens: None,
            approvers: Vec::new(),
        }));
        assert_eq!(field, "budget.usd");
        assert!(message.contains("above 0"), "{message}");
    }
    let no_tokens = Budget {
        usd: None,
        tokens: Some(0),
        approvers: Vec::new(),
    };
    assert_eq!(rejected(&with(no_tokens)).0, "budget.tokens");
    let fine = Budget {
        usd: Some(2.5),
        tokens: Some(10_000),
        approvers: vec!["lead".into(), "admin".into()],
    };
    assert_eq!(validate(&with(fine.clone()), &Limits::default()), Ok(()));
    let blank = Budget {
        approvers: vec!["lead".into(), " ".into()],
        ..fine
    };
    assert_eq!(rejected(&with(blank)).0, "budget.approvers[1]");
}

#[test]
fn approvals_name_approvers_and_bound_their_wait() {
    let gate = |approval: ApprovalSpec| {
        let mut step = StepSpec::noop("deploy");
        step.approval = Some(approval);
        task(vec![step])
    };
    let (field, message) = rejected(&gate(ApprovalSpec::default()));
    assert_eq!(field, "steps[0].approval.approvers");
    assert!(message.contains("at least one approver"), "{message}");
    let blank = ApprovalSpec {
        approvers: vec!["alice".into(), " ".into()],
        ..ApprovalSpec::default()
    };
    assert_eq!(rejected(&gate(blank)).0, "steps[0].approval.approvers[1]");
    let forever = ApprovalSpec {
        approvers: vec!["alice".into()],
        timeout_seconds: Some(0),
        ..ApprovalSpec::default()
    };
    assert_eq!(
        rejected(&gate(forever)).0,
        "steps[0].approval.timeoutSeconds"
    );
    let fine = ApprovalSpec {
        message: "ship it?".into(),
        approvers: vec!["alice".into(), "admin".into()],
        timeout_seconds: Some(3600),
    };
    validate(&gate(fine), &Limits::default()).expect("valid");
}

#[test]
fn bad_capability_is_rejected() {
    let (field, _) = rejected(&task(vec![StepSpec::noop("a").needing(&["has space"])]));
    assert_eq!(field, "steps[0].needs[0]");
}
