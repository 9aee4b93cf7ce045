//! `tidewright get scores`: how each agent runtime fared in the attempts
//! of the tasks kept (each a task with `attempts`), on every repository or
//! one, from every template or one.

use std::process::ExitCode;

use tidewright_api::convert::micros;
use tidewright_client::{Client, v1};
use tidewright_core::attempts::score::{
    ATTEMPTS_LABEL, Score, Standing, TEMPLATE_LABEL, standings,
};

use crate::args::Format;
use crate::output::{emit, print_table};

/// What `get scores` reads and prints.
pub struct Asked {
    pub repo: Option<String>,
    pub template: Option<String>,
    /// The newest tasks with attempts read, at most.
    pub limit: u32,
    pub format: Format,
}

pub async fn scores(client: &Client, asked: Asked) -> anyhow::Result<ExitCode> {
    let mut filter = v1::ListTasksRequest {
        labels: [(ATTEMPTS_LABEL.to_string(), "true".to_string())].into(),
        page_size: asked.limit.min(200),
        ..v1::ListTasksRequest::default()
    };
    let mut scores = Vec::new();
    let mut read = 0;
    let mut token = String::new();
    loop {
        let page = client.list_page(&filter, &token).await?;
        for listed in &page.tasks {
            // A listing may leave a task's steps out; its page has them.
            let task = client.get(&listed.id).await?;
            scores.extend(scores_of(&task));
            read += 1;
        }
        token = page.next_page_token;
        if token.is_empty() || read >= asked.limit {
            break;
        }
        filter.page_size = (asked.limit - read).min(200);
    }
    scores.retain(|s| {
        asked.repo.as_ref().is_none_or(|r| &s.repo == r)
            && asked.template.as_ref().is_none_or(|t| &s.template == t)
    });
    let standings = standings(&scores);
    if emit(
        &standings,
        standings.iter().map(|s| &s.runtime),
        asked.format,
    )? {
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = standings.iter().map(row).collect();
    print_table(
        &[
            "RUNTIME",
            "ATTEMPTS",
            "PASSED",
            "WON",
            "PASS RATE",
            "COST",
            "$/PASS",
            "MEDIAN TIME",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn row(s: &Standing) -> Vec<String> {
    vec![
        s.runtime.clone(),
        s.attempts.to_string(),
        s.passed.to_string(),
        s.won.to_string(),
        format!("{:.0}%", s.pass_rate * 100.0),
        format!("${:.4}", s.usd),
        s.usd_per_pass
            .map_or("-".into(), |usd| format!("${usd:.4}")),
        format!("{:.1}s", s.median_millis as f64 / 1000.0),
    ]
}

/// The scores of a task's attempts: for each step that chose among
/// attempts, each attempt's runtime, whether it passed, whether its work is
/// the one chosen, its cost and its time.
fn scores_of(task: &v1::Task) -> Vec<Score> {
    let spec: tidewright_core::TaskSpec = task.spec.clone().unwrap_or_default().into();
    let repo = spec
        .repo
        .as_ref()
        .map(|r| r.url.clone())
        .unwrap_or_default();
    let template = spec.labels.get(TEMPLATE_LABEL).cloned().unwrap_or_default();
    let step = |id: &str| task.steps.iter().find(|s| s.id == id);
    let succeeded = v1::StepState::Succeeded as i32;
    let mut scores = Vec::new();
    for chooser in spec.steps.iter().filter(|s| s.select.is_some()) {
        let chosen = step(&chooser.id)
            .filter(|s| s.state == succeeded)
            .and_then(|s| s.work.as_ref())
            .map(|w| w.head_commit.clone());
        for id in chooser.select.iter().flat_map(|s| &s.attempts) {
            let (Some(attempt), Some(ran)) = (spec.steps.iter().find(|s| &s.id == id), step(id))
            else {
                continue;
            };
            let passed = ran.state == succeeded;
            let head = ran.work.as_ref().map(|w| w.head_commit.clone());
            let first = ran
                .attempts
                .first()
                .and_then(|a| a.started_at.as_ref())
                .map(micros);
            let last = ran
                .attempts
                .last()
                .and_then(|a| a.finished_at.as_ref())
                .map(micros);
            scores.push(Score {
                runtime: attempt.agent_capability().unwrap_or_default().to_string(),
                repo: repo.clone(),
                template: template.clone(),
                passed,
                won: passed && head.is_some() && head == chosen,
                usd: ran.cost.as_ref().map_or(0.0, |c| c.usd),
                millis: match (first, last) {
                    (Some(first), Some(last)) if last > first => ((last - first) / 1000) as u64,
                    _ => 0,
                },
            });
        }
    }
    scores
}
