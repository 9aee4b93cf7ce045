//! Schedules: a task (a task file's spec, or a template with its
//! parameters) submitted at each tick of a cron expression in a time zone.
//! This module holds what a schedule is, its checks (each refusal names its
//! field), the ticks of its cron, and what the control plane does with the
//! ticks due at a moment: fire them, or skip them and say why. Pure: the
//! store and the leader's loop are the server's.
//!
//! Cron expressions are read by `croner` (POSIX/Vixie fields, with an
//! optional seconds field in front, `L`, `W`, `#` and the `@daily` names),
//! and time zones by `chrono-tz` (the IANA database). Ticks are wall-clock
//! times: across a daylight-saving change, a time the clock skips fires at
//! the first moment after the change, and a time it repeats fires once, at
//! its first occurrence (an hourly schedule does not run the repeated hour
//! twice). Ticks only ever move forward.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{TimeZone, Timelike as _, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, invalid};
use crate::spec::TaskSpec;
use crate::state::Micros;

/// The longest schedule name: a DNS label, as the operator's resources'.
pub const MAX_NAME_BYTES: usize = 63;
/// How many of its last ticks a schedule keeps in its history.
pub const HISTORY: usize = 20;
/// How late a tick may still fire when the schedule sets no deadline: the
/// time a leader's handoff takes, with room to spare.
pub const DEFAULT_STARTING_DEADLINE_SECONDS: u32 = 60;
/// At most this many missed ticks are counted one by one; past it, a skip
/// says only that there were more.
const MAX_TICKS_AT_ONCE: usize = 1000;

/// A schedule as it is created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Its name, unique in its tenant: lowercase letters, digits and `-`.
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), six
    /// with seconds first, seven with a year last; or a name such as
    /// `@daily`.
    pub cron: String,
    /// An IANA time zone (`Europe/Rome`); `UTC` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timezone: String,
    /// The task each tick submits: a spec, or a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRun>,
    /// What a tick does while the task of an earlier one still runs.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// How late a tick may fire; later, it is missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u32>,
    /// What becomes of missed ticks (the control plane was down, or the
    /// schedule was suspended).
    #[serde(default)]
    pub missed: MissedTicks,
    /// No tick fires while suspended; resuming does not fire those it
    /// passed over.
    #[serde(default)]
    pub suspended: bool,
}

/// A template and the parameters each tick fills it with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRun {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
}

/// What a tick does while the task of an earlier tick is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ConcurrencyPolicy {
    /// Fires anyway: the runs overlap.
    #[default]
    Allow,
    /// Skips the tick.
    Forbid,
    /// Cancels the running task, then fires.
    Replace,
}

impl ConcurrencyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyPolicy::Allow => "Allow",
            ConcurrencyPolicy::Forbid => "Forbid",
            ConcurrencyPolicy::Replace => "Replace",
        }
    }
}

impl FromStr for ConcurrencyPolicy {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "" | "Allow" => Ok(ConcurrencyPolicy::Allow),
            "Forbid" => Ok(ConcurrencyPolicy::Forbid),
            "Replace" => Ok(ConcurrencyPolicy::Replace),
            other => Err(format!("{other:?} is not one of Allow, Forbid, Replace")),
        }
    }
}

/// What becomes of ticks missed past their deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum MissedTicks {
    /// Each is skipped, and said so in the history.
    #[default]
    Skip,
    /// The newest fires once when the control plane is back; the rest are
    /// skipped.
    RunOnce,
}

impl MissedTicks {
    pub fn as_str(self) -> &'static str {
        match self {
            MissedTicks::Skip => "skip",
            MissedTicks::RunOnce => "runOnce",
        }
    }
}

impl FromStr for MissedTicks {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "" | "skip" => Ok(MissedTicks::Skip),
            "runOnce" => Ok(MissedTicks::RunOnce),
            other => Err(format!("{other:?} is not one of skip, runOnce")),
        }
    }
}

/// The time zone names `Ticks::new` reads, besides the empty one (UTC):
/// the OpenAPI document lists them.
pub fn time_zones() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|zone| zone.name())
}

