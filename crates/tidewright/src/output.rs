//! How `tidewright get` prints: aligned tables for people, JSON or YAML for
//! programs. The JSON and YAML shapes are the views below, kept stable.

use serde::Serialize;
use tidewright_api::convert::{micros, now_micros};
use tidewright_api::v1;
use tidewright_api::view::{
    AgentView, AuditView, ServerView, TaskView, agent_view, audit_view, landing_queue_view,
    server_view, task_view,
};
pub use tidewright_api::view::{format_utc, step_state_name, task_state_name};

use crate::args::Format;

mod task;
pub use task::task;

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

pub use tidewright_core::human_bytes as bytes;

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
