//! The web console in a real Chromium against real tidewright processes: the
//! one-time sign-in link `tidewright up` prints, the overview and the task page
//! kept live by the event streams, roles (a viewer has no cancel button,
//! and the server refuses a forged one), a log of thousands of lines, and
//! paging; templates run from a form, and webhooks managed by an admin
//! with their deliveries shown; schedules created from a form, their ticks
//! shown as they fire, suspended and run now. Also that the bundle the binary embeds is the one its sources
//! build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tidewright_tests::browser::{Browser, SIGNED_OUT};
use tidewright_tests::*;

const LIVE: Duration = Duration::from_secs(60);

/// `tidewright up` in `dir`: the process, its gRPC URL and the sign-in link it
/// printed.
async fn tidewright_up(dir: &Path) -> (Process, String, String) {
    tidewright_up_with(dir, 0).await
}

/// `tidewright up` with `workers` local workers (sandboxed: the system's tools
/// first on their `PATH`).
async fn tidewright_up_with(dir: &Path, workers: u32) -> (Process, String, String) {
    let (up, out) = Process::spawn_keeping_stdout(
        Command::new(tidewright_bin())
            .args(["up", "--listen", "127.0.0.1:0", "--workers"])
            .arg(workers.to_string())
            .env("PATH", system_first_path())
            .current_dir(dir),
        dir,
        "up",
    )
    .expect("tidewright up");
    let (grpc, link) = eventually(Duration::from_secs(30), || {
        let out = out.clone();
        async move {
            let printed = std::fs::read_to_string(out).ok()?;
            let field = |name: &str| {
                printed.lines().find_map(|l| {
                    l.trim_start()
                        .strip_prefix(name)
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(str::to_string)
                })
            };
            Some((field("gRPC ")?, field("console ")?))
        }
    })
    .await
    .expect("tidewright up prints its addresses and a sign-in link");
    (up, grpc, link)
}

/// Where the browser tests leave a screenshot of each page.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidewright_up_prints_a_one_time_link_into_a_live_console_of_the_fleet_and_each_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No local worker yet: the DAG waits until one connects, so the page
    // shows it running and finishing live.
    let (_up, grpc, link) = tidewright_up(dir.path()).await;
    assert!(
        link.starts_with("http://127.0.0.1:") && link.contains("/login?code="),
        "{link}"
    );
    let origin = link.split("/login").next().expect("origin").to_string();
    let browser = Browser::start(&dir.path().join("browser"))
        .await
        .expect("chromium");

    browser.client.goto(&link).await.expect("the link opens");
    let who = browser.text("[data-test=who]").await.expect("signed in");
    assert!(who.contains("admin"), "{who}");
    assert_eq!(
        browser.client.current_url().await.expect("url").as_str(),
        format!("{origin}/"),
        "the link lands on the console, its code gone from the address bar"
    );
    let before = browser
        .text("[data-test=count-succeeded] .figure")
        .await
        .expect("counts");

    // The example DAG, submitted from the CLI, and its page opened: every
    // step waits for a worker.
    let submitted = Command::new(tidewright_bin())
        .args(["--server", &grpc, "submit", "-f"])
        .arg(repo_root().join("examples/fan-out-fan-in.yaml"))
        .args(["-o", "name"])
        .current_dir(dir.path())
        .output()
        .expect("tidewright submit");
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    browser
        .client
        .goto(&format!("{origin}/#/tasks/{id}"))
        .await
        .expect("the task");
    browser
        .count_until("g[data-step]", 5, LIVE)
        .await
        .expect("five steps drawn");
    assert_eq!(
        browser
            .count("g[data-step][data-state=succeeded]")
            .await
            .expect("nodes"),
        0
    );
    assert_eq!(
        browser.count("path.edge").await.expect("edges"),
        6,
        "split fans out to three counts, which join"
    );
    browser.click("g[data-step=count-a]").await.expect("a step");
    browser
        .text("[data-test=step-panel]")
        .await
        .expect("its panel");

    // A worker connects: without a reload, every node turns green and the
    // open step's log lines arrive.
    let _worker = Process::spawn(
        Command::new(tidewright_bin())
            .args([
                "--server",
                &grpc,
                "worker",
                "--name",
                "late",
                "--capability",
                "shell",
                "--slots",
                "4",
            ])
            .env("PATH", system_first_path())
            .current_dir(dir.path()),
        dir.path(),
        "worker",
    )
    .expect("a worker");
    browser
        .count_until("g[data-step][data-state=succeeded]", 5, LIVE)
        .await
        .expect("each step turns green live");
    browser
        .text_until("[data-test=log]", LIVE, |t| t.contains("shard a has"))
        .await
        .expect("its log lines arrive");
    let output = browser.text("[data-test=output]").await.expect("output");
    assert!(output.contains("\"words\""), "pretty JSON: {output}");
    let attempts = browser
        .text("[data-test=attempts] tbody")
        .await
        .expect("attempts");
    assert!(
        attempts.contains("late") && attempts.contains("succeeded"),
        "{attempts}"
    );
    browser
        .screenshot(&screenshots(), "task")
        .await
        .expect("screenshot");
    if let Ok(path) = std::env::var("TIDEWRIGHT_CONSOLE_SCREENSHOT") {
        browser
            .screenshot(Path::new(&path), "task")
            .await
            .expect("README screenshot");
    }

    // The overview, the list, the agents and the audit log.
    browser
        .client
        .goto(&format!("{origin}/#/"))
        .await
        .expect("overview");
    let expected = (before.parse::<u64>().expect("a count") + 1).to_string();
    browser
        .text_until("[data-test=count-succeeded] .figure", LIVE, |t| {
            t == expected
        })
        .await
        .expect("the succeeded count");
    browser
        .count_until("[data-test=workers] tbody tr", 1, LIVE)
        .await
        .expect("the worker listed");
    // Its steps' sandbox, by name; the whole line on hover.
    browser
        .text_until("[data-test=workers] [data-test=isolation]", LIVE, |t| {
            t.starts_with("bubblewrap")
        })
        .await
        .expect("the worker's isolation");
    // The control plane's build, under the fleet.
    let version = format!(
        "Control plane: tidewright {} (commit ",
        env!("CARGO_PKG_VERSION")
    );
    browser
        .text_until("[data-test=server-build]", LIVE, |t| {
            t.starts_with(&version)
        })
        .await
        .expect("the control plane's build");
    browser
        .count_until(".chart canvas", 4, LIVE)
        .await
        .expect("four charts drawn");
    browser
        .screenshot(&screenshots(), "overview")
        .await
        .expect("screenshot");
    // Readable in dark mode: the page follows the system's choice.
    let background = "return getComputedStyle(document.body).backgroundColor";
    assert_eq!(
        browser.run(background).await.expect("light"),
        "rgb(247, 247, 248)"
    );
    browser.prefer_color_scheme("dark").await.expect("dark");
    assert_eq!(
        browser.run(background).await.expect("dark"),
        "rgb(21, 22, 26)"
    );
    browser
        .screenshot(&screenshots(), "overview-dark")
        .await
        .expect("screenshot");
    browser
        .prefer_color_scheme("light")
        .await
        .expect("light again");
    browser
        .client
        .goto(&format!("{origin}/#/tasks"))
        .await
        .expect("tasks");
    browser
        .count_until(
            &format!("[data-task='{id}'][data-state=succeeded]"),
            1,
            LIVE,
        )
        .await
        .expect("the row");
    browser
        .screenshot(&screenshots(), "tasks")
        .await
        .expect("screenshot");
    browser
        .client
        .goto(&format!("{origin}/#/agents"))
        .await
        .expect("agents");
    browser
        .count_until("[data-test=agents] tbody tr", 1, LIVE)
        .await
        .expect("the agent");
    browser
        .screenshot(&screenshots(), "agents")
        .await
        .expect("screenshot");
    browser
        .client
        .goto(&format!("{origin}/#/audit"))
        .await
        .expect("audit");
    browser
        .text_until("[data-test=audit] tbody", LIVE, |t| {
            t.contains("task.submit")
        })
        .await
        .expect("the submit audited");
    browser
        .screenshot(&screenshots(), "audit")
        .await
        .expect("screenshot");

    // Any other path is the console too.
    browser
        .client
        .goto(&format!("{origin}/some/bookmark"))
        .await
        .expect("a bookmark");
    browser.text("[data-test=who]").await.expect("the console");

    // The link worked once.
    let again = http_call(
        link.trim_start_matches("http://")
            .split('/')
            .next()
            .expect("host"),
        "GET",
        &link[link.find("/login").expect("path")..],
        None,
        &[],
        "",
    )
    .expect("answer");
    assert_eq!(again.status, 401, "{}", again.body);
    browser.close_without_errors().await;
}