/// A cron expression in its time zone, ready to give ticks.
#[derive(Debug, Clone)]
pub struct Ticks {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Ticks {
    /// Reads `cron` in `timezone` (`UTC` when empty); the error names the
    /// field at fault (`cron` or `timezone`) and says why.
    pub fn new(cron: &str, timezone: &str) -> Result<Ticks, (&'static str, String)> {
        let zone = match timezone {
            "" => chrono_tz::UTC,
            name => name.parse::<chrono_tz::Tz>().map_err(|_| {
                (
                    "timezone",
                    format!("{name:?} is not an IANA time zone (such as Europe/Rome or UTC)"),
                )
            })?,
        };
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| ("cron", format!("{cron:?} does not parse: {e}")))?;
        Ok(Ticks { cron: parsed, zone })
    }

    /// The first tick strictly after `after`; `None` when there is none
    /// before the year 5000.
    pub fn next_after(&self, after: Micros) -> Option<Micros> {
        self.step(after, Direction::Forward, false)
    }

    /// Walks the wall clock from the instant `from` to the next (or, going
    /// back, the previous) local time the cron matches, and gives the
    /// instant it is at: its first when the clock repeats it, the end of
    /// the gap when the clock skips it. The pattern is matched on local
    /// times as if they were UTC (no daylight saving there), and the zone
    /// maps them to instants: `croner` alone loses ticks and repeats some
    /// across a fall-back.
    fn step(&self, from: Micros, direction: Direction, inclusive: bool) -> Option<Micros> {
        let start = Utc.timestamp_micros(from).single()?;
        // Ticks are whole seconds: the search starts at the second `from`
        // is in, that second included, and what is not beyond `from` is
        // passed over below.
        let mut wall = start
            .with_timezone(&self.zone)
            .naive_local()
            .with_nanosecond(0)?
            .and_utc();
        let mut include = true;
        loop {
            let found = match direction {
                Direction::Forward => self.cron.find_next_occurrence(&wall, include),
                Direction::Backward => self.cron.find_previous_occurrence(&wall, include),
            }
            .ok()?;
            include = false;
            let instant = self.instant_of(found.naive_utc())?;
            let beyond = match direction {
                Direction::Forward => instant > from || (inclusive && instant == from),
                Direction::Backward => instant < from || (inclusive && instant == from),
            };
            if beyond {
                return Some(instant);
            }
            wall = found;
        }
    }

    /// The instant a local time is at: its first when the clock repeats
    /// it; the first instant after the gap when the clock skips it.
    fn instant_of(&self, local: chrono::NaiveDateTime) -> Option<Micros> {
        use chrono::offset::LocalResult;
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.timestamp_micros()),
            LocalResult::Ambiguous(first, _) => Some(first.timestamp_micros()),
            LocalResult::None => {
                // A gap is at most a few hours: the first minute after it.
                let mut later = local;
                for _ in 0..(24 * 60) {
                    later = later.checked_add_signed(chrono::Duration::minutes(1))?;
                    let later = later.with_second(0)?.with_nanosecond(0)?;
                    if let Some(t) = self.zone.from_local_datetime(&later).earliest() {
                        return Some(t.timestamp_micros());
                    }
                }
                None
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

/// Checks a schedule as it is created: its name, its cron (which must
/// parse, and fire at least once after `now`), its time zone, its deadline
/// and the task it submits (one of a task or a template; a task as any
/// submitted task is checked, with `limits`). Each refusal names its field.
pub fn validate(
    spec: &ScheduleSpec,
    now: Micros,
    limits: &crate::validate::Limits,
) -> Result<Ticks, Error> {
    validate_name(&spec.name)?;
    let ticks = Ticks::new(&spec.cron, &spec.timezone)
        .map_err(|(field, message)| invalid(field, message))?;
    if ticks.next_after(now).is_none() {
        return Err(invalid("cron", format!("{:?} never fires", spec.cron)));
    }
    if spec.starting_deadline_seconds == Some(0) {
        return Err(invalid(
            "startingDeadlineSeconds",
            "must be at least 1 (a tick cannot fire before it is due)",
        ));
    }
    match (&spec.task, &spec.template) {
        (Some(task), None) => crate::validate::validate(task, limits).map_err(|e| match e {
            Error::Invalid { field, message } => Error::Invalid {
                field: format!("task.{field}"),
                message,
            },
            other => other,
        }),
        (None, Some(template)) if template.name.trim().is_empty() => {
            Err(invalid("template.name", "names the template to run"))
        }
        (None, Some(_)) => Ok(()),
        (Some(_), Some(_)) => Err(invalid("task", "give a task or a template, not both")),
        (None, None) => Err(invalid("task", "give the task to submit, or a template")),
    }?;
    Ok(ticks)
}

/// A schedule's name: 1 to 63 lowercase letters, digits and `-`, starting
/// with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "{name:?} must be 1 to {MAX_NAME_BYTES} lowercase letters, digits or '-', not starting with '-'"
            ),
        ))
    }
}

