//! `runtimes: auto`: the choice, its rules, its reasons, and the bad input.

use super::*;
use crate::attempts::score::{Score, standings};
use crate::eval;
use crate::spec::{AgentSpec, StepSpec, TaskSpec};

fn tried(runtime: &str, passed: u32, failed: u32, usd: f64) -> Vec<Score> {
    let one = |passed| Score {
        runtime: runtime.into(),
        passed,
        usd,
        ..Score::default()
    };
    (0..passed)
        .map(|_| one(true))
        .chain((0..failed).map(|_| one(false)))
        .collect()
}

fn asked(own: &str) -> Asked<'_> {
    Asked {
        own,
        tries: 1,
        ..Asked::default()
    }
}

fn chosen(scores: &[Vec<Score>], asked: &Asked<'_>) -> Chosen {
    choose(&standings(&scores.concat()), asked)
}

#[test]
fn the_most_passes_per_dollar_wins_and_the_why_gives_each_runtimes_figures() {
    let got = chosen(
        &[tried("claude-code", 5, 0, 0.20), tried("codex", 4, 1, 0.03)],
        &asked("claude-code"),
    );
    assert_eq!(
        (got.runtime.as_str(), got.preferred.as_str()),
        ("codex", "claude-code")
    );
    assert_eq!(
        got.why,
        "runtimes: auto chose codex, the most passes per dollar on this repository: \
         claude-code 5/5 passed at $0.2000 a try, 4.3 passes per dollar; \
         codex 4/5 passed at $0.0300 a try, 23.8 passes per dollar"
    );
}

#[test]
fn one_lucky_try_does_not_outrank_a_long_record() {
    // 1/1 at the same price: (1+1)/(1+2) = 0.67 against 19/20: 0.91.
    let got = chosen(
        &[tried("gemini-cli", 1, 0, 0.05), tried("codex", 19, 1, 0.05)],
        &asked("claude-code"),
    );
    assert_eq!(got.runtime, "codex");
}

#[test]
fn a_runtime_that_never_passed_is_chosen_only_when_none_did() {
    let cheap_and_failing = tried("gemini-cli", 0, 10, 0.001);
    let got = chosen(
        &[cheap_and_failing.clone(), tried("codex", 9, 1, 0.05)],
        &asked("codex"),
    );
    assert_eq!(got.runtime, "codex");
    let got = chosen(
        &[cheap_and_failing, tried("codex", 0, 2, 0.05)],
        &asked("codex"),
    );
    assert_eq!(got.runtime, "gemini-cli");
}

#[test]
fn the_expected_cost_of_every_try_must_fit_the_budget() {
    let history = [tried("claude-code", 5, 0, 0.20), tried("codex", 1, 4, 0.30)];
    let mut within = asked("codex");
    within.budget_usd = Some(0.5);
    within.tries = 3;
    // Three tries of either cost more than $0.50: nothing fits.
    let got = chosen(&history, &within);
    assert_eq!(got.runtime, "codex");
    assert!(
        got.why.starts_with("runtimes: auto kept codex: no runtime"),
        "{}",
        got.why
    );
    assert!(
        got.why.contains(
            "claude-code 5/5 passed at $0.2000 a try, over the $0.5 budget ($0.6000 expected)"
        ),
        "{}",
        got.why
    );
    within.tries = 2;
    assert_eq!(chosen(&history, &within).runtime, "claude-code");
}

#[test]
fn nothing_recorded_keeps_the_steps_own_runtime_and_says_so() {
    let got = chosen(&[], &asked("gemini-cli"));
    assert_eq!(got.runtime, "gemini-cli");
    assert!(got.why.contains("no outcomes are recorded"), "{}", got.why);
}

#[test]
fn an_unusable_runtime_is_passed_over_with_its_reason() {
    let mut asking = asked("claude-code");
    asking.unusable = vec![("codex".into(), "no connected worker runs it".into())];
    let got = chosen(
        &[tried("claude-code", 1, 1, 0.20), tried("codex", 5, 0, 0.01)],
        &asking,
    );
    assert_eq!(got.runtime, "claude-code");
    assert!(
        got.why
            .contains("codex 5/5 passed at $0.0100 a try, but no connected worker runs it"),
        "{}",
        got.why
    );
}

#[test]
fn no_recorded_cost_counts_as_the_cheapest_and_ties_go_by_pass_rate() {
    let got = chosen(
        &[tried("codex", 1, 3, 0.0), tried("gemini-cli", 3, 1, 0.0)],
        &asked("codex"),
    );
    assert_eq!(got.runtime, "gemini-cli");
    assert!(got.why.contains("at no recorded cost"), "{}", got.why);
}

#[test]
fn applying_a_choice_moves_the_step_and_its_fallbacks_never_name_its_runtime() {
    let mut step = StepSpec {
        claude_code: Some(crate::spec::ClaudeCodeSpec {
            prompt: "fix it".into(),
            ..Default::default()
        }),
        fallback: vec!["codex".into(), "gemini-cli".into()],
        runtimes: Some(Runtimes::Auto),
        noop: None,
        ..StepSpec::noop("fix")
    };
    let choice = Chosen {
        runtime: "codex".into(),
        preferred: "claude-code".into(),
        why: "cheaper".into(),
    };
    apply(&mut step, choice.clone());
    assert_eq!(
        step.agent,
        Some(AgentSpec {
            cli: "codex".into(),
            prompt: "fix it".into(),
            model: None
        })
    );
    assert_eq!(step.fallback, ["claude-code", "gemini-cli"]);
    assert_eq!(step.chosen, Some(choice));
}

