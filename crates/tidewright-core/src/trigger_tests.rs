use serde_json::json;

use super::*;

fn trigger(event: TriggerEvent) -> TriggerSpec {
    TriggerSpec {
        name: "fix".into(),
        forge: Forge::Github,
        repository: "acme/app".into(),
        event,
        template: "fix-issue".into(),
        ..Default::default()
    }
}

/// GitHub's `issues` delivery of a label added, in its documented shape.
fn labelled(label: &str) -> Value {
    json!({
        "action": "labeled",
        "issue": {"number": 7, "title": "add is wrong", "body": "1+1 is 3", "user": {"login": "ann"}},
        "label": {"name": label},
        "repository": {
            "full_name": "acme/app",
            "clone_url": "https://github.com/acme/app.git",
            "default_branch": "main"
        },
        "sender": {"login": "ann"}
    })
}

#[test]
fn a_labelled_issue_fills_the_templates_parameters_and_the_triggers_own_win() {
    let event = github_event("issues", &labelled("agent")).expect("an event");
    let mut spec = trigger(TriggerEvent::IssueLabeled);
    assert!(spec.matches(&event));
    spec.params
        .insert("repo".into(), "http://127.0.0.1:1/acme/app.git".into());
    spec.credentials_secret = "forge".into();
    let declared = ["repo", "number", "title", "body", "base", "secret", "forge"];
    let params = spec.params_for(&event, &declared);
    assert_eq!(
        params,
        BTreeMap::from(
            [
                ("repo", "http://127.0.0.1:1/acme/app.git"),
                ("number", "7"),
                ("title", "add is wrong"),
                ("body", "1+1 is 3"),
                ("base", "main"),
                ("secret", "forge"),
                ("forge", "github"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        )
    );
    // Only what the template declares is given.
    assert!(!spec.params_for(&event, &["title"]).contains_key("number"));
}

#[test]
fn another_label_repository_forge_or_event_does_not_match() {
    let spec = trigger(TriggerEvent::IssueLabeled);
    let other_label = github_event("issues", &labelled("bug")).expect("an event");
    assert!(!spec.matches(&other_label));
    let mut elsewhere = labelled("agent");
    elsewhere["repository"]["full_name"] = json!("acme/other");
    assert!(!spec.matches(&github_event("issues", &elsewhere).expect("an event")));
    let mut on_gitlab = spec.clone();
    on_gitlab.forge = Forge::Gitlab;
    assert!(!on_gitlab.matches(&github_event("issues", &labelled("agent")).expect("an event")));
    assert!(
        !trigger(TriggerEvent::Comment)
            .matches(&github_event("issues", &labelled("agent")).expect("an event"))
    );
    // A label taken off, or one on a pull request, starts nothing.
    let mut unlabelled = labelled("agent");
    unlabelled["action"] = json!("unlabeled");
    assert!(github_event("issues", &unlabelled).is_none());
}

#[test]
fn a_comment_command_on_a_pull_request_is_read_with_its_prompt_and_its_author() {
    let payload = json!({
        "action": "created",
        "issue": {"number": 3, "title": "t", "pull_request": {"url": "https://api.github.com/repos/acme/app/pulls/3"}},
        "comment": {"body": "/tidewright  rename add to sum\n", "user": {"login": "bob"}},
        "repository": {"full_name": "acme/app", "clone_url": "https://github.com/acme/app.git", "default_branch": "main"},
        "sender": {"login": "bob"}
    });
    let event = github_event("issue_comment", &payload).expect("an event");
    assert_eq!(event.sender, "bob");
    assert!(event.on_pull_request());
    let spec = trigger(TriggerEvent::Comment);
    assert!(spec.matches(&event));
    let params = spec.params_for(&event, &["prompt", "number", "user"]);
    assert_eq!(params["prompt"], "rename add to sum");
    assert_eq!(params["user"], "bob");
    assert_eq!(prompt("/tidewrightly do", "/tidewright"), None);
    assert_eq!(prompt("please /tidewright do", "/tidewright"), None);
    // A comment on an issue is not a command on a pull request.
    let mut on_issue = payload.clone();
    on_issue["issue"]["pull_request"] = Value::Null;
    assert!(github_event("issue_comment", &on_issue).is_none());
}

#[test]
fn a_failed_check_suite_on_the_default_branch_matches_and_one_elsewhere_does_not() {
    let suite = |branch: &str, conclusion: &str| {
        json!({
            "action": "completed",
            "check_suite": {"head_branch": branch, "head_sha": "abc", "conclusion": conclusion, "app": {"name": "CI"}},
            "repository": {"full_name": "acme/app", "clone_url": "https://github.com/acme/app.git", "default_branch": "main"},
            "sender": {"login": "ci"}
        })
    };
    let spec = trigger(TriggerEvent::CheckFailed);
    let failed = github_event("check_suite", &suite("main", "failure")).expect("an event");
    assert!(spec.matches(&failed));
    assert_eq!(spec.params_for(&failed, &["check", "base"])["check"], "CI");
    assert!(
        !spec
            .matches(&github_event("check_suite", &suite("feature", "failure")).expect("an event"))
    );
    assert!(github_event("check_suite", &suite("main", "success")).is_none());
    let mut on_release = spec.clone();
    on_release.branch = "release".into();
    assert!(
        on_release
            .matches(&github_event("check_suite", &suite("release", "failure")).expect("an event"))
    );
}

#[test]
fn gitlabs_label_note_and_pipeline_hooks_are_read() {
    let project = json!({"path_with_namespace": "grp/sub/app", "git_http_url": "https://gitlab.com/grp/sub/app.git", "default_branch": "main"});
    let issue = json!({
        "object_kind": "issue",
        "user": {"id": 5, "username": "ann"},
        "project": project,
        "object_attributes": {"iid": 9, "title": "t", "description": "d", "action": "update"},
        "changes": {"labels": {"previous": [{"title": "bug"}], "current": [{"title": "bug"}, {"title": "agent"}]}}
    });
    let event = gitlab_event("Issue Hook", &issue).expect("an event");
    assert_eq!(
        (event.project.as_str(), event.sender_id),
        ("grp/sub/app", 5)
    );
    let mut spec = trigger(TriggerEvent::IssueLabeled);
    spec.forge = Forge::Gitlab;
    spec.repository = "grp/sub/app".into();
    assert!(spec.matches(&event));
    let note = json!({
        "object_kind": "note",
        "user": {"id": 6, "username": "bob"},
        "project": project,
        "object_attributes": {"note": "/tidewright fix it", "noteable_type": "MergeRequest"},
        "merge_request": {"iid": 4, "source_branch": "feature"}
    });
    let event = gitlab_event("Note Hook", &note).expect("an event");
    assert_eq!(
        event.what,
        What::Comment {
            number: 4,
            text: "/tidewright fix it".into(),
            branch: "feature".into()
        }
    );
    let pipeline = json!({
        "object_kind": "pipeline",
        "user": {"id": 1, "username": "ci"},
        "project": project,
        "object_attributes": {"ref": "main", "sha": "abc", "status": "failed"},
        "builds": [{"name": "test", "status": "failed"}, {"name": "lint", "status": "success"}]
    });
    let event = gitlab_event("Pipeline Hook", &pipeline).expect("an event");
    assert_eq!(
        event.what,
        What::CheckFailed {
            branch: "main".into(),
            sha: "abc".into(),
            check: "test".into()
        }
    );
    // An issue edited without a new label starts nothing.
    let mut edited = issue.clone();
    edited["changes"] = json!({"title": {"previous": "a", "current": "b"}});
    assert!(gitlab_event("Issue Hook", &edited).is_none());
}

#[test]
fn a_bad_trigger_is_refused_naming_its_field() {
    let field = |spec: &TriggerSpec| match validate(spec) {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let mut spec = trigger(TriggerEvent::IssueLabeled);
    assert_eq!(validate(&spec), Ok(()));
    spec.name = "Fix It".into();
    assert_eq!(field(&spec), "name");
    let mut spec = trigger(TriggerEvent::IssueLabeled);
    spec.repository = "acme".into();
    assert_eq!(field(&spec), "repository");
    spec.repository = "a/b/c".into();
    assert_eq!(field(&spec), "repository");
    spec.forge = Forge::Gitlab;
    assert_eq!(validate(&spec), Ok(()));
    spec.forge = Forge::Unknown("bitbucket".into());
    assert_eq!(field(&spec), "forge");
    let mut spec = trigger(TriggerEvent::IssueLabeled);
    spec.template = " ".into();
    assert_eq!(field(&spec), "template");
    // Left out, it is the event's own.
    spec.template = String::new();
    assert_eq!(validate(&spec), Ok(()));
    assert_eq!(spec.template(), "fix-issue");
    spec.event = TriggerEvent::Comment;
    assert_eq!(spec.template(), "pr-command");
    spec.event = TriggerEvent::CheckFailed;
    assert_eq!(spec.template(), "fix-ci");
    let mut spec = trigger(TriggerEvent::IssueLabeled);
    spec.branch = "main".into();
    assert_eq!(field(&spec), "branch");
    let mut spec = trigger(TriggerEvent::Comment);
    spec.command = "/do it".into();
    assert_eq!(field(&spec), "command");
    let mut spec = trigger(TriggerEvent::Comment);
    spec.api_url = "ftp://x".into();
    assert_eq!(field(&spec), "apiUrl");
}
