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

fn rejected(spec: &TaskSpec) -> (String, String) {
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

mod repo {
    use crate::Error;
    use crate::repo::{Forge, PullRequestSpec, RepoSpec};
    use crate::spec::with_delivery;
    use crate::validate::{Limits, validate, validate_repo};
    use crate::{StepSpec, TaskSpec};

    fn refused(repo: RepoSpec) -> (String, String) {
        match validate_repo(&repo, "repo") {
            Err(Error::Invalid { field, message }) => (field, message),
            other => panic!("{repo:?}: {other:?}"),
        }
    }

    fn at(url: &str) -> RepoSpec {
        RepoSpec {
            url: url.into(),
            ..RepoSpec::default()
        }
    }

    #[test]
    fn a_bad_repository_is_refused_naming_its_part() {
        for (repo, field, says) in [
            (at(""), "repo.url", "required"),
            (at("ftp://example.com/r.git"), "repo.url", "must start with"),
            (at("/srv/repo.git"), "repo.url", "must start with"),
            (at("file://srv/repo.git"), "repo.url", "absolute path"),
            (
                at("https://user:token@github.com/org/r.git"),
                "repo.url",
                "credentialsSecret",
            ),
            (at("https:///org/r.git"), "repo.url", "no host"),
            (at("https://github.com/o/r .git"), "repo.url", "spaces"),
            (at("--upload-pack=evil"), "repo.url", "'-'"),
            (
                RepoSpec {
                    git_ref: "main..x".into(),
                    ..at("https://h/r.git")
                },
                "repo.ref",
                "not a ref",
            ),
            (
                RepoSpec {
                    git_ref: "-main".into(),
                    ..at("https://h/r.git")
                },
                "repo.ref",
                "not a ref",
            ),
            (
                RepoSpec {
                    commit: "abc123".into(),
                    ..at("https://h/r.git")
                },
                "repo.commit",
                "full commit id",
            ),
            (
                RepoSpec {
                    credentials_secret: "../etc/passwd".into(),
                    ..at("https://h/r.git")
                },
                "repo.credentialsSecret",
                "not a secret name",
            ),
        ] {
            let (got, message) = refused(repo.clone());
            assert_eq!(got, field, "{repo:?}: {message}");
            assert!(message.contains(says), "{repo:?}: {message}");
        }
    }

    #[test]
    fn a_good_repository_passes() {
        validate_repo(
            &RepoSpec {
                url: "https://github.com/org/r.git".into(),
                git_ref: "main".into(),
                commit: "f".repeat(40),
                credentials_secret: "github-token".into(),
                push: true,
                push_steps: true,
                pull_request: Some(PullRequestSpec {
                    title: "Add the feature".into(),
                    ..PullRequestSpec::default()
                }),
                exclusive: Some(crate::repo::Exclusive::Touches),
                land: None,
            },
            "repo",
        )
        .expect("valid");
    }

    #[test]
    fn a_landing_needs_a_method_a_base_and_checks_and_its_pull_request_its_base() {
        use crate::repo::{LandMethod, LandSpec};
        use crate::verify::{CheckSpec, VerifySpec};
        let check = || CheckSpec {
            name: "tests".into(),
            run: vec!["make".into(), "test".into()],
            timeout: String::new(),
        };
        let task = |land: LandSpec, git_ref: &str, verified: bool| {
            let mut step = StepSpec::shell("work", &["make"]);
            if verified {
                step.claude_code = Some(crate::ClaudeCodeSpec {
                    prompt: "fix".into(),
                    ..crate::ClaudeCodeSpec::default()
                });
                step.shell = None;
                step.verify = Some(VerifySpec {
                    checks: vec![check()],
                    ..VerifySpec::default()
                });
            }
            TaskSpec {
                name: "t".into(),
                steps: vec![step],
                repo: Some(RepoSpec {
                    url: "https://github.com/org/r.git".into(),
                    git_ref: git_ref.into(),
                    land: Some(land),
                    ..RepoSpec::default()
                }),
                ..TaskSpec::default()
            }
        };
        let with_checks = LandSpec {
            checks: vec![check()],
            ..LandSpec::default()
        };
        validate(
            &task(with_checks.clone(), "main", false),
            &Limits::default(),
        )
        .expect("valid");
        // Its verified steps' checks will do.
        validate(&task(LandSpec::default(), "main", true), &Limits::default()).expect("valid");
        // A pull request lands with the task, to the base it lands on.
        let with_pr = |base: &str| {
            let mut spec = task(with_checks.clone(), "main", false);
            if let Some(repo) = spec.repo.as_mut() {
                repo.pull_request = Some(PullRequestSpec {
                    title: "t".into(),
                    base: base.into(),
                    ..PullRequestSpec::default()
                });
            }
            spec
        };
        validate(&with_pr(""), &Limits::default()).expect("valid");
        validate(&with_pr("main"), &Limits::default()).expect("valid");
        let cases: Vec<(TaskSpec, &str, &str)> = vec![
            (
                task(LandSpec::default(), "main", false),
                "repo.land.checks",
                "give checks, or verify a step",
            ),
            (
                task(with_checks.clone(), "", false),
                "repo.land.base",
                "name the branch",
            ),
            (
                task(
                    LandSpec {
                        base: "bad..branch".into(),
                        ..with_checks.clone()
                    },
                    "main",
                    false,
                ),
                "repo.land.base",
                "not a branch",
            ),
            (
                task(
                    LandSpec {
                        method: LandMethod::Unknown("merge".into()),
                        ..with_checks.clone()
                    },
                    "main",
                    false,
                ),
                "repo.land.method",
                "queue",
            ),
            (
                task(
                    LandSpec {
                        checks: vec![CheckSpec {
                            run: Vec::new(),
                            ..check()
                        }],
                        ..LandSpec::default()
                    },
                    "main",
                    false,
                ),
                "repo.land.checks[0].run",
                "the landing: check \"tests\" needs a program to run",
            ),
            (
                with_pr("release"),
                "repo.pullRequest.base",
                "not the branch the task lands on",
            ),
            (
                task(
                    LandSpec {
                        batch: 65,
                        ..with_checks.clone()
                    },
                    "main",
                    false,
                ),
                "repo.land.batch",
                "65 is more tasks than land together at most (64)",
            ),
            (
                task(
                    LandSpec {
                        max_fixes: Some(11),
                        ..with_checks.clone()
                    },
                    "main",
                    false,
                ),
                "repo.land.maxFixes",
                "11 is more rounds of fixes than a landing gets at most (10)",
            ),
        ];
        for (spec, field, says) in cases {
            let (got, message) = super::rejected(&spec);
            assert_eq!(got, field, "{message}");
            assert!(message.contains(says), "{field}: {message}");
        }
    }

    #[test]
    fn a_landing_without_checks_of_its_own_runs_its_verified_steps_checks() {
        use crate::verify::{CheckSpec, VerifySpec};
        let verified = |id: &str, names: &[&str]| {
            let mut step = StepSpec::noop(id);
            step.verify = Some(VerifySpec {
                checks: names
                    .iter()
                    .map(|n| CheckSpec {
                        name: n.to_string(),
                        run: vec![format!("check-{id}")],
                        timeout: String::new(),
                    })
                    .collect(),
                ..VerifySpec::default()
            });
            step
        };
        let mut spec = TaskSpec {
            name: "t".into(),
            steps: vec![
                verified("a", &["tests", "lint"]),
                verified("b", &["tests", "types"]),
            ],
            repo: Some(RepoSpec {
                url: "https://github.com/org/r.git".into(),
                land: Some(crate::repo::LandSpec::default()),
                ..RepoSpec::default()
            }),
            ..TaskSpec::default()
        };
        with_delivery(&mut spec);
        let land = spec.repo.and_then(|r| r.land).expect("land");
        let said: Vec<(String, String)> = land
            .checks
            .iter()
            .map(|c| (c.name.clone(), c.run[0].clone()))
            .collect();
        assert_eq!(
            said,
            [
                ("tests".to_string(), "check-a".to_string()),
                ("lint".to_string(), "check-a".to_string()),
                ("types".to_string(), "check-b".to_string())
            ]
        );
    }

    #[test]
    fn a_bad_pull_request_is_refused_naming_its_part() {
        let with = |url: &str, pr: PullRequestSpec| RepoSpec {
            pull_request: Some(pr),
            ..at(url)
        };
        let titled = PullRequestSpec {
            title: "x".into(),
            ..PullRequestSpec::default()
        };
        for (repo, field, says) in [
            (
                with("https://github.com/o/r.git", PullRequestSpec::default()),
                "repo.pullRequest.title",
                "required",
            ),
            (
                with(
                    "https://github.com/o/r.git",
                    PullRequestSpec {
                        title: "t".repeat(257),
                        ..PullRequestSpec::default()
                    },
                ),
                "repo.pullRequest.title",
                "limit is 256",
            ),
            (
                with(
                    "https://github.com/o/r.git",
                    PullRequestSpec {
                        base: "ma..in".into(),
                        ..titled.clone()
                    },
                ),
                "repo.pullRequest.base",
                "not a branch",
            ),
            (
                with("https://git.example.com/o/r.git", titled.clone()),
                "repo.pullRequest.forge",
                "cannot tell",
            ),
            (
                RepoSpec {
                    exclusive: Some(crate::repo::Exclusive::parse("paths")),
                    ..at("https://github.com/o/r.git")
                },
                "repo.exclusive",
                "touches",
            ),
            (
                with(
                    "https://git.example.com/o/r.git",
                    PullRequestSpec {
                        forge: Some(Forge::Gitlab),
                        ..titled.clone()
                    },
                ),
                "repo.pullRequest.forge",
                "apiUrl",
            ),
            (
                with(
                    "https://git.example.com/o/r.git",
                    PullRequestSpec {
                        forge: Some(Forge::Gitlab),
                        api_url: "ftp://git.example.com/api".into(),
                        ..titled.clone()
                    },
                ),
                "repo.pullRequest.apiUrl",
                "must start with",
            ),
        ] {
            let (got, message) = refused(repo.clone());
            assert_eq!(got, field, "{repo:?}: {message}");
            assert!(message.contains(says), "{repo:?}: {message}");
        }
        let own = with(
            "https://git.example.com/o/r.git",
            PullRequestSpec {
                forge: Some(Forge::Gitlab),
                api_url: "https://git.example.com/api/v4/".into(),
                ..titled
            },
        );
        validate_repo(&own, "repo").expect("a forge of one's own");
        assert_eq!(
            crate::repo::forge_of(&own),
            Some((Forge::Gitlab, "https://git.example.com/api/v4".into()))
        );
    }
}

mod delivery {
    use crate::repo::{DELIVER_STEP, RepoSpec};
    use crate::spec::DeliverSpec;
    use crate::spec::with_delivery;
    use crate::validate::{Limits, validate};
    use crate::{Error, StepSpec, TaskSpec};

    fn diamond(repo: bool) -> TaskSpec {
        TaskSpec {
            steps: vec![
                StepSpec::noop("a"),
                StepSpec::noop("b").after(&["a"]),
                StepSpec::noop("c").after(&["a"]),
                StepSpec::noop("lint"),
            ],
            repo: repo.then(|| RepoSpec {
                url: "https://github.com/o/r.git".into(),
                ..RepoSpec::default()
            }),
            ..TaskSpec::default()
        }
    }

    fn refusal(spec: &TaskSpec) -> (String, String) {
        match validate(spec, &Limits::default()) {
            Err(Error::Invalid { field, message }) => (field, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_task_with_a_repository_gets_a_deliver_step_after_its_last_steps() {
        let mut spec = diamond(true);
        with_delivery(&mut spec);
        let deliver = spec.steps.last().expect("a step");
        assert_eq!(deliver.id, DELIVER_STEP);
        assert_eq!(deliver.depends_on, ["b", "c", "lint"]);
        assert!(deliver.deliver.is_some());
        validate(&spec, &Limits::default()).expect("valid");
        // Once: a spec that has it (a retry, a resubmit) is left alone.
        let before = spec.clone();
        with_delivery(&mut spec);
        assert_eq!(spec, before);
        // A task without a repository has nothing to deliver.
        let mut plain = diamond(false);
        with_delivery(&mut plain);
        assert_eq!(plain, diamond(false));
    }

    #[test]
    fn only_tidewrights_deliver_step_delivers() {
        let mut spec = diamond(false);
        spec.steps[3].noop = None;
        spec.steps[3].deliver = Some(DeliverSpec {});
        assert_eq!(refusal(&spec).0, "steps[3].deliver");
        spec.repo = diamond(true).repo;
        assert_eq!(refusal(&spec).0, "steps[3].id");
        let mut named = diamond(true);
        named.steps[3].id = DELIVER_STEP.into();
        let (field, message) = refusal(&named);
        assert_eq!(field, "steps[3].id");
        assert!(message.contains("tidewright adds"), "{message}");
    }

    #[test]
    fn steps_branches_sit_beside_the_tasks() {
        use crate::repo::{step_branch, task_branch};
        assert_eq!(task_branch("01j"), "tidewright/01j");
        assert_eq!(step_branch("01j", "api"), "tidewright/01j-api");
        assert_eq!(step_branch("01j", DELIVER_STEP), "tidewright/01j");
        assert!(crate::repo::valid_ref(&step_branch("01j", "lock")));
    }

    #[test]
    fn a_repositorys_host_is_read_from_each_kind_of_url() {
        use crate::repo::host;
        for (url, expected) in [
            ("https://github.com/o/r.git", Some("github.com")),
            ("http://127.0.0.1:8080/r.git", Some("127.0.0.1")),
            ("ssh://git@gitlab.com:22/o/r.git", Some("gitlab.com")),
            ("git@github.com:o/r.git", Some("github.com")),
            ("https://[::1]:9/r.git", Some("::1")),
            ("file:///srv/r.git", None),
        ] {
            assert_eq!(host(url), expected, "{url}");
        }
    }
}

mod touches {
    use crate::validate::{Limits, validate};
    use crate::{Error, StepSpec, TaskSpec};

    fn with_touches(touches: &[&str], strict: bool) -> TaskSpec {
        let mut step = StepSpec::noop("a");
        step.touches = touches.iter().map(|t| t.to_string()).collect();
        step.touches_strict = strict;
        TaskSpec {
            steps: vec![step],
            ..TaskSpec::default()
        }
    }

    #[test]
    fn a_touches_glob_that_does_not_parse_is_refused_naming_it() {
        for (spec, field, says) in [
            (
                with_touches(&["src/**", "/etc/x"], false),
                "steps[0].touches[1]",
                "absolute",
            ),
            (
                with_touches(&["../up"], false),
                "steps[0].touches[0]",
                "leaves the repository",
            ),
            (
                with_touches(&["src/{a,b}"], false),
                "steps[0].touches[0]",
                "are not read",
            ),
            (
                with_touches(&[], true),
                "steps[0].touchesStrict",
                "does not name",
            ),
        ] {
            match validate(&spec, &Limits::default()) {
                Err(Error::Invalid {
                    field: got,
                    message,
                }) => {
                    assert_eq!(got, field, "{message}");
                    assert!(message.contains(says), "{message}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        validate(
            &with_touches(&["src/api/**", "Cargo.toml"], true),
            &Limits::default(),
        )
        .expect("valid");
    }
}

mod on_conflict {
    use crate::validate::{Limits, validate};
    use crate::{Error, OnConflict, StepSpec, TaskSpec};

    #[test]
    fn an_unknown_conflict_policy_is_refused_naming_it() {
        let mut step = StepSpec::noop("a");
        step.on_conflict = Some(OnConflict::parse("merge-harder"));
        let spec = TaskSpec {
            steps: vec![step.clone()],
            ..TaskSpec::default()
        };
        match validate(&spec, &Limits::default()) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "steps[0].onConflict");
                assert!(message.contains("fail, rerun or agent"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        step.on_conflict = Some(OnConflict::parse("rerun"));
        let spec = TaskSpec {
            steps: vec![step],
            ..TaskSpec::default()
        };
        validate(&spec, &Limits::default()).expect("rerun is a policy");
        let mut agent = spec.clone();
        agent.steps[0].on_conflict = Some(OnConflict::Agent);
        match validate(&agent, &Limits::default()) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "steps[0].onConflict");
                assert!(message.contains("not a claudeCode step"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