/// `tidewright server` with a worker and tokens for a developer and a viewer.
struct Served {
    server: Server,
    _worker: Process,
    http: String,
}

async fn served(dir: &Path) -> Served {
    served_with(dir, &[]).await
}

/// [`served`], with more `tidewright server` flags.
async fn served_with(dir: &Path, extra: &[&str]) -> Served {
    let http = free_addr();
    let (server, worker) = start_with_roles(dir, &http, extra, 4)
        .await
        .expect("server and worker");
    Served {
        server,
        _worker: worker,
        http,
    }
}

impl Served {
    /// A browser on the console's page of task `id` (signed out).
    async fn open_task(&self, dir: &Path, id: &str) -> Browser {
        let browser = Browser::start(&dir.join("browser"))
            .await
            .expect("chromium");
        browser
            .client
            .goto(&format!("http://{}/#/tasks/{id}", self.http))
            .await
            .expect("the console");
        browser
    }

    fn submit(&self, task_file: &str) -> String {
        let answer = http_call(
            &self.http,
            "POST",
            "/api/v1/tasks",
            Some("tidewright_dev"),
            &[],
            task_file,
        )
        .expect("submit");
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()["taskId"].as_str().expect("id").to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_has_no_cancel_button_and_a_forged_cancel_is_refused_while_a_developer_cancels_live()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let tidewright = served(dir.path()).await;
    let id = tidewright
        .submit("name: sleeper\nsteps:\n  - id: nap\n    shell: {command: [sleep, '60']}\n");
    let browser = tidewright.open_task(dir.path(), &id).await;
    browser.sign_in("tidewright_viewer").await;
    let who = browser.text("[data-test=who]").await.expect("who");
    assert!(who.contains("vic") && who.contains("viewer"), "{who}");
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "running")
        .await
        .expect("the task runs");
    assert_eq!(
        browser.count("[data-test=cancel]").await.expect("buttons"),
        0,
        "no cancel for a viewer"
    );

