//! How `tidewright get task` prints a task for people: its header (repo,
//! branch, landing, approvals, failovers, choices, reviews), its steps, and
//! its rounds of checks.

use tidewright_api::convert::micros;
use tidewright_api::v1;
use tidewright_api::view::{LandView, RepoView, attempt_state_name, rfc3339, task_view};
use tidewright_core::repo::DELIVER_STEP;

use super::{duration, emit, limits, print_table, short, step_state_name, truncate, usd};
use crate::args::Format;

pub fn task(task: &v1::Task, format: Format) -> anyhow::Result<()> {
    let view = task_view(task);
    if emit(&view, [&view.id], format)? {
        return Ok(());
    }
    println!("Task:      {}", view.id);
    println!("Name:      {}", view.name);
    println!("Tenant:    {}", view.tenant);
    println!("State:     {}", view.state);
    println!("Priority:  {}", view.priority);
    if !view.labels.is_empty() {
        let labels: Vec<String> = view
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("Labels:    {}", labels.join(", "));
    }
    println!("Created:   {}", view.created_at);
    if let (Some(start), Some(end)) = (&task.started_at, &task.finished_at) {
        println!("Duration:  {}", duration(micros(end) - micros(start)));
    }
    if !view.message.is_empty() {
        println!("Message:   {}", view.message);
    }
    if let Some(expires) = &view.expires_at {
        println!("Expires:   {expires} (removed then, with its events and logs)");
    }
    if !view.trace_id.is_empty() {
        println!("Trace:     {}", view.trace_id);
    }
    if !view.prompt.is_empty() {
        println!("Prompt:    {}", truncate(&view.prompt, 100));
    }
    if view.plan.is_some() {
        println!("Planned:   {} steps (the plan: -o yaml)", view.steps.len());
    }
    if let Some(cost) = &view.cost {
        println!(
            "Cost:      ${:.4} ({} input, {} output, {} cache-read, {} cache-write tokens)",
            cost.usd,
            cost.input_tokens,
            cost.output_tokens,
            cost.cache_read_tokens,
            cost.cache_creation_tokens
        );
    }
    if let Some(line) = setup_line(task) {
        println!("Setup:     {line}");
    }
    if let Some(budget) = &view.budget {
        let paused = match (view.state == "paused", budget.approvers.as_slice()) {
            (false, _) => String::new(),
            (true, []) => format!("; paused: tidewright budget raise {} --usd N", view.id),
            (true, approvers) => format!(
                "; paused: tidewright budget raise {} --usd N, or {} may tidewright approve {} --budget",
                view.id,
                approvers.join(", "),
                view.id
            ),
        };
        println!("Budget:    {}{paused}", limits(budget.usd, budget.tokens));
    }
    if let Some(repo) = &view.repo {
        let git_ref = if repo.git_ref.is_empty() {
            "its default branch"
        } else {
            repo.git_ref.as_str()
        };
        println!(
            "Repo:      {} at {git_ref}, commit {}",
            repo.url,
            short(&repo.commit)
        );
        // The deliver step's work is the task's.
        let delivered = view
            .steps
            .iter()
            .find(|s| s.runtime == "deliver")
            .and_then(|s| s.work.as_ref());
        if let Some(work) = delivered {
            let pushed = if work.pushed { ", pushed" } else { "" };
            println!(
                "Branch:    {} at {}{pushed}",
                work.branch,
                short(&work.head_commit)
            );
            if !work.pull_request_url.is_empty() {
                println!(
                    "Pull req.: {}{}",
                    work.pull_request_url,
                    followed(repo, task)
                );
            }
        }
        if let Some(land) = &repo.land {
            println!("Lands:     {}", landing(land, repo, task));
        }
    }
    for step in view.steps.iter().filter(|s| s.state == "awaiting_approval") {
        let Some(approval) = &step.approval else {
            continue;
        };
        let asked = if approval.message.is_empty() {
            String::new()
        } else {
            format!(" ({})", approval.message)
        };
        let until = approval
            .deadline
            .as_ref()
            .map(|d| format!(", times out at {d}"))
            .unwrap_or_default();
        println!(
            "Awaiting:  step {} needs approval by {}{asked}{until}: tidewright approve {} {}",
            step.id,
            approval.approvers.join(" or "),
            view.id,
            step.id
        );
    }
    for step in &view.steps {
        let Some(failover) = &step.failover else {
            continue;
        };
        let carried = if failover.head.is_empty() {
            String::new()
        } else {
            format!(", with its work at {}", short(&failover.head))
        };
        println!(
            "Failover:  step {} failed over from {} to {} after attempt {}{carried}: {}",
            step.id, failover.from, step.runtime, failover.after_attempt, failover.reason
        );
    }
    for step in &view.steps {
        let Some(chosen) = &step.chosen else {
            continue;
        };
        println!("Chosen:    step {}: {}", step.id, chosen.why);
    }
    for step in view.steps.iter().filter(|s| !s.review_of.is_empty()) {
        let verdict = step.output.as_ref().and_then(|o| {
            serde_json::from_value::<tidewright_core::review::Verdict>(o.clone()).ok()
        });
        let rounds = step.attempts.iter().filter(|a| a.state == "failed").count();
        let said = match (&verdict, step.state) {
            (Some(v), "succeeded") => v.line(),
            (_, state) => state.to_string(),
        };
        println!(
            "Review:    step {} by {} ({} round(s) of changes requested): {said}",
            step.review_of, step.runtime, rounds
        );
    }
    for step in view.steps.iter().filter(|s| !s.queued_reason.is_empty()) {
        println!("Queued:    step {} waits: {}", step.id, step.queued_reason);
    }
    println!();
    let rows: Vec<Vec<String>> = task
        .steps
        .iter()
        .zip(&view.steps)
        .map(|(s, shown)| {
            let took = match (&s.started_at, &s.finished_at) {
                (Some(a), Some(b)) => duration(micros(b) - micros(a)),
                _ => String::new(),
            };
            let detail = match &shown.approval {
                Some(approval) if shown.state == "awaiting_approval" => {
                    format!("approval by {}", approval.approvers.join(" or "))
                }
                _ if !s.error.is_empty() => s.error.clone(),
                _ => s.output_json.clone(),
            };
            vec![
                s.id.clone(),
                step_state_name(s.state).to_string(),
                s.attempt.to_string(),
                s.worker.clone(),
                took,
                s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                usd(&s.cost),
                truncate(&detail, 60),
            ]
        })
        .collect();
    print_table(
        &[
            "STEP",
            "STATE",
            "ATTEMPT",
            "WORKER",
            "DURATION",
            "EXIT",
            "COST",
            "OUTPUT / ERROR",
        ],
        &rows,
    );
    let work: Vec<Vec<String>> = view
        .steps
        .iter()
        .filter_map(|s| s.work.as_ref().map(|w| (s, w)))
        .map(|(s, w)| {
            vec![
                s.id.clone(),
                w.branch.clone(),
                short(&w.head_commit).to_string(),
                format!(
                    "{} files, +{} -{}",
                    w.files_changed, w.insertions, w.deletions
                ),
                truncate(&w.changed_paths.join(" "), 60),
            ]
        })
        .collect();
    if !work.is_empty() {
        println!();
        print_table(&["STEP", "BRANCH", "HEAD", "CHANGES", "PATHS"], &work);
    }
    let attempts: Vec<Vec<String>> = task
        .steps
        .iter()
        .flat_map(|s| s.attempts.iter().map(move |a| (s, a)))
        .map(|(s, a)| {
            let took = match (&a.started_at, &a.finished_at) {
                (Some(x), Some(y)) => duration(micros(y) - micros(x)),
                _ => String::new(),
            };
            vec![
                s.id.clone(),
                a.attempt.to_string(),
                a.worker.clone(),
                rfc3339(&a.started_at).unwrap_or_default(),
                took,
                attempt_state_name(a.state).to_string(),
                usd(&a.cost),
                a.setup.as_ref().map(setup_cell).unwrap_or_default(),
                a.session_id.clone(),
                truncate(&a.error, 50),
            ]
        })
        .collect();
    if !attempts.is_empty() {
        println!();
        print_table(
            &[
                "STEP", "ATTEMPT", "WORKER", "STARTED", "DURATION", "RESULT", "COST", "SETUP",
                "SESSION", "REASON",
            ],
            &attempts,
        );
    }
    rounds(task);
    Ok(())
}

