//! How `orca get` prints: aligned tables for people, JSON or YAML for
//! programs. The JSON and YAML shapes are the views below, kept stable.

use std::collections::BTreeMap;

use orca_api::convert::{micros, now_micros};
use orca_api::v1;
use serde::Serialize;

use crate::args::Format;

pub fn task_state_name(state: i32) -> &'static str {
    match v1::TaskState::try_from(state) {
        Ok(v1::TaskState::Queued) => "queued",
        Ok(v1::TaskState::Running) => "running",
        Ok(v1::TaskState::Succeeded) => "succeeded",
        Ok(v1::TaskState::Failed) => "failed",
        Ok(v1::TaskState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

pub fn step_state_name(state: i32) -> &'static str {
    match v1::StepState::try_from(state) {
        Ok(v1::StepState::Waiting) => "waiting",
        Ok(v1::StepState::Queued) => "queued",
        Ok(v1::StepState::Running) => "running",
        Ok(v1::StepState::Succeeded) => "succeeded",
        Ok(v1::StepState::Failed) => "failed",
        Ok(v1::StepState::Cancelled) => "cancelled",
        Ok(v1::StepState::Skipped) => "skipped",
        _ => "unknown",
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskView {
    id: String,
    tenant: String,
    name: String,
    state: &'static str,
    priority: i32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<CostView>,
    /// The OpenTelemetry trace of the task, to look up in a tracing backend.
    #[serde(skip_serializing_if = "String::is_empty")]
    trace_id: String,
    /// The task's prompt, when it was one.
    #[serde(skip_serializing_if = "String::is_empty")]
    prompt: String,
    /// A planned task's plan as the model answered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<StepView>,
}

/// What something cost; left out when nothing was spent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CostView {
    usd: f64,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
}

fn cost_view(cost: &Option<v1::Cost>) -> Option<CostView> {
    cost.as_ref()
        .filter(|c| **c != v1::Cost::default())
        .map(|c| CostView {
            usd: c.usd,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cache_read_tokens: c.cache_read_tokens,
            cache_creation_tokens: c.cache_creation_tokens,
        })
}

/// `$0.0123`, or "" when nothing was spent.
pub fn usd(cost: &Option<v1::Cost>) -> String {
    match cost {
        Some(c) if *c != v1::Cost::default() => format!("${:.4}", c.usd),
        _ => String::new(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepView {
    id: String,
    state: &'static str,
    attempt: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    worker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    progress: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<CostView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attempts: Vec<AttemptView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttemptView {
    attempt: u32,
    worker: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    session_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<CostView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentView {
    id: String,
    name: String,
    pool: String,
    capabilities: Vec<String>,
    slots: u32,
    running: u32,
    connected_at: Option<String>,
    peer: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerView {
    name: String,
    address: String,
    leading: bool,
    epoch: i64,
    started_at: Option<String>,
    leading_since: Option<String>,
    seen_at: Option<String>,
}

fn rfc3339(ts: &Option<prost_types::Timestamp>) -> Option<String> {
    ts.as_ref().map(|t| format_utc(micros(t)))
}

fn task_view(task: &v1::Task) -> TaskView {
    let spec = task.spec.clone().unwrap_or_default();
    TaskView {
        id: task.id.clone(),
        tenant: task.tenant.clone(),
        name: spec.name,
        state: task_state_name(task.state),
        priority: spec.priority,
        labels: spec.labels.into_iter().collect(),
        message: task.message.clone(),
        created_at: rfc3339(&task.created_at).unwrap_or_default(),
        started_at: rfc3339(&task.started_at),
        finished_at: rfc3339(&task.finished_at),
        cost: cost_view(&task.cost),
        trace_id: task.trace_id.clone(),
        prompt: spec.prompt.clone(),
        plan: (!task.plan_json.is_empty()).then(|| {
            serde_json::from_str(&task.plan_json)
                .unwrap_or(serde_json::Value::String(task.plan_json.clone()))
        }),
        steps: task
            .steps
            .iter()
            .map(|s| StepView {
                id: s.id.clone(),
                state: step_state_name(s.state),
                attempt: s.attempt,
                worker: s.worker.clone(),
                started_at: rfc3339(&s.started_at),
                finished_at: rfc3339(&s.finished_at),
                progress: s.progress,
                exit_code: s.exit_code,
                output: (!s.output_json.is_empty()).then(|| {
                    serde_json::from_str(&s.output_json)
                        .unwrap_or(serde_json::Value::String(s.output_json.clone()))
                }),
                error: s.error.clone(),
                cost: cost_view(&s.cost),
                attempts: s
                    .attempts
                    .iter()
                    .map(|a| AttemptView {
                        attempt: a.attempt,
                        worker: a.worker.clone(),
                        state: attempt_state_name(a.state),
                        started_at: rfc3339(&a.started_at),
                        finished_at: rfc3339(&a.finished_at),
                        exit_code: a.exit_code,
                        error: a.error.clone(),
                        session_id: a.session_id.clone(),
                        model: a.model.clone(),
                        cost: cost_view(&a.cost),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Prints `value` for programs (`names`, one per line, for `-o name`);
/// false for a table, which the caller prints.
fn emit<T: Serialize, N: std::fmt::Display>(
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
    println!();
    let rows: Vec<Vec<String>> = task
        .steps
        .iter()
        .map(|s| {
            let took = match (&s.started_at, &s.finished_at) {
                (Some(a), Some(b)) => duration(micros(b) - micros(a)),
                _ => String::new(),
            };
            let detail = if !s.error.is_empty() {
                s.error.clone()
            } else {
                s.output_json.clone()
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
    Ok(())
}

/// An attempt that went back to the queue lost its worker.
fn attempt_state_name(state: i32) -> &'static str {
    match step_state_name(state) {
        "queued" => "lost",
        other => other,
    }
}

/// The control plane's replicas: who leads, since when, at which epoch.
pub fn servers(servers: &[v1::ControlPlaneServer], format: Format) -> anyhow::Result<()> {
    let views: Vec<ServerView> = servers
        .iter()
        .map(|s| ServerView {
            name: s.name.clone(),
            address: s.address.clone(),
            leading: s.leading,
            epoch: s.epoch,
            started_at: rfc3339(&s.started_at),
            leading_since: rfc3339(&s.leading_since),
            seen_at: rfc3339(&s.seen_at),
        })
        .collect();
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

pub fn agents(agents: &[v1::Agent], format: Format) -> anyhow::Result<()> {
    let views: Vec<AgentView> = agents
        .iter()
        .map(|a| AgentView {
            id: a.id.clone(),
            name: a.name.clone(),
            pool: a.pool.clone(),
            capabilities: a.capabilities.clone(),
            slots: a.slots,
            running: a.running,
            connected_at: rfc3339(&a.connected_at),
            peer: a.peer.clone(),
        })
        .collect();
    if emit(&views, views.iter().map(|v| &v.name), format)? {
        return Ok(());
    }
    let now = now_micros();
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                if a.pool.is_empty() {
                    "-".into()
                } else {
                    a.pool.clone()
                },
                a.capabilities.join(","),
                format!("{}/{}", a.running, a.slots),
                a.connected_at
                    .as_ref()
                    .map(|c| age(now - micros(c)))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["NAME", "POOL", "CAPABILITIES", "BUSY", "AGE"], &rows);
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditView {
    seq: u64,
    time: String,
    actor: String,
    role: String,
    action: String,
    tenant: String,
    task_id: String,
    outcome: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

pub fn audit(events: &[v1::AuditEvent], format: Format) -> anyhow::Result<()> {
    let views: Vec<AuditView> = events
        .iter()
        .map(|e| AuditView {
            seq: e.seq,
            time: rfc3339(&e.time).unwrap_or_default(),
            actor: e.actor.clone(),
            role: e.role.clone(),
            action: e.action.clone(),
            tenant: e.tenant.clone(),
            task_id: e.task_id.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
        })
        .collect();
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

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
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

/// RFC 3339 in UTC, to the millisecond.
pub fn format_utc(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
