//! Provider limits in what an agent reports: a run stopped by the API's
//! rate limit or an account's usage window is not the step's failure. The
//! control plane pauses the pool's agents until the limit resets and runs
//! the step again without counting the attempt, so this module only has to
//! tell such an end apart, read its reset time when it carries one, and say
//! which report decided.
//!
//! The Claude Code CLI's structured fields decide first: a `rate_limit_event`
//! whose status is `rejected` (subscription accounts; it names the reset),
//! then the result line's `api_error_status`. Its message text changes
//! between releases (`API Error: 429 ...` became `API Error: Request
//! rejected (429) · ...`), so the text is read only when the result has no
//! `api_error_status`: the fallback for CLIs older than 2.1.

use tidewright_api::view::format_utc;
use tidewright_core::Micros;

use super::stream::{LimitEvent, RunResult};
use crate::runtime::attempt::Limit;

/// HTTP statuses that are the provider's limit, not the request's fault:
/// 429 (rate limited) and 529 (overloaded). Other 5xx are the API's own
/// failures: the attempt fails, and the step's retry policy runs it again.
const LIMIT_STATUSES: [u16; 2] = [429, 529];

/// Whether a run that failed with `error` ended on a provider limit, from
/// what the CLI reported: the `rate_limit_event` it sent (if any), its
/// `result` line (if any), and the attempt's error text.
pub fn classify(
    event: Option<&LimitEvent>,
    result: Option<&RunResult>,
    error: &str,
) -> Option<Limit> {
    if let Some(event) = event {
        let mut signal = "rate_limit_event".to_string();
        match event.resets_at {
            Some(at) => signal.push_str(&format!(" resetsAt={}", format_utc(at))),
            None => signal.push_str(" without resetsAt"),
        }
        if !event.limit_type.is_empty() {
            signal.push_str(&format!(" rateLimitType={}", event.limit_type));
        }
        return Some(Limit {
            reset: event.resets_at,
            signal,
        });
    }
    if let Some(status) = result.and_then(|r| r.api_error_status) {
        if !LIMIT_STATUSES.contains(&status) {
            return None;
        }
        // A subscription's usage message may still name its reset.
        let reset = reset_in(&error.to_ascii_lowercase());
        let mut signal = format!("api_error_status {status}");
        if reset.is_some() {
            signal.push_str(", reset from the usage limit message");
        }
        return Some(Limit { reset, signal });
    }
    text_fallback(error)
}