#[test]
fn every_attempt_runs_on_the_runtime_chosen_and_the_step_that_chooses_says_why() {
    let mut spec = TaskSpec {
        steps: vec![StepSpec {
            agent: Some(AgentSpec {
                cli: "codex".into(),
                prompt: "fix".into(),
                model: None,
            }),
            attempts: Some(crate::attempts::AttemptsSpec {
                n: 2,
                ..Default::default()
            }),
            runtimes: Some(Runtimes::Auto),
            noop: None,
            ..StepSpec::noop("fix")
        }],
        ..TaskSpec::default()
    };
    let choice = Chosen {
        runtime: "claude-code".into(),
        preferred: "codex".into(),
        why: "passes more".into(),
    };
    apply(&mut spec.steps[0], choice);
    crate::attempts::expand::with_attempts(&mut spec);
    let said: Vec<(&str, Option<&str>, bool)> = spec
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.agent_capability(), s.chosen.is_some()))
        .collect();
    assert_eq!(
        said,
        [
            ("fix.1", Some("claude-code"), false),
            ("fix.2", Some("claude-code"), false),
            ("fix", None, true)
        ]
    );
}

#[test]
fn each_bad_runtimes_is_refused_naming_its_field() {
    let repo = || {
        Some(crate::repo::RepoSpec {
            url: "https://git/a.git".into(),
            ..Default::default()
        })
    };
    let task = |step: StepSpec| TaskSpec {
        name: "t".into(),
        repo: repo(),
        steps: vec![step],
        ..TaskSpec::default()
    };
    let auto = |step: StepSpec| StepSpec {
        runtimes: Some(Runtimes::Auto),
        ..step
    };
    let codex = || StepSpec {
        agent: Some(AgentSpec {
            cli: "codex".into(),
            prompt: "fix".into(),
            model: None,
        }),
        noop: None,
        ..StepSpec::noop("a")
    };
    let cases: Vec<(TaskSpec, &str, &str)> = vec![
        (
            task(StepSpec {
                runtimes: Runtimes::parse("cheapest"),
                ..codex()
            }),
            "steps[0].runtimes",
            "\"cheapest\" is not a choice of runtimes",
        ),
        (
            task(auto(StepSpec::shell("a", &["true"]))),
            "steps[0].runtimes",
            "chooses an agent step's runtime",
        ),
        (
            TaskSpec {
                repo: None,
                ..task(auto(codex()))
            },
            "steps[0].runtimes",
            "needs the task's repo",
        ),
        (
            task(auto(StepSpec {
                attempts: Some(crate::attempts::AttemptsSpec {
                    n: 2,
                    runtimes: vec!["codex".into(), "gemini-cli".into()],
                    ..Default::default()
                }),
                ..codex()
            })),
            "steps[0].runtimes",
            "leave attempts.runtimes out",
        ),
        (
            task(StepSpec {
                chosen: Some(Chosen::default()),
                ..codex()
            }),
            "steps[0].chosen",
            "tidewright writes this",
        ),
    ];
    for (spec, field, says) in cases {
        let (got, message) = crate::validate::tests::rejected(&spec);
        assert_eq!(got, field, "{message}");
        assert!(message.contains(says), "{field}: {message}");
    }
    crate::validate(&task(auto(codex())), &crate::Limits::default())
        .expect("runtimes: auto on an agent step of a repository is taken");
}

#[test]
fn a_kept_tasks_scores_are_its_attempts_or_its_eval_step_keyed_by_repository() {
    let ran = |passed, head: &str, usd| Ran {
        passed,
        head: Some(head.into()),
        usd,
        millis: 10,
    };
    let mut spec = TaskSpec {
        repo: Some(crate::repo::RepoSpec {
            url: "https://git/a.git".into(),
            ..Default::default()
        }),
        steps: vec![StepSpec {
            agent: Some(AgentSpec {
                cli: "codex".into(),
                prompt: "fix".into(),
                model: None,
            }),
            attempts: Some(crate::attempts::AttemptsSpec {
                n: 2,
                runtimes: vec!["codex".into(), "claude-code".into()],
                ..Default::default()
            }),
            noop: None,
            ..StepSpec::noop("fix")
        }],
        ..TaskSpec::default()
    };
    crate::attempts::expand::with_attempts(&mut spec);
    let scores = scores_of(&spec, |id| match id {
        "fix" => Some(ran(true, "b", 0.0)),
        "fix.1" => Some(ran(false, "a", 0.1)),
        "fix.2" => Some(ran(true, "b", 0.2)),
        _ => None,
    });
    let said: Vec<(&str, bool, bool, &str)> = scores
        .iter()
        .map(|s| (s.runtime.as_str(), s.passed, s.won, s.repo.as_str()))
        .collect();
    let key = crate::repo::key("https://git/a.git");
    assert_eq!(
        said,
        [
            ("codex", false, false, key.as_str()),
            ("claude-code", true, true, key.as_str())
        ]
    );

    let landed = eval::Landed {
        commit: "c".repeat(40),
        parent: "p".repeat(40),
        message: "fix".into(),
        tests: Vec::new(),
    };
    let case = eval::Case {
        landed: &landed,
        runtime: "gemini-cli",
        attempts: 1,
    };
    let spec = eval::task(
        &case,
        ("run", "k1"),
        "file:///snap.git",
        eval::check(String::new(), "true"),
    );
    let scores = scores_of(&spec, |_| Some(ran(true, "h", 0.3)));
    assert_eq!(scores.len(), 1);
    assert_eq!(
        (
            scores[0].runtime.as_str(),
            scores[0].repo.as_str(),
            scores[0].passed
        ),
        ("gemini-cli", "k1", true)
    );
}
