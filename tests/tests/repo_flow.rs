//! Work that flows along a task's DAG as commits, against a real git
//! server over smart HTTP with basic auth: a dependent step starts from the
//! merge of its dependencies' heads in the task's order, whichever worker
//! made them (the control plane keeps each step's branch as a bundle), a
//! conflict there fails the step naming the paths, and the deliver step
//! tidewright adds makes the task's branch, `tidewright/<task>`, from the last steps
//! and pushes it, all of it or nothing.

use std::time::Duration;
use tidewright_api::v1;
use tidewright_tests::git_server::{GitServer, PASSWORD, account_secrets};
use tidewright_tests::*;

/// A control plane that may reach the loopback git server.
fn control_plane(dir: &std::path::Path) -> anyhow::Result<Server> {
    let secrets = account_secrets(dir, "repo-secrets", "git-creds")?;
    Server::start_on(
        &dir.join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )
}

/// A worker offering `shell` and `extra`, with the git server's account
/// as secret `git-creds`.
fn repo_worker(
    server: &Server,
    dir: &std::path::Path,
    name: &str,
    extra: &str,
) -> anyhow::Result<Process> {
    let secrets = account_secrets(dir, &format!("{name}-secrets"), "git-creds")?;
    server.worker_with(name, &["shell", extra], 2, &["--secrets-dir", &secrets])
}

fn on(mut step: v1::StepSpec, needs: &str) -> v1::StepSpec {
    step.needs = vec![needs.to_string()];
    step
}

