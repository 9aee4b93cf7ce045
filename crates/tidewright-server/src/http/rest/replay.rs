//! A step's session replay: as JSON, or as one self-contained HTML file
//! to keep or send (`?format=html`: no script, no request of its own).

use std::fmt::Write as _;

use tidewright_api::view::{
    AttemptView, EntryView, ReplayView, StepView, WhatView, entry_view, task_view,
};
use tidewright_engine::service::StepReplay;

use super::*;

/// What the replay is answered as.
#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
pub(super) enum ReplayFormat {
    Json,
    Html,
}

#[utoipa::path(get, path = "/tasks/{id}/steps/{step}/replay", tag = "tasks",
    summary = "An agent step's session as a timeline: turns, tool calls with their inputs and outputs, verify rounds, cost so far",
    params(("id" = String, Path, description = "the task id"),
        ("step" = String, Path, description = "the step"),
        ("format" = Option<ReplayFormat>, Query, description = "json (the default), or html: one self-contained file")),
    responses((status = 200, description = "the replay", content(
            (ReplayView = "application/json"),
            (String = "text/html"))),
        (status = 404, body = ErrorBody), Refused))]
pub(super) async fn step_replay(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((task_id, step_id)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let mut format = ReplayFormat::Json;
    for (name, value) in query {
        match name.as_str() {
            "format" => {
                format = serde_json::from_value(serde_json::Value::String(value.clone())).map_err(
                    |_| Error::invalid("format", format!("{value:?} is not json or html")),
                )?;
            }
            other => return Err(Error::invalid(other, "not a parameter of the replay").into()),
        }
    }
    let request = StepRef { task_id, step_id };
    let replay = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.step_replay(r).await
    })
    .await?;
    let view = replay_view(replay)?;
    Ok(match format {
        ReplayFormat::Json => Json(view).into_response(),
        ReplayFormat::Html => {
            let name = format!("replay-{}-{}.html", view.task_id, view.step.id);
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
                    // The page is data: nothing in it may run or load.
                    (
                        header::CONTENT_SECURITY_POLICY,
                        "default-src 'none'; style-src 'unsafe-inline'".to_string(),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("inline; filename=\"{name}\""),
                    ),
                ],
                page(&view),
            )
                .into_response()
        }
    })
}

fn replay_view(replay: StepReplay) -> Result<ReplayView, Error> {
    let StepReplay {
        task,
        step,
        entries,
        diff,
    } = replay;
    let task_id = task.id.clone();
    let step_id = step.id.clone();
    let view = task_view(&task_to_proto(task));
    let step = view
        .steps
        .into_iter()
        .find(|s| s.id == step_id)
        .ok_or_else(|| {
            Error::Service(tidewright_engine::Error::NotFound(format!(
                "step {step_id:?} of task {task_id}"
            )))
        })?;
    Ok(ReplayView {
        task_id,
        step,
        entries: entries.iter().map(entry_view).collect(),
        diff,
    })
}

