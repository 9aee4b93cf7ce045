//! How `tidewright get` prints: aligned tables for people, JSON or YAML for
//! programs. The JSON and YAML shapes are the views below, kept stable.

use serde::Serialize;
use tidewright_api::convert::{micros, now_micros};
use tidewright_api::v1;
use tidewright_api::view::{
    AgentView, AuditView, LandView, RepoView, ServerView, TaskView, agent_view, attempt_state_name,
    audit_view, landing_queue_view, rfc3339, server_view, task_view,
};
pub use tidewright_api::view::{format_utc, step_state_name, task_state_name};
use tidewright_core::repo::DELIVER_STEP;

use crate::args::Format;

/// `$0.0123`, or "" when nothing was spent.
pub fn usd(cost: &Option<v1::Cost>) -> String {
    match cost {
        Some(c) if *c != v1::Cost::default() => format!("${:.4}", c.usd),
        _ => String::new(),
    }
}

/// `$5, 1000 tokens`: the parts of a budget that are set; `-` for none.
pub fn limits(usd: Option<f64>, tokens: Option<u64>) -> String {
    let mut parts = Vec::new();
    if let Some(usd) = usd {
        parts.push(format!("${usd}"));
    }
    if let Some(tokens) = tokens {
        parts.push(format!("{tokens} tokens"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// Prints `value` for programs (`names`, one per line, for `-o name`);
/// false for a table, which the caller prints.
pub fn emit<T: Serialize, N: std::fmt::Display>(
    value: &T,
    names: impl IntoIterator<Item = N>,
    format: Format,
) -> anyhow::Result<bool> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Format::Name => names.into_iter().for_each(|name| println!("{name}")),
        Format::Table => return Ok(false),
    }
    Ok(true)
}

pub fn tasks(tasks: &[v1::Task], format: Format) -> anyhow::Result<()> {
    let views: Vec<TaskView> = tasks.iter().map(task_view).collect();
    if emit(&views, views.iter().map(|v| &v.id), format)? {
        return Ok(());
    }
    let now = now_micros();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let spec = t.spec.clone().unwrap_or_default();
            vec![
                t.id.clone(),
                t.tenant.clone(),
                spec.name,
                task_state_name(t.state).to_string(),
                spec.steps.len().to_string(),
                usd(&t.cost),
                t.created_at
                    .as_ref()
                    .map(|c| age(now - micros(c)))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &["ID", "TENANT", "NAME", "STATE", "STEPS", "COST", "AGE"],
        &rows,
    );
    Ok(())
}

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
                a.session_id.clone(),
                truncate(&a.error, 50),
            ]
        })
        .collect();
    if !attempts.is_empty() {
        println!();
        print_table(
            &[
                "STEP", "ATTEMPT", "WORKER", "STARTED", "DURATION", "RESULT", "COST", "SESSION",
                "REASON",
            ],
            &attempts,
        );
    }
    rounds(task);
    Ok(())
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

/// The control plane's replicas: who leads, since when, at which epoch.
pub fn servers(servers: &[v1::ControlPlaneServer], format: Format) -> anyhow::Result<()> {
    let views: Vec<ServerView> = servers.iter().map(server_view).collect();
    if emit(&views, views.iter().map(|v| &v.name), format)? {
        return Ok(());
    }
    let now = now_micros();
    let ago = |ts: &Option<prost_types::Timestamp>| {
        ts.as_ref()
            .map(|t| age(now - micros(t)))
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.address.clone(),
                if s.leading { "leader" } else { "standby" }.into(),
                s.epoch.to_string(),
                if s.leading {
                    ago(&s.leading_since)
                } else {
                    "-".into()
                },
                ago(&s.seen_at),
                ago(&s.started_at),
            ]
        })
        .collect();
    print_table(
        &["NAME", "ADDRESS", "ROLE", "EPOCH", "LEADING", "SEEN", "AGE"],
        &rows,
    );
    Ok(())
}

