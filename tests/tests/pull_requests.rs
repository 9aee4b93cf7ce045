//! Followed pull requests, on the forge double (GitHub's calls checked
//! against its published OpenAPI description) over a repository of the
//! real git server: the double runs the project's CI (its unittest suite)
//! on each head it is asked about, keeps reviews and their comments, and
//! merges as GitHub does. The agent is the real Claude Code CLI against
//! the mock Anthropic API: a check that fails, or changes a reviewer
//! requests, go back to it in its own session; its fix is pushed to the
//! same branch and the pull request merges once green. A merge method the
//! repository does not allow, and a pull request a person closes, end the
//! task unretried; bad settings are refused at submit, naming the field.

use std::path::Path;
use std::time::Duration;

use tidewright_api::v1;
pub(crate) use tidewright_tests::calc::{RIGHT as CALC, TEST as CALC_TEST};
use tidewright_tests::forge::ForgeDouble;
use tidewright_tests::git_server::{GitServer, PASSWORD, account_secrets, secret_holding_worker};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

pub(crate) const PROJECT: &str = "acme/app";
/// What a request for changes says; the agent's mock answers it.
const REQUESTED: &str = "pull request is not ready to merge";

fn control_plane(dir: &Path) -> Server {
    let secrets = account_secrets(dir, "repo-secrets", "git-creds").expect("secrets");
    Server::start_on(
        &dir.join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )
    .expect("server")
}

/// The repository, its forge with its CI (the unittest suite), a control
/// plane and a Claude Code worker whose provider is `mock`.
struct Setup {
    dir: tempfile::TempDir,
    git: GitServer,
    forge: ForgeDouble,
    server: Server,
    _worker: Process,
}

fn setup(mock: &Mock) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo(PROJECT, &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let forge = ForgeDouble::start(dir.path(), git.root(), PASSWORD).expect("forge");
    forge
        .ci(PROJECT, "unittest", "python3 -m unittest -v")
        .expect("ci");
    let server = control_plane(dir.path());
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
    let worker = start_named_claude_worker(
        &server,
        dir.path(),
        "agent",
        mock,
        (&["claude-code", "shell"], 4),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    Setup {
        dir,
        git,
        forge,
        server,
        _worker: worker,
    }
}

/// A task whose step `work` (an agent's, or `shell`) opens a pull request
/// on the double and follows it, merged by `merge`, looked at each second.
fn followed(setup: &Setup, work: v1::StepSpec, merge: &str) -> v1::SubmitTaskRequest {
    followed_on((&setup.git, &setup.forge), work, merge)
}

pub(crate) fn followed_on(
    (git, forge): (&GitServer, &ForgeDouble),
    work: v1::StepSpec,
    merge: &str,
) -> v1::SubmitTaskRequest {
    let mut request = task_on_repo("followed", vec![work], &git.url(PROJECT));
    if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.pull_request = Some(v1::PullRequestSpec {
            title: "Make add right".into(),
            forge: "github".into(),
            api_url: forge.github_api(),
            follow: true,
            merge: merge.into(),
            poll_seconds: 1,
            ..v1::PullRequestSpec::default()
        });
    }
    request
}

/// The pull request `request` opens.
fn pull_request_of(request: &mut v1::SubmitTaskRequest) -> &mut v1::PullRequestSpec {
    request
        .spec
        .as_mut()
        .and_then(|s| s.repo.as_mut())
        .and_then(|r| r.pull_request.as_mut())
        .expect("a task with a pull request")
}

/// `request`'s pull request is the double's GitLab merge request.
fn on_gitlab(setup: &Setup, request: &mut v1::SubmitTaskRequest) {
    let pr = pull_request_of(request);
    pr.forge = "gitlab".into();
    pr.api_url = setup.forge.gitlab_api();
}

/// The agent's calls that read `file` and write `content` over it, then
/// say `done`.
fn rewrites(file: &str, content: &str, done: &str) -> Vec<Reply> {
    vec![
        Reply::claude_read(file),
        Reply::claude_write(file, content),
        Reply::Text(done.into()),
    ]
}

/// main is one squashed commit on its old tip, with the agent's renaming,
/// made in its second turn; every call to the forge was a valid one.
fn squashed_with_the_fix(setup: &Setup, task: &v1::Task) {
    assert_eq!(
        main_file(setup, "calc.py").trim(),
        "add = lambda x, y: x + y"
    );
    let parents = setup
        .git
        .inside(PROJECT, &["rev-list", "--parents", "-n", "1", "main"]);
    assert_eq!(parents.split_whitespace().count(), 2, "{parents}");
    assert_eq!(step(task, "work").attempts.len(), 2);
    all_valid(&setup.forge);
}