fn repo_task(url: &str, steps: Vec<v1::StepSpec>, push: bool) -> v1::SubmitTaskRequest {
    let mut request = task("flow", steps);
    if let Some(spec) = request.spec.as_mut() {
        spec.repo = Some(v1::RepoSpec {
            url: url.into(),
            r#ref: "main".into(),
            credentials_secret: "git-creds".into(),
            push,
            ..v1::RepoSpec::default()
        });
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_step_starts_from_its_dependencies_merged_and_the_tasks_branch_is_pushed()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    let first = git.create_repo("app", &[("README.md", "hello\n")]);
    let server = control_plane(dir.path())?;
    // `api` runs on one worker, `web` on the other: `join`, on the first,
    // needs `web`'s work from the control plane.
    let _one = repo_worker(&server, dir.path(), "w1", "one")?;
    let _two = repo_worker(&server, dir.path(), "w2", "two")?;
    let client = server.tasks().await?;

    let steps = vec![
        on(
            shell_step("api", &[], "mkdir -p src && echo api > src/api.rs"),
            "one",
        ),
        on(
            shell_step("web", &[], "mkdir -p web && echo web > web/app.ts"),
            "two",
        ),
        // Listed after `api` in its dependsOn, but merged in the task's
        // order: `api` first.
        on(
            shell_step(
                "join",
                &["web", "api"],
                "test -f src/api.rs && test -f web/app.ts && echo join > JOINED",
            ),
            "one",
        ),
        on(shell_step("docs", &[], "echo docs > DOCS.md"), "two"),
    ];
    let id = submit(&client, repo_task(&git.url("app"), steps, true)).await?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(90)).await?;

    let work = |name: &str| step(&task, name).work.clone().expect("work");
    let (api, web, join) = (work("api"), work("web"), work("join"));
    assert_eq!(api.base_commit, first);
    assert_eq!(web.base_commit, first);
    assert_eq!(join.changed_paths, vec!["JOINED"], "only its own work");
    assert_eq!(step(&task, "web").attempts[0].worker, "w2");
    assert_eq!(step(&task, "join").attempts[0].worker, "w1");
    // The merge join started from: api's head first, then web's.
    let merge = git.inside("app", &["rev-parse", &format!("{}^1", join.base_commit)]);
    assert_eq!(merge, api.head_commit);
    let merged = git.inside("app", &["rev-parse", &format!("{}^2", join.base_commit)]);
    assert_eq!(merged, web.head_commit);

    // The deliver step tidewright added made the task's branch from the last
    // steps, join and docs, and pushed it; main is as it was.
    let deliver = step(&task, "deliver");
    let delivered = deliver.work.clone().expect("deliver's work");
    assert_eq!(delivered.branch, format!("tidewright/{id}"));
    assert_eq!(delivered.base_commit, first, "the whole task's work");
    assert!(delivered.pushed);
    let mut paths = delivered.changed_paths.clone();
    paths.sort();
    assert_eq!(paths, vec!["DOCS.md", "JOINED", "src/api.rs", "web/app.ts"]);
    assert_eq!(
        git.rev_parse("app", &format!("tidewright/{id}")),
        delivered.head_commit
    );
    assert_eq!(git.rev_parse("app", "main"), first);
    assert_eq!(output(deliver)["pushed"], true);
    // Only the task's branch reached the remote.
    let remote = git.inside("app", &["for-each-ref", "--format=%(refname)"]);
    assert_eq!(
        remote.lines().collect::<Vec<_>>(),
        vec![
            "refs/heads/main".to_string(),
            format!("refs/heads/tidewright/{id}")
        ]
    );
    let log = std::fs::read_to_string(&server.process.log)?;
    assert!(!log.contains(PASSWORD));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependencies_whose_work_conflicts_fail_the_step_naming_the_paths_and_nothing_is_pushed()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    let first = git.create_repo("app", &[("config.toml", "port = 80\n")]);
    let server = control_plane(dir.path())?;
    let _worker = repo_worker(&server, dir.path(), "w1", "one")?;
    let client = server.tasks().await?;

    let steps = vec![
        shell_step("left", &[], "echo 'port = 8080' > config.toml"),
        shell_step("right", &[], "echo 'port = 9090' > config.toml"),
        shell_step("join", &["left", "right"], "true"),
    ];
    let id = submit(&client, repo_task(&git.url("app"), steps, true)).await?;
    let task = wait_finished(&client, &id, Duration::from_secs(60)).await?;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let join = step(&task, "join");
    assert_eq!(
        join.state,
        v1::StepState::Failed as i32,
        "{:#?}",
        task.steps
    );
    assert!(
        join.error
            .contains("the work of step \"right\" conflicts with that of \"left\" in config.toml"),
        "{}",
        join.error
    );
    let conflict = &output(join)["conflict"];
    assert_eq!(conflict["paths"], serde_json::json!(["config.toml"]));
    let hunks = conflict["hunks"].as_str().unwrap_or_default();
    assert!(
        hunks.contains("<<<<<<<") && hunks.contains("8080") && hunks.contains("9090"),
        "{hunks}"
    );
    // Nothing reached the remote.
    assert_eq!(
        git.inside("app", &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main"
    );
    assert_eq!(git.rev_parse("app", "main"), first);
    Ok(())
}

fn pull_request(
    url: &str,
    steps: Vec<v1::StepSpec>,
    forge: &str,
    api: &str,
    base: &str,
) -> v1::SubmitTaskRequest {
    let mut request = repo_task(url, steps, false);
    if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.pull_request = Some(v1::PullRequestSpec {
            title: "Add the greeting".into(),
            body: "Made by tidewright.".into(),
            base: base.into(),
            forge: forge.into(),
            api_url: api.into(),
            ..v1::PullRequestSpec::default()
        });
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_branch_is_pushed_and_its_pull_request_opened_as_each_forge_describes_it()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    let first = git.create_repo("acme/app", &[("README.md", "hello\n")]);
    let forge = tidewright_tests::forge::ForgeDouble::start(dir.path(), git.root(), PASSWORD)?;
    let server = control_plane(dir.path())?;
    let _worker = repo_worker(&server, dir.path(), "w1", "one")?;
    let client = server.tasks().await?;
    let steps = || {
        vec![
            shell_step("greet", &[], "echo 'echo hello' > greet.sh"),
            shell_step("test", &["greet"], "test -f greet.sh && echo ok > TESTED"),
        ]
    };

    // GitHub: a pull request from tidewright/<task> to the task's ref.
    let request = pull_request(
        &git.url("acme/app"),
        steps(),
        "github",
        &forge.github_api(),
        "",
    );
    let id = submit(&client, request).await?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60)).await?;
    let delivered = step(&task, "deliver").work.clone().expect("delivered");
    assert!(delivered.pushed);
    assert_eq!(
        delivered.pull_request_url,
        "https://github.example/acme/app/pull/1"
    );
    assert_eq!(
        git.rev_parse("acme/app", &format!("tidewright/{id}")),
        delivered.head_commit
    );
    assert_eq!(git.rev_parse("acme/app", "main"), first);
    assert_eq!(
        output(step(&task, "deliver"))["pullRequest"],
        delivered.pull_request_url.as_str()
    );

    // GitLab: a merge request, to the base it names.
    let request = pull_request(
        &git.url("acme/app"),
        steps(),
        "gitlab",
        &forge.gitlab_api(),
        "main",
    );
    let id = submit(&client, request).await?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60)).await?;
    let delivered = step(&task, "deliver").work.clone().expect("delivered");
    assert_eq!(
        delivered.pull_request_url,
        "https://gitlab.example/acme/app/-/merge_requests/2"
    );

    // Every call was one the forge's description accepts: for each, a
    // search for an open one first, then the one that opened it.
    let seen = forge.requests()?;
    let calls: Vec<(String, String, bool)> = seen
        .iter()
        .map(|r| {
            (
                r["forge"].as_str().unwrap_or_default().to_string(),
                r["method"].as_str().unwrap_or_default().to_string(),
                r["valid"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            ("github".into(), "GET".into(), true),
            ("github".into(), "POST".into(), true),
            ("gitlab".into(), "GET".into(), true),
            ("gitlab".into(), "POST".into(), true),
        ],
        "{seen:#?}"
    );
    let shown = succeed(server.cli().args(["get", "task", &id]));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("https://gitlab.example/acme/app/-/merge_requests/2"),
        "{shown}"
    );
    let log = std::fs::read_to_string(&server.process.log)?;
    assert!(!log.contains(PASSWORD));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_the_forge_refuses_fails_the_task_and_takes_its_branch_back()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("acme/app", &[("README.md", "hello\n")]);
    let forge = tidewright_tests::forge::ForgeDouble::start(dir.path(), git.root(), PASSWORD)?;
    let server = control_plane(dir.path())?;
    let _worker = repo_worker(&server, dir.path(), "w1", "one")?;
    let client = server.tasks().await?;

    // The base does not exist: GitHub refuses the pull request.
    let mut request = pull_request(
        &git.url("acme/app"),
        vec![shell_step("greet", &[], "echo hi > greet.sh")],
        "github",
        &forge.github_api(),
        "no-such-base",
    );
    if let Some(spec) = request.spec.as_mut() {
        // No retries of the deliver step tidewright adds: one refusal is enough.
        spec.steps.push(v1::StepSpec {
            id: "deliver".into(),
            depends_on: vec!["greet".into()],
            runtime: Some(v1::step_spec::Runtime::Deliver(v1::DeliverRuntime {})),
            ..v1::StepSpec::default()
        });
    }
    let id = submit(&client, request).await?;
    let task = wait_finished(&client, &id, Duration::from_secs(60)).await?;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let deliver = step(&task, "deliver");
    assert!(
        deliver.error.contains("repo.pullRequest")
            && deliver.error.contains("422")
            && deliver
                .error
                .contains("the branch pushed for it was deleted"),
        "{}",
        deliver.error
    );
    assert_eq!(
        git.inside("acme/app", &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main",
        "nothing is left on the remote"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_step_resumed_on_another_worker_finds_its_files_in_a_fresh_worktree()
-> anyhow::Result<()> {
    use tidewright_tests::provider::{Api, Mock, Reply};
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("README.md", "hello\n")]);
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            // Attempt 1, on A: writes in its worktree, then the API fails it.
            Reply::claude_write("notes.txt", "half done\n"),
            Reply::Error {
                status: 500,
                message: "the mock fell over".into(),
            },
            // Attempt 2, on B: the file is there in B's own worktree.
            Reply::claude_read("notes.txt"),
            Reply::Text("Finished where I left off.".into()),
        ],
    )
    .await?;
    let server = control_plane(dir.path())?;
    let secrets = account_secrets(dir.path(), "agent-secrets", "git-creds")?;
    let agent = |name: &str| {
        start_named_claude_worker(
            &server,
            dir.path(),
            name,
            &mock,
            (&["claude-code"], 1),
            &["--secrets-dir", &secrets],
        )
    };
    let mut worker_a = agent("agent-1")?;
    let client = server.tasks().await?;
    let prompt = format!("Write notes.txt, then finish {}", std::process::id());
    let mut notes = claude_step("notes", &prompt, &["Write", "Read"]);
    // The retry waits long enough for the test to stop A first.
    notes.retry = Some(v1::RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: 3000,
        max_delay_ms: 3000,
        multiplier: 1.0,
    });
    let id = submit(&client, repo_task(&git.url("app"), vec![notes], false)).await?;
    wait_task(&client, &id, Duration::from_secs(60), |t| {
        let step = t.steps.into_iter().next()?;
        step.attempts
            .first()
            .filter(|a| a.state == v1::StepState::Failed as i32)
            .cloned()
    })
    .await?;
    worker_a.kill();
    let _worker_b = agent("agent-2")?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60)).await?;

    let notes = step(&task, "notes");
    assert_eq!(notes.attempts.len(), 2);
    assert_eq!(notes.attempts[1].worker, "agent-2");
    mock.assert_resumed(&prompt, "notes.txt", "half done");
    let work = notes.work.clone().expect("work");
    assert_eq!(work.changed_paths, vec!["notes.txt"]);
    assert!(
        work.committed_by_tidewright,
        "what attempt 1 left is committed"
    );
    let delivered = step(&task, "deliver").work.clone().expect("delivered");
    assert_eq!(delivered.changed_paths, vec!["notes.txt"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_conflict_rerun_the_later_side_runs_again_on_top_of_the_earlier()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("config.toml", "port = 80\n")]);
    let server = control_plane(dir.path())?;
    let _worker = repo_worker(&server, dir.path(), "w1", "one")?;
    let client = server.tasks().await?;

    // Both change config.toml at once; whichever ends later runs again on
    // top of the other's work, so the join sees left's notes either way.
    let mut join = shell_step(
        "join",
        &["left", "right"],
        "grep -qE 'port = (8080|9090)' config.toml && grep -q 'left was here' NOTES",
    );
    join.on_conflict = "rerun".into();
    let steps = vec![
        shell_step(
            "left",
            &[],
            "echo 'port = 8080' > config.toml && echo 'left was here' > NOTES",
        ),
        shell_step("right", &[], "echo 'port = 9090' > config.toml"),
        join,
    ];
    let id = submit(&client, repo_task(&git.url("app"), steps, false)).await?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60)).await?;

    let (left, right, join) = (
        step(&task, "left"),
        step(&task, "right"),
        step(&task, "join"),
    );
    // Usually right ends later; under load left can.
    let ((earlier, earlier_name), (later, later_name)) = if right.attempts.len() == 2 {
        ((left, "left"), (right, "right"))
    } else {
        ((right, "right"), (left, "left"))
    };
    assert_eq!(earlier.attempts.len(), 1);
    assert_eq!(later.attempts.len(), 2, "{later_name} ran again");
    assert_eq!(join.attempts.len(), 2, "join waited for it, then ran");
    let earlier_head = earlier.work.clone().expect("the earlier work").head_commit;
    assert_eq!(
        later.work.clone().expect("the later work").base_commit,
        earlier_head,
        "{later_name}'s second run started from {earlier_name}'s work"
    );
    let events = task_events(&mut client.clone(), &id, 0, false).await?;
    let expected = format!(
        "the work of step \"{later_name}\" conflicts with that of \"{earlier_name}\" in config.toml: \"{later_name}\" runs again on top of it"
    );
    let said = events.iter().any(|e| match &e.kind {
        Some(v1::event::Kind::StepState(s)) => s.message.contains(&expected),
        _ => false,
    });
    assert!(said, "{events:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_its_mirrors_where_told_and_within_their_bound() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("README.md", "hello\n")]);
    let server = control_plane(dir.path())?;
    let secrets = account_secrets(dir.path(), "w-secrets", "git-creds")?;
    let mirrors = dir.path().join("cache");
    let mirrors_arg = mirrors.display().to_string();
    // A bound of one byte: every mirror no step is using goes after a step.
    let _worker = server.worker_with(
        "w1",
        &["shell"],
        2,
        &[
            "--secrets-dir",
            &secrets,
            "--mirrors-dir",
            &mirrors_arg,
            "--mirrors-max-bytes",
            "1",
        ],
    )?;
    let client = server.tasks().await?;
    let steps = vec![
        shell_step("a", &[], "echo a > a.txt"),
        shell_step("b", &["a"], "test -f a.txt && echo b > b.txt"),
    ];
    let id = submit(&client, repo_task(&git.url("app"), steps, true)).await?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60)).await?;
    assert!(step(&task, "deliver").work.clone().expect("work").pushed);
    assert!(
        !server.data_dir.join("work/w1/.mirrors").exists(),
        "not in the work directory"
    );
    // The last step's mirror went once it was done with it.
    let left: Vec<_> = std::fs::read_dir(&mirrors)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_conflict_agent_the_steps_own_agent_resolves_the_conflict_first()