/// What its attempts' setups cost, beside what their agents did: `31.2s
/// over 5 attempts: ran 1 (14.2s), seeds 4 (0.04s)`; `None` without any.
fn setup_line(task: &v1::Task) -> Option<String> {
    let setups: Vec<&v1::SetupReport> = task
        .steps
        .iter()
        .flat_map(|s| &s.attempts)
        .filter_map(|a| a.setup.as_ref())
        .collect();
    if setups.is_empty() {
        return None;
    }
    let ms = |of: &[&&v1::SetupReport]| of.iter().map(|s| s.millis).sum::<u64>();
    let (ran, seeded): (Vec<_>, Vec<_>) = setups.iter().partition(|s| s.source == "ran");
    let total = ms(&ran) + ms(&seeded);
    let mut line = format!(
        "{} over {} attempt(s): ran {} ({})",
        millis(total),
        setups.len(),
        ran.len(),
        millis(ms(&ran))
    );
    if !seeded.is_empty() {
        line.push_str(&format!(
            ", from seeds {} ({})",
            seeded.len(),
            millis(ms(&seeded))
        ));
    }
    Some(line)
}

/// An attempt's setup in a cell: `store overlay 12ms`, `ran 14.2s`,
/// `failed 2.0s`.
fn setup_cell(setup: &v1::SetupReport) -> String {
    let how = if setup.failed {
        "failed".to_string()
    } else {
        format!("{} {}", setup.source, setup.method)
            .trim_end()
            .to_string()
    };
    format!("{how} {}", millis(setup.millis))
}