fn main_file(setup: &Setup, file: &str) -> String {
    setup
        .git
        .inside(PROJECT, &["show", &format!("main:{file}")])
}

/// Every call tidewright made to the double was one GitHub's description
/// allows.
fn all_valid(forge: &ForgeDouble) {
    let requests = forge.requests().expect("requests");
    let invalid: Vec<_> = requests.iter().filter(|r| r["valid"] != true).collect();
    assert!(invalid.is_empty(), "{invalid:#?}");
}

/// Each forge the follow-up knows: its name, its pull request's page, and
/// what its failed check's conclusion is called.
const FORGES: [(&str, &str, &str); 2] = [
    (
        "github",
        "https://github.example/acme/app/pull/1",
        "failure",
    ),
    (
        "gitlab",
        "https://gitlab.example/acme/app/-/merge_requests/1",
        "failed",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_fails_on_the_pull_request_goes_back_to_its_agent_whose_fix_merges_it() {
    check_fails_then_fix_merges(FORGES[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_on_the_merge_request_goes_back_to_its_agent_whose_fix_merges_it() {
    check_fails_then_fix_merges(FORGES[1]).await;
}

/// The agent's first head fails the forge's CI (a check run; a pipeline's
/// job); told so, in its own session, it fixes it, and the fix is merged.
async fn check_fails_then_fix_merges((forge, page, failed): (&str, &str, &str)) {
    let ask = format!("Make add add {}", std::process::id());
    let mock = subtracting_then_fixed(&ask).await;
    let setup = setup(&mock);
    let client = setup.server.tasks().await.expect("client");
    let mut request = followed(
        &setup,
        claude_step("work", &ask, &["Read", "Write"]),
        "auto",
    );
    if forge == "gitlab" {
        on_gitlab(&setup, &mut request);
    }
    let id = submit(&client, request).await.expect("submit");
    let task = wait_succeeded(&client, &id, Duration::from_secs(240))
        .await
        .expect("merged");
    // The first head failed the forge's CI; the agent, told so in its own
    // session, fixed it; the second passed and was merged by the forge.
    let deliver = step(&task, "deliver");
    assert_eq!(deliver.attempts.len(), 2, "{:#?}", deliver.attempts);
    assert!(
        deliver.attempts[0].error.contains("check(s) failed")
            && deliver.attempts[0].error.contains("unittest"),
        "{:?}",
        deliver.attempts[0]
    );
    let work = step(&task, "work");
    assert_eq!(work.attempts.len(), 2, "the agent's step ran again");
    assert_eq!(
        work.attempts[0].session_id, work.attempts[1].session_id,
        "in its own session"
    );
    let told = mock
        .request_containing(REQUESTED)
        .expect("the agent was told");
    assert!(
        told.contains(&format!("Check unittest failed ({failed})"))
            && told.contains("AssertionError"),
        "the check's name, conclusion and log tail: {told}"
    );
    let merged = output(deliver)["merged"]
        .as_str()
        .expect("merged")
        .to_string();
    assert_eq!(setup.git.rev_parse(PROJECT, "main"), merged);
    assert_eq!(
        main_file(&setup, "calc.py").trim(),
        "add = lambda a, b: b + a"
    );
    // `get task` shows the pull request, its checks and its fix rounds.
    let shown = succeed(setup.server.cli().args(["get", "task", &id])).stdout;
    let shown = String::from_utf8_lossy(&shown);
    for said in [
        format!(
            "Pull req.: {page}, followed and merged by tidewright (auto) once green; merged at "
        ),
        "; its checks and reviews sent back to its agent to fix 1 time(s)".into(),
        format!("unittest failed: {failed}"),
    ] {
        assert!(shown.contains(&said), "{said:?} in {shown}");
    }
    // A merge commit: main's old tip, then the pull request's head.
    let parents = setup
        .git
        .inside(PROJECT, &["rev-list", "--parents", "-n", "1", "main"]);
    assert_eq!(parents.split_whitespace().count(), 3, "{parents}");
    all_valid(&setup.forge);
}

/// The agent's provider: its first turn makes add subtract; told its pull
/// request is not ready, it makes add add.
pub(crate) async fn subtracting_then_fixed(ask: &str) -> Mock {
    Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                REQUESTED,
                rewrites("calc.py", "add = lambda a, b: b + a\n", "Fixed: it adds."),
            ),
            (
                ask,
                rewrites("calc.py", "add = lambda a, b: a - b\n", "Done."),
            ),
        ],
    )
    .await
    .expect("mock")
}

/// The leader is killed while the deliver step follows the pull request,
/// its CI held at a gate; the worker's attempt rides through the failover,
/// the check fails after it, and the new leader sends the failure back to
/// the agent once, in its session, and the fix merges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_leader_while_a_pull_request_is_followed_misses_no_failure_and_doubles_no_fix()
-> anyhow::Result<()> {
    let ask = format!("Make add add {}", std::process::id());
    let mock = subtracting_then_fixed(&ask).await;
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo(PROJECT, &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let forge = ForgeDouble::start(dir.path(), git.root(), PASSWORD)?;
    let gate = dir.path().join("gate").join("open");
    std::fs::create_dir_all(gate.parent().expect("gate"))?;
    let held = format!("{} && python3 -m unittest -v", wait_for_gate(&gate));
    forge.ci(PROJECT, "unittest", &held)?;
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds")?;
    let mut cluster = crate::failover::Cluster::start_with(
        2,
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
    )
    .await?;
    let first = cluster.leader(None).await?;
    let bin = claude_bin().display().to_string();
    let _worker = start_worker_env(
        &cluster.servers(),
        dir.path(),
        "agent",
        &["claude-code", "shell"],
        4,
        &["--claude-bin", &bin, "--secrets-dir", &secrets],
        &cluster.worker_token,
        &[
            ("ANTHROPIC_BASE_URL", &mock.url),
            ("ANTHROPIC_API_KEY", "sk-ant-test-key"),
        ],
    )?;
    let client = cluster.client()?;
    let request = followed_on(
        (&git, &forge),
        claude_step("work", &ask, &["Read", "Write"]),
        "auto",
    );
    let id = crate::failover::submit_through(&client, request).await?;
    let direct = cluster.members[first]
        .server
        .as_ref()
        .expect("leader up")
        .tasks()
        .await?;
    until_logged(
        &direct,
        (&id, "deliver"),
        "waiting for check(s)",
        Duration::from_secs(120),
    )
    .await?;
    crate::failover::kill_leader(&mut cluster, first).await?;
    std::fs::write(&gate, "")?;
    let task = crate::failover::wait_through(&client, &id).await?;
    assert_eq!(task.state, v1::TaskState::Succeeded as i32, "{task:#?}");
    let deliver = step(&task, "deliver");
    assert_eq!(deliver.attempts.len(), 2, "{:#?}", deliver.attempts);
    assert!(deliver.attempts[0].error.contains("check(s) failed"));
    let work = step(&task, "work");
    assert_eq!(work.attempts.len(), 2, "one fix, not two");
    assert_eq!(work.attempts[0].session_id, work.attempts[1].session_id);
    let told = mock
        .requests()
        .iter()
        .filter(|r| r.to_string().contains(REQUESTED))
        .count();
    assert!(told >= 1, "the agent was told");
    assert_eq!(
        git.inside(PROJECT, &["show", "main:calc.py"]).trim(),
        "add = lambda a, b: b + a"
    );
    all_valid(&forge);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_a_reviewer_requests_go_back_to_the_agent_each_thread_gets_a_reply_and_approval_merges()
 {
    let ask = format!("Write add {}", std::process::id());
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                REQUESTED,
                rewrites(
                    "calc.py",
                    "add = lambda x, y: x + y\n",
                    "Renamed the parameters.",
                ),
            ),
            (
                ask.as_str(),
                rewrites("calc.py", "add = lambda a, b: a + b  # sum\n", "Done."),
            ),
        ],
    )
    .await
    .expect("mock");
    let setup = setup(&mock);
    // Branch protection: one approval.
    setup
        .forge
        .settings(PROJECT, serde_json::json!({"required_approvals": 1}))
        .expect("settings");
    setup.forge.add_user("alice-token", "alice").expect("user");
    let client = setup.server.tasks().await.expect("client");
    let request = followed(
        &setup,
        claude_step("work", &ask, &["Read", "Write"]),
        "squash",
    );
    let id = submit(&client, request).await.expect("submit");
    // Green, and held by the protection until a review.
    until_logged(
        &client,
        (&id, "deliver"),
        "At least 1 approving review",
        Duration::from_secs(180),
    )
    .await
    .expect("the forge holds the merge for a review");
    let pulls = format!("/repos/{PROJECT}/pulls/1");
    let (status, review) = setup
        .forge
        .github(
            ("POST", &format!("{pulls}/reviews")),
            "alice-token",
            &serde_json::json!({
                "event": "REQUEST_CHANGES",
                "body": "Not yet.",
                "comments": [{"path": "calc.py", "line": 1, "body": "Name the parameters x and y."}],
            }),
        )
        .expect("review");
    assert_eq!(status, 200, "{review}");
    // The agent fixes it; the thread is answered; held again for approval.
    let reply = eventually(Duration::from_secs(180), || async {
        let (_, comments) = setup
            .forge
            .github(
                ("GET", &format!("{pulls}/comments")),
                "alice-token",
                &serde_json::Value::Null,
            )
            .ok()?;
        comments
            .as_array()?
            .iter()
            .find(|c| c["in_reply_to_id"].is_u64())
            .map(|reply| reply["body"].as_str().unwrap_or_default().to_string())
    })
    .await
    .expect("a reply in the comment's thread");
    assert!(
        reply.starts_with("Renamed the parameters.") && reply.contains("(tidewright's agent, in "),
        "the agent's own words: {reply}"
    );
    let (status, review) = setup
        .forge
        .github(
            ("POST", &format!("{pulls}/reviews")),
            "alice-token",
            &serde_json::json!({"event": "APPROVE"}),
        )
        .expect("approve");
    assert_eq!(status, 200, "{review}");
    let task = wait_succeeded(&client, &id, Duration::from_secs(120))
        .await
        .expect("merged");
    let told = mock
        .request_containing(REQUESTED)
        .expect("the agent was told");
    assert!(
        told.contains("review by alice")
            && told.contains("calc.py:1: Name the parameters x and y."),
        "the comment, its path and line: {told}"
    );
    // Squashed: one commit on main's old tip, with the agent's fix.
    squashed_with_the_fix(&setup, &task);
}

/// GitLab: a reviewer's thread on a line of the head goes back to the
/// agent while the pipeline still runs; the thread gets a reply note, the
/// pipeline on the fix passes, and the merge request is squashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_thread_on_a_line_goes_back_to_the_agent_and_the_merge_request_is_squashed() {
    let ask = format!("Write add {}", std::process::id());
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                REQUESTED,
                rewrites("calc.py", "add = lambda x, y: x + y\n", "Renamed them."),
            ),
            (
                ask.as_str(),
                rewrites("calc.py", "add = lambda a, b: a + b  # sum\n", "Done."),
            ),
        ],
    )
    .await
    .expect("mock");
    let setup = setup(&mock);
    // The pipeline on the first head holds at a gate.
    let gate = setup.dir.path().join("gate").join("open");
    std::fs::create_dir_all(gate.parent().expect("gate")).expect("gate");
    let held = format!("{} && python3 -m unittest -v", wait_for_gate(&gate));
    setup.forge.ci(PROJECT, "unittest", &held).expect("ci");
    setup.forge.add_user("alice-token", "alice").expect("user");
    let client = setup.server.tasks().await.expect("client");
    let mut request = followed(
        &setup,
        claude_step("work", &ask, &["Read", "Write"]),
        "squash",
    );
    on_gitlab(&setup, &mut request);
    let id = submit(&client, request).await.expect("submit");
    until_logged(
        &client,
        (&id, "deliver"),
        "waiting for check(s)",
        Duration::from_secs(180),
    )
    .await
    .expect("the pipeline runs");
    let head = setup.git.rev_parse(PROJECT, &format!("tidewright/{id}"));
    let base = setup.git.rev_parse(PROJECT, "main");
    let request_path = format!("/api/v4/projects/{}/merge_requests/1", "acme%2Fapp");
    let thread = tidewright_tests::http_call(
        &setup.forge.addr,
        "POST",
        &format!("{request_path}/discussions"),
        None,
        &[
            ("private-token", "alice-token"),
            ("content-type", "application/json"),
        ],
        &serde_json::json!({
            "body": "Name the parameters x and y.",
            "position": {
                "position_type": "text",
                "base_sha": base,
                "start_sha": base,
                "head_sha": head,
                "new_path": "calc.py",
                "new_line": 1,
            },
        })
        .to_string(),
    )
    .expect("thread");
    assert_eq!(thread.status, 201, "{}", thread.body);
    std::fs::write(&gate, "").expect("open the gate");
    let task = wait_succeeded(&client, &id, Duration::from_secs(180))
        .await
        .expect("merged");
    let told = mock
        .request_containing(REQUESTED)
        .expect("the agent was told");
    assert!(
        told.contains("review by alice")
            && told.contains("calc.py:1: Name the parameters x and y."),
        "{told}"
    );
    // The thread got a reply; main has one squashed commit with the fix.
    let discussions = tidewright_tests::http_call(
        &setup.forge.addr,
        "GET",
        &format!("{request_path}/discussions"),
        None,
        &[("private-token", "alice-token")],
        "",
    )
    .expect("discussions")
    .json();
    assert_eq!(
        discussions[0]["notes"].as_array().map(Vec::len),
        Some(2),
        "{discussions}"
    );
    assert!(
        discussions[0]["notes"][1]["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("Renamed them.")),
        "the agent's own words: {discussions}"
    );
    squashed_with_the_fix(&setup, &task);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_method_the_repository_refuses_and_a_pull_request_closed_end_the_task_unretried() {
    let mock = Mock::start_routed(Api::Anthropic, Vec::new())
        .await
        .expect("mock");
    let setup = setup(&mock);
    setup
        .forge
        .settings(PROJECT, serde_json::json!({"allow_squash_merge": false}))
        .expect("settings");
    let client = setup.server.tasks().await.expect("client");
    let first = setup.git.rev_parse(PROJECT, "main");

    // Squash, which the repository does not allow: the task fails naming
    // the field, its deliver step once, and main is as it was.
    let work = shell_step(
        "work",
        &[],
        "printf 'add = lambda a, b: a + b\\n\\n' > calc.py",
    );
    let id = submit(&client, followed(&setup, work.clone(), "squash"))
        .await
        .expect("submit");
    let task = wait_finished(&client, &id, Duration::from_secs(120))
        .await
        .expect("finished");
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let deliver = step(&task, "deliver");
    assert_eq!(deliver.attempts.len(), 1, "{:#?}", deliver.attempts);
    assert!(
        deliver
            .error
            .contains("repo.pullRequest.merge: squash: the repository acme/app does not allow it"),
        "{}",
        deliver.error
    );
    assert_eq!(setup.git.rev_parse(PROJECT, "main"), first);

    // Followed without a merge, and closed by a person.
    let id = submit(&client, followed(&setup, work, ""))
        .await
        .expect("submit");
    until_logged(
        &client,
        (&id, "deliver"),
        "waiting for a person to merge it",
        Duration::from_secs(120),
    )
    .await
    .expect("green, waiting for a person");
    let (status, _) = setup
        .forge
        .github(
            ("PATCH", &format!("/repos/{PROJECT}/pulls/2")),
            PASSWORD,
            &serde_json::json!({"state": "closed"}),
        )
        .expect("close");
    assert_eq!(status, 200);
    let task = wait_finished(&client, &id, Duration::from_secs(60))
        .await
        .expect("finished");
    assert_eq!(task.state, v1::TaskState::Failed as i32);
    let deliver = step(&task, "deliver");
    assert_eq!(deliver.attempts.len(), 1, "{:#?}", deliver.attempts);
    assert!(
        deliver.error.ends_with("closed without merging"),
        "{}",
        deliver.error
    );
    assert_eq!(setup.git.rev_parse(PROJECT, "main"), first);
    all_valid(&setup.forge);
    drop(setup.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_followed_pull_request_is_refused_at_submit_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = control_plane(dir.path());
    let client = server.tasks().await.expect("client");
    let with = |change: &dyn Fn(&mut v1::PullRequestSpec), steps: Vec<v1::StepSpec>| {
        let mut request = task_on_repo("bad", steps, "https://github.com/acme/app.git");
        if let Some(repo) = request.spec.as_mut().and_then(|s| s.repo.as_mut()) {
            let mut pr = v1::PullRequestSpec {
                title: "t".into(),
                follow: true,
                ..v1::PullRequestSpec::default()
            };
            change(&mut pr);
            repo.pull_request = Some(pr);
        }
        request
    };
    let shell = || vec![shell_step("work", &[], "true")];
    let mut landing = with(&|_| {}, shell());
    if let Some(repo) = landing.spec.as_mut().and_then(|s| s.repo.as_mut()) {
        repo.land = Some(v1::LandSpec {
            method: "queue".into(),
            checks: vec![unittest_check()],
            ..v1::LandSpec::default()
        });
    }
    let cases = [
        (
            with(&|p| p.merge = "fast-forward".into(), shell()),
            "spec.repo.pullRequest.merge",
        ),
        (
            with(&|p| p.max_fixes = Some(11), shell()),
            "spec.repo.pullRequest.maxFixes",
        ),
        (
            with(&|p| p.poll_seconds = 3601, shell()),
            "spec.repo.pullRequest.pollSeconds",
        ),
        (
            with(&|p| p.owner = "work".into(), shell()),
            "spec.repo.pullRequest.owner",
        ),
        (
            with(&|p| p.owner = "nobody".into(), shell()),
            "spec.repo.pullRequest.owner",
        ),
        (
            with(
                &|p| p.owner = "a".into(),
                vec![claude_step("a", "x", &[]), {
                    let mut b = claude_step("b", "y", &[]);
                    b.depends_on = vec!["a".into()];
                    b
                }],
            ),
            "spec.repo.pullRequest.owner",
        ),
        (landing, "spec.repo.pullRequest.follow"),
    ];
    for (request, field) in cases {
        refused_naming(client.clone().submit_task(request).await, field);
    }
    let stored = all_task_ids(&client).await.expect("list");
    assert!(stored.is_empty(), "nothing was stored: {stored:?}");
}

/// A control plane that takes forge webhooks (its hook secret `hooked` in
/// the repository secrets): a pull request followed with an hour between
/// polls is looked at as soon as GitHub's check_run delivery (its own
/// example, signed by its own library) says its check completed, and
/// merges. Unsigned and wrongly signed deliveries are refused (401) and
/// take nothing; a redelivery is taken once; GitLab's token is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_webhook_has_a_followed_pull_request_looked_at_at_once_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo(PROJECT, &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let forge = ForgeDouble::start(dir.path(), git.root(), PASSWORD).expect("forge");
    let gate = dir.path().join("gate").join("open");
    std::fs::create_dir_all(gate.parent().expect("gate")).expect("gate");
    let held = format!("{} && python3 -m unittest -v", wait_for_gate(&gate));
    forge.ci(PROJECT, "unittest", &held).expect("ci");
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
    std::fs::write(Path::new(&secrets).join("hooked"), "hook-secret\n").expect("secret");
    let http = free_addr();
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &[
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--forge-hooks-secret",
            "hooked",
            "--http-listen",
            &http,
        ],
    )
    .expect("server");
    let _worker = secret_holding_worker(&server.url, dir.path(), "w", 2, &server.worker_token)
        .expect("worker");
    let client = server.tasks().await.expect("client");
    let work = shell_step(
        "work",
        &[],
        "printf 'add = lambda a, b: b + a\\n' > calc.py",
    );
    let mut request = followed_on((&git, &forge), work, "auto");
    pull_request_of(&mut request).poll_seconds = 3600;
    let id = submit(&client, request).await.expect("submit");
    until_logged(
        &client,
        (&id, "deliver"),
        "waiting for check(s)",
        Duration::from_secs(120),
    )
    .await
    .expect("its check runs");
    std::fs::write(&gate, "").expect("open the gate");
    // The check's run ends; only a look now sees it.
    let head = git.rev_parse(PROJECT, &format!("tidewright/{id}"));
    eventually(Duration::from_secs(60), || async {
        let (_, runs) = forge
            .github(
                (
                    "GET",
                    &format!("/repos/{PROJECT}/commits/{head}/check-runs"),
                ),
                PASSWORD,
                &serde_json::Value::Null,
            )
            .ok()?;
        (runs["check_runs"][0]["status"] == "completed").then_some(())
    })
    .await
    .expect("the check completes");
    let hook = format!("http://{http}/hooks/github");
    let changes = serde_json::json!({"repository": {"full_name": PROJECT}});
    let deliver = |secret: Option<&'static str>, delivery: &str| {
        tidewright_tests::forge::deliver_github(
            &hook,
            ("check_run", "completed"),
            secret,
            delivery,
            &changes,
        )
        .expect("delivered")
    };
    // Unsigned, and signed with another secret: refused, nothing taken.
    let (status, said) = deliver(None, "d-1");
    assert_eq!(status, 401, "{said}");
    assert!(said.contains("X-Hub-Signature-256 is missing"), "{said}");
    let (status, said) = deliver(Some("not-the-secret"), "d-1");
    assert_eq!(status, 401, "{said}");
    assert!(said.contains("is not the body's signature"), "{said}");
    // Signed: taken, and the follow-up looks now.
    let (status, said) = deliver(Some("hook-secret"), "d-1");
    assert_eq!(status, 202, "{said}");
    let answer: serde_json::Value = serde_json::from_str(&said).expect("json");
    assert_eq!(answer["taken"], true, "{said}");
    assert_eq!(answer["looked"], 1, "{said}");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("merged long before its next poll");
    assert!(output(step(&task, "deliver"))["merged"].is_string());
    // Delivered again: taken once.
    let (status, said) = deliver(Some("hook-secret"), "d-1");
    assert_eq!(status, 200, "{said}");
    assert!(said.contains("\"taken\":false"), "{said}");
    // GitLab: its token is the secret.
    let gitlab = |token: &str| {
        tidewright_tests::http_call(
            &http,
            "POST",
            "/hooks/gitlab",
            None,
            &[
                ("x-gitlab-token", token),
                ("x-gitlab-event", "Pipeline Hook"),
                ("x-gitlab-event-uuid", "g-1"),
                ("content-type", "application/json"),
            ],
            &serde_json::json!({"object_kind": "pipeline", "project": {"path_with_namespace": PROJECT}})
                .to_string(),
        )
        .expect("posted")
    };
    assert_eq!(gitlab("wrong").status, 401);
    let taken = gitlab("hook-secret");
    assert_eq!(taken.status, 202, "{}", taken.body);
    assert_eq!(taken.json()["looked"], 0, "nothing follows now");
    all_valid(&forge);
}

