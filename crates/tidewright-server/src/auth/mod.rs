//! Who is calling, and what they may do. Every gRPC method but health needs a
//! bearer token: one of tidewright's own, kept only as SHA-256 hashes, each bound
//! to a name, a role and tenants; or a JWT (see `jwt`). Each caller may be
//! held to a request rate.
//!
//! The tokens file has one token per line, `sha256:<hex> <role> <name>`;
//! `#` starts a comment. With no file configured, the control plane keeps
//! one in its data directory and, on first start, creates it with an admin
//! and a worker token whose plain text it writes beside it (`admin.token`,
//! `worker.token`, readable by the owner only), so `tidewright up` needs no setup.

pub mod forge_hooks;
pub mod jwt;
pub(crate) mod secret;
pub mod session;
pub mod step_token;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tidewright_engine::Error as Refusal;
use tonic::{Request, Status};

use crate::auth::jwt::{JwtVerifier, looks_like_jwt};
use crate::auth::secret::{generate_token, hex, write_private};
use crate::auth::step_token::{STEP_TOKEN_PREFIX, StepTokens};
use crate::error::Error;
pub use tidewright_engine::access::{
    Action, Identity, Role, Tenants, default_tenants, denied, permit, valid_tenant,
};

/// Known tokens, by hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Identity>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The tokens-file line for `token`: only its hash is stored.
pub fn token_line(token: &str, role: Role, name: &str) -> String {
    format!("sha256:{} {role} {name}", hex(&hash(token)))
}

impl Tokens {
    pub fn parse(text: &str, source: &Path) -> Result<Tokens, Error> {
        let mut by_hash = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| Error::Auth(format!("{}:{}: {why}", source.display(), n + 1));
            let mut fields = line.split_whitespace();
            let (Some(digest), Some(role), Some(name), tenants, None) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Err(bad("expected `sha256:<hex> <role> <name> [tenants=a,b|*]`"));
            };
            let digest = digest
                .strip_prefix("sha256:")
                .and_then(unhex)
                .ok_or_else(|| bad("the hash must be sha256: and 64 hex digits"))?;
            let role = Role::parse(role)
                .ok_or_else(|| bad("the role must be admin, developer, viewer or worker"))?;
            let tenants = match tenants.map(|t| t.strip_prefix("tenants=")) {
                None => default_tenants(role),
                Some(Some("*")) => Tenants::All,
                Some(Some(list)) => {
                    let names: Vec<String> = list.split(',').map(str::to_string).collect();
                    if !names.iter().all(|n| valid_tenant(n)) {
                        return Err(bad(
                            "tenants must be lowercase letters, digits and '-', 1 to 63 bytes",
                        ));
                    }
                    Tenants::Only(names)
                }
                Some(None) => return Err(bad("the fourth field must be tenants=a,b or tenants=*")),
            };
            by_hash.insert(
                digest,
                Identity {
                    name: name.to_string(),
                    role,
                    tenants,
                    step: None,
                },
            );
        }
        if by_hash.is_empty() {
            return Err(Error::Auth(format!("{} holds no token", source.display())));
        }
        Ok(Tokens { by_hash })
    }

    /// Reads `file`, or (without one) the data directory's tokens file,
    /// creating it and the first tokens when it does not exist yet.
    pub fn load_or_create(file: Option<&Path>, data_dir: &Path) -> Result<Tokens, Error> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| Error::Io {
                context: path,
                source,
            }
        };
        let path: PathBuf = match file {
            Some(file) => file.to_path_buf(),
            None => {
                let path = data_dir.join("tokens");
                if !path.exists() {
                    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
                    let admin = generate_token()?;
                    let worker = generate_token()?;
                    write_private(&data_dir.join("admin.token"), &format!("{admin}\n"))
                        .map_err(io(data_dir))?;
                    write_private(&data_dir.join("worker.token"), &format!("{worker}\n"))
                        .map_err(io(data_dir))?;
                    let lines = format!(
                        "# tidewright tokens: sha256:<hex> <role> <name>\n{}\n{}\n",
                        token_line(&admin, Role::Admin, "admin"),
                        token_line(&worker, Role::Worker, "local-workers")
                    );
                    write_private(&path, &lines).map_err(io(&path))?;
                    tracing::info!(dir = %data_dir.display(), "created admin and worker tokens");
                }
                path
            }
        };
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        Tokens::parse(&text, &path)
    }

    pub fn authenticate(&self, token: &str) -> Option<&Identity> {
        self.by_hash.get(&hash(token))
    }
}

