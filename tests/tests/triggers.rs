//! Triggers: a forge's event, delivered as GitHub sends it (its own example
//! payloads, checked against its published description and signed with
//! its own library), starts a template's task on the real git server and
//! the forge double. A labelled issue runs `fix-issue` with the real Claude
//! Code CLI against the mock Anthropic API; its pull request is followed
//! until it merges, and the task's result is commented on the issue. A
//! comment command from a user with write access is a task on its pull
//! request's branch; from one without, it is answered and starts nothing.
//! A trigger naming no template is refused.

use std::path::Path;
use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::forge::{ForgeDouble, deliver_github};
use tidewright_tests::git_server::{GitServer, PASSWORD, account_secrets};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

use crate::pull_requests::{CALC_TEST, PROJECT};

/// What the repository's main holds before the fix: add subtracts.
const BROKEN: &str = "add = lambda a, b: a - b\n";

/// The repository with its CI, the forge double, and a control plane that
/// takes forge webhooks signed with `hook-secret` on its HTTP port.
struct Hooked {
    dir: tempfile::TempDir,
    git: GitServer,
    forge: ForgeDouble,
    server: Server,
    /// `http://…/hooks/github`.
    hook: String,
    /// The HTTP port's address, to start again on.
    http: String,
}

fn hooked() -> Hooked {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo(PROJECT, &[("calc.py", BROKEN), ("test_calc.py", CALC_TEST)]);
    let forge = ForgeDouble::start(dir.path(), git.root(), PASSWORD).expect("forge");
    forge
        .ci(PROJECT, "unittest", "python3 -m unittest -v")
        .expect("ci");
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
    std::fs::write(Path::new(&secrets).join("hooked"), "hook-secret\n").expect("secret");
    let http = free_addr();
    let server = start_hooked(dir.path(), "127.0.0.1:0", &http);
    Hooked {
        hook: format!("http://{http}/hooks/github"),
        http,
        dir,
        git,
        forge,
        server,
    }
}

/// The control plane of `dir`, listening on `listen` and `http`.
fn start_hooked(dir: &Path, listen: &str, http: &str) -> Server {
    let secrets = dir.join("repo-secrets").display().to_string();
    Server::start_on(
        &dir.join("server"),
        listen,
        &[
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--forge-hooks-secret",
            "hooked",
            "--http-listen",
            http,
        ],
    )
    .expect("server")
}

