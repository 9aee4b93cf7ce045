//! Brokered credentials: a step names a secret for a host, and its
//! worker's egress proxy adds it as a header to the step's HTTPS requests
//! to that host, over TLS the proxy terminates with a CA of the attempt's
//! own. The secret stays in the worker: the step's processes hold at most a
//! placeholder in a variable a tool insists on, and requests to any other
//! host never carry it. The rules for one credential, checked at submit.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::egress::{Policy, Verdict};
use crate::error::invalid;

/// One credential, as a step says it:
/// `{host: api.github.com, secret: gh-token, header: Authorization, format: "Bearer {}"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credential {
    /// The one host it is sent to: a name or address, with `:port` when
    /// not 443. Never a pattern: a wildcard would send it further than
    /// named.
    pub host: String,
    /// The secret's name in the worker's secrets directory.
    pub secret: String,
    /// The request header it is sent in; any such header the step sent is
    /// replaced.
    #[serde(default = "authorization")]
    pub header: String,
    /// The header's value, `{}` standing for the secret: `Bearer {}`,
    /// `token {}`. Default `{}`.
    #[serde(default = "bare", skip_serializing_if = "is_bare")]
    pub format: String,
    /// A variable the step's processes get holding a placeholder (never
    /// the secret), for tools that will not run without one: `GH_TOKEN`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env: String,
}

fn authorization() -> String {
    "Authorization".into()
}

fn bare() -> String {
    "{}".into()
}

fn is_bare(format: &str) -> bool {
    format == "{}"
}

/// The headers a credential may not be sent in: those that frame or route
/// the request, which the proxy and the connection own.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

impl Credential {
    /// Its host and port (443 unless named), lowercase; what is wrong with
    /// it otherwise.
    pub fn destination(&self) -> Result<(String, u16), String> {
        let rule = crate::egress::Rule::parse(&self.host)?;
        let Some(host) = rule.exact_host() else {
            return Err(format!(
                "{:?} is a pattern; a credential names one host",
                self.host
            ));
        };
        Ok((host.to_string(), rule.port().unwrap_or(443)))
    }

    /// The header's value with `secret` in it.
    pub fn value(&self, secret: &str) -> String {
        self.format.replacen("{}", secret, 1)
    }
}

/// Checks a step's credentials; `egress` is its effective policy at
/// submit (its task's and its own lists, and its repository's host), and
/// `lists` says where those lists are, for the refusal.
pub fn validate(
    credentials: &[Credential],
    step: usize,
    egress: &Policy,
    lists: &str,
) -> Result<(), Error> {
    let mut seen: Vec<(String, u16)> = Vec::new();
    for (n, credential) in credentials.iter().enumerate() {
        let field = |name: &str| format!("steps[{step}].credentials[{n}].{name}");
        let (host, port) = credential
            .destination()
            .map_err(|why| invalid(field("host"), why))?;
        if seen.contains(&(host.clone(), port)) {
            return Err(invalid(
                field("host"),
                format!("{host}:{port} already has a credential in this step"),
            ));
        }
        if let Verdict::Refused(why) = egress.judge(&host, port) {
            return Err(invalid(
                field("host"),
                format!(
                    "{host}:{port} is not a host the step's egress allows ({lists}): {why}; a credential is sent only where the step may go"
                ),
            ));
        }
        seen.push((host, port));
        if !crate::secret::valid_name(&credential.secret) {
            return Err(invalid(
                field("secret"),
                "is not a secret name (letters, digits, '-', '_' and '.', not starting with '.')",
            ));
        }
        let header = &credential.header;
        let token = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(invalid(field("header"), "is not an HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                field("header"),
                format!("{header} frames or routes the request; a credential cannot be sent in it"),
            ));
        }
        if credential.format.matches("{}").count() != 1 {
            return Err(invalid(
                field("format"),
                "must hold {} (where the secret goes) exactly once",
            ));
        }
        if credential.format.chars().any(|c| c.is_control()) {
            return Err(invalid(field("format"), "must not hold control characters"));
        }
        let env = &credential.env;
        let env_name = env
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !env.is_empty() && !env_name {
            return Err(invalid(field("env"), "is not a variable name"));
        }
    }
    Ok(())
}

