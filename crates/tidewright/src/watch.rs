//! `tidewright watch` and `submit --watch`: follows a task's events live. On a
//! terminal each step gets a progress bar; elsewhere each event is a line.
//! A broken stream is resumed (by `tidewright-client`) from the last sequence
//! number seen, so nothing is missed or shown twice. When a program reads standard output
//! (`-o json`), the live view goes to standard error instead.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tidewright_api::convert::micros;
use tidewright_api::v1;
use tidewright_api::v1::event::Kind;

use crate::output::{duration, step_state_name, task_state_name};
use tidewright_client::Client;

/// Where the live view and the summary are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
}

impl Out {
    pub fn line(self, text: &str) {
        match self {
            Out::Stdout => println!("{text}"),
            Out::Stderr => eprintln!("{text}"),
        }
    }
}

/// 0 when the task succeeded, 1 otherwise.
pub fn exit_code(task: &v1::Task) -> ExitCode {
    if task.state == v1::TaskState::Succeeded as i32 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Shows the task live until it ends, then a summary; answers the ended
/// task. The library's stream resumes a broken connection by itself.
pub async fn follow(client: &Client, task_id: &str, out: Out) -> anyhow::Result<v1::Task> {
    use futures::StreamExt;
    let task = client.get(task_id).await?;
    let mut view = View::new(&task, out);
    let mut events = client.watch(task_id);
    let mut outcome = Ok(());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => view.apply(&event),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    view.finish();
    match outcome {
        Err(tidewright_client::Error::StreamLost { .. }) => {
            bail!("lost the stream of task {task_id}; resume with `tidewright watch {task_id}`")
        }
        outcome => outcome?,
    }
    let task = client.get(task_id).await?;
    print_summary(&task, out);
    Ok(task)
}

fn print_summary(task: &v1::Task, out: Out) {
    let took = match (&task.started_at, &task.finished_at) {
        (Some(a), Some(b)) => format!(" in {}", duration(micros(b) - micros(a))),
        _ => String::new(),
    };
    out.line(&format!(
        "task {} {}{took}",
        task.id,
        task_state_name(task.state)
    ));
    if !task.message.is_empty() {
        out.line(&format!("  {}", task.message));
    }
    // The result of a DAG is the output of the steps nothing depends on.
    let spec = task.spec.clone().unwrap_or_default();
    let depended_on: std::collections::HashSet<&str> = spec
        .steps
        .iter()
        .flat_map(|s| s.depends_on.iter().map(String::as_str))
        .collect();
    for step in &task.steps {
        if !depended_on.contains(step.id.as_str()) && !step.output_json.is_empty() {
            out.line(&format!("result ({}): {}", step.id, step.output_json));
        }
    }
}

enum Display {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Lines {
        start: i64,
        out: Out,
    },
}

struct View {
    display: Display,
}

impl View {
    fn new(task: &v1::Task, out: Out) -> Self {
        if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{prefix:>16} [{bar:30}] {percent:>3}% {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            let width = task
                .steps
                .iter()
                .map(|s| s.id.len())
                .max()
                .unwrap_or(0)
                .min(16);
            let bars = task
                .steps
                .iter()
                .map(|s| {
                    let bar = multi.add(ProgressBar::new(100));
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("{:>width$}", s.id));
                    bar.set_message(step_state_name(s.state));
                    (s.id.clone(), bar)
                })
                .collect();
            View {
                display: Display::Bars { multi, bars },
            }
        } else {
            let start = task.created_at.as_ref().map(micros).unwrap_or(0);
            View {
                display: Display::Lines { start, out },
            }
        }
    }

    /// Shows one event.
    fn apply(&mut self, event: &v1::Event) {
        let Some(kind) = &event.kind else {
            return;
        };
        // The log lines say what the agent says and does already; the
        // items are for replay.
        if matches!(kind, Kind::SessionItem(_)) {
            return;
        }
        match &mut self.display {
            Display::Bars { multi, bars } => match kind {
                Kind::StepState(s) => {
                    if let Some(bar) = bars.get(&s.step_id) {
                        let state = step_state_name(s.state);
                        let message = match (state, s.worker.is_empty(), s.message.is_empty()) {
                            ("running", false, _) => {
                                format!("running on {} (attempt {})", s.worker, s.attempt)
                            }
                            (_, _, false) => format!("{state}: {}", s.message),
                            _ => state.to_string(),
                        };
                        if state == "succeeded" {
                            bar.set_position(100);
                        }
                        bar.set_message(message);
                    }
                }
                Kind::Progress(p) => {
                    if let Some(bar) = bars.get(&p.step_id) {
                        bar.set_position((p.fraction * 100.0).round() as u64);
                        if !p.message.is_empty() {
                            bar.set_message(format!("running: {}", p.message));
                        }
                    }
                }
                Kind::Log(l) => {
                    let _ = multi.println(format!("{} | {}", l.step_id, l.line));
                }
                Kind::Egress(e) => {
                    let _ = multi.println(format!("{} | {}", e.step_id, egress_line(e)));
                }
                Kind::Verification(v) => {
                    let _ = multi.println(format!("{} | {}", v.step_id, v.message));
                }
                Kind::FailedOver(f) => {
                    let _ = multi.println(format!("{} | {}", f.step_id, failed_over_line(f)));
                }
                Kind::Setup(s) => {
                    let _ = multi.println(format!("{} | {}", s.step_id, setup_line(s)));
                }
                Kind::Steered(s) => {
                    let _ = multi.println(format!("{} | {}", s.step_id, steered_line(s)));
                }
                Kind::TaskState(_) | Kind::SessionItem(_) => {}
            },
            Display::Lines { start, out } => {
                let at = event.time.as_ref().map(micros).unwrap_or(*start);
                let offset = (at - *start) as f64 / 1e6;
                let line = match kind {
                    Kind::TaskState(t) if t.message.is_empty() => {
                        format!("task {}", task_state_name(t.state))
                    }
                    Kind::TaskState(t) => {
                        format!("task {}: {}", task_state_name(t.state), t.message)
                    }
                    Kind::StepState(s) => {
                        let mut line = format!("{}: {}", s.step_id, step_state_name(s.state));
                        if s.state == v1::StepState::Running as i32 {
                            line.push_str(&format!(" (attempt {} on {})", s.attempt, s.worker));
                        }
                        if !s.message.is_empty() {
                            line.push_str(&format!(": {}", s.message));
                        }
                        line
                    }
                    Kind::Progress(p) => {
                        format!("{}: {:.0}% {}", p.step_id, p.fraction * 100.0, p.message)
                    }
                    Kind::Log(l) => format!("{} | {}", l.step_id, l.line),
                    Kind::Egress(e) => format!("{}: {}", e.step_id, egress_line(e)),
                    Kind::Verification(v) => format!("{}: {}", v.step_id, v.message),
                    Kind::FailedOver(f) => format!("{}: {}", f.step_id, failed_over_line(f)),
                    Kind::Setup(s) => format!("{}: {}", s.step_id, setup_line(s)),
                    Kind::Steered(s) => format!("{}: {}", s.step_id, steered_line(s)),
                    Kind::SessionItem(_) => return,
                };
                out.line(&format!("[{offset:>7.2}s] {}", line.trim_end()));
            }
        }
    }

    fn finish(&mut self) {
        if let Display::Bars { bars, .. } = &self.display {
            for bar in bars.values() {
                bar.abandon();
            }
        }
    }
}

/// `setup: seed 3f2a9c1b0d4e from this worker, laid over in 12 ms (its
/// setup took 14.2 s)`.
fn setup_line(s: &v1::StepSetup) -> String {
    let report = tidewright_core::setup::SetupReport::from(s.setup.clone().unwrap_or_default());
    format!("setup: {}", report.summary())
}

/// `steered by dana (mid-turn): "Use the v2 API instead."`.
fn steered_line(s: &v1::StepSteered) -> String {
    format!("steered by {} ({}): {:?}", s.from, s.delivery, s.message)
}

/// `failed over from claude-code to codex, with its work: why`.
fn failed_over_line(f: &v1::StepFailedOver) -> String {
    let carried = if f.carried { ", with its work" } else { "" };
    format!(
        "failed over from {} to {}{carried}: {}",
        f.from, f.to, f.reason
    )
}

/// `egress allowed api.github.com:443`, `egress refused 169.254.169.254:80:
/// why`.
fn egress_line(e: &v1::StepEgress) -> String {
    match (e.allowed, e.reason.is_empty()) {
        (true, _) => format!("egress allowed {}", e.destination),
        (false, true) => format!("egress refused {}", e.destination),
        (false, false) => format!("egress refused {}: {}", e.destination, e.reason),
    }
}
