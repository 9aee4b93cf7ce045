//! Budgets: what a task may spend ([`Budget`], part of its spec) and what a
//! tenant may spend per UTC day and month ([`TenantBudget`], set by an
//! admin). Pure rules, so the engine's decisions (refuse a submit, pause a
//! task) are tested here without a clock or a store.

use serde::{Deserialize, Serialize};

use crate::calendar::{MICROS_PER_DAY, civil_from_days, days_from_civil};
use crate::cost::Cost;
use crate::state::Micros;

/// A task's spending limit; each part set is enforced, the other is not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budget {
    /// Dollars, as the agents' runtime prices their tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    /// Tokens of every kind the API billed: input, output, cache reads and
    /// cache writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub tokens: Option<u64>,
    /// Who may let the task go on once it has spent its budget (a caller's
    /// name or role): each approval grants it as much again as its budget
    /// so far. Without approvers, only a raise does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

impl Budget {
    /// Why `spent` is past this budget, or `None` while it is within.
    /// Reaching the limit exactly counts as spent: the next turn would
    /// cross it.
    pub fn exceeded_by(&self, spent: &Cost) -> Option<String> {
        if let Some(usd) = self.usd
            && spent.usd >= usd
        {
            return Some(format!("spent ${:.4} of its ${usd} budget", spent.usd));
        }
        if let Some(tokens) = self.tokens
            && spent.tokens() >= tokens
        {
            return Some(format!(
                "used {} tokens of its {tokens}-token budget",
                spent.tokens()
            ));
        }
        None
    }

    /// Adds to each limit that is set (a raise names what it raises).
    pub fn raised(self, by: &Budget) -> Budget {
        Budget {
            approvers: self.approvers,
            usd: match (self.usd, by.usd) {
                (Some(limit), Some(more)) => Some(limit + more),
                (limit, more) => limit.or(more),
            },
            tokens: match (self.tokens, by.tokens) {
                (Some(limit), Some(more)) => Some(limit.saturating_add(more)),
                (limit, more) => limit.or(more),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.usd.is_none() && self.tokens.is_none()
    }

    /// Whether a caller of this name and role may approve going on.
    pub fn approved_by(&self, name: &str, role: &str) -> bool {
        self.approvers.iter().any(|a| a == name || a == role)
    }
}

/// The window a tenant budget counts over, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Day,
    Month,
}

impl Window {
    pub const ALL: [Window; 2] = [Window::Day, Window::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// When the window holding `at` began.
    pub fn start(self, at: Micros) -> Micros {
        let day = at.div_euclid(MICROS_PER_DAY);
        match self {
            Window::Day => day * MICROS_PER_DAY,
            Window::Month => {
                let (year, month, _) = civil_from_days(day);
                days_from_civil(year, month, 1) * MICROS_PER_DAY
            }
        }
    }

    /// When the window holding `at` ends and the next begins.
    pub fn end(self, at: Micros) -> Micros {
        match self {
            Window::Day => self.start(at) + MICROS_PER_DAY,
            Window::Month => {
                let (year, month, _) = civil_from_days(at.div_euclid(MICROS_PER_DAY));
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                days_from_civil(year, month, 1) * MICROS_PER_DAY
            }
        }
    }
}

/// What a tenant may spend per UTC day and per UTC month; unset parts are
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantBudget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_month: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_month: Option<u64>,
}

impl TenantBudget {
    /// The limit over one window.
    pub fn for_window(&self, window: Window) -> Budget {
        match window {
            Window::Day => Budget {
                usd: self.usd_per_day,
                tokens: self.tokens_per_day,
                approvers: Vec::new(),
            },
            Window::Month => Budget {
                usd: self.usd_per_month,
                tokens: self.tokens_per_month,
                approvers: Vec::new(),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        Window::ALL.iter().all(|w| self.for_window(*w).is_empty())
    }
}

/// A tenant's spend in the current day and month, kept as costs arrive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantSpend {
    /// (start of the window, spent since).
    pub day: (Micros, Cost),
    pub month: (Micros, Cost),
}

/// A tenant budget that is spent: which, over what, and when it resets.
#[derive(Debug, Clone, PartialEq)]
pub struct Exhausted {
    pub window: Window,
    pub why: String,
    pub resets_at: Micros,
}

impl TenantSpend {
    /// Counts `cost` as spent at `at`; a window that has ended starts over.
    pub fn add(&mut self, cost: Cost, at: Micros) {
        for window in Window::ALL {
            let (start, spent) = self.window_mut(window);
            let now_start = window.start(at);
            if *start != now_start {
                *start = now_start;
                *spent = Cost::default();
            }
            *spent += cost;
        }
    }

