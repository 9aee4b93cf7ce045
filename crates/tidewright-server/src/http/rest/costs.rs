//! The cost route: what attempts cost, summed by day and grouped by the
//! dimensions asked, of the tenants the caller may see.

use tidewright_api::view::{CostReportView, cost_report_view};
use tidewright_engine::service::GetCostReport;

use super::*;

/// `?by=repo,runtime&since=30d`
#[utoipa::path(get, path = "/cost", tag = "cost",
    summary = "What attempts cost, by day, tenant, repository, runtime, model or template (GetCostReport)",
    params(
        ("by" = Option<Vec<String>>, Query, description = "group by these, in order (repeat it): day, tenant, repo, runtime, model, template; none for one total"),
        ("since" = Option<String>, Query, description = "30d (the last 30 days, today one of them), 1d to 400d; the current month when absent"),
    ),
    responses((status = 200, body = CostReportView), Refused))]
pub(super) async fn cost_report(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<CostReportView> {
    let mut request = GetCostReport::default();
    for (name, value) in query {
        match name.as_str() {
            "by" => request.by.push(value),
            "since" => request.since = value,
            other => return Err(Error::invalid(other, "not a parameter of the cost report").into()),
        }
    }
    let report = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.budgets.cost_report(r).await
    })
    .await?;
    Ok(Json(cost_report_view(&wire::cost_report(report))))
}
