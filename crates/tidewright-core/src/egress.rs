//! Egress policy: which hosts a step's process may reach through its
//! worker's egress proxy. An allow-list may be set on a step, its task and
//! the worker's pool (`tidewright worker --egress-allow`, `Agent.spec.egress`);
//! they merge narrowest-wins: a destination must be allowed by every list
//! that is set, so a step can narrow what its task or pool allows, never
//! widen it. With no list set, a step reaches only what tidewright allows by
//! default (the model API through the worker's model proxy, the control
//! plane, the task's repository host).
//!
//! An entry is a host (`github.com`), a host and port (`github.com:443`),
//! a wildcard for the subdomains of a name (`*.github.com`, not
//! `github.com` itself), with or without a port, or `*` for any host. An IP
//! address is written as itself (`10.0.0.5:8080`, `[fd00::1]:443`).
//!
//! Names are allowed, not addresses: the proxy resolves an allowed name and
//! still refuses it when it resolves to a loopback, private, link-local
//! (the cloud metadata address) or other non-public address, unless every
//! list that is set names that exact host with its port. A broad pattern
//! never opens the inside of the network.

use serde::{Deserialize, Serialize};

/// An allow-list, as a spec says it: `egress: {allow: [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Egress {
    /// The hosts it may reach: `host`, `host:port`, `*.domain`,
    /// `*.domain:port` or `*`. Empty: none beyond tidewright's defaults.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// One allow-list entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any host.
    Any,
    /// `*.example.com`: any name under `example.com`, stored as
    /// `.example.com`.
    Under(String),
    /// One name or address, lowercase, without brackets.
    Exact(String),
}

/// How a destination matched an allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// An entry names this host and this port: the list opts into it even
    /// when it resolves to a non-public address.
    Exact,
    /// A broader entry covers it: public addresses only.
    Broad,
}

impl Rule {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Rule, String> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err("is empty".into());
        }
        let (host, port) = split_host_port(entry)?;
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host).to_string();
        let pattern = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            check_name(domain)?;
            HostPattern::Under(format!(".{domain}"))
        } else if host.contains('*') {
            return Err(format!(
                "{entry:?}: a wildcard may only be a whole first label (*.example.com) or * alone"
            ));
        } else {
            if host.parse::<std::net::IpAddr>().is_err() {
                check_name(&host)?;
            }
            HostPattern::Exact(host)
        };
        Ok(Rule {
            host: pattern,
            port,
        })
    }

    /// The port it names, if any: without one, any port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The address it names, when it names one host by its address.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match &self.host {
            HostPattern::Exact(host) => host.parse().ok(),
            _ => None,
        }
    }

    /// The one host it names, when it is not a pattern.
    pub fn exact_host(&self) -> Option<&str> {
        match &self.host {
            HostPattern::Exact(host) => Some(host),
            _ => None,
        }
    }

    /// Whether it may open a non-public address: one host named with its
    /// port (see [`Match::Exact`]).
    pub fn opens_inside(&self) -> bool {
        matches!((&self.host, self.port), (HostPattern::Exact(_), Some(_)))
    }

    /// How this entry covers `host:port` (`host` lowercase, without
    /// brackets or a trailing dot), if it does.
    pub fn matches(&self, host: &str, port: u16) -> Option<Match> {
        if self.port.is_some_and(|p| p != port) {
            return None;
        }
        let covered = match &self.host {
            HostPattern::Any => true,
            HostPattern::Under(domain) => host.ends_with(domain.as_str()),
            HostPattern::Exact(name) => name == host,
        };
        if !covered {
            return None;
        }
        match (&self.host, self.port) {
            (HostPattern::Exact(_), Some(_)) => Some(Match::Exact),
            _ => Some(Match::Broad),
        }
    }
}

/// `host[:port]`, `[v6]` or `[v6]:port`; a bare IPv6 address has no port.
fn split_host_port(entry: &str) -> Result<(&str, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{entry:?}: the port must be a number from 1 to 65535"))
    };
    if let Some(rest) = entry.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("{entry:?}: an IPv6 address needs its closing ]"));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{entry:?}: not an IPv6 address in brackets"));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, Some(port(p)?))),
                None => Err(format!("{entry:?}: after ] only :port may follow")),
            },
        };
    }
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((entry, None));
    }
    match entry.rsplit_once(':') {
        Some((host, p)) => Ok((host, Some(port(p)?))),
        None => Ok((entry, None)),
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, none empty.
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a host name"))
    }
}

/// An allow-list, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
}

impl AllowList {
    /// Parses every entry; the error names the first bad one by its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, (usize, String)> {
        let rules = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Rule::parse(e.as_ref()).map_err(|why| (i, why)))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The entries that name one host with its port, as (host, port).
    pub fn exact(&self) -> impl Iterator<Item = (&str, u16)> {
        self.rules
            .iter()
            .filter_map(|rule| match (&rule.host, rule.port) {
                (HostPattern::Exact(host), Some(port)) => Some((host.as_str(), port)),
                _ => None,
            })
    }

    /// The closest way an entry covers `host:port`.
    pub fn matches(&self, host: &str, port: u16) -> Option<Match> {
        let mut best = None;
        for rule in &self.rules {
            match rule.matches(host, port) {
                Some(Match::Exact) => return Some(Match::Exact),
                Some(Match::Broad) => best = Some(Match::Broad),
                None => {}
            }
        }
        best
    }
}