fn millis(ms: u64) -> String {
    duration(i64::try_from(ms).unwrap_or(i64::MAX).saturating_mul(1000))
}

/// A landing task's line: where it lands, on what checks, and how it
/// stands: landed (where), failed (why), or waiting for its turn.
fn landing(land: &LandView, repo: &RepoView, task: &v1::Task) -> String {
    let base = match (land.base.as_str(), repo.git_ref.as_str()) {
        ("", git_ref) => git_ref,
        (base, _) => base,
    };
    let mut said = format!(
        "on {base} through its queue, checked by {}",
        land.checks.join(", ")
    );
    let Some(deliver) = task.steps.iter().find(|s| s.id == DELIVER_STEP) else {
        return said;
    };
    let output: serde_json::Value = serde_json::from_str(&deliver.output_json).unwrap_or_default();
    match (deliver.state, output["landed"].as_str()) {
        (state, Some(landed)) if state == v1::StepState::Succeeded as i32 => {
            said.push_str(&format!(
                "; landed at {} (checked on the tip {})",
                short(landed),
                short(output["tip"].as_str().unwrap_or_default())
            ))
        }
        (state, _) if state == v1::StepState::Failed as i32 => {
            said.push_str(&format!("; not landed: {}", deliver.error))
        }
        _ => {}
    }
    if let Some(lead) = output["batch"].as_str() {
        said.push_str(&format!(", in one checked merge with task {lead}'s work"));
    }
    // Each landing that failed and was sent back to its agent: all of
    // them but the last, when that one ended the task.
    let verdict = format!("landing on {base}: ");
    let failed = deliver
        .attempts
        .iter()
        .filter(|a| a.state == v1::StepState::Failed as i32 && a.error.starts_with(&verdict))
        .count();
    let sent_back = match deliver.state {
        state if state == v1::StepState::Failed as i32 => failed.saturating_sub(1),
        _ => failed,
    };
    if sent_back > 0 {
        said.push_str(&format!(
            "; sent back to its agent to fix {sent_back} time(s)"
        ));
    }
    said
}

