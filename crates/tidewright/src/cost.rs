//! `tidewright cost`: what agents cost, grouped by day, tenant,
//! repository, runtime, model or template, as a table, CSV or JSON.

use std::process::ExitCode;

use tidewright_api::view::{CostReportView, cost_report_view};
use tidewright_client::Settings;

use crate::args::{CostArgs, CostFormat};
use crate::client::connect;
use crate::output;

pub async fn cost(settings: &Settings, args: CostArgs) -> anyhow::Result<ExitCode> {
    let client = connect(settings).await?;
    let report = client.cost_report(&args.by, &args.since).await?;
    let view = cost_report_view(&report);
    match args.output {
        CostFormat::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        CostFormat::Yaml => print!("{}", serde_yaml::to_string(&view)?),
        CostFormat::Csv => print!("{}", csv(&view)),
        CostFormat::Table => table(&view),
    }
    Ok(ExitCode::SUCCESS)
}

const MEASURES: [&str; 7] = [
    "usd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "tokens",
    "attempts",
];

fn measures(cost: &tidewright_api::view::CostView, attempts: u64) -> [String; 7] {
    let tokens = cost.input_tokens
        + cost.output_tokens
        + cost.cache_read_tokens
        + cost.cache_creation_tokens;
    [
        format!("{:.6}", cost.usd),
        cost.input_tokens.to_string(),
        cost.output_tokens.to_string(),
        cost.cache_read_tokens.to_string(),
        cost.cache_creation_tokens.to_string(),
        tokens.to_string(),
        attempts.to_string(),
    ]
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its
/// quotes doubled.
fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv(view: &CostReportView) -> String {
    let mut out = String::new();
    let header: Vec<&str> = view.by.iter().map(String::as_str).chain(MEASURES).collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for row in &view.rows {
        let line: Vec<String> = row
            .values
            .iter()
            .map(|v| field(v))
            .chain(measures(&row.cost, row.attempts))
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn table(view: &CostReportView) {
    let mut header: Vec<String> = view.by.iter().map(|b| b.to_uppercase()).collect();
    header.extend(["USD", "TOKENS", "CACHE READ", "CACHE WRITE", "ATTEMPTS"].map(String::from));
    let row = |values: &[String], cost: &tidewright_api::view::CostView, attempts: u64| {
        let mut line: Vec<String> = values
            .iter()
            .map(|v| if v.is_empty() { "-".into() } else { v.clone() })
            .collect();
        let [_, _, _, read, write, tokens, attempts] = measures(cost, attempts);
        line.extend([
            format!("${:.2}", cost.usd.max(0.0)),
            tokens,
            read,
            write,
            attempts,
        ]);
        line
    };
    let mut rows: Vec<Vec<String>> = view
        .rows
        .iter()
        .map(|r| row(&r.values, &r.cost, r.attempts))
        .collect();
    if !view.by.is_empty() {
        let mut total = vec![String::new(); view.by.len()];
        total[0] = "TOTAL".into();
        let mut line = row(&total, &view.total, view.attempts);
        line[0] = "TOTAL".into();
        rows.push(line);
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    println!("{} to {} (UTC)", view.since, view.until);
    output::print_table(&header, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_it_must_and_ends_lines_with_crlf() {
        let view = CostReportView {
            by: vec!["repo".into()],
            since: "2026-11-01".into(),
            until: "2026-11-29".into(),
            rows: vec![tidewright_api::view::CostRowView {
                values: vec!["https://git.example/a,b".into()],
                cost: tidewright_api::view::CostView {
                    usd: 1.5,
                    input_tokens: 10,
                    output_tokens: 2,
                    cache_read_tokens: 3,
                    cache_creation_tokens: 1,
                },
                attempts: 2,
            }],
            total: tidewright_api::view::CostView {
                usd: 1.5,
                input_tokens: 10,
                output_tokens: 2,
                cache_read_tokens: 3,
                cache_creation_tokens: 1,
            },
            attempts: 2,
        };
        assert_eq!(
            csv(&view),
            "repo,usd,input_tokens,output_tokens,cache_read_tokens,cache_creation_tokens,tokens,attempts\r\n\"https://git.example/a,b\",1.500000,10,2,3,1,16,2\r\n"
        );
    }
}
