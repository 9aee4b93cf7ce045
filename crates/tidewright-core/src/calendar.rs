//! Civil dates of the proleptic Gregorian calendar, from and to days since
//! 1970-01-01: what UTC days and months (budget windows) and RFC 3339
//! times are computed with, without a date library.

use crate::state::Micros;

/// Microseconds in a UTC day.
pub const MICROS_PER_DAY: Micros = 86_400 * 1_000_000;

/// (year, month 1..=12, day 1..=31) of a count of days since 1970-01-01,
/// in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date; the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 time (`2026-11-24T17:00:00Z`, `2026-11-24T18:00:00.25+01:00`)
/// in microseconds since the epoch; `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<Micros> {
    let text = text.trim();
    let number = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year = number(date_parts.next()?)?;
    let month = u32::try_from(number(date_parts.next()?)?).ok()?;
    let day = u32::try_from(number(date_parts.next()?)?).ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // The offset: `Z`, or `+hh:mm` / `-hh:mm`.
    let (clock, offset) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':')?;
        (
            clock,
            sign * (number(hours)? * 3600 + number(minutes)? * 60),
        )
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = whole.splitn(3, ':');
    let hour = number(clock_parts.next()?)?;
    let minute = number(clock_parts.next()?)?;
    let second = number(clock_parts.next()?)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let micros = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        number(&digits)?
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds * 1_000_000 + micros)
}

/// The wall clock in microseconds since the Unix epoch.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

/// A time as RFC 3339 in UTC (`2026-11-24T17:00:00Z`, with a fraction of a
/// second only when it has one: milliseconds, else microseconds), for
/// messages. It reads as a protobuf `Timestamp` prints, so a time says the
/// same in an error as on the wire.
pub fn rfc3339(at: Micros) -> String {
    let (days, in_day) = (at.div_euclid(MICROS_PER_DAY), at.rem_euclid(MICROS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1_000_000;
    let fraction = in_day % 1_000_000;
    let year = if year > 9999 {
        format!("+{year}")
    } else if year < 0 {
        format!("{year:05}")
    } else {
        format!("{year:04}")
    };
    let fraction = if fraction == 0 {
        String::new()
    } else if fraction % 1000 == 0 {
        format!(".{:03}", fraction / 1000)
    } else {
        format!(".{fraction:06}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rfc3339_time_reads_back_as_it_was_written_and_offsets_count() {
        for at in [
            0,
            1_800_000_000_000_000,
            1_800_000_000_250_000,
            1_800_000_000_000_007,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(at)), Some(at), "{}", rfc3339(at));
        }
        assert_eq!(
            parse_rfc3339("1970-01-01T01:00:00+01:00"),
            Some(0),
            "an hour ahead of UTC"
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01.5-00:00"),
            Some(1_500_000)
        );
        for bad in [
            "",
            "soon",
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "2026-01-01T25:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