/// A control plane asked to take forge webhooks whose secret it cannot
/// read, or that is empty, does not start, and says why in one line.
#[test]
fn a_control_plane_whose_hook_secret_is_missing_or_empty_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets");
    std::fs::write(secrets.join("empty"), "\n").expect("secret");
    for (name, said) in [
        ("absent", "--forge-hooks-secret absent"),
        ("empty", "is empty"),
    ] {
        let stderr = fails_in_one_line(
            std::process::Command::new(tidewright_bin())
                .args(["server", "--listen", "127.0.0.1:0", "--repo-secrets-dir"])
                .arg(&secrets)
                .args(["--forge-hooks-secret", name, "--data-dir"])
                .arg(dir.path().join(name)),
        );
        assert!(stderr.contains(said), "{stderr}");
    }
}

/// A repository without CI: no check ever runs on the head, so tidewright
/// does not merge it (it merges only what a check passed) and says so; a
/// person merges it, and the task ends merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_no_check_ran_on_is_merged_by_a_person_not_by_tidewright() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo(PROJECT, &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let first = git.rev_parse(PROJECT, "main");
    let forge = ForgeDouble::start(dir.path(), git.root(), PASSWORD).expect("forge");
    let server = control_plane(dir.path());
    let _worker = secret_holding_worker(&server.url, dir.path(), "w", 2, &server.worker_token)
        .expect("worker");
    let client = server.tasks().await.expect("client");
    let work = shell_step(
        "work",
        &[],
        "printf 'add = lambda a, b: b + a\\n' > calc.py",
    );
    let id = submit(&client, followed_on((&git, &forge), work, "auto"))
        .await
        .expect("submit");
    until_logged(
        &client,
        (&id, "deliver"),
        "tidewright merges only what a check passed",
        Duration::from_secs(120),
    )
    .await
    .expect("it says why it does not merge");
    assert_eq!(git.rev_parse(PROJECT, "main"), first, "not merged");
    let (status, merged) = forge
        .github(
            ("PUT", &format!("/repos/{PROJECT}/pulls/1/merge")),
            PASSWORD,
            &serde_json::json!({"merge_method": "merge"}),
        )
        .expect("a person merges it");
    assert_eq!(status, 200, "{merged}");
    let task = wait_succeeded(&client, &id, Duration::from_secs(60))
        .await
        .expect("merged by a person");
    assert_eq!(output(step(&task, "deliver"))["merged"], merged["sha"]);
    all_valid(&forge);
}
