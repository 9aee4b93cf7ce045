//! Triggers: which forge events start which template's task. A trigger
//! names a forge, a repository on it, an event, a template and the
//! parameters it always fills in; a checked delivery of that event on that
//! repository renders the template, the event's own parameters (an issue's
//! number, title and text; a check's name and output; a command's prompt)
//! filling what the trigger leaves open, as the trigger's tenant.
//!
//! This module holds what a trigger is, its checks (each refusal names its
//! field), and what a delivery's payload says, read from the documented
//! payloads of GitHub (`issues`, `issue_comment`, `check_suite`) and GitLab
//! (`Issue Hook`, `Note Hook`, `Pipeline Hook`). Pure: the store, the
//! forge's API and the submit are the services'.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, invalid};
use crate::repo::Forge;

/// The label that marks an issue for an agent, when a trigger names none.
pub const DEFAULT_LABEL: &str = "agent";
/// The comment command, when a trigger names none.
pub const DEFAULT_COMMAND: &str = "/tidewright";
/// The secret holding the forge token a trigger replies and checks
/// permissions with, when it names none: the templates' own default.
pub const DEFAULT_SECRET: &str = "git-token";
/// How many of its last deliveries a trigger keeps in its history.
pub const HISTORY: usize = 20;

/// A trigger as it is created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerSpec {
    /// Its name, unique in its tenant: lowercase letters, digits and `-`.
    pub name: String,
    pub forge: Forge,
    /// The repository on the forge: `owner/name` (GitLab: its full path,
    /// `group/subgroup/name`).
    pub repository: String,
    pub event: TriggerEvent,
    /// `issueLabeled`: the label that starts it (`agent` when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// `comment`: the command a comment starts with (`/tidewright` when
    /// empty); the rest of the comment is the prompt.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// `checkFailed`: the branch whose failed checks start it (the
    /// repository's default branch when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub branch: String,
    /// The template whose task it starts; when empty, the built-in one of
    /// its event: `fix-issue`, `pr-command` or `fix-ci`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub template: String,
    /// Parameters it always fills in; they win over the event's own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The secret, in the control plane's repository secrets directory,
    /// holding the forge token it comments and checks permissions with
    /// (`git-token` when empty); the template's `secret` too, unless
    /// `params` sets one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credentials_secret: String,
    /// The forge's API root (GitHub Enterprise, a GitLab of one's own);
    /// the public one when empty. The template's `api_url` too, unless
    /// `params` sets one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_url: String,
}

/// The events a trigger starts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum TriggerEvent {
    /// An issue got its label.
    #[default]
    IssueLabeled,
    /// A comment on a pull request starts with its command, by a user with
    /// write access to the repository.
    Comment,
    /// A check suite (GitLab: a pipeline) failed on its branch.
    CheckFailed,
}

impl TriggerEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerEvent::IssueLabeled => "issueLabeled",
            TriggerEvent::Comment => "comment",
            TriggerEvent::CheckFailed => "checkFailed",
        }
    }

    /// The built-in template a trigger of this event starts when it names
    /// none.
    pub fn built_in_template(self) -> &'static str {
        match self {
            TriggerEvent::IssueLabeled => "fix-issue",
            TriggerEvent::Comment => "pr-command",
            TriggerEvent::CheckFailed => "fix-ci",
        }
    }

    pub fn parse(s: &str) -> Option<TriggerEvent> {
        [
            TriggerEvent::IssueLabeled,
            TriggerEvent::Comment,
            TriggerEvent::CheckFailed,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

impl TriggerSpec {
    /// The template it starts: its own, or its event's built-in one.
    pub fn template(&self) -> &str {
        or(&self.template, self.event.built_in_template())
    }

    pub fn label(&self) -> &str {
        or(&self.label, DEFAULT_LABEL)
    }

    pub fn command(&self) -> &str {
        or(&self.command, DEFAULT_COMMAND)
    }

    pub fn secret(&self) -> &str {
        or(&self.credentials_secret, DEFAULT_SECRET)
    }

    /// The forge's API root: `apiUrl`, or the public forge's.
    pub fn api_root(&self) -> &str {
        match (self.api_url.trim_end_matches('/'), &self.forge) {
            ("", Forge::Gitlab) => "https://gitlab.com/api/v4",
            ("", _) => "https://api.github.com",
            (api, _) => api,
        }
    }

    /// Whether `event` is one this trigger starts on.
    pub fn matches(&self, event: &Event) -> bool {
        if event.forge != self.forge || !event.project.eq_ignore_ascii_case(&self.repository) {
            return false;
        }
        match &event.what {
            What::IssueLabeled { label, .. } => {
                self.event == TriggerEvent::IssueLabeled && label == self.label()
            }
            What::Comment { text, .. } => {
                self.event == TriggerEvent::Comment && prompt(text, self.command()).is_some()
            }
            What::CheckFailed { branch, .. } => {
                let wanted = or(&self.branch, &event.default_branch);
                self.event == TriggerEvent::CheckFailed && branch == wanted
            }
        }
    }

    /// The template's parameters for `event`: the event's own, then the
    /// trigger's `credentialsSecret` and `apiUrl`, then its `params`, each
    /// over the one before; only those the template declares (`declared`).
    pub fn params_for(&self, event: &Event, declared: &[&str]) -> BTreeMap<String, String> {
        let mut params = event.params(self.command());
        params.insert("secret".into(), self.secret().into());
        if !self.api_url.is_empty() {
            params.insert("api_url".into(), self.api_url.clone());
        }
        params.extend(self.params.clone());
        params.retain(|name, _| declared.contains(&name.as_str()));
        params
    }
}

fn or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

/// The prompt of a comment that starts with `command` (followed by a
/// space or its end), trimmed; `None` when it does not.
pub fn prompt<'a>(text: &'a str, command: &str) -> Option<&'a str> {
    let rest = text.trim_start().strip_prefix(command)?;
    match rest.chars().next() {
        None => Some(""),
        Some(c) if c.is_whitespace() => Some(rest.trim()),
        Some(_) => None,
    }
}

