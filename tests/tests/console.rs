//! The web console in a real Chromium against real orca processes: the
//! one-time sign-in link `orca up` prints, the overview and the task page
//! kept live by the event streams, roles (a viewer has no cancel button,
//! and the server refuses a forged one), a log of thousands of lines, and
//! paging. Also that the bundle the binary embeds is the one its sources
//! build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use orca_tests::browser::Browser;
use orca_tests::*;

const LIVE: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// `orca up` in `dir`: the process, its gRPC URL and the sign-in link it
/// printed.
async fn orca_up(dir: &Path) -> (Process, String, String) {
    let (up, out) = Process::spawn_keeping_stdout(
        Command::new(orca_bin())
            .args(["up", "--listen", "127.0.0.1:0", "--workers", "2"])
            .current_dir(dir),
        dir,
        "up",
    )
    .expect("orca up");
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
    .expect("orca up prints its addresses and a sign-in link");
    (up, grpc, link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_up_prints_a_one_time_link_into_a_live_console_of_the_fleet_and_each_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_up, grpc, link) = orca_up(dir.path()).await;
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
    browser
        .count_until("[data-test=workers] tbody tr", 2, LIVE)
        .await
        .expect("both local workers listed");
    let before = browser
        .text("[data-test=count-succeeded] .figure")
        .await
        .expect("counts");

    // A DAG submitted from the CLI shows up on the open page by itself.
    let submitted = Command::new(orca_bin())
        .args(["--server", &grpc, "submit", "-f"])
        .arg(repo().join("examples/fan-out-fan-in.yaml"))
        .args(["-o", "name"])
        .current_dir(dir.path())
        .output()
        .expect("orca submit");
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    let expected = (before.parse::<u64>().expect("a count") + 1).to_string();
    browser
        .text_until("[data-test=count-succeeded] .figure", LIVE, |t| {
            t == expected
        })
        .await
        .expect("the succeeded count rises live");
    browser
        .count_until(".chart canvas", 4, LIVE)
        .await
        .expect("four charts drawn");

    // The task list, then the task: its graph, each step's state, a
    // step's log, attempts and output.
    browser
        .client
        .goto(&format!("{origin}/#/tasks"))
        .await
        .expect("tasks");
    let row = format!("[data-task='{id}'][data-state=succeeded]");
    browser.count_until(&row, 1, LIVE).await.expect("the row");
    browser
        .click(&format!("{row} a"))
        .await
        .expect("open the task");
    browser
        .count_until("g[data-step]", 5, LIVE)
        .await
        .expect("five steps drawn");
    browser
        .count_until("g[data-step][data-state=succeeded]", 5, LIVE)
        .await
        .expect("each succeeded");
    let edges = browser.count("path.edge").await.expect("edges");
    assert_eq!(edges, 6, "split fans out to three counts, which join");
    browser.click("g[data-step=count-a]").await.expect("a step");
    browser
        .text_until("[data-test=log]", LIVE, |t| t.contains("shard a has"))
        .await
        .expect("its log");
    let output = browser.text("[data-test=output]").await.expect("output");
    assert!(output.contains("\"words\""), "pretty JSON: {output}");
    let attempts = browser
        .text("[data-test=attempts] tbody")
        .await
        .expect("attempts");
    assert!(
        attempts.contains("local-") && attempts.contains("succeeded"),
        "{attempts}"
    );

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

    if let Ok(path) = std::env::var("ORCA_CONSOLE_SCREENSHOT") {
        let png = browser.client.screenshot().await.expect("screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
    browser.close().await;
}

/// `orca server` with a worker and tokens for a developer and a viewer.
struct Served {
    server: Server,
    _worker: Process,
    http: String,
}

async fn served(dir: &Path) -> Served {
    let http = free_addr();
    let (server, worker) = start_with_roles(dir, &http, &[], 4)
        .await
        .expect("server and worker");
    Served {
        server,
        _worker: worker,
        http,
    }
}

impl Served {
    fn submit(&self, task_file: &str) -> String {
        let answer = http_call(
            &self.http,
            "POST",
            "/api/v1/tasks",
            Some("orca_dev"),
            &[],
            task_file,
        )
        .expect("submit");
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()["taskId"].as_str().expect("id").to_string()
    }
}

/// Signs in on the page by pasting a token.
async fn sign_in(browser: &Browser, token: &str) {
    let form = browser
        .client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(fantoccini::Locator::Css("[data-test=sign-in] textarea"))
        .await
        .expect("the sign-in form");
    form.send_keys(token).await.expect("type the token");
    browser
        .click("[data-test=sign-in] button[type=submit]")
        .await
        .expect("sign in");
    browser.text("[data-test=who]").await.expect("signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_has_no_cancel_button_and_a_forged_cancel_is_refused_while_a_developer_cancels_live()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let orca = served(dir.path()).await;
    let id =
        orca.submit("name: sleeper\nsteps:\n  - id: nap\n    shell: {command: [sleep, '60']}\n");
    let browser = Browser::start(&dir.path().join("browser"))
        .await
        .expect("chromium");
    let task_page = format!("http://{}/#/tasks/{id}", orca.http);
    browser.client.goto(&task_page).await.expect("the console");
    sign_in(&browser, "orca_viewer").await;
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
    sign_in(&browser, "orca_dev").await;
    browser
        .click("[data-test=cancel]")
        .await
        .expect("a developer cancels");
    browser
        .text_until("[data-test=task-state]", LIVE, |t| t == "cancelled")
        .await
        .expect("cancelled, shown live");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_thousands_of_lines_shows_its_tail_and_more_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orca = served(dir.path()).await;
    let id = orca
        .submit("name: chatty\nsteps:\n  - id: talk\n    shell: {command: [seq, '1', '20000']}\n");
    let browser = Browser::start(&dir.path().join("browser"))
        .await
        .expect("chromium");
    browser
        .client
        .goto(&format!("http://{}/#/tasks/{id}", orca.http))
        .await
        .expect("the console");
    sign_in(&browser, "orca_dev").await;
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
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_list_pages_newest_first_and_filters_by_name_and_a_scope_shows_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orca = served(dir.path()).await;
    let mut ids = Vec::new();
    for i in 0..120 {
        let name = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(orca.submit(&format!(
            "name: {name}-{i}\nsteps:\n  - id: a\n    shell: {{command: [true]}}\n"
        )));
    }
    let browser = Browser::start(&dir.path().join("browser"))
        .await
        .expect("chromium");
    browser
        .client
        .goto(&format!("http://{}/#/tasks", orca.http))
        .await
        .expect("the console");
    sign_in(&browser, "orca_viewer").await;
    browser
        .count_until("[data-task]", 50, LIVE)
        .await
        .expect("a page");
    let first = browser.text("[data-task] td a").await.expect("first row");
    assert_eq!(first, "odd-119", "newest first");
    browser.click("[data-test=older]").await.expect("older");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "odd-69")
        .await
        .expect("the second page");
    browser.click("[data-test=older]").await.expect("older");
    browser
        .count_until("[data-task]", 20, LIVE)
        .await
        .expect("the last page");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "odd-19")
        .await
        .expect("the last page's first");
    browser.click("[data-test=newer]").await.expect("newer");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "odd-69")
        .await
        .expect("back");

    let filter = browser
        .client
        .find(fantoccini::Locator::Css("[data-test=filter-name]"))
        .await
        .expect("the name filter");
    // Enter commits the field, as a person does.
    filter.send_keys("even\n").await.expect("type");
    browser
        .text_until("[data-task] td a", LIVE, |t| t == "even-118")
        .await
        .expect("only even names");
    browser
        .count_until("[data-task]", 50, LIVE)
        .await
        .expect("a page of them");

    // A scope's shared state, read-only.
    for (key, value) in [("plan", r#"{"steps": 3}"#), ("finding", r#""off by one""#)] {
        succeed(
            orca.server
                .cli()
                .args(["state", "put", key, value, "--scope", "shared"]),
        );
    }
    browser
        .client
        .goto(&format!("http://{}/#/state", orca.http))
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
    browser.close().await;
}

/// The bundle under console/dist, which the binary embeds, is exactly what
/// its sources build (`make console` rebuilds it).
#[test]
fn the_embedded_console_is_what_its_sources_build() {
    let console = repo().join("console");
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
        let checked_in = std::fs::read(console.join("dist").join(file)).expect("checked in");
        assert!(
            fresh == checked_in,
            "console/dist/{file} is not what console/src builds: run `make console` and commit it"
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
    assert_eq!(
        files(out.path()),
        files(&console.join("dist")),
        "the same files"
    );
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
