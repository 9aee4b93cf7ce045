//! The fleet at a glance: task counts, the last hour's activity, the
//! landing queues, the agents and the control-plane servers; and the
//! audit log.

use tidewright_api::view::{LandingQueueView, landing_queue_view};
use tidewright_engine::service::{ListAudit, OfTenants};

use super::*;

/// `?tenant=A&tenant=B`: the tenants a read of `what` asked for; any other
/// parameter is refused, naming it.
fn of_tenants(query: Vec<(String, String)>, what: &str) -> Result<OfTenants, ApiError> {
    let mut request = OfTenants::default();
    for (name, value) in query {
        match name.as_str() {
            "tenant" => request.tenants.push(value),
            other => {
                return Err(Error::invalid(other, format!("not a filter of {what}")).into());
            }
        }
    }
    Ok(request)
}

/// How many tasks are in each state: `{"queued": 12, "running": 3, ...}`,
/// every state named, zero when none.
#[derive(Serialize, ToSchema)]
pub(super) struct TaskCounts {
    queued: u64,
    running: u64,
    /// Paused for a spent budget.
    paused: u64,
    succeeded: u64,
    failed: u64,
    cancelled: u64,
}

#[utoipa::path(get, path = "/task-counts", tag = "tasks",
    summary = "How many tasks are in each state (CountTasks)",
    params(("tenant" = Option<Vec<String>>, Query, description = "only this tenant's tasks (repeat it); each must be one the caller may see")),
    responses((status = 200, body = TaskCounts), Refused))]
pub(super) async fn count_tasks(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<TaskCounts> {
    let request = of_tenants(query, "task counts")?;
    let answer = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.count_tasks(r).await
    })
    .await?;
    let mut counts = TaskCounts {
        queued: 0,
        running: 0,
        paused: 0,
        succeeded: 0,
        failed: 0,
        cancelled: 0,
    };
    for (state, tasks) in answer {
        let count_of = match state {
            TaskState::Queued => &mut counts.queued,
            TaskState::Running => &mut counts.running,
            TaskState::Paused => &mut counts.paused,
            TaskState::Succeeded => &mut counts.succeeded,
            TaskState::Failed => &mut counts.failed,
            TaskState::Cancelled => &mut counts.cancelled,
        };
        *count_of += tasks;
    }
    Ok(Json(counts))
}

/// The last hour of work, a minute at a time (GetActivity).
#[derive(Serialize, ToSchema)]
pub(super) struct ActivityView {
    /// Sixty minutes, oldest first; the last is the minute under way.
    minutes: Vec<MinuteView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct MinuteView {
    start: Option<String>,
    submitted: u64,
    succeeded: u64,
    failed: u64,
    cancelled: u64,
    dispatched: u64,
    /// Ready to dispatched, median and 99th percentile, in milliseconds:
    /// upper bounds of histogram buckets; 0 when nothing was dispatched.
    dispatch_p50_ms: f64,
    dispatch_p99_ms: f64,
    spend: Vec<SpendView>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct SpendView {
    model: String,
    #[serde(flatten)]
    cost: Option<CostView>,
}

#[utoipa::path(get, path = "/activity", tag = "fleet",
    summary = "The last hour, minute by minute: tasks, dispatch latency, spend by model (GetActivity)",
    params(("tenant" = Option<Vec<String>>, Query, description = "only this tenant's work (repeat it); each must be one the caller may see")),
    responses((status = 200, body = ActivityView), Refused))]
pub(super) async fn activity(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<ActivityView> {
    let request = of_tenants(query, "activity")?;
    let activity = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.get_activity(r).await
    })
    .await?;
    let minutes = wire::activity(activity)
        .minutes
        .into_iter()
        .map(|m| MinuteView {
            start: rfc3339(&m.start),
            submitted: m.submitted,
            succeeded: m.succeeded,
            failed: m.failed,
            cancelled: m.cancelled,
            dispatched: m.dispatched,
            dispatch_p50_ms: m.dispatch_p50_seconds * 1000.0,
            dispatch_p99_ms: m.dispatch_p99_seconds * 1000.0,
            spend: m
                .spend
                .into_iter()
                .map(|s| SpendView {
                    model: s.model,
                    cost: cost_view(&s.cost),
                })
                .collect(),
        })
        .collect();
    Ok(Json(ActivityView { minutes }))
}