/// The checks of a trigger as it is created (whether its template exists
/// is the services' to say).
pub fn validate(spec: &TriggerSpec) -> Result<(), Error> {
    crate::schedule::validate_name(&spec.name)?;
    if let Forge::Unknown(name) = &spec.forge {
        return Err(invalid(
            "forge",
            format!("{name:?} is not a forge tidewright knows: github or gitlab"),
        ));
    }
    let parts: Vec<&str> = spec.repository.split('/').collect();
    // GitLab's groups nest; GitHub's repositories are owner/name.
    let most = if spec.forge == Forge::Gitlab { 20 } else { 2 };
    if parts.len() < 2
        || parts.len() > most
        || parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
    {
        let nested = if spec.forge == Forge::Gitlab {
            " (or group/subgroup/name)"
        } else {
            ""
        };
        return Err(invalid(
            "repository",
            format!("{:?} must be owner/name{nested}", spec.repository),
        ));
    }
    if !spec.template.is_empty() && spec.template.trim().is_empty() {
        return Err(invalid(
            "template",
            "names the template to run (leave it out for the event's own)",
        ));
    }
    let misplaced = [
        ("label", &spec.label, TriggerEvent::IssueLabeled),
        ("command", &spec.command, TriggerEvent::Comment),
        ("branch", &spec.branch, TriggerEvent::CheckFailed),
    ];
    for (field, value, event) in misplaced {
        if !value.is_empty() && spec.event != event {
            return Err(invalid(
                field,
                format!(
                    "is for the {} event, not {}",
                    event.as_str(),
                    spec.event.as_str()
                ),
            ));
        }
    }
    if spec.command().contains(char::is_whitespace) {
        return Err(invalid("command", "is one word, such as /tidewright"));
    }
    if !spec.api_url.is_empty()
        && !spec.api_url.starts_with("https://")
        && !spec.api_url.starts_with("http://")
    {
        return Err(invalid("apiUrl", "must be an http(s) URL"));
    }
    Ok(())
}

/// What a forge's delivery says, as far as triggers read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub forge: Forge,
    /// `owner/name`, or GitLab's full path.
    pub project: String,
    /// The repository's clone URL, over HTTPS.
    pub repo_url: String,
    pub default_branch: String,
    /// Who made the event happen: a login (GitHub) or a username (GitLab).
    pub sender: String,
    /// GitLab's user id of the sender (its members API asks by id); 0 on
    /// GitHub.
    pub sender_id: u64,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    IssueLabeled {
        number: u64,
        title: String,
        body: String,
        label: String,
    },
    /// A comment on a pull request (merge request).
    Comment {
        number: u64,
        text: String,
        /// The pull request's head branch; empty when the payload does not
        /// say (GitHub's `issue_comment`: the forge is asked).
        branch: String,
    },
    CheckFailed {
        branch: String,
        sha: String,
        /// The failed check suite's app (GitHub) or the failed jobs
        /// (GitLab).
        check: String,
    },
}

impl Event {
    /// The issue or pull request the event is about, to reply on; `None`
    /// for a failed check.
    pub fn number(&self) -> Option<u64> {
        match &self.what {
            What::IssueLabeled { number, .. } | What::Comment { number, .. } => Some(*number),
            What::CheckFailed { .. } => None,
        }
    }

    /// Whether the reply goes on a pull request (merge request) rather
    /// than an issue.
    pub fn on_pull_request(&self) -> bool {
        matches!(self.what, What::Comment { .. })
    }