/// What is done with one tick, or a run of skipped ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Submit the task for the tick at this time.
    Fire(Micros),
    /// Skip the ticks from `first` to `last`, `ticks` of them (`None`:
    /// more than could be counted), for `reason`.
    Skip {
        first: Micros,
        last: Micros,
        ticks: Option<usize>,
        reason: String,
    },
}

/// What to do at `now` with the ticks of `ticks` after `handled` (the
/// last tick fired or skipped), for a schedule whose deadline is
/// `deadline_seconds` and whose missed ticks go as `missed`. A tick is on
/// time while no more than the deadline has passed since it; later it is
/// missed. On-time ticks fire; missed ones are skipped, in one record, but
/// with [`MissedTicks::RunOnce`] the newest of them fires when no tick is
/// on time. Decisions are in tick order, so the caller records them so.
pub fn due(
    ticks: &Ticks,
    handled: Micros,
    now: Micros,
    deadline_seconds: Option<u32>,
    missed: MissedTicks,
) -> Vec<Decision> {
    let deadline_s = deadline_seconds.unwrap_or(DEFAULT_STARTING_DEADLINE_SECONDS);
    let cutoff = now - i64::from(deadline_s) * 1_000_000;
    let mut decisions = Vec::new();
    // The missed ticks: after `handled`, no later than the cutoff.
    let first_missed = ticks.next_after(handled).filter(|t| *t <= cutoff);
    let mut on_time_from = handled;
    if let Some(first) = first_missed {
        let newest = ticks.last_at_or_before(cutoff).unwrap_or(first);
        on_time_from = newest;
        let count = ticks.count_between(handled, newest, MAX_TICKS_AT_ONCE);
        let fire_one =
            missed == MissedTicks::RunOnce && ticks.next_after(cutoff).is_none_or(|t| t > now);
        let reason = format!("missed: more than {deadline_s}s late (its startingDeadlineSeconds)");
        if !fire_one {
            decisions.push(Decision::Skip {
                first,
                last: newest,
                ticks: count,
                reason,
            });
        } else {
            if newest != first {
                decisions.push(Decision::Skip {
                    first,
                    last: ticks.last_before(newest).unwrap_or(first),
                    ticks: count.map(|n| n - 1),
                    reason,
                });
            }
            decisions.push(Decision::Fire(newest));
        }
    }
    let mut at = on_time_from;
    while let Some(tick) = ticks.next_after(at).filter(|t| *t <= now) {
        decisions.push(Decision::Fire(tick));
        at = tick;
    }
    decisions
}

impl Ticks {
    /// The last tick at or before `at`.
    fn last_at_or_before(&self, at: Micros) -> Option<Micros> {
        self.step(at, Direction::Backward, true)
    }

    /// The last tick strictly before `at`.
    fn last_before(&self, at: Micros) -> Option<Micros> {
        self.step(at, Direction::Backward, false)
    }

