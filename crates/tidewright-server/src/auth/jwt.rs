//! JSON Web Tokens for people: signed by an identity provider (or `tidewright`'s
//! operator) with HS256 or RS256, carrying the caller's name (`sub`), role
//! (`role`) and tenants (`tenants`, `["*"]` for all). They expire (`exp` is
//! required) and are checked against the configured issuer and audience.

use std::path::PathBuf;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::Error;
use crate::error::read_file;
use tidewright_engine::Error as Refusal;
use tidewright_engine::access::{Identity, Role, Tenants, default_tenants, valid_tenant};

/// Where the verification keys come from, and what the claims must say.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// A file holding the shared HS256 secret (its bytes, trailing newline
    /// dropped).
    pub hs256_secret_file: Option<PathBuf>,
    /// A PEM file holding the RS256 public key.
    pub rs256_public_key_file: Option<PathBuf>,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` must hold it.
    pub audience: Option<String>,
}

impl JwtConfig {
    pub fn is_enabled(&self) -> bool {
        self.hs256_secret_file.is_some() || self.rs256_public_key_file.is_some()
    }
}

/// Checks JWTs against the configured keys.
pub struct JwtVerifier {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    #[serde(default)]
    tenants: Option<Vec<String>>,
}

impl JwtVerifier {
    /// Reads the keys; `None` when JWTs are not configured.
    pub fn load(config: &JwtConfig) -> Result<Option<JwtVerifier>, Error> {
        if !config.is_enabled() {
            return Ok(None);
        }
        let hs256 = match &config.hs256_secret_file {
            Some(path) => {
                let mut secret = read_file(path)?;
                while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    secret.pop();
                }
                // Shorter secrets can be guessed offline from one token.
                if secret.len() < 32 {
                    return Err(Error::Auth(format!(
                        "{}: an HS256 secret must be at least 32 bytes",
                        path.display()
                    )));
                }
                Some(DecodingKey::from_secret(&secret))
            }
            None => None,
        };
        let rs256 = match &config.rs256_public_key_file {
            Some(path) => Some(DecodingKey::from_rsa_pem(&read_file(path)?).map_err(|e| {
                Error::Auth(format!("{}: not an RSA public key: {e}", path.display()))
            })?),
            None => None,
        };
        Ok(Some(JwtVerifier {
            hs256,
            rs256,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        }))
    }

    /// The identity a valid token names; why not, in one line, otherwise.
    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        let unauthenticated =
            |why: String| Error::Service(Refusal::Unauthenticated(format!("JWT refused: {why}")));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthenticated("not a well-formed JWT".into()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| unauthenticated(format!("{:?} is not an accepted algorithm", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| {
                unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired".into(),
                    ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
                    ErrorKind::InvalidSignature => "the signature does not verify".into(),
                    ErrorKind::InvalidIssuer => "iss is not the configured issuer".into(),
                    ErrorKind::InvalidAudience => "aud does not name this control plane".into(),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the {claim} claim is missing")
                    }
                    ErrorKind::Json(_) => {
                        "the claims need sub (string), role (string) and tenants (list of strings)"
                            .into()
                    }
                    other => format!("{other:?}"),
                })
            })?
            .claims;
        let role = Role::parse(&claims.role).ok_or_else(|| {
            unauthenticated("role must be admin, developer, viewer or worker".into())
        })?;
        let tenants = match claims.tenants {
            None => default_tenants(role),
            Some(list) if list.iter().any(|t| t == "*") => Tenants::All,
            Some(list) if !list.is_empty() && list.iter().all(|t| valid_tenant(t)) => {
                Tenants::Only(list)
            }
            Some(_) => {
                return Err(unauthenticated(
                    "tenants must be [\"*\"] or lowercase names of 1 to 63 bytes".into(),
                ));
            }
        };
        Ok(Identity {
            name: claims.sub,
            role,
            tenants,
            step: None,
        })
    }
}

/// JWTs have three dot-separated parts; tidewright's own tokens have none.
pub fn looks_like_jwt(token: &str) -> bool {
    token.matches('.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use std::path::Path;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier(dir: &Path, issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        let file = dir.join("secret");
        std::fs::write(&file, format!("{SECRET}\n")).expect("write");
        JwtVerifier::load(&JwtConfig {
            hs256_secret_file: Some(file),
            rs256_public_key_file: None,
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
        })
        .expect("loads")
        .expect("enabled")
    }

    fn sign(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signs")
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn a_valid_token_names_its_caller() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = verifier(dir.path(), Some("idp"), Some("tidewright"));
        let token = sign(
            json!({"sub": "ada", "role": "developer", "tenants": ["team-a"],
            "exp": in_an_hour(), "iss": "idp", "aud": "tidewright"}),
        );
        assert!(looks_like_jwt(&token));
        assert_eq!(
            v.verify(&token).expect("valid"),
            Identity {
                name: "ada".into(),
                role: Role::Developer,
                tenants: Tenants::Only(vec!["team-a".into()]),
                step: None,
            }
        );
    }

    #[test]
    fn each_refusal_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = verifier(dir.path(), Some("idp"), None);
        let refused =
            |claims: serde_json::Value| v.verify(&sign(claims)).expect_err("refused").to_string();
        let past = jsonwebtoken::get_current_timestamp() - 3600;
        assert!(
            refused(json!({"sub": "a", "role": "admin", "exp": past, "iss": "idp"}))
                .contains("expired")
        );
        assert!(refused(json!({"sub": "a", "role": "admin", "iss": "idp"})).contains("exp claim"));
        assert!(
            refused(json!({"sub": "a", "role": "admin", "exp": in_an_hour(), "iss": "other"}))
                .contains("iss")
        );
        assert!(
            refused(json!({"sub": "a", "role": "root", "exp": in_an_hour(), "iss": "idp"}))
                .contains("role")
        );
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "a", "role": "admin", "exp": in_an_hour(), "iss": "idp"}),
            &EncodingKey::from_secret(b"another secret of thirty-two bytes!!"),
        )
        .expect("signs");
        assert!(
            v.verify(&forged)
                .expect_err("forged")
                .to_string()
                .contains("signature")
        );
        let rs = encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "a", "role": "admin", "exp": in_an_hour()}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signs");
        assert!(
            v.verify(&rs)
                .expect_err("alg")
                .to_string()
                .contains("HS384")
        );
    }

    #[test]
    fn short_secrets_are_refused_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "short").expect("write");
        let err = JwtVerifier::load(&JwtConfig {
            hs256_secret_file: Some(file),
            ..JwtConfig::default()
        })
        .err()
        .expect("refused");
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }
}
