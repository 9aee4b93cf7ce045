//! A cost report as programs read it: `tidewright cost -o json` and the
//! HTTP API.

use serde::Serialize;

use super::CostView;
use crate::v1;

/// What attempts cost from `since` to `until` (days, UTC), grouped by
/// `by`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostReportView {
    /// The dimensions, in the order of each row's values.
    pub by: Vec<String>,
    pub since: String,
    pub until: String,
    pub rows: Vec<CostRowView>,
    pub total: CostView,
    pub attempts: u64,
}

/// One group: its dimensions' values, and what it cost.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostRowView {
    pub values: Vec<String>,
    pub cost: CostView,
    pub attempts: u64,
}

fn whole(cost: &Option<v1::Cost>) -> CostView {
    let cost = cost.unwrap_or_default();
    CostView {
        usd: cost.usd,
        input_tokens: cost.input_tokens,
        output_tokens: cost.output_tokens,
        cache_read_tokens: cost.cache_read_tokens,
        cache_creation_tokens: cost.cache_creation_tokens,
    }
}

pub fn cost_report_view(report: &v1::CostReport) -> CostReportView {
    CostReportView {
        by: report.by.clone(),
        since: report.since.clone(),
        until: report.until.clone(),
        rows: report
            .rows
            .iter()
            .map(|row| CostRowView {
                values: row.values.clone(),
                cost: whole(&row.cost),
                attempts: row.attempts,
            })
            .collect(),
        total: whole(&report.total),
        attempts: report.attempts,
    }
}