    /// The event's own template parameters.
    fn params(&self, command: &str) -> BTreeMap<String, String> {
        let mut params = BTreeMap::from([
            ("repo".to_string(), self.repo_url.clone()),
            ("forge".to_string(), self.forge.as_str().to_string()),
            ("base".to_string(), self.default_branch.clone()),
        ]);
        match &self.what {
            What::IssueLabeled {
                number,
                title,
                body,
                ..
            } => {
                params.insert("number".into(), number.to_string());
                params.insert("title".into(), title.clone());
                params.insert("body".into(), body.clone());
            }
            What::Comment {
                number,
                text,
                branch,
            } => {
                params.insert("number".into(), number.to_string());
                params.insert(
                    "prompt".into(),
                    prompt(text, command).unwrap_or_default().to_string(),
                );
                params.insert("branch".into(), branch.clone());
                params.insert("base".into(), branch.clone());
                params.insert("user".into(), self.sender.clone());
            }
            What::CheckFailed { branch, sha, check } => {
                params.insert("base".into(), branch.clone());
                params.insert("check".into(), check.clone());
                params.insert("sha".into(), sha.clone());
            }
        }
        params
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// What GitHub's delivery of `event` says, when triggers may start on it:
/// an issue labelled, a comment created on a pull request, a check suite
/// completed as failed. `None` for anything else.
pub fn github_event(event: &str, payload: &Value) -> Option<Event> {
    let repository = &payload["repository"];
    let action = payload["action"].as_str().unwrap_or_default();
    let what = match (event, action) {
        ("issues", "labeled") if payload["issue"]["pull_request"].is_null() => What::IssueLabeled {
            number: payload["issue"]["number"].as_u64()?,
            title: text(&payload["issue"]["title"]),
            body: text(&payload["issue"]["body"]),
            label: text(&payload["label"]["name"]),
        },
        ("issue_comment", "created") if !payload["issue"]["pull_request"].is_null() => {
            What::Comment {
                number: payload["issue"]["number"].as_u64()?,
                text: text(&payload["comment"]["body"]),
                branch: String::new(),
            }
        }
        ("check_suite", "completed")
            if matches!(
                payload["check_suite"]["conclusion"].as_str(),
                Some("failure" | "timed_out")
            ) =>
        {
            What::CheckFailed {
                branch: text(&payload["check_suite"]["head_branch"]),
                sha: text(&payload["check_suite"]["head_sha"]),
                check: text(&payload["check_suite"]["app"]["name"]),
            }
        }
        _ => return None,
    };
    let sender = match &what {
        What::Comment { .. } => &payload["comment"]["user"]["login"],
        _ => &payload["sender"]["login"],
    };
    Some(Event {
        forge: Forge::Github,
        project: text(&repository["full_name"]),
        repo_url: text(&repository["clone_url"]),
        default_branch: text(&repository["default_branch"]),
        sender: text(sender),
        sender_id: 0,
        what,
    })
}

/// What GitLab's delivery of `event` says, when triggers may start on it:
/// an issue whose labels gained one, a note on a merge request, a pipeline
/// that failed. `None` for anything else.
pub fn gitlab_event(event: &str, payload: &Value) -> Option<Event> {
    let project = &payload["project"];
    let attributes = &payload["object_attributes"];
    let names = |labels: &Value| -> Vec<String> {
        labels
            .as_array()
            .map(|l| l.iter().map(|l| text(&l["title"])).collect())
            .unwrap_or_default()
    };
    let what = match event {
        "Issue Hook" => {
            let before = names(&payload["changes"]["labels"]["previous"]);
            let after = names(&payload["changes"]["labels"]["current"]);
            // One delivery says one label was added; the first new one.
            let label = after.into_iter().find(|l| !before.contains(l))?;
            What::IssueLabeled {
                number: attributes["iid"].as_u64()?,
                title: text(&attributes["title"]),
                body: text(&attributes["description"]),
                label,
            }
        }
        "Note Hook" if attributes["noteable_type"] == "MergeRequest" => What::Comment {
            number: payload["merge_request"]["iid"].as_u64()?,
            text: text(&attributes["note"]),
            branch: text(&payload["merge_request"]["source_branch"]),
        },
        "Pipeline Hook" if attributes["status"] == "failed" => {
            let failed: Vec<String> = payload["builds"]
                .as_array()
                .map(|b| {
                    b.iter()
                        .filter(|b| b["status"] == "failed")
                        .map(|b| text(&b["name"]))
                        .collect()
                })
                .unwrap_or_default();
            What::CheckFailed {
                branch: text(&attributes["ref"]),
                sha: text(&attributes["sha"]),
                check: if failed.is_empty() {
                    "pipeline".into()
                } else {
                    failed.join(", ")
                },
            }
        }
        _ => return None,
    };
    Some(Event {
        forge: Forge::Gitlab,
        project: text(&project["path_with_namespace"]),
        repo_url: text(&project["git_http_url"]),
        default_branch: text(&project["default_branch"]),
        sender: text(&payload["user"]["username"]),
        sender_id: payload["user"]["id"].as_u64().unwrap_or_default(),
        what,
    })
}

#[cfg(test)]
#[path = "trigger_tests.rs"]
mod tests;