/// `text` made safe to place in HTML, as text or in an attribute.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}\
h1{font-size:1.3em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
.entry{border-left:3px solid #ccc;padding:.3em .8em;margin:.6em 0}.prompt{border-color:#36c}.text{border-color:#3a3}\
.call{border-color:#c80}.error{border-color:#c33}.meta{color:#666;font-size:.85em}\
pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5em;margin:.3em 0}";

/// The replay as one HTML page: everything in it, nothing it fetches.
fn page(view: &ReplayView) -> String {
    let step = &view.step;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>replay of {task} / {id}</title><style>{STYLE}</style></head><body>\
         <h1>Replay of step <code>{id}</code> of task <code>{task}</code></h1>\
         <p>{runtime}, {state}{cost}</p>",
        task = escaped(&view.task_id),
        id = escaped(&step.id),
        runtime = escaped(&step.runtime),
        state = step.state,
        cost = step
            .cost
            .as_ref()
            .map(|c| format!(", ${:.4}", c.usd))
            .unwrap_or_default(),
    );
    attempts(&mut html, step);
    html.push_str("<h2>Timeline</h2>");
    for entry in &view.entries {
        entry_html(&mut html, entry);
    }
    if !view.diff.is_empty() {
        let _ = write!(
            html,
            "<h2>The step's changes</h2><pre>{}</pre>",
            escaped(&view.diff)
        );
    }
    html.push_str("</body></html>\n");
    html
}

fn attempts(html: &mut String, step: &StepView) {
    if step.attempts.is_empty() {
        return;
    }
    html.push_str(
        "<h2>Attempts</h2><table><tr><th>attempt</th><th>worker</th><th>state</th>\
         <th>model</th><th>cost</th><th>verify round</th></tr>",
    );
    for a in &step.attempts {
        let AttemptView {
            attempt,
            worker,
            state,
            model,
            cost,
            verification,
            ..
        } = a;
        let cost = cost
            .as_ref()
            .map(|c| format!("${:.4}", c.usd))
            .unwrap_or_default();
        let round = verification
            .as_ref()
            .map(|v| {
                let passed = v.checks.iter().all(|c| c.passed);
                let mut cell = format!(
                    "round {} on {}: {}",
                    v.round,
                    escaped(&v.head_commit),
                    if passed { "passed" } else { "failed" }
                );
                if !v.round_diff.is_empty() {
                    let _ = write!(
                        cell,
                        "<details><summary>what the round changed</summary><pre>{}</pre></details>",
                        escaped(&v.round_diff)
                    );
                }
                cell
            })
            .unwrap_or_default();
        let _ = write!(
            html,
            "<tr><td>{attempt}</td><td>{}</td><td>{state}</td><td>{}</td><td>{cost}</td><td>{round}</td></tr>",
            escaped(worker),
            escaped(model),
        );
    }
    html.push_str("</table>");
}

fn entry_html(html: &mut String, entry: &EntryView) {
    let meta = format!(
        "<div class=\"meta\">{} · attempt {} · turn {} · ${:.4} so far</div>",
        escaped(&entry.time),
        entry.attempt,
        entry.turn,
        entry.usd
    );
    let (class, body) = match &entry.what {
        WhatView::Prompt { text } => ("prompt", format!("<b>told</b><pre>{}</pre>", escaped(text))),
        WhatView::Text { text } => ("text", format!("<b>said</b><pre>{}</pre>", escaped(text))),
        WhatView::Call {
            tool,
            input,
            output,
            error,
            ..
        } => {
            let output = match output {
                Some(output) => format!("<pre>{}</pre>", escaped(output)),
                None => "<i>no output (yet)</i>".to_string(),
            };
            (
                if *error { "call error" } else { "call" },
                format!(
                    "<b>called {}</b><details><summary>input</summary><pre>{}</pre></details>\
                     <details open><summary>output</summary>{output}</details>",
                    escaped(tool),
                    escaped(input)
                ),
            )
        }
        WhatView::State {
            state,
            worker,
            message,
        } => {
            let on = if worker.is_empty() {
                String::new()
            } else {
                format!(" on {}", escaped(worker))
            };
            let why = if message.is_empty() {
                String::new()
            } else {
                format!(": {}", escaped(message))
            };
            ("state", format!("step {}{on}{why}", escaped(state)))
        }
        WhatView::Verification {
            round,
            passed,
            message,
        } => (
            if *passed {
                "verification"
            } else {
                "verification error"
            },
            format!("<b>verify round {round}</b>: {}", escaped(message)),
        ),
        WhatView::Steered {
            from,
            message,
            delivery,
        } => (
            "prompt",
            format!(
                "<b>steered by {}</b> ({})<pre>{}</pre>",
                escaped(from),
                escaped(delivery),
                escaped(message)
            ),
        ),
        WhatView::FailedOver { from, to, reason } => (
            "error",
            format!(
                "failed over from {} to {}: {}",
                escaped(from),
                escaped(to),
                escaped(reason)
            ),
        ),
    };
    let _ = write!(html, "<div class=\"entry {class}\">{meta}{body}</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escaped(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }
}
