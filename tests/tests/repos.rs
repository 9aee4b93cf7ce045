//! Tasks that name a repository, against a real git server over smart HTTP
//! with basic auth (nginx, fcgiwrap and `git http-backend`): the task's ref
//! is resolved once, when it is made, to the commit the remote has then;
//! every way a repository can be wrong is refused naming its field, with
//! nothing stored; and the credentials never show.

use tidewright_api::v1;
use tidewright_tests::git_server::{GitServer, PASSWORD, USER, account_secrets};
use tidewright_tests::*;
use tonic::Code;

/// A control plane that may reach the loopback git server, with the
/// server's account as secret `git-creds` and a wrong one as `wrong`.
fn control_plane(dir: &std::path::Path) -> anyhow::Result<Server> {
    let secrets = dir.join("repo-secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::write(secrets.join("git-creds"), format!("{USER}:{PASSWORD}\n"))?;
    std::fs::write(secrets.join("wrong"), format!("{USER}:not-the-password\n"))?;
    let secrets = secrets.display().to_string();
    Server::start_on(
        &dir.join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )
}

fn repo_task(url: &str, git_ref: &str, secret: &str) -> v1::SubmitTaskRequest {
    let mut request = task("with-repo", vec![noop_step("a")]);
    if let Some(spec) = request.spec.as_mut() {
        spec.repo = Some(v1::RepoSpec {
            url: url.into(),
            r#ref: git_ref.into(),
            commit: String::new(),
            credentials_secret: secret.into(),
            ..v1::RepoSpec::default()
        });
    }
    request
}

async fn resolved_commit(client: &mut Tasks, id: &str) -> anyhow::Result<String> {
    let task = client
        .get_task(v1::GetTaskRequest {
            task_id: id.to_string(),
        })
        .await?
        .into_inner();
    let repo = task
        .spec
        .and_then(|s| s.repo)
        .expect("the task keeps its repo");
    Ok(repo.commit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_ref_is_resolved_once_to_the_commit_its_remote_has_when_it_is_made()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    let first = git.create_repo("app", &[("README.md", "hello\n")]);
    let server = control_plane(dir.path())?;
    let mut client = server.tasks().await?;
    let url = git.url("app");

    let before = submit(&client, repo_task(&url, "main", "git-creds")).await?;
    assert_eq!(resolved_commit(&mut client, &before).await?, first);

    // The branch moves: a new task starts from where it is now, the first
    // one stays where it was.
    let second = git.commit("app", &[("src/lib.rs", "// more\n")], "more");
    assert_ne!(first, second);
    let after = submit(&client, repo_task(&url, "", "git-creds")).await?;
    assert_eq!(
        resolved_commit(&mut client, &after).await?,
        second,
        "no ref: the remote's default branch"
    );
    assert_eq!(resolved_commit(&mut client, &before).await?, first);

    // A pinned commit is kept as given, even behind the branch.
    let mut pinned = repo_task(&url, "main", "git-creds");
    if let Some(repo) = pinned.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.commit = first.clone();
    }
    let pinned = submit(&client, pinned).await?;
    assert_eq!(resolved_commit(&mut client, &pinned).await?, first);
    assert_eq!(git.rev_parse("app", "main"), second);

    // The password went to git through the helper: it is in no log.
    let log = std::fs::read_to_string(&server.process.log)?;
    assert!(
        !log.contains(PASSWORD),
        "the server's log shows the password"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_that_will_not_do_is_refused_naming_its_field_and_nothing_is_stored()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("README.md", "hello\n")]);
    let server = control_plane(dir.path())?;
    let mut client = server.tasks().await?;
    let url = git.url("app");
    let before = all_task_ids(&client).await?;

    let cases = [
        (
            repo_task(&url, "no-such-branch", "git-creds"),
            Code::InvalidArgument,
            "spec.repo.ref",
            "no-such-branch",
        ),
        (
            repo_task(&git.url("nope"), "main", "git-creds"),
            Code::InvalidArgument,
            "spec.repo.url",
            "cannot be read",
        ),
        (
            repo_task(&url, "main", "wrong"),
            Code::InvalidArgument,
            "spec.repo.credentialsSecret",
            "refused these credentials",
        ),
        (
            repo_task(&url, "main", "missing"),
            Code::InvalidArgument,
            "spec.repo.credentialsSecret",
            "missing",
        ),
        (
            repo_task(&url, "main", ""),
            Code::InvalidArgument,
            "spec.repo.url",
            "asks for credentials",
        ),
        (
            repo_task(
                &format!("http://{USER}:{PASSWORD}@{}/app.git", git.addr),
                "main",
                "",
            ),
            Code::InvalidArgument,
            "spec.repo.url",
            "credentialsSecret",
        ),
        (
            repo_task(&url, "main..x", "git-creds"),
            Code::InvalidArgument,
            "spec.repo.ref",
            "not a ref",
        ),
        (
            repo_task("ftp://example.com/app.git", "main", ""),
            Code::InvalidArgument,
            "spec.repo.url",
            "must start with",
        ),
        (
            repo_task(
                &format!("http://{}/app.git", free_addr()),
                "main",
                "git-creds",
            ),
            Code::Unavailable,
            "repo.url",
            "unreachable",
        ),
    ];
    for (request, code, field, says) in cases {
        let url = request
            .spec
            .as_ref()
            .and_then(|s| s.repo.as_ref())
            .map(|r| r.url.clone())
            .unwrap_or_default();
        let status = client.submit_task(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{url}: {}", status.message());
        assert!(
            status.message().contains(field) && status.message().contains(says),
            "{url}: {:?} should name {field:?} and say {says:?}",
            status.message()
        );
        assert!(
            !status.message().contains(PASSWORD),
            "a refusal shows the password: {}",
            status.message()
        );
    }
    assert_eq!(all_task_ids(&client).await?, before, "nothing was stored");

    // Without --allow-local-repos, a loopback http:// or file:// repository
    // is refused before git is asked.
    let strict = Server::start(&dir.path().join("strict"))?;
    let strict_client = strict.tasks().await?;
    for url in [url.clone(), "file:///srv/app.git".to_string()] {
        let status = strict_client
            .clone()
            .submit_task(repo_task(&url, "main", ""))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains("spec.repo.url")
                && status.message().contains("--allow-local-repos"),
            "{}",
            status.message()
        );
    }
    // A pinned commit skips resolving, not the check; and a pull request's
    // token never goes to a plain http:// API.
    let mut pinned = repo_task(&url, "main", "");
    if let Some(repo) = pinned.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.commit = "a".repeat(40);
    }
    let mut clear = repo_task("https://github.com/acme/app.git", "main", "");
    if let Some(repo) = clear.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.pull_request = Some(v1::PullRequestSpec {
            title: "t".into(),
            forge: "github".into(),
            api_url: "http://ghe.example.com/api/v3".into(),
            ..v1::PullRequestSpec::default()
        });
    }
    for (request, field) in [
        (pinned, "spec.repo.url"),
        (clear, "spec.repo.pullRequest.apiUrl"),
    ] {
        let status = strict_client
            .clone()
            .submit_task(request)
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(field) && status.message().contains("--allow-local-repos"),
            "{}",
            status.message()
        );
    }
    let log = std::fs::read_to_string(&server.process.log)?;
    assert!(
        !log.contains(PASSWORD),
        "the server's log shows the password"
    );
    Ok(())
}

