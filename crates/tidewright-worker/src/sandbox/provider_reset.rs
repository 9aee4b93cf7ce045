//! When a provider's limit resets, as its answer said: the worker's model
//! proxy carries every request an agent makes, so it reads the answer the
//! agent's CLI reads and does not pass on. Anthropic says it in
//! `retry-after` and `anthropic-ratelimit-*-reset` (RFC 3339), OpenAI in
//! `retry-after(-ms)` and `x-ratelimit-reset-*` (`1s`, `6m0s`, `20ms`),
//! Google's Gemini API in the error body's `google.rpc.RetryInfo`
//! (`retryDelay: "3s"`). The latest of what an answer names decides (of
//! the limits it says are spent), so no agent calls before the provider
//! allows it.

use axum::http::HeaderMap;
use tidewright_core::Micros;

/// Statuses whose answer may say when to come back: rate limited (429),
/// overloaded (529, Anthropic's), unavailable (503).
pub const LIMIT_STATUSES: [u16; 3] = [429, 503, 529];

/// A reset a provider named.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderReset {
    /// When (microseconds since the epoch).
    pub at: Micros,
    /// What said so, as people read it: `retry-after: 3 s`.
    pub source: String,
}

/// The reset an answer with `headers` (and, when its body was read,
/// `body`) names, seen at `now`: the latest of what it says, so no agent
/// calls before any of its limits allows (on a tie, the first said here).
pub fn reset_of(headers: &HeaderMap, body: Option<&[u8]>, now: Micros) -> Option<ProviderReset> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let seconds = |name: &str| header(name).and_then(|v| v.trim().parse::<f64>().ok());
    let after = |seconds: f64, name: &str| {
        (seconds.is_finite() && seconds >= 0.0).then(|| {
            (
                now + (seconds * 1e6) as Micros,
                format!("{name}: {}", seconds_said(seconds)),
            )
        })
    };
    let candidates = [
        seconds("retry-after-ms").and_then(|ms| after(ms / 1e3, "retry-after-ms")),
        seconds("retry-after").and_then(|s| after(s, "retry-after")),
        latest_spent(
            headers,
            |name| {
                name.strip_prefix("anthropic-ratelimit-")?
                    .strip_suffix("-reset")
            },
            |kind| format!("anthropic-ratelimit-{kind}-remaining"),
            &tidewright_core::calendar::parse_rfc3339,
        ),
        // A subscription's window, in unix seconds, when it is spent.
        header("anthropic-ratelimit-unified-reset")
            .filter(|_| header("anthropic-ratelimit-unified-status") == Some("rejected"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|at| {
                (
                    at * 1_000_000,
                    format!("anthropic-ratelimit-unified-reset: {at}"),
                )
            }),
        latest_spent(
            headers,
            |name| name.strip_prefix("x-ratelimit-reset-"),
            |kind| format!("x-ratelimit-remaining-{kind}"),
            &|value| duration_said(value).map(|s| now + (s * 1e6) as Micros),
        ),
        body.and_then(retry_info)
            .and_then(|s| after(s, "RetryInfo retryDelay")),
    ];
    let mut latest: Option<(Micros, String)> = None;
    for (at, source) in candidates.into_iter().flatten() {
        if latest.as_ref().is_none_or(|(known, _)| at > *known) {
            latest = Some((at, source));
        }
    }
    latest.map(|(at, source)| ProviderReset { at, source })
}

/// The latest reset among a provider's limits (`kind_of` reads a limit's
/// kind from its reset header's name) that are spent: whose remaining
/// header says 0, or says nothing.
fn latest_spent(
    headers: &HeaderMap,
    kind_of: impl Fn(&str) -> Option<&str>,
    remaining: impl Fn(&str) -> String,
    parse: &dyn Fn(&str) -> Option<Micros>,
) -> Option<(Micros, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let kind = kind_of(name.as_str())?;
            let spent = headers
                .get(remaining(kind))
                .and_then(|v| v.to_str().ok())
                .is_none_or(|r| r.trim() == "0");
            let value = value.to_str().ok()?.trim();
            let at = parse(value).filter(|_| spent)?;
            Some((at, format!("{}: {value}", name.as_str())))
        })
        .max_by_key(|(at, _)| *at)
}

/// `3 s`, `1.5 s`.
fn seconds_said(seconds: f64) -> String {
    let rounded = (seconds * 1000.0).round() / 1000.0;
    format!("{rounded} s")
}

