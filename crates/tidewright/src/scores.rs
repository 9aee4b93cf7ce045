//! `tidewright get scores`: how each agent runtime fared on the outcomes
//! kept (the attempts of each task with `attempts`, and each eval's tasks),
//! on every repository or one, from every template or one: what
//! `runtimes: auto` chooses by.

use std::collections::HashSet;
use std::process::ExitCode;

use tidewright_api::convert::micros;
use tidewright_client::{Client, v1};
use tidewright_core::attempts::score::{ATTEMPTS_LABEL, Score, Standing, standings};
use tidewright_core::auto::{Ran, scores_of as scores_of_spec};
use tidewright_core::eval::EVALS_LABEL;

use crate::args::Format;
use crate::output::{emit, print_table};

/// What `get scores` reads and prints.
pub struct Asked {
    pub repo: Option<String>,
    pub template: Option<String>,
    /// The newest tasks of each kind (with attempts, of evals) read, at
    /// most.
    pub limit: u32,
    pub format: Format,
}

pub async fn scores(client: &Client, asked: Asked) -> anyhow::Result<ExitCode> {
    let mut scores = Vec::new();
    let mut seen = HashSet::new();
    for label in [ATTEMPTS_LABEL, EVALS_LABEL] {
        let mut filter = v1::ListTasksRequest {
            labels: [(label.to_string(), "true".to_string())].into(),
            page_size: asked.limit.min(200),
            ..v1::ListTasksRequest::default()
        };
        let mut read = 0;
        let mut token = String::new();
        loop {
            let page = client.list_page(&filter, &token).await?;
            for listed in &page.tasks {
                read += 1;
                // An eval's task with attempts carries both labels.
                if !seen.insert(listed.id.clone()) {
                    continue;
                }
                // A listing may leave a task's steps out; its page has them.
                let task = client.get(&listed.id).await?;
                scores.extend(scores_of(&task));
            }
            token = page.next_page_token;
            if token.is_empty() || read >= asked.limit {
                break;
            }
            filter.page_size = (asked.limit - read).min(200);
        }
    }
    // Scores name their repository by its key.
    let repo = asked.repo.as_deref().map(tidewright_core::repo::key);
    scores.retain(|s| {
        repo.as_ref().is_none_or(|r| &s.repo == r)
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

/// A kept task's scores (see [`tidewright_core::auto::scores_of`]), from
/// its steps as the API gives them.
fn scores_of(task: &v1::Task) -> Vec<Score> {
    let spec: tidewright_core::TaskSpec = task.spec.clone().unwrap_or_default().into();
    let succeeded = v1::StepState::Succeeded as i32;
    scores_of_spec(&spec, |id| {
        let ran = task.steps.iter().find(|s| s.id == id)?;
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
        Some(Ran {
            passed: ran.state == succeeded,
            head: ran.work.as_ref().map(|w| w.head_commit.clone()),
            usd: ran.cost.as_ref().map_or(0.0, |c| c.usd),
            millis: match (first, last) {
                (Some(first), Some(last)) if last > first => ((last - first) / 1000) as u64,
                _ => 0,
            },
        })
    })
}
