//! The built-in templates end to end: `tidewright template run` against a real
//! control plane and worker, the agents' steps run by the real Claude Code
//! CLI against the mock Messages API (each step's conversation scripted by
//! its marker; their Bash and Write tools run for real), and the shell
//! checks run for real: git against a repository on disk, make, curl.
//! kubectl is the one stand-in (a script that records its arguments): no
//! Kubernetes API server runs here; `make e2e-kind` has a real one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tidewright_client::{Client, Settings, v1};
use tidewright_tests::git_server::local_repository;
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

const FINISH: Duration = Duration::from_secs(180);

/// Runs git in `dir`, which must succeed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A worker offering shell and claude-code, its agents talking to `mock`,
/// with `path_first` ahead on its PATH.
async fn worker(server: &Server, dir: &Path, mock: &Mock, path_first: Option<&Path>) -> Process {
    let bin = claude_bin().display().to_string();
    let path = match path_first {
        Some(first) => format!("{}:{}", first.display(), system_first_path()),
        None => system_first_path(),
    };
    let worker = start_worker_env(
        &server.url,
        dir,
        "agent-1",
        &["shell", "claude-code"],
        4,
        &["--claude-bin", &bin],
        &server.worker_token,
        &[
            ("ANTHROPIC_BASE_URL", &mock.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
            ("PATH", &path),
        ],
    )
    .expect("worker");
    server
        .wait_for_agents(&["agent-1"])
        .await
        .expect("worker up");
    worker
}

/// `tidewright template run NAME -p ...`: the new task's id.
fn run(server: &Server, name: &str, params: &[String]) -> String {
    let mut command = server.cli();
    command.args(["template", "run", name, "-o", "name"]);
    for param in params {
        command.args(["-p", param]);
    }
    let out = succeed(&mut command);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn finished(server: &Server, id: &str) -> v1::Task {
    let client = Client::connect(Settings::new(&server.url, Some(server.admin_token.clone())))
        .await
        .expect("client");
    tokio::time::timeout(FINISH, client.wait(id))
        .await
        .expect("in time")
        .expect("the task")
}

fn step<'a>(task: &'a v1::Task, id: &str) -> &'a v1::Step {
    task.steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

fn output(task: &v1::Task, id: &str) -> serde_json::Value {
    serde_json::from_str(&step(task, id).output_json).unwrap_or(serde_json::Value::Null)
}

fn failure(task: &v1::Task) -> String {
    task.steps
        .iter()
        .map(|s| format!("{}: {} {}", s.id, s.state, s.error))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The agent's tool call that clones `repo`, branches, writes `file`, and
/// pushes.
fn commit_and_push(repo: &Path, branch: &str, from: &str, file: &str, content: &str) -> Reply {
    Reply::claude_bash(&format!(
        "set -e; git clone --quiet {repo} repo; cd repo; git checkout --quiet -b \"tidewright/$TIDEWRIGHT_TASK_ID/{branch}\" {from}; \
         mkdir -p \"$(dirname {file})\"; printf '%s\\n' '{content}' > {file}; git add -A; \
         git -c user.name=agent -c user.email=agent@example.com commit --quiet -m '{branch}'; git push --quiet origin HEAD",
        repo = repo.display()
    ))
}

const MAKEFILE: &str = "test:\n\tsh tests/run.sh\nbuild:\n\tmkdir -p dist && echo built > dist/app\nmigrate:\n\techo migrated\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feature_template_plans_builds_in_parallel_tests_and_summarises() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = local_repository(
        dir.path(),
        &[("Makefile", MAKEFILE), ("tests/run.sh", "exit 1\n")],
    );
    let mock = Mock::start_routed(Api::Anthropic, vec![
        ("[tidewright template feature: plan]", vec![Reply::Text("Backend: hello(). Frontend: a hello page. Tests: both.".into())]),
        (
            "[tidewright template feature: backend]",
            vec![
                commit_and_push(&origin, "backend", "origin/main", "backend/hello.py", "def hello(): return \"hello\""),
                Reply::Text("Added backend/hello.py.".into()),
            ],
        ),
        (
            "[tidewright template feature: frontend]",
            vec![
                commit_and_push(&origin, "frontend", "origin/main", "frontend/hello.js", "export const hello = () => \"hello\";"),
                Reply::Text("Added frontend/hello.js.".into()),
            ],
        ),
        (
            "[tidewright template feature: tests]",
            vec![
                Reply::claude_bash(&format!(
                    "set -e; git clone --quiet {repo} repo; cd repo; git checkout --quiet -b \"tidewright/$TIDEWRIGHT_TASK_ID/tests\" origin/main; \
                     git -c user.name=agent -c user.email=agent@example.com merge --quiet --no-edit \"origin/tidewright/$TIDEWRIGHT_TASK_ID/backend\" \"origin/tidewright/$TIDEWRIGHT_TASK_ID/frontend\"; \
                     printf '%s\\n' 'grep -q hello backend/hello.py && grep -q hello frontend/hello.js && echo tests-passed' > tests/run.sh; \
                     git add -A; git -c user.name=agent -c user.email=agent@example.com commit --quiet -m tests; git push --quiet origin HEAD",
                    repo = origin.display()
                )),
                Reply::Text("Added tests/run.sh.".into()),
            ],
        ),
        ("[tidewright template feature: review]", vec![Reply::Text("Adds hello to the backend and the frontend; the tests pass.".into())]),
    ])
    .await
    .expect("mock");
    let server = Server::start(dir.path()).expect("server");
    let _worker = worker(&server, dir.path(), &mock, None).await;

    let id = run(
        &server,
        "feature",
        &[
            "feature=say hello".into(),
            format!("repo={}", origin.display()),
        ],
    );
    let task = finished(&server, &id).await;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        failure(&task)
    );
    assert_eq!(
        task.spec.as_ref().map(|s| s.name.as_str()),
        Some("feature: say hello")
    );
    let tests = output(&task, "run-tests");
    assert_eq!(tests["passed"], true, "{tests}");
    assert!(
        tests["log"]
            .as_str()
            .unwrap_or_default()
            .contains("tests-passed"),
        "{tests}"
    );
    assert_eq!(
        output(&task, "review")["result"],
        "Adds hello to the backend and the frontend; the tests pass."
    );
    // Every agent pushed its own branch; main is as it was.
    let branches = git(&origin, &["branch", "--list"]);
    for branch in ["backend", "frontend", "tests"] {
        assert!(
            branches.contains(&format!("tidewright/{id}/{branch}")),
            "{branches}"
        );
    }
    assert_eq!(
        git(&origin, &["ls-tree", "--name-only", "-r", "main"])
            .lines()
            .count(),
        2
    );
    // The agents ran with the template's prompts; the backend and frontend
    // agents were given the plan.
    let requests = mock.requests();
    assert!(requests.iter().any(|r| {
        r.to_string()
            .contains("Plan this feature for the git repository")
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refactor_template_applies_on_a_branch_and_the_regression_tests_judge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = local_repository(
        dir.path(),
        &[
            ("Makefile", MAKEFILE),
            ("src/greet.sh", "echo hello\n"),
            (
                "tests/run.sh",
                "test \"$(sh src/greet.sh)\" = hello && echo regression-passed\n",
            ),
        ],
    );
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                "[tidewright template refactor: scan]",
                vec![Reply::Text(
                    "src/greet.sh prints its greeting inline.".into(),
                )],
            ),
            (
                "[tidewright template refactor: propose]",
                vec![Reply::Text("1. Move the greeting into a variable.".into())],
            ),
            (
                "[tidewright template refactor: apply]",
                vec![
                    commit_and_push(
                        &origin,
                        "refactor",
                        "origin/main",
                        "src/greet.sh",
                        "greeting=hello; echo \"$greeting\"",
                    ),
                    Reply::Text("Moved the greeting into a variable.".into()),
                ],
            ),
            (
                "[tidewright template refactor: summarise]",
                vec![Reply::Text(
                    "The greeting is a variable now; the regression tests pass.".into(),
                )],
            ),
        ],
    )
    .await
    .expect("mock");
    let server = Server::start(dir.path()).expect("server");
    let _worker = worker(&server, dir.path(), &mock, None).await;

    let id = run(
        &server,
        "refactor",
        &[
            "goal=name the greeting".into(),
            format!("repo={}", origin.display()),
        ],
    );
    let task = finished(&server, &id).await;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        failure(&task)
    );
    let judged = output(&task, "regression-tests");
    assert_eq!(judged["passed"], true, "{judged}");
    assert!(
        judged["changed"]
            .as_str()
            .unwrap_or_default()
            .contains("1 file changed"),
        "{judged}"
    );
    assert!(
        judged["log"]
            .as_str()
            .unwrap_or_default()
            .contains("regression-passed")
    );
    let refactored = git(
        &origin,
        &["show", &format!("tidewright/{id}/refactor:src/greet.sh")],
    );
    assert!(refactored.contains("greeting=hello"), "{refactored}");
    assert_eq!(git(&origin, &["show", "main:src/greet.sh"]), "echo hello\n");
    assert!(
        output(&task, "summarise")["result"]
            .as_str()
            .unwrap_or_default()
            .contains("regression tests pass")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_template_tests_builds_waits_for_approval_migrates_deploys_and_smoke_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = local_repository(
        dir.path(),
        &[
            ("Makefile", MAKEFILE),
            ("tests/run.sh", "echo unit-tests-passed\n"),
            ("deploy/web.yaml", "kind: Deployment\n"),
        ],
    );
    // kubectl's stand-in: records its arguments, answers as kubectl does.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let calls = dir.path().join("kubectl-calls");
    let kubectl = bin.join("kubectl");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {calls}\ncase \"$1\" in\n  apply) echo 'deployment.apps/web configured';;\n  rollout) echo 'deployment \"web\" successfully rolled out';;\nesac\n",
            calls = calls.display()
        ),
    )
    .expect("kubectl");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&kubectl)
        .status()
        .expect("chmod");
    // The service the smoke test reaches.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let smoke_host = listener.local_addr().expect("addr").to_string();
    let smoke_url = format!("http://{smoke_host}/healthz");
    tokio::spawn(async move {
        let app =
            axum::Router::new().route("/healthz", axum::routing::get(|| async { "web is up" }));
        axum::serve(listener, app).await
    });
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![(
            "[tidewright template deploy: release-note]",
            vec![Reply::Text(
                "Deployed main to staging; the rollout and the smoke test passed.".into(),
            )],
        )],
    )
    .await
    .expect("mock");
    let server = Server::start(dir.path()).expect("server");
    let _worker = worker(&server, dir.path(), &mock, Some(&bin)).await;

    let id = run(
        &server,
        "deploy",
        &[
            format!("repo={}", origin.display()),
            "namespace=staging".into(),
            "deployment=web".into(),
            format!("smoke_url={smoke_url}"),
            // Named with its port: the step's egress opens loopback to it.
            format!("smoke_host={smoke_host}"),
        ],
    );
    let client = Client::connect(Settings::new(&server.url, Some(server.admin_token.clone())))
        .await
        .expect("client");
    // The tests and the build ran; the migration waits for an approver.
    wait_step(
        &server.tasks().await.expect("tasks"),
        &id,
        "migrate",
        v1::StepState::AwaitingApproval,
    )
    .await
    .expect("at the gate");
    assert!(!calls.exists(), "nothing deployed before the approval");
    client
        .decide_step(&id, "migrate", tidewright_client::Decision::Approve, "go")
        .await
        .expect("approved");
    let task = finished(&server, &id).await;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        failure(&task)
    );
    assert_eq!(
        output(&task, "build")["version"].as_str().map(str::len),
        Some(40)
    );
    let calls = std::fs::read_to_string(&calls).expect("kubectl ran");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "apply --namespace staging -f deploy/",
            "rollout status --namespace staging deployment/web --timeout=600s"
        ]
    );
    assert_eq!(
        output(&task, "release-note")["result"],
        "Deployed main to staging; the rollout and the smoke test passed."
    );
    let spec = task.spec.expect("spec");
    assert_eq!(
        spec.labels.get("namespace").map(String::as_str),
        Some("staging")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_unsafe_templates_are_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path()).expect("server");
    let line = fails_in_one_line(server.cli().args([
        "template",
        "run",
        "refactor",
        "-p",
        "goal=x",
        "-p",
        "colour=red",
    ]));
    assert!(
        line.contains("parameters.colour: not a parameter of template refactor; it takes: base, goal, model, repo, test_target"),
        "{line}"
    );
    let line =
        fails_in_one_line(
            server
                .cli()
                .args(["submit", "--template", "refactor", "-p", "goal=x"]),
        );
    assert!(line.contains("parameters.repo: required"), "{line}");
    let line = fails_in_one_line(
        server
            .cli()
            .args(["template", "run", "deploy", "-p", "nonsense"]),
    );
    assert!(line.contains("key=value"), "{line}");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("dir");
    std::fs::write(
        templates.join("unsafe.yaml"),
        "parameters: {branch: {required: true}}\nsteps:\n  - id: s\n    shell: {command: [sh, -c, \"git push origin ${{ branch }}\"]}\n",
    )
    .expect("write");
    let line = fails_in_one_line(
        server
            .cli()
            .args([
                "template",
                "run",
                "unsafe",
                "-p",
                "branch=x",
                "--templates-dir",
            ])
            .arg(&templates),
    );
    assert!(
        line.contains("steps[0].shell.command[2]") && line.contains("in `env`"),
        "{line}"
    );
    assert!(
        all_task_ids(&server.tasks().await.expect("tasks"))
            .await
            .expect("tasks")
            .is_empty()
    );

    // What people read: the list and a template.
    let listed = String::from_utf8_lossy(&succeed(server.cli().args(["template", "list"])).stdout)
        .into_owned();
    for name in ["deploy", "feature", "refactor"] {
        assert!(listed.contains(name), "{listed}");
    }
    assert!(
        listed.contains("goal*"),
        "required ones are marked: {listed}"
    );
    let shown = String::from_utf8_lossy(
        &succeed(server.cli().args(["template", "show", "feature"])).stdout,
    )
    .into_owned();
    assert!(
        shown.starts_with("# feature (built-in)") && shown.contains("parameters:"),
        "{shown}"
    );
}

