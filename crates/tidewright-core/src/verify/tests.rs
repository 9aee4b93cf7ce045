use super::*;

fn spec(rounds: u32) -> VerifySpec {
    VerifySpec {
        checks: vec![CheckSpec {
            name: "tests".into(),
            run: vec!["cargo".into(), "test".into()],
            timeout: String::new(),
        }],
        rounds: Some(rounds),
        ..VerifySpec::default()
    }
}

fn failed(round: u32, tail: &str) -> Verification {
    Verification {
        round,
        head_commit: "abc".into(),
        checks: vec![CheckResult {
            name: "tests".into(),
            passed: false,
            exit_code: Some(101),
            tail: tail.into(),
            ..CheckResult::default()
        }],
        ..Verification::default()
    }
}

const CARGO_FAILED: &str = "running 120 tests\ntest parse::tests::reads_a_number ... FAILED\n\nfailures:\n---- parse::tests::reads_a_number stdout ----\nthread 'parse::tests::reads_a_number' panicked at src/parse.rs:41:9:\nassertion `left == right` failed\n  left: 3\n right: 4\n\ntest result: FAILED. 117 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s\n";

#[test]
fn a_passing_round_is_verified() {
    let mut found = failed(1, "");
    found.checks[0].passed = true;
    assert_eq!(decide(&spec(3), &found, None), Decision::Verified);
    assert_eq!(found.summary(), "verify round 1: its check passed");
}

#[test]
fn a_failing_round_sends_the_agent_back_naming_the_check_its_exit_and_output() {
    let found = failed(1, CARGO_FAILED);
    let Decision::Again { feedback } = decide(&spec(3), &found, None) else {
        panic!("sent back");
    };
    assert!(
        feedback.contains("The check \"tests\" (`cargo test`) failed (exit 101)"),
        "{feedback}"
    );
    assert!(feedback.contains("reads_a_number ... FAILED"), "{feedback}");
    assert!(feedback.contains("round 1 of at most 4"), "{feedback}");
    assert_eq!(
        found.summary(),
        "verify round 1: tests failed (exit 101): 3 of 120 failed: test parse::tests::reads_a_number ... FAILED"
    );
}