/// A worker whose secrets directory holds the git server's account as
/// `git-creds`, as the control plane's does.
fn repo_worker(server: &Server, dir: &std::path::Path, name: &str) -> anyhow::Result<Process> {
    let secrets = account_secrets(dir, &format!("{name}-secrets"), "git-creds")?;
    server.worker_with(name, &["shell"], 4, &["--secrets-dir", &secrets])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_works_in_its_own_worktree_and_its_work_comes_back_with_its_result()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    let first = git.create_repo("app", &[("README.md", "hello\n"), ("src/a.txt", "a\n")]);
    let server = control_plane(dir.path())?;
    let _worker = repo_worker(&server, dir.path(), "w1")?;
    let client = server.tasks().await?;

    // `edit` commits one change itself and leaves another; `look` only
    // reads; both start from the task's commit, in parallel.
    let mut request = repo_task(&git.url("app"), "main", "git-creds");
    if let Some(spec) = request.spec.as_mut() {
        spec.steps = vec![
            shell_step(
                "edit",
                &[],
                "test \"$PWD\" = \"$TIDEWRIGHT_REPO\" && echo b > src/b.txt && git add src/b.txt \
                 && git commit -q -m 'add b' && echo more >> README.md",
            ),
            shell_step(
                "look",
                &[],
                "test -f README.md && test ! -f src/b.txt && git rev-parse HEAD > \"$TIDEWRIGHT_OUTPUT.head\" \
                 && printf '{\"head\":\"%s\"}' \"$(cat \"$TIDEWRIGHT_OUTPUT.head\")\" > \"$TIDEWRIGHT_OUTPUT\"",
            ),
        ];
    }
    let id = submit(&client, request).await?;
    let task = wait_succeeded(&client, &id, std::time::Duration::from_secs(60)).await?;

    let edit = step(&task, "edit").work.clone().expect("edit's work");
    assert_eq!(edit.branch, format!("tidewright/{id}-edit"));
    assert_eq!(edit.base_commit, first);
    assert_ne!(edit.head_commit, first);
    assert_eq!(edit.changed_paths, vec!["README.md", "src/b.txt"]);
    assert_eq!(
        (edit.files_changed, edit.insertions, edit.deletions),
        (2, 2, 0)
    );
    assert!(
        edit.committed_by_tidewright,
        "README.md was left uncommitted"
    );

    let look = step(&task, "look").work.clone().expect("look's work");
    assert_eq!(look.head_commit, first, "a step that changes nothing");
    assert!(look.changed_paths.is_empty() && !look.committed_by_tidewright);
    assert_eq!(output(step(&task, "look"))["head"], first.as_str());

    // The work is in the worker's mirror, on the step's branch; the
    // worktrees are gone.
    let mirrors = server.data_dir.join("work/w1/.mirrors");
    // The mirror, beside its lock files.
    let mirror = std::fs::read_dir(&mirrors)?
        .filter_map(Result::ok)
        .find(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .expect("a mirror")
        .path();
    assert_eq!(
        tidewright_tests::git_server::git(
            &mirror,
            &["rev-parse", &format!("tidewright/{id}-edit")]
        ),
        edit.head_commit
    );
    let log = tidewright_tests::git_server::git(
        &mirror,
        &["log", "-2", "--format=%an|%s", &edit.head_commit],
    );
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        vec![
            format!(
                "tidewright|tidewright: what step edit of task {id} left uncommitted (attempt 1)"
            ),
            "tidewright step edit|add b".to_string(),
        ]
    );
    assert!(
        !server.data_dir.join(format!("work/w1/{id}")).exists(),
        "the workspaces and their worktrees are removed"
    );
    // `tidewright get task -o json` shows it.
    let shown = succeed(server.cli().args(["get", "task", &id, "-o", "json"]));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    assert_eq!(shown["repo"]["commit"], first.as_str());
    assert_eq!(
        shown["steps"][0]["work"]["headCommit"],
        edit.head_commit.as_str()
    );

    let log = std::fs::read_to_string(&server.process.log)?;
    assert!(!log.contains(PASSWORD));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_rewrites_its_branch_or_whose_worker_lacks_the_credentials_fails_saying_so()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("README.md", "hello\n")]);
    git.commit("app", &[("b.txt", "b\n")], "second");
    let server = control_plane(dir.path())?;
    let client = server.tasks().await?;

    // A worker without the secret: the step fails naming it.
    let bare = server.worker_with("bare", &["shell"], 2, &[])?;
    let mut request = repo_task(&git.url("app"), "main", "git-creds");
    if let Some(spec) = request.spec.as_mut() {
        spec.steps = vec![shell_step("a", &[], "true")];
    }
    let id = submit(&client, request.clone()).await?;
    let task = wait_finished(&client, &id, std::time::Duration::from_secs(60)).await?;
    let error = &step(&task, "a").error;
    assert!(
        error.contains("repo.credentialsSecret") && error.contains("git-creds"),
        "{error}"
    );
    drop(bare);

    // A step that resets its branch behind its base fails, naming itself.
    let _worker = repo_worker(&server, dir.path(), "w1")?;
    if let Some(spec) = request.spec.as_mut() {
        spec.steps = vec![shell_step("rewrite", &[], "git reset -q --hard HEAD~1")];
    }
    let id = submit(&client, request).await?;
    let task = wait_finished(&client, &id, std::time::Duration::from_secs(60)).await?;
    let rewrite = step(&task, "rewrite");
    assert_eq!(rewrite.state, v1::StepState::Failed as i32);
    assert!(
        rewrite.error.contains("step rewrite") && rewrite.error.contains("rewrote the history"),
        "{}",
        rewrite.error
    );
    Ok(())
}

