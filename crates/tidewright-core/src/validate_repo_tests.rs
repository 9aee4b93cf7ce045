//! The rules of a task's repository and of its steps' work on it (the
//! pull request, the landing, the deliver step, `touches`, `onConflict`),
//! each refusal naming its field.

use crate::validate::tests::rejected;

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
                setup: Some(crate::setup::SetupSpec {
                    run: vec!["npm".into(), "ci".into()],
                    key: vec!["package-lock.json".into()],
                    paths: vec!["node_modules".into()],
                    timeout: "20m".into(),
                    limits: Some(crate::step_limits::StepLimits {
                        memory: Some("4GiB".into()),
                        ..Default::default()
                    }),
                    secret_env: [("NPM_TOKEN".to_string(), "npm-token".to_string())].into(),
                }),
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

mod follow {
    use crate::Error;
    use crate::repo::{LandSpec, MergeMethod, PullRequestSpec, RepoSpec};
    use crate::spec::with_delivery;
    use crate::validate::{Limits, validate};
    use crate::{StepSpec, TaskSpec};

    /// A task of an agent's step `a` and, after it, a shell's `b`, whose
    /// pull request is followed as `pr` says.
    fn followed(pr: PullRequestSpec) -> TaskSpec {
        let agent: StepSpec =
            serde_yaml::from_str("id: a\nclaudeCode: {prompt: p}\n").expect("step");
        let shell: StepSpec =
            serde_yaml::from_str("id: b\ndependsOn: [a]\nshell: {command: [\"true\"]}\n")
                .expect("step");
        let mut spec = TaskSpec {
            name: "t".into(),
            steps: vec![agent, shell],
            repo: Some(RepoSpec {
                url: "https://github.com/o/r.git".into(),
                git_ref: "main".into(),
                pull_request: Some(PullRequestSpec {
                    title: "t".into(),
                    follow: true,
                    ..pr
                }),
                ..RepoSpec::default()
            }),
            ..TaskSpec::default()
        };
        with_delivery(&mut spec);
        spec
    }

    fn field(spec: &TaskSpec) -> String {
        match validate(spec, &Limits::default()) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_followed_pull_request_is_refused_naming_its_part() {
        let pr = PullRequestSpec::default;
        for (spec, named) in [
            (
                followed(PullRequestSpec {
                    merge: Some(MergeMethod::Unknown("ff".into())),
                    ..pr()
                }),
                "repo.pullRequest.merge",
            ),
            (
                followed(PullRequestSpec {
                    max_fixes: Some(11),
                    ..pr()
                }),
                "repo.pullRequest.maxFixes",
            ),
            (
                followed(PullRequestSpec {
                    poll_seconds: 3601,
                    ..pr()
                }),
                "repo.pullRequest.pollSeconds",
            ),
            // Not a step; a shell's; an agent's with a step after it.
            (
                followed(PullRequestSpec {
                    owner: "z".into(),
                    ..pr()
                }),
                "repo.pullRequest.owner",
            ),
            (
                followed(PullRequestSpec {
                    owner: "b".into(),
                    ..pr()
                }),
                "repo.pullRequest.owner",
            ),
            (
                followed(PullRequestSpec {
                    owner: "a".into(),
                    ..pr()
                }),
                "repo.pullRequest.owner",
            ),
        ] {
            assert_eq!(field(&spec), named);
        }
        let mut landing = followed(pr());
        if let Some(repo) = landing.repo.as_mut() {
            repo.land = Some(LandSpec {
                checks: vec![crate::CheckSpec {
                    name: "t".into(),
                    run: vec!["true".into()],
                    timeout: String::new(),
                }],
                ..LandSpec::default()
            });
        }
        assert_eq!(field(&landing), "repo.pullRequest.follow");
        // Within bounds, a merge and a last agent step as owner pass.
        let mut good = followed(PullRequestSpec {
            merge: Some(MergeMethod::Squash),
            max_fixes: Some(10),
            poll_seconds: 3600,
            ..pr()
        });
        good.steps.remove(1);
        good.steps.retain(|s| s.deliver.is_none());
        with_delivery(&mut good);
        if let Some(p) = good.repo.as_mut().and_then(|r| r.pull_request.as_mut()) {
            p.owner = "a".into();
        }
        assert!(validate(&good, &Limits::default()).is_ok(), "{good:?}");
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
