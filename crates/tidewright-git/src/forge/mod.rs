//! Pull requests through a forge's REST API: GitHub's pull requests and
//! GitLab's merge requests. Opening one is idempotent: an open one from
//! the same branch to the same base is found and answered instead of a
//! second, so a retried deliver step opens one pull request. The token is
//! the repository's credential (a token alone, or the password of
//! `user:password`); it goes in a header of these calls and nowhere else.
//! A pull request followed once open is `follow`'s; a repository's issues,
//! comments and permissions, as triggers need them, are `issues`'.

pub mod follow;
pub mod issues;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tidewright_core::repo::Forge;

use crate::{Credentials, Error};

/// How long one call to the forge may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// GitHub's REST API version these calls are written against.
const GITHUB_API_VERSION: &str = "2022-11-28";

/// The pull request to open.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub forge: &'a Forge,
    /// The API root, without a trailing slash.
    pub api: &'a str,
    /// The repository's git URL: its path names the project.
    pub repo_url: &'a str,
    /// The branch with the work, already pushed.
    pub head: &'a str,
    /// The branch it merges into.
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
}

/// A pull request (or merge request) as the forge answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Its page, for people.
    pub url: String,
    /// GitHub's number, GitLab's iid.
    pub number: u64,
    /// Opened by this call, not found open already.
    pub opened: bool,
}

pub use tidewright_core::repo::project_path;

/// Opens the pull request, or finds the one open from `head` to `base`.
pub async fn open_pull_request(
    ask: &Ask<'_>,
    credentials: Option<&Credentials>,
) -> Result<PullRequest, Error> {
    let project = project_path(ask.repo_url).ok_or_else(|| {
        Error::Local(format!(
            "{:?} names no owner and project for a pull request",
            ask.repo_url
        ))
    })?;
    let token = credentials.map(|c| c.password.as_str()).ok_or_else(|| {
        crate::refused(
            crate::Part::CredentialsSecret,
            "a pull request needs the repository's token: name a credentialsSecret",
        )
    })?;
    let api = Api::new(ask.forge, ask.api, token)?;
    match ask.forge {
        Forge::Github => github(&api, ask, &project).await,
        Forge::Gitlab => gitlab(&api, ask, &project).await,
        Forge::Unknown(name) => Err(Error::Local(format!(
            "{name:?} is not a forge tidewright knows"
        ))),
    }
}

async fn github(api: &Api<'_>, ask: &Ask<'_>, project: &str) -> Result<PullRequest, Error> {
    let owner = project.split('/').next().unwrap_or_default();
    let pulls = format!("/repos/{project}/pulls");
    let open = api
        .call(
            http::Method::GET,
            &format!(
                "{pulls}?state=open&head={}&base={}",
                encode(&format!("{owner}:{}", ask.head)),
                encode(ask.base)
            ),
            None,
        )
        .await?;
    if let Some(found) = open.as_array().and_then(|a| a.first()) {
        return answered(found, "html_url", "number", false);
    }
    let made = api
        .call(
            http::Method::POST,
            &pulls,
            Some(json!({
                "title": ask.title,
                "head": ask.head,
                "base": ask.base,
                "body": ask.body,
            })),
        )
        .await?;
    answered(&made, "html_url", "number", true)
}

async fn gitlab(api: &Api<'_>, ask: &Ask<'_>, project: &str) -> Result<PullRequest, Error> {
    let requests = format!("/projects/{}/merge_requests", encode(project));
    let open = api
        .call(
            http::Method::GET,
            &format!(
                "{requests}?state=opened&source_branch={}&target_branch={}",
                encode(ask.head),
                encode(ask.base)
            ),
            None,
        )
        .await?;
    if let Some(found) = open.as_array().and_then(|a| a.first()) {
        return answered(found, "web_url", "iid", false);
    }
    let made = api
        .call(
            http::Method::POST,
            &requests,
            Some(json!({
                "source_branch": ask.head,
                "target_branch": ask.base,
                "title": ask.title,
                "description": ask.body,
            })),
        )
        .await?;
    answered(&made, "web_url", "iid", true)
}