/// A step that says it is started, then waits (30 s at most) for `other`
/// to say so: it succeeds only when both run at once.
fn meets(
    id: &str,
    other: &str,
    dir: &std::path::Path,
    touches: &[&str],
    writes: &str,
) -> v1::StepSpec {
    let d = dir.display();
    let mut step = shell_step(
        id,
        &[],
        &format!(
            "touch {d}/{id}.started; i=0; while [ ! -f {d}/{other}.started ]; do i=$((i+1)); \
             [ $i -gt 300 ] && exit 7; sleep 0.1; done; mkdir -p $(dirname {writes}); echo {id} >> {writes}"
        ),
    );
    step.touches = touches.iter().map(|t| t.to_string()).collect();
    step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_that_may_touch_the_same_paths_run_one_after_the_other_and_the_rest_at_once()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo("app", &[("README.md", "hello\n")]);
    let server = control_plane(dir.path())?;
    let _worker = repo_worker(&server, dir.path(), "w1")?;
    let client = server.tasks().await?;
    // Where the worker's sandboxed steps can see them: in the directory
    // the test kit shares with them.
    let gates = server.data_dir.join("gates");
    std::fs::create_dir_all(&gates)?;

    let mut request = repo_task(&git.url("app"), "main", "git-creds");
    let mut handlers = shell_step(
        "handlers",
        &[],
        "mkdir -p src/api && echo h > src/api/handlers.rs",
    );
    handlers.touches = vec!["src/api/handlers.rs".into()];
    let mut sloppy = shell_step(
        "sloppy",
        &[],
        "mkdir -p docs && echo d > docs/a.md && echo x >> README.md",
    );
    sloppy.touches = vec!["docs/**".into()];
    let mut strict = sloppy.clone();
    strict.id = "strict".into();
    strict.touches_strict = true;
    // The strict step fails its task: it runs in one of its own.
    let mut strict_request = request.clone();
    if let Some(spec) = strict_request.spec.as_mut() {
        spec.steps = vec![strict];
    }
    if let Some(spec) = request.spec.as_mut() {
        spec.steps = vec![
            // api and web meet: they must run at once; handlers may touch
            // what api touches, so it waits for api.
            meets("api", "web", &gates, &["src/api/**"], "src/api/mod.rs"),
            meets("web", "api", &gates, &["src/web/**"], "src/web/mod.rs"),
            handlers,
            sloppy,
        ];
    }
    let id = submit(&client, request).await?;
    let task = wait_finished(&client, &id, std::time::Duration::from_secs(90)).await?;
    for name in ["api", "web", "handlers", "sloppy"] {
        assert_eq!(
            step(&task, name).state,
            v1::StepState::Succeeded as i32,
            "{name}: {}",
            step(&task, name).error
        );
    }
    let api = step(&task, "api");
    let handlers = step(&task, "handlers");
    assert!(
        micros(&handlers.started_at) >= micros(&api.finished_at),
        "handlers ran after api"
    );
    let strict_id = submit(&client, strict_request).await?;
    let strict_task =
        wait_finished(&client, &strict_id, std::time::Duration::from_secs(60)).await?;
    let strict = step(&strict_task, "strict");
    assert_eq!(strict.state, v1::StepState::Failed as i32);
    assert!(
        strict
            .error
            .contains("changed paths outside its touches: README.md"),
        "{}",
        strict.error
    );
    let events = task_events(&mut client.clone(), &id, 0, false).await?;
    let said = |step_id: &str, text: &str| {
        events.iter().any(|e| match &e.kind {
            Some(v1::event::Kind::StepState(s)) => s.step_id == step_id && s.message.contains(text),
            Some(v1::event::Kind::Progress(p)) => p.step_id == step_id && p.message.contains(text),
            _ => false,
        })
    };
    assert!(
        said(
            "handlers",
            "waits for step api: it touches src/api/handlers.rs, step api touches src/api/**"
        ),
        "{events:?}"
    );
    assert!(said(
        "sloppy",
        "changed paths outside its touches: README.md"
    ));
    Ok(())
}
