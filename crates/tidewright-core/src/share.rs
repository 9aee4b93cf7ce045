//! A tenant's share of the fleet ([`TenantShare`], set by an admin): its
//! weight in the ready queue's fair share against the other tenants', how
//! many of its steps may run at once, and the [`FairnessKey`] that shares
//! its part among its repositories or a label's values.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The highest weight: a tenant of weight 1000 takes a thousand turns to
/// another's one.
pub const MAX_WEIGHT: u32 = 1000;

/// A tenant's weight in the fair share (1 when unset) and its cap on
/// running steps (none when unset; 0 runs nothing until raised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantShare {
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Shares the tenant's part equally among its tasks' repositories, or
    /// a label's values; unset, its tasks go oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<FairnessKey>,
}

/// What a tenant's tasks are keyed by within its share: written `repo` or
/// `label:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FairnessKey {
    /// The task's repository URL ("" for a task without one).
    Repo,
    /// The value of the task's label of this name ("" for a task without).
    Label(String),
}

impl FairnessKey {
    /// A task's key, from its repository URL and labels.
    pub fn of<'a>(&self, repo: Option<&'a str>, labels: &'a BTreeMap<String, String>) -> &'a str {
        match self {
            FairnessKey::Repo => repo.unwrap_or(""),
            FairnessKey::Label(name) => labels.get(name).map_or("", String::as_str),
        }
    }
}

impl FromStr for FairnessKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "repo" => Ok(FairnessKey::Repo),
            Some(("label", name)) if crate::validate::valid_label_key(name) => {
                Ok(FairnessKey::Label(name.to_string()))
            }
            _ => Err(format!(
                "is `repo` or `label:<name>` (a label's name), not {text:?}"
            )),
        }
    }
}

impl TryFrom<String> for FairnessKey {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<FairnessKey> for String {
    fn from(key: FairnessKey) -> String {
        key.to_string()
    }
}

impl fmt::Display for FairnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FairnessKey::Repo => f.write_str("repo"),
            FairnessKey::Label(name) => write!(f, "label:{name}"),
        }
    }
}

fn one() -> u32 {
    1
}

impl Default for TenantShare {
    fn default() -> Self {
        TenantShare {
            weight: 1,
            max_running: None,
            fairness_key: None,
        }
    }
}

impl TenantShare {
    /// Checks a share as it comes in, signed, so that a negative number is
    /// refused naming its field rather than wrapped, and the fairness key
    /// as text ("" for none). `field` is where it sits ("" at the top).
    pub fn from_signed(
        weight: Option<i64>,
        max_running: Option<i64>,
        fairness_key: &str,
        field: &str,
    ) -> Result<Self, Error> {
        let at = |part: &str| {
            if field.is_empty() {
                part.to_string()
            } else {
                format!("{field}.{part}")
            }
        };
        let weight = match weight {
            None => 1,
            Some(w) if (1..=i64::from(MAX_WEIGHT)).contains(&w) => w as u32,
            Some(w) => {
                return Err(Error::Invalid {
                    field: at("weight"),
                    message: format!("must be 1 to {MAX_WEIGHT}, not {w}"),
                });
            }
        };
        let max_running = match max_running {
            None => None,
            Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
            Some(n) => {
                return Err(Error::Invalid {
                    field: at("maxRunning"),
                    message: format!("must be 0 or more, not {n}"),
                });
            }
        };
        let fairness_key = match fairness_key {
            "" => None,
            text => Some(text.parse().map_err(|message| Error::Invalid {
                field: at("fairnessKey"),
                message,
            })?),
        };
        Ok(TenantShare {
            weight,
            max_running,
            fairness_key,
        })
    }

    /// A task's key within the tenant's share ("" without a fairness key).
    pub fn key_of<'a>(
        &self,
        repo: Option<&'a str>,
        labels: &'a BTreeMap<String, String>,
    ) -> &'a str {
        self.fairness_key
            .as_ref()
            .map_or("", |key| key.of(repo, labels))
    }

    /// Weight 1, no cap, no key: what a tenant has when none is set.
    pub fn is_default(&self) -> bool {
        *self == TenantShare::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_run_from_1_to_1000_and_a_cap_from_0_each_refusal_naming_its_field() {
        let share = TenantShare::from_signed(Some(3), Some(50), "label:team", "").expect("valid");
        assert_eq!(
            share,
            TenantShare {
                weight: 3,
                max_running: Some(50),
                fairness_key: Some(FairnessKey::Label("team".into())),
            }
        );
        assert!(
            TenantShare::from_signed(None, None, "", "")
                .expect("valid")
                .is_default()
        );
        assert_eq!(
            TenantShare::from_signed(Some(1000), Some(0), "repo", "")
                .expect("valid")
                .max_running,
            Some(0)
        );
        for (weight, max_running, field) in [
            (Some(0), None, "share.weight"),
            (Some(-2), None, "share.weight"),
            (Some(1001), None, "share.weight"),
            (Some(1), Some(-1), "share.maxRunning"),
        ] {
            match TenantShare::from_signed(weight, max_running, "", "share") {
                Err(Error::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{weight:?} {max_running:?}: {other:?}"),
            }
        }
        let read: TenantShare = serde_yaml::from_str("{weight: 0}").expect("parse");
        let reread = TenantShare::from_signed(
            Some(i64::from(read.weight)),
            read.max_running.map(i64::from),
            "",
            "team-a",
        );
        assert!(reread.is_err(), "{reread:?}");
    }

    #[test]
    fn a_fairness_key_is_repo_or_a_labels_name_and_keys_a_task_by_it() {
        let labels: BTreeMap<String, String> = [("team".to_string(), "infra".to_string())].into();
        let repo: FairnessKey = "repo".parse().expect("repo");
        let team: FairnessKey = "label:team".parse().expect("label");
        assert_eq!(
            repo.of(Some("https://git.example/app.git"), &labels),
            "https://git.example/app.git"
        );
        assert_eq!(repo.of(None, &labels), "");
        assert_eq!(team.of(None, &labels), "infra");
        assert_eq!(FairnessKey::Label("owner".into()).of(None, &labels), "");
        assert_eq!(team.to_string(), "label:team");
        for bad in ["repos", "label:", "label:Not Valid!", "team"] {
            match TenantShare::from_signed(None, None, bad, "") {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "fairnessKey", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let read: TenantShare =
            serde_yaml::from_str("{weight: 2, fairnessKey: 'label:team'}").expect("parse");
        assert_eq!(read.key_of(None, &labels), "infra");
        assert!(serde_yaml::from_str::<TenantShare>("{fairnessKey: bogus}").is_err());
    }
}
