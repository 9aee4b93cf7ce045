//! The parallel-feature example and template, end to end: four Claude Code
//! agents (the real CLI against the mock Messages API, each writing its
//! files) on a repository served by the real git server. api and web touch
//! disjoint paths and never wait; docs and changelog both touch README.md,
//! so changelog waits for docs and starts from its work. The task's branch
//! holds all four changes without a conflict, is pushed, and a pull request
//! is opened against the forge double, every call valid by GitHub's own
//! OpenAPI description.

use std::time::Duration;

use tidewright_api::v1;
use tidewright_tests::forge::ForgeDouble;
use tidewright_tests::git_server::{GitServer, PASSWORD, account_secrets};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

const README_DOCS: &str = "# app\n\nList items with ?page=N&per_page=M.\n";
const README_BOTH: &str =
    "# app\n\nList items with ?page=N&per_page=M.\n\n## Changes\n\nSee CHANGELOG.md.\n";

/// Each agent's script, twice: the example's run, then the template's.
fn agents() -> Vec<(&'static str, Vec<Reply>)> {
    let twice = |file: &str, content: &str, said: &str| {
        let once = [
            Reply::claude_write(file, content),
            Reply::Text(said.to_string()),
        ];
        once.iter().chain(once.iter()).cloned().collect::<Vec<_>>()
    };
    let mut changelog = vec![
        Reply::claude_write("CHANGELOG.md", "- Paginated the item list.\n"),
        Reply::claude_write("README.md", README_BOTH),
        Reply::Text("Logged the change.".into()),
    ];
    changelog.extend(changelog.clone());
    vec![
        (
            "[parallel-feature: api]",
            twice(
                "src/api/items.rs",
                "fn list(page: u32, per_page: u32) {}\n",
                "API done.",
            ),
        ),
        (
            "[parallel-feature: web]",
            twice(
                "src/web/page.ts",
                "export const pager = true;\n",
                "Web done.",
            ),
        ),
        (
            "[parallel-feature: docs]",
            twice("README.md", README_DOCS, "Documented."),
        ),
        ("[parallel-feature: changelog]", changelog),
    ]
}

fn secrets(dir: &std::path::Path, name: &str) -> anyhow::Result<String> {
    account_secrets(dir, name, "github-token")
}

/// Checks one run: the waits, the work, the branch, the pull request.
async fn check(
    client: &Tasks,
    git: &GitServer,
    id: &str,
    pull_request: &str,
) -> anyhow::Result<()> {
    let task = wait_succeeded(client, id, Duration::from_secs(120)).await?;
    let work = |name: &str| step(&task, name).work.clone().expect("work");
    // changelog waited for docs, and started from docs' work.
    assert_eq!(work("changelog").base_commit, work("docs").head_commit);
    let events = task_events(&mut client.clone(), id, 0, false).await?;
    let waits: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::event::Kind::StepState(s)) if s.message.starts_with("waits for step") => {
                Some((s.step_id.clone(), s.message.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        waits,
        vec![(
            "changelog".to_string(),
            "waits for step docs: both touch README.md".to_string()
        )],
        "only changelog waits"
    );
    // The task's branch holds the four agents' work, and is pushed.
    let delivered = work("deliver");
    assert!(delivered.pushed);
    assert_eq!(delivered.pull_request_url, pull_request);
    let branch = format!("tidewright/{id}");
    assert_eq!(git.rev_parse("acme/app", &branch), delivered.head_commit);
    let show = |path: &str| git.inside("acme/app", &["show", &format!("{branch}:{path}")]);
    assert_eq!(show("README.md"), README_BOTH.trim_end());
    assert!(show("src/api/items.rs").contains("per_page"));
    assert!(show("src/web/page.ts").contains("pager"));
    assert!(show("CHANGELOG.md").contains("Paginated"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_agents_build_one_feature_without_collisions_and_open_a_pull_request()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let git = GitServer::start(dir.path())?;
    git.create_repo(
        "acme/app",
        &[
            ("README.md", "# app\n"),
            ("src/api/items.rs", "fn list() {}\n"),
            ("src/web/page.ts", "export {};\n"),
        ],
    );
    let forge = ForgeDouble::start(dir.path(), git.root(), PASSWORD)?;
    let mock = Mock::start_routed(Api::Anthropic, agents()).await?;
    let server_secrets = secrets(dir.path(), "server-secrets")?;
    let server = Server::start_on(
        &dir.path().join("server"),
        "127.0.0.1:0",
        &["--allow-local-repos", "--repo-secrets-dir", &server_secrets],
    )?;
    let worker_secrets = secrets(dir.path(), "worker-secrets")?;
    let _worker = start_named_claude_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["claude-code"], 4),
        &["--secrets-dir", &worker_secrets],
    )?;
    let client = server.tasks().await?;

    // The example, as shipped, pointed at this git server and forge.
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/parallel-feature.yaml");
    let mut file: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(example)?)?;
    file["repo"]["url"] = git.url("acme/app").into();
    file["repo"]["pullRequest"]["forge"] = "github".into();
    file["repo"]["pullRequest"]["apiUrl"] = forge.github_api().into();
    let task_file = dir.path().join("parallel-feature.yaml");
    std::fs::write(&task_file, serde_yaml::to_string(&file)?)?;
    let out = succeed(server.cli().args([
        "submit",
        "-f",
        &task_file.display().to_string(),
        "-o",
        "name",
    ]));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    check(&client, &git, &id, "https://github.example/acme/app/pull/1").await?;

    // The template, with the same four agents.
    let out = succeed(server.cli().args([
        "template",
        "run",
        "parallel-feature",
        "-o",
        "name",
        "-p",
        "feature=Paginate the item list",
        "-p",
        &format!("repo={}", git.url("acme/app")),
        "-p",
        "secret=github-token",
        "-p",
        &format!("api_url={}", forge.github_api()),
    ]));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    check(&client, &git, &id, "https://github.example/acme/app/pull/2").await?;

    let seen = forge.requests()?;
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert!(seen.iter().all(|r| r["valid"] == true), "{seen:#?}");
    let shown = succeed(server.cli().args(["get", "task", &id]));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("Pull req.: https://github.example/acme/app/pull/2"),
        "{shown}"
    );
    Ok(())
}
