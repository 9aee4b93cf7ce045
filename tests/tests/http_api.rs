//! The JSON API under `/api/v1` on a real control plane's HTTP port: tasks
//! submitted from a task file, listed, read, cancelled and retried with the
//! same roles, tenants and validation as gRPC; refusals carry the HTTP
//! status and a JSON body naming the field, and store nothing.

use std::time::Duration;

use serde_json::Value;
use tidewright_tests::*;

const SLEEPER: &str = "name: sleeper
labels: {team: infra}
steps:
  - id: nap
    shell: {command: [sleep, '30']}
";

struct Api {
    _server: Server,
    _worker: Process,
    http: String,
}

impl Api {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Api> {
        Api::start_with(dir, &[]).await
    }

    /// With more `tidewright server` flags.
    async fn start_with(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<Api> {
        let http = free_addr();
        let (server, worker) = start_with_roles(dir, &http, extra, 1).await?;
        Ok(Api {
            _server: server,
            _worker: worker,
            http,
        })
    }

    fn call(&self, method: &str, path: &str, token: &str, body: &str) -> HttpAnswer {
        http_call(&self.http, method, path, Some(token), &[], body).expect("the HTTP port answers")
    }

    fn get(&self, path: &str, token: &str) -> HttpAnswer {
        self.call("GET", path, token, "")
    }

    /// Reads the task until `check` holds.
    async fn task_until(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(30), || async {
            let task = self
                .get(&format!("/api/v1/tasks/{id}"), "tidewright_dev")
                .json();
            check(&task).then_some(task)
        })
        .await
        .unwrap_or_else(|_| panic!("{what}"))
    }
}

