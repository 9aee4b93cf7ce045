//! What agents' model responses cost where their CLI reports tokens, not
//! dollars (Codex, the Gemini CLI): tidewright prices them at the operator's
//! prices for the model (`--prices`), else at the provider's list prices
//! per model family.

use std::collections::BTreeMap;

use serde::Deserialize;
use tidewright_core::Cost;

/// A run's token usage: input counts the cached input too, output counts
/// the reasoning too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    /// `other`'s tokens added to these.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

/// US dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prices {
    pub input: f64,
    pub cached_input: f64,
    pub output: f64,
}

/// The operator's prices by model name: a model is priced by the longest
/// name here it starts with (`gpt-6.1` prices `gpt-6.1-sol`).
pub type PriceTable = BTreeMap<String, Prices>;

impl Prices {
    /// The operator's price for `model`, else the `list` price.
    pub fn for_model(model: &str, table: &PriceTable, list: fn(&str) -> Prices) -> Prices {
        table
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, prices)| prices.clone())
            .unwrap_or_else(|| list(model))
    }

    /// Google's list prices for Gemini by model family (up to 200,000
    /// tokens of prompt); an unknown model as Gemini 2.5 Pro.
    pub fn gemini(model: &str) -> Prices {
        let model = model.to_ascii_lowercase();
        let (input, cached_input, output) = if model.contains("flash-lite") {
            (0.10, 0.025, 0.40)
        } else if model.contains("flash") {
            (0.30, 0.075, 2.50)
        } else {
            (1.25, 0.31, 10.0)
        };
        Prices {
            input,
            cached_input,
            output,
        }
    }

    /// Why these prices cannot be used: each must be a number of dollars,
    /// zero or more.
    pub fn check(&self) -> Result<(), String> {
        for (name, price) in [
            ("input", self.input),
            ("cachedInput", self.cached_input),
            ("output", self.output),
        ] {
            if !price.is_finite() || price < 0.0 {
                return Err(format!("{name} must be zero or more dollars, not {price}"));
            }
        }
        Ok(())
    }

    /// Anthropic's list prices for Claude by model family (what the
    /// grader's calls cost; Claude Code reports its own dollars). An unknown
    /// model is priced as Sonnet.
    pub fn claude(model: &str) -> Prices {
        let model = model.to_ascii_lowercase();
        let (input, cached_input, output) = if model.contains("haiku-3-5") {
            (0.80, 0.08, 4.0)
        } else if model.contains("haiku-3") || model.contains("3-haiku") {
            (0.25, 0.03, 1.25)
        } else if model.contains("haiku") {
            (1.0, 0.10, 5.0)
        } else if model.contains("opus-4-0")
            || model.contains("opus-4-1")
            || model.contains("3-opus")
            || model == "claude-opus-4"
        {
            (15.0, 1.50, 75.0)
        } else if model.contains("opus") {
            (5.0, 0.50, 25.0)
        } else {
            (3.0, 0.30, 15.0)
        };
        Prices {
            input,
            cached_input,
            output,
        }
    }

    /// OpenAI's list prices by model family. An unknown model is priced as
    /// GPT-5, Codex's default family, so a budget still counts it.
    pub fn openai(model: &str) -> Prices {
        let model = model.to_ascii_lowercase();
        let (input, cached_input, output) = if model.contains("nano") {
            (0.05, 0.005, 0.40)
        } else if model.contains("mini") && model.starts_with("gpt-5") {
            (0.25, 0.025, 2.0)
        } else if model.starts_with("o4-mini") {
            (1.10, 0.275, 4.40)
        } else if model.starts_with("gpt-4.1-mini") {
            (0.40, 0.10, 1.60)
        } else if model.starts_with("o3") || model.starts_with("gpt-4.1") {
            (2.0, 0.50, 8.0)
        } else {
            (1.25, 0.125, 10.0)
        };
        Prices {
            input,
            cached_input,
            output,
        }
    }

    /// `usage` at `prices`, else at the `list` price of `model`.
    pub fn priced_or(
        prices: Option<&Prices>,
        list: fn(&str) -> Prices,
        model: &str,
        usage: &Usage,
    ) -> Cost {
        match prices {
            Some(prices) => prices.priced(usage),
            None => list(model).priced(usage),
        }
    }

    /// `usage` at these prices, as tidewright's cost: uncached input, cached
    /// input (read from the provider's cache) and output.
    pub fn priced(&self, usage: &Usage) -> Cost {
        Cost {
            usd: self.cost(usage),
            input_tokens: usage.input_tokens.saturating_sub(usage.cached_input_tokens),
            output_tokens: usage.output_tokens,
            cache_read_tokens: usage.cached_input_tokens,
            cache_creation_tokens: 0,
        }
    }

    /// What `usage` costs at these prices.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let millions = |n: u64| n as f64 / 1e6;
        let uncached = usage.input_tokens.saturating_sub(usage.cached_input_tokens);
        millions(uncached) * self.input
            + millions(usage.cached_input_tokens) * self.cached_input
            + millions(usage.output_tokens) * self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_input_is_priced_apart_and_unknown_models_as_gpt_5() {
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 200_000,
            output_tokens: 100_000,
        };
        let usd = Prices::openai("gpt-5-codex").cost(&usage);
        assert!(
            (usd - (0.8 * 1.25 + 0.2 * 0.125 + 0.1 * 10.0)).abs() < 1e-9,
            "{usd}"
        );
        assert_eq!(Prices::openai("gpt-5-mini").output, 2.0);
        assert_eq!(Prices::openai("gpt-5-nano").input, 0.05);
        assert_eq!(Prices::openai("o4-mini").input, 1.10);
        assert_eq!(Prices::openai("something-new"), Prices::openai("gpt-5"));
        assert_eq!(Prices::gemini("gemini-2.5-flash-lite").output, 0.40);
        assert_eq!(Prices::claude("claude-sonnet-4-5").input, 3.0);
        assert_eq!(Prices::claude("claude-haiku-4-5").output, 5.0);
        assert_eq!(Prices::claude("claude-opus-4-5").input, 5.0);
        assert_eq!(Prices::claude("claude-opus-4-1-20250805").input, 15.0);
        assert_eq!(
            Prices::claude("claude-next"),
            Prices::claude("claude-sonnet-4-5")
        );
        assert_eq!(
            Prices::gemini("gemini-3.1-pro-preview"),
            Prices::gemini("gemini-2.5-pro")
        );
    }

    #[test]
    fn the_operators_price_for_the_longest_matching_name_wins() {
        let price = |input: f64| Prices {
            input,
            cached_input: input / 10.0,
            output: input * 8.0,
        };
        let table: PriceTable = [
            ("gpt-6".to_string(), price(3.0)),
            ("gpt-6.1".to_string(), price(2.0)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            Prices::for_model("gpt-6.1-sol", &table, Prices::openai),
            price(2.0)
        );
        assert_eq!(
            Prices::for_model("gpt-6-luna", &table, Prices::openai),
            price(3.0)
        );
        assert_eq!(
            Prices::for_model("o4-mini", &table, Prices::openai),
            Prices::openai("o4-mini")
        );
        assert!(price(1.0).check().is_ok());
        let negative = Prices {
            output: -1.0,
            ..price(1.0)
        };
        assert!(negative.check().is_err_and(|e| e.contains("output")));
    }
}