-> anyhow::Result<()> {
    use tidewright_tests::provider::{Api, Mock, Reply};
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("config.toml", "port = 80\n")]);
    let resolved = "port = 8080\nadmin_port = 9090\n";
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                "[resolve well]",
                vec![
                    Reply::claude_write("config.toml", resolved),
                    Reply::claude_write("DONE", "joined\n"),
                    Reply::Text("Resolved, then joined.".into()),
                ],
            ),
            // This one does its task and leaves the markers.
            (
                "[resolve not]",
                vec![
                    Reply::claude_write("DONE", "joined\n"),
                    Reply::Text("Joined.".into()),
                ],
            ),
        ],
    )
    .await?;
    let server = control_plane(dir.path())?;
    let secrets = account_secrets(dir.path(), "agent-secrets", "git-creds")?;
    let _worker = start_named_claude_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["claude-code", "shell"], 3),
        &["--secrets-dir", &secrets],
    )?;
    let client = server.tasks().await?;
    let steps = |marker: &str| {
        let mut join = claude_step(
            "join",
            &format!("{marker} Write DONE."),
            &["Write", "Read", "Edit"],
        );
        join.depends_on = vec!["left".into(), "right".into()];
        join.on_conflict = "agent".into();
        vec![
            shell_step("left", &[], "echo 'port = 8080' > config.toml"),
            shell_step("right", &[], "echo 'port = 9090' > config.toml"),
            join,
        ]
    };

    let id = submit(
        &client,
        repo_task(&git.url("app"), steps("[resolve well]"), true),
    )
    .await?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(90)).await?;
    let join = step(&task, "join").work.clone().expect("join's work");
    assert!(
        join.committed_by_tidewright,
        "tidewright committed the merge"
    );
    let parents = git.inside(
        "app",
        &["rev-list", "--parents", "-n", "1", &join.head_commit],
    );
    assert_eq!(parents.split_whitespace().count(), 3, "a merge: {parents}");
    let branch = format!("tidewright/{id}");
    assert_eq!(
        git.inside("app", &["show", &format!("{branch}:config.toml")]),
        resolved.trim_end()
    );
    // The agent was told where the conflict is and what each side was asked.
    let told = mock
        .requests()
        .iter()
        .map(|r| r["messages"][0]["content"].to_string())
        .find(|m| m.contains("[resolve well]"))
        .unwrap_or_default();
    assert!(
        told.contains("conflicts with the rest in config.toml")
            && told.contains("Step \\\"right\\\" was asked: run `")
            && told.contains("9090"),
        "{told}"
    );

    // An agent that leaves the markers fails its step, saying where.
    let id = submit(
        &client,
        repo_task(&git.url("app"), steps("[resolve not]"), true),
    )
    .await?;
    let task = wait_finished(&client, &id, Duration::from_secs(90)).await?;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let join = step(&task, "join");
    assert!(
        join.error.contains("markers remain in config.toml"),
        "{}",
        join.error
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_push_steps_each_step_that_made_commits_pushes_its_branch_and_a_refused_push_fails_it()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    let first = git.create_repo("app", &[("README.md", "hello\n")]);
    let server = control_plane(dir.path())?;
    let _worker = repo_worker(&server, dir.path(), "w1", "one")?;
    let client = server.tasks().await?;
    let push_steps = |steps| {
        let mut request = repo_task(&git.url("app"), steps, false);
        if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
            repo.push_steps = true;
        }
        request
    };

    let steps = vec![
        shell_step("edit", &[], "echo more >> README.md"),
        shell_step("check", &["edit"], "grep -q more README.md"),
    ];
    let id = submit(&client, push_steps(steps)).await?;
    let task = wait_succeeded(&client, &id, Duration::from_secs(60)).await?;
    let edit = step(&task, "edit").work.clone().expect("edit's work");
    assert!(edit.pushed);
    assert_eq!(git.rev_parse("app", &edit.branch), edit.head_commit);
    let check = step(&task, "check").work.clone().expect("check's work");
    assert!(!check.pushed, "check made no commit of its own");
    // The task's branch stays with tidewright: push is not asked.
    let remote = git.inside("app", &["for-each-ref", "--format=%(refname)"]);
    assert_eq!(
        remote.lines().collect::<Vec<_>>(),
        vec![
            "refs/heads/main".to_string(),
            format!("refs/heads/tidewright/{id}-edit")
        ]
    );

    // A remote that takes no pushes: the step fails naming the field, and
    // nothing more reaches it.
    git.inside("app", &["config", "http.receivepack", "false"]);
    let steps = vec![shell_step("edit", &[], "echo again >> README.md")];
    let refused = submit(&client, push_steps(steps)).await?;
    let task = wait_finished(&client, &refused, Duration::from_secs(60)).await?;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let edit = step(&task, "edit");
    assert!(
        edit.error.contains("repo.credentialsSecret") && edit.error.contains("for repo.pushSteps"),
        "{}",
        edit.error
    );
    assert!(!edit.error.contains(PASSWORD));
    assert_eq!(
        git.inside("app", &["for-each-ref", "--format=%(refname)"]),
        remote
    );
    assert_eq!(git.rev_parse("app", "main"), first);
    Ok(())
}

