//! The fleet as MCP tools for a lead agent: a step plays the agent with the
//! official MCP Python SDK (`mcp`, PyPI, pinned by scripts/mcp-sdk.sh),
//! which starts `orca mcp` as an agent CLI does, lists its tools and calls
//! each. The tasks it submits are its task's children: in its tenant,
//! labelled with their parent, within the fan-out and depth limits, read
//! and cancelled by it alone, and cancelled when it ends; a child asked
//! for after it ended is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use orca_api::v1;
use orca_tests::*;
use serde_json::{Value, json};
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
        "printf %s \"$ORCA_TOKEN\" > {}; exec {python} {}",
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
        assert_eq!(labels.get("orca.dev/parent"), Some(&lead_id), "{name}");
        assert_eq!(
            labels.get("orca.dev/parent-step").map(String::as_str),
            Some("lead")
        );
        assert_eq!(labels.get("orca.dev/depth").map(String::as_str), Some("1"));
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
    assert_eq!(late.code(), Code::FailedPrecondition, "{}", late.message());
    assert!(late.message().contains("has ended"), "{}", late.message());
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
