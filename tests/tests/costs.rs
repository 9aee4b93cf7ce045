//! Cost over time on a real control plane, with the real Claude Code CLI
//! against the mock Messages API: the attempts' costs are summed by day and
//! key as they end, and `tidewright cost` (table, CSV, JSON) and `GET
//! /api/v1/cost` report exactly what the tasks cost, grouped as asked; a
//! report more than 400 days back, or by an unknown dimension, is refused
//! naming the field.

use std::time::Duration;

use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_report_sums_exactly_what_the_tasks_cost_grouped_as_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::Text("First.".into()),
            Reply::claude_write("notes.txt", "x\n"),
            Reply::Text("Second.".into()),
            Reply::Text("Third.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, http, _agent) = roles_with_claude(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    // Two tasks one after the other (the mock answers in order): one of
    // one turn, one of two steps (two turns, then one).
    let mut costs = Vec::new();
    for (name, steps) in [
        ("one", vec![claude_step("a", "Say first.", &[])]),
        (
            "two",
            vec![
                claude_step("b", "Write notes.txt.", &["Write"]),
                claude_step("c", "Say third.", &[]),
            ],
        ),
    ] {
        let mut request = task(name, steps);
        if let Some(spec) = request.spec.as_mut()
            && name == "two"
        {
            spec.steps[1].depends_on = vec!["b".into()];
        }
        let id = submit(&client, request).await.expect("submit");
        let done = wait_succeeded(&client, &id, Duration::from_secs(60))
            .await
            .expect("succeeds");
        costs.push(done.cost.expect("a cost"));
    }
    let usd: f64 = costs.iter().map(|c| c.usd).sum();
    let input: u64 = costs.iter().map(|c| c.input_tokens).sum();
    let output: u64 = costs.iter().map(|c| c.output_tokens).sum();
    let read: u64 = costs.iter().map(|c| c.cache_read_tokens).sum();
    let written: u64 = costs.iter().map(|c| c.cache_creation_tokens).sum();
    assert!(usd > 0.0 && input > 0, "{costs:?}");

    // JSON: the total is the tasks' costs, exactly, tokens and all.
    let said = stdout_of(server.cli().args([
        "cost",
        "--by",
        "tenant,runtime,model",
        "--since",
        "1d",
        "-o",
        "json",
    ]));
    let report: serde_json::Value = serde_json::from_str(&said).expect("json");
    let total = &report["total"];
    assert!(
        (total["usd"].as_f64().unwrap_or_default() - usd).abs() < 1e-9,
        "{said}"
    );
    assert_eq!(
        [
            &total["inputTokens"],
            &total["outputTokens"],
            &total["cacheReadTokens"],
            &total["cacheCreationTokens"]
        ],
        [
            &serde_json::json!(input),
            &serde_json::json!(output),
            &serde_json::json!(read),
            &serde_json::json!(written)
        ],
        "{said}"
    );
    assert_eq!(report["attempts"], 3, "{said}");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "one tenant, runtime and model: {said}");
    assert_eq!(rows[0]["values"][0], "default");
    assert_eq!(rows[0]["values"][1], "claude-code");
    // CSV: a header, then a line per row.
    let csv = stdout_of(server.cli().args(["cost", "--by", "day", "-o", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "day,usd,input_tokens,output_tokens,cache_read_tokens,cache_creation_tokens,tokens,attempts"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].ends_with(",3"), "{csv}");
    // The table, with its total.
    let table = stdout_of(server.cli().args(["cost", "--by", "runtime"]));
    assert!(
        table.contains("claude-code") && table.contains("TOTAL"),
        "{table}"
    );
    assert!(table.contains(&format!("${usd:.2}")), "{table}");

    // The HTTP route says the same.
    let answer = http_call(
        &http,
        "GET",
        "/api/v1/cost?by=model&since=30d",
        Some("tidewright_viewer"),
        &[],
        "",
    )
    .expect("GET /cost");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let over_http = answer.json();
    assert!((over_http["total"]["usd"].as_f64().unwrap_or_default() - usd).abs() < 1e-9);
    assert_eq!(over_http["by"], serde_json::json!(["model"]));

    // Prometheus has them by the same keys but the day.
    let scraped = http_call(&http, "GET", "/metrics", Some("tidewright_admin"), &[], "")
        .expect("GET /metrics");
    assert_eq!(scraped.status, 200);
    let series: f64 = scraped
        .body
        .lines()
        .filter(|l| {
            l.starts_with("tidewright_cost_usd_total{")
                && l.contains("tenant=\"default\"")
                && l.contains("runtime=\"claude-code\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!((series - usd).abs() < 1e-9, "{series} against {usd}");
    // Past the 400 days kept, or by what is not a dimension: refused,
    // naming the field.
    let refused = fails_in_one_line(server.cli().args(["cost", "--since", "401d"]));
    assert!(
        refused.contains("since") && refused.contains("400 days"),
        "{refused}"
    );
    let refused = fails_in_one_line(server.cli().args(["cost", "--by", "colour"]));
    assert!(
        refused.contains("by") && refused.contains("\"colour\""),
        "{refused}"
    );
    let answer = http_call(
        &http,
        "GET",
        "/api/v1/cost?since=500d",
        Some("tidewright_viewer"),
        &[],
        "",
    )
    .expect("GET /cost");
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"]["field"], "since", "{}", answer.body);
}
