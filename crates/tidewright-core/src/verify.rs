//! Verified steps: what a step's `verify` asks (checks run on its
//! committed work, how many times its agent may be sent back, the paths it
//! may not change), what one round found, and what that means: verified,
//! another round in the same session told what failed, or failed. The
//! worker runs the checks, and has the rubric graded (`grade`); the engine
//! decides here.

pub mod grade;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use grade::{Grade, Verdict};

/// A check runs at most this long unless it says otherwise.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The times an agent is sent back unless the step says otherwise.
pub const DEFAULT_ROUNDS: u32 = 3;
/// The most a step may ask for.
pub const MAX_ROUNDS: u32 = 20;
pub const MAX_CHECKS: usize = 16;
/// The end of a check's output that is kept and told: its last lines, at
/// most this many bytes.
pub const TAIL_BYTES: usize = 4 * 1024;
pub const TAIL_LINES: usize = 60;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifySpec {
    /// Commands run on the step's committed work, each in a checkout and
    /// sandbox of its own; exit 0 passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckSpec>,
    /// The times the agent is sent back with what failed, at most
    /// (1 to 20; 3 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 20)))]
    pub rounds: Option<u32>,
    /// Globs of paths the step may not change (`tests/**`): a change to
    /// one fails the round, and the agent is told to undo it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protect: Vec<String>,
    /// What a grader, apart from the agent, holds the work to once its
    /// checks pass; it needs a grader configured on the control plane and a
    /// worker offering `grader`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rubric: String,
}

impl VerifySpec {
    pub fn rounds(&self) -> u32 {
        self.rounds.unwrap_or(DEFAULT_ROUNDS)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckSpec {
    /// Unique within the step: lowercase letters, digits, '-' and '_'.
    pub name: String,
    /// The program and its arguments, run in the root of the checkout.
    pub run: Vec<String>,
    /// How long it may run (`90s`, `15m`, `1h`); 15m when unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
}

impl CheckSpec {
    /// Its timeout; the default for one that does not parse (validation
    /// refuses those).
    pub fn timeout(&self) -> Duration {
        parse_duration(&self.timeout)
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_CHECK_TIMEOUT)
    }
}

/// `90s`, `15m`, `1h`, `1h30m`; `None` for "". Why not, when it does not
/// parse.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let mut seconds: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(format!("{text:?}: a duration is like 90s, 15m or 1h30m")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: a duration is like 90s, 15m or 1h30m"))?;
        number.clear();
        seconds = seconds.saturating_add(n.saturating_mul(unit));
    }
    if !number.is_empty() {
        return Err(format!("{text:?}: say the unit (s, m or h)"));
    }
    Ok(Some(Duration::from_secs(seconds)))
}