#[tokio::test]
async fn tasks_are_submitted_listed_read_cancelled_and_retried_over_http_as_over_grpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");

    let submitted = http_call(
        &api.http,
        "POST",
        "/api/v1/tasks",
        Some("tidewright_dev"),
        &[
            ("Content-Type", "application/yaml"),
            ("Idempotency-Key", "k-1"),
        ],
        SLEEPER,
    )
    .expect("submit");
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let id = submitted.json()["taskId"]
        .as_str()
        .expect("a task id")
        .to_string();
    // The same key finds the same task: 200, not created.
    let again = http_call(
        &api.http,
        "POST",
        "/api/v1/tasks",
        Some("tidewright_dev"),
        &[("Idempotency-Key", "k-1")],
        SLEEPER,
    )
    .expect("resubmit");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["taskId"], id.as_str());
    assert_eq!(again.json()["created"], false);

    let running = api
        .task_until(&id, "the step runs", |t| t["state"] == "running")
        .await;
    assert_eq!(running["name"], "sleeper");
    assert_eq!(running["tenant"], "default");
    assert_eq!(running["steps"][0]["id"], "nap");
    assert_eq!(running["steps"][0]["state"], "running");
    assert_eq!(running["steps"][0]["worker"], "w1");

    let listed = api.get(
        "/api/v1/tasks?state=running&label=team%3Dinfra",
        "tidewright_viewer",
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    let tasks = listed.json()["tasks"].clone();
    let ids: Vec<&str> = tasks
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let none = api.get("/api/v1/tasks?state=succeeded", "tidewright_viewer");
    assert_eq!(none.json()["tasks"], Value::Array(Vec::new()));
    let by_name = api.get(
        "/api/v1/tasks?name=sleep&tenant=default",
        "tidewright_admin",
    );
    assert_eq!(
        by_name.json()["tasks"][0]["id"],
        id.as_str(),
        "{}",
        by_name.body
    );
    let other_name = api.get("/api/v1/tasks?name=nap", "tidewright_admin");
    assert_eq!(other_name.json()["tasks"], Value::Array(Vec::new()));
    let counts = api.get("/api/v1/task-counts", "tidewright_viewer");
    assert_eq!(counts.status, 200, "{}", counts.body);
    assert_eq!(
        counts.json(),
        serde_json::json!({"queued": 0, "running": 1, "paused": 0, "succeeded": 0, "failed": 0, "cancelled": 0})
    );
    let foreign = api.get("/api/v1/task-counts?tenant=team-b", "tidewright_viewer");
    assert_eq!(foreign.status, 403, "{}", foreign.body);

    // A viewer may read but not cancel; the server refuses whatever the
    // page shows.
    let forged = api.call(
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        "tidewright_viewer",
        "",
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(forged.json()["error"]["code"], "PERMISSION_DENIED");
    assert!(
        forged.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("vic (viewer) may not")),
        "{}",
        forged.body
    );

    // Retrying a running task does not fit its state: 409.
    let early = api.call(
        "POST",
        &format!("/api/v1/tasks/{id}/retry"),
        "tidewright_dev",
        "",
    );
    assert_eq!(early.status, 409, "{}", early.body);
    assert_eq!(early.json()["error"]["code"], "FAILED_PRECONDITION");

    let cancelled = api.call(
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        "tidewright_dev",
        "",
    );
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    api.task_until(&id, "the task is cancelled", |t| t["state"] == "cancelled")
        .await;

    let retried = api.call(
        "POST",
        &format!("/api/v1/tasks/{id}/retry"),
        "tidewright_dev",
        "",
    );
    assert_eq!(retried.status, 200, "{}", retried.body);
    let again = api
        .task_until(&id, "the retried step runs again", |t| {
            t["steps"][0]["state"] == "running" && t["steps"][0]["attempt"] == 2
        })
        .await;
    assert_eq!(again["steps"][0]["attempts"][0]["state"], "cancelled");

    let fleet = api.get("/api/v1/agents", "tidewright_viewer").json();
    assert_eq!(fleet["agents"][0]["name"], "w1");
    assert_eq!(fleet["agents"][0]["running"], 1);

    let audit = api.get("/api/v1/audit", "tidewright_admin");
    assert_eq!(audit.status, 200, "{}", audit.body);
    let actions: Vec<(String, String)> = audit.json()["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap_or_default().to_string(),
                r["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (actor, action) in [("dana", "submit"), ("vic", "cancel"), ("dana", "retry")] {
        assert!(
            actions
                .iter()
                .any(|(a, b)| a == actor && b.contains(action)),
            "{actor} {action} is audited: {actions:?}"
        );
    }
    let refused = api.get("/api/v1/audit", "tidewright_dev");
    assert_eq!(refused.status, 403, "only admins read the audit log");
}

#[tokio::test]
async fn a_refused_request_gets_its_http_status_and_a_json_body_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let error = |answer: &HttpAnswer| answer.json()["error"].clone();
    let stored = || api.get("/api/v1/tasks", "tidewright_admin").json()["tasks"].clone();

    let anonymous = http_call(&api.http, "GET", "/api/v1/tasks", None, &[], "").expect("answer");
    assert_eq!(anonymous.status, 401);
    assert_eq!(error(&anonymous)["code"], "UNAUTHENTICATED");
    assert!(
        anonymous
            .headers
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        anonymous.headers
    );
    let forged = api.get("/api/v1/tasks", "tidewright_forged");
    assert_eq!(forged.status, 401, "{}", forged.body);

    // A spec that breaks a rule is refused by the gRPC validation, naming
    // the field; nothing is stored.
    let before = stored();
    let unknown_dependency = "name: x\nsteps:\n  - id: a\n    dependsOn: [nope]\n    noop: {}\n";
    let bad = api.call(
        "POST",
        "/api/v1/tasks",
        "tidewright_dev",
        unknown_dependency,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(error(&bad)["code"], "INVALID_ARGUMENT");
    let field = error(&bad)["field"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(field.contains("steps[0]"), "the field: {}", bad.body);
    // A task file that does not parse names where.
    let typo = api.call(
        "POST",
        "/api/v1/tasks",
        "tidewright_dev",
        "name: x\nsteps:\n  - id: a\n    shel: {}\n",
    );
    assert_eq!(typo.status, 400, "{}", typo.body);
    assert_eq!(error(&typo)["field"], "body");
    assert!(
        error(&typo)["message"]
            .as_str()
            .is_some_and(|m| m.contains("shel")),
        "{}",
        typo.body
    );
    let empty = api.call("POST", "/api/v1/tasks", "tidewright_dev", "");
    assert_eq!(error(&empty)["field"], "body");
    // A task that asks for a plan, where no planner is set up: 409, as
    // the OpenAPI document says, and nothing is stored.
    let unplanned = api.call(
        "POST",
        "/api/v1/tasks",
        "tidewright_dev",
        "name: x\nplan: true\nprompt: add a test\n",
    );
    assert_eq!(unplanned.status, 409, "{}", unplanned.body);
    assert_eq!(error(&unplanned)["code"], "FAILED_PRECONDITION");
    assert!(
        error(&unplanned)["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("planning is not set up")),
        "{}",
        unplanned.body
    );
    let document = api.get("/api/v1/openapi.json", "tidewright_admin").json();
    assert!(
        document["paths"]["/tasks"]["post"]["responses"]["409"].is_object(),
        "the document lists POST /tasks' 409"
    );
    // A page past the most is refused, naming it, not cut short unsaid
    // (the document says the most); 1000 is a page.
    for route in [
        "/api/v1/tasks",
        "/api/v1/audit",
        "/api/v1/webhook-deliveries",
    ] {
        let too_many = api.get(&format!("{route}?pageSize=2147483648"), "tidewright_admin");
        assert_eq!(too_many.status, 400, "{route}: {}", too_many.body);
        let past = api.get(&format!("{route}?pageSize=1001"), "tidewright_admin");
        assert_eq!(past.status, 400, "{route}: {}", past.body);
        assert_eq!(error(&past)["field"], "page_size", "{route}");
        let most = api.get(&format!("{route}?pageSize=1000"), "tidewright_admin");
        assert_eq!(most.status, 200, "{route}: {}", most.body);
    }
    // A body larger than a gRPC message may be (4 MiB by default), by
    // little: what the server does not read fits in the socket buffers.
    let huge = format!("name: x\n# {}\nsteps: []\n", "x".repeat(4 << 20));
    let too_large = api.call("POST", "/api/v1/tasks", "tidewright_dev", &huge);
    assert_eq!(
        too_large.status,
        413,
        "{}",
        &too_large.body[..too_large.body.len().min(200)]
    );
    assert_eq!(error(&too_large)["field"], "body");
    let viewer = api.call("POST", "/api/v1/tasks", "tidewright_viewer", SLEEPER);
    assert_eq!(viewer.status, 403, "{}", viewer.body);
    assert_eq!(stored(), before, "nothing refused was stored");

    let state = api.get("/api/v1/tasks?state=sleeping", "tidewright_dev");
    assert_eq!(state.status, 400);
    assert_eq!(error(&state)["field"], "state");
    let filter = api.get("/api/v1/tasks?colour=red", "tidewright_dev");
    assert_eq!(error(&filter)["field"], "colour");
    let foreign = api.get("/api/v1/tasks?tenant=team-b", "tidewright_dev");
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    assert!(
        error(&foreign)["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("tenants[0]: dana may not see tenant")),
        "{}",
        foreign.body
    );
    let size = api.get("/api/v1/tasks?pageSize=many", "tidewright_dev");
    assert_eq!(error(&size)["field"], "pageSize");
    let after = api.get("/api/v1/audit?after=-1", "tidewright_admin");
    assert_eq!(after.status, 400);
    assert_eq!(error(&after)["field"], "after");

    let missing = api.get("/api/v1/tasks/01nosuchtask", "tidewright_dev");
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(error(&missing)["code"], "NOT_FOUND");
    let route = api.get("/api/v1/nothing-here", "tidewright_dev");
    assert_eq!(route.status, 404);
    assert_eq!(error(&route)["code"], "NOT_FOUND");
    let no_value = api.get("/api/v1/state/some-scope/no-key", "tidewright_dev");
    assert_eq!(no_value.status, 404, "{}", no_value.body);

    // A replay asked as neither JSON nor HTML, or with what it does not
    // take, is refused naming it; one of a step the task lacks is not
    // found.
    let submitted = api.call("POST", "/api/v1/tasks", "tidewright_dev", SLEEPER);
    let id = submitted.json()["taskId"].as_str().expect("id").to_string();
    let replay = |query: &str| {
        api.get(
            &format!("/api/v1/tasks/{id}/steps/nap/replay{query}"),
            "tidewright_viewer",
        )
    };
    assert_eq!(replay("").status, 200, "{}", replay("").body);
    let xml = replay("?format=xml");
    assert_eq!(xml.status, 400, "{}", xml.body);
    assert_eq!(error(&xml)["field"], "format");
    let colour = replay("?colour=red");
    assert_eq!(colour.status, 400, "{}", colour.body);
    assert_eq!(error(&colour)["field"], "colour");
    let no_step = api.get(
        &format!("/api/v1/tasks/{id}/steps/nope/replay"),
        "tidewright_viewer",
    );
    assert_eq!(no_step.status, 404, "{}", no_step.body);
    assert!(
        error(&no_step)["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"nope\"")),
        "{}",
        no_step.body
    );
    api.call(
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        "tidewright_dev",
        "",
    );
}

/// `event:`/`id:`/`data:` blocks of a server-sent event stream: (id, event
/// name, data as JSON).
fn sse_events(body: &str) -> Vec<(u64, String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start().to_string())
            };
            let id = field("id:")?.parse().ok()?;
            let data = serde_json::from_str(&field("data:")?).ok()?;
            Some((id, field("event:").unwrap_or_default(), data))
        })
        .collect()
}