/// A step's egress as submit can judge it: the task's and the step's
/// lists (the pool's is the worker's to apply), and the repository's host
/// over HTTPS, which a step reaches by default.
pub fn submit_policy(
    task: Option<&crate::Egress>,
    step: Option<&crate::Egress>,
    repo_url: Option<&str>,
) -> (Policy, String) {
    let mut lists = Vec::new();
    let mut named = Vec::new();
    for (scope, egress, field) in [("task", task, "egress"), ("step", step, "its egress")] {
        if let Some(egress) = egress {
            lists.push((
                scope,
                crate::egress::AllowList::parse(&egress.allow).unwrap_or_default(),
            ));
            named.push(format!("{field}.allow {:?}", egress.allow));
        }
    }
    let defaults = repo_url
        .filter(|url| url.starts_with("https://"))
        .and_then(crate::repo::host)
        .map(|host| (crate::egress::normalize_host(host), 443))
        .into_iter()
        .collect();
    let said = if named.is_empty() {
        "no egress allow-list is set".to_string()
    } else {
        named.join(", ")
    };
    (Policy { lists, defaults }, said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(host: &str) -> Credential {
        Credential {
            host: host.into(),
            secret: "gh-token".into(),
            header: "Authorization".into(),
            format: "Bearer {}".into(),
            env: "GH_TOKEN".into(),
        }
    }

    fn refusal(credentials: &[Credential], egress: &Policy) -> String {
        validate(credentials, 0, egress, "its egress.allow [..]")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_credential_goes_only_to_one_host_its_step_may_reach() {
        let step = crate::Egress {
            allow: vec!["api.github.com".into(), "*.example.com".into()],
        };
        let (egress, _) = submit_policy(None, Some(&step), None);
        assert_eq!(refusal(&[credential("api.github.com")], &egress), "");
        assert_eq!(refusal(&[credential("a.example.com:8443")], &egress), "");
        let why = refusal(&[credential("evil.com")], &egress);
        assert!(why.contains("steps[0].credentials[0].host"), "{why}");
        assert!(why.contains("evil.com:443"), "{why}");
        assert!(why.contains("its egress.allow"), "{why}");
        let why = refusal(&[credential("*.example.com")], &egress);
        assert!(why.contains("a pattern"), "{why}");
        let twice = [
            credential("api.github.com"),
            credential("API.github.com:443"),
        ];
        assert!(refusal(&twice, &egress).contains("credentials[1].host"));

        // No list at all: only the repository's host over HTTPS.
        let (none, said) = submit_policy(None, None, Some("https://git.example.org/o/r.git"));
        assert_eq!(said, "no egress allow-list is set");
        assert_eq!(refusal(&[credential("git.example.org")], &none), "");
        assert!(refusal(&[credential("api.github.com")], &none).contains("api.github.com:443"));
    }

    #[test]
    fn its_secret_header_format_and_variable_are_checked_by_name() {
        let (egress, _) = submit_policy(
            None,
            Some(&crate::Egress {
                allow: vec!["*".into()],
            }),
            None,
        );
        let with = |change: &dyn Fn(&mut Credential)| {
            let mut c = credential("api.github.com");
            change(&mut c);
            refusal(&[c], &egress)
        };
        assert!(with(&|c| c.secret = "../x".into()).contains("credentials[0].secret"));
        assert!(with(&|c| c.header = "Bad Header".into()).contains("credentials[0].header"));
        assert!(with(&|c| c.header = "Host".into()).contains("frames or routes"));
        assert!(with(&|c| c.format = "Bearer".into()).contains("credentials[0].format"));
        assert!(with(&|c| c.format = "{} {}".into()).contains("exactly once"));
        assert!(with(&|c| c.format = "a\r\nX: {}".into()).contains("control"));
        assert!(with(&|c| c.env = "1X".into()).contains("credentials[0].env"));
        assert_eq!(with(&|c| c.env = String::new()), "");
        assert_eq!(credential("h").value("s3"), "Bearer s3");
    }
}