const GREET: &str = "description: Greets someone, some times.
parameters:
  who: {required: true, description: whom to greet}
  times: {type: integer, default: 1}
steps:
  - id: hi
    shell: {command: [echo, 'hello ${{ who }}', '${{ times }}']}
";

/// The server's own templates, for clients without the files (the JSON API,
/// the console, the Python package): listed, rendered and submitted by the
/// server, refused by parameter before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_offers_its_templates_over_grpc_and_http_and_refuses_bad_parameters_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("dir");
    std::fs::write(templates.join("greet.yaml"), GREET).expect("write");
    let templates_dir = templates.display().to_string();
    let http = free_addr();
    let (server, _worker) = start_with_roles(
        &dir.path().join("data"),
        &http,
        &["--templates-dir", &templates_dir],
        1,
    )
    .await
    .expect("server");
    let client = Client::connect(Settings::new(&server.url, Some("tidewright_dev".into())))
        .await
        .expect("client");

    let offered = client.templates().await.expect("templates");
    let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "deploy",
            "feature",
            "fix-ci",
            "fix-issue",
            "greet",
            "parallel-feature",
            "pr-command",
            "refactor"
        ]
    );
    let greet = offered.iter().find(|t| t.name == "greet").expect("greet");
    assert!(greet.origin.ends_with("greet.yaml"), "{}", greet.origin);
    assert_eq!(greet.file, GREET);
    let times = &greet.parameters[0];
    assert_eq!(
        (
            times.name.as_str(),
            times.r#type.as_str(),
            times.default_value.as_deref()
        ),
        ("times", "integer", Some("1"))
    );
    assert!(greet.parameters[1].required);

    // Refusals name the parameter (or the templates there are), and store
    // nothing.
    let refused = client
        .submit_template(tidewright_client::TemplateRun::new("greet").parameter("colour", "red"))
        .await
        .expect_err("unknown parameter");
    assert_eq!(refused.code(), Some(tonic::Code::InvalidArgument));
    assert_eq!(refused.field(), Some("parameters.colour"), "{refused}");
    let refused = client
        .submit_template(tidewright_client::TemplateRun::new("greet"))
        .await
        .expect_err("missing parameter");
    assert_eq!(refused.field(), Some("parameters.who"), "{refused}");
    let refused = client
        .submit_template(tidewright_client::TemplateRun::new("nope"))
        .await
        .expect_err("no such template");
    assert_eq!(refused.code(), Some(tonic::Code::NotFound));
    assert!(
        refused.to_string().contains(
            "deploy, feature, fix-ci, fix-issue, greet, parallel-feature, pr-command, refactor"
        ),
        "{refused}"
    );
    let call = |method: &str, path: &str, token: &str, body: &str, headers: &[(&str, &str)]| {
        http_call(&http, method, path, Some(token), headers, body).expect("the HTTP port answers")
    };
    let path = "/api/v1/templates/greet/tasks";
    for (body, field) in [
        (
            r#"{"parameters": {"who": "x", "times": "many"}}"#,
            "parameters.times",
        ),
        (r#"{"parameters": {"who": ["x"]}}"#, "parameters.who"),
        (r#"{"params": {}}"#, "body"),
    ] {
        let answer = call("POST", path, "tidewright_dev", body, &[]);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.json()["error"]["field"], field, "{}", answer.body);
    }
    let missing = call(
        "POST",
        "/api/v1/templates/nope/tasks",
        "tidewright_dev",
        "",
        &[],
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
    let viewer = call(
        "POST",
        path,
        "tidewright_viewer",
        r#"{"parameters": {"who": "x"}}"#,
        &[],
    );
    assert_eq!(viewer.status, 403, "{}", viewer.body);
    assert!(
        all_task_ids(&server.tasks().await.expect("tasks"))
            .await
            .expect("tasks")
            .is_empty(),
        "nothing was stored"
    );

    // Over gRPC and over HTTP, a task that runs; the key finds it again.
    let submitted = client
        .submit_template(
            tidewright_client::TemplateRun::new("greet")
                .parameter("who", "grpc world")
                .parameter("times", "2"),
        )
        .await
        .expect("submitted");
    let task = finished(&server, &submitted.task_id).await;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        failure(&task)
    );
    let Some(v1::step_spec::Runtime::Shell(shell)) =
        &task.spec.as_ref().expect("spec").steps[0].runtime
    else {
        panic!("a shell step: {task:?}");
    };
    assert_eq!(shell.command, ["echo", "hello grpc world", "2"]);
    let key = [("Idempotency-Key", "greet-once")];
    let body = r#"{"parameters": {"who": "http world", "times": 3}}"#;
    let first = call("POST", path, "tidewright_dev", body, &key);
    assert_eq!(first.status, 201, "{}", first.body);
    let again = call("POST", path, "tidewright_dev", body, &key);
    assert_eq!(again.status, 200, "{}", again.body);
    let id = first.json()["taskId"].as_str().expect("id").to_string();
    assert_eq!(again.json()["taskId"], id.as_str());
    let task = finished(&server, &id).await;
    assert_eq!(
        task.state,
        v1::TaskState::Succeeded as i32,
        "{}",
        failure(&task)
    );
    assert_eq!(task.spec.as_ref().expect("spec").name, "greet");
    let listed = call("GET", "/api/v1/templates", "tidewright_viewer", "", &[]);
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["templates"][4]["name"], "greet");
    assert_eq!(
        listed.json()["templates"][4]["parameters"][1]["required"],
        true
    );

    // The CLI uses them with --on-server.
    let listed = String::from_utf8_lossy(
        &succeed(server.cli().args(["template", "list", "--on-server"])).stdout,
    )
    .into_owned();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("greet") && l.contains("server: ") && l.contains("times,who*")),
        "{listed}"
    );
    let shown = String::from_utf8_lossy(
        &succeed(
            server
                .cli()
                .args(["template", "show", "greet", "--on-server"]),
        )
        .stdout,
    )
    .into_owned();
    assert!(
        shown.starts_with("# greet (server: ") && shown.ends_with(GREET),
        "{shown}"
    );
    let line = fails_in_one_line(server.cli().args([
        "submit",
        "--template",
        "greet",
        "--on-server",
        "-p",
        "who=cli",
        "-p",
        "times=often",
    ]));
    assert!(line.contains("parameters.times"), "{line}");
    let line = fails_in_one_line(server.cli().args([
        "template",
        "run",
        "greet",
        "--on-server",
        "-p",
        "who=a",
        "-p",
        "who=b",
    ]));
    assert!(line.contains("parameters.who: given twice"), "{line}");
    let out = succeed(server.cli().args([
        "template",
        "run",
        "greet",
        "--on-server",
        "-p",
        "who=cli",
        "--watch",
        "-o",
        "json",
    ]));
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the task as JSON");
    assert_eq!(task["state"], "succeeded", "{task}");

    // A template that does not load stops the start, naming its file.
    std::fs::write(
        templates.join("unsafe.yaml"),
        "parameters: {b: {}}\nsteps:\n  - id: s\n    shell: {command: [sh, -c, \"echo ${{ b }}\"]}\n",
    )
    .expect("write");
    let line = fails_in_one_line(
        Command::new(tidewright_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("other"))
            .args(["--templates-dir", &templates_dir]),
    );
    assert!(line.contains("unsafe.yaml"), "{line}");
}
