//! The fleet as MCP tools for a lead agent: a step plays the agent with the
//! official MCP Python SDK (`mcp`, PyPI, pinned by scripts/mcp-sdk.sh),
//! which starts `tidewright mcp` as an agent CLI does, lists its tools and calls
//! each. The tasks it submits are its task's children: in its tenant,
//! labelled with their parent, within the fan-out and depth limits, read
//! and cancelled by it alone, and cancelled when it ends; its token is
//! refused once its attempt has ended. And the real Claude Code CLI as the
//! lead: the mock Messages API scripts its tool calls (three submits, a
//! wait on each by the id each answered), the fleet runs the three.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tidewright_api::v1;
use tidewright_tests::*;
use tonic::Code;

/// The MCP SDK's python, installed (once) by scripts/mcp-sdk.sh.
fn mcp_python() -> String {
    let out = std::process::Command::new(repo_root().join("scripts/mcp-sdk.sh"))
        .output()
        .expect("scripts/mcp-sdk.sh runs");
    assert!(
        out.status.success(),
        "scripts/mcp-sdk.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn task_of(client: &Tasks, id: &str) -> v1::Task {
    client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: id.to_string(),
        })
        .await
        .expect("get")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_step_fans_out_through_the_mcp_tools_and_its_children_live_and_end_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("dir");
    std::fs::write(
        templates.join("greet.yaml"),
        "description: Greets someone.\nparameters:\n  who: {required: true}\n  times: {type: integer, default: 1}\nsteps:\n  - id: say\n    shell: {command: [echo, 'hello ${{ who }}', '${{ times }}']}\n",
    )
    .expect("template");
    let python = mcp_python();
    let venv = std::path::Path::new(&python)
        .ancestors()
        .nth(2)
        .expect("the venv")
        .to_path_buf();
    let script = repo_root().join("tests/mcp/fleet.py");
    let server = Server::start_on(
        dir.path(),
        &free_addr(),
        &[
            "--templates-dir",
            templates.to_str().expect("utf-8"),
            "--max-children",
            "5",
            "--max-child-depth",
            "1",
        ],
    )
    .expect("server");
    // The sandboxed step reads the venv, the interpreter it was made from
    // (wherever that is installed) and the script.
    let base = std::process::Command::new(&python)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .expect("python runs");
    let base = String::from_utf8_lossy(&base.stdout).trim().to_string();
    let read_only = format!(
        "{}:{base}:{}",
        venv.display(),
        script.parent().expect("tests/mcp").display()
    );
    let _worker = server
        .worker_with("w", &["shell"], 8, &["--sandbox-read-only", &read_only])
        .expect("worker");
    let client = server.tasks().await.expect("client");

    // The lead keeps its token where the test finds it, to ask for a child
    // once it has ended.
    let token_file = dir.path().join("lead-token");
    let lead = format!(
        "printf %s \"$TIDEWRIGHT_TOKEN\" > {}; exec {python} {}",
        token_file.display(),
        script.display()
    );
    let lead_id = client
        .clone()
        .submit_task(task("lead", vec![shell_step("lead", &[], &lead)]))
        .await
        .expect("submit")
        .into_inner()
        .task_id;
    let led = wait_finished(&client, &lead_id, Duration::from_secs(120))
        .await
        .expect("the lead finishes");
    assert_eq!(
        led.state,
        v1::TaskState::Succeeded as i32,
        "{}: {}",
        led.message,
        task_logs(&client, &lead_id).await
    );
    let report: Value = serde_json::from_str(&led.steps[0].output_json).expect("the report");

    // Every tool is listed, and each answered.
    let mut every = vec![
        "cancel_task",
        "get_task",
        "list_tasks",
        "publish",
        "state_delete",
        "state_get",
        "state_put",
        "steer_task",
        "submit_task",
        "submit_template",
        "task_logs",
        "wait_for_message",
        "wait_for_task",
    ];
    every.sort();
    assert_eq!(report["tools"], json!(every));
    assert_eq!(
        report["state_get"]["value"],
        json!({"parts": 2}),
        "{report}"
    );
    assert_eq!(report["state_delete"]["deleted"], true);
    assert_eq!(report["publish"]["delivered"], 0);
    assert_eq!(report["wait_for_message"]["timedOut"], true);
    let child = report["submit_task"]["taskId"]
        .as_str()
        .expect("a child")
        .to_string();
    assert_eq!(report["submit_task"]["created"], true);
    assert_eq!(
        (
            &report["submit_again"]["taskId"],
            &report["submit_again"]["created"]
        ),
        (&json!(child), &json!(false)),
        "the key finds the first"
    );
    let waited = &report["wait_for_task"];
    assert_eq!(waited["state"], "succeeded", "{waited}");
    assert_eq!(waited["steps"][0]["output"], json!({"n": 7}));
    assert_eq!(report["get_task"]["id"], child.as_str());
    assert!(
        report["task_logs"]["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|l| l["line"] == "hello from the child"),
        "{}",
        report["task_logs"]
    );
    let steered = report["steer_task"]["error"].as_str().unwrap_or_default();
    assert!(
        steered.contains("step nap is not an agent's"),
        "{}",
        report["steer_task"]
    );
    assert_eq!(report["cancel_task"]["state"], "cancelled");
    let listed = report["list_tasks"]["tasks"].as_array().expect("tasks");
    assert_eq!(listed.len(), 5, "its children, and only they: {listed:?}");
    assert!(
        report["list_running"]["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .any(|t| t["name"] == "left"),
        "{}",
        report["list_running"]
    );
    assert_eq!(report["wait_timeout"]["timedOut"], true);

    // Refusals are the tools' answers, naming what refused them.
    let refused = |name: &str| {
        report[name]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        refused("over_the_limit").contains("max-children"),
        "{report}"
    );
    assert_eq!(
        (
            &report["again_at_the_limit"]["taskId"],
            &report["again_at_the_limit"]["created"]
        ),
        (&json!(child), &json!(false)),
        "a key already used finds its task, at the limit too: {report}"
    );
    assert!(refused("not_a_child").starts_with("not found"), "{report}");
    assert!(
        refused("bad_task").starts_with("invalid argument")
            && refused("bad_task").contains("steps[0]"),
        "{report}"
    );

    // Each child is the lead's: its tenant, labelled with its parent.
    let children: BTreeMap<String, v1::Task> = {
        let mut found = BTreeMap::new();
        for t in listed {
            let id = t["taskId"].as_str().expect("id");
            let task = task_of(&client, id).await;
            found.insert(
                task.spec
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                task,
            );
        }
        found
    };
    for (name, task) in &children {
        let labels = &task.spec.as_ref().expect("spec").labels;
        assert_eq!(
            labels.get("tidewright.dev/parent"),
            Some(&lead_id),
            "{name}"
        );
        assert_eq!(
            labels.get("tidewright.dev/parent-step").map(String::as_str),
            Some("lead")
        );
        assert_eq!(
            labels.get("tidewright.dev/depth").map(String::as_str),
            Some("1")
        );
        assert_eq!(task.tenant, led.tenant, "{name}");
    }
    assert!(children.contains_key("greet") || children.values().any(|t| t.steps[0].id == "say"));

    // One level deeper than --max-child-depth: the grandchild is refused.
    let deeper = &children["deeper"];
    let deeper = wait_finished(&client, &deeper.id, Duration::from_secs(30))
        .await
        .expect("finishes");
    assert_eq!(deeper.state, v1::TaskState::Failed as i32);
    let logs = task_logs(&client, &deeper.id).await;
    assert!(logs.contains("max-child-depth"), "{logs}");

    // The lead's end cancels the child it left running.
    let left = &children["left"];
    let left = wait_finished(&client, &left.id, Duration::from_secs(30))
        .await
        .expect("cancelled with its parent");
    assert_eq!(left.state, v1::TaskState::Cancelled as i32);
    assert!(
        left.message
            .contains(&format!("its parent task {lead_id} ended (succeeded)")),
        "{}",
        left.message
    );

    // A child asked for with the lead's token after it ended: refused, and
    // nothing made.
    let token = std::fs::read_to_string(&token_file).expect("the lead's token");
    let as_lead = server.tasks_as(&token).await.expect("client");
    let late = as_lead
        .clone()
        .submit_task(task("too-late", vec![shell_step("x", &[], "true")]))
        .await
        .expect_err("refused");
    assert_eq!(late.code(), Code::Unauthenticated, "{}", late.message());
    assert!(
        late.message().contains("ended with its attempt"),
        "{}",
        late.message()
    );
    let read = as_lead
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: children["left"].id.clone(),
        })
        .await
        .expect_err("refused too");
    assert_eq!(read.code(), Code::Unauthenticated, "{}", read.message());
    assert_eq!(
        all_task_ids(&client).await.expect("ids").len(),
        6,
        "the lead and its 5 children"
    );
}

