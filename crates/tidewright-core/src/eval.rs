//! Evals on the user's own history (`tidewright eval`): each commit that
//! landed on a branch and changed both code and tests is a task an agent
//! can be measured on. The agent is asked what the commit's message says,
//! starts from its parent (in a repository that holds nothing after it),
//! with egress closed, and passes when the commit's own tests pass on its
//! work. Each runtime runs each task once per attempt count asked; the
//! tasks are kept, labelled with the run, so a run is compared with the
//! last one on the same repository.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attempts::{AttemptsSpec, Select};
use crate::egress::Egress;
use crate::repo::RepoSpec;
use crate::spec::{AgentSpec, StepSpec, TaskSpec};
use crate::verify::{CheckSpec, VerifySpec};

/// Every eval task carries it (`true`), so they are found together.
pub const EVALS_LABEL: &str = "tidewright.dev/evals";
/// The run a task of an eval belongs to.
pub const RUN_LABEL: &str = "tidewright.dev/eval";
/// The repository an eval ran on (a short hash of its URL: a label's
/// value is short).
pub const REPO_LABEL: &str = "tidewright.dev/eval-repo";
pub const RUNTIME_LABEL: &str = "tidewright.dev/eval-runtime";
pub const ATTEMPTS_LABEL: &str = "tidewright.dev/eval-attempts";
pub const COMMIT_LABEL: &str = "tidewright.dev/eval-commit";

/// The id of the step an eval's task runs.
pub const STEP: &str = "solve";

/// Whether `path` holds tests: a `test`/`tests`/`spec` directory, or a
/// file named as tests are (`test_*.py`, `*_test.go`, `*.test.ts`, ...).
pub fn is_test_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    let (dirs, file) = parts.split_at(parts.len().saturating_sub(1));
    let file = file.first().copied().unwrap_or_default();
    dirs.iter()
        .any(|d| matches!(*d, "test" | "tests" | "spec" | "specs" | "__tests__"))
        || file.starts_with("test_")
        || file.starts_with("test.")
        || file.contains("_test.")
        || file.contains(".test.")
        || file.contains("_spec.")
        || file.contains(".spec.")
}

/// Whether `path` is code an agent would change: not tests, not docs.
pub fn is_code_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !is_test_path(path)
        && !lower.ends_with(".md")
        && !lower.ends_with(".txt")
        && !lower.ends_with(".rst")
        && !lower.starts_with("docs/")
}

/// A commit that landed and changed both code and tests: a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landed {
    pub commit: String,
    pub parent: String,
    /// What it was asked: its message (a merge's is its pull request's).
    pub message: String,
    /// The tests it changed, with their content at the commit: the check.
    pub tests: Vec<(String, Vec<u8>)>,
}

/// The check of a task: the commit's tests put in place over the agent's
/// work (`restore` writes them; see [`restore_script`]), then
/// `test_command`.
pub fn check(restore: String, test_command: &str) -> CheckSpec {
    CheckSpec {
        name: "commit-tests".into(),
        run: vec![
            "sh".into(),
            "-c".into(),
            format!("{restore} && {test_command}"),
        ],
        timeout: "10m".into(),
    }
}

/// A shell script that writes `files` (base64 in the script, so any byte
/// goes through) under the checkout it runs in.
pub fn restore_script(files: &[(String, Vec<u8>)]) -> String {
    use base64::Engine as _;
    let mut script = String::from("set -e");
    for (path, content) in files {
        let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
        let encoded = base64::engine::general_purpose::STANDARD.encode(content);
        script.push_str(&format!(
            "; mkdir -p '{dir}'; printf %s '{encoded}' | base64 -d > '{path}'"
        ));
    }
    script
}

/// What one eval task is: its commit, on which runtime, with how many
/// attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case<'a> {
    pub landed: &'a Landed,
    pub runtime: &'a str,
    pub attempts: u32,
}

/// The task of `case` in run `run` on repository `repo_key`, its
/// repository the snapshot at `snapshot_url` (its `main` is the parent),
/// checked by `check`.
pub fn task(
    case: &Case<'_>,
    (run, repo_key): (&str, &str),
    snapshot_url: &str,
    check: CheckSpec,
) -> TaskSpec {
    let short = &case.landed.commit[..case.landed.commit.len().min(10)];
    let mut step = StepSpec {
        agent: Some(AgentSpec {
            cli: case.runtime.to_string(),
            prompt: case.landed.message.clone(),
            model: None,
        }),
        noop: None,
        // Sent back once at most: what an eval measures is the agent, not
        // how long it may be told.
        verify: Some(VerifySpec {
            checks: vec![check],
            rounds: Some(1),
            ..VerifySpec::default()
        }),
        ..StepSpec::noop(STEP)
    };
    if case.attempts > 1 {
        step.attempts = Some(AttemptsSpec {
            n: case.attempts,
            runtimes: Vec::new(),
            select: Select::Checks,
            stop_early: true,
        });
    }
    let labels: BTreeMap<String, String> = [
        (EVALS_LABEL, "true".to_string()),
        (RUN_LABEL, run.to_string()),
        (REPO_LABEL, repo_key.to_string()),
        (RUNTIME_LABEL, case.runtime.to_string()),
        (ATTEMPTS_LABEL, case.attempts.to_string()),
        (COMMIT_LABEL, case.landed.commit.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    TaskSpec {
        name: format!("eval-{short}-{}-{}", case.runtime, case.attempts),
        labels,
        steps: vec![step],
        repo: Some(RepoSpec {
            url: snapshot_url.to_string(),
            git_ref: "main".into(),
            ..RepoSpec::default()
        }),
        // Nothing but the agent's own provider, through its worker.
        egress: Some(Egress { allow: Vec::new() }),
        ..TaskSpec::default()
    }
}

/// How one task of a run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub runtime: String,
    pub attempts: u32,
    pub commit: String,
    pub passed: bool,
    pub usd: f64,
    pub millis: u64,
    /// Rounds of checks its agent went through (the chosen attempt's).
    pub rounds: u32,
}

/// A runtime's figures at one attempt count, over a run's tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub runtime: String,
    pub attempts: u32,
    pub tasks: u32,
    pub passed: u32,
    pub pass_rate: f64,
    pub usd: f64,
    pub median_millis: u64,
    pub mean_rounds: f64,
    /// The pass rate of the same runtime and attempts in the last run on
    /// the repository; `None` without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_pass_rate: Option<f64>,
}

