//! Provider limits in what an agent reports: a run stopped by the API's
//! rate limit or an account's usage window is not the step's failure. The
//! control plane pauses the pool's agents until the limit resets and runs
//! the step again without counting the attempt, so this module only has to
//! tell such an error apart, and read its reset time when it carries one.

use orca_core::Micros;

/// What a limit's error says: `Some(reset)` when the error is a provider
/// limit, with the reset time (microseconds since the epoch) when the
/// message names one; `None` for any other error.
///
/// Recognised, after the CLI's own retries: HTTP 429 (rate limited) and 529
/// (overloaded), the API's `rate_limit_error` and `overloaded_error` types,
/// and the usage-limit message of subscription accounts, which ends in
/// `|<unix seconds>` of its reset (`Claude AI usage limit reached|1767225600`).
pub fn rate_limit_in(error: &str) -> Option<Option<Micros>> {
    let lower = error.to_ascii_lowercase();
    let limited = [
        "api error: 429",
        "api error: 529",
        "rate_limit_error",
        "overloaded_error",
    ]
    .iter()
    .any(|mark| lower.contains(mark))
        || lower.contains("usage limit reached");
    if !limited {
        return None;
    }
    Some(reset_in(&lower))
}

/// The reset time after `limit reached|`, when it is a plausible unix time
/// in seconds (after 2001, before 2286).
fn reset_in(lower: &str) -> Option<Micros> {
    let (_, after) = lower.split_once("limit reached|")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let seconds: i64 = digits.parse().ok()?;
    (1_000_000_000..10_000_000_000)
        .contains(&seconds)
        .then(|| seconds * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_told_apart_from_other_errors() {
        assert_eq!(
            rate_limit_in(
                r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
            ),
            Some(None)
        );
        assert_eq!(rate_limit_in("API Error: 529 overloaded"), Some(None));
        assert_eq!(
            rate_limit_in("Claude AI usage limit reached|1767225600"),
            Some(Some(1_767_225_600_000_000))
        );
        assert_eq!(
            rate_limit_in("usage limit reached|12"),
            Some(None),
            "not a time: back off"
        );
        assert_eq!(rate_limit_in("API Error: 500 the mock is overloaded"), None);
        assert_eq!(rate_limit_in("API Error: 400 bad request"), None);
        assert_eq!(rate_limit_in("exited with code 1"), None);
    }
}
