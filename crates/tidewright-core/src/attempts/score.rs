//! How each runtime fares on the user's own work: one score per attempt
//! of a step with attempts (its runtime, repository and template, whether
//! it passed and won, what it cost and took), and the standing of each
//! runtime over many. The scores are read from the tasks kept (each task
//! with attempts carries [`ATTEMPTS_LABEL`]), so they last as long as the
//! tasks do.

use serde::Serialize;

/// The label tidewright puts on a task with attempts, to find them.
pub const ATTEMPTS_LABEL: &str = "tidewright.dev/attempts";
/// The label tidewright puts on a task made from a template: its name.
pub const TEMPLATE_LABEL: &str = "tidewright.dev/template";

/// One attempt's score.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    pub runtime: String,
    pub repo: String,
    /// The template its task was made from; "" when none.
    pub template: String,
    pub passed: bool,
    pub won: bool,
    pub usd: f64,
    /// From its first attempt's start to its end.
    pub millis: u64,
}

/// A runtime's standing over its scores.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub runtime: String,
    pub attempts: u32,
    pub passed: u32,
    pub won: u32,
    /// Passed over attempts.
    pub pass_rate: f64,
    /// What its attempts cost in all.
    pub usd: f64,
    /// Dollars per attempt that passed; `None` when none did.
    pub usd_per_pass: Option<f64>,
    pub median_millis: u64,
}

/// Each runtime's standing, by name.
pub fn standings(scores: &[Score]) -> Vec<Standing> {
    let mut runtimes: Vec<&str> = scores.iter().map(|s| s.runtime.as_str()).collect();
    runtimes.sort_unstable();
    runtimes.dedup();
    runtimes
        .into_iter()
        .map(|runtime| {
            let mine: Vec<&Score> = scores.iter().filter(|s| s.runtime == runtime).collect();
            let passed = mine.iter().filter(|s| s.passed).count() as u32;
            let usd: f64 = mine.iter().map(|s| s.usd).sum();
            let mut millis: Vec<u64> = mine.iter().map(|s| s.millis).collect();
            millis.sort_unstable();
            Standing {
                runtime: runtime.to_string(),
                attempts: mine.len() as u32,
                passed,
                won: mine.iter().filter(|s| s.won).count() as u32,
                pass_rate: f64::from(passed) / mine.len() as f64,
                usd,
                usd_per_pass: (passed > 0).then(|| usd / f64::from(passed)),
                median_millis: millis[millis.len() / 2],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(runtime: &str, passed: bool, won: bool, usd: f64, millis: u64) -> Score {
        Score {
            runtime: runtime.into(),
            passed,
            won,
            usd,
            millis,
            ..Score::default()
        }
    }

    #[test]
    fn each_runtime_stands_by_its_attempts_passes_wins_and_dollars_per_pass() {
        let got = standings(&[
            score("codex", true, true, 0.10, 3000),
            score("claude-code", false, false, 0.20, 5000),
            score("codex", false, false, 0.05, 1000),
            score("codex", true, false, 0.15, 2000),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].runtime.as_str(),
                got[0].attempts,
                got[0].passed,
                got[0].usd_per_pass
            ),
            ("claude-code", 1, 0, None)
        );
        let codex = &got[1];
        assert_eq!((codex.attempts, codex.passed, codex.won), (3, 2, 1));
        assert!((codex.pass_rate - 2.0 / 3.0).abs() < 1e-9);
        assert!((codex.usd_per_pass.expect("passed") - 0.15).abs() < 1e-9);
        assert_eq!(codex.median_millis, 2000);
        assert!(standings(&[]).is_empty());
    }
}
