//! tidewright as an A2A agent, called with the protocol's SDKs no one here wrote:
//! the Python `a2a-sdk` and `@a2a-js/sdk` (both pinned by
//! scripts/a2a-sdk.sh). They read the card, send messages to a template
//! skill (blocking, streaming, returning at once), drop a stream and
//! resume it (plainly, and after the last event seen), list a context,
//! cancel, and meet each refusal; what each saw is checked here, and the
//! stream's latency from an event to the client is printed.

use std::path::Path;

use serde_json::{Value, json};
use tidewright_tests::*;

const TICKER: &str = r#"description: Logs "tick N" count times, pause seconds apart, then outputs how many.
parameters:
  count: {type: integer, required: true, description: how many ticks}
  pause: {default: "0.1", description: seconds between two ticks}
name: ticker
steps:
- id: tick
  shell:
    command: [sh, -c, 'i=0; while [ "$i" -lt "$COUNT" ]; do i=$((i+1)); echo "tick $i"; sleep "$PAUSE"; done; echo "{\"ticks\": $COUNT}" > "$TIDEWRIGHT_OUTPUT"']
    env: {COUNT: "${{ count }}", PAUSE: "${{ pause }}"}
"#;

/// The A2A SDKs' python, and where their npm packages are: installed
/// (once) by scripts/a2a-sdk.sh.
fn a2a_sdk() -> (String, std::path::PathBuf) {
    let out = std::process::Command::new(repo_root().join("scripts/a2a-sdk.sh"))
        .output()
        .expect("scripts/a2a-sdk.sh runs");
    assert!(
        out.status.success(),
        "scripts/a2a-sdk.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let modules = Path::new(&python)
        .ancestors()
        .nth(3)
        .expect("the prefix")
        .join("node_modules");
    (python, modules)
}

async fn start(dir: &Path, extra: &[&str]) -> (Server, Process, Process, String) {
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).expect("templates dir");
    std::fs::write(templates.join("ticker.yaml"), TICKER).expect("template");
    let http = free_addr();
    let mut flags = vec!["--templates-dir", templates.to_str().expect("utf-8")];
    flags.extend_from_slice(extra);
    let (server, worker) = start_with_roles(dir, &http, &flags, 4)
        .await
        .expect("server and worker");
    // A Claude Code worker of a pool: its runtime is a skill on the card.
    let agents = server
        .worker_with("agents-1", &["claude-code"], 1, &["--pool", "agents"])
        .expect("an agent worker");
    server
        .wait_for_agents(&["w1", "agents-1"])
        .await
        .expect("both workers");
    (server, worker, agents, http)
}

/// Runs an SDK client script (`program` runs it) against the server at
/// `http` as developer `dana`: what it printed, as JSON.
fn client_report(program: &str, script: &str, http: &str, env: &[(&str, &Path)]) -> Value {
    let mut command = std::process::Command::new(program);
    command
        .arg(repo_root().join(script))
        .arg(format!("http://{http}"))
        .env("TIDEWRIGHT_TOKEN", "tidewright_dev");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("the client runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the report")
}