/// How a followed pull request stands: how it merges, whether it has, and
/// the rounds of fixes its checks and reviews took.
fn followed(repo: &RepoView, task: &v1::Task) -> String {
    if !repo.pull_request_followed {
        return String::new();
    }
    let mut said = match repo.pull_request_merge.as_str() {
        "" => ", followed until a person merges it".to_string(),
        merge => format!(", followed and merged by tidewright ({merge}) once green"),
    };
    let Some(deliver) = task.steps.iter().find(|s| s.id == DELIVER_STEP) else {
        return said;
    };
    let output: serde_json::Value = serde_json::from_str(&deliver.output_json).unwrap_or_default();
    match (deliver.state, output["merged"].as_str()) {
        (state, Some(merged)) if state == v1::StepState::Succeeded as i32 => {
            said.push_str(&format!("; merged at {}", short(merged)))
        }
        (state, _) if state == v1::StepState::Failed as i32 => {
            said.push_str(&format!("; not merged: {}", deliver.error))
        }
        (state, _) if state == v1::StepState::Running as i32 => {
            said.push_str("; open, followed now")
        }
        _ => {}
    }
    // Each failure an agent could fix was sent back to it, but a last one
    // that ended the task.
    let fixable = |a: &v1::Attempt| {
        a.state == v1::StepState::Failed as i32
            && a.error.starts_with("pull request ")
            && a.verification
                .as_ref()
                .is_some_and(|v| v.checks.iter().any(|c| !c.passed))
    };
    let failed = deliver.attempts.iter().filter(|a| fixable(a)).count();
    let ended_it = deliver.state == v1::StepState::Failed as i32
        && deliver.attempts.last().is_some_and(fixable);
    let sent_back = failed - usize::from(ended_it);
    if sent_back > 0 {
        said.push_str(&format!(
            "; its checks and reviews sent back to its agent to fix {sent_back} time(s)"
        ));
    }
    said
}

/// Each verified step's rounds, and the end of what failed in its last.
fn rounds(task: &v1::Task) {
    let found: Vec<(&v1::Step, &v1::Attempt, &v1::Verification)> = task
        .steps
        .iter()
        .flat_map(|s| {
            s.attempts
                .iter()
                .filter_map(move |a| a.verification.as_ref().map(|v| (s, a, v)))
        })
        .collect();
    if found.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|(s, a, v)| {
            let checks: Vec<String> = v
                .checks
                .iter()
                .map(|c| match (c.passed, c.exit_code) {
                    (true, _) => format!("{} passed", c.name),
                    (false, Some(code)) => format!("{} failed (exit {code})", c.name),
                    (false, None) => format!("{} failed: {}", c.name, c.trouble),
                })
                .collect();
            let mut flags = Vec::new();
            if !v.protected_paths.is_empty() {
                flags.push(format!("protected: {}", v.protected_paths.join(" ")));
            }
            if v.tests_removed > 0 {
                flags.push(format!("{} tests removed", v.tests_removed));
            }
            if v.skips_added > 0 {
                flags.push(format!("{} skips added", v.skips_added));
            }
            let mut checks = checks.join("; ");
            if let Some(grade) = &v.grade {
                let graded = match grade.verdict.as_str() {
                    "pass" => "rubric passed".to_string(),
                    _ => "rubric: needs revision".to_string(),
                };
                checks = match checks.as_str() {
                    "" => graded,
                    _ => format!("{checks}; {graded}"),
                };
            }
            vec![
                s.id.clone(),
                v.round.to_string(),
                a.attempt.to_string(),
                short(&v.head_commit).to_string(),
                truncate(&checks, 60),
                truncate(&flags.join("; "), 40),
            ]
        })
        .collect();
    println!();
    print_table(
        &["STEP", "ROUND", "ATTEMPT", "HEAD", "CHECKS", "FLAGGED"],
        &rows,
    );
    // The last round of each step: the end of each check that failed.
    for step in &task.steps {
        let Some(last) = step
            .attempts
            .iter()
            .rev()
            .find_map(|a| a.verification.as_ref())
        else {
            continue;
        };
        for check in last.checks.iter().filter(|c| !c.passed) {
            println!(
                "\nStep {} round {}, check {}: the end of its output:",
                step.id, last.round, check.name
            );
            let lines: Vec<&str> = check.tail.lines().collect();
            for line in &lines[lines.len().saturating_sub(12)..] {
                println!("  {line}");
            }
        }
        if let Some(grade) = last.grade.as_ref().filter(|g| g.verdict != "pass") {
            println!(
                "\nStep {} round {}: the grader ({}) found it needs revision:",
                step.id, last.round, grade.model
            );
            for reason in &grade.reasons {
                println!("  - {reason}");
            }
        }
    }
}