/// A worker whose work directory is a tmpfs of `bytes` in a mount
/// namespace of its own (a user namespace maps this user to root there):
/// a real full disk, gone with the process.
fn worker_on_a_small_disk(
    server: &Server,
    dir: &std::path::Path,
    name: &str,
    bytes: u64,
) -> anyhow::Result<Process> {
    let secrets = account_secrets(dir, &format!("{name}-secrets"), "git-creds")?;
    let work = dir.join("small-disk");
    std::fs::create_dir_all(&work)?;
    Process::spawn(
        std::process::Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={bytes} tmpfs \"$0\" && exec \"$@\""
            ))
            .arg(&work)
            .arg(tidewright_bin())
            .args(["--server", &server.url, "worker", "--name", name])
            .args(["--capability", "shell", "--slots", "1"])
            .arg("--work-dir")
            .arg(&work)
            .args(["--secrets-dir", &secrets])
            .env("TIDEWRIGHT_TOKEN", &server.worker_token)
            .env("RUST_LOG", "info"),
        dir,
        name,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_disk_is_full_fails_the_step_saying_so_and_nothing_reaches_the_remote()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    // Three MiB that do not compress: more than the worker's disk holds.
    let bulk: String = (0..3 * 1024 * 1024 / 16)
        .map(|i: u64| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let first = git.create_repo("app", &[("README.md", "hello\n"), ("bulk.txt", &bulk)]);
    let server = control_plane(dir.path())?;
    let _worker = worker_on_a_small_disk(&server, dir.path(), "small", 1024 * 1024)?;
    server.wait_for_agents(&["small"]).await?;
    let client = server.tasks().await?;

    let steps = vec![shell_step("edit", &[], "echo more >> README.md")];
    let id = submit(&client, repo_task(&git.url("app"), steps, true)).await?;
    let task = wait_finished(&client, &id, Duration::from_secs(60)).await?;
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let edit = step(&task, "edit");
    assert!(
        edit.error.contains("disk is full") && edit.error.contains("No space left on device"),
        "{}",
        edit.error
    );
    assert_eq!(
        git.inside("app", &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main"
    );
    assert_eq!(git.rev_parse("app", "main"), first);

    // The worker lives on, and what the failed clone left does not hold
    // its disk: a step without the repository runs.
    let id = submit(
        &client,
        tidewright_tests::task(
            "after",
            vec![shell_step("after", &[], "echo fine > out.txt")],
        ),
    )
    .await?;
    wait_succeeded(&client, &id, Duration::from_secs(60)).await?;
    Ok(())
}