    /// How many ticks are after `after` and at or before `until`; `None`
    /// past `cap`.
    fn count_between(&self, after: Micros, until: Micros, cap: usize) -> Option<usize> {
        let mut count = 0;
        let mut at = after;
        while let Some(tick) = self.next_after(at).filter(|t| *t <= until) {
            count += 1;
            if count > cap {
                return None;
            }
            at = tick;
        }
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microseconds of a wall-clock time in `zone`, the earliest when it
    /// repeats.
    fn at(zone: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Micros {
        let zone: chrono_tz::Tz = zone.parse().expect("a zone");
        zone.with_ymd_and_hms(y, mo, d, h, mi, s)
            .earliest()
            .expect("a time that exists")
            .timestamp_micros()
    }

    fn ticks_from(ticks: &Ticks, from: Micros, n: usize) -> Vec<Micros> {
        let mut out = Vec::new();
        let mut t = from;
        for _ in 0..n {
            t = ticks.next_after(t).expect("a tick");
            out.push(t);
        }
        out
    }

    #[test]
    fn weekday_mornings_in_rome_fire_at_rome_time_in_winter_and_summer() {
        let ticks = Ticks::new("0 3 * * 1-5", "Europe/Rome").expect("valid");
        // Friday 2026-01-09, then Monday 2026-01-12: the weekend is skipped.
        let winter = ticks_from(&ticks, at("Europe/Rome", 2026, 1, 9, 0, 0, 0), 2);
        assert_eq!(
            winter,
            [
                at("Europe/Rome", 2026, 1, 9, 3, 0, 0),
                at("Europe/Rome", 2026, 1, 12, 3, 0, 0)
            ]
        );
        // 03:00 in Rome is 02:00 UTC in winter, 01:00 UTC in summer.
        assert_eq!(winter[0], at("UTC", 2026, 1, 9, 2, 0, 0));
        let summer = ticks
            .next_after(at("UTC", 2026, 7, 1, 0, 0, 0))
            .expect("a tick");
        assert_eq!(summer, at("UTC", 2026, 7, 1, 1, 0, 0));
    }

    #[test]
    fn a_time_the_clock_skips_fires_after_the_change_and_one_it_repeats_fires_once() {
        // Rome springs forward on 2026-03-29 at 02:00 (to 03:00): 02:30
        // does not exist that night, and fires at 03:00 CEST.
        let ticks = Ticks::new("30 2 * * *", "Europe/Rome").expect("valid");
        let spring = ticks_from(&ticks, at("Europe/Rome", 2026, 3, 28, 12, 0, 0), 2);
        assert_eq!(spring[0], at("Europe/Rome", 2026, 3, 29, 3, 0, 0));
        assert_eq!(spring[1], at("Europe/Rome", 2026, 3, 30, 2, 30, 0));
        // It falls back on 2026-10-25 at 03:00 (to 02:00): 02:30 happens
        // twice, and fires the first time only.
        let autumn = ticks_from(&ticks, at("Europe/Rome", 2026, 10, 24, 12, 0, 0), 2);
        assert_eq!(autumn[0], at("UTC", 2026, 10, 25, 0, 30, 0));
        assert_eq!(autumn[1], at("Europe/Rome", 2026, 10, 26, 2, 30, 0));
        // Every wall-clock time once: an hourly schedule fires at 02:00
        // CEST, not again at 02:00 CET an hour later, then at 03:00 CET;
        // every 20 minutes goes through the first pass of the hour only.
        let hourly = Ticks::new("0 * * * *", "Europe/Rome").expect("valid");
        let night = ticks_from(&hourly, at("Europe/Rome", 2026, 10, 25, 1, 30, 0), 3);
        assert_eq!(
            night,
            [
                at("UTC", 2026, 10, 25, 0, 0, 0),
                at("UTC", 2026, 10, 25, 2, 0, 0),
                at("UTC", 2026, 10, 25, 3, 0, 0)
            ]
        );
        let thrice = Ticks::new("*/20 * * * *", "Europe/Rome").expect("valid");
        let fold = ticks_from(&thrice, at("Europe/Rome", 2026, 10, 25, 1, 50, 0), 5);
        assert_eq!(
            fold,
            [
                at("UTC", 2026, 10, 25, 0, 0, 0),
                at("UTC", 2026, 10, 25, 0, 20, 0),
                at("UTC", 2026, 10, 25, 0, 40, 0),
                at("UTC", 2026, 10, 25, 2, 0, 0),
                at("UTC", 2026, 10, 25, 2, 20, 0)
            ]
        );
        // Each tick comes after the one before, even from inside the
        // repeated hour's second pass.
        let second_pass = at("UTC", 2026, 10, 25, 1, 10, 0);
        assert_eq!(
            thrice.next_after(second_pass),
            Some(at("UTC", 2026, 10, 25, 2, 0, 0))
        );
        // Spring: every 20 minutes skips the hour that is not there.
        let spring = ticks_from(&thrice, at("Europe/Rome", 2026, 3, 29, 1, 30, 0), 3);
        assert_eq!(
            spring,
            [
                at("Europe/Rome", 2026, 3, 29, 1, 40, 0),
                at("Europe/Rome", 2026, 3, 29, 3, 0, 0),
                at("Europe/Rome", 2026, 3, 29, 3, 20, 0)
            ]
        );
    }

    #[test]
    fn seconds_are_optional_and_names_read() {
        let every_second = Ticks::new("* * * * * *", "").expect("six fields");
        let t = at("UTC", 2026, 1, 1, 0, 0, 0);
        assert_eq!(every_second.next_after(t), Some(t + 1_000_000));
        // From within a second, the next whole one.
        assert_eq!(every_second.next_after(t + 630_803), Some(t + 1_000_000));
        assert_eq!(every_second.last_at_or_before(t + 630_803), Some(t));
        assert_eq!(every_second.last_before(t + 630_803), Some(t));
        assert_eq!(every_second.last_before(t), Some(t - 1_000_000));
        let daily = Ticks::new("@daily", "UTC").expect("a name");
        assert_eq!(daily.next_after(t), Some(at("UTC", 2026, 1, 2, 0, 0, 0)));
    }

    #[test]
    fn a_bad_schedule_is_refused_naming_its_field() {
        let task = TaskSpec {
            steps: vec![crate::spec::StepSpec {
                id: "a".into(),
                noop: Some(crate::spec::NoopSpec::default()),
                ..crate::spec::StepSpec::default()
            }],
            ..TaskSpec::default()
        };
        let good = ScheduleSpec {
            name: "nightly".into(),
            cron: "0 3 * * 1-5".into(),
            timezone: "Europe/Rome".into(),
            task: Some(task.clone()),
            ..ScheduleSpec::default()
        };
        let now = at("UTC", 2026, 11, 26, 0, 0, 0);
        let limits = crate::validate::Limits::default();
        assert!(validate(&good, now, &limits).is_ok());
        let field_of = |spec: ScheduleSpec| match validate(&spec, now, &limits) {
            Err(Error::Invalid { field, message }) => (field, message),
            other => panic!("not refused: {other:?}"),
        };
        for (spec, field, says) in [
            (
                ScheduleSpec {
                    cron: "0 3 * *".into(),
                    ..good.clone()
                },
                "cron",
                "does not parse",
            ),
            (
                ScheduleSpec {
                    cron: "61 * * * *".into(),
                    ..good.clone()
                },
                "cron",
                "does not parse",
            ),
            (
                ScheduleSpec {
                    cron: "0 0 30 2 *".into(),
                    ..good.clone()
                },
                "cron",
                "never fires",
            ),
            (
                ScheduleSpec {
                    timezone: "Mars/Olympus".into(),
                    ..good.clone()
                },
                "timezone",
                "not an IANA time zone",
            ),
            (
                ScheduleSpec {
                    name: "Nightly Run".into(),
                    ..good.clone()
                },
                "name",
                "lowercase",
            ),
            (
                ScheduleSpec {
                    starting_deadline_seconds: Some(0),
                    ..good.clone()
                },
                "startingDeadlineSeconds",
                "at least 1",
            ),
            (
                ScheduleSpec {
                    task: None,
                    ..good.clone()
                },
                "task",
                "give the task",
            ),
            (
                ScheduleSpec {
                    template: Some(TemplateRun {
                        name: "t".into(),
                        ..TemplateRun::default()
                    }),
                    ..good.clone()
                },
                "task",
                "not both",
            ),
            (
                ScheduleSpec {
                    task: Some(TaskSpec {
                        steps: Vec::new(),
                        ..task.clone()
                    }),
                    ..good.clone()
                },
                "task.steps",
                "",
            ),
        ] {
            let (got, message) = field_of(spec);
            assert_eq!(got, field, "{message}");
            assert!(message.contains(says), "{field}: {message}");
        }
    }

    #[test]
    fn on_time_ticks_fire_and_missed_ones_are_skipped_or_one_runs_on_catch_up() {
        let minutely = Ticks::new("* * * * *", "UTC").expect("valid");
        let t0 = at("UTC", 2026, 1, 1, 0, 0, 0);
        let minute = 60_000_000;
        // Nothing due before the next tick.
        assert_eq!(
            due(&minutely, t0, t0 + 30_000_000, None, MissedTicks::Skip),
            []
        );
        // A tick 10 s ago is on time.
        assert_eq!(
            due(
                &minutely,
                t0,
                t0 + minute + 10_000_000,
                None,
                MissedTicks::Skip
            ),
            [Decision::Fire(t0 + minute)]
        );
        // Down for an hour: 59 ticks are missed and one (the last, 10 s
        // ago) is on time. Missed ones are skipped in one record, whatever
        // the policy, since a tick is on time.
        let now = t0 + 60 * minute + 10_000_000;
        let skip = Decision::Skip {
            first: t0 + minute,
            last: t0 + 59 * minute,
            ticks: Some(59),
            reason: "missed: more than 60s late (its startingDeadlineSeconds)".into(),
        };
        for policy in [MissedTicks::Skip, MissedTicks::RunOnce] {
            assert_eq!(
                due(&minutely, t0, now, None, policy),
                [skip.clone(), Decision::Fire(t0 + 60 * minute)]
            );
        }
        // A daily schedule down across its tick: skipped, or run once now.
        let daily = Ticks::new("0 3 * * *", "UTC").expect("valid");
        let after = at("UTC", 2026, 1, 3, 12, 0, 0);
        let handled = at("UTC", 2025, 12, 31, 3, 0, 0);
        assert_eq!(
            due(&daily, handled, after, Some(300), MissedTicks::Skip),
            [Decision::Skip {
                first: at("UTC", 2026, 1, 1, 3, 0, 0),
                last: at("UTC", 2026, 1, 3, 3, 0, 0),
                ticks: Some(3),
                reason: "missed: more than 300s late (its startingDeadlineSeconds)".into(),
            }]
        );
        assert_eq!(
            due(&daily, handled, after, Some(300), MissedTicks::RunOnce),
            [
                Decision::Skip {
                    first: at("UTC", 2026, 1, 1, 3, 0, 0),
                    last: at("UTC", 2026, 1, 2, 3, 0, 0),
                    ticks: Some(2),
                    reason: "missed: more than 300s late (its startingDeadlineSeconds)".into(),
                },
                Decision::Fire(at("UTC", 2026, 1, 3, 3, 0, 0)),
            ]
        );
        // One missed tick under runOnce fires, with nothing skipped.
        assert_eq!(
            due(
                &daily,
                at("UTC", 2026, 1, 2, 3, 0, 0),
                after,
                Some(300),
                MissedTicks::RunOnce
            ),
            [Decision::Fire(at("UTC", 2026, 1, 3, 3, 0, 0))]
        );
    }

    #[test]
    fn a_day_of_missed_seconds_is_one_skip_past_counting() {
        let every_second = Ticks::new("* * * * * *", "UTC").expect("valid");
        let t0 = at("UTC", 2026, 1, 1, 0, 0, 0);
        let now = t0 + 86_400 * 1_000_000;
        let decisions = due(&every_second, t0, now, Some(1), MissedTicks::Skip);
        assert_eq!(
            decisions,
            [
                Decision::Skip {
                    first: t0 + 1_000_000,
                    last: now - 1_000_000,
                    ticks: None,
                    reason: "missed: more than 1s late (its startingDeadlineSeconds)".into(),
                },
                Decision::Fire(now)
            ]
        );
        // An hour's worth is counted.
        let hour = due(
            &every_second,
            now - 3_600 * 1_000_000 - 1,
            now,
            Some(1),
            MissedTicks::Skip,
        );
        assert!(
            matches!(hour.first(), Some(Decision::Skip { ticks: None, .. })),
            "3,600 is past the cap of {MAX_TICKS_AT_ONCE}: {:?}",
            hour.first()
        );
    }
}