/// Each base's landing queue holding a task the caller asked for
/// (ListLandings).
#[derive(Serialize, ToSchema)]
pub(super) struct Landings {
    queues: Vec<LandingQueueView>,
}

#[utoipa::path(get, path = "/landings", tag = "tasks",
    summary = "Each base's landing queue, the task landing first, then those waiting in turn (ListLandings)",
    params(("tenant" = Option<Vec<String>>, Query, description = "only queues holding this tenant's tasks (repeat it); each must be one the caller may see")),
    responses((status = 200, body = Landings), Refused))]
pub(super) async fn list_landings(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<Landings> {
    let request = of_tenants(query, "landings")?;
    let queues = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.list_landings(r).await
    })
    .await
    .map(wire::landings)?;
    Ok(Json(Landings {
        queues: queues.queues.iter().map(landing_queue_view).collect(),
    }))
}

/// A build of tidewright.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct BuildView {
    version: String,
    /// The git commit it was built from.
    commit: String,
    built_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Fleet {
    /// The build of the control plane that answered.
    server: Option<BuildView>,
    agents: Vec<AgentView>,
    /// Steps waiting for a worker, per set of capabilities they need.
    queue: Vec<QueueView>,
    /// Workers that left within the last hour, newest first, each with
    /// when and why.
    gone: Vec<AgentView>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct QueueView {
    capabilities: Vec<String>,
    queued: u32,
}

#[utoipa::path(get, path = "/agents", tag = "fleet",
    summary = "Connected workers and the queue per needed capabilities (ListAgents)",
    responses((status = 200, body = Fleet), Refused))]
pub(super) async fn list_agents(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer<Fleet> {
    let fleet = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.fleet.list_agents(r).await
    })
    .await
    .map(wire::agent_listing)?;
    Ok(Json(Fleet {
        server: fleet.server.map(|r| BuildView {
            version: r.version,
            commit: r.commit,
            built_at: rfc3339(&r.built_at),
        }),
        agents: fleet.agents.iter().map(agent_view).collect(),
        gone: fleet.gone.iter().map(agent_view).collect(),
        queue: fleet
            .queue
            .into_iter()
            .map(|q| QueueView {
                capabilities: q.capabilities,
                queued: q.queued,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/servers", tag = "fleet",
    summary = "The control plane's replicas (ListServers)",
    responses((status = 200, body = Vec<ServerView>), Refused))]
pub(super) async fn list_servers(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Answer<Vec<ServerView>> {
    let servers = call(&app, &headers, Access::Read, (), |s, r| async move {
        s.fleet.list_servers(r).await
    })
    .await
    .map(wire::servers)?;
    Ok(Json(servers.servers.iter().map(server_view).collect()))
}

#[derive(Serialize, ToSchema)]
pub(super) struct AuditPage {
    records: Vec<AuditView>,
}

/// `?after=SEQ&pageSize=N`: the audit log from a sequence number on.
#[utoipa::path(get, path = "/audit", tag = "audit",
    summary = "The audit log, oldest first (ListAudit; admins)",
    params(
        ("after" = Option<u64>, Query, description = "records after this sequence number"),
        ("pageSize" = Option<u32>, Query, maximum = 1000, description = "at most this many (default 100, at most 1000; more is refused)"),
    ),
    responses((status = 200, body = AuditPage), Refused))]
pub(super) async fn list_audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer<AuditPage> {
    let mut request = ListAudit::default();
    for (name, value) in query {
        match name.as_str() {
            "after" => request.after_seq = number(&name, &value)?,
            "pageSize" => request.page_size = number(&name, &value)?,
            other => return Err(Error::invalid(other, "not a filter of the audit log").into()),
        }
    }
    let page = call(&app, &headers, Access::Read, request, |s, r| async move {
        s.tasks.list_audit(r).await
    })
    .await?;
    Ok(Json(AuditPage {
        records: wire::audit(page).events.iter().map(audit_view).collect(),
    }))
}