/// Each runtime's row at each attempt count, in that order, compared with
/// `last` (the rows of the run before, empty without one).
pub fn rows(outcomes: &[Outcome], last: &[Row]) -> Vec<Row> {
    let mut keys: Vec<(&str, u32)> = outcomes
        .iter()
        .map(|o| (o.runtime.as_str(), o.attempts))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|(runtime, attempts)| {
            let mine: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| o.runtime == runtime && o.attempts == attempts)
                .collect();
            let passed = mine.iter().filter(|o| o.passed).count() as u32;
            let mut millis: Vec<u64> = mine.iter().map(|o| o.millis).collect();
            millis.sort_unstable();
            let tasks = mine.len() as u32;
            Row {
                runtime: runtime.to_string(),
                attempts,
                tasks,
                passed,
                pass_rate: f64::from(passed) / f64::from(tasks.max(1)),
                usd: mine.iter().map(|o| o.usd).sum(),
                median_millis: millis.get(millis.len() / 2).copied().unwrap_or(0),
                mean_rounds: mine.iter().map(|o| f64::from(o.rounds)).sum::<f64>()
                    / f64::from(tasks.max(1)),
                last_pass_rate: last
                    .iter()
                    .find(|r| r.runtime == runtime && r.attempts == attempts)
                    .map(|r| r.pass_rate),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_are_told_from_code_and_docs() {
        for test in [
            "tests/test_calc.py",
            "test_calc.py",
            "pkg/calc_test.go",
            "src/calc.test.ts",
            "spec/calc_spec.rb",
            "src/__tests__/a.js",
        ] {
            assert!(is_test_path(test), "{test}");
            assert!(!is_code_path(test), "{test}");
        }
        for code in ["calc.py", "src/lib.rs", "contest/run.py"] {
            assert!(!is_test_path(code), "{code}");
            assert!(is_code_path(code), "{code}");
        }
        assert!(!is_code_path("README.md") && !is_code_path("docs/guide.html"));
    }

    #[test]
    fn a_case_is_its_message_from_its_parent_checked_by_its_tests_egress_closed() {
        let landed = Landed {
            commit: "c".repeat(40),
            parent: "p".repeat(40),
            message: "Fix add: it subtracted".into(),
            tests: vec![("tests/test_calc.py".into(), b"assert 1\n".to_vec())],
        };
        let restore = restore_script(&landed.tests);
        assert!(restore.contains("mkdir -p 'tests'"), "{restore}");
        assert!(
            restore.contains("| base64 -d > 'tests/test_calc.py'"),
            "{restore}"
        );
        let case = Case {
            landed: &landed,
            runtime: "codex",
            attempts: 3,
        };
        let spec = task(
            &case,
            ("run-1", "abc"),
            "file:///evals/c.git",
            check(restore, "python3 -m unittest"),
        );
        crate::validate(&spec, &crate::Limits::default()).expect("a valid task");
        let step = &spec.steps[0];
        assert_eq!(step.prompt(), "Fix add: it subtracted");
        assert_eq!(step.agent_capability(), Some("codex"));
        assert_eq!(step.attempts.as_ref().map(|a| a.n), Some(3));
        assert_eq!(spec.egress, Some(Egress { allow: Vec::new() }));
        assert_eq!(spec.labels[RUN_LABEL], "run-1");
        assert_eq!(spec.labels[ATTEMPTS_LABEL], "3");
        let run = &step.verify.as_ref().expect("verify").checks[0].run;
        assert!(run[2].ends_with("&& python3 -m unittest"), "{run:?}");
    }

    #[test]
    fn rows_stand_each_runtime_at_each_attempt_count_against_the_last_run() {
        let outcome = |runtime: &str, attempts: u32, passed: bool, rounds: u32| Outcome {
            runtime: runtime.into(),
            attempts,
            passed,
            usd: 0.5,
            millis: 1000 * u64::from(rounds),
            rounds,
            ..Outcome::default()
        };
        let outcomes = [
            outcome("codex", 1, false, 1),
            outcome("claude-code", 1, true, 1),
            outcome("claude-code", 1, false, 3),
            outcome("claude-code", 3, true, 2),
        ];
        let last = [Row {
            runtime: "claude-code".into(),
            attempts: 1,
            pass_rate: 1.0,
            ..Row::default()
        }];
        let rows = rows(&outcomes, &last);
        let said: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} x{}: {}/{} passed, {} rounds, last {:?}",
                    r.runtime, r.attempts, r.passed, r.tasks, r.mean_rounds, r.last_pass_rate
                )
            })
            .collect();
        assert_eq!(
            said,
            [
                "claude-code x1: 1/2 passed, 2 rounds, last Some(1.0)",
                "claude-code x3: 1/1 passed, 2 rounds, last None",
                "codex x1: 0/1 passed, 1 rounds, last None",
            ]
        );
        assert_eq!(rows[0].pass_rate, 0.5);
        assert_eq!(rows[0].usd, 1.0);
        assert_eq!(rows[0].median_millis, 3000);
    }
}
