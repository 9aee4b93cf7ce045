//! The NetworkPolicy an `Agent` with `spec.egress` owns: its worker pods
//! may reach the cluster's DNS, the control plane, public addresses on
//! port 443 (the model API and repository hosts), and what the pool's
//! allow-list names; nothing else. A NetworkPolicy knows addresses, not
//! names: a name opens public addresses on its port, and only an entry that
//! names one host with its port (or an IP address) opens an address inside
//! the network, as the worker's egress proxy decides by name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use tidewright_core::address::{NON_PUBLIC_V4, NON_PUBLIC_V6};
use tidewright_core::egress::AllowList;

use crate::crd::Agent;
use crate::workers::{WorkerSettings, selector_labels};

/// The port public addresses are always open on: the model API's and
/// repository hosts' HTTPS.
pub const HTTPS: u16 = 443;

/// The NetworkPolicy's name for an Agent.
pub fn policy_name(agent_name: &str) -> String {
    format!("{agent_name}-workers-egress")
}

/// Where the pool's pods may connect, gathered from its allow-list.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reach {
    /// Ports open on public addresses; `None`: every port.
    public: Option<BTreeSet<u16>>,
    /// Ports open on any address (names given with their port).
    anywhere: BTreeSet<u16>,
    /// Addresses given as such, each with its ports (`None`: every port).
    addresses: BTreeMap<IpAddr, Option<BTreeSet<u16>>>,
}

fn add(ports: &mut Option<BTreeSet<u16>>, port: Option<u16>) {
    match (ports.as_mut(), port) {
        (Some(open), Some(port)) => {
            open.insert(port);
        }
        // No port named: every port, and the rest no longer matter.
        (_, None) => *ports = None,
        (None, Some(_)) => {}
    }
}

impl Reach {
    fn of(list: &AllowList) -> Reach {
        let mut reach = Reach {
            public: Some(BTreeSet::from([HTTPS])),
            ..Reach::default()
        };
        for rule in list.rules() {
            if let Some(ip) = rule.ip() {
                let ports = reach
                    .addresses
                    .entry(ip)
                    .or_insert_with(|| Some(BTreeSet::new()));
                add(ports, rule.port());
            } else if let (true, Some(port)) = (rule.opens_inside(), rule.port()) {
                reach.anywhere.insert(port);
            } else {
                add(&mut reach.public, rule.port());
            }
        }
        reach
    }
}

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

fn ports(open: &Option<BTreeSet<u16>>) -> Option<Vec<NetworkPolicyPort>> {
    open.as_ref()
        .map(|ports| ports.iter().copied().map(tcp).collect())
}

fn block(cidr: String, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr,
            except: (!except.is_empty()).then(|| except.iter().map(|c| c.to_string()).collect()),
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn address(ip: IpAddr) -> NetworkPolicyPeer {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    block(format!("{ip}/{bits}"), &[])
}

fn public() -> Vec<NetworkPolicyPeer> {
    vec![
        block("0.0.0.0/0".into(), NON_PUBLIC_V4),
        block("::/0".into(), NON_PUBLIC_V6),
    ]
}

fn rule(
    to: Option<Vec<NetworkPolicyPeer>>,
    ports: Option<Vec<NetworkPolicyPort>>,
) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule { ports, to }
}

/// The cluster's DNS: kube-dns (CoreDNS) pods in kube-system, UDP and TCP.
fn dns() -> NetworkPolicyEgressRule {
    let selector = |labels: [(&str, &str); 1]| LabelSelector {
        match_labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..LabelSelector::default()
    };
    let peer = NetworkPolicyPeer {
        namespace_selector: Some(selector([("kubernetes.io/metadata.name", "kube-system")])),
        pod_selector: Some(selector([("k8s-app", "kube-dns")])),
        ..NetworkPolicyPeer::default()
    };
    let port = |protocol: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(53)),
        protocol: Some(protocol.into()),
        end_port: None,
    };
    rule(Some(vec![peer]), Some(vec![port("UDP"), port("TCP")]))
}

/// The control plane's address from the workers' `server` URL(s): a
/// Service name (`tidewright.tidewright-system`, `tidewright.tidewright-system.svc...`) opens its
/// namespace on its port, an address opens that address.
fn control_plane(server: &str, own_namespace: &str) -> Vec<NetworkPolicyEgressRule> {
    server
        .split(',')
        .filter_map(|url| {
            let (scheme, rest) = url.trim().split_once("://")?;
            let authority = rest.split('/').next()?;
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(':') => (host, port.parse().ok()?),
                _ => (authority, if scheme == "https" { 443 } else { 80 }),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let peer = match host.parse::<IpAddr>() {
                Ok(ip) => address(ip),
                Err(_) => {
                    let namespace = host.split('.').nth(1).unwrap_or(own_namespace);
                    NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "kubernetes.io/metadata.name".to_string(),
                                namespace.to_string(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    }
                }
            };
            Some(rule(Some(vec![peer]), Some(vec![tcp(port)])))
        })
        .collect()
}

