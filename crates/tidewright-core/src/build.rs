//! A build of tidewright: its version, the commit it came from and when it
//! was built, as `tidewright version` prints it and the control plane
//! reports itself to clients. The binary fills it in from what its build
//! script recorded; the libraries only carry it.

use crate::calendar::{MICROS_PER_DAY, civil_from_days};
use crate::state::Micros;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Build {
    /// Semver, e.g. `0.2.0`.
    pub version: String,
    /// The git commit, `-dirty` after it when built from a changed
    /// checkout, or `unknown`.
    pub commit: String,
    pub built_at: Micros,
}

impl Build {
    /// `0.2.0 (commit 1a2b3c4d5e6f, built 2026-11-27)`: the commit cut to
    /// twelve digits, as people compare them.
    pub fn describe(&self) -> String {
        let (commit, dirty) = match self.commit.strip_suffix("-dirty") {
            Some(commit) => (commit, "-dirty"),
            None => (self.commit.as_str(), ""),
        };
        let short: String = commit.chars().take(12).collect();
        let (y, m, d) = civil_from_days(self.built_at.div_euclid(MICROS_PER_DAY));
        format!(
            "{} (commit {short}{dirty}, built {y:04}-{m:02}-{d:02})",
            self.version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_described_with_its_short_commit_and_its_day() {
        let build = Build {
            version: "0.2.0".into(),
            commit: "0123456789abcdef0123456789abcdef01234567-dirty".into(),
            built_at: 1_795_749_636_000_000,
        };
        assert_eq!(
            build.describe(),
            "0.2.0 (commit 0123456789ab-dirty, built 2026-11-27)"
        );
        let unknown = Build {
            commit: "unknown".into(),
            ..build
        };
        assert_eq!(
            unknown.describe(),
            "0.2.0 (commit unknown, built 2026-11-27)"
        );
    }
}
