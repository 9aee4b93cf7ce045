//! A real Chromium (Debian's `chromium`), driven through its WebDriver
//! (`chromedriver`) for the console's tests: headless, with a profile in
//! the test's directory, and killed with everything it started when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::{eventually, free_addr};

/// `$TIDEWRIGHT_CHROMIUM`, else Debian's.
fn chromium() -> PathBuf {
    std::env::var_os("TIDEWRIGHT_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn chromedriver() -> PathBuf {
    std::env::var_os("TIDEWRIGHT_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

pub struct Browser {
    pub client: Client,
    driver: std::process::Child,
}

/// The failed load a console's first page means: it asks who it is
/// before anyone signs in.
pub const SIGNED_OUT: &str =
    "/api/v1/session - Failed to load resource: the server responded with a status of 401";

impl Browser {
    /// A browser (its profile under `dir/browser`) at the console's `url`,
    /// signed in with `token`.
    pub async fn signed_in(dir: &Path, url: &str, token: &str) -> Browser {
        let browser = Browser::start(&dir.join("browser"))
            .await
            .expect("chromium");
        browser.client.goto(url).await.expect("the console");
        browser.sign_in(token).await;
        browser
    }

    /// Signs in on the console's page by pasting `token`.
    pub async fn sign_in(&self, token: &str) {
        let form = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("[data-test=sign-in] textarea"))
            .await
            .expect("the sign-in form");
        form.send_keys(token).await.expect("type the token");
        self.click("[data-test=sign-in] button[type=submit]")
            .await
            .expect("sign in");
        self.text("[data-test=who]").await.expect("signed in");
    }

    /// Closes the browser, once its pages logged no error but the
    /// signed-out answer a first load gets.
    pub async fn close_without_errors(self) {
        let errors = self
            .page_errors(&[SIGNED_OUT])
            .await
            .expect("the browser's log");
        assert!(errors.is_empty(), "the pages logged errors: {errors:#?}");
        self.close().await;
    }

    /// Starts chromedriver on a free port and a headless Chromium through
    /// it, with its profile and logs under `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Browser> {
        for program in [chromium(), chromedriver()] {
            anyhow::ensure!(
                program.exists(),
                "{} is missing: run scripts/browser.sh (Debian's chromium and chromium-driver)",
                program.display()
            );
        }
        std::fs::create_dir_all(dir)?;
        let addr = free_addr();
        let port = addr.rsplit(':').next().unwrap_or_default().to_string();
        let log = std::fs::File::create(dir.join("chromedriver.log"))?;
        // Its own process group, so that dropping the browser kills
        // chromedriver and every Chromium process it started.
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(chromedriver())
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()
                .context("starting chromedriver")?
        };
        let mut guard = ProcessGroup(driver.id());
        eventually(Duration::from_secs(20), || {
            let addr = addr.clone();
            async move { std::net::TcpStream::connect(addr).ok() }
        })
        .await
        .context("chromedriver listening")?;
        let profile = dir.join("chromium-profile");
        let capabilities = json!({
            "browserName": "chrome",
            // Everything the page logs, for page_errors().
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{addr}"))
            .await
            .context("a Chromium session")?;
        guard.0 = 0;
        Ok(Browser { client, driver })
    }

    /// The text of the first element `css` matches, once one does.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let element = self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no {css}"))?;
        Ok(element.text().await?)
    }

    /// Waits until the text of the first element `css` matches satisfies
    /// `check`; that text.
    pub async fn text_until(
        &self,
        css: &str,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let last = std::sync::Mutex::new(String::new());
        let found = eventually(limit, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let text = element.text().await.ok()?;
            let met = check(&text);
            *last.lock().unwrap_or_else(|p| p.into_inner()) = text.clone();
            met.then_some(text)
        })
        .await;
        let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
        found.with_context(|| format!("{css} never matched; last it said {last:?}"))
    }

    /// How many elements `css` matches now.
    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        Ok(self.client.find_all(Locator::Css(css)).await?.len())
    }

    /// Waits until `css` matches exactly `n` elements.
    pub async fn count_until(&self, css: &str, n: usize, limit: Duration) -> anyhow::Result<()> {
        eventually(limit, || async move {
            (self.count(css).await.ok()? == n).then_some(())
        })
        .await
        .with_context(|| format!("{css} never matched {n} elements"))
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no {css}"))?
            .click()
            .await
            .with_context(|| format!("clicking {css}"))
    }

    /// Runs `script` in the page (a function body; a promise it returns is
    /// awaited) and gives back what it returned.
    pub async fn run(&self, script: &str) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// What the browser logged as errors since the last call (its console:
    /// the page's errors and failed requests), but those `expected` says
    /// are meant (a 401 while signed out, a refusal a test provoked).
    pub async fn page_errors(&self, expected: &[&str]) -> anyhow::Result<Vec<String>> {
        let log = self.client.issue_cmd(ChromeDriver::browser_log()).await?;
        Ok(log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str().map(str::to_string))
            .filter(|message| !expected.iter().any(|meant| message.contains(meant)))
            .collect())
    }

    /// Makes the page see the system's colour scheme as `scheme` ("dark"
    /// or "light"), through chromedriver's DevTools passthrough.
    pub async fn prefer_color_scheme(&self, scheme: &str) -> anyhow::Result<()> {
        self.client
            .issue_cmd(ChromeDriver::dev_tools(
                "Emulation.setEmulatedMedia",
                json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            ))
            .await?;
        Ok(())
    }

    /// Saves what the window shows as `<dir>/<name>.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await?)?;
        Ok(path)
    }

    /// Ends the session, which closes Chromium; then chromedriver goes.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// One of chromedriver's own commands, which WebDriver itself lacks:
/// POSTed as JSON to `/session/{id}/{path}`.
#[derive(Debug)]
struct ChromeDriver {
    path: &'static str,
    body: Value,
}

impl ChromeDriver {
    /// The browser's log: what the page wrote to its console, and failed
    /// loads.
    fn browser_log() -> ChromeDriver {
        ChromeDriver {
            path: "se/log",
            body: json!({"type": "browser"}),
        }
    }

    /// A Chrome DevTools command, through chromedriver's passthrough.
    fn dev_tools(cmd: &str, params: Value) -> ChromeDriver {
        ChromeDriver {
            path: "goog/cdp/execute",
            body: json!({"cmd": cmd, "params": params}),
        }
    }
}

impl fantoccini::wd::WebDriverCompatibleCommand for ChromeDriver {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// Kills a process group when dropped, unless disarmed (id 0).
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.0 != 0 {
            kill_group(self.0);
        }
    }
}

fn kill_group(leader: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{leader}")])
        .status();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(self.driver.id());
        let _ = self.driver.wait();
    }
}
