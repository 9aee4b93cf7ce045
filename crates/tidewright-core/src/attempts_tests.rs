//! A step with attempts: refused by field when it cannot run, turned into
//! its attempts and the step that chooses, run so that an attempt's
//! failure is not the task's, and the winner ranked.

use super::expand::with_attempts;
use super::*;
use crate::run::{Outcome, TaskRun};
use crate::spec::{ClaudeCodeSpec, RetryPolicy};
use crate::spec::{StepSpec, TaskSpec};
use crate::state::{StepState, TaskState};
use crate::validate::{Limits, validate};
use crate::verify::{CheckSpec, VerifySpec};
use crate::{Error, RepoSpec};

fn fix(attempts: AttemptsSpec) -> StepSpec {
    StepSpec {
        claude_code: Some(ClaudeCodeSpec {
            prompt: "Fix add.".into(),
            model: Some("claude-opus-4-1".into()),
            ..ClaudeCodeSpec::default()
        }),
        noop: None,
        verify: Some(VerifySpec {
            checks: vec![CheckSpec {
                name: "tests".into(),
                run: vec!["python3".into(), "-m".into(), "unittest".into()],
                timeout: String::new(),
            }],
            ..VerifySpec::default()
        }),
        attempts: Some(attempts),
        ..StepSpec::noop("fix")
    }
}

fn three() -> AttemptsSpec {
    AttemptsSpec {
        n: 3,
        runtimes: vec!["claude-code".into(), "codex".into(), "gemini-cli".into()],
        ..AttemptsSpec::default()
    }
}

fn task(steps: Vec<StepSpec>) -> TaskSpec {
    TaskSpec {
        name: "t".into(),
        steps,
        repo: Some(RepoSpec {
            url: "https://example.com/calc.git".into(),
            ..RepoSpec::default()
        }),
        ..TaskSpec::default()
    }
}

/// A control plane that names a grader model.
fn graded() -> Limits {
    Limits {
        grader: Some("claude-judge".into()),
        ..Limits::default()
    }
}

fn refused(spec: &TaskSpec) -> (String, String) {
    refused_by(spec, &graded())
}