/// The pool's NetworkPolicy, when its spec has `egress`; the error names
/// the allow-list entry that is wrong.
pub fn network_policy(
    agent: &Agent,
    settings: &WorkerSettings,
) -> Result<Option<NetworkPolicy>, String> {
    let Some(egress) = &agent.spec.egress else {
        return Ok(None);
    };
    let list = AllowList::parse(&egress.allow)
        .map_err(|(n, why)| format!("spec.egress.allow[{n}]: {why}"))?;
    let reach = Reach::of(&list);
    let name = agent.metadata.name.clone().unwrap_or_default();
    let namespace = agent.metadata.namespace.clone().unwrap_or_default();

    let mut rules = vec![dns()];
    rules.extend(control_plane(&settings.server, &namespace));
    rules.push(rule(Some(public()), ports(&reach.public)));
    if !reach.anywhere.is_empty() {
        rules.push(rule(None, ports(&Some(reach.anywhere))));
    }
    for (ip, open) in &reach.addresses {
        rules.push(rule(Some(vec![address(*ip)]), ports(open)));
    }
    Ok(Some(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(policy_name(&name)),
            namespace: Some(namespace),
            labels: Some(selector_labels(&name)),
            owner_references: agent.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(rules),
            ingress: None,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::test_agent as agent;
    use crate::workers::test_settings as settings;

    fn rules(spec: &str) -> Vec<serde_json::Value> {
        let policy = network_policy(&agent(spec), &settings())
            .expect("valid")
            .expect("a policy");
        let value = serde_json::to_value(&policy).expect("json");
        value["spec"]["egress"].as_array().expect("rules").clone()
    }

    #[test]
    fn no_egress_no_policy() {
        assert_eq!(network_policy(&agent("{}"), &settings()), Ok(None));
    }

    #[test]
    fn an_empty_list_opens_dns_the_control_plane_and_public_https_only() {
        let policy = network_policy(&agent("egress: {allow: []}\n"), &settings())
            .expect("valid")
            .expect("a policy");
        let spec = policy.spec.as_ref().expect("spec");
        assert_eq!(spec.policy_types, Some(vec!["Egress".to_string()]));
        assert_eq!(
            spec.pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone()),
            Some(selector_labels("coders"))
        );
        assert_eq!(
            policy.metadata.name.as_deref(),
            Some("coders-workers-egress")
        );
        let rules = rules("egress: {allow: []}\n");
        assert_eq!(rules.len(), 3, "{rules:#?}");
        assert_eq!(
            rules[0]["ports"][0],
            serde_json::json!({"port": 53, "protocol": "UDP"})
        );
        assert_eq!(
            rules[1]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "tidewright-system"
        );
        assert_eq!(rules[1]["ports"][0]["port"], 7070);
        assert_eq!(
            rules[2]["ports"],
            serde_json::json!([{"port": 443, "protocol": "TCP"}])
        );
        let except = rules[2]["to"][0]["ipBlock"]["except"]
            .as_array()
            .expect("except");
        for private in [
            "10.0.0.0/8",
            "169.254.0.0/16",
            "127.0.0.0/8",
            "172.16.0.0/12",
        ] {
            assert!(
                except.iter().any(|c| c == private),
                "{private} not excepted"
            );
        }
        assert_eq!(rules[2]["to"][1]["ipBlock"]["cidr"], "::/0");
    }

    #[test]
    fn names_open_public_ports_and_exact_entries_open_the_inside() {
        let rules = rules(
            "egress:\n  allow: ['*.github.com', 'pypi.org:8443', 'gitea.tools.svc:3000', '10.1.2.3:5432', 'fd00::7']\n",
        );
        // *.github.com names no port: every port on public addresses.
        assert_eq!(rules[2]["ports"], serde_json::Value::Null);
        assert!(rules[2]["to"][0]["ipBlock"]["except"].is_array());
        // A name with its port: that port anywhere (it may resolve inside).
        assert_eq!(rules[3]["to"], serde_json::Value::Null);
        assert_eq!(
            rules[3]["ports"],
            serde_json::json!([{"port": 3000, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}])
        );
        assert_eq!(rules[4]["to"][0]["ipBlock"]["cidr"], "10.1.2.3/32");
        assert_eq!(rules[4]["ports"][0]["port"], 5432);
        assert_eq!(rules[5]["to"][0]["ipBlock"]["cidr"], "fd00::7/128");
        assert_eq!(rules[5]["ports"], serde_json::Value::Null);
        assert_eq!(rules.len(), 6);
    }

    #[test]
    fn public_ports_gather_and_the_control_plane_may_be_an_address() {
        let mut settings = settings();
        settings.server = "https://10.96.0.10,http://tidewright".into();
        let agent = agent("egress: {allow: [registry.npmjs.org]}\n");
        let policy = network_policy(&agent, &settings)
            .expect("valid")
            .expect("policy");
        let made = serde_json::to_value(policy.spec).expect("json")["egress"].clone();
        assert_eq!(made[1]["to"][0]["ipBlock"]["cidr"], "10.96.0.10/32");
        assert_eq!(made[1]["ports"][0]["port"], 443);
        // A bare Service name is in the Agent's own namespace.
        assert_eq!(
            made[2]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(made[2]["ports"][0]["port"], 80);
        // registry.npmjs.org names no port: every public port.
        assert_eq!(made[3]["ports"], serde_json::Value::Null);

        // Wildcards with a port add that port on public addresses.
        let gathered = rules("egress: {allow: ['*.pypi.org:8443', '*:22']}\n");
        assert_eq!(gathered.len(), 3);
        assert_eq!(
            gathered[2]["ports"],
            serde_json::json!([{"port": 22, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}])
        );
    }

    #[test]
    fn a_bad_entry_is_named_by_its_place() {
        let err = network_policy(
            &agent("egress: {allow: [github.com, 'a*b.com']}\n"),
            &settings(),
        )
        .expect_err("refused");
        assert!(err.starts_with("spec.egress.allow[1]: "), "{err}");
    }
}