    // The page's own session, with its CSRF token, still may not cancel.
    let forged = browser
        .run(&format!(
            "return fetch('/api/v1/session').then(r => r.json()).then(s =>
               fetch('/api/v1/tasks/{id}/cancel', {{method: 'POST', headers: {{'X-CSRF-Token': s.csrfToken}}}}))
               .then(r => r.status)"
        ))
        .await
        .expect("a forged cancel");
    assert_eq!(forged, 403);
    // Without the CSRF token, not even the request is considered.
    let no_csrf = browser
        .run(&format!(
            "return fetch('/api/v1/tasks/{id}/cancel', {{method: 'POST'}}).then(r => r.status)"
        ))
        .await
        .expect("a cancel without the CSRF token");
    assert_eq!(no_csrf, 403);

    browser
        .click("[data-test=sign-out]")
        .await
        .expect("sign out");
    browser.sign_in("tidewright_dev").await;
    browser
        .click("[data-test=cancel]")
        .await
        .expect("a developer cancels");
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "cancelled")
        .await
        .expect("cancelled, shown live");
    let got = succeed(
        tidewright
            .server
            .cli()
            .args(["get", "task", &id, "-o", "json"]),
    );
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(got["state"], "cancelled", "tidewright get task says so too");
    // The forged cancels' refusals are meant; nothing else failed.
    let errors = browser
        .page_errors(&[
            SIGNED_OUT,
            "/cancel - Failed to load resource: the server responded with a status of 403",
        ])
        .await
        .expect("the browser's log");
    assert!(errors.is_empty(), "the pages logged errors: {errors:#?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_at_its_gate_shows_who_may_decide_and_its_approver_approves_it_in_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tidewright = served(dir.path()).await;
    let id = tidewright.submit(
        "name: release
steps:
  - id: build
    shell: {command: ['true']}
  - id: deploy
    dependsOn: [build]
    approval: {message: 'Ship build 42?', approvers: [vic], timeoutSeconds: 3600}
    shell: {command: ['true']}
",
    );
    let browser = tidewright.open_task(dir.path(), &id).await;
    // The developer who submitted it sees the question, not the buttons.
    browser.sign_in("tidewright_dev").await;
    let gate = browser
        .text_until("[data-test=gate]", LIVE, |t| t.contains("Ship build 42?"))
        .await
        .expect("the gate is shown");
    assert!(gate.contains("deploy waits for approval by vic"), "{gate}");
    assert_eq!(
        browser.count("[data-test=approve]").await.expect("buttons"),
        0
    );
    browser
        .text("[data-test=gate-not-yours]")
        .await
        .expect("says why");
    assert_eq!(
        browser
            .run("return document.querySelector('[data-step=deploy][data-state]').dataset.state")
            .await
            .expect("the node"),
        "awaiting_approval"
    );
    browser
        .screenshot(&screenshots(), "approval-gate")
        .await
        .expect("screenshot");

    // vic, its approver, approves with a reason.
    browser
        .click("[data-test=sign-out]")
        .await
        .expect("sign out");
    browser.sign_in("tidewright_viewer").await;
    let reason = browser
        .client
        .wait()
        .at_most(LIVE)
        .for_element(fantoccini::Locator::Css("[data-test=gate-reason]"))
        .await
        .expect("the reason field");
    reason.send_keys("checked the diff").await.expect("type");
    browser.click("[data-test=approve]").await.expect("approve");
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "succeeded")
        .await
        .expect("the approved step ran, shown live");
    assert_eq!(browser.count("[data-test=gate]").await.expect("gates"), 0);
    let audit = tidewright.server.audit_log().await.expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "step.approve"
            && e.actor == "vic"
            && e.outcome == "ok"
            && e.detail == "step deploy: checked the diff"),
        "{audit:#?}"
    );
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_changes_show_as_a_diff_beside_the_tasks_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A repository on this machine's disk (the server allows local ones).
    let origin =
        tidewright_tests::git_server::local_repository(dir.path(), &[("README.md", "# app\n")]);
    let tidewright = served_with(dir.path(), &["--allow-local-repos"]).await;
    let id = tidewright.submit(&format!(
        "name: edit\nrepo: {{url: 'file://{}', ref: main}}\nsteps:\n  - id: edit\n    shell: {{command: [sh, -c, 'echo hello > greeting.txt && echo more >> README.md']}}\n",
        origin.display()
    ));
    let browser = tidewright.open_task(dir.path(), &id).await;
    browser.sign_in("tidewright_dev").await;
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "succeeded")
        .await
        .expect("done");
    let branch = browser.text("[data-test=branch]").await.expect("branch");
    assert!(branch.contains(&format!("tidewright/{id}")), "{branch}");
    browser.click("g[data-step=edit]").await.expect("the step");
    let work = browser
        .text_until("[data-test=work]", LIVE, |t| t.contains("2 files"))
        .await
        .expect("the work");
    assert!(work.contains("+2"), "{work}");
    // diff2html's rendering: a file each, with the lines added.
    browser
        .count_until("[data-test=diff] .d2h-file-wrapper", 2, LIVE)
        .await
        .expect("two files drawn");
    let diff = browser.text("[data-test=diff]").await.expect("the diff");
    assert!(
        diff.contains("greeting.txt") && diff.contains("hello") && diff.contains("more"),
        "{diff}"
    );
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_marks_a_step_waiting_for_anothers_touches_and_a_join_whose_dependencies_conflict()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let origin =
        tidewright_tests::git_server::local_repository(dir.path(), &[("config.txt", "base\n")]);
    let tidewright = served_with(dir.path(), &["--allow-local-repos"]).await;
    // first and left wait for the test's word; second waits for first
    // (their touches overlap); left and right write config.txt apart, so
    // join finds their work in conflict.
    let release = dir.path().join("release");
    let held = format!("until [ -e {} ]; do sleep 0.05; done", release.display());
    let url = format!("file://{}", origin.display());
    let id = tidewright.submit(&format!(
        r#"name: marks
repo: {{url: '{url}', ref: main}}
steps:
  - id: first
    touches: ['notes/**']
    shell: {{command: [sh, -c, '{held}; mkdir -p notes && echo 1 > notes/one.txt']}}
  - id: second
    touches: [notes/two.txt]
    shell: {{command: [sh, -c, 'mkdir -p notes && echo 2 > notes/two.txt']}}
  - id: left
    shell: {{command: [sh, -c, '{held}; echo left > config.txt']}}
  - id: right
    shell: {{command: [sh, -c, 'echo right > config.txt']}}
  - id: join
    dependsOn: [left, right]
    shell: {{command: [sh, -c, 'true']}}
"#
    ));
    let browser = tidewright.open_task(dir.path(), &id).await;
    browser.sign_in("tidewright_dev").await;
    browser
        .count_until("g[data-step=second][data-waits-for=first]", 1, LIVE)
        .await
        .expect("second is marked waiting for first");
    browser
        .count_until("[data-waits=\"second<first\"]", 1, LIVE)
        .await
        .expect("a dashed line from first to second");
    browser
        .click("g[data-step=second]")
        .await
        .expect("the step");
    let waits = browser.text("[data-test=waits]").await.expect("the wait");
    assert!(waits.contains("first"), "{waits}");

    std::fs::write(&release, "").expect("release");
    browser
        .count_until("g[data-step=join][data-conflict=right]", 1, LIVE)
        .await
        .expect("join is marked: right's work conflicted");
    browser
        .count_until("g[data-step=second][data-waits-for]", 0, LIVE)
        .await
        .expect("second waits no more");
    browser.click("g[data-step=join]").await.expect("the join");
    let conflict = browser
        .text_until("[data-test=conflict]", LIVE, |t| t.contains("config.txt"))
        .await
        .expect("the conflict");
    assert!(
        conflict.contains("right") && conflict.contains("left"),
        "{conflict}"
    );
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_thousands_of_lines_shows_its_tail_and_more_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tidewright = served(dir.path()).await;
    let id = tidewright
        .submit("name: chatty\nsteps:\n  - id: talk\n    shell: {command: [seq, '1', '20000']}\n");
    let browser = tidewright.open_task(dir.path(), &id).await;
    browser.sign_in("tidewright_dev").await;
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "succeeded")
        .await
        .expect("done");
    browser.click("g[data-step=talk]").await.expect("the step");
    browser
        .text_until("[data-test=log] .line:last-child", LIVE, |t| t == "20000")
        .await
        .expect("the tail reaches the last line");
    assert_eq!(
        browser.count("[data-test=log] .line").await.expect("lines"),
        300,
        "the tail, not 20,000 lines"
    );
    let more = browser.text("[data-test=load-more]").await.expect("more");
    assert!(more.contains("earlier"), "{more}");
    browser
        .click("[data-test=load-more]")
        .await
        .expect("load more");
    browser
        .count_until("[data-test=log] .line", 600, LIVE)
        .await
        .expect("300 more");
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_list_pages_newest_first_renders_a_thousand_and_filters_and_a_scope_shows_its_state()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let tidewright = served(dir.path()).await;
    for i in 0..1000 {
        let name = if i % 2 == 0 { "even" } else { "odd" };
        tidewright.submit(&format!(
            "name: {name}-{i}\nsteps:\n  - id: a\n    shell: {{command: [true]}}\n"
        ));
    }
    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{}/#/tasks", tidewright.http),
        "tidewright_viewer",
    )
    .await;
    browser
        .count_until("[data-task]", 50, LIVE)
        .await
        .expect("a page");
    let first = browser.text("[data-task] td a").await.expect("first row");
    assert_eq!(first, "odd-999", "newest first");
    browser.click("[data-test=older]").await.expect("older");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "odd-949")
        .await
        .expect("the second page");
    browser.click("[data-test=older]").await.expect("older");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "odd-899")
        .await
        .expect("the third page");
    browser.click("[data-test=newer]").await.expect("newer");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "odd-949")
        .await
        .expect("back");

    // A thousand rows on one page. How long it takes is measured in the
    // page and printed, not asserted: timing belongs to benchmarks.
    let took = browser
        .run(
            "const start = performance.now();
             let answered = 0;
             const fetchOriginal = window.fetch;
             window.fetch = (...args) => fetchOriginal(...args).then((response) => {
               if (String(args[0]).includes('pageSize=1000')) answered = performance.now();
               return response;
             });
             const size = document.querySelector('[data-test=page-size]');
             size.value = '1000';
             size.dispatchEvent(new Event('change', {bubbles: true}));
             return new Promise((done) => {
               const check = () => document.querySelectorAll('[data-task]').length >= 1000
                 ? done([answered - start, performance.now() - start])
                 : requestAnimationFrame(check);
               check();
             });",
        )
        .await
        .expect("a thousand rows");
    browser
        .count_until("[data-task]", 1000, LIVE)
        .await
        .expect("a thousand rows");
    println!(
        "the task list showed 1000 rows {:.0} ms after choosing the page size, the server's answer arriving at {:.0} ms",
        took[1].as_f64().unwrap_or_default(),
        took[0].as_f64().unwrap_or_default()
    );
    browser
        .screenshot(&screenshots(), "tasks-1000")
        .await
        .expect("screenshot");

    let filter = browser
        .client
        .find(fantoccini::Locator::Css("[data-test=filter-name]"))
        .await
        .expect("the name filter");
    // Enter commits the field, as a person does.
    filter.send_keys("even\n").await.expect("type");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "even-998")
        .await
        .expect("only even names");
    browser
        .count_until("[data-task]", 500, LIVE)
        .await
        .expect("all 500 of them");

    // A scope's shared state, read-only.
    for (key, value) in [("plan", r#"{"steps": 3}"#), ("finding", r#""off by one""#)] {
        succeed(
            tidewright
                .server
                .cli()
                .args(["state", "put", key, value, "--scope", "shared"]),
        );
    }
    browser
        .client
        .goto(&format!("http://{}/#/state", tidewright.http))
        .await
        .expect("the state page");
    let scope = browser
        .client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(fantoccini::Locator::Css(
            "[data-test=state-form] input[name=scope]",
        ))
        .await
        .expect("the scope field");
    scope.send_keys("shared\n").await.expect("type");
    browser
        .count_until("[data-test=state-values] tr[data-key]", 2, LIVE)
        .await
        .expect("both values");
    let first = browser
        .text("[data-test=state-values] tr[data-key]")
        .await
        .expect("a row");
    assert!(first.starts_with("finding"), "key order: {first}");
    let plan = browser
        .text("[data-test=state-values] tr[data-key=plan] pre")
        .await
        .expect("the value");
    assert!(plan.contains("\"steps\": 3"), "pretty JSON: {plan}");
    browser
        .screenshot(&screenshots(), "state")
        .await
        .expect("screenshot");
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_runs_from_its_form_and_an_admin_adds_a_webhook_and_watches_its_deliveries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("dir");
    std::fs::write(
        templates.join("greet.yaml"),
        "description: Greets someone.\nparameters:\n  who: {required: true, description: whom to greet}\n  times: {type: integer, default: 1}\nsteps:\n  - id: say\n    shell: {command: [echo, 'hello ${{ who }}', '${{ times }}']}\n",
    )
    .expect("write");
    let templates = templates.display().to_string();
    let tidewright = served_with(
        &dir.path().join("data"),
        &[
            "--templates-dir",
            &templates,
            "--webhook-allow-private-networks",
        ],
    )
    .await;
    let receiver = tidewright_tests::webhook_receiver::Receiver::start(&[], 204)
        .await
        .expect("receiver");
    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{}/#/templates", tidewright.http),
        "tidewright_dev",
    )
    .await;
    let row = browser
        .text_until("[data-test=templates] [data-template=greet]", LIVE, |t| {
            !t.is_empty()
        })
        .await
        .expect("the server's template is listed");
    assert!(row.contains("who*") && row.contains("greet.yaml"), "{row}");
    browser
        .click("[data-template=greet] a")
        .await
        .expect("its page");

    // Run without the required parameter: refused, and the field marked.
    browser
        .click("[data-test=run-template]")
        .await
        .expect("run");
    let refusal = browser
        .text_until("[data-test=template-error]", LIVE, |t| !t.is_empty())
        .await
        .expect("the refusal");
    assert!(refusal.contains("parameters.who: required"), "{refusal}");
    assert_eq!(
        browser
            .run("return document.querySelector('[data-parameter=who]').className")
            .await
            .expect("the field"),
        "invalid"
    );
    for (name, value) in [("who", "console"), ("times", "2")] {
        browser
            .client
            .find(fantoccini::Locator::Css(&format!(
                "[data-test=template-form] input[name={name}]"
            )))
            .await
            .expect("the field")
            .send_keys(value)
            .await
            .expect("type");
    }
    browser
        .screenshot(&screenshots(), "template")
        .await
        .expect("screenshot");
    browser
        .click("[data-test=run-template]")
        .await
        .expect("run");
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "succeeded")
        .await
        .expect("the task's page, live");
    let tasks = tidewright.server.tasks().await.expect("tasks");
    assert_eq!(
        all_task_ids(&tasks).await.expect("ids").len(),
        1,
        "one task"
    );

    // An admin: the webhooks page, a refused endpoint, then one that
    // receives, with its deliveries shown.
    browser
        .click("[data-test=sign-out]")
        .await
        .expect("sign out");
    browser.sign_in("tidewright_admin").await;
    browser
        .client
        .goto(&format!("http://{}/#/webhooks", tidewright.http))
        .await
        .expect("the webhooks page");
    let form = "[data-test=add-webhook]";
    let field = |name: &str| format!("{form} input[name='{name}']");
    let type_into = |css: String, text: String| {
        let client = browser.client.clone();
        async move {
            let input = client
                .wait()
                .at_most(LIVE)
                .for_element(fantoccini::Locator::Css(&css))
                .await
                .expect("the field");
            input.clear().await.expect("clear");
            input.send_keys(&text).await.expect("type");
        }
    };
    type_into(field("url"), "ftp://example.com/hook".into()).await;
    type_into(
        field("secret"),
        "whsec_Y29uc29sZS1rZXktb2YtdGhpcnR5LXR3by1ieXRlcw==".into(),
    )
    .await;
    browser
        .click(&format!("{form} button[type=submit]"))
        .await
        .expect("add");
    let refusal = browser
        .text_until("[data-test=webhook-error]", LIVE, |t| !t.is_empty())
        .await
        .expect("the refusal");
    assert!(refusal.starts_with("url:"), "{refusal}");
    type_into(field("url"), receiver.url.clone()).await;
    browser
        .click(&format!("{form} button[type=submit]"))
        .await
        .expect("add");
    let endpoint = browser
        .text_until("[data-test=webhooks] tbody", LIVE, |t| {
            t.contains(&receiver.url)
        })
        .await
        .expect("the endpoint is listed");
    assert!(
        endpoint.contains("task.succeeded, task.failed"),
        "{endpoint}"
    );
    assert!(endpoint.contains("enabled"), "{endpoint}");

    let id = tidewright.submit("name: hooked\nsteps:\n  - id: a\n    shell: {command: ['true']}\n");
    eventually(LIVE, || async {
        receiver
            .received()
            .iter()
            .any(|r| r.json()["task"]["id"] == id.as_str())
            .then_some(())
    })
    .await
    .expect("delivered");
    browser
        .click("[data-test=show-deliveries]")
        .await
        .expect("its deliveries");
    let delivery = browser
        .text_until("[data-test=deliveries] tbody", LIVE, |t| {
            t.contains(&id) && t.contains("delivered")
        })
        .await
        .expect("the delivery is shown");
    assert!(
        delivery.contains("task.succeeded") && delivery.contains("204"),
        "{delivery}"
    );
    browser
        .screenshot(&screenshots(), "webhooks")
        .await
        .expect("screenshot");

    // Removing takes a second click.
    browser
        .click("[data-test=remove-webhook]")
        .await
        .expect("remove");
    browser
        .click("[data-test=confirm-remove]")
        .await
        .expect("confirm");
    browser
        .text_until("[data-test=webhooks] tbody", LIVE, |t| {
            t.contains("No endpoint yet.")
        })
        .await
        .expect("removed");
    // The two refusals the test provoked, and nothing else.
    let refused = "Failed to load resource: the server responded with a status of 400";
    let errors = browser
        .page_errors(&[
            SIGNED_OUT,
            &format!("/api/v1/templates/greet/tasks?tenant=default - {refused}"),
            &format!("/api/v1/webhooks - {refused}"),
        ])
        .await
        .expect("the browser's log");
    assert!(errors.is_empty(), "the pages logged errors: {errors:#?}");
    browser.close().await;
}

