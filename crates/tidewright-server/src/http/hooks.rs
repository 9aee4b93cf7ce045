//! Forge webhooks on the HTTP port: `/hooks/github` and `/hooks/gitlab`.
//! Each delivery is checked first:
//!
//! - GitHub's `X-Hub-Signature-256` must be the HMAC-SHA256 of the body
//!   with the hook's secret;
//! - GitLab's `X-Gitlab-Token` must be the secret itself.
//!
//! A delivery that fails the check is refused (401) and does nothing. A
//! delivery is taken once by its id (GitHub's `X-GitHub-Delivery`, GitLab's
//! `X-Gitlab-Event-UUID`); a redelivery is answered and ignored. A delivery
//! about a repository's pull requests (a check, a status, a pipeline, a
//! review, a comment on a line, the pull request itself) has each deliver
//! step following a pull request there look at it at once, rather than at
//! its next poll. A delivery of an event triggers read (an issue
//! labelled, a comment on a pull request, a failed check suite or
//! pipeline) starts the task of each trigger it matches. The secret is a
//! file in the control plane's repository secrets directory, named by
//! `--forge-hooks-secret`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use tidewright_engine::Error as Refusal;

use super::app::App;
use crate::auth::forge_hooks::ForgeHooks;
use crate::error::Error;

/// GitHub's events about a pull request or the commits on it.
const GITHUB_EVENTS: &[&str] = &[
    "check_run",
    "check_suite",
    "status",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
];

/// GitLab's.
const GITLAB_EVENTS: &[&str] = &[
    "Pipeline Hook",
    "Job Hook",
    "Merge Request Hook",
    "Note Hook",
];

pub fn routes(max_body: usize) -> Router<Arc<App>> {
    Router::new()
        .route("/hooks/github", post(github))
        .route("/hooks/gitlab", post(gitlab))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn unauthenticated(message: &str) -> Error {
    Error::Service(Refusal::Unauthenticated(message.into()))
}

/// The hooks, or why this control plane takes none.
fn hooks(app: &App) -> Result<&ForgeHooks, Error> {
    app.forge_hooks().ok_or_else(|| {
        Error::Service(Refusal::NotFound(
            "forge hooks on this control plane (start it with --forge-hooks-secret NAME)".into(),
        ))
    })
}

async fn github(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = async {
        let hooks = hooks(&app)?;
        let signature = header(&headers, "x-hub-signature-256");
        if signature.is_empty() {
            return Err(unauthenticated(
                "X-Hub-Signature-256 is missing: the hook must be given this control plane's hook secret",
            ));
        }
        if !hooks.signed(signature, &body) {
            return Err(unauthenticated(
                "X-Hub-Signature-256 is not the body's signature with this control plane's hook secret",
            ));
        }
        let delivery = required(&headers, "X-GitHub-Delivery")?;
        let event = required(&headers, "X-GitHub-Event")?;
        let payload = json_body(&body)?;
        let project = payload["repository"]["full_name"]
            .as_str()
            .unwrap_or_default();
        let why = format!(
            "GitHub's {event}{} on {project}",
            payload["action"]
                .as_str()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        );
        let wakes = GITHUB_EVENTS.contains(&event);
        let starts = tidewright_core::trigger::github_event(event, &payload);
        taken(&app, hooks, (delivery, event), (wakes, project, why), starts).await
    }
    .await;
    answer.unwrap_or_else(IntoResponse::into_response)
}

async fn gitlab(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = async {
        let hooks = hooks(&app)?;
        let token = header(&headers, "x-gitlab-token");
        if token.is_empty() {
            return Err(unauthenticated(
                "X-Gitlab-Token is missing: the hook must be given this control plane's hook secret",
            ));
        }
        if !hooks.same_token(token) {
            return Err(unauthenticated(
                "X-Gitlab-Token is not this control plane's hook secret",
            ));
        }
        // GitLab names a delivery by its event's UUID; newer releases also
        // send an Idempotency-Key.
        let delivery = match header(&headers, "idempotency-key") {
            "" => required(&headers, "X-Gitlab-Event-UUID")?,
            id => id,
        };
        let event = required(&headers, "X-Gitlab-Event")?;
        let payload = json_body(&body)?;
        let project = payload["project"]["path_with_namespace"]
            .as_str()
            .unwrap_or_default();
        let why = format!("GitLab's {event} on {project}");
        let wakes = GITLAB_EVENTS.contains(&event);
        let starts = tidewright_core::trigger::gitlab_event(event, &payload);
        taken(&app, hooks, (delivery, event), (wakes, project, why), starts).await
    }
    .await;
    answer.unwrap_or_else(IntoResponse::into_response)
}

fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Error> {
    match header(headers, &name.to_ascii_lowercase()) {
        "" => Err(Error::invalid(
            name,
            "required: a forge's delivery names it",
        )),
        value => Ok(value),
    }
}

fn json_body(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("is not a JSON event: {e}")))
}

/// Takes delivery `id` once: when it is new and about a repository's pull
/// requests, the steps following one there look now; when it is an event
/// triggers read (`starts`), each trigger of it starts its task. Answers
/// what came of it.
async fn taken(
    app: &App,
    hooks: &ForgeHooks,
    (delivery, event): (&str, &str),
    (wakes, project, why): (bool, &str, String),
    starts: Option<tidewright_core::trigger::Event>,
) -> Result<Response, Error> {
    let Some(engine) = app.engine() else {
        // Not the leader (standing by, starting): the forge may deliver
        // again; the poll looks meanwhile. Not taken, so a redelivery
        // here, once leading, is.
        return Err(Error::Service(Refusal::Unavailable(
            "this control plane does not lead now".into(),
        )));
    };
    if !hooks.take(delivery) {
        return Ok((
            StatusCode::OK,
            axum::Json(json!({
                "delivery": delivery,
                "taken": false,
                "why": "this delivery was taken already",
            })),
        )
            .into_response());
    }
    let done = async {
        let looked = if wakes && !project.is_empty() {
            engine.forge_event(project.to_string(), why).await?
        } else {
            0
        };
        // A trigger's task is started under the delivery's id as its key:
        // a delivery taken again (after a failure here, or a failover)
        // finds the task it started.
        let fired = match starts {
            Some(event) => {
                let delivery = tidewright_engine::service::Delivery {
                    id: delivery.to_string(),
                    event,
                };
                app.services()?.triggers.deliver(delivery).await?
            }
            None => Vec::new(),
        };
        Ok::<_, Error>((looked, fired))
    }
    .await;
    let (looked, fired) = done.inspect_err(|_| hooks.give_back(delivery))?;
    let fired: Vec<Value> = fired
        .into_iter()
        .map(|f| {
            json!({
                "tenant": f.tenant,
                "trigger": f.trigger,
                "taskId": f.task_id,
                "refused": f.refused,
            })
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "delivery": delivery,
            "event": event,
            "taken": true,
            "looked": looked,
            "triggered": fired,
        })),
    )
        .into_response())
}