/// A trigger of `event` on the repository, starting `template` with the
/// double's API and the git server's URL filled in.
fn trigger(hooked: &Hooked, name: &str, event: &str, template: &str) -> v1::TriggerSpec {
    v1::TriggerSpec {
        name: name.into(),
        forge: "github".into(),
        repository: PROJECT.into(),
        event: event.into(),
        template: template.into(),
        params: [
            ("repo", hooked.git.url(PROJECT)),
            ("base", "main".to_string()),
            ("secret", "git-creds".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        credentials_secret: "git-creds".into(),
        api_url: hooked.forge.github_api(),
        ..v1::TriggerSpec::default()
    }
}

/// GitHub's example delivery of `event`, `changes` merged into it, signed
/// with the hooks' secret, as delivery `id`: the answer's status and JSON.
fn deliver(
    hooked: &Hooked,
    event: (&str, &str),
    id: &str,
    changes: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, said) =
        deliver_github(&hooked.hook, event, Some("hook-secret"), id, changes).expect("delivered");
    let answer = serde_json::from_str(&said).unwrap_or(serde_json::Value::String(said));
    (status, answer)
}

/// Asks the control plane for the trigger `spec`, in the token's tenant.
async fn create(client: &Tasks, spec: v1::TriggerSpec) -> Result<v1::Trigger, tonic::Status> {
    client
        .clone()
        .create_trigger(v1::CreateTriggerRequest {
            tenant: String::new(),
            spec: Some(spec),
        })
        .await
        .map(|t| t.into_inner())
}

/// The comments on issue (or pull request) `number`, as the double has
/// them.
fn comments(forge: &ForgeDouble, number: u64) -> Vec<String> {
    let (_, answer) = forge
        .github(
            ("GET", &format!("/repos/{PROJECT}/issues/{number}/comments")),
            PASSWORD,
            &serde_json::Value::Null,
        )
        .expect("comments");
    answer
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_issue_starts_fix_issue_whose_pull_request_merges_and_its_result_is_commented() {
    let title = format!("add subtracts {}", std::process::id());
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![(
            title.as_str(),
            vec![
                Reply::claude_read("calc.py"),
                Reply::claude_write("calc.py", "add = lambda a, b: a + b\n"),
                Reply::Text("add adds now.".into()),
            ],
        )],
    )
    .await
    .expect("mock");
    let mut hooked = hooked();
    let secrets = hooked.dir.path().join("repo-secrets").display().to_string();
    let _worker = start_named_claude_worker(
        &hooked.server,
        hooked.dir.path(),
        "agent",
        &mock,
        (&["claude-code", "shell"], 2),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    let client = hooked.server.tasks().await.expect("client");
    let made = create(
        &client,
        trigger(&hooked, "issues", "issueLabeled", "fix-issue"),
    )
    .await
    .expect("created");
    assert_eq!(made.spec.expect("spec").event, "issueLabeled");

    // GitHub's own example of an issue labelled, on this repository, with
    // the label and issue the test names.
    let changes = serde_json::json!({
        "repository": {"full_name": PROJECT},
        "label": {"name": "agent"},
        "issue": {"number": 7, "title": title, "body": "2 + 3 should be 5"},
    });
    let (status, answer) = deliver(&hooked, ("issues", "labeled"), "issue-1", &changes);
    assert_eq!(status, 202, "{answer}");
    let started = &answer["triggered"][0];
    assert_eq!(started["trigger"], "issues", "{answer}");
    let id = started["taskId"].as_str().expect("a task").to_string();

    let task = wait_succeeded(&client, &id, Duration::from_secs(240))
        .await
        .expect("fixed and merged");
    let labels = &task.spec.as_ref().expect("spec").labels;
    assert_eq!(labels.get("issue").map(String::as_str), Some("7"));
    assert_eq!(labels.get("trigger").map(String::as_str), Some("issues"));
    let merged = output(step(&task, "deliver"))["merged"]
        .as_str()
        .expect("merged")
        .to_string();
    assert_eq!(hooked.git.rev_parse(PROJECT, "main"), merged);

    // The result is commented on the issue: how it ended, its cost and
    // duration, and the pull request.
    let posted = eventually(Duration::from_secs(30), || async {
        comments(&hooked.forge, 7).into_iter().next()
    })
    .await
    .expect("a comment on the issue");
    for said in [
        format!("({id}) succeeded"),
        "- cost: $".into(),
        "- duration: ".into(),
        "- pull request: https://github.example/acme/app/pull/1".into(),
    ] {
        assert!(posted.contains(&said), "{said:?} in {posted}");
    }
    // The same delivery again starts nothing more.
    let (status, answer) = deliver(&hooked, ("issues", "labeled"), "issue-1", &changes);
    assert_eq!(status, 200, "{answer}");
    // After a kill -9 the control plane has forgotten which deliveries it
    // took; the same delivery again finds the task it started, by its key.
    let listen = hooked.server.listen_addr();
    hooked.server.process.signal("KILL");
    hooked
        .server
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("killed");
    hooked.server = start_hooked(hooked.dir.path(), &listen, &hooked.http);
    let client = hooked.server.tasks().await.expect("client");
    let (status, answer) = deliver(&hooked, ("issues", "labeled"), "issue-1", &changes);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["triggered"][0]["taskId"], id.as_str(), "{answer}");
    assert_eq!(all_task_ids(&client).await.expect("list"), vec![id.clone()]);
    // The trigger keeps what its delivery did, and owes no reply now.
    let listed = client
        .clone()
        .list_triggers(v1::ListTriggersRequest {})
        .await
        .expect("list")
        .into_inner()
        .triggers;
    assert_eq!(listed[0].history[0].task_id, id);
    assert_eq!(listed[0].history[1].task_id, id, "found again, not made");
    // It owes no reply: the result is commented once, whoever leads.
    assert!(listed[0].replies_owed.is_empty(), "{listed:?}");
    assert_eq!(comments(&hooked.forge, 7).len(), 1, "commented once");
    let invalid: Vec<_> = hooked
        .forge
        .requests()
        .expect("requests")
        .into_iter()
        .filter(|r| r["valid"] != true)
        .collect();
    assert!(invalid.is_empty(), "{invalid:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_command_from_a_writer_works_on_its_pull_requests_branch_and_one_from_a_reader_is_answered_and_refused()
 {
    let hooked = hooked();
    let client = hooked.server.tasks().await.expect("client");
    refused_naming(
        create(
            &client,
            trigger(&hooked, "nothing", "issueLabeled", "no-such"),
        )
        .await,
        "template",
    );
    refused_naming(
        create(&client, trigger(&hooked, "odd", "pushed", "fix-issue")).await,
        "event",
    );
    let stored = client
        .clone()
        .list_triggers(v1::ListTriggersRequest {})
        .await
        .expect("list")
        .into_inner()
        .triggers;
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
    // No template: the comment's own, pr-command.
    create(&client, trigger(&hooked, "commands", "comment", ""))
        .await
        .expect("created");
    // A reader of the repository comments the command on pull request 3.
    hooked
        .forge
        .add_user_with("reader-token", "reader", "read")
        .expect("user");
    // GitHub's example predates fields its description now requires: they
    // are filled in as GitHub sends them today.
    let reactions = serde_json::json!({
        "url": "https://api.github.com/reactions", "total_count": 0, "+1": 0, "-1": 0,
        "laugh": 0, "confused": 0, "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0,
    });
    let changes = serde_json::json!({
        "repository": {"full_name": PROJECT},
        "issue": {
            "number": 3,
            "pull_request": {"url": format!("https://api.github.com/repos/{PROJECT}/pulls/3")},
            "labels": [],
            "active_lock_reason": null,
            "reactions": reactions,
        },
        "comment": {
            "body": "/tidewright make add add",
            "user": {"login": "reader"},
            "performed_via_github_app": null,
            "reactions": reactions,
        },
    });
    let (status, answer) = deliver(&hooked, ("issue_comment", "created"), "comment-1", &changes);
    assert_eq!(status, 202, "{answer}");
    let refused = answer["triggered"][0]["refused"]
        .as_str()
        .unwrap_or_default();
    assert!(refused.contains("reader has no write access"), "{answer}");
    let replied = comments(&hooked.forge, 3);
    assert_eq!(replied.len(), 1, "{replied:?}");
    assert!(
        replied[0].contains("@reader may not start tidewright tasks here"),
        "{replied:?}"
    );
    assert!(all_task_ids(&client).await.expect("list").is_empty());
    // A writer's command on pull request 1 (from `feature`) is a task on
    // that branch, delivered as a pull request into it.
    hooked.git.inside(PROJECT, &["branch", "feature", "main"]);
    let (status, pull) = hooked
        .forge
        .github(
            ("POST", &format!("/repos/{PROJECT}/pulls")),
            PASSWORD,
            &serde_json::json!({"title": "Feature", "head": "feature", "base": "main"}),
        )
        .expect("opened");
    assert_eq!(status, 201, "{pull}");
    hooked
        .forge
        .add_user_with("writer-token", "writer", "write")
        .expect("user");
    let mut changes = changes.clone();
    changes["issue"]["number"] = pull["number"].clone();
    changes["comment"]["user"]["login"] = "writer".into();
    let (status, answer) = deliver(&hooked, ("issue_comment", "created"), "comment-2", &changes);
    assert_eq!(status, 202, "{answer}");
    let id = answer["triggered"][0]["taskId"].as_str().expect("a task");
    let task = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: id.to_string(),
        })
        .await
        .expect("task")
        .into_inner();
    let spec = task.spec.expect("spec");
    let repo = spec.repo.expect("repo");
    assert_eq!(repo.r#ref, "feature");
    assert_eq!(repo.pull_request.expect("pull request").base, "feature");
    assert_eq!(spec.labels["template"], "pr-command");
    assert_eq!(spec.labels["pull-request"], "1");
    assert!(
        format!("{:?}", spec.steps[0]).contains("make add add"),
        "the prompt is the comment's: {:?}",
        spec.steps[0]
    );
    client
        .clone()
        .cancel_task(v1::CancelTaskRequest {
            task_id: id.to_string(),
        })
        .await
        .expect("cancelled");
    // A check suite that failed on main starts fix-ci; one on another
    // branch, or one that passed, starts nothing.
    create(&client, trigger(&hooked, "ci", "checkFailed", ""))
        .await
        .expect("created");
    let suite = |branch: &str, conclusion: &str| {
        serde_json::json!({
            "repository": {"full_name": PROJECT, "default_branch": "main"},
            "check_suite": {"head_branch": branch, "conclusion": conclusion},
        })
    };
    for (delivery, branch, conclusion) in [
        ("suite-1", "feature", "failure"),
        ("suite-2", "main", "success"),
    ] {
        let (status, answer) = deliver(
            &hooked,
            ("check_suite", "completed"),
            delivery,
            &suite(branch, conclusion),
        );
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["triggered"], serde_json::json!([]), "{answer}");
    }
    let (status, answer) = deliver(
        &hooked,
        ("check_suite", "completed"),
        "suite-3",
        &suite("main", "failure"),
    );
    assert_eq!(status, 202, "{answer}");
    let ci = answer["triggered"][0]["taskId"].as_str().expect("a task");
    let task = client
        .clone()
        .get_task(v1::GetTaskRequest {
            task_id: ci.to_string(),
        })
        .await
        .expect("task")
        .into_inner();
    let spec = task.spec.expect("spec");
    assert_eq!(spec.labels["template"], "fix-ci");
    assert_eq!(spec.repo.expect("repo").r#ref, "main");
    client
        .clone()
        .cancel_task(v1::CancelTaskRequest {
            task_id: ci.to_string(),
        })
        .await
        .expect("cancelled");
    // The CLI lists it with what its last delivery did, and removes it.
    let listed = succeed(hooked.server.cli().args(["trigger", "list"])).stdout;
    let listed = String::from_utf8_lossy(&listed);
    assert!(
        listed.contains("commands") && listed.contains("pr-command"),
        "{listed}"
    );
    succeed(hooked.server.cli().args(["trigger", "remove", "commands"]));
    let failed = hooked
        .server
        .cli()
        .args(["trigger", "remove", "commands"])
        .output()
        .expect("cli");
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("no trigger \"commands\""),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    // A forge that does not answer fails the delivery (503), and gives it
    // back: the forge's retry of the same delivery is taken, not ignored.
    let mut dead = trigger(&hooked, "dead-forge", "comment", "");
    dead.api_url = format!("http://{}", free_addr());
    create(&client, dead).await.expect("created");
    for _ in 0..2 {
        let (status, answer) =
            deliver(&hooked, ("issue_comment", "created"), "comment-3", &changes);
        assert_eq!(status, 503, "{answer}");
    }
    // Audited, as the trigger.
    let audit = hooked.server.audit_log().await.expect("audit");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "trigger.fire" && a.outcome.starts_with("refused: ")),
        "{audit:#?}"
    );
}