fn refused_by(spec: &TaskSpec, limits: &Limits) -> (String, String) {
    match validate(spec, limits) {
        Err(Error::Invalid { field, message }) => (field, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn each_bad_attempts_is_refused_naming_its_field() {
    let with = |change: fn(&mut StepSpec)| {
        let mut step = fix(three());
        change(&mut step);
        task(vec![step])
    };
    let cases: Vec<(TaskSpec, &str, &str)> = vec![
        (
            with(|s| s.attempts.as_mut().expect("a").n = 0),
            "steps[0].attempts.n",
            "1 to 10",
        ),
        (
            with(|s| s.attempts.as_mut().expect("a").n = 11),
            "steps[0].attempts.n",
            "1 to 10",
        ),
        (
            with(|s| s.attempts.as_mut().expect("a").runtimes[1] = "cobol".into()),
            "steps[0].attempts.runtimes[1]",
            "\"cobol\" is not an agent runtime",
        ),
        (
            with(|s| s.attempts.as_mut().expect("a").n = 2),
            "steps[0].attempts.runtimes",
            "3 runtimes for 2 attempts",
        ),
        (
            with(|s| s.attempts.as_mut().expect("a").select = Select::parse("vote")),
            "steps[0].attempts.select",
            "\"vote\" is not a way to choose",
        ),
        (
            with(|s| s.verify = None),
            "steps[0].attempts.select",
            "checks-then-judge chooses by the step's checks",
        ),
        (
            with(|s| {
                s.claude_code = None;
                s.verify = None;
                s.attempts.as_mut().expect("a").select = Select::Judge;
                s.shell = Some(crate::spec::ShellSpec {
                    command: vec!["true".into()],
                    ..crate::spec::ShellSpec::default()
                });
            }),
            "steps[0].attempts",
            "attempts are for agent steps",
        ),
        (
            with(|s| {
                s.approval = Some(crate::spec::ApprovalSpec {
                    approvers: vec!["admin".into()],
                    ..crate::spec::ApprovalSpec::default()
                })
            }),
            "steps[0].approval",
            "not gated",
        ),
        (
            with(|s| {
                s.select = Some(SelectSpec::default());
            }),
            "steps[0].select",
            "tidewright sets this",
        ),
    ];
    for (spec, field, says) in cases {
        let (got_field, message) = refused(&spec);
        assert_eq!(got_field, field, "{message}");
        assert!(message.contains(says), "{field}: {message}");
    }
    let mut no_repo = task(vec![fix(three())]);
    no_repo.repo = None;
    let (field, message) = refused(&no_repo);
    // verify refuses first: checks need the repository too.
    assert!(field.starts_with("steps[0]."), "{field}: {message}");
    assert!(message.contains("names no repo"), "{message}");
    validate(&task(vec![fix(three())]), &graded()).expect("a good one passes");
    // A judge needs the control plane's grader model; checks alone do not.
    let (field, message) = refused_by(&task(vec![fix(three())]), &Limits::default());
    assert_eq!(field, "steps[0].attempts.select", "{message}");
    assert!(message.contains("no grader is configured"), "{message}");
    let checks = fix(AttemptsSpec {
        select: Select::Checks,
        ..three()
    });
    validate(&task(vec![checks]), &Limits::default()).expect("checks alone need no grader");
}

#[test]
fn a_step_with_attempts_becomes_its_attempts_and_the_step_that_chooses() {
    let mut spec = task(vec![
        StepSpec::noop("plan"),
        fix(AttemptsSpec {
            stop_early: true,
            ..three()
        })
        .after(&["plan"]),
        StepSpec::noop("docs").after(&["fix"]),
    ]);
    with_attempts(&mut spec);
    let ids: Vec<&str> = spec.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["plan", "fix.1", "fix.2", "fix.3", "fix", "docs"]);
    let runtimes: Vec<Option<&str>> = spec.steps[1..4]
        .iter()
        .map(StepSpec::agent_capability)
        .collect();
    assert_eq!(
        runtimes,
        [Some("claude-code"), Some("codex"), Some("gemini-cli")]
    );
    // The step's own runtime keeps its settings; another gets the prompt.
    assert_eq!(
        spec.steps[1]
            .claude_code
            .as_ref()
            .and_then(|c| c.model.as_deref()),
        Some("claude-opus-4-1")
    );
    let codex = spec.steps[2].agent.as_ref().expect("an agent step");
    assert_eq!(
        (codex.prompt.as_str(), codex.model.as_deref()),
        ("Fix add.", None)
    );
    for attempt in &spec.steps[1..4] {
        assert_eq!(attempt.depends_on, ["plan"]);
        assert!(attempt.verify.is_some() && attempt.attempts.is_none());
    }
    let chooser = &spec.steps[4];
    assert_eq!(chooser.depends_on, ["fix.1", "fix.2", "fix.3"]);
    assert_eq!(chooser.needs, [crate::verify::grade::GRADER]);
    let select = chooser.select.as_ref().expect("chooses");
    assert_eq!(
        (select.attempts.len(), select.stops_early(), &select.select),
        (3, true, &Select::ChecksThenJudge)
    );
    assert_eq!(spec.steps[5].depends_on, ["fix"], "unchanged");

    // One runtime n times: the step's own.
    let mut alone = task(vec![fix(AttemptsSpec {
        n: 2,
        select: Select::Checks,
        ..AttemptsSpec::default()
    })]);
    with_attempts(&mut alone);
    assert!(
        alone.steps[..2]
            .iter()
            .all(|s| s.agent_capability() == Some("claude-code"))
    );
    assert!(alone.steps[2].needs.is_empty(), "no judge, no grader");
}

fn expanded(attempts: AttemptsSpec) -> (TaskSpec, TaskRun) {
    let mut step = fix(attempts);
    step.retry = Some(RetryPolicy::new(2));
    let mut spec = task(vec![step, StepSpec::noop("after").after(&["fix"])]);
    with_attempts(&mut spec);
    let (run, _) = TaskRun::new(&spec);
    (spec, run)
}

fn states(run: &TaskRun) -> Vec<StepState> {
    run.steps().iter().map(|s| s.state).collect()
}

use StepState::*;

#[test]
fn an_attempt_that_fails_for_good_does_not_fail_the_task_and_the_chooser_waits_for_all() {
    let (_, mut run) = expanded(three());
    assert_eq!(
        states(&run),
        [Queued, Queued, Queued, Waiting, Waiting],
        "the attempts run at once"
    );
    for i in 0..3 {
        run.start(i).expect("start");
    }
    run.fail_for_good(0, "verify: the same failure twice")
        .expect("ends");
    // A failure with retries left is retried, as any step's.
    run.finish(1, Outcome::Failed("crashed".into()))
        .expect("retried");
    assert_eq!(run.step(1).state, Queued);
    assert_eq!(run.state(), TaskState::Running, "not winding down");
    run.start(1).expect("again");
    run.finish(1, Outcome::Failed("crashed".into()))
        .expect("spent");
    assert_eq!(states(&run)[3], Waiting, "one attempt still runs");
    run.finish(2, Outcome::Succeeded).expect("passes");
    assert_eq!(states(&run), [Failed, Failed, Succeeded, Queued, Waiting]);
    assert!(run.to_stop(2).is_empty(), "nothing stops without stopEarly");
    run.start(3).expect("chooses");
    run.finish(3, Outcome::Succeeded).expect("chosen");
    assert_eq!(states(&run)[4], Queued, "what depends on the step goes on");

    // When every attempt failed the chooser still runs, to fail the step.
    let (_, mut run) = expanded(three());
    for i in 0..3 {
        run.start(i).expect("start");
        run.fail_for_good(i, "no").expect("ends");
    }
    assert_eq!(run.step(3).state, Queued);
    run.start(3).expect("chooses");
    run.fail_for_good(3, "no attempt passed").expect("fails");
    assert_eq!(run.state(), TaskState::Failed);

    // Restored mid-way, it still waits for the attempt that runs.
    let spec = expanded(three()).0;
    let mut statuses = run.steps().to_vec();
    statuses[0].state = Failed;
    statuses[1].state = Running;
    statuses[2].state = Succeeded;
    statuses[3].state = Waiting;
    statuses[4].state = Waiting;
    let mut restored = TaskRun::restore(&spec, TaskState::Running, statuses);
    restored
        .finish(1, Outcome::Cancelled("stopped".into()))
        .expect("ends");
    assert_eq!(restored.step(1).state, Queued, "retried: it may still pass");
    restored.start(1).expect("again");
    restored.fail_for_good(1, "no").expect("ends");
    assert_eq!(restored.step(3).state, Queued);
}

#[test]
fn the_first_to_pass_stops_the_rest_when_they_stop_early() {
    let mut attempts = three();
    attempts.n = 4;
    attempts.stop_early = true;
    let (_, mut run) = expanded(attempts);
    run.start(0).expect("start");
    run.start(1).expect("start");
    // The fourth has not started (no worker yet).
    run.finish(1, Outcome::Succeeded).expect("passes");
    assert_eq!(run.to_stop(1), [0], "the running one is stopped");
    assert_eq!(
        states(&run)[2..4],
        [Skipped, Skipped],
        "the waiting skipped"
    );
    // The stopped one comes back cancelled, and is not retried.
    run.finish(0, Outcome::Cancelled("attempt fix.2 passed first".into()))
        .expect("ends");
    assert_eq!(run.step(0).state, Cancelled);
    assert_eq!(run.step(4).state, Queued, "the chooser is ready");
    assert_eq!(run.state(), TaskState::Running);
}

#[test]
fn the_winner_without_a_judge_is_sent_back_least_then_cheapest_then_first() {
    let f = |index, passed, rounds, usd| Finished {
        index,
        passed,
        rounds,
        usd,
    };
    assert_eq!(
        best(&[
            f(0, false, 1, 0.01),
            f(1, true, 2, 0.01),
            f(2, true, 1, 0.09)
        ]),
        Some(2)
    );
    assert_eq!(best(&[f(0, true, 1, 0.05), f(1, true, 1, 0.02)]), Some(1));
    assert_eq!(best(&[f(0, true, 1, 0.02), f(1, true, 1, 0.02)]), Some(0));
    assert_eq!(best(&[f(0, false, 1, 0.0)]), None);
}
