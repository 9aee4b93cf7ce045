//! The event streams as Server-Sent Events: one task's, and the fleet's.

use tidewright_engine::service::{WatchFleet, WatchTask};

use super::*;

/// A task's events as server-sent events, each with its sequence number
/// as its id: stored ones first, then live ones until the task finishes
/// (`?follow=false`: the stored ones only). A reconnecting `EventSource`
/// sends `Last-Event-ID` and resumes after it with nothing missed or
/// repeated, as WatchTask does (it is WatchTask, with its per-caller
/// limit on open watches).
#[utoipa::path(get, path = "/tasks/{id}/events", tag = "tasks",
    summary = "A task's events as server-sent events (WatchTask)",
    params(("id" = String, Path, description = "the task id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this event"),
        ("after" = Option<u64>, Query, description = "resume after this event"),
        ("follow" = Option<bool>, Query, description = "false: the stored events only"),
    ),
    responses((status = 200, content_type = "text/event-stream", body = EventView), (status = 404, body = ErrorBody), Refused))]
pub(super) async fn task_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut request = WatchTask {
        task_id,
        after_seq: 0,
        follow: true,
    };
    for (name, value) in query {
        match name.as_str() {
            "after" => request.after_seq = number(&name, &value)?,
            "follow" => {
                request.follow = value.parse().map_err(|_| {
                    Error::invalid("follow", format!("{value:?} is not true or false"))
                })?;
            }
            other => return Err(Error::invalid(other, "not an option of events").into()),
        }
    }
    if let Some(last) = last_event_id(&headers)? {
        request.after_seq = last;
    }
    let events = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.watch_task(r).await
    })
    .await?;
    let stream = events.map(|event| {
        Ok(match event {
            Ok(watched) => sse_event(&wire::watched(&watched), watched.event.seq),
            // The stream ends after this; the client reconnects with its
            // last id.
            Err(e) => SseEvent::default().event("error").data(e.to_string()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where a fleet stream starts: the first message of every one.
#[derive(Serialize, ToSchema)]
pub(super) struct FleetStart {
    /// The position the stream replays after; also the message's id.
    position: u64,
}

/// The events of every task the caller may see, log lines and session
/// items excepted, in commit order, each with its fleet position as its
/// id. The first
/// message, `start`, says where the stream begins (now, unless it resumes):
/// a page that loads a snapshot after it and applies what follows misses
/// nothing. A reconnecting `EventSource` sends `Last-Event-ID` and resumes
/// after it with nothing missed or repeated (it is WatchFleet, with the
/// per-caller limit on open watches).
#[utoipa::path(get, path = "/events", tag = "fleet",
    summary = "The whole fleet's events as server-sent events (WatchFleet)",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this position"),
        ("after" = Option<u64>, Query, description = "resume after this position"),
        ("tenant" = Option<Vec<String>>, Query, description = "only this tenant's tasks (repeat it); each must be one the caller may see"),
    ),
    responses((status = 200, content_type = "text/event-stream", body = EventView,
        description = "first `start` (FleetStart), then one message per event"), Refused))]
pub(super) async fn fleet_events(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let mut request = WatchFleet::default();
    for (name, value) in query {
        match name.as_str() {
            "after" => request.after_position = Some(number(&name, &value)?),
            "tenant" => request.tenants.push(value),
            other => return Err(Error::invalid(other, "not an option of events").into()),
        }
    }
    if let Some(last) = last_event_id(&headers)? {
        request.after_position = Some(last);
    }
    let (events, start) = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.watch_fleet(r).await
    })
    .await?;
    let first = SseEvent::default()
        .id(start.to_string())
        .event("start")
        .json_data(FleetStart { position: start })
        .unwrap_or_default();
    let stream = tokio_stream::once(Ok(first)).chain(events.map(|event| {
        Ok(match event {
            Ok(watched) => sse_event(&wire::watched(&watched), watched.position),
            Err(e) => SseEvent::default().event("error").data(e.to_string()),
        })
    }));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where a reconnecting `EventSource` resumes: after the last id it saw.
/// It wins over the URL's `?after=`, which the browser sends again
/// unchanged on every reconnect.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get("last-event-id")
        .map(|last| number("Last-Event-ID", last.to_str().unwrap_or_default()))
        .transpose()
}

/// An event as one server-sent message: its kind as the message's type,
/// `id` as its id.
fn sse_event(event: &v1::Event, id: u64) -> SseEvent {
    let view = event_view(event);
    SseEvent::default()
        .id(id.to_string())
        .event(view.kind.name())
        .json_data(&view)
        .unwrap_or_default()
}
