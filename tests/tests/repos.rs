//! Tasks that name a repository, against a real git server over smart HTTP
//! with basic auth (nginx, fcgiwrap and `git http-backend`): the task's ref
//! is resolved once, when it is made, to the commit the remote has then;
//! every way a repository can be wrong is refused naming its field, with
//! nothing stored; and the credentials never show.

use orca_api::v1;
use orca_tests::git_server::{GitServer, PASSWORD, USER};
use orca_tests::*;
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
    let log = std::fs::read_to_string(&server.process.log)?;
    assert!(
        !log.contains(PASSWORD),
        "the server's log shows the password"
    );
    Ok(())
}
