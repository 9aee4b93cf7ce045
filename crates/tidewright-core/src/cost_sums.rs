//! Cost over time: what attempts cost, summed by day (UTC), tenant,
//! repository, runtime, model and template, kept [`KEPT_DAYS`] days
//! whatever the tasks' own retention. The engine adds each attempt's cost
//! in the commit that records the attempt, so the sums are the attempts'
//! costs exactly, across restarts and failovers. A report groups the sums
//! by the dimensions asked for.

use serde::{Deserialize, Serialize};

use crate::calendar::{MICROS_PER_DAY, civil_from_days, days_from_civil};
use crate::error::{Error, invalid};
use crate::{Cost, Micros};

/// How long the sums are kept, and the longest a report may look back.
pub const KEPT_DAYS: i64 = 400;

/// What one sum is of: a day and who and what spent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CostKey {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub tenant: String,
    /// The task's repository URL, without `.git`; empty for none.
    pub repo: String,
    /// The step's runtime: `claude-code`, `codex`, `shell`, ...
    pub runtime: String,
    /// The model the agent ran on; empty for none.
    pub model: String,
    /// The template the task was made from; empty for none.
    pub template: String,
}

/// One key's sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostSum {
    pub key: CostKey,
    pub cost: Cost,
    /// The attempts it adds up.
    pub attempts: u64,
}

/// A dimension a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostBy {
    Day,
    Tenant,
    Repo,
    Runtime,
    Model,
    Template,
}

impl CostBy {
    pub const ALL: [CostBy; 6] = [
        CostBy::Day,
        CostBy::Tenant,
        CostBy::Repo,
        CostBy::Runtime,
        CostBy::Model,
        CostBy::Template,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CostBy::Day => "day",
            CostBy::Tenant => "tenant",
            CostBy::Repo => "repo",
            CostBy::Runtime => "runtime",
            CostBy::Model => "model",
            CostBy::Template => "template",
        }
    }

    fn of(self, key: &CostKey) -> &str {
        match self {
            CostBy::Day => &key.day,
            CostBy::Tenant => &key.tenant,
            CostBy::Repo => &key.repo,
            CostBy::Runtime => &key.runtime,
            CostBy::Model => &key.model,
            CostBy::Template => &key.template,
        }
    }
}

/// Each a dimension's name exactly, none twice; none for one total. (The
/// CLI splits `repo,runtime`; the API takes each on its own, as its
/// document says.)
pub fn parse_by(list: &[String]) -> Result<Vec<CostBy>, Error> {
    let mut by = Vec::new();
    for name in list {
        let Some(found) = CostBy::ALL.into_iter().find(|b| b.as_str() == name) else {
            let known: Vec<&str> = CostBy::ALL.iter().map(|b| b.as_str()).collect();
            return Err(invalid(
                "by",
                format!("{name:?} is not one of {}", known.join(", ")),
            ));
        };
        if by.contains(&found) {
            return Err(invalid("by", format!("{name} is named twice")));
        }
        by.push(found);
    }
    Ok(by)
}

/// The day `at` falls on, UTC: `YYYY-MM-DD`.
pub fn day_of(at: Micros) -> String {
    day_text(at.div_euclid(MICROS_PER_DAY))
}

fn day_text(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The first day a report covers: `since` as `30d` (the last 30 days,
/// today one of them), 1 to [`KEPT_DAYS`]; empty for the current month.
/// (No date: whether one is within the window depends on the day, which
/// the API's document cannot say.)
pub fn since_day(since: &str, now: Micros) -> Result<String, Error> {
    let today = now.div_euclid(MICROS_PER_DAY);
    if since.is_empty() {
        let (year, month, _) = civil_from_days(today);
        return Ok(day_text(days_from_civil(year, month, 1)));
    }
    let not_days = || {
        invalid(
            "since",
            format!("{since:?} is not a number of days (30d), from 1d to {KEPT_DAYS}d"),
        )
    };
    let days = since.strip_suffix('d').ok_or_else(not_days)?;
    if days.is_empty() || days.starts_with('0') || !days.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_days());
    }
    let days: i64 = days.parse().map_err(|_| not_days())?;
    if days > KEPT_DAYS {
        return Err(invalid(
            "since",
            format!("{days} days is more than the {KEPT_DAYS} days cost sums are kept"),
        ));
    }
    Ok(day_text(today - (days - 1)))
}

/// The first day no longer kept at `now`.
pub fn expired_before(now: Micros) -> String {
    day_text(now.div_euclid(MICROS_PER_DAY) - (KEPT_DAYS - 1))
}

/// The runtime a step's cost is summed under: an agent's capability, or
/// `shell`, `noop`, `deliver`.
pub fn runtime_of(step: &crate::StepSpec) -> &str {
    use crate::spec::Runtime;
    match step.runtime() {
        Some(Runtime::Shell(_)) => "shell",
        Some(Runtime::Noop) => "noop",
        Some(Runtime::Deliver) => "deliver",
        _ => step.agent_capability().unwrap_or_default(),
    }
}