fn refused_field(refusal: &Value) -> &Value {
    &refusal["data"]["field"]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_a2a_sdk_sends_streams_resumes_lists_and_cancels_tasks_and_meets_each_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, _worker, _agents, http) = start(dir.path(), &[]).await;
    let (python, _) = a2a_sdk();
    let report = client_report(&python, "tests/a2a/client.py", &http, &[]);

    let card = &report["card"];
    assert_eq!(card["name"], "tidewright");
    assert_eq!(card["streaming"], true);
    assert_eq!(
        card["interfaces"],
        json!([[format!("http://{http}/a2a"), "JSONRPC", "1.0"]])
    );
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .expect("skills")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        skills.contains(&"ticker") && skills.contains(&"claude-code"),
        "{skills:?}"
    );
    assert!(
        !skills.contains(&"codex"),
        "no worker offers it: {skills:?}"
    );

    let blocking = &report["blocking"];
    assert_eq!(blocking["state"], "TASK_STATE_COMPLETED", "{report}");
    assert_eq!(blocking["context"], "ctx-a");
    assert_eq!(blocking["again"], true, "one task per message id");
    assert_eq!(blocking["artifacts"][0]["artifactId"], "tick");
    assert_eq!(
        blocking["artifacts"][0]["parts"][0]["data"],
        json!({"ticks": 2.0})
    );

    let ticks = |value: &Value| -> Vec<u32> {
        value
            .as_array()
            .expect("ticks")
            .iter()
            .map(|t| {
                t.as_str()
                    .and_then(|t| t.strip_prefix("tick "))
                    .and_then(|n| n.parse().ok())
                    .expect("a tick")
            })
            .collect()
    };
    let streaming = &report["streaming"];
    assert_eq!(streaming["first"], "task", "a stream starts with the task");
    assert_eq!(streaming["resumed_first"], "task");
    assert_eq!(streaming["final"], "TASK_STATE_COMPLETED", "{report}");
    assert_eq!(
        streaming["artifact"]["parts"][0]["data"],
        json!({"ticks": 12.0})
    );
    let seen = ticks(&streaming["ticks"]);
    assert_eq!(&seen[..3], &[1, 2, 3]);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&12));
    // Resumed after the last event seen: every tick, once, in order.
    let resumed = &report["last_event_id"];
    assert_eq!(resumed["resumed_first"], "task");
    assert_eq!(resumed["final"], "TASK_STATE_COMPLETED");
    assert_eq!(ticks(&resumed["ticks"]), (1..=12).collect::<Vec<u32>>());

    let mut latencies: Vec<f64> = report["latency_us"]
        .as_array()
        .expect("latencies")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(latencies.len(), 200, "every tick reached the client");
    latencies.sort_by(f64::total_cmp);
    println!(
        "A2A stream, an event to the Python SDK client: {} events, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50) / 1000.0,
        percentile(&latencies, 0.99) / 1000.0,
        latencies[latencies.len() - 1] / 1000.0
    );

    assert_eq!(report["listed"], true, "a context lists its tasks");
    assert_eq!(report["got"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(report["got"]["artifacts"], 1);

    let cancel = &report["cancel"];
    assert!(
        ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING"]
            .contains(&cancel["answered"].as_str().unwrap_or_default()),
        "{cancel}"
    );
    assert_eq!(cancel["cancelled"], "TASK_STATE_CANCELED");
    assert_eq!(
        cancel["again"]["type"], "TaskNotCancelableError",
        "{cancel}"
    );

    let refusals = &report["refusals"];
    assert_eq!(
        refusals["skill"]["type"], "InvalidParamsError",
        "{refusals}"
    );
    assert_eq!(refused_field(&refusals["skill"]), "metadata.skill");
    assert!(
        refusals["skill"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ticker")),
        "the refusal lists the skills: {refusals}"
    );
    assert_eq!(refused_field(&refusals["no_parts"]), "message.parts");
    assert_eq!(refused_field(&refusals["part"]), "message.parts[1]");
    assert_eq!(refusals["unknown_task"]["type"], "TaskNotFoundError");
    assert_eq!(refusals["ended"]["type"], "UnsupportedOperationError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_a2a_sdk_streams_a_task_drops_it_and_resubscribes_to_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, _worker, _agents, http) = start(dir.path(), &[]).await;
    let (_, modules) = a2a_sdk();
    let report = client_report(
        "node",
        "tests/a2a/client.mjs",
        &http,
        &[("A2A_SDK_DIR", &modules)],
    );
    assert_eq!(report["first"], "task", "{report}");
    assert_eq!(report["resumedFirst"], "task");
    assert_eq!(report["final"], "TASK_STATE_COMPLETED");
    assert_eq!(report["artifact"], json!(["data"]));
    let ticks: Vec<&str> = report["ticks"]
        .as_array()
        .expect("ticks")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(&ticks[..2], &["tick 1", "tick 2"]);
    assert_eq!(ticks.last(), Some(&"tick 10"));
    assert_eq!(report["got"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(report["got"]["context"], "ctx-js");
    assert!(
        report["refused"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("metadata.skill")),
        "{report}"
    );
}

/// Push notifications through the webhook deliveries: the SDK's configs,
/// each notification parsed strictly as its `StreamResponse`, with the
/// client's token and authorization, and signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_updates_are_pushed_to_the_a2a_clients_receiver_through_the_webhooks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, _worker, _agents, http) =
        start(dir.path(), &["--webhook-allow-private-networks"]).await;
    let (python, _) = a2a_sdk();
    let report = client_report(&python, "tests/a2a/push.py", &http, &[]);
    assert_eq!(report["card_push"], true);
    let message = &report["message"];
    assert_eq!(message["token"], "tok-1", "{report}");
    assert_eq!(message["authorization"], "Bearer cred-1");
    assert_eq!(message["signed"], true);
    let kinds = message["kinds"].as_array().expect("kinds");
    assert_eq!(
        kinds.last(),
        Some(&json!("task")),
        "the ended task comes last: {report}"
    );
    assert!(
        kinds[..kinds.len() - 1]
            .iter()
            .all(|k| k == "status_update"),
        "{report}"
    );
    // A step's update says the task was working then, whatever it is now.
    let states = message["states"].as_array().expect("states");
    assert!(
        states[..states.len() - 1]
            .iter()
            .all(|s| s == "TASK_STATE_WORKING"),
        "{report}"
    );
    assert_eq!(
        message["states"].as_array().and_then(|s| s.last()),
        Some(&json!("TASK_STATE_COMPLETED"))
    );
    assert_eq!(message["final_artifacts"], 1);
    // Read back without the token or the credentials.
    let listed = &message["listed"][0];
    assert_eq!(listed["taskId"], message["task"]);
    assert!(listed.get("token").is_none(), "{listed}");
    assert_eq!(listed["authentication"], json!({"scheme": "Bearer"}));

    let config = &report["config"];
    assert_eq!(config["made"]["id"], "ops", "{report}");
    assert_eq!(config["got"]["url"], config["made"]["url"]);
    assert_eq!(config["token"], "tok-2");
    assert_eq!(config["authorization"], Value::Null);
    assert_eq!(config["after_delete"], 0);
}

/// What the endpoint answers before a method runs: the card to anyone,
/// nothing else without a token, and JSON-RPC's own refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_is_public_and_every_call_needs_a_token_a_role_and_a_well_formed_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, _worker, _agents, http) = start(dir.path(), &[]).await;
    let card =
        http_call(&http, "GET", "/.well-known/agent-card.json", None, &[], "").expect("answered");
    assert_eq!(card.status, 200, "{}", card.body);
    assert_eq!(card.json()["capabilities"]["streaming"], true);

    let json_type = [("Content-Type", "application/json")];
    let send = r#"{"jsonrpc":"2.0","id":7,"method":"SendMessage","params":{"message":{"messageId":"x","role":"ROLE_USER","parts":[{"data":{"count":1}}]},"metadata":{"skill":"ticker"}}}"#;
    let rpc = |token: Option<&str>, headers: &[(&str, &str)], body: &str| {
        let mut all = json_type.to_vec();
        all.extend_from_slice(headers);
        http_call(&http, "POST", "/a2a", token, &all, body).expect("answered")
    };
    let anonymous = rpc(None, &[], send);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let viewer = rpc(Some("tidewright_viewer"), &[], send);
    assert_eq!(
        viewer.status, 403,
        "a viewer submits nothing: {}",
        viewer.body
    );

    let error = |answer: HttpAnswer| {
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["error"].clone()
    };
    assert_eq!(
        error(rpc(Some("tidewright_dev"), &[], "{not json"))["code"],
        -32700
    );
    assert_eq!(
        error(rpc(
            Some("tidewright_dev"),
            &[],
            r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#
        ))["code"],
        -32600
    );
    let unknown = error(rpc(
        Some("tidewright_dev"),
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{}}"#,
    ));
    assert_eq!(unknown["code"], -32601);
    let newer = error(rpc(Some("tidewright_dev"), &[("A2A-Version", "2.0")], send));
    assert_eq!(newer["code"], -32009);
    let bad_type = error(rpc(
        Some("tidewright_dev"),
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"parts":"no"}}}"#,
    ));
    assert_eq!(bad_type["code"], -32602);
    assert_eq!(bad_type["data"][0]["metadata"]["field"], "message.parts");
    let page = error(rpc(
        Some("tidewright_dev"),
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{"pageSize":101}}"#,
    ));
    assert_eq!(page["data"][0]["metadata"]["field"], "pageSize");

    let push = error(rpc(
        Some("tidewright_dev"),
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"p","parts":[{"text":"hi"}]},"configuration":{"taskPushNotificationConfig":{"url":"http://127.0.0.1:1/"}}}}"#,
    ));
    // Loopback is a private address: refused (this server does not allow
    // them), before anything is made.
    assert_eq!(push["code"], -32602, "{push}");
    assert_eq!(
        push["data"][0]["metadata"]["field"],
        "configuration.taskPushNotificationConfig.url"
    );

    // None of the refused sends made a task.
    let listed = rpc(
        Some("tidewright_admin"),
        &[],
        r#"{"jsonrpc":"2.0","id":2,"method":"ListTasks","params":{}}"#,
    );
    assert_eq!(
        listed.json()["result"]["tasks"],
        json!([]),
        "{}",
        listed.body
    );
    // A well-formed one answers with its id.
    let sent = rpc(Some("tidewright_dev"), &[], send);
    assert_eq!(sent.json()["id"], 7, "{}", sent.body);
    assert_eq!(
        sent.json()["result"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED",
        "{}",
        sent.body
    );
}