/// The notes on GitLab's issue or merge request (`on`: `issues/5`,
/// `merge_requests/1`), as the double has them.
fn notes(forge: &ForgeDouble, on: &str) -> Vec<String> {
    let project = PROJECT.replace('/', "%2F");
    let (_, answer) = forge
        .gitlab(
            ("GET", &format!("/projects/{project}/{on}/notes")),
            PASSWORD,
            &serde_json::Value::Null,
        )
        .expect("notes");
    answer
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// On GitLab, with hooks as its documentation describes them: an issue
/// whose labels gained `agent` starts fix-issue, a writer's note on a
/// merge request starts pr-command on its source branch, a reader's is
/// answered with a note and starts nothing, and each task's result is
/// noted where its event happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gitlab_a_labelled_issue_and_a_writers_note_start_tasks_and_a_readers_note_is_answered()
{
    let hooked = hooked();
    let client = hooked.server.tasks().await.expect("client");
    for (name, event) in [("issues", "issueLabeled"), ("notes", "comment")] {
        let mut spec = trigger(&hooked, name, event, "");
        spec.forge = "gitlab".into();
        spec.api_url = hooked.forge.gitlab_api();
        create(&client, spec).await.expect("created");
    }
    hooked.git.inside(PROJECT, &["branch", "feature", "main"]);
    let encoded = PROJECT.replace('/', "%2F");
    let (status, request) = hooked
        .forge
        .gitlab(
            ("POST", &format!("/projects/{encoded}/merge_requests")),
            PASSWORD,
            &serde_json::json!({"source_branch": "feature", "target_branch": "main", "title": "Feature"}),
        )
        .expect("opened");
    assert_eq!(status, 201, "{request}");
    let iid = request["iid"].as_u64().expect("iid");
    hooked
        .forge
        .add_user_id("reader-token", ("reader", 77), "read")
        .expect("user");
    hooked
        .forge
        .add_user_id("writer-token", ("writer", 78), "write")
        .expect("user");
    let project = serde_json::json!({
        "path_with_namespace": PROJECT,
        "git_http_url": hooked.git.url(PROJECT),
        "default_branch": "main",
    });
    let note = |(who, id): (&str, u64)| {
        serde_json::json!({
            "object_kind": "note",
            "user": {"id": id, "username": who},
            "project": project,
            "object_attributes": {"note": "/tidewright make add add", "noteable_type": "MergeRequest"},
            "merge_request": {"iid": iid, "source_branch": "feature", "target_branch": "main"},
        })
    };
    let http = hooked.http.clone();
    let hook = move |event: &str, id: &str, body: &serde_json::Value| {
        let answer = http_call(
            &http,
            "POST",
            "/hooks/gitlab",
            None,
            &[
                ("x-gitlab-token", "hook-secret"),
                ("x-gitlab-event", event),
                ("x-gitlab-event-uuid", id),
                ("content-type", "application/json"),
            ],
            &body.to_string(),
        )
        .expect("posted");
        assert_eq!(answer.status, 202, "{}", answer.body);
        answer.json()["triggered"][0].clone()
    };
    let get = |id: &str| {
        let client = client.clone();
        let id = id.to_string();
        async move {
            client
                .clone()
                .get_task(v1::GetTaskRequest { task_id: id })
                .await
                .expect("task")
                .into_inner()
        }
    };
    let cancel = |id: &str| {
        let client = client.clone();
        let id = id.to_string();
        async move {
            client
                .clone()
                .cancel_task(v1::CancelTaskRequest { task_id: id })
                .await
                .expect("cancelled");
        }
    };

    // A reader: answered on the merge request, nothing started.
    let fired = hook("Note Hook", "n-1", &note(("reader", 77)));
    let refused = fired["refused"].as_str().unwrap_or_default();
    assert!(refused.contains("reader has no write access"), "{fired}");
    let answered = notes(&hooked.forge, &format!("merge_requests/{iid}"));
    assert!(
        answered.len() == 1 && answered[0].contains("@reader may not start tidewright tasks"),
        "{answered:?}"
    );
    assert!(all_task_ids(&client).await.expect("list").is_empty());

    // A writer: a task on the source branch; its result is noted there.
    let fired = hook("Note Hook", "n-2", &note(("writer", 78)));
    let id = fired["taskId"].as_str().expect("a task").to_string();
    let spec = get(&id).await.spec.expect("spec");
    let repo = spec.repo.expect("repo");
    assert_eq!(repo.r#ref, "feature");
    assert_eq!(repo.pull_request.expect("pull request").forge, "gitlab");
    assert_eq!(spec.labels["pull-request"], iid.to_string());
    cancel(&id).await;
    eventually(Duration::from_secs(30), || async {
        notes(&hooked.forge, &format!("merge_requests/{iid}"))
            .iter()
            .find(|n| n.contains(&format!("({id}) cancelled")))
            .cloned()
    })
    .await
    .expect("the result noted on the merge request");

    // An issue whose labels gained `agent`: fix-issue, noted on the issue.
    let issue = serde_json::json!({
        "object_kind": "issue",
        "user": {"id": 78, "username": "writer"},
        "project": project,
        "object_attributes": {"iid": 5, "title": "add subtracts", "description": "2 + 3 is 5", "action": "update"},
        "changes": {"labels": {"previous": [{"title": "bug"}], "current": [{"title": "bug"}, {"title": "agent"}]}},
    });
    let fired = hook("Issue Hook", "i-1", &issue);
    let id = fired["taskId"].as_str().expect("a task").to_string();
    let spec = get(&id).await.spec.expect("spec");
    assert_eq!(spec.labels["template"], "fix-issue");
    assert_eq!(spec.labels["issue"], "5");
    cancel(&id).await;
    eventually(Duration::from_secs(30), || async {
        notes(&hooked.forge, "issues/5")
            .into_iter()
            .find(|n| n.contains(&format!("({id}) cancelled")))
    })
    .await
    .expect("the result noted on the issue");
    let invalid: Vec<_> = hooked
        .forge
        .requests()
        .expect("requests")
        .into_iter()
        .filter(|r| r["valid"] != true)
        .collect();
    assert!(invalid.is_empty(), "{invalid:#?}");
}