#[tokio::test]
async fn budgets_are_set_by_admins_listed_and_raised_over_http_and_bad_ones_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let error = |answer: &HttpAnswer| answer.json()["error"].clone();

    // Only admins set a tenant's budget; a bad amount names its field.
    let dev = api.call(
        "PUT",
        "/api/v1/tenants/default/budget",
        "tidewright_dev",
        r#"{"usdPerDay": 5}"#,
    );
    assert_eq!(dev.status, 403, "{}", dev.body);
    let negative = api.call(
        "PUT",
        "/api/v1/tenants/default/budget",
        "tidewright_admin",
        r#"{"usdPerDay": -1}"#,
    );
    assert_eq!(negative.status, 400, "{}", negative.body);
    assert_eq!(error(&negative)["field"], "budget.usdPerDay");
    let bad_tenant = api.call(
        "PUT",
        "/api/v1/tenants/No_Such/budget",
        "tidewright_admin",
        "{}",
    );
    assert_eq!(bad_tenant.status, 400, "{}", bad_tenant.body);
    assert_eq!(error(&bad_tenant)["field"], "tenant");
    let set = api.call(
        "PUT",
        "/api/v1/tenants/default/budget",
        "tidewright_admin",
        r#"{"usdPerDay": 5, "tokensPerMonth": 1000000}"#,
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["budget"]["usdPerDay"], 5.0);
    assert_eq!(set.json()["budget"]["tokensPerMonth"], 1_000_000);
    let listed = api.get("/api/v1/budgets", "tidewright_dev");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["tenants"][0]["tenant"], "default");
    assert!(
        listed.json()["tenants"][0]["dayResetsAt"].is_string(),
        "{}",
        listed.body
    );

    // A task's budget: in its spec, raised by what the body names.
    let submitted = api.call(
        "POST",
        "/api/v1/tasks",
        "tidewright_dev",
        "name: b\nbudget: {usd: 1}\nsteps:\n  - id: a\n    shell: {command: [sleep, '30']}\n",
    );
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    let id = submitted.json()["taskId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("/api/v1/tasks/{id}/budget");
    let nothing = api.call("POST", &path, "tidewright_dev", "{}");
    assert_eq!(nothing.status, 400, "{}", nothing.body);
    assert_eq!(error(&nothing)["field"], "by");
    let zero = api.call("POST", &path, "tidewright_dev", r#"{"tokens": 0}"#);
    assert_eq!(error(&zero)["field"], "by.tokens");
    let raised = api.call("POST", &path, "tidewright_dev", r#"{"usd": 2.5}"#);
    assert_eq!(raised.status, 200, "{}", raised.body);
    assert_eq!(raised.json()["budget"]["usd"], 3.5);
    let shown = api.get(&format!("/api/v1/tasks/{id}"), "tidewright_viewer");
    assert_eq!(shown.json()["budget"]["usd"], 3.5, "stored");
    let viewer = api.call("POST", &path, "tidewright_viewer", r#"{"usd": 1}"#);
    assert_eq!(viewer.status, 403, "{}", viewer.body);
    api.call(
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        "tidewright_dev",
        "",
    );
    eventually(Duration::from_secs(20), || async {
        let task = api
            .get(&format!("/api/v1/tasks/{id}"), "tidewright_dev")
            .json();
        (task["state"] == "cancelled").then_some(())
    })
    .await
    .expect("cancelled");
    let finished = api.call("POST", &path, "tidewright_dev", r#"{"usd": 1}"#);
    assert_eq!(finished.status, 409, "{}", finished.body);
    assert_eq!(error(&finished)["code"], "FAILED_PRECONDITION");
}

#[tokio::test]
async fn shares_are_set_by_admins_and_listed_over_http_and_bad_ones_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let path = "/api/v1/tenants/team-a/share";
    let dev = api.call("PUT", path, "tidewright_dev", r#"{"weight": 3}"#);
    assert_eq!(dev.status, 403, "{}", dev.body);
    for (body, field) in [
        (r#"{"weight": 0}"#, "weight"),
        (r#"{"weight": 1001}"#, "weight"),
        (r#"{"weight": -3}"#, "weight"),
        (r#"{"maxRunning": -1}"#, "maxRunning"),
        (r#"{"fairnessKey": "owner"}"#, "fairnessKey"),
    ] {
        let refused = api.call("PUT", path, "tidewright_admin", body);
        assert_eq!(refused.status, 400, "{body}: {}", refused.body);
        assert_eq!(refused.json()["error"]["field"], field, "{body}");
    }
    let unknown = api.call("PUT", path, "tidewright_admin", r#"{"wieght": 3}"#);
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let listed = api.get("/api/v1/shares", "tidewright_admin");
    assert_eq!(
        listed.json()["tenants"],
        Value::Array(Vec::new()),
        "nothing stored"
    );
    let set = api.call(
        "PUT",
        path,
        "tidewright_admin",
        r#"{"weight": 3, "maxRunning": 50, "fairnessKey": "label:team"}"#,
    );
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["weight"], 3);
    assert_eq!(set.json()["maxRunning"], 50);
    assert_eq!(set.json()["fairnessKey"], "label:team");
    let listed = api.get("/api/v1/shares", "tidewright_admin");
    assert_eq!(
        listed.json()["tenants"][0]["tenant"],
        "team-a",
        "{}",
        listed.body
    );
    assert_eq!(listed.json()["tenants"][0]["running"], 0);
    // The default again: the tenant's share is gone.
    let reset = api.call("PUT", path, "tidewright_admin", "{}");
    assert_eq!(reset.json()["weight"], 1, "{}", reset.body);
    assert!(reset.json().get("maxRunning").is_none(), "{}", reset.body);
}

#[tokio::test]
async fn a_tasks_events_stream_as_server_sent_events_and_resume_after_the_last_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let talker = "name: talker
steps:
  - id: talk
    shell: {command: [sh, -c, 'sleep 0.5; for i in 1 2 3; do echo line-$i; done']}
";
    let submitted = api.call("POST", "/api/v1/tasks", "tidewright_dev", talker);
    let id = submitted.json()["taskId"].as_str().expect("id").to_string();

    // Opened while the step runs: stored events, then live ones, until the
    // task's last event closes the stream.
    let path = format!("/api/v1/tasks/{id}/events");
    let live = api.get(&path, "tidewright_viewer");
    assert_eq!(live.status, 200, "{}", live.body);
    assert!(
        live.headers
            .to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{}",
        live.headers
    );
    let events = sse_events(&live.body);
    let ids: Vec<u64> = events.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "1, 2, 3... without gaps"
    );
    let lines: Vec<&str> = events
        .iter()
        .filter(|(_, name, _)| name == "log")
        .filter_map(|(_, _, data)| data["line"].as_str())
        .collect();
    assert_eq!(lines, ["line-1", "line-2", "line-3"]);
    let (_, name, last) = events.last().expect("events");
    assert_eq!(name, "taskState");
    assert_eq!(last["state"], "succeeded");
    assert_eq!(last["taskId"], id.as_str());

    // A reconnect with the last id it saw gets the rest, once each.
    let cut = ids[ids.len() / 2];
    let resumed = http_call(
        &api.http,
        "GET",
        &path,
        Some("tidewright_viewer"),
        &[("Last-Event-ID", &cut.to_string())],
        "",
    )
    .expect("resume");
    let rest: Vec<u64> = sse_events(&resumed.body)
        .iter()
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(rest, ids[ids.len() / 2 + 1..].to_vec());
    // A browser reconnects to the same URL: its Last-Event-ID wins over the
    // URL's `after`.
    let reconnected = http_call(
        &api.http,
        "GET",
        &format!("{path}?after=1"),
        Some("tidewright_viewer"),
        &[("Last-Event-ID", &cut.to_string())],
        "",
    )
    .expect("reconnect");
    let again: Vec<u64> = sse_events(&reconnected.body)
        .iter()
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(again, rest, "nothing repeated");

    let bad = http_call(
        &api.http,
        "GET",
        &path,
        Some("tidewright_viewer"),
        &[("Last-Event-ID", "yesterday")],
        "",
    )
    .expect("answer");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "Last-Event-ID");
    let missing = api.get("/api/v1/tasks/01nosuchtask/events", "tidewright_viewer");
    assert_eq!(missing.status, 404, "{}", missing.body);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_route_it_lists_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let document =
        http_call(&api.http, "GET", "/api/v1/openapi.json", None, &[], "").expect("the document");
    assert_eq!(document.status, 200, "{}", document.body);
    let document = document.json();
    assert_eq!(document["servers"][0]["url"], "/api/v1");
    let mut listed: Vec<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    listed.sort();
    let mut routes: Vec<(String, String)> = [
        ("GET", "/tasks"),
        ("POST", "/tasks"),
        ("GET", "/tasks/{id}"),
        ("POST", "/tasks/{id}/cancel"),
        ("POST", "/tasks/{id}/retry"),
        ("POST", "/tasks/{id}/steps/{step}/approve"),
        ("POST", "/tasks/{id}/steps/{step}/reject"),
        ("POST", "/tasks/{id}/steps/{step}/steer"),
        ("GET", "/tasks/{id}/steps/{step}/diff"),
        ("GET", "/tasks/{id}/steps/{step}/replay"),
        ("POST", "/tasks/{id}/budget"),
        ("POST", "/tasks/{id}/budget/approve"),
        ("PUT", "/tenants/{tenant}/budget"),
        ("GET", "/budgets"),
        ("PUT", "/tenants/{tenant}/share"),
        ("GET", "/shares"),
        ("GET", "/cost"),
        ("GET", "/templates"),
        ("POST", "/templates/{name}/tasks"),
        ("GET", "/schedules"),
        ("POST", "/schedules"),
        ("GET", "/schedules/{name}"),
        ("DELETE", "/schedules/{name}"),
        ("POST", "/schedules/{name}/suspend"),
        ("POST", "/schedules/{name}/resume"),
        ("POST", "/schedules/{name}/trigger"),
        ("GET", "/triggers"),
        ("POST", "/triggers"),
        ("GET", "/triggers/{name}"),
        ("DELETE", "/triggers/{name}"),
        ("GET", "/webhooks"),
        ("POST", "/webhooks"),
        ("DELETE", "/webhooks/{id}"),
        ("GET", "/webhook-deliveries"),
        ("GET", "/seeds"),
        ("DELETE", "/seeds/{seed}"),
        ("GET", "/tasks/{id}/events"),
        ("GET", "/task-counts"),
        ("GET", "/agents"),
        ("GET", "/servers"),
        ("GET", "/audit"),
        ("GET", "/events"),
        ("GET", "/activity"),
        ("GET", "/landings"),
        ("GET", "/state/{scope}/{key}"),
        ("GET", "/state/{scope}"),
        ("POST", "/session"),
        ("GET", "/session"),
        ("DELETE", "/session"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    routes.sort();
    assert_eq!(listed, routes);
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for name in [
        "TaskView",
        "StepView",
        "EventView",
        "ErrorBody",
        "Fleet",
        "ScheduleView",
        "TriggerView",
    ] {
        assert!(schemas.contains_key(name), "{name} is described");
    }
    for path in ["/tasks", "/audit", "/webhook-deliveries"] {
        let page_size = document["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "pageSize")
            .cloned()
            .unwrap_or_default();
        assert_eq!(page_size["schema"]["maximum"], 1000, "{path}: {page_size}");
    }
    let answers = &document["paths"]["/tasks"]["post"]["responses"];
    for code in ["200", "201", "400", "401", "403", "429", "503"] {
        assert!(
            answers.get(code).is_some(),
            "submit documents {code}: {answers}"
        );
    }
    // Each documented route is served: it answers something other than
    // "no such route".
    for (method, path) in &listed {
        let path = format!(
            "/api/v1{}",
            path.replace("{id}", "01nosuchtask")
                .replace("{scope}", "s")
                .replace("{key}", "k")
                .replace("{step}", "deploy")
                .replace("{name}", "feature")
        );
        // The fleet's stream never ends: a bad position answers at once.
        let path = if path.ends_with("/events") && !path.contains("/tasks/") {
            format!("{path}?after=x")
        } else {
            path
        };
        let answer = api.call(method, &path, "tidewright_admin", "");
        assert!(
            !answer.body.contains("no such route"),
            "{method} {path}: {}",
            answer.body
        );
    }
    // A step's diff of a task, or a step, that is not there: 404.
    let missing = api.call(
        "GET",
        "/api/v1/tasks/01nosuchtask/steps/deploy/diff",
        "tidewright_viewer",
        "",
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
}

/// The header line `name: value` of an answer, lower-cased.
fn header_line(answer: &HttpAnswer, name: &str) -> String {
    answer
        .headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
        .unwrap_or_default()
        .to_string()
}

/// `tidewright_session=…` as a sign-in answer set it, to send back as Cookie.
fn session_cookie(answer: &HttpAnswer) -> String {
    header_line(answer, "set-cookie")
        .split_once(':')
        .and_then(|(_, v)| v.trim().split(';').next().map(str::to_string))
        .expect("the cookie")
}

#[tokio::test]
async fn a_console_session_is_a_protected_cookie_and_its_changes_need_the_csrf_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let sign_in = |token: &str| {
        http_call(
            &api.http,
            "POST",
            "/api/v1/session",
            None,
            &[("Content-Type", "application/json")],
            &format!("{{\"token\": \"{token}\"}}"),
        )
        .expect("sign in")
    };
    let opened = sign_in("tidewright_dev");
    assert_eq!(opened.status, 201, "{}", opened.body);
    let set_cookie = header_line(&opened, "set-cookie");
    for part in [
        "tidewright_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let session = opened.json();
    assert_eq!(session["name"], "dana");
    assert_eq!(session["role"], "developer");
    let csrf = session["csrfToken"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    let cookie = session_cookie(&opened);
    let with = |method: &str, path: &str, headers: &[(&str, &str)], body: &str| {
        let mut all = vec![("Cookie", cookie.as_str())];
        all.extend_from_slice(headers);
        http_call(&api.http, method, path, None, &all, body).expect("answer")
    };

    // Reads need only the cookie.
    let listed = with("GET", "/api/v1/tasks", &[], "");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let me = with("GET", "/api/v1/session", &[], "");
    assert_eq!(me.json()["csrfToken"], csrf.as_str());
    // A change without the CSRF token (what a forged cross-site form would
    // send, if a browser sent the cookie at all) is refused and stores
    // nothing; with it, it goes through.
    let forged = with("POST", "/api/v1/tasks", &[], SLEEPER);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(
        forged.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("X-CSRF-Token")),
        "{}",
        forged.body
    );
    let wrong = with(
        "POST",
        "/api/v1/tasks",
        &[("X-CSRF-Token", "guess")],
        SLEEPER,
    );
    assert_eq!(wrong.status, 403);
    assert_eq!(
        with("GET", "/api/v1/tasks", &[], "").json()["tasks"],
        Value::Array(Vec::new()),
        "nothing refused was stored"
    );
    let made = with("POST", "/api/v1/tasks", &[("X-CSRF-Token", &csrf)], SLEEPER);
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()["taskId"].as_str().expect("id").to_string();

    // A viewer's session has the viewer's role: its cancel is refused
    // even with the right CSRF token.
    let viewer = sign_in("tidewright_viewer");
    let viewer_cookie = session_cookie(&viewer);
    let viewer_csrf = viewer.json()["csrfToken"]
        .as_str()
        .expect("csrf")
        .to_string();
    let cancel = http_call(
        &api.http,
        "POST",
        &format!("/api/v1/tasks/{id}/cancel"),
        None,
        &[("Cookie", &viewer_cookie), ("X-CSRF-Token", &viewer_csrf)],
        "",
    )
    .expect("answer");
    assert_eq!(cancel.status, 403, "{}", cancel.body);
    assert_eq!(cancel.json()["error"]["code"], "PERMISSION_DENIED");

    // Signing out ends the session and clears the cookie.
    let out = with("DELETE", "/api/v1/session", &[("X-CSRF-Token", &csrf)], "");
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(header_line(&out, "set-cookie").contains("Max-Age=0"));
    let after = with("GET", "/api/v1/tasks", &[], "");
    assert_eq!(after.status, 401);
    assert!(after.body.contains("session has ended"), "{}", after.body);

    // Bad sign-ins.
    assert_eq!(sign_in("tidewright_forged").status, 401);
    let garbled =
        http_call(&api.http, "POST", "/api/v1/session", None, &[], "token=x").expect("answer");
    assert_eq!(garbled.status, 400);
    assert_eq!(garbled.json()["error"]["field"], "token");
    let nobody = http_call(&api.http, "GET", "/api/v1/session", None, &[], "").expect("answer");
    assert_eq!(nobody.status, 401);
}

#[tokio::test]
async fn behind_a_tls_proxy_session_cookies_are_secure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start_with(dir.path(), &["--secure-cookies"])
        .await
        .expect("server");
    let opened = http_call(
        &api.http,
        "POST",
        "/api/v1/session",
        None,
        &[],
        r#"{"token": "tidewright_viewer"}"#,
    )
    .expect("sign in");
    assert_eq!(opened.status, 201, "{}", opened.body);
    let set_cookie = header_line(&opened, "set-cookie");
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
}

/// An open event stream counts against the caller's open watches, as a
/// WatchTask does: past `--max-watches-per-caller`, 429.
#[tokio::test]
async fn event_streams_count_against_the_callers_open_watches() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start_with(dir.path(), &["--max-watches-per-caller", "1"])
        .await
        .expect("server");
    let submitted = api.call("POST", "/api/v1/tasks", "tidewright_dev", SLEEPER);
    let id = submitted.json()["taskId"].as_str().expect("id").to_string();
    let path = format!("/api/v1/tasks/{id}/events");
    // The first stream stays open (the task runs for 30 s): read its head.
    let mut first = std::net::TcpStream::connect(&api.http).expect("connect");
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        first,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer tidewright_viewer\r\n\r\n",
        api.http
    )
    .expect("request");
    let mut head = [0u8; 12];
    first.read_exact(&mut head).expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    let second = api.get(&path, "tidewright_viewer");
    assert_eq!(second.status, 429, "{}", second.body);
    assert_eq!(second.json()["error"]["code"], "RESOURCE_EXHAUSTED");
    // Another caller has watches of its own.
    let other = http_call(
        &api.http,
        "GET",
        &format!("{path}?follow=false"),
        Some("tidewright_dev"),
        &[],
        "",
    )
    .expect("answer");
    assert_eq!(other.status, 200, "{}", other.body);
    drop(first);
}

/// A server-sent event stream read as it arrives (the fleet's never ends):
/// the response's chunks decoded one at a time.
struct LiveStream {
    reader: std::io::BufReader<std::net::TcpStream>,
    pending: String,
}

impl LiveStream {
    fn open(addr: &str, path: &str, token: &str, last_id: Option<u64>) -> LiveStream {
        use std::io::{BufRead, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let resume = last_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
        )
        .expect("request");
        let mut reader = std::io::BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line.trim().is_empty() {
                break;
            }
        }
        LiveStream {
            reader,
            pending: String::new(),
        }
    }

    /// Reads events until `done` holds for what was read; all of them.
    fn until(
        &mut self,
        done: impl Fn(&[(u64, String, Value)]) -> bool,
    ) -> Vec<(u64, String, Value)> {
        use std::io::{BufRead, Read};
        let mut events = Vec::new();
        while !done(&events) {
            let mut size = String::new();
            self.reader
                .read_line(&mut size)
                .expect("a chunk within 30 s");
            let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            assert!(size > 0, "the stream ended; read {events:?}");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).expect("the chunk");
            self.pending
                .push_str(std::str::from_utf8(&chunk[..size]).expect("UTF-8"));
            // Whole messages only; a message cut between chunks waits.
            while let Some(end) = self.pending.find("\n\n") {
                let message: String = self.pending.drain(..end + 2).collect();
                events.extend(sse_events(&message));
            }
        }
        events
    }
}

/// The fleet's stream carries every task's events the caller may see
/// (log lines excepted), in commit order with rising positions, starting
/// with where it starts; a reconnect after any position gets the rest once.
#[tokio::test]
async fn the_fleet_streams_what_the_caller_may_see_in_order_and_resumes_after_the_last_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let quick = "name: quick
steps:
  - id: hi
    shell: {command: [sh, -c, 'echo hello; echo world']}
";
    let mut viewer = LiveStream::open(&api.http, "/api/v1/events", "tidewright_viewer", None);
    let start = viewer.until(|e| !e.is_empty());
    let (begin, name, data) = &start[0];
    assert_eq!(name, "start");
    assert_eq!(data["position"], *begin);

    let foreign = api.call(
        "POST",
        "/api/v1/tasks?tenant=team-b",
        "tidewright_admin",
        quick,
    );
    assert_eq!(foreign.status, 201, "{}", foreign.body);
    let foreign = foreign.json()["taskId"].as_str().expect("id").to_string();
    let own = api.call("POST", "/api/v1/tasks", "tidewright_dev", quick);
    let own = own.json()["taskId"].as_str().expect("id").to_string();
    let finished = |id: &str| {
        let id = id.to_string();
        move |events: &[(u64, String, Value)]| {
            events.iter().any(|(_, _, e)| {
                e["taskId"] == id.as_str() && e["state"] == "succeeded" && e["type"] == "taskState"
            })
        }
    };
    let seen = viewer.until(finished(&own));
    assert!(
        seen.iter().all(|(_, _, e)| e["taskId"] == own.as_str()),
        "only its tenant's task: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, name, _)| name != "log"),
        "no log lines"
    );
    let positions: Vec<u64> = seen.iter().map(|(id, _, _)| *id).collect();
    assert!(positions[0] > *begin, "{positions:?} after {begin}");
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(seen.iter().all(|(id, _, e)| e["position"] == *id));
    let seqs: Vec<u64> = seen
        .iter()
        .map(|(_, _, e)| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "a task's own order kept: {seqs:?}"
    );

    // An admin, from the same start, sees both tasks.
    let mut admin = LiveStream::open(
        &api.http,
        &format!("/api/v1/events?after={begin}"),
        "tidewright_admin",
        None,
    );
    let both = admin.until(|e| finished(&own)(e) && finished(&foreign)(e));
    assert_eq!(both[0].1, "start");
    assert_eq!(both[0].0, *begin);
    assert!(both.iter().any(|(_, _, e)| e["taskId"] == foreign.as_str()));

    // Resumed after the third event: the rest, each once, then live.
    let cut = positions[2];
    let mut resumed = LiveStream::open(&api.http, "/api/v1/events", "tidewright_viewer", Some(cut));
    let rest = resumed.until(|e| e.len() > seen.len() - 3);
    assert_eq!((rest[0].0, rest[0].1.as_str()), (cut, "start"));
    let again: Vec<u64> = rest[1..].iter().map(|(id, _, _)| *id).collect();
    assert_eq!(again, positions[3..].to_vec());

    let bad = api.get("/api/v1/events?after=soon", "tidewright_viewer");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["field"], "after");
    let denied = api.get("/api/v1/events?tenant=team-b", "tidewright_viewer");
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(
        denied.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("tenants[0]: vic may not see tenant")),
        "{}",
        denied.body
    );
}

/// The overview's last hour: what each caller's tenants did, summed over
/// the minutes (a test may straddle one).
#[tokio::test]
async fn the_last_hours_activity_counts_each_callers_tenants_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let quick = "name: quick
steps:
  - id: hi
    shell: {command: [echo, hi]}
";
    let foreign = api.call(
        "POST",
        "/api/v1/tasks?tenant=team-b",
        "tidewright_admin",
        quick,
    );
    let foreign = foreign.json()["taskId"].as_str().expect("id").to_string();
    let own = api.call("POST", "/api/v1/tasks", "tidewright_dev", quick);
    let own = own.json()["taskId"].as_str().expect("id").to_string();
    for id in [&foreign, &own] {
        eventually(Duration::from_secs(30), || async {
            let task = api
                .get(&format!("/api/v1/tasks/{id}"), "tidewright_admin")
                .json();
            (task["state"] == "succeeded").then_some(())
        })
        .await
        .expect("the task succeeds");
    }
    let total = |answer: &Value, field: &str| -> u64 {
        answer["minutes"]
            .as_array()
            .expect("minutes")
            .iter()
            .map(|m| m[field].as_u64().expect("a count"))
            .sum()
    };
    let viewer = api.get("/api/v1/activity", "tidewright_viewer");
    assert_eq!(viewer.status, 200, "{}", viewer.body);
    let viewer = viewer.json();
    assert_eq!(viewer["minutes"].as_array().expect("minutes").len(), 60);
    assert_eq!(
        (
            total(&viewer, "submitted"),
            total(&viewer, "succeeded"),
            total(&viewer, "dispatched")
        ),
        (1, 1, 1),
        "its own tenant's task only"
    );
    let admin = api.get("/api/v1/activity", "tidewright_admin").json();
    assert_eq!(
        (total(&admin, "submitted"), total(&admin, "succeeded")),
        (2, 2)
    );
    let last = admin["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .rev()
        .find(|m| m["dispatched"] != 0)
        .expect("a minute with dispatches");
    assert!(last["dispatchP99Ms"].as_f64().expect("p99") > 0.0, "{last}");
    let only_b = api
        .get("/api/v1/activity?tenant=team-b", "tidewright_admin")
        .json();
    assert_eq!(total(&only_b, "submitted"), 1);
    let denied = api.get("/api/v1/activity?tenant=team-b", "tidewright_viewer");
    assert_eq!(denied.status, 403, "{}", denied.body);
}

const NIGHTLY: &str = "name: nightly
cron: '0 3 * * 1-5'
timezone: Europe/Rome
concurrencyPolicy: Forbid
task:
  name: bump
  steps:
    - id: bump
      shell: {command: ['true']}
";

#[tokio::test]
async fn schedules_are_created_read_fired_suspended_and_removed_over_http_and_bad_ones_name_the_field()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let yaml = [("Content-Type", "application/yaml")];
    let post = |path: &str, token: &str, body: &str| {
        http_call(&api.http, "POST", path, Some(token), &yaml, body).expect("the HTTP port answers")
    };

    let made = post("/api/v1/schedules", "tidewright_dev", NIGHTLY);
    assert_eq!(made.status, 201, "{}", made.body);
    let made = made.json();
    assert_eq!(made["name"], "nightly");
    assert_eq!(made["timezone"], "Europe/Rome");
    assert_eq!(made["concurrencyPolicy"], "Forbid");
    assert_eq!(made["task"]["steps"][0]["id"], "bump");
    assert!(made["nextTick"].as_str().is_some(), "{made}");

    // The same name again: 409, naming what is there.
    let again = post("/api/v1/schedules", "tidewright_dev", NIGHTLY);
    assert_eq!(again.status, 409, "{}", again.body);

    // A viewer reads; it may not create.
    let listed = api.get("/api/v1/schedules", "tidewright_viewer");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["schedules"][0]["name"], "nightly");
    let refused = post(
        "/api/v1/schedules",
        "tidewright_viewer",
        &NIGHTLY.replace("nightly", "other"),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Trigger runs it now, as a run of its history.
    let fired = post("/api/v1/schedules/nightly/trigger", "tidewright_dev", "");
    assert_eq!(fired.status, 201, "{}", fired.body);
    let task_id = fired.json()["taskId"]
        .as_str()
        .expect("a task id")
        .to_string();
    api.task_until(&task_id, "the triggered task succeeds", |t| {
        t["state"] == "succeeded"
    })
    .await;
    let found = api
        .get("/api/v1/schedules/nightly", "tidewright_dev")
        .json();
    assert_eq!(found["history"][0]["taskId"], task_id.as_str(), "{found}");

    let suspended = post("/api/v1/schedules/nightly/suspend", "tidewright_dev", "");
    assert_eq!(suspended.status, 200, "{}", suspended.body);
    assert_eq!(suspended.json()["suspended"], true);
    assert!(suspended.json()["nextTick"].is_null());
    let resumed = post("/api/v1/schedules/nightly/resume", "tidewright_dev", "");
    assert_eq!(resumed.json()["suspended"], false);

    // Refusals name the field and store nothing.
    for (body, field) in [
        (NIGHTLY.replace("0 3 * * 1-5", "61 * * * *"), "cron"),
        (
            NIGHTLY.replace("Europe/Rome", "Europe/Atlantis"),
            "timezone",
        ),
        (
            NIGHTLY.replace("concurrencyPolicy: Forbid", "concurrencyPolicy: Sometimes"),
            "body",
        ),
        (
            NIGHTLY.replace("- id: bump", "- id: Bump!"),
            "task.steps[0].id",
        ),
    ] {
        let body = body.replace("name: nightly", "name: refused");
        let answer = post("/api/v1/schedules", "tidewright_dev", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.json()["error"]["field"], field, "{}", answer.body);
    }
    let missing = api.get("/api/v1/schedules/refused", "tidewright_dev");
    assert_eq!(missing.status, 404, "{}", missing.body);

    let removed = http_call(
        &api.http,
        "DELETE",
        "/api/v1/schedules/nightly",
        Some("tidewright_dev"),
        &[],
        "",
    )
    .expect("delete");
    assert_eq!(removed.status, 204, "{}", removed.body);
    let listed = api.get("/api/v1/schedules", "tidewright_dev").json();
    assert_eq!(listed["schedules"], serde_json::json!([]));
    // Its task stays.
    assert_eq!(
        api.get(&format!("/api/v1/tasks/{task_id}"), "tidewright_dev")
            .status,
        200
    );
}

const ISSUES: &str = "name: issues
forge: github
repository: acme/app
event: issueLabeled
template: fix-issue
params: {repo: 'https://github.com/acme/app.git'}
";

#[tokio::test]
async fn triggers_are_created_read_and_removed_over_http_and_bad_ones_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path()).await.expect("server");
    let yaml = [("Content-Type", "application/yaml")];
    let post = |path: &str, token: &str, body: &str| {
        http_call(&api.http, "POST", path, Some(token), &yaml, body).expect("the HTTP port answers")
    };
    let made = post("/api/v1/triggers", "tidewright_dev", ISSUES);
    assert_eq!(made.status, 201, "{}", made.body);
    let made = made.json();
    assert_eq!(
        (&made["name"], &made["event"], &made["template"]),
        (
            &"issues".into(),
            &"issueLabeled".into(),
            &"fix-issue".into()
        )
    );
    let again = post("/api/v1/triggers", "tidewright_dev", ISSUES);
    assert_eq!(again.status, 409, "{}", again.body);
    let refused = post(
        "/api/v1/triggers",
        "tidewright_viewer",
        &ISSUES.replace("name: issues", "name: other"),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Refusals name the field and store nothing.
    for (body, field) in [
        (ISSUES.replace("fix-issue", "no-such"), "template"),
        (ISSUES.replace("acme/app\n", "acme\n"), "repository"),
        (
            ISSUES.replace("event: issueLabeled", "event: pushed"),
            "body",
        ),
        (ISSUES.replace("forge: github", "forge: bitbucket"), "body"),
        (format!("{ISSUES}branch: main\n"), "branch"),
    ] {
        let body = body.replace("name: issues", "name: refused");
        let answer = post("/api/v1/triggers", "tidewright_dev", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.json()["error"]["field"], field, "{}", answer.body);
    }
    let missing = api.get("/api/v1/triggers/refused", "tidewright_dev");
    assert_eq!(missing.status, 404, "{}", missing.body);
    let found = api.get("/api/v1/triggers/issues", "tidewright_viewer");
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.json()["repository"], "acme/app");
    let removed = http_call(
        &api.http,
        "DELETE",
        "/api/v1/triggers/issues",
        Some("tidewright_dev"),
        &[],
        "",
    )
    .expect("delete");
    assert_eq!(removed.status, 204, "{}", removed.body);
    let listed = api.get("/api/v1/triggers", "tidewright_dev").json();
    assert_eq!(listed["triggers"], serde_json::json!([]));
}
