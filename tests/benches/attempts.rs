//! `make bench-attempts`: three attempts of one verified fix across the
//! three runtimes against the same fix run once, for wall time and cost,
//! and what choosing adds beyond the judge's own calls.
//!
//! The release `tidewright` runs each task on one worker offering Claude
//! Code, Codex, Gemini CLI (the real CLIs, each against the mock of its
//! provider's API, every attempt scripted to fix `calc.py` at once) and
//! `grader`, on a repository served by the real git server; the check is
//! Python's unittest, sandboxed. Per run:
//!
//! - `1 attempt`: the fix as one Claude Code step;
//! - `3 attempts, judged`: `attempts: {n: 3, runtimes: [claude-code,
//!   codex, gemini-cli]}`, all three passing, so a judge (the mock
//!   Messages API answering at once) plays two matches;
//! - `3 attempts, by checks`: the same with `select: checks`: no model.
//!
//! Wall time is the task's, created to succeeded; cost is the task's (the
//! mocks report tokens; the prices are the list prices). The selection
//! overhead is, from the task's events (one clock, the control plane's),
//! the time from the last attempt's end to the choice. The mock answers
//! each of the judge's calls at once, so none of it is the judge's own:
//! it is the choosing step's dispatch, the mirror's fetches and diffs, the
//! calls' way through the model proxy, and the answer's way back.

use std::time::Duration;

use anyhow::Context;
use tidewright_api::convert::micros;
use tidewright_api::v1;
use tidewright_core::attempts::judge::OPENING;
use tidewright_tests::bench::*;
use tidewright_tests::calc::{BUG as CALC_BUG, RIGHT as CALC_RIGHT, TEST as CALC_TEST};
use tidewright_tests::git_server::{GitServer, account_secrets};
use tidewright_tests::provider::{Api, Mock, Reply};
use tidewright_tests::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = runs();
    println!(
        "tidewright attempts benchmark: {} cores, release build; a verified fix on a repository served by nginx + git http-backend on loopback, the real Claude Code, Codex and Gemini CLIs against their mock APIs, the judge the mock Messages API",
        cores()
    );
    let mut table = Table::default();
    for run in 1..=runs {
        let bench = Bench::start(run).await?;
        let one = bench.fix("one", None).await?;
        let judged = bench.fix("judged", Some("")).await?;
        let checked = bench.fix("checked", Some("checks")).await?;
        println!(
            "run {run} of {runs}: 1 attempt {:.2} s ${:.4}; 3 attempts judged {:.2} s ${:.4}, choosing {:.1} ms; by checks {:.2} s, choosing {:.1} ms",
            one.wall,
            one.usd,
            judged.wall,
            judged.usd,
            judged.choosing_ms,
            checked.wall,
            checked.choosing_ms
        );
        table.add("1 attempt: wall time", "s", Better::Lower, one.wall);
        table.add(
            "3 attempts, judged: wall time",
            "s",
            Better::Lower,
            judged.wall,
        );
        table.add(
            "3 attempts, by checks: wall time",
            "s",
            Better::Lower,
            checked.wall,
        );
        table.add("1 attempt: cost", "¢", Better::Lower, one.usd * 100.0);
        table.add(
            "3 attempts, judged: cost",
            "¢",
            Better::Lower,
            judged.usd * 100.0,
        );
        table.add(
            "selection overhead beyond the judge's calls",
            "ms",
            Better::Lower,
            judged.choosing_ms,
        );
        table.add(
            "selection by checks",
            "ms",
            Better::Lower,
            checked.choosing_ms,
        );
    }
    println!("\n{}", table.render(&command("bench-attempts")));
    Ok(())
}

/// One run's control plane, repository, mocks and worker.
struct Bench {
    _dir: tempfile::TempDir,
    git: GitServer,
    server: Server,
    _claude: Mock,
    _codex: Mock,
    _gemini: Mock,
    _worker: Process,
    run: usize,
}

/// What one task took.
struct Measured {
    wall: f64,
    usd: f64,
    choosing_ms: f64,
}