#[test]
fn the_same_failure_twice_ends_the_step_even_when_numbers_and_paths_move() {
    let first = failed(1, CARGO_FAILED);
    let moved = CARGO_FAILED
        .replace("src/parse.rs:41:9", "/tmp/other/src/parse.rs:52:3")
        .replace("finished in 0.02s", "finished in 1.5s");
    let second = failed(2, &moved);
    assert_eq!(first.signature(), second.signature());
    match decide(&spec(3), &second, Some(&first)) {
        Decision::Failed(why, _) => assert!(
            why.starts_with("the same failure twice: verify round 2"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    // Another test failing is progress of a kind: another round.
    let other = failed(2, &CARGO_FAILED.replace("reads_a_number", "reads_a_word"));
    assert!(matches!(
        decide(&spec(3), &other, Some(&first)),
        Decision::Again { .. }
    ));
}

#[test]
fn a_step_fails_once_its_rounds_are_spent() {
    let found = failed(2, "error: expected one thing");
    let earlier = failed(1, "error: expected another");
    match decide(&spec(1), &found, Some(&earlier)) {
        Decision::Failed(why, _) => assert!(
            why.starts_with("verify: the agent was sent back 1 times"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decide(&spec(2), &found, Some(&earlier)),
        Decision::Again { .. }
    ));
}

#[test]
fn a_protected_path_changed_fails_the_round_and_the_agent_is_told_to_undo_it() {
    let mut found = failed(1, "");
    found.checks[0].passed = true;
    found.protected = vec!["tests/parse.rs".into()];
    assert!(!found.passed());
    let Decision::Again { feedback } = decide(&spec(3), &found, None) else {
        panic!("sent back");
    };
    assert!(
        feedback.contains("tests/parse.rs. Undo those changes"),
        "{feedback}"
    );
    assert_eq!(
        found.summary(),
        "verify round 1: changed protected paths: tests/parse.rs"
    );
}

/// A round whose checks passed, graded `verdict` for `reasons`.
fn graded(round: u32, verdict: Verdict, reasons: &[&str]) -> Verification {
    let mut found = failed(round, "");
    found.checks[0].passed = true;
    found.grade = Some(Grade {
        verdict,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        model: "claude-sonnet-4-5".into(),
        ..Grade::default()
    });
    found
}

fn with_rubric(rounds: u32) -> VerifySpec {
    VerifySpec {
        rubric: "The README documents --json.".into(),
        ..spec(rounds)
    }
}

#[test]
fn a_rubric_graded_needs_revision_sends_the_agent_back_its_reasons_and_pass_verifies() {
    let first = graded(
        1,
        Verdict::NeedsRevision,
        &["The README does not mention --json."],
    );
    assert!(first.checks_passed() && !first.passed());
    let Decision::Again { feedback } = decide(&with_rubric(3), &first, None) else {
        panic!("sent back");
    };
    assert!(
        feedback.contains("found it needs revision:\n- The README does not mention --json.\n"),
        "{feedback}"
    );
    assert!(!feedback.contains(grade::OPENING), "{feedback}");
    assert_eq!(
        first.summary(),
        "verify round 1: the grader found it needs revision: The README does not mention --json."
    );
    let second = graded(2, Verdict::Pass, &["It is documented."]);
    assert_eq!(
        decide(&with_rubric(3), &second, Some(&first)),
        Decision::Verified
    );
}

#[test]
fn the_same_reasons_twice_are_the_same_failure_and_an_ungraded_rubric_never_passes() {
    let first = graded(
        1,
        Verdict::NeedsRevision,
        &["Line 12 of cli.py lacks --json."],
    );
    let second = graded(
        2,
        Verdict::NeedsRevision,
        &["Line 14 of cli.py lacks --json."],
    );
    assert!(matches!(
        decide(&with_rubric(3), &second, Some(&first)),
        Decision::Failed(_, GaveUp::SameFailure)
    ));
    let other = graded(2, Verdict::NeedsRevision, &["The README lacks an example."]);
    assert!(matches!(
        decide(&with_rubric(3), &other, Some(&first)),
        Decision::Again { .. }
    ));

    // Its checks passed; nothing graded it.
    let mut ungraded = failed(1, "");
    ungraded.checks[0].passed = true;
    assert_eq!(
        decide(&with_rubric(3), &ungraded, None),
        Decision::Failed(NOT_GRADED.into(), GaveUp::NotGraded)
    );
    assert_eq!(decide(&spec(3), &ungraded, None), Decision::Verified);
}

#[test]
fn pytest_go_and_jest_failures_are_named_by_their_tests() {
    let pytest = "FAILED tests/test_calc.py::test_add - assert 3 == 4\n========= 1 failed, 4 passed in 0.03s =========";
    let found = failed(1, pytest);
    assert_eq!(
        found.summary(),
        "verify round 1: tests failed (exit 101): 1 of 5 failed: FAILED tests/test_calc.py::test_add - assert 3 == 4"
    );
    let unittest = "test_add (test_calc.TestAdd.test_add) ... FAIL\n======\nFAIL: test_add (test_calc.TestAdd.test_add)\n------\nTraceback (most recent call last):\nAssertionError: 1 != 5\n------\nRan 3 tests in 0.000s\n\nFAILED (failures=1, errors=1)";
    assert_eq!(
        failed(1, unittest).summary(),
        "verify round 1: tests failed (exit 101): 2 of 3 failed: FAIL: test_add (test_calc.TestAdd.test_add)"
    );
    assert_eq!(
        key_lines("--- FAIL: TestAdd (0.00s)\nFAIL"),
        vec!["--- FAIL: TestAdd (0.00s)"]
    );
    assert_eq!(key_lines("  ✕ adds (3 ms)\n"), vec!["✕ adds (3 ms)"]);
    assert_eq!(
        key_lines("something\nerror[E0308]: mismatched types\n"),
        vec!["error[E0308]: mismatched types"]
    );
    assert_eq!(key_lines("just\nthe last line\n"), vec!["the last line"]);
}

#[test]
fn removed_tests_and_added_skips_are_counted_by_language() {
    let diff = "diff --git a/src/lib.rs b/src/lib.rs\n--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,4 +1,2 @@\n-    #[test]\n-    fn adds() {}\n+    #[ignore]\ndiff --git a/t/test_x.py b/t/test_x.py\n--- a/t/test_x.py\n+++ b/t/test_x.py\n@@ -1 +1,2 @@\n+@pytest.mark.skip(reason=\"flaky\")\n def test_x():\ndiff --git a/a.test.ts b/a.test.ts\n--- a/a.test.ts\n+++ b/a.test.ts\n@@ -1 +1 @@\n-it('adds', () => {})\n+it.skip('adds', () => {})\ndiff --git a/x_test.go b/x_test.go\n--- a/x_test.go\n+++ b/x_test.go\n@@ -1 +1,2 @@\n func TestX(t *testing.T) {\n+\tt.Skip(\"later\")\ndiff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-#[test]\n";
    assert_eq!(test_changes(diff), (2, 4));
    // A test added makes up for one removed; moving a test is no removal.
    let moved =
        "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n-def test_a():\n+def test_a():\n";
    assert_eq!(test_changes(moved), (0, 0));
}

#[test]
fn the_tail_keeps_the_last_lines_within_its_bytes() {
    let long: String = (0..200).map(|i| format!("line {i}\n")).collect();
    let kept = tail(&long);
    assert!(
        kept.starts_with("line 140") && kept.ends_with("line 199"),
        "{kept}"
    );
    let wide = "é".repeat(TAIL_BYTES);
    assert!(tail(&wide).len() <= TAIL_BYTES);
}

#[test]
fn durations_read_seconds_minutes_and_hours() {
    assert_eq!(parse_duration("90s"), Ok(Some(Duration::from_secs(90))));
    assert_eq!(parse_duration("1h30m"), Ok(Some(Duration::from_secs(5400))));
    assert_eq!(parse_duration(""), Ok(None));
    assert!(
        parse_duration("15")
            .expect_err("no unit")
            .contains("say the unit")
    );
    assert!(parse_duration("15 min").is_err());
}

/// Each bad `verify` is refused at submit, naming its field.
mod refused {
    use crate::spec::{ClaudeCodeSpec, StepSpec, TaskSpec};
    use crate::{Error, Limits, RepoSpec};

    use super::*;

    fn agent_step(verify: VerifySpec) -> StepSpec {
        StepSpec {
            claude_code: Some(ClaudeCodeSpec {
                prompt: "fix it".into(),
                ..ClaudeCodeSpec::default()
            }),
            noop: None,
            verify: Some(verify),
            ..StepSpec::noop("fix")
        }
    }

    fn task(step: StepSpec, repo: bool) -> TaskSpec {
        TaskSpec {
            steps: vec![step],
            repo: repo.then(|| RepoSpec {
                url: "https://git.example/r.git".into(),
                ..RepoSpec::default()
            }),
            ..TaskSpec::default()
        }
    }

    fn refusal(spec: &TaskSpec) -> (String, String) {
        match crate::validate(spec, &Limits::default()) {
            Err(Error::Invalid { field, message }) => (field, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn check(name: &str, run: &[&str], timeout: &str) -> CheckSpec {
        CheckSpec {
            name: name.into(),
            run: run.iter().map(|s| s.to_string()).collect(),
            timeout: timeout.into(),
        }
    }

    #[test]
    fn a_good_verify_is_taken() {
        let verify = VerifySpec {
            checks: vec![
                check("tests", &["cargo", "test"], "15m"),
                check("lint", &["make", "lint"], ""),
            ],
            rounds: Some(20),
            protect: vec!["tests/**".into(), ".github/**".into()],
            ..VerifySpec::default()
        };
        crate::validate(&task(agent_step(verify), true), &Limits::default()).expect("valid");
    }

    #[test]
    fn a_rubric_is_taken_when_a_grader_is_configured_and_within_the_prompt_limit() {
        let limits = Limits {
            grader: Some("claude-sonnet-4-5".into()),
            ..Limits::default()
        };
        let rubric = |rubric: String| {
            task(
                agent_step(VerifySpec {
                    rubric,
                    ..VerifySpec::default()
                }),
                true,
            )
        };
        crate::validate(&rubric("It has a --json flag.".into()), &limits).expect("valid");
        let long = "x".repeat(limits.max_prompt_bytes + 1);
        match crate::validate(&rubric(long), &limits) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "steps[0].verify.rubric");
                assert!(message.contains("max-prompt-bytes"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn each_bad_input_names_its_field() {
        let good = || check("tests", &["pytest"], "");
        let cases: Vec<(VerifySpec, &str, &str)> = vec![
            (
                VerifySpec::default(),
                "steps[0].verify.checks",
                "needs checks to run, or a rubric",
            ),
            (
                VerifySpec {
                    checks: vec![good()],
                    rounds: Some(0),
                    ..VerifySpec::default()
                },
                "steps[0].verify.rounds",
                "must be 1 to 20",
            ),
            (
                VerifySpec {
                    checks: vec![good()],
                    rounds: Some(21),
                    ..VerifySpec::default()
                },
                "steps[0].verify.rounds",
                "must be 1 to 20",
            ),
            (
                VerifySpec {
                    checks: vec![check("tests", &[], "")],
                    ..VerifySpec::default()
                },
                "steps[0].verify.checks[0].run",
                "needs a program to run",
            ),
            (
                VerifySpec {
                    checks: vec![good(), check("lint", &[""], "")],
                    ..VerifySpec::default()
                },
                "steps[0].verify.checks[1].run",
                "needs a program to run",
            ),
            (
                VerifySpec {
                    checks: vec![good(), good()],
                    ..VerifySpec::default()
                },
                "steps[0].verify.checks[1].name",
                "named twice",
            ),
            (
                VerifySpec {
                    checks: vec![check("Tests", &["x"], "")],
                    ..VerifySpec::default()
                },
                "steps[0].verify.checks[0].name",
                "lowercase",
            ),
            (
                VerifySpec {
                    checks: vec![check("tests", &["x"], "15")],
                    ..VerifySpec::default()
                },
                "steps[0].verify.checks[0].timeout",
                "say the unit",
            ),
            (
                VerifySpec {
                    checks: vec![good()],
                    protect: vec!["tests/[a-z]".into()],
                    ..VerifySpec::default()
                },
                "steps[0].verify.protect[0]",
                "only '*', '?' and '**' are wildcards",
            ),
            (
                VerifySpec {
                    checks: vec![good()],
                    protect: vec!["../x".into()],
                    ..VerifySpec::default()
                },
                "steps[0].verify.protect[0]",
                "leaves the repository",
            ),
            (
                VerifySpec {
                    rubric: "It has a --json flag.".into(),
                    ..VerifySpec::default()
                },
                "steps[0].verify.rubric",
                "no grader is configured",
            ),
        ];
        for (verify, field, says) in cases {
            let (got, message) = refusal(&task(agent_step(verify.clone()), true));
            assert_eq!(got, field, "{verify:?}: {message}");
            assert!(message.contains(says), "{verify:?}: {message}");
        }
    }

    #[test]
    fn verify_on_a_step_that_cannot_resume_or_without_a_repository_is_refused() {
        let verify = VerifySpec {
            checks: vec![check("tests", &["pytest"], "")],
            ..VerifySpec::default()
        };
        let shell = StepSpec {
            verify: Some(verify.clone()),
            ..StepSpec::shell("build", &["make"])
        };
        let (field, message) = refusal(&task(shell, true));
        assert_eq!(field, "steps[0].verify");
        assert!(
            message.contains("a shell step, which has no agent session"),
            "{message}"
        );
        let (field, message) = refusal(&task(agent_step(verify), false));
        assert_eq!(field, "steps[0].verify");
        assert!(message.contains("the task names no repo"), "{message}");
    }
}
