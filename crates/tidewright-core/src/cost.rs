//! What running a step cost: dollars as the agent's CLI priced them, and the
//! tokens behind them. Attempts add up to their step, steps to their task.

use std::ops::{Add, AddAssign};

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    pub usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
}

impl Cost {
    pub fn is_zero(&self) -> bool {
        *self == Cost::default()
    }

    /// Every token the API billed: input, output, cache reads and writes.
    pub fn tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.output_tokens)
            .saturating_add(self.cache_read_tokens)
            .saturating_add(self.cache_creation_tokens)
    }

    /// What was spent after `earlier`, field by field (never below zero):
    /// the growth of a running total.
    pub fn since(&self, earlier: &Cost) -> Cost {
        Cost {
            usd: (self.usd - earlier.usd).max(0.0),
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            cache_read_tokens: self
                .cache_read_tokens
                .saturating_sub(earlier.cache_read_tokens),
            cache_creation_tokens: self
                .cache_creation_tokens
                .saturating_sub(earlier.cache_creation_tokens),
        }
    }
}

impl Add for Cost {
    type Output = Cost;

    fn add(self, other: Cost) -> Cost {
        Cost {
            usd: self.usd + other.usd,
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cache_read_tokens: self
                .cache_read_tokens
                .saturating_add(other.cache_read_tokens),
            cache_creation_tokens: self
                .cache_creation_tokens
                .saturating_add(other.cache_creation_tokens),
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_add_up_field_by_field() {
        let one = Cost {
            usd: 0.25,
            input_tokens: 100,
            output_tokens: 20,
            cache_read_tokens: 10,
            cache_creation_tokens: 5,
        };
        let total: Cost = [one, one, Cost::default()].into_iter().sum();
        assert_eq!(
            total,
            Cost {
                usd: 0.5,
                input_tokens: 200,
                output_tokens: 40,
                cache_read_tokens: 20,
                cache_creation_tokens: 10,
            }
        );
        assert!(Cost::default().is_zero() && !total.is_zero());
    }
}