/// What one round of checks found on a step's committed work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Verification {
    /// 1 for the agent's first turn, then one more each time it is sent
    /// back; the engine numbers it.
    pub round: u32,
    /// The commit the checks ran on.
    pub head_commit: String,
    pub checks: Vec<CheckResult>,
    /// The `protect` paths the step's work changed.
    pub protected: Vec<String>,
    /// Test functions the step's work removed, and skip markers it added,
    /// counted on its diff (Rust, Python, JavaScript/TypeScript, Go).
    pub tests_removed: u32,
    pub skips_added: u32,
    /// What this round changed since the round before, as a unified diff
    /// (bounded); empty for the first round, or when the worker lacked the
    /// round before's commit.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub round_diff: String,
    /// The rubric's grade: given when the step has a rubric and its checks
    /// passed (a grader's opinion of failing work is money spent for a
    /// round that fails anyway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grade: Option<Grade>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// `None` when it did not exit (killed at its timeout, or not started).
    pub exit_code: Option<i32>,
    /// Why it did not run to an exit: its timeout, or why it could not start.
    pub trouble: String,
    /// How long its process ran, its checkout aside.
    pub millis: u64,
    /// The end of its output (stdout and stderr as they came), masked.
    pub tail: String,
    /// The paths it points to (a review's comments on lines), to tell
    /// whose work fixes it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl Verification {
    /// Every check passed, no protected path changed, and the grader, when
    /// it graded, found the work meets the rubric.
    pub fn passed(&self) -> bool {
        self.checks_passed() && self.grade.as_ref().is_none_or(Grade::passed)
    }

    /// Every check passed and no protected path changed: what the rubric
    /// is graded after.
    pub fn checks_passed(&self) -> bool {
        self.protected.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The grade, when it found the work needs revision.
    fn revision(&self) -> Option<&Grade> {
        self.grade.as_ref().filter(|g| !g.passed())
    }

    fn failing(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// What failed, in a form that stays the same when the same thing
    /// fails again: the failing checks, each with its failing tests' names
    /// (or its first error line) with numbers and paths made alike, and
    /// the protected paths changed. Empty when it passed.
    pub fn signature(&self) -> String {
        let mut parts: Vec<String> = self
            .failing()
            .map(|c| {
                let mut keys: Vec<String> =
                    key_lines(&c.tail).iter().map(|l| normalised(l)).collect();
                keys.sort();
                keys.dedup();
                format!("{}[{}]", c.name, keys.join("|"))
            })
            .collect();
        parts.sort();
        if !self.protected.is_empty() {
            parts.push(format!("protect[{}]", self.protected.join("|")));
        }
        if let Some(grade) = self.revision() {
            let mut reasons: Vec<String> = grade.reasons.iter().map(|r| normalised(r)).collect();
            reasons.sort();
            parts.push(format!("rubric[{}]", reasons.join("|")));
        }
        parts.join(" ")
    }

    /// The round as one line: `verify round 2: tests failed (exit 101): 3
    /// of 120 failed: test x ... FAILED; lint passed`.
    pub fn summary(&self) -> String {
        format!("verify round {}: {}", self.round, self.findings())
    }

    /// What the round found, as one line: what failed (each check, the
    /// protected paths, the grader's reasons), or that all passed; and
    /// what was flagged.
    pub fn findings(&self) -> String {
        let mut said = String::new();
        if self.passed() {
            said.push_str(&match self.checks.len() {
                0 => "no checks to run".to_string(),
                1 => "its check passed".to_string(),
                n => format!("all {n} checks passed"),
            });
        } else {
            let mut parts: Vec<String> = self.failing().map(CheckResult::said).collect();
            if !self.protected.is_empty() {
                parts.push(format!(
                    "changed protected paths: {}",
                    named(&self.protected, 10)
                ));
            }
            if let Some(grade) = self.revision() {
                let mut reasons = grade.reasons.join("; ");
                crate::text::truncate_at_char_boundary(&mut reasons, 300);
                parts.push(match reasons.as_str() {
                    "" => "the grader found it needs revision".to_string(),
                    reasons => format!("the grader found it needs revision: {reasons}"),
                });
            }
            said.push_str(&parts.join("; "));
        }
        if let Some(gaming) = self.gaming() {
            said.push_str(&format!(" (flagged: {gaming})"));
        }
        said
    }

    /// What its diff did to the tests, when it removed some or added skip
    /// markers.
    pub fn gaming(&self) -> Option<String> {
        let mut said = Vec::new();
        if self.tests_removed > 0 {
            said.push(format!("{} test(s) removed", self.tests_removed));
        }
        if self.skips_added > 0 {
            said.push(format!("{} skip marker(s) added", self.skips_added));
        }
        (!said.is_empty()).then(|| said.join(", "))
    }

    /// What the agent is told when it is sent back: each failing check with
    /// its command, exit and the end of its output; the protected paths it
    /// must put back.
    pub fn feedback(&self, spec: &VerifySpec) -> String {
        let mut text = format!(
            "Your work was checked after your last turn, on what you committed (round {} of at most {}), and it is not done yet.\n",
            self.round,
            spec.rounds() + 1
        );
        for check in self.failing() {
            let command = spec
                .checks
                .iter()
                .find(|c| c.name == check.name)
                .map(|c| c.run.join(" "))
                .unwrap_or_default();
            text.push_str(&format!(
                "\nThe check {:?} (`{command}`) {}. The end of its output:\n```\n{}\n```\n",
                check.name,
                check.outcome(),
                check.tail.trim_end()
            ));
        }
        if !self.protected.is_empty() {
            text.push_str(&format!(
                "\nYou changed paths this step may not change: {}. Undo those changes: put them back as they were.\n",
                named(&self.protected, 20)
            ));
        }
        if let Some(grade) = self.revision() {
            text.push_str(
                "\nA grader, apart from you, held your work to the step's rubric and found it needs revision:\n",
            );
            for reason in &grade.reasons {
                text.push_str(&format!("- {reason}\n"));
            }
            if grade.reasons.is_empty() {
                text.push_str("- (it gave no reasons)\n");
            }
        }
        if let Some(gaming) = self.gaming() {
            text.push_str(&format!(
                "\nYour changes to the tests were noticed: {gaming}. Make the code pass the tests; do not skip or remove them.\n"
            ));
        }
        text.push_str(
            "\nFix the cause, then end your turn. The checks run again on what you leave; do not change the checks or the tests to make them pass.",
        );
        text
    }
}

impl CheckResult {
    /// `failed (exit 101)`, `timed out after 15m`.
    fn outcome(&self) -> String {
        match (self.exit_code, self.trouble.as_str()) {
            (_, trouble) if !trouble.is_empty() => format!("failed: {trouble}"),
            (Some(code), _) => format!("failed (exit {code})"),
            (None, _) => "failed".into(),
        }
    }

    /// `tests failed (exit 101): 3 of 120 failed: test a ... FAILED`.
    fn said(&self) -> String {
        let mut said = format!("{} {}", self.name, self.outcome());
        if let Some((failed, total)) = test_counts(&self.tail) {
            said.push_str(&format!(": {failed} of {total} failed"));
        }
        if let Some(first) = key_lines(&self.tail).first() {
            let mut first = first.clone();
            crate::text::truncate_at_char_boundary(&mut first, 200);
            said.push_str(&format!(": {first}"));
        }
        said
    }
}

/// `a, b, c and 4 more`.
fn named(paths: &[String], most: usize) -> String {
    let mut said = paths
        .iter()
        .take(most)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > most {
        said.push_str(&format!(" and {} more", paths.len() - most));
    }
    said
}

/// The end of `output`: its last [`TAIL_LINES`] lines, at most
/// [`TAIL_BYTES`], cut at a character.
pub fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    let kept = lines[from..].join("\n");
    crate::text::last_bytes(&kept, TAIL_BYTES).to_string()
}

