//! Following the leader among control-plane replicas. A client is given one
//! address (a Kubernetes Service, `tidewright up`) or several (`--server
//! http://a:7070,http://b:7070`). [`Replicas`] is a channel that sends each
//! call to the replica it believes leads, and changes its mind on what it
//! sees: a standby's refusal names the leader (`tidewright-leader`), and a
//! replica that cannot be reached gives way to the next in the list. The
//! call that met the standby or the dead replica still fails (its body is
//! gone); the caller's own retry, or its next call, reaches the leader.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::Channel;

use crate::Error;
use crate::client::{ClientTls, endpoint};

/// The metadata key a standby names the leader's address (`host:port`) in.
pub const LEADER_KEY: &str = "tidewright-leader";

/// The service whose health says whether a replica leads.
const LEADING_SERVICE: &str = "tidewright.v1.TaskService";

/// Splits `--server` into its replicas' URLs. An entry without a scheme
/// takes the first entry's: `https://a:7443,b:7443`.
pub fn server_list(servers: &str) -> Result<Vec<String>, Error> {
    let entries: Vec<&str> = servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let Some(first) = entries.first() else {
        return Err(Error::Invalid("server", "names no address"));
    };
    let scheme = match first.split_once("://") {
        Some((scheme, _)) => scheme,
        None => {
            return Err(Error::Client(format!(
                "server {first:?} is not a URL like http://127.0.0.1:7070"
            )));
        }
    };
    Ok(entries
        .iter()
        .map(|entry| {
            if entry.contains("://") {
                entry.to_string()
            } else {
                format!("{scheme}://{entry}")
            }
        })
        .collect())
}

/// The leader a standby named in its refusal, as a URL with the scheme of
/// `via`, the server that refused.
pub fn leader_hint(headers: &http::HeaderMap, via: &str) -> Option<String> {
    let refused = headers
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() == b"14");
    if !refused {
        return None;
    }
    let leader = headers.get(LEADER_KEY)?.to_str().ok()?.trim();
    if leader.is_empty() {
        return None;
    }
    Some(with_scheme_of(via, leader))
}

/// Which replica to call: the one in use until it fails or refuses, then
/// the leader it named, or else the next in the list. Pure bookkeeping, for
/// clients that make their own connections (a worker makes one per
/// session).
#[derive(Debug, Clone)]
pub struct Choice {
    servers: Vec<String>,
    at: usize,
    /// A leader a standby named that is not in the list.
    followed: Option<String>,
}

impl Choice {
    /// From `--server`: one URL, or several separated by commas.
    pub fn new(servers: &str) -> Result<Choice, Error> {
        Ok(Choice {
            servers: server_list(servers)?,
            at: 0,
            followed: None,
        })
    }

    /// The replica to call now.
    pub fn current(&self) -> &str {
        self.followed.as_deref().unwrap_or(&self.servers[self.at])
    }

    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// `server` could not be reached, or answered as a standby naming no
    /// leader: the next in the list is tried.
    pub fn failed(&mut self, server: &str) {
        if self.current() != server {
            return;
        }
        if self.followed.take().is_none() {
            self.at = (self.at + 1) % self.servers.len();
        }
    }

    /// `server` refused as a standby naming `leader` (a URL): it is called
    /// next. A standby naming itself (it may still see the lease of the
    /// process it replaced) is passed over for the next in the list.
    pub fn refused_by(&mut self, server: &str, leader: Option<String>) {
        if self.current() != server {
            return;
        }
        match leader.filter(|leader| leader != server) {
            Some(leader) => match self.servers.iter().position(|s| *s == leader) {
                Some(at) => {
                    self.at = at;
                    self.followed = None;
                }
                None => self.followed = Some(leader),
            },
            None => self.failed(server),
        }
    }