/// Requests per second allowed to one caller, and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Checks the bearer token of every request (a tidewright token or a JWT),
/// holds each caller to its rate, and records who it is for the handlers'
/// permission checks.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<Tokens>,
    jwt: Option<Arc<JwtVerifier>>,
    steps: Arc<StepTokens>,
    limiter: Option<Arc<Limiter>>,
}

impl Authenticator {
    pub fn new(
        tokens: Tokens,
        jwt: Option<JwtVerifier>,
        steps: Arc<StepTokens>,
        rate: Option<RateLimit>,
    ) -> Self {
        Authenticator {
            tokens: Arc::new(tokens),
            jwt: jwt.map(Arc::new),
            steps,
            limiter: rate.map(|rate| {
                Arc::new(governor::RateLimiter::keyed(
                    governor::Quota::per_second(rate.per_second).allow_burst(rate.burst),
                ))
            }),
        }
    }

    fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Identity, Error> {
        let header = metadata.get("authorization").ok_or_else(|| {
            Error::Service(Refusal::Unauthenticated(
                "a bearer token is required (authorization: Bearer <token>)".into(),
            ))
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Error::Service(Refusal::Unauthenticated(
                    "the authorization header must be `Bearer <token>`".into(),
                ))
            })?;
        self.authenticate_token(token)
    }

    /// Whom a bearer token (a tidewright token, a JWT or a step token) names.
    pub fn authenticate_token(&self, token: &str) -> Result<Identity, Error> {
        if let Some(step_token) = token.strip_prefix(STEP_TOKEN_PREFIX) {
            return self.steps.verify(step_token);
        }
        match &self.jwt {
            Some(jwt) if looks_like_jwt(token) => jwt.verify(token),
            _ => self.tokens.authenticate(token).cloned().ok_or_else(|| {
                Error::Service(Refusal::Unauthenticated("the token is not valid".into()))
            }),
        }
    }

    /// Each caller (token name or JWT subject) has its own bucket, so one
    /// noisy client slows only itself.
    pub(crate) fn check_rate(&self, identity: &Identity) -> Result<(), Error> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&identity.name).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
            Error::Service(Refusal::ResourceExhausted {
                message: format!(
                    "rate limit: {} is over its request rate; retry in {} ms",
                    identity.name,
                    wait.as_millis().max(1)
                ),
                retry_after: Some(wait),
            })
        })
    }

    /// Who sends an HTTP request, as the gRPC interceptor finds out: its
    /// bearer token, then its rate. What it may do is each method's check.
    pub fn identify(&self, headers: &http::HeaderMap) -> Result<Identity, Error> {
        let identity =
            self.authenticate(&tonic::metadata::MetadataMap::from_headers(headers.clone()))?;
        self.check_rate(&identity)?;
        Ok(identity)
    }

    /// Checks a request to the HTTP port as gRPC requests are checked:
    /// the bearer token, the caller's rate, and that its role may `action`.
    /// Metrics count every tenant's work, so they need a token for all.
    pub fn authorize_http(
        &self,
        headers: &http::HeaderMap,
        action: Action,
    ) -> Result<Identity, Error> {
        let identity = self.identify(headers)?;
        if !action.allowed(identity.role) {
            return Err(denied(&identity, action).into());
        }
        if action == Action::ReadMetrics && identity.tenants != Tenants::All {
            return Err(Error::Service(Refusal::PermissionDenied(format!(
                "{} may not read metrics: they count every tenant's tasks, and its token is bound to some (give it tenants=*)",
                identity.name
            ))));
        }
        Ok(identity)
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = self.authenticate(request.metadata())?;
        self.check_rate(&identity)?;
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}