    /// What was spent in the window holding `at` (zero once it ended).
    pub fn in_window(&self, window: Window, at: Micros) -> Cost {
        let (start, spent) = match window {
            Window::Day => &self.day,
            Window::Month => &self.month,
        };
        if *start == window.start(at) {
            *spent
        } else {
            Cost::default()
        }
    }

    fn window_mut(&mut self, window: Window) -> (&mut Micros, &mut Cost) {
        let (start, spent) = match window {
            Window::Day => &mut self.day,
            Window::Month => &mut self.month,
        };
        (start, spent)
    }

    /// The first of the tenant's budgets this spend has used up at `at`.
    pub fn exhausted(&self, budget: &TenantBudget, at: Micros) -> Option<Exhausted> {
        Window::ALL.into_iter().find_map(|window| {
            let why = budget
                .for_window(window)
                .exceeded_by(&self.in_window(window, at))?;
            Some(Exhausted {
                window,
                why,
                resets_at: window.end(at),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Micros = MICROS_PER_DAY;

    fn usd(usd: f64) -> Cost {
        Cost {
            usd,
            ..Cost::default()
        }
    }

    #[test]
    fn a_budget_is_spent_at_its_limit_in_either_unit() {
        let budget = Budget {
            usd: Some(1.0),
            tokens: Some(300),
            approvers: Vec::new(),
        };
        assert_eq!(budget.exceeded_by(&usd(0.99)), None);
        assert_eq!(
            budget.exceeded_by(&usd(1.0)).as_deref(),
            Some("spent $1.0000 of its $1 budget")
        );
        let tokens = Cost {
            input_tokens: 200,
            output_tokens: 50,
            cache_read_tokens: 40,
            cache_creation_tokens: 10,
            ..Cost::default()
        };
        assert_eq!(
            budget.exceeded_by(&tokens).as_deref(),
            Some("used 300 tokens of its 300-token budget")
        );
        assert_eq!(Budget::default().exceeded_by(&tokens), None);
    }

    #[test]
    fn a_raise_adds_to_what_it_names() {
        let budget = Budget {
            usd: Some(1.0),
            tokens: None,
            approvers: Vec::new(),
        };
        let raised = budget.clone().raised(&Budget {
            usd: Some(0.5),
            tokens: Some(10),
            approvers: Vec::new(),
        });
        assert_eq!(
            raised,
            Budget {
                usd: Some(1.5),
                tokens: Some(10),
                approvers: Vec::new(),
            }
        );
        assert_eq!(budget.clone().raised(&Budget::default()), budget);
    }

    #[test]
    fn windows_are_utc_days_and_calendar_months() {
        // 2026-11-23T13:10:00Z
        let at = 1_795_439_400 * 1_000_000;
        assert_eq!(Window::Day.start(at), 1_795_392_000 * 1_000_000);
        assert_eq!(Window::Day.end(at), Window::Day.start(at) + DAY);
        // 2026-11-01 and 2026-12-01.
        assert_eq!(Window::Month.start(at), 1_793_491_200 * 1_000_000);
        assert_eq!(Window::Month.end(at), 1_796_083_200 * 1_000_000);
        // December rolls into January; a leap February has 29 days.
        let dec = 1_796_083_200 * 1_000_000 + DAY;
        assert_eq!(Window::Month.end(dec), 1_798_761_600 * 1_000_000);
        let feb_2028 = days_from_civil(2028, 2, 10) * DAY;
        assert_eq!(
            Window::Month.end(feb_2028) - Window::Month.start(feb_2028),
            29 * DAY
        );
        for days in [-1000, 0, 59, 60, 19_000, 20_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn tenant_spend_starts_over_with_each_window() {
        let budget = TenantBudget {
            usd_per_day: Some(1.0),
            usd_per_month: Some(1.5),
            ..TenantBudget::default()
        };
        let day1 = days_from_civil(2026, 11, 23) * DAY + 1;
        let mut spend = TenantSpend::default();
        spend.add(usd(0.6), day1);
        assert_eq!(spend.exhausted(&budget, day1), None);
        spend.add(usd(0.4), day1 + 10);
        let spent = spend
            .exhausted(&budget, day1 + 10)
            .expect("the day is spent");
        assert_eq!(spent.window, Window::Day);
        assert_eq!(spent.resets_at, days_from_civil(2026, 11, 24) * DAY);
        // The next day has room, but the month has only 0.5 left.
        let day2 = day1 + DAY;
        assert_eq!(spend.exhausted(&budget, day2), None);
        spend.add(usd(0.5), day2);
        let spent = spend.exhausted(&budget, day2).expect("the month is spent");
        assert_eq!(spent.window, Window::Month);
        assert_eq!(spent.resets_at, days_from_civil(2026, 12, 1) * DAY);
        assert_eq!(spend.in_window(Window::Day, day2).usd, 0.5);
    }
}