/// The bundle under crates/tidewright-server/console, which the binary embeds, is exactly what
/// its sources build (`make console` rebuilds it).
/// Replaces the text of the field `css` with `text`.
async fn type_over(browser: &Browser, css: &str, text: &str) {
    let field = browser
        .client
        .wait()
        .at_most(LIVE)
        .for_element(fantoccini::Locator::Css(css))
        .await
        .expect("the field");
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Waits until `css` matches something.
async fn shown(browser: &Browser, css: &str) {
    eventually(LIVE, || async {
        (browser.count(css).await.ok()? > 0).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{css} is never shown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_made_in_its_form_shows_its_ticks_as_they_fire_and_is_suspended_and_run_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tidewright = served(&dir.path().join("data")).await;
    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{}/#/schedules", tidewright.http),
        "tidewright_dev",
    )
    .await;
    let file = "[data-test=create-schedule] textarea";
    let create = "[data-test=create-schedule] button[type=submit]";
    let heartbeat = "name: heartbeat\ncron: '* * * * * *'\ntimezone: Europe/Rome\nconcurrencyPolicy: Forbid\ntask:\n  steps:\n    - id: beat\n      shell: {command: ['true']}\n";

    // A cron that does not parse: refused, naming it; nothing listed.
    type_over(
        &browser,
        file,
        &heartbeat.replace("'* * * * * *'", "'61 * * * *'"),
    )
    .await;
    browser.click(create).await.expect("create");
    let refusal = browser
        .text_until("[data-test=schedule-error]", LIVE, |t| !t.is_empty())
        .await
        .expect("the refusal");
    assert!(refusal.starts_with("cron:"), "{refusal}");
    assert_eq!(
        browser
            .run("return document.querySelector('[data-test=schedule-error]').dataset.field")
            .await
            .expect("the field"),
        "cron"
    );
    assert_eq!(browser.count("[data-schedule]").await.expect("rows"), 0);

    // Every second: listed, and its last run moves as ticks fire.
    type_over(&browser, file, heartbeat).await;
    browser.click(create).await.expect("create");
    shown(&browser, "[data-schedule=heartbeat] a[href^='#/tasks/']").await;
    let row = browser
        .text("[data-schedule=heartbeat]")
        .await
        .expect("the row");
    assert!(
        row.contains("* * * * * *") && row.contains("Europe/Rome") && row.contains("Forbid"),
        "{row}"
    );

    // Its page: the history; suspended, no next tick; run now opens the task.
    browser
        .click("[data-schedule=heartbeat] a")
        .await
        .expect("its page");
    shown(&browser, "[data-test=history] a[href^='#/tasks/']").await;
    browser.click("[data-test=suspend]").await.expect("suspend");
    if let Err(e) = browser
        .text_until("[data-test=next-tick]", LIVE, |t| t == "suspended")
        .await
    {
        let errors = browser.page_errors(&[SIGNED_OUT]).await.unwrap_or_default();
        let page = browser.text("main").await.unwrap_or_default();
        panic!("not shown suspended: {e}; the page's errors: {errors:?}; the page: {page}");
    }
    browser
        .screenshot(&screenshots(), "schedule")
        .await
        .expect("screenshot");
    browser.click("[data-test=trigger]").await.expect("run now");
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "succeeded")
        .await
        .expect("the task's page, live");
    let found = http_call(
        &tidewright.http,
        "GET",
        "/api/v1/schedules/heartbeat",
        Some("tidewright_dev"),
        &[],
        "",
    )
    .expect("get")
    .json();
    assert_eq!(found["suspended"], true, "{found}");
    // The refused cron is meant; nothing else failed.
    let errors = browser
        .page_errors(&[
            SIGNED_OUT,
            "/api/v1/schedules - Failed to load resource: the server responded with a status of 400",
        ])
        .await
        .expect("the browser's log");
    assert!(errors.is_empty(), "the pages logged errors: {errors:#?}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_page_shows_the_tree_of_tasks_its_steps_submitted_and_a_childs_page_its_parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tidewright = served(&dir.path().join("data")).await;
    // A step submits a task of its own with its token, and follows it;
    // that task's step does the same: a tree of three.
    let submits = |file: &str| {
        use base64::Engine as _;
        let file = base64::engine::general_purpose::STANDARD.encode(file);
        format!("echo {file} | base64 -d > t.yaml && tidewright submit -f t.yaml --watch")
    };
    let grandkid = "name: grandkid\nsteps:\n  - id: b\n    shell: {command: ['true']}\n";
    let kid = format!(
        "name: kid\nsteps:\n  - id: a\n    shell: {{command: [sh, -c, {:?}]}}\n",
        submits(grandkid)
    );
    let parent = tidewright.submit(&format!(
        "name: lead\nsteps:\n  - id: hand-out\n    shell: {{command: [sh, -c, {:?}]}}\n",
        submits(&kid)
    ));
    let browser = tidewright.open_task(dir.path(), &parent).await;
    browser.sign_in("tidewright_dev").await;
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "succeeded")
        .await
        .expect("the lead succeeds once its child has");
    let child = browser
        .text_until("[data-test=children] tbody", LIVE, |t| {
            t.contains("kid") && t.contains("succeeded")
        })
        .await
        .expect("its child is listed");
    assert!(
        child.contains("hand-out"),
        "the step that submitted it: {child}"
    );
    assert!(!child.contains("grandkid"), "a level at first: {child}");
    // The child opens onto the task its own step submitted.
    browser
        .click("[data-test=children] [data-expand]")
        .await
        .expect("open the child");
    let grandchild = browser
        .text_until("[data-test=grandchildren] tbody", LIVE, |t| {
            t.contains("grandkid") && t.contains("succeeded")
        })
        .await
        .expect("its grandchild is listed under it");
    assert!(grandchild.contains('a'), "by its step a: {grandchild}");
    browser
        .click("[data-test=children] a")
        .await
        .expect("the child's page");
    let link = browser
        .text_until("[data-test=parent]", LIVE, |t| !t.is_empty())
        .await
        .expect("the child names its parent");
    assert!(
        link.contains(&parent) && link.contains("hand-out"),
        "{link}"
    );
    browser.close_without_errors().await;
}

#[test]
fn the_embedded_console_is_what_its_sources_build() {
    let console = repo_root().join("console");
    let embedded = repo_root().join("crates/tidewright-server/console");
    assert!(
        console.join("node_modules/.bin/vite").exists(),
        "console/node_modules is missing: run scripts/console.sh"
    );
    let out = tempfile::tempdir().expect("tempdir");
    let built = Command::new("npm")
        .args(["run", "--silent", "build", "--", "--outDir"])
        .arg(out.path())
        .arg("--emptyOutDir")
        .current_dir(&console)
        .output()
        .expect("npm runs");
    assert!(
        built.status.success(),
        "the console does not build: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    for file in ["index.html", "assets/console.js", "assets/console.css"] {
        let fresh = std::fs::read(out.path().join(file)).expect("built");
        let checked_in = std::fs::read(embedded.join(file)).expect("checked in");
        assert!(
            fresh == checked_in,
            "crates/tidewright-server/console/{file} is not what console/src builds: run `make console` and commit it"
        );
    }
    let files = |dir: &Path| -> Vec<String> {
        let mut names = Vec::new();
        for entry in walk(dir) {
            names.push(
                entry
                    .strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string(),
            );
        }
        names.sort();
        names
    };
    assert_eq!(files(out.path()), files(&embedded), "the same files");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_egress_verdicts_show_among_its_log_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (up, grpc, link) = tidewright_up_with(dir.path(), 1).await;
    let origin = link.split("/login").next().expect("origin").to_string();
    let file = dir.path().join("probe.yaml");
    std::fs::write(
        &file,
        "name: probe\nsteps:\n  - id: probe\n    shell:\n      command: [sh, -c, 'curl -s -o /dev/null -m 5 http://169.254.169.254/ || true; echo probed']\n",
    )
    .expect("task file");
    let submitted = Command::new(tidewright_bin())
        .args(["--server", &grpc, "submit", "--watch", "-o", "name", "-f"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .expect("tidewright submit");
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = String::from_utf8_lossy(&submitted.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let browser = Browser::start(&dir.path().join("browser"))
        .await
        .expect("chromium");
    browser.client.goto(&link).await.expect("signed in");
    browser
        .client
        .goto(&format!("{origin}/#/tasks/{id}"))
        .await
        .expect("the task");
    browser
        .count_until("g[data-step=probe]", 1, LIVE)
        .await
        .expect("the step drawn");
    browser.click("g[data-step=probe]").await.expect("the step");
    let log = browser
        .text_until("[data-test=log]", LIVE, |t| t.contains("probed"))
        .await
        .expect("the verdict among the log lines");
    assert!(
        log.contains(
            "egress refused 169.254.169.254:80: no egress allow-list lets the step reach it"
        ),
        "{log}"
    );
    browser.close().await;
    drop(up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_steps_rounds_show_their_checks_the_graders_reasons_and_the_end_of_what_failed()
{
    use tidewright_api::v1;
    use tidewright_tests::git_server::{GitServer, account_secrets};
    use tidewright_tests::provider::{Api, Mock, Reply};

    let dir = tempfile::tempdir().expect("tempdir");
    let git = GitServer::start(dir.path()).expect("git server");
    git.create_repo(
        "calc",
        &[
            ("calc.py", "add = lambda a, b: a - b\n"),
            (
                "test_calc.py",
                "import unittest\n\nfrom calc import add\n\n\nclass TestAdd(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
            ),
        ],
    );
    let prompt = format!("Fix add {}", std::process::id());
    let failure = "AssertionError: 1 != 5";
    let reason = "add adds its two arguments";
    let mock = Mock::start_routed(
        Api::Anthropic,
        vec![
            (
                tidewright_core::verify::grade::OPENING,
                vec![Reply::tool(
                    "grade",
                    serde_json::json!({"verdict": "pass", "reasons": [reason]}),
                )],
            ),
            (
                failure,
                vec![
                    Reply::claude_read("calc.py"),
                    Reply::claude_write("calc.py", "add = lambda a, b: a + b\n"),
                    Reply::Text("Fixed.".into()),
                ],
            ),
            (
                prompt.as_str(),
                vec![
                    Reply::claude_read("calc.py"),
                    Reply::claude_write("calc.py", "add = lambda a, b: b - a\n"),
                    Reply::Text("All tests pass.".into()),
                ],
            ),
        ],
    )
    .await
    .expect("mock");
    let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds").expect("secrets");
    let http = free_addr();
    let (server, shell) = start_with_roles(
        &dir.path().join("server"),
        &http,
        &[
            "--allow-local-repos",
            "--repo-secrets-dir",
            &secrets,
            "--grader-model",
            "claude-grader-test",
        ],
        1,
    )
    .await
    .expect("server");
    // The agent's worker, which holds the repository's secret, runs the
    // task's steps, its delivery too.
    drop(shell);
    let _agent = start_named_claude_worker(
        &server,
        dir.path(),
        "agent-1",
        &mock,
        (&["claude-code", "grader"], 1),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let mut fix = claude_step("fix", &prompt, &["Read", "Write"]);
    fix.verify = Some(v1::VerifySpec {
        checks: vec![v1::CheckSpec {
            name: "tests".into(),
            run: vec!["python3".into(), "-m".into(), "unittest".into()],
            timeout: "2m".into(),
        }],
        rounds: 2,
        protect: Vec::new(),
        rubric: "add returns the sum of its arguments.".into(),
    });
    let request = task_on_repo("verified", vec![fix], &git.url("calc"));
    let id = submit(&client, request).await.expect("submit");
    wait_succeeded(&client, &id, LIVE)
        .await
        .expect("succeeds on round 2");

    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/tasks/{id}"),
        "tidewright_dev",
    )
    .await;
    browser
        .count_until("g[data-step=fix]", 1, LIVE)
        .await
        .expect("the step drawn");
    browser.click("g[data-step=fix]").await.expect("the step");
    let rounds = browser
        .text_until("[data-test=rounds]", LIVE, |t| t.contains("Round 1"))
        .await
        .expect("its rounds");
    assert!(
        rounds.contains("Round 2 (attempt 2)")
            && rounds.contains("tests passed")
            && rounds.contains("rubric passed"),
        "{rounds}"
    );
    // The grader's verdict on it, and why.
    let reasons = browser
        .text("[data-test=grade-reasons]")
        .await
        .expect("the grader's reasons");
    assert!(reasons.contains(reason), "{reasons}");
    assert!(
        rounds.contains("Round 1 (attempt 1)") && rounds.contains("tests failed (exit 1)"),
        "{rounds}"
    );
    // The newest round, open: what it changed since the first, drawn.
    let changed = browser
        .text("[data-test=round-diff]")
        .await
        .expect("the round's diff");
    assert!(
        changed.contains("add = lambda a, b: a + b")
            && changed.contains("add = lambda a, b: b - a"),
        "{changed}"
    );
    // The first round's failure, opened.
    browser
        .click("[data-test=round]:nth-of-type(2) summary")
        .await
        .expect("round 1");
    let tail = browser
        .text_until("[data-test=check-tail]", LIVE, |t| t.contains(failure))
        .await
        .expect("the end of its output");
    assert!(tail.contains("FAIL: test_add"), "{tail}");
    let log = browser.text("[data-test=log]").await.expect("the log");
    assert!(
        log.contains("verify round 1: tests failed (exit 1)") || log.contains("check tests: "),
        "{log}"
    );
    // The replay holds both rounds in order, the second with what it
    // changed, drawn when opened.
    browser
        .click("[data-test=replay-toggle]")
        .await
        .expect("the replay");
    browser
        .count_until("[data-test=replay-entry][data-kind=verification]", 2, LIVE)
        .await
        .expect("both rounds");
    let replayed = browser.text("[data-test=replay]").await.expect("replay");
    let (one, two) = (
        replayed.find("verify round 1 failed"),
        replayed.find("verify round 2 passed"),
    );
    assert!(one.is_some() && one < two, "{replayed}");
    browser
        .run(
            "document.querySelectorAll('[data-test=replay-entry][data-kind=verification]')[1]\
             .querySelector('summary').click();",
        )
        .await
        .expect("round 2's change");
    let changed = browser
        .text_until("[data-test=replay-round-diff]", LIVE, |t| {
            t.contains("add = lambda a, b: a + b")
        })
        .await
        .expect("what round 2 changed");
    assert!(changed.contains("add = lambda a, b: b - a"), "{changed}");
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_landings_page_shows_each_bases_queue_live() {
    use tidewright_tests::git_server::secret_holding_worker;

    use crate::land::gated_landing;

    let dir = tempfile::tempdir().expect("tempdir");
    let (git, _, http, server) = on_a_repository(dir.path(), "app").await;
    let _lander = secret_holding_worker(&server.url, dir.path(), "lander", 4, &server.worker_token)
        .expect("worker");
    let client = server.tasks().await.expect("client");
    let gate = dir.path().join("gates").join("open");
    std::fs::create_dir_all(gate.parent().expect("gates")).expect("gates");
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        ids.push(
            submit(&client, gated_landing(&git, name, &gate))
                .await
                .expect("submit"),
        );
    }
    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/landings"),
        "tidewright_viewer",
    )
    .await;
    // One lands, held at the gate by its checks; the other waits its turn.
    let queue = browser
        .text_until("[data-test=landing-queue]", LIVE, |t| t.contains("waiting"))
        .await
        .expect("main's queue");
    assert!(
        queue.contains("main")
            && queue.contains("landing")
            && ids.iter().all(|id| queue.contains(id.as_str())),
        "{queue}"
    );
    browser
        .screenshot(&screenshots(), "landings")
        .await
        .expect("screenshot");
    std::fs::write(&gate, "").expect("open the gate");
    for id in &ids {
        wait_succeeded(&client, id, LIVE).await.expect("landed");
    }
    browser
        .text_until("[data-test=no-landings]", LIVE, |t| t.contains("No task"))
        .await
        .expect("the queue empties, live");
    browser.close_without_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repositorys_page_shows_its_pull_requests_their_fix_rounds_and_its_landings() {
    use tidewright_tests::forge::ForgeDouble;
    use tidewright_tests::git_server::PASSWORD;

    use crate::pull_requests::{PROJECT, followed_on, subtracting_then_fixed};

    let dir = tempfile::tempdir().expect("tempdir");
    let (git, secrets, http, server) = on_a_repository(dir.path(), PROJECT).await;
    let forge = ForgeDouble::start(dir.path(), git.root(), PASSWORD).expect("forge");
    forge
        .ci(PROJECT, "unittest", "python3 -m unittest -v")
        .expect("ci");
    let ask = format!("Make add add {}", std::process::id());
    let mock = subtracting_then_fixed(&ask).await;
    let _agent = start_named_claude_worker(
        &server,
        dir.path(),
        "agent",
        &mock,
        (&["claude-code", "shell"], 4),
        &["--secrets-dir", &secrets],
    )
    .expect("worker");
    let client = server.tasks().await.expect("client");
    let request = followed_on(
        (&git, &forge),
        claude_step("work", &ask, &["Read", "Write"]),
        "auto",
    );
    let id = submit(&client, request).await.expect("submit");
    wait_succeeded(&client, &id, Duration::from_secs(180))
        .await
        .expect("merged");
    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/repositories"),
        "tidewright_viewer",
    )
    .await;
    let url = git.url(PROJECT);
    let listed = browser
        .text_until("[data-test=repository]", LIVE, |t| t.contains(&url))
        .await
        .expect("the repository is listed");
    assert!(listed.contains("1 task(s)"), "{listed}");
    browser
        .click("[data-test=repository] a")
        .await
        .expect("open it");
    // Its pull request: merged, after one round of fixes; and its landing.
    let pull = browser
        .text_until("[data-test=pull-request]", LIVE, |t| {
            t.contains("merged at")
        })
        .await
        .expect("its pull request");
    assert!(
        pull.contains("https://github.example/acme/app/pull/1") && pull.trim_end().ends_with('1'),
        "{pull}"
    );
    let landing = browser
        .text("[data-test=landing-outcome]")
        .await
        .expect("its landing");
    assert!(landing.contains("merged"), "{landing}");
    browser
        .screenshot(&screenshots(), "repository")
        .await
        .expect("screenshot");
    browser.close_without_errors().await;
}

/// A repository `name` on the git server (calc.py and its test), the
/// secrets that reach it, and a control plane whose HTTP port (its address
/// returned) serves the console; its own worker is stopped, for the test's
/// to hold the repository's secret.
async fn on_a_repository(
    dir: &Path,
    name: &str,
) -> (
    tidewright_tests::git_server::GitServer,
    String,
    String,
    Server,
) {
    use crate::land::{CALC, CALC_TEST};
    use tidewright_tests::git_server::{GitServer, account_secrets};

    let git = GitServer::start(dir).expect("git server");
    git.create_repo(name, &[("calc.py", CALC), ("test_calc.py", CALC_TEST)]);
    let secrets = account_secrets(dir, "repo-secrets", "git-creds").expect("secrets");
    let http = free_addr();
    let (server, shell) = start_with_roles(
        &dir.join("server"),
        &http,
        &["--allow-local-repos", "--repo-secrets-dir", &secrets],
        1,
    )
    .await
    .expect("server");
    drop(shell);
    (git, secrets, http, server)
}

/// A running Claude Code step's page takes a message for its agent: sent
/// into the turn under way (the mock's next request carries it), said on
/// the page, and in the step's log as the steered event and the agent's
/// echo; a finished step's page offers no form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_steps_page_sends_it_a_message_shown_in_its_log() {
    use tidewright_api::v1;
    use tidewright_tests::provider::{Api, Mock, Reply};

    const STEER: &str = "Use the v2 API instead.";
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_bash(&wait_for_gate(&gate)),
            Reply::Text("Ported, on the v2 API.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, http, _agent) = roles_with_claude(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let request = task(
        "steered",
        vec![claude_step("port", "Port the client.", &["Bash"])],
    );
    let id = submit(&client, request).await.expect("submit");
    wait_step(&client, &id, "port", v1::StepState::Running)
        .await
        .expect("running");

    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/tasks/{id}"),
        "tidewright_dev",
    )
    .await;
    browser
        .count_until("g[data-step=port]", 1, LIVE)
        .await
        .expect("the step drawn");
    browser.click("g[data-step=port]").await.expect("the step");
    type_over(&browser, "[data-test=steer-message]", STEER).await;
    browser.click("[data-test=steer-send]").await.expect("send");
    let sent = browser
        .text_until("[data-test=steer-sent]", LIVE, |t| !t.is_empty())
        .await
        .expect("said on the page");
    assert_eq!(sent, "Sent to attempt 1, mid-turn.");
    let log = browser
        .text_until("[data-test=log]", LIVE, |t| {
            t.contains("written into the turn under way")
        })
        .await
        .expect("written into the session, said in the log");
    assert!(
        log.contains(&format!("steered by dana (mid-turn): {STEER}")),
        "{log}"
    );
    browser
        .screenshot(&screenshots(), "steer")
        .await
        .expect("screenshot");
    // The Bash call returns; the session takes the message.
    std::fs::write(&gate, "").expect("gate");
    browser
        .text_until("[data-test=log]", LIVE, |t| {
            t.contains(&format!("the agent took the message: {STEER}"))
        })
        .await
        .expect("the agent's echo in the log");
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "succeeded")
        .await
        .expect("the task ends, shown live");
    assert_eq!(browser.count("[data-test=steer]").await.expect("form"), 0);
    let requests = mock.requests();
    assert!(
        requests
            .last()
            .is_some_and(|r| r.to_string().contains(STEER)),
        "{requests:?}"
    );
    browser.close_without_errors().await;
}

/// A running agent step's replay shows its session live: the prompt and
/// the Bash call under way (no output yet), then the call's output and
/// the agent's answer as they come, each turn headed; its HTML export is
/// one page with the same session and no script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_steps_replay_shows_its_session_live_and_exports_as_one_page() {
    use tidewright_api::v1;
    use tidewright_tests::provider::{Api, Mock, Reply};

    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    let mock = Mock::start(
        Api::Anthropic,
        vec![
            Reply::claude_bash(&format!(
                "{} && echo '<b>gate open</b>'",
                wait_for_gate(&gate)
            )),
            Reply::Text("The gate opened.".into()),
        ],
    )
    .await
    .expect("mock");
    let (server, http, _agent) = roles_with_claude(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let request = task(
        "replayed",
        vec![claude_step("wait", "Wait for the gate.", &["Bash"])],
    );
    let id = submit(&client, request).await.expect("submit");
    wait_step(&client, &id, "wait", v1::StepState::Running)
        .await
        .expect("running");
    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/tasks/{id}"),
        "tidewright_viewer",
    )
    .await;
    browser
        .count_until("g[data-step=wait]", 1, LIVE)
        .await
        .expect("the step drawn");
    browser.click("g[data-step=wait]").await.expect("the step");
    browser
        .click("[data-test=replay-toggle]")
        .await
        .expect("open");
    let live = browser
        .text_until("[data-test=replay]", LIVE, |t| t.contains("no output yet"))
        .await
        .expect("the call under way");
    assert!(live.contains("Wait for the gate."), "{live}");
    assert_eq!(
        browser.text("[data-test=replay-tool]").await.expect("tool"),
        "Bash"
    );
    std::fs::write(&gate, "").expect("gate");
    let done = browser
        .text_until("[data-test=replay]", LIVE, |t| {
            t.contains("The gate opened.")
        })
        .await
        .expect("the answer, live");
    assert!(!done.contains("no output yet"), "{done}");
    assert_eq!(
        browser
            .text("[data-test=replay-output]")
            .await
            .expect("output")
            .trim(),
        "<b>gate open</b>"
    );
    assert_eq!(
        browser.text("[data-test=replay-turn]").await.expect("turn"),
        "attempt 1, turn 1"
    );
    browser
        .screenshot(&screenshots(), "replay")
        .await
        .expect("screenshot");
    let page = browser
        .run(
            "const a = document.querySelector('[data-test=replay-export-html]');\n\
             return fetch(a.href).then(r => r.text());",
        )
        .await
        .expect("the export");
    let page = page.as_str().unwrap_or_default();
    assert!(
        page.starts_with("<!doctype html>") && page.contains("The gate opened."),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;gate open&lt;/b&gt;") && !page.contains("<script"),
        "{page}"
    );
    browser.close_without_errors().await;
}

/// The cost page charts spend per day by the dimension chosen (uPlot),
/// tables it with the same figures as the tasks' own costs, and forecasts
/// each tenant's month against its monthly budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_page_charts_the_days_tables_a_dimension_and_forecasts_the_month() {
    use tidewright_tests::provider::{Api, Mock, Reply};

    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(Api::Anthropic, vec![Reply::Text("Done.".into())])
        .await
        .expect("mock");
    let (server, http, _agent) = roles_with_claude(dir.path(), &mock).await;
    let client = server.tasks().await.expect("client");
    let id = submit(
        &client,
        task("priced", vec![claude_step("a", "Say done.", &[])]),
    )
    .await
    .expect("submit");
    let done = wait_succeeded(&client, &id, LIVE).await.expect("succeeds");
    let usd = done.cost.expect("a cost").usd;
    assert!(usd > 0.0);
    // A monthly budget this month's pace will pass.
    stdout_of(server.cli().args([
        "budget",
        "set",
        "default",
        "--usd-per-month",
        &format!("{:.6}", usd / 2.0),
    ]));

    let browser = Browser::signed_in(
        dir.path(),
        &format!("http://{http}/#/cost"),
        "tidewright_dev",
    )
    .await;
    browser
        .count_until("[data-test=cost-chart] canvas", 1, LIVE)
        .await
        .expect("the chart, drawn");
    let select = browser
        .client
        .find(fantoccini::Locator::Css("[data-test=cost-by]"))
        .await
        .expect("the dimension");
    select.select_by_value("runtime").await.expect("by runtime");
    let row = browser
        .text_until("[data-test=cost-row][data-key=claude-code]", LIVE, |t| {
            t.contains("claude-code")
        })
        .await
        .expect("the runtime's row");
    assert!(row.contains(&format!("${usd:.4}")), "{row} against ${usd}");
    let forecast = browser
        .text_until("[data-test=forecast-row][data-tenant=default]", LIVE, |t| {
            t.contains("over by")
        })
        .await
        .expect("the tenant's forecast over its budget");
    assert!(forecast.contains(&format!("${usd:.4}")), "{forecast}");
    browser
        .screenshot(&screenshots(), "cost")
        .await
        .expect("screenshot");
    browser.close_without_errors().await;
}
