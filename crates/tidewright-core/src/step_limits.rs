//! What one step may use of its worker: memory, processes, open files,
//! CPU time and the disk of its workspace. A step's own limits and its
//! pool's merge narrowest-wins (the lower of each), so a step can ask for
//! less than its pool allows, never more. Sizes are written `2GiB`,
//! `512MiB`, `64KiB` or a number of bytes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, invalid};

/// A step's limits, as its spec says them; each unset one is its pool's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepLimits {
    /// Memory of all its processes together (`2GiB`); past it the step
    /// ends `oom: memory limit 2 GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Its processes at once; a step ended by a refused fork says
    /// `pids limit 512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub processes: Option<u64>,
    /// Open files of each of its processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub open_files: Option<u64>,
    /// CPU seconds of each of its processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub cpu_seconds: Option<u64>,
    /// What its workspace may hold (`10GiB`); past it the step ends
    /// `disk limit 10 GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
}

impl StepLimits {
    pub fn is_empty(&self) -> bool {
        *self == StepLimits::default()
    }

    /// Checks each limit; `field` is where they sit (`steps[0].limits`).
    pub fn validate(&self, field: &str) -> Result<(), Error> {
        if self.is_empty() {
            return Err(invalid(
                field,
                "set memory, processes, openFiles, cpuSeconds or disk (or leave limits out)",
            ));
        }
        for (name, size) in [("memory", &self.memory), ("disk", &self.disk)] {
            if let Some(size) = size {
                parse_bytes(size).map_err(|why| invalid(format!("{field}.{name}"), why))?;
            }
        }
        for (name, count) in [
            ("processes", self.processes),
            ("openFiles", self.open_files),
            ("cpuSeconds", self.cpu_seconds),
        ] {
            if count == Some(0) {
                return Err(invalid(format!("{field}.{name}"), "must be above zero"));
            }
        }
        Ok(())
    }
}

/// `2GiB`, `512MiB`, `64KiB`, `100B` or a bare number of bytes, above zero.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let wrong = || format!("{text:?} is not a size like 2GiB, 512MiB or 1048576");
    let value: u64 = number.parse().map_err(|_| wrong())?;
    let unit: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(wrong()),
    };
    match value.checked_mul(unit) {
        Some(0) => Err(format!("{text:?} must be above zero")),
        Some(bytes) => Ok(bytes),
        None => Err(wrong()),
    }
}

/// `2 GiB`, `64 MiB`, or `1000 bytes` when no unit divides it.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    UNITS
        .iter()
        .find(|(_, unit)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map_or_else(
            || format!("{bytes} bytes"),
            |(name, unit)| format!("{} {name}", bytes / unit),
        )
}

/// The lower of two limits, either of which may be unset.
pub fn narrowest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_read_back() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("64 MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert!(parse_bytes("0").expect_err("zero").contains("above zero"));
        assert!(parse_bytes("2GB").expect_err("unit").contains("not a size"));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
        assert_eq!(format_bytes(2 << 30), "2 GiB");
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
    }

    #[test]
    fn the_lower_limit_wins() {
        assert_eq!(narrowest(Some(2), Some(5)), Some(2));
        assert_eq!(narrowest(None, Some(5)), Some(5));
        assert_eq!(narrowest(Some(7), None), Some(7));
        assert_eq!(narrowest(None, None), None);
    }
}