/// The key an attempt of step `index` of task `spec` (of `tenant`, on
/// `model`) that ended at `at` is summed under.
pub fn key_of(
    spec: &crate::TaskSpec,
    index: usize,
    (tenant, model): (&str, &str),
    at: Micros,
) -> CostKey {
    CostKey {
        day: day_of(at),
        tenant: tenant.to_string(),
        repo: spec
            .repo
            .as_ref()
            .map(|r| crate::repo::unadorned(&r.url).to_string())
            .unwrap_or_default(),
        runtime: runtime_of(&spec.steps[index]).to_string(),
        model: model.to_string(),
        template: spec
            .labels
            .get(crate::attempts::score::TEMPLATE_LABEL)
            .cloned()
            .unwrap_or_default(),
    }
}

/// One row of a report: the values of its dimensions, in the order asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostRow {
    pub values: Vec<String>,
    pub cost: Cost,
    pub attempts: u64,
}

/// `sums` grouped by `by`: the dearest first (then by their values).
pub fn group(sums: &[CostSum], by: &[CostBy]) -> Vec<CostRow> {
    let mut rows: std::collections::BTreeMap<Vec<String>, CostRow> = Default::default();
    for sum in sums {
        let values: Vec<String> = by.iter().map(|b| b.of(&sum.key).to_string()).collect();
        let row = rows.entry(values.clone()).or_insert_with(|| CostRow {
            values,
            ..CostRow::default()
        });
        row.cost += sum.cost;
        row.attempts += sum.attempts;
    }
    let mut rows: Vec<CostRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.cost
            .usd
            .total_cmp(&a.cost.usd)
            .then_with(|| a.values.cmp(&b.values))
    });
    // By day reads best in time order.
    if by.first() == Some(&CostBy::Day) {
        rows.sort_by(|a, b| a.values.cmp(&b.values));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Micros = MICROS_PER_DAY;

    /// Noon of `(year, month, day)`, UTC.
    fn at(year: i64, month: u32, day: u32) -> Micros {
        days_from_civil(year, month, day) * DAY + DAY / 2
    }

    #[test]
    fn since_is_days_back_at_most_400() {
        let now = at(2026, 11, 29);
        assert_eq!(since_day("", now).ok().as_deref(), Some("2026-11-01"));
        assert_eq!(since_day("1d", now).ok().as_deref(), Some("2026-11-29"));
        assert_eq!(since_day("30d", now).ok().as_deref(), Some("2026-10-31"));
        assert_eq!(since_day("400d", now).ok().as_deref(), Some("2025-10-26"));
        let refused = |since: &str| match since_day(since, now) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "since");
                message
            }
            other => panic!("{since}: {other:?}"),
        };
        assert!(refused("401d").contains("400 days"));
        for bad in [
            "0d",
            "030d",
            " 30d",
            "+30d",
            "d",
            "30",
            "2026-11-01",
            "a month",
        ] {
            assert!(refused(bad).contains("not a number of days"), "{bad}");
        }
        assert_eq!(expired_before(now), "2025-10-26");
    }

    #[test]
    fn sums_group_by_the_dimensions_asked_dearest_first() {
        let sum = |day: &str, repo: &str, runtime: &str, usd: f64| CostSum {
            key: CostKey {
                day: day.into(),
                tenant: "t".into(),
                repo: repo.into(),
                runtime: runtime.into(),
                ..CostKey::default()
            },
            cost: Cost {
                usd,
                input_tokens: 10,
                ..Cost::default()
            },
            attempts: 1,
        };
        let sums = [
            sum("2026-11-01", "a", "codex", 1.0),
            sum("2026-11-02", "a", "claude-code", 2.0),
            sum("2026-11-02", "b", "codex", 0.5),
        ];
        let by = parse_by(&["repo".into(), "runtime".into()]).expect("by");
        let rows = group(&sums, &by);
        let seen: Vec<(Vec<String>, f64)> = rows
            .iter()
            .map(|r| (r.values.clone(), r.cost.usd))
            .collect();
        let row = |v: [&str; 2], usd| (v.iter().map(|s| s.to_string()).collect(), usd);
        assert_eq!(
            seen,
            [
                row(["a", "claude-code"], 2.0),
                row(["a", "codex"], 1.0),
                row(["b", "codex"], 0.5)
            ]
        );
        let total = group(&sums, &[]);
        assert_eq!(total.len(), 1);
        assert_eq!((total[0].cost.usd, total[0].cost.input_tokens), (3.5, 30));
        assert_eq!(total[0].attempts, 3);
        let days = group(&sums, &[CostBy::Day]);
        assert_eq!(days[0].values, ["2026-11-01"], "in time order");
        for bad in [
            &["repo", "nope"][..],
            &["repo", "repo"],
            &["repo,model"],
            &[""],
            &[" repo"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(parse_by(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(day_of(at(2026, 11, 29)), "2026-11-29");
    }
}