/// The lines that say what failed: the failing tests as cargo, pytest, Go
/// and Jest/Vitest/Mocha name them; else the first error line; else the
/// last line.
fn key_lines(tail: &str) -> Vec<String> {
    let tests: Vec<String> = tail
        .lines()
        .map(str::trim)
        .filter(|l| {
            (l.starts_with("test ") && l.ends_with("FAILED"))
                || (l.starts_with("FAILED ") && !l.starts_with("FAILED ("))
                || l.starts_with("ERROR ")
                || l.starts_with("FAIL: ")
                || l.starts_with("ERROR: ")
                || l.starts_with("--- FAIL:")
                || l.starts_with("✕ ")
                || l.starts_with("× ")
                || l.starts_with("● ")
        })
        .map(str::to_string)
        .collect();
    if !tests.is_empty() {
        return tests;
    }
    let first_error = tail.lines().map(str::trim).find(|l| {
        let lower = l.to_ascii_lowercase();
        lower.starts_with("error") || lower.contains("error:") || lower.contains("assert")
    });
    first_error
        .or_else(|| tail.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .map(|l| vec![l.to_string()])
        .unwrap_or_default()
}

/// `line` with its numbers made `N` and its paths made their last segment,
/// so the same failure on another line of another checkout reads alike.
fn normalised(line: &str) -> String {
    line.split_whitespace()
        .map(|word| {
            let word = match word.rsplit_once('/') {
                Some((_, last)) if word.contains('/') => last,
                _ => word,
            };
            let mut out = String::with_capacity(word.len());
            let mut in_number = false;
            for c in word.chars() {
                if c.is_ascii_digit() {
                    if !in_number {
                        out.push('N');
                    }
                    in_number = true;
                } else {
                    in_number = false;
                    out.push(c);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How many tests failed of how many ran, as cargo (`test result: FAILED.
/// 117 passed; 3 failed`) or pytest (`3 failed, 117 passed`) says it.
fn test_counts(tail: &str) -> Option<(u64, u64)> {
    let number_before = |text: &str, word: &str| -> Option<u64> {
        let at = text.find(word)?;
        text[..at]
            .split_whitespace()
            .last()?
            .trim_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()
    };
    // unittest: `Ran 5 tests in 0.01s`, then `FAILED (failures=1, errors=1)`.
    let ran = tail.lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix("Ran ")?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    });
    if let (Some(total), Some(said)) = (
        ran,
        tail.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("FAILED (")),
    ) {
        let failed = said
            .trim_end_matches(')')
            .split(", ")
            .filter_map(|part| part.split_once('='))
            .filter(|(kind, _)| *kind == "failures" || *kind == "errors")
            .filter_map(|(_, n)| n.parse::<u64>().ok())
            .sum();
        return Some((failed, total));
    }
    for line in tail.lines().rev() {
        let line = line.trim().trim_matches('=').trim();
        if line.starts_with("test result:") || line.contains(" failed") && line.contains(" passed")
        {
            let failed = number_before(line, " failed")?;
            let passed = number_before(line, " passed").unwrap_or(0);
            return Some((failed, failed + passed));
        }
    }
    None
}

/// Test functions removed and skip markers added by a unified diff
/// (`git diff`), by the language each file is in.
pub fn test_changes(diff: &str) -> (u32, u32) {
    let (mut tests, mut skips) = (0i64, 0i64);
    let mut language = None;
    for line in diff.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            language = Language::of(path.trim_start_matches("b/"));
            continue;
        }
        if line.starts_with("--- ") || line.starts_with("diff --git") {
            if line.starts_with("diff --git") {
                language = line
                    .rsplit(' ')
                    .next()
                    .and_then(|p| Language::of(p.trim_start_matches("b/")));
            }
            continue;
        }
        let Some(language) = language else { continue };
        let (sign, text) = match line.as_bytes().first() {
            Some(b'+') => (1, &line[1..]),
            Some(b'-') => (-1, &line[1..]),
            _ => continue,
        };
        let text = text.trim();
        if language.is_test(text) {
            tests -= sign;
        }
        if language.is_skip(text) {
            skips += sign;
        }
    }
    (tests.max(0) as u32, skips.max(0) as u32)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Language {
    Rust,
    Python,
    Script,
    Go,
}

impl Language {
    fn of(path: &str) -> Option<Language> {
        let ext = path.rsplit_once('.')?.1;
        Some(match ext {
            "rs" => Language::Rust,
            "py" => Language::Python,
            "js" | "jsx" | "ts" | "tsx" | "mjs" | "cjs" | "mts" | "cts" => Language::Script,
            "go" => Language::Go,
            _ => return None,
        })
    }

    /// A line that declares a test.
    fn is_test(self, line: &str) -> bool {
        match self {
            Language::Rust => line.starts_with("#[test]") || line.starts_with("#[tokio::test"),
            Language::Python => {
                let def = line.strip_prefix("async ").unwrap_or(line);
                def.starts_with("def test")
            }
            Language::Script => ["it(", "test(", "it.each", "test.each"]
                .iter()
                .any(|p| line.starts_with(p)),
            Language::Go => line.starts_with("func Test"),
        }
    }

    /// A line that skips a test.
    fn is_skip(self, line: &str) -> bool {
        match self {
            Language::Rust => line.starts_with("#[ignore"),
            Language::Python => {
                line.starts_with("@pytest.mark.skip")
                    || line.starts_with("@pytest.mark.xfail")
                    || line.starts_with("@unittest.skip")
                    || line.contains("pytest.skip(")
                    || line.contains("self.skipTest(")
            }
            Language::Script => [
                "it.skip(",
                "test.skip(",
                "describe.skip(",
                "xit(",
                "xtest(",
                "xdescribe(",
                "it.todo(",
                "test.todo(",
            ]
            .iter()
            .any(|p| line.starts_with(p)),
            Language::Go => line.contains("t.Skip(") || line.contains("t.SkipNow("),
        }
    }
}

/// What the engine makes of a round that ran.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Its checks passed: the step is done.
    Verified,
    /// Sent back into its session with `feedback`.
    Again { feedback: String },
    /// The step fails for good, saying why.
    Failed(String, GaveUp),
}

/// Why a verified step fails for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// Its round failed as the round before it did.
    SameFailure,
    /// Its agent was sent back `rounds` times already.
    RoundsSpent,
    /// Its worker ran no checks.
    NoChecks,
    /// Its checks passed, but its rubric was not graded.
    NotGraded,
}