    /// Where a failed call leads: `status` from `server` names the leader,
    /// or says the replica cannot serve, or says nothing about replicas.
    pub fn learn(&mut self, server: &str, status: &tonic::Status) {
        if status.code() != tonic::Code::Unavailable {
            return;
        }
        let leader = status
            .metadata()
            .get(LEADER_KEY)
            .and_then(|value| value.to_str().ok())
            .map(|leader| with_scheme_of(server, leader));
        self.refused_by(server, leader);
    }
}

fn with_scheme_of(server: &str, address: &str) -> String {
    let scheme = server
        .split_once("://")
        .map_or("http", |(scheme, _)| scheme);
    format!("{scheme}://{}", address.trim())
}

/// A channel to whichever replica leads. Cheap to clone; clones share
/// their idea of the leader.
#[derive(Clone)]
pub struct Replicas {
    shared: Arc<Mutex<Shared>>,
    tls: ClientTls,
}

struct Shared {
    choice: Choice,
    /// The channel to the current choice, made on first use.
    channel: Option<(String, Channel)>,
}

impl Replicas {
    /// Replicas at `servers` (one URL, or several separated by commas);
    /// nothing is connected until the first call.
    pub fn new(servers: &str, tls: &ClientTls) -> Result<Replicas, Error> {
        let choice = Choice::new(servers)?;
        for server in choice.servers() {
            endpoint(server, tls)?;
        }
        Ok(Replicas {
            shared: Arc::new(Mutex::new(Shared {
                choice,
                channel: None,
            })),
            tls: tls.clone(),
        })
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic elsewhere while holding it leaves nothing half-done.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The replica calls go to now.
    pub fn current(&self) -> String {
        self.shared().choice.current().to_string()
    }

    /// How many replicas were given.
    pub fn len(&self) -> usize {
        self.shared().choice.servers().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The channel to use now, made when the choice changed.
    fn pick(&self) -> (String, Channel) {
        let mut shared = self.shared();
        loop {
            let current = shared.choice.current().to_string();
            if let Some((server, channel)) = &shared.channel
                && *server == current
            {
                return (server.clone(), channel.clone());
            }
            match endpoint(&current, &self.tls) {
                Ok(endpoint) => {
                    let channel = endpoint.connect_lazy();
                    shared.channel = Some((current.clone(), channel.clone()));
                    return (current, channel);
                }
                // A named leader that is no URL: back to the list, whose
                // entries all made endpoints in `new`.
                Err(_) => shared.choice.failed(&current),
            }
        }
    }

    /// Connects to the current choice now, rather than on the first
    /// call, so that a replica that cannot be reached is said at once.
    pub async fn connect(&self) -> Result<String, tonic::transport::Error> {
        let (server, _) = self.pick();
        let Ok(endpoint) = endpoint(&server, &self.tls) else {
            return Ok(server);
        };
        let channel = endpoint.connect().await?;
        self.shared().channel = Some((server.clone(), channel));
        Ok(server)
    }

    fn refused_by(&self, server: &str, leader: Option<String>) {
        self.shared().choice.refused_by(server, leader);
    }

    fn failed(&self, server: &str) {
        self.shared().choice.failed(server);
    }

    /// Looks for the leader until one answers as leader or `patience`
    /// runs out: asks the current choice whether it serves; a standby is
    /// asked who leads, and that replica is asked next; one that does not
    /// answer gives way to the next in the list. When none of them answers
    /// at all, it returns at once: there is nothing to wait for.
    pub async fn find_leader(&self, patience: Duration) -> Option<String> {
        use tonic_health::pb::health_check_response::ServingStatus;
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(50);
        let mut asked = 0;
        let mut answered = false;
        loop {
            let (server, channel) = self.pick();
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let check = health.check(tonic_health::pb::HealthCheckRequest {
                service: LEADING_SERVICE.into(),
            });
            match tokio::time::timeout(Duration::from_secs(2), check).await {
                Ok(Ok(answer)) if answer.get_ref().status == ServingStatus::Serving as i32 => {
                    return Some(server);
                }
                // A standby: any call of the leader's services tells who
                // leads; this one needs no token there.
                Ok(Ok(_)) => {
                    answered = true;
                    let mut agents =
                        crate::v1::agent_service_client::AgentServiceClient::new(channel);
                    let named = agents.list_servers(crate::v1::ListServersRequest {});
                    match tokio::time::timeout(Duration::from_secs(2), named).await {
                        Ok(Err(refusal)) => self.shared().choice.learn(&server, &refusal),
                        _ => self.failed(&server),
                    }
                }
                _ => self.failed(&server),
            }
            asked += 1;
            if asked % self.len().max(2) == 0 {
                if !answered || tokio::time::Instant::now() + pause > deadline {
                    return None;
                }
                answered = false;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

impl Service<http::Request<Body>> for Replicas {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the chosen channel's, awaited in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (server, mut channel) = self.pick();
        let replicas = self.clone();
        Box::pin(async move {
            let sent = async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            match sent.await {
                Ok(response) => {
                    if let Some(leader) = leader_hint(response.headers(), &server) {
                        replicas.refused_by(&server, Some(leader));
                    }
                    Ok(response)
                }
                Err(e) => {
                    replicas.failed(&server);
                    Err(e)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_list_takes_the_first_scheme_for_bare_entries() {
        assert_eq!(
            server_list("https://a:7443, b:7443,,https://c:7443").expect("valid"),
            ["https://a:7443", "https://b:7443", "https://c:7443"]
        );
        assert_eq!(
            server_list("http://127.0.0.1:7070").expect("valid"),
            ["http://127.0.0.1:7070"]
        );
        assert!(server_list(" , ").is_err());
        assert!(server_list("a:7070,b:7070").is_err());
    }

    #[test]
    fn the_choice_follows_a_named_leader_and_moves_past_what_fails() {
        let mut choice = Choice::new("http://a:1,http://b:1,http://c:1").expect("valid");
        assert_eq!(choice.current(), "http://a:1");
        choice.failed("http://a:1");
        assert_eq!(choice.current(), "http://b:1");
        // A stale report about another replica changes nothing.
        choice.failed("http://a:1");
        assert_eq!(choice.current(), "http://b:1");
        choice.refused_by("http://b:1", Some("http://c:1".into()));
        assert_eq!(choice.current(), "http://c:1");
        // A leader outside the list is followed, and left when it fails.
        choice.refused_by("http://c:1", Some("http://d:1".into()));
        assert_eq!(choice.current(), "http://d:1");
        choice.failed("http://d:1");
        assert_eq!(choice.current(), "http://c:1");
        // A standby naming itself is passed over.
        choice.refused_by("http://c:1", Some("http://c:1".into()));
        assert_eq!(choice.current(), "http://a:1");
        let mut refusal = tonic::Status::unavailable("standby");
        refusal
            .metadata_mut()
            .insert(LEADER_KEY, "b:1".parse().expect("valid"));
        choice.learn("http://a:1", &refusal);
        assert_eq!(choice.current(), "http://b:1");
        choice.learn("http://b:1", &tonic::Status::not_found("task"));
        assert_eq!(choice.current(), "http://b:1", "not about replicas");
    }

    #[test]
    fn only_a_refusal_naming_a_leader_is_followed() {
        let mut headers = http::HeaderMap::new();
        headers.insert(LEADER_KEY, "10.0.0.7:7443".parse().expect("valid"));
        assert_eq!(leader_hint(&headers, "https://a:7443"), None, "no status");
        headers.insert("grpc-status", "14".parse().expect("valid"));
        assert_eq!(
            leader_hint(&headers, "https://a:7443").as_deref(),
            Some("https://10.0.0.7:7443")
        );
        headers.insert("grpc-status", "5".parse().expect("valid"));
        assert_eq!(leader_hint(&headers, "http://a:7070"), None);
    }
}