/// A step's effective policy: the lists set on its pool, task and step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Each list that is set, with where it was set (`pool`, `task`,
    /// `step`).
    pub lists: Vec<(&'static str, AllowList)>,
    /// Destinations tidewright opens for the step whatever its lists say, as
    /// (host, port): the task's repository host.
    pub defaults: Vec<(String, u16)>,
}

/// What the policy says of one destination, before its addresses are
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; `Exact` when every list names it with its port (or tidewright
    /// opens it by default), so a non-public address is allowed too.
    Allowed(Match),
    /// Refused, and why.
    Refused(String),
}

impl Policy {
    /// Whether `host:port` may be reached: by default, or by every list.
    pub fn judge(&self, host: &str, port: u16) -> Verdict {
        let host = normalize_host(host);
        if self.defaults.iter().any(|(h, p)| *h == host && *p == port) {
            return Verdict::Allowed(Match::Exact);
        }
        if self.lists.is_empty() {
            return Verdict::Refused("no egress allow-list lets the step reach it".into());
        }
        let mut how = Match::Exact;
        for (scope, list) in &self.lists {
            match list.matches(&host, port) {
                Some(Match::Exact) => {}
                Some(Match::Broad) => how = Match::Broad,
                None => return Verdict::Refused(format!("not in the {scope}'s egress allow-list")),
            }
        }
        Verdict::Allowed(how)
    }
}

impl Policy {
    /// The destinations every list names exactly, with its port, and
    /// those opened by default: the ones a non-public address is allowed
    /// for.
    pub fn exact(&self) -> Vec<(String, u16)> {
        let named = self
            .lists
            .iter()
            .flat_map(|(_, list)| list.exact())
            .map(|(host, port)| (host.to_string(), port));
        let mut exact: Vec<(String, u16)> = self
            .defaults
            .iter()
            .cloned()
            .chain(named)
            .filter(|(host, port)| self.judge(host, *port) == Verdict::Allowed(Match::Exact))
            .collect();
        exact.sort();
        exact.dedup();
        exact
    }
}

/// A host as the rules compare it: lowercase, without brackets or a
/// trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).expect("a valid list")
    }

    #[test]
    fn entries_parse_or_say_what_is_wrong() {
        for good in [
            "github.com",
            "github.com:443",
            "*.github.com",
            "*.github.com:443",
            "*",
            "*:443",
            "10.0.0.5:8080",
            "[fd00::1]:443",
            "fd00::1",
            "Example.COM.",
        ] {
            assert!(Rule::parse(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("github.com:0", "port"),
            ("github.com:http", "port"),
            ("git*.com", "wildcard"),
            ("*.a b", "host name"),
            ("a..b", "host name"),
            ("exa mple.com", "host name"),
            ("[fd00::1", "closing"),
            ("[nope]:1", "IPv6"),
        ] {
            let error = Rule::parse(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
        let (index, _) = AllowList::parse(&["ok.com", "bad*"]).expect_err("bad entry");
        assert_eq!(index, 1);
    }

    #[test]
    fn a_wildcard_covers_subdomains_only_and_a_port_narrows() {
        let allow = list(&["*.github.com", "pypi.org:443"]);
        assert_eq!(allow.matches("api.github.com", 443), Some(Match::Broad));
        assert_eq!(allow.matches("github.com", 443), None);
        assert_eq!(allow.matches("evilgithub.com", 443), None);
        assert_eq!(allow.matches("pypi.org", 443), Some(Match::Exact));
        assert_eq!(allow.matches("pypi.org", 80), None);
        assert_eq!(
            list(&["*"]).matches("anything.example", 1),
            Some(Match::Broad)
        );
        assert_eq!(
            list(&["pypi.org"]).matches("pypi.org", 80),
            Some(Match::Broad)
        );
    }

    #[test]
    fn lists_merge_narrowest_wins() {
        let policy = Policy {
            lists: vec![
                ("pool", list(&["*.github.com", "pypi.org"])),
                ("step", list(&["api.github.com:443"])),
            ],
            defaults: vec![("git.example".into(), 8443)],
        };
        assert_eq!(
            policy.judge("api.github.com", 443),
            Verdict::Allowed(Match::Broad)
        );
        assert_eq!(
            policy.judge("pypi.org", 443),
            Verdict::Refused("not in the step's egress allow-list".into())
        );
        assert_eq!(
            policy.judge("Git.Example.", 8443),
            Verdict::Allowed(Match::Exact)
        );
        let exact = Policy {
            lists: vec![("step", list(&["localhost:9000"]))],
            defaults: Vec::new(),
        };
        assert_eq!(
            exact.judge("localhost", 9000),
            Verdict::Allowed(Match::Exact)
        );
        assert!(matches!(
            Policy::default().judge("github.com", 443),
            Verdict::Refused(_)
        ));
        // Named exactly by the step, but broadly by the pool: exact in
        // every list it is not.
        assert_eq!(exact.exact(), vec![("localhost".to_string(), 9000)]);
        let narrowed = Policy {
            lists: vec![
                ("pool", list(&["localhost"])),
                ("step", list(&["localhost:9000"])),
            ],
            defaults: Vec::new(),
        };
        assert!(narrowed.exact().is_empty());
    }
}
