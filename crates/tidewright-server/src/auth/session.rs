//! Browser sessions on the HTTP port, for the console. A session is a
//! random id in a cookie (HttpOnly, so page scripts cannot read it;
//! SameSite=Strict, so other sites' pages cannot send it; Secure under
//! TLS) that names, in this process's memory, the identity it was opened
//! for, when it ends, and a CSRF token. It is opened with a token or a JWT
//! (the identity is that token's) or with a one-time code from `tidewright up`'s
//! sign-in link. A request that changes something and is authenticated by
//! the cookie must also carry the CSRF token in `X-CSRF-Token`, which only
//! the console's own pages can read.
//!
//! Sessions are kept in memory: a restart or a failover ends them, and the
//! person signs in again. Tokens stay the way for scripts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::secret::hex;
use crate::error::Error;
use tidewright_engine::Error as Refusal;
use tidewright_engine::access::Identity;

/// The session cookie's name.
pub const COOKIE: &str = "tidewright_session";

/// How long a session lasts after it is opened.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// How long a sign-in link stays good, unused.
const CODE_TTL: Duration = Duration::from_secs(15 * 60);

/// Open sessions at most: each is a few hundred bytes, and one caller
/// opening them in a loop must not grow the process without bound.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub identity: Identity,
    /// What `X-CSRF-Token` must say on a request that changes something.
    pub csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    /// One-time sign-in codes and whom they sign in, until when.
    codes: HashMap<String, (Identity, Instant)>,
}

fn random() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Auth(format!("no randomness for a session: {e}")))?;
    Ok(hex(&bytes))
}

impl Sessions {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A code that opens one session for `identity`, once, within 15
    /// minutes.
    pub fn mint_code(&self, identity: Identity) -> Result<String, Error> {
        let code = random()?;
        let mut inner = self.inner();
        let now = Instant::now();
        inner.codes.retain(|_, (_, until)| *until > now);
        inner.codes.insert(code.clone(), (identity, now + CODE_TTL));
        Ok(code)
    }

    /// Opens a session with a code from [`Sessions::mint_code`]; a code
    /// works once.
    pub fn redeem(&self, code: &str) -> Result<(String, Session), Error> {
        let found = self.inner().codes.remove(code);
        match found {
            Some((identity, until)) if until > Instant::now() => self.open(identity),
            _ => Err(Error::Service(Refusal::Unauthenticated(
                "this sign-in link was used already or has expired; sign in with a token".into(),
            ))),
        }
    }

    /// A new session for `identity`: its id (the cookie's value) and it.
    pub fn open(&self, identity: Identity) -> Result<(String, Session), Error> {
        let (id, csrf) = (random()?, random()?);
        let mut inner = self.inner();
        let now = Instant::now();
        if inner.sessions.len() >= MAX_SESSIONS {
            inner.sessions.retain(|_, s| s.expires > now);
        }
        if inner.sessions.len() >= MAX_SESSIONS {
            return Err(Error::Service(Refusal::ResourceExhausted {
                message: format!("{MAX_SESSIONS} console sessions are open; try again later"),
                retry_after: None,
            }));
        }
        let session = Session {
            identity,
            csrf,
            expires: now + SESSION_TTL,
        };
        inner.sessions.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut inner = self.inner();
        match inner.sessions.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                inner.sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (sign out).
    pub fn close(&self, id: &str) {
        self.inner().sessions.remove(id);
    }
}

/// `name`'s value in a request's Cookie headers.
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The Set-Cookie value that opens (`Some(id)`) or ends (`None`) the
/// session cookie.
pub fn set_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_TTL.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Compares secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, Tenants};

    fn someone() -> Identity {
        Identity {
            name: "dana".into(),
            role: Role::Developer,
            tenants: Tenants::Only(vec!["default".into()]),
            step: None,
        }
    }

    #[test]
    fn a_code_opens_one_session_once() {
        let sessions = Sessions::default();
        let code = sessions.mint_code(someone()).expect("code");
        let (id, session) = sessions.redeem(&code).expect("opened");
        assert_eq!(session.identity, someone());
        assert_eq!(sessions.get(&id).expect("live").csrf, session.csrf);
        assert!(sessions.redeem(&code).is_err(), "a code works once");
        assert!(sessions.redeem("made-up").is_err());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none(), "closed");
    }

    #[test]
    fn cookies_are_read_by_name_and_set_with_their_protections() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; tidewright_session=abc"
                .parse()
                .expect("a header value"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), None);
        let set = set_cookie(Some("abc"), true);
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Max-Age=43200"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set_cookie(Some("abc"), false).contains("Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