fn answered(pr: &Value, url: &str, number: &str, opened: bool) -> Result<PullRequest, Error> {
    match (pr[url].as_str(), pr[number].as_u64()) {
        (Some(url), Some(number)) => Ok(PullRequest {
            url: url.to_string(),
            number,
            opened,
        }),
        _ => Err(Error::Local(format!(
            "the forge answered a pull request without {url} and {number}"
        ))),
    }
}

/// Percent-encodes a query value or a path segment.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

struct Api<'a> {
    forge: &'a Forge,
    root: &'a str,
    token: &'a str,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl<'a> Api<'a> {
    fn new(forge: &'a Forge, root: &'a str, token: &'a str) -> Result<Api<'a>, Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| Error::Local(format!("the forge's trusted roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Api {
            forge,
            root: root.trim_end_matches('/'),
            token,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// One call; its JSON answer, or why not: a refusal of the token as
    /// such, anything else the forge refused with its own message.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Error> {
        let (status, answer) = self.answer(method.clone(), path, body).await?;
        if status.is_success() {
            return Ok(answer);
        }
        let url = format!("{}{path}", self.root);
        let message = said(&answer);
        Err(Error::Local(format!(
            "{method} {url}: the forge answered {status}: {message}"
        )))
    }

    /// One call; the forge's status and JSON answer, a refusal of the
    /// token and a forge that fails (5xx) already errors.
    async fn answer(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(http::StatusCode, Value), Error> {
        let url = format!("{}{path}", self.root);
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(
                "user-agent",
                concat!("tidewright/", env!("CARGO_PKG_VERSION")),
            );
        request = match self.forge {
            Forge::Github => request
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", GITHUB_API_VERSION)
                .header("authorization", format!("Bearer {}", self.token)),
            _ => request
                .header("accept", "application/json")
                .header("private-token", self.token),
        };
        let bytes = match &body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| Error::Local(format!("building the call to {url}: {e}")))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Error::Unavailable(format!("calling {method} {url}: {e}")))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| Error::Unavailable(format!("reading the answer of {url}: {e}")))?
                .to_bytes();
            Ok::<_, Error>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| Error::Unavailable(format!("{method} {url} took too long")))??;
        // A job's log is text, not JSON: kept whole, as a string.
        let answer: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status.is_success() {
            return Ok((status, answer));
        }
        let message = said(&answer);
        match status.as_u16() {
            401 | 403 => Err(crate::refused(
                crate::Part::CredentialsSecret,
                format!("{method} {url}: the forge refused the token ({status}): {message}"),
            )),
            500..=599 => Err(Error::Unavailable(format!(
                "{method} {url}: the forge answered {status}: {message}"
            ))),
            _ => Ok((status, answer)),
        }
    }
}

/// What the forge said in a refusal: its message, and each error's.
fn said(answer: &Value) -> String {
    let message: String = answer["message"]
        .as_str()
        .or_else(|| answer["error"].as_str())
        .or_else(|| answer.as_str())
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    let detail = answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["message"]
                        .as_str()
                        .map_or_else(|| e.to_string(), str::to_string)
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|d| !d.is_empty())
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    format!("{message}{detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repositorys_project_is_the_path_of_its_url() {
        for (url, project) in [
            ("https://github.com/acme/app.git", Some("acme/app")),
            ("https://gitlab.com/group/sub/app", Some("group/sub/app")),
            ("git@github.com:acme/app.git", Some("acme/app")),
            ("ssh://git@host:22/acme/app.git", Some("acme/app")),
            ("https://github.com/app.git", None),
            ("https://github.com/", None),
        ] {
            assert_eq!(project_path(url).as_deref(), project, "{url}");
        }
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("acme:tidewright/01j"), "acme%3Atidewright%2F01j");
        assert_eq!(encode("group/app"), "group%2Fapp");
    }
}
