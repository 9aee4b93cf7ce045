//! Approval gates on a real control plane: a step that needs a person's
//! approval waits, `awaiting_approval`, until one of its named approvers
//! decides over the CLI, gRPC or HTTP; anyone else is refused; a decision
//! is made once, is audited, and a waiting step outlives a kill -9 of the
//! control plane.

use std::process::Command;
use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::*;

/// `deploy` waits for the viewer "vic" or any admin; the developer "dana"
/// submits it but may not decide.
const RELEASE: &str = "name: release
steps:
  - id: build
    shell: {command: ['true']}
  - id: deploy
    dependsOn: [build]
    approval: {message: 'Ship build 42 to prod?', approvers: [vic, admin], timeoutSeconds: 3600}
    shell: {command: ['true']}
  - id: smoke
    dependsOn: [deploy]
    shell: {command: ['true']}
";

fn cli_as(server: &Server, token: &str) -> Command {
    let mut command = server.cli();
    command.env("TIDEWRIGHT_TOKEN", token);
    command
}

fn stdout(output: std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn submit_file(server: &Server, dir: &std::path::Path, yaml: &str) -> String {
    let file = dir.join("task.yaml");
    std::fs::write(&file, yaml).expect("task file");
    stdout(succeed(
        cli_as(server, "tidewright_dev")
            .args(["submit", "-o", "name", "-f"])
            .arg(&file),
    ))
    .trim()
    .to_string()
}

#[tokio::test]
async fn a_gated_step_runs_once_a_named_approver_approves_and_the_wait_outlives_a_kill()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let http = free_addr();
    let (mut server, _worker) = start_with_roles(dir.path(), &http, &[], 2).await?;
    let id = submit_file(&server, dir.path(), RELEASE);
    let client = server.tasks().await?;
    wait_step(&client, &id, "deploy", v1::StepState::AwaitingApproval).await?;

    // `tidewright get task` says who must decide, and how.
    let shown = stdout(succeed(
        cli_as(&server, "tidewright_dev").args(["get", "task", &id]),
    ));
    assert!(
        shown.contains(
            "Awaiting:  step deploy needs approval by vic or admin (Ship build 42 to prod?), times out at "
        ) && shown.contains(&format!("tidewright approve {id} deploy")),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(succeed(
        cli_as(&server, "tidewright_dev").args(["get", "task", &id, "-o", "json"]),
    )))?;
    let deploy = &json["steps"][1];
    assert_eq!(deploy["state"], "awaiting_approval");
    assert_eq!(
        deploy["approval"]["approvers"],
        serde_json::json!(["vic", "admin"])
    );
    assert!(deploy["approval"]["deadline"].is_string(), "{deploy}");
    let waiting = scrape(&http);
    assert!(
        waiting.contains("tidewright_steps_awaiting_approval 1"),
        "{waiting}"
    );

    // Someone not named: refused, and nothing changes.
    let refused =
        fails_in_one_line(cli_as(&server, "tidewright_dev").args(["approve", &id, "deploy"]));
    assert!(
        refused.contains("permission denied")
            && refused.contains("dana (developer) is not an approver of step \"deploy\"; its approvers are: vic, admin"),
        "{refused}"
    );
    // A step with no gate, or none by that name: clear answers.
    let ungated =
        fails_in_one_line(cli_as(&server, "tidewright_admin").args(["approve", &id, "build"]));
    assert!(
        ungated.contains("failed precondition") && ungated.contains("has no approval gate"),
        "{ungated}"
    );
    let unknown =
        fails_in_one_line(cli_as(&server, "tidewright_admin").args(["approve", &id, "nope"]));
    assert!(unknown.contains("not found"), "{unknown}");

    // kill -9 while it waits: the wait, and its deadline, come back.
    let deadline = step_of(&client, &id, "deploy").await?.approval_deadline;
    assert!(deadline.is_some());
    let listen = server.listen_addr();
    server.process.signal("KILL");
    server.process.wait_exit(Duration::from_secs(10))?;
    server = start_with_tokens_again(dir.path(), &listen, &http)?;
    server.wait_for_agents(&["w1"]).await?;
    let client = server.tasks().await?;
    let after = wait_step(&client, &id, "deploy", v1::StepState::AwaitingApproval).await?;
    assert_eq!(
        after.approval_deadline, deadline,
        "the wait did not start over"
    );

    // vic, named, approves with the CLI: the rest of the task runs.
    let approved = stdout(succeed(cli_as(&server, "tidewright_viewer").args([
        "approve",
        &id,
        "deploy",
        "--reason",
        "release notes checked",
    ])));
    assert!(
        approved.starts_with(&format!("step deploy of task {id} approved: the step is ")),
        "{approved}"
    );
    let task = wait_succeeded(&client, &id, Duration::from_secs(30)).await?;
    assert_eq!(task.steps[1].attempt, 1);
    assert_eq!(task.steps[1].approval_deadline, None, "no wait left");

    // Approving again is a clear FAILED_PRECONDITION.
    let again =
        fails_in_one_line(cli_as(&server, "tidewright_admin").args(["approve", &id, "deploy"]));
    assert!(
        again.contains("failed precondition")
            && again.contains(&format!(
                "step \"deploy\" of task {id} is not awaiting approval"
            )),
        "{again}"
    );

    // The step's events and the audit log say who decided, when and why.
    let events = all_events(&client, &id).await?;
    assert!(
        events.iter().any(
            |(state, message)| *state == v1::StepState::AwaitingApproval as i32
                && message
                    == "awaiting approval by vic or admin within 3600s: Ship build 42 to prod?"
        ),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(state, message)| *state == v1::StepState::Queued as i32
                && message == "approved by vic: release notes checked"),
        "{events:?}"
    );
    let audit = server.audit_log().await?;
    let decided: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "step.approve" && e.task_id == id)
        .map(|e| {
            (
                e.actor.as_str(),
                e.outcome.as_str(),
                e.detail.as_str(),
                e.time.is_some(),
            )
        })
        .collect();
    assert_eq!(
        decided.iter().filter(|d| d.1 == "ok").collect::<Vec<_>>(),
        [&("vic", "ok", "step deploy: release notes checked", true)],
        "{audit:#?}"
    );
    assert!(
        decided
            .iter()
            .any(|d| d.0 == "dana" && d.1.starts_with("refused: ")),
        "refusals are audited too: {audit:#?}"
    );
    let metrics = scrape(&http);
    assert!(
        metrics.contains("tidewright_approvals_total{decision=\"approved\"} 1")
            && metrics.contains("tidewright_steps_awaiting_approval 0"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn a_rejection_fails_the_step_with_its_reason_and_a_timeout_fails_it_saying_so()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let http = free_addr();
    let (server, _worker) = start_with_roles(dir.path(), &http, &[], 2).await?;
    let client = server.tasks().await?;

    let id = submit_file(&server, dir.path(), RELEASE);
    wait_step(&client, &id, "deploy", v1::StepState::AwaitingApproval).await?;
    // A rejection needs a reason: the CLI asks for it, the API names it.
    let out = cli_as(&server, "tidewright_admin")
        .args(["reject", &id, "deploy"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
    let status = client
        .clone()
        .reject_step(v1::DecideStepRequest {
            task_id: id.clone(),
            step_id: "deploy".into(),
            reason: " ".into(),
        })
        .await
        .expect_err("no reason");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("reason: required"),
        "{status:?}"
    );

    succeed(cli_as(&server, "tidewright_admin").args([
        "reject",
        &id,
        "deploy",
        "--reason",
        "the freeze is on",
    ]));
    let task = wait_finished(&client, &id, Duration::from_secs(20)).await?;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    assert_eq!(task.steps[1].error, "rejected by root: the freeze is on");
    assert_eq!(task.steps[2].state, v1::StepState::Skipped as i32);
    assert_eq!(
        task.message,
        "step \"deploy\" failed: rejected by root: the freeze is on"
    );

    // Nobody decides within the timeout: the step fails saying so.
    let id = submit_file(
        &server,
        dir.path(),
        "name: unattended
steps:
  - id: deploy
    approval: {approvers: [vic], timeoutSeconds: 1}
    shell: {command: ['true']}
",
    );
    let task = wait_finished(&client, &id, Duration::from_secs(20)).await?;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    assert_eq!(
        task.steps[0].error,
        "no approver decided within 1s: the approval timed out"
    );
    assert!(task.steps[0].attempts.is_empty(), "it never ran");
    let metrics = scrape(&http);
    assert!(
        metrics.contains("tidewright_approvals_total{decision=\"rejected\"} 1")
            && metrics.contains("tidewright_approvals_total{decision=\"timed_out\"} 1"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn decisions_over_http_get_their_status_and_the_task_back() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let http = free_addr();
    let (server, _worker) = start_with_roles(dir.path(), &http, &[], 2).await?;
    let client = server.tasks().await?;
    let id = submit_file(&server, dir.path(), RELEASE);
    wait_step(&client, &id, "deploy", v1::StepState::AwaitingApproval).await?;
    let call = |path: &str, token: &str, body: &str| {
        http_call(&http, "POST", path, Some(token), &[], body).expect("the HTTP port answers")
    };
    let approve = format!("/api/v1/tasks/{id}/steps/deploy/approve");
    let answer = call(&approve, "tidewright_dev", "");
    assert_eq!(answer.status, 403, "{}", answer.body);
    let answer = call(&approve, "tidewright_viewer", "{\"because\": 1}");
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"]["field"], "body");
    let answer = call(
        &format!("/api/v1/tasks/{id}/steps/deploy/reject"),
        "tidewright_viewer",
        "{}",
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"]["field"], "reason");
    let answer = call(
        &format!("/api/v1/tasks/{id}/steps/missing/approve"),
        "tidewright_viewer",
        "",
    );
    assert_eq!(answer.status, 404, "{}", answer.body);

    let answer = call(&approve, "tidewright_viewer", "{\"reason\": \"lgtm\"}");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let task = answer.json();
    assert_eq!(task["id"], id.as_str());
    assert_ne!(task["steps"][1]["state"], "awaiting_approval");
    let answer = call(&approve, "tidewright_viewer", "");
    assert_eq!(answer.status, 409, "{}", answer.body);
    wait_succeeded(&client, &id, Duration::from_secs(30)).await?;
    Ok(())
}

/// `/metrics` as the admin.
fn scrape(http: &str) -> String {
    let (status, body) = http_get(http, "/metrics", Some("tidewright_admin")).expect("scrape");
    assert_eq!(status, 200, "{body}");
    body
}

async fn step_of(client: &Tasks, id: &str, step: &str) -> anyhow::Result<v1::Step> {
    let task = client
        .clone()
        .get_task(v1::GetTaskRequest { task_id: id.into() })
        .await?
        .into_inner();
    task.steps
        .into_iter()
        .find(|s| s.id == step)
        .ok_or_else(|| anyhow::anyhow!("no step {step}"))
}

/// Every step event of the task: (state, message).
async fn all_events(client: &Tasks, id: &str) -> anyhow::Result<Vec<(i32, String)>> {
    use tokio_stream::StreamExt;
    let mut stream = client
        .clone()
        .watch_task(v1::WatchTaskRequest {
            task_id: id.into(),
            after_seq: 0,
            follow: false,
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        if let Some(v1::event::Kind::StepState(s)) = event?.kind {
            events.push((s.state, s.message));
        }
    }
    Ok(events)
}

/// The control plane `start_with_roles` made, started again on the same
/// addresses, data directory and tokens.
fn start_with_tokens_again(
    dir: &std::path::Path,
    listen: &str,
    http: &str,
) -> anyhow::Result<Server> {
    let tokens = dir.join("tokens").display().to_string();
    let mut server = Server::start_on(
        dir,
        listen,
        &["--tokens-file", &tokens, "--http-listen", http],
    )?;
    server.worker_token = "tidewright_worker".into();
    server.admin_token = "tidewright_admin".into();
    Ok(server)
}