impl Bench {
    async fn start(run: usize) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let git = GitServer::start(dir.path())?;
        git.create_repo(
            "calc",
            &[("calc.py", CALC_BUG), ("test_calc.py", CALC_TEST)],
        );
        let secrets = account_secrets(dir.path(), "repo-secrets", "git-creds")?;
        let server = Server::start_on(
            &dir.path().join("server"),
            "127.0.0.1:0",
            &[
                "--allow-local-repos",
                "--repo-secrets-dir",
                &secrets,
                "--grader-model",
                "claude-sonnet-4-5",
            ],
        )?;
        // Each task's prompt names it: every attempt fixes at once, and
        // the judge picks A.
        let mut claude_routes = vec![(
            OPENING.to_string(),
            vec![
                Reply::tool(
                    "choose",
                    serde_json::json!({"better": "A", "reasons": ["A is as good."]})
                );
                4
            ],
        )];
        let mut codex_routes = Vec::new();
        let mut gemini_routes = Vec::new();
        for name in ["one", "judged", "checked"] {
            let ask = prompt(run, name);
            claude_routes.push((
                ask.clone(),
                vec![
                    Reply::claude_read("calc.py"),
                    Reply::claude_write("calc.py", CALC_RIGHT),
                    Reply::Text("Fixed.".into()),
                ],
            ));
            codex_routes.push((
                ask.clone(),
                vec![
                    Reply::codex_command(&format!(
                        "printf '{}' > calc.py",
                        CALC_RIGHT.replace('\n', "\\n")
                    )),
                    Reply::Text("Fixed.".into()),
                ],
            ));
            gemini_routes.push((
                ask,
                vec![
                    Reply::gemini_write("calc.py", CALC_RIGHT),
                    Reply::Text("Fixed.".into()),
                ],
            ));
        }
        let routes =
            |routes: &[(String, Vec<Reply>)]| -> Vec<(String, Vec<Reply>)> { routes.to_vec() };
        let claude = start_routed(Api::Anthropic, routes(&claude_routes)).await?;
        let codex = start_routed(Api::OpenAi, routes(&codex_routes)).await?;
        let gemini = start_routed(Api::Google, routes(&gemini_routes)).await?;
        let worker = start_three_runtime_worker(
            (&server, dir.path(), "agent-1"),
            (&claude.url, &codex.url, &gemini.url),
            (&["claude-code", "codex", "gemini-cli", "grader"], 4),
            &["--secrets-dir", &secrets],
        )?;
        Ok(Bench {
            _dir: dir,
            git,
            server,
            _claude: claude,
            _codex: codex,
            _gemini: gemini,
            _worker: worker,
            run,
        })
    }

    /// Runs the fix named `name`: once, or (`select`) as three attempts.
    async fn fix(&self, name: &str, select: Option<&str>) -> anyhow::Result<Measured> {
        let client = self.server.tasks().await?;
        let mut fix = claude_step("fix", &prompt(self.run, name), &["Read", "Write"]);
        fix.verify = Some(v1::VerifySpec {
            checks: vec![unittest_check()],
            rounds: 1,
            ..v1::VerifySpec::default()
        });
        fix.attempts = select.map(|select| v1::Attempts {
            n: 3,
            runtimes: vec!["claude-code".into(), "codex".into(), "gemini-cli".into()],
            select: select.into(),
            stop_early: false,
        });
        let id = submit(
            &client,
            task_on_repo(name, vec![fix], &self.git.url("calc")),
        )
        .await?;
        let task = wait_succeeded(&client, &id, Duration::from_secs(300))
            .await
            .with_context(|| format!("the {name} task"))?;
        let events = task_events(&mut client.clone(), &id, 0, false).await?;
        let at = |e: &v1::Event| e.time.as_ref().map(micros).unwrap_or(0);
        let created = task.created_at.as_ref().map(micros).unwrap_or(0);
        let done = step(&task, "fix")
            .finished_at
            .as_ref()
            .map(micros)
            .unwrap_or(0);
        let mut choosing_ms = 0.0;
        if select.is_some() {
            let last_attempt = events
                .iter()
                .filter(|e| {
                    matches!(&e.kind, Some(v1::event::Kind::StepState(s))
                    if s.step_id.starts_with("fix.") && s.state == v1::StepState::Succeeded as i32)
                })
                .map(at)
                .max()
                .context("the attempts' ends")?;
            let chose = events
                .iter()
                .filter(|e| {
                    matches!(&e.kind, Some(v1::event::Kind::Progress(p))
                    if p.step_id == "fix" && p.message.starts_with("chose "))
                })
                .map(at)
                .next()
                .context("the choice")?;
            // The mock answers each call as it arrives: the judge's own
            // time is nil, and all of this is the choosing's.
            choosing_ms = (chose - last_attempt) as f64 / 1e3;
        }
        Ok(Measured {
            wall: (done - created) as f64 / 1e6,
            usd: task.cost.as_ref().map_or(0.0, |c| c.usd),
            choosing_ms,
        })
    }
}

fn prompt(run: usize, name: &str) -> String {
    format!(
        "Fix add in calc.py ({name}, run {run}, {}).",
        std::process::id()
    )
}

async fn start_routed(api: Api, routes: Vec<(String, Vec<Reply>)>) -> anyhow::Result<Mock> {
    let borrowed: Vec<(&str, Vec<Reply>)> = routes
        .iter()
        .map(|(marker, replies)| (marker.as_str(), replies.clone()))
        .collect();
    Mock::start_routed(api, borrowed).await
}