/// Each base's landing queue: a row a task, in its queue's order.
pub fn landings(queues: &[v1::LandingQueue], format: Format) -> anyhow::Result<()> {
    let views: Vec<_> = queues.iter().map(landing_queue_view).collect();
    let ids = queues
        .iter()
        .flat_map(|q| &q.tasks)
        .filter(|t| !t.task_id.is_empty())
        .map(|t| &t.task_id);
    if emit(&views, ids, format)? {
        return Ok(());
    }
    let now = now_micros();
    let rows: Vec<Vec<String>> = queues
        .iter()
        .flat_map(|q| {
            q.tasks.iter().enumerate().map(move |(place, t)| {
                let (task, name) = if t.task_id.is_empty() {
                    ("(another tenant's)".to_string(), String::new())
                } else {
                    (t.task_id.clone(), t.task_name.clone())
                };
                vec![
                    q.repo_url.clone(),
                    q.base.clone(),
                    (place + 1).to_string(),
                    task,
                    name,
                    if t.landing { "landing" } else { "waiting" }.to_string(),
                    t.since
                        .as_ref()
                        .map(|s| age(now - micros(s)))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        println!("No task is landing or waiting to land.");
        return Ok(());
    }
    print_table(
        &["REPO", "BASE", "PLACE", "TASK", "NAME", "STATE", "FOR"],
        &rows,
    );
    Ok(())
}

/// The connected workers, then those that left lately (`gone`), with why.
/// The fleet as a table, then the control plane's build under it.
pub fn agents(
    agents: &[v1::Agent],
    gone: &[v1::Agent],
    server: Option<&v1::Build>,
    format: Format,
) -> anyhow::Result<()> {
    let views: Vec<AgentView> = agents.iter().chain(gone).map(agent_view).collect();
    if emit(&views, views.iter().map(|v| &v.name), format)? {
        return Ok(());
    }
    let now = now_micros();
    let mut rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                pool_shown(&a.pool),
                a.capabilities.join(","),
                format!("{}/{}", a.running, a.slots),
                match (&a.paused_until, a.max_concurrent_agents) {
                    (Some(until), _) => format!(
                        "paused {}s: {}",
                        ((micros(until) - now) / 1_000_000).max(0),
                        truncate(&a.pause_reason, 60)
                    ),
                    (None, 0) => "-".into(),
                    (None, cap) => format!("at most {cap} at once"),
                },
                a.connected_at
                    .as_ref()
                    .map(|c| age(now - micros(c)))
                    .unwrap_or_default(),
                isolation_shown(&a.isolation),
            ]
        })
        .collect();
    rows.extend(gone.iter().map(|g| {
        let ago = g
            .gone_at
            .as_ref()
            .map(|at| age(now - micros(at)))
            .unwrap_or_default();
        vec![
            g.name.clone(),
            pool_shown(&g.pool),
            g.capabilities.join(","),
            "gone".into(),
            format!("gone {ago} ago: {}", truncate(&g.gone_reason, 60)),
            String::new(),
            isolation_shown(&g.isolation),
        ]
    }));
    print_table(
        &[
            "NAME",
            "POOL",
            "CAPABILITIES",
            "BUSY",
            "AGENTS",
            "AGE",
            "ISOLATION",
        ],
        &rows,
    );
    if let Some(server) = server {
        let build = tidewright_core::build::Build {
            version: server.version.clone(),
            commit: server.commit.clone(),
            built_at: server.built_at.as_ref().map_or(0, micros),
        };
        println!("\nControl plane: tidewright {}", build.describe());
    }
    Ok(())
}

/// A worker's pool, `-` for none.
fn pool_shown(pool: &str) -> String {
    match pool {
        "" => "-".into(),
        pool => pool.to_string(),
    }
}

/// The sandbox's name, and the version managers (or directories) its steps
/// may read besides; `-o json` has the whole.
fn isolation_shown(isolation: &str) -> String {
    let Some((sandbox, rest)) = isolation.split_once(':') else {
        return match isolation {
            "" => "-".into(),
            whole => whole.to_string(),
        };
    };
    let reads = rest
        .split("; ")
        .find_map(|part| part.strip_prefix("reads "))
        .map(|reads| {
            reads
                .split(", ")
                .map(|r| r.split_whitespace().next().unwrap_or(r))
                .collect::<Vec<_>>()
                .join(", ")
        });
    match reads {
        Some(reads) => format!("{sandbox}, reads {reads}"),
        None => sandbox.to_string(),
    }
}

pub fn audit(events: &[v1::AuditEvent], format: Format) -> anyhow::Result<()> {
    let views: Vec<AuditView> = events.iter().map(audit_view).collect();
    if emit(&views, views.iter().map(|v| v.seq), format)? {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .into_iter()
        .map(|v| {
            let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
            vec![
                v.seq.to_string(),
                v.time,
                format!("{} ({})", v.actor, v.role),
                v.action,
                dash(v.tenant),
                dash(v.task_id),
                truncate(&v.outcome, 60),
            ]
        })
        .collect();
    print_table(
        &["SEQ", "TIME", "WHO", "ACTION", "TENANT", "TASK", "OUTCOME"],
        &rows,
    );
    Ok(())
}

pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("   ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// `42s`, `5m`, `3h`, `2d`.
pub fn age(micros: i64) -> String {
    let s = micros.max(0) / 1_000_000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `850ms`, `3.2s`, `4m05s`.
pub fn duration(micros: i64) -> String {
    let ms = micros.max(0) / 1000;
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// A commit as people read it: its first twelve digits.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// A man page for `command` and one for each of its subcommands, at every
/// depth (`tidewright-schedule-create.1`), written into `dir`.
pub fn man_pages(command: clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let mut pending = vec![(command.get_name().to_string(), command)];
    while let Some((name, mut command)) = pending.pop() {
        command = command.bin_name(name.replace('-', " "));
        command.build();
        for sub in command.get_subcommands() {
            if !sub.is_hide_set() && sub.get_name() != "help" {
                pending.push((format!("{name}-{}", sub.get_name()), sub.clone()));
            }
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .title(name.clone())
            .render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_shows_the_sandbox_and_what_its_steps_read_besides() {
        assert_eq!(
            isolation_shown(
                "bubblewrap 0.8.0: namespaces user, pid; no capabilities; reads pyenv /home/me/.pyenv, /opt/tools; memory 2 GiB"
            ),
            "bubblewrap 0.8.0, reads pyenv, /opt/tools"
        );
        assert_eq!(
            isolation_shown("bubblewrap 0.8.0: namespaces user; no capabilities"),
            "bubblewrap 0.8.0"
        );
        assert_eq!(isolation_shown(""), "-");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_utc(1_795_307_696_123_000),
            "2026-11-22T00:34:56.123Z"
        );
        assert_eq!(format_utc(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn human_durations() {
        assert_eq!(duration(850_000), "850ms");
        assert_eq!(duration(3_200_000), "3.2s");
        assert_eq!(duration(245_000_000), "4m05s");
        assert_eq!(age(7_200_000_000), "2h");
    }
}
