//! One connection to a step's egress proxy: an HTTP `CONNECT host:port`
//! (a tunnel, for TLS) or a plain-HTTP request in absolute form
//! (`GET http://host/path`). The destination is judged by the step's
//! policy by name, then resolved here, and a name opened only broadly is
//! refused when any of its addresses is not public; the connection goes to
//! an address that was checked, never to a second lookup's. Every verdict
//! is an event on the step.

use std::net::{IpAddr, SocketAddr};

use tidewright_core::egress::{Match, Verdict, normalize_host};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Door;
use tidewright_core::address::not_public;

/// A request head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;

/// A request's first line and headers, and the bytes read past them.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    rest: Vec<u8>,
}

/// Serves one connection from the step to its end.
pub(super) async fn serve<S>(mut client: S, door: &Door)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head = match read_head(&mut client).await {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(why) => {
            let _ = answer(&mut client, "400 Bad Request", why).await;
            return;
        }
    };
    let connect = head.method.eq_ignore_ascii_case("CONNECT");
    let destination = if connect {
        split_authority(&head.target, 443)
    } else {
        head.target
            .strip_prefix("http://")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .and_then(|authority| split_authority(authority, 80))
    };
    let Some((host, port)) = destination else {
        let why =
            "tidewright egress proxy: send CONNECT host:port, or a request for an http:// URL";
        let _ = answer(&mut client, "400 Bad Request", why).await;
        return;
    };
    let said = said_as(&host, port);
    let upstream = match door.open(&host, port).await {
        Ok(upstream) => {
            door.tell(&said, true, String::new());
            upstream
        }
        Err(refusal) => {
            door.tell(&said, false, refusal.reason.clone());
            let status = if refusal.unreachable {
                "502 Bad Gateway"
            } else {
                "403 Forbidden"
            };
            let why = format!("tidewright egress refused {said}: {}", refusal.reason);
            let _ = answer(&mut client, status, &why).await;
            return;
        }
    };
    let mut upstream = upstream;
    if connect {
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        // A brokered host's TLS is the proxy's to end, for the credential
        // to go in (plain HTTP to it goes as it is: never a secret in clear).
        if let Some((broker, n)) = door
            .broker
            .as_ref()
            .and_then(|b| b.covers(&host, port).map(|n| (b, n)))
        {
            if head.rest.is_empty() {
                broker.serve(client, upstream, n, door).await;
            }
            return;
        }
        if !head.rest.is_empty() && upstream.write_all(&head.rest).await.is_err() {
            return;
        }
    } else if upstream.write_all(&origin_form(&head)).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Why a destination was not reached.
pub(super) struct Refusal {
    pub reason: String,
    /// Allowed, but not there (no such name, nothing listening): a 502,
    /// not a 403.
    pub unreachable: bool,
}

impl Refusal {
    fn refused(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            unreachable: false,
        }
    }

    fn unreachable(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            unreachable: true,
        }
    }
}

impl Door {
    /// Judges `host:port` by the step's policy, resolves it, checks its
    /// addresses and connects to one of them.
    pub(super) async fn open(&self, host: &str, port: u16) -> Result<TcpStream, Refusal> {
        let how = match self.policy.judge(host, port) {
            Verdict::Allowed(how) => how,
            Verdict::Refused(why) => return Err(Refusal::refused(why)),
        };
        let host = normalize_host(host);
        let named = self.names.iter().find(|(name, _)| *name == host);
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) if named.is_some() => named
                .map(|(_, ip)| SocketAddr::new(*ip, port))
                .into_iter()
                .collect(),
            Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => found.collect(),
                Err(e) => {
                    return Err(Refusal::unreachable(format!(
                        "{host} does not resolve: {e}"
                    )));
                }
            },
        };
        if addresses.is_empty() {
            return Err(Refusal::unreachable(format!("{host} has no address")));
        }
        // Opened broadly, a name must be public at every address it has,
        // or a lookup could point it inside after the check.
        if how == Match::Broad {
            for address in &addresses {
                if let Some(what) = not_public(address.ip()) {
                    return Err(Refusal::refused(format!(
                        "resolves to {}, {what}; only an entry naming {} with its port opens that",
                        address.ip(),
                        said_as(&host, port)
                    )));
                }
            }
        }
        let mut last = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    // Tunnelled as written: no small write waits on Nagle's.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(format!("connecting to {address}: {e}")),
            }
        }
        Err(Refusal::unreachable(last.unwrap_or_default()))
    }
}

/// `host:port` as events say it: an IPv6 address in brackets.
pub(super) fn said_as(host: &str, port: u16) -> String {
    let host = normalize_host(host);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with `default` for a
/// missing port.
fn split_authority(authority: &str, default: u16) -> Option<(String, u16)> {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (host, port.parse().ok()?),
            None if after.is_empty() => (host, default),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default),
        }
    };
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

async fn read_head<S: AsyncRead + Unpin>(client: &mut S) -> Result<Option<Head>, &'static str> {
    let mut buffer = Vec::with_capacity(1024);
    let end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await.map_err(|_| "read failed")?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err("tidewright egress proxy: the request head is too large");
        }
    };
    let rest = buffer.split_off(end + 4);
    let text = std::str::from_utf8(&buffer[..end]).map_err(|_| "the request head is not text")?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Err("tidewright egress proxy: a bad request line");
    };
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
        rest,
    }))
}

/// The request as the origin server takes it: its path only, without the
/// proxy's headers, and the connection closed after it (a next request on
/// it might be for another host).
fn origin_form(head: &Head) -> Vec<u8> {
    let after_scheme = head.target.strip_prefix("http://").unwrap_or(&head.target);
    let path = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
    let mut text = format!("{} {path} {}\r\n", head.method, head.version);
    for (name, value) in &head.headers {
        let hop = [
            "proxy-connection",
            "proxy-authorization",
            "connection",
            "keep-alive",
        ];
        if !hop.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    text.push_str("Connection: close\r\n\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&head.rest);
    bytes
}

async fn answer<S: AsyncWrite + Unpin>(
    client: &mut S,
    status: &str,
    why: &str,
) -> std::io::Result<()> {
    let body = format!("{why}\n");
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(text.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_with_their_default_ports() {
        assert_eq!(
            split_authority("github.com", 443),
            Some(("github.com".into(), 443))
        );
        assert_eq!(
            split_authority("github.com:8443", 443),
            Some(("github.com".into(), 8443))
        );
        assert_eq!(split_authority("[::1]:80", 443), Some(("::1".into(), 80)));
        assert_eq!(
            split_authority("user:pw@host:81", 80),
            Some(("host".into(), 81))
        );
        assert_eq!(split_authority("host:0", 80), None);
        assert_eq!(split_authority(":80", 80), None);
        assert_eq!(said_as("::1", 80), "[::1]:80");
    }

    #[test]
    fn a_plain_request_goes_on_in_origin_form_without_the_proxys_headers() {
        let head = Head {
            method: "GET".into(),
            target: "http://example.com:8080/a/b?c=d".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), "example.com:8080".into()),
                ("Proxy-Connection".into(), "keep-alive".into()),
                ("Proxy-Authorization".into(), "Basic x".into()),
            ],
            rest: b"body".to_vec(),
        };
        let sent = String::from_utf8(origin_form(&head)).expect("text");
        assert_eq!(
            sent,
            "GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\nbody"
        );
    }
}