/// For CLIs older than 2.1, whose result line has no `api_error_status`:
/// the limit is read from the message. Recognised: HTTP 429 and 529 as the
/// CLI worded them (`API Error: 429 ...`), the API's `rate_limit_error` and
/// `overloaded_error` types, and the usage-limit message of subscription
/// accounts, which ends in `|<unix seconds>` of its reset
/// (`Claude AI usage limit reached|1767225600`).
fn text_fallback(error: &str) -> Option<Limit> {
    let lower = error.to_ascii_lowercase();
    if lower.contains("usage limit reached") {
        return Some(Limit {
            reset: reset_in(&lower),
            signal: "usage limit message".into(),
        });
    }
    let mark = [
        "api error: 429",
        "api error: 529",
        "rate_limit_error",
        "overloaded_error",
    ]
    .into_iter()
    .find(|mark| lower.contains(mark))?;
    Some(Limit {
        reset: None,
        signal: format!("error text \"{mark}\" (a CLI without api_error_status)"),
    })
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
    use crate::runtime::claude::stream::{Line, parse_line};

    /// The pinned CLI's stream for each way a run can end on an API error,
    /// recorded by `tests/tests/agent_fixtures.rs` against the mock API
    /// (`TIDEWRIGHT_RECORD_FIXTURES=1`); never written by hand.
    fn fixture(name: &str) -> (Option<LimitEvent>, Option<RunResult>) {
        let path = format!(
            "{}/tests/fixtures/claude/{name}.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (mut event, mut result) = (None, None);
        for line in text.lines() {
            match parse_line(line) {
                Ok(Line::RateLimited(e)) => event = Some(e),
                Ok(Line::Result(r)) => result = Some(*r),
                _ => {}
            }
        }
        (event, result)
    }

    fn classify_fixture(name: &str) -> (Option<Limit>, RunResult) {
        let (event, result) = fixture(name);
        let result = result.unwrap_or_else(|| panic!("{name}: a result line"));
        let error = result.failure(None).unwrap_or_default();
        (classify(event.as_ref(), Some(&result), &error), result)
    }

    #[test]
    fn the_pinned_clis_429_and_529_are_limits_by_their_status() {
        for status in [429, 529] {
            let (limit, result) = classify_fixture(&format!("api-{status}"));
            assert_eq!(result.api_error_status, Some(status));
            assert_eq!(
                limit,
                Some(Limit {
                    reset: None,
                    signal: format!("api_error_status {status}"),
                })
            );
        }
        // This CLI words a 429 as `Request rejected (429)`: the text alone
        // would fail the step (its 529 still reads `API Error: 529`).
        let (_, result) = classify_fixture("api-429");
        assert_eq!(text_fallback(&result.result), None, "{}", result.result);
    }

    #[test]
    fn the_pinned_clis_500_and_400_are_failures_not_limits() {
        for status in [500, 400] {
            let (limit, result) = classify_fixture(&format!("api-{status}"));
            assert_eq!(result.api_error_status, Some(status));
            assert!(result.is_error);
            assert_eq!(limit, None, "{status}");
        }
    }

    #[test]
    fn a_usage_limit_message_with_its_status_names_the_reset() {
        let (limit, result) = classify_fixture("usage-limit-message");
        let reset = reset_in(&result.result.to_ascii_lowercase()).expect("a reset in the text");
        assert_eq!(
            limit,
            Some(Limit {
                reset: Some(reset),
                signal: "api_error_status 429, reset from the usage limit message".into(),
            })
        );
    }

    #[test]
    fn a_subscriptions_rate_limit_event_decides_with_its_reset() {
        let (event, result) = fixture("subscription-limit");
        let event = event.expect("a rejected rate_limit_event");
        let result = result.expect("a result line");
        assert_eq!(result.api_error_status, Some(429));
        assert_eq!(result.api_error, "usage_limit_reached");
        let limit = classify(Some(&event), Some(&result), &result.result).expect("a limit");
        let reset = event.resets_at.expect("resetsAt");
        assert_eq!(limit.reset, Some(reset));
        assert_eq!(
            limit.signal,
            format!(
                "rate_limit_event resetsAt={} rateLimitType=five_hour",
                format_utc(reset)
            )
        );
    }

    #[test]
    fn older_clis_are_read_from_their_text() {
        let limit = |error: &str| classify(None, None, error);
        let older = RunResult {
            is_error: true,
            result: "API Error: 429 rate limited".into(),
            ..RunResult::default()
        };
        assert_eq!(
            classify(None, Some(&older), &older.result).map(|l| l.signal),
            Some("error text \"api error: 429\" (a CLI without api_error_status)".into())
        );
        assert_eq!(
            limit(r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#)
                .map(|l| l.reset),
            Some(None)
        );
        assert!(limit("API Error: 529 overloaded").is_some());
        assert_eq!(
            limit("Claude AI usage limit reached|1767225600"),
            Some(Limit {
                reset: Some(1_767_225_600_000_000),
                signal: "usage limit message".into()
            })
        );
        assert_eq!(
            limit("usage limit reached|12").map(|l| l.reset),
            Some(None),
            "not a time: back off"
        );
        assert_eq!(limit("API Error: 500 the mock is overloaded"), None);
        assert_eq!(limit("API Error: 400 bad request"), None);
        assert_eq!(limit("exited with code 1"), None);
    }

    #[test]
    fn a_status_outside_the_limits_is_not_read_from_the_text() {
        // The structured field wins over words that look like a limit.
        let result = RunResult {
            is_error: true,
            api_error_status: Some(400),
            result: "API Error: 400 rate_limit_error mentioned in a prompt".into(),
            ..RunResult::default()
        };
        assert_eq!(classify(None, Some(&result), &result.result), None);
    }
}