/// Refuses the request unless its caller's role allows `action`.
pub fn require<T>(request: &Request<T>, action: Action) -> Result<Identity, Status> {
    permit(request.extensions().get::<Identity>(), action).map_err(|e| Error::from(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_round_trips_hashes_only() {
        let token = generate_token().expect("token");
        let line = token_line(&token, Role::Viewer, "ci-bot");
        assert!(
            !line.contains(&token[5..]),
            "the plain token is never stored"
        );
        let tokens =
            Tokens::parse(&format!("# comment\n{line}\n"), Path::new("t")).expect("parses");
        assert_eq!(
            tokens.authenticate(&token),
            Some(&Identity {
                name: "ci-bot".into(),
                role: Role::Viewer,
                tenants: Tenants::Only(vec!["default".into()]),
                step: None,
            })
        );
        assert_eq!(tokens.authenticate("tidewright_wrong"), None);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let err = Tokens::parse("sha256:abc admin x\n", Path::new("f")).expect_err("bad hash");
        assert!(err.to_string().contains("f:1"), "{err}");
        let good = token_line("t", Role::Admin, "a");
        let err = Tokens::parse(
            &format!("{good}\n{}\n", good.replace("admin", "root")),
            Path::new("f"),
        )
        .expect_err("role");
        assert!(
            err.to_string().contains("f:2") && err.to_string().contains("role"),
            "{err}"
        );
        assert!(Tokens::parse("# nothing\n", Path::new("f")).is_err());
    }

    #[test]
    fn tenants_come_from_the_fourth_field() {
        let line = |role: Role, rest: &str| format!("{} {rest}", token_line("t", role, "n"));
        let tenants = |text: String| {
            Tokens::parse(&text, Path::new("f"))
                .map(|t| t.authenticate("t").map(|i| i.tenants.clone()))
        };
        let only =
            |names: &[&str]| Some(Tenants::Only(names.iter().map(|n| n.to_string()).collect()));
        assert_eq!(
            tenants(line(Role::Developer, "tenants=a,b")).expect("ok"),
            only(&["a", "b"])
        );
        assert_eq!(
            tenants(line(Role::Viewer, "tenants=*")).expect("ok"),
            Some(Tenants::All)
        );
        assert_eq!(
            tenants(line(Role::Developer, "")).expect("ok"),
            only(&["default"])
        );
        assert_eq!(
            tenants(line(Role::Admin, "")).expect("ok"),
            Some(Tenants::All)
        );
        assert!(tenants(line(Role::Developer, "tenants=Bad_Name")).is_err());
        assert!(tenants(line(Role::Developer, "teams=a")).is_err());
    }

    #[test]
    fn roles_allow_what_they_say() {
        use Action::*;
        assert!(Action::allowed(WriteTasks, Role::Developer));
        assert!(!Action::allowed(WriteTasks, Role::Viewer));
        assert!(Action::allowed(ReadTasks, Role::Viewer));
        assert!(!Action::allowed(ReadTasks, Role::Worker));
        assert!(Action::allowed(ConnectWorker, Role::Worker));
        assert!(!Action::allowed(ConnectWorker, Role::Developer));
        assert!(Action::allowed(ConnectWorker, Role::Admin));
        assert!(Action::allowed(ReadAudit, Role::Admin));
        assert!(!Action::allowed(ReadAudit, Role::Developer));
        assert!(!Action::allowed(ReadAudit, Role::Viewer));
        assert!(Action::allowed(ReadState, Role::Viewer));
        assert!(!Action::allowed(WriteState, Role::Viewer));
        assert!(Action::allowed(WriteState, Role::Step));
        assert!(!Action::allowed(ReadTasks, Role::Step));
        assert!(!Action::allowed(WriteTasks, Role::Step));
        assert!(!Action::allowed(ConnectWorker, Role::Step));
        assert!(!Action::allowed(ReadState, Role::Worker));
    }

    #[test]
    fn first_start_creates_private_tokens_that_authenticate() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = Tokens::load_or_create(None, dir.path()).expect("created");
        let admin = std::fs::read_to_string(dir.path().join("admin.token")).expect("admin token");
        assert_eq!(
            tokens.authenticate(admin.trim()).map(|i| i.role),
            Some(Role::Admin)
        );
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second start reads the same file; it creates nothing new.
        let again = Tokens::load_or_create(None, dir.path()).expect("loaded");
        assert_eq!(
            again.authenticate(admin.trim()).map(|i| i.role),
            Some(Role::Admin)
        );
    }
}