/// Go's and Google's durations: `3s`, `1.5s`, `20ms`, `6m0s`, `1h2m3.5s`.
fn duration_said(text: &str) -> Option<f64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        seconds += value
            * match unit {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                _ => return None,
            };
        rest = next;
    }
    Some(seconds)
}

/// The `retryDelay` of a Google API error's `RetryInfo` detail, in seconds.
fn retry_info(body: &[u8]) -> Option<f64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    // An error object, or a list of them (the streaming endpoint's).
    let errors: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    errors.iter().find_map(|e| {
        e.pointer("/error/details")?
            .as_array()?
            .iter()
            .find(|d| {
                d.get("@type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
            })?
            .get("retryDelay")?
            .as_str()
            .and_then(duration_said)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Micros = 1_800_000_000_000_000;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn the_latest_reset_named_decides_and_retry_after_first_on_a_tie() {
        let same = tidewright_core::calendar::rfc3339(NOW + 3_000_000);
        let said = reset_of(
            &headers(&[
                ("retry-after", "3"),
                ("anthropic-ratelimit-requests-reset", &same),
            ]),
            None,
            NOW,
        );
        assert_eq!(
            said,
            Some(ProviderReset {
                at: NOW + 3_000_000,
                source: "retry-after: 3 s".into()
            })
        );
        let later = tidewright_core::calendar::rfc3339(NOW + 7_000_000);
        let said = reset_of(
            &headers(&[
                ("retry-after", "3"),
                ("anthropic-ratelimit-tokens-reset", &later),
            ]),
            None,
            NOW,
        )
        .expect("a reset");
        assert_eq!(said.at, NOW + 7_000_000);
        assert_eq!(
            said.source,
            format!("anthropic-ratelimit-tokens-reset: {later}")
        );
        let said = reset_of(&headers(&[("retry-after-ms", "1500")]), None, NOW).expect("ms");
        assert_eq!(said.at, NOW + 1_500_000);
        assert_eq!(said.source, "retry-after-ms: 1.5 s");
        // A subscription's spent window, in unix seconds.
        let window = NOW / 1_000_000 + 60;
        let said = reset_of(
            &headers(&[
                ("anthropic-ratelimit-unified-status", "rejected"),
                ("anthropic-ratelimit-unified-reset", &window.to_string()),
            ]),
            None,
            NOW,
        )
        .expect("a window");
        assert_eq!(said.at, window * 1_000_000);
        assert_eq!(reset_of(&HeaderMap::new(), None, NOW), None);
    }

    #[test]
    fn anthropics_resets_are_read_for_the_limits_spent() {
        let at = tidewright_core::calendar::rfc3339(NOW + 3_000_000);
        let later = tidewright_core::calendar::rfc3339(NOW + 50_000_000);
        let said = reset_of(
            &headers(&[
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", &at),
                ("anthropic-ratelimit-tokens-remaining", "8000"),
                ("anthropic-ratelimit-tokens-reset", &later),
            ]),
            None,
            NOW,
        )
        .expect("a reset");
        assert_eq!(said.at, NOW + 3_000_000);
        assert_eq!(
            said.source,
            format!("anthropic-ratelimit-requests-reset: {at}")
        );
    }

    #[test]
    fn openais_durations_are_read_for_the_limits_spent() {
        let said = reset_of(
            &headers(&[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "3s"),
                ("x-ratelimit-remaining-tokens", "100"),
                ("x-ratelimit-reset-tokens", "6m0s"),
            ]),
            None,
            NOW,
        )
        .expect("a reset");
        assert_eq!(said.at, NOW + 3_000_000);
        assert_eq!(said.source, "x-ratelimit-reset-requests: 3s");
        assert_eq!(duration_said("1h2m3.5s"), Some(3723.5));
        assert_eq!(duration_said("20ms"), Some(0.02));
        assert_eq!(duration_said("soon"), None);
    }

    #[test]
    fn geminis_retry_info_is_read_from_the_error_body() {
        let body = br#"{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}"#;
        let said = reset_of(&HeaderMap::new(), Some(body), NOW).expect("a reset");
        assert_eq!(said.at, NOW + 3_000_000);
        assert_eq!(said.source, "RetryInfo retryDelay: 3 s");
        // The streaming endpoint answers with a list.
        let listed = format!("[{}]", String::from_utf8_lossy(body));
        assert!(reset_of(&HeaderMap::new(), Some(listed.as_bytes()), NOW).is_some());
        assert_eq!(reset_of(&HeaderMap::new(), Some(b"{}"), NOW), None);
    }
}