/// Every log line of a task, one per line.
async fn task_logs(client: &Tasks, id: &str) -> String {
    let mut events = client
        .clone()
        .watch_task(v1::WatchTaskRequest {
            task_id: id.to_string(),
            after_seq: 0,
            follow: false,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut lines = String::new();
    while let Some(event) = events.message().await.expect("event") {
        if let Some(v1::event::Kind::Log(log)) = event.kind {
            lines.push_str(&log.line);
            lines.push('\n');
        }
    }
    lines
}

/// A part of the work, as the lead hands it out: a shell step whose output
/// names it.
fn part(name: &str) -> Value {
    json!({
        "name": format!("part-{name}"),
        "steps": [{"id": "work", "shell": {"command": ["sh", "-c",
            format!("echo working on {name}; echo '{{\"part\": \"{name}\"}}' > \"$TIDEWRIGHT_OUTPUT\"")]}}],
    })
}

// Multi-threaded: the CLI's MCP server calls the control plane while the
// test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claude_code_lead_fans_out_three_subtasks_through_mcp_waits_and_writes_their_results() {
    use tidewright_tests::provider::{Api, Mock, Reply};
    let dir = tempfile::tempdir().expect("tempdir");
    let tool = |name: &str, args: Value| Reply::Tool {
        name: format!("mcp__tidewright__{name}"),
        args,
    };
    // The model's turns, as the real Claude Code CLI runs them: three
    // submits, a wait on each (by the id each submit answered), then the
    // results shared for the next step.
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            tool("submit_task", json!({"task": part("a")})),
            tool("submit_task", json!({"task": part("b")})),
            tool("submit_task", json!({"task": part("c")})),
            tool("wait_for_task", json!({"taskId": "{result[0].taskId}"})),
            tool("wait_for_task", json!({"taskId": "{result[1].taskId}"})),
            tool("wait_for_task", json!({"taskId": "{result[2].taskId}"})),
            tool(
                "state_put",
                json!({"key": "results", "value": {
                    "a": "{result[3].state}", "b": "{result[4].state}", "c": "{result[5].state}",
                    "outputs": "{result[3].steps} {result[4].steps} {result[5].steps}",
                }}),
            ),
            Reply::Text("The three parts are done.".into()),
        ],
    )
    .await
    .expect("mock");
    let server = Server::start(dir.path()).expect("server");
    let _worker = start_claude_worker(
        &server,
        dir.path(),
        &mock,
        &["claude-code", "shell"],
        4,
        &[],
    )
    .expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    let client = server.tasks().await.expect("client");
    let mut lead = claude_step("lead", "Split the work in three and hand it out", &[]);
    if let Some(v1::step_spec::Runtime::ClaudeCode(claude)) = lead.runtime.as_mut() {
        claude.max_turns = 12;
    }
    let id = client
        .clone()
        .submit_task(task(
            "fan-out",
            vec![
                lead,
                shell_step(
                    "report",
                    &["lead"],
                    r#"tidewright state get results > "$TIDEWRIGHT_OUTPUT""#,
                ),
            ],
        ))
        .await
        .expect("submit")
        .into_inner()
        .task_id;
    let done = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("the lead and its report succeed");
    let results = step_output(&done, "report").expect("the report");
    assert_eq!(
        (&results["a"], &results["b"], &results["c"]),
        (
            &json!("succeeded"),
            &json!("succeeded"),
            &json!("succeeded")
        ),
        "{results}"
    );
    let outputs = results["outputs"].as_str().expect("outputs");
    for name in ["a", "b", "c"] {
        assert!(
            outputs.contains(&format!("{{\"part\":\"{name}\"}}")),
            "{outputs}"
        );
    }

    // The three subtasks are the lead's children, run by the fleet.
    let children = client
        .clone()
        .list_tasks(v1::ListTasksRequest {
            labels: [("tidewright.dev/parent".to_string(), id.clone())].into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .tasks;
    let mut names: Vec<String> = children
        .iter()
        .map(|t| t.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(names, ["part-a", "part-b", "part-c"]);
    for child in &children {
        assert_eq!(child.state, v1::TaskState::Succeeded as i32);
        let labels = &child.spec.as_ref().expect("spec").labels;
        assert_eq!(
            labels.get("tidewright.dev/parent-step").map(String::as_str),
            Some("lead")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_outside_tidewright_runs_tasks_through_the_http_endpoint_as_its_tokens_caller()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_addr();
    let (_server, _worker) = start_with_roles(dir.path(), &http, &[], 2)
        .await
        .expect("server and worker");
    let python = mcp_python();
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("tests/mcp/remote.py"))
        .arg(format!("http://{http}/mcp"))
        .env("TIDEWRIGHT_TOKEN", "tidewright_dev")
        .output()
        .expect("the client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report");
    assert_eq!(
        report["tools"],
        json!([
            "cancel_task",
            "get_task",
            "list_tasks",
            "steer_task",
            "submit_task",
            "submit_template",
            "task_logs",
            "wait_for_task"
        ])
    );
    assert_eq!(report["submit_task"]["created"], true);
    let waited = &report["wait_for_task"];
    assert_eq!(waited["state"], "succeeded", "{waited}");
    assert_eq!(waited["tenant"], "default");
    assert_eq!(waited["steps"][0]["output"], json!({"ok": true}));
    assert!(
        report["list_tasks"]["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .any(|t| t["taskId"] == waited["id"]),
        "{report}"
    );
    assert!(
        report["bad_task"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("invalid argument")),
        "{report}"
    );

    // Without a token, nothing reaches MCP: 401, said in JSON.
    let refused = http_call(
        &http,
        "POST",
        "/mcp",
        None,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .expect("answered");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "UNAUTHENTICATED");
}