impl GaveUp {
    pub fn as_str(self) -> &'static str {
        match self {
            GaveUp::SameFailure => "same_failure",
            GaveUp::RoundsSpent => "rounds_spent",
            GaveUp::NoChecks => "no_checks",
            GaveUp::NotGraded => "not_graded",
        }
    }
}

/// Why a step whose checks passed fails when its rubric went ungraded.
pub const NOT_GRADED: &str = "verify: the checks passed, but the worker did not grade the rubric (a worker older than this control plane does not grade)";

/// Round `found.round` of a step verified by `spec`, after `earlier` (the
/// round before it, when there was one).
pub fn decide(spec: &VerifySpec, found: &Verification, earlier: Option<&Verification>) -> Decision {
    if found.passed() && found.grade.is_none() && !spec.rubric.is_empty() {
        // A safety feature never turns itself off: work whose rubric went
        // ungraded is not verified.
        return Decision::Failed(NOT_GRADED.into(), GaveUp::NotGraded);
    }
    if found.passed() {
        return Decision::Verified;
    }
    let summary = found.summary();
    if let Some(earlier) = earlier.filter(|e| !e.passed())
        && earlier.signature() == found.signature()
    {
        return Decision::Failed(
            format!("the same failure twice: {summary}"),
            GaveUp::SameFailure,
        );
    }
    if found.round > spec.rounds() {
        return Decision::Failed(
            format!(
                "verify: the agent was sent back {} times and its work still does not pass: {summary}",
                spec.rounds()
            ),
            GaveUp::RoundsSpent,
        );
    }
    Decision::Again {
        feedback: found.feedback(spec),
    }
}

#[cfg(test)]
mod tests;
